//! Observation versions as the indicator view holds them: the observation as signed, where it
//! comes from, and when a later version superseded it. The store fills them; the indicator
//! service, the coherence report and the SDMX writers read them.

use crate::Digest;
use crate::statement::Observation;

/// Where an observation version comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservationProvenance {
    /// The publishing node.
    pub node_id: String,
    /// SHA-256 of the statement payload.
    pub digest: Digest,
    /// The statement's document.
    pub document: String,
    /// The document revision.
    pub revision: u32,
    /// The statement's feed index (its log leaf index is feed_index - 1).
    pub feed_index: u64,
    /// Position of the observation in the snapshot (0-based, across chunks).
    pub position: u64,
    /// When the hub accepted the statement (unix ms).
    pub accepted_at_ms: i64,
}

/// One stored observation version.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservationRow {
    /// The indicator.
    pub indicator: String,
    /// The observation as signed (dimensions sorted by id).
    pub observation: Observation,
    /// Its source.
    pub provenance: ObservationProvenance,
    /// When a later version superseded it (unix ms); None while in force.
    pub superseded_at_ms: Option<i64>,
}
