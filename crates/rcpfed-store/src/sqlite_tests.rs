//! The conformance suite on SQLite, plus SQLite-specific behaviour (files, pragmas, versions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::conformance::{
    self, assert_conflict, checkpoint, cosignature, hash, indicators, mirrored, own, statement,
    trusted,
};
use crate::db::{Db, Schema};
use crate::{
    HubStore, IndicatorStore, NodeStore, NodeStoreStatus, ObservationFilter, SqliteHubStore,
    SqliteNodeStore, StoreError,
};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;

/// Hands out fresh database paths in one temporary directory.
struct Paths {
    dir: TempDir,
    next: Cell<u32>,
}

impl Paths {
    fn new() -> Self {
        Paths {
            dir: tempfile::tempdir().unwrap(),
            next: Cell::new(0),
        }
    }

    fn fresh(&self) -> PathBuf {
        let n = self.next.get() + 1;
        self.next.set(n);
        self.dir.path().join(format!("store-{n}.db"))
    }
}

#[test]
fn hub_conformance() {
    let paths = Paths::new();
    conformance::hub_suite(&|| Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap()));
}

#[test]
fn node_conformance() {
    let paths = Paths::new();
    conformance::node_suite(&|| Arc::new(SqliteNodeStore::open(&paths.fresh()).unwrap()));
}

#[test]
fn hub_indicator_conformance() {
    let paths = Paths::new();
    indicators::indicator_suite(&|| {
        indicators::hub_target(Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap()))
    });
}

#[test]
fn node_indicator_conformance() {
    let paths = Paths::new();
    indicators::indicator_suite(&|| {
        indicators::node_target(Arc::new(SqliteNodeStore::open(&paths.fresh()).unwrap()))
    });
}

/// The apply step given the statement its caller decoded (the hub's commit, the node's mirror)
/// writes what it writes from the envelope alone.
#[test]
fn indicator_conformance_with_handed_statements() {
    let paths = Paths::new();
    indicators::indicator_suite(&|| {
        indicators::hub_target_handing_statements(Arc::new(
            SqliteHubStore::open(&paths.fresh()).unwrap(),
        ))
    });
    indicators::indicator_suite(&|| {
        indicators::node_target_handing_statements(Arc::new(
            SqliteNodeStore::open(&paths.fresh()).unwrap(),
        ))
    });
    let decoding = indicators::hub_target(Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap()));
    let handed = indicators::node_target_handing_statements(Arc::new(
        SqliteNodeStore::open(&paths.fresh()).unwrap(),
    ));
    indicators::same_answers(&decoding, &handed);
}

#[test]
fn hub_chunks_stored_with_statement() {
    let paths = Paths::new();
    indicators::hub_chunks_stored_with_statement(&SqliteHubStore::open(&paths.fresh()).unwrap());
}

#[test]
fn node_chunks_stored_with_own_statement() {
    let paths = Paths::new();
    indicators::node_chunks_stored_with_own_statement(
        &SqliteNodeStore::open(&paths.fresh()).unwrap(),
    );
}

/// What readers see of indicator IND: (rows, observations covered, applied feed size).
fn visible_of_ind(store: &dyn IndicatorStore) -> (usize, u64, u64) {
    let rows = store
        .query_observations(&indicators::filter("IND"), None, 10_000)
        .unwrap()
        .len();
    let covered: u64 = store
        .coverage()
        .unwrap()
        .iter()
        .map(|c| c.observation_count)
        .sum();
    (rows, covered, store.applied_feed_size().unwrap())
}

/// Every row the view's table holds, readers' or not (pieces of a snapshot included).
fn view_rows_stored(db: &Db) -> i64 {
    db.read(|c| Ok(c.query_row("SELECT count(*) FROM observations", [], |r| r.get(0))?))
        .unwrap()
}

/// On SQLite a commit waits for any view transaction, so a large snapshot of an indicator the
/// view holds nothing of is applied a piece per transaction: a commit goes through between
/// two pieces, readers see none of the snapshot until its last piece moves the view cursor,
/// and a store reopened half-way (a stopped process) applies it again from its start, with no
/// row twice.
#[test]
fn a_large_snapshot_view_goes_in_pieces_that_readers_never_see_half_of() {
    let paths = Paths::new();
    let path = paths.fresh();
    // 3 chunks of 2 500, in pieces of 2 000: the second piece ends in chunk 1.
    let n = 7_500;
    let observations = indicators::chunked_observations(n);
    let (manifest, staged) = indicators::chunks_of(&observations, 2_500);
    assert_eq!(staged.len(), 3);
    let large =
        indicators::snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    let visible = |hub: &SqliteHubStore| visible_of_ind(hub);
    let rows_stored = |hub: &SqliteHubStore| view_rows_stored(&hub.db);
    {
        // Pieces of at most 2 000 (in the hub, a piece also ends when a commit waits).
        let mut hub = SqliteHubStore::open(&path).unwrap();
        hub.view_piece_max = 2_000;
        hub.stage_chunks(&staged).unwrap();
        hub.append(&[large.stored()], &[], &[], &[], None).unwrap();
        assert_eq!(
            hub.apply_view_step().unwrap(),
            0,
            "one piece, the cursor stays"
        );
        assert_eq!(rows_stored(&hub), 2_000, "a piece is written");
        assert_eq!(visible(&hub), (0, 0, 0), "and no reader sees them");
        assert_eq!(
            hub.view_superseding().unwrap(),
            None,
            "an indicator new to the view: nothing superseded"
        );
        // A commit between two pieces: stored, its view left to the applier (in order).
        let policy = indicators::policy_entry(2, "node-b", 1, "node-b/doc", 1, &[5], 2_000);
        hub.append(&[policy.stored()], &[], &[], &[], None).unwrap();
        assert_eq!(hub.applied_feed_size().unwrap(), 0);
        assert_eq!(hub.apply_view_step().unwrap(), 0);
        assert_eq!(rows_stored(&hub), 4_000);
        assert_eq!(visible(&hub), (0, 0, 0));
        // The process stops here, half-way through chunk 1.
    }
    let mut hub = SqliteHubStore::open(&path).unwrap();
    hub.view_piece_max = 2_000;
    assert_eq!(visible(&hub), (0, 0, 0));
    let mut steps = 0;
    while hub.applied_feed_size().unwrap() < 2 {
        hub.apply_view_step().unwrap();
        steps += 1;
        assert!(steps <= 6, "the view never caught up");
    }
    // Started over: four pieces for the snapshot, then the policy summary.
    assert_eq!(steps, 5);
    assert_eq!(rows_stored(&hub), i64::try_from(n).unwrap(), "no row twice");
    assert_eq!(visible(&hub), (n, n as u64, 2));
    assert_eq!(hub.policy_coverage().unwrap().len(), 1);
}

/// What readers see of the view, every way they look (counts, so a difference reads short):
/// IND's versions in force (how many, how many from feed entry 1, the sum of their values;
/// none shown superseded), the history's rows shown superseded, the rows in force at
/// `as_of_ms` = 3 500, the revisions shown superseded, coverage, conflicts and the applied
/// feed size.
#[derive(Debug, PartialEq)]
struct ReadersView {
    in_force: usize,
    in_force_from_1: usize,
    value_sum: f64,
    shown_superseded: usize,
    in_force_at_3500: usize,
    revisions_shown_superseded: usize,
    covered: u64,
    conflicts: u64,
    feed_size: u64,
}

fn readers_view(store: &dyn IndicatorStore) -> ReadersView {
    let in_force = store
        .query_observations(&indicators::filter("IND"), None, 100_000)
        .unwrap();
    assert!(in_force.iter().all(|r| r.superseded_at_ms.is_none()));
    let mut history = indicators::filter("IND");
    history.include_history = true;
    let shown_superseded = store
        .query_observations(&history, None, 100_000)
        .unwrap()
        .iter()
        .filter(|r| r.superseded_at_ms.is_some())
        .count();
    let mut as_of = indicators::filter("IND");
    as_of.as_of_ms = Some(3_500);
    ReadersView {
        in_force: in_force.len(),
        in_force_from_1: in_force
            .iter()
            .filter(|r| r.provenance.feed_index == 1)
            .count(),
        value_sum: in_force
            .iter()
            .filter_map(|r| r.observation.obs_value)
            .sum(),
        shown_superseded,
        in_force_at_3500: store
            .query_observations(&as_of, None, 100_000)
            .unwrap()
            .len(),
        revisions_shown_superseded: store
            .revisions_since(0, 100_000)
            .unwrap()
            .0
            .iter()
            .filter(|r| r.new.superseded_at_ms.is_some())
            .count(),
        covered: store
            .coverage()
            .unwrap()
            .iter()
            .map(|c| c.observation_count)
            .sum(),
        conflicts: store.conflicts(10).unwrap().1,
        feed_size: store.applied_feed_size().unwrap(),
    }
}

