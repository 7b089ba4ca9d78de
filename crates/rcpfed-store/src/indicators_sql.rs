//! The one SQLite implementation of [`IndicatorStore`], shared by the hub store and the node
//! store: the schema of the view and every query. Only the log table differs (the hub's
//! `statements`, the node's `mirror`); both have the columns used here.
//!
//! Also the apply step every store runs inside the transaction that stores a feed entry
//! ([`apply_to_view`]), once for SQLite and PostgreSQL: decoding the entry, the key rule, the
//! action rule per observation; a backend only says how it writes a batch ([`ViewWriter`]).

use crate::StoreError;
use crate::db::{self, in_read_tx};
use crate::indicator_queries::{self, FilterArg, ViewReading};
use crate::indicators::{
    CATALOGUE_KIND, CoherenceRows, ObservationCursor, ObservationFilter, ObservationRow,
    RevisionRows,
};
use crate::sql::{Dialect, Lite, Query, Sql, SqlRow, query};
use crate::view_rows::{Entry, Log, PieceLimit, PieceStart, action_code, in_force};
use rcpfed_core::Digest;
use rcpfed_core::admission::actions::{self, ActionScope};
use rcpfed_core::chunks;
use rcpfed_core::dates::{PeriodRange, parse_time_period};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::obskey::{self, KeyRule};
use rcpfed_core::rejection::Violation;
use rcpfed_core::statement::{
    Body, DocumentKind, IndicatorSnapshot, Observation, ObservationAction,
};
use rusqlite::types::{ToSql, Value};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

/// The indicator view's tables, created identically in the hub and the node database (one
/// migration each; the text is shared so the two can never drift).
macro_rules! indicator_tables_sql {
    () => {
        r#"
        -- Indicator view (issue 5), filled by the store in the transaction that stores each
        -- feed entry. Every version is kept; superseded_at_ms is set when a later version of
        -- the same key is accepted. WITHOUT ROWID: rows cluster in feed order (the apply and
        -- the paging order) and every secondary index ends with (feed_index, position).
        CREATE TABLE observations (
            feed_index       INTEGER NOT NULL CHECK (feed_index >= 1),
            position         INTEGER NOT NULL CHECK (position >= 0),
            node_id          TEXT    NOT NULL,
            indicator        TEXT    NOT NULL,
            ref_area         TEXT    NOT NULL,
            time_period      TEXT    NOT NULL,
            dims             TEXT    NOT NULL,
            period_start     TEXT    NOT NULL,
            period_end       TEXT    NOT NULL,
            action           INTEGER NOT NULL CHECK (action IN (1, 2, 3)),
            obs_value        REAL,
            obs_status       TEXT    NOT NULL,
            unit_measure     TEXT    NOT NULL,
            unit_mult        INTEGER NOT NULL,
            conf_status      TEXT    NOT NULL,
            footnote         TEXT    NOT NULL,
            source           TEXT    NOT NULL,
            digest           BLOB    NOT NULL,
            document         TEXT    NOT NULL,
            revision         INTEGER NOT NULL,
            accepted_at_ms   INTEGER NOT NULL,
            superseded_at_ms INTEGER,
            PRIMARY KEY (feed_index, position)
        ) WITHOUT ROWID;
        -- The version in force of each key, tombstones included: at most one, and the probe
        -- the apply step and the action checks make per observation.
        CREATE UNIQUE INDEX observations_in_force
            ON observations (node_id, indicator, ref_area, time_period, dims)
            WHERE superseded_at_ms IS NULL;
        -- Queries by area and period, conflict grouping, a version's predecessor.
        CREATE INDEX observations_key ON observations (indicator, ref_area, time_period);
        -- (indicator, feed_index, position): one indicator's versions in paging order.
        CREATE INDEX observations_indicator ON observations (indicator);

        -- GCM objectives of the latest revision of each policy document. A document that
        -- addresses none has one row with objective NULL, so it is still counted.
        CREATE TABLE policy_objectives (
            node_id    TEXT    NOT NULL,
            document   TEXT    NOT NULL,
            revision   INTEGER NOT NULL,
            feed_index INTEGER NOT NULL,
            objective  INTEGER
        );
        CREATE INDEX policy_objectives_document ON policy_objectives (node_id, document);

        -- Chunks of large snapshots, content-addressed, staged before their statement.
        CREATE TABLE chunks (
            sha256 BLOB PRIMARY KEY CHECK (length(sha256) = 32),
            bytes  BLOB NOT NULL
        ) WITHOUT ROWID;
        "#
    };
}
pub(crate) use indicator_tables_sql;

/// The view's indexes as of the second indicator migration (hub version 5, node version 4),
/// shared like [`indicator_tables_sql`]:
/// - the index of the versions in force is rebuilt key first, node last. It still makes at
///   most one version in force per (node, key) and serves the per-observation probe (every
///   column is compared for equality), and it now lists the versions in force of each key
///   side by side, so the conflicts are found in one scan of it instead of one search of
///   `observations_key` per candidate key;
/// - `observations_area` is (indicator, ref_area, feed_index, position): one area's versions
///   in paging order, so a page filtered by area reads about a page of rows instead of
///   sorting every row of the area.
macro_rules! indicator_indexes_v2_sql {
    () => {
        r#"
        DROP INDEX observations_in_force;
        CREATE UNIQUE INDEX observations_in_force
            ON observations (indicator, ref_area, time_period, dims, node_id)
            WHERE superseded_at_ms IS NULL;
        CREATE INDEX observations_area ON observations (indicator, ref_area);
        "#
    };
}
pub(crate) use indicator_indexes_v2_sql;

