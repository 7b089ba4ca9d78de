//! Domain rejections → gRPC status with `google.rpc.ErrorInfo` and `google.rpc.BadRequest`.

use rcpfed_core::limits::MAX_VIOLATIONS;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// `ErrorInfo.domain` of every rcpfed error.
pub const ERROR_DOMAIN: &str = "rcpfed.v1";

/// The gRPC code for a rejection class.
pub fn code_for(class: RejectClass) -> Code {
    match class {
        RejectClass::Invalid => Code::InvalidArgument,
        RejectClass::Unauthenticated => Code::Unauthenticated,
        RejectClass::Forbidden => Code::PermissionDenied,
        RejectClass::Conflict => Code::AlreadyExists,
        RejectClass::Precondition => Code::FailedPrecondition,
        RejectClass::NotFound => Code::NotFound,
        RejectClass::TooLarge => Code::ResourceExhausted,
    }
}

/// Most bytes of field violations put in one status. The details travel base64-encoded in the
/// `grpc-status-details-bin` trailer, and common clients refuse header blocks over 8 KiB
/// (grpc-core, grpcio) or 16 KiB (HTTP/2 default); the client then sees a protocol error
/// instead of the rejection. So a long list is cut and its last entry says how many problems
/// are not listed.
pub const MAX_VIOLATION_BYTES: usize = 2 * 1024;
/// Longest field path of one violation, in bytes.
pub const MAX_VIOLATION_FIELD_BYTES: usize = 256;
/// Longest description of one violation, in bytes.
pub const MAX_VIOLATION_DESCRIPTION_BYTES: usize = 512;
/// Longest status message (`grpc-message`, percent-encoded in the trailers), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// Most `ErrorInfo` metadata entries.
pub const MAX_METADATA_ENTRIES: usize = 6;
/// Longest `ErrorInfo` metadata key and value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 96;
/// Upper bound of the trailers of any refusal made here: message (up to 3 bytes each when
/// percent-encoded) and details (4/3 in base64), with room for the code and framing. It is
/// below the 8 KiB header limit of common clients.
pub const MAX_TRAILER_BYTES: usize = 3 * MAX_MESSAGE_BYTES
    + (MAX_VIOLATION_BYTES
        + MAX_VIOLATION_FIELD_BYTES
        + MAX_VIOLATION_DESCRIPTION_BYTES
        + MAX_METADATA_ENTRIES * (MAX_METADATA_VALUE_BYTES + 64)
        + 512)
        * 4
        / 3
    + 256;

/// `text` cut to at most `max` bytes (at a character boundary), saying how long it was.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    // Room for the suffix, so the result stays within `max`.
    let keep = rcpfed_core::rejection::truncate_str(text, max.saturating_sub(24));
    format!("{keep}…({} bytes)", text.len())
}

