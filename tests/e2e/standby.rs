//! A hub with a standby (issue 12): two hub processes on one PostgreSQL schema, the first
//! holding the lease, nodes configured with both endpoints. Under continuous publishing the
//! leader is killed with SIGKILL: the standby takes over within a few seconds, every
//! acknowledged statement is in the one log exactly once, every checkpoint seen is consistent
//! with the next, the mirrors complete and publishing goes on. And the fence: a leader paused
//! past its lease cannot write after the standby took over.
//!
//! Needs `RCPFED_TEST_POSTGRES_URL` (skipped with a printed line without it, failing instead
//! when `RCPFED_REQUIRE_POSTGRES=1`), like postgres.rs.

use crate::harness::{
    Cluster, RawNode, TIMEOUT, connect, describe, http_get, keyed, publish_request, reason,
};
use rcpfed_core::checkpoint::open_checkpoint;
use rcpfed_core::logkeys;
use rcpfed_core::merkle::{self, Hash};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Both hubs stand by for each other with a 2 s lease; nodes notice a dead hub within about a
/// second (connect timeout and keepalive).
const STANDBY_ENV: &[(&str, &str)] = &[
    ("RCPFED_HUB_STANDBY", "true"),
    ("RCPFED_HUB_LEASE_MS", "2000"),
    ("RCPFED_NODE_HUB_CONNECT_TIMEOUT_MS", "1000"),
    ("RCPFED_NODE_HUB_CALL_TIMEOUT_MS", "5000"),
    ("RCPFED_NODE_HUB_KEEPALIVE_INTERVAL_MS", "1000"),
    ("RCPFED_NODE_HUB_KEEPALIVE_TIMEOUT_MS", "1000"),
    ("RCPFED_NODE_WITNESS_INTERVAL_MS", "200"),
];

/// Whether the hub with this ops address says it leads (`rcpfed_hub_leader 1`).
async fn leads(ops: SocketAddr) -> bool {
    http_get(&ops.to_string(), "/metrics")
        .await
        .lines()
        .any(|line| line.trim() == "rcpfed_hub_leader 1")
}

async fn hub_at(c: &Cluster, addr: SocketAddr, identity: &str) -> HubServiceClient<Channel> {
    let channel = connect(addr.port(), &c.tls(identity))
        .await
        .unwrap_or_else(|e| panic!("connecting to the hub at {addr} as {identity}: {e:?}"));
    HubServiceClient::new(channel)
}

