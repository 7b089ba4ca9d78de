//! PostgreSQL plumbing for the hub store: connections, the writer, the bounded reader pool,
//! deadlines, versioned migrations and column conversions.
//!
//! The same guarantees as the SQLite side, by PostgreSQL means:
//! - durability: every write transaction commits with `synchronous_commit = on` (forced per
//!   session, whatever the server default), so an acknowledged write is on the server's disk;
//! - one writer at a time: each write transaction first takes a transaction-scoped advisory
//!   lock, the counterpart of `BEGIN IMMEDIATE`, so read-then-write rules (feed continuity,
//!   the checkpoint compare-and-swap) hold even with several processes on one database;
//! - with a standby hub, fencing: each write transaction also checks, under a key-share lock, that
//!   the hub lease row still holds this process's term (see [`crate::HubLease`]);
//! - reads run in `REPEATABLE READ READ ONLY` transactions (one snapshot per call) and honour
//!   the caller's deadline ([`crate::with_deadline`]) through `statement_timeout`.

pub mod copy;
pub(crate) mod hub;
mod indicator_store;
mod indicators;
mod lease;
mod sql;

pub use hub::PgHubStore;

use crate::StoreError;
use crate::db::current_deadline;
use crate::pool::ReaderPool;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, IsolationLevel, NoTls, Row, Statement, Transaction};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Prepared statements kept per connection (each is a server-side object).
const STATEMENT_CACHE: usize = 128;
/// How long opening a connection may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The advisory lock every write transaction takes (an arbitrary constant: "rcpfed" and 1).
const WRITE_LOCK: i64 = 0x7263_7066_6564_0001;

/// Whether `s` is a PostgreSQL connection URL (the hub's store setting accepts a path too).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The write was refused for lack of space on the server.
pub(crate) fn is_full(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::DISK_FULL)
}

/// The server is unreachable, shutting down, out of resources or refusing connections: a
/// condition of the machine, not of the request.
pub(crate) fn is_unavailable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), 53 (insufficient resources), 57P0x (shutdown,
        // crash), 58 (system error), and a read-only standby.
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c.starts_with("58")
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        }
        // No SQLSTATE: the connection itself failed (refused, reset, timed out).
        None => true,
    }
}

/// A connection with its prepared statements.
pub(crate) struct Conn {
    client: Client,
    cache: HashMap<String, Statement>,
}

/// A transaction on a [`Conn`], preparing each SQL text once per connection.
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    cache: &'a mut HashMap<String, Statement>,
}

/// Query parameters.
pub(crate) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Tx<'_> {
    fn prepared(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.cache.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.tx.prepare(sql)?;
        if self.cache.len() >= STATEMENT_CACHE {
            self.cache.clear();
        }
        self.cache.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    pub fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let stmt = self.prepared(sql)?;
        Ok(self.tx.query(&stmt, params)?)
    }

    pub fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, StoreError> {
        let stmt = self.prepared(sql)?;
        Ok(self.tx.query_opt(&stmt, params)?)
    }

    pub fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, StoreError> {
        let stmt = self.prepared(sql)?;
        Ok(self.tx.query_one(&stmt, params)?)
    }

    pub fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let stmt = self.prepared(sql)?;
        Ok(self.tx.execute(&stmt, params)?)
    }

    /// Runs `sql` and hands its rows to `each` a batch at a time until `each` says stop
    /// (returns false) or the rows run out: memory holds one batch, not the whole result.
    pub fn for_each_row(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        batch: i32,
        mut each: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let stmt = self.prepared(sql)?;
        let portal = self.tx.bind(&stmt, params)?;
        loop {
            let rows = self.tx.query_portal(&portal, batch)?;
            let last = rows.len() < usize::try_from(batch).unwrap_or(usize::MAX);
            for row in &rows {
                if !each(row)? {
                    return Ok(());
                }
            }
            if last {
                return Ok(());
            }
        }
    }

    /// Runs SQL text (migrations, settings) without parameters.
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.tx.batch_execute(sql)?)
    }

    fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit()?)
    }
}

