//! The indicator view on PostgreSQL: the apply step the hub's `append` runs for each stored
//! statement, and the [`IndicatorStore`] queries. The rules (action checks, key rule,
//! refusal words, exact-decimal conflict comparison) are the SQLite module's own functions;
//! only the SQL differs, so both backends answer alike.

use super::hub::PgHubStore;
use super::{Tx, int};
use crate::StoreError;
use crate::db::{bound, limit};
use crate::indicator_queries::{self as shared, observation_from_row};
use crate::indicators::{
    CATALOGUE_KIND, CoherenceRows, ConflictRows, CoverageData, HubDocument, IndicatorStore,
    ObservationCursor, ObservationFilter, ObservationRow, PolicyCoverageData, RevisionRows,
};
pub(crate) use crate::indicators_sql::Entry;
use crate::indicators_sql::{
    Log, action_code, cached_key_rule, in_force, observation_columns, period_dates,
};
use postgres::types::ToSql;
use rcpfed_core::Digest;
use rcpfed_core::admission::actions::{self, ActionScope, ObservationKey};
use rcpfed_core::chunks;
use rcpfed_core::dates::parse_time_period;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::obskey::{self, KeyRule};
use rcpfed_core::rejection::Violation;
use rcpfed_core::statement::{Body, DocumentKind, IndicatorSnapshot, Observation, Statement};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A version in force: (feed_index, position, action, defaulted).
type InForceRow = (i64, i64, i64, bool);

/// The key rule for an entry at `before` (exclusive; None: after every entry): the latest
/// catalogue version logged before it, as on SQLite.
fn key_rule_before(tx: &mut Tx<'_>, before: Option<u64>) -> Result<Arc<KeyRule>, StoreError> {
    let before = before.map_or(i64::MAX, bound);
    let latest = tx.query_opt(
        "SELECT feed_index, digest FROM statements WHERE kind = $1 AND feed_index < $2
         ORDER BY feed_index DESC LIMIT 1",
        &[&CATALOGUE_KIND, &before],
    )?;
    let Some(latest) = latest else {
        return Ok(Arc::new(KeyRule::none()));
    };
    let feed_index: i64 = latest.try_get(0)?;
    let digest: &[u8] = latest.try_get(1)?;
    cached_key_rule(feed_index, digest, || {
        Ok(tx
            .query_one(
                "SELECT envelope FROM statements WHERE feed_index = $1",
                &[&feed_index],
            )?
            .try_get(0)?)
    })
}

