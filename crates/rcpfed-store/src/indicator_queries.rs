//! The indicator view's read queries and row mapping, once for the SQLite stores (hub and
//! node) and the PostgreSQL hub store: each function runs on a connection or transaction the
//! backend opened (the backend decides the snapshot), through [`Sql`]. So is the policy part of
//! the apply step ([`apply_policy`]), and the observation query's text ([`observation_query`]:
//! only its list terms differ, arrays on PostgreSQL and JSON lists on SQLite; each backend
//! binds its arguments). How the apply step writes observation rows stays with each backend
//! (`indicators_sql::ViewWriter`).

use crate::StoreError;
use crate::db::{bound, int, key, limit};
use crate::indicators::{
    ConflictRows, CoverageData, HubDocument, ObservationCursor, ObservationFilter,
    ObservationProvenance, ObservationRow, PolicyCoverageData, RevisionRows, dimension_key,
};
use crate::sql::{Dialect, Query, Sql, SqlRow, query};
use crate::view_rows::{
    ConflictCollector, Entry, Log, action_from_code, observation_columns, parse_dims,
};
use crate::view_step;
use rcpfed_core::Digest;
use rcpfed_core::statement::Observation;
use std::collections::{BTreeMap, BTreeSet};

/// Rows fetched per round trip while the conflict candidates stream (PostgreSQL).
const CONFLICT_FETCH: usize = 512;

/// The view's rows readers see: those of entries up to the view cursor. The hub's SQLite
/// store writes a large snapshot's rows a piece per transaction before the cursor passes it
/// (`view_step::step`), and no query shows them until it does; so does the node's. In
/// the searches by key the term is written `+feed_index`, so that the planner keeps searching
/// the index of the versions in force by the whole key rather than `observations_key` by a
/// range of feed indexes.
macro_rules! applied_rows {
    () => {
        "feed_index <= (SELECT applied_through FROM view_cursor WHERE id = 1)"
    };
}

/// How readers tell the versions in force, which a read finds in the view cursor's row
/// ([`view_reading`]) in its own read transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ViewReading {
    /// The versions in force are those not marked superseded (the index of the versions in
    /// force holds exactly those).
    Settled,
    /// The pieces of the snapshot just past the view cursor have marked versions superseded
    /// (`view_step::superseding`): a version superseded by an entry past the cursor is still
    /// in force for readers, who so see the view as it was before that snapshot until its last
    /// piece. The index of the versions in force cannot serve this test; it lasts as long as
    /// the pieces.
    Superseding,
}