/// A large snapshot that supersedes versions in force is applied a piece per transaction too
/// (issue 11: a commit waited ~10 s at a million observations): between two pieces, and in a
/// store reopened half-way, every reader sees the view as it was before the snapshot (the
/// versions it replaced still in force and not shown superseded, coverage and conflicts as
/// they were); the reopened store undoes the pieces and applies the snapshot from its start;
/// after its last piece, readers see it all at once.
#[test]
fn a_large_snapshot_over_versions_in_force_goes_in_pieces_that_readers_never_see_half_of() {
    let paths = Paths::new();
    let path = paths.fresh();
    let n = 7_500;
    let first = indicators::chunked_observations(n);
    // Every key again, its value + 0.5.
    let second = indicators::replacing(&first, 0.5);
    let (manifest, staged) = indicators::chunks_of(&first, 2_500);
    let first_entry =
        indicators::snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    // Node b reports one of node a's keys with another value: a conflict until node a's
    // second snapshot gives it node b's value.
    let mut theirs = first[7_000].clone();
    theirs.obs_value = theirs.obs_value.map(|v| v + 0.5);
    let node_b = indicators::snapshot_entry(2, "node-b", 1, 1, "IND", vec![theirs], None, 2_000);
    // A revision of node a's first key (+ 0.25), which the large snapshot's first piece
    // supersedes.
    let revised = indicators::replacing(&first[..1], 0.25);
    let revision = indicators::snapshot_entry(3, "node-a", 2, 2, "IND", revised, None, 2_500);
    let (manifest, staged_second) = indicators::chunks_of(&second, 2_500);
    let second_entry =
        indicators::snapshot_entry(4, "node-a", 3, 3, "IND", Vec::new(), Some(manifest), 3_000);
    let before = {
        let mut hub = SqliteHubStore::open(&path).unwrap();
        hub.view_piece_max = 2_000;
        hub.stage_chunks(&staged).unwrap();
        let entries = [first_entry.stored(), node_b.stored(), revision.stored()];
        hub.append(&entries, &[], &[], &[], None).unwrap();
        while hub.applied_feed_size().unwrap() < 3 {
            hub.apply_view_step().unwrap();
        }
        let before = readers_view(&hub);
        let sum: f64 = first.iter().filter_map(|o| o.obs_value).sum();
        assert_eq!(
            before,
            ReadersView {
                in_force: n + 1,
                in_force_from_1: n - 1,
                value_sum: sum + 0.25 + 7_000.5,
                shown_superseded: 1,
                in_force_at_3500: n + 1,
                revisions_shown_superseded: 0,
                covered: n as u64 + 1,
                conflicts: 1,
                feed_size: 3,
            }
        );
        hub.stage_chunks(&staged_second).unwrap();
        hub.append(&[second_entry.stored()], &[], &[], &[], None)
            .unwrap();
        assert_eq!(
            hub.apply_view_step().unwrap(),
            3,
            "one piece, the cursor stays"
        );
        assert_eq!(
            view_rows_stored(&hub.db),
            i64::try_from(n + 2 + 2_000).unwrap()
        );
        assert_eq!(readers_view(&hub), before, "no reader sees a piece");
        assert_eq!(hub.view_superseding().unwrap(), Some(4));
        // A commit between two pieces goes through.
        let policy = indicators::policy_entry(5, "node-b", 2, "node-b/doc", 1, &[5], 4_000);
        hub.append(&[policy.stored()], &[], &[], &[], None).unwrap();
        assert_eq!(hub.apply_view_step().unwrap(), 3);
        assert_eq!(readers_view(&hub), before);
        before
        // The process stops here, half-way through chunk 1.
    };
    let mut hub = SqliteHubStore::open(&path).unwrap();
    hub.view_piece_max = 2_000;
    assert_eq!(readers_view(&hub), before);
    let mut steps = 0;
    while hub.applied_feed_size().unwrap() < 5 {
        hub.apply_view_step().unwrap();
        steps += 1;
        if hub.applied_feed_size().unwrap() < 4 {
            assert_eq!(readers_view(&hub), before);
        }
        assert!(steps <= 6, "the view never caught up");
    }
    assert_eq!(
        steps, 5,
        "four pieces from the start, then the policy summary"
    );
    assert_eq!(
        view_rows_stored(&hub.db),
        i64::try_from(2 * n + 2).unwrap(),
        "no row twice"
    );
    let sum: f64 = second.iter().filter_map(|o| o.obs_value).sum();
    assert_eq!(
        readers_view(&hub),
        ReadersView {
            in_force: n + 1,
            in_force_from_1: 0,
            value_sum: sum + 7_000.5,
            shown_superseded: n + 1,
            in_force_at_3500: n + 1,
            revisions_shown_superseded: 1,
            covered: n as u64 + 1,
            conflicts: 0,
            feed_size: 5,
        },
        "the whole snapshot at once"
    );
    assert_eq!(hub.view_superseding().unwrap(), None);
}

/// The same at a node: its mirror's view applier puts a snapshot that replaces versions in
/// force in pieces that no reader sees half of, also across a restart.
#[test]
fn a_nodes_view_of_a_snapshot_over_versions_in_force_goes_in_pieces_too() {
    let paths = Paths::new();
    let path = paths.fresh();
    let n = 6_000;
    let first = indicators::chunked_observations(n);
    let second = indicators::replacing(&first, 0.5);
    let (manifest, staged) = indicators::chunks_of(&first, 2_000);
    let first_entry =
        indicators::snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    let (manifest, staged_second) = indicators::chunks_of(&second, 2_000);
    let second_entry =
        indicators::snapshot_entry(2, "node-a", 2, 2, "IND", Vec::new(), Some(manifest), 3_000);
    let before = {
        let mut node = SqliteNodeStore::open(&path).unwrap();
        node.view_piece_max = 2_000;
        node.stage_chunks(&staged).unwrap();
        node.mirror_insert(&first_entry.mirrored()).unwrap();
        while node.applied_feed_size().unwrap() < 1 {
            node.apply_view_step().unwrap();
        }
        let before = readers_view(&node);
        assert_eq!((before.in_force, before.feed_size), (n, 1));
        node.stage_chunks(&staged_second).unwrap();
        node.mirror_insert(&second_entry.mirrored()).unwrap();
        assert_eq!(
            node.apply_view_step().unwrap(),
            1,
            "one piece, the cursor stays"
        );
        assert_eq!(readers_view(&node), before, "no reader sees a piece");
        before
    };
    let mut node = SqliteNodeStore::open(&path).unwrap();
    node.view_piece_max = 2_000;
    assert_eq!(readers_view(&node), before);
    let mut steps = 0;
    while node.applied_feed_size().unwrap() < 2 {
        node.apply_view_step().unwrap();
        steps += 1;
        assert!(steps <= 3, "the view never caught up");
    }
    assert_eq!(steps, 3, "three pieces from the start");
    let after = readers_view(&node);
    assert_eq!(
        (
            after.in_force,
            after.in_force_from_1,
            after.shown_superseded
        ),
        (n, 0, n)
    );
    assert_eq!(view_rows_stored(&node.db), i64::try_from(2 * n).unwrap());
}