/// Checks `observations` against what `node_id` has in force with the action rule
/// ([`actions::check`]), reading the keys of [`APPLY_BATCH`] observations per query.
fn check_observation_actions(
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
    let rule = key_rule_before(tx, None)?;
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

/// Applies one stored feed entry to the view inside the transaction that stores it (see the
/// SQLite `apply_entry`, whose rules this follows step by step).
pub(crate) fn apply_entry(tx: &mut Tx<'_>, entry: &Entry<'_>) -> Result<(), StoreError> {
    let indicator_kind = DocumentKind::IndicatorSnapshot.as_str();
    let policy_kind = DocumentKind::PolicySummary.as_str();
    if entry.kind != indicator_kind && entry.kind != policy_kind {
        return Ok(());
    }
    let envelope = SignedEnvelope::decode(entry.envelope).map_err(|e| entry.conflict(e))?;
    if Digest::of(&envelope.payload) != *entry.digest {
        return Err(entry.conflict("the envelope's payload does not hash to the entry's digest"));
    }
    let statement = Statement::decode(&envelope.payload).map_err(|e| entry.conflict(e))?;
    if statement.header.node_id != entry.node_id {
        return Err(entry.conflict(format!(
            "the statement is signed as node {}",
            statement.header.node_id
        )));
    }
    match statement.body {
        Body::Indicators(snapshot) if entry.kind == indicator_kind => {
            let rule = key_rule_before(tx, Some(entry.feed_index))?;
            let defaults = rule.defaults(&snapshot.indicator).to_vec();
            apply_snapshot(tx, entry, snapshot, &defaults)
        }
        Body::Policy(policy) if entry.kind == policy_kind => {
            shared::apply_policy(tx, entry, &policy.gcm_objectives)
        }
        other => Err(entry.conflict(format!(
            "its body is a {}, not a {}",
            other.kind().as_str(),
            entry.kind
        ))),
    }
}

fn apply_snapshot(
    tx: &mut Tx<'_>,
    entry: &Entry<'_>,
    snapshot: IndicatorSnapshot,
    defaults: &[(String, String)],
) -> Result<(), StoreError> {
    let mut applier = Applier {
        entry,
        indicator: &snapshot.indicator,
        defaults,
        feed_index: int(entry.feed_index, "feed index")?,
        position: 0,
        tolerated: 0,
        periods: HashMap::new(),
        state: HashMap::new(),
        batch: Batch::default(),
    };
    let Some(manifest) = &snapshot.chunks else {
        for batch in snapshot.observations.chunks(APPLY_BATCH) {
            applier.apply(tx, batch)?;
        }
        applier.note_tolerated();
        return Ok(());
    };
    if !snapshot.observations.is_empty() {
        return Err(entry.conflict("it carries both inline observations and chunks"));
    }
    chunks::check_manifest(manifest).map_err(|e| entry.conflict(e))?;
    for (index, chunk) in manifest.chunks.iter().enumerate() {
        let bytes: Option<Vec<u8>> = tx
            .query_opt(
                "SELECT bytes FROM chunks WHERE sha256 = $1",
                &[&&chunk.sha256.0[..]],
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
        let Some(bytes) = bytes else {
            return Err(entry.conflict(format!("chunk {index} ({}) is not staged", chunk.sha256)));
        };
        let observations =
            chunks::decode_chunk(manifest, index, &bytes).map_err(|e| entry.conflict(e))?;
        for batch in observations.chunks(APPLY_BATCH) {
            applier.apply(tx, batch)?;
        }
    }
    applier.note_tolerated();
    Ok(())
}

/// Observations probed, superseded and inserted per round trip: each is one statement per
/// batch instead of one or two per observation.
const APPLY_BATCH: usize = 2_000;

/// An observation key within one (node, indicator): (REF_AREA, TIME_PERIOD, dims).
type Key = ObservationKey;

/// The versions in force of `keys` for `node_id` (those that have one), in one query.
fn load_in_force(
    tx: &mut Tx<'_>,
    node_id: &str,
    indicator: &str,
    keys: &[&Key],
) -> Result<HashMap<Key, InForceRow>, StoreError> {
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

/// Where a key's version in force is, while a snapshot is applied.
#[derive(Clone, Copy)]
enum Current {
    /// Nothing in force.
    None,
    /// A stored row: (feed_index, position, action, defaulted).
    Stored(InForceRow),
    /// A row of the batch being built: (index in the batch, action, defaulted).
    Pending(usize, i64, bool),
}

/// Rows of the batch being built, column by column (they travel as arrays).
#[derive(Default)]
struct Batch {
    position: Vec<i64>,
    ref_area: Vec<String>,
    time_period: Vec<String>,
    dims: Vec<String>,
    period_start: Vec<String>,
    period_end: Vec<String>,
    action: Vec<i64>,
    obs_value: Vec<Option<f64>>,
    obs_status: Vec<String>,
    unit_measure: Vec<String>,
    unit_mult: Vec<i64>,
    conf_status: Vec<String>,
    footnote: Vec<String>,
    source: Vec<String>,
    defaulted: Vec<bool>,
    superseded_at_ms: Vec<Option<i64>>,
    /// Stored rows these observations supersede: (feed_index, position).
    supersede: Vec<(i64, i64)>,
}

/// Applies a snapshot's observations with the same rules, in the same order and with the same
/// results as the SQLite applier, a batch at a time: the versions in force of a batch's keys
/// are read in one query, the rules run in memory (a key touched twice in a snapshot sees its
/// first touch), then the superseded rows are marked and the new rows inserted with one
/// statement each.
struct Applier<'e> {
    entry: &'e Entry<'e>,
    indicator: &'e str,
    defaults: &'e [(String, String)],
    feed_index: i64,
    position: i64,
    tolerated: u64,
    periods: HashMap<String, (String, String)>,
    /// Keys touched by this snapshot so far, and where their version in force is.
    state: HashMap<Key, Current>,
    batch: Batch,
}

impl Applier<'_> {
    fn apply(&mut self, tx: &mut Tx<'_>, observations: &[Observation]) -> Result<(), StoreError> {
        let e = self.entry;
        let keyed: Vec<(Key, bool)> = observations
            .iter()
            .map(|o| {
                let (dims, defaulted) = obskey::dimension_key(&o.dimensions, self.defaults);
                ((o.ref_area.clone(), o.time_period.clone(), dims), defaulted)
            })
            .collect();
        let unseen: Vec<&Key> = {
            let mut seen = BTreeSet::new();
            keyed
                .iter()
                .map(|(k, _)| k)
                .filter(|k| !self.state.contains_key(*k) && seen.insert(*k))
                .collect()
        };
        // One exact probe of the index of the versions in force per key: within the
        // transaction that applies a snapshot, the planner does not know the rows it added and
        // plans the batched form of the probe (load_in_force) as a scan per key.
        let mut stored = HashMap::new();
        for key in unseen {
            let row = tx.query_opt(
                "SELECT feed_index, position, action, defaulted FROM observations
                 WHERE indicator = $1 AND ref_area = $2 AND time_period = $3 AND dims = $4
                   AND node_id = $5 AND superseded_at_ms IS NULL",
                &[&self.indicator, &key.0, &key.1, &key.2, &e.node_id],
            )?;
            if let Some(r) = row {
                let found: InForceRow =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                stored.insert(key.clone(), found);
            }
        }
        for (o, (key, defaulted)) in observations.iter().zip(keyed) {
            if !self.periods.contains_key(&o.time_period) {
                let Some(period) = parse_time_period(&o.time_period) else {
                    return Err(e.conflict(format!(
                        "observation {} has time period {:?}, which is not an SDMX period",
                        self.position, o.time_period
                    )));
                };
                self.periods
                    .insert(o.time_period.clone(), period_dates(&period));
            }
            let current = match self.state.get(&key) {
                Some(current) => *current,
                None => stored
                    .get(&key)
                    .map_or(Current::None, |r| Current::Stored(*r)),
            };
            let (action, was_defaulted) = match current {
                Current::None => (None, false),
                Current::Stored((_, _, action, d)) | Current::Pending(_, action, d) => {
                    (Some(action), d)
                }
            };
            let state = in_force(action)?;
            if actions::step(state, o.action).is_err() {
                // Entries accepted before the key rule (see the SQLite applier).
                if !(defaulted || was_defaulted) {
                    return Err(e.conflict(format!(
                        "observation {} {}",
                        self.position,
                        actions::refusal_words(e.node_id, self.indicator, o, &key.2, state)
                    )));
                }
                self.tolerated += 1;
            }
            match current {
                Current::None => {}
                Current::Stored((feed_index, position, _, _)) => {
                    self.batch.supersede.push((feed_index, position));
                }
                Current::Pending(index, _, _) => {
                    self.batch.superseded_at_ms[index] = Some(e.accepted_at_ms);
                }
            }
            let index = self.push(o, &key, defaulted);
            self.state.insert(
                key,
                Current::Pending(index, action_code(o.action), defaulted),
            );
        }
        self.flush(tx)
    }

    /// Adds `o` to the batch at the next position; returns its index in the batch.
    fn push(&mut self, o: &Observation, key: &Key, defaulted: bool) -> usize {
        let (period_start, period_end) = self
            .periods
            .get(&o.time_period)
            .cloned()
            .unwrap_or_default();
        let b = &mut self.batch;
        b.position.push(self.position);
        b.ref_area.push(key.0.clone());
        b.time_period.push(key.1.clone());
        b.dims.push(key.2.clone());
        b.period_start.push(period_start);
        b.period_end.push(period_end);
        b.action.push(action_code(o.action));
        b.obs_value.push(o.obs_value);
        b.obs_status.push(o.obs_status.clone());
        b.unit_measure.push(o.unit_measure.clone());
        b.unit_mult.push(i64::from(o.unit_mult));
        b.conf_status.push(o.conf_status.clone());
        b.footnote.push(o.footnote.clone());
        b.source.push(o.source.clone());
        b.defaulted.push(defaulted);
        b.superseded_at_ms.push(None);
        self.position += 1;
        b.position.len() - 1
    }

    /// Writes the batch: first the stored versions it supersedes (so the index of the versions
    /// in force never sees two), then its rows. Its keys then point at stored rows.
    fn flush(&mut self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let e = self.entry;
        let b = std::mem::take(&mut self.batch);
        if !b.supersede.is_empty() {
            let (feed_indexes, positions): (Vec<i64>, Vec<i64>) =
                b.supersede.iter().copied().unzip();
            // One primary-key probe per superseded row (see load_in_force).
            tx.batch("SET LOCAL enable_seqscan = off")?;
            tx.execute(
                "UPDATE observations o SET superseded_at_ms = $1
                 FROM unnest($2::bigint[], $3::bigint[]) AS s(feed_index, position)
                 WHERE o.feed_index = s.feed_index AND o.position = s.position",
                &[&e.accepted_at_ms, &feed_indexes, &positions],
            )?;
            tx.batch("SET LOCAL enable_seqscan = on")?;
        }
        if !b.position.is_empty() {
            let first = b.position[0];
            tx.execute(
                "INSERT INTO observations (feed_index, position, node_id, indicator, ref_area,
                     time_period, dims, period_start, period_end, action, obs_value, obs_status,
                     unit_measure, unit_mult, conf_status, footnote, source, digest, document,
                     revision, accepted_at_ms, defaulted, superseded_at_ms)
                 SELECT $1, r.position, $2, $3, r.ref_area, r.time_period, r.dims,
                     r.period_start, r.period_end, r.action, r.obs_value, r.obs_status,
                     r.unit_measure, r.unit_mult, r.conf_status, r.footnote, r.source, $4, $5,
                     $6, $7, r.defaulted, r.superseded_at_ms
                 FROM unnest($8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::bigint[], $15::float8[], $16::text[], $17::text[],
                     $18::bigint[], $19::text[], $20::text[], $21::text[], $22::bool[],
                     $23::bigint[])
                   AS r(position, ref_area, time_period, dims, period_start, period_end, action,
                     obs_value, obs_status, unit_measure, unit_mult, conf_status, footnote,
                     source, defaulted, superseded_at_ms)",
                &[
                    &self.feed_index,
                    &e.node_id,
                    &self.indicator,
                    &&e.digest.0[..],
                    &e.document,
                    &i64::from(e.revision),
                    &e.accepted_at_ms,
                    &b.position,
                    &b.ref_area,
                    &b.time_period,
                    &b.dims,
                    &b.period_start,
                    &b.period_end,
                    &b.action,
                    &b.obs_value,
                    &b.obs_status,
                    &b.unit_measure,
                    &b.unit_mult,
                    &b.conf_status,
                    &b.footnote,
                    &b.source,
                    &b.defaulted,
                    &b.superseded_at_ms,
                ],
            )
            .map_err(|err| match super::violated_constraint(&err) {
                Some(_) => e.conflict(format!(
                    "observations from position {first} are refused: {err}"
                )),
                None => err,
            })?;
        }
        // What was pending is stored now, in force or not.
        for current in self.state.values_mut() {
            if let Current::Pending(index, action, defaulted) = *current {
                let position = b.position[index];
                *current = match b.superseded_at_ms[index] {
                    None => Current::Stored((self.feed_index, position, action, defaulted)),
                    // Superseded within the batch: the key's current is a later row.
                    Some(_) => *current,
                };
            }
        }
        Ok(())
    }

    fn note_tolerated(&self) {
        if self.tolerated > 0 {
            let e = self.entry;
            tracing::info!(
                feed_index = e.feed_index,
                node = e.node_id,
                document = e.document,
                observations = self.tolerated,
                "observations accepted before the key rule applied as revisions: a dimension \
                 left out and its catalogue default are one key"
            );
        }
    }
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

/// The SQL and arguments of a query, built per combination of filters like the SQLite one;
/// lists travel as one array argument.
fn observation_query(
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    max: usize,
) -> (String, Vec<Arg>) {
    let mut sql = String::from(concat!(
        "SELECT ",
        observation_columns!(),
        " FROM observations WHERE indicator = $1"
    ));
    let mut args: Vec<Arg> = vec![Box::new(filter.indicator.clone())];
    let term = |sql: &mut String, args: &mut Vec<Arg>, text: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&text.replace('?', &format!("${}", args.len())));
    };
    match filter.ref_areas.as_slice() {
        [] => {}
        [area] => term(
            &mut sql,
            &mut args,
            " AND ref_area = ?",
            Box::new(area.clone()),
        ),
        areas => term(
            &mut sql,
            &mut args,
            " AND ref_area = ANY(?)",
            Box::new(areas.to_vec()),
        ),
    }
    // The year bounds on TIME_PERIOD change no answer and let an index on it be used (see
    // the SQLite query).
    let year = |date: &str| {
        date.get(..4)
            .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    };
    if let Some(start) = &filter.start_date {
        term(
            &mut sql,
            &mut args,
            " AND period_start >= ?",
            Box::new(start.clone()),
        );
        if let Some(first_year) = year(start) {
            term(
                &mut sql,
                &mut args,
                " AND time_period >= ?",
                Box::new(first_year),
            );
        }
    }
    if let Some(end) = &filter.end_date {
        term(
            &mut sql,
            &mut args,
            " AND period_end <= ?",
            Box::new(end.clone()),
        );
        if let Some(last_year) = year(end) {
            term(
                &mut sql,
                &mut args,
                " AND time_period < ?",
                Box::new(format!("{last_year}:")),
            );
        }
    }
    if !filter.dimensions.is_empty() {
        let pairs: Vec<String> = filter
            .dimensions
            .iter()
            .map(|(id, value)| format!("{id}={value}"))
            .collect();
        term(
            &mut sql,
            &mut args,
            " AND NOT EXISTS (SELECT 1 FROM unnest(?::text[]) AS j(pair)
                  WHERE strpos(';' || dims || ';', ';' || j.pair || ';') = 0)",
            Box::new(pairs),
        );
    }
    if !filter.node_ids.is_empty() {
        term(
            &mut sql,
            &mut args,
            " AND node_id = ANY(?)",
            Box::new(filter.node_ids.clone()),
        );
    }
    if let Some(updated_after) = filter.updated_after_ms {
        term(
            &mut sql,
            &mut args,
            " AND accepted_at_ms > ?",
            Box::new(updated_after),
        );
    }
    if let Some(as_of) = filter.as_of_ms {
        term(
            &mut sql,
            &mut args,
            " AND accepted_at_ms <= ?",
            Box::new(as_of),
        );
    }
    if !filter.include_history {
        match filter.as_of_ms {
            Some(as_of) => term(
                &mut sql,
                &mut args,
                " AND (superseded_at_ms IS NULL OR superseded_at_ms > ?)",
                Box::new(as_of),
            ),
            None => sql.push_str(" AND superseded_at_ms IS NULL"),
        }
        if filter.updated_after_ms.is_none() {
            sql.push_str(" AND action != 3");
        }
    }
    if let Some((feed_index, position)) = after {
        args.push(Box::new(bound(feed_index)));
        args.push(Box::new(bound(position)));
        sql.push_str(&format!(
            " AND (feed_index, position) > (${}, ${})",
            args.len() - 1,
            args.len()
        ));
    }
    term(
        &mut sql,
        &mut args,
        " ORDER BY feed_index, position LIMIT ?",
        Box::new(limit(max)),
    );
    (sql, args)
}

