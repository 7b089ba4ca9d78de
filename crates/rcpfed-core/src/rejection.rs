//! The one error type for refused input. The gRPC edge maps [`RejectClass`] to a status code,
//! `reason` to `google.rpc.ErrorInfo` and the violations to `google.rpc.BadRequest`.

/// What kind of refusal this is; decides the gRPC status code at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectClass {
    /// Malformed or invalid input (INVALID_ARGUMENT).
    Invalid,
    /// The caller or the signature could not be authenticated (UNAUTHENTICATED).
    Unauthenticated,
    /// Authenticated but not allowed (PERMISSION_DENIED).
    Forbidden,
    /// Conflicts with what is already stored, e.g. equivocation (ALREADY_EXISTS / ABORTED).
    Conflict,
    /// The system is not in the state the request needs, e.g. a seq gap (FAILED_PRECONDITION).
    Precondition,
    /// The resource does not exist (NOT_FOUND).
    NotFound,
    /// The input is larger than accepted (RESOURCE_EXHAUSTED).
    TooLarge,
}

/// One field that broke one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `indicator_snapshot.observations[2].ref_area`.
    pub field: String,
    /// Rule reason, one of [`reasons`].
    pub reason: &'static str,
    /// What is wrong and what to fix, in plain lowercase words.
    pub description: String,
}

impl Violation {
    /// A violation of `reason` on `field`.
    pub fn new(
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Violation {
            field: field.into(),
            reason,
            description: description.into(),
        }
    }
}

/// How many problems a refusal found, for its message: all of them were counted, or the
/// search stopped at a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemCount {
    /// Every problem was counted.
    Exactly(usize),
    /// The search stopped after this many.
    AtLeast(usize),
}

/// Refused input: a class, a machine-readable reason, a plain-words message, and details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// Decides the gRPC status code.
    pub class: RejectClass,
    /// Machine-readable reason, one of [`reasons`].
    pub reason: &'static str,
    /// What is wrong and what to fix, lowercase plain words.
    pub message: String,
    /// Field violations, for `google.rpc.BadRequest`.
    pub violations: Vec<Violation>,
    /// Extra key/value context, for `google.rpc.ErrorInfo.metadata`.
    pub metadata: Vec<(String, String)>,
}

impl Rejection {
    /// A rejection without details.
    pub fn new(class: RejectClass, reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            class,
            reason,
            message: message.into(),
            violations: Vec::new(),
            metadata: Vec::new(),
        }
    }

    /// Attaches field violations.
    pub fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        self.violations = violations;
        self
    }

    /// Adds one metadata entry.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// An `Invalid` rejection without a field.
    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection::new(RejectClass::Invalid, reason, message)
    }

    /// The `Invalid` refusal of input whose fields break rules, or None when `violations` is
    /// empty: reason the one rule every violation names, VALIDATION_FAILED when they differ;
    /// message the first violation and how many more problems there are (`count`, which
    /// includes the ones not listed).
    pub fn from_violations(violations: Vec<Violation>, count: ProblemCount) -> Option<Self> {
        let first = violations.first()?;
        let reason = if violations.iter().all(|v| v.reason == first.reason) {
            first.reason
        } else {
            reasons::VALIDATION_FAILED
        };
        let mut message = format!("{}: {}", first.field, first.description);
        match count {
            ProblemCount::Exactly(total) if total > 1 => {
                message.push_str(&format!(" (and {} more problems)", total - 1));
            }
            ProblemCount::AtLeast(total) if total > 1 => {
                message.push_str(&format!(" (and at least {} more problems)", total - 1));
            }
            _ => {}
        }
        Some(Rejection::new(RejectClass::Invalid, reason, message).with_violations(violations))
    }

    /// An `Invalid` rejection carrying one field violation.
    pub fn invalid_field(
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        let v = Violation::new(field, reason, description);
        Rejection::new(
            RejectClass::Invalid,
            reasons::VALIDATION_FAILED,
            format!("{}: {}", v.field, v.description),
        )
        .with_violations(vec![v])
    }
}

/// Most bytes of a bad value an error message quotes.
pub const MAX_QUOTED_BYTES: usize = 96;

