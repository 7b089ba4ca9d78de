//! Domain rejections → gRPC status with `google.rpc.ErrorInfo` and `google.rpc.BadRequest`.

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

/// A status carrying the rejection's reason, metadata and field violations.
pub fn rejection_status(rejection: &Rejection) -> Status {
    let metadata: HashMap<String, String> = rejection.metadata.iter().cloned().collect();
    let mut details = ErrorDetails::new();
    details.set_error_info(rejection.reason, ERROR_DOMAIN, metadata);
    for v in &rejection.violations {
        details.add_bad_request_violation(
            v.field.clone(),
            format!("{} ({})", v.description, v.reason),
        );
    }
    Status::with_error_details(
        code_for(rejection.class),
        rejection.message.clone(),
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

/// Runs blocking store work off the async runtime; a failure becomes `INTERNAL` with the
/// details in the server log.
pub async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Status>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(what, &e)),
        Err(e) => Err(internal(what, &e)),
    }
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
