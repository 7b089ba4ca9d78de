//! Backend-neutral behaviour checks for [`HubStore`] and [`NodeStore`].
//!
//! Every implementation runs the same suite: pass a factory that returns a fresh, empty store
//! to [`hub_suite`] / [`node_suite`]. The checks panic on failure, like test assertions.
//! Compiled for this crate's tests and, for other backends, with the `conformance` feature.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    ChainHead, DeliveryState, HubStore, MirroredStatement, NewEquivocation, NodeStore,
    OutboxCounts, OwnStatement, StatementFilter, StoreError, StoredStatement,
};
use rcpfed_core::Digest;
use std::sync::{Arc, Barrier};

/// Runs every hub check, each on a fresh store from `new_store`.
pub fn hub_suite(new_store: &dyn Fn() -> Arc<dyn HubStore>) {
    hub_append_and_lookup(&*new_store());
    hub_conflicting_append_writes_nothing(&*new_store());
    hub_chain_heads(&*new_store());
    hub_list_filters_and_paging(&*new_store());
    hub_equivocations(&*new_store());
}

/// Runs every node check, each on a fresh store from `new_store`.
pub fn node_suite(new_store: &dyn Fn() -> Arc<dyn NodeStore>) {
    node_append_own_checks_seq(&*new_store());
    node_request_id_dedupe(&*new_store());
    node_delivery_states(&*new_store());
    node_mirror(&*new_store());
    node_concurrent_append_never_forks(new_store());
}

/// A test statement; its digest is derived from node, seq and `salt`.
pub fn statement(feed_index: u64, node_id: &str, seq: u64, salt: &str) -> StoredStatement {
    let kind = if seq.is_multiple_of(2) {
        "indicator_snapshot"
    } else {
        "policy_summary"
    };
    StoredStatement {
        feed_index,
        node_id: node_id.to_string(),
        seq,
        digest: Digest::of(format!("{node_id}/{seq}/{salt}").as_bytes()),
        payload_type: "application/vnd.rcpfed.statement+json".to_string(),
        kind: kind.to_string(),
        document: format!("doc-{}", seq % 3),
        revision: u32::try_from(seq).unwrap(),
        envelope: format!("envelope {node_id} {seq} {salt}").into_bytes(),
        receipt: format!("receipt {feed_index}").into_bytes(),
        accepted_at_ms: 1_700_000_000_000 + i64::try_from(feed_index).unwrap(),
    }
}

/// A test own statement at `seq`; its digest is derived from seq and `salt`.
pub fn own(seq: u64, salt: &str, request_id: Option<&str>) -> OwnStatement {
    OwnStatement {
        seq,
        digest: Digest::of(format!("own/{seq}/{salt}").as_bytes()),
        document: "policy".to_string(),
        revision: u32::try_from(seq).unwrap(),
        envelope: format!("own envelope {seq} {salt}").into_bytes(),
        created_at_ms: 1_700_000_000_000 + i64::try_from(seq).unwrap(),
        request_id: request_id.map(str::to_string),
        state: DeliveryState::Pending,
        attempts: 0,
        last_error: String::new(),
        receipt: None,
        feed_index: None,
    }
}

/// A test mirrored statement; its digest is derived from node, seq and `salt`.
pub fn mirrored(feed_index: u64, node_id: &str, seq: u64, salt: &str) -> MirroredStatement {
    let st = statement(feed_index, node_id, seq, salt);
    MirroredStatement {
        feed_index,
        node_id: st.node_id,
        seq,
        digest: st.digest,
        kind: st.kind,
        document: st.document,
        revision: st.revision,
        envelope: st.envelope,
        receipt: st.receipt,
        accepted_at_ms: st.accepted_at_ms,
        mirrored_at_ms: st.accepted_at_ms + 5,
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, context: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{context}: expected Conflict, got {other:?}"),
    }
}

