//! The hub's coherence reports as signed documents: the report in domain types, the payload
//! the hub signs for it ([`sign_report`]) and the one check a reader makes of a report
//! envelope before believing it ([`verify_report`]). The protobuf form
//! (`rcpfed.v1.CoherenceReport`) appears only here, where the signed bytes are made and read.

use crate::Digest;
use crate::envelope::SignedEnvelope;
use crate::hub_document::{HubDocument, HubDocumentError, verify_hub_document};
use crate::keys::SecretKey;
use crate::members::Federation;
use crate::statement::Observation;
use crate::versions::ObservationProvenance;
use prost::Message as _;
use rcpfed_proto::v1 as pb;

/// Payload type of a coherence report signed by the hub.
pub const COHERENCE_REPORT_PAYLOAD_TYPE: &str =
    "application/vnd.rcpfed.coherence-report.v1+protobuf";

impl HubDocument for pb::CoherenceReport {
    const PAYLOAD_TYPE: &'static str = COHERENCE_REPORT_PAYLOAD_TYPE;
    const MESSAGE_NAME: &'static str = "rcpfed.v1.CoherenceReport";
    fn federation_id(&self) -> &str {
        &self.federation_id
    }
}

/// One coherence report: conflicts between the nodes' figures, coverage and its gaps, policy
/// coverage of the GCM objectives, and revisions since the previous report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoherenceReport {
    /// The federation.
    pub federation_id: String,
    /// Report number: 1 for the first, then one more each time.
    pub number: u64,
    /// When the hub generated it (unix ms).
    pub generated_at_ms: i64,
    /// The report covers feed entries 1 to `feed_size`.
    pub feed_size: u64,
    /// The previous report's `feed_size` (0 for the first).
    pub previous_feed_size: u64,
    /// SHA-256 of the previous report's payload bytes; None for the first.
    pub previous_digest: Option<Digest>,
    /// Feed version of the catalogue in force.
    pub catalogue_version: u64,
    /// Keys reported with different values by different nodes, in key order.
    pub conflicts: Vec<Conflict>,
    /// Number of conflicts found (may exceed the number listed).
    pub total_conflicts: u64,
    /// Which node reports which indicator for which areas and years.
    pub coverage: Vec<CoverageRow>,
    /// Nodes × GCM objectives, from policy summaries.
    pub policy_coverage: Vec<PolicyCoverage>,
    /// GCM objectives that no node's policy summary addresses.
    pub unaddressed_gcm_objectives: Vec<u32>,
    /// Observations revised or deleted after `previous_feed_size`.
    pub revisions: Vec<RevisionEntry>,
    /// Number of revisions found (may exceed the number listed).
    pub total_revisions: u64,
}

/// The key of an observation, without the publishing node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservationKey {
    /// The indicator.
    pub indicator: String,
    /// Reference area.
    pub ref_area: String,
    /// Time period.
    pub time_period: String,
    /// Disaggregation dimensions (id, value), sorted by id.
    pub dimensions: Vec<(String, String)>,
}

/// One node's value for a key, with its signed source.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportedValue {
    /// The observation in force, as the view holds it.
    pub observation: Observation,
    /// Its source statement.
    pub provenance: ObservationProvenance,
}

/// The same key reported with different values by different nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The key.
    pub key: ObservationKey,
    /// Each node's value, sorted by node id.
    pub values: Vec<ReportedValue>,
    /// (largest − smallest) / largest absolute value, of OBS_VALUE × 10^UNIT_MULT.
    pub relative_difference: f64,
}

/// What one node reports for one indicator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoverageRow {
    /// The node.
    pub node_id: String,
    /// The indicator.
    pub indicator: String,
    /// Reference areas with at least one observation in force, sorted.
    pub ref_areas: Vec<String>,
    /// Member states of the node without any observation in force: the gaps.
    pub missing_member_states: Vec<String>,
    /// Earliest time period reported.
    pub first_period: String,
    /// Latest time period reported.
    pub last_period: String,
    /// Number of observations in force.
    pub observation_count: u64,
}

/// Which GCM objectives one node's policy summaries address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyCoverage {
    /// The node.
    pub node_id: String,
    /// Objectives addressed (1 to 23), sorted.
    pub gcm_objectives: Vec<u32>,
    /// Number of policy documents (latest revisions) considered.
    pub policy_documents: u64,
}

/// A figure revised or deleted since the previous report.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionEntry {
    /// The node that revised it.
    pub node_id: String,
    /// The key.
    pub key: ObservationKey,
    /// The version it superseded.
    pub old_value: ReportedValue,
    /// The new version (REPLACE or DELETE).
    pub new_value: ReportedValue,
}