/// The node's mirror stores a chunked snapshot at once and leaves its view to the background
/// applier (`apply_view_step`), a piece per transaction as at the hub; entries mirrored after
/// it are stored and wait for it in feed order; readers see none of the snapshot until its
/// last piece; a store reopened half-way applies it again from its start; once the view has
/// caught up, a small entry is applied as it is mirrored.
#[test]
fn the_mirror_stores_a_large_snapshot_at_once_and_its_view_follows_in_pieces() {
    let paths = Paths::new();
    let path = paths.fresh();
    let n = 7_500;
    let observations = indicators::chunked_observations(n);
    // Chunks of 2 000 and pieces of 2 000: every piece ends at the end of a chunk.
    let (manifest, staged) = indicators::chunks_of(&observations, 2_000);
    let large =
        indicators::snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    let visible = |node: &SqliteNodeStore| visible_of_ind(node);
    let rows_stored = |node: &SqliteNodeStore| view_rows_stored(&node.db);
    {
        let mut node = SqliteNodeStore::open(&path).unwrap();
        node.view_piece_max = 2_000;
        node.stage_chunks(&staged).unwrap();
        node.mirror_insert(&large.mirrored()).unwrap();
        assert_eq!(node.mirror_cursor().unwrap(), 1, "mirrored");
        assert_eq!(
            rows_stored(&node),
            0,
            "its view is not applied in the mirror's commit"
        );
        assert_eq!(visible(&node), (0, 0, 0));
        // Mirrored after it: stored, its view waits for the snapshot's.
        let policy = indicators::policy_entry(2, "node-b", 1, "node-b/doc", 1, &[5], 2_000);
        node.mirror_insert_batch(&[policy.mirrored()]).unwrap();
        assert_eq!(node.mirror_cursor().unwrap(), 2);
        assert_eq!(node.applied_feed_size().unwrap(), 0);
        assert!(node.policy_coverage().unwrap().is_empty());
        assert_eq!(
            node.apply_view_step().unwrap(),
            0,
            "one piece, the cursor stays"
        );
        assert_eq!(rows_stored(&node), 2_000);
        assert_eq!(visible(&node), (0, 0, 0), "no reader sees a piece");
        // The process stops here.
    }
    let mut node = SqliteNodeStore::open(&path).unwrap();
    node.view_piece_max = 2_000;
    assert_eq!(visible(&node), (0, 0, 0));
    let mut steps = 0;
    while node.applied_feed_size().unwrap() < node.mirror_cursor().unwrap() {
        node.apply_view_step().unwrap();
        steps += 1;
        assert!(steps <= 6, "the view never caught up");
    }
    assert_eq!(
        steps, 5,
        "four pieces from the start, then the policy summary"
    );
    assert_eq!(
        rows_stored(&node),
        i64::try_from(n).unwrap(),
        "no row twice"
    );
    assert_eq!(visible(&node), (n, n as u64, 2));
    assert_eq!(node.policy_coverage().unwrap().len(), 1);
    // The view is current again: a small entry is applied as it is mirrored.
    let small = indicators::snapshot_entry(
        3,
        "node-b",
        2,
        1,
        "OTHER",
        vec![indicators::append("LKA", "2020", 1.0)],
        None,
        3_000,
    );
    node.mirror_insert(&small.mirrored()).unwrap();
    assert_eq!(node.applied_feed_size().unwrap(), 3);
    assert_eq!(
        node.query_observations(&indicators::filter("OTHER"), None, 10)
            .unwrap()
            .len(),
        1
    );
}

/// A thread that appends `entries` snapshots of node-a to `store`, one a feed entry: LKA 2020
/// appended, then replaced by each later entry.
fn spawn_lka_writer(store: &Arc<SqliteHubStore>, entries: u64) -> std::thread::JoinHandle<()> {
    let store = Arc::clone(store);
    std::thread::spawn(move || {
        for i in 1..=entries {
            let o = if i == 1 {
                indicators::append("LKA", "2020", 1.0)
            } else {
                indicators::replace("LKA", "2020", i as f64)
            };
            let e = indicators::snapshot_entry(
                i,
                "node-a",
                i,
                u32::try_from(i).unwrap(),
                "IND",
                vec![o],
                None,
                i64::try_from(i).unwrap() * 1_000,
            );
            store.append(&[e.stored()], &[], &[], &[], None).unwrap();
        }
    })
}

/// While the hub stores revisions, a page of observations and its feed size come from one
/// read: with one version per entry, the history holds exactly feed_size rows.
#[test]
fn observation_pages_never_mix_two_feed_sizes() {
    const ENTRIES: u64 = 300;
    let paths = Paths::new();
    let store = Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap());
    let writer = spawn_lka_writer(&store, ENTRIES);
    let history = ObservationFilter {
        include_history: true,
        ..indicators::filter("IND")
    };
    let mut reads = 0;
    loop {
        let done = writer.is_finished();
        let (rows, feed_size) = store.query_observations_at(&history, None, 10_000).unwrap();
        assert_eq!(rows.len() as u64, feed_size, "read {reads}");
        reads += 1;
        if done {
            assert_eq!(feed_size, ENTRIES);
            break;
        }
    }
    writer.join().unwrap();
}

/// The architecture invariant: the same feed gives the hub and a node the same answers.
#[test]
fn hub_and_node_answer_identically() {
    let paths = Paths::new();
    let hub = indicators::hub_target(Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap()));
    let node = indicators::node_target(Arc::new(SqliteNodeStore::open(&paths.fresh()).unwrap()));
    indicators::same_answers(&hub, &node);
}

/// While the hub stores revisions, every coherence read describes one feed size: with one
/// REPLACE per entry after the first, the revisions it counts are exactly feed_size - 1.
#[test]
fn coherence_rows_never_mix_two_feed_sizes() {
    const ENTRIES: u64 = 300;
    let paths = Paths::new();
    let store = Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap());
    let writer = spawn_lka_writer(&store, ENTRIES);
    let mut reads = 0;
    loop {
        let done = writer.is_finished();
        let rows = store.coherence_rows(0, 10_000).unwrap();
        let (listed, total) = &rows.revisions;
        assert_eq!(*total, rows.feed_size.saturating_sub(1), "read {reads}");
        assert!(
            listed
                .iter()
                .all(|r| r.new.provenance.feed_index <= rows.feed_size),
            "read {reads}: a revision beyond feed size {}",
            rows.feed_size
        );
        reads += 1;
        if done {
            assert_eq!(rows.feed_size, ENTRIES);
            break;
        }
    }
    writer.join().unwrap();
}

#[test]
fn hub_reopen_persists() {
    let paths = Paths::new();
    let path = paths.fresh();
    let a1 = statement(1, "node-a", 1, "p");
    {
        let store = SqliteHubStore::open(&path).unwrap();
        store
            .append(
                &[a1.clone(), statement(2, "node-a", 2, "p")],
                &[],
                &[],
                &[],
                None,
            )
            .unwrap();
    }
    let store = SqliteHubStore::open(&path).unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 2);
    assert_eq!(store.statement_by_digest(&a1.digest).unwrap(), Some(a1));
    assert_eq!(store.chain_heads().unwrap().len(), 1);
}

#[test]
fn node_reopen_persists() {
    let paths = Paths::new();
    let path = paths.fresh();
    {
        let store = SqliteNodeStore::open(&path).unwrap();
        store.append_own(&own(1, "p", Some("r")), &[]).unwrap();
        store.mirror_insert(&mirrored(3, "node-b", 1, "p")).unwrap();
    }
    let store = SqliteNodeStore::open(&path).unwrap();
    assert_eq!(store.head().unwrap(), Some((1, own(1, "p", None).digest)));
    assert!(store.own_by_request_id("r").unwrap().is_some());
    assert_eq!(store.mirror_cursor().unwrap(), 3);
}

/// A node's status is read in one snapshot, its mirror count kept by the inserts; a file of
/// version 10 (before the count) gets it from its rows.
#[test]
fn node_status_counts_the_mirror_without_counting_rows_and_upgrades() {
    let paths = Paths::new();
    let path = paths.fresh();
    {
        let store = SqliteNodeStore::open(&path).unwrap();
        assert_eq!(store.status().unwrap(), NodeStoreStatus::default());
        store.append_own(&own(1, "p", None), &[]).unwrap();
        store.mirror_insert(&mirrored(1, "node-b", 1, "p")).unwrap();
        store.mirror_insert(&mirrored(1, "node-b", 1, "p")).unwrap(); // repeated: a no-op
        store.mirror_insert(&mirrored(4, "node-b", 2, "p")).unwrap();
        let status = store.status().unwrap();
        assert_eq!(status.head, Some((1, own(1, "p", None).digest)));
        assert_eq!(status.outbox.pending, 1);
        assert_eq!((status.mirror_count, status.mirror_cursor), (2, 4));
        assert_eq!(status.view_applied, 4);
        assert_conflict(
            store.mirror_insert(&mirrored(4, "node-b", 2, "forged")),
            "same index, other digest",
        );
        assert_eq!(
            store.mirror_count().unwrap(),
            2,
            "a refused insert counts nothing"
        );
    }
    // Back to version 10: no count table, and a row stored meanwhile.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER mirror_counted; DROP TRIGGER mirror_uncounted; DROP TABLE mirror_count;
             INSERT INTO mirror SELECT feed_index + 1, node_id, seq + 10, randomblob(32), kind,
                 document, revision, envelope, receipt, accepted_at_ms, mirrored_at_ms
             FROM mirror WHERE feed_index = 4;
             PRAGMA user_version = 10;",
        )
        .unwrap();
    }
    let store = SqliteNodeStore::open(&path).unwrap();
    assert_eq!(store.mirror_count().unwrap(), 3);
    store.mirror_insert(&mirrored(7, "node-c", 1, "p")).unwrap();
    let status = store.status().unwrap();
    assert_eq!((status.mirror_count, status.mirror_cursor), (4, 7));
}

fn set_user_version(path: &std::path::Path, version: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "user_version", version).unwrap();
}

