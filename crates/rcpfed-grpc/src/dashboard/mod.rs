//! The dashboard: a read-only web application on the public HTTP listener, under
//! `/dashboard/` (and `/` redirects there). Its HTML, CSS and JavaScript are compiled into
//! the binary, so it works offline and fetches nothing from elsewhere; the page reads JSON
//! from `/dashboard/api/...`, built here from a [`DashboardSource`] (what differs between the
//! hub and a node: the log and the policy statements) and the [`IndicatorStore`] that the
//! IndicatorService reads too, so the dashboard shows what `IndicatorService` answers.
//!
//! Every query parameter is checked and bounded, and every answer is bounded in rows. The
//! page writes document text only through `textContent` and attributes, never as HTML; the
//! Content-Security-Policy allows only the dashboard's own script and style.

mod json;

use crate::shared::SharedFederation;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use rcpfed_core::Digest;
use rcpfed_core::codes::is_indicator_code;
use rcpfed_core::merkle::Hash;
use rcpfed_store::{
    IndicatorStore, ObservationFilter, StoreError, catalogue_chain, coherence_chain,
};
use std::sync::Arc;

pub use json::language_direction;

/// Most observations one chart reads; a series beyond it is cut and says so.
pub const MAX_SERIES_POINTS: usize = 5000;
/// Most policy documents listed.
pub const MAX_POLICY_DOCUMENTS: usize = 200;
/// Most bytes of observations (as JSON) in one series answer, and of signed policy payloads
/// in one policy list: a phone on a slow link still gets an answer.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Longest query string accepted.
pub const MAX_QUERY_BYTES: usize = 256;

/// The latest checkpoint as this server holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointView {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// When the hub signed it (unix ms), where known (a node keeps only the note).
    pub created_at_ms: Option<i64>,
    /// The signed note, verbatim.
    pub note: String,
}

/// One witness's cosignature of the latest checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct CosignatureView {
    /// The witness.
    pub witness_id: String,
    /// When it cosigned (unix seconds, as signed).
    pub timestamp: u64,
}

/// What one witness has done, in plain words.
#[derive(Clone, Debug, PartialEq)]
pub struct WitnessView {
    /// The witness member.
    pub id: String,
    /// The largest tree size it is known to have cosigned, if any.
    pub cosigned_size: Option<u64>,
    /// Its state in words ("cosigned the latest checkpoint", ...).
    pub state: String,
}

/// The log as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogView {
    /// Whose view this is, in plain words ("the hub's log", "the checkpoint this node
    /// trusts").
    pub viewpoint: String,
    /// The latest checkpoint; None while the log is empty.
    pub checkpoint: Option<CheckpointView>,
    /// Cosignatures of the latest checkpoint, by witness id.
    pub cosignatures: Vec<CosignatureView>,
    /// Cosignatures that make a checkpoint final.
    pub quorum: u32,
    /// The size of the latest final checkpoint, if any.
    pub final_size: Option<u64>,
    /// Every witness of the federation in force, with its state.
    pub witnesses: Vec<WitnessView>,
}

/// A policy summary statement as stored (the envelope is decoded for the page).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyStatement {
    /// The publishing member.
    pub node_id: String,
    /// The logical document.
    pub document: String,
    /// Its revision.
    pub revision: u32,
    /// Feed index (the log index is feed_index - 1).
    pub feed_index: u64,
    /// SHA-256 of the payload.
    pub digest: Digest,
    /// When the hub accepted it (unix ms).
    pub accepted_at_ms: i64,
    /// The signed envelope, verbatim.
    pub envelope: Vec<u8>,
}

/// What the hub and a node each read their own way. Called on a blocking thread.
pub trait DashboardSource: Send + Sync + 'static {
    /// "hub" or "node", shown on the page.
    fn server_role(&self) -> &'static str;
    /// The serving member's id; None: the hub (named by the federation in force).
    fn server_id(&self) -> Option<&str> {
        None
    }
    /// The latest checkpoint, its cosignatures and each witness's state, for the witnesses of
    /// `federation`.
    fn log_view(
        &self,
        federation: &rcpfed_core::members::Federation,
    ) -> Result<LogView, StoreError>;
    /// Policy summary statements after feed index `after`, in feed order: at most `limit`, and
    /// no more once the next one's envelope and receipt would take the page past `max_bytes`
    /// (at least one); also whether more follow.
    fn policy_page(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<PolicyStatement>, bool), StoreError>;
}