/// The observation key rule (issue 10; hub version 6, node version 5), shared like
/// [`indicator_tables_sql`]: `dims` becomes the canonical key, with every optional dimension
/// that has a catalogue default and that the observation leaves out filled in with the
/// default (`rcpfed_core::obskey`), and `defaulted` says that a default was filled in. The
/// view is emptied here and rebuilt from the log by the upgrade step, with the same apply
/// function as new entries, so an upgraded hub and a node that mirrors the same log from
/// scratch hold the same rows.
macro_rules! indicator_key_rule_sql {
    () => {
        r#"
        ALTER TABLE observations
            ADD COLUMN defaulted INTEGER NOT NULL DEFAULT 0 CHECK (defaulted IN (0, 1));
        DELETE FROM observations;
        DELETE FROM policy_objectives;
        "#
    };
}
pub(crate) use indicator_key_rule_sql;

/// Policy coverage counted as policy summaries are applied (hub version 7, node version 6),
/// shared like [`indicator_tables_sql`]: per node, objective 0 counts its documents and
/// objective k the documents whose latest revision addresses GCM objective k. The coherence
/// pass reads these few rows instead of every document's objectives. Filled here from the
/// rows already recorded; kept up to date by the apply step.
macro_rules! indicator_policy_coverage_sql {
    () => {
        r#"
        CREATE TABLE policy_coverage (
            node_id   TEXT    NOT NULL,
            objective INTEGER NOT NULL CHECK (objective BETWEEN 0 AND 23),
            documents INTEGER NOT NULL CHECK (documents >= 0),
            PRIMARY KEY (node_id, objective)
        ) WITHOUT ROWID;
        INSERT INTO policy_coverage (node_id, objective, documents)
            SELECT node_id, 0, count(DISTINCT document) FROM policy_objectives GROUP BY node_id;
        INSERT INTO policy_coverage (node_id, objective, documents)
            SELECT node_id, objective, count(*) FROM policy_objectives
             WHERE objective IS NOT NULL GROUP BY node_id, objective;
        "#
    };
}
pub(crate) use indicator_policy_coverage_sql;

/// The version in force of a key: (feed_index, position, action, defaulted). The writer's
/// view: it ignores the view cursor, so while a snapshot's pieces go in it finds the pieces'
/// rows. Its readers outside the apply step are safe: the hub defers a snapshot of a node and
/// indicator until the view has passed that node's earlier one, and a node checks its own
/// publications only once its own head is in its view.
pub(crate) const FIND_IN_FORCE: Query = query!(
    "SELECT feed_index, position, action, defaulted
     FROM observations
     WHERE node_id = $1 AND indicator = $2 AND ref_area = $3 AND time_period = $4 AND dims = $5
       AND superseded_at_ms IS NULL"
);

/// A version in force: (feed_index, position, action, defaulted).
pub(crate) type InForceRow = (i64, i64, i64, bool);

/// The latest catalogue version logged before a feed index: (feed_index, digest).
const LATEST_CATALOGUE: [Query; 2] = [
    query!(
        "SELECT feed_index, digest FROM statements WHERE kind = $1 AND feed_index < $2
         ORDER BY feed_index DESC LIMIT 1"
    ),
    query!(
        "SELECT feed_index, digest FROM mirror WHERE kind = $1 AND feed_index < $2
         ORDER BY feed_index DESC LIMIT 1"
    ),
];
/// The envelope logged at a feed index.
const ENVELOPE_AT: [Query; 2] = [
    query!("SELECT envelope FROM statements WHERE feed_index = $1"),
    query!("SELECT envelope FROM mirror WHERE feed_index = $1"),
];

/// Key rules of the catalogue versions seen lately, by the payload digest of the version: a
/// rule is read from its document once per process, not once per snapshot.
static KEY_RULES: Mutex<Vec<(Digest, Arc<KeyRule>)>> = Mutex::new(Vec::new());
/// Catalogue versions whose rules are kept.
const KEY_RULES_KEPT: usize = 8;

/// The key rule for an entry at `before` (exclusive; None: after every entry): that of the
/// latest catalogue version logged before it, which is the catalogue the hub had in force
/// when it accepted the entry; no defaults when none was logged yet. Hub and nodes read it
/// from the same feed, so they key every entry alike.
pub(crate) fn key_rule_before(
    sql: &mut impl Sql,
    log: Log,
    before: Option<u64>,
) -> Result<Arc<KeyRule>, StoreError> {
    let [hub, node] = LATEST_CATALOGUE;
    let before = before.map_or(i64::MAX, db::bound);
    let latest = sql.first(&log.pick(hub, node), &[&CATALOGUE_KIND, &before], |r| {
        Ok((r.i64(0)?, r.blob(1)?))
    })?;
    let Some((feed_index, digest)) = latest else {
        return Ok(Arc::new(KeyRule::none()));
    };
    let [hub, node] = ENVELOPE_AT;
    cached_key_rule(feed_index, &digest, || {
        sql.one(&log.pick(hub, node), &[&feed_index], |r| r.blob(0))
    })
}

