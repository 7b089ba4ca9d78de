//! The indicator view shared by the hub and every node: observations with their provenance and
//! validity intervals, policy objectives, staged snapshot chunks and the hub-issued documents.
//!
//! Architecture invariant: the hub store and the node store fill these tables with the SAME
//! code (the private `indicators_sql` module), inside the same transaction that stores the statement (the hub's
//! `append`, the node's `mirror_insert`), in feed order; a chunked snapshot, and the entries
//! stored after it, in the background applier's transactions instead (`view_step`), readers
//! seeing the view up to its cursor. Given the same feed, hub and nodes therefore answer every
//! query identically at the same feed size.
//!
//! Observation identity: (publishing node, indicator, REF_AREA, TIME_PERIOD, dimensions). The
//! dimensions are kept in canonical form: `ID=VALUE` pairs sorted by id, joined by `;` (empty
//! when none). Each accepted snapshot applies its observations in position order:
//! APPEND needs no value in force for the key (a tombstone counts as none), REPLACE and DELETE
//! need one. The new version is inserted with `superseded_at_ms` NULL and the one it replaces
//! gets `superseded_at_ms` = the new version's acceptance time.

use crate::StoreError;
use rcpfed_core::Digest;
use rcpfed_core::rejection::Violation;
use rcpfed_core::statement::Observation;
// The row types live with the domain so the SDMX writers read them without the store.
pub use rcpfed_core::versions::{ObservationProvenance, ObservationRow};

/// Which observation versions to read (the store-level form of the `ObservationQuery` message).
///
/// The time fields combine by three independent rules:
/// - acceptance window: `updated_after_ms < accepted_at_ms <= as_of_ms`, each bound only when
///   set;
/// - validity: without `include_history` a version must be in force at the reference moment,
///   `as_of_ms` when set (`superseded_at_ms` NULL or > as_of), otherwise now
///   (`superseded_at_ms` NULL); with it, superseded versions are returned too, with their
///   stored `superseded_at_ms` (which may be later than `as_of_ms`);
/// - tombstones (DELETE versions) are returned when `include_history` or `updated_after_ms`
///   is set (a deletion is a change), never in a plain or `as_of_ms` view.
///
/// So: nothing set = the current values; `as_of_ms` = the values as they were then;
/// `updated_after_ms` = what changed since and is still in force (deletions included);
/// `include_history` = every version; with `as_of_ms` every version accepted by then.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservationFilter {
    /// Indicator code (required).
    pub indicator: String,
    /// Only these reference areas; empty for all.
    pub ref_areas: Vec<String>,
    /// Only periods starting on or after this date (`YYYY-MM-DD`, from the query's
    /// start_period); None for no lower bound.
    pub start_date: Option<String>,
    /// Only periods ending on or before this date (`YYYY-MM-DD`); None for no upper bound.
    pub end_date: Option<String>,
    /// Only observations having every one of these (id, value) dimension pairs; a dimension
    /// not listed is not filtered.
    pub dimensions: Vec<(String, String)>,
    /// Only these publishing nodes; empty for all.
    pub node_ids: Vec<String>,
    /// The view at this moment (unix ms): versions accepted at or before it and, unless
    /// `include_history`, not superseded by then. Tombstones only as the type doc says.
    pub as_of_ms: Option<i64>,
    /// Only versions accepted after this moment (unix ms), tombstones included; superseded
    /// ones only with `include_history`.
    pub updated_after_ms: Option<i64>,
    /// Superseded versions too (and tombstones): the history, not only what is in force.
    pub include_history: bool,
}

/// Paging position: the (feed_index, position) of the last row returned.
pub type ObservationCursor = (u64, u64);

/// A key reported with different values (OBS_VALUE × 10^UNIT_MULT, compared exactly) or in
/// different units by different nodes, among the versions in force (tombstones excluded).
#[derive(Clone, Debug, PartialEq)]
pub struct ConflictRows {
    /// The versions in force of every node that reports the key, sorted by node id.
    pub values: Vec<ObservationRow>,
}