/// Round trips of append and the lookups, and feed-index continuity.
pub fn hub_append_and_lookup(store: &dyn HubStore) {
    assert_eq!(store.last_feed_index().unwrap(), 0);
    assert_eq!(store.count_statements().unwrap(), 0);
    assert!(store.chain_heads().unwrap().is_empty());
    let a1 = statement(1, "node-a", 1, "x");
    assert_eq!(store.statement_by_digest(&a1.digest).unwrap(), None);
    assert_eq!(store.statement_by_node_seq("node-a", 1).unwrap(), None);

    store.append(&[], &[]).unwrap();
    let batch = vec![
        a1.clone(),
        statement(2, "node-b", 1, "x"),
        statement(3, "node-a", 2, "x"),
    ];
    store.append(&batch, &[]).unwrap();
    for st in &batch {
        assert_eq!(
            store.statement_by_digest(&st.digest).unwrap().as_ref(),
            Some(st)
        );
        assert_eq!(
            store
                .statement_by_node_seq(&st.node_id, st.seq)
                .unwrap()
                .as_ref(),
            Some(st)
        );
    }
    assert_eq!(store.statement_by_node_seq("node-a", 3).unwrap(), None);
    assert_eq!(store.statement_by_node_seq("node-c", 1).unwrap(), None);
    assert_eq!(store.last_feed_index().unwrap(), 3);
    assert_eq!(store.count_statements().unwrap(), 3);

    assert_conflict(
        store.append(&[statement(5, "node-a", 3, "x")], &[]),
        "feed index gap",
    );
    assert_conflict(
        store.append(&[statement(3, "node-a", 3, "x")], &[]),
        "feed index reused",
    );
    store
        .append(&[statement(4, "node-a", 3, "x")], &[])
        .unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 4);
}

/// A batch with any violation is refused whole.
pub fn hub_conflicting_append_writes_nothing(store: &dyn HubStore) {
    store
        .append(
            &[
                statement(1, "node-a", 1, "x"),
                statement(2, "node-a", 2, "x"),
            ],
            &[],
        )
        .unwrap();
    let fresh = statement(3, "node-b", 1, "x");
    let cases: Vec<(&str, Vec<StoredStatement>, Vec<NewEquivocation>)> = vec![
        (
            "(node, seq) already stored",
            vec![fresh.clone(), statement(4, "node-a", 2, "other")],
            vec![],
        ),
        (
            "digest already stored",
            vec![
                fresh.clone(),
                StoredStatement {
                    node_id: "node-c".into(),
                    ..statement(4, "node-a", 1, "x")
                },
            ],
            vec![],
        ),
        (
            "duplicate within the batch",
            vec![fresh.clone(), statement(4, "node-b", 1, "x")],
            vec![],
        ),
        (
            "evidence without its accepted statement",
            vec![fresh.clone()],
            vec![NewEquivocation {
                node_id: "node-z".into(),
                seq: 1,
                accepted_digest: Digest::of(b"missing"),
                conflicting_digest: Digest::of(b"other"),
                conflicting_envelope: b"env".to_vec(),
                detected_at_ms: 1,
            }],
        ),
        (
            "evidence naming another statement's digest",
            vec![fresh.clone()],
            vec![NewEquivocation {
                node_id: "node-a".into(),
                seq: 2,
                accepted_digest: statement(1, "node-a", 1, "x").digest,
                conflicting_digest: Digest::of(b"other"),
                conflicting_envelope: b"env".to_vec(),
                detected_at_ms: 1,
            }],
        ),
    ];
    for (context, statements, evidence) in cases {
        assert_conflict(store.append(&statements, &evidence), context);
        assert_eq!(store.last_feed_index().unwrap(), 2, "{context}");
        assert_eq!(store.count_statements().unwrap(), 2, "{context}");
        assert_eq!(
            store.statement_by_digest(&fresh.digest).unwrap(),
            None,
            "{context}"
        );
        assert!(
            store.list_equivocations(None, 0, 10).unwrap().is_empty(),
            "{context}"
        );
    }
    // The store is still writable after the refusals.
    store.append(std::slice::from_ref(&fresh), &[]).unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 3);
}

/// chain_heads reports every node's highest seq.
pub fn hub_chain_heads(store: &dyn HubStore) {
    let mut feed = 0;
    let mut next = |node: &str, seq: u64| {
        feed += 1;
        statement(feed, node, seq, "h")
    };
    let batch = [
        next("node-b", 1),
        next("node-a", 1),
        next("node-b", 2),
        next("node-c", 1),
        next("node-b", 3),
        next("node-a", 2),
    ];
    store.append(&batch[..3], &[]).unwrap();
    store.append(&batch[3..], &[]).unwrap();
    let mut heads = store.chain_heads().unwrap();
    heads.sort_by(|x, y| x.node_id.cmp(&y.node_id));
    let head = |node: &str, seq: u64| ChainHead {
        node_id: node.into(),
        seq,
        digest: statement(0, node, seq, "h").digest,
    };
    assert_eq!(
        heads,
        vec![head("node-a", 2), head("node-b", 3), head("node-c", 1)]
    );
}

