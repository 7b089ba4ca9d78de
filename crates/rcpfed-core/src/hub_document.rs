//! Documents the hub signs itself (receipts, catalogue versions, coherence reports) and the one
//! check of such an envelope that comes before its own rules: the payload type, a signature by
//! a key of the hub member, the decoding, and the federation it is for.

use crate::envelope::{SignedEnvelope, verify_signatures};
use crate::keys::VerifyKey;
use crate::rejection::Rejection;
use std::fmt;

/// A message the hub signs as a document of its own; each kind implements it where it is
/// defined.
pub trait HubDocument: prost::Message + Default {
    /// The payload type it is signed under (the PAE binds it, so no document passes for
    /// another kind).
    const PAYLOAD_TYPE: &'static str;
    /// Its protobuf name, for error messages.
    const MESSAGE_NAME: &'static str;
    /// The federation the document says it is for.
    fn federation_id(&self) -> &str;
}

/// A hub document that passed [`verify_hub_document`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedHubDocument<'k, D> {
    /// The document, decoded from the signed bytes.
    pub document: D,
    /// The hub key whose signature verified.
    pub key: &'k VerifyKey,
}

/// Why an envelope is not a document of the hub for this federation; the typed verifiers turn
/// it into their own errors.
#[derive(Clone, Debug, PartialEq)]
pub enum HubDocumentError {
    /// The envelope carries another payload type.
    PayloadType {
        /// The payload type found.
        found: String,
        /// The document's payload type.
        expected: &'static str,
    },
    /// No signature verifies with a key of the hub member (MISSING_SIGNATURE, UNKNOWN_KEY_ID
    /// or BAD_SIGNATURE).
    Signature(Rejection),
    /// The signed bytes are not the document's message.
    Undecodable {
        /// The message expected.
        message: &'static str,
        /// What the decoder said.
        error: prost::DecodeError,
    },
    /// The document is for another federation.
    OtherFederation {
        /// The federation the document names.
        found: String,
        /// The verifier's federation.
        expected: String,
    },
}

impl fmt::Display for HubDocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubDocumentError::PayloadType { found, expected } => {
                write!(f, "the payload type {found:?} is not {expected:?}")
            }
            HubDocumentError::Signature(e) => {
                write!(f, "not signed by the hub: {} [{}]", e.message, e.reason)
            }
            HubDocumentError::Undecodable { message, error } => {
                write!(f, "the signed payload is not a valid {message}: {error}")
            }
            HubDocumentError::OtherFederation { found, expected } => {
                write!(f, "it is for federation {found:?}, not {expected:?}")
            }
        }
    }
}

/// Verifies `envelope` as a document of kind `D` that the hub of `federation_id` signed, in this
/// order: the payload type is `D`'s; a signature verifies with one of `hub_keys` (the keys of
/// the hub member in the registry in force), over the raw bytes; the payload decodes as `D`;
/// its `federation_id` is `federation_id`. The one check every hub document passes before the
/// rules of its kind.
pub fn verify_hub_document<'k, D: HubDocument>(
    envelope: &SignedEnvelope,
    hub_keys: &'k [VerifyKey],
    federation_id: &str,
) -> Result<VerifiedHubDocument<'k, D>, HubDocumentError> {
    if envelope.payload_type != D::PAYLOAD_TYPE {
        return Err(HubDocumentError::PayloadType {
            found: envelope.payload_type.clone(),
            expected: D::PAYLOAD_TYPE,
        });
    }
    let key = verify_signatures(envelope, |id| hub_keys.iter().find(|k| k.key_id == id))
        .map_err(HubDocumentError::Signature)?;
    let document =
        D::decode(envelope.payload.as_slice()).map_err(|error| HubDocumentError::Undecodable {
            message: D::MESSAGE_NAME,
            error,
        })?;
    if document.federation_id() != federation_id {
        return Err(HubDocumentError::OtherFederation {
            found: document.federation_id().to_string(),
            expected: federation_id.to_string(),
        });
    }
    Ok(VerifiedHubDocument { document, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::RECEIPT_PAYLOAD_TYPE;
    use crate::keys::SecretKey;
    use crate::rejection::reasons;
    use prost::Message as _;
    use rcpfed_proto::v1 as pb;

    const FED: &str = "rcp-federation";

    fn report(federation_id: &str) -> pb::CoherenceReport {
        pb::CoherenceReport {
            federation_id: federation_id.into(),
            number: 3,
            ..Default::default()
        }
    }

    fn signed(payload_type: &str, payload: Vec<u8>, key: &SecretKey) -> SignedEnvelope {
        SignedEnvelope::sign(payload_type, payload, key)
    }

    #[test]
    fn each_step_refuses_in_order() {
        let hub = SecretKey::from_seed(&[9; 32]);
        let keys = [hub.verify_key().clone()];
        let check = |env: &SignedEnvelope| {
            verify_hub_document::<pb::CoherenceReport>(env, &keys, FED).map(|v| v.document)
        };
        let good = signed(
            pb::CoherenceReport::PAYLOAD_TYPE,
            report(FED).encode_to_vec(),
            &hub,
        );
        assert_eq!(check(&good), Ok(report(FED)));
        let verified = verify_hub_document::<pb::CoherenceReport>(&good, &keys, FED);
        assert_eq!(
            verified.as_ref().map(|v| v.key.key_id.as_str()),
            Ok(hub.key_id())
        );

        // A receipt's bytes under the receipt type are not a report, though the hub signed them.
        let receipt = signed(RECEIPT_PAYLOAD_TYPE, report(FED).encode_to_vec(), &hub);
        assert!(matches!(
            check(&receipt),
            Err(HubDocumentError::PayloadType { expected, .. })
                if expected == pb::CoherenceReport::PAYLOAD_TYPE
        ));

        let stranger = SecretKey::from_seed(&[8; 32]);
        let by_stranger = signed(
            pb::CoherenceReport::PAYLOAD_TYPE,
            report(FED).encode_to_vec(),
            &stranger,
        );
        assert!(matches!(
            check(&by_stranger),
            Err(HubDocumentError::Signature(e)) if e.reason == reasons::UNKNOWN_KEY_ID
        ));

        let mut tampered = good.clone();
        tampered.payload = report("other").encode_to_vec();
        assert!(matches!(
            check(&tampered),
            Err(HubDocumentError::Signature(e)) if e.reason == reasons::BAD_SIGNATURE
        ));

        let junk = signed(pb::CoherenceReport::PAYLOAD_TYPE, vec![0x2a, 0x01], &hub);
        assert!(matches!(
            check(&junk),
            Err(HubDocumentError::Undecodable {
                message: "rcpfed.v1.CoherenceReport",
                ..
            })
        ));

        let elsewhere = signed(
            pb::CoherenceReport::PAYLOAD_TYPE,
            report("other").encode_to_vec(),
            &hub,
        );
        let e = check(&elsewhere).err();
        assert_eq!(
            e.as_ref().map(ToString::to_string).as_deref(),
            Some("it is for federation \"other\", not \"rcp-federation\"")
        );
    }
}
