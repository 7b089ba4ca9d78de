//! The hub's coherence reports as signed documents: their payload type and the one check a
//! reader makes of a report envelope before believing it.

use crate::envelope::{SignedEnvelope, verify_signatures};
use crate::members::Federation;
use prost::Message as _;
use rcpfed_proto::v1 as pb;

/// Payload type of a coherence report signed by the hub.
pub const COHERENCE_REPORT_PAYLOAD_TYPE: &str =
    "application/vnd.rcpfed.coherence-report.v1+protobuf";

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
    if envelope.payload_type != COHERENCE_REPORT_PAYLOAD_TYPE {
        return Err(format!(
            "the envelope has payload type {:?}, not a coherence report ({COHERENCE_REPORT_PAYLOAD_TYPE:?})",
            envelope.payload_type
        ));
    }
    let hub = federation
        .hub()
        .ok_or_else(|| format!("the registry names no hub member {}", federation.hub_id))?;
    let key = verify_signatures(envelope, |id| hub.key(id)).map_err(|e| {
        format!(
            "the coherence report is not signed by the hub {}: {} [{}]",
            hub.id, e.message, e.reason
        )
    })?;
    let report = pb::CoherenceReport::decode(envelope.payload.as_slice())
        .map_err(|e| format!("the signed report is not a valid rcpfed.v1.CoherenceReport: {e}"))?;
    if report.federation_id != federation.federation_id {
        return Err(format!(
            "coherence report {} is for federation {:?}, not {:?}",
            report.number, report.federation_id, federation.federation_id
        ));
    }
    Ok(VerifiedReport {
        report,
        key_id: key.key_id.clone(),
    })
}