/// A database layout: its name and migrations.
pub(crate) struct PgSchema {
    /// Human name, also recorded in the database so a node schema is never opened as a hub's.
    pub name: &'static str,
    /// Migration `i` brings the schema from version `i` to `i + 1`. Append only; never edit.
    pub migrations: &'static [&'static str],
}

/// The epoch every write must find in the hub lease row, once fencing is on (a hub with
/// standbys; see [`crate::HubLease`]).
#[derive(Debug, Default)]
pub(crate) struct Fence {
    enabled: AtomicBool,
    /// The term this process holds; 0: none (a standby, or a leader that lost its term).
    epoch: AtomicI64,
    /// Longest a write transaction may sit idle before the server ends it, in milliseconds.
    idle_ms: AtomicU64,
}

impl Fence {
    pub(crate) fn enable(&self, idle_ms: u64) {
        self.idle_ms.store(idle_ms.max(1), Ordering::SeqCst);
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub(crate) fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// Forgets term `epoch` (unless a newer one was taken meanwhile).
    pub(crate) fn lose(&self, epoch: i64) {
        let _ = self
            .epoch
            .compare_exchange(epoch, 0, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub(crate) fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Checks, inside a write transaction, that the lease row holds this process's term. The
    /// key-share lock on the row makes a takeover (which locks it `FOR UPDATE`) wait until this
    /// transaction ends, while a renewal (an update of non-key columns) never waits for it.
    fn check(&self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        if !self.enabled.load(Ordering::SeqCst) {
            return Ok(());
        }
        let held = self.epoch();
        let row = tx.query_opt("SELECT epoch, holder FROM hub_lease FOR KEY SHARE", &[])?;
        let Some(row) = row else {
            return Err(StoreError::Corrupt("the hub lease row is missing".into()));
        };
        let current: i64 = row.try_get(0)?;
        let holder: String = row.try_get(1)?;
        if held != 0 && current == held {
            return Ok(());
        }
        if held != 0 {
            self.lose(held);
            return Err(StoreError::NotLeader(format!(
                "this hub's term {held} is over: {holder} holds the lease in term {current}"
            )));
        }
        Err(StoreError::NotLeader(format!(
            "this hub is a standby; {holder} holds the lease (term {current})"
        )))
    }
}

/// One PostgreSQL database (and schema): a writer connection and a bounded reader pool.
pub(crate) struct PgDb {
    config: Config,
    /// None after the connection broke: the next write reconnects.
    writer: Mutex<Option<Conn>>,
    /// The view applier's own connection (see [`PgDb::write_beside`]).
    beside: Mutex<Option<Conn>>,
    readers: ReaderPool<Conn>,
    /// The lease's own connection, so a renewal never queues behind a long write.
    lease: Mutex<Option<Conn>>,
    pub(crate) fence: Fence,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PgDb {
    /// Connects to `url` and brings the schema up to date.
    pub fn open(url: &str, schema: &PgSchema) -> Result<Self, StoreError> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("rcpfed");
        }
        let db = PgDb {
            config,
            writer: Mutex::new(None),
            beside: Mutex::new(None),
            readers: ReaderPool::new(Vec::new()),
            lease: Mutex::new(None),
            fence: Fence::default(),
        };
        let writer = off_async(|| {
            let mut writer = db.connect()?;
            migrate(&mut writer, schema)?;
            Ok::<_, StoreError>(writer)
        })?;
        *db.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(writer);
        Ok(db)
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let mut client = self.config.connect(NoTls)?;
        // An acknowledged write must survive a server crash, whatever the server's default.
        client.batch_execute("SET synchronous_commit = on")?;
        if self.fence.enabled.load(Ordering::SeqCst) {
            // A paused hub's open transaction would hold the lease row and the write lock.
            let idle_ms = self.fence.idle_ms.load(Ordering::SeqCst);
            client.batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {idle_ms}"
            ))?;
        }
        Ok(Conn {
            client,
            cache: HashMap::new(),
        })
    }

