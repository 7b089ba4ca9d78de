//! The conformance suite on PostgreSQL, plus PostgreSQL-specific behaviour (schemas,
//! versions, deadlines, two handles on one database).
//!
//! The server comes from `RCPFED_TEST_POSTGRES_URL` (scripts/pg-test-cluster.sh starts a
//! throwaway one). Without it the tests print a line and pass, unless
//! `RCPFED_REQUIRE_POSTGRES=1` says a server must be there: then they fail. Each store gets
//! a fresh schema, dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::conformance::{self, checkpoint, hash, indicators, statement};
use crate::pg::PgHubStore;
use crate::{HubStore, IndicatorStore, SqliteHubStore, StoreError, with_deadline};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The test server's URL, or None (after saying so) when tests may skip.
fn server_url() -> Option<String> {
    match std::env::var("RCPFED_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("RCPFED_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "RCPFED_REQUIRE_POSTGRES=1 but RCPFED_TEST_POSTGRES_URL is not set; start a \
                     server with `eval \"$(scripts/pg-test-cluster.sh start)\"`"
                );
            }
            eprintln!("skipped: RCPFED_TEST_POSTGRES_URL is not set (no PostgreSQL server)");
            None
        }
    }
}

/// Fresh schemas on the test server, dropped when this goes out of scope.
struct Schemas {
    url: String,
    made: Mutex<Vec<String>>,
}

static NEXT_SCHEMA: AtomicU32 = AtomicU32::new(0);

impl Schemas {
    fn new() -> Option<Self> {
        Some(Schemas {
            url: server_url()?,
            made: Mutex::new(Vec::new()),
        })
    }

    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// A URL whose connections store into a new, empty schema.
    fn fresh(&self) -> String {
        let n = NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed);
        let name = format!("rcpfed_test_{}_{n}", std::process::id());
        self.admin()
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .unwrap();
        self.made.lock().unwrap().push(name.clone());
        with_search_path(&self.url, &name)
    }

    fn hub(&self) -> Arc<PgHubStore> {
        Arc::new(PgHubStore::open(&self.fresh()).unwrap())
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        if made.is_empty() {
            return;
        }
        if let Ok(mut admin) = postgres::Client::connect(&self.url, postgres::NoTls) {
            for name in made {
                let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
            }
        }
    }
}

fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

#[test]
fn hub_conformance() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    conformance::hub_suite(&|| schemas.hub());
}

#[test]
fn hub_indicator_conformance() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    indicators::indicator_suite(&|| indicators::hub_target(schemas.hub()));
}

/// The apply step given the statement the sequencer decoded writes what it writes from the
/// envelope alone.
#[test]
fn hub_indicator_conformance_with_handed_statements() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    indicators::indicator_suite(&|| indicators::hub_target_handing_statements(schemas.hub()));
}

#[test]
fn hub_chunks_stored_with_statement() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    indicators::hub_chunks_stored_with_statement(&*schemas.hub());
}

/// The backends agree: the same feed gives a SQLite hub and a PostgreSQL hub the same answers.
#[test]
fn sqlite_and_postgres_answer_identically() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = indicators::hub_target(Arc::new(
        SqliteHubStore::open(&dir.path().join("hub.db")).unwrap(),
    ));
    let pg = indicators::hub_target(schemas.hub());
    indicators::same_answers(&sqlite, &pg);
}

