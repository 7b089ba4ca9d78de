//! The SDMX REST API (read-only), SDMX REST 1.5.0 (the web-service part of SDMX 2.1),
//! mounted on the public HTTP listener under `/sdmx` by the hub and by every node.
//!
//! It answers from an [`IndicatorStore`], the same read abstraction the IndicatorService
//! uses, so a node answers from its verified mirror exactly as the hub does. See
//! docs/spec/sdmx-rest.md for the paths, parameters, media types and what is not implemented.
//!
//! Every input is bounded before any work ([`limits`]); a data answer is streamed in pieces
//! while the store is read in batches, after a first pass that counts the matching
//! observations (so an empty answer is a 404 and an oversized one a 413 before anything is
//! sent).

use crate::indicators::{latest_catalogue, observation_filter};
use crate::shared::SharedFederation;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, header};
use rcpfed_proto::v1;
use rcpfed_sdmx::structure::{
    self, Artefact, References, Resource, STRUCTURE_MEDIA_TYPE, Structures,
};
use rcpfed_sdmx::{DataFormat, DataWriter, SdmxStructure, dimension_value, is_sdmx_code};
use rcpfed_store::{IndicatorStore, ObservationCursor, ObservationFilter, ObservationRow};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bounds on requests and answers, checked before any work.
pub mod limits {
    /// Longest request path (after the `/sdmx` prefix), in bytes.
    pub const MAX_PATH_BYTES: usize = 2048;
    /// Longest query string, in bytes.
    pub const MAX_QUERY_BYTES: usize = 2048;
    /// Longest query parameter value, in bytes.
    pub const MAX_PARAMETER_BYTES: usize = 64;
    /// Longest `Accept` header, in bytes.
    pub const MAX_ACCEPT_BYTES: usize = 1024;
    /// Longest key (the `key` path segment), in bytes.
    pub const MAX_KEY_BYTES: usize = 1024;
    /// Most parts (dimensions) in a key.
    pub const MAX_KEY_PARTS: usize = 32;
    /// Most `+`-separated values in one key part, provider list or id list.
    pub const MAX_VALUES: usize = 100;
    /// Most observations one data answer holds; a larger answer is refused with 413 (SDMX
    /// error 510, response size exceeds service limit) before anything is sent.
    pub const MAX_OBSERVATIONS: u64 = 1_000_000;
    /// Rows read from the store per batch.
    pub const BATCH: usize = 5000;
    /// Most rows one answer may read from the store, matching or not: a key part the store
    /// cannot select itself (several codes, a default code) is filtered after reading, so the
    /// observation cap alone does not bound the reading. More is refused with 413.
    pub const MAX_ROWS_READ: u64 = 10_000_000;
    /// A data answer is sent in pieces of about this size.
    pub const PIECE_BYTES: usize = 64 * 1024;
    /// Data answers streamed at once (each holds a blocking thread while it is read); one more
    /// is answered 503 at once.
    pub const MAX_STREAMS: usize = 4;
    /// How long a client may leave a piece of a data answer unread before the answer is
    /// abandoned.
    pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
    /// Slowest a client may take a data answer, bytes per second of the time the answer waited
    /// for it, once it has waited [`SEND_GRACE`] in all: a client taking one piece just inside
    /// [`SEND_TIMEOUT`] cannot hold one of the [`MAX_STREAMS`] for hours. (Time the server
    /// spends reading the store is not counted.)
    pub const MIN_SEND_RATE: u64 = 32 * 1024;
    /// How long a data answer may wait for its client in all before [`MIN_SEND_RATE`] applies.
    pub const SEND_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
}

/// What the API reads: the store (the hub's, or a node's mirror), the hub's member id (its
/// chains hold the catalogue) and the federation in force (its publishers are the data
/// providers).
pub struct SdmxSource {
    store: Arc<dyn IndicatorStore>,
    hub_id: String,
    federation: SharedFederation,
    /// Slots for data answers being streamed ([`limits::MAX_STREAMS`]).
    streams: Arc<tokio::sync::Semaphore>,
}

impl SdmxSource {
    /// The source over `store`.
    pub fn new(
        store: Arc<dyn IndicatorStore>,
        hub_id: impl Into<String>,
        federation: SharedFederation,
    ) -> Self {
        SdmxSource {
            store,
            hub_id: hub_id.into(),
            federation,
            streams: Arc::new(tokio::sync::Semaphore::new(limits::MAX_STREAMS)),
        }
    }
}

/// The API's routes, to be nested under `/sdmx`.
pub fn router(source: SdmxSource) -> axum::Router {
    axum::Router::new()
        .route("/{*path}", axum::routing::get(handle))
        .route("/", axum::routing::get(index))
        .with_state(Arc::new(source))
}

/// What `/sdmx/` (and an unknown path) says is served here.
pub const SERVED: &str = "/sdmx/data/{flowRef}[/{key}[/{providerRef}]] and /sdmx/{dataflow|datastructure|codelist|conceptscheme|dataproviderscheme}[/{agencyID}[/{resourceID}[/{version}[/{itemID}]]]] (SDMX REST 1.5.0)";

async fn index() -> Response {
    plain(
        StatusCode::OK,
        format!("SDMX REST 1.5.0 (read-only): {SERVED}\n"),
    )
}

/// An error answer: an HTTP status with a short plain-words body, as SDMX REST maps its
/// error codes (100 no results → 404, 140 syntax error → 400, 501 not implemented, 510
/// response too large → 413, 500 internal).
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        RestError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, message)
    }
    fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(context, %error, "SDMX REST internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "internal error while {context}; the operator can find details in the server log"
            ),
        )
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        plain(self.status, format!("{}\n", self.message))
    }
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `s` cut to at most 64 characters, for error messages.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Percent-decodes one path segment or query component.
fn percent_decode(s: &str) -> Result<String, RestError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    RestError::bad(format!("{:?} has a malformed %-escape", shown(s)))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| RestError::bad(format!("{:?} is not UTF-8 once %-decoded", shown(s))))
}