fn query_observations(
    tx: &mut Tx<'_>,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    max: usize,
) -> Result<Vec<ObservationRow>, StoreError> {
    let (sql, args) = observation_query(filter, after, max);
    let args: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect();
    collect_rows(tx, &sql, &args)
}

impl IndicatorStore for PgHubStore {
    fn check_observation_actions(
        &self,
        node_id: &str,
        indicator: &str,
        observations: &[Observation],
        max: usize,
    ) -> Result<Vec<Violation>, StoreError> {
        self.db
            .read(|tx| check_observation_actions(tx, node_id, indicator, observations, max))
    }

    fn query_observations(
        &self,
        filter: &ObservationFilter,
        after: Option<ObservationCursor>,
        max: usize,
    ) -> Result<Vec<ObservationRow>, StoreError> {
        self.db
            .read(|tx| query_observations(tx, filter, after, max))
    }

    fn query_observations_at(
        &self,
        filter: &ObservationFilter,
        after: Option<ObservationCursor>,
        max: usize,
    ) -> Result<(Vec<ObservationRow>, u64), StoreError> {
        // One snapshot: the feed size bounds every row returned.
        self.db.read(|tx| {
            let rows = query_observations(tx, filter, after, max)?;
            Ok((rows, shared::applied_feed_size(tx, Log::Hub)?))
        })
    }

