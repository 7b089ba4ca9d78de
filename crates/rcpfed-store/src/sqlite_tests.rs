//! The conformance suite on SQLite, plus SQLite-specific behaviour (files, pragmas, versions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::conformance::{self, checkpoint, cosignature, hash, mirrored, own, statement, trusted};
use crate::db::{Db, Schema};
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
            .append(
                &[a1.clone(), statement(2, "node-a", 2, "p")],
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
            supported: 3,
        }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let node = paths.fresh();
    drop(SqliteNodeStore::open(&node).unwrap());
    set_user_version(&node, 3);
    assert!(matches!(
        SqliteNodeStore::open(&node),
        Err(StoreError::SchemaTooNew {
            found: 3,
            supported: 2
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
    store.append(&batch, &[], &[], None).unwrap();
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
        store.append(&[], &[], &[], Some(&checkpoint(2, "other"))),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.append(&[], &[], &[(0, 1, hash("forged"))], None),
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
    };
    Db::open(path, &v1).unwrap()
}

#[test]
fn version_1_files_are_migrated_in_place() {
    let paths = Paths::new();
    let hub = paths.fresh();
    drop(open_v1(&hub, &crate::hub::HUB_SCHEMA));
    {
        let store = SqliteHubStore::open(&hub).unwrap();
        store
            .append(&[statement(1, "node-a", 1, "v")], &[], &[], None)
            .unwrap();
    }
    // Write a statement with the old layout, then upgrade.
    let old = paths.fresh();
    {
        let db = open_v1(&old, &crate::hub::HUB_SCHEMA);
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
        .append(&[], &[], &[(0, 0, hash("x"))], Some(&checkpoint(1, "v")))
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
    let plan = hub_plan(&store, crate::hub::LATEST_FINAL_SQL, &[&2]);
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