/// The query parameters, each at most once, each name one of `allowed`.
fn query_parameters(uri: &Uri, allowed: &[&str]) -> Result<BTreeMap<String, String>, RestError> {
    let query = uri.query().unwrap_or_default();
    if query.len() > limits::MAX_QUERY_BYTES {
        return Err(RestError::bad(format!(
            "the query string is {} bytes; at most {} are accepted",
            query.len(),
            limits::MAX_QUERY_BYTES
        )));
    }
    let mut params = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        let value = percent_decode(value)?;
        if !allowed.contains(&name.as_str()) {
            return Err(RestError::bad(format!(
                "unknown query parameter {:?}; this query accepts: {}",
                shown(&name),
                allowed.join(", ")
            )));
        }
        if value.len() > limits::MAX_PARAMETER_BYTES {
            return Err(RestError::bad(format!(
                "parameter {name} is {} bytes long; at most {} are accepted",
                value.len(),
                limits::MAX_PARAMETER_BYTES
            )));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(RestError::bad(format!("parameter {name} is given twice")));
        }
    }
    Ok(params)
}

/// A `+`-separated list of ids, or every id (`all`, or the segment left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids(Option<Vec<String>>);

impl Ids {
    fn all() -> Self {
        Ids(None)
    }

    /// Parses a segment; `version` allows the `.` of version numbers and `latest`.
    fn parse(segment: Option<&str>, what: &str, version: bool) -> Result<Self, RestError> {
        let Some(segment) = segment else {
            return Ok(Ids::all());
        };
        if segment == "all" || (version && segment == "latest") {
            return Ok(Ids::all());
        }
        let ids: Vec<String> = segment.split('+').map(str::to_string).collect();
        if ids.len() > limits::MAX_VALUES {
            return Err(RestError::bad(format!(
                "{what} lists {} values; at most {} are accepted",
                ids.len(),
                limits::MAX_VALUES
            )));
        }
        for id in &ids {
            let ok = if version {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
            } else {
                is_sdmx_code(id)
            };
            if !ok {
                return Err(RestError::bad(format!(
                    "{:?} is not a valid {what} (letters, digits, '_', '@', '$', '-'{})",
                    shown(id),
                    if version { " or '.'" } else { "" }
                )));
            }
        }
        Ok(Ids(Some(ids)))
    }

    fn matches(&self, id: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|i| i == id))
    }
}

/// A media type a client accepts, with its `version` parameter if any.
type Accepted = (String, Option<String>);

/// The media types a client accepts, best first (by `q`, then by order); None without an
/// `Accept` header (anything goes). Entries with `q=0` are left out.
fn accepted(headers: &HeaderMap) -> Result<Option<Vec<Accepted>>, RestError> {
    let Some(value) = headers.get(header::ACCEPT) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| RestError::bad("the Accept header is not ASCII"))?;
    if text.len() > limits::MAX_ACCEPT_BYTES {
        return Err(RestError::bad(format!(
            "the Accept header is {} bytes; at most {} are accepted",
            text.len(),
            limits::MAX_ACCEPT_BYTES
        )));
    }
    let mut entries: Vec<(u16, usize, String, Option<String>)> = Vec::new();
    for (order, entry) in text.split(',').enumerate() {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if media.is_empty() {
            continue;
        }
        let mut q = 1000u16;
        let mut version = None;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => {
                    q = value
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .map(|q| (q * 1000.0) as u16)
                        .unwrap_or(0)
                }
                "version" => version = Some(value.to_string()),
                _ => {}
            }
        }
        if q > 0 {
            entries.push((q, order, media, version));
        }
    }
    entries.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(Some(
        entries.into_iter().map(|(_, _, m, v)| (m, v)).collect(),
    ))
}