impl ViewReading {
    /// This reading's item of a pair written for (Settled, Superseding).
    fn pick<T: ?Sized>(self, pair: &[&'static T; 2]) -> &'static T {
        match self {
            ViewReading::Settled => pair[0],
            ViewReading::Superseding => pair[1],
        }
    }
}

/// How readers tell the versions in force right now (see [`ViewReading`]).
pub(crate) fn view_reading(tx: &mut impl Sql) -> Result<ViewReading, StoreError> {
    Ok(match view_step::superseding(tx)? {
        Some(_) => ViewReading::Superseding,
        None => ViewReading::Settled,
    })
}

/// The test "a version in force" on the columns of table alias `$alias` (with its dot, or
/// ""), in each [`ViewReading`].
macro_rules! in_force {
    (Settled, $alias:literal) => {
        concat!($alias, "superseded_at_ms IS NULL")
    };
    (Superseding, $alias:literal) => {
        concat!(
            "(",
            $alias,
            "superseded_at_ms IS NULL OR ",
            $alias,
            "superseded_by > (SELECT applied_through FROM view_cursor WHERE id = 1))"
        )
    };
}

/// Candidate conflicts: keys reported by more than one node among the versions in force
/// (tombstones excluded) whose raw values, multipliers or units are not all equal, with the
/// versions in force of each, ordered by key then node. The exact comparison of the scaled
/// values happens in Rust ([`crate::view_rows::scaled_value`]).
///
/// Every step reads the index of the versions in force, which is in (key, node) order: `c`,
/// the keys in force at more than one node (tombstones included), is one scan of the index
/// alone; `k` and the outer query search it by key. (Grouping the whole table and joining
/// back on `observations_key` read every version of an area and period per candidate: minutes
/// at a million observations.) A key has at most one version in force per node, so count(*)
/// counts nodes.
macro_rules! conflict_candidates {
    ($reading:ident) => {
        concat!(
            "SELECT ",
            observation_columns!($reading),
            " FROM (SELECT v.indicator, v.ref_area, v.time_period, v.dims
                   FROM (SELECT indicator, ref_area, time_period, dims FROM observations
                         WHERE ",
            in_force!($reading, ""),
            " AND ",
            applied_rows!(),
            "
                         GROUP BY indicator, ref_area, time_period, dims
                         HAVING count(*) > 1) c
                   JOIN observations v
                     ON v.indicator = c.indicator AND v.ref_area = c.ref_area
                    AND v.time_period = c.time_period AND v.dims = c.dims
                   WHERE ",
            in_force!($reading, "v."),
            " AND v.action != 3 AND +v.",
            applied_rows!(),
            "
                   GROUP BY v.indicator, v.ref_area, v.time_period, v.dims
                   HAVING count(*) > 1
                      AND (min(v.obs_value) IS DISTINCT FROM max(v.obs_value)
                           OR min(v.unit_mult) != max(v.unit_mult)
                           OR min(v.unit_measure) != max(v.unit_measure)
                           OR count(v.obs_value) NOT IN (0, count(*)))) k
             JOIN observations o USING (indicator, ref_area, time_period, dims)
             WHERE ",
            in_force!($reading, "o."),
            " AND o.action != 3 AND +o.",
            applied_rows!(),
            "
             ORDER BY o.indicator, o.ref_area, o.time_period, o.dims, o.node_id"
        )
    };
}

/// [`conflict_candidates`] in each [`ViewReading`].
pub(crate) const CONFLICT_CANDIDATES: [&Query; 2] = [
    &query!(conflict_candidates!(Settled)),
    &query!(conflict_candidates!(Superseding)),
];

macro_rules! coverage {
    ($reading:ident) => {
        concat!(
            "SELECT node_id, indicator, ref_area, min(time_period), max(time_period), count(*)
             FROM observations WHERE ",
            in_force!($reading, ""),
            " AND action != 3 AND ",
            applied_rows!(),
            "
             GROUP BY node_id, indicator, ref_area
             ORDER BY node_id, indicator, ref_area"
        )
    };
}
const COVERAGE: [&Query; 2] = [&query!(coverage!(Settled)), &query!(coverage!(Superseding))];
/// Coverage per node: objective 0 counts the node's documents, objective k the documents that
/// address GCM objective k (see [`apply_policy`]).
const POLICY_COVERAGE: Query = query!(
    "SELECT node_id, objective, documents FROM policy_coverage
     WHERE documents > 0 ORDER BY node_id, objective"
);
const POLICY_REVISIONS: Query = query!(
    "SELECT revision, objective FROM policy_objectives WHERE node_id = $1 AND document = $2"
);
const POLICY_FORGET: Query =
    query!("DELETE FROM policy_objectives WHERE node_id = $1 AND document = $2");
const POLICY_RECORD: Query = query!(
    "INSERT INTO policy_objectives (node_id, document, revision, feed_index, objective)
     VALUES ($1, $2, $3, $4, $5)"
);
const POLICY_COUNT: Query = query!(
    "INSERT INTO policy_coverage (node_id, objective, documents) VALUES ($1, $2, 1)
     ON CONFLICT (node_id, objective) DO UPDATE SET documents = policy_coverage.documents + 1"
);
// An UPDATE, not the upsert above with -1: the engines check a row's CHECK constraints on the
// row to insert before they find the conflict.
const POLICY_UNCOUNT: Query = query!(
    "UPDATE policy_coverage SET documents = documents - 1 WHERE node_id = $1 AND objective = $2"
);
/// The `policy_coverage` row that counts a node's documents (GCM objectives are 1 to 23).
const ALL_DOCUMENTS: i64 = 0;

/// Revisions (REPLACE and DELETE versions) applied after a feed index, in each
/// [`ViewReading`] (while a snapshot's pieces go in, one of them may already be marked
/// superseded by it).
macro_rules! revisions {
    ($reading:ident) => {
        concat!(
            "SELECT ",
            observation_columns!($reading),
            " FROM observations WHERE feed_index > $1 AND action IN (2, 3) AND ",
            applied_rows!(),
            "
              ORDER BY feed_index, position LIMIT $2"
        )
    };
}
const REVISIONS: [&Query; 2] = [
    &query!(revisions!(Settled)),
    &query!(revisions!(Superseding)),
];
/// The version a REPLACE or DELETE superseded: its key's latest earlier version.
pub(crate) const PREDECESSOR: Query = query!(concat!(
    "SELECT ",
    observation_columns!(),
    " FROM observations
      WHERE indicator = $1 AND ref_area = $2 AND time_period = $3
        AND node_id = $4 AND dims = $5 AND (feed_index, position) < ($6, $7)
      ORDER BY feed_index DESC, position DESC LIMIT 1"
));
const COUNT_REVISIONS: Query = query!(concat!(
    "SELECT count(*) FROM observations WHERE feed_index > $1 AND action IN (2, 3) AND ",
    applied_rows!()
));

/// Two index probes (one per kind) on the log's kind index.
const LAST_CONTENT: [Query; 2] = [
    query!(
        "SELECT coalesce(max(m), 0) FROM (
             SELECT max(feed_index) AS m FROM statements WHERE kind = 'indicator_snapshot'
             UNION ALL
             SELECT max(feed_index) FROM statements WHERE kind = 'policy_summary') AS k"
    ),
    query!(
        "SELECT coalesce(max(m), 0) FROM (
             SELECT max(feed_index) AS m FROM mirror WHERE kind = 'indicator_snapshot'
             UNION ALL
             SELECT max(feed_index) FROM mirror WHERE kind = 'policy_summary') AS k"
    ),
];