/// What one node reports for one indicator, among the versions in force.
#[derive(Clone, Debug, PartialEq)]
pub struct CoverageData {
    /// The node.
    pub node_id: String,
    /// The indicator.
    pub indicator: String,
    /// Distinct reference areas, sorted.
    pub ref_areas: Vec<String>,
    /// Smallest TIME_PERIOD (string order).
    pub first_period: String,
    /// Largest TIME_PERIOD (string order).
    pub last_period: String,
    /// Observations in force (tombstones excluded).
    pub observation_count: u64,
}

/// The GCM objectives one node's policy summaries address (latest revision of each document).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyCoverageData {
    /// The node.
    pub node_id: String,
    /// Objectives, sorted and distinct.
    pub gcm_objectives: Vec<u32>,
    /// Number of policy documents considered.
    pub policy_documents: u64,
}

/// A REPLACE or DELETE accepted after some feed index, with the version it superseded.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionRows {
    /// The superseded version.
    pub old: ObservationRow,
    /// The new version (action REPLACE or DELETE).
    pub new: ObservationRow,
}

/// Everything a coherence report is built from, read in one snapshot of the store, so that
/// the report's feed size, conflicts, coverage and revisions describe the same state.
#[derive(Clone, Debug, PartialEq)]
pub struct CoherenceRows {
    /// Feed entries applied in this snapshot: every row below is within it.
    pub feed_size: u64,
    /// As [`IndicatorStore::conflicts`].
    pub conflicts: (Vec<ConflictRows>, u64),
    /// As [`IndicatorStore::coverage`].
    pub coverage: Vec<CoverageData>,
    /// As [`IndicatorStore::policy_coverage`].
    pub policy_coverage: Vec<PolicyCoverageData>,
    /// As [`IndicatorStore::revisions_since`].
    pub revisions: (Vec<RevisionRows>, u64),
}

/// A hub-issued document as logged: a catalogue version or a coherence report.
#[derive(Clone, Debug, PartialEq)]
pub struct HubDocument {
    /// Feed index.
    pub feed_index: u64,
    /// Version (catalogue) or number (report): the seq of its log chain.
    pub seq: u64,
    /// SHA-256 of the payload.
    pub digest: Digest,
    /// The signed envelope, verbatim.
    pub envelope: Vec<u8>,
    /// When the hub accepted (logged) it (unix ms).
    pub accepted_at_ms: i64,
}

/// Chain ids (the `node_id` column) of hub-issued documents: `{hub_id}/catalogue` and
/// `{hub_id}/coherence`. They cannot collide with member ids, which have no '/'.
pub fn catalogue_chain(hub_id: &str) -> String {
    format!("{hub_id}/catalogue")
}

/// See [`catalogue_chain`].
pub fn coherence_chain(hub_id: &str) -> String {
    format!("{hub_id}/coherence")
}

/// Statement kind (the `kind` column) of catalogue versions.
pub const CATALOGUE_KIND: &str = "catalogue";
/// Statement kind of coherence reports.
pub const COHERENCE_KIND: &str = "coherence_report";

/// The dimension key of dimensions as they are (no catalogue defaults): `ID=VALUE` pairs
/// sorted by id, joined by `;`. The view's keys fill in the catalogue's defaults first
/// ([`rcpfed_core::obskey::dimension_key`]); a stored row's dimensions already have them.
pub fn dimension_key(dimensions: &[(String, String)]) -> String {
    rcpfed_core::obskey::dimension_key(dimensions, &[]).0
}

