//! The small SQL layer both stores share, so each statement's text and each row's mapping are
//! written once:
//! - [`Query`]: one statement, written with PostgreSQL's `$1` placeholders; the SQLite text
//!   (`?1`) is derived at compile time by [`query!`]. Where the dialects really differ (a
//!   lateral join, a row lock), [`Query::per_dialect`] holds the two texts side by side.
//! - [`Param`]: a value both drivers can bind (i64, &str, &[u8], f64, bool and their Options).
//! - [`SqlRow`]: the column reads a row mapping needs, over either driver's row.
//! - [`Sql`]: running a statement on either driver's connection or transaction.
//!
//! It is plain SQL: no query builder, and the transaction rules stay with each backend.

mod sqlite;
pub(crate) use sqlite::Lite;

use crate::StoreError;
use rcpfed_core::Digest;
use rcpfed_core::merkle::Hash;

/// Which SQL engine a text is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    // Only the postgres feature runs PostgreSQL texts; the texts are written either way.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

impl Dialect {
    /// The `n`th positional placeholder (from 1), for SQL assembled at run time.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// One SQL statement for both engines.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Query {
    sqlite: &'static str,
    postgres: &'static str,
}

impl Query {
    /// Two texts for one statement, where the engines need different SQL.
    pub const fn per_dialect(sqlite: &'static str, postgres: &'static str) -> Query {
        Query { sqlite, postgres }
    }

    /// Used by [`query!`]: the PostgreSQL text and its SQLite rendering.
    pub const fn from_rendering(postgres: &'static str, sqlite: &'static [u8]) -> Query {
        match std::str::from_utf8(sqlite) {
            Ok(sqlite) => Query { sqlite, postgres },
            // Evaluated at compile time: a bad rendering fails the build, never a run.
            Err(_) => panic!("the SQLite rendering of a query is not UTF-8"),
        }
    }

    /// The text for `dialect`.
    pub const fn text(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// `text` with every `$<digit>` placeholder turned into SQLite's `?<digit>` (same length).
/// SQLite reads `$1` as a *named* parameter numbered by first appearance, which would silently
/// bind the wrong values wherever `$2` appears before `$1`.
pub(crate) const fn sqlite_rendering<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        if bytes[i] == b'$' && i + 1 < N && bytes[i + 1].is_ascii_digit() {
            out[i] = b'?';
        }
        i += 1;
    }
    out
}

/// A [`Query`] from one text with `$1`-style placeholders; usable in a `const`.
macro_rules! query {
    ($text:expr) => {{
        const POSTGRES: &str = $text;
        const SQLITE: [u8; POSTGRES.len()] = $crate::sql::sqlite_rendering(POSTGRES);
        $crate::sql::Query::from_rendering(POSTGRES, &SQLITE)
    }};
}
pub(crate) use query;

/// The migrations a database at schema version `found` still needs, in order (none when it
/// is current); each is logged. A version newer than `migrations` knows, or
/// a negative one, is refused: opening it could damage it.
pub(crate) fn pending_migrations(
    store: &'static str,
    migrations: &'static [&'static str],
    found: i64,
) -> Result<Vec<&'static str>, StoreError> {
    let supported = i64::try_from(migrations.len())
        .map_err(|_| StoreError::Corrupt("too many migrations".into()))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    let done = usize::try_from(found)
        .map_err(|_| StoreError::Corrupt(format!("negative schema version {found}")))?;
    Ok(migrations
        .iter()
        .enumerate()
        .skip(done)
        .map(|(version, sql)| {
            tracing::info!(store, to = version + 1, "applying schema migration");
            *sql
        })
        .collect())
}

/// SQL text ready for one dialect: a [`Query`], or text assembled at run time for it.
pub(crate) trait AsSql {
    fn sql(&self, dialect: Dialect) -> &str;
}

impl AsSql for Query {
    fn sql(&self, dialect: Dialect) -> &str {
        self.text(dialect)
    }
}

impl AsSql for str {
    fn sql(&self, _: Dialect) -> &str {
        self
    }
}

impl AsSql for String {
    fn sql(&self, _: Dialect) -> &str {
        self
    }
}

/// A value both drivers can bind. Bind i64 for every integer column: PostgreSQL's BIGINT takes
/// no other Rust integer.
#[cfg(feature = "postgres")]
pub(crate) trait Param: rusqlite::ToSql + ::postgres::types::ToSql + Sync {}
#[cfg(feature = "postgres")]
impl<T: rusqlite::ToSql + ::postgres::types::ToSql + Sync> Param for T {}
/// A value both drivers can bind (only SQLite in this build).
#[cfg(not(feature = "postgres"))]
pub(crate) trait Param: rusqlite::ToSql + Sync {}
#[cfg(not(feature = "postgres"))]
impl<T: rusqlite::ToSql + Sync> Param for T {}

/// Query parameters.
pub(crate) type Params<'p> = [&'p dyn Param];

/// A listing's page read row by row: at most `limit` rows, and no more once the next row would
/// take it past `max_bytes` (at least one row), each row's size in bytes in its column 0. Read
/// one row more than `limit` to learn whether more follow.
pub(crate) struct BytePage<T> {
    rows: Vec<T>,
    used: usize,
    more: bool,
    limit: usize,
    max_bytes: usize,
}

impl<T> BytePage<T> {
    pub(crate) fn new(limit: usize, max_bytes: usize) -> Self {
        BytePage {
            rows: Vec::new(),
            used: 0,
            more: false,
            limit,
            max_bytes,
        }
    }

