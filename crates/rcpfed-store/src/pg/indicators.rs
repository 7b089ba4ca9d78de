//! The indicator view on PostgreSQL: how the shared apply step writes a batch (arrays), and
//! the [`IndicatorStore`] queries. The rules (apply step, action checks, key rule, refusal
//! words, exact-decimal conflict comparison) are the SQLite module's own functions; only the
//! SQL differs, so both backends answer alike.

use super::Tx;
use crate::StoreError;
use crate::indicator_queries::{self as shared, FilterArg, ViewReading, observation_from_row};
use crate::indicators::{ObservationCursor, ObservationFilter, ObservationRow};
use crate::indicators_sql::{
    APPLY_BATCH, BatchRow, InForceRow, ViewWriter, apply_to_view, key_rule_before,
};
use crate::sql::Dialect;
pub(crate) use crate::view_rows::Entry;
use crate::view_rows::{Log, action_code, in_force};
use postgres::types::ToSql;
use rcpfed_core::admission::actions::{self, ActionScope, ObservationKey};
use rcpfed_core::rejection::Violation;
use rcpfed_core::statement::Observation;
use std::collections::{HashMap, HashSet};

/// Checks `observations` against what `node_id` has in force with the action rule
/// ([`actions::check`]), reading the keys of [`APPLY_BATCH`] observations per query.
pub(super) fn check_observation_actions(
    tx: &mut Tx<'_>,
    node_id: &str,
    indicator: &str,
    observations: &[Observation],
    max: usize,
) -> Result<Vec<Violation>, StoreError> {
    if max == 0 || observations.is_empty() {
        return Ok(Vec::new());
    }
    // The catalogue in force now is the one the entry will be applied with.
    let rule = key_rule_before(tx, Log::Hub, None)?;
    let scope = ActionScope {
        node_id,
        indicator,
        defaults: rule.defaults(indicator),
        limit: max,
        batch: APPLY_BATCH,
    };
    actions::check(&scope, observations, |keys| {
        let stored = load_in_force(tx, node_id, indicator, keys)?;
        keys.iter()
            .map(|key| in_force(stored.get(*key).map(|r| r.2)))
            .collect()
    })
}

/// Applies one stored feed entry to the view inside the transaction that stores it
/// ([`apply_to_view`]).
pub(crate) fn apply_entry(tx: &mut Tx<'_>, entry: &Entry<'_>) -> Result<(), StoreError> {
    apply_to_view(tx, Log::Hub, entry)
}

