//! SQLite plumbing shared by the hub and node stores: connection setup, migrations, the single
//! writer and the reader pool, and integer conversions for binding.

use crate::StoreError;
#[cfg(test)]
use crate::pool::MAX_READERS;
use crate::pool::{IDLE_READERS, ReaderPool};
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// `f` in one read transaction on `conn`: one WAL snapshot for all its statements (a reader
/// that reads a flag and then the rows it chooses, or a page and its count).
pub(crate) fn in_read_tx<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Sets the journal mode of the database at `path` and checks SQLite took it (it answers with
/// the mode in force, which differs when it cannot switch).
pub(crate) fn set_journal_mode(
    conn: &Connection,
    path: &Path,
    mode: &str,
) -> Result<(), StoreError> {
    let now: String = conn.pragma_update_and_check(None, "journal_mode", mode, |r| r.get(0))?;
    if !now.eq_ignore_ascii_case(mode) {
        return Err(StoreError::Corrupt(format!(
            "{} cannot use the {mode} journal mode (got {now})",
            path.display()
        )));
    }
    Ok(())
}

/// How long a connection waits for another process's lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// SQLite virtual-machine steps between two deadline checks of a running query (a check is
/// one clock read; 10,000 steps take well under a millisecond).
const DEADLINE_CHECK_STEPS: i32 = 10_000;
/// Prepared statements cached per connection (the hub's filter variants alone are eight).
const STATEMENT_CACHE: usize = 64;
/// The writer's page cache, in KiB. The default 2 MiB makes a large snapshot's index inserts
/// spill to and re-read from the WAL mid-transaction (twice the apply time at a million
/// observations); pages are only allocated when used.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// The WAL file is cut back to this size when it is reset after a complete checkpoint, so a
/// burst does not leave a large file behind.
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// Longest pause between two checkpoints while commits keep coming; an idle store is
/// checkpointed once after its last commit.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Longest wait of [`Db::write_after_waiting`] for the callers ahead of it.
const YIELD_AT_MOST: Duration = Duration::from_millis(500);

/// Data work run after the SQL migrations, given the version the file had (0 when new).
pub(crate) type Upgrade = fn(&Transaction<'_>, i64) -> Result<(), StoreError>;

/// A database layout: what the file is for and how to build it.
pub(crate) struct Schema {
    /// Human name used in messages ("hub", "node").
    pub name: &'static str,
    /// `PRAGMA application_id`, so a node file is never opened as a hub file or vice versa.
    pub application_id: i64,
    /// Migration `i` brings the schema from version `i` to `i + 1`. Append only; never edit.
    pub migrations: &'static [&'static str],
    /// Data work a migration cannot do in SQL (rebuilding a derived view from the log), run in
    /// the migration transaction after the SQL with the version the file had (0 when new).
    pub upgrade: Option<Upgrade>,
}

thread_local! {
    /// The deadline of the read work running on this thread (see [`with_deadline`]).
    static READ_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with reads bound by `deadline`: a store query still running at the deadline is
/// interrupted and fails with [`StoreError::DeadlineExceeded`], and waiting for a free read
/// connection ends there too. The store API is synchronous, so the deadline travels with the
/// thread rather than through every method.
pub fn with_deadline<T>(deadline: Option<Instant>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            READ_DEADLINE.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(READ_DEADLINE.with(|d| d.replace(deadline)));
    f()
}

/// The deadline reads on this thread run under (see [`with_deadline`]), if any.
pub fn current_deadline() -> Option<Instant> {
    READ_DEADLINE.with(Cell::get)
}

/// One SQLite database: a single writer plus a bounded pool of read-only connections.
pub(crate) struct Db {
    // First to drop: its connection must close before the writer's, which is the last.
    checkpointer: Checkpointer,
    path: PathBuf,
    // Readers drop first so the writer closes last and checkpoints and removes the WAL file.
    readers: ReaderPool<Connection>,
    writer: Mutex<Connection>,
    /// Callers of [`Db::write`] waiting for the writer: [`Db::write_after_waiting`] lets them
    /// go first.
    waiting_writers: AtomicUsize,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path, schema: &Schema) -> Result<Self, StoreError> {
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        set_journal_mode(&writer, path, "WAL")?;
        // FULL: in WAL mode NORMAL may lose the last commits on power loss, and an
        // acknowledged statement must survive.
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // Checkpoints run on their own connection and thread, never inside a commit: SQLite's
        // automatic checkpoint would copy the WAL into the database on the committing thread
        // (the hub's sequencer), holding up every receipt behind it.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        migrate(&mut writer, schema)?;
        let checkpointer = Checkpointer::start(path)?;

        let mut readers = Vec::with_capacity(IDLE_READERS);
        for _ in 0..IDLE_READERS {
            readers.push(open_reader(path)?);
        }
        Ok(Db {
            checkpointer,
            path: path.to_path_buf(),
            readers: ReaderPool::new(readers),
            writer: Mutex::new(writer),
            waiting_writers: AtomicUsize::new(0),
        })
    }

    /// Caps the database file at about `bytes` (`PRAGMA max_page_count`; None lifts the cap).
    /// A write that would grow the file past it fails as if the disk were full, and the
    /// callers refuse new work with UNAVAILABLE until space returns, which a later call
    /// with a larger cap provides (an operator quota, and the way the tests fill a "disk").
    /// Returns the cap in effect, in bytes.
    pub fn set_max_bytes(&self, bytes: Option<u64>) -> Result<u64, StoreError> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let page_size = u64::try_from(page_size.max(1)).unwrap_or(4096);
        // SQLite's own maximum (and default) page count.
        let pages: i64 = bytes.map_or(4_294_967_294, |b| {
            i64::try_from((b / page_size).clamp(1, 4_294_967_294)).unwrap_or(4_294_967_294)
        });
        // SQLite never sets the cap below the current size; it answers the value kept.
        let kept: i64 =
            conn.pragma_update_and_check(None, "max_page_count", pages, |r| r.get(0))?;
        Ok(u64::try_from(kept).unwrap_or(0).saturating_mul(page_size))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits; any error rolls back.
    ///
    /// IMMEDIATE takes the write lock up front, so a read-then-write never hits SQLITE_BUSY
    /// half-way (a deferred transaction cannot be upgraded once another writer committed).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock leaves the connection usable: the dropped
        // transaction rolled back.
        self.waiting_writers.fetch_add(1, Ordering::SeqCst);
        let conn = self.writer.lock();
        self.waiting_writers.fetch_sub(1, Ordering::SeqCst);
        self.write_on(conn.unwrap_or_else(PoisonError::into_inner), f)
    }

    /// [`Db::write`] for background work that may come second: it first lets every caller
    /// already waiting for the writer go (at most [`YIELD_AT_MOST`]), so a run of such
    /// transactions (the pieces of a snapshot's view) never keeps a commit waiting for more
    /// than one of them. (The writer's mutex is not fair: released and taken again at once,
    /// it would usually go to the same thread.)
    pub fn write_after_waiting<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let until = Instant::now() + YIELD_AT_MOST;
        while self.waiting_writers.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(200));
        }
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_on(conn, f)
    }

    /// Whether a caller of [`Db::write`] is waiting for the writer.
    pub fn writers_waiting(&self) -> bool {
        self.waiting_writers.load(Ordering::SeqCst) > 0
    }

    fn write_on<T>(
        &self,
        mut conn: std::sync::MutexGuard<'_, Connection>,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        self.checkpointer.committed();
        Ok(out)
    }

    /// [`Db::read`] in one read transaction ([`in_read_tx`]).
    pub fn read_snapshot<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(|conn| in_read_tx(conn, f))
    }

    /// Runs `f` on a read-only connection from the pool, bound by the thread's deadline
    /// ([`with_deadline`]): waiting for a connection and the query itself end there.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = READ_DEADLINE.with(Cell::get);
        let mut conn = self
            .readers
            .take(deadline, |_| true, || open_reader(&self.path))?;
        let out = match deadline {
            Some(deadline) => {
                let installed = conn.progress_handler(
                    DEADLINE_CHECK_STEPS,
                    Some(move || Instant::now() >= deadline),
                );
                let out = installed.map_err(StoreError::from).and_then(|()| f(&conn));
                // The next borrower may have no deadline, or a later one.
                let removed = conn.progress_handler(DEADLINE_CHECK_STEPS, None::<fn() -> bool>);
                match (out, removed) {
                    (Err(e), _) if e.is_interrupted() => Err(StoreError::DeadlineExceeded(
                        "the query ran past the call's deadline and was stopped".into(),
                    )),
                    (out, Ok(())) => out,
                    (_, Err(e)) => {
                        // A connection whose handler could not be reset is not put back.
                        self.readers.forget();
                        return Err(e.into());
                    }
                }
            }
            None => f(&conn),
        };
        self.readers.give_back(conn);
        out
    }
}