    /// Runs `f` in a write transaction holding the store's write lock and commits; any error
    /// rolls back, so nothing of a failed call is stored.
    pub fn write<T: Send>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_async(|| self.write_here(f))
    }

    fn write_here<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            *guard = Some(self.connect()?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(StoreError::Corrupt("the writer connection vanished".into()));
        };
        let out = run_write(conn, &self.fence, f);
        if conn.client.is_closed() {
            *guard = None;
        }
        out
    }

    /// A write transaction beside the writer's: on its own connection and without the writer
    /// lock, so it runs while the writer commits (the lease fence is checked as for every
    /// write). Only for writes whose rows the writer's transactions do not touch meanwhile:
    /// the hub's background view apply, which the commit leaves alone while the view lags.
    pub fn write_beside<T: Send>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_async(|| {
            let mut guard = self.beside.lock().unwrap_or_else(PoisonError::into_inner);
            if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
                *guard = None;
                *guard = Some(self.connect()?);
            }
            let Some(conn) = guard.as_mut() else {
                return Err(StoreError::Corrupt("the view connection vanished".into()));
            };
            let mut tx = Tx {
                tx: conn.client.transaction()?,
                cache: &mut conn.cache,
            };
            self.fence.check(&mut tx)?;
            let out = f(&mut tx)?;
            tx.commit()?;
            if conn.client.is_closed() {
                *guard = None;
            }
            Ok(out)
        })
    }

    /// Drops the writer connection, so the next write connects with the current settings.
    pub(crate) fn reset_writer(&self) {
        let old = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        off_async(move || drop(old));
    }

    /// Runs `f` in a transaction of the lease's own connection: no write lock, no fence, and a
    /// lock wait of at most `wait` (a paused holder's transaction must not stall the caller).
    pub fn lease_tx<T: Send>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_async(|| {
            let mut guard = self.lease.lock().unwrap_or_else(PoisonError::into_inner);
            if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
                *guard = None;
                *guard = Some(self.connect()?);
            }
            let Some(conn) = guard.as_mut() else {
                return Err(StoreError::Corrupt("the lease connection vanished".into()));
            };
            let out = (|| {
                let mut tx = Tx {
                    tx: conn.client.transaction()?,
                    cache: &mut conn.cache,
                };
                let ms = wait.as_millis().max(1);
                tx.batch(&format!(
                    "SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {}",
                    ms.saturating_mul(2)
                ))?;
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            })();
            if conn.client.is_closed() {
                *guard = None;
            }
            out
        })
    }

    /// Runs `f` in a read-only snapshot transaction on a pooled connection, bound by the
    /// thread's deadline: waiting for a connection and each statement end there.
    pub fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        // Read here: the deadline is a thread-local of the caller's thread.
        let deadline = current_deadline();
        off_async(|| self.read_here(deadline, f))
    }

    fn read_here<T>(
        &self,
        deadline: Option<Instant>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.readers.take(
            deadline,
            |conn: &Conn| !conn.client.is_closed(),
            || self.connect(),
        )?;
        let out = run_read(&mut conn, deadline, f);
        if conn.client.is_closed() {
            self.readers.forget();
        } else {
            self.readers.give_back(conn);
        }
        out
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Closing a connection blocks too (it says goodbye to the server).
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let lease = self
            .lease
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let readers = self.readers.take_idle();
        off_async(move || drop((writer, lease, readers)));
    }
}

/// Runs `f` where the synchronous client may block. The client drives its connection with a
/// runtime of its own, which cannot start on a thread that is inside an async runtime (the hub
/// calls its store from async code in places, as it may with SQLite, and from the blocking
/// pool, which tokio cannot tell apart from here): there `f` runs on a scoped thread of its
/// own, which costs a thread start (tens of microseconds) per call. (`block_in_place` instead
/// stalled the hub's snapshot ingest in the end-to-end tests.)
fn off_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn run_write<T>(
    conn: &mut Conn,
    fence: &Fence,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = Tx {
        tx: conn.client.transaction()?,
        cache: &mut conn.cache,
    };
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    fence.check(&mut tx)?;
    let out = f(&mut tx)?;
    tx.commit()?;
    Ok(out)
}

