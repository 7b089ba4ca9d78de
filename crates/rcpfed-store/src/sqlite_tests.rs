//! The conformance suite on SQLite, plus SQLite-specific behaviour (files, pragmas, versions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::conformance::{self, mirrored, own, statement};
use crate::{HubStore, NodeStore, SqliteHubStore, SqliteNodeStore, StoreError};
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
fn hub_reopen_persists() {
    let paths = Paths::new();
    let path = paths.fresh();
    let a1 = statement(1, "node-a", 1, "p");
    {
        let store = SqliteHubStore::open(&path).unwrap();
        store
            .append(&[a1.clone(), statement(2, "node-a", 2, "p")], &[])
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
        store.append_own(&own(1, "p", Some("r"))).unwrap();
        store.mirror_insert(&mirrored(3, "node-b", 1, "p")).unwrap();
    }
    let store = SqliteNodeStore::open(&path).unwrap();
    assert_eq!(store.head().unwrap(), Some((1, own(1, "p", None).digest)));
    assert!(store.own_by_request_id("r").unwrap().is_some());
    assert_eq!(store.mirror_cursor().unwrap(), 3);
}

fn set_user_version(path: &std::path::Path, version: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "user_version", version).unwrap();
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
            supported: 1,
        }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let node = paths.fresh();
    drop(SqliteNodeStore::open(&node).unwrap());
    set_user_version(&node, 2);
    assert!(matches!(
        SqliteNodeStore::open(&node),
        Err(StoreError::SchemaTooNew { found: 2, .. })
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
                    match store.append_own(&own(seq, &format!("h{i}"), None)) {
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
    store.append(&batch, &[]).unwrap();
    let plan: Vec<String> = store
        .db
        .read(|conn| {
            let sql = format!("EXPLAIN QUERY PLAN {}", crate::hub::CHAIN_HEADS_SQL);
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
