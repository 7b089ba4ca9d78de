//! The hub's coherence reports as signed documents: their payload type and the one check a
//! reader makes of a report envelope before believing it.

use crate::envelope::SignedEnvelope;
use crate::hub_document::{HubDocument, HubDocumentError, verify_hub_document};
use crate::members::Federation;
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

/// A report that verified, and the id of the hub key that signed it.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedReport {
    /// The report, decoded from the signed bytes.
    pub report: pb::CoherenceReport,
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
    Ok(VerifiedReport {
        report: verified.document,
        key_id: verified.key.key_id.clone(),
    })
}