/// A hub file of version 6 (before `policy_coverage`) gets the counts from the objectives it
/// already recorded, and they match a store that counted as it applied.
#[test]
fn policy_coverage_is_counted_on_upgrade() {
    let paths = Paths::new();
    let path = paths.fresh();
    let counted = {
        let target = indicators::hub_target(Arc::new(SqliteHubStore::open(&path).unwrap()));
        indicators::add_all(
            &target,
            &[
                indicators::policy_entry(1, "node-a", 1, "doc-1", 1, &[2, 1], 1_000),
                indicators::policy_entry(2, "node-a", 2, "doc-2", 1, &[], 2_000),
                indicators::policy_entry(3, "node-b", 1, "doc-1", 1, &[5, 2], 3_000),
                indicators::policy_entry(4, "node-a", 3, "doc-1", 2, &[3, 2], 4_000),
            ],
        );
        target.view.policy_coverage().unwrap()
    };
    assert_eq!(counted.len(), 2);
    assert_eq!(counted[0].gcm_objectives, [2, 3]);
    assert_eq!(counted[0].policy_documents, 2);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        // As a version 6 file: without the tables of versions 7 and 8 and the column of 9.
        conn.execute_batch(
            "DROP TABLE policy_coverage; DROP TABLE view_cursor;
             ALTER TABLE observations DROP COLUMN superseded_by",
        )
        .unwrap();
    }
    set_user_version(&path, 6);
    let upgraded = SqliteHubStore::open(&path).unwrap();
    assert_eq!(upgraded.policy_coverage().unwrap(), counted);
}

