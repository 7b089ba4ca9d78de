//! The shared SQL layer on the PostgreSQL client.

use super::Tx;
use crate::StoreError;
use crate::sql::{AsSql, Dialect, Params, Sql, SqlRow};
use postgres::Row;
use postgres::types::ToSql;

fn bind<'p>(params: &'p Params<'_>) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| *p as &(dyn ToSql + Sync)).collect()
}

impl Sql for Tx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn exec(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
    ) -> Result<u64, StoreError> {
        self.execute(sql.sql(Dialect::Postgres), &bind(params))
    }

    fn each(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        mut each: impl FnMut(&dyn SqlRow) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        // One round trip for the whole result; callers that may stop early on a large result
        // use `stream`.
        for row in self.query(sql.sql(Dialect::Postgres), &bind(params))? {
            if !each(&row)? {
                break;
            }
        }
        Ok(())
    }

    fn stream(
        &mut self,
        sql: &(impl AsSql + ?Sized),
        params: &Params<'_>,
        fetch: usize,
        mut each: impl FnMut(&dyn SqlRow) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let fetch = i32::try_from(fetch.max(1)).unwrap_or(i32::MAX);
        self.for_each_row(sql.sql(Dialect::Postgres), &bind(params), fetch, |row| {
            each(row)
        })
    }
}

impl SqlRow for Row {
    fn i64(&self, idx: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn opt_i64(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn opt_f64(&self, idx: usize) -> Result<Option<f64>, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn bool(&self, idx: usize) -> Result<bool, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn text(&self, idx: usize) -> Result<String, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn str(&self, idx: usize) -> Result<&str, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn bytes(&self, idx: usize) -> Result<&[u8], StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn opt_text(&self, idx: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn opt_bytes(&self, idx: usize) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn column_name(&self, idx: usize) -> &str {
        self.columns().get(idx).map_or("?", |c| c.name())
    }
}
