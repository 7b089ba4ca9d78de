//! The DSSE JSON form of an envelope, the one writer and reader of it: registry version files
//! and statement bundles both carry envelopes this way.
//!
//! Written with DSSE's member names, `payloadType` and `keyid`. Bundles written before the
//! two forms were joined spelled them `payload_type` and `key_id`; those names are still read,
//! so old bundles verify (one object may not use both spellings of a member: serde refuses the
//! duplicate).

use crate::envelope::{EnvelopeSignature, SignedEnvelope};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An envelope as DSSE JSON: standard base64 with padding for the binary values; unknown
/// members are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DsseEnvelopeJson {
    /// The payload type.
    #[serde(rename = "payloadType", alias = "payload_type")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// The signatures, in envelope order.
    pub signatures: Vec<DsseSignatureJson>,
}

/// One signature of a [`DsseEnvelopeJson`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DsseSignatureJson {
    /// The key id.
    #[serde(rename = "keyid", alias = "key_id")]
    pub keyid: String,
    /// The 64-byte signature, base64.
    pub sig: String,
}

/// A DSSE JSON value that is not an envelope: which member, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsseJsonError(pub String);

impl fmt::Display for DsseJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DsseJsonError {}

pub(crate) fn decode_b64(text: &str, what: &str) -> Result<Vec<u8>, DsseJsonError> {
    B64.decode(text)
        .map_err(|_| DsseJsonError(format!("{what} is not standard base64 with padding")))
}

impl DsseEnvelopeJson {
    /// The JSON form of `env`.
    pub fn from_envelope(env: &SignedEnvelope) -> Self {
        DsseEnvelopeJson {
            payload_type: env.payload_type.clone(),
            payload: B64.encode(&env.payload),
            signatures: env
                .signatures
                .iter()
                .map(|s| DsseSignatureJson {
                    keyid: s.key_id.clone(),
                    sig: B64.encode(&s.sig),
                })
                .collect(),
        }
    }

    /// The envelope; `what` names this value in errors (`envelope`, `receipt`, …). Only the
    /// base64 is checked here: what the envelope must carry is the reader's rule.
    pub fn into_envelope(self, what: &str) -> Result<SignedEnvelope, DsseJsonError> {
        let payload = decode_b64(&self.payload, &format!("{what}.payload"))?;
        let signatures = self
            .signatures
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(EnvelopeSignature {
                    sig: decode_b64(&s.sig, &format!("{what}.signatures[{i}].sig"))?,
                    key_id: s.keyid,
                })
            })
            .collect::<Result<_, DsseJsonError>>()?;
        Ok(SignedEnvelope {
            payload_type: self.payload_type,
            payload,
            signatures,
        })
    }
}

/// `env` as a DSSE JSON document: pretty-printed, ending with a newline.
pub fn envelope_to_json(env: &SignedEnvelope) -> String {
    // Strings and lists of strings: serializing cannot fail.
    let mut text =
        serde_json::to_string_pretty(&DsseEnvelopeJson::from_envelope(env)).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses a DSSE JSON document strictly: exactly the members `payloadType`, `payload` and
/// `signatures` (each with exactly `keyid` and `sig`; the older spellings `payload_type` and
/// `key_id` are read too), none twice, standard base64 with padding.
pub fn envelope_from_json(text: &str) -> Result<SignedEnvelope, DsseJsonError> {
    let json: DsseEnvelopeJson = serde_json::from_str(text).map_err(|e| {
        DsseJsonError(format!(
            "not a DSSE JSON envelope (payloadType, payload, signatures): {e}"
        ))
    })?;
    json.into_envelope("envelope")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn sample() -> SignedEnvelope {
        SignedEnvelope::sign(
            "application/example",
            b"payload".to_vec(),
            &SecretKey::from_seed(&[3; 32]),
        )
    }

    #[test]
    fn writes_dsse_names_and_reads_them_back() {
        let env = sample();
        let text = envelope_to_json(&env);
        assert!(
            text.contains("\"payloadType\": \"application/example\""),
            "{text}"
        );
        assert!(text.contains("\"keyid\": \"ed25519:"), "{text}");
        assert!(
            !text.contains("payload_type") && !text.contains("key_id"),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        assert_eq!(envelope_from_json(&text), Ok(env));
    }

    #[test]
    fn reads_the_names_older_bundles_wrote() {
        let env = sample();
        let old = envelope_to_json(&env)
            .replace("\"payloadType\"", "\"payload_type\"")
            .replace("\"keyid\"", "\"key_id\"");
        assert_eq!(envelope_from_json(&old), Ok(env));
    }

    #[test]
    fn refuses_both_spellings_unknown_members_and_bad_base64() {
        let text = envelope_to_json(&sample());
        let both = text.replacen(
            "\"payload\":",
            "\"payload_type\": \"application/example\",\n  \"payload\":",
            1,
        );
        assert!(envelope_from_json(&both).is_err_and(|e| e.0.contains("duplicate field")));
        let unknown = text.replacen("\"payload\":", "\"extra\": 1,\n  \"payload\":", 1);
        assert!(envelope_from_json(&unknown).is_err_and(|e| e.0.contains("unknown field")));
        let json = DsseEnvelopeJson {
            payload: "not base64!".into(),
            ..DsseEnvelopeJson::from_envelope(&sample())
        };
        assert_eq!(
            json.into_envelope("receipt").err(),
            Some(DsseJsonError(
                "receipt.payload is not standard base64 with padding".into()
            ))
        );
    }
}