fn timestamp_from_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        // 0..1e9, so it fits.
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn ms_from_timestamp(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

impl ObservationKey {
    /// The wire form.
    pub fn to_proto(&self) -> pb::ObservationKey {
        pb::ObservationKey {
            indicator: self.indicator.clone(),
            ref_area: self.ref_area.clone(),
            time_period: self.time_period.clone(),
            dimensions: crate::statement::dimensions_to_proto(&self.dimensions),
        }
    }

    fn from_proto(k: Option<pb::ObservationKey>, what: &str) -> Result<Self, String> {
        let k = k.ok_or_else(|| format!("{what} has no key"))?;
        Ok(ObservationKey {
            indicator: k.indicator,
            ref_area: k.ref_area,
            time_period: k.time_period,
            dimensions: k.dimensions.into_iter().map(|d| (d.id, d.value)).collect(),
        })
    }
}

impl ObservationProvenance {
    /// The wire form (`leaf_index` is `feed_index - 1`).
    pub fn to_proto(&self) -> pb::Provenance {
        pb::Provenance {
            node_id: self.node_id.clone(),
            statement_digest: self.digest.as_bytes().to_vec(),
            document: self.document.clone(),
            revision: self.revision,
            feed_index: self.feed_index,
            leaf_index: self.feed_index.saturating_sub(1),
            position: self.position,
            accepted_at: Some(timestamp_from_ms(self.accepted_at_ms)),
        }
    }

    fn from_proto(p: pb::Provenance, what: &str) -> Result<Self, String> {
        let digest = Digest::from_slice(&p.statement_digest)
            .ok_or_else(|| format!("{what}'s statement_digest is not 32 bytes"))?;
        Ok(ObservationProvenance {
            node_id: p.node_id,
            digest,
            document: p.document,
            revision: p.revision,
            feed_index: p.feed_index,
            position: p.position,
            accepted_at_ms: p.accepted_at.as_ref().map_or(0, ms_from_timestamp),
        })
    }
}

impl ReportedValue {
    fn to_proto(&self) -> pb::ReportedValue {
        pb::ReportedValue {
            observation: Some(self.observation.to_proto()),
            provenance: Some(self.provenance.to_proto()),
        }
    }

    fn from_proto(v: Option<pb::ReportedValue>, what: &str) -> Result<Self, String> {
        let v = v.ok_or_else(|| format!("{what} is missing"))?;
        let observation = v
            .observation
            .ok_or_else(|| format!("{what} has no observation"))?;
        let observation = Observation::from_proto(0, observation).map_err(|e| {
            // The statement rules name the field as in a snapshot; here it is the report's.
            let detail = e
                .message
                .strip_prefix("indicator_snapshot.observations[0].")
                .unwrap_or(&e.message);
            format!("{what}'s observation {detail}")
        })?;
        let provenance = v
            .provenance
            .ok_or_else(|| format!("{what} has no provenance"))?;
        Ok(ReportedValue {
            observation,
            provenance: ObservationProvenance::from_proto(provenance, what)?,
        })
    }
}

impl CoherenceReport {
    /// The wire form, as signed and as the IndicatorService answers it.
    pub fn to_proto(&self) -> pb::CoherenceReport {
        pb::CoherenceReport {
            federation_id: self.federation_id.clone(),
            number: self.number,
            generated_at: Some(timestamp_from_ms(self.generated_at_ms)),
            feed_size: self.feed_size,
            previous_feed_size: self.previous_feed_size,
            previous_digest: self
                .previous_digest
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
            catalogue_version: self.catalogue_version,
            conflicts: self
                .conflicts
                .iter()
                .map(|c| pb::Conflict {
                    key: Some(c.key.to_proto()),
                    values: c.values.iter().map(ReportedValue::to_proto).collect(),
                    relative_difference: c.relative_difference,
                })
                .collect(),
            total_conflicts: self.total_conflicts,
            coverage: self.coverage.iter().map(CoverageRow::to_proto).collect(),
            policy_coverage: self
                .policy_coverage
                .iter()
                .map(|p| pb::PolicyCoverage {
                    node_id: p.node_id.clone(),
                    gcm_objectives: p.gcm_objectives.clone(),
                    policy_documents: p.policy_documents,
                })
                .collect(),
            unaddressed_gcm_objectives: self.unaddressed_gcm_objectives.clone(),
            revisions: self
                .revisions
                .iter()
                .map(|r| pb::RevisionEntry {
                    node_id: r.node_id.clone(),
                    key: Some(r.key.to_proto()),
                    old_value: Some(r.old_value.to_proto()),
                    new_value: Some(r.new_value.to_proto()),
                })
                .collect(),
            total_revisions: self.total_revisions,
        }
    }

    /// From the wire form: every key, value, observation and provenance present, digests of
    /// 32 bytes and observation actions known; the error names the first that is not.
    pub fn from_proto(r: pb::CoherenceReport) -> Result<Self, String> {
        let previous_digest = match r.previous_digest.as_slice() {
            [] => None,
            bytes => Some(
                Digest::from_slice(bytes)
                    .ok_or_else(|| "previous_digest is not 32 bytes".to_string())?,
            ),
        };
        let conflicts = r
            .conflicts
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let what = format!("conflicts[{i}]");
                Ok(Conflict {
                    key: ObservationKey::from_proto(c.key, &what)?,
                    values: c
                        .values
                        .into_iter()
                        .enumerate()
                        .map(|(j, v)| {
                            ReportedValue::from_proto(Some(v), &format!("{what}.values[{j}]"))
                        })
                        .collect::<Result<_, String>>()?,
                    relative_difference: c.relative_difference,
                })
            })
            .collect::<Result<_, String>>()?;
        let revisions = r
            .revisions
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let what = format!("revisions[{i}]");
                Ok(RevisionEntry {
                    node_id: e.node_id,
                    key: ObservationKey::from_proto(e.key, &what)?,
                    old_value: ReportedValue::from_proto(
                        e.old_value,
                        &format!("{what}.old_value"),
                    )?,
                    new_value: ReportedValue::from_proto(
                        e.new_value,
                        &format!("{what}.new_value"),
                    )?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(CoherenceReport {
            federation_id: r.federation_id,
            number: r.number,
            generated_at_ms: r.generated_at.as_ref().map_or(0, ms_from_timestamp),
            feed_size: r.feed_size,
            previous_feed_size: r.previous_feed_size,
            previous_digest,
            catalogue_version: r.catalogue_version,
            conflicts,
            total_conflicts: r.total_conflicts,
            coverage: r
                .coverage
                .into_iter()
                .map(CoverageRow::from_proto)
                .collect(),
            policy_coverage: r
                .policy_coverage
                .into_iter()
                .map(|p| PolicyCoverage {
                    node_id: p.node_id,
                    gcm_objectives: p.gcm_objectives,
                    policy_documents: p.policy_documents,
                })
                .collect(),
            unaddressed_gcm_objectives: r.unaddressed_gcm_objectives,
            revisions,
            total_revisions: r.total_revisions,
        })
    }

    /// The payload the hub signs: the exact protobuf encoding of [`CoherenceReport::to_proto`].
    pub fn encode_payload(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The report a payload carries (a logged report the hub reads back, say); the error says
    /// why it is not one.
    pub fn decode_payload(payload: &[u8]) -> Result<Self, String> {
        let report = pb::CoherenceReport::decode(payload)
            .map_err(|e| format!("the payload is not a valid rcpfed.v1.CoherenceReport: {e}"))?;
        CoherenceReport::from_proto(report)
    }
}

impl CoverageRow {
    fn to_proto(&self) -> pb::CoverageRow {
        pb::CoverageRow {
            node_id: self.node_id.clone(),
            indicator: self.indicator.clone(),
            ref_areas: self.ref_areas.clone(),
            missing_member_states: self.missing_member_states.clone(),
            first_period: self.first_period.clone(),
            last_period: self.last_period.clone(),
            observation_count: self.observation_count,
        }
    }

    fn from_proto(c: pb::CoverageRow) -> Self {
        CoverageRow {
            node_id: c.node_id,
            indicator: c.indicator,
            ref_areas: c.ref_areas,
            missing_member_states: c.missing_member_states,
            first_period: c.first_period,
            last_period: c.last_period,
            observation_count: c.observation_count,
        }
    }
}

/// The envelope the hub logs for `report`: its payload signed with `key` (the hub member's
/// statement signing key) under [`COHERENCE_REPORT_PAYLOAD_TYPE`].
pub fn sign_report(report: &CoherenceReport, key: &SecretKey) -> SignedEnvelope {
    SignedEnvelope::sign(COHERENCE_REPORT_PAYLOAD_TYPE, report.encode_payload(), key)
}

/// A report that verified, and the id of the hub key that signed it.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedReport {
    /// The report, decoded from the signed bytes.
    pub report: CoherenceReport,
    /// The hub key that verified the signature.
    pub key_id: String,
}

/// Checks a coherence report envelope: its payload type, a signature by a key of the hub
/// member of `federation`, that it decodes, and that it is for this federation. The error
/// says which, in plain words.
pub fn verify_report(
    envelope: &SignedEnvelope,
    federation: &Federation,
) -> Result<VerifiedReport, String> {
    let hub = federation
        .hub()
        .ok_or_else(|| format!("the registry names no hub member {}", federation.hub_id))?;
    let verified = verify_hub_document::<pb::CoherenceReport>(
        envelope,
        &hub.keys,
        &federation.federation_id,
    )
    .map_err(|e| match e {
        HubDocumentError::PayloadType { found, expected } => {
            format!(
                "the envelope has payload type {found:?}, not a coherence report ({expected:?})"
            )
        }
        HubDocumentError::Signature(e) => format!(
            "the coherence report is not signed by the hub {}: {} [{}]",
            hub.id, e.message, e.reason
        ),
        other => format!("the coherence report does not verify: {other}"),
    })?;
    let report = CoherenceReport::from_proto(verified.document).map_err(|e| {
        format!(
            "the coherence report does not verify: the signed payload is not a valid report: {e}"
        )
    })?;
    Ok(VerifiedReport {
        report,
        key_id: verified.key.key_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::ObservationAction;

    fn value(node: &str, feed_index: u64, obs_value: f64) -> ReportedValue {
        ReportedValue {
            observation: Observation {
                action: ObservationAction::Append,
                ref_area: "WLD".into(),
                time_period: "2020".into(),
                dimensions: vec![("SEX".into(), "_T".into())],
                obs_value: Some(obs_value),
                obs_status: "A".into(),
                unit_measure: "persons".into(),
                unit_mult: 6,
                conf_status: String::new(),
                footnote: String::new(),
                source: "UN DESA".into(),
            },
            provenance: ObservationProvenance {
                node_id: node.into(),
                digest: Digest::of(node.as_bytes()),
                document: "figures".into(),
                revision: 1,
                feed_index,
                position: 0,
                accepted_at_ms: 1_714_564_800_123,
            },
        }
    }

    fn report() -> CoherenceReport {
        let key = ObservationKey {
            indicator: "MIG_STOCK".into(),
            ref_area: "WLD".into(),
            time_period: "2020".into(),
            dimensions: vec![("SEX".into(), "_T".into())],
        };
        CoherenceReport {
            federation_id: "fed".into(),
            number: 2,
            generated_at_ms: 1_700_000_000_500,
            feed_size: 9,
            previous_feed_size: 4,
            previous_digest: Some(Digest::of(b"report 1")),
            catalogue_version: 1,
            conflicts: vec![Conflict {
                key: key.clone(),
                values: vec![value("abu-dhabi", 5, 281.0), value("colombo", 6, 275.0)],
                relative_difference: 6.0 / 281.0,
            }],
            total_conflicts: 1,
            coverage: vec![CoverageRow {
                node_id: "colombo".into(),
                indicator: "MIG_STOCK".into(),
                ref_areas: vec!["WLD".into()],
                missing_member_states: vec!["LKA".into()],
                first_period: "2020".into(),
                last_period: "2020".into(),
                observation_count: 1,
            }],
            policy_coverage: vec![PolicyCoverage {
                node_id: "colombo".into(),
                gcm_objectives: vec![1, 23],
                policy_documents: 1,
            }],
            unaddressed_gcm_objectives: (2..=22).collect(),
            revisions: vec![RevisionEntry {
                node_id: "colombo".into(),
                key,
                old_value: value("colombo", 3, 270.0),
                new_value: value("colombo", 6, 275.0),
            }],
            total_revisions: 1,
        }
    }

    #[test]
    fn the_payload_carries_the_whole_report() {
        let r = report();
        assert_eq!(
            CoherenceReport::decode_payload(&r.encode_payload()),
            Ok(r.clone())
        );
        let wire = r.to_proto();
        let provenance = wire.conflicts[0].values[1]
            .provenance
            .clone()
            .unwrap_or_default();
        assert_eq!(provenance.leaf_index, 5, "the leaf before feed index 6");
        let first = CoherenceReport {
            previous_digest: None,
            ..r
        };
        assert!(first.to_proto().previous_digest.is_empty());
    }

    #[test]
    fn a_report_missing_parts_is_refused_in_words() {
        let mut wire = report().to_proto();
        wire.previous_digest = vec![1; 5];
        assert_eq!(
            CoherenceReport::from_proto(wire.clone()).err().as_deref(),
            Some("previous_digest is not 32 bytes")
        );
        wire.previous_digest.clear();
        wire.revisions[0].old_value = None;
        assert_eq!(
            CoherenceReport::from_proto(wire.clone()).err().as_deref(),
            Some("revisions[0].old_value is missing")
        );
        wire.revisions.clear();
        wire.conflicts[0].key = None;
        assert_eq!(
            CoherenceReport::from_proto(wire).err().as_deref(),
            Some("conflicts[0] has no key")
        );
        let e = CoherenceReport::decode_payload(&[0xff, 0xff]).err();
        assert!(
            e.as_deref().is_some_and(
                |e| e.starts_with("the payload is not a valid rcpfed.v1.CoherenceReport")
            ),
            "{e:?}"
        );
    }
}