/// Policy statements read per page while looking for the latest revisions.
const POLICY_PAGE: usize = 200;
/// Most bytes of policy statements read per page (at least one statement): summaries may each
/// be 1 MiB.
const POLICY_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The latest revision of each policy document, the most recently accepted first chosen: at
/// most `max_documents`, and no more once their envelopes reach `max_bytes` (at least one).
/// Two passes over the policy statements: the first keeps only each document's latest feed
/// index and size, the second reads just the chosen ones, so memory stays within one page
/// and the answer. Also returns whether documents were left out.
pub fn latest_policies(
    source: &dyn DashboardSource,
    max_documents: usize,
    max_bytes: usize,
) -> Result<(Vec<PolicyStatement>, bool), StoreError> {
    let mut latest: std::collections::HashMap<(String, String), (u64, usize)> =
        std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let (page, more) = source.policy_page(after, POLICY_PAGE, POLICY_PAGE_BYTES)?;
        for s in page {
            after = s.feed_index;
            latest.insert((s.node_id, s.document), (s.feed_index, s.envelope.len()));
        }
        if !more {
            break;
        }
    }
    let mut newest: Vec<(u64, usize)> = latest.into_values().collect();
    newest.sort_unstable_by_key(|n| std::cmp::Reverse(n.0));
    let mut chosen = std::collections::HashSet::new();
    let mut bytes = 0;
    for &(feed_index, len) in &newest {
        if chosen.len() == max_documents || (!chosen.is_empty() && bytes + len > max_bytes) {
            break;
        }
        bytes += len;
        chosen.insert(feed_index);
    }
    let left_out = chosen.len() < newest.len();
    let first = newest
        .iter()
        .map(|n| n.0)
        .filter(|f| chosen.contains(f))
        .min();
    let mut out = Vec::with_capacity(chosen.len());
    // Only from just before the oldest chosen one: nothing earlier is wanted.
    let mut after = first.map_or(u64::MAX, |f| f.saturating_sub(1));
    while out.len() < chosen.len() {
        let (page, more) = source.policy_page(after, POLICY_PAGE, POLICY_PAGE_BYTES)?;
        for s in page {
            after = s.feed_index;
            if chosen.contains(&s.feed_index) {
                out.push(s);
            }
        }
        if !more {
            break;
        }
    }
    Ok((out, left_out))
}