/// PostgreSQL writes with one statement per step, the rows travelling as arrays: one round
/// trip each instead of one or two per observation.
impl ViewWriter for Tx<'_> {
    fn supersede(
        &mut self,
        accepted_at_ms: i64,
        by: i64,
        rows: &[(i64, i64)],
    ) -> Result<(), StoreError> {
        let (feed_indexes, positions): (Vec<i64>, Vec<i64>) = rows.iter().copied().unzip();
        // One primary-key probe per superseded row (see load_in_force).
        self.batch("SET LOCAL enable_seqscan = off")?;
        self.execute(
            "UPDATE observations o SET superseded_at_ms = $1, superseded_by = $4
             FROM unnest($2::bigint[], $3::bigint[]) AS s(feed_index, position)
             WHERE o.feed_index = s.feed_index AND o.position = s.position",
            &[&accepted_at_ms, &feed_indexes, &positions, &by],
        )?;
        self.batch("SET LOCAL enable_seqscan = on")?;
        Ok(())
    }

    fn insert_unless_in_force(
        &mut self,
        e: &Entry<'_>,
        indicator: &str,
        feed_index: i64,
        rows: &[BatchRow<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        let Some(first) = rows.first().map(|r| r.position) else {
            return Ok(Vec::new());
        };
        let column =
            |f: for<'r> fn(&'r BatchRow<'_>) -> &'r str| rows.iter().map(f).collect::<Vec<_>>();
        let position: Vec<i64> = rows.iter().map(|r| r.position).collect();
        let action: Vec<i64> = rows
            .iter()
            .map(|r| action_code(r.observation.action))
            .collect();
        let obs_value: Vec<Option<f64>> = rows.iter().map(|r| r.observation.obs_value).collect();
        let unit_mult: Vec<i64> = rows
            .iter()
            .map(|r| i64::from(r.observation.unit_mult))
            .collect();
        let defaulted: Vec<bool> = rows.iter().map(|r| r.defaulted).collect();
        let superseded_at_ms: Vec<Option<i64>> = rows.iter().map(|r| r.superseded_at_ms).collect();
        // The conflict target names the index of the versions in force: any other constraint
        // still fails the statement. Rows go in in position order, so of two rows in force
        // with one key the first is stored; RETURNING lists the rows stored.
        let stored = self
            .query(
                "INSERT INTO observations (feed_index, position, node_id, indicator, ref_area,
                     time_period, dims, period_start, period_end, action, obs_value, obs_status,
                     unit_measure, unit_mult, conf_status, footnote, source, digest, document,
                     revision, accepted_at_ms, defaulted, superseded_at_ms, superseded_by)
                 SELECT $1, r.position, $2, $3, r.ref_area, r.time_period, r.dims,
                     r.period_start, r.period_end, r.action, r.obs_value, r.obs_status,
                     r.unit_measure, r.unit_mult, r.conf_status, r.footnote, r.source, $4, $5,
                     $6, $7, r.defaulted, r.superseded_at_ms,
                     CASE WHEN r.superseded_at_ms IS NULL THEN NULL ELSE $1::bigint END
                 FROM unnest($8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::bigint[], $15::float8[], $16::text[], $17::text[],
                     $18::bigint[], $19::text[], $20::text[], $21::text[], $22::bool[],
                     $23::bigint[])
                   AS r(position, ref_area, time_period, dims, period_start, period_end, action,
                     obs_value, obs_status, unit_measure, unit_mult, conf_status, footnote,
                     source, defaulted, superseded_at_ms)
                 ORDER BY r.position
                 ON CONFLICT (indicator, ref_area, time_period, dims, node_id)
                     WHERE superseded_at_ms IS NULL DO NOTHING
                 RETURNING position",
                &[
                    &feed_index,
                    &e.node_id,
                    &indicator,
                    &&e.digest.0[..],
                    &e.document,
                    &i64::from(e.revision),
                    &e.accepted_at_ms,
                    &position,
                    &column(|r| &r.observation.ref_area),
                    &column(|r| &r.observation.time_period),
                    &column(|r| r.dims),
                    &column(|r| &r.period.0),
                    &column(|r| &r.period.1),
                    &action,
                    &obs_value,
                    &column(|r| &r.observation.obs_status),
                    &column(|r| &r.observation.unit_measure),
                    &unit_mult,
                    &column(|r| &r.observation.conf_status),
                    &column(|r| &r.observation.footnote),
                    &column(|r| &r.observation.source),
                    &defaulted,
                    &superseded_at_ms,
                ],
            )
            .map_err(|err| match super::violated_constraint(&err) {
                Some(_) => e.conflict(format!(
                    "observations from position {first} are refused: {err}"
                )),
                None => err,
            })?;
        let stored = stored
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<HashSet<i64>, _>>()?;
        Ok(position
            .into_iter()
            .filter(|p| !stored.contains(p))
            .collect())
    }
}

/// The versions in force of `keys` for `node_id` (those that have one), in one query.
fn load_in_force(
    tx: &mut Tx<'_>,
    node_id: &str,
    indicator: &str,
    keys: &[&ObservationKey],
) -> Result<HashMap<ObservationKey, InForceRow>, StoreError> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let areas: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let periods: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let dims: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
    let rows = tx.query(
        "SELECT o.ref_area, o.time_period, o.dims, o.feed_index, o.position, o.action,
                o.defaulted
         FROM unnest($3::text[], $4::text[], $5::text[]) AS k(ref_area, time_period, dims)
         JOIN observations o
           ON o.indicator = $1 AND o.ref_area = k.ref_area AND o.time_period = k.time_period
          AND o.dims = k.dims AND o.node_id = $2 AND o.superseded_at_ms IS NULL",
        &[&indicator, &node_id, &areas, &periods, &dims],
    )?;
    for r in &rows {
        out.insert(
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
            (r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?),
        );
    }
    Ok(out)
}

fn collect_rows(
    tx: &mut Tx<'_>,
    sql: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<ObservationRow>, StoreError> {
    tx.query(sql, args)?
        .iter()
        .map(|row| observation_from_row(row))
        .collect()
}

/// A query argument of any of the types the filters use.
type Arg = Box<dyn ToSql + Sync + Send>;

/// The SQL and arguments of an observation query on PostgreSQL
/// ([`shared::observation_query`]); a list travels as one array argument.
fn observation_query(
    reading: ViewReading,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    max: usize,
) -> (String, Vec<Arg>) {
    let (sql, args) = shared::observation_query(Dialect::Postgres, reading, filter, after, max);
    let args = args
        .into_iter()
        .map(|arg| -> Arg {
            match arg {
                FilterArg::Text(text) => Box::new(text),
                FilterArg::Integer(n) => Box::new(n),
                FilterArg::List(items) => Box::new(items),
            }
        })
        .collect();
    (sql, args)
}

pub(super) fn query_observations(
    tx: &mut Tx<'_>,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    max: usize,
) -> Result<Vec<ObservationRow>, StoreError> {
    let reading = shared::view_reading(tx)?;
    let (sql, args) = observation_query(reading, filter, after, max);
    let args: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect();
    collect_rows(tx, &sql, &args)
}