/// list_statements honours every filter combination and pages without gaps or repeats.
pub fn hub_list_filters_and_paging(store: &dyn HubStore) {
    let mut all = Vec::new();
    let mut seqs = [0u64; 2];
    for feed_index in 1..=30u64 {
        let n = usize::from(feed_index % 3 == 0);
        seqs[n] += 1;
        all.push(statement(feed_index, ["node-a", "node-b"][n], seqs[n], "l"));
    }
    for chunk in all.chunks(7) {
        store.append(chunk, &[]).unwrap();
    }
    let nodes = [None, Some("node-a"), Some("node-b"), Some("node-x")];
    let kinds = [None, Some("policy_summary"), Some("indicator_snapshot")];
    let docs = [None, Some("doc-0"), Some("doc-2")];
    for node in nodes {
        for kind in kinds {
            for doc in docs {
                let filter = StatementFilter {
                    node_id: node.map(str::to_string),
                    kind: kind.map(str::to_string),
                    document: doc.map(str::to_string),
                };
                let expected: Vec<_> = all
                    .iter()
                    .filter(|s| node.is_none_or(|n| s.node_id == n))
                    .filter(|s| kind.is_none_or(|k| s.kind == k))
                    .filter(|s| doc.is_none_or(|d| s.document == d))
                    .cloned()
                    .collect();
                assert_eq!(store.list_statements(&filter, 0, 1000).unwrap(), expected);
                let mut paged = Vec::new();
                let mut after = 0;
                loop {
                    let page = store.list_statements(&filter, after, 4).unwrap();
                    assert!(page.len() <= 4);
                    let Some(last) = page.last() else { break };
                    after = last.feed_index;
                    paged.extend(page);
                }
                assert_eq!(paged, expected, "paging {filter:?}");
            }
        }
    }
    let filter = StatementFilter::default();
    assert!(store.list_statements(&filter, 0, 0).unwrap().is_empty());
    assert!(store.list_statements(&filter, 30, 10).unwrap().is_empty());
    assert!(
        store
            .list_statements(&filter, u64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_statements(&filter, 28, usize::MAX).unwrap(),
        all[28..].to_vec()
    );
}

/// Evidence is stored once, listed with both envelopes, filtered and paged.
pub fn hub_equivocations(store: &dyn HubStore) {
    let a1 = statement(1, "node-a", 1, "e");
    let b1 = statement(2, "node-b", 1, "e");
    let evidence = |st: &StoredStatement, salt: &str, at: i64| NewEquivocation {
        node_id: st.node_id.clone(),
        seq: st.seq,
        accepted_digest: st.digest,
        conflicting_digest: statement(0, &st.node_id, st.seq, salt).digest,
        conflicting_envelope: format!("conflicting {salt}").into_bytes(),
        detected_at_ms: at,
    };
    // Evidence may arrive in the same batch as the statement it contradicts.
    let ev_a = evidence(&a1, "evil", 10);
    store
        .append(std::slice::from_ref(&a1), &[ev_a.clone(), ev_a.clone()])
        .unwrap();
    let ev_b = evidence(&b1, "evil", 20);
    let ev_a2 = evidence(&a1, "evil2", 30);
    store
        .append(
            std::slice::from_ref(&b1),
            &[ev_a.clone(), ev_b.clone(), ev_a2.clone()],
        )
        .unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 2);

    let listed = store.list_equivocations(None, 0, 100).unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id));
    let check = |got: &crate::StoredEquivocation, ev: &NewEquivocation, st: &StoredStatement| {
        assert_eq!(got.node_id, ev.node_id);
        assert_eq!(got.seq, ev.seq);
        assert_eq!(got.accepted_digest, st.digest);
        assert_eq!(got.accepted_envelope, st.envelope);
        assert_eq!(got.conflicting_digest, ev.conflicting_digest);
        assert_eq!(got.conflicting_envelope, ev.conflicting_envelope);
        assert_eq!(got.detected_at_ms, ev.detected_at_ms);
    };
    check(&listed[0], &ev_a, &a1);
    check(&listed[1], &ev_b, &b1);
    check(&listed[2], &ev_a2, &a1);

    let only_a = store.list_equivocations(Some("node-a"), 0, 100).unwrap();
    assert_eq!(only_a, vec![listed[0].clone(), listed[2].clone()]);
    assert_eq!(
        store
            .list_equivocations(Some("node-a"), listed[0].id, 100)
            .unwrap(),
        vec![listed[2].clone()]
    );
    assert_eq!(
        store.list_equivocations(None, 0, 2).unwrap(),
        listed[..2].to_vec()
    );
    assert_eq!(
        store.list_equivocations(None, listed[1].id, 2).unwrap(),
        listed[2..].to_vec()
    );
    assert!(
        store
            .list_equivocations(Some("node-x"), 0, 100)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_equivocations(None, u64::MAX, 100)
            .unwrap()
            .is_empty()
    );
}