/// Copies committed WAL frames into the database file on a thread of its own, after commits
/// (at most every [`CHECKPOINT_EVERY`]). PASSIVE: it never waits for, nor blocks, the writer
/// or a reader; what a long reader still needs is copied by a later round.
struct Checkpointer {
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let name = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Ends when the store is dropped (the sender goes away); the writer's close
                // then checkpoints what is left.
                let mut due = woken.recv().is_ok();
                while due {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(db = %name, error = %e, "WAL checkpoint failed; retried after the next commit");
                    }
                    // A pause between rounds; commits during it make the next round due.
                    let until = Instant::now() + CHECKPOINT_EVERY;
                    let mut again = false;
                    loop {
                        let left = until.saturating_duration_since(Instant::now());
                        match woken.recv_timeout(left) {
                            Ok(()) => again = true,
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    due = again || woken.recv().is_ok();
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// A commit happened: a checkpoint round is due (one queued wake-up is enough).
    fn committed(&self) {
        if let Some(wake) = &self.wake {
            // Full means a round is queued already; disconnected means the thread has ended.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            // Commits stay durable in the WAL either way; a panic is still worth saying.
            tracing::error!("the WAL checkpoint thread panicked; its work stopped early");
        }
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Applies the missing migrations in one transaction, refusing foreign or newer files.
fn migrate(conn: &mut Connection, schema: &Schema) -> Result<(), StoreError> {
    let supported = i64::try_from(schema.migrations.len())
        .map_err(|_| StoreError::Corrupt("too many migrations".into()))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let app_id: i64 = tx.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if app_id != schema.application_id {
        let objects: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        // Only an empty file may be claimed; anything else belongs to someone else.
        if app_id != 0 || found != 0 || objects != 0 {
            return Err(StoreError::Corrupt(format!(
                "not an rcpfed {} store (application_id {app_id:#x}, user_version {found})",
                schema.name
            )));
        }
    }
    let pending = crate::sql::pending_migrations(schema.name, schema.migrations, found)?;
    if pending.is_empty() {
        return Ok(());
    }
    for sql in pending {
        tx.execute_batch(sql)?;
    }
    if let Some(upgrade) = schema.upgrade {
        upgrade(&tx, found)?;
    }
    tx.pragma_update(None, "application_id", schema.application_id)?;
    tx.pragma_update(None, "user_version", supported)?;
    tx.commit()?;
    Ok(())
}

/// Converts a u64 for storage in an INTEGER column (SQLite integers are signed 64-bit).
pub(crate) fn int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Conflict(format!("{what} {value} is beyond the storable range")))
}

/// A u64 query bound, clamped: nothing stored exceeds i64::MAX anyway.
pub(crate) fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A u64 key for an exact-match lookup: None if it exceeds i64::MAX, so nothing can match it
/// (clamping would wrongly find the row at i64::MAX).
pub(crate) fn key(value: u64) -> Option<i64> {
    i64::try_from(value).ok()
}

/// A LIMIT value, clamped.
pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The SQLite message of a constraint violation, or None for any other error.
pub(crate) fn constraint_message(err: &rusqlite::Error) -> Option<String> {
    match err {
        rusqlite::Error::SqliteFailure(e, msg) if e.code == ErrorCode::ConstraintViolation => {
            Some(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::{Arc, Barrier};

    const TEST_SCHEMA: Schema = Schema {
        name: "test",
        application_id: 0x7465_7374,
        migrations: &["CREATE TABLE blob (id INTEGER PRIMARY KEY, data BLOB NOT NULL);"],
        upgrade: None,
    };

    /// A query that runs for minutes: counts to ten billion.
    const SLOW_QUERY: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                              WHERE i < 10000000000) SELECT count(*) FROM n";

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), &TEST_SCHEMA).unwrap();
        (dir, db)
    }

    fn count(db: &Db) -> Result<i64, StoreError> {
        db.read(|c| Ok(c.query_row("SELECT count(*) FROM blob", [], |r| r.get(0))?))
    }

    /// A background write (a piece of a snapshot's view) lets a commit that is already
    /// waiting for the writer go first, although the writer's mutex is not fair.
    #[test]
    fn a_waiting_commit_goes_before_background_work() {
        let (_dir, db) = open();
        let db = Arc::new(db);
        let order = Arc::new(Mutex::new(Vec::new()));
        let holding = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let holder = {
            let (db, holding, release) =
                (Arc::clone(&db), Arc::clone(&holding), Arc::clone(&release));
            std::thread::spawn(move || {
                db.write(|_| {
                    holding.wait();
                    release.wait();
                    Ok(())
                })
            })
        };
        holding.wait();
        let commit = {
            let (db, order) = (Arc::clone(&db), Arc::clone(&order));
            std::thread::spawn(move || {
                db.write(|_| {
                    order.lock().unwrap().push("commit");
                    Ok(())
                })
            })
        };
        while !db.writers_waiting() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let background = {
            let (db, order) = (Arc::clone(&db), Arc::clone(&order));
            std::thread::spawn(move || {
                db.write_after_waiting(|_| {
                    order.lock().unwrap().push("background");
                    Ok(())
                })
            })
        };
        // The background writer is now polling behind the waiting commit.
        std::thread::sleep(Duration::from_millis(20));
        release.wait();
        holder.join().unwrap().unwrap();
        commit.join().unwrap().unwrap();
        background.join().unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["commit", "background"]);
    }