/// The indicator view, implemented by the hub store and the node store with the same code.
pub trait IndicatorStore: Send + Sync + 'static {
    /// Checks a snapshot's actions against the versions in force for `node_id` (read only),
    /// keyed under the catalogue in force, with the action rule of
    /// [`rcpfed_core::admission::actions::check`]: APPEND of a key with a value in force →
    /// OBSERVATION_EXISTS, REPLACE/DELETE of a key without one → OBSERVATION_NOT_FOUND. At
    /// most `limit` violations are returned. A snapshot that passes applies without a
    /// Conflict if nothing of that node is stored in between.
    fn check_observation_actions(
        &self,
        node_id: &str,
        indicator: &str,
        observations: &[Observation],
        limit: usize,
    ) -> Result<Vec<Violation>, StoreError>;

    /// Observation versions matching `filter` (see [`ObservationFilter`] for how its fields
    /// combine), ordered by (feed_index, position), after `after` (exclusive), at most
    /// `limit`.
    fn query_observations(
        &self,
        filter: &ObservationFilter,
        after: Option<ObservationCursor>,
        limit: usize,
    ) -> Result<Vec<ObservationRow>, StoreError>;

    /// As [`Self::query_observations`], together with [`Self::applied_feed_size`], both read
    /// in ONE read transaction: the feed size then bounds every row returned (separate calls
    /// may see an entry stored in between).
    fn query_observations_at(
        &self,
        filter: &ObservationFilter,
        after: Option<ObservationCursor>,
        limit: usize,
    ) -> Result<(Vec<ObservationRow>, u64), StoreError>;

    /// Highest feed index whose entry has been stored and applied (0 when empty).
    fn applied_feed_size(&self) -> Result<u64, StoreError>;

    /// The feed index of the snapshot whose view is being applied a piece at a time over
    /// versions in force, if one is. Meanwhile readers see the view as it was before it, and
    /// the queries of the versions in force cannot use the index of them (they scan).
    fn view_superseding(&self) -> Result<Option<u64>, StoreError>;

    /// Conflicts among the versions in force, ordered by (indicator, ref_area, time_period,
    /// dims), at most `limit`; and the total number of conflicting keys. Values are compared
    /// as exact decimals: the shortest decimal form of OBS_VALUE with its point shifted by
    /// UNIT_MULT, so 5.9 × 10^9 equals 5900000000 × 10^0. A different UNIT_MEASURE is a
    /// conflict too.
    fn conflicts(&self, limit: usize) -> Result<(Vec<ConflictRows>, u64), StoreError>;

    /// Coverage per (node, indicator), ordered by node then indicator.
    fn coverage(&self) -> Result<Vec<CoverageData>, StoreError>;

    /// Policy coverage per node, ordered by node.
    fn policy_coverage(&self) -> Result<Vec<PolicyCoverageData>, StoreError>;

    /// REPLACE and DELETE versions accepted in feed entries after `after_feed_index`, ordered
    /// by (feed_index, position), at most `limit`; and their total number.
    fn revisions_since(
        &self,
        after_feed_index: u64,
        limit: usize,
    ) -> Result<(Vec<RevisionRows>, u64), StoreError>;

    /// The feed size, conflicts (at most `limit`), coverage, policy coverage and revisions
    /// after `revisions_after` (at most `limit`), all read in ONE read transaction: separate
    /// calls may each see a different feed size while entries are being stored.
    fn coherence_rows(
        &self,
        revisions_after: u64,
        limit: usize,
    ) -> Result<CoherenceRows, StoreError>;

    /// Highest feed index of an indicator snapshot or policy summary statement (0 if none):
    /// the coherence report is regenerated when this moves.
    fn last_content_feed_index(&self) -> Result<u64, StoreError>;

    /// Stores chunk bytes under their SHA-256 (content-addressed; storing the same chunk twice
    /// is a no-op, the first bytes stay). The caller has checked the hash; the apply step
    /// checks every chunk against the signed manifest again. At the hub, storing a snapshot
    /// statement whose chunks are not all stored is a Conflict; applying one whose chunks are
    /// missing or do not match is a Conflict anywhere. Chunks are kept afterwards: mirrors
    /// fetch them from the hub.
    ///
    /// Only a node stages chunks apart from their statement: its view applier, one at a time
    /// as it fetches them for a snapshot the mirror stored (accepted by the hub already). The
    /// hub's `append` and the node's `append_own` take a new statement's chunks and store them
    /// in the statement's own transaction, so a refused statement leaves no chunk behind.
    fn stage_chunks(&self, chunks: &[(Digest, Vec<u8>)]) -> Result<(), StoreError>;

    /// Whether each chunk is stored, in the order of `sha256s` (an existence probe per chunk,
    /// in one read transaction; the bytes are not read).
    fn has_chunks(&self, sha256s: &[Digest]) -> Result<Vec<bool>, StoreError>;

    /// The bytes of a staged chunk.
    fn chunk(&self, sha256: &Digest) -> Result<Option<Vec<u8>>, StoreError>;

    /// The hub document of chain `chain` (see [`catalogue_chain`]) with this seq, or the
    /// latest when `seq` is None.
    fn hub_document(
        &self,
        chain: &str,
        seq: Option<u64>,
    ) -> Result<Option<HubDocument>, StoreError>;
}