/// append_own accepts only head + 1, and always stores Pending.
pub fn node_append_own_checks_seq(store: &dyn NodeStore) {
    assert_eq!(store.head().unwrap(), None);
    assert_eq!(store.latest_revision("policy").unwrap(), 0);
    assert_conflict(store.append_own(&own(2, "s", None)), "first seq 2");
    assert_conflict(store.append_own(&own(0, "s", None)), "seq 0");
    // Delivery fields of the input are ignored: a new statement is Pending.
    let delivered_input = OwnStatement {
        state: DeliveryState::Delivered,
        attempts: 3,
        last_error: "old".into(),
        receipt: Some(b"r".to_vec()),
        feed_index: Some(9),
        ..own(1, "s", None)
    };
    store.append_own(&delivered_input).unwrap();
    assert_eq!(store.head().unwrap(), Some((1, own(1, "s", None).digest)));
    assert_eq!(
        store.list_own(u64::MAX, 10).unwrap(),
        vec![own(1, "s", None)]
    );
    assert_conflict(store.append_own(&own(1, "t", None)), "seq reused");
    assert_conflict(store.append_own(&own(3, "s", None)), "seq skipped");
    assert_conflict(
        store.append_own(&OwnStatement {
            digest: own(1, "s", None).digest,
            ..own(2, "s", None)
        }),
        "digest reused",
    );
    store.append_own(&own(2, "s", None)).unwrap();
    assert_eq!(store.head().unwrap(), Some((2, own(2, "s", None).digest)));
    assert_eq!(store.latest_revision("policy").unwrap(), 2);
    assert_eq!(store.latest_revision("other").unwrap(), 0);
}

/// Request ids are unique and found again.
pub fn node_request_id_dedupe(store: &dyn NodeStore) {
    assert_eq!(store.own_by_request_id("r1").unwrap(), None);
    let first = own(1, "s", Some("r1"));
    store.append_own(&first).unwrap();
    assert_eq!(store.own_by_request_id("r1").unwrap(), Some(first.clone()));
    assert_conflict(
        store.append_own(&own(2, "s", Some("r1"))),
        "request id reused",
    );
    assert_eq!(store.head().unwrap(), Some((1, first.digest)));
    // Statements without a request id never collide.
    store.append_own(&own(2, "s", None)).unwrap();
    store.append_own(&own(3, "s", None)).unwrap();
    store.append_own(&own(4, "s", Some("r2"))).unwrap();
    assert_eq!(
        store.own_by_request_id("r2").unwrap().map(|s| s.seq),
        Some(4)
    );
}

/// Pending → Delivered / Rejected, attempts, counts and listing.
pub fn node_delivery_states(store: &dyn NodeStore) {
    for seq in 1..=4 {
        store.append_own(&own(seq, "d", None)).unwrap();
    }
    assert_eq!(
        store.outbox_counts().unwrap(),
        OutboxCounts {
            pending: 4,
            delivered: 0,
            rejected: 0
        }
    );
    let seqs = |v: Vec<OwnStatement>| v.into_iter().map(|s| s.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.pending(10).unwrap()), vec![1, 2, 3, 4]);

    store
        .record_attempt_failure(1, "connection refused")
        .unwrap();
    store
        .record_attempt_failure(1, "deadline exceeded")
        .unwrap();
    let one = store.pending(1).unwrap().remove(0);
    assert_eq!(
        (one.seq, one.state, one.attempts, one.last_error.as_str()),
        (1, DeliveryState::Pending, 2, "deadline exceeded")
    );

    store.mark_delivered(1, b"receipt-1", 7).unwrap();
    store.mark_rejected(2, "SEQ_GAP").unwrap();
    assert_eq!(
        store.outbox_counts().unwrap(),
        OutboxCounts {
            pending: 2,
            delivered: 1,
            rejected: 1
        }
    );
    assert_eq!(seqs(store.pending(10).unwrap()), vec![3, 4]);
    assert_eq!(seqs(store.pending(1).unwrap()), vec![3]);
    assert!(store.pending(0).unwrap().is_empty());

    let newest = store.list_own(u64::MAX, 10).unwrap();
    assert_eq!(seqs(newest.clone()), vec![4, 3, 2, 1]);
    let delivered = &newest[3];
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.receipt.as_deref(), Some(&b"receipt-1"[..]));
    assert_eq!(delivered.feed_index, Some(7));
    assert_eq!(delivered.attempts, 2);
    let rejected = &newest[2];
    assert_eq!(
        (rejected.state, rejected.last_error.as_str()),
        (DeliveryState::Rejected, "SEQ_GAP")
    );
    assert_eq!(seqs(store.list_own(u64::MAX, 2).unwrap()), vec![4, 3]);
    assert_eq!(seqs(store.list_own(3, 10).unwrap()), vec![2, 1]);
    assert!(store.list_own(1, 10).unwrap().is_empty());

    assert_conflict(store.mark_delivered(99, b"r", 1), "unknown seq delivered");
    assert_conflict(store.mark_rejected(99, "x"), "unknown seq rejected");
    assert_conflict(store.record_attempt_failure(99, "x"), "unknown seq attempt");
}

