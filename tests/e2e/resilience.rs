//! Failures: the hub down while nodes publish, nodes restarting with undelivered statements, the
//! hub killed with SIGKILL, a node offline while the feed moves on.

use crate::harness::{
    Cluster, HUB_PRELUDE, TIMEOUT, is_catalogue, is_registry, keyed, node_statements,
};
use rcpfed_core::statement::Statement;
use rcpfed_proto::v1;

/// Asserts the hub holds `node`'s statements 1..=n exactly once each, in feed order, each
/// chained to the previous one.
async fn assert_chain_at_hub(c: &Cluster, node: &str, n: u64) -> Vec<v1::StatementRecord> {
    let records = c.hub_statements_of(node).await;
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let want: Vec<u64> = (1..=n).collect();
    assert_eq!(seqs, want, "{node}: seqs 1..={n} exactly once, in order");
    for pair in records.windows(2) {
        assert!(
            pair[0].feed_index < pair[1].feed_index,
            "feed order increases"
        );
        let env = pair[1].envelope.clone().expect("envelope");
        let st = Statement::decode(&env.payload).expect("payload decodes");
        assert_eq!(
            st.header.prev_digest.map(|d| d.0.to_vec()),
            Some(pair[0].digest.clone()),
            "{} chains to {}",
            pair[1].name,
            pair[0].name
        );
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_down_while_a_node_publishes_then_everything_is_delivered_once() {
    let mut c = Cluster::start(&["colombo", "midwa"]).await;
    // Something already delivered and mirrored before the outage.
    c.publish_policy("midwa", "Before the outage").await;
    assert_eventually!(c, TIMEOUT, c.delivered("midwa", 1).await, "midwa delivered");
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo", "midwa"]).await,
        "mirrors before the outage"
    );

    let status = c.stop_hub().await;
    assert!(status.success(), "hub exits cleanly on SIGTERM: {status}");
    for i in 1..=5 {
        let r = c.publish_policy("colombo", &format!("Offline {i}")).await;
        assert_eq!(r.seq, i, "signing does not need the hub");
    }
    let s = c.node_status("colombo").await;
    assert_eq!((s.head_seq, s.outbox_delivered), (5, 0));
    assert_eq!(s.outbox_pending, 5, "all five wait in the outbox");

    c.start_hub().await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", 5).await,
        "colombo delivers all five after the hub returns"
    );
    assert_chain_at_hub(&c, "colombo", 5).await;
    // The hub prelude (registry version 1, catalogue version 1), midwa#1 and colombo#1..=5:
    // the restart logged no second registry or catalogue version.
    let hub = c.hub_statements().await;
    assert_eq!(hub.len() as u64, HUB_PRELUDE + 6);
    assert_eq!(hub.iter().filter(|r| is_registry(r)).count(), 1);
    assert_eq!(hub.iter().filter(|r| is_catalogue(r)).count(), 1);
    assert_eq!(node_statements(&hub).len(), 6);
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo", "midwa"]).await,
        "both mirrors catch up with the hub"
    );
    // Still exactly once after things settle.
    assert_chain_at_hub(&c, "colombo", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restart_with_a_non_empty_outbox_delivers_in_order() {
    let mut c = Cluster::start(&["colombo"]).await;
    c.stop_hub().await;
    let mut digests = Vec::new();
    for i in 1..=3 {
        digests.push(
            c.publish_policy("colombo", &format!("Queued {i}"))
                .await
                .digest,
        );
    }
    c.kill_node("colombo").await;
    c.start_hub().await;
    c.restart_node("colombo").await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", 3).await,
        "the restarted node delivers its outbox"
    );
    let records = assert_chain_at_hub(&c, "colombo", 3).await;
    let at_hub: Vec<Vec<u8>> = records.into_iter().map(|r| r.digest).collect();
    assert_eq!(at_hub, digests, "the statements signed before the kill");
    assert_eq!(c.node_status("colombo").await.head_seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_sigkill_after_acknowledgement_loses_nothing() {
    let mut c = Cluster::start(&["colombo", "abu-dhabi"]).await;
    c.publish_policy("colombo", "First").await;
    c.publish_policy("abu-dhabi", "Second").await;
    c.publish_policy("colombo", "Third").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 2).await, "colombo acked");
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("abu-dhabi", 1).await,
        "abu-dhabi acked"
    );
    let before = c.hub_statements().await;
    assert_eq!(
        before.len() as u64,
        HUB_PRELUDE + 3,
        "the registry version, the catalogue and three statements"
    );
    assert!(is_registry(&before[0]), "the registry version comes first");
    assert!(is_catalogue(&before[1]), "then the catalogue");

    c.kill_hub().await;
    c.start_hub().await;

    let after = c.hub_statements().await;
    assert_eq!(
        keyed(&after),
        keyed(&before),
        "every acknowledged statement survives"
    );
    let mut hub = c.hub_client("operator").await;
    for record in &before {
        let got = hub
            .get_statement(v1::GetStatementRequest {
                name: record.name.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("GetStatement {}: {s:?}", record.name))
            .into_inner()
            .statement
            .expect("statement");
        assert_eq!(got.digest, record.digest);
        assert_eq!(got.envelope, record.envelope);
        assert_eq!(got.receipt, record.receipt);
    }

    // The chain continues after the restart.
    let next = c.publish_policy("colombo", "Fourth").await;
    assert_eq!(next.seq, 3);
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", 3).await,
        "colombo#3 delivered"
    );
    assert_chain_at_hub(&c, "colombo", 3).await;
    let all = c.hub_statements().await;
    assert_eq!(
        all.len(),
        before.len() + 1,
        "no second registry or catalogue version after the restart"
    );
    let last = all.last().expect("colombo#3");
    let next_index = before.len() as u64 + 1;
    assert_eq!(
        last.feed_index, next_index,
        "the feed continues at {next_index}"
    );
    assert_eq!(last.name, "nodes/colombo/statements/3");
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo", "abu-dhabi"]).await,
        "mirrors follow the restarted hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_catches_up_with_the_feed() {
    let mut c = Cluster::start(&["colombo", "midwa"]).await;
    c.publish_policy("colombo", "Seen live").await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo", "midwa"]).await
            && node_statements(&c.hub_statements().await).len() == 1,
        "midwa mirrors the first statement"
    );
    let exit = c.stop_node("midwa").await;
    assert!(exit.success(), "a node exits cleanly on SIGTERM: {exit}");
    c.publish_policy("colombo", "Missed one").await;
    c.publish_policy("colombo", "Missed two").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 3).await, "delivered");

    c.restart_node("midwa").await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["midwa"]).await,
        "midwa catches up"
    );
    // The hub prelude (registry version 1, catalogue version 1) and colombo#1..=3.
    let size = HUB_PRELUDE + 3;
    let mirror = c.mirror("midwa").await;
    assert_eq!(mirror.len() as u64, size, "no duplicates");
    assert!(is_registry(&mirror[0]), "the registry version comes first");
    assert!(is_catalogue(&mirror[1]), "then the catalogue");
    let mut names: Vec<&str> = mirror.iter().map(|r| r.name.as_str()).collect();
    names.dedup();
    assert_eq!(names.len() as u64, size, "no duplicates");
    let s = c.node_status("midwa").await;
    assert_eq!((s.mirror_count, s.feed_cursor), (size, size));
}

