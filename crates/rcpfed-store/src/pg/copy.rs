//! Logical copies of a hub store between PostgreSQL and a SQLite hub database file: the
//! backup of a hub on PostgreSQL is a SQLite hub database (the format `rcpfed backup` writes for
//! a SQLite hub, checked and read by the same tools), and a restore copies such a file into an
//! empty PostgreSQL database. The two schemas have the same tables and columns; only the
//! column types differ (BIGINT/INTEGER, BYTEA/BLOB, DOUBLE PRECISION/REAL, BOOLEAN/INTEGER).
//!
//! The PostgreSQL side of a backup is one `REPEATABLE READ READ ONLY` transaction, so the copy
//! is one consistent state of a hub that keeps serving; rows are streamed, not collected. A
//! restore is one transaction with `COPY … BINARY`: all or nothing.

use crate::SqliteHubStore;
use crate::StoreError;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Config, IsolationLevel, NoTls};
use rusqlite::types::Value;
use std::path::Path;

/// The hub's tables, parents before the tables that refer to them. Operational state (the
/// schema version, a standby lease) is not part of a backup.
pub const HUB_TABLES: &[&str] = &[
    "statements",
    "equivocations",
    "log_nodes",
    "checkpoints",
    "cosignatures",
    "statement_flags",
    "observations",
    "policy_objectives",
    "policy_coverage",
    "chunks",
];

/// Rows copied per table, in [`HUB_TABLES`] order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// (table, rows).
    pub tables: Vec<(&'static str, u64)>,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

fn connect(url: &str) -> Result<postgres::Client, StoreError> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name("rcpfed backup");
    Ok(config.connect(NoTls)?)
}

/// The columns of `table` on PostgreSQL, with their types, in the table's order.
fn pg_columns(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
) -> Result<Vec<(String, Type)>, StoreError> {
    // Preparing a SELECT of every column gives the names and types without reading a row.
    let statement = tx.prepare(&format!("SELECT * FROM {table} LIMIT 0"))?;
    Ok(statement
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect())
}

/// Checks that SQLite's `table` has exactly the columns PostgreSQL's has.
fn same_columns(
    sqlite: &rusqlite::Connection,
    table: &str,
    pg: &[(String, Type)],
) -> Result<(), StoreError> {
    let statement = sqlite.prepare(&format!("SELECT * FROM {table} LIMIT 0"))?;
    let mut theirs: Vec<String> = statement.column_names().map(str::to_string).collect();
    let mut ours: Vec<String> = pg.iter().map(|(n, _)| n.clone()).collect();
    theirs.sort();
    ours.sort();
    if theirs != ours {
        return Err(corrupt(format!(
            "table {table} has columns {ours:?} on PostgreSQL but {theirs:?} in the SQLite file: \
             the two are at different schema versions; upgrade rcpfed on both sides first"
        )));
    }
    Ok(())
}

/// PostgreSQL value of column `i` of `row` → SQLite value.
fn to_sqlite(row: &postgres::Row, i: usize, ty: &Type) -> Result<Value, StoreError> {
    Ok(match *ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Integer(i64::from(v))),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Integer(i64::from(v))),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, Value::Real),
        Type::TEXT | Type::VARCHAR => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null, Value::Blob),
        ref other => {
            return Err(corrupt(format!(
                "column {} has the PostgreSQL type {other}, which a backup cannot hold",
                row.columns()[i].name()
            )));
        }
    })
}

/// SQLite value → the parameter for a PostgreSQL column of type `ty` (named `column`).
fn to_pg(value: Value, ty: &Type, column: &str) -> Result<Box<dyn ToSql + Sync>, StoreError> {
    let wrong = |v: &Value| {
        corrupt(format!(
            "column {column}: the SQLite file holds {v:?} where PostgreSQL expects {ty}"
        ))
    };
    Ok(match (ty, value) {
        (&Type::INT8, Value::Null) => Box::new(None::<i64>),
        (&Type::INT8, Value::Integer(v)) => Box::new(Some(v)),
        (&Type::INT4, Value::Null) => Box::new(None::<i32>),
        (&Type::INT4, Value::Integer(v)) => Box::new(Some(
            i32::try_from(v).map_err(|_| wrong(&Value::Integer(v)))?,
        )),
        (&Type::BOOL, Value::Null) => Box::new(None::<bool>),
        (&Type::BOOL, Value::Integer(v)) => Box::new(Some(v != 0)),
        (&Type::FLOAT8, Value::Null) => Box::new(None::<f64>),
        (&Type::FLOAT8, Value::Real(v)) => Box::new(Some(v)),
        // SQLite stores a REAL that is a whole number as it was given.
        (&Type::FLOAT8, Value::Integer(v)) => Box::new(Some(v as f64)),
        (&Type::TEXT | &Type::VARCHAR, Value::Null) => Box::new(None::<String>),
        (&Type::TEXT | &Type::VARCHAR, Value::Text(v)) => Box::new(Some(v)),
        (&Type::BYTEA, Value::Null) => Box::new(None::<Vec<u8>>),
        (&Type::BYTEA, Value::Blob(v)) => Box::new(Some(v)),
        (_, other) => return Err(wrong(&other)),
    })
}

