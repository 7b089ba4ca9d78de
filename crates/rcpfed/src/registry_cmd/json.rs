//! Signed registry versions on disk as DSSE JSON, and refusals in plain words.

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcpfed_core::envelope::{EnvelopeSignature, SignedEnvelope};
use rcpfed_core::registry::{REGISTRY_PAYLOAD_TYPE, Registry, decode_and_check};
use rcpfed_core::rejection::Rejection;
use serde::{Deserialize, Serialize};
use std::path::Path;
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvelopeJson {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignatureJson {
    keyid: String,
    sig: String,
}

/// The DSSE JSON form of an envelope (pretty-printed, with a final newline).
pub fn envelope_to_json(env: &SignedEnvelope) -> String {
    let json = EnvelopeJson {
        payload_type: env.payload_type.clone(),
        payload: B64.encode(&env.payload),
        signatures: env
            .signatures
            .iter()
            .map(|s| SignatureJson {
                keyid: s.key_id.clone(),
                sig: B64.encode(&s.sig),
            })
            .collect(),
    };
    // Serializing strings and vectors of strings cannot fail.
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses the DSSE JSON form strictly: exactly the fields `payloadType`, `payload` and
/// `signatures` (each with exactly `keyid` and `sig`), no field twice, canonical standard
/// base64, a non-empty payload type, payload and key ids.
pub fn envelope_from_json(text: &str) -> Result<SignedEnvelope> {
    let json: EnvelopeJson = serde_json::from_str(text)
        .context("not a DSSE JSON envelope (payloadType, payload, signatures)")?;
    if json.payload_type.is_empty() {
        bail!("payloadType is empty");
    }
    let payload = B64
        .decode(&json.payload)
        .context("payload is not standard base64")?;
    if payload.is_empty() {
        bail!("payload is empty");
    }
    let mut signatures = Vec::with_capacity(json.signatures.len());
    for (i, s) in json.signatures.into_iter().enumerate() {
        if s.keyid.is_empty() {
            bail!("signatures[{i}].keyid is empty");
        }
        let sig = B64
            .decode(&s.sig)
            .with_context(|| format!("signatures[{i}].sig is not standard base64"))?;
        signatures.push(EnvelopeSignature {
            key_id: s.keyid,
            sig,
        });
    }
    Ok(SignedEnvelope {
        payload_type: json.payload_type,
        payload,
        signatures,
    })
}

pub(super) fn read_envelope(path: &Path) -> Result<SignedEnvelope> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading registry version {}", path.display()))?;
    let env = envelope_from_json(&text).with_context(|| format!("{}", path.display()))?;
    if env.payload_type != REGISTRY_PAYLOAD_TYPE {
        bail!(
            "{}: payload type {:?} is not a registry version ({REGISTRY_PAYLOAD_TYPE:?})",
            path.display(),
            env.payload_type
        );
    }
    Ok(env)
}

/// Decodes and checks the registry carried by `env` (no signature is checked).
pub(super) fn registry_of(env: &SignedEnvelope, path: &Path) -> Result<Registry> {
    decode_and_check(&env.payload).map_err(|e| anyhow!("{}: {}", path.display(), describe(&e)))
}

/// A rejection in plain words: reason, message and field violations.
pub fn describe(e: &Rejection) -> String {
    let mut text = format!("{} ({})", e.message, e.reason);
    // The message already names the first violation; list them all when there are more.
    for v in e.violations.iter().filter(|_| e.violations.len() > 1) {
        text.push_str(&format!(
            "\n  - {}: {} ({})",
            v.field, v.description, v.reason
        ));
    }
    text
}