/// A backup of a hub on PostgreSQL is a SQLite hub database holding the same data, and it
/// restores into an empty PostgreSQL database with the same data again: every query answers
/// alike on the three (the indicator view's floats, booleans and blobs included).
#[test]
fn backup_to_sqlite_and_restore_to_postgres_keep_everything() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let source_url = schemas.fresh();
    let source = Arc::new(PgHubStore::open(&source_url).unwrap());
    indicators::fill_mixed(&indicators::hub_target(Arc::clone(&source)));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.sqlite");
    let copied = crate::pg::copy::pg_hub_to_sqlite(&source_url, &file).unwrap();
    assert!(copied.rows() > 1_000, "{copied:?}");
    assert!(
        crate::pg::copy::pg_hub_to_sqlite(&source_url, &file).is_err(),
        "never over an existing file"
    );
    let backup = SqliteHubStore::open(&file).unwrap();
    indicators::answer_alike(&*source, &backup);
    let target_url = schemas.fresh();
    let restored = crate::pg::copy::sqlite_hub_to_pg(&file, &target_url).unwrap();
    assert_eq!(restored, copied, "every row of every table");
    let target = PgHubStore::open(&target_url).unwrap();
    indicators::answer_alike(&*source, &target);
    // Not into a database that holds a hub: nothing changes.
    let error = crate::pg::copy::sqlite_hub_to_pg(&file, &target_url).unwrap_err();
    assert!(
        error.to_string().contains("already holds hub data"),
        "{error}"
    );
    // Rows added after the restore get new identities, not the restored ones.
    let mut client = postgres::Client::connect(&target_url, postgres::NoTls).unwrap();
    for table in ["equivocations", "statement_flags"] {
        let next_is_new: bool = client
            .query_one(
                &format!(
                    "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) > \
                     COALESCE((SELECT MAX(id) FROM {table}), 0)"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert!(next_is_new, "{table}");
    }
}

#[test]
fn reopen_persists_and_versions_are_checked() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let url = schemas.fresh();
    {
        let store = PgHubStore::open(&url).unwrap();
        store
            .append(
                &[
                    statement(1, "colombo", 1, "a"),
                    statement(2, "dhaka", 1, "a"),
                ],
                &[],
                &[],
                &[(0, 0, hash("leaf0"))],
                Some(&checkpoint(2, "a")),
            )
            .unwrap();
    }
    let store = PgHubStore::open(&url).unwrap();
    assert_eq!(store.last_feed_index().unwrap(), 2);
    assert_eq!(store.log_node(0, 0).unwrap(), Some(hash("leaf0")));
    assert_eq!(store.latest_checkpoint().unwrap().unwrap().size, 2);
    drop(store);

    // A schema from a newer build is refused, not opened.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute("UPDATE rcpfed_schema SET version = version + 1")
        .unwrap();
    let err = PgHubStore::open(&url).unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err:?}");
}

#[test]
fn foreign_schemas_are_refused() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let url = schemas.fresh();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute("CREATE TABLE someone_elses (id INT)")
        .unwrap();
    let err = PgHubStore::open(&url).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("not an rcpfed hub store")),
        "{err:?}"
    );
    // And a node's schema is not a hub's.
    let url = schemas.fresh();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "CREATE TABLE rcpfed_schema (store TEXT NOT NULL, version BIGINT NOT NULL);
             INSERT INTO rcpfed_schema VALUES ('node', 1)",
        )
        .unwrap();
    let err = PgHubStore::open(&url).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("not a hub store")),
        "{err:?}"
    );
}

/// A read still running at its deadline is cancelled by the server, and the connection goes
/// back to the pool usable (its timeout does not stick to the next read).
#[test]
fn a_slow_read_is_stopped_at_its_deadline() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let store = schemas.hub();
    let started = Instant::now();
    let out = with_deadline(Some(started + Duration::from_millis(300)), || {
        store.db.read(|tx| {
            tx.query("SELECT pg_sleep(30)", &[])?;
            Ok(())
        })
    });
    let took = started.elapsed();
    assert!(
        matches!(out, Err(StoreError::DeadlineExceeded(_))),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for _ in 0..6 {
        store
            .db
            .read(|tx| {
                tx.query("SELECT pg_sleep(0.4)", &[])?;
                Ok(())
            })
            .unwrap();
    }
}

/// Two store handles (two processes' worth of connections) on one schema append at once:
/// the write lock serializes them, so the feed never forks or skips, the loser of a race
/// gets a Conflict, and checkpoints only grow.
#[test]
fn two_handles_on_one_schema_never_fork() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let url = schemas.fresh();
    let stores = [
        Arc::new(PgHubStore::open(&url).unwrap()),
        Arc::new(PgHubStore::open(&url).unwrap()),
    ];
    let writers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(w, store)| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut stored = 0;
                while stored < 40 {
                    let next = store.last_feed_index().unwrap() + 1;
                    let st = statement(next, &format!("writer-{w}"), next, "race");
                    match store.append(&[st], &[], &[], &[], Some(&checkpoint(next, "race"))) {
                        Ok(()) => stored += 1,
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = &stores[0];
    assert_eq!(store.last_feed_index().unwrap(), 80);
    assert_eq!(store.count_statements().unwrap(), 80);
    let feed = store.list_feed(0, 1000, usize::MAX).unwrap();
    let indexes: Vec<u64> = feed.iter().map(|s| s.feed_index).collect();
    assert_eq!(indexes, (1..=80).collect::<Vec<_>>());
    assert_eq!(store.latest_checkpoint().unwrap().unwrap().size, 80);
}

/// A refused append on PostgreSQL leaves the connection usable (an aborted transaction is
/// rolled back, not reused).
#[test]
fn a_conflict_leaves_the_writer_usable() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let store = schemas.hub();
    store
        .append(&[statement(1, "colombo", 1, "a")], &[], &[], &[], None)
        .unwrap();
    let dup = statement(2, "colombo", 1, "b");
    let err = store.append(&[dup], &[], &[], &[], None).unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("already has a statement at seq 1")),
        "{err:?}"
    );
    store
        .append(&[statement(2, "colombo", 2, "a")], &[], &[], &[], None)
        .unwrap();
    assert_eq!(store.applied_feed_size().unwrap(), 2);
}