const STAGE_CHUNK: Query =
    query!("INSERT INTO chunks (sha256, bytes) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING");
const HAS_CHUNK: Query = query!("SELECT 1 FROM chunks WHERE sha256 = $1");
const CHUNK: Query = query!("SELECT bytes FROM chunks WHERE sha256 = $1");

/// A hub document revision by (chain, seq), per log table.
const DOCUMENT_AT: [Query; 2] = [
    query!(
        "SELECT feed_index, seq, digest, envelope, accepted_at_ms FROM statements
         WHERE node_id = $1 AND seq = $2"
    ),
    query!(
        "SELECT feed_index, seq, digest, envelope, accepted_at_ms FROM mirror
         WHERE node_id = $1 AND seq = $2"
    ),
];
/// A hub document chain's latest revision, per log table.
const DOCUMENT_LATEST: [Query; 2] = [
    query!(
        "SELECT feed_index, seq, digest, envelope, accepted_at_ms FROM statements
         WHERE node_id = $1 ORDER BY seq DESC LIMIT 1"
    ),
    query!(
        "SELECT feed_index, seq, digest, envelope, accepted_at_ms FROM mirror
         WHERE node_id = $1 ORDER BY seq DESC LIMIT 1"
    ),
];

/// The query of `log`'s table among a pair written for (hub, node).
fn of(log: Log, pair: &[Query; 2]) -> &Query {
    match log {
        Log::Hub => &pair[0],
        Log::Node => &pair[1],
    }
}

/// An observation version, from the columns `observation_columns!()` lists.
pub(crate) fn observation_from_row(row: &dyn SqlRow) -> Result<ObservationRow, StoreError> {
    Ok(ObservationRow {
        indicator: row.text(0)?,
        observation: Observation {
            action: action_from_code(row.i64(4)?)?,
            ref_area: row.text(1)?,
            time_period: row.text(2)?,
            dimensions: parse_dims(row.str(3)?)?,
            obs_value: row.opt_f64(5)?,
            obs_status: row.text(6)?,
            unit_measure: row.text(7)?,
            unit_mult: row.i32(8)?,
            conf_status: row.text(9)?,
            footnote: row.text(10)?,
            source: row.text(11)?,
        },
        provenance: ObservationProvenance {
            node_id: row.text(12)?,
            digest: row.digest(13)?,
            document: row.text(14)?,
            revision: row.u32(15)?,
            feed_index: row.u64(16)?,
            position: row.u64(17)?,
            accepted_at_ms: row.i64(18)?,
        },
        superseded_at_ms: row.opt_i64(19)?,
    })
}