/// The key rule of the catalogue version logged at `feed_index` with payload digest `digest`:
/// from the cache, or read from its envelope (`load`) and kept.
pub(crate) fn cached_key_rule(
    feed_index: i64,
    digest: &[u8],
    load: impl FnOnce() -> Result<Vec<u8>, StoreError>,
) -> Result<Arc<KeyRule>, StoreError> {
    let digest = Digest::from_slice(digest).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "the digest at feed index {feed_index} is not 32 bytes"
        ))
    })?;
    let cached = KEY_RULES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(d, _)| *d == digest)
        .map(|(_, rule)| Arc::clone(rule));
    if let Some(rule) = cached {
        return Ok(rule);
    }
    let envelope = load()?;
    let unreadable = |what: String| {
        StoreError::Corrupt(format!(
            "the catalogue version at feed index {feed_index} cannot be read: {what}"
        ))
    };
    let envelope = SignedEnvelope::decode(&envelope).map_err(|e| unreadable(e.to_string()))?;
    let rule = Arc::new(
        KeyRule::from_catalogue_payload(&envelope.payload).map_err(|e| unreadable(e.message))?,
    );
    let mut kept = KEY_RULES.lock().unwrap_or_else(PoisonError::into_inner);
    if kept.len() >= KEY_RULES_KEPT {
        kept.remove(0);
    }
    kept.push((digest, Arc::clone(&rule)));
    Ok(rule)
}

/// Checks `observations` against what `node_id` has in force with the action rule
/// ([`actions::check`]), one probe per key.
pub(crate) fn check_observation_actions(
    conn: &Connection,
    log: Log,
    node_id: &str,
    indicator: &str,
    observations: &[Observation],
    limit: usize,
) -> Result<Vec<Violation>, StoreError> {
    if limit == 0 || observations.is_empty() {
        return Ok(Vec::new());
    }
    // One read transaction: every probe sees the same committed state.
    in_read_tx(conn, |tx| {
        // The catalogue in force now is the one the entry will be applied with.
        let rule = key_rule_before(&mut Lite(tx), log, None)?;
        let scope = ActionScope {
            node_id,
            indicator,
            defaults: rule.defaults(indicator),
            limit,
            batch: 1,
        };
        let mut find = tx.prepare_cached(FIND_IN_FORCE.text(Dialect::Sqlite))?;
        actions::check(&scope, observations, |keys| {
            keys.iter()
                .map(|(ref_area, time_period, dims)| {
                    let action: Option<i64> = find
                        .query_row(
                            params![node_id, indicator, ref_area, time_period, dims],
                            |r| r.get(2),
                        )
                        .optional()?;
                    in_force(action)
                })
                .collect()
        })
    })
}

/// Observations keyed, ruled on and written per round: a backend writes a batch in one
/// statement per step (PostgreSQL) or row by row (SQLite).
pub(crate) const APPLY_BATCH: usize = 2_000;

/// How a backend writes the view's rows; everything else of the apply step is
/// [`apply_to_view`]'s, through [`Sql`].
pub(crate) trait ViewWriter: Sql {
    /// Marks the stored rows at `rows` (feed_index, position) superseded at `accepted_at_ms`
    /// by the entry at feed index `by`.
    fn supersede(
        &mut self,
        accepted_at_ms: i64,
        by: i64,
        rows: &[(i64, i64)],
    ) -> Result<(), StoreError>;