/// The same store workload on SQLite and on PostgreSQL: single-statement commits (each with its
/// leaf and a checkpoint, as the hub's group commit writes at low load), a chunked snapshot
/// applied to the view, the action pre-check of the same snapshot, and paging through it. Run
/// with `cargo test -p rcpfed-store --features postgres --release -- --ignored --nocapture
/// backend_rates`; RCPFED_APPLY_N sets the snapshot's observations (default 20,000).
#[test]
#[ignore = "performance measurement"]
fn backend_rates() {
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let n: usize = std::env::var("RCPFED_APPLY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteHubStore::open(&dir.path().join("hub.db")).unwrap());
    let pg_url = schemas.fresh();
    let pg = Arc::new(PgHubStore::open(&pg_url).unwrap());
    measure("sqlite", &*sqlite, n);
    measure("postgres", &*pg, n);
    // Backups of the same content: SQLite's online copy (the baseline), the logical copy of the
    // PostgreSQL store into a SQLite file, and its restore into an empty PostgreSQL schema.
    let started = Instant::now();
    crate::backup::sqlite_backup(
        &dir.path().join("hub.db"),
        &dir.path().join("sqlite-copy.db"),
    )
    .unwrap();
    let baseline = started.elapsed();
    let started = Instant::now();
    let copied =
        crate::pg::copy::pg_hub_to_sqlite(&pg_url, &dir.path().join("pg-copy.db")).unwrap();
    let backup = started.elapsed();
    let started = Instant::now();
    crate::pg::copy::sqlite_hub_to_pg(&dir.path().join("pg-copy.db"), &schemas.fresh()).unwrap();
    let restore = started.elapsed();
    println!(
        "backup of {} rows: sqlite online copy {baseline:?}; postgres -> sqlite file {backup:?} \
         ({:.1}x); sqlite file -> postgres {restore:?} ({:.1}x)",
        copied.rows(),
        backup.as_secs_f64() / baseline.as_secs_f64(),
        restore.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn measure<S: HubStore + IndicatorStore>(name: &str, store: &S, n: usize) {
    const COMMITS: u64 = 500;
    let started = Instant::now();
    for i in 1..=COMMITS {
        store
            .append(
                &[statement(i, "colombo", i, "rate")],
                &[],
                &[],
                &[(0, i - 1, hash(&format!("leaf{i}")))],
                Some(&checkpoint(i, "rate")),
            )
            .unwrap();
    }
    let commits = started.elapsed();
    let started = Instant::now();
    for i in 1..=COMMITS {
        assert!(store.statement_by_feed_index(i).unwrap().is_some());
    }
    let lookups = started.elapsed();
    println!(
        "{name}: {COMMITS} single-statement commits in {commits:?} ({:.0}/s), \
         {COMMITS} lookups by feed index in {lookups:?}",
        COMMITS as f64 / commits.as_secs_f64(),
    );
    let observations = indicators::chunked_observations(n);
    let (manifest, staged) =
        indicators::chunks_of(&observations, rcpfed_core::chunks::OBSERVATIONS_PER_CHUNK);
    let entry = indicators::snapshot_entry(
        COMMITS + 1,
        "node-a",
        1,
        1,
        "IND",
        Vec::new(),
        Some(manifest),
        1_000,
    );
    let started = Instant::now();
    store
        .append(&[entry.stored()], &staged, &[], &[], None)
        .unwrap();
    let applied = started.elapsed();
    let started = Instant::now();
    let violations = store
        .check_observation_actions("node-b", "IND", &observations, 10)
        .unwrap();
    let checked = started.elapsed();
    assert!(violations.is_empty());
    let started = Instant::now();
    let mut after = None;
    let mut rows = 0;
    loop {
        let page = store
            .query_observations(&indicators::filter("IND"), after, 1_000)
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.provenance.feed_index, last.provenance.position));
        rows += page.len();
    }
    let paged = started.elapsed();
    assert_eq!(rows, n);
    println!(
        "{name}: {n} observations applied in {applied:?} ({:.0}/s), action check in \
         {checked:?}, paged (1000/page) in {paged:?}",
        n as f64 / applied.as_secs_f64()
    );
}

/// A log node to write: any write goes through the fence.
fn write_one(store: &PgHubStore, index: u64) -> Result<(), StoreError> {
    store.append(&[], &[], &[], &[(0, index, hash(&index.to_string()))], None)
}

#[test]
fn the_lease_has_one_holder_and_fences_a_lost_term() {
    use crate::HubLease;
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let url = schemas.fresh();
    let a = PgHubStore::open(&url).unwrap();
    let b = PgHubStore::open(&url).unwrap();
    let ttl = Duration::from_millis(400);
    a.enable_fencing(ttl).unwrap();
    b.enable_fencing(ttl).unwrap();

    // Nobody holds it: writes are refused on both; the first to try takes term 1.
    assert!(matches!(write_one(&a, 0), Err(StoreError::NotLeader(_))));
    assert_eq!(a.try_acquire("a", "https://a:1", ttl).unwrap(), Some(1));
    assert_eq!(b.try_acquire("b", "https://b:1", ttl).unwrap(), None);
    let current = b.current().unwrap();
    assert_eq!(
        (
            current.holder.as_str(),
            current.endpoint.as_str(),
            current.epoch,
            current.live
        ),
        ("a", "https://a:1", 1, true)
    );
    write_one(&a, 0).unwrap();
    let refused = write_one(&b, 1).unwrap_err();
    assert!(
        matches!(&refused, StoreError::NotLeader(m) if m.contains("standby")),
        "{refused}"
    );
    assert!(refused.is_unavailable());

    // Renewed, it stays a's; left to expire, b takes term 2 and a's next write is refused.
    assert!(a.renew(1, ttl).unwrap());
    std::thread::sleep(ttl + Duration::from_millis(200));
    assert_eq!(b.try_acquire("b", "https://b:1", ttl).unwrap(), Some(2));
    assert_eq!(a.held_epoch(), Some(1), "a has not noticed yet");
    let refused = write_one(&a, 1).unwrap_err();
    assert!(
        matches!(&refused, StoreError::NotLeader(m) if m.contains("term 1 is over")),
        "{refused}"
    );
    assert_eq!(a.held_epoch(), None, "the refused write ended a's term");
    assert!(!a.renew(1, ttl).unwrap());
    write_one(&b, 1).unwrap();
    assert_eq!(b.held_epoch(), Some(2));

    // Released, a may take it at once (term 3), and b is fenced.
    b.release(2).unwrap();
    assert!(matches!(write_one(&b, 2), Err(StoreError::NotLeader(_))));
    assert_eq!(a.try_acquire("a", "https://a:1", ttl).unwrap(), Some(3));
    write_one(&a, 2).unwrap();
    assert_eq!(a.log_node(0, 2).unwrap(), Some(hash("2")));
    assert_eq!(
        a.log_node(0, 1).unwrap(),
        Some(hash("1")),
        "b's write in its term"
    );
}

#[test]
fn a_takeover_waits_for_the_holders_write_in_progress() {
    use crate::HubLease;
    let Some(schemas) = Schemas::new() else {
        return;
    };
    let url = schemas.fresh();
    let a = PgHubStore::open(&url).unwrap();
    a.enable_fencing(Duration::from_millis(300)).unwrap();
    assert_eq!(
        a.try_acquire("a", "", Duration::from_millis(300)).unwrap(),
        Some(1)
    );
    // A write transaction of a's holds the lease row shared (as a paused leader's would)...
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut tx = holder.transaction().unwrap();
    tx.query("SELECT epoch FROM hub_lease FOR SHARE", &[])
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // ...so b cannot take the expired lease until it ends.
    let b = PgHubStore::open(&url).unwrap();
    b.enable_fencing(Duration::from_millis(300)).unwrap();
    assert_eq!(
        b.try_acquire("b", "", Duration::from_millis(300)).unwrap(),
        None
    );
    tx.commit().unwrap();
    assert_eq!(
        b.try_acquire("b", "", Duration::from_millis(300)).unwrap(),
        Some(2)
    );
}