/// Publishes policies on `node` one after another until `stop`; returns the seqs the node
/// acknowledged (signed and queued for the hub).
async fn publisher(
    c: &Cluster,
    node: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let mut client = c.node_client(node, "operator").await;
    tokio::spawn(async move {
        let mut seqs = Vec::new();
        let mut n = 0u32;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let title = format!("{node} load {n}");
            match client.publish_document(publish_request(node, &title)).await {
                Ok(r) => seqs.push(r.into_inner().seq),
                Err(s) => panic!("PublishDocument on {node}: {}", describe(&s)),
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        seqs
    })
}

/// Every distinct checkpoint (size → root) the hub at `addr` serves while `stop` is unset,
/// verified with the hub's log key.
async fn checkpoint_watcher(
    c: &Cluster,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<u64, Hash>> {
    let verifier = logkeys::log_verifier(&c.federation()).expect("the hub's log key");
    let mut client = hub_at(c, addr, "operator").await;
    tokio::spawn(async move {
        let mut seen = BTreeMap::new();
        while !stop.load(Ordering::SeqCst) {
            if let Ok(r) = client
                .get_checkpoint(v1::GetCheckpointRequest::default())
                .await
            {
                let note = r.into_inner().checkpoint;
                let (cp, _) = open_checkpoint(&note, &verifier)
                    .unwrap_or_else(|e| panic!("a checkpoint does not verify: {e}\n{note}"));
                if let Some(root) = seen.insert(cp.size, cp.root) {
                    assert_eq!(root, cp.root, "two roots for size {}: a fork", cp.size);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    })
}

/// Each checkpoint is consistent with the next: the hub's consistency proof between them
/// verifies against the roots seen.
async fn assert_consistent(hub: &mut HubServiceClient<Channel>, seen: &BTreeMap<u64, Hash>) {
    let sizes: Vec<u64> = seen.keys().copied().collect();
    for pair in sizes.windows(2) {
        let (old, new) = (pair[0], pair[1]);
        let r = hub
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: old,
                new_size: new,
            })
            .await
            .unwrap_or_else(|s| panic!("GetConsistencyProof {old}->{new}: {}", describe(&s)))
            .into_inner();
        let proof: Vec<Hash> = r
            .proof
            .iter()
            .map(|h| Hash::try_from(h.as_slice()).expect("32-byte proof hash"))
            .collect();
        merkle::verify_consistency(old, new, &seen[&old], &seen[&new], &proof)
            .unwrap_or_else(|e| panic!("checkpoint {old} is not consistent with {new}: {e}"));
    }
}

/// (node, seq) of every node statement in the hub's log, panicking on a duplicate.
async fn logged_once(c: &Cluster, nodes: &[&str]) -> BTreeSet<(String, u64)> {
    let mut logged = BTreeSet::new();
    for node in nodes {
        for record in c.hub_statements_of(node).await {
            assert!(
                logged.insert((node.to_string(), record.seq)),
                "{node} seq {} is in the log twice",
                record.seq
            );
        }
    }
    logged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_takes_over_from_a_killed_leader_under_load() {
    let nodes = ["colombo", "abu-dhabi"];
    let Some(mut c) = Cluster::start_with_standby(&nodes, STANDBY_ENV).await else {
        return;
    };
    let (standby_grpc, standby_ops) = c.standby_addrs();
    assert!(
        leads(c.hub_ops()).await,
        "the first hub leads\n{}",
        c.logs()
    );
    assert!(!leads(standby_ops).await, "the second hub stands by");

    // The standby serves reads from the shared database and refuses writes, naming no
    // other reason than NOT_LEADER.
    let mut at_standby = hub_at(&c, standby_grpc, "operator").await;
    let latest = at_standby
        .get_checkpoint(v1::GetCheckpointRequest::default())
        .await
        .unwrap_or_else(|s| panic!("GetCheckpoint at the standby: {}", describe(&s)))
        .into_inner();
    assert!(latest.tree_size >= 1);
    let mut raw = RawNode::connect(&c, "colombo").await;
    raw.client = hub_at(&c, standby_grpc, "colombo").await;
    let refused = raw
        .submit(raw.sign(&raw.policy("to the standby")).to_proto())
        .await
        .expect_err("the standby accepted a statement");
    assert_eq!(
        refused.code(),
        tonic::Code::Unavailable,
        "{}",
        describe(&refused)
    );
    assert_eq!(reason(&refused), "NOT_LEADER", "{}", describe(&refused));

    // Load on both nodes, checkpoints watched at the standby throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = checkpoint_watcher(&c, standby_grpc, Arc::clone(&stop)).await;
    let mut publishers = Vec::new();
    for node in nodes {
        publishers.push(publisher(&c, node, Arc::clone(&stop)).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // What was receipted before the kill.
    let mut receipted_before = BTreeSet::new();
    for node in nodes {
        for entry in c.outbox(node).await {
            if entry.state == v1::DeliveryState::Delivered as i32 {
                receipted_before.insert((node.to_string(), entry.seq));
            }
        }
    }
    assert!(
        !receipted_before.is_empty(),
        "nothing was delivered before the kill\n{}",
        c.logs()
    );

    c.kill_hub().await;
    let killed = Instant::now();
    c.swap_hubs();
    let logged_at_kill = logged_once(&c, &nodes).await.len();
    // A commit the killed leader had in flight may still become visible after the kill, so
    // the count is taken once the standby leads: only a statement logged after that is the new
    // leader's.
    while !leads(c.hub_ops()).await {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the standby did not take the lease within 20 s of the leader's death\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let logged_at_takeover = logged_once(&c, &nodes).await.len();
    let failover = loop {
        let now = logged_once(&c, &nodes).await.len();
        if now > logged_at_takeover {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no statement was accepted within 20 s of the leader's death\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    println!(
        "failover: {} ms from SIGKILL of the leader to the first statement accepted by the new leader",
        failover.as_millis()
    );
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );

    // Publishing goes on, then stops; every acknowledged statement gets delivered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut published = BTreeSet::new();
    for (node, publisher) in nodes.iter().zip(publishers) {
        let seqs = publisher.await.expect("publisher");
        assert!(!seqs.is_empty());
        for seq in seqs {
            published.insert((node.to_string(), seq));
        }
    }
    let seen = watcher.await.expect("checkpoint watcher");
    for node in nodes {
        let n = published.iter().filter(|(p, _)| p == node).count() as u64;
        assert_eventually!(
            c,
            TIMEOUT,
            c.delivered(node, n).await,
            "{node} delivered all {n}"
        );
    }

    // One log: every acknowledged statement exactly once, nothing receipted lost, dense feed.
    let logged = logged_once(&c, &nodes).await;
    assert_eq!(
        logged, published,
        "the log holds exactly what was published"
    );
    assert!(receipted_before.is_subset(&logged));
    let all = c.hub_statements().await;
    let indexes: Vec<u64> = all.iter().map(|r| r.feed_index).collect();
    assert_eq!(indexes, (1..=all.len() as u64).collect::<Vec<_>>());
    assert!(
        logged.len() > logged_at_kill,
        "publishing resumed after the failover"
    );

    // Every checkpoint seen before and after the kill is consistent with the next, and with
    // the new leader's latest.
    let mut hub = c.hub_client("operator").await;
    let mut checkpoints = seen.clone();
    let latest = hub
        .get_checkpoint(v1::GetCheckpointRequest::default())
        .await
        .expect("latest checkpoint")
        .into_inner();
    let verifier = logkeys::log_verifier(&c.federation()).expect("log key");
    let (cp, _) = open_checkpoint(&latest.checkpoint, &verifier).expect("latest opens");
    checkpoints.insert(cp.size, cp.root);
    assert!(
        seen.keys()
            .any(|s| *s as usize <= all.len() - (logged.len() - logged_at_kill)),
        "checkpoints from before the kill were seen: {:?}",
        seen.keys().collect::<Vec<_>>()
    );
    assert_consistent(&mut hub, &checkpoints).await;

    // The mirrors complete, from whichever hub each node now talks to.
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&nodes).await,
        "every mirror matches the new leader's log"
    );
    for node in nodes {
        let witness = c.witness_status(node).await;
        assert!(!witness.forked, "{node} saw a fork: {witness:?}");
    }
    assert_eq!(keyed(&c.hub_statements().await), keyed(&all));

    // The killed hub, started again, stands by: it serves the new leader's log and takes
    // nothing over while the lease is live.
    c.restart_standby().await;
    let (old_grpc, old_ops) = c.standby_addrs();
    let mut at_old = hub_at(&c, old_grpc, "operator").await;
    assert_eventually!(
        c,
        TIMEOUT,
        at_old
            .get_checkpoint(v1::GetCheckpointRequest::default())
            .await
            .is_ok_and(|r| r.into_inner().tree_size == cp.size),
        "the restarted hub serves the new leader's latest checkpoint"
    );
    assert!(!leads(old_ops).await, "the restarted hub stands by");
    assert!(leads(c.hub_ops()).await, "the new leader still leads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_cannot_write_after_the_standby_took_over() {
    let Some(mut c) = Cluster::start_with_standby(&["colombo"], STANDBY_ENV).await else {
        return;
    };
    let (standby_grpc, standby_ops) = c.standby_addrs();
    let mut raw = RawNode::connect(&c, "colombo").await;
    raw.accept(&raw.policy("before the pause")).await;

    // Pause the leader past its lease; the standby takes over.
    let pid = c.hub_pid().to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let paused = Instant::now();
    while !leads(standby_ops).await {
        assert!(
            paused.elapsed() < Duration::from_secs(20),
            "the standby did not take over from a paused leader\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "takeover from a paused leader: {} ms",
        paused.elapsed().as_millis()
    );

    // A statement sent to the paused leader waits in its socket; continued, the old leader
    // must refuse it: its term is over.
    let statement = raw.policy("sent to the paused leader");
    let envelope = raw.sign(&statement);
    let mut old_leader = raw.client.clone();
    let pending_envelope = envelope.to_proto();
    let pending = tokio::spawn(async move {
        old_leader
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(pending_envelope),
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal("-CONT");
    let answer = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("the old leader answers once continued")
        .expect("the submitting task");
    let refused = answer.expect_err("the old leader receipted a statement after losing its term");
    println!("the old leader's answer: {}", describe(&refused));
    assert_eq!(
        refused.code(),
        tonic::Code::Unavailable,
        "{}",
        describe(&refused)
    );

    // It is not in the log; the new leader accepts it as new, once, in the one log.
    c.swap_hubs();
    assert!(
        c.hub_statements_of("colombo")
            .await
            .iter()
            .all(|r| r.digest != envelope.digest().0.to_vec()),
        "the refused statement is in the log"
    );
    raw.client = hub_at(&c, standby_grpc, "colombo").await;
    let (_, accepted) = raw.accept(&statement).await;
    assert!(!accepted.duplicate);
    let seqs: Vec<u64> = c
        .hub_statements_of("colombo")
        .await
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2]);

    // The old leader stepped down: a write there is refused with NOT_LEADER.
    let (old_grpc, _) = c.standby_addrs();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut old = hub_at(&c, old_grpc, "colombo").await;
        let next = raw.sign(&raw.policy("to the old leader"));
        match old
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(next.to_proto()),
            })
            .await
        {
            Err(s) if reason(&s) == "NOT_LEADER" => break,
            Ok(_) => panic!("the old leader accepted a statement after stepping down"),
            Err(s) => assert!(
                Instant::now() < deadline,
                "the old leader does not answer NOT_LEADER: {}\n{}",
                describe(&s),
                c.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = c.hub_statements().await;
    let indexes: Vec<u64> = all.iter().map(|r| r.feed_index).collect();
    assert_eq!(indexes, (1..=all.len() as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_reaches_the_standby_first_moves_to_the_leader() {
    let Some(mut c) = Cluster::start_with_standby(&["colombo"], STANDBY_ENV).await else {
        return;
    };
    let (standby_grpc, _) = c.standby_addrs();
    // The standby first in colombo's list: its writes there are answered NOT_LEADER.
    c.set_env(
        "RCPFED_NODE_HUB_ENDPOINTS",
        &format!(
            "[\"https://localhost:{}\", \"https://localhost:{}\"]",
            standby_grpc.port(),
            c.hub_addr().port()
        ),
    );
    c.stop_node("colombo").await;
    c.restart_node("colombo").await;
    let delivered = c.node_status("colombo").await.outbox_delivered;
    c.publish_policy("colombo", "first to the standby").await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", delivered + 1).await,
        "delivered through the leader"
    );
    let log = std::fs::read_to_string(c.root().join("colombo.log")).expect("colombo's log");
    assert!(
        log.lines()
            .any(|l| l.contains("switching to the next hub endpoint")
                && l.contains("NOT_LEADER")
                && l.contains(&format!("localhost:{}", standby_grpc.port()))),
        "colombo did not move on from the standby's NOT_LEADER\n{}",
        c.logs()
    );
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo"]).await,
        "the mirror matches the log"
    );
}

/// A standby follows the registry: a version published through the leader is put in force on
/// the standby too (its read RPCs and admission use it) without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_puts_a_new_registry_version_in_force() {
    let Some(c) = Cluster::start_with_standby(&["colombo"], STANDBY_ENV).await else {
        return;
    };
    let (standby_grpc, _) = c.standby_addrs();
    let mut standby = hub_at(&c, standby_grpc, "operator").await;
    let in_force = |r: v1::GetRegistryResponse| r.document.map(|d| d.version);
    let before = standby
        .get_registry(v1::GetRegistryRequest { version: 0 })
        .await
        .unwrap_or_else(|s| panic!("GetRegistry on the standby: {}", describe(&s)))
        .into_inner();
    assert_eq!(in_force(before), Some(1));

    let w = crate::registry::Work::new(&c);
    let draft = w.draft(&w.v1(), "v2", &["--state-until", "colombo:LKA=2020-01-01"]);
    let signed = w.build_and_sign(&draft, "v2", &[1, 2]);
    let out = w.publish_ok(&signed);
    assert!(out.contains("published registry version 2"), "{out}");

    let mut version = None;
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        let answer = standby
            .get_registry(v1::GetRegistryRequest { version: 0 })
            .await
            .unwrap_or_else(|s| panic!("GetRegistry on the standby: {}", describe(&s)))
            .into_inner();
        version = in_force(answer);
        if version == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        version,
        Some(2),
        "the standby did not put version 2 in force\n{}",
        c.logs()
    );
    // Still a standby: writes there are refused with NOT_LEADER.
    let refused = standby
        .publish_registry(v1::PublishRegistryRequest { registry: None })
        .await
        .expect_err("a write on the standby");
    assert_eq!(reason(&refused), "NOT_LEADER", "{}", describe(&refused));
}