    /// Inserts `rows` at `feed_index` in their order, except a row in force whose key already
    /// has a version in force (stored before, or an earlier row of `rows`): the index of the
    /// versions in force leaves it out, and its position is returned (in the order of
    /// `rows`). Any other constraint a row breaks is the entry's conflict.
    fn insert_unless_in_force(
        &mut self,
        entry: &Entry<'_>,
        indicator: &str,
        feed_index: i64,
        rows: &[BatchRow<'_>],
    ) -> Result<Vec<i64>, StoreError>;
}

/// Applies one stored feed entry to the view (SQLite), inside the transaction that stores it.
pub(crate) fn apply_entry(tx: &Connection, log: Log, entry: &Entry<'_>) -> Result<(), StoreError> {
    apply_to_view(&mut Lite(tx), log, entry)
}

/// Applies one stored feed entry to the view, inside the transaction that stores it: an
/// indicator snapshot's observations (inline or from the staged chunks) or a policy summary's
/// objectives; other kinds change nothing. Any error leaves the caller's transaction to roll
/// back, so the entry and its view are stored together or not at all.
pub(crate) fn apply_to_view(
    tx: &mut impl ViewWriter,
    log: Log,
    entry: &Entry<'_>,
) -> Result<(), StoreError> {
    apply_part(tx, log, entry, None).map(|_| ())
}

/// Applies a piece of a chunked snapshot's view (SQLite): its observations from `from` on,
/// until `limit` ends the piece. Returns where the next piece starts, or None once the last
/// observation is applied. The caller runs each piece in a transaction of its own; when the
/// pieces supersede versions in force, it has the readers keep seeing those until the last
/// piece (`view_step::superseding`).
pub(crate) fn apply_piece(
    tx: &Connection,
    log: Log,
    entry: &Entry<'_>,
    from: PieceStart,
    limit: &PieceLimit<'_>,
) -> Result<Option<PieceStart>, StoreError> {
    apply_part(&mut Lite(tx), log, entry, Some((from, limit)))
}

/// Observations applied between two looks at [`PieceLimit::yield_now`]: a commit that starts
/// waiting waits for at most this many (a few milliseconds on SQLite).
const PIECE_BATCH: usize = 500;

/// [`apply_to_view`], or with `piece` only a piece of a chunked snapshot (see [`apply_piece`]).
fn apply_part(
    tx: &mut impl ViewWriter,
    log: Log,
    entry: &Entry<'_>,
    piece: Option<(PieceStart, &PieceLimit<'_>)>,
) -> Result<Option<PieceStart>, StoreError> {
    if !entry.changes_view() {
        return Ok(None);
    }
    let statement = entry.statement()?;
    if statement.header.node_id != entry.node_id {
        return Err(entry.conflict(format!(
            "the statement is signed as node {}",
            statement.header.node_id
        )));
    }
    match &statement.body {
        Body::Indicators(snapshot) if entry.kind == DocumentKind::IndicatorSnapshot.as_str() => {
            let rule = key_rule_before(tx, log, Some(entry.feed_index))?;
            let defaults = rule.defaults(&snapshot.indicator).to_vec();
            apply_snapshot(tx, entry, snapshot, &defaults, piece)
        }
        Body::Policy(policy) if entry.kind == DocumentKind::PolicySummary.as_str() => {
            indicator_queries::apply_policy(tx, entry, &policy.gcm_objectives).map(|()| None)
        }
        other => Err(entry.conflict(format!(
            "its body is a {}, not a {}",
            other.kind().as_str(),
            entry.kind
        ))),
    }
}

const CHUNK_BYTES: Query = query!("SELECT bytes FROM chunks WHERE sha256 = $1");

/// Applies a snapshot's observations, all of them, or with `piece` those from its start on
/// until its limit ends the piece (see [`apply_piece`]).
fn apply_snapshot(
    tx: &mut impl ViewWriter,
    entry: &Entry<'_>,
    snapshot: &IndicatorSnapshot,
    defaults: &[(String, String)],
    piece: Option<(PieceStart, &PieceLimit<'_>)>,
) -> Result<Option<PieceStart>, StoreError> {
    let (from, limit) = match piece {
        Some((from, limit)) => (from, Some(limit)),
        None => (PieceStart::default(), None),
    };
    let mut applier = Applier {
        entry,
        indicator: &snapshot.indicator,
        defaults,
        feed_index: db::int(entry.feed_index, "feed index")?,
        position: from.position,
        tolerated: 0,
        periods: HashMap::new(),
    };
    let Some(manifest) = &snapshot.chunks else {
        for batch in snapshot.observations.chunks(APPLY_BATCH) {
            applier.apply(tx, batch)?;
        }
        applier.note_tolerated();
        return Ok(None);
    };
    if !snapshot.observations.is_empty() {
        return Err(entry.conflict("it carries both inline observations and chunks"));
    }
    chunks::check_manifest(manifest).map_err(|e| entry.conflict(e))?;
    let batch_size = if limit.is_some() {
        PIECE_BATCH
    } else {
        APPLY_BATCH
    };
    let mut applied = 0usize;
    let mut skip = from.applied_in_chunk;
    let mut decoded = from.decoded;
    for (index, chunk) in manifest.chunks.iter().enumerate().skip(from.chunk) {
        let observations = match decoded.take() {
            Some(observations) => observations,
            None => {
                let bytes = tx.first(&CHUNK_BYTES, &[&&chunk.sha256.0[..]], |r| r.blob(0))?;
                let Some(bytes) = bytes else {
                    return Err(
                        entry.conflict(format!("chunk {index} ({}) is not staged", chunk.sha256))
                    );
                };
                Arc::new(
                    chunks::decode_chunk(manifest, index, &bytes).map_err(|e| entry.conflict(e))?,
                )
            }
        };
        let rest = observations.get(skip..).unwrap_or_default();
        for (i, batch) in rest.chunks(batch_size).enumerate() {
            applier.apply(tx, batch)?;
            applied += batch.len();
            let done_in_chunk = skip + (i * batch_size) + batch.len();
            let more = done_in_chunk < observations.len() || index + 1 < manifest.chunks.len();
            let ends = |l: &PieceLimit<'_>| {
                applied >= l.max || (l.started.elapsed() >= l.min_time && (l.yield_now)())
            };
            if more && limit.is_some_and(ends) {
                applier.note_tolerated();
                // A chunk applied to its end is left at once by the next piece.
                return Ok(Some(PieceStart {
                    chunk: index,
                    applied_in_chunk: done_in_chunk,
                    position: applier.position,
                    decoded: Some(Arc::clone(&observations)),
                }));
            }
        }
        skip = 0;
    }
    applier.note_tolerated();
    Ok(None)
}

/// Where a key's version in force is, while a batch is ruled on.
#[derive(Clone, Copy)]
enum Current {
    /// Nothing in force.
    None,
    /// A stored row: (feed_index, position, action, defaulted).
    Stored(InForceRow),
    /// A row of the batch: (index in the batch, action, defaulted).
    Pending(usize, i64, bool),
}

/// One observation of a batch as the view stores it.
pub(crate) struct BatchRow<'o> {
    pub observation: &'o Observation,
    pub position: i64,
    /// The canonical dimension key.
    pub dims: &'o str,
    /// The period's first and last day.
    pub period: Rc<(String, String)>,
    /// Whether the key rule filled in a default.
    pub defaulted: bool,
    /// Set when a later row of the same batch supersedes this one (`superseded_by` is then
    /// the row's own feed index).
    pub superseded_at_ms: Option<i64>,
}

/// What the rule step writes for one batch, after its new keys went in.
#[derive(Default)]
struct Batch<'o> {
    rows: Vec<BatchRow<'o>>,
    /// Stored rows these observations supersede: (feed_index, position).
    supersede: Vec<(i64, i64)>,
}

