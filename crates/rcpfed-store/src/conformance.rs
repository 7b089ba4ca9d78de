//! Backend-neutral behaviour checks for [`HubStore`] and [`NodeStore`].
//!
//! Every implementation runs the same suite: pass a factory that returns a fresh, empty store
//! to [`hub_suite`] / [`node_suite`]. The checks panic on failure, like test assertions.
//! Compiled for this crate's tests and, for other backends, with the `conformance` feature.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    ChainHead, Cosignature, DeliveryState, FlagRecord, Hash, HubStore, LogNode, MirroredStatement,
    NewCheckpoint, NewEquivocation, NodeStore, OutboxCounts, OwnStatement, StatementFilter,
    StoreError, StoredCheckpoint, StoredFlag, StoredStatement, TrustedCheckpoint,
};
use rcpfed_core::Digest;
use std::sync::{Arc, Barrier};

pub mod indicators;

/// Runs every hub check, each on a fresh store from `new_store`.
pub fn hub_suite(new_store: &dyn Fn() -> Arc<dyn HubStore>) {
    hub_append_and_lookup(&*new_store());
    hub_conflicting_append_writes_nothing(&*new_store());
    hub_chain_heads(&*new_store());
    hub_list_filters_and_paging(&*new_store());
    hub_equivocations(&*new_store());
    hub_equivocations_capped_per_member(&*new_store());
    hub_feed_paged_by_bytes(&*new_store());
    hub_statement_by_feed_index(&*new_store());
    hub_log_nodes(&*new_store());
    hub_log_node_conflict_writes_nothing(&*new_store());
    hub_checkpoint_cas(&*new_store());
    hub_cosignatures(&*new_store());
    hub_cosignature_batch(&*new_store());
    hub_latest_final_checkpoint(&*new_store());
    hub_flags(&*new_store());
}

/// A test flag of (node, seq) for `key_id` revoked by `registry_version`.
pub fn flag(node_id: &str, seq: u64, key_id: &str, registry_version: u64) -> FlagRecord {
    FlagRecord {
        node_id: node_id.to_string(),
        seq,
        reason: format!("key {key_id} revoked by registry version {registry_version}"),
        key_id: key_id.to_string(),
        registry_version,
        flagged_at_ms: 1_700_000_000_000 + i64::try_from(registry_version % 1_000_000).unwrap(),
    }
}

/// Runs every node check, each on a fresh store from `new_store`.
pub fn node_suite(new_store: &dyn Fn() -> Arc<dyn NodeStore>) {
    node_append_own_checks_seq(&*new_store());
    node_request_id_dedupe(&*new_store());
    node_delivery_states(&*new_store());
    node_mirror(&*new_store());
    node_mirror_batch(&*new_store());
    node_concurrent_append_never_forks(new_store());
    node_mirror_by_node_seq(&*new_store());
    node_trusted_checkpoint_cas(&*new_store());
    node_forks_dedupe(&*new_store());
}

/// A test statement; its digest is derived from node, seq and `salt`. Its envelope is not a
/// real one, so its kind is one the indicator view does not apply (see [`indicators`] for
/// real statements).
pub fn statement(feed_index: u64, node_id: &str, seq: u64, salt: &str) -> StoredStatement {
    let kind = if seq.is_multiple_of(2) {
        "test_even"
    } else {
        "test_odd"
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
        decoded: crate::DecodedStatement::default(),
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
        chunked: false,
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
        decoded: crate::DecodedStatement::default(),
    }
}

/// A test tree hash derived from `tag`.
pub fn hash(tag: &str) -> Hash {
    Digest::of(tag.as_bytes()).0
}

/// A test checkpoint of `size`; root and note are derived from size and `salt`.
pub fn checkpoint(size: u64, salt: &str) -> NewCheckpoint {
    NewCheckpoint {
        size,
        root: hash(&format!("root/{size}/{salt}")),
        note: format!("example.org/log\n{size}\n{salt}\n\n— hub sig\n"),
        created_at_ms: 1_700_000_000_000 + i64::try_from(size % 1_000_000).unwrap(),
    }
}

/// A test cosignature of the checkpoint of `size` by `witness`.
pub fn cosignature(size: u64, witness: &str, salt: &str) -> Cosignature {
    Cosignature {
        size,
        witness_id: witness.to_string(),
        line: format!("— {witness} {size} {salt}"),
        timestamp: 1_700_000_000 + size % 1_000_000,
    }
}

fn stored(cp: &NewCheckpoint, cosignature_count: u32) -> StoredCheckpoint {
    StoredCheckpoint {
        size: cp.size,
        root: cp.root,
        note: cp.note.clone(),
        created_at_ms: cp.created_at_ms,
        cosignature_count,
    }
}

