//! Issue 9, store: a full disk (the hub's `max_db_bytes` quota standing in for it) refuses new
//! work with UNAVAILABLE and keeps every acknowledged statement readable, then resumes by
//! itself once space returns; a node clock running ahead is told the skew; the hub's clock
//! stepping back never stamps receipts out of order.

use crate::harness::{Cluster, RawNode, TIMEOUT, assert_refused, describe, reason};
use prost::Message as _;
use rcpfed_proto::v1;
use std::time::Duration;
use tonic::Code;

/// The hub's database size in bytes (main file plus write-ahead log).
fn hub_db_bytes(c: &Cluster) -> u64 {
    let db = c.hub_db();
    let wal = db.with_extension("sqlite-wal");
    std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
}

/// Writes `max_db_bytes` into hub.toml (a top-level key, so first), or removes it.
fn set_hub_quota(c: &Cluster, bytes: Option<u64>) {
    let path = c.fed_dir().join("hub.toml");
    let text = std::fs::read_to_string(&path).expect("hub.toml");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("max_db_bytes"))
        .collect();
    let mut out = String::new();
    if let Some(b) = bytes {
        out.push_str(&format!("max_db_bytes = {b}\n"));
    }
    out.push_str(&kept.join("\n"));
    out.push('\n');
    std::fs::write(&path, out).expect("writing hub.toml");
}

/// Milliseconds since the epoch of a receipt's `accepted_at`.
fn accepted_at_ms(response: &v1::SubmitStatementResponse) -> i64 {
    let env = response.receipt.as_ref().expect("receipt");
    let receipt = v1::Receipt::decode(env.payload.as_slice()).expect("receipt decodes");
    let t = receipt.accepted_at.expect("accepted_at");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hub_refuses_with_unavailable_keeps_serving_reads_and_resumes_when_space_returns() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let mut acknowledged = Vec::new();
    for i in 0..3 {
        let (env, _) = raw
            .accept(&raw.policy(&format!("Before the quota {i}")))
            .await;
        acknowledged.push(env.digest().0.to_vec());
    }
    // A quota a little above what the hub holds now: a few more statements fit, then none.
    set_hub_quota(&c, Some(hub_db_bytes(&c) + 96 * 1024));
    // The hub re-reads its quota every 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut refused = None;
    for i in 0..300 {
        let mut statement = raw.policy(&format!("Filling the disk {i}"));
        if let rcpfed_core::statement::Body::Policy(p) = &mut statement.body {
            p.summary = vec![rcpfed_core::statement::LocalizedText {
                language: "en".into(),
                text: "x".repeat(4000),
            }];
        }
        let env = raw.sign(&statement);
        match raw.submit(env.to_proto()).await {
            Ok(response) => {
                assert!(!response.duplicate);
                raw.seq = statement.header.seq;
                raw.head = Some(env.digest());
                acknowledged.push(env.digest().0.to_vec());
            }
            Err(status) => {
                refused = Some((statement, status));
                break;
            }
        }
    }
    let (statement, status) = refused.expect("the quota never filled: no write was refused");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "STORE_FULL"),
        "{}",
        describe(&status)
    );
    assert!(
        status.message().contains("storage is full"),
        "{}",
        status.message()
    );
    // Nothing of the refused statement is stored; everything acknowledged is, and reads work.
    let before = c.hub_snapshot().await;
    let stored: Vec<Vec<u8>> = before.statements.iter().map(|s| s.1.clone()).collect();
    for digest in &acknowledged {
        assert!(
            stored.contains(digest),
            "an acknowledged statement is missing"
        );
    }
    let refused_digest = raw.sign(&statement).digest().0.to_vec();
    assert!(
        !stored.contains(&refused_digest),
        "the refused statement was stored"
    );
    // Asking again while still full: refused the same way, the hub unchanged and serving.
    assert_refused(
        raw.submit(raw.sign(&statement).to_proto()).await,
        Code::Unavailable,
        "STORE_FULL",
    );
    assert_eq!(
        c.hub_snapshot().await,
        before,
        "a refusal changed the store"
    );
    let mut client = c.hub_client("colombo").await;
    let got = client
        .get_statement(v1::GetStatementRequest {
            name: format!("nodes/colombo/statements/{}", raw.seq),
        })
        .await
        .map_err(|s| describe(&s))
        .expect("GetStatement while full");
    let got = got.into_inner().statement.expect("statement");
    assert_eq!(got.digest, *acknowledged.last().expect("some"));

    // Space returns (the operator lifts the quota); the hub takes the same statement again
    // without a restart, and the chain goes on.
    set_hub_quota(&c, None);
    let env = raw.sign(&statement);
    let mut accepted = None;
    assert_eventually!(
        c,
        TIMEOUT,
        {
            match raw.submit(env.to_proto()).await {
                Ok(r) => {
                    accepted = Some(r);
                    true
                }
                Err(s) if s.code() == Code::Unavailable => false,
                Err(s) => panic!("refused otherwise after space returned: {}", describe(&s)),
            }
        },
        "the hub resumes once space returns"
    );
    assert!(!accepted.expect("accepted").duplicate);
    raw.seq = statement.header.seq;
    raw.head = Some(env.digest());
    raw.accept(&raw.policy("After the quota")).await;
    let seqs: Vec<u64> = c
        .hub_statements_of("colombo")
        .await
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=raw.seq).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_clock_minutes_ahead_is_told_the_skew() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let mut statement = raw.policy("From a clock 7 min 12 s fast");
    // Half a second more than 7 min 12 s: the message rounds down, and the call takes a moment.
    statement.header.issued_at += time::Duration::milliseconds(432_500);
    let before = c.hub_snapshot().await;
    let status = assert_refused(
        raw.submit(raw.sign(&statement).to_proto()).await,
        Code::InvalidArgument,
        "ISSUED_AT_IN_FUTURE",
    );
    assert!(
        status.message().contains("7 min 12 s ahead")
            && status.message().contains("limit 5 min")
            && status.message().contains("NTP"),
        "the refusal names the skew: {}",
        status.message()
    );
    assert_eq!(c.hub_snapshot().await, before);
    // A clock far behind is accepted (see docs/spec/ingest.md §4): the receipt carries the hub's
    // time.
    let mut behind = raw.policy("From a clock an hour slow");
    behind.header.issued_at -= time::Duration::hours(1);
    raw.accept(&behind).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_clock_stepping_back_never_stamps_receipts_out_of_order() {
    let mut c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let (_, first) = raw.accept(&raw.policy("Before the clock steps back")).await;
    let first_ms = accepted_at_ms(&first);

    // The hub restarts with its clock an hour behind (test-only offset).
    c.stop_hub().await;
    c.set_env("RCPFED_CLOCK_OFFSET_MS", "-3600000");
    c.start_hub().await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let mut second = raw.policy("After the clock stepped back");
    // Issued by a node whose clock agrees with the hub's.
    second.header.issued_at -= time::Duration::hours(1);
    let (_, second) = raw.accept(&second).await;
    let second_ms = accepted_at_ms(&second);
    assert!(
        second_ms >= first_ms,
        "receipt stamped {second_ms} after one stamped {first_ms}"
    );
    // The feed agrees: acceptance times never decrease in feed order.
    let stamps: Vec<i64> = c
        .hub_statements()
        .await
        .iter()
        .map(|r| {
            let t = r.accepted_at.as_ref().expect("accepted_at");
            t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
        })
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "acceptance times out of order: {stamps:?}"
    );
}