/// Data media types: SDMX-ML 2.1 generic (the default) and structure-specific, SDMX-JSON
/// 2.0.0 and 1.0.0, SDMX-CSV 2.0.0.
fn data_format(headers: &HeaderMap) -> Result<DataFormat, RestError> {
    let Some(wanted) = accepted(headers)? else {
        return Ok(DataFormat::Generic);
    };
    for (media, version) in &wanted {
        let v = version.as_deref();
        let format = match (media.as_str(), v) {
            (
                "application/vnd.sdmx.genericdata+xml"
                | "application/xml"
                | "text/xml"
                | "*/*"
                | "application/*",
                None | Some("2.1"),
            ) => Some(DataFormat::Generic),
            ("application/vnd.sdmx.structurespecificdata+xml", None | Some("2.1")) => {
                Some(DataFormat::StructureSpecific)
            }
            ("application/vnd.sdmx.data+json" | "application/json", None | Some("2.0.0")) => {
                Some(DataFormat::Json)
            }
            ("application/vnd.sdmx.data+json", Some("1.0.0")) => Some(DataFormat::Json1),
            ("application/vnd.sdmx.data+csv" | "text/csv", None | Some("2.0.0")) => {
                Some(DataFormat::Csv)
            }
            _ => None,
        };
        if let Some(format) = format {
            return Ok(format);
        }
    }
    Err(RestError::new(
        StatusCode::NOT_ACCEPTABLE,
        format!(
            "none of the accepted media types ({}) is served for data; available: {}, {}, {}, {} and {}",
            shown(
                &wanted
                    .iter()
                    .map(|(m, v)| match v {
                        Some(v) => format!("{m};version={v}"),
                        None => m.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            DataFormat::Generic.media_type(),
            DataFormat::StructureSpecific.media_type(),
            DataFormat::Json.media_type(),
            DataFormat::Json1.media_type(),
            DataFormat::Csv.media_type(),
        ),
    ))
}

fn structure_format(headers: &HeaderMap) -> Result<(), RestError> {
    let acceptable = accepted(headers)?.is_none_or(|wanted| {
        wanted.iter().any(|(media, version)| {
            matches!(
                media.as_str(),
                "application/vnd.sdmx.structure+xml"
                    | "application/xml"
                    | "text/xml"
                    | "*/*"
                    | "application/*"
            ) && matches!(version.as_deref(), None | Some("2.1"))
        })
    });
    if acceptable {
        Ok(())
    } else {
        Err(RestError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "structures are served as {STRUCTURE_MEDIA_TYPE} only (SDMX-JSON structure messages are not implemented)"
            ),
        ))
    }
}

/// Resources SDMX REST 1.5.0 defines that this API does not serve.
const NOT_IMPLEMENTED: [&str; 22] = [
    "metadata",
    "schema",
    "availableconstraint",
    "structure",
    "metadatastructure",
    "categoryscheme",
    "categorisation",
    "hierarchicalcodelist",
    "metadataflow",
    "provisionagreement",
    "structureset",
    "process",
    "reportingtaxonomy",
    "organisationscheme",
    "agencyscheme",
    "dataconsumerscheme",
    "organisationunitscheme",
    "contentconstraint",
    "attachmentconstraint",
    "actualconstraint",
    "allowedconstraint",
    "transformationscheme",
];

async fn handle(State(source): State<Arc<SdmxSource>>, uri: Uri, headers: HeaderMap) -> Response {
    match route(source, &uri, &headers).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn route(
    source: Arc<SdmxSource>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, RestError> {
    let path = uri.path();
    if path.len() > limits::MAX_PATH_BYTES {
        return Err(RestError::new(
            StatusCode::URI_TOO_LONG,
            format!(
                "the path is {} bytes; at most {} are accepted",
                path.len(),
                limits::MAX_PATH_BYTES
            ),
        ));
    }
    // The router is nested, so the path may or may not still carry the prefix.
    let path = path.strip_prefix("/sdmx").unwrap_or(path);
    let mut segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect::<Result<_, _>>()?;
    if segments.len() > 1 && segments.last().is_some_and(String::is_empty) {
        segments.pop();
    }
    if segments.len() > 5 {
        return Err(RestError::bad(format!(
            "the path has {} segments; SDMX REST queries have at most 5",
            segments.len()
        )));
    }
    let resource = segments.first().cloned().unwrap_or_default();
    if resource == "data" {
        return data_query(source, &segments[1..], uri, headers).await;
    }
    if let Some(resource) = Resource::from_path(&resource) {
        return structure_query(source, resource, &segments[1..], uri, headers).await;
    }
    if NOT_IMPLEMENTED.contains(&resource.as_str()) {
        return Err(RestError::not_implemented(format!(
            "the {resource} resource is not implemented; this API serves {SERVED}"
        )));
    }
    Err(RestError::not_found(format!(
        "no resource {:?}; this API serves {SERVED}",
        shown(&resource)
    )))
}

/// Reads the catalogue and the providers on the blocking pool.
async fn structures(source: &Arc<SdmxSource>) -> Result<Structures, RestError> {
    let store = Arc::clone(&source.store);
    let hub_id = source.hub_id.clone();
    let catalogue = tokio::task::spawn_blocking(move || latest_catalogue(store.as_ref(), &hub_id))
        .await
        .map_err(|e| RestError::internal("reading the catalogue", &e))?
        .map_err(|status| RestError::internal("reading the catalogue", &status.message()))?;
    let providers = structure::providers(&source.federation.get());
    Ok(Structures::new(
        catalogue.unwrap_or_default(),
        &source.hub_id,
        providers,
    ))
}

async fn structure_query(
    source: Arc<SdmxSource>,
    resource: Resource,
    segments: &[String],
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, RestError> {
    let segment = |i: usize| segments.get(i).map(String::as_str);
    let agencies = Ids::parse(segment(0), "agency id", false)?;
    let ids = Ids::parse(segment(1), "resource id", false)?;
    let versions = Ids::parse(segment(2), "version", true)?;
    let items = Ids::parse(segment(3), "item id", false)?;
    if segment(3).is_some() && !resource.has_items() {
        return Err(RestError::bad(
            "an item id can only be given for an item scheme (codelist, conceptscheme, dataproviderscheme)",
        ));
    }
    let params = query_parameters(uri, &["references", "detail"])?;
    let references = match params.get("references") {
        None => References::None,
        Some(value) => References::parse(value).ok_or_else(|| {
            RestError::bad(format!(
                "references={:?} is not one of none, parents, parentsandsiblings, children, descendants, all, dataflow, datastructure, codelist, conceptscheme, dataproviderscheme",
                shown(value)
            ))
        })?,
    };
    match params.get("detail").map(String::as_str) {
        None | Some("full") => {}
        Some(
            detail @ ("allstubs"
            | "referencestubs"
            | "allcompletestubs"
            | "referencecompletestubs"
            | "referencepartial"),
        ) => {
            return Err(RestError::not_implemented(format!(
                "detail={detail} is not implemented; only detail=full is"
            )));
        }
        Some(other) => {
            return Err(RestError::bad(format!(
                "detail={:?} is not an SDMX REST detail value",
                shown(other)
            )));
        }
    }
    structure_format(headers)?;
    let structures = structures(&source).await?;
    let keep = |id: &str| items.matches(id);
    let selected: BTreeSet<Artefact> = structures
        .all(resource)
        .into_iter()
        .filter(|a| {
            agencies.matches(&structures.agency)
                && ids.matches(structures.id_of(a))
                && versions.matches(structures.version_of(a))
                && (!resource.has_items() || structures.has_item(a, &keep))
        })
        .collect();
    if selected.is_empty() {
        return Err(RestError::not_found(format!(
            "no structure matches {} (SDMX error 100, no results)",
            uri.path()
        )));
    }
    let artefacts = structures.with_references(&selected, references);
    let mut body = String::new();
    // One moment names the message and dates it.
    let prepared_ms = rcpfed_core::clock::now_ms();
    structures.write_message(
        &artefacts,
        &selected,
        &keep,
        &format!("RCPFED-STRUCTURE-{prepared_ms}"),
        prepared_ms,
        &mut body,
    );
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, STRUCTURE_MEDIA_TYPE),
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response())
}

/// A data query, parsed and checked against the dataflow's structure.
#[derive(Debug)]
struct DataQuery {
    structure: SdmxStructure,
    /// The store filter (what it can select by itself).
    filter: ObservationFilter,
    /// Per key part (REF_AREA, the disaggregations), the values asked for; None for any.
    key: Vec<Option<Vec<String>>>,
}

impl DataQuery {
    /// Whether a row matches the key, with absent dimensions taking their default code.
    fn matches(&self, row: &ObservationRow) -> bool {
        let obs = &row.observation;
        self.key.iter().enumerate().all(|(i, values)| {
            let Some(values) = values else {
                return true;
            };
            let value = if i == 0 {
                obs.ref_area.as_str()
            } else {
                dimension_value(&self.structure.disaggregations[i - 1], obs)
            };
            values.iter().any(|v| v == value)
        })
    }
}

/// Parses `flowRef`: `ID`, `AGENCY,ID` or `AGENCY,ID,VERSION`.
fn flow_ref(segment: &str) -> Result<(Ids, String, Ids), RestError> {
    let parts: Vec<&str> = segment.split(',').collect();
    let (agency, id, version) = match parts.as_slice() {
        [id] => (None, *id, None),
        [agency, id] => (Some(*agency), *id, None),
        [agency, id, version] => (Some(*agency), *id, Some(*version)),
        _ => {
            return Err(RestError::bad(format!(
                "flowRef {:?} is not ID, AGENCY,ID or AGENCY,ID,VERSION",
                shown(segment)
            )));
        }
    };
    if !is_sdmx_code(id) || id == "all" {
        return Err(RestError::bad(format!(
            "flowRef names dataflow {:?}, which is not a dataflow id",
            shown(id)
        )));
    }
    Ok((
        Ids::parse(agency, "agency id", false)?,
        id.to_string(),
        Ids::parse(version, "version", true)?,
    ))
}

/// Parses the key against the key dimensions; `all` or empty is every key.
fn parse_key(key: Option<&str>, dims: &[String]) -> Result<Vec<Option<Vec<String>>>, RestError> {
    let key = key.unwrap_or("all");
    if key == "all" || key.is_empty() {
        return Ok(vec![None; dims.len()]);
    }
    if key.len() > limits::MAX_KEY_BYTES {
        return Err(RestError::bad(format!(
            "the key is {} bytes; at most {} are accepted",
            key.len(),
            limits::MAX_KEY_BYTES
        )));
    }
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() > limits::MAX_KEY_PARTS || parts.len() != dims.len() {
        return Err(RestError::bad(format!(
            "the key has {} parts; this dataflow's key has {}: {} (leave a part empty for any value)",
            parts.len(),
            dims.len(),
            dims.join(".")
        )));
    }
    parts
        .iter()
        .zip(dims)
        .map(|(part, dim)| {
            if part.is_empty() {
                return Ok(None);
            }
            let values: Vec<String> = part.split('+').map(str::to_string).collect();
            if values.len() > limits::MAX_VALUES {
                return Err(RestError::bad(format!(
                    "key part {dim} lists {} values; at most {} are accepted",
                    values.len(),
                    limits::MAX_VALUES
                )));
            }
            if let Some(bad) = values.iter().find(|v| !is_sdmx_code(v)) {
                return Err(RestError::bad(format!(
                    "key part {dim}: {:?} is not a code (letters, digits, '_', '@', '$', '-')",
                    shown(bad)
                )));
            }
            Ok(Some(values))
        })
        .collect()
}

/// `xs:dateTime` as unix ms: RFC 3339, or without an offset (then UTC).
fn date_time_ms(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
        .ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

fn parse_data_query(
    structures: &Structures,
    segments: &[String],
    params: &BTreeMap<String, String>,
) -> Result<DataQuery, RestError> {
    let Some(flow) = segments.first() else {
        return Err(RestError::bad(
            "a data query names a dataflow: /sdmx/data/{flowRef}[/{key}[/{providerRef}]]",
        ));
    };
    if segments.len() > 3 {
        return Err(RestError::bad(format!(
            "a data query has at most 3 path parts after /data/ (flowRef, key, providerRef), got {}",
            segments.len()
        )));
    }
    let id = dataflow_id(structures, flow)?;
    let dims = structures.key_dimensions(&id);
    let key = parse_key(segments.get(1).map(String::as_str), &dims)?;
    let node_ids = provider_ids(structures, segments.get(2))?;
    let (include_history, updated_after) = history_parameters(params)?;
    refuse_unserved_parameters(params, &dims)?;
    // Single codes other than the default one are selected by the store; the rest (several
    // codes, or a default code that also stands for an absent dimension) by `matches`.
    let structure = SdmxStructure::new(
        &id,
        Some(&structures.catalogue),
        &structures.agency,
        &BTreeSet::new(),
        include_history || updated_after.is_some(),
    );
    let dimensions = store_dimensions(&structure, &key);
    let query = v1::ObservationQuery {
        indicator: id.clone(),
        ref_areas: key.first().cloned().flatten().unwrap_or_default(),
        start_period: params.get("startPeriod").cloned().unwrap_or_default(),
        end_period: params.get("endPeriod").cloned().unwrap_or_default(),
        dimensions,
        node_ids,
        as_of: None,
        updated_after,
        include_history,
    };
    let filter = observation_filter(Some(query)).map_err(|status| {
        let message = status.message();
        let message = message
            .replace("query.start_period", "startPeriod")
            .replace("query.end_period", "endPeriod")
            .replace("start_period", "startPeriod")
            .replace("end_period", "endPeriod");
        RestError::bad(message)
    })?;
    Ok(DataQuery {
        structure,
        filter,
        key,
    })
}

/// The indicator a data query's flowRef names; 404 naming the dataflows when there is none.
fn dataflow_id(structures: &Structures, flow: &str) -> Result<String, RestError> {
    let (agencies, id, versions) = flow_ref(flow)?;
    let known = structures.catalogue.indicators.iter().any(|i| i.code == id);
    if !known || !agencies.matches(&structures.agency) || !versions.matches(&structures.version) {
        let flows: Vec<String> = structures
            .all(Resource::Dataflow)
            .iter()
            .map(|a| structures.id_of(a).to_string())
            .collect();
        return Err(RestError::not_found(format!(
            "no dataflow {} (agency {}, version {}); the dataflows are: {}",
            shown(flow),
            structures.agency,
            structures.version,
            if flows.is_empty() {
                "none (no catalogue has been issued yet)".to_string()
            } else {
                flows.join(", ")
            }
        )));
    }
    Ok(id)
}

/// The node ids of a data query's providerRef (`all` or absent: every provider).
fn provider_ids(
    structures: &Structures,
    providers: Option<&String>,
) -> Result<Vec<String>, RestError> {
    let mut node_ids = Vec::new();
    if let Some(providers) = providers.filter(|p| p.as_str() != "all") {
        let refs: Vec<&str> = providers.split('+').collect();
        if refs.len() > limits::MAX_VALUES {
            return Err(RestError::bad(format!(
                "providerRef lists {} providers; at most {} are accepted",
                refs.len(),
                limits::MAX_VALUES
            )));
        }
        for r in refs {
            let (agency, provider) = r.split_once(',').unwrap_or(("all", r));
            if !is_sdmx_code(provider) || !is_sdmx_code(agency) {
                return Err(RestError::bad(format!(
                    "providerRef {:?} is not PROVIDER_ID or AGENCY_ID,PROVIDER_ID",
                    shown(r)
                )));
            }
            if agency != "all" && agency != structures.agency {
                return Err(RestError::not_found(format!(
                    "no data provider of agency {:?}; the providers are maintained by {}",
                    shown(agency),
                    structures.agency
                )));
            }
            node_ids.push(provider.to_string());
        }
    }

    Ok(node_ids)
}

/// `includeHistory` and `updatedAfter`.
fn history_parameters(
    params: &BTreeMap<String, String>,
) -> Result<(bool, Option<prost_types::Timestamp>), RestError> {
    let include_history = match params.get("includeHistory").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(RestError::bad(format!(
                "includeHistory={:?} is neither true nor false",
                shown(other)
            )));
        }
    };
    let updated_after = params
        .get("updatedAfter")
        .map(|text| {
            date_time_ms(text)
                .map(crate::timestamp_from_ms)
                .ok_or_else(|| {
                    RestError::bad(format!(
                        "updatedAfter={:?} is not an xs:dateTime such as 2024-05-17T12:00:00Z",
                        shown(text)
                    ))
                })
        })
        .transpose()?;
    Ok((include_history, updated_after))
}

/// The parameters SDMX REST defines that this server serves only at one value (or not at all):
/// 501 for another defined value, 400 for a value SDMX REST does not define.
fn refuse_unserved_parameters(
    params: &BTreeMap<String, String>,
    dims: &[String],
) -> Result<(), RestError> {
    for (name, supported) in [
        ("firstNObservations", None),
        ("lastNObservations", None),
        ("dimensionAtObservation", Some("AllDimensions")),
        ("detail", Some("full")),
    ] {
        let Some(value) = params.get(name) else {
            continue;
        };
        if Some(value.as_str()) == supported {
            continue;
        }
        // A value the specification defines but this server does not serve is 501; anything
        // else is a syntax error (400).
        let defined = match name {
            "firstNObservations" | "lastNObservations" => value.parse::<u32>().is_ok_and(|n| n > 0),
            "detail" => ["dataonly", "serieskeysonly", "nodata"].contains(&value.as_str()),
            _ => value == "TIME_PERIOD" || dims.iter().any(|d| d == value),
        };
        if !defined {
            return Err(RestError::bad(format!(
                "{name}={} is not a value SDMX REST defines for it",
                shown(value)
            )));
        }
        return Err(RestError::not_implemented(format!(
            "{name}={} is not implemented{}",
            shown(value),
            supported
                .map(|s| format!(
                    "; only {name}={s} is (every dimension at observation level, all attributes)"
                ))
                .unwrap_or_default()
        )));
    }

    Ok(())
}

/// The single-code key parts the store selects itself: every disaggregation given one code
/// other than its default one.
fn store_dimensions(structure: &SdmxStructure, key: &[Option<Vec<String>>]) -> Vec<v1::Dimension> {
    let mut dimensions = Vec::new();
    for (i, values) in key.iter().enumerate().skip(1) {
        if let Some([value]) = values.as_deref() {
            let dim = &structure.disaggregations[i - 1];
            if dim.default_code.as_deref() != Some(value.as_str()) {
                dimensions.push(v1::Dimension {
                    id: dim.id.clone(),
                    value: value.clone(),
                });
            }
        }
    }
    dimensions
}

/// Reads every row the query selects, in batches, calling `each` for each matching one. Stops
/// between batches once `gone` says the client went away, and with 413 past
/// [`limits::MAX_ROWS_READ`] rows read.
fn scan(
    store: &dyn IndicatorStore,
    query: &DataQuery,
    filter: &ObservationFilter,
    gone: &dyn Fn() -> bool,
    mut each: impl FnMut(&ObservationRow) -> Result<(), RestError>,
) -> Result<(), RestError> {
    scan_within(store, query, filter, gone, limits::MAX_ROWS_READ, &mut each)
}

/// [`scan`] reading at most `max_read` rows.
fn scan_within(
    store: &dyn IndicatorStore,
    query: &DataQuery,
    filter: &ObservationFilter,
    gone: &dyn Fn() -> bool,
    max_read: u64,
    each: &mut dyn FnMut(&ObservationRow) -> Result<(), RestError>,
) -> Result<(), RestError> {
    let mut after: Option<ObservationCursor> = None;
    let mut read = 0u64;
    loop {
        if gone() {
            return Err(RestError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the client went away",
            ));
        }
        if read >= max_read {
            return Err(RestError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the answer would need more than {max_read} stored observations read (SDMX error 510); narrow the key, the periods or the providers"
                ),
            ));
        }
        let rows = store
            .query_observations(filter, after, limits::BATCH)
            .map_err(|e| RestError::internal("reading observations", &e))?;
        read += rows.len() as u64;
        for row in rows.iter().filter(|r| query.matches(r)) {
            each(row)?;
        }
        if rows.len() < limits::BATCH {
            return Ok(());
        }
        after = rows
            .last()
            .map(|r| (r.provenance.feed_index, r.provenance.position));
    }
}