/// An observation under the key rule.
struct Keyed {
    /// The canonical dimension key.
    dims: String,
    /// Whether the key rule filled in a default.
    defaulted: bool,
    /// The period's first and last day; None when TIME_PERIOD is not an SDMX period.
    period: Option<Rc<(String, String)>>,
}

/// Applies a snapshot's observations a batch at a time, in two steps:
/// 1. the APPENDs go straight in ([`Applier::insert_new_keys`]): the index of the versions in
///    force leaves one out when its key has one, so the common case, a new key, costs one
///    insert and no lookup;
/// 2. every other observation, in order, gets the action rule against its key's version in
///    force: a row of this step (in memory), else one exact probe of the index, which also
///    finds the rows of step 1 and of earlier batches. Then the backend marks the superseded
///    rows and inserts the new ones.
struct Applier<'e> {
    entry: &'e Entry<'e>,
    indicator: &'e str,
    /// The key rule's defaults for the indicator.
    defaults: &'e [(String, String)],
    feed_index: i64,
    position: i64,
    /// Observations applied as revisions although the action rule refused them, because a
    /// default merged two keys the entry was accepted under (see [`Applier::rule`]).
    tolerated: u64,
    /// `YYYY-MM-DD` bounds per TIME_PERIOD: a snapshot repeats few periods many times.
    periods: HashMap<String, Rc<(String, String)>>,
}

impl Applier<'_> {
    fn apply(
        &mut self,
        tx: &mut impl ViewWriter,
        observations: &[Observation],
    ) -> Result<(), StoreError> {
        let keyed: Vec<Keyed> = observations.iter().map(|o| self.key(o)).collect();
        let inserted = self.insert_new_keys(tx, observations, &keyed)?;
        self.rule(tx, observations, &keyed, &inserted)?;
        self.position += offset(observations.len())?;
        Ok(())
    }

    /// Step 1: inserts, in order, every APPEND whose key no earlier REPLACE or DELETE of the
    /// batch touched; says per observation whether it is stored now. Inserted in order, a
    /// repeated APPEND is left out by the first one, so every APPEND left out meets in step 2
    /// the same version in force as it would one by one; an inserted one had nothing in force.
    fn insert_new_keys(
        &self,
        tx: &mut impl ViewWriter,
        observations: &[Observation],
        keyed: &[Keyed],
    ) -> Result<Vec<bool>, StoreError> {
        // Usually empty: a snapshot of new data only appends, and then nothing is hashed.
        let mut changed = HashSet::new();
        let mut rows = Vec::new();
        let mut inserted = vec![false; observations.len()];
        for (i, (o, k)) in observations.iter().zip(keyed).enumerate() {
            let key = (o.ref_area.as_str(), o.time_period.as_str(), k.dims.as_str());
            if o.action != ObservationAction::Append {
                changed.insert(key);
                continue;
            }
            let Some(period) = &k.period else {
                continue;
            };
            if !changed.is_empty() && changed.contains(&key) {
                continue;
            }
            rows.push(BatchRow {
                observation: o,
                position: self.position + offset(i)?,
                dims: &k.dims,
                period: Rc::clone(period),
                defaulted: k.defaulted,
                superseded_at_ms: None,
            });
            inserted[i] = true;
        }
        if rows.is_empty() {
            return Ok(inserted);
        }
        for position in
            tx.insert_unless_in_force(self.entry, self.indicator, self.feed_index, &rows)?
        {
            if let Some(left_out) = usize::try_from(position - self.position)
                .ok()
                .and_then(|i| inserted.get_mut(i))
            {
                *left_out = false;
            }
        }
        Ok(inserted)
    }

    /// Step 2: rules on the observations step 1 did not store, in order, and writes them.
    /// The action rule is the check's, with one exception for entries accepted before the
    /// key rule existed: when the rule refuses an observation and the observation or the
    /// version in force was keyed with a default filled in, the two were different keys when
    /// the entry was accepted, so the observation is applied as the key's next version (the
    /// later one wins). An entry accepted under the key rule never needs this: its actions
    /// were checked against the same keys.
    fn rule<'o>(
        &mut self,
        tx: &mut impl ViewWriter,
        observations: &'o [Observation],
        keyed: &'o [Keyed],
        inserted: &[bool],
    ) -> Result<(), StoreError> {
        let e = self.entry;
        let mut batch = Batch::default();
        let mut touched: HashMap<(&str, &str, &str), Current> = HashMap::new();
        for ((i, o), k) in observations.iter().enumerate().zip(keyed) {
            if inserted[i] {
                continue;
            }
            let position = self.position + offset(i)?;
            let Some(period) = &k.period else {
                return Err(e.conflict(format!(
                    "observation {position} has time period {:?}, which is not an SDMX period",
                    o.time_period
                )));
            };
            let key = (o.ref_area.as_str(), o.time_period.as_str(), k.dims.as_str());
            let current = match touched.get(&key) {
                Some(current) => *current,
                None => self.stored_in_force(tx, key)?,
            };
            let (action, was_defaulted) = match current {
                Current::None => (None, false),
                Current::Stored((_, _, action, d)) | Current::Pending(_, action, d) => {
                    (Some(action), d)
                }
            };
            let state = in_force(action)?;
            if actions::step(state, o.action).is_err() {
                if !(k.defaulted || was_defaulted) {
                    return Err(e.conflict(format!(
                        "observation {position} {}",
                        actions::refusal_words(e.node_id, self.indicator, o, &k.dims, state)
                    )));
                }
                self.tolerated += 1;
            }
            match current {
                Current::None => {}
                Current::Stored((feed_index, position, _, _)) => {
                    batch.supersede.push((feed_index, position));
                }
                Current::Pending(index, _, _) => {
                    batch.rows[index].superseded_at_ms = Some(e.accepted_at_ms);
                }
            }
            touched.insert(
                key,
                Current::Pending(batch.rows.len(), action_code(o.action), k.defaulted),
            );
            batch.rows.push(BatchRow {
                observation: o,
                position,
                dims: &k.dims,
                period: Rc::clone(period),
                defaulted: k.defaulted,
                superseded_at_ms: None,
            });
        }
        if !batch.supersede.is_empty() {
            tx.supersede(e.accepted_at_ms, self.feed_index, &batch.supersede)?;
        }
        if batch.rows.is_empty() {
            return Ok(());
        }
        // Every key's version in force was looked up or superseded: none may be left out.
        let left_out =
            tx.insert_unless_in_force(e, self.indicator, self.feed_index, &batch.rows)?;
        match left_out.first() {
            Some(position) => Err(e.conflict(format!(
                "observation {position} is refused: its key already has a version in force"
            ))),
            None => Ok(()),
        }
    }

    /// `o` under the key rule, with its period's bounds.
    fn key(&mut self, o: &Observation) -> Keyed {
        let (dims, defaulted) = obskey::dimension_key(&o.dimensions, self.defaults);
        Keyed {
            dims,
            defaulted,
            period: self.period(&o.time_period),
        }
    }

    /// The stored version in force of a key: one exact probe of the index of the versions in
    /// force. (Within the transaction that applies a snapshot, PostgreSQL's planner does not
    /// know the rows it added and plans a batched form of the probe as a scan per key.)
    fn stored_in_force(
        &self,
        tx: &mut impl ViewWriter,
        (area, period, dims): (&str, &str, &str),
    ) -> Result<Current, StoreError> {
        let row = tx.first(
            &FIND_IN_FORCE,
            &[&self.entry.node_id, &self.indicator, &area, &period, &dims],
            |r| Ok((r.i64(0)?, r.i64(1)?, r.i64(2)?, r.bool(3)?)),
        )?;
        Ok(row.map_or(Current::None, Current::Stored))
    }

    /// The `YYYY-MM-DD` bounds of a TIME_PERIOD; None when it is not an SDMX period.
    fn period(&mut self, time_period: &str) -> Option<Rc<(String, String)>> {
        if let Some(period) = self.periods.get(time_period) {
            return Some(Rc::clone(period));
        }
        let period = Rc::new(period_dates(&parse_time_period(time_period)?));
        self.periods
            .insert(time_period.to_string(), Rc::clone(&period));
        Some(period)
    }

    /// Logs how many observations of the entry were applied under the exception of
    /// [`Applier::rule`].
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