/// Writes `max_db_bytes` into `<node>.toml` (a top-level key, so first), or removes it.
fn set_node_quota(c: &Cluster, node: &str, bytes: Option<u64>) {
    let path = c.fed_dir().join(format!("{node}.toml"));
    let text = std::fs::read_to_string(&path).expect("node toml");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("max_db_bytes"))
        .collect();
    let mut out = String::new();
    if let Some(b) = bytes {
        out.push_str(&format!("max_db_bytes = {b}\n"));
    }
    out.push_str(&kept.join("\n"));
    out.push('\n');
    std::fs::write(&path, out).expect("writing node toml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_publishing_with_unavailable_and_resumes_when_space_returns() {
    let c = Cluster::start(&["colombo"]).await;
    c.publish_policy("colombo", "Before the quota").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 1).await, "delivered");
    // The node's database: `data_dir` of colombo.toml, relative to the file.
    let db = c.fed_dir().join("data").join("colombo").join("node.sqlite");
    let size = std::fs::metadata(&db)
        .map(|m| m.len())
        .expect("node database")
        + std::fs::metadata(db.with_extension("sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    set_node_quota(&c, "colombo", Some(size + 64 * 1024));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut client = c.node_client("colombo", "operator").await;
    let mut published = 1;
    let mut refused = None;
    for i in 0..300 {
        let mut request = crate::harness::publish_request("colombo", &format!("Filling {i}"));
        if let Some(v1::publish_document_request::Body::PolicySummary(p)) = &mut request.body {
            p.summary = vec![v1::LocalizedText {
                language: "en".into(),
                text: "x".repeat(4000),
            }];
        }
        match client.publish_document(request.clone()).await {
            Ok(_) => published += 1,
            Err(status) => {
                refused = Some((request, status));
                break;
            }
        }
    }
    let (request, status) = refused.expect("the node's quota never filled");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "STORE_FULL"),
        "{}",
        describe(&status)
    );
    // Reads are still served, and nothing acknowledged is lost.
    let s = c.node_status("colombo").await;
    assert_eq!(s.head_seq, published, "the refused document was not signed");
    // Space returns: the same request succeeds without a restart; everything reaches the hub.
    set_node_quota(&c, "colombo", None);
    assert_eventually!(
        c,
        TIMEOUT,
        {
            match client.publish_document(request.clone()).await {
                Ok(_) => true,
                Err(s) if s.code() == Code::Unavailable => false,
                Err(s) => panic!("refused otherwise after space returned: {}", describe(&s)),
            }
        },
        "the node resumes once space returns"
    );
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", published + 1).await,
        "every acknowledged document delivered"
    );
    let seqs: Vec<u64> = c
        .hub_statements_of("colombo")
        .await
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=published + 1).collect::<Vec<_>>());
}