async fn data_query(
    source: Arc<SdmxSource>,
    segments: &[String],
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, RestError> {
    let params = query_parameters(
        uri,
        &[
            "startPeriod",
            "endPeriod",
            "updatedAfter",
            "includeHistory",
            "firstNObservations",
            "lastNObservations",
            "dimensionAtObservation",
            "detail",
        ],
    )?;
    let format = data_format(headers)?;
    let structures = structures(&source).await?;
    let query = parse_data_query(&structures, segments, &params)?;
    // The second pass reads the store as of the first one (the later of this server's clock
    // when it started and the latest acceptance it saw, since a node's clock may lag the
    // hub's), so a revision accepted in between cannot make it write a key twice.
    let started_ms = rcpfed_core::clock::now_ms();
    // Streaming answers at once: each holds a blocking thread while its client reads.
    let stream_slot = Arc::clone(&source.streams)
        .try_acquire_owned()
        .map_err(|_| {
            RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} data answers are being sent; try again in a moment",
                    limits::MAX_STREAMS
                ),
            )
        })?;

    // First pass: which providers have matching rows, and how many rows there are.
    let (mut query, providers, latest_accepted) = count_rows(&source, query).await?;
    if providers.is_empty() {
        return Err(RestError::not_found(format!(
            "no observations match {}{} (SDMX error 100, no results)",
            uri.path(),
            uri.query().map(|q| format!("?{q}")).unwrap_or_default()
        )));
    }

    if query.filter.as_of_ms.is_none() {
        query.filter.as_of_ms = Some(started_ms.max(latest_accepted));
    }

    // Second pass, streamed: provider by provider, so each provider's rows form its data set.
    Ok(stream_rows(&source, query, providers, format, stream_slot))
}