/// An index within a batch as a position offset.
fn offset(index: usize) -> Result<i64, StoreError> {
    i64::try_from(index)
        .map_err(|_| StoreError::Corrupt(format!("batch index {index} exceeds a position")))
}

/// SQLite writes row by row with cached statements: no array type, and a statement costs no
/// round trip.
impl ViewWriter for Lite<'_> {
    fn supersede(
        &mut self,
        accepted_at_ms: i64,
        by: i64,
        rows: &[(i64, i64)],
    ) -> Result<(), StoreError> {
        let mut supersede = self.0.prepare_cached(
            "UPDATE observations SET superseded_at_ms = ?3, superseded_by = ?4
             WHERE feed_index = ?1 AND position = ?2",
        )?;
        for (feed_index, position) in rows {
            supersede.execute(params![feed_index, position, accepted_at_ms, by])?;
        }
        Ok(())
    }

    fn insert_unless_in_force(
        &mut self,
        entry: &Entry<'_>,
        indicator: &str,
        feed_index: i64,
        rows: &[BatchRow<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        // The conflict target names the index of the versions in force: any other constraint
        // still fails the insert.
        let mut insert = self.0.prepare_cached(
            "INSERT INTO observations (feed_index, position, node_id, indicator, ref_area,
                 time_period, dims, period_start, period_end, action, obs_value, obs_status,
                 unit_measure, unit_mult, conf_status, footnote, source, digest, document,
                 revision, accepted_at_ms, defaulted, superseded_at_ms, superseded_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18, ?19, ?20, ?21, ?22, ?23, CASE WHEN ?23 IS NULL THEN NULL ELSE ?1 END)
             ON CONFLICT (indicator, ref_area, time_period, dims, node_id)
                 WHERE superseded_at_ms IS NULL DO NOTHING",
        )?;
        let mut left_out = Vec::new();
        for row in rows {
            let o = row.observation;
            let stored = insert
                .execute(params![
                    feed_index,
                    row.position,
                    entry.node_id,
                    indicator,
                    o.ref_area,
                    o.time_period,
                    row.dims,
                    row.period.0,
                    row.period.1,
                    action_code(o.action),
                    o.obs_value,
                    o.obs_status,
                    o.unit_measure,
                    o.unit_mult,
                    o.conf_status,
                    o.footnote,
                    o.source,
                    &entry.digest.0[..],
                    entry.document,
                    entry.revision,
                    entry.accepted_at_ms,
                    row.defaulted,
                    row.superseded_at_ms,
                ])
                .map_err(|err| match db::constraint_message(&err) {
                    Some(_) => {
                        entry.conflict(format!("observation {} is refused: {err}", row.position))
                    }
                    None => err.into(),
                })?;
            if stored == 0 {
                left_out.push(row.position);
            }
        }
        Ok(left_out)
    }
}