#[test]
fn newer_schema_is_refused() {
    let paths = Paths::new();
    let hub = paths.fresh();
    drop(SqliteHubStore::open(&hub).unwrap());
    set_user_version(&hub, 99);
    match SqliteHubStore::open(&hub) {
        Err(StoreError::SchemaTooNew {
            found: 99,
            supported: 9,
        }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let node = paths.fresh();
    drop(SqliteNodeStore::open(&node).unwrap());
    set_user_version(&node, 12);
    assert!(matches!(
        SqliteNodeStore::open(&node),
        Err(StoreError::SchemaTooNew {
            found: 12,
            supported: 11
        })
    ));
}

#[test]
fn foreign_files_are_refused() {
    let paths = Paths::new();
    let hub = paths.fresh();
    drop(SqliteHubStore::open(&hub).unwrap());
    assert!(matches!(
        SqliteNodeStore::open(&hub),
        Err(StoreError::Corrupt(_))
    ));
    let other = paths.fresh();
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(matches!(
        SqliteHubStore::open(&other),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn durability_pragmas_are_set() {
    let paths = Paths::new();
    let store = SqliteHubStore::open(&paths.fresh()).unwrap();
    let (mode, sync, fk, busy): (String, i64, i64, i64) = store
        .db
        .write(|tx| {
            let get = |name: &str| tx.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
            Ok((
                tx.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                get("synchronous")?,
                get("foreign_keys")?,
                get("busy_timeout")?,
            ))
        })
        .unwrap();
    assert_eq!((mode.as_str(), sync, fk, busy), ("wal", 2, 1, 5000));
}

#[test]
fn two_store_handles_on_one_file_never_fork() {
    // Two handles stand in for two processes: only BEGIN IMMEDIATE serializes them.
    let paths = Paths::new();
    let path = paths.fresh();
    let handles: Vec<Arc<dyn NodeStore>> = (0..2)
        .map(|_| Arc::new(SqliteNodeStore::open(&path).unwrap()) as Arc<dyn NodeStore>)
        .collect();
    let workers: Vec<_> = handles
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 15 {
                    let seq = store.head().unwrap().map_or(1, |(seq, _)| seq + 1);
                    match store.append_own(&own(seq, &format!("h{i}"), None), &[]) {
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
    let seqs: Vec<u64> = handles[0]
        .list_own(u64::MAX, 100)
        .unwrap()
        .iter()
        .rev()
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
}

#[test]
fn chain_heads_uses_indexes() {
    let paths = Paths::new();
    let store = SqliteHubStore::open(&paths.fresh()).unwrap();
    let batch: Vec<_> = (1..=200u64)
        .map(|i| statement(i, &format!("node-{}", i % 7), i.div_ceil(7), "q"))
        .collect();
    store.append(&batch, &[], &[], &[], None).unwrap();
    let plan: Vec<String> = store
        .db
        .read(|conn| {
            let sql = format!(
                "EXPLAIN QUERY PLAN {}",
                crate::hub_sql::CHAIN_HEADS.text(crate::sql::Dialect::Sqlite)
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap();
    // No step may scan the whole statements table.
    for step in &plan {
        assert!(
            !(step.contains("SCAN s") || step.contains("SCAN statements"))
                || step.contains("INDEX"),
            "{plan:#?}"
        );
    }
    let heads = store.chain_heads().unwrap();
    assert_eq!(heads.len(), 7);
}

#[test]
fn hub_log_reopen_persists() {
    let paths = Paths::new();
    let path = paths.fresh();
    let nodes = [(0, 0, hash("a")), (0, 1, hash("b")), (1, 0, hash("ab"))];
    {
        let store = SqliteHubStore::open(&path).unwrap();
        store
            .append(
                &[
                    statement(1, "node-a", 1, "r"),
                    statement(2, "node-a", 2, "r"),
                ],
                &[],
                &[],
                &nodes,
                Some(&checkpoint(2, "r")),
            )
            .unwrap();
        store.add_cosignature(&cosignature(2, "w1", "r")).unwrap();
        store.add_cosignature(&cosignature(2, "w2", "r")).unwrap();
        store
            .flag_statements(&[conformance::flag("node-a", 2, "k", 5)])
            .unwrap();
    }
    let store = SqliteHubStore::open(&path).unwrap();
    assert_eq!(
        store.log_nodes(&[(0, 0), (0, 1), (1, 0)]).unwrap(),
        nodes.iter().map(|n| Some(n.2)).collect::<Vec<_>>()
    );
    let latest = store.latest_checkpoint().unwrap().unwrap();
    assert_eq!(
        (latest.size, latest.root, latest.cosignature_count),
        (2, checkpoint(2, "r").root, 2)
    );
    assert_eq!(store.latest_final_checkpoint(2).unwrap(), Some(latest));
    assert_eq!(store.cosignatures(2).unwrap().len(), 2);
    assert_eq!(
        store.statement_by_feed_index(2).unwrap().map(|s| s.seq),
        Some(2)
    );
    let flags = store.list_flags(0, 10).unwrap();
    assert_eq!(
        flags
            .iter()
            .map(|f| (f.flag.seq, f.flag.registry_version))
            .collect::<Vec<_>>(),
        vec![(2, 5)]
    );
    assert_eq!(
        store
            .flag_statements(&[conformance::flag("node-a", 2, "k", 5)])
            .unwrap(),
        0
    );
    // The CAS still holds after a restart.
    assert!(matches!(
        store.append(&[], &[], &[], &[], Some(&checkpoint(2, "other"))),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.append(&[], &[], &[], &[(0, 1, hash("forged"))], None),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn node_log_reopen_persists() {
    let paths = Paths::new();
    let path = paths.fresh();
    {
        let store = SqliteNodeStore::open(&path).unwrap();
        store.advance_trusted(0, &trusted(4, "r")).unwrap();
        store.record_fork("t", "c", "forked", 7).unwrap();
    }
    let store = SqliteNodeStore::open(&path).unwrap();
    assert_eq!(store.trusted_checkpoint().unwrap(), Some(trusted(4, "r")));
    assert_eq!(store.forks().unwrap().len(), 1);
    store.record_fork("t", "c", "again", 8).unwrap();
    assert_eq!(store.forks().unwrap().len(), 1);
}

/// Opens `path` with only the first migration of `schema`, as the previous release did.
fn open_v1(path: &std::path::Path, schema: &Schema) -> Db {
    let v1 = Schema {
        name: schema.name,
        application_id: schema.application_id,
        migrations: &schema.migrations[..1],
        upgrade: None,
    };
    Db::open(path, &v1).unwrap()
}

#[test]
fn version_1_files_are_migrated_in_place() {
    let paths = Paths::new();
    let hub = paths.fresh();
    drop(open_v1(&hub, &crate::hub_sqlite::HUB_SCHEMA));
    {
        let store = SqliteHubStore::open(&hub).unwrap();
        store
            .append(&[statement(1, "node-a", 1, "v")], &[], &[], &[], None)
            .unwrap();
    }
    // Write a statement with the old layout, then upgrade.
    let old = paths.fresh();
    {
        let db = open_v1(&old, &crate::hub_sqlite::HUB_SCHEMA);
        db.write(|tx| {
            tx.execute(
                "INSERT INTO statements VALUES (1, 'node-a', 1, zeroblob(32), 't', 'k', 'd', 1,
                     x'00', x'00', 5)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    }
    let store = SqliteHubStore::open(&old).unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 1);
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    store
        .append(
            &[],
            &[],
            &[],
            &[(0, 0, hash("x"))],
            Some(&checkpoint(1, "v")),
        )
        .unwrap();
    // Statements from before the flags table can be flagged.
    assert_eq!(
        store
            .flag_statements(&[conformance::flag("node-a", 1, "k", 1)])
            .unwrap(),
        1
    );

    let node = paths.fresh();
    drop(open_v1(&node, &crate::node::NODE_SCHEMA));
    let store = SqliteNodeStore::open(&node).unwrap();
    assert_eq!(store.trusted_checkpoint().unwrap(), None);
    store.advance_trusted(0, &trusted(1, "v")).unwrap();
}

/// EXPLAIN QUERY PLAN detail lines of `sql` on the hub store.
fn hub_plan(store: &SqliteHubStore, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Vec<String> {
    store
        .db
        .read(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let rows = stmt.query_map(params, |r| r.get::<_, String>(3))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap()
}

#[test]
fn log_queries_use_indexes() {
    let paths = Paths::new();
    let store = SqliteHubStore::open(&paths.fresh()).unwrap();
    for size in 1..=50u64 {
        store
            .append(
                &[],
                &[],
                &[],
                &[(0, size - 1, hash(&size.to_string()))],
                Some(&checkpoint(size, "p")),
            )
            .unwrap();
        for w in 0..size % 4 {
            store
                .add_cosignature(&cosignature(size, &format!("w{w}"), "p"))
                .unwrap();
        }
    }
    store
        .db
        .write(|tx| Ok(tx.execute_batch("ANALYZE")?))
        .unwrap();
    let plan = hub_plan(
        &store,
        crate::hub_sql::LATEST_FINAL.text(crate::sql::Dialect::Sqlite),
        &[&2],
    );
    for step in &plan {
        assert!(
            !step.contains("SCAN checkpoints")
                && !step.contains("SCAN k")
                && !step.contains("SCAN m"),
            "{plan:#?}"
        );
    }
    assert_eq!(
        store.latest_final_checkpoint(3).unwrap().map(|c| c.size),
        Some(47)
    );
    assert_eq!(
        store.latest_final_checkpoint(2).unwrap().map(|c| c.size),
        Some(50)
    );
    let plan = hub_plan(
        &store,
        "SELECT hash FROM log_nodes WHERE level = 0 AND idx = 3",
        &[],
    );
    assert!(
        plan.iter()
            .any(|s| s.contains("SEARCH log_nodes USING PRIMARY KEY")),
        "{plan:#?}"
    );
}

/// Files from before the indicator view get it rebuilt from their log when they are upgraded.
#[test]
fn indicator_view_is_rebuilt_on_upgrade() {
    let paths = Paths::new();
    let (entries, _) = indicators::mixed_feed();
    // The chunked snapshot and what follows it need staged chunks, which old files never had.
    let old_entries = &entries[..10];
    let fresh = indicators::hub_target(Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap()));
    for e in old_entries {
        (fresh.add)(e).unwrap();
    }

    let hub = paths.fresh();
    let node = paths.fresh();
    for (path, schema, versions) in [
        (&hub, &crate::hub_sqlite::HUB_SCHEMA, 3),
        (&node, &crate::node::NODE_SCHEMA, 2),
    ] {
        let old = Schema {
            name: schema.name,
            application_id: schema.application_id,
            migrations: &schema.migrations[..versions],
            upgrade: None,
        };
        let db = Db::open(path, &old).unwrap();
        db.write(|tx| {
            for e in old_entries {
                if schema.name == "hub" {
                    let st = e.stored();
                    tx.execute(
                        "INSERT INTO statements VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        rusqlite::params![
                            st.feed_index as i64, st.node_id, st.seq as i64, &st.digest.0[..],
                            st.payload_type, st.kind, st.document, st.revision, st.envelope,
                            st.receipt, st.accepted_at_ms
                        ],
                    )?;
                } else {
                    let m = e.mirrored();
                    tx.execute(
                        "INSERT INTO mirror VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        rusqlite::params![
                            m.feed_index as i64, m.node_id, m.seq as i64, &m.digest.0[..],
                            m.kind, m.document, m.revision, m.envelope, m.receipt,
                            m.accepted_at_ms, m.mirrored_at_ms
                        ],
                    )?;
                }
            }
            Ok(())
        })
        .unwrap();
    }
    let hub: Arc<dyn IndicatorStore> = Arc::new(SqliteHubStore::open(&hub).unwrap());
    let node: Arc<dyn IndicatorStore> = Arc::new(SqliteNodeStore::open(&node).unwrap());
    let history = ObservationFilter {
        include_history: true,
        ..indicators::filter("IND")
    };
    let expected = fresh.view.query_observations(&history, None, 1000).unwrap();
    assert_eq!(expected.len(), 16);
    for store in [&hub, &node] {
        assert_eq!(
            store.query_observations(&history, None, 1000).unwrap(),
            expected
        );
        assert_eq!(
            store.policy_coverage().unwrap(),
            fresh.view.policy_coverage().unwrap()
        );
        assert_eq!(store.applied_feed_size().unwrap(), 10);
    }
}

/// A node file from before `own_statements.chunked` (version 6) gets it from each own
/// statement when opened: the chunked snapshot is marked, the inline one is not.
#[test]
fn own_statements_are_marked_chunked_on_upgrade() {
    let paths = Paths::new();
    let path = paths.fresh();
    let observations = indicators::chunked_observations(25);
    let (manifest, _) = rcpfed_core::chunks::encode_chunks(&observations, 10);
    let entries = [
        indicators::snapshot_entry(1, "node-a", 1, 1, "IND", observations.clone(), None, 1_000),
        indicators::snapshot_entry(2, "node-a", 2, 2, "IND", Vec::new(), Some(manifest), 2_000),
    ];
    let schema = &crate::node::NODE_SCHEMA;
    let old = Schema {
        name: schema.name,
        application_id: schema.application_id,
        migrations: &schema.migrations[..6],
        upgrade: None,
    };
    Db::open(&path, &old)
        .unwrap()
        .write(|tx| {
            for e in &entries {
                tx.execute(
                    "INSERT INTO own_statements (seq, digest, document, revision, envelope,
                         created_at_ms, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
                    rusqlite::params![
                        e.seq as i64,
                        &e.digest.0[..],
                        e.document,
                        e.revision,
                        e.envelope,
                        e.accepted_at_ms
                    ],
                )?;
            }
            Ok(())
        })
        .unwrap();
    let node = SqliteNodeStore::open(&path).unwrap();
    let chunked: Vec<(u64, bool)> = node
        .pending(10)
        .unwrap()
        .iter()
        .map(|o| (o.seq, o.chunked))
        .collect();
    assert_eq!(chunked, vec![(1, false), (2, true)]);
}

/// Files from before the observation key rule (hub version 5, node version 4) hold the view
/// keyed as signed: `MIG_STOCK,LKA,2020,_T,_T,40.5` and `MIG_STOCK,LKA,2020,,,41.0` are two
/// totals in force. Opening them rebuilds the view with one key per observation.
#[test]
fn blank_keys_are_migrated_to_their_defaults() {
    use rcpfed_core::statement::ObservationAction::{Append, Replace};
    let paths = Paths::new();
    let total = [("SEX", "_T"), ("AGE", "_T")];
    // Valid under the old rule: blank and _T were different keys.
    let feed = vec![
        indicators::hub_document_entry(1, "hub/catalogue", 1, crate::CATALOGUE_KIND, 1_000),
        indicators::stock_entry(
            2,
            "node-a",
            1,
            vec![
                indicators::stock(Append, "LKA", "2020", &total, Some(40.5)),
                indicators::stock(Append, "LKA", "2020", &[], Some(41.0)),
            ],
            2_000,
        ),
        indicators::stock_entry(
            3,
            "node-a",
            2,
            vec![indicators::stock(Replace, "LKA", "2020", &[], Some(41.5))],
            3_000,
        ),
        indicators::stock_entry(
            4,
            "node-b",
            1,
            vec![indicators::stock(
                Append,
                "LKA",
                "2020",
                &[("SEX", "_T")],
                Some(50.0),
            )],
            4_000,
        ),
    ];
    // The rows the previous release's apply step wrote: (feed index, position, node, dims,
    // action, value, accepted at, superseded at).
    type OldRow = (
        i64,
        i64,
        &'static str,
        &'static str,
        i64,
        f64,
        i64,
        Option<i64>,
    );
    let old_rows: [OldRow; 4] = [
        (2, 0, "node-a", "AGE=_T;SEX=_T", 1, 40.5, 2_000, None),
        (2, 1, "node-a", "", 1, 41.0, 2_000, Some(3_000)),
        (3, 0, "node-a", "", 2, 41.5, 3_000, None),
        (4, 0, "node-b", "SEX=_T", 1, 50.0, 4_000, None),
    ];
    let hub = paths.fresh();
    let node = paths.fresh();
    for (path, schema, versions) in [
        (&hub, &crate::hub_sqlite::HUB_SCHEMA, 5),
        (&node, &crate::node::NODE_SCHEMA, 4),
    ] {
        let old = Schema {
            name: schema.name,
            application_id: schema.application_id,
            migrations: &schema.migrations[..versions],
            upgrade: None,
        };
        let db = Db::open(path, &old).unwrap();
        db.write(|tx| {
            for e in &feed {
                if schema.name == "hub" {
                    let st = e.stored();
                    tx.execute(
                        "INSERT INTO statements VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        rusqlite::params![
                            st.feed_index as i64, st.node_id, st.seq as i64, &st.digest.0[..],
                            st.payload_type, st.kind, st.document, st.revision, st.envelope,
                            st.receipt, st.accepted_at_ms
                        ],
                    )?;
                } else {
                    let m = e.mirrored();
                    tx.execute(
                        "INSERT INTO mirror VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        rusqlite::params![
                            m.feed_index as i64, m.node_id, m.seq as i64, &m.digest.0[..],
                            m.kind, m.document, m.revision, m.envelope, m.receipt,
                            m.accepted_at_ms, m.mirrored_at_ms
                        ],
                    )?;
                }
            }
            for (feed_index, position, node_id, dims, action, value, at, superseded) in old_rows {
                let e = &feed[usize::try_from(feed_index - 1).unwrap()];
                tx.execute(
                    "INSERT INTO observations (feed_index, position, node_id, indicator,
                         ref_area, time_period, dims, period_start, period_end, action, obs_value,
                         obs_status, unit_measure, unit_mult, conf_status, footnote, source,
                         digest, document, revision, accepted_at_ms, superseded_at_ms)
                     VALUES (?1, ?2, ?3, 'MIG_STOCK', 'LKA', '2020', ?4, '2020-01-01',
                         '2020-12-31', ?5, ?6, 'A', 'persons', 6, '', 'LKA 2020', 'test', ?7,
                         ?8, ?9, ?10, ?11)",
                    rusqlite::params![
                        feed_index, position, node_id, dims, action, value, &e.digest.0[..],
                        e.document, e.revision, at, superseded
                    ],
                )?;
            }
            Ok(())
        })
        .unwrap();
        // As the issue found it: two totals of node-a in force.
        let in_force: i64 = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM observations
                     WHERE node_id = 'node-a' AND superseded_at_ms IS NULL",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(in_force, 2);
    }
    let hub: Arc<dyn IndicatorStore> = Arc::new(SqliteHubStore::open(&hub).unwrap());
    let node: Arc<dyn IndicatorStore> = Arc::new(SqliteNodeStore::open(&node).unwrap());
    let history = ObservationFilter {
        include_history: true,
        ..indicators::filter("MIG_STOCK")
    };
    for store in [&hub, &node] {
        let rows = store.query_observations(&history, None, 100).unwrap();
        assert_eq!(
            indicators::positions(&rows),
            vec![
                (2, 0, Some(2_000)),
                (2, 1, Some(3_000)),
                (3, 0, None),
                (4, 0, None)
            ]
        );
        // One key: every version names the defaults.
        assert!(
            rows.iter()
                .all(|r| crate::dimension_key(&r.observation.dimensions) == "AGE=_T;SEX=_T"),
            "{rows:#?}"
        );
        let now = store
            .query_observations(&indicators::filter("MIG_STOCK"), None, 100)
            .unwrap();
        let values: Vec<(&str, Option<f64>)> = now
            .iter()
            .map(|r| (r.provenance.node_id.as_str(), r.observation.obs_value))
            .collect();
        assert_eq!(values, [("node-a", Some(41.5)), ("node-b", Some(50.0))]);
        // node-a's and node-b's totals are now the same key, and disagree.
        assert_eq!(store.conflicts(10).unwrap().1, 1);
        // The revision (feed 3) names its predecessor under the one key.
        let (revisions, count) = store.revisions_since(0, 10).unwrap();
        assert_eq!(count, 1);
        assert_eq!(revisions[0].old.provenance.position, 1);
    }
    // Hub and node answer alike; a fresh node that mirrors the same log agrees.
    let fresh = indicators::node_target(Arc::new(SqliteNodeStore::open(&paths.fresh()).unwrap()));
    for e in &feed {
        (fresh.add)(e).unwrap();
    }
    let expected = fresh.view.query_observations(&history, None, 100).unwrap();
    assert_eq!(
        hub.query_observations(&history, None, 100).unwrap(),
        expected
    );
    assert_eq!(
        node.query_observations(&history, None, 100).unwrap(),
        expected
    );
}

/// What the observation key rule costs: the apply rate of a chunked MIG_STOCK snapshot whose
/// totals leave SEX out (keyed with the shipped catalogue's defaults) against the same
/// observations as IND (no defaults), and the time the key-rule migration takes to rebuild the
/// view of such a file. Run with
/// `cargo test -p rcpfed-store --release -- --ignored --nocapture key_rule_rates`;
/// RCPFED_APPLY_N sets the number of observations (default 200 000).
#[test]
#[ignore = "performance measurement"]
fn key_rule_rates() {
    use std::time::Instant;
    let paths = Paths::new();
    let n: usize = std::env::var("RCPFED_APPLY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut timings = Vec::new();
    let mut rebuilt = None;
    for indicator in ["IND", "MIG_STOCK"] {
        let path = paths.fresh();
        let hub = SqliteHubStore::open(&path).unwrap();
        // A third of the rows are totals that leave SEX out.
        let observations: Vec<_> = indicators::chunked_observations(n)
            .into_iter()
            .map(|mut o| {
                o.dimensions
                    .retain(|(id, value)| !(id == "SEX" && value == "_T"));
                o
            })
            .collect();
        let (manifest, staged) =
            indicators::chunks_of(&observations, rcpfed_core::chunks::OBSERVATIONS_PER_CHUNK);
        let catalogue =
            indicators::hub_document_entry(1, "hub/catalogue", 1, crate::CATALOGUE_KIND, 500);
        hub.append(&[catalogue.stored()], &[], &[], &[], None)
            .unwrap();
        let entry = indicators::snapshot_entry(
            2,
            "node-a",
            1,
            1,
            indicator,
            Vec::new(),
            Some(manifest),
            1_000,
        );
        hub.stage_chunks(&staged).unwrap();
        let start = Instant::now();
        hub.append(&[entry.stored()], &[], &[], &[], None).unwrap();
        timings.push((indicator, start.elapsed()));
        let defaulted: i64 = hub
            .db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM observations WHERE defaulted = 1",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(defaulted > 0, indicator == "MIG_STOCK");
        if indicator == "MIG_STOCK" {
            // As a file from before the key rule: version 5, without the column.
            hub.db
                .write(|tx| {
                    tx.execute_batch(
                        "ALTER TABLE observations DROP COLUMN defaulted;
                         DROP TABLE view_cursor;
                         PRAGMA user_version = 5;",
                    )?;
                    Ok(())
                })
                .unwrap();
            drop(hub);
            let start = Instant::now();
            let hub = SqliteHubStore::open(&path).unwrap();
            rebuilt = Some(start.elapsed());
            assert_eq!(hub.applied_feed_size().unwrap(), 2);
        }
    }
    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    let rebuilt = rebuilt.unwrap_or_default();
    println!(
        "{n} observations: applied as IND (no defaults) in {:?} ({:.0}/s), as MIG_STOCK \
         (defaults filled for {} totals) in {:?} ({:.0}/s); key-rule migration of that file \
         (open, empty the view, rebuild) in {rebuilt:?} ({:.0}/s)",
        timings[0].1,
        rate(timings[0].1),
        n / 3,
        timings[1].1,
        rate(timings[1].1),
        rate(rebuilt),
    );
}

/// Time this thread spent on a CPU (Linux; zero elsewhere): the machine may be shared.
fn thread_cpu() -> std::time::Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}

/// The apply rate of a large chunked snapshot (and of the reads over it). Run with
/// `cargo test -p rcpfed-store --release -- --ignored --nocapture apply_rate`;
/// RCPFED_APPLY_N sets the number of observations (default a million).
#[test]
#[ignore = "performance measurement"]
fn apply_rate() {
    use std::time::Instant;
    let paths = Paths::new();
    let n: usize = std::env::var("RCPFED_APPLY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let hub = Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap());
    let observations = indicators::chunked_observations(n);
    let (manifest, staged) =
        indicators::chunks_of(&observations, rcpfed_core::chunks::OBSERVATIONS_PER_CHUNK);
    let entry =
        indicators::snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    let start = Instant::now();
    hub.stage_chunks(&staged).unwrap();
    let staged_in = start.elapsed();
    let start = Instant::now();
    let cpu_start = thread_cpu();
    hub.append(&[entry.stored()], &[], &[], &[], None).unwrap();
    let applied_in = start.elapsed();
    let applied_cpu = thread_cpu() - cpu_start;
    // The hub's pre-check of a snapshot that breaks no rule probes every key.
    let start = Instant::now();
    let violations = hub
        .check_observation_actions("node-b", "IND", &observations, 10)
        .unwrap();
    let checked_in = start.elapsed();
    assert!(violations.is_empty());
    assert_eq!(
        hub.check_observation_actions("node-a", "IND", &observations, 10)
            .unwrap()
            .len(),
        10
    );
    let start = Instant::now();
    let mut after = None;
    let mut rows = 0;
    loop {
        let page = hub
            .query_observations(&indicators::filter("IND"), after, 1_000)
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.provenance.feed_index, last.provenance.position));
        rows += page.len();
    }
    let paged_in = start.elapsed();
    assert_eq!(rows, n);
    let start = Instant::now();
    let coverage = hub.coverage().unwrap();
    let covered_in = start.elapsed();
    assert_eq!(coverage[0].observation_count, n as u64);
    let start = Instant::now();
    assert_eq!(hub.conflicts(10).unwrap().1, 0);
    let conflicts_in = start.elapsed();
    let rate = n as f64 / applied_in.as_secs_f64();
    println!(
        "{n} observations: staged in {staged_in:?}, applied in {applied_in:?} \
         ({rate:.0}/s, {applied_cpu:?} on cpu), checked in {checked_in:?}, paged (1000/page) \
         in {paged_in:?}, coverage in {covered_in:?}, conflicts in {conflicts_in:?}"
    );
}

#[test]
fn indicator_queries_use_indexes() {
    let paths = Paths::new();
    let store = Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap());
    let (entries, staged) = indicators::mixed_feed();
    let target = indicators::hub_target(Arc::clone(&store));
    target.view.stage_chunks(&staged).unwrap();
    for e in &entries {
        (target.add)(e).unwrap();
    }
    let plan = |sql: &str, args: &[rusqlite::types::Value]| {
        let args: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a as _).collect();
        hub_plan(&store, sql, &args)
    };
    let text = |s: &str| rusqlite::types::Value::Text(s.to_string());
    let find = plan(
        crate::indicators_sql::FIND_IN_FORCE.text(crate::sql::Dialect::Sqlite),
        &[
            text("node-a"),
            text("IND"),
            text("LKA"),
            text("2020"),
            text(""),
        ],
    );
    assert_eq!(
        find,
        vec![
            "SEARCH observations USING INDEX observations_in_force (indicator=? AND ref_area=? \
             AND time_period=? AND dims=? AND node_id=?)"
        ]
    );
    // Pages come from the indicator's index in paging order: never a sort of the series.
    for (f, after) in [
        (indicators::filter("IND"), Some((11, 3))),
        (
            ObservationFilter {
                include_history: true,
                as_of_ms: Some(5_000),
                ..indicators::filter("IND")
            },
            None,
        ),
        (
            ObservationFilter {
                node_ids: vec!["node-a".into()],
                updated_after_ms: Some(3),
                ..indicators::filter("IND")
            },
            Some((2, 0)),
        ),
    ] {
        let (sql, args) = crate::indicators_sql::observation_query(
            crate::indicator_queries::ViewReading::Settled,
            &f,
            after,
            100,
        );
        let steps = plan(&sql, &args);
        assert!(
            steps[0].starts_with("SEARCH observations USING INDEX observations_indicator")
                && !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "{f:?}: {steps:#?}"
        );
    }
    // One area: its index in paging order, never a sort of the area's rows.
    let area = ObservationFilter {
        ref_areas: vec!["LKA".into()],
        ..indicators::filter("IND")
    };
    for (f, after) in [
        (area.clone(), None),
        (area.clone(), Some((11, 3))),
        (
            ObservationFilter {
                include_history: true,
                as_of_ms: Some(5_000),
                ..area.clone()
            },
            Some((2, 0)),
        ),
        (
            ObservationFilter {
                dimensions: vec![("SEX".into(), "F".into())],
                updated_after_ms: Some(3),
                ..area.clone()
            },
            None,
        ),
    ] {
        let (sql, args) = crate::indicators_sql::observation_query(
            crate::indicator_queries::ViewReading::Settled,
            &f,
            after,
            100,
        );
        let steps = plan(&sql, &args);
        assert!(
            steps[0].starts_with(
                "SEARCH observations USING INDEX observations_area (indicator=? AND ref_area=?"
            ) && !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "{f:?}: {steps:#?}"
        );
    }
    // One area and a period: the period bounds TIME_PERIOD too, so an index reads only that
    // area's periods (or the area in paging order); never the whole indicator.
    let (sql, args) = crate::indicators_sql::observation_query(
        crate::indicator_queries::ViewReading::Settled,
        &ObservationFilter {
            start_date: Some("2020-01-01".into()),
            end_date: Some("2020-12-31".into()),
            dimensions: vec![("SEX".into(), "F".into())],
            ..area.clone()
        },
        None,
        100,
    );
    assert!(sql.contains("time_period >= ?") && sql.contains("time_period < ?"));
    let steps = plan(&sql, &args);
    assert!(
        steps[0].contains("(indicator=? AND ref_area=? AND time_period>? AND time_period<?)")
            || steps[0].contains("USING INDEX observations_area (indicator=? AND ref_area=?)"),
        "{steps:#?}"
    );
    // Conflicts: one scan of the index of the versions in force (in key order), then searches
    // of it by key; never a search of observations_key per candidate.
    let steps = plan(
        crate::indicator_queries::CONFLICT_CANDIDATES[0].text(crate::sql::Dialect::Sqlite),
        &[],
    );
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("SCAN observations USING ")
                && s.contains("INDEX observations_in_force")),
        "{steps:#?}"
    );
    for step in &steps {
        // The view cursor, read once per query (the rows readers see end there).
        if step.contains("SEARCH view_cursor USING INTEGER PRIMARY KEY") {
            continue;
        }
        let reads_table = step.contains("observations");
        let uses_in_force = step.contains("observations_in_force");
        let by_key = step.contains(
            "USING INDEX observations_in_force (indicator=? AND ref_area=? AND time_period=? \
             AND dims=?)",
        );
        assert!(!reads_table || uses_in_force, "{steps:#?}");
        assert!(!step.starts_with("SEARCH ") || by_key, "{steps:#?}");
    }
    let int = rusqlite::types::Value::Integer;
    let steps = plan(
        crate::indicator_queries::PREDECESSOR.text(crate::sql::Dialect::Sqlite),
        &[
            text("IND"),
            text("LKA"),
            text("2020"),
            text("node-a"),
            text(""),
            int(4),
            int(0),
        ],
    );
    assert!(
        steps[0]
            .contains("USING INDEX observations_key (indicator=? AND ref_area=? AND time_period=?"),
        "{steps:#?}"
    );
}

/// CPU time (user and system) of the calling thread so far, in ms, from /proc (Linux; 0
/// elsewhere): on a shared machine it varies less than the wall clock.
fn thread_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses: utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks * 10
}

/// How long commits wait while a large snapshot's view is applied: the view in one
/// transaction (as before issue 11's pieces) against a piece per transaction, on two fresh
/// stores in one run, with a policy summary committed every 5 ms meanwhile. Run with
/// `RCPFED_COMMIT_WAIT_N=1000000 cargo test -p rcpfed-store --release -- --ignored --nocapture commit_wait_behind_a_snapshot_view`;
/// with `RCPFED_COMMIT_WAIT_SUPERSEDE=1` the snapshot measured replaces every key of an
/// earlier one of the same size (applied first, untimed).
#[test]
#[ignore = "performance measurement"]
fn commit_wait_behind_a_snapshot_view() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let n: usize = std::env::var("RCPFED_COMMIT_WAIT_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let supersede = std::env::var("RCPFED_COMMIT_WAIT_SUPERSEDE").is_ok_and(|v| v == "1");
    let observations = indicators::chunked_observations(n);
    let per_chunk = rcpfed_core::chunks::OBSERVATIONS_PER_CHUNK;
    let (manifest, mut staged) = indicators::chunks_of(&observations, per_chunk);
    let first =
        indicators::snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    let large = if supersede {
        let replacing = indicators::replacing(&observations, 0.5);
        let (manifest, more) = indicators::chunks_of(&replacing, per_chunk);
        staged.extend(more);
        indicators::snapshot_entry(2, "node-a", 2, 2, "IND", Vec::new(), Some(manifest), 2_000)
    } else {
        first.clone()
    };
    let paths = Paths::new();
    for pieces in [false, true] {
        let hub = Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap());
        hub.stage_chunks(&staged).unwrap();
        if supersede {
            hub.append(&[first.stored()], &[], &[], &[], None).unwrap();
            while hub.applied_feed_size().unwrap() < 1 {
                hub.apply_view_step().unwrap();
            }
        }
        hub.append(&[large.stored()], &[], &[], &[], None).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let applier = {
            let (hub, done, large) = (Arc::clone(&hub), Arc::clone(&done), large.stored());
            std::thread::spawn(move || {
                let started = Instant::now();
                let cpu = thread_cpu_ms();
                if pieces {
                    while hub.applied_feed_size().unwrap() < large.feed_index {
                        hub.apply_view_step().unwrap();
                    }
                } else {
                    let entry = crate::view_rows::Entry {
                        node_id: &large.node_id,
                        kind: &large.kind,
                        digest: &large.digest,
                        document: &large.document,
                        revision: large.revision,
                        feed_index: large.feed_index,
                        accepted_at_ms: large.accepted_at_ms,
                        envelope: &large.envelope,
                        statement: None,
                    };
                    hub.db
                        .write(|tx| {
                            crate::indicators_sql::apply_entry(
                                tx,
                                crate::view_rows::Log::Hub,
                                &entry,
                            )
                        })
                        .unwrap();
                }
                done.store(true, Ordering::SeqCst);
                (started.elapsed(), thread_cpu_ms() - cpu)
            })
        };
        let mut waits = Vec::new();
        let mut feed_index = large.feed_index;
        // RCPFED_COMMIT_WAIT_IDLE=1: no commits meanwhile (what the pieces cost by themselves).
        let idle = std::env::var("RCPFED_COMMIT_WAIT_IDLE").is_ok_and(|v| v == "1");
        while idle && !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        while !done.load(Ordering::SeqCst) {
            feed_index += 1;
            let seq = feed_index - 1;
            let policy = indicators::policy_entry(
                feed_index,
                "node-b",
                seq,
                &format!("node-b/doc-{seq}"),
                1,
                &[5],
                2_000,
            );
            let started = Instant::now();
            hub.append(&[policy.stored()], &[], &[], &[], None).unwrap();
            waits.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        let (applied_in, cpu_ms) = applier.join().unwrap();
        if waits.is_empty() {
            println!(
                "{}: {n} observations applied in {applied_in:?} ({cpu_ms} ms of the applying \
                 thread's CPU), no commits meanwhile",
                if pieces { "pieces" } else { "one transaction" }
            );
            continue;
        }
        waits.sort();
        let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize];
        println!(
            "{}: {n} observations applied in {applied_in:?} ({cpu_ms} ms of the applying \
             thread's CPU); {} commits meanwhile, wait p50 {:?}, p99 {:?}, max {:?}",
            if pieces {
                "a piece per transaction"
            } else {
                "one transaction"
            },
            waits.len(),
            at(0.5),
            at(0.99),
            waits[waits.len() - 1]
        );
    }
}

/// The coherence report's store calls at the size of the `snapshot` benchmark: a large
/// snapshot of one node (`RCPFED_COHERENCE_N`, default a million) keyed like the synthetic
/// one (years × 12 areas × SEX × AGE × COUNTERPART_AREA), then 10 000 observations from each
/// of two more nodes, the first overlapping the large one on every key with other values.
/// Run with `cargo test -p rcpfed-store --release -- --ignored --nocapture coherence_rate`;
/// `RCPFED_COHERENCE_SQL` is SQL run on the hub file first (a schema variant to compare).
#[test]
#[ignore = "performance measurement"]
fn coherence_rate() {
    use rcpfed_core::statement::{Observation, ObservationAction};
    use std::time::Instant;
    let n: usize = std::env::var("RCPFED_COHERENCE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let small = 10_000;
    let paths = Paths::new();
    let hub = Arc::new(SqliteHubStore::open(&paths.fresh()).unwrap());
    // A schema variant to measure (an index dropped, a pragma), run before the snapshots.
    if let Ok(variant) = std::env::var("RCPFED_COHERENCE_SQL") {
        hub.db.write(|tx| Ok(tx.execute_batch(&variant)?)).unwrap();
    }
    let areas = [
        "AFG", "BGD", "BTN", "IND", "IDN", "LKA", "MDV", "NPL", "PAK", "PHL", "THA", "VNM",
    ];
    let sexes = ["F", "M", "_T"];
    let ages = [
        "_T", "Y_LT15", "Y_LT18", "Y_GE18", "Y15T24", "Y15T64", "Y_GE15", "Y_GE65",
    ];
    let counterparts: Vec<String> = (0..249)
        .map(|i| {
            let b = |k: usize| char::from(b'A' + u8::try_from(k % 26).unwrap());
            format!("{}{}{}", b(i / 676), b(i / 26), b(i))
        })
        .collect();
    // Key i of `areas`, period-major like the synthetic plan.
    let key = |i: usize, areas: &[&str]| {
        let per_area = sexes.len() * ages.len() * counterparts.len();
        let per_year = per_area * areas.len();
        let rest = i % per_area;
        (
            areas[i % per_year / per_area].to_string(),
            format!("{}", 1900 + i / per_year),
            vec![
                (
                    "SEX".to_string(),
                    sexes[rest / (ages.len() * 249)].to_string(),
                ),
                ("AGE".to_string(), ages[rest / 249 % ages.len()].to_string()),
                (
                    "COUNTERPART_AREA".to_string(),
                    counterparts[rest % 249].clone(),
                ),
            ],
        )
    };
    let observations = |count: usize, areas: &[&str], salt: f64| -> Vec<Observation> {
        (0..count)
            .map(|i| {
                let (ref_area, time_period, dimensions) = key(i, areas);
                Observation {
                    action: ObservationAction::Append,
                    ref_area,
                    time_period,
                    dimensions,
                    obs_value: Some(i as f64 + salt),
                    obs_status: "A".into(),
                    unit_measure: "persons".into(),
                    unit_mult: 0,
                    conf_status: String::new(),
                    footnote: String::new(),
                    source: "SYNTHETIC".into(),
                }
            })
            .collect()
    };
    let mut feed_index = 0;
    let mut add = |node: &str, obs: Vec<Observation>| {
        feed_index += 1;
        let (manifest, staged) =
            indicators::chunks_of(&obs, rcpfed_core::chunks::OBSERVATIONS_PER_CHUNK);
        hub.stage_chunks(&staged).unwrap();
        let entry = indicators::snapshot_entry(
            feed_index,
            node,
            1,
            1,
            "MIG_STOCK",
            Vec::new(),
            Some(manifest),
            1_000 * i64::try_from(feed_index).unwrap(),
        );
        let start = Instant::now();
        let cpu_start = thread_cpu_ms();
        hub.append(&[entry.stored()], &[], &[], &[], None).unwrap();
        let stored = start.elapsed();
        // A chunked snapshot's view is applied after the commit, as the hub's applier does.
        while hub.applied_feed_size().unwrap() < feed_index {
            hub.apply_view_step().unwrap();
        }
        let took = start.elapsed();
        println!(
            "{node}: {} observations stored in {stored:?}, applied in {took:?} ({:.0}/s; {} ms of this thread's CPU)",
            obs.len(),
            obs.len() as f64 / took.as_secs_f64(),
            thread_cpu_ms() - cpu_start
        );
    };
    add("colombo", observations(n, &areas, 0.0));
    add("abu-dhabi", observations(small, &areas[1..], 0.5));
    add("midwa", observations(small, &["GHA", "NGA", "SEN"], 0.0));
    let time = |what: &str, f: &mut dyn FnMut() -> String| {
        let start = Instant::now();
        let said = f();
        println!("{what}: {:?} ({said})", start.elapsed());
    };
    time("conflicts", &mut || {
        let (rows, total) = hub.conflicts(1000).unwrap();
        format!("{} listed, {total} in all", rows.len())
    });
    time("coverage", &mut || {
        format!("{} rows", hub.coverage().unwrap().len())
    });
    time("policy_coverage", &mut || {
        format!("{} rows", hub.policy_coverage().unwrap().len())
    });
    time("revisions_since", &mut || {
        format!("{} in all", hub.revisions_since(0, 1000).unwrap().1)
    });
    let area = ObservationFilter {
        ref_areas: vec!["IND".into()],
        ..indicators::filter("MIG_STOCK")
    };
    let series = ObservationFilter {
        start_date: Some("1900-01-01".into()),
        end_date: Some("1900-12-31".into()),
        dimensions: vec![("COUNTERPART_AREA".into(), "ABW".into())],
        ..area.clone()
    };
    for (what, f) in [
        ("all areas", indicators::filter("MIG_STOCK")),
        ("IND", area),
        ("one series", series),
    ] {
        let start = Instant::now();
        let mut rows = 0;
        for _ in 0..20 {
            rows = hub.query_observations(&f, None, 1000).unwrap().len();
        }
        println!(
            "query {what}: {:?} per page of {rows}",
            start.elapsed() / 20
        );
    }
}