/// The first pass of a data query: the providers with matching rows and the latest acceptance
/// among them; 413 past [`limits::MAX_OBSERVATIONS`] rows.
async fn count_rows(
    source: &SdmxSource,
    query: DataQuery,
) -> Result<(DataQuery, BTreeSet<String>, i64), RestError> {
    let store = Arc::clone(&source.store);
    // Set when this call is dropped (the client reset the stream or went away): the blocking
    // pass, which dropping the call does not stop, stops at its next batch.
    let gone = GoneOnDrop::default();
    let gone_flag = gone.flag();
    tokio::task::spawn_blocking(move || {
        let mut providers = BTreeSet::new();
        let mut count = 0u64;
        let mut latest_accepted = i64::MIN;
        let gone = || gone_flag.load(std::sync::atomic::Ordering::Relaxed);
        scan(store.as_ref(), &query, &query.filter, &gone, |row| {
            count += 1;
            latest_accepted = latest_accepted.max(row.provenance.accepted_at_ms);
            if count > limits::MAX_OBSERVATIONS {
                return Err(RestError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the answer would hold more than {} observations (SDMX error 510); narrow the key, the periods or the providers",
                        limits::MAX_OBSERVATIONS
                    ),
                ));
            }
            // A version stored under an earlier catalogue may have a dimension the one in
            // force lacks: it is left out (and logged) rather than failing the whole answer.
            if let Err(e) = query
                .structure
                .check_dimensions(&row.observation, &row.provenance)
            {
                tracing::warn!(error = %e, "SDMX REST: an observation outside the structure in force is left out");
                return Ok(());
            }
            if !providers.contains(&row.provenance.node_id) {
                providers.insert(row.provenance.node_id.clone());
            }
            Ok(())
        })?;
        Ok::<_, RestError>((query, providers, latest_accepted))
    })
    .await
    .map_err(|e| RestError::internal("reading observations", &e))?
}

