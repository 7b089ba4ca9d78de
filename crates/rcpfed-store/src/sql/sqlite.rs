//! The shared SQL layer on rusqlite.

use super::{AsSql, Dialect, Params, Sql, SqlRow};
use crate::StoreError;
use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

/// A SQLite connection (or a transaction, through its `Deref`) seen through [`Sql`]. Each text
/// is prepared once per connection (`prepare_cached`).
pub(crate) struct Lite<'c>(pub &'c Connection);

fn bind<'p>(params: &'p Params<'_>) -> Vec<&'p dyn ToSql> {
    params.iter().map(|p| *p as &dyn ToSql).collect()
}

impl Sql for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn exec(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
    ) -> Result<u64, StoreError> {
        let changed = self
            .0
            .prepare_cached(sql.sql(Dialect::Sqlite))?
            .execute(&*bind(params))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    fn each(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        mut each: impl FnMut(&dyn SqlRow) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(sql.sql(Dialect::Sqlite))?;
        let mut rows = stmt.query(&*bind(params))?;
        // Stepped one row at a time: rows after a stop are never read.
        while let Some(row) = rows.next()? {
            if !each(row)? {
                break;
            }
        }
        Ok(())
    }

    fn stream(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        _fetch: usize,
        each: impl FnMut(&dyn SqlRow) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.each(sql, params, each)
    }
}

impl SqlRow for Row<'_> {
    fn i64(&self, idx: usize) -> Result<i64, StoreError> {
        Ok(self.get(idx)?)
    }

    fn opt_i64(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(idx)?)
    }

    fn opt_f64(&self, idx: usize) -> Result<Option<f64>, StoreError> {
        Ok(self.get(idx)?)
    }

    fn bool(&self, idx: usize) -> Result<bool, StoreError> {
        Ok(self.get(idx)?)
    }

    fn text(&self, idx: usize) -> Result<String, StoreError> {
        Ok(self.get(idx)?)
    }

    fn str(&self, idx: usize) -> Result<&str, StoreError> {
        Ok(self.get_ref(idx)?.as_str().map_err(rusqlite::Error::from)?)
    }

    fn bytes(&self, idx: usize) -> Result<&[u8], StoreError> {
        Ok(self
            .get_ref(idx)?
            .as_blob()
            .map_err(rusqlite::Error::from)?)
    }

    fn opt_text(&self, idx: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(idx)?)
    }

    fn opt_bytes(&self, idx: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(idx)?)
    }

    fn column_name(&self, idx: usize) -> &str {
        self.as_ref().column_name(idx).unwrap_or("?")
    }
}
