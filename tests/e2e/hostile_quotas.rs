//! A hostile member against the hub's CPU pool and per-member quotas (issue 9, findings 2, 5,
//! 7 and 8), over real processes and real mTLS: each test reproduces the attack, asserts the
//! limit and its `RESOURCE_EXHAUSTED` reason (with `RetryInfo`), and that the federation still
//! works for everyone else.

use crate::harness::{
    Cluster, MigStock, RawNode, TIMEOUT, connect, describe, reason, undated_states,
};
use rcpfed_core::chunks::encode_chunks;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::statement::{Body, DocumentKind, Header, IndicatorSnapshot, Statement};
use rcpfed_proto::v1;
use rcpfed_proto::v1::submit_snapshot_request::Part;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

/// Asserts a quota refusal: RESOURCE_EXHAUSTED, this reason, and when to retry.
pub(crate) fn assert_quota(status: &Status, expected: &str) {
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        describe(status)
    );
    assert_eq!(reason(status), expected, "{}", describe(status));
    assert!(
        status.get_error_details().retry_info().is_some(),
        "a quota refusal says when to retry: {}",
        describe(status)
    );
}

// ----- finding 2: signature checks off the async workers -------------------------------------

/// A statement-sized envelope that costs the hub the most signature work the protocol allows:
/// a 1 MiB payload and 32 well-formed signatures by colombo's key that do not verify (each
/// one hashes the whole payload before it fails).
fn expensive_envelope(c: &Cluster) -> v1::Envelope {
    let key = c.signing_key("colombo");
    let payload: Vec<u8> = (0..1024 * 1024 - 1024).map(|i| (i % 251) as u8).collect();
    let well_formed = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, b"other".to_vec(), &key);
    let mut envelope = SignedEnvelope {
        payload_type: STATEMENT_PAYLOAD_TYPE.into(),
        payload,
        signatures: Vec::new(),
    };
    for _ in 0..32 {
        envelope.signatures.push(well_formed.signatures[0].clone());
    }
    envelope.to_proto()
}

/// Health of the hub's gRPC port over a new mTLS connection, and how long it took.
async fn grpc_health(c: &Cluster) -> Result<Duration, String> {
    let started = Instant::now();
    let channel = connect(c.hub_addr().port(), &c.tls("midwa"))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| describe(&s))?
        .into_inner()
        .status;
    if status != 1 {
        return Err(format!("health status {status}"));
    }
    Ok(started.elapsed())
}

