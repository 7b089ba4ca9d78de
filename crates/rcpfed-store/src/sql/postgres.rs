//! The shared SQL layer on the PostgreSQL client.

use super::{AsSql, Dialect, Params, Sql, SqlRow};
use crate::StoreError;
use crate::pg::Tx;
use postgres::Row;
use postgres::types::ToSql;

/// Rows fetched per round trip by [`Sql::stream`].
const STREAM_BATCH: i32 = 16;

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
        mut each: impl FnMut(&dyn SqlRow) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_row(
            sql.sql(Dialect::Postgres),
            &bind(params),
            STREAM_BATCH,
            |row| each(row),
        )
    }
}

impl SqlRow for Row {
    fn i64(&self, idx: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn opt_i64(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn text(&self, idx: usize) -> Result<String, StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn bytes(&self, idx: usize) -> Result<&[u8], StoreError> {
        Ok(self.try_get(idx)?)
    }

    fn column_name(&self, idx: usize) -> &str {
        self.columns().get(idx).map_or("?", |c| c.name())
    }
}
