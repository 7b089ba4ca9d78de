//! [`IndicatorStore`] on PostgreSQL: the hub store's indicator queries, each in one read
//! transaction, over the functions of the indicator view module.

use super::hub::PgHubStore;
use super::indicators::{check_observation_actions, query_observations};
use crate::StoreError;
use crate::indicator_queries as shared;
use crate::indicators::{
    CoherenceRows, ConflictRows, CoverageData, HubDocument, IndicatorStore, ObservationCursor,
    ObservationFilter, ObservationRow, PolicyCoverageData, RevisionRows,
};
use crate::view_rows::Log;
use rcpfed_core::Digest;
use rcpfed_core::rejection::Violation;
use rcpfed_core::statement::Observation;

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
            Ok((rows, shared::applied_feed_size(tx)?))
        })
    }

    fn applied_feed_size(&self) -> Result<u64, StoreError> {
        self.db.read(|tx| shared::applied_feed_size(tx))
    }

    fn view_superseding(&self) -> Result<Option<u64>, StoreError> {
        self.db.read(|tx| crate::view_step::superseding(tx))
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
                feed_size: shared::applied_feed_size(tx)?,
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