pub(crate) fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, context: &str) {
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

    store.append(&[], &[], &[], &[], None).unwrap();
    let batch = vec![
        a1.clone(),
        statement(2, "node-b", 1, "x"),
        statement(3, "node-a", 2, "x"),
    ];
    store.append(&batch, &[], &[], &[], None).unwrap();
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
        store.append(&[statement(5, "node-a", 3, "x")], &[], &[], &[], None),
        "feed index gap",
    );
    assert_conflict(
        store.append(&[statement(3, "node-a", 3, "x")], &[], &[], &[], None),
        "feed index reused",
    );
    store
        .append(&[statement(4, "node-a", 3, "x")], &[], &[], &[], None)
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
            &[],
            &[],
            None,
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
        assert_conflict(
            store.append(&statements, &[], &evidence, &[], None),
            context,
        );
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
    store
        .append(std::slice::from_ref(&fresh), &[], &[], &[], None)
        .unwrap();
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
    store.append(&batch[..3], &[], &[], &[], None).unwrap();
    store.append(&batch[3..], &[], &[], &[], None).unwrap();
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
        store.append(chunk, &[], &[], &[], None).unwrap();
    }
    let nodes = [None, Some("node-a"), Some("node-b"), Some("node-x")];
    let kinds = [None, Some("test_odd"), Some("test_even")];
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
    // By bytes: a page stops before its envelopes and receipts pass the bound (at least one
    // statement), and says that more follow; paging by bytes sees every statement once.
    let size = |s: &StoredStatement| s.envelope.len() + s.receipt.len();
    let (one, more) = store.list_statements_within(&filter, 0, 100, 1).unwrap();
    assert_eq!((one, more), (all[..1].to_vec(), true));
    let two = size(&all[0]) + size(&all[1]);
    let (page, more) = store.list_statements_within(&filter, 0, 100, two).unwrap();
    assert_eq!((page, more), (all[..2].to_vec(), true));
    let (page, more) = store
        .list_statements_within(&filter, 0, 2, usize::MAX)
        .unwrap();
    assert_eq!((page, more), (all[..2].to_vec(), true));
    let (page, more) = store
        .list_statements_within(&filter, 28, 100, usize::MAX)
        .unwrap();
    assert_eq!((page, more), (all[28..].to_vec(), false));
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (page, more) = store
            .list_statements_within(&filter, after, 100, two)
            .unwrap();
        if let Some(last) = page.last() {
            after = last.feed_index;
        }
        paged.extend(page);
        if !more {
            break;
        }
    }
    assert_eq!(paged, all);
}

/// Evidence is stored once, listed with both envelopes, filtered and paged.
/// Evidence is kept for at most [`crate::MAX_EQUIVOCATIONS_PER_MEMBER`] seqs of a member;
/// other members are not affected.
pub fn hub_equivocations_capped_per_member(store: &dyn HubStore) {
    let cap = crate::MAX_EQUIVOCATIONS_PER_MEMBER as u64;
    let accepted: Vec<StoredStatement> = (1..=cap + 2)
        .map(|seq| statement(seq, "node-a", seq, "c"))
        .chain([statement(cap + 3, "node-b", 1, "c")])
        .collect();
    let evidence: Vec<NewEquivocation> = accepted
        .iter()
        .map(|st| NewEquivocation {
            node_id: st.node_id.clone(),
            seq: st.seq,
            accepted_digest: st.digest,
            conflicting_digest: statement(0, &st.node_id, st.seq, "evil").digest,
            conflicting_envelope: b"conflicting".to_vec(),
            detected_at_ms: 1,
        })
        .collect();
    store.append(&accepted, &[], &[], &[], None).unwrap();
    store.append(&[], &[], &evidence, &[], None).unwrap();
    let kept = |node: &str| store.list_equivocations(Some(node), 0, 1000).unwrap();
    let a = kept("node-a");
    assert_eq!(a.len() as u64, cap);
    // The first ones are kept.
    assert!(a.iter().zip(1..).all(|(e, seq)| e.seq == seq));
    assert_eq!(kept("node-b").len(), 1);
}