/// The period's first and last day as `YYYY-MM-DD`, which sorts as text in date order.
pub(crate) fn period_dates(p: &PeriodRange) -> (String, String) {
    let (s, e) = (p.start, p.end);
    (
        format!("{:04}-{:02}-{:02}", s.year(), u8::from(s.month()), s.day()),
        format!("{:04}-{:02}-{:02}", e.year(), u8::from(e.month()), e.day()),
    )
}

/// Rebuilds the view from the log when a file from before the view is upgraded: every entry
/// is applied in feed order with the same code as a new one.
pub(crate) fn backfill(tx: &Transaction<'_>, log: Log) -> Result<(), StoreError> {
    let sql = log.pick(
        "SELECT node_id, kind, digest, document, revision, feed_index, accepted_at_ms, envelope
         FROM statements WHERE kind IN ('indicator_snapshot', 'policy_summary')
         ORDER BY feed_index",
        "SELECT node_id, kind, digest, document, revision, feed_index, accepted_at_ms, envelope
         FROM mirror WHERE kind IN ('indicator_snapshot', 'policy_summary')
         ORDER BY feed_index",
    );
    let mut stmt = tx.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut applied = 0u64;
    while let Some(row) = rows.next()? {
        let node_id: String = row.get(0)?;
        let kind: String = row.get(1)?;
        let digest = row.digest(2)?;
        let document: String = row.get(3)?;
        let envelope = row.get_ref(7)?.as_blob().map_err(rusqlite::Error::from)?;
        apply_entry(
            tx,
            log,
            &Entry {
                node_id: &node_id,
                kind: &kind,
                digest: &digest,
                document: &document,
                revision: row.u32(4)?,
                feed_index: row.u64(5)?,
                accepted_at_ms: row.get(6)?,
                envelope,
                statement: None,
            },
        )?;
        applied += 1;
    }
    tracing::info!(entries = applied, "indicator view rebuilt from the log");
    Ok(())
}

fn collect_rows(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
) -> Result<Vec<ObservationRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(indicator_queries::observation_from_row(row)?);
    }
    Ok(out)
}

/// A JSON array of strings, for `json_each(?)`: one cached statement serves any list length.
fn json_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// See [`ObservationFilter`] for the rules; one read transaction.
pub(crate) fn query_observations(
    conn: &Connection,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    limit: usize,
) -> Result<Vec<ObservationRow>, StoreError> {
    in_read_tx(conn, |tx| query_observations_in(tx, filter, after, limit))
}

/// [`query_observations`] inside the caller's read transaction `tx`.
fn query_observations_in(
    tx: &Connection,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    limit: usize,
) -> Result<Vec<ObservationRow>, StoreError> {
    let reading = indicator_queries::view_reading(&mut Lite(tx))?;
    let (sql, args) = observation_query(reading, filter, after, limit);
    let args: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
    collect_rows(tx, &sql, &args)
}

/// The SQL and arguments of an observation query on SQLite
/// ([`indicator_queries::observation_query`]); a list travels as one JSON argument.
pub(crate) fn observation_query(
    reading: ViewReading,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    limit: usize,
) -> (String, Vec<Value>) {
    let (sql, args) =
        indicator_queries::observation_query(Dialect::Sqlite, reading, filter, after, limit);
    let args = args
        .into_iter()
        .map(|arg| match arg {
            FilterArg::Text(text) => Value::Text(text),
            FilterArg::Integer(n) => Value::Integer(n),
            FilterArg::List(items) => Value::Text(json_array(items.iter().map(String::as_str))),
        })
        .collect();
    (sql, args)
}

pub(crate) fn revisions_since(
    conn: &Connection,
    after_feed_index: u64,
    limit: usize,
) -> Result<(Vec<RevisionRows>, u64), StoreError> {
    // One snapshot for the page, the predecessors and the count.
    in_read_tx(conn, |tx| {
        indicator_queries::revisions_in(&mut Lite(tx), after_feed_index, limit)
    })
}

/// Everything a coherence report reads, in one read transaction (one WAL snapshot): the
/// report's feed size then bounds every row it lists, and the next report's revisions start
/// exactly where this one's end.
pub(crate) fn coherence_rows(
    conn: &Connection,
    revisions_after: u64,
    limit: usize,
) -> Result<CoherenceRows, StoreError> {
    in_read_tx(conn, |tx| {
        let mut read = Lite(tx);
        Ok(CoherenceRows {
            feed_size: indicator_queries::applied_feed_size(&mut read)?,
            conflicts: indicator_queries::conflicts(&mut read, limit)?,
            coverage: indicator_queries::coverage(&mut read)?,
            policy_coverage: indicator_queries::policy_coverage(&mut read)?,
            revisions: indicator_queries::revisions_in(&mut read, revisions_after, limit)?,
        })
    })
}