/// Everything the dashboard's JSON is read from.
struct Reader {
    source: Arc<dyn DashboardSource>,
    indicators: Arc<dyn IndicatorStore>,
    federation: SharedFederation,
    hub_id: String,
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Only the dashboard's own files: no inline script, no other origin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes (`/`, `/dashboard`, `/dashboard/`, its assets and
/// `/dashboard/api/...`), to merge into the public listener's router. `hub_id` names the
/// hub's chains of catalogue versions and coherence reports.
pub fn router(
    source: Arc<dyn DashboardSource>,
    indicators: Arc<dyn IndicatorStore>,
    federation: SharedFederation,
    hub_id: impl Into<String>,
) -> axum::Router {
    let reader = Arc::new(Reader {
        source,
        indicators,
        federation,
        hub_id: hub_id.into(),
    });
    axum::Router::new()
        .route("/", get(|| async { redirect("/dashboard/") }))
        .route("/dashboard", get(|| async { redirect("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/dashboard/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route("/dashboard/api/overview", get(overview))
        .route("/dashboard/api/members", get(members))
        .route("/dashboard/api/log", get(log))
        .route("/dashboard/api/policies", get(policies))
        .route("/dashboard/api/catalogue", get(catalogue))
        .route("/dashboard/api/series", get(series))
        .route("/dashboard/api/coherence", get(coherence))
        .with_state(reader)
}

/// What the routes list in the listener's 404 answer.
pub const SERVED: &str = "the dashboard at /dashboard/ (JSON under /dashboard/api/)";

fn redirect(to: &'static str) -> Response {
    (
        http::StatusCode::SEE_OTHER,
        [(http::header::LOCATION, to)],
        "",
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (http::header::CONTENT_TYPE, content_type),
            (http::header::CACHE_CONTROL, "no-cache"),
            (http::header::CONTENT_SECURITY_POLICY, CSP),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (http::header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// A refusal or failure, as plain words (the page shows them).
#[derive(Debug)]
struct ApiError {
    status: http::StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: http::StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: http::StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// The store could not be read (busy, full, restarting): worth a retry. The detail goes
    /// to the log, not to the public client.
    fn unavailable(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, what, "dashboard read failed");
        ApiError {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            message: format!("{what} could not be read now, try again"),
        }
    }

    /// Something stored does not decode: a fault of this server, not worth a retry. The
    /// detail goes to the log, not to the public client.
    fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, what, "dashboard: stored data does not decode");
        ApiError {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{what} could not be decoded; the server's log says why"),
        }
    }

    fn into_response(self) -> Response {
        (
            self.status,
            [
                (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (http::header::CACHE_CONTROL, "no-store"),
            ],
            format!("{}\n", self.message),
        )
            .into_response()
    }
}

fn json_answer(result: Result<serde_json::Value, ApiError>) -> Response {
    match result {
        Ok(value) => match serde_json::to_vec(&value) {
            Ok(bytes) => (
                [
                    (http::header::CONTENT_TYPE, "application/json"),
                    (http::header::CACHE_CONTROL, "no-store"),
                    (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                bytes,
            )
                .into_response(),
            Err(e) => ApiError::internal("the answer", e).into_response(),
        },
        Err(e) => e.into_response(),
    }
}

/// Runs a store read on a blocking thread.
async fn read<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::unavailable(what, e))?
}

/// The query string's parameters, each allowed at most once and only if in `allowed`.
/// Values are plain codes (letters, digits, `_`, `-`, `.`), so nothing needs decoding.
fn parameters<'q>(
    query: &'q Option<String>,
    allowed: &[&str],
) -> Result<Vec<(&'q str, &'q str)>, ApiError> {
    let Some(query) = query.as_deref().filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the query string is {} bytes; at most {MAX_QUERY_BYTES} are accepted",
            query.len()
        )));
    }
    let mut out: Vec<(&str, &str)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&name) {
            let shown: String = name.chars().take(32).collect();
            return Err(ApiError::bad_request(format!(
                "unknown parameter {shown:?}; this endpoint takes {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::bad_request(format!(
                "parameter {name} is given twice"
            )));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(ApiError::bad_request(format!(
                "parameter {name} may hold only letters, digits, '_', '-' and '.'"
            )));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn parameter<'q>(params: &[(&str, &'q str)], name: &str) -> Option<&'q str> {
    params
        .iter()
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| *v)
}

fn no_parameters(query: &Option<String>) -> Result<(), ApiError> {
    parameters(query, &[]).map(|_| ())
}

async fn overview(State(r): State<Arc<Reader>>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        no_parameters(&q)?;
        let federation = r.federation.get();
        let store = Arc::clone(&r.indicators);
        let feed_size = read("the feed size", move || {
            store
                .applied_feed_size()
                .map_err(|e| ApiError::unavailable("the feed size", e))
        })
        .await?;
        Ok(serde_json::json!({
            "server": r.source.server_role(),
            "server_id": r.source.server_id().unwrap_or(&federation.hub_id),
            "federation_id": federation.federation_id,
            "hub_id": federation.hub_id,
            "registry_version": federation.registry_version(),
            "feed_size": feed_size,
        }))
    };
    json_answer(answer.await)
}

async fn members(State(r): State<Arc<Reader>>, RawQuery(q): RawQuery) -> Response {
    json_answer(no_parameters(&q).map(|()| json::members(&r.federation.get())))
}

async fn log(State(r): State<Arc<Reader>>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        no_parameters(&q)?;
        let source = Arc::clone(&r.source);
        let federation = r.federation.get();
        let view = read("the log", move || {
            source
                .log_view(&federation)
                .map_err(|e| ApiError::unavailable("the log", e))
        })
        .await?;
        Ok(json::log(&view))
    };
    json_answer(answer.await)
}