/// The value of `series` (a metric name with its labels, as exposed) in a Prometheus text
/// exposition.
fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// A burst queued while the hub is down goes out with several statements in flight: the hub
/// commits some of one node's statements together (impossible one at a time), and every
/// statement arrives once, in seq order, chained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_delivered_with_several_statements_in_flight_in_order() {
    use crate::harness::http_get;
    const BURST: u64 = 40;
    let mut c = Cluster::start(&["colombo"]).await;
    c.stop_hub().await;
    for i in 1..=BURST {
        c.publish_policy("colombo", &format!("Burst {i}")).await;
    }
    c.start_hub().await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", BURST).await,
        "the burst is delivered"
    );
    assert_chain_at_hub(&c, "colombo", BURST).await;
    let outbox = c.outbox("colombo").await;
    assert_eq!(outbox.len() as u64, BURST);
    assert!(
        outbox
            .iter()
            .all(|e| e.state == v1::DeliveryState::Delivered as i32),
        "every statement delivered: {outbox:?}"
    );
    let exposition = http_get(&c.hub_ops().to_string(), "/metrics").await;
    let batches = metric(&exposition, "rcpfed_hub_commit_batch_size_count").expect("batch count");
    let single = metric(
        &exposition,
        r#"rcpfed_hub_commit_batch_size_bucket{le="1.0"}"#,
    )
    .expect("batches of one");
    assert!(
        single < batches,
        "some batch held more than one of colombo's statements ({single} of {batches} held one)"
    );
}

/// A hub killed (SIGKILL) while a node has several statements in flight loses none it
/// acknowledged: each keeps its receipt, the node's window picks up where the hub stopped,
/// and every statement arrives once, in seq order, chained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_sigkill_with_several_statements_in_flight_loses_nothing_acknowledged() {
    // Long enough that the kill lands mid-burst (not asserted: a fast machine may deliver it
    // all first, and the durability checks below hold either way).
    const BURST: u64 = 200;
    let mut c = Cluster::start(&["colombo"]).await;
    c.stop_hub().await;
    for i in 1..=BURST {
        c.publish_policy("colombo", &format!("In flight {i}")).await;
    }
    c.start_hub().await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.node_status("colombo").await.outbox_delivered >= 3,
        "the first statements are acknowledged"
    );
    c.kill_hub().await;
    // What the node holds receipts for when the hub died.
    let acknowledged: Vec<(u64, v1::Envelope)> = c
        .outbox("colombo")
        .await
        .into_iter()
        .filter(|e| e.state == v1::DeliveryState::Delivered as i32)
        .map(|e| (e.seq, e.receipt.expect("a delivered entry has its receipt")))
        .collect();
    assert!(acknowledged.len() >= 3, "{acknowledged:?}");
    eprintln!(
        "the hub was killed with {} of {BURST} statements acknowledged",
        acknowledged.len()
    );

    c.start_hub().await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", BURST).await,
        "the rest of the burst is delivered"
    );
    let records = assert_chain_at_hub(&c, "colombo", BURST).await;
    for (seq, receipt) in &acknowledged {
        let record = records
            .iter()
            .find(|r| r.seq == *seq)
            .unwrap_or_else(|| panic!("colombo#{seq} was acknowledged and is gone"));
        assert_eq!(
            record.receipt.as_ref(),
            Some(receipt),
            "colombo#{seq} keeps the receipt it was acknowledged with"
        );
    }
}