    /// Takes `row`, mapped by `map`, if the page has room; false (stop reading) once it is full.
    pub(crate) fn take(
        &mut self,
        row: &dyn SqlRow,
        map: impl FnOnce(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<bool, StoreError> {
        let size = row.size(0)?;
        if self.rows.len() >= self.limit
            || (!self.rows.is_empty() && self.used.saturating_add(size) > self.max_bytes)
        {
            self.more = true;
            return Ok(false);
        }
        self.used = self.used.saturating_add(size);
        self.rows.push(map(row)?);
        Ok(true)
    }

    /// The rows taken, and whether a row was left out.
    pub(crate) fn finish(self) -> (Vec<T>, bool) {
        (self.rows, self.more)
    }
}

/// The column reads of a result row, whichever driver produced it. Integer columns are 64-bit
/// on both engines (a computed int4 on PostgreSQL must be cast to BIGINT in the SQL).
pub(crate) trait SqlRow {
    fn i64(&self, idx: usize) -> Result<i64, StoreError>;
    fn opt_i64(&self, idx: usize) -> Result<Option<i64>, StoreError>;
    fn opt_f64(&self, idx: usize) -> Result<Option<f64>, StoreError>;
    /// A boolean column (SQLite's 0/1 INTEGER, PostgreSQL's BOOLEAN).
    fn bool(&self, idx: usize) -> Result<bool, StoreError>;
    fn text(&self, idx: usize) -> Result<String, StoreError>;
    /// A text column, borrowed from the row (no copy).
    fn str(&self, idx: usize) -> Result<&str, StoreError>;
    fn opt_text(&self, idx: usize) -> Result<Option<String>, StoreError>;
    fn bytes(&self, idx: usize) -> Result<&[u8], StoreError>;
    fn opt_bytes(&self, idx: usize) -> Result<Option<Vec<u8>>, StoreError>;
    /// The column's name, for messages about corrupt values.
    fn column_name(&self, idx: usize) -> &str;

    /// A BLOB/BYTEA column, owned.
    fn blob(&self, idx: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.bytes(idx)?.to_vec())
    }

    /// A non-negative integer column as u64.
    fn u64(&self, idx: usize) -> Result<u64, StoreError> {
        let v = self.i64(idx)?;
        u64::try_from(v).map_err(|_| self.out_of_range(idx, v))
    }

    /// A nullable non-negative integer column as u64.
    fn opt_u64(&self, idx: usize) -> Result<Option<u64>, StoreError> {
        match self.opt_i64(idx)? {
            None => Ok(None),
            Some(v) => u64::try_from(v)
                .map(Some)
                .map_err(|_| self.out_of_range(idx, v)),
        }
    }

    /// An integer column that must fit a u32.
    fn u32(&self, idx: usize) -> Result<u32, StoreError> {
        let v = self.i64(idx)?;
        u32::try_from(v).map_err(|_| self.out_of_range(idx, v))
    }

    /// An integer column that must fit an i32.
    fn i32(&self, idx: usize) -> Result<i32, StoreError> {
        let v = self.i64(idx)?;
        i32::try_from(v).map_err(|_| self.out_of_range(idx, v))
    }

    /// A 32-byte column as a digest.
    fn digest(&self, idx: usize) -> Result<Digest, StoreError> {
        let bytes = self.bytes(idx)?;
        Digest::from_slice(bytes).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "column {} holds a {}-byte digest",
                self.column_name(idx),
                bytes.len()
            ))
        })
    }

    /// A 32-byte column as a Merkle tree hash.
    fn hash(&self, idx: usize) -> Result<Hash, StoreError> {
        let bytes = self.bytes(idx)?;
        Hash::try_from(bytes).map_err(|_| {
            StoreError::Corrupt(format!(
                "column {} holds a {}-byte hash",
                self.column_name(idx),
                bytes.len()
            ))
        })
    }

    /// An integer column read as a size in bytes (a length sum; never negative).
    fn size(&self, idx: usize) -> Result<usize, StoreError> {
        Ok(usize::try_from(self.i64(idx)?).unwrap_or(usize::MAX))
    }

    fn out_of_range(&self, idx: usize, value: i64) -> StoreError {
        StoreError::Corrupt(format!(
            "column {} holds out-of-range value {value}",
            self.column_name(idx)
        ))
    }
}

/// Runs statements on one connection or transaction of either engine.
pub(crate) trait Sql {
    fn dialect(&self) -> Dialect;

    /// Runs a statement that returns no rows; the number of rows it changed.
    fn exec(&mut self, sql: &(impl AsSql + ?Sized), params: &Params<'_>)
    -> Result<u64, StoreError>;

    /// Hands the result rows to `each` until it returns false or the rows run out.
    fn each(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        each: impl FnMut(&dyn SqlRow) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// Like [`Sql::each`] for a result that may be large: the rows are fetched `fetch` at a
    /// time (from a server; SQLite steps one by one), so those past the point where `each`
    /// stops are never read into memory.
    fn stream(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        fetch: usize,
        each: impl FnMut(&dyn SqlRow) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// Every result row, mapped.
    fn all<T>(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        mut map: impl FnMut(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, params, |row| {
            out.push(map(row)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first result row, mapped; None when there is none.
    fn first<T>(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        map: impl FnOnce(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut map = Some(map);
        let mut out = None;
        self.each(sql, params, |row| {
            if let Some(map) = map.take() {
                out = Some(map(row)?);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// The one row an aggregate (`count(*)`, `max(..)`) always returns, mapped.
    fn one<T>(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        map: impl FnOnce(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let dialect = self.dialect();
        self.first(sql, params, map)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a query that always returns one row returned none: {}",
                sql.sql(dialect)
            ))
        })
    }

    /// Whether the query returns a row.
    fn exists(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
    ) -> Result<bool, StoreError> {
        Ok(self.first(sql, params, |_| Ok(()))?.is_some())
    }
}