/// Mirror inserts are idempotent and refuse a second history.
pub fn node_mirror(store: &dyn NodeStore) {
    assert_eq!(store.mirror_cursor().unwrap(), 0);
    assert_eq!(store.mirror_count().unwrap(), 0);
    let m1 = mirrored(1, "node-a", 1, "m");
    let m2 = mirrored(2, "node-b", 1, "m");
    let m5 = mirrored(5, "node-a", 2, "m");
    for m in [&m1, &m2, &m5] {
        store.mirror_insert(m).unwrap();
    }
    assert_eq!(store.mirror_cursor().unwrap(), 5);
    store.mirror_insert(&m2).unwrap();
    assert_eq!(store.mirror_count().unwrap(), 3);

    assert_conflict(
        store.mirror_insert(&mirrored(2, "node-b", 1, "forged")),
        "same index, other digest",
    );
    assert_conflict(
        store.mirror_insert(&MirroredStatement {
            feed_index: 6,
            ..m1.clone()
        }),
        "same statement at another index",
    );
    assert_conflict(
        store.mirror_insert(&mirrored(6, "node-a", 1, "forged")),
        "same (node, seq) at another index",
    );
    assert_eq!(store.mirror_count().unwrap(), 3);
    assert_eq!(store.mirror_cursor().unwrap(), 5);

    assert_eq!(
        store.mirror_list(None, 0, 10).unwrap(),
        vec![m1.clone(), m2.clone(), m5.clone()]
    );
    assert_eq!(
        store.mirror_list(Some("node-a"), 0, 10).unwrap(),
        vec![m1.clone(), m5.clone()]
    );
    assert_eq!(store.mirror_list(None, 1, 1).unwrap(), vec![m2.clone()]);
    assert_eq!(
        store.mirror_list(Some("node-a"), 1, 10).unwrap(),
        vec![m5.clone()]
    );
    assert!(store.mirror_list(None, 5, 10).unwrap().is_empty());
}

/// Two threads publishing at once never fork the chain.
pub fn node_concurrent_append_never_forks(store: Arc<dyn NodeStore>) {
    // Both race for seq 1: exactly one wins, the other gets Conflict.
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|salt| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                store.append_own(&own(1, salt, None))
            })
        })
        .collect();
    let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(_)))),
        "{results:?}"
    );

    // Publishers that read the head and retry on Conflict build one gapless chain.
    let per_thread = 20;
    let workers: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|salt| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut done = 0;
                while done < per_thread {
                    let seq = store.head().unwrap().map_or(1, |(seq, _)| seq + 1);
                    match store.append_own(&own(seq, salt, None)) {
                        Ok(()) => done += 1,
                        Err(StoreError::Conflict(_)) => {}
                        Err(err) => panic!("append_own: {err}"),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let chain = store.list_own(u64::MAX, 1000).unwrap();
    let seqs: Vec<u64> = chain.iter().rev().map(|s| s.seq).collect();
    assert_eq!(seqs, (1..=1 + 2 * per_thread).collect::<Vec<u64>>());
    assert_eq!(store.head().unwrap().map(|h| h.0), Some(1 + 2 * per_thread));
}