/// An argument of the observation query, which each backend binds in its own type: a list is
/// one argument (a JSON array on SQLite, an array on PostgreSQL), so any length shares a
/// statement.
pub(crate) enum FilterArg {
    Text(String),
    Integer(i64),
    List(Vec<String>),
}

/// The observation query's terms that test a column against a list, per engine; each `?` is
/// the list's one argument.
struct ListTerms {
    areas: &'static str,
    dimensions: &'static str,
    nodes: &'static str,
}

const SQLITE_LISTS: ListTerms = ListTerms {
    // A set of ranges of `observations_area`, merged by a sort.
    areas: " AND ref_area IN (SELECT value FROM json_each(?))",
    // Each listed pair must be one of the `;`-separated pairs of the canonical key.
    dimensions: " AND NOT EXISTS (SELECT 1 FROM json_each(?) j
                  WHERE instr(';' || dims || ';', ';' || j.value || ';') = 0)",
    // "+": not through the index of the versions in force, which would sort a node's whole
    // series for every page; a node filter is rarely selective, so the scan of the indicator
    // in paging order fills a page quickly.
    nodes: " AND +node_id IN (SELECT value FROM json_each(?))",
};

const POSTGRES_LISTS: ListTerms = ListTerms {
    areas: " AND ref_area = ANY(?)",
    dimensions: " AND NOT EXISTS (SELECT 1 FROM unnest(?::text[]) AS j(pair)
                  WHERE strpos(';' || dims || ';', ';' || j.pair || ';') = 0)",
    nodes: " AND node_id = ANY(?)",
};

/// An observation query as it is assembled: its text and its arguments, numbered in order.
struct FilterQuery {
    dialect: Dialect,
    sql: String,
    args: Vec<FilterArg>,
}

impl FilterQuery {
    /// Adds `arg`; its placeholder.
    fn arg(&mut self, arg: FilterArg) -> String {
        self.args.push(arg);
        self.dialect.placeholder(self.args.len())
    }

    /// Appends `text`, its one `?` standing for `arg`.
    fn term(&mut self, text: &str, arg: FilterArg) {
        let placeholder = self.arg(arg);
        self.sql.push_str(&text.replace('?', &placeholder));
    }
}

/// The SQL and arguments of an observation query (see [`ObservationFilter`] for the rules),
/// the same on both engines but for the list terms. Built per combination of filters (each
/// variant a cached statement) rather than with "(? IS NULL OR ...)" terms, which stop SQLite
/// from using the indexes.
pub(crate) fn observation_query(
    dialect: Dialect,
    reading: ViewReading,
    filter: &ObservationFilter,
    after: Option<ObservationCursor>,
    max: usize,
) -> (String, Vec<FilterArg>) {
    let lists = match dialect {
        Dialect::Sqlite => &SQLITE_LISTS,
        Dialect::Postgres => &POSTGRES_LISTS,
    };
    let columns = reading.pick(&[
        observation_columns!(Settled),
        observation_columns!(Superseding),
    ]);
    let mut q = FilterQuery {
        dialect,
        sql: format!("SELECT {columns} FROM observations"),
        args: Vec::new(),
    };
    q.term(
        " WHERE indicator = ?",
        FilterArg::Text(filter.indicator.clone()),
    );
    match filter.ref_areas.as_slice() {
        [] => {}
        // One area (the common case) reads `observations_area` in paging order: a page costs
        // about a page of rows.
        [area] => q.term(" AND ref_area = ?", FilterArg::Text(area.clone())),
        areas => q.term(lists.areas, FilterArg::List(areas.to_vec())),
    }
    period_terms(&mut q, filter);
    if !filter.dimensions.is_empty() {
        let pairs = filter
            .dimensions
            .iter()
            .map(|(id, value)| format!("{id}={value}"))
            .collect();
        q.term(lists.dimensions, FilterArg::List(pairs));
    }
    if !filter.node_ids.is_empty() {
        q.term(lists.nodes, FilterArg::List(filter.node_ids.clone()));
    }
    version_terms(&mut q, reading, filter);
    q.sql.push_str(concat!(" AND ", applied_rows!()));
    if let Some((feed_index, position)) = after {
        let feed_index = q.arg(FilterArg::Integer(bound(feed_index)));
        let position = q.arg(FilterArg::Integer(bound(position)));
        q.sql.push_str(&format!(
            " AND (feed_index, position) > ({feed_index}, {position})"
        ));
    }
    q.term(
        " ORDER BY feed_index, position LIMIT ?",
        FilterArg::Integer(limit(max)),
    );
    (q.sql, q.args)
}