/// Copies the hub store at `url` into a new SQLite hub database at `out` (which must not
/// exist), as of one snapshot of the database. The file appears only once complete.
pub fn pg_hub_to_sqlite(url: &str, out: &Path) -> Result<CopyReport, StoreError> {
    if out.exists() {
        return Err(corrupt(format!(
            "{} exists already; a backup is never written over a file",
            out.display()
        )));
    }
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    // The SQLite schema, made by the store itself.
    drop(SqliteHubStore::open(&partial)?);
    let report = (|| {
        let mut sqlite = rusqlite::Connection::open(&partial)?;
        // One self-contained file, like every other backup.
        sqlite.pragma_update(None, "journal_mode", "DELETE")?;
        let mut client = connect(url)?;
        let mut pg = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let target = sqlite.transaction()?;
        let mut report = CopyReport::default();
        for table in HUB_TABLES {
            let columns = pg_columns(&mut pg, table)?;
            same_columns(&target, table, &columns)?;
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let list = names.join(", ");
            let placeholders = vec!["?"; names.len()].join(", ");
            let mut insert = target.prepare(&format!(
                "INSERT INTO {table} ({list}) VALUES ({placeholders})"
            ))?;
            let rows = pg.query_raw(
                &format!("SELECT {list} FROM {table}"),
                std::iter::empty::<&(dyn ToSql + Sync)>(),
            )?;
            let mut count = 0u64;
            let mut rows = rows;
            while let Some(row) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
                let values = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, ty))| to_sqlite(&row, i, ty))
                    .collect::<Result<Vec<_>, _>>()?;
                insert.execute(rusqlite::params_from_iter(values))?;
                count += 1;
            }
            report.tables.push((table, count));
        }
        // How far the view is applied: the copied view holds exactly that much (and the
        // pieces of a snapshot being applied over versions in force, which the applier undoes).
        let cursor = pg.query_one(
            "SELECT applied_through, superseding FROM view_cursor WHERE id = 1",
            &[],
        )?;
        let (applied, superseding): (i64, Option<i64>) = (cursor.try_get(0)?, cursor.try_get(1)?);
        target.execute(
            "UPDATE view_cursor SET applied_through = ?1, superseding = ?2 WHERE id = 1",
            rusqlite::params![applied, superseding],
        )?;
        target.commit()?;
        pg.commit()?;
        sqlite.close().map_err(|(_, e)| e)?;
        Ok::<_, StoreError>(report)
    })();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let io = |what: &str, e: std::io::Error| corrupt(format!("{what} {}: {e}", out.display()));
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("syncing the backup", e))?;
    std::fs::rename(&partial, out).map_err(|e| io("renaming the backup to", e))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing the directory of", e))?;
    }
    Ok(report)
}

/// Copies the SQLite hub database `file` into the PostgreSQL database at `url`, whose hub
/// tables must be empty (the schema is created if missing). One transaction: on any error
/// nothing is stored.
pub fn sqlite_hub_to_pg(file: &Path, url: &str) -> Result<CopyReport, StoreError> {
    // The PostgreSQL schema, made (or brought up to date) by the store itself.
    drop(crate::PgHubStore::open(url)?);
    let sqlite = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let source = sqlite.unchecked_transaction()?;
    let mut client = connect(url)?;
    let mut pg = client.transaction()?;
    for table in HUB_TABLES {
        let held: bool = pg
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])?
            .try_get(0)?;
        if held {
            return Err(corrupt(format!(
                "the PostgreSQL database already holds hub data (table {table} is not empty); \
                 nothing changed. Restore into an empty database (createdb a new one and point \
                 database_url at it)"
            )));
        }
    }
    let mut report = CopyReport::default();
    for table in HUB_TABLES {
        let columns = pg_columns(&mut pg, table)?;
        same_columns(&source, table, &columns)?;
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let list = names.join(", ");
        let types: Vec<Type> = columns.iter().map(|(_, t)| t.clone()).collect();
        // COPY writes identity columns as given (like OVERRIDING SYSTEM VALUE).
        let sink = pg.copy_in(&format!("COPY {table} ({list}) FROM STDIN BINARY"))?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        let mut select = source.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut rows = select.query([])?;
        let mut count = 0u64;
        while let Some(row) = rows.next()? {
            let params = columns
                .iter()
                .enumerate()
                .map(|(i, (name, ty))| to_pg(row.get::<_, Value>(i)?, ty, name))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
            writer.write(&refs)?;
            count += 1;
        }
        writer.finish()?;
        report.tables.push((table, count));
    }
    // How far the view is applied: the copied view holds exactly that much (and the pieces
    // of a snapshot being applied over versions in force, which the applier undoes).
    let (applied, superseding): (i64, Option<i64>) = source.query_row(
        "SELECT applied_through, superseding FROM view_cursor WHERE id = 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    pg.execute(
        "UPDATE view_cursor SET applied_through = $1, superseding = $2 WHERE id = 1",
        &[&applied, &superseding],
    )?;
    // Identity columns go on after the copied rows.
    for table in ["equivocations", "statement_flags"] {
        pg.batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
             COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        ))?;
    }
    pg.commit()?;
    drop(source);
    Ok(report)
}