/// The feed is read in pieces bounded by bytes (at least one entry each).
pub fn hub_feed_paged_by_bytes(store: &dyn HubStore) {
    let all: Vec<StoredStatement> = (1..=5).map(|i| statement(i, "node-a", i, "f")).collect();
    store.append(&all, &[], &[], &[], None).unwrap();
    let one = all[0].envelope.len() + all[0].receipt.len();
    assert_eq!(store.list_feed(0, 100, 0).unwrap(), all[..1].to_vec());
    assert_eq!(store.list_feed(0, 100, 2 * one).unwrap(), all[..2].to_vec());
    assert_eq!(
        store.list_feed(2, 100, usize::MAX).unwrap(),
        all[2..].to_vec()
    );
    assert_eq!(
        store.list_feed(0, 3, usize::MAX).unwrap(),
        all[..3].to_vec()
    );
    assert!(store.list_feed(5, 100, usize::MAX).unwrap().is_empty());
}

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
        .append(
            std::slice::from_ref(&a1),
            &[],
            &[ev_a.clone(), ev_a.clone()],
            &[],
            None,
        )
        .unwrap();
    let ev_b = evidence(&b1, "evil", 20);
    let ev_a2 = evidence(&a1, "evil2", 30);
    store
        .append(
            std::slice::from_ref(&b1),
            &[],
            &[ev_a.clone(), ev_b.clone(), ev_a2.clone()],
            &[],
            None,
        )
        .unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 2);

    // Only the first conflicting statement of a seq is kept: ev_a2 adds nothing.
    let listed = store.list_equivocations(None, 0, 100).unwrap();
    assert_eq!(listed.len(), 2);
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
    assert_ne!(listed[0].conflicting_digest, ev_a2.conflicting_digest);

    let only_a = store.list_equivocations(Some("node-a"), 0, 100).unwrap();
    assert_eq!(only_a, vec![listed[0].clone()]);
    assert!(
        store
            .list_equivocations(Some("node-a"), listed[0].id, 100)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_equivocations(None, 0, 1).unwrap(),
        listed[..1].to_vec()
    );
    assert_eq!(
        store.list_equivocations(None, listed[0].id, 1).unwrap(),
        listed[1..].to_vec()
    );
    // Paged by bytes: a budget below one entry still gives one entry, and says more follow.
    let (first, more) = store.list_equivocations_within(None, 0, 100, 1).unwrap();
    assert_eq!((first, more), (listed[..1].to_vec(), true));
    let (all, more) = store
        .list_equivocations_within(None, 0, 100, usize::MAX)
        .unwrap();
    assert_eq!((all, more), (listed.clone(), false));
    let (by_count, more) = store
        .list_equivocations_within(None, 0, 1, usize::MAX)
        .unwrap();
    assert_eq!((by_count, more), (listed[..1].to_vec(), true));
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
    assert_conflict(store.append_own(&own(2, "s", None), &[]), "first seq 2");
    assert_conflict(store.append_own(&own(0, "s", None), &[]), "seq 0");
    // Delivery fields of the input are ignored: a new statement is Pending.
    let delivered_input = OwnStatement {
        state: DeliveryState::Delivered,
        attempts: 3,
        last_error: "old".into(),
        receipt: Some(b"r".to_vec()),
        feed_index: Some(9),
        ..own(1, "s", None)
    };
    store.append_own(&delivered_input, &[]).unwrap();
    assert_eq!(store.head().unwrap(), Some((1, own(1, "s", None).digest)));
    assert_eq!(
        store.list_own(u64::MAX, 10).unwrap(),
        vec![own(1, "s", None)]
    );
    assert_conflict(store.append_own(&own(1, "t", None), &[]), "seq reused");
    assert_conflict(store.append_own(&own(3, "s", None), &[]), "seq skipped");
    assert_conflict(
        store.append_own(
            &OwnStatement {
                digest: own(1, "s", None).digest,
                ..own(2, "s", None)
            },
            &[],
        ),
        "digest reused",
    );
    store.append_own(&own(2, "s", None), &[]).unwrap();
    assert_eq!(store.head().unwrap(), Some((2, own(2, "s", None).digest)));
    assert_eq!(store.latest_revision("policy").unwrap(), 2);
    assert_eq!(store.latest_revision("other").unwrap(), 0);
}

/// Request ids are unique and found again.
pub fn node_request_id_dedupe(store: &dyn NodeStore) {
    assert_eq!(store.own_by_request_id("r1").unwrap(), None);
    let first = own(1, "s", Some("r1"));
    store.append_own(&first, &[]).unwrap();
    assert_eq!(store.own_by_request_id("r1").unwrap(), Some(first.clone()));
    assert_conflict(
        store.append_own(&own(2, "s", Some("r1")), &[]),
        "request id reused",
    );
    assert_eq!(store.head().unwrap(), Some((1, first.digest)));
    // Statements without a request id never collide.
    store.append_own(&own(2, "s", None), &[]).unwrap();
    store.append_own(&own(3, "s", None), &[]).unwrap();
    store.append_own(&own(4, "s", Some("r2")), &[]).unwrap();
    assert_eq!(
        store.own_by_request_id("r2").unwrap().map(|s| s.seq),
        Some(4)
    );
}