/// `value` quoted (Debug form) for an error message, cut to at most [`MAX_QUOTED_BYTES`] at a
/// character boundary with "…(N bytes)" when longer, so a refusal never echoes a huge value.
pub fn quote(value: &str) -> String {
    if value.len() <= MAX_QUOTED_BYTES {
        return format!("{value:?}");
    }
    format!(
        "{:?}…({} bytes)",
        truncate_str(value, MAX_QUOTED_BYTES),
        value.len()
    )
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn truncate_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reason codes: `ErrorInfo.reason` values and `BadRequest` violation reasons.
pub mod reasons {
    // Envelope, signature and statement-level reasons (ErrorInfo.reason).
    /// The envelope bytes are not a valid `rcpfed.v1.Envelope`.
    pub const ENVELOPE_MALFORMED: &str = "ENVELOPE_MALFORMED";
    /// The envelope or payload is larger than the receiver accepts.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    /// The envelope carries more signatures than the protocol allows.
    pub const TOO_MANY_SIGNATURES: &str = "TOO_MANY_SIGNATURES";
    /// A signature's key id is not of the form `ed25519:` and 16 lowercase hex digits.
    pub const INVALID_KEY_ID: &str = "INVALID_KEY_ID";
    /// A signature is not exactly 64 bytes long.
    pub const INVALID_SIGNATURE_LENGTH: &str = "INVALID_SIGNATURE_LENGTH";
    /// The envelope's payload type is not one the receiver expects.
    pub const UNKNOWN_PAYLOAD_TYPE: &str = "UNKNOWN_PAYLOAD_TYPE";
    /// The envelope carries no signature.
    pub const MISSING_SIGNATURE: &str = "MISSING_SIGNATURE";
    /// No signature's key id names a known key.
    pub const UNKNOWN_KEY_ID: &str = "UNKNOWN_KEY_ID";
    /// A signature does not verify over PAE(payload_type, payload).
    pub const BAD_SIGNATURE: &str = "BAD_SIGNATURE";
    /// The signing key was retired (registry) before the hub received the statement.
    pub const KEY_RETIRED: &str = "KEY_RETIRED";
    /// The signing key was revoked (registry) before the hub received the statement.
    pub const KEY_REVOKED: &str = "KEY_REVOKED";
    /// The signing key's validity starts after the moment the hub received the statement.
    pub const KEY_NOT_YET_VALID: &str = "KEY_NOT_YET_VALID";
    /// The verifying key does not belong to the statement's issuer.
    pub const KEY_NOT_OWNED: &str = "KEY_NOT_OWNED";
    /// The payload bytes are not a valid message of the payload type.
    pub const PAYLOAD_MALFORMED: &str = "PAYLOAD_MALFORMED";
    /// The statement names another federation.
    pub const WRONG_FEDERATION: &str = "WRONG_FEDERATION";
    /// The statement's node id is not the submitting or signing member.
    pub const NODE_MISMATCH: &str = "NODE_MISMATCH";
    /// The header's kind does not match the body.
    pub const KIND_MISMATCH: &str = "KIND_MISMATCH";
    /// The header's schema version is not supported.
    pub const UNSUPPORTED_SCHEMA_VERSION: &str = "UNSUPPORTED_SCHEMA_VERSION";
    /// Several field rules failed (see the violations).
    pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";
    /// The statement's seq is not exactly one more than the node's last accepted seq.
    pub const SEQ_GAP: &str = "SEQ_GAP";
    /// The statement's seq was already used (alias kept for callers; see EQUIVOCATION).
    pub const SEQ_REUSED: &str = "SEQ_REUSED";
    /// A different statement with the same node and seq was already accepted.
    pub const EQUIVOCATION: &str = "EQUIVOCATION";
    /// The prev_digest is not the digest of the node's previous statement.
    pub const PREV_DIGEST_MISMATCH: &str = "PREV_DIGEST_MISMATCH";
    /// The caller presented no usable client certificate identity.
    pub const PEER_UNAUTHENTICATED: &str = "PEER_UNAUTHENTICATED";
    /// The caller's identity is not a member of the federation.
    pub const PEER_NOT_A_MEMBER: &str = "PEER_NOT_A_MEMBER";
    /// The caller lacks the role the call needs.
    pub const ROLE_REQUIRED: &str = "ROLE_REQUIRED";
    /// The requested resource does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// A request argument is invalid.
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    /// The page token is malformed or belongs to other filters.
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    /// An inclusion or consistency proof is malformed or does not verify.
    pub const BAD_PROOF: &str = "BAD_PROOF";
    /// A checkpoint's text is not in the C2SP tlog-checkpoint format.
    pub const BAD_CHECKPOINT: &str = "BAD_CHECKPOINT";
    /// A checkpoint's origin line is not the log's key name.
    pub const WRONG_LOG_ORIGIN: &str = "WRONG_LOG_ORIGIN";
    /// A signed note is not in the C2SP signed-note format (e.g. truncated).
    pub const MALFORMED_NOTE: &str = "MALFORMED_NOTE";
    /// A note signature by a known key (name and key hash) does not verify.
    pub const BAD_NOTE_SIGNATURE: &str = "BAD_NOTE_SIGNATURE";
    /// No signature on a note is by a trusted key.
    pub const NO_TRUSTED_SIGNATURE: &str = "NO_TRUSTED_SIGNATURE";
    /// A checkpoint carries no valid signature by the trusted log key.
    pub const UNKNOWN_LOG_KEY: &str = "UNKNOWN_LOG_KEY";
    /// A verifier key string is not in the C2SP vkey format or its key hash is wrong.
    pub const BAD_VERIFIER_KEY: &str = "BAD_VERIFIER_KEY";
    /// Two checkpoints of one log cannot both be true: the log forked.
    pub const INCONSISTENT_CHECKPOINT: &str = "INCONSISTENT_CHECKPOINT";
    /// A witness cosignature is malformed, not by that witness, or does not verify.
    pub const BAD_COSIGNATURE: &str = "BAD_COSIGNATURE";

    // Membership registry reasons (ErrorInfo.reason and BadRequest violations).
    /// A registry version breaks a rule with no more specific reason (see the violations).
    pub const REGISTRY_INVALID: &str = "REGISTRY_INVALID";
    /// A registry version lacks the threshold of valid signatures by distinct root keys.
    pub const REGISTRY_THRESHOLD_NOT_MET: &str = "REGISTRY_THRESHOLD_NOT_MET";
    /// A registry version is not newer than the trusted one (rollback).
    pub const REGISTRY_ROLLBACK: &str = "REGISTRY_ROLLBACK";
    /// A registry version skips versions (must be exactly the trusted version + 1).
    pub const REGISTRY_VERSION_GAP: &str = "REGISTRY_VERSION_GAP";
    /// A registry version's previous_digest is not the digest of the trusted version (fork or
    /// mix-and-match).
    pub const REGISTRY_CHAIN_MISMATCH: &str = "REGISTRY_CHAIN_MISMATCH";
    /// The latest registry version is expired (freeze).
    pub const REGISTRY_EXPIRED: &str = "REGISTRY_EXPIRED";
    /// The root keys or threshold are invalid: threshold 0 or above the key count, a key
    /// listed twice, an invalid or weak key, or a key id that does not match its key.
    pub const INVALID_ROOT: &str = "INVALID_ROOT";
    /// A key is listed twice in a registry (within or across members, or as a root key).
    pub const DUPLICATE_KEY_ID: &str = "DUPLICATE_KEY_ID";
    /// Two keys of one member have overlapping validity windows.
    pub const OVERLAPPING_KEY_WINDOWS: &str = "OVERLAPPING_KEY_WINDOWS";
    /// A member with the publisher or witness role has no signing key.
    pub const MEMBER_WITHOUT_KEY: &str = "MEMBER_WITHOUT_KEY";
    /// A role is not publisher, reader, witness or admin.
    pub const UNKNOWN_ROLE: &str = "UNKNOWN_ROLE";
    /// A member's public key is not a valid, strong Ed25519 key or its key id does not match.
    pub const INVALID_PUBLIC_KEY: &str = "INVALID_PUBLIC_KEY";

    // Per-field rule reasons (BadRequest field violations).
    /// A required field is empty or missing.
    pub const FIELD_REQUIRED: &str = "FIELD_REQUIRED";
    /// A title is missing, empty or only whitespace.
    pub const EMPTY_TITLE: &str = "EMPTY_TITLE";
    /// A language appears twice in one list of texts.
    pub const DUPLICATE_LANGUAGE: &str = "DUPLICATE_LANGUAGE";
    /// A language tag is not a BCP 47 tag.
    pub const INVALID_LANGUAGE: &str = "INVALID_LANGUAGE";
    /// A date is not a valid YYYY-MM-DD date.
    pub const INVALID_DATE: &str = "INVALID_DATE";
    /// A code is not an ISO 3166-1 alpha-3 code.
    pub const INVALID_COUNTRY_CODE: &str = "INVALID_COUNTRY_CODE";
    /// A ref_area is not a member state of the node for the whole period.
    pub const NOT_A_MEMBER_STATE: &str = "NOT_A_MEMBER_STATE";
    /// A GCM objective is outside 1 to 23 or repeated.
    pub const INVALID_GCM_OBJECTIVE: &str = "INVALID_GCM_OBJECTIVE";
    /// An SDG target is not of the form "10.7" or "10.c".
    pub const INVALID_SDG_TARGET: &str = "INVALID_SDG_TARGET";
    /// A URL is not an http or https URL.
    pub const INVALID_URL: &str = "INVALID_URL";
    /// An indicator code is not upper-case letters, digits and '_'.
    pub const INVALID_INDICATOR_CODE: &str = "INVALID_INDICATOR_CODE";
    /// A snapshot has no observations.
    pub const NO_OBSERVATIONS: &str = "NO_OBSERVATIONS";
    /// A time period is not an SDMX time period.
    pub const INVALID_TIME_PERIOD: &str = "INVALID_TIME_PERIOD";
    /// A dimension id or value is invalid, reserved or repeated.
    pub const INVALID_DIMENSION: &str = "INVALID_DIMENSION";
    /// An observation value is NaN or infinite.
    pub const NON_FINITE_VALUE: &str = "NON_FINITE_VALUE";
    /// An append or replace observation has no value.
    pub const VALUE_REQUIRED: &str = "VALUE_REQUIRED";
    /// A delete observation carries a value.
    pub const VALUE_NOT_ALLOWED: &str = "VALUE_NOT_ALLOWED";
    /// An OBS_STATUS code is not in SDMX CL_OBS_STATUS.
    pub const INVALID_OBS_STATUS: &str = "INVALID_OBS_STATUS";
    /// A CONF_STATUS code is not in SDMX CL_CONF_STATUS.
    pub const INVALID_CONF_STATUS: &str = "INVALID_CONF_STATUS";
    /// A UNIT_MULT is outside 0 to 12.
    pub const INVALID_UNIT_MULT: &str = "INVALID_UNIT_MULT";
    /// Two observations have the same key (REF_AREA, TIME_PERIOD, dimensions).
    pub const DUPLICATE_KEY: &str = "DUPLICATE_KEY";
    /// issued_at is too far in the future (or implausibly old).
    pub const ISSUED_AT_IN_FUTURE: &str = "ISSUED_AT_IN_FUTURE";
    /// The document name is not "regions/{node_id}/..." in lower case.
    pub const INVALID_DOCUMENT_NAME: &str = "INVALID_DOCUMENT_NAME";
    /// The revision is 0.
    pub const INVALID_REVISION: &str = "INVALID_REVISION";
    /// The seq is 0.
    pub const INVALID_SEQ: &str = "INVALID_SEQ";
    /// prev_digest is missing after seq 1, present at seq 1, or not 32 bytes.
    pub const INVALID_PREV_DIGEST: &str = "INVALID_PREV_DIGEST";
    /// A text is longer than allowed.
    pub const TOO_LONG: &str = "TOO_LONG";
    /// A digest field is neither empty nor 32 bytes.
    pub const INVALID_DIGEST: &str = "INVALID_DIGEST";
    /// An enum field is unspecified or has an unknown value.
    pub const INVALID_ENUM: &str = "INVALID_ENUM";

    // Indicator catalogue reasons (BadRequest field violations; see `crate::catalogue`).
    /// The snapshot's indicator is not in the catalogue.
    pub const UNKNOWN_INDICATOR: &str = "UNKNOWN_INDICATOR";
    /// A dimension is not one of the indicator's dimensions in the catalogue.
    pub const UNKNOWN_DIMENSION: &str = "UNKNOWN_DIMENSION";
    /// A dimension value or attribute code is not in its catalogue codelist.
    pub const CODE_NOT_IN_CODELIST: &str = "CODE_NOT_IN_CODELIST";
    /// A value is outside the catalogue's plausible range (an error, or a warning).
    pub const VALUE_OUT_OF_RANGE: &str = "VALUE_OUT_OF_RANGE";
    /// A UNIT_MEASURE or UNIT_MULT is not one the catalogue allows for the indicator.
    pub const UNIT_MISMATCH: &str = "UNIT_MISMATCH";
    /// TIME_PERIOD values of different frequencies within one snapshot.
    pub const MIXED_FREQUENCIES: &str = "MIXED_FREQUENCIES";
    /// A TIME_PERIOD's frequency is not one the catalogue allows for the indicator.
    pub const FREQUENCY_NOT_ALLOWED: &str = "FREQUENCY_NOT_ALLOWED";
    /// A dimension the catalogue requires is absent.
    pub const MISSING_DIMENSION: &str = "MISSING_DIMENSION";

    // Revisions and large snapshots.
    /// An APPEND for a key the node already has a value for (use REPLACE).
    pub const OBSERVATION_EXISTS: &str = "OBSERVATION_EXISTS";
    /// A REPLACE or DELETE of a key the node has no value for.
    pub const OBSERVATION_NOT_FOUND: &str = "OBSERVATION_NOT_FOUND";
    /// A chunk manifest is malformed (no chunks, counts that do not add up, oversized chunk).
    pub const INVALID_CHUNK_MANIFEST: &str = "INVALID_CHUNK_MANIFEST";
    /// Chunk bytes do not match the signed manifest (length, SHA-256, count, order).
    pub const CHUNK_MISMATCH: &str = "CHUNK_MISMATCH";
    /// A snapshot with a chunk manifest was sent where chunks cannot follow, or without them.
    pub const CHUNKS_REQUIRED: &str = "CHUNKS_REQUIRED";
    /// No indicator catalogue has been issued yet.
    pub const NO_CATALOGUE: &str = "NO_CATALOGUE";
    /// A catalogue document is malformed or breaks the catalogue chain.
    pub const CATALOGUE_INVALID: &str = "CATALOGUE_INVALID";
    /// A query is malformed (missing indicator, bad period, bad page token).
    pub const INVALID_QUERY: &str = "INVALID_QUERY";
    /// The server's disk, or its store quota (`max_db_bytes`), is full: the write was refused
    /// whole (UNAVAILABLE; retry later, reads still work).
    pub const STORE_FULL: &str = "STORE_FULL";
    /// The server's store could not be written or read (I/O error, locked or read-only file):
    /// nothing was changed (UNAVAILABLE; retry later).
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    /// A store query ran past the call's deadline and was stopped, or no read connection came
    /// free before it (DEADLINE_EXCEEDED).
    pub const STORE_DEADLINE_EXCEEDED: &str = "STORE_DEADLINE_EXCEEDED";
    /// This hub process does not hold the hub lease (a standby, or a leader whose term is
    /// over): writes go to the leader (UNAVAILABLE; metadata `leader` names its endpoint when
    /// known). Reads are answered.
    pub const NOT_LEADER: &str = "NOT_LEADER";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_bounded() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "é".repeat(5000);
        let q = quote(&long);
        assert!(q.len() < MAX_QUOTED_BYTES + 40, "{q}");
        assert!(q.ends_with("…(10000 bytes)"), "{q}");
        assert_eq!(truncate_str("aé", 2), "a");
    }

    #[test]
    fn rows_refused_name_one_rule_or_validation_failed() {
        assert_eq!(
            Rejection::from_violations(Vec::new(), ProblemCount::Exactly(0)),
            None
        );
        let exists = |i: usize| {
            Violation::new(
                format!("indicator_snapshot.observations[{i}]"),
                reasons::OBSERVATION_EXISTS,
                "appends a key in force",
            )
        };
        let one_rule =
            Rejection::from_violations(vec![exists(0), exists(3)], ProblemCount::Exactly(2))
                .expect("refused");
        assert_eq!(one_rule.class, RejectClass::Invalid);
        assert_eq!(one_rule.reason, reasons::OBSERVATION_EXISTS);
        assert_eq!(
            one_rule.message,
            "indicator_snapshot.observations[0]: appends a key in force (and 1 more problems)"
        );
        let mut mixed = vec![exists(0)];
        mixed.push(Violation::new(
            "indicator_snapshot.observations[1]",
            reasons::OBSERVATION_NOT_FOUND,
            "replaces a key not in force",
        ));
        let mixed = Rejection::from_violations(mixed, ProblemCount::AtLeast(2)).expect("refused");
        assert_eq!(mixed.reason, reasons::VALIDATION_FAILED);
        assert_eq!(mixed.violations.len(), 2);
        assert!(
            mixed.message.ends_with("(and at least 1 more problems)"),
            "{}",
            mixed.message
        );
    }
}
