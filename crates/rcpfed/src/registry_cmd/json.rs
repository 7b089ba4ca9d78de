//! Signed registry versions on disk as DSSE JSON, and refusals in plain words.

use anyhow::{Context as _, Result, anyhow, bail};
pub use rcpfed_core::dsse_json::envelope_to_json;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::registry::{REGISTRY_PAYLOAD_TYPE, Registry, decode_and_check};
use rcpfed_core::rejection::Rejection;
use std::path::Path;

/// Parses the DSSE JSON form strictly (see `rcpfed_core::dsse_json::envelope_from_json`) and
/// refuses what a registry version file may not hold: an empty payload type, payload or key id.
pub fn envelope_from_json(text: &str) -> Result<SignedEnvelope> {
    let env = rcpfed_core::dsse_json::envelope_from_json(text)?;
    if env.payload_type.is_empty() {
        bail!("payloadType is empty");
    }
    if env.payload.is_empty() {
        bail!("payload is empty");
    }
    if let Some(i) = env.signatures.iter().position(|s| s.key_id.is_empty()) {
        bail!("signatures[{i}].keyid is empty");
    }
    Ok(env)
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