/// The client of a data answer, as the thread writing the answer sees it.
struct Client<'a> {
    tx: &'a mpsc::Sender<Result<Bytes, std::io::Error>>,
    /// The runtime the writing thread (a blocking-pool thread) waits on for the client.
    runtime: tokio::runtime::Handle,
    /// Bytes handed to the client so far.
    sent: Cell<u64>,
    /// How long the answer waited for the client to take them, in all.
    waited: Cell<std::time::Duration>,
}

impl Client<'_> {
    /// Hands `text` to the client. Stops the answer when the client went away, took nothing
    /// for [`limits::SEND_TIMEOUT`] or reads too slowly ([`reads_too_slowly`]). (This thread is
    /// the blocking pool's, shared with the store's other readers; the status is never sent,
    /// nobody is left to receive it.)
    fn send(&self, text: &mut String) -> Result<(), RestError> {
        let piece = Bytes::from(std::mem::take(text));
        if reads_too_slowly(self.sent.get(), self.waited.get()) {
            return Err(RestError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the client reads too slowly",
            ));
        }
        self.sent.set(self.sent.get() + piece.len() as u64);
        let waiting = std::time::Instant::now();
        let taken = self.runtime.block_on(tokio::time::timeout(
            limits::SEND_TIMEOUT,
            self.tx.send(Ok(piece)),
        ));
        self.waited.set(self.waited.get() + waiting.elapsed());
        match taken {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RestError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the client went away",
            )),
            Err(_) => Err(RestError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the client read nothing for too long",
            )),
        }
    }
}

/// Whether a client that took `sent` bytes of a data answer that waited `waited` for it in all
/// reads below [`limits::MIN_SEND_RATE`] (never within [`limits::SEND_GRACE`]).
fn reads_too_slowly(sent: u64, waited: std::time::Duration) -> bool {
    waited > limits::SEND_GRACE && sent < limits::MIN_SEND_RATE.saturating_mul(waited.as_secs())
}

