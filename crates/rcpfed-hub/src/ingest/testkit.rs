//! Builders shared by the crate's unit tests: real signed statements, so the store's apply
//! step (which decodes the envelope) sees what a node would send.

use crate::ingest::{SnapshotObservations, SnapshotPayload, VerifiedStatement};
use prost::Message as _;
use rcpfed_core::Digest;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::statement::{
    Body, DocumentKind, Header, IndicatorSnapshot, Observation, ObservationAction, Statement,
};
use rcpfed_store::DecodedStatement;
use std::sync::Arc;

/// Federation id of the test statements.
pub const FEDERATION: &str = "fed-test";

/// An observation of 2020 in persons.
pub fn obs(action: ObservationAction, area: &str, value: Option<f64>) -> Observation {
    Observation {
        action,
        ref_area: area.into(),
        time_period: "2020".into(),
        dimensions: Vec::new(),
        obs_value: value,
        obs_status: "A".into(),
        unit_measure: "persons".into(),
        unit_mult: 0,
        conf_status: String::new(),
        footnote: String::new(),
        source: String::new(),
    }
}

/// A signed snapshot statement of `node` at (seq, prev), as the hub verified it.
pub fn snapshot(
    key: &SecretKey,
    node: &str,
    seq: u64,
    prev: Option<Digest>,
    indicator: &str,
    observations: Vec<Observation>,
) -> VerifiedStatement {
    snapshot_cut(key, node, seq, prev, indicator, observations, None)
}

/// [`snapshot`], signed as a chunk manifest when `per_chunk` is set (the verified statement
/// then carries the chunks, as `SubmitSnapshot` hands them to the sequencer).
pub fn snapshot_cut(
    key: &SecretKey,
    node: &str,
    seq: u64,
    prev: Option<Digest>,
    indicator: &str,
    observations: Vec<Observation>,
    per_chunk: Option<usize>,
) -> VerifiedStatement {
    snapshot_checked(
        key,
        node,
        seq,
        prev,
        indicator,
        observations,
        per_chunk,
        None,
    )
}

/// [`snapshot_cut`] with the action check a `SubmitSnapshot` made while the chunks arrived.
#[allow(clippy::too_many_arguments)]
pub fn snapshot_checked(
    key: &SecretKey,
    node: &str,
    seq: u64,
    prev: Option<Digest>,
    indicator: &str,
    observations: Vec<Observation>,
    per_chunk: Option<usize>,
    actions: Option<crate::staged::ActionsChecked>,
) -> VerifiedStatement {
    let (manifest, staged) = match per_chunk {
        Some(per_chunk) => {
            let (manifest, bytes) = rcpfed_core::chunks::encode_chunks(&observations, per_chunk);
            let staged = crate::staged::stage_for_test(manifest.clone(), &bytes, actions)
                .expect("staging the test chunks");
            (Some(manifest), Some(Arc::new(staged)))
        }
        None => (None, None),
    };
    let inline = if manifest.is_some() {
        Vec::new()
    } else {
        observations
    };
    let document = format!("regions/{node}/{}", indicator.to_lowercase());
    let revision = u32::try_from(seq).unwrap_or(u32::MAX);
    let statement = Statement {
        header: Header {
            federation_id: FEDERATION.into(),
            node_id: node.into(),
            seq,
            prev_digest: prev,
            issued_at: time::OffsetDateTime::now_utc(),
            kind: DocumentKind::IndicatorSnapshot,
            schema_version: 1,
            document: document.clone(),
            revision,
        },
        body: Body::Indicators(IndicatorSnapshot {
            indicator: indicator.into(),
            observations: inline,
            chunks: manifest,
        }),
    };
    let envelope = SignedEnvelope::sign(
        STATEMENT_PAYLOAD_TYPE,
        statement.to_proto().encode_to_vec(),
        key,
    );
    // As the hub's services hand them: an inline snapshot with its decoded statement, a
    // chunked one with its staged chunks.
    let statement = Arc::new(statement);
    let (observations, decoded) = match staged {
        Some(staged) => (
            SnapshotObservations::Staged(staged),
            DecodedStatement::default(),
        ),
        None => (
            SnapshotObservations::Inline(Arc::clone(&statement)),
            DecodedStatement::of(statement),
        ),
    };
    VerifiedStatement {
        node_id: node.into(),
        seq,
        prev_digest: prev,
        digest: envelope.digest(),
        payload_type: STATEMENT_PAYLOAD_TYPE.into(),
        kind: "indicator_snapshot",
        document,
        revision,
        envelope: envelope.encode(),
        leaf_hash: envelope.leaf_hash(),
        snapshot: Some(Arc::new(SnapshotPayload {
            indicator: indicator.into(),
            observations,
        })),
        decoded,
    }
}
