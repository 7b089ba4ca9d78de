//! Protocol limits on everything that is signed, logged and redistributed (docs/spec/limits.md).
//!
//! Why: whatever the hub accepts it must be able to hand on, whole, through the feed,
//! `GetStatement`, `ListLogEntries`, the mirrors and bundles. So the whole envelope is
//! bounded (not just its payload), and every bound is checked on the raw envelope before any
//! cryptographic work ([`check_envelope`]). The feed entry and response bounds below are
//! computed from these, so a transport limit set at or above them always passes an accepted
//! entry.

use crate::envelope::SignedEnvelope;
use crate::rejection::{RejectClass, Rejection, Violation, quote, reasons};

pub use crate::chunks::{MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_SNAPSHOT_OBSERVATIONS};

/// Largest statement payload, in bytes (inclusive).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Largest payload of a hub-issued document (registry version, catalogue version, coherence
/// report), in bytes (inclusive). The same as a statement's, so every record fits the bounds
/// below.
pub const MAX_HUB_DOCUMENT_BYTES: usize = MAX_PAYLOAD_BYTES;
/// Longest `payload_type`, in bytes.
pub const MAX_PAYLOAD_TYPE_BYTES: usize = 128;
/// Most signatures on one envelope. Statements need one; registry versions need a threshold
/// of root keys, twice over during a root rotation.
pub const MAX_SIGNATURES: usize = 32;
/// Exact length of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// The one key id form: `ed25519:` and 16 lowercase hex digits (see [`crate::keys::key_id_of`]).
pub const KEY_ID_PREFIX: &str = "ed25519:";
/// Length of a key id, in bytes.
pub const KEY_ID_BYTES: usize = KEY_ID_PREFIX.len() + 16;
/// Bytes an envelope may add to its payload: the payload type, the signatures (key id,
/// signature and protobuf framing each) and the envelope's own framing.
pub const MAX_ENVELOPE_OVERHEAD: usize =
    MAX_PAYLOAD_TYPE_BYTES + MAX_SIGNATURES * (KEY_ID_BYTES + SIGNATURE_BYTES + 8) + 32;
/// Largest encoded statement envelope (`rcpfed.v1.Envelope`), in bytes.
pub const MAX_ENVELOPE_BYTES: usize = MAX_PAYLOAD_BYTES + MAX_ENVELOPE_OVERHEAD;
/// Largest encoded envelope of a hub-issued document, in bytes.
pub const MAX_HUB_ENVELOPE_BYTES: usize = MAX_HUB_DOCUMENT_BYTES + MAX_ENVELOPE_OVERHEAD;
/// Largest encoded receipt envelope (a hub-signed `Receipt` is a few hundred bytes).
pub const MAX_RECEIPT_BYTES: usize = 4 * 1024;
/// Largest encoded `LogProof`: the cosigned checkpoint note (at most
/// [`crate::note::MAX_NOTE_BYTES`]) and an inclusion proof of at most 64 hashes.
pub const MAX_LOG_PROOF_BYTES: usize = crate::note::MAX_NOTE_BYTES + 64 * (32 + 2) + 64;
/// Largest encoded feed entry (`SubscribeFeedResponse`) or statement record
/// (`StatementRecord`, which repeats the payload decoded next to the envelope): twice the
/// largest envelope, its receipt and its log proof, with framing. Below 4 MiB, so any one entry
/// fits a client with gRPC's default 4 MiB message limit.
pub const MAX_FEED_ENTRY_BYTES: usize =
    2 * MAX_HUB_ENVELOPE_BYTES + MAX_RECEIPT_BYTES + MAX_LOG_PROOF_BYTES + 1024;
/// A page of `ListStatements` or `ListLogEntries` stops before its entries pass this many
/// bytes; it always holds at least one entry (at most [`MAX_FEED_ENTRY_BYTES`]).
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;
/// Largest response a client must accept from the hub's statement and log RPCs: one page or
/// one entry.
pub const MAX_RESPONSE_BYTES: usize = if MAX_PAGE_BYTES > MAX_FEED_ENTRY_BYTES {
    MAX_PAGE_BYTES
} else {
    MAX_FEED_ENTRY_BYTES
};
/// Largest request the hub needs to decode for `SubmitStatement` (and for the envelope message
/// of `SubmitSnapshot`): a statement envelope with framing. Anything above cannot be accepted.
pub const MAX_SUBMIT_REQUEST_BYTES: usize = MAX_ENVELOPE_BYTES + 64;
/// Largest `PublishRegistry` request the hub needs to decode.
pub const MAX_REGISTRY_REQUEST_BYTES: usize = MAX_HUB_ENVELOPE_BYTES + 64;