/// Pending → Delivered / Rejected, attempts, counts and listing.
pub fn node_delivery_states(store: &dyn NodeStore) {
    for seq in 1..=4 {
        store.append_own(&own(seq, "d", None), &[]).unwrap();
    }
    assert_eq!(
        store.outbox_counts().unwrap(),
        OutboxCounts {
            pending: 4,
            delivered: 0,
            rejected: 0,
            oldest_pending_ms: Some(own(1, "d", None).created_at_ms),
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
            rejected: 1,
            oldest_pending_ms: Some(own(3, "d", None).created_at_ms),
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

    store.mark_delivered(3, b"receipt-3", 8).unwrap();
    store.mark_delivered(4, b"receipt-4", 9).unwrap();
    assert_eq!(
        store.outbox_counts().unwrap().oldest_pending_ms,
        None,
        "nothing pending: no oldest"
    );
}

/// A batch of mirror inserts stores every entry as one-by-one inserts do; an entry refused
/// in a batch leaves it and every later entry unstored.
pub fn node_mirror_batch(store: &dyn NodeStore) {
    store.mirror_insert_batch(&[]).unwrap();
    assert_eq!(store.mirror_cursor().unwrap(), 0);
    let m1 = mirrored(1, "node-a", 1, "b");
    let m2 = mirrored(2, "node-b", 1, "b");
    let m3 = mirrored(3, "node-a", 2, "b");
    store
        .mirror_insert_batch(&[m1.clone(), m2.clone(), m3.clone()])
        .unwrap();
    assert_eq!(store.mirror_cursor().unwrap(), 3);
    assert_eq!(
        store.mirror_list(None, 0, 10, usize::MAX).unwrap().0,
        vec![m1.clone(), m2.clone(), m3.clone()]
    );
    // Entries already mirrored are no-ops in a batch too.
    let m4 = mirrored(4, "node-b", 2, "b");
    store
        .mirror_insert_batch(&[m3.clone(), m4.clone()])
        .unwrap();
    assert_eq!(store.mirror_cursor().unwrap(), 4);

    let m5 = mirrored(5, "node-a", 3, "b");
    let forged = mirrored(6, "node-a", 1, "forged");
    let m7 = mirrored(7, "node-b", 3, "b");
    assert_conflict(
        store.mirror_insert_batch(&[m5, forged, m7]),
        "a batch repeating a (node, seq) at another index",
    );
    let cursor = store.mirror_cursor().unwrap();
    assert!(
        cursor == 4 || cursor == 5,
        "after a refused batch the cursor is {cursor}: only entries before the refused one may be stored"
    );
    assert_eq!(store.mirror_count().unwrap(), cursor);
    assert!(store.mirror_by_node_seq("node-b", 3).unwrap().is_none());
}

/// Mirror inserts are idempotent and refuse a second history or a feed that goes back.
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
    assert_conflict(
        store.mirror_insert(&mirrored(3, "node-b", 2, "m")),
        "a new entry below the mirror's head (the feed went back)",
    );
    assert_eq!(store.mirror_count().unwrap(), 3);
    assert_eq!(store.mirror_cursor().unwrap(), 5);

    assert_eq!(
        store.mirror_list(None, 0, 10, usize::MAX).unwrap().0,
        vec![m1.clone(), m2.clone(), m5.clone()]
    );
    assert_eq!(
        store
            .mirror_list(Some("node-a"), 0, 10, usize::MAX)
            .unwrap()
            .0,
        vec![m1.clone(), m5.clone()]
    );
    assert_eq!(
        store.mirror_list(None, 1, 1, usize::MAX).unwrap().0,
        vec![m2.clone()]
    );
    assert_eq!(
        store
            .mirror_list(Some("node-a"), 1, 10, usize::MAX)
            .unwrap()
            .0,
        vec![m5.clone()]
    );
    assert!(
        store
            .mirror_list(None, 5, 10, usize::MAX)
            .unwrap()
            .0
            .is_empty()
    );
    // By bytes: at least one statement, and whether more follow.
    assert_eq!(
        store.mirror_list(None, 0, 10, 1).unwrap(),
        (vec![m1.clone()], true)
    );
    let two = m1.envelope.len() + m1.receipt.len() + m2.envelope.len() + m2.receipt.len();
    assert_eq!(
        store.mirror_list(None, 0, 10, two).unwrap(),
        (vec![m1.clone(), m2.clone()], true)
    );
    assert_eq!(
        store.mirror_list(None, 0, 3, usize::MAX).unwrap(),
        (vec![m1.clone(), m2.clone(), m5.clone()], false)
    );

    // By kind: the test kind follows the seq (odd: m1, m2; even: m5).
    assert_ne!(m1.kind, m5.kind);
    assert_eq!(
        store
            .mirror_list_kind(&m1.kind, 0, 10, usize::MAX)
            .unwrap()
            .0,
        vec![m1.clone(), m2.clone()]
    );
    assert_eq!(
        store
            .mirror_list_kind(&m1.kind, 1, 1, usize::MAX)
            .unwrap()
            .0,
        vec![m2]
    );
    assert_eq!(
        store
            .mirror_list_kind(&m5.kind, 0, 10, usize::MAX)
            .unwrap()
            .0,
        vec![m5.clone()]
    );
    assert!(
        store
            .mirror_list_kind(&m5.kind, 5, 10, usize::MAX)
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        store.mirror_list_kind(&m1.kind, 0, 10, 1).unwrap(),
        (vec![m1.clone()], true)
    );
    assert!(
        store
            .mirror_list_kind("coherence_report", 0, 10, usize::MAX)
            .unwrap()
            .0
            .is_empty()
    );
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
                store.append_own(&own(1, salt, None), &[])
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
                    match store.append_own(&own(seq, salt, None), &[]) {
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

/// statement_by_feed_index finds exactly the statement at that index.
pub fn hub_statement_by_feed_index(store: &dyn HubStore) {
    assert_eq!(store.statement_by_feed_index(1).unwrap(), None);
    let batch = [
        statement(1, "node-a", 1, "f"),
        statement(2, "node-b", 1, "f"),
    ];
    store.append(&batch, &[], &[], &[], None).unwrap();
    assert_eq!(
        store.statement_by_feed_index(1).unwrap().as_ref(),
        Some(&batch[0])
    );
    assert_eq!(
        store.statement_by_feed_index(2).unwrap().as_ref(),
        Some(&batch[1])
    );
    assert_eq!(store.statement_by_feed_index(0).unwrap(), None);
    assert_eq!(store.statement_by_feed_index(3).unwrap(), None);
    assert_eq!(store.statement_by_feed_index(u64::MAX).unwrap(), None);
}

/// Log nodes round-trip, alone or batched, and re-storing the same hash is idempotent.
pub fn hub_log_nodes(store: &dyn HubStore) {
    assert_eq!(store.log_node(0, 0).unwrap(), None);
    assert!(store.log_nodes(&[]).unwrap().is_empty());
    let nodes = vec![
        (0, 0, hash("l0/0")),
        (0, 1, hash("l0/1")),
        (1, 0, hash("l1/0")),
        (0, 2, hash("l0/2")),
        (63, 0, hash("l63/0")),
        (0, i64::MAX as u64, hash("l0/max")),
    ];
    // Log nodes may be stored without statements, and with them.
    store
        .append(
            &[statement(1, "node-a", 1, "n")],
            &[],
            &[],
            &nodes[..3],
            None,
        )
        .unwrap();
    store.append(&[], &[], &[], &nodes[3..], None).unwrap();
    for &(level, index, h) in &nodes {
        assert_eq!(
            store.log_node(level, index).unwrap(),
            Some(h),
            "({level}, {index})"
        );
    }
    assert_eq!(store.log_node(1, 1).unwrap(), None);
    assert_eq!(store.log_node(2, 0).unwrap(), None);
    assert_eq!(store.log_node(0, u64::MAX).unwrap(), None);
    assert_eq!(
        store
            .log_nodes(&[(1, 0), (1, 1), (0, 2), (0, 0), (0, 0)])
            .unwrap(),
        vec![
            Some(hash("l1/0")),
            None,
            Some(hash("l0/2")),
            Some(hash("l0/0")),
            Some(hash("l0/0"))
        ]
    );
    // The same hash again (also twice in one batch) is ignored.
    store
        .append(
            &[],
            &[],
            &[],
            &[nodes[0], nodes[0], (0, 3, hash("l0/3"))],
            None,
        )
        .unwrap();
    assert_eq!(store.log_node(0, 0).unwrap(), Some(hash("l0/0")));
    assert_eq!(store.log_node(0, 3).unwrap(), Some(hash("l0/3")));
    assert_eq!(store.last_feed_index().unwrap(), 1);
    // Out-of-range keys are refused, not truncated.
    assert_conflict(
        store.append(&[], &[], &[], &[(64, 0, hash("x"))], None),
        "level 64",
    );
    assert_conflict(
        store.append(&[], &[], &[], &[(0, u64::MAX, hash("x"))], None),
        "index beyond i64",
    );
}

/// A log node rewriting history refuses the whole batch: statements, evidence, other nodes
/// and the checkpoint.
pub fn hub_log_node_conflict_writes_nothing(store: &dyn HubStore) {
    let a1 = statement(1, "node-a", 1, "c");
    store
        .append(
            std::slice::from_ref(&a1),
            &[],
            &[],
            &[(0, 0, hash("leaf0"))],
            Some(&checkpoint(1, "c")),
        )
        .unwrap();
    let a2 = statement(2, "node-a", 2, "c");
    let ev = NewEquivocation {
        node_id: "node-a".into(),
        seq: 1,
        accepted_digest: a1.digest,
        conflicting_digest: Digest::of(b"evil"),
        conflicting_envelope: b"evil".to_vec(),
        detected_at_ms: 5,
    };
    let cases: Vec<(&str, Vec<LogNode>)> = vec![
        (
            "stored node, other hash",
            vec![
                (0, 1, hash("leaf1")),
                (1, 0, hash("n10")),
                (0, 0, hash("forged")),
            ],
        ),
        (
            "same key twice in the batch, other hash",
            vec![
                (0, 1, hash("leaf1")),
                (1, 0, hash("n10")),
                (0, 1, hash("forged")),
            ],
        ),
    ];
    for (context, nodes) in cases {
        assert_conflict(
            store.append(
                std::slice::from_ref(&a2),
                &[],
                std::slice::from_ref(&ev),
                &nodes,
                Some(&checkpoint(2, "c")),
            ),
            context,
        );
        assert_eq!(store.last_feed_index().unwrap(), 1, "{context}");
        assert!(
            store.list_equivocations(None, 0, 10).unwrap().is_empty(),
            "{context}"
        );
        assert_eq!(
            store.log_nodes(&[(0, 0), (0, 1), (1, 0)]).unwrap(),
            vec![Some(hash("leaf0")), None, None],
            "{context}"
        );
        assert_eq!(
            store.latest_checkpoint().unwrap(),
            Some(stored(&checkpoint(1, "c"), 0)),
            "{context}"
        );
        assert_eq!(store.checkpoint_at(2).unwrap(), None, "{context}");
    }
    // A statement conflict also drops the batch's nodes and checkpoint.
    assert_conflict(
        store.append(
            &[statement(2, "node-a", 1, "other")],
            &[],
            &[],
            &[(0, 1, hash("leaf1"))],
            Some(&checkpoint(2, "c")),
        ),
        "statement conflict",
    );
    assert_eq!(store.log_node(0, 1).unwrap(), None);
    assert_eq!(store.checkpoint_at(2).unwrap(), None);
    // The corrected batch goes through.
    store
        .append(
            &[a2],
            &[],
            &[ev],
            &[(0, 1, hash("leaf1")), (1, 0, hash("n10"))],
            Some(&checkpoint(2, "c")),
        )
        .unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 2);
    assert_eq!(store.list_equivocations(None, 0, 10).unwrap().len(), 1);
    assert_eq!(store.log_node(1, 0).unwrap(), Some(hash("n10")));
    assert_eq!(
        store.latest_checkpoint().unwrap(),
        Some(stored(&checkpoint(2, "c"), 0))
    );
}

/// Checkpoints only grow: a size not above the latest is refused with the whole batch.
pub fn hub_checkpoint_cas(store: &dyn HubStore) {
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    assert_eq!(store.checkpoint_at(0).unwrap(), None);
    // The empty tree may be checkpointed first.
    store
        .append(&[], &[], &[], &[], Some(&checkpoint(0, "a")))
        .unwrap();
    assert_eq!(
        store.latest_checkpoint().unwrap(),
        Some(stored(&checkpoint(0, "a"), 0))
    );
    store
        .append(
            &[
                statement(1, "node-a", 1, "k"),
                statement(2, "node-a", 2, "k"),
            ],
            &[],
            &[],
            &[],
            Some(&checkpoint(2, "a")),
        )
        .unwrap();
    let refused = [
        ("same size, same checkpoint", checkpoint(2, "a")),
        ("same size, other root", checkpoint(2, "b")),
        ("smaller size", checkpoint(1, "b")),
        ("empty tree again", checkpoint(0, "b")),
    ];
    for (context, cp) in &refused {
        assert_conflict(
            store.append(
                &[statement(3, "node-a", 3, "k")],
                &[],
                &[],
                &[(0, 2, hash("leaf2"))],
                Some(cp),
            ),
            context,
        );
        assert_eq!(store.last_feed_index().unwrap(), 2, "{context}");
        assert_eq!(store.log_node(0, 2).unwrap(), None, "{context}");
        assert_eq!(
            store.latest_checkpoint().unwrap(),
            Some(stored(&checkpoint(2, "a"), 0)),
            "{context}"
        );
    }
    assert_eq!(store.checkpoint_at(1).unwrap(), None);
    // Sizes may skip (the hub checkpoints per batch).
    store
        .append(&[], &[], &[], &[], Some(&checkpoint(7, "a")))
        .unwrap();
    assert_eq!(
        store.checkpoint_at(0).unwrap(),
        Some(stored(&checkpoint(0, "a"), 0))
    );
    assert_eq!(
        store.checkpoint_at(2).unwrap(),
        Some(stored(&checkpoint(2, "a"), 0))
    );
    assert_eq!(
        store.latest_checkpoint().unwrap(),
        Some(stored(&checkpoint(7, "a"), 0))
    );
    assert_eq!(store.checkpoint_at(u64::MAX).unwrap(), None);
    assert_conflict(
        store.append(&[], &[], &[], &[], Some(&checkpoint(u64::MAX, "a"))),
        "size beyond i64",
    );
}

/// Cosignatures are upserted per (size, witness) and counted per distinct witness.
pub fn hub_cosignatures(store: &dyn HubStore) {
    assert_conflict(
        store.add_cosignature(&cosignature(1, "w1", "a")),
        "no checkpoint",
    );
    assert!(store.cosignatures(1).unwrap().is_empty());
    store
        .append(&[], &[], &[], &[], Some(&checkpoint(1, "c")))
        .unwrap();
    store
        .append(&[], &[], &[], &[], Some(&checkpoint(3, "c")))
        .unwrap();
    assert_conflict(
        store.add_cosignature(&cosignature(2, "w1", "a")),
        "no checkpoint of that size",
    );
    assert!(store.cosignatures(2).unwrap().is_empty());

    assert_eq!(
        store.add_cosignature(&cosignature(3, "w2", "a")).unwrap(),
        1
    );
    assert_eq!(
        store.add_cosignature(&cosignature(3, "w1", "a")).unwrap(),
        2
    );
    // A witness re-cosigning replaces its line and timestamp without counting twice.
    let newer = Cosignature {
        timestamp: 1_800_000_000,
        ..cosignature(3, "w1", "b")
    };
    assert_eq!(store.add_cosignature(&newer).unwrap(), 2);
    assert_eq!(
        store.add_cosignature(&cosignature(1, "w3", "a")).unwrap(),
        1
    );
    assert_eq!(
        store.cosignatures(3).unwrap(),
        vec![newer.clone(), cosignature(3, "w2", "a")]
    );
    assert_eq!(
        store.cosignatures(1).unwrap(),
        vec![cosignature(1, "w3", "a")]
    );
    assert_eq!(
        store.checkpoint_at(3).unwrap().unwrap().cosignature_count,
        2
    );
    assert_eq!(
        store.checkpoint_at(1).unwrap().unwrap().cosignature_count,
        1
    );
    assert_eq!(
        store
            .latest_checkpoint()
            .unwrap()
            .unwrap()
            .cosignature_count,
        2
    );
    assert_eq!(
        store.add_cosignature(&cosignature(3, "w3", "a")).unwrap(),
        3
    );
    assert_eq!(
        store.checkpoint_at(3).unwrap().unwrap().cosignature_count,
        3
    );
    assert_conflict(
        store.add_cosignature(&Cosignature {
            timestamp: u64::MAX,
            ..cosignature(3, "w4", "a")
        }),
        "timestamp beyond i64",
    );
    assert_eq!(
        store.checkpoint_at(3).unwrap().unwrap().cosignature_count,
        3
    );
}

/// A batch of cosignatures is stored in one call: each counted as if stored alone and in order,
/// a refused one (no such checkpoint, a size beyond i64) leaving the others stored.
pub fn hub_cosignature_batch(store: &dyn HubStore) {
    assert!(store.add_cosignatures(&[]).unwrap().is_empty());
    store
        .append(&[], &[], &[], &[], Some(&checkpoint(2, "b")))
        .unwrap();
    store
        .append(&[], &[], &[], &[], Some(&checkpoint(5, "b")))
        .unwrap();
    let rewritten = Cosignature {
        timestamp: 1_800_000_000,
        ..cosignature(5, "w1", "later")
    };
    let batch = [
        cosignature(5, "w1", "a"),
        cosignature(4, "w1", "a"),
        cosignature(5, "w2", "a"),
        cosignature(2, "w1", "a"),
        rewritten.clone(),
        cosignature(u64::MAX, "w1", "a"),
        cosignature(5, "w3", "a"),
    ];
    let outcomes = store.add_cosignatures(&batch).unwrap();
    assert_eq!(outcomes.len(), batch.len());
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().unwrap();
    assert_eq!(next().unwrap(), 1);
    assert_conflict(next(), "no checkpoint of size 4");
    assert_eq!(next().unwrap(), 2);
    assert_eq!(next().unwrap(), 1);
    // The same witness twice in one batch: the later line wins, counted once.
    assert_eq!(next().unwrap(), 2);
    assert_conflict(next(), "size beyond i64");
    assert_eq!(next().unwrap(), 3);
    assert_eq!(
        store.cosignatures(5).unwrap(),
        vec![
            rewritten,
            cosignature(5, "w2", "a"),
            cosignature(5, "w3", "a")
        ]
    );
    assert!(store.cosignatures(4).unwrap().is_empty());
    assert_eq!(
        store.cosignatures(2).unwrap(),
        vec![cosignature(2, "w1", "a")]
    );
    assert_eq!(
        store.checkpoint_at(5).unwrap().unwrap().cosignature_count,
        3
    );
    assert_eq!(
        store.checkpoint_at(2).unwrap().unwrap().cosignature_count,
        1
    );
    assert_eq!(store.latest_final_checkpoint(3).unwrap().unwrap().size, 5);
}

/// latest_final_checkpoint picks the largest checkpoint that reached the quorum.
pub fn hub_latest_final_checkpoint(store: &dyn HubStore) {
    for quorum in [0, 1, 2] {
        assert_eq!(store.latest_final_checkpoint(quorum).unwrap(), None);
    }
    for size in [1, 2, 3, 4] {
        store
            .append(&[], &[], &[], &[], Some(&checkpoint(size, "q")))
            .unwrap();
    }
    // Counts by size: 1 → 2, 2 → 3, 3 → 1, 4 → 0.
    for (size, witnesses) in [(1, 2), (2, 3), (3, 1)] {
        for w in 0..witnesses {
            store
                .add_cosignature(&cosignature(size, &format!("w{w}"), "q"))
                .unwrap();
        }
    }
    let final_size = |quorum| {
        store
            .latest_final_checkpoint(quorum)
            .unwrap()
            .map(|c| c.size)
    };
    assert_eq!(final_size(0), Some(4));
    assert_eq!(final_size(1), Some(3));
    assert_eq!(final_size(2), Some(2));
    assert_eq!(final_size(3), Some(2));
    assert_eq!(final_size(4), None);
    assert_eq!(final_size(u32::MAX), None);
    assert_eq!(
        store.latest_final_checkpoint(2).unwrap(),
        Some(stored(&checkpoint(2, "q"), 3))
    );
    // More cosignatures make a newer checkpoint final.
    store.add_cosignature(&cosignature(4, "w0", "q")).unwrap();
    assert_eq!(final_size(2), Some(2));
    store.add_cosignature(&cosignature(4, "w1", "q")).unwrap();
    assert_eq!(final_size(2), Some(4));
    assert_eq!(final_size(3), Some(2));
}

/// mirror_by_node_seq finds exactly the mirrored statement of that (node, seq).
pub fn node_mirror_by_node_seq(store: &dyn NodeStore) {
    assert_eq!(store.mirror_by_node_seq("node-a", 1).unwrap(), None);
    let m1 = mirrored(1, "node-a", 1, "s");
    let m2 = mirrored(4, "node-b", 1, "s");
    store.mirror_insert(&m1).unwrap();
    store.mirror_insert(&m2).unwrap();
    assert_eq!(store.mirror_by_node_seq("node-a", 1).unwrap(), Some(m1));
    assert_eq!(store.mirror_by_node_seq("node-b", 1).unwrap(), Some(m2));
    assert_eq!(store.mirror_by_node_seq("node-a", 2).unwrap(), None);
    assert_eq!(store.mirror_by_node_seq("node-c", 1).unwrap(), None);
    assert_eq!(store.mirror_by_node_seq("node-a", u64::MAX).unwrap(), None);
}

/// A test trusted checkpoint of `size`, root derived from size and `salt`.
pub fn trusted(size: u64, salt: &str) -> TrustedCheckpoint {
    let cp = checkpoint(size, salt);
    TrustedCheckpoint {
        size,
        root: cp.root,
        note: cp.note,
    }
}

/// advance_trusted is a compare-and-swap that never shrinks or forks; refusals write nothing.
pub fn node_trusted_checkpoint_cas(store: &dyn NodeStore) {
    assert_eq!(store.trusted_checkpoint().unwrap(), None);
    assert_conflict(
        store.advance_trusted(3, &trusted(5, "t")),
        "nothing stored yet",
    );
    assert_eq!(store.trusted_checkpoint().unwrap(), None);
    store.advance_trusted(0, &trusted(3, "t")).unwrap();
    assert_eq!(store.trusted_checkpoint().unwrap(), Some(trusted(3, "t")));

    let refused = [
        ("stale expected size", 0, trusted(5, "t")),
        ("wrong expected size", 4, trusted(5, "t")),
        ("shrinks", 3, trusted(2, "t")),
        ("same size, other root", 3, trusted(3, "forged")),
    ];
    for (context, expected, new) in &refused {
        assert_conflict(store.advance_trusted(*expected, new), context);
        assert_eq!(
            store.trusted_checkpoint().unwrap(),
            Some(trusted(3, "t")),
            "{context}"
        );
    }
    // The same checkpoint again is a no-op (even with another note, the stored one is kept).
    store.advance_trusted(3, &trusted(3, "t")).unwrap();
    store
        .advance_trusted(
            3,
            &TrustedCheckpoint {
                note: "other note".into(),
                ..trusted(3, "t")
            },
        )
        .unwrap();
    assert_eq!(store.trusted_checkpoint().unwrap(), Some(trusted(3, "t")));
    store.advance_trusted(3, &trusted(9, "t")).unwrap();
    assert_eq!(store.trusted_checkpoint().unwrap(), Some(trusted(9, "t")));
    assert_conflict(
        store.advance_trusted(3, &trusted(12, "t")),
        "old expected size",
    );
    assert_conflict(
        store.advance_trusted(9, &trusted(u64::MAX, "t")),
        "size beyond i64",
    );
    assert_eq!(store.trusted_checkpoint().unwrap(), Some(trusted(9, "t")));

    // Two racers from the same trusted size: exactly one wins.
    let results = std::thread::scope(|scope| {
        let racers: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|salt| scope.spawn(move || store.advance_trusted(9, &trusted(10, salt))))
            .collect();
        racers
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(store.trusted_checkpoint().unwrap().unwrap().size, 10);
}

/// Fork evidence is kept once per (trusted, conflicting) pair, in detection order.
pub fn node_forks_dedupe(store: &dyn NodeStore) {
    assert!(store.forks().unwrap().is_empty());
    store
        .record_fork("t1", "c1", "same size, other root", 10)
        .unwrap();
    store.record_fork("t1", "c1", "reported again", 20).unwrap();
    store.record_fork("t1", "c2", "inconsistent", 30).unwrap();
    store.record_fork("c1", "t1", "swapped", 40).unwrap();
    let forks = store.forks().unwrap();
    let summary: Vec<_> = forks
        .iter()
        .map(|f| {
            (
                f.trusted_note.as_str(),
                f.conflicting_note.as_str(),
                f.problem.as_str(),
                f.detected_at_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("t1", "c1", "same size, other root", 10),
            ("t1", "c2", "inconsistent", 30),
            ("c1", "t1", "swapped", 40),
        ]
    );
    assert!(forks.windows(2).all(|w| w[0].id < w[1].id));
}

/// Flags after acceptance (issue 4): only for stored statements, deduped on
/// (node, seq, key, registry version), all-or-nothing per batch, paged by id.
pub fn hub_flags(store: &dyn HubStore) {
    assert_conflict(
        store.flag_statements(&[flag("node-a", 1, "k1", 2)]),
        "flag before any statement",
    );
    assert_eq!(store.flag_statements(&[]).unwrap(), 0);
    let a1 = statement(1, "node-a", 1, "f");
    store
        .append(
            &[
                a1.clone(),
                statement(2, "node-a", 2, "f"),
                statement(3, "node-b", 1, "f"),
            ],
            &[],
            &[],
            &[],
            None,
        )
        .unwrap();

    // A duplicate within one batch counts once.
    let first = [
        flag("node-a", 1, "k1", 2),
        flag("node-a", 1, "k1", 2),
        flag("node-b", 1, "k1", 2),
    ];
    assert_eq!(store.flag_statements(&first).unwrap(), 2);
    // Re-flagging keeps the first record; another key or registry version is a new flag.
    let again = FlagRecord {
        reason: "other words".to_string(),
        flagged_at_ms: 9,
        ..flag("node-a", 1, "k1", 2)
    };
    let second = [
        again,
        flag("node-a", 1, "k2", 2),
        flag("node-a", 1, "k1", 3),
    ];
    assert_eq!(store.flag_statements(&second).unwrap(), 2);
    assert_eq!(store.flag_statements(&first).unwrap(), 0);

    let listed = store.list_flags(0, 100).unwrap();
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id));
    let as_record = |f: &StoredFlag| f.flag.clone();
    assert_eq!(
        listed.iter().map(as_record).collect::<Vec<_>>(),
        vec![
            first[0].clone(),
            first[2].clone(),
            second[1].clone(),
            second[2].clone()
        ]
    );

    // Any flag of a statement not stored fails the whole batch.
    for bad in [
        flag("node-a", 9, "k1", 2),
        flag("node-x", 1, "k1", 2),
        flag("node-a", 0, "k1", 2),
        flag("node-a", u64::MAX, "k1", 2),
        flag("node-a", 2, "k1", u64::MAX),
    ] {
        assert_conflict(
            store.flag_statements(&[flag("node-a", 2, "k9", 4), bad.clone()]),
            &format!("flag of {bad:?}"),
        );
    }
    assert_eq!(store.list_flags(0, 100).unwrap(), listed);

    // Paging.
    assert_eq!(store.list_flags(0, 2).unwrap(), listed[..2].to_vec());
    assert_eq!(
        store.list_flags(listed[1].id, 2).unwrap(),
        listed[2..].to_vec()
    );
    assert!(store.list_flags(listed[3].id, 100).unwrap().is_empty());
    assert!(store.list_flags(u64::MAX, 100).unwrap().is_empty());
    assert!(store.list_flags(0, 0).unwrap().is_empty());

    // Flagged statements stay stored.
    assert_eq!(store.statement_by_node_seq("node-a", 1).unwrap(), Some(a1));
    assert_eq!(store.count_statements().unwrap(), 3);
}