    #[test]
    fn commits_are_checkpointed_into_the_database_file_off_the_writer() {
        let (dir, db) = open();
        let file = dir.path().join("t.db");
        let before = std::fs::metadata(&file).unwrap().len();
        db.write(|tx| {
            for _ in 0..200 {
                tx.execute("INSERT INTO blob (data) VALUES (zeroblob(4096))", [])?;
            }
            Ok(())
        })
        .unwrap();
        // The writer never checkpoints (wal_autocheckpoint = 0): only the checkpoint thread
        // can move the pages from the WAL into the file.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&file).unwrap().len() < before + 200 * 4096 {
            assert!(
                Instant::now() < deadline,
                "the committed pages never reached the database file"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(count(&db).unwrap(), 200);
    }

    #[test]
    fn a_slow_read_is_stopped_at_its_deadline_and_the_pool_stays_usable() {
        let (_dir, db) = open();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let out = with_deadline(Some(deadline), || {
            db.read(|c| Ok(c.query_row(SLOW_QUERY, [], |r| r.get::<_, i64>(0))?))
        });
        let took = started.elapsed();
        assert!(
            matches!(out, Err(StoreError::DeadlineExceeded(_))),
            "{out:?}"
        );
        // Stopped near the deadline, not minutes later; generous for a loaded 2-core machine.
        assert!(took < Duration::from_secs(5), "took {took:?}");
        // Every pooled connection is usable afterwards, and a read without a deadline is not
        // cut by the handler left from the previous one.
        for _ in 0..IDLE_READERS + 1 {
            assert_eq!(count(&db).unwrap(), 0);
        }
        let fast = with_deadline(Some(Instant::now() + Duration::from_secs(30)), || {
            db.read(|c| {
                Ok(c.query_row(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                     WHERE i < 100000) SELECT count(*) FROM n",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
        });
        assert_eq!(fast.unwrap(), 100_000);
    }

    #[test]
    fn readers_are_bounded_and_a_caller_waits_at_most_until_its_deadline() {
        let (_dir, db) = open();
        let db = Arc::new(db);
        // Every connection the pool allows is lent out and held.
        let holding = Arc::new(Barrier::new(MAX_READERS + 1));
        let release = Arc::new(Barrier::new(MAX_READERS + 1));
        let holders: Vec<_> = (0..MAX_READERS)
            .map(|_| {
                let (db, holding, release) =
                    (Arc::clone(&db), Arc::clone(&holding), Arc::clone(&release));
                std::thread::spawn(move || {
                    db.read(|_| {
                        holding.wait();
                        release.wait();
                        Ok(())
                    })
                })
            })
            .collect();
        holding.wait();
        assert_eq!(db.readers.open_count(), MAX_READERS);
        let started = Instant::now();
        let out = with_deadline(Some(started + Duration::from_millis(200)), || count(&db));
        assert!(
            matches!(&out, Err(StoreError::DeadlineExceeded(m)) if m.contains("busy")),
            "{out:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        // No connection beyond the bound was opened for the waiting caller.
        assert_eq!(db.readers.open_count(), MAX_READERS);
        // A waiting caller gets the first connection given back.
        let waiter = {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                with_deadline(Some(Instant::now() + Duration::from_secs(30)), || {
                    count(&db)
                })
            })
        };
        release.wait();
        for h in holders {
            h.join().unwrap().unwrap();
        }
        assert_eq!(waiter.join().unwrap().unwrap(), 0);
        // The pool shrinks back to its idle size.
        assert!(db.readers.open_count() <= IDLE_READERS);
    }

    #[test]
    fn a_full_store_refuses_the_whole_write_keeps_reading_and_resumes_when_space_returns() {
        let (_dir, db) = open();
        let cap = db.set_max_bytes(Some(256 * 1024)).unwrap();
        assert!(cap <= 256 * 1024, "{cap}");
        let write = |rows: usize| {
            db.write(|tx| {
                for _ in 0..rows {
                    tx.execute("INSERT INTO blob (data) VALUES (zeroblob(8192))", [])?;
                }
                Ok(())
            })
        };
        let mut stored = 0;
        let refused = loop {
            match write(4) {
                Ok(()) => stored += 4,
                Err(e) => break e,
            }
            assert!(stored < 1000, "the cap never bit");
        };
        assert!(refused.is_full() && refused.is_unavailable(), "{refused:?}");
        // The refused transaction left nothing; what was committed is all there and readable.
        assert_eq!(count(&db).unwrap(), stored);
        // The writer is not wedged: once space returns the same write succeeds.
        db.set_max_bytes(None).unwrap();
        write(4).unwrap();
        assert_eq!(count(&db).unwrap(), stored + 4);
    }
}