fn run_read<T>(
    conn: &mut Conn,
    deadline: Option<Instant>,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = Tx {
        tx: conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?,
        cache: &mut conn.cache,
    };
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::DeadlineExceeded(
                "the call's deadline passed before the query started".into(),
            ));
        }
        // Reset at the end of the transaction; the next borrower sets its own.
        let ms = left.as_millis().max(1);
        tx.batch(&format!("SET LOCAL statement_timeout = {ms}"))?;
    }
    match f(&mut tx) {
        Ok(out) => {
            tx.commit()?;
            Ok(out)
        }
        Err(StoreError::Postgres(e)) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
            Err(StoreError::DeadlineExceeded(
                "the query ran past the call's deadline and was stopped".into(),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Applies the missing migrations in one transaction, refusing foreign or newer schemas.
fn migrate(conn: &mut Conn, schema: &PgSchema) -> Result<(), StoreError> {
    let supported = i64::try_from(schema.migrations.len())
        .map_err(|_| StoreError::Corrupt("too many migrations".into()))?;
    let mut tx = Tx {
        tx: conn.client.transaction()?,
        cache: &mut conn.cache,
    };
    // Two processes opening a new database at once: one migrates, the other waits and then
    // finds it done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    let Some(current) = tx
        .query_one("SELECT current_schema()::text", &[])?
        .try_get::<_, Option<String>>(0)?
    else {
        return Err(StoreError::Corrupt(
            "no schema to store into: the search_path names none that exists".into(),
        ));
    };
    let has_meta: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1
                 AND tablename = 'rcpfed_schema')",
            &[&current],
        )?
        .try_get(0)?;
    let found = if has_meta {
        let row = tx.query_opt("SELECT store, version FROM rcpfed_schema", &[])?;
        match row {
            Some(row) => {
                let store: String = row.try_get(0)?;
                if store != schema.name {
                    return Err(StoreError::Corrupt(format!(
                        "schema {current} holds an rcpfed {store} store, not a {} store",
                        schema.name
                    )));
                }
                row.try_get::<_, i64>(1)?
            }
            None => 0,
        }
    } else {
        let objects: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1",
                &[&current],
            )?
            .try_get(0)?;
        // Only an empty schema may be claimed; anything else belongs to someone else.
        if objects != 0 {
            return Err(StoreError::Corrupt(format!(
                "schema {current} is not an rcpfed {} store: it holds {objects} other objects",
                schema.name
            )));
        }
        tx.batch(
            "CREATE TABLE rcpfed_schema (
                 store   TEXT   NOT NULL,
                 version BIGINT NOT NULL CHECK (version >= 0)
             )",
        )?;
        0
    };
    let pending = crate::sql::pending_migrations(schema.name, schema.migrations, found)?;
    if pending.is_empty() {
        return Ok(());
    }
    for sql in pending {
        tx.batch(sql)?;
    }
    tx.execute("DELETE FROM rcpfed_schema", &[])?;
    tx.execute(
        "INSERT INTO rcpfed_schema (store, version) VALUES ($1, $2)",
        &[&schema.name, &supported],
    )?;
    tx.commit()
}

/// A u64 for a BIGINT column.
pub(crate) fn int(value: u64, what: &str) -> Result<i64, StoreError> {
    crate::db::int(value, what)
}

/// The name of the unique or foreign-key constraint a write broke, or None for any other error.
pub(crate) fn violated_constraint(err: &StoreError) -> Option<&str> {
    let StoreError::Postgres(e) = err else {
        return None;
    };
    let db = e.as_db_error()?;
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION
        || *code == SqlState::FOREIGN_KEY_VIOLATION
        || *code == SqlState::CHECK_VIOLATION
        || *code == SqlState::NOT_NULL_VIOLATION
    {
        Some(db.constraint().unwrap_or("a constraint"))
    } else {
        None
    }
}