/// The filter's date bounds. Every TIME_PERIOD starts with the 4-digit year of its first day,
/// and its last day falls in the same year. So the date bounds imply bounds on TIME_PERIOD as
/// text, which are stated too: they change no answer, and let a query by area and period read
/// the area's periods through an index on TIME_PERIOD when the planner finds that cheaper.
fn period_terms(q: &mut FilterQuery, filter: &ObservationFilter) {
    let year = |date: &str| {
        date.get(..4)
            .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    };
    if let Some(start) = &filter.start_date {
        q.term(" AND period_start >= ?", FilterArg::Text(start.clone()));
        if let Some(first_year) = year(start) {
            q.term(" AND time_period >= ?", FilterArg::Text(first_year));
        }
    }
    if let Some(end) = &filter.end_date {
        q.term(" AND period_end <= ?", FilterArg::Text(end.clone()));
        if let Some(last_year) = year(end) {
            // ':' sorts after every character that follows the year ('-', digits).
            q.term(
                " AND time_period < ?",
                FilterArg::Text(format!("{last_year}:")),
            );
        }
    }
}

/// Which versions the filter reads: accepted in its window, and unless it asks for the
/// history, only those in force (at `as_of_ms` if set), tombstones left out unless it asks
/// for what changed.
fn version_terms(q: &mut FilterQuery, reading: ViewReading, filter: &ObservationFilter) {
    if let Some(updated_after) = filter.updated_after_ms {
        q.term(" AND accepted_at_ms > ?", FilterArg::Integer(updated_after));
    }
    if let Some(as_of) = filter.as_of_ms {
        q.term(" AND accepted_at_ms <= ?", FilterArg::Integer(as_of));
    }
    if !filter.include_history {
        let in_force = reading.pick(&[in_force!(Settled, ""), in_force!(Superseding, "")]);
        match filter.as_of_ms {
            Some(as_of) => q.term(
                &format!(" AND ({in_force} OR superseded_at_ms > ?)"),
                FilterArg::Integer(as_of),
            ),
            None => {
                q.sql.push_str(" AND ");
                q.sql.push_str(in_force);
            }
        }
        if filter.updated_after_ms.is_none() {
            q.sql.push_str(" AND action != 3");
        }
    }
}

/// Highest feed index applied to the view: every entry up to it is, none after it. Hub and
/// node store a chunked snapshot (and the entries after it) before their background applier
/// has applied them (see [`crate::view_step`]).
pub(crate) fn applied_feed_size(tx: &mut impl Sql) -> Result<u64, StoreError> {
    view_step::view_applied_through(tx)
}

/// The keys whose versions in force disagree (at most `max` listed) and how many there are.
pub(crate) fn conflicts(
    tx: &mut impl Sql,
    max: usize,
) -> Result<(Vec<ConflictRows>, u64), StoreError> {
    let candidates = view_reading(tx)?.pick(&CONFLICT_CANDIDATES);
    let mut collector = ConflictCollector::new(max);
    tx.stream(candidates, &[], CONFLICT_FETCH, |row| {
        // Read without copying until the group is listed.
        collector.push(
            [row.str(0)?, row.str(1)?, row.str(2)?, row.str(3)?],
            row.opt_f64(5)?,
            row.str(7)?,
            row.i32(8)?,
            || observation_from_row(row),
        )?;
        Ok(true)
    })?;
    Ok(collector.finish())
}