async fn policies(State(r): State<Arc<Reader>>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        no_parameters(&q)?;
        let source = Arc::clone(&r.source);
        let (statements, more) = read("the policy summaries", move || {
            latest_policies(source.as_ref(), MAX_POLICY_DOCUMENTS, MAX_ANSWER_BYTES)
                .map_err(|e| ApiError::unavailable("the policy summaries", e))
        })
        .await?;
        json::policies(&statements, more, MAX_POLICY_DOCUMENTS, MAX_ANSWER_BYTES)
            .map_err(|e| ApiError::internal("a stored policy summary", e))
    };
    json_answer(answer.await)
}

/// The latest catalogue version, decoded; None before the hub issued one.
fn latest_catalogue(
    store: &dyn IndicatorStore,
    hub_id: &str,
) -> Result<Option<(rcpfed_proto::v1::CatalogueDocument, u64)>, ApiError> {
    let Some(doc) = store
        .hub_document(&catalogue_chain(hub_id), None)
        .map_err(|e| ApiError::unavailable("the catalogue", e))?
    else {
        return Ok(None);
    };
    let catalogue = json::decode_hub_payload(&doc.envelope)
        .map_err(|e| ApiError::internal("the stored catalogue", e))?;
    Ok(Some((catalogue, doc.feed_index)))
}

async fn catalogue(State(r): State<Arc<Reader>>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        no_parameters(&q)?;
        let store = Arc::clone(&r.indicators);
        let hub_id = r.hub_id.clone();
        let latest = read("the catalogue", move || {
            latest_catalogue(store.as_ref(), &hub_id)
        })
        .await?;
        Ok(match latest {
            Some((catalogue, feed_index)) => json::catalogue(&catalogue, feed_index),
            None => serde_json::json!({ "version": 0, "indicators": [] }),
        })
    };
    json_answer(answer.await)
}

async fn series(State(r): State<Arc<Reader>>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        let params = parameters(&q, &["indicator"])?;
        let indicator = parameter(&params, "indicator")
            .ok_or_else(|| {
                ApiError::bad_request("parameter indicator is required, for example MIG_STOCK")
            })?
            .to_string();
        if !is_indicator_code(&indicator) {
            return Err(ApiError::bad_request(format!(
                "{indicator:?} is not an indicator code (upper-case letters, digits and '_', starting with a letter)"
            )));
        }
        let store = Arc::clone(&r.indicators);
        let hub_id = r.hub_id.clone();
        let (rows, feed_size, name) = read("the observations", move || {
            let catalogue = latest_catalogue(store.as_ref(), &hub_id)?;
            let name = match &catalogue {
                Some((c, _)) => match c.indicators.iter().find(|i| i.code == indicator) {
                    Some(i) => i.name.clone(),
                    None => {
                        return Err(ApiError::not_found(format!(
                            "indicator {indicator} is not in catalogue version {}",
                            c.version
                        )));
                    }
                },
                None => String::new(),
            };
            let filter = ObservationFilter {
                indicator,
                ..ObservationFilter::default()
            };
            let (rows, feed_size) = store
                .query_observations_at(&filter, None, MAX_SERIES_POINTS + 1)
                .map_err(|e| ApiError::unavailable("the observations", e))?;
            Ok((rows, feed_size, name))
        })
        .await?;
        Ok(json::series(
            &rows,
            feed_size,
            &name,
            MAX_SERIES_POINTS,
            MAX_ANSWER_BYTES,
        ))
    };
    json_answer(answer.await)
}

async fn coherence(State(r): State<Arc<Reader>>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        let params = parameters(&q, &["number"])?;
        let number = match parameter(&params, "number") {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n > 0 && text.len() <= 20 => Some(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "parameter number must be a report number from 1, got {text:?}"
                    )));
                }
            },
        };
        let store = Arc::clone(&r.indicators);
        let chain = coherence_chain(&r.hub_id);
        let doc = read("the coherence report", move || {
            store
                .hub_document(&chain, number)
                .map_err(|e| ApiError::unavailable("the coherence report", e))
        })
        .await?;
        let Some(doc) = doc else {
            return Ok(match number {
                None => serde_json::json!({ "report": null }),
                Some(n) => {
                    return Err(ApiError::not_found(format!(
                        "coherence report {n} does not exist"
                    )));
                }
            });
        };
        let report = json::decode_hub_payload(&doc.envelope)
            .map_err(|e| ApiError::internal("the stored coherence report", e))?;
        Ok(json::coherence(&report, doc.feed_index, &doc.digest))
    };
    json_answer(answer.await)
}

#[cfg(test)]
mod tests;
