//! SQLite plumbing shared by the hub and node stores: connection setup, migrations, the single
//! writer and the reader pool, and column conversions.

use crate::StoreError;
use rcpfed_core::Digest;
use rcpfed_core::merkle::Hash;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How long a connection waits for another process's lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Idle read connections kept open; more are opened on demand under load.
const READER_POOL: usize = 4;
/// Prepared statements cached per connection (the hub's filter variants alone are eight).
const STATEMENT_CACHE: usize = 64;
/// The writer's page cache, in KiB. The default 2 MiB makes a large snapshot's index inserts
/// spill to and re-read from the WAL mid-transaction (twice the apply time at a million
/// observations); pages are only allocated when used.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

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

/// One SQLite database: a single writer plus a pool of read-only connections.
pub(crate) struct Db {
    path: PathBuf,
    // Readers drop first so the writer closes last and checkpoints and removes the WAL file.
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Connection>,
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
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "{} cannot use WAL journal mode (got {mode})",
                path.display()
            )));
        }
        // FULL: in WAL mode NORMAL may lose the last commits on power loss, and an
        // acknowledged statement must survive.
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        migrate(&mut writer, schema)?;

        let mut readers = Vec::with_capacity(READER_POOL);
        for _ in 0..READER_POOL {
            readers.push(open_reader(path)?);
        }
        Ok(Db {
            path: path.to_path_buf(),
            readers: Mutex::new(readers),
            writer: Mutex::new(writer),
        })
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
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` on a read-only connection from the pool.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        out
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
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    if found < 0 {
        return Err(StoreError::Corrupt(format!(
            "negative schema version {found}"
        )));
    }
    if found == supported {
        return Ok(());
    }
    for (version, sql) in schema.migrations.iter().enumerate().skip(found as usize) {
        tracing::info!(
            store = schema.name,
            to = version + 1,
            "applying schema migration"
        );
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

/// Reads a non-negative INTEGER column as u64.
pub(crate) fn get_u64(row: &Row<'_>, idx: usize) -> Result<u64, StoreError> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| corrupt_column(row, idx, v))
}

/// Reads an INTEGER column that must fit a u32.
pub(crate) fn get_u32(row: &Row<'_>, idx: usize) -> Result<u32, StoreError> {
    let v: i64 = row.get(idx)?;
    u32::try_from(v).map_err(|_| corrupt_column(row, idx, v))
}

/// Reads a nullable non-negative INTEGER column as u64.
pub(crate) fn get_opt_u64(row: &Row<'_>, idx: usize) -> Result<Option<u64>, StoreError> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(v) => u64::try_from(v)
            .map(Some)
            .map_err(|_| corrupt_column(row, idx, v)),
    }
}

/// Reads a 32-byte BLOB column as a digest.
pub(crate) fn get_digest(row: &Row<'_>, idx: usize) -> Result<Digest, StoreError> {
    let bytes = row.get_ref(idx)?.as_blob().map_err(rusqlite::Error::from)?;
    Digest::from_slice(bytes).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "column {} holds a {}-byte digest",
            row.as_ref().column_name(idx).unwrap_or("?"),
            bytes.len()
        ))
    })
}

/// Reads a 32-byte BLOB column as a Merkle tree hash.
pub(crate) fn get_hash(row: &Row<'_>, idx: usize) -> Result<Hash, StoreError> {
    let bytes = row.get_ref(idx)?.as_blob().map_err(rusqlite::Error::from)?;
    Hash::try_from(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "column {} holds a {}-byte hash",
            row.as_ref().column_name(idx).unwrap_or("?"),
            bytes.len()
        ))
    })
}

fn corrupt_column(row: &Row<'_>, idx: usize, value: i64) -> StoreError {
    StoreError::Corrupt(format!(
        "column {} holds out-of-range value {value}",
        row.as_ref().column_name(idx).unwrap_or("?")
    ))
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