/// Says, once dropped, that the call holding it is gone.
#[derive(Default)]
struct GoneOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl GoneOnDrop {
    fn flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The second pass of a data query, streamed: provider by provider, each provider's rows a
/// data set, in pieces of [`limits::PIECE_BYTES`].
fn stream_rows(
    source: &SdmxSource,
    query: DataQuery,
    providers: BTreeSet<String>,
    format: DataFormat,
    stream_slot: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = Arc::clone(&source.store);
    let prepared_ms = rcpfed_core::clock::now_ms();
    let message_id = format!("RCPFED-{}-{prepared_ms}", query.filter.indicator);
    let failed = tx.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _stream_slot = stream_slot;
        let client = Client {
            tx: &tx,
            runtime: tokio::runtime::Handle::current(),
            sent: Cell::new(0),
            waited: Cell::new(std::time::Duration::ZERO),
        };
        let send = |text: &mut String| client.send(text);
        let mut out = String::new();
        let mut writer = DataWriter::begin(
            format,
            query.structure.clone(),
            &message_id,
            prepared_ms,
            &mut out,
        );
        for provider in &providers {
            let mut filter = query.filter.clone();
            filter.node_ids = vec![provider.clone()];
            scan(store.as_ref(), &query, &filter, &|| tx.is_closed(), |row| {
                if query
                    .structure
                    .check_dimensions(&row.observation, &row.provenance)
                    .is_err()
                {
                    return Ok(());
                }
                writer.row(row, &mut out).map_err(|e| {
                    RestError::internal("writing an observation (the data changed meanwhile)", &e)
                })?;
                if out.len() >= limits::PIECE_BYTES {
                    send(&mut out)?;
                }
                Ok(())
            })?;
        }
        writer.finish(&mut out);
        send(&mut out)
    });
    // A failure after the first piece cannot change the status any more: end the body with
    // an error, so the client sees a broken answer rather than a complete-looking one.
    tokio::spawn(async move {
        let outcome = match task.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.message,
            Err(e) => e.to_string(),
        };
        // A client already gone receives nothing, and needs nothing.
        let _ = failed
            .send(Err(std::io::Error::other(format!(
                "the SDMX answer stopped early: {outcome}"
            ))))
            .await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format.media_type()),
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `SDG_10_7_3` whose REF_AREA part has two codes (the store cannot select
    /// them: every row is read, none matches).
    fn unselective_query() -> DataQuery {
        DataQuery {
            structure: SdmxStructure::new("SDG_10_7_3", None, "hub", &BTreeSet::new(), false),
            filter: ObservationFilter {
                indicator: "SDG_10_7_3".into(),
                ..Default::default()
            },
            key: vec![Some(vec!["ZZ1".into(), "ZZ2".into()])],
        }
    }

    #[test]
    fn a_client_reading_too_slowly_is_told_only_after_the_grace() {
        let secs = std::time::Duration::from_secs;
        // Within the grace, however little was taken.
        assert!(!reads_too_slowly(0, secs(59)));
        // One 64 KiB piece every 25 s is 2.6 KiB/s: too slow once past the grace.
        assert!(reads_too_slowly(3 * 64 * 1024, secs(75)));
        // At the minimum rate or faster, never.
        assert!(!reads_too_slowly(limits::MIN_SEND_RATE * 600, secs(600)));
        assert!(!reads_too_slowly(u64::MAX, secs(100_000)));
    }

    #[test]
    fn a_scan_stops_at_its_reading_budget_and_when_the_client_is_gone() {
        let store = crate::indicators::tests::big_store(30_000);
        let query = unselective_query();
        let mut matched = 0;
        let error = scan_within(
            &store,
            &query,
            &query.filter,
            &|| false,
            10_000,
            &mut |_| {
                matched += 1;
                Ok(())
            },
        )
        .expect_err("over the budget");
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(matched, 0);
        // Within the budget, the whole table is read and nothing matches.
        scan_within(
            &store,
            &query,
            &query.filter,
            &|| false,
            100_000,
            &mut |_| Ok(()),
        )
        .expect("within the budget");
        let error = scan_within(
            &store,
            &query,
            &query.filter,
            &|| true,
            100_000,
            &mut |_| Ok(()),
        )
        .expect_err("gone");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
    }

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            http::HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    fn catalogue() -> Structures {
        let catalogue = rcpfed_core::catalogue::Catalogue::from_toml(
            rcpfed_core::catalogue::embedded_catalogue_toml(),
        )
        .expect("the embedded catalogue")
        .to_document("fed", 1, time::OffsetDateTime::UNIX_EPOCH, None);
        Structures::new(
            catalogue,
            "hub",
            vec![structure::Provider {
                id: "colombo".into(),
                name: "Colombo Process".into(),
            }],
        )
    }

    #[test]
    fn data_formats_follow_the_accept_header() {
        assert_eq!(
            data_format(&HeaderMap::new()).ok(),
            Some(DataFormat::Generic)
        );
        for (value, format) in [
            ("application/xml", DataFormat::Generic),
            (
                "application/vnd.sdmx.structurespecificdata+xml;version=2.1",
                DataFormat::StructureSpecific,
            ),
            (
                "application/vnd.sdmx.data+json;version=2.0.0",
                DataFormat::Json,
            ),
            ("text/csv", DataFormat::Csv),
            // q values decide, then order.
            (
                "application/xml;q=0.5, application/vnd.sdmx.data+csv;version=2.0.0",
                DataFormat::Csv,
            ),
            ("application/pdf, */*;q=0.1", DataFormat::Generic),
        ] {
            assert_eq!(data_format(&accept(value)).ok(), Some(format), "{value}");
        }
        for value in [
            "application/pdf",
            "application/vnd.sdmx.data+csv;version=1.0.0",
            "application/vnd.sdmx.genericdata+xml;version=3.0.0",
            "application/xml;q=0",
        ] {
            let refused = data_format(&accept(value)).expect_err(value);
            assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE, "{value}");
            assert!(refused.message.contains("available"), "{}", refused.message);
        }
        assert!(
            structure_format(&accept("application/vnd.sdmx.structure+json;version=1.0.0")).is_err()
        );
        assert!(structure_format(&accept("text/xml")).is_ok());
    }

    #[test]
    fn keys_are_checked_against_the_structure() {
        let dims = vec!["REF_AREA".to_string(), "SEX".to_string()];
        assert_eq!(parse_key(None, &dims).ok(), Some(vec![None, None]));
        assert_eq!(parse_key(Some("all"), &dims).ok(), Some(vec![None, None]));
        assert_eq!(
            parse_key(Some("LKA+IND."), &dims).ok(),
            Some(vec![Some(vec!["LKA".into(), "IND".into()]), None])
        );
        for (key, says) in [
            (
                "LKA",
                "the key has 1 parts; this dataflow's key has 2: REF_AREA.SEX",
            ),
            ("LKA.F.X", "has 3 parts"),
            ("LKA.F G", "key part SEX"),
            ("LK*A.F", "key part REF_AREA"),
        ] {
            let e = parse_key(Some(key), &dims).expect_err(key);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(says), "{key}: {}", e.message);
        }
        let long = "A".repeat(limits::MAX_KEY_BYTES + 1);
        assert!(parse_key(Some(&long), &dims).is_err());
        let many = vec!["A"; limits::MAX_VALUES + 1].join("+");
        let e = parse_key(Some(&format!("{many}.F")), &dims).expect_err("too many values");
        assert!(e.message.contains("at most"), "{}", e.message);
    }

    #[test]
    fn ids_flow_refs_and_parameters() {
        assert!(
            Ids::parse(Some("all"), "agency id", false)
                .expect("all")
                .matches("GFMD")
        );
        let two = Ids::parse(Some("A+B"), "resource id", false).expect("list");
        assert!(two.matches("B") && !two.matches("C"));
        assert!(
            Ids::parse(Some("1.0.0"), "version", true)
                .expect("version")
                .matches("1.0.0")
        );
        assert!(
            Ids::parse(Some("latest"), "version", true)
                .expect("latest")
                .matches("9")
        );
        assert!(Ids::parse(Some("a b"), "agency id", false).is_err());

        let (agency, id, version) = flow_ref("GFMD,REMIT_INFLOW,1.0.0").expect("full");
        assert!(agency.matches("GFMD") && version.matches("1.0.0") && id == "REMIT_INFLOW");
        assert!(flow_ref("A,B,C,D").is_err());
        assert!(flow_ref("all").is_err());

        let uri: Uri = "/data/X?startPeriod=2020&includeHistory=true"
            .parse()
            .expect("uri");
        let params = query_parameters(&uri, &["startPeriod", "includeHistory"]).expect("params");
        assert_eq!(params.get("startPeriod").map(String::as_str), Some("2020"));
        let twice: Uri = "/data/X?startPeriod=2020&startPeriod=2021"
            .parse()
            .expect("uri");
        assert!(query_parameters(&twice, &["startPeriod"]).is_err());
        let unknown: Uri = "/data/X?colour=blue".parse().expect("uri");
        let e = query_parameters(&unknown, &["startPeriod"]).expect_err("unknown");
        assert!(e.message.contains("colour"), "{}", e.message);
        let long: Uri = format!("/data/X?startPeriod={}", "9".repeat(100))
            .parse()
            .expect("uri");
        assert!(query_parameters(&long, &["startPeriod"]).is_err());
        assert_eq!(percent_decode("a%2Bb").ok().as_deref(), Some("a+b"));
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err());

        assert_eq!(date_time_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(date_time_ms("1970-01-01T00:00:01"), Some(1000));
        assert_eq!(date_time_ms("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(date_time_ms("yesterday"), None);
    }

    #[test]
    fn data_queries_become_store_filters() {
        let s = catalogue();
        let params = BTreeMap::from([
            ("startPeriod".to_string(), "2020".to_string()),
            (
                "updatedAfter".to_string(),
                "2024-01-01T00:00:00Z".to_string(),
            ),
        ]);
        let dims = s.key_dimensions("SDG_10_7_3");
        assert_eq!(dims[0], "REF_AREA");
        let key = std::iter::once("LKA+IND")
            .chain(dims.iter().skip(1).map(|_| ""))
            .collect::<Vec<_>>()
            .join(".");
        let q = parse_data_query(
            &s,
            &[
                "GFMD,SDG_10_7_3,latest".to_string(),
                key,
                "colombo".to_string(),
            ],
            &params,
        )
        .expect("a valid query");
        assert_eq!(q.filter.ref_areas, ["LKA", "IND"]);
        assert_eq!(q.filter.node_ids, ["colombo"]);
        assert_eq!(q.filter.start_date.as_deref(), Some("2020-01-01"));
        assert_eq!(q.filter.updated_after_ms, Some(1_704_067_200_000));
        assert!(
            q.structure.history,
            "a change query writes Replace/Delete data sets"
        );

        let nothing = BTreeMap::new();
        let extra = ["REMIT_INFLOW", "all", "all", "junk"].map(String::from);
        let e = parse_data_query(&s, &extra, &nothing).expect_err("a fourth part");
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
        let e = parse_data_query(&s, &["NO_SUCH".to_string()], &nothing).expect_err("unknown");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(
            e.message.contains("REMIT_INFLOW"),
            "lists the dataflows: {}",
            e.message
        );
        let e = parse_data_query(&s, &["OTHER,REMIT_INFLOW".to_string()], &nothing)
            .expect_err("other agency");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        for (name, value, status) in [
            ("lastNObservations", "1", StatusCode::NOT_IMPLEMENTED),
            ("detail", "serieskeysonly", StatusCode::NOT_IMPLEMENTED),
            (
                "dimensionAtObservation",
                "TIME_PERIOD",
                StatusCode::NOT_IMPLEMENTED,
            ),
            ("detail", "everything", StatusCode::BAD_REQUEST),
            ("firstNObservations", "abc", StatusCode::BAD_REQUEST),
            (
                "dimensionAtObservation",
                "NOT_A_DIM",
                StatusCode::BAD_REQUEST,
            ),
            ("includeHistory", "maybe", StatusCode::BAD_REQUEST),
            ("updatedAfter", "soon", StatusCode::BAD_REQUEST),
            ("startPeriod", "2020-13", StatusCode::BAD_REQUEST),
        ] {
            let params = BTreeMap::from([(name.to_string(), value.to_string())]);
            let e = parse_data_query(&s, &["REMIT_INFLOW".to_string()], &params).expect_err(name);
            assert_eq!(e.status, status, "{name}={value}: {}", e.message);
        }
        let e = parse_data_query(
            &s,
            &[
                "REMIT_INFLOW".to_string(),
                "all".to_string(),
                "OTHER,colombo".to_string(),
            ],
            &nothing,
        )
        .expect_err("provider of another agency");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn references_follow_the_structure_graph() {
        let s = catalogue();
        let flow = BTreeSet::from([Artefact::Dataflow("REMIT_INFLOW".into())]);
        let children = s.with_references(&flow, References::Children);
        assert!(children.contains(&Artefact::DataStructure("REMIT_INFLOW".into())));
        assert!(!children.contains(&Artefact::ConceptScheme));
        let descendants = s.with_references(&flow, References::Descendants);
        assert!(descendants.contains(&Artefact::ConceptScheme));
        assert!(descendants.contains(&Artefact::Codelist("CL_AREA".into())));
        assert!(
            !descendants.contains(&Artefact::Codelist("CL_SEX".into())),
            "REMIT_INFLOW has no SEX"
        );
        let sex = BTreeSet::from([Artefact::Codelist("CL_SEX".into())]);
        let parents = s.with_references(&sex, References::Parents);
        assert!(parents.contains(&Artefact::DataStructure("SDG_10_7_3".into())));
        assert!(!parents.contains(&Artefact::DataStructure("REMIT_INFLOW".into())));
        let only = s.with_references(&sex, References::Only(Resource::Dataflow));
        assert!(
            only.iter()
                .all(|a| matches!(a, Artefact::Dataflow(_) | Artefact::Codelist(_)))
        );
        assert_eq!(
            References::parse("codelist"),
            Some(References::Only(Resource::Codelist))
        );
        assert_eq!(References::parse("everything"), None);

        let mut out = String::new();
        let all = |_: &str| true;
        s.write_message(&descendants, &flow, &all, "ID", 0, &mut out);
        assert!(
            out.contains(
                "<structure:Dataflow id=\"REMIT_INFLOW\" agencyID=\"GFMD\" version=\"1.0.0\""
            ),
            "{out}"
        );
        assert!(
            out.contains("<structure:Code id=\"LKA\">"),
            "ISO codes are in CL_AREA"
        );
        assert!(out.contains("<structure:TimeDimension id=\"TIME_PERIOD\" position=\"2\">"));
        let providers = BTreeSet::from([Artefact::DataProviderScheme]);
        let mut out = String::new();
        s.write_message(&providers, &providers, &all, "ID", 0, &mut out);
        assert!(out.contains("<structure:DataProviderScheme id=\"DATA_PROVIDERS\" agencyID=\"GFMD\" version=\"1.0\""), "{out}");
        assert!(out.contains("<structure:DataProvider id=\"colombo\"><common:Name xml:lang=\"en\">Colombo Process</common:Name>"), "{out}");
    }
}