/// Statements of one node that may be in flight at once (docs/spec/ingest.md §1 step 11): a
/// statement up to this many seqs ahead of its node's head waits at the hub for its
/// predecessors instead of being refused with `SEQ_GAP`. A node sends at most this many
/// `SubmitStatement` calls at a time. The same as the hub's default per-member bound on
/// submissions in flight, so a full window is never refused as too many.
pub const IN_FLIGHT_WINDOW: u64 = 8;
/// Longest time a statement that arrived ahead of its node's head waits at the hub for its
/// predecessor before it is refused with `SEQ_GAP`, in milliseconds.
pub const IN_FLIGHT_WAIT_MS: u64 = 5_000;
/// Most violations one refusal lists, in the validator's findings and in the gRPC status (the
/// last listed may then say how many more there are).
pub const MAX_VIOLATIONS: usize = 100;

/// Whether `key_id` has the one key id form, `ed25519:` and 16 lowercase hex digits.
pub fn is_key_id(key_id: &str) -> bool {
    key_id.len() == KEY_ID_BYTES
        && key_id.strip_prefix(KEY_ID_PREFIX).is_some_and(|hex| {
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Checks an envelope's shape against the protocol limits, with `max_payload` the payload
/// limit of its kind ([`MAX_PAYLOAD_BYTES`] or [`MAX_HUB_DOCUMENT_BYTES`]). Cheap (lengths and
/// a short grammar, no hashing): call it before verifying signatures. Refusals stop at the
/// first bound broken, in the order: payload, payload type, signature count, then each
/// signature's key id and length.
pub fn check_envelope(env: &SignedEnvelope, max_payload: usize) -> Result<(), Rejection> {
    if env.payload.len() > max_payload {
        return Err(Rejection::new(
            RejectClass::TooLarge,
            reasons::PAYLOAD_TOO_LARGE,
            format!(
                "payload is {} bytes; at most {max_payload} bytes are accepted",
                env.payload.len()
            ),
        )
        .with_meta("limit", max_payload.to_string()));
    }
    if env.payload_type.len() > MAX_PAYLOAD_TYPE_BYTES {
        return Err(field_refusal(
            "envelope.payload_type",
            reasons::UNKNOWN_PAYLOAD_TYPE,
            format!(
                "payload type {} is longer than {MAX_PAYLOAD_TYPE_BYTES} bytes",
                quote(&env.payload_type)
            ),
        ));
    }
    if env.signatures.len() > MAX_SIGNATURES {
        return Err(Rejection::new(
            RejectClass::TooLarge,
            reasons::TOO_MANY_SIGNATURES,
            format!(
                "the envelope carries {} signatures; at most {MAX_SIGNATURES} are accepted (a statement needs one)",
                env.signatures.len()
            ),
        )
        .with_meta("limit", MAX_SIGNATURES.to_string()));
    }
    for (i, s) in env.signatures.iter().enumerate() {
        if !is_key_id(&s.key_id) {
            return Err(field_refusal(
                format!("envelope.signatures[{i}].key_id"),
                reasons::INVALID_KEY_ID,
                format!(
                    "key id {} is not of the form \"{KEY_ID_PREFIX}\" and 16 lowercase hex digits",
                    quote(&s.key_id)
                ),
            ));
        }
        if s.sig.len() != SIGNATURE_BYTES {
            return Err(field_refusal(
                format!("envelope.signatures[{i}].sig"),
                reasons::INVALID_SIGNATURE_LENGTH,
                format!(
                    "signature is {} bytes; an Ed25519 signature is exactly {SIGNATURE_BYTES}",
                    s.sig.len()
                ),
            ));
        }
    }
    Ok(())
}

/// An INVALID_ARGUMENT refusal with `reason` as ErrorInfo reason and one field violation.
fn field_refusal(field: impl Into<String>, reason: &'static str, message: String) -> Rejection {
    Rejection::invalid(reason, message.clone())
        .with_violations(vec![Violation::new(field, reason, message)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{EnvelopeSignature, STATEMENT_PAYLOAD_TYPE};
    use crate::keys::SecretKey;
    use prost::Message as _;

    fn signed(payload_len: usize) -> SignedEnvelope {
        SignedEnvelope::sign(
            STATEMENT_PAYLOAD_TYPE,
            vec![7; payload_len],
            &SecretKey::from_seed(&[3; 32]),
        )
    }

    fn reason(env: &SignedEnvelope) -> Option<&'static str> {
        check_envelope(env, MAX_PAYLOAD_BYTES)
            .err()
            .map(|r| r.reason)
    }

    #[test]
    fn the_largest_envelope_passes_and_fits_its_bound() {
        let mut env = signed(MAX_PAYLOAD_BYTES);
        let first = env.signatures[0].clone();
        env.signatures = vec![first; MAX_SIGNATURES];
        assert_eq!(check_envelope(&env, MAX_PAYLOAD_BYTES), Ok(()));
        env.payload_type = "x".repeat(MAX_PAYLOAD_TYPE_BYTES);
        assert_eq!(check_envelope(&env, MAX_PAYLOAD_BYTES), Ok(()));
        assert!(
            env.encode().len() <= MAX_ENVELOPE_BYTES,
            "{}",
            env.encode().len()
        );
        // The feed bound leaves room for the largest hub document and its proofs, and the
        // whole chain stays well under the 16 MiB transport limit.
        const { assert!(MAX_RESPONSE_BYTES < 4 * 1024 * 1024) };
        // The values docs/spec/envelope.md §1 and docs/spec/limits.md state.
        assert_eq!(MAX_ENVELOPE_BYTES, 1_051_808);
        assert_eq!(MAX_FEED_ENTRY_BYTES, 3_159_552);
        assert_eq!(MAX_SUBMIT_REQUEST_BYTES, 1_051_872);
        const { assert!(MAX_SUBMIT_REQUEST_BYTES < MAX_FEED_ENTRY_BYTES) };
        let framed = rcpfed_proto::v1::SubmitStatementRequest {
            envelope: Some(env.to_proto()),
        };
        assert!(framed.encoded_len() <= MAX_SUBMIT_REQUEST_BYTES);
    }

    #[test]
    fn each_bound_has_its_reason() {
        assert_eq!(
            reason(&signed(MAX_PAYLOAD_BYTES + 1)),
            Some(reasons::PAYLOAD_TOO_LARGE)
        );
        let mut env = signed(10);
        env.payload_type = "x".repeat(MAX_PAYLOAD_TYPE_BYTES + 1);
        assert_eq!(reason(&env), Some(reasons::UNKNOWN_PAYLOAD_TYPE));

        let mut env = signed(10);
        let first = env.signatures[0].clone();
        env.signatures = vec![first; MAX_SIGNATURES + 1];
        assert_eq!(reason(&env), Some(reasons::TOO_MANY_SIGNATURES));

        for bad in [
            "",
            "ed25519:",
            "ed25519:0123456789ABCDEF",
            "ed25519:0123456789abcdef0",
            "rsa:0123456789abcdef",
        ] {
            let mut env = signed(10);
            env.signatures[0].key_id = bad.into();
            assert_eq!(reason(&env), Some(reasons::INVALID_KEY_ID), "{bad:?}");
        }
        let mut env = signed(10);
        env.signatures[0].key_id = "k".repeat(15 * 1024 * 1024);
        let refusal = check_envelope(&env, MAX_PAYLOAD_BYTES).err();
        let message = refusal.map(|r| r.message).unwrap_or_default();
        assert!(message.len() < 512, "{} bytes", message.len());

        for len in [0, 63, 65] {
            let mut env = signed(10);
            env.signatures[0].sig = vec![1; len];
            assert_eq!(reason(&env), Some(reasons::INVALID_SIGNATURE_LENGTH));
        }
        // A later bad signature is refused too: every signature must be in form.
        let mut env = signed(10);
        env.signatures.push(EnvelopeSignature {
            key_id: "ed25519:0000000000000000".into(),
            sig: vec![0; 3],
        });
        assert_eq!(reason(&env), Some(reasons::INVALID_SIGNATURE_LENGTH));
    }

    #[test]
    fn key_ids_of_real_keys_have_the_form() {
        for seed in 0..20u8 {
            assert!(is_key_id(SecretKey::from_seed(&[seed; 32]).key_id()));
        }
    }
}