/// Runs `probe` with a cap, so a stalled hub fails the test instead of hanging it.
async fn timed<F: std::future::Future<Output = Result<Duration, String>>>(
    probe: F,
) -> Result<Duration, String> {
    tokio::time::timeout(Duration::from_secs(15), probe)
        .await
        .unwrap_or_else(|_| Err("no answer within 15 s".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_flooding_signature_checks_does_not_stall_the_hub() {
    let c = Cluster::start(&[]).await;
    let envelope = expensive_envelope(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let (quota_refusals, checked, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    // 64 calls at once from colombo, over 4 connections, sent again as soon as answered. A
    // caller refused by the quota waits 500 ms before sending again, so loopback bandwidth
    // (1 MiB per call) is not what the test measures.
    let mut flood = Vec::new();
    for connection in 0..4 {
        let client = c.hub_client("colombo").await;
        for _ in 0..16 {
            let (mut client, envelope, stop) = (client.clone(), envelope.clone(), stop.clone());
            let (quota_refusals, checked, failed) =
                (quota_refusals.clone(), checked.clone(), failed.clone());
            flood.push(tokio::spawn(async move {
                let _ = connection;
                while !stop.load(Ordering::Relaxed) {
                    let sent = client
                        .submit_statement(v1::SubmitStatementRequest {
                            envelope: Some(envelope.clone()),
                        })
                        .await;
                    match sent {
                        Err(s) if s.code() == Code::ResourceExhausted => {
                            assert_quota(&s, "TOO_MANY_SUBMISSIONS_IN_FLIGHT");
                            quota_refusals.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(s) if s.code() == Code::Unauthenticated => {
                            checked.fetch_add(1, Ordering::Relaxed);
                        }
                        // Calls that waited out their deadline, or were cut: counted, not
                        // expected from a hub that keeps up.
                        Err(s) => {
                            if !stop.load(Ordering::Relaxed) {
                                eprintln!("flood call failed: {}", describe(&s));
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(_) => panic!("a statement with no valid signature was accepted"),
                    }
                }
            }));
        }
    }
    // Let the flood build up, then probe while it runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut midwa = RawNode::connect(&c, "midwa").await;
    let mut midwa_reads = c.hub_client("midwa").await;
    let (mut worst_health, mut worst_submit, mut worst_checkpoint) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for round in 0..6 {
        let health = timed(grpc_health(&c)).await;
        let submit = timed(async {
            let started = Instant::now();
            let statement = midwa.policy(&format!("during the flood {round}"));
            midwa.accept(&statement).await;
            Ok(started.elapsed())
        })
        .await;
        let checkpoint = timed(async {
            let started = Instant::now();
            midwa_reads
                .get_checkpoint(v1::GetCheckpointRequest::default())
                .await
                .map_err(|s| describe(&s))?;
            Ok(started.elapsed())
        })
        .await;
        eprintln!("round {round}: health {health:?}, submit {submit:?}, checkpoint {checkpoint:?}");
        worst_health = worst_health.max(health.unwrap_or(Duration::MAX));
        worst_submit = worst_submit.max(submit.unwrap_or(Duration::MAX));
        worst_checkpoint = worst_checkpoint.max(checkpoint.unwrap_or(Duration::MAX));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.expect("a flood task panicked");
    }
    let (refused, verified) = (
        quota_refusals.load(Ordering::Relaxed),
        checked.load(Ordering::Relaxed),
    );
    eprintln!(
        "flood: {verified} envelopes checked and refused (BAD_SIGNATURE), {refused} refused by the in-flight quota, {} failed; \
         worst health {worst_health:?}, worst other-member submit {worst_submit:?}, worst checkpoint read {worst_checkpoint:?}",
        failed.load(Ordering::Relaxed)
    );
    let failed = failed.load(Ordering::Relaxed);
    assert!(verified > 0, "the flood was checked at all");
    assert_eq!(
        failed, 0,
        "every flood call was answered (checked or refused by the quota), none died waiting"
    );
    assert!(
        refused > 0,
        "64 concurrent calls of one member meet the in-flight quota"
    );
    // The issue asks for answers within 1 s; on a shared 2-core test machine the bound is
    // 2 s. A hub verifying on its async workers answers in many seconds, or not at all.
    let bound = Duration::from_secs(2);
    assert!(
        worst_health < bound,
        "health on the gRPC port answered within {bound:?} during the flood (worst {worst_health:?})\n{}",
        c.logs()
    );
    assert!(
        worst_submit < bound,
        "another member's SubmitStatement answered within {bound:?} (worst {worst_submit:?})"
    );
    assert!(
        worst_checkpoint < bound,
        "GetCheckpoint answered within {bound:?} (worst {worst_checkpoint:?})"
    );
}

// ----- finding 5: feed subscriptions per member --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_subscriptions_are_capped_per_member() {
    let c = Cluster::start(&["midwa"]).await;
    let mut colombo = c.hub_client("colombo").await;
    // Subscribers that never read: each holds what the hub reads ahead for it.
    let mut held = Vec::new();
    for _ in 0..4 {
        let stream = colombo
            .subscribe_feed(v1::SubscribeFeedRequest { after_index: 0 })
            .await
            .unwrap_or_else(|s| panic!("subscription within the quota refused: {}", describe(&s)))
            .into_inner();
        held.push(stream);
    }
    let over = colombo
        .subscribe_feed(v1::SubscribeFeedRequest { after_index: 0 })
        .await
        .expect_err("a fifth subscription of one member is refused");
    assert_quota(&over, "TOO_MANY_FEED_SUBSCRIPTIONS");
    eprintln!("fifth subscription: {}", describe(&over));

    // Other members are not affected: midwa's node mirrors what it publishes, and a new
    // subscription as midwa reads the feed.
    c.publish_policy("midwa", "while colombo hogs the feed")
        .await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["midwa"]).await,
        "midwa's mirror caught up with the hub"
    );
    let mut midwa_feed = c
        .hub_client("midwa")
        .await
        .subscribe_feed(v1::SubscribeFeedRequest { after_index: 0 })
        .await
        .expect("midwa subscribes")
        .into_inner();
    let first = tokio::time::timeout(TIMEOUT, midwa_feed.message())
        .await
        .expect("the feed answers")
        .expect("a feed entry");
    assert_eq!(first.map(|e| e.feed_index), Some(1));

    // A closed subscription gives its place back.
    drop(held.pop());
    assert_eventually!(
        c,
        TIMEOUT,
        colombo
            .subscribe_feed(v1::SubscribeFeedRequest { after_index: 0 })
            .await
            .map(|s| held.push(s.into_inner()))
            .is_ok(),
        "colombo subscribes again once one of its streams is closed"
    );
}

// ----- finding 7: stored equivocation evidence per member ----------------------------------

/// A statement conflicting with `raw`'s accepted statement `seq`: same seq and predecessor,
/// different content.
fn conflicting(
    raw: &RawNode,
    seq: u64,
    prev: Option<rcpfed_core::Digest>,
    title: &str,
) -> Statement {
    let mut statement = raw.policy(title);
    statement.header.seq = seq;
    statement.header.prev_digest = prev;
    statement
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocation_evidence_is_bounded_per_member() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    raw.accept(&raw.policy("the accepted one")).await;
    // Five different statements for the same seq: each refused, only the first kept.
    let mut first_conflict = None;
    for i in 0..5 {
        let envelope = raw.sign(&conflicting(&raw, 1, None, &format!("conflict {i}")));
        first_conflict.get_or_insert(envelope.digest());
        let refused = raw
            .submit(envelope.to_proto())
            .await
            .expect_err("an equivocation is refused");
        assert_eq!(
            refused.code(),
            Code::AlreadyExists,
            "{}",
            describe(&refused)
        );
        assert_eq!(reason(&refused), "EQUIVOCATION");
    }
    let kept: Vec<v1::Equivocation> = c
        .equivocations()
        .await
        .into_iter()
        .filter(|e| e.node_id == "colombo")
        .collect();
    assert_eq!(kept.len(), 1, "one piece of evidence per seq");
    assert_eq!(
        kept[0].conflicting_digest,
        first_conflict.expect("a conflict").0.to_vec(),
        "the first conflicting statement is the one kept"
    );

    // Equivocating at many seqs: at most the per-member cap is stored.
    let cap = rcpfed_store::MAX_EQUIVOCATIONS_PER_MEMBER as u64;
    for _ in 0..cap + 2 {
        let prev = raw.head;
        let seq = raw.seq + 1;
        raw.accept(&raw.policy(&format!("statement {seq}"))).await;
        let envelope = raw.sign(&conflicting(&raw, seq, prev, &format!("double {seq}")));
        let refused = raw.submit(envelope.to_proto()).await.expect_err("refused");
        assert_eq!(reason(&refused), "EQUIVOCATION", "{}", describe(&refused));
    }
    let kept = c
        .equivocations()
        .await
        .into_iter()
        .filter(|e| e.node_id == "colombo")
        .count() as u64;
    assert_eq!(kept, cap, "evidence per member is capped at {cap}");

    // Another member is not affected: its evidence is kept, its statements accepted.
    let mut midwa = RawNode::connect(&c, "midwa").await;
    midwa.accept(&midwa.policy("midwa's first")).await;
    let envelope = midwa.sign(&conflicting(&midwa, 1, None, "midwa's double"));
    let refused = midwa
        .submit(envelope.to_proto())
        .await
        .expect_err("refused");
    assert_eq!(reason(&refused), "EQUIVOCATION");
    assert!(
        c.equivocations()
            .await
            .iter()
            .any(|e| e.node_id == "midwa" && e.conflicting_digest == envelope.digest().0.to_vec())
    );
    midwa.accept(&midwa.policy("midwa's second")).await;
}

/// The next policy summary of `raw`, about 880 KB: 11 summaries of 20 000 four-byte
/// characters (the most the rules allow per language), `tag` making it distinct.
fn big_policy(raw: &RawNode, tag: &str) -> Statement {
    let mut statement = raw.policy(tag);
    if let Body::Policy(policy) = &mut statement.body {
        policy.summary = [
            "en", "fr", "es", "ar", "zh", "ru", "pt", "de", "it", "ja", "ko",
        ]
        .iter()
        .map(|language| rcpfed_core::statement::LocalizedText {
            language: (*language).into(),
            text: format!("{tag} {}", "\u{1D11E}".repeat(19_900)),
        })
        .collect();
    }
    statement
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_equivocations_pages_large_evidence_by_bytes() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "midwa").await;
    // Ten seqs, each with an accepted and a conflicting statement of about 880 KB: some 17 MB
    // of evidence, more than one response may carry.
    for _ in 0..10 {
        let (prev, seq) = (raw.head, raw.seq + 1);
        raw.accept(&big_policy(&raw, &format!("accepted {seq}")))
            .await;
        let mut double = big_policy(&raw, &format!("double {seq}"));
        double.header.seq = seq;
        double.header.prev_digest = prev;
        let refused = raw
            .submit(raw.sign(&double).to_proto())
            .await
            .expect_err("refused");
        assert_eq!(reason(&refused), "EQUIVOCATION", "{}", describe(&refused));
    }
    // As an operator with a default client (4 MiB messages): every page fits.
    let channel = connect(c.hub_addr().port(), &c.tls("operator"))
        .await
        .expect("connect");
    let mut operator = v1::hub_service_client::HubServiceClient::new(channel);
    let (mut listed, mut pages, mut token) = (Vec::new(), 0, String::new());
    loop {
        let page = operator
            .list_equivocations(v1::ListEquivocationsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("ListEquivocations page {pages}: {}", describe(&s)))
            .into_inner();
        pages += 1;
        assert!(
            !page.equivocations.is_empty(),
            "a page holds at least one entry"
        );
        listed.extend(page.equivocations);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    eprintln!("{} entries in {pages} pages", listed.len());
    assert_eq!(listed.len(), 10);
    assert!(
        listed
            .iter()
            .all(|e| e.conflicting_envelope.is_some() && e.accepted_envelope.is_some())
    );
    // The federation still works for the equivocating member's next statement.
    raw.accept(&raw.policy("after the evidence")).await;
}

// ----- finding 8: snapshot slots and a trickling publisher ---------------------------------

/// A signed chunked MIG_STOCK snapshot of `raw`'s next seq in `chunks` chunks of 10
/// observations, and the chunk bytes.
fn chunked(
    c: &Cluster,
    raw: &RawNode,
    document: &str,
    chunks: usize,
) -> (v1::Envelope, Vec<Vec<u8>>) {
    let observations = MigStock::new(undated_states(c, &raw.node_id)).take(chunks * 10);
    let (manifest, bytes) = encode_chunks(&observations, 10);
    let statement = Statement {
        header: Header {
            document: format!("regions/{}/indicators/mig_stock/{document}", raw.node_id),
            ..raw.header(DocumentKind::IndicatorSnapshot)
        },
        body: Body::Indicators(IndicatorSnapshot {
            indicator: "MIG_STOCK".into(),
            observations: Vec::new(),
            chunks: Some(manifest),
        }),
    };
    (raw.sign(&statement).to_proto(), bytes)
}

fn part(part: Part) -> v1::SubmitSnapshotRequest {
    v1::SubmitSnapshotRequest { part: Some(part) }
}

/// Sends a whole snapshot at once.
async fn send_snapshot(
    raw: &RawNode,
    envelope: v1::Envelope,
    chunks: Vec<Vec<u8>>,
) -> Result<v1::SubmitSnapshotResponse, Status> {
    let mut parts = vec![part(Part::Envelope(envelope))];
    parts.extend(chunks.into_iter().map(|b| part(Part::Chunk(b))));
    raw.client
        .clone()
        .submit_snapshot(tokio_stream::iter(parts))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_publisher_cannot_hold_the_snapshot_slots() {
    // Short limits so the test is fast: 1.5 s between messages, and the chunks (about 12 KB
    // here) must all be in within 1.5 s plus their size at 4 KB/s.
    let c = Cluster::start_with_env(
        &[],
        &[
            ("RCPFED_HUB_SNAPSHOT_CHUNK_IDLE_MS", "1500"),
            ("RCPFED_HUB_SNAPSHOT_MIN_RATE_BYTES", "4096"),
        ],
    )
    .await;
    let colombo = RawNode::connect(&c, "colombo").await;
    let (envelope, chunks) = chunked(&c, &colombo, "trickle", 12);
    let total: usize = chunks.iter().map(Vec::len).sum();
    eprintln!("trickled snapshot: {} chunks, {total} bytes", chunks.len());
    // One chunk a second: always inside the idle limit, never at a useful rate.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let trickle = tokio::spawn(async move {
        let _ = tx.send(part(Part::Envelope(envelope))).await;
        for chunk in chunks {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            if tx.send(part(Part::Chunk(chunk))).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut trickler = colombo.client.clone();
    let trickled = tokio::spawn(async move {
        let answer = trickler
            .submit_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        (answer.map(|_| ()), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The same member cannot take the second turn, even with a valid snapshot sent at once.
    let (second, second_chunks) = chunked(&c, &colombo, "second", 2);
    let busy = send_snapshot(&colombo, second, second_chunks)
        .await
        .expect_err("a second snapshot of the same member while one is in progress is refused");
    assert_quota(&busy, "SNAPSHOT_SLOT_BUSY");

    // Another member's snapshot goes through meanwhile.
    let midwa = RawNode::connect(&c, "midwa").await;
    let (theirs, their_chunks) = chunked(&c, &midwa, "meanwhile", 2);
    let before = Instant::now();
    let accepted = tokio::time::timeout(
        Duration::from_secs(10),
        send_snapshot(&midwa, theirs, their_chunks),
    )
    .await
    .expect("midwa's snapshot is answered while colombo trickles")
    .unwrap_or_else(|s| panic!("midwa's snapshot refused: {}", describe(&s)));
    assert!(!accepted.duplicate);
    eprintln!(
        "midwa's snapshot accepted in {:?} while colombo trickles",
        before.elapsed()
    );

    // The trickler loses its slot well before it would finish (12 s at this pace).
    let (answer, took) = tokio::time::timeout(Duration::from_secs(30), trickled)
        .await
        .expect("the trickling call ends")
        .expect("task");
    trickle.abort();
    let refused = answer.expect_err("a trickling snapshot is refused");
    eprintln!("trickler cut after {took:?}: {}", describe(&refused));
    assert_quota(&refused, "SNAPSHOT_TOO_SLOW");
    assert!(
        took < Duration::from_secs(9),
        "cut at the minimum-rate limit (about 4.5 s), not after the whole trickle: {took:?}"
    );

    // Its slot is back: the same member sends a snapshot at a normal pace.
    let (again, again_chunks) = chunked(&c, &colombo, "again", 2);
    let accepted = send_snapshot(&colombo, again, again_chunks)
        .await
        .unwrap_or_else(|s| panic!("colombo's next snapshot refused: {}", describe(&s)));
    assert!(!accepted.duplicate);
}