    fn applied_feed_size(&self) -> Result<u64, StoreError> {
        self.db.read(|tx| shared::applied_feed_size(tx, Log::Hub))
    }

    fn conflicts(&self, max: usize) -> Result<(Vec<ConflictRows>, u64), StoreError> {
        self.db.read(|tx| shared::conflicts(tx, max))
    }

    fn coverage(&self) -> Result<Vec<CoverageData>, StoreError> {
        self.db.read(|tx| shared::coverage(tx))
    }

    fn policy_coverage(&self) -> Result<Vec<PolicyCoverageData>, StoreError> {
        self.db.read(|tx| shared::policy_coverage(tx))
    }

    fn revisions_since(
        &self,
        after_feed_index: u64,
        max: usize,
    ) -> Result<(Vec<RevisionRows>, u64), StoreError> {
        self.db
            .read(|tx| shared::revisions_in(tx, after_feed_index, max))
    }

    fn coherence_rows(
        &self,
        revisions_after: u64,
        max: usize,
    ) -> Result<CoherenceRows, StoreError> {
        // One snapshot for the whole report.
        self.db.read(|tx| {
            Ok(CoherenceRows {
                feed_size: shared::applied_feed_size(tx, Log::Hub)?,
                conflicts: shared::conflicts(tx, max)?,
                coverage: shared::coverage(tx)?,
                policy_coverage: shared::policy_coverage(tx)?,
                revisions: shared::revisions_in(tx, revisions_after, max)?,
            })
        })
    }

    fn last_content_feed_index(&self) -> Result<u64, StoreError> {
        self.db
            .read(|tx| shared::last_content_feed_index(tx, Log::Hub))
    }

    fn stage_chunks(&self, chunks: &[(Digest, Vec<u8>)]) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.db.write(|tx| shared::stage_chunks(tx, chunks))
    }

    fn has_chunks(&self, sha256s: &[Digest]) -> Result<Vec<bool>, StoreError> {
        if sha256s.is_empty() {
            return Ok(Vec::new());
        }
        // One read transaction is one snapshot.
        self.db.read(|tx| shared::has_chunks(tx, sha256s))
    }

    fn chunk(&self, sha256: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.read(|tx| shared::chunk(tx, sha256))
    }

    fn hub_document(
        &self,
        chain: &str,
        seq: Option<u64>,
    ) -> Result<Option<HubDocument>, StoreError> {
        self.db
            .read(|tx| shared::hub_document(tx, Log::Hub, chain, seq))
    }
}