pub(crate) fn coverage(tx: &mut impl Sql) -> Result<Vec<CoverageData>, StoreError> {
    let mut out: Vec<CoverageData> = Vec::new();
    let coverage = view_reading(tx)?.pick(&COVERAGE);
    tx.each(coverage, &[], |row| {
        let node_id = row.text(0)?;
        let indicator = row.text(1)?;
        let ref_area = row.text(2)?;
        let first = row.text(3)?;
        let last = row.text(4)?;
        let count = row.u64(5)?;
        match out.last_mut() {
            Some(c) if c.node_id == node_id && c.indicator == indicator => {
                c.ref_areas.push(ref_area);
                if first < c.first_period {
                    c.first_period = first;
                }
                if last > c.last_period {
                    c.last_period = last;
                }
                c.observation_count += count;
            }
            _ => out.push(CoverageData {
                node_id,
                indicator,
                ref_areas: vec![ref_area],
                first_period: first,
                last_period: last,
                observation_count: count,
            }),
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The GCM objectives each node's policy documents address, read from the counts the apply
/// step keeps (one row per node and objective), so a coherence pass costs the same on a log of
/// millions of policy summaries as on an empty one.
pub(crate) fn policy_coverage(tx: &mut impl Sql) -> Result<Vec<PolicyCoverageData>, StoreError> {
    let mut nodes: BTreeMap<String, PolicyCoverageData> = BTreeMap::new();
    tx.each(&POLICY_COVERAGE, &[], |row| {
        let node_id = row.text(0)?;
        let objective = row.i64(1)?;
        let documents = row.u64(2)?;
        let node = nodes
            .entry(node_id.clone())
            .or_insert_with(|| PolicyCoverageData {
                node_id,
                gcm_objectives: Vec::new(),
                policy_documents: 0,
            });
        if objective == ALL_DOCUMENTS {
            node.policy_documents = documents;
        } else {
            let objective = u32::try_from(objective).map_err(|_| row.out_of_range(1, objective))?;
            node.gcm_objectives.push(objective);
        }
        Ok(true)
    })?;
    Ok(nodes.into_values().collect())
}

/// The apply step for a policy summary, on either engine: records the objectives of a
/// document's revision in place of older revisions' rows (a revision older than the one
/// recorded changes nothing), and keeps `policy_coverage` counting, per node, its documents
/// and the documents that address each objective.
pub(crate) fn apply_policy(
    tx: &mut impl Sql,
    entry: &Entry<'_>,
    objectives: &[u32],
) -> Result<(), StoreError> {
    let mut latest: Option<i64> = None;
    let mut before = BTreeSet::new();
    tx.each(
        &POLICY_REVISIONS,
        &[&entry.node_id, &entry.document],
        |row| {
            let revision = row.i64(0)?;
            latest = Some(latest.map_or(revision, |l| l.max(revision)));
            before.extend(row.opt_i64(1)?);
            Ok(true)
        },
    )?;
    let revision = i64::from(entry.revision);
    if latest.is_some_and(|latest| latest > revision) {
        return Ok(());
    }
    tx.exec(&POLICY_FORGET, &[&entry.node_id, &entry.document])?;
    let feed_index = int(entry.feed_index, "feed index")?;
    let after: BTreeSet<i64> = objectives.iter().map(|&o| i64::from(o)).collect();
    // A document addressing none still counts: one row with objective NULL.
    let rows: Vec<Option<i64>> = if after.is_empty() {
        vec![None]
    } else {
        after.iter().map(|&o| Some(o)).collect()
    };
    for objective in rows {
        tx.exec(
            &POLICY_RECORD,
            &[
                &entry.node_id,
                &entry.document,
                &revision,
                &feed_index,
                &objective,
            ],
        )?;
    }
    if latest.is_none() {
        tx.exec(&POLICY_COUNT, &[&entry.node_id, &ALL_DOCUMENTS])?;
    }
    for dropped in before.difference(&after) {
        tx.exec(&POLICY_UNCOUNT, &[&entry.node_id, dropped])?;
    }
    for added in after.difference(&before) {
        tx.exec(&POLICY_COUNT, &[&entry.node_id, added])?;
    }
    Ok(())
}

/// REPLACE and DELETE versions after `after_feed_index` (at most `max`), each with the version
/// it superseded, and how many there are; the caller runs this in one snapshot.
pub(crate) fn revisions_in(
    tx: &mut impl Sql,
    after_feed_index: u64,
    max: usize,
) -> Result<(Vec<RevisionRows>, u64), StoreError> {
    let after = bound(after_feed_index);
    let revisions = view_reading(tx)?.pick(&REVISIONS);
    let new_rows = tx.all(revisions, &[&after, &limit(max)], observation_from_row)?;
    let mut out = Vec::with_capacity(new_rows.len());
    for new in new_rows {
        let o = &new.observation;
        let p = &new.provenance;
        let dims = dimension_key(&o.dimensions);
        let old = tx
            .first(
                &PREDECESSOR,
                &[
                    &new.indicator,
                    &o.ref_area,
                    &o.time_period,
                    &p.node_id,
                    &dims,
                    &bound(p.feed_index),
                    &bound(p.position),
                ],
                observation_from_row,
            )?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the revision at feed index {} position {} supersedes no stored version",
                    p.feed_index, p.position
                ))
            })?;
        out.push(RevisionRows { old, new });
    }
    let total = tx.one(&COUNT_REVISIONS, &[&after], |row| row.u64(0))?;
    Ok((out, total))
}

