//! A large snapshot's view is applied in the background (issue 11): the receipt does not wait
//! for it, readers see it all or not at all (`feed_size` says how far the view is), a SIGKILL of
//! the hub during the apply loses nothing, and another member's statement is not held up by it,
//! at the hub nor in a node's mirror.

use crate::harness::{Cluster, MigStock, RawNode, TIMEOUT, describe, undated_states};
use rcpfed_core::chunks::encode_chunks;
use rcpfed_core::statement::{
    Body, DocumentKind, Header, IndicatorSnapshot, Observation, ObservationAction, Statement,
};
use rcpfed_proto::v1;
use rcpfed_proto::v1::submit_snapshot_request::Part;

/// Observations per chunk: a few dozen chunks for the snapshots below.
const PER_CHUNK: usize = 5_000;

/// `n` distinct valid MIG_STOCK observations of `member`'s undated member states, one year each
/// from 1950 on.
pub(crate) fn mig_stock(c: &Cluster, member: &str, n: usize) -> Vec<Observation> {
    MigStock {
        years: (1950..2025).map(|year| year.to_string()).collect(),
        ..MigStock::new(undated_states(c, member))
    }
    .take(n)
}

/// Sends `raw`'s next statement: a chunked MIG_STOCK snapshot of `n` observations; returns
/// the feed index the hub gave it.
pub(crate) async fn send_large_snapshot(c: &Cluster, raw: &mut RawNode, n: usize) -> u64 {
    let observations = mig_stock(c, &raw.node_id, n);
    send_chunked(c, raw, &observations, 1).await
}

/// Sends `raw`'s next statement: revision `revision` of its large MIG_STOCK snapshot, chunked;
/// returns the feed index the hub gave it.
async fn send_chunked(
    c: &Cluster,
    raw: &mut RawNode,
    observations: &[Observation],
    revision: u32,
) -> u64 {
    let (manifest, bytes) = encode_chunks(observations, PER_CHUNK);
    let statement = Statement {
        header: Header {
            document: format!("regions/{}/indicators/mig_stock/large", raw.node_id),
            revision,
            ..raw.header(DocumentKind::IndicatorSnapshot)
        },
        body: Body::Indicators(IndicatorSnapshot {
            indicator: "MIG_STOCK".into(),
            observations: Vec::new(),
            chunks: Some(manifest),
        }),
    };
    let envelope = raw.sign(&statement);
    let mut parts = vec![v1::SubmitSnapshotRequest {
        part: Some(Part::Envelope(envelope.to_proto())),
    }];
    parts.extend(bytes.into_iter().map(|b| v1::SubmitSnapshotRequest {
        part: Some(Part::Chunk(b)),
    }));
    let answer = raw
        .client
        .clone()
        .submit_snapshot(tokio_stream::iter(parts))
        .await
        .unwrap_or_else(|s| panic!("snapshot refused: {}", describe(&s)))
        .into_inner();
    assert!(!answer.duplicate);
    raw.seq = statement.header.seq;
    raw.head = Some(envelope.digest());
    let record = c
        .hub_statements_of(&raw.node_id)
        .await
        .pop()
        .expect("the snapshot is stored");
    assert_eq!(record.seq, raw.seq);
    record.feed_index
}

pub(crate) fn of_node(node: &str) -> v1::ObservationQuery {
    v1::ObservationQuery {
        indicator: "MIG_STOCK".into(),
        node_ids: vec![node.into()],
        ..Default::default()
    }
}

/// One page of the hub's view: (`feed_size`, records on it).
pub(crate) async fn hub_view(
    c: &Cluster,
    query: &v1::ObservationQuery,
    page_size: i32,
) -> (u64, usize) {
    view_at(c, "hub", query, page_size).await
}

/// One page of the view at `at` (the hub or a node): (`feed_size`, records on it).
async fn view_at(
    c: &Cluster,
    at: &str,
    query: &v1::ObservationQuery,
    page_size: i32,
) -> (u64, usize) {
    let page = c
        .indicators(at)
        .await
        .query_observations(v1::QueryObservationsRequest {
            query: Some(query.clone()),
            page_size,
            page_token: String::new(),
        })
        .await
        .unwrap_or_else(|s| panic!("QueryObservations: {}", describe(&s)))
        .into_inner();
    (page.feed_size, page.observations.len())
}