/// Whether each chunk is stored, in one read transaction.
pub(crate) fn has_chunks(conn: &Connection, sha256s: &[Digest]) -> Result<Vec<bool>, StoreError> {
    in_read_tx(conn, |tx| {
        indicator_queries::has_chunks(&mut Lite(tx), sha256s)
    })
}

/// A page of observations and the applied feed size, in one read transaction.
pub(crate) fn query_observations_at(
    conn: &Connection,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    limit: usize,
) -> Result<(Vec<ObservationRow>, u64), StoreError> {
    in_read_tx(conn, |tx| {
        let rows = query_observations_in(tx, filter, after, limit)?;
        let feed_size = indicator_queries::applied_feed_size(&mut Lite(tx))?;
        Ok((rows, feed_size))
    })
}

/// Implements [`crate::IndicatorStore`] for a store with a `db: Db` field over `$log`.
macro_rules! impl_indicator_store {
    ($store:ty, $log:expr) => {
        impl $crate::indicators::IndicatorStore for $store {
            fn check_observation_actions(
                &self,
                node_id: &str,
                indicator: &str,
                observations: &[rcpfed_core::statement::Observation],
                limit: usize,
            ) -> Result<Vec<rcpfed_core::rejection::Violation>, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicators_sql::check_observation_actions(
                        conn,
                        $log,
                        node_id,
                        indicator,
                        observations,
                        limit,
                    )
                })
            }

            fn query_observations(
                &self,
                filter: &$crate::indicators::ObservationFilter,
                after: Option<$crate::indicators::ObservationCursor>,
                limit: usize,
            ) -> Result<Vec<$crate::indicators::ObservationRow>, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicators_sql::query_observations(conn, filter, after, limit)
                })
            }

            fn query_observations_at(
                &self,
                filter: &$crate::indicators::ObservationFilter,
                after: Option<$crate::indicators::ObservationCursor>,
                limit: usize,
            ) -> Result<(Vec<$crate::indicators::ObservationRow>, u64), $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicators_sql::query_observations_at(conn, filter, after, limit)
                })
            }

            fn applied_feed_size(&self) -> Result<u64, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicator_queries::applied_feed_size(&mut $crate::sql::Lite(conn))
                })
            }

            fn view_superseding(&self) -> Result<Option<u64>, $crate::StoreError> {
                self.db
                    .read(|conn| $crate::view_step::superseding(&mut $crate::sql::Lite(conn)))
            }

            fn conflicts(
                &self,
                limit: usize,
            ) -> Result<(Vec<$crate::indicators::ConflictRows>, u64), $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::db::in_read_tx(conn, |tx| {
                        $crate::indicator_queries::conflicts(&mut $crate::sql::Lite(tx), limit)
                    })
                })
            }

            fn coverage(
                &self,
            ) -> Result<Vec<$crate::indicators::CoverageData>, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::db::in_read_tx(conn, |tx| {
                        $crate::indicator_queries::coverage(&mut $crate::sql::Lite(tx))
                    })
                })
            }

            fn policy_coverage(
                &self,
            ) -> Result<Vec<$crate::indicators::PolicyCoverageData>, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicator_queries::policy_coverage(&mut $crate::sql::Lite(conn))
                })
            }

            fn revisions_since(
                &self,
                after_feed_index: u64,
                limit: usize,
            ) -> Result<(Vec<$crate::indicators::RevisionRows>, u64), $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicators_sql::revisions_since(conn, after_feed_index, limit)
                })
            }

            fn coherence_rows(
                &self,
                revisions_after: u64,
                limit: usize,
            ) -> Result<$crate::indicators::CoherenceRows, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicators_sql::coherence_rows(conn, revisions_after, limit)
                })
            }

            fn last_content_feed_index(&self) -> Result<u64, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicator_queries::last_content_feed_index(
                        &mut $crate::sql::Lite(conn),
                        $log,
                    )
                })
            }

            fn stage_chunks(
                &self,
                chunks: &[(rcpfed_core::Digest, Vec<u8>)],
            ) -> Result<(), $crate::StoreError> {
                if chunks.is_empty() {
                    return Ok(());
                }
                self.db.write(|tx| {
                    $crate::indicator_queries::stage_chunks(&mut $crate::sql::Lite(tx), chunks)
                })
            }

            fn has_chunks(
                &self,
                sha256s: &[rcpfed_core::Digest],
            ) -> Result<Vec<bool>, $crate::StoreError> {
                if sha256s.is_empty() {
                    return Ok(Vec::new());
                }
                self.db
                    .read(|conn| $crate::indicators_sql::has_chunks(conn, sha256s))
            }

            fn chunk(
                &self,
                sha256: &rcpfed_core::Digest,
            ) -> Result<Option<Vec<u8>>, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicator_queries::chunk(&mut $crate::sql::Lite(conn), sha256)
                })
            }

            fn hub_document(
                &self,
                chain: &str,
                seq: Option<u64>,
            ) -> Result<Option<$crate::indicators::HubDocument>, $crate::StoreError> {
                self.db.read(|conn| {
                    $crate::indicator_queries::hub_document(
                        &mut $crate::sql::Lite(conn),
                        $log,
                        chain,
                        seq,
                    )
                })
            }
        }
    };
}

impl_indicator_store!(crate::SqliteHubStore, Log::Hub);
impl_indicator_store!(crate::SqliteNodeStore, Log::Node);