/// A status carrying the rejection's reason, metadata and field violations. Every part is
/// bounded (see [`MAX_TRAILER_BYTES`]): a refusal never echoes a whole hostile value.
pub fn rejection_status(rejection: &Rejection) -> Status {
    let metadata: HashMap<String, String> = rejection
        .metadata
        .iter()
        .take(MAX_METADATA_ENTRIES)
        .map(|(k, v)| {
            (
                bounded(k, MAX_METADATA_VALUE_BYTES),
                bounded(v, MAX_METADATA_VALUE_BYTES),
            )
        })
        .collect();
    let mut details = ErrorDetails::new();
    details.set_error_info(rejection.reason, ERROR_DOMAIN, metadata);
    let mut used = 0;
    for (i, v) in rejection.violations.iter().enumerate() {
        let field = bounded(&v.field, MAX_VIOLATION_FIELD_BYTES);
        let description = bounded(
            &format!("{} ({})", v.description, v.reason),
            MAX_VIOLATION_DESCRIPTION_BYTES,
        );
        // The bytes and their protobuf framing.
        used += field.len() + description.len() + 8;
        if used > MAX_VIOLATION_BYTES || i + 1 >= MAX_VIOLATIONS {
            let left = rejection.violations.len() - i;
            if left > 1 || used > MAX_VIOLATION_BYTES {
                details.add_bad_request_violation(
                    "",
                    format!(
                        "{left} more problems are not listed here, to keep the error small enough \
                         to deliver; fix the ones above and try again"
                    ),
                );
                break;
            }
        }
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(
        code_for(rejection.class),
        bounded(&rejection.message, MAX_MESSAGE_BYTES),
        details,
    )
}

/// A status for a malformed request field, with one field violation.
pub fn invalid_field(field: &str, reason: &'static str, description: impl Into<String>) -> Status {
    let description = description.into();
    let rejection = Rejection::new(RejectClass::Invalid, reason, description.clone())
        .with_violations(vec![rcpfed_core::rejection::Violation {
            field: field.to_string(),
            reason,
            description,
        }]);
    rejection_status(&rejection)
}

/// A status for a missing resource.
pub fn not_found(what: impl Into<String>) -> Status {
    rejection_status(&Rejection::new(
        RejectClass::NotFound,
        reasons::NOT_FOUND,
        what,
    ))
}

/// A status for a server-side failure. The details go to the log, not to the caller.
pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Status {
    tracing::error!(context, %error, "internal error");
    let mut details = ErrorDetails::new();
    details.set_error_info("INTERNAL", ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(
        Code::Internal,
        format!("internal error while {context}; the operator can find details in the server log"),
        details,
    )
}

/// Page tokens are opaque to clients; inside they are the last position served, in decimal.
pub fn parse_page_token(token: &str) -> Result<u64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse::<u64>().map_err(|_| {
        invalid_field(
            "page_token",
            reasons::INVALID_PAGE_TOKEN,
            "page_token is not one this server issued; start again without it",
        )
    })
}

/// The page size to use: 0 means 100, at most 1000, negative refused.
pub fn page_size(requested: i32) -> Result<usize, Status> {
    match requested {
        0 => Ok(100),
        1..=1000 => Ok(requested as usize),
        _ => Err(invalid_field(
            "page_size",
            reasons::INVALID_ARGUMENT,
            format!("page_size must be between 0 and 1000, got {requested}"),
        )),
    }
}

/// Runs blocking store work off the async runtime, its reads bound by the call's deadline
/// (see [`store_deadline`]). A store failure becomes [`store_status`]; any other failure
/// `INTERNAL` with the details in the server log.
pub async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Status>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let deadline = crate::deadline::call_deadline().map(store_deadline);
    match tokio::task::spawn_blocking(move || rcpfed_store::with_deadline(deadline, f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(
            match (&e as &dyn std::any::Any).downcast_ref::<rcpfed_store::StoreError>() {
                Some(store_error) => store_status(what, store_error),
                None => internal(what, &e),
            },
        ),
        Err(e) => Err(internal(what, &e)),
    }
}

/// The store's deadline for a call ending at `call_deadline`: a little earlier (a tenth of
/// the time left, at most half a second), so the handler answers with its reason before the
/// transport cuts the call without one.
pub fn store_deadline(call_deadline: tokio::time::Instant) -> std::time::Instant {
    let left = call_deadline.saturating_duration_since(tokio::time::Instant::now());
    let margin = (left / 10).min(std::time::Duration::from_millis(500));
    call_deadline.into_std() - margin
}

/// How long a client should wait before retrying after the store refused for lack of space.
pub const STORE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

/// The status for a store failure: UNAVAILABLE (STORE_FULL, STORE_UNAVAILABLE, with retry
/// information) when the disk or the storage is at fault, DEADLINE_EXCEEDED
/// (STORE_DEADLINE_EXCEEDED) for a read stopped at its deadline, else INTERNAL.
pub fn store_status(what: &str, error: &rcpfed_store::StoreError) -> Status {
    if let rcpfed_store::StoreError::NotLeader(why) = error {
        return not_leader(&format!("{what} was refused: {why}"), None);
    }
    let (code, reason, message) = if let rcpfed_store::StoreError::DeadlineExceeded(why) = error {
        (
            Code::DeadlineExceeded,
            reasons::STORE_DEADLINE_EXCEEDED,
            format!(
                "{what} did not finish before the call's deadline: {why}; nothing was changed; \
                 retry with a narrower request or a longer deadline"
            ),
        )
    } else if error.is_full() {
        tracing::error!(context = what, %error, "store full: refusing new work until space returns");
        (
            Code::Unavailable,
            reasons::STORE_FULL,
            format!(
                "the server's storage is full, so {what} was refused and nothing of it was \
                 stored; reads still work; retry later (the operator must free disk space or \
                 raise max_db_bytes)"
            ),
        )
    } else if error.is_unavailable() {
        tracing::error!(context = what, %error, "store unavailable");
        (
            Code::Unavailable,
            reasons::STORE_UNAVAILABLE,
            format!("the server's storage failed while {what}; nothing was changed; retry later"),
        )
    } else {
        return internal(what, error);
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    if code == Code::Unavailable {
        details.set_retry_info(Some(STORE_RETRY_DELAY));
    }
    Status::with_error_details(code, message, details)
}

/// How long a client should wait before retrying a write a standby hub refused (the time a
/// standby needs to notice a dead leader and take over is a few seconds).
pub const NOT_LEADER_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// UNAVAILABLE with reason NOT_LEADER: this hub process does not sequence now; `leader` is the
/// endpoint the lease holder advertises, when known. Nothing was changed.
pub fn not_leader(why: &str, leader: Option<&str>) -> Status {
    let mut metadata = HashMap::new();
    if let Some(leader) = leader.filter(|l| !l.is_empty()) {
        metadata.insert("leader".to_string(), leader.to_string());
    }
    let mut details = ErrorDetails::new();
    details.set_error_info(reasons::NOT_LEADER, ERROR_DOMAIN, metadata);
    details.set_retry_info(Some(NOT_LEADER_RETRY_DELAY));
    Status::with_error_details(
        Code::Unavailable,
        format!("{why}; nothing was changed; send writes to the leading hub (or retry)"),
        details,
    )
}

/// Whether `status` is a hub's NOT_LEADER refusal.
pub fn is_not_leader(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && status
            .get_error_details()
            .error_info()
            .is_some_and(|info| info.reason == reasons::NOT_LEADER)
}

/// AIP-158 paging over rows fetched with one extra: keeps `limit` rows and returns the next
/// page token (the position of the last row kept), or "" on the last page.
pub fn next_page<T>(rows: &mut Vec<T>, limit: usize, position: impl Fn(&T) -> u64) -> String {
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|r| position(r).to_string())
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// The next page token of a page that sent the first `sent` of `rows` (read with a byte bound,
/// `more` when the store left rows out): after the last one sent, or empty when nothing was
/// left out.
pub fn next_page_after<T>(
    rows: &[T],
    sent: usize,
    more: bool,
    position: impl Fn(&T) -> u64,
) -> String {
    match rows.get(..sent).and_then(|sent_rows| sent_rows.last()) {
        Some(last) if more || sent < rows.len() => position(last).to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcpfed_core::rejection::Violation;

    #[test]
    fn a_long_violation_list_is_cut_to_fit_the_trailers() {
        let violations: Vec<Violation> = (0..100)
            .map(|i| {
                Violation::new(
                    format!("indicator_snapshot.observations[{i}].ref_area"),
                    reasons::NOT_A_MEMBER_STATE,
                    format!(
                        "\"ARE\" is not a member state of colombo for the whole of period {i}; \
                         its member states are AFG, BGD, KHM, CHN, IND, IDN, NPL, PAK, PHL, \
                         LKA, THA, VNM"
                    ),
                )
            })
            .collect();
        let rejection =
            Rejection::invalid(reasons::NOT_A_MEMBER_STATE, "observations[0]: not a member")
                .with_violations(violations);
        let status = rejection_status(&rejection);
        // Base64 in the trailer: 4/3 of the bytes, well under HTTP/2's default 16 KiB.
        assert!(
            status.details().len() * 4 / 3 < 12 * 1024,
            "{} bytes",
            status.details().len()
        );
        let listed = status
            .get_details_bad_request()
            .map(|b| b.field_violations)
            .unwrap_or_default();
        assert!(listed.len() > 5 && listed.len() < 100, "{}", listed.len());
        let last = listed
            .last()
            .map(|v| v.description.clone())
            .unwrap_or_default();
        assert!(last.contains("more problems are not listed"), "{last}");
        assert_eq!(
            status.get_details_error_info().map(|e| e.reason),
            Some(reasons::NOT_A_MEMBER_STATE.to_string())
        );
    }

    #[tokio::test]
    async fn store_work_runs_under_the_call_deadline_and_a_stopped_query_says_so() {
        let call_deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        let seen = crate::deadline::CALL_DEADLINE
            .scope(
                call_deadline,
                blocking("reading", || {
                    Ok::<_, rcpfed_store::StoreError>(rcpfed_store::current_deadline())
                }),
            )
            .await
            .ok()
            .flatten();
        // A little before the call's own deadline, so the handler answers first.
        let margin = seen.map(|d| call_deadline.into_std().saturating_duration_since(d));
        assert!(
            margin.is_some_and(
                |m| m > std::time::Duration::ZERO && m <= std::time::Duration::from_millis(500)
            ),
            "{margin:?}"
        );
        let stopped = blocking("listing statements", || {
            Err::<(), _>(rcpfed_store::StoreError::DeadlineExceeded(
                "the query ran past the call's deadline and was stopped".into(),
            ))
        })
        .await;
        let Err(status) = stopped else {
            panic!("a stopped query succeeded")
        };
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(
            status
                .get_error_details()
                .error_info()
                .map(|e| e.reason.clone()),
            Some(reasons::STORE_DEADLINE_EXCEEDED.to_string())
        );
        assert!(
            status
                .message()
                .starts_with("listing statements did not finish")
        );
    }

    #[test]
    fn huge_values_are_cut_everywhere() {
        let huge = "x".repeat(100_000);
        let violations = (0..1000)
            .map(|i| Violation::new(format!("{huge}{i}"), reasons::TOO_LONG, huge.clone()))
            .collect();
        let rejection = Rejection::invalid(reasons::INVALID_DOCUMENT_NAME, huge.clone())
            .with_violations(violations)
            .with_meta(huge.clone(), huge.clone());
        let status = rejection_status(&rejection);
        let trailers = status.message().len() * 3 + status.details().len() * 4 / 3 + 64;
        assert!(trailers <= MAX_TRAILER_BYTES, "{trailers}");
        const { assert!(MAX_TRAILER_BYTES < 8 * 1024) };
        assert!(
            status.message().ends_with("(100000 bytes)"),
            "{}",
            status.message()
        );
        assert_eq!(
            status.get_details_error_info().map(|e| e.reason),
            Some(reasons::INVALID_DOCUMENT_NAME.to_string())
        );
        let listed = status
            .get_details_bad_request()
            .map(|b| b.field_violations)
            .unwrap_or_default();
        assert!(!listed.is_empty() && listed.len() <= MAX_VIOLATIONS);
    }

    #[test]
    fn a_short_violation_list_is_kept_whole() {
        let rejection =
            Rejection::invalid(reasons::UNIT_MISMATCH, "bad unit").with_violations(vec![
                Violation::new(
                    "indicator_snapshot.observations[1].unit_measure",
                    reasons::UNIT_MISMATCH,
                    "\"USD\" is not a unit of REMIT_INFLOW",
                ),
            ]);
        let listed = rejection_status(&rejection)
            .get_details_bad_request()
            .map(|b| b.field_violations)
            .unwrap_or_default();
        assert_eq!(listed.len(), 1);
    }
}