/// A reader sees the snapshot at `index` entirely or not at all: none of its records while
/// `feed_size` is below it.
async fn assert_all_or_nothing(c: &Cluster, node: &str, index: u64, n: usize) -> bool {
    let (feed_size, records) = hub_view(c, &of_node(node), 10_000).await;
    if feed_size < index {
        assert_eq!(
            records, 0,
            "feed_size {feed_size}: the snapshot at {index} is not visible"
        );
        false
    } else {
        let (all, _) = c
            .query_observations("hub", &of_node(node), 10_000)
            .await
            .expect("query");
        assert_eq!(all.len(), n, "the whole snapshot once feed_size reaches it");
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_view_is_applied_in_the_background_and_survives_a_sigkill() {
    const N: usize = 60_000;
    let mut c = Cluster::start(&["colombo"]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let index = send_large_snapshot(&c, &mut raw, N).await;
    // Right after the receipt the view may still lack it; either way, all or nothing.
    let applied_at_receipt = assert_all_or_nothing(&c, "colombo", index, N).await;
    eprintln!("view applied when the receipt came: {applied_at_receipt}");

    c.kill_hub().await;
    c.start_hub().await;
    assert_eventually!(
        c,
        TIMEOUT * 3,
        hub_view(&c, &of_node("colombo"), 1).await.0 >= index,
        "the restarted hub applies the view to the end"
    );
    let (records, _) = c
        .query_observations("hub", &of_node("colombo"), 10_000)
        .await
        .expect("query");
    assert_eq!(records.len(), N);
    let mut values: Vec<f64> = records
        .iter()
        .filter_map(|r| r.observation.as_ref().and_then(|o| o.obs_value))
        .collect();
    values.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (0..N).map(|i| i as f64).collect();
    assert_eq!(values, expected, "every observation once, as signed");

    // The next snapshot of the same node and indicator is checked against the applied view:
    // a REPLACE of a key of the first one is accepted.
    let mut first = mig_stock(&c, "colombo", 1);
    first[0].action = ObservationAction::Replace;
    first[0].obs_value = Some(1.5);
    let revision = Statement {
        header: Header {
            document: "regions/colombo/indicators/mig_stock/large".into(),
            revision: 2,
            ..raw.header(DocumentKind::IndicatorSnapshot)
        },
        body: Body::Indicators(IndicatorSnapshot {
            indicator: "MIG_STOCK".into(),
            observations: first,
            chunks: None,
        }),
    };
    raw.accept(&revision).await;
}

/// A later large snapshot that replaces every key of an earlier one is applied a piece per
/// transaction on SQLite too (before, in one transaction that every commit waited for):
/// another member's statement gets its receipt before the view reaches the snapshot, and every
/// page a reader gets, read in one transaction, holds all of one area's earlier values or all
/// of its new ones, never a mix and never a key missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_over_versions_in_force_holds_up_no_one_and_shows_all_or_nothing() {
    const N: usize = 60_000;
    let c = Cluster::start(&["colombo", "abu-dhabi"]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let mut other = RawNode::connect(&c, "abu-dhabi").await;
    let earlier = mig_stock(&c, "colombo", N);
    let first = send_chunked(&c, &mut raw, &earlier, 1).await;
    assert_eventually!(
        c,
        TIMEOUT * 3,
        hub_view(&c, &of_node("colombo"), 1).await.0 >= first,
        "the first snapshot's view is applied"
    );
    let replacing: Vec<Observation> = earlier
        .iter()
        .map(|o| Observation {
            action: ObservationAction::Replace,
            obs_value: o.obs_value.map(|v| v + 0.5),
            ..o.clone()
        })
        .collect();
    let second = send_chunked(&c, &mut raw, &replacing, 2).await;
    let policy = other.policy("sent while the replacing view is applied");
    let (_, small) = other.accept(&policy).await;
    assert!(small.receipt.is_some());
    let (feed_size, _) = hub_view(&c, &of_node("colombo"), 1).await;
    assert!(
        feed_size < second,
        "the small statement's receipt came before the replacing snapshot's view was applied \
         (feed_size {feed_size}, snapshot at {second})"
    );
    // One area's observations: fewer than a page, so each sample is one read.
    let area = earlier[0].ref_area.clone();
    let in_area = earlier.iter().filter(|o| o.ref_area == area).count();
    let query = v1::ObservationQuery {
        ref_areas: vec![area],
        ..of_node("colombo")
    };
    let (mut saw_earlier, mut saw_new) = (0, 0);
    assert_eventually!(
        c,
        TIMEOUT * 6,
        {
            let page = c
                .indicators("hub")
                .await
                .query_observations(v1::QueryObservationsRequest {
                    query: Some(query.clone()),
                    page_size: 10_000,
                    page_token: String::new(),
                })
                .await
                .unwrap_or_else(|s| panic!("QueryObservations: {}", describe(&s)))
                .into_inner();
            let halves = page
                .observations
                .iter()
                .filter(|r| {
                    r.observation
                        .as_ref()
                        .and_then(|o| o.obs_value)
                        .is_some_and(|v| v.fract() == 0.5)
                })
                .count();
            assert_eq!(page.observations.len(), in_area, "every key, once");
            if page.feed_size < second {
                assert_eq!(
                    halves, 0,
                    "feed_size {}: only earlier values",
                    page.feed_size
                );
                saw_earlier += 1;
            } else {
                assert_eq!(
                    halves, in_area,
                    "feed_size {}: only new values",
                    page.feed_size
                );
                saw_new += 1;
            }
            page.feed_size >= second
        },
        "the replacing snapshot's view is applied"
    );
    eprintln!("samples before the replacing view: {saw_earlier}, after: {saw_new}");
}

/// While a large snapshot's view is applied, another member's statement gets its receipt
/// before the view reaches the snapshot. On PostgreSQL: a SQLite file has one writer, so there
/// a commit waits for the snapshot's apply transaction (see docs/spec/indicators.md §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_members_statement_does_not_wait_for_a_snapshot_view() {
    const N: usize = 60_000;
    let Some(c) = Cluster::start_on_postgres(&["colombo", "abu-dhabi"], &[]).await else {
        eprintln!("skipped: no PostgreSQL test server (RCPFED_TEST_POSTGRES_URL)");
        return;
    };
    let mut raw = RawNode::connect(&c, "colombo").await;
    let mut other = RawNode::connect(&c, "abu-dhabi").await;
    let index = send_large_snapshot(&c, &mut raw, N).await;
    let policy = other.policy("sent during the apply");
    let (_, small) = other.accept(&policy).await;
    assert!(small.receipt.is_some());
    let (feed_size, _) = hub_view(&c, &of_node("colombo"), 1).await;
    assert!(
        feed_size < index,
        "the small statement's receipt came before the snapshot's view was applied \
         (feed_size {feed_size}, snapshot at {index})"
    );
    // A debug build applies a few thousand observations a second on a loaded machine.
    assert_eventually!(
        c,
        TIMEOUT * 3,
        hub_view(&c, &of_node("colombo"), 1).await.0 > index,
        "the view is applied through the small statement too"
    );
    assert!(assert_all_or_nothing(&c, "colombo", index, N).await);
}

/// A node's mirror stores a large snapshot as soon as it verifies and goes on with the feed
/// while its own view applier fetches the snapshot's chunks and applies its view: a statement sent after the
/// snapshot reaches the node's mirror before the node's view reaches the snapshot, and the
/// node's readers see the snapshot all or nothing. (Before, the mirror applied the whole view
/// in the transaction that stored the snapshot, and every later entry waited for it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_mirror_goes_on_while_a_large_snapshot_view_is_applied() {
    const N: usize = 60_000;
    let c = Cluster::start(&["colombo", "abu-dhabi"]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let index = send_large_snapshot(&c, &mut raw, N).await;
    let policy = raw.policy("sent after the large snapshot");
    raw.accept(&policy).await;
    let after = c
        .hub_statements_of("colombo")
        .await
        .pop()
        .expect("the statement is stored")
        .feed_index;
    assert!(after > index);
    // Every sample: the node's view shows the snapshot entirely or not at all.
    let mut mirrored_ahead_of_view = false;
    // The hub's view and the node's are applied side by side, in debug builds.
    assert_eventually!(
        c,
        TIMEOUT * 6,
        {
            let status = c.node_status("abu-dhabi").await;
            let mirrored = status.feed_cursor;
            assert!(
                status.view_applied <= mirrored,
                "the view never passes the mirror"
            );
            let (feed_size, records) = view_at(&c, "abu-dhabi", &of_node("colombo"), 1).await;
            if feed_size < index {
                assert_eq!(records, 0, "feed_size {feed_size}: no part of the snapshot");
            }
            if mirrored >= after && feed_size < index {
                mirrored_ahead_of_view = true;
            }
            feed_size >= after
        },
        "the node's view is applied through the statement after the snapshot"
    );
    assert!(
        mirrored_ahead_of_view,
        "the statement after the snapshot was mirrored before the snapshot's view was applied"
    );
    let status = c.node_status("abu-dhabi").await;
    assert!(
        status.view_applied >= after,
        "GetNodeStatus tells how far the view is"
    );
    let (all, _) = c
        .query_observations("abu-dhabi", &of_node("colombo"), 10_000)
        .await
        .expect("query");
    assert_eq!(all.len(), N, "the whole snapshot at the node");
}