/// Highest feed index of an indicator snapshot or policy summary in `log`.
pub(crate) fn last_content_feed_index(tx: &mut impl Sql, log: Log) -> Result<u64, StoreError> {
    tx.one(of(log, &LAST_CONTENT), &[], |row| row.u64(0))
}

/// Stores chunks content-addressed; a chunk already stored is a no-op.
pub(crate) fn stage_chunks(
    tx: &mut impl Sql,
    chunks: &[(Digest, Vec<u8>)],
) -> Result<(), StoreError> {
    for (sha256, bytes) in chunks {
        tx.exec(&STAGE_CHUNK, &[&&sha256.0[..], bytes])?;
    }
    Ok(())
}

/// Stores the chunks `source` gives, one at a time, like [`stage_chunks`].
pub(crate) fn stage_chunk_source(
    tx: &mut impl Sql,
    source: &mut dyn crate::ChunkSource,
) -> Result<(), StoreError> {
    while let Some((sha256, bytes)) = source.next_chunk()? {
        tx.exec(&STAGE_CHUNK, &[&&sha256.0[..], &bytes])?;
    }
    Ok(())
}

/// Whether each chunk is stored; the caller runs this in one snapshot.
pub(crate) fn has_chunks(tx: &mut impl Sql, sha256s: &[Digest]) -> Result<Vec<bool>, StoreError> {
    sha256s
        .iter()
        .map(|sha256| tx.exists(&HAS_CHUNK, &[&&sha256.0[..]]))
        .collect()
}

pub(crate) fn chunk(tx: &mut impl Sql, sha256: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
    tx.first(&CHUNK, &[&&sha256.0[..]], |row| row.blob(0))
}

/// Revision `seq` of a hub document chain (None: its latest) as `log` holds it.
pub(crate) fn hub_document(
    tx: &mut impl Sql,
    log: Log,
    chain: &str,
    seq: Option<u64>,
) -> Result<Option<HubDocument>, StoreError> {
    let document = |row: &dyn SqlRow| {
        Ok(HubDocument {
            feed_index: row.u64(0)?,
            seq: row.u64(1)?,
            digest: row.digest(2)?,
            envelope: row.blob(3)?,
            accepted_at_ms: row.i64(4)?,
        })
    };
    match seq {
        Some(seq) => match key(seq) {
            Some(seq) => tx.first(of(log, &DOCUMENT_AT), &[&chain, &seq], document),
            None => Ok(None),
        },
        None => tx.first(of(log, &DOCUMENT_LATEST), &[&chain], document),
    }
}
