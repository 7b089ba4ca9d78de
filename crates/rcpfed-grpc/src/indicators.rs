//! `rcpfed.v1.IndicatorService`: the cross-regional indicator views.
//!
//! One implementation over [`IndicatorStore`] serves the hub and every node, so that for the
//! same feed both give the same answers (the architecture invariant of issue 5). The hub and
//! the node differ only in their store and in how they check the caller, which they plug in
//! as a [`ReaderCheck`] (normally [`reader_role`]).

use crate::per_member::{Held, PerMember, quota_status};
use crate::shared::SharedFederation;
use crate::status::{ERROR_DOMAIN, blocking, internal, invalid_field, rejection_status};
use crate::{authorize, limits, timestamp_from_ms};
use prost::Message as _;
use rcpfed_core::codes::is_indicator_code;
use rcpfed_core::dates::parse_time_period;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::members::Role;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_proto::v1;
use rcpfed_proto::v1::indicator_service_server::{IndicatorService, IndicatorServiceServer};
use rcpfed_sdmx::structure::STRUCTURE_MEDIA_TYPE;
use rcpfed_sdmx::{
    CSV_MEDIA_TYPE, JSON_MEDIA_TYPE, JsonMeta, SdmxError, SdmxJsonWriter, SdmxStructure,
    csv_header, csv_row,
};
use rcpfed_store::{
    HubDocument, IndicatorStore, ObservationCursor, ObservationFilter, ObservationRow,
    catalogue_chain, coherence_chain,
};
use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// `ErrorInfo.reason` when no coherence report has been issued yet (the counterpart of
/// `NO_CATALOGUE`).
pub const NO_COHERENCE_REPORT: &str = "NO_COHERENCE_REPORT";
/// `ErrorInfo.reason` (code ABORTED) when an export meets a dimension its header does not
/// list: the data changed between the structure pass and the data pass. Retrying works.
pub const EXPORT_STRUCTURE_CHANGED: &str = "EXPORT_STRUCTURE_CHANGED";

/// QueryObservations page size when the request gives 0.
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// Largest QueryObservations page size.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// A QueryObservations page stops early (with a next page token) beyond this many encoded
/// bytes, so that even long footnotes never push a response past the 4 MiB a default gRPC
/// client accepts.
pub const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;
/// Most values in one query list (ref_areas, node_ids, dimensions): keeps store queries
/// within SQL parameter limits.
pub const MAX_FILTER_VALUES: usize = 1000;
/// Rows read from the store per batch by ExportSdmx: the export never holds more.
pub const EXPORT_BATCH: usize = 5000;
/// ExportSdmx sends the text in pieces of about this size (always whole rows).
pub const EXPORT_PIECE_BYTES: usize = 64 * 1024;
/// ExportSdmx streams one member may have open at once. Each holds a blocking thread while
/// its client reads, so they are counted per member and in all ([`MAX_EXPORTS`]).
pub const MAX_EXPORTS_PER_MEMBER: usize = 2;
/// ExportSdmx streams open at once on this server, whoever reads them: far below the blocking
/// threads (512) the store's reads share.
pub const MAX_EXPORTS: usize = 16;
/// How long an export waits for its client to take a piece before it gives up (and its thread
/// and slot with it).
pub const EXPORT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// `ErrorInfo.reason` (RESOURCE_EXHAUSTED, with RetryInfo): the caller already has
/// [`MAX_EXPORTS_PER_MEMBER`] exports open, or the server [`MAX_EXPORTS`].
pub const TOO_MANY_EXPORTS: &str = "TOO_MANY_EXPORTS";
/// `ErrorInfo.reason` (ABORTED): the export stopped before its end, because its client took no
/// piece for [`EXPORT_SEND_TIMEOUT`] (or the export failed without a status); what was sent is
/// not the whole message.
pub const EXPORT_INCOMPLETE: &str = "EXPORT_INCOMPLETE";

/// Decides whether the caller may use the IndicatorService (every call needs the reader
/// role) and names it (the member id its quotas are counted under). It sees the request's
/// metadata and extensions (the TLS peer certificates) with an empty message, so the hub and
/// the node can reuse their own check: see [`reader_role`].
pub type ReaderCheck = Arc<dyn Fn(&Request<()>) -> Result<String, Status> + Send + Sync>;

/// Told the `ErrorInfo` reason of a quota refusal.
pub type QuotaRefusalHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The reader-role check the hub and the node apply to their other read RPCs:
/// [`authorize`] against the federation in force.
pub fn reader_role(federation: SharedFederation) -> ReaderCheck {
    Arc::new(move |request: &Request<()>| {
        authorize(request, &federation.get(), Role::Reader).map(|member| member.id.clone())
    })
}

/// The IndicatorService over one store.
pub struct IndicatorRpc {
    store: Arc<dyn IndicatorStore>,
    hub_id: String,
    authorize: ReaderCheck,
    /// The federation in force, whose publishers are the SDMX data providers of a structure
    /// export; None: the export has no data provider scheme.
    providers: Option<SharedFederation>,
    /// Open exports, per member and in all.
    exports: ExportSlots,
    /// Told the reason of every quota refusal (the hub counts them in its metrics).
    on_quota_refusal: Option<QuotaRefusalHook>,
    /// [`EXPORT_SEND_TIMEOUT`], shorter in unit tests.
    send_timeout: Duration,
    /// Export threads running, for unit tests to wait on.
    #[cfg(test)]
    export_threads: Arc<std::sync::atomic::AtomicUsize>,
}

impl IndicatorRpc {
    /// The service over `store` (the hub's store, or a node's mirror).
    ///
    /// `hub_id` is the hub member's id: catalogue versions and coherence reports are read
    /// from its chains (`{hub_id}/catalogue`, `{hub_id}/coherence`), and it is the SDMX
    /// agency when no catalogue names one. `authorize` is called first on every RPC; pass
    /// `reader_role(federation.clone())` to require the reader role as the other read RPCs do.
    pub fn new(
        store: Arc<dyn IndicatorStore>,
        hub_id: impl Into<String>,
        authorize: ReaderCheck,
    ) -> Self {
        IndicatorRpc {
            store,
            hub_id: hub_id.into(),
            authorize,
            providers: None,
            exports: ExportSlots::default(),
            on_quota_refusal: None,
            send_timeout: EXPORT_SEND_TIMEOUT,
            #[cfg(test)]
            export_threads: Arc::default(),
        }
    }

    /// Calls `hook` with the `ErrorInfo` reason of every quota refusal (`TOO_MANY_EXPORTS`).
    pub fn on_quota_refusal(mut self, hook: QuotaRefusalHook) -> Self {
        self.on_quota_refusal = Some(hook);
        self
    }

    /// Names the data providers (the publishers of `federation`) in structure exports.
    pub fn with_data_providers(mut self, federation: SharedFederation) -> Self {
        self.providers = Some(federation);
        self
    }

    /// The tonic service, with the message limits the other rcpfed services use.
    pub fn into_server(self) -> IndicatorServiceServer<Self> {
        IndicatorServiceServer::new(self)
            .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(limits::MAX_MESSAGE_BYTES)
    }

    /// Runs the caller check and hands back the message.
    fn admit<T>(&self, request: Request<T>) -> Result<T, Status> {
        self.admit_member(request).map(|(_, message)| message)
    }

    /// Runs the caller check and hands back the caller's member id and the message.
    fn admit_member<T>(&self, request: Request<T>) -> Result<(String, T), Status> {
        let (metadata, extensions, message) = request.into_parts();
        let probe = Request::from_parts(metadata, extensions, ());
        let member = (self.authorize)(&probe)?;
        Ok((member, message))
    }
}

/// The ExportSdmx streams open now, per member and in all; an [`ExportSlot`] gives its place
/// back when dropped.
#[derive(Clone)]
struct ExportSlots {
    per_member: PerMember,
    total: Arc<tokio::sync::Semaphore>,
}

impl Default for ExportSlots {
    fn default() -> Self {
        ExportSlots {
            per_member: PerMember::default(),
            total: Arc::new(tokio::sync::Semaphore::new(MAX_EXPORTS)),
        }
    }
}

impl ExportSlots {
    /// A place for one more export of `member`, or the quota refusal.
    fn take(&self, member: &str) -> Result<ExportSlot, Status> {
        let of_member = self
            .per_member
            .try_take(member, MAX_EXPORTS_PER_MEMBER)
            .ok_or_else(|| {
                quota_status(
                    TOO_MANY_EXPORTS,
                    MAX_EXPORTS_PER_MEMBER,
                    format!(
                        "{member} already has {MAX_EXPORTS_PER_MEMBER} exports open; finish or cancel one and export again"
                    ),
                )
            })?;
        let in_all = Arc::clone(&self.total).try_acquire_owned().map_err(|_| {
            quota_status(
                TOO_MANY_EXPORTS,
                MAX_EXPORTS,
                format!("{MAX_EXPORTS} exports are being sent; try again in a moment"),
            )
        })?;
        Ok(ExportSlot {
            _of_member: of_member,
            _in_all: in_all,
        })
    }
}

/// One open export's place in [`ExportSlots`].
struct ExportSlot {
    _of_member: Held,
    _in_all: tokio::sync::OwnedSemaphorePermit,
}

/// Counts an export thread out when it ends (unit tests wait on it).
#[cfg(test)]
struct ThreadCount(Arc<std::sync::atomic::AtomicUsize>);

#[cfg(test)]
impl Drop for ThreadCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An export's pieces as the client receives them. The stream ends with OK only when the export
/// said it finished: an export that stopped early (its client too slow, a panic) ends with
/// [`EXPORT_INCOMPLETE`], never looking like a whole message.
struct ExportStream {
    pieces: mpsc::Receiver<Result<v1::ExportSdmxResponse, Status>>,
    finished: Arc<AtomicBool>,
    ended: bool,
    /// Shared with the export's thread: the place is given back when both are gone, so what
    /// an abandoned export left queued stays counted until the call ends.
    _slot: Arc<ExportSlot>,
}

impl Stream for ExportStream {
    type Item = Result<v1::ExportSdmxResponse, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        match self.pieces.poll_recv(cx) {
            Poll::Ready(Some(Err(status))) => {
                self.ended = true;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                if self.finished.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    let mut details = ErrorDetails::new();
                    details.set_error_info(EXPORT_INCOMPLETE, ERROR_DOMAIN, HashMap::new());
                    Poll::Ready(Some(Err(Status::with_error_details(
                        Code::Aborted,
                        format!(
                            "the export stopped before its end (no piece was taken for {} s, or it failed); what was received is not the whole message: export again",
                            EXPORT_SEND_TIMEOUT.as_secs()
                        ),
                        details,
                    ))))
                }
            }
            other => other,
        }
    }
}

fn invalid_query(field: &str, description: impl Into<String>) -> Status {
    invalid_field(field, reasons::INVALID_QUERY, description)
}

fn date_string(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Protobuf timestamp → unix ms, refusing malformed ones.
fn timestamp_ms(field: &str, ts: &prost_types::Timestamp) -> Result<i64, Status> {
    let ms = ts
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos) / 1_000_000));
    match ms {
        Some(ms) if rcpfed_core::wire::timestamp_in_range(ts) => Ok(ms),
        _ => Err(invalid_query(
            field,
            format!(
                "{field} is not a valid timestamp in years 1 to 9999 (seconds {}, nanos {})",
                ts.seconds, ts.nanos
            ),
        )),
    }
}

/// The store filter for a query, refusing malformed queries (reason INVALID_QUERY, with the
/// field at fault).
pub fn observation_filter(
    query: Option<v1::ObservationQuery>,
) -> Result<ObservationFilter, Status> {
    let q = query.unwrap_or_default();
    if q.indicator.is_empty() {
        return Err(invalid_query(
            "query.indicator",
            "query.indicator is required, for example \"SDG_10_7_3\"",
        ));
    }
    if !is_indicator_code(&q.indicator) {
        return Err(invalid_query(
            "query.indicator",
            format!(
                "{:?} is not an indicator code (upper-case letters, digits and '_', starting with a letter)",
                q.indicator
            ),
        ));
    }
    let period = |field: &str, text: &str| {
        if text.is_empty() {
            return Ok(None);
        }
        parse_time_period(text).map(Some).ok_or_else(|| {
            invalid_query(
                field,
                format!(
                    "{text:?} is not an SDMX time period (2024, 2024-S1, 2024-Q3, 2024-05 or 2024-05-17)"
                ),
            )
        })
    };
    let start = period("query.start_period", &q.start_period)?;
    let end = period("query.end_period", &q.end_period)?;
    if let (Some(s), Some(e)) = (start, end)
        && e.end < s.start
    {
        return Err(invalid_query(
            "query.end_period",
            format!(
                "end_period {:?} ends before start_period {:?} begins",
                q.end_period, q.start_period
            ),
        ));
    }
    for (field, count) in [
        ("query.ref_areas", q.ref_areas.len()),
        ("query.node_ids", q.node_ids.len()),
        ("query.dimensions", q.dimensions.len()),
    ] {
        if count > MAX_FILTER_VALUES {
            return Err(invalid_query(
                field,
                format!("{field} lists {count} values; at most {MAX_FILTER_VALUES} are allowed"),
            ));
        }
    }
    let mut dimensions = Vec::with_capacity(q.dimensions.len());
    for (i, d) in q.dimensions.into_iter().enumerate() {
        if d.id.is_empty() || d.value.is_empty() {
            return Err(invalid_query(
                &format!("query.dimensions[{i}]"),
                "a dimension filter needs both an id and a value",
            ));
        }
        dimensions.push((d.id, d.value));
    }
    Ok(ObservationFilter {
        indicator: q.indicator,
        ref_areas: q.ref_areas,
        start_date: start.map(|r| date_string(r.start)),
        end_date: end.map(|r| date_string(r.end)),
        dimensions,
        node_ids: q.node_ids,
        as_of_ms: q
            .as_of
            .as_ref()
            .map(|t| timestamp_ms("query.as_of", t))
            .transpose()?,
        updated_after_ms: q
            .updated_after
            .as_ref()
            .map(|t| timestamp_ms("query.updated_after", t))
            .transpose()?,
        include_history: q.include_history,
    })
}

/// The QueryObservations page size: 0 means [`DEFAULT_PAGE_SIZE`], at most
/// [`MAX_PAGE_SIZE`]. (Larger than the shared `page_size` helper allows: observations are
/// small and often read in bulk.)
pub fn observation_page_size(requested: i32) -> Result<usize, Status> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(invalid_field(
            "page_size",
            reasons::INVALID_ARGUMENT,
            format!("page_size must be between 0 and {MAX_PAGE_SIZE}, got {requested}"),
        )),
    }
}

/// A row's paging position.
fn cursor_of(row: &ObservationRow) -> ObservationCursor {
    (row.provenance.feed_index, row.provenance.position)
}

/// Page tokens are opaque to clients; inside they are the (feed index, position) of the last
/// record served, as `FEED_INDEX.POSITION`.
pub fn cursor_token((feed_index, position): ObservationCursor) -> String {
    format!("{feed_index}.{position}")
}

/// Reads a page token from [`cursor_token`]; empty means the first page.
pub fn parse_cursor_token(token: &str) -> Result<Option<ObservationCursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let digits = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    token
        .split_once('.')
        .and_then(|(f, p)| Some((digits(f)?, digits(p)?)))
        .map(Some)
        .ok_or_else(|| {
            invalid_field(
                "page_token",
                reasons::INVALID_QUERY,
                "page_token is not one this server issued; start again without it",
            )
        })
}

/// The wire form of a stored version.
pub fn observation_record(row: &ObservationRow) -> v1::ObservationRecord {
    v1::ObservationRecord {
        indicator: row.indicator.clone(),
        observation: Some(row.observation.to_proto()),
        provenance: Some(row.provenance.to_proto()),
        superseded_at: row.superseded_at_ms.map(timestamp_from_ms),
    }
}

/// Keeps at most `limit` of `rows` (fetched with one extra) and at most
/// [`MAX_RESPONSE_BYTES`], and returns the next page token ("" on the last page).
fn page(rows: &[ObservationRow], limit: usize) -> (Vec<v1::ObservationRecord>, String) {
    let mut records = Vec::with_capacity(rows.len().min(limit));
    let mut bytes = 0;
    let mut last = None;
    for row in rows.iter().take(limit) {
        let record = observation_record(row);
        // The record, its field tag and length prefix.
        let size = record.encoded_len() + 6;
        if !records.is_empty() && bytes + size > MAX_RESPONSE_BYTES {
            break;
        }
        bytes += size;
        last = Some(cursor_of(row));
        records.push(record);
    }
    let more = rows.len() > records.len();
    let token = match last {
        Some(cursor) if more => cursor_token(cursor),
        _ => String::new(),
    };
    (records, token)
}

/// A stored hub document's envelope and decoded payload. Stored documents were verified when
/// logged, so failing to decode one is a server fault.
fn decode_hub_document<M: prost::Message + Default>(
    doc: &HubDocument,
    what: &'static str,
) -> Result<(v1::Envelope, M), Status> {
    let envelope = SignedEnvelope::decode(&doc.envelope).map_err(|e| internal(what, &e))?;
    let payload = M::decode(envelope.payload.as_slice()).map_err(|e| internal(what, &e))?;
    Ok((envelope.to_proto(), payload))
}

/// NOT_FOUND for a hub document: `none_reason` when none was ever issued (latest asked),
/// plain NOT_FOUND for a missing number.
fn no_hub_document(what: &str, number: u64, none_reason: &'static str) -> Status {
    if number == 0 {
        rejection_status(&Rejection::new(
            RejectClass::NotFound,
            none_reason,
            format!("no {what} has been issued yet"),
        ))
    } else {
        rejection_status(
            &Rejection::new(
                RejectClass::NotFound,
                reasons::NOT_FOUND,
                format!("{what} {number} does not exist"),
            )
            .with_meta("number", number.to_string()),
        )
    }
}

/// Refuses a query for an indicator that the catalogue in force does not define, with
/// `NOT_FOUND` / `UNKNOWN_INDICATOR` and the valid codes, so a typo is not answered with an
/// empty result (or a header-only export). Without a catalogue nothing can be checked.
async fn known_indicator(
    store: &Arc<dyn IndicatorStore>,
    hub_id: &str,
    indicator: &str,
) -> Result<(), Status> {
    let store = Arc::clone(store);
    let hub_id = hub_id.to_string();
    let Some(catalogue) = blocking("reading the catalogue", move || {
        latest_catalogue(store.as_ref(), &hub_id)
    })
    .await?
    else {
        return Ok(());
    };
    let codes: Vec<&str> = catalogue
        .indicators
        .iter()
        .map(|i| i.code.as_str())
        .collect();
    if codes.contains(&indicator) {
        return Ok(());
    }
    let closest = rcpfed_core::suggest::closest(indicator, codes.iter().copied())
        .map(|code| format!(" (did you mean {code}?)"))
        .unwrap_or_default();
    // observation_filter has checked the code's grammar; cut it anyway to keep errors small.
    let shown: String = indicator.chars().take(64).collect();
    Err(rejection_status(
        &Rejection::new(
            RejectClass::NotFound,
            reasons::UNKNOWN_INDICATOR,
            format!(
                "indicator {shown:?} is not in catalogue version {}{closest}; the catalogue defines: {}",
                catalogue.version,
                codes.join(", ")
            ),
        )
        .with_meta("valid_indicators", codes.join(",")),
    ))
}

/// The latest catalogue, decoded, if one has been issued.
pub(crate) fn latest_catalogue(
    store: &dyn IndicatorStore,
    hub_id: &str,
) -> Result<Option<v1::CatalogueDocument>, Status> {
    let doc = store
        .hub_document(&catalogue_chain(hub_id), None)
        .map_err(|e| internal("reading the catalogue", &e))?;
    doc.map(|d| decode_hub_document(&d, "decoding the stored catalogue").map(|(_, c)| c))
        .transpose()
}

#[tonic::async_trait]
impl IndicatorService for IndicatorRpc {
    async fn get_catalogue(
        &self,
        request: Request<v1::GetCatalogueRequest>,
    ) -> Result<Response<v1::GetCatalogueResponse>, Status> {
        let version = self.admit(request)?.version;
        let store = Arc::clone(&self.store);
        let chain = catalogue_chain(&self.hub_id);
        let doc = blocking("reading the catalogue", move || {
            store.hub_document(&chain, (version > 0).then_some(version))
        })
        .await?
        .ok_or_else(|| no_hub_document("catalogue version", version, reasons::NO_CATALOGUE))?;
        let (envelope, catalogue) =
            decode_hub_document::<v1::CatalogueDocument>(&doc, "decoding a stored catalogue")?;
        Ok(Response::new(v1::GetCatalogueResponse {
            envelope: Some(envelope),
            catalogue: Some(catalogue),
            feed_index: doc.feed_index,
        }))
    }

    async fn query_observations(
        &self,
        request: Request<v1::QueryObservationsRequest>,
    ) -> Result<Response<v1::QueryObservationsResponse>, Status> {
        let req = self.admit(request)?;
        let filter = observation_filter(req.query)?;
        known_indicator(&self.store, &self.hub_id, &filter.indicator).await?;
        let limit = observation_page_size(req.page_size)?;
        let after = parse_cursor_token(&req.page_token)?;
        let store = Arc::clone(&self.store);
        // Rows and feed size from one read transaction: the page reflects exactly the first
        // `feed_size` feed entries.
        let (rows, feed_size) = blocking("querying observations", move || {
            store.query_observations_at(&filter, after, limit + 1)
        })
        .await?;
        let (observations, next_page_token) = page(&rows, limit);
        Ok(Response::new(v1::QueryObservationsResponse {
            observations,
            next_page_token,
            feed_size,
        }))
    }

    async fn get_coherence_report(
        &self,
        request: Request<v1::GetCoherenceReportRequest>,
    ) -> Result<Response<v1::GetCoherenceReportResponse>, Status> {
        let number = self.admit(request)?.number;
        let store = Arc::clone(&self.store);
        let chain = coherence_chain(&self.hub_id);
        let doc = blocking("reading the coherence report", move || {
            store.hub_document(&chain, (number > 0).then_some(number))
        })
        .await?
        .ok_or_else(|| no_hub_document("coherence report", number, NO_COHERENCE_REPORT))?;
        let (envelope, report) =
            decode_hub_document::<v1::CoherenceReport>(&doc, "decoding a stored coherence report")?;
        Ok(Response::new(v1::GetCoherenceReportResponse {
            envelope: Some(envelope),
            report: Some(report),
            feed_index: doc.feed_index,
        }))
    }

    type ExportSdmxStream =
        Pin<Box<dyn Stream<Item = Result<v1::ExportSdmxResponse, Status>> + Send>>;

    async fn export_sdmx(
        &self,
        request: Request<v1::ExportSdmxRequest>,
    ) -> Result<Response<Self::ExportSdmxStream>, Status> {
        let (member, req) = self.admit_member(request)?;
        let format = match v1::SdmxFormat::try_from(req.format) {
            Ok(v1::SdmxFormat::Csv) => ExportFormat::Csv,
            Ok(v1::SdmxFormat::Json) => ExportFormat::Json,
            Ok(v1::SdmxFormat::Structure) => ExportFormat::Structure,
            _ => {
                return Err(invalid_field(
                    "format",
                    reasons::INVALID_ARGUMENT,
                    "format must be SDMX_FORMAT_CSV, SDMX_FORMAT_JSON or SDMX_FORMAT_STRUCTURE",
                ));
            }
        };
        let filter = observation_filter(req.query)?;
        known_indicator(&self.store, &self.hub_id, &filter.indicator).await?;
        if format == ExportFormat::Structure {
            let providers = self
                .providers
                .as_ref()
                .map(|f| rcpfed_sdmx::structure::providers(&f.get()));
            let pieces =
                structure_export(&self.store, &self.hub_id, &filter.indicator, providers).await?;
            return Ok(Response::new(Box::pin(tokio_stream::iter(
                pieces.into_iter().map(Ok),
            ))));
        }
        // Counted before any store read: a member that opens exports and never reads them
        // holds at most its own slots, never the threads everyone's reads need.
        let slot = Arc::new(self.exports.take(&member).inspect_err(|_| {
            tracing::info!(%member, "SDMX export refused: too many open");
            if let Some(hook) = &self.on_quota_refusal {
                hook(TOO_MANY_EXPORTS);
            }
        })?);
        let stream_slot = Arc::clone(&slot);
        let (tx, rx) = mpsc::channel(4);
        let finished = Arc::new(AtomicBool::new(false));
        let export_finished = Arc::clone(&finished);
        let store = Arc::clone(&self.store);
        let hub_id = self.hub_id.clone();
        let send_timeout = self.send_timeout;
        let prepared_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        // The export is store work from start to end: it runs on the blocking pool and
        // pushes pieces with backpressure (a slow client slows the reading down, a client that
        // takes nothing for the send timeout ends it).
        #[cfg(test)]
        let running = {
            self.export_threads.fetch_add(1, Ordering::SeqCst);
            ThreadCount(Arc::clone(&self.export_threads))
        };
        tokio::task::spawn_blocking(move || {
            #[cfg(test)]
            let _running = running;
            let _slot = slot;
            let mut sink = Sink {
                tx,
                runtime: tokio::runtime::Handle::current(),
                send_timeout,
                media_type: format.media_type(),
                buf: String::new(),
                sent: false,
            };
            match run_export(
                store.as_ref(),
                &hub_id,
                &filter,
                format,
                prepared_ms,
                &mut sink,
            ) {
                Ok(()) => export_finished.store(true, Ordering::Release),
                Err(Stop::Gone) => {}
                Err(Stop::Failed(status)) => {
                    let _ = sink.send(Err(status));
                }
            }
        });
        Ok(Response::new(Box::pin(ExportStream {
            pieces: rx,
            finished,
            ended: false,
            _slot: stream_slot,
        })))
    }
}

/// The SDMX export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExportFormat {
    Csv,
    Json,
    Structure,
}

impl ExportFormat {
    fn media_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => CSV_MEDIA_TYPE,
            ExportFormat::Json => JSON_MEDIA_TYPE,
            ExportFormat::Structure => STRUCTURE_MEDIA_TYPE,
        }
    }
}

/// The SDMX-ML 2.1 structure message of `indicator` (its dataflow and everything it uses,
/// and the data provider scheme when the providers are known), in export pieces.
async fn structure_export(
    store: &Arc<dyn IndicatorStore>,
    hub_id: &str,
    indicator: &str,
    providers: Option<Vec<rcpfed_sdmx::structure::Provider>>,
) -> Result<Vec<v1::ExportSdmxResponse>, Status> {
    use rcpfed_sdmx::structure::{Artefact, References, Structures};
    let reader = Arc::clone(store);
    let hub = hub_id.to_string();
    let catalogue = blocking("reading the catalogue", move || {
        latest_catalogue(reader.as_ref(), &hub)
    })
    .await?
    .ok_or_else(|| {
        rejection_status(&Rejection::new(
            RejectClass::NotFound,
            reasons::NO_CATALOGUE,
            "no catalogue has been issued yet, so there are no structures to export",
        ))
    })?;
    let with_providers = providers.is_some();
    let structures = Structures::new(catalogue, hub_id, providers.unwrap_or_default());
    let flow = BTreeSet::from([Artefact::Dataflow(indicator.to_string())]);
    let mut artefacts = structures.with_references(&flow, References::Descendants);
    if with_providers {
        artefacts.insert(Artefact::DataProviderScheme);
    }
    let prepared_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut text = String::new();
    structures.write_message(
        &artefacts,
        &BTreeSet::new(),
        &|_: &str| true,
        &format!("RCPFED-STRUCTURE-{indicator}-{prepared_ms}"),
        prepared_ms,
        &mut text,
    );
    // Pieces of whole characters, the first with the media type.
    let mut pieces = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(EXPORT_PIECE_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(v1::ExportSdmxResponse {
            data: piece.as_bytes().to_vec(),
            media_type: if pieces.is_empty() {
                ExportFormat::Structure.media_type().to_string()
            } else {
                String::new()
            },
        });
        rest = tail;
    }
    Ok(pieces)
}

/// Why an export stopped early.
enum Stop {
    /// The client went away: nothing more to do.
    Gone,
    /// The export failed: the client gets this status after the pieces already sent.
    Failed(Status),
}

impl From<Status> for Stop {
    fn from(status: Status) -> Self {
        Stop::Failed(status)
    }
}

impl From<SdmxError> for Stop {
    fn from(e: SdmxError) -> Self {
        let mut details = ErrorDetails::new();
        details.set_error_info(EXPORT_STRUCTURE_CHANGED, ERROR_DOMAIN, HashMap::new());
        Stop::Failed(Status::with_error_details(
            Code::Aborted,
            format!("{e}: the data changed while the export ran; start the export again"),
            details,
        ))
    }
}

/// Collects the message text and sends it in pieces of whole rows; the first piece carries
/// the media type (and is sent even when the message is short).
struct Sink {
    tx: mpsc::Sender<Result<v1::ExportSdmxResponse, Status>>,
    /// The runtime the export's thread waits on for its client (it is a blocking-pool thread).
    runtime: tokio::runtime::Handle,
    send_timeout: Duration,
    media_type: &'static str,
    buf: String,
    sent: bool,
}

impl Sink {
    fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.buf.len() >= EXPORT_PIECE_BYTES {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), Stop> {
        if self.buf.is_empty() && self.sent {
            return Ok(());
        }
        let piece = v1::ExportSdmxResponse {
            data: std::mem::take(&mut self.buf).into_bytes(),
            media_type: if self.sent {
                String::new()
            } else {
                self.media_type.to_string()
            },
        };
        self.sent = true;
        self.send(Ok(piece))
    }

    /// Hands one item to the client's stream: Gone when the client went away or took nothing
    /// for the send timeout.
    fn send(&self, item: Result<v1::ExportSdmxResponse, Status>) -> Result<(), Stop> {
        match self
            .runtime
            .block_on(tokio::time::timeout(self.send_timeout, self.tx.send(item)))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => {
                tracing::info!(
                    timeout_s = self.send_timeout.as_secs(),
                    "an SDMX export is abandoned: its client took nothing for the send timeout"
                );
                Err(Stop::Gone)
            }
        }
    }
}

/// Reads the rows a filter selects, [`EXPORT_BATCH`] at a time, in feed order.
struct Batches<'a> {
    store: &'a dyn IndicatorStore,
    filter: &'a ObservationFilter,
    after: Option<ObservationCursor>,
    done: bool,
}

impl Batches<'_> {
    fn next_batch(&mut self) -> Result<Option<Vec<ObservationRow>>, Stop> {
        if self.done {
            return Ok(None);
        }
        let rows = self
            .store
            .query_observations(self.filter, self.after, EXPORT_BATCH)
            .map_err(|e| internal("exporting observations", &e))?;
        self.done = rows.len() < EXPORT_BATCH;
        self.after = rows.last().map(cursor_of);
        Ok((!rows.is_empty()).then_some(rows))
    }
}

/// The whole export: a first pass collects the dimension ids the rows use (the header and
/// the SDMX-JSON key layout must be fixed before the first row), a second pass writes the
/// rows. Neither pass holds more than one batch of rows.
fn run_export(
    store: &dyn IndicatorStore,
    hub_id: &str,
    filter: &ObservationFilter,
    format: ExportFormat,
    prepared_ms: i64,
    sink: &mut Sink,
) -> Result<(), Stop> {
    let catalogue = latest_catalogue(store, hub_id)?;
    let batches = |store| Batches {
        store,
        filter,
        after: None,
        done: false,
    };

    let mut found = BTreeSet::new();
    let mut pass = batches(store);
    while let Some(rows) = pass.next_batch()? {
        if sink.tx.is_closed() {
            return Err(Stop::Gone);
        }
        for row in &rows {
            for (id, _) in &row.observation.dimensions {
                if !found.contains(id) {
                    found.insert(id.clone());
                }
            }
        }
    }

    let history = filter.include_history || filter.updated_after_ms.is_some();
    let structure = SdmxStructure::new(
        &filter.indicator,
        catalogue.as_ref(),
        hub_id,
        &found,
        history,
    );
    let mut written = 0u64;
    let mut pass = batches(store);
    match format {
        // Answered before any data pass (structure_export).
        ExportFormat::Structure => {}
        ExportFormat::Csv => {
            csv_header(&structure, &mut sink.buf);
            while let Some(rows) = pass.next_batch()? {
                for row in &rows {
                    csv_row(&structure, row, &mut sink.buf)?;
                    sink.flush_if_full()?;
                }
                written += rows.len() as u64;
            }
        }
        ExportFormat::Json => {
            let meta = JsonMeta {
                id: format!("RCPFED-{}-{prepared_ms}", filter.indicator),
                prepared_ms,
                sender: structure.agency.clone(),
            };
            let mut writer = SdmxJsonWriter::new(structure);
            writer.begin(&meta, &mut sink.buf);
            while let Some(rows) = pass.next_batch()? {
                for row in &rows {
                    writer.row(row, &mut sink.buf)?;
                    sink.flush_if_full()?;
                }
                written += rows.len() as u64;
            }
            writer.finish(&mut sink.buf);
        }
    }
    sink.flush()?;
    tracing::info!(
        indicator = %filter.indicator,
        format = ?format,
        observations = written,
        "SDMX export finished"
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcpfed_core::Digest;
    use rcpfed_core::rejection::Violation;
    use rcpfed_core::statement::{Observation, ObservationAction};
    use rcpfed_store::{
        CoherenceRows, ConflictRows, CoverageData, PolicyCoverageData, RevisionRows, StoreError,
    };
    use std::sync::Mutex;
    use tokio_stream::StreamExt as _;

    /// An in-memory store: rows in feed order, filtered like the real one on the fields these
    /// tests use.
    #[derive(Default)]
    pub(crate) struct FakeStore {
        rows: Vec<ObservationRow>,
        documents: Vec<(String, HubDocument)>,
        feed_size: u64,
        /// query_observations calls so far.
        calls: Mutex<usize>,
        /// From the second call on, rows gain a dimension: the data changing mid-export.
        grow_dimension: bool,
    }

    impl IndicatorStore for FakeStore {
        fn check_observation_actions(
            &self,
            _: &str,
            _: &str,
            _: &[Observation],
            _: usize,
        ) -> Result<Vec<Violation>, StoreError> {
            Ok(Vec::new())
        }

        fn query_observations(
            &self,
            filter: &ObservationFilter,
            after: Option<ObservationCursor>,
            limit: usize,
        ) -> Result<Vec<ObservationRow>, StoreError> {
            let calls = match self.calls.lock() {
                Ok(mut calls) => {
                    *calls += 1;
                    *calls
                }
                Err(_) => 0,
            };
            let grow = self.grow_dimension && calls > 1;
            Ok(self
                .rows
                .iter()
                .filter(|r| r.indicator == filter.indicator)
                .filter(|r| {
                    filter.ref_areas.is_empty()
                        || filter.ref_areas.contains(&r.observation.ref_area)
                })
                .filter(|r| filter.include_history || r.superseded_at_ms.is_none())
                .filter(|r| after.is_none_or(|a| cursor_of(r) > a))
                .take(limit)
                .map(|r| {
                    let mut r = r.clone();
                    if grow {
                        r.observation.dimensions.push(("ZED".into(), "1".into()));
                    }
                    r
                })
                .collect())
        }

        fn query_observations_at(
            &self,
            filter: &ObservationFilter,
            after: Option<ObservationCursor>,
            limit: usize,
        ) -> Result<(Vec<ObservationRow>, u64), StoreError> {
            Ok((
                self.query_observations(filter, after, limit)?,
                self.feed_size,
            ))
        }

        fn applied_feed_size(&self) -> Result<u64, StoreError> {
            Ok(self.feed_size)
        }

        fn view_superseding(&self) -> Result<Option<u64>, StoreError> {
            Ok(None)
        }

        fn conflicts(&self, _: usize) -> Result<(Vec<ConflictRows>, u64), StoreError> {
            Ok((Vec::new(), 0))
        }

        fn coverage(&self) -> Result<Vec<CoverageData>, StoreError> {
            Ok(Vec::new())
        }

        fn policy_coverage(&self) -> Result<Vec<PolicyCoverageData>, StoreError> {
            Ok(Vec::new())
        }

        fn revisions_since(
            &self,
            _: u64,
            _: usize,
        ) -> Result<(Vec<RevisionRows>, u64), StoreError> {
            Ok((Vec::new(), 0))
        }

        fn coherence_rows(&self, _: u64, _: usize) -> Result<CoherenceRows, StoreError> {
            Ok(CoherenceRows {
                feed_size: self.feed_size,
                conflicts: (Vec::new(), 0),
                coverage: Vec::new(),
                policy_coverage: Vec::new(),
                revisions: (Vec::new(), 0),
            })
        }

        fn last_content_feed_index(&self) -> Result<u64, StoreError> {
            Ok(0)
        }

        fn stage_chunks(&self, _: &[(Digest, Vec<u8>)]) -> Result<(), StoreError> {
            Ok(())
        }

        fn has_chunks(&self, sha256s: &[Digest]) -> Result<Vec<bool>, StoreError> {
            Ok(vec![false; sha256s.len()])
        }

        fn chunk(&self, _: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }

        fn hub_document(
            &self,
            chain: &str,
            seq: Option<u64>,
        ) -> Result<Option<HubDocument>, StoreError> {
            Ok(self
                .documents
                .iter()
                .filter(|(c, d)| c == chain && seq.is_none_or(|s| d.seq == s))
                .map(|(_, d)| d.clone())
                .max_by_key(|d| d.seq))
        }
    }

    fn observation(action: ObservationAction, area: &str, period: &str) -> Observation {
        Observation {
            action,
            ref_area: area.into(),
            time_period: period.into(),
            dimensions: vec![("SEX".into(), "F".into())],
            obs_value: (action != ObservationAction::Delete).then_some(1.5),
            obs_status: "A".into(),
            unit_measure: "persons".into(),
            unit_mult: 0,
            conf_status: String::new(),
            footnote: String::new(),
            source: "IOM".into(),
        }
    }

    fn row(feed_index: u64, position: u64, o: Observation) -> ObservationRow {
        ObservationRow {
            indicator: "SDG_10_7_3".into(),
            observation: o,
            provenance: rcpfed_store::ObservationProvenance {
                node_id: "node-a".into(),
                digest: Digest::of(&feed_index.to_be_bytes()),
                document: "deaths".into(),
                revision: 1,
                feed_index,
                position,
                accepted_at_ms: 1_700_000_000_000 + feed_index as i64,
            },
            superseded_at_ms: None,
        }
    }

    fn hub_document<M: prost::Message>(seq: u64, feed_index: u64, payload: &M) -> HubDocument {
        let envelope = SignedEnvelope {
            payload_type: "application/vnd.rcpfed.test".into(),
            payload: payload.encode_to_vec(),
            signatures: Vec::new(),
        };
        HubDocument {
            feed_index,
            seq,
            digest: envelope.digest(),
            envelope: envelope.encode(),
            accepted_at_ms: 0,
        }
    }

    fn allow() -> ReaderCheck {
        Arc::new(|_: &Request<()>| Ok("reader".to_string()))
    }

    fn rpc(store: FakeStore) -> IndicatorRpc {
        IndicatorRpc::new(Arc::new(store), "hub", allow())
    }

    fn query(indicator: &str) -> Option<v1::ObservationQuery> {
        Some(v1::ObservationQuery {
            indicator: indicator.into(),
            ..Default::default()
        })
    }

    fn reason(status: &Status) -> String {
        status
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default()
    }

    fn bad_field(status: &Status) -> String {
        status
            .get_details_bad_request()
            .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
            .unwrap_or_default()
    }

    #[test]
    fn queries_become_filters() {
        let q = v1::ObservationQuery {
            indicator: "SDG_10_7_3".into(),
            ref_areas: vec!["FRA".into()],
            start_period: "2015-Q2".into(),
            end_period: "2020".into(),
            dimensions: vec![v1::Dimension {
                id: "SEX".into(),
                value: "F".into(),
            }],
            node_ids: vec!["node-a".into()],
            as_of: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000,
            }),
            updated_after: None,
            include_history: true,
        };
        let f = observation_filter(Some(q)).expect("valid");
        assert_eq!(f.start_date.as_deref(), Some("2015-04-01"));
        assert_eq!(f.end_date.as_deref(), Some("2020-12-31"));
        assert_eq!(f.dimensions, [("SEX".to_string(), "F".to_string())]);
        assert_eq!(f.as_of_ms, Some(1_700_000_000_250));
        assert_eq!(f.updated_after_ms, None);
        assert!(f.include_history);
    }

    #[test]
    fn bad_queries_name_the_field() {
        let cases: Vec<(v1::ObservationQuery, &str)> = vec![
            (v1::ObservationQuery::default(), "query.indicator"),
            (
                v1::ObservationQuery {
                    indicator: "sdg 10".into(),
                    ..Default::default()
                },
                "query.indicator",
            ),
            (
                v1::ObservationQuery {
                    indicator: "X".into(),
                    start_period: "2015-13".into(),
                    ..Default::default()
                },
                "query.start_period",
            ),
            (
                v1::ObservationQuery {
                    indicator: "X".into(),
                    start_period: "2020".into(),
                    end_period: "2019-Q4".into(),
                    ..Default::default()
                },
                "query.end_period",
            ),
            (
                v1::ObservationQuery {
                    indicator: "X".into(),
                    dimensions: vec![v1::Dimension {
                        id: "SEX".into(),
                        value: String::new(),
                    }],
                    ..Default::default()
                },
                "query.dimensions[0]",
            ),
            (
                v1::ObservationQuery {
                    indicator: "X".into(),
                    updated_after: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: -1,
                    }),
                    ..Default::default()
                },
                "query.updated_after",
            ),
            (
                v1::ObservationQuery {
                    indicator: "X".into(),
                    updated_after: Some(prost_types::Timestamp {
                        seconds: rcpfed_core::wire::MAX_TIMESTAMP_SECONDS + 1,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "query.updated_after",
            ),
            (
                v1::ObservationQuery {
                    indicator: "X".into(),
                    as_of: Some(prost_types::Timestamp {
                        seconds: -999_367_286_400,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "query.as_of",
            ),
        ];
        for (q, field) in cases {
            let status = observation_filter(Some(q)).expect_err(field);
            assert_eq!(status.code(), Code::InvalidArgument, "{field}");
            assert_eq!(reason(&status), reasons::INVALID_QUERY, "{field}");
            assert_eq!(bad_field(&status), field);
        }
        assert!(observation_filter(None).is_err());
    }

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(observation_page_size(0).ok(), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(observation_page_size(10_000).ok(), Some(10_000));
        for bad in [-1, 10_001] {
            let status = observation_page_size(bad).expect_err("bad size");
            assert_eq!(bad_field(&status), "page_size");
        }
        assert_eq!(cursor_token((12, 345)), "12.345");
        assert_eq!(parse_cursor_token("12.345").ok(), Some(Some((12, 345))));
        assert_eq!(parse_cursor_token("").ok(), Some(None));
        for bad in [
            "12",
            "a.b",
            "1.2.3",
            ".1",
            "1.",
            "+1.2",
            "99999999999999999999.1",
        ] {
            let status = parse_cursor_token(bad).expect_err(bad);
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(bad_field(&status), "page_token");
            assert_eq!(reason(&status), reasons::INVALID_QUERY);
        }
    }

    #[tokio::test]
    async fn query_pages_through_in_feed_order() {
        let mut store = FakeStore {
            feed_size: 9,
            ..Default::default()
        };
        for (fi, pos, area) in [(3, 0, "FRA"), (3, 1, "DEU"), (5, 0, "ITA")] {
            store.rows.push(row(
                fi,
                pos,
                observation(ObservationAction::Append, area, "2024"),
            ));
        }
        let service = rpc(store);
        let mut token = String::new();
        let mut areas = Vec::new();
        let mut pages = 0;
        loop {
            let resp = service
                .query_observations(Request::new(v1::QueryObservationsRequest {
                    query: query("SDG_10_7_3"),
                    page_size: 2,
                    page_token: token.clone(),
                }))
                .await
                .expect("page")
                .into_inner();
            pages += 1;
            assert_eq!(resp.feed_size, 9);
            for r in &resp.observations {
                let p = r.provenance.as_ref().expect("provenance");
                assert_eq!(p.leaf_index, p.feed_index - 1);
                assert_eq!(
                    p.accepted_at,
                    Some(timestamp_from_ms(1_700_000_000_000 + p.feed_index as i64))
                );
                assert!(r.superseded_at.is_none());
                areas.push(
                    r.observation
                        .as_ref()
                        .map(|o| o.ref_area.clone())
                        .unwrap_or_default(),
                );
            }
            token = resp.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(areas, ["FRA", "DEU", "ITA"]);
        assert_eq!(pages, 2);
    }

    #[tokio::test]
    async fn the_reader_check_runs_first() {
        let deny: ReaderCheck =
            Arc::new(|_: &Request<()>| Err(Status::permission_denied("not a reader")));
        let service = IndicatorRpc::new(Arc::new(FakeStore::default()), "hub", deny);
        let status = service
            .query_observations(Request::new(v1::QueryObservationsRequest::default()))
            .await
            .expect_err("denied");
        assert_eq!(status.code(), Code::PermissionDenied);
        let status = service
            .get_catalogue(Request::new(v1::GetCatalogueRequest::default()))
            .await
            .expect_err("denied");
        assert_eq!(status.code(), Code::PermissionDenied);
    }

    #[tokio::test]
    async fn hub_documents_are_read_and_decoded() {
        let catalogue = |version| v1::CatalogueDocument {
            federation_id: "fed".into(),
            version,
            agency: "GFMD".into(),
            ..Default::default()
        };
        let store = FakeStore {
            documents: vec![
                (catalogue_chain("hub"), hub_document(1, 4, &catalogue(1))),
                (catalogue_chain("hub"), hub_document(2, 8, &catalogue(2))),
            ],
            ..Default::default()
        };
        let service = rpc(store);
        let latest = service
            .get_catalogue(Request::new(v1::GetCatalogueRequest { version: 0 }))
            .await
            .expect("latest")
            .into_inner();
        assert_eq!(latest.feed_index, 8);
        assert_eq!(latest.catalogue.map(|c| c.version), Some(2));
        assert!(latest.envelope.is_some_and(|e| !e.payload.is_empty()));
        let first = service
            .get_catalogue(Request::new(v1::GetCatalogueRequest { version: 1 }))
            .await
            .expect("v1")
            .into_inner();
        assert_eq!(first.feed_index, 4);
        let missing = service
            .get_catalogue(Request::new(v1::GetCatalogueRequest { version: 3 }))
            .await
            .expect_err("v3");
        assert_eq!(missing.code(), Code::NotFound);
        assert_eq!(reason(&missing), reasons::NOT_FOUND);

        let none = service
            .get_coherence_report(Request::new(v1::GetCoherenceReportRequest { number: 0 }))
            .await
            .expect_err("none");
        assert_eq!(none.code(), Code::NotFound);
        assert_eq!(reason(&none), NO_COHERENCE_REPORT);
        let no_catalogue = rpc(FakeStore::default())
            .get_catalogue(Request::new(v1::GetCatalogueRequest { version: 0 }))
            .await
            .expect_err("none");
        assert_eq!(reason(&no_catalogue), reasons::NO_CATALOGUE);

        let report = v1::CoherenceReport {
            number: 1,
            feed_size: 8,
            ..Default::default()
        };
        let store = FakeStore {
            documents: vec![(coherence_chain("hub"), hub_document(1, 9, &report))],
            ..Default::default()
        };
        let got = rpc(store)
            .get_coherence_report(Request::new(v1::GetCoherenceReportRequest { number: 0 }))
            .await
            .expect("report")
            .into_inner();
        assert_eq!(got.report, Some(report));
        assert_eq!(got.feed_index, 9);
    }

    async fn export(
        service: &IndicatorRpc,
        format: v1::SdmxFormat,
        q: Option<v1::ObservationQuery>,
    ) -> Result<(String, String), Status> {
        let mut stream = service
            .export_sdmx(Request::new(v1::ExportSdmxRequest {
                query: q,
                format: format as i32,
            }))
            .await?
            .into_inner();
        let mut media_type = String::new();
        let mut data = Vec::new();
        let mut first = true;
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            if first {
                media_type = piece.media_type.clone();
            } else {
                assert!(piece.media_type.is_empty());
            }
            first = false;
            data.extend(piece.data);
        }
        Ok((media_type, String::from_utf8(data).expect("UTF-8")))
    }

    /// `n` rows of one indicator (`SDG_10_7_3`), a thousand per feed index.
    pub(crate) fn big_store(n: u64) -> FakeStore {
        let mut store = FakeStore::default();
        for i in 0..n {
            let mut o = observation(ObservationAction::Append, "FRA", "2024");
            o.time_period = format!("{}", 1900 + i % 200);
            o.ref_area = format!("A{:02}", i / 200);
            store.rows.push(row(1 + i / 1000, i % 1000, o));
        }
        store
    }

    /// A reader check that names the caller by its `x-member` metadata.
    fn member_from_metadata() -> ReaderCheck {
        Arc::new(|request: &Request<()>| {
            Ok(request
                .metadata()
                .get("x-member")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("reader")
                .to_string())
        })
    }

    /// Opens an export of `service` as `member` and reads nothing of it.
    async fn open_export(
        service: &IndicatorRpc,
        member: &str,
    ) -> Result<<IndicatorRpc as IndicatorService>::ExportSdmxStream, Status> {
        let mut request = Request::new(v1::ExportSdmxRequest {
            query: query("SDG_10_7_3"),
            format: v1::SdmxFormat::Csv as i32,
        });
        request
            .metadata_mut()
            .insert("x-member", member.parse().expect("ASCII"));
        Ok(service.export_sdmx(request).await?.into_inner())
    }

    fn assert_too_many_exports(status: &Status) {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason(status), TOO_MANY_EXPORTS);
        assert!(status.get_error_details().retry_info().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_are_capped_per_member_and_in_all() {
        // Far more text than the pieces queued for a client that reads nothing.
        let service = IndicatorRpc::new(Arc::new(big_store(40_000)), "hub", member_from_metadata());
        let mut held = Vec::new();
        for _ in 0..MAX_EXPORTS_PER_MEMBER {
            held.push(
                open_export(&service, "greedy")
                    .await
                    .expect("within the quota"),
            );
        }
        let over = open_export(&service, "greedy").await.err().expect("over");
        assert_too_many_exports(&over);
        // Others still export, up to the server's total.
        let mut member = 0;
        while held.len() < MAX_EXPORTS {
            member += 1;
            held.push(
                open_export(&service, &format!("m{member}"))
                    .await
                    .expect("within the total"),
            );
        }
        let over = open_export(&service, "late").await.err().expect("over");
        assert_too_many_exports(&over);
        // A client that goes away gives its place back once its export notices.
        drop(held.swap_remove(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match open_export(&service, "late").await {
                Ok(stream) => {
                    held.push(stream);
                    break;
                }
                Err(status) => {
                    assert_too_many_exports(&status);
                    assert!(tokio::time::Instant::now() < deadline, "the slot came back");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_nobody_reads_is_abandoned_and_ends_incomplete() {
        let mut service =
            IndicatorRpc::new(Arc::new(big_store(40_000)), "hub", member_from_metadata());
        service.send_timeout = Duration::from_millis(200);
        let mut stalled = open_export(&service, "slow").await.expect("export");
        let _second = open_export(&service, "slow").await.expect("export");
        // The export gives up on its client, but the unread stream still holds its place.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while service.export_threads.load(Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the exports gave up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let over = open_export(&service, "slow").await.err().expect("over");
        assert_too_many_exports(&over);
        // What was queued is still delivered, then an error: never a truncated message ending
        // with OK.
        let mut pieces = 0;
        let status = loop {
            match stalled.next().await {
                Some(Ok(_)) => pieces += 1,
                Some(Err(status)) => break status,
                None => panic!("an abandoned export ended as if complete"),
            }
        };
        assert!(pieces > 0);
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(reason(&status), EXPORT_INCOMPLETE);
        assert!(stalled.next().await.is_none());
        // The call ended: its place is back.
        drop(stalled);
        let _third = open_export(&service, "slow")
            .await
            .expect("the place of the ended call");
    }

    #[tokio::test]
    async fn export_csv_streams_every_row_in_pieces() {
        let n = 12_345;
        let service = rpc(big_store(n));
        let (media_type, text) = export(&service, v1::SdmxFormat::Csv, query("SDG_10_7_3"))
            .await
            .expect("export");
        assert_eq!(media_type, CSV_MEDIA_TYPE);
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len() as u64, n + 1);
        assert!(lines[0].starts_with("STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,SEX,TIME_PERIOD,"));
        // No catalogue: the hub id is the agency.
        assert!(lines[1].starts_with("dataflow,hub:SDG_10_7_3(1.0.0),I,A00,F,1900,1.5,"));
    }

    #[tokio::test]
    async fn export_json_is_one_message() {
        let mut store = big_store(7_000);
        let mut tombstone = row(9, 0, observation(ObservationAction::Delete, "A00", "1900"));
        tombstone.provenance.node_id = "node-b".into();
        store.rows.push(tombstone);
        let service = rpc(store);
        let mut q = query("SDG_10_7_3");
        if let Some(q) = q.as_mut() {
            q.include_history = true;
        }
        let (media_type, text) = export(&service, v1::SdmxFormat::Json, q)
            .await
            .expect("export");
        assert_eq!(media_type, JSON_MEDIA_TYPE);
        let m: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let sets = m["data"]["dataSets"].as_array().expect("sets");
        // One data set per statement (feed index), the tombstone in a Delete set.
        assert_eq!(sets.len(), 8);
        assert_eq!(sets[7]["action"], "Delete");
        let total: usize = sets
            .iter()
            .filter_map(|s| s["observations"].as_object().map(|o| o.len()))
            .sum();
        assert_eq!(total, 7_001);
    }

    #[tokio::test]
    async fn export_stops_when_the_structure_changes() {
        let mut store = FakeStore {
            grow_dimension: true,
            ..Default::default()
        };
        store.rows.push(row(
            2,
            0,
            observation(ObservationAction::Append, "FRA", "2024"),
        ));
        let status = export(&rpc(store), v1::SdmxFormat::Csv, query("SDG_10_7_3"))
            .await
            .expect_err("aborted");
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(reason(&status), EXPORT_STRUCTURE_CHANGED);
    }

    #[test]
    fn pages_stop_before_the_response_limit() {
        let rows: Vec<ObservationRow> = (0..2_000)
            .map(|i| {
                let mut o = observation(ObservationAction::Append, "FRA", "2024");
                o.footnote = "x".repeat(2_000);
                row(1, i, o)
            })
            .collect();
        let (records, token) = page(&rows, 10_000);
        assert!(records.len() < rows.len());
        let bytes: usize = records.iter().map(|r| r.encoded_len()).sum();
        assert!(bytes <= MAX_RESPONSE_BYTES);
        assert_eq!(token, cursor_token((1, records.len() as u64 - 1)));
        let (all, last) = page(&rows[..10], 10);
        assert_eq!((all.len(), last.as_str()), (10, ""));
    }

    #[tokio::test]
    async fn export_refuses_bad_requests_before_streaming() {
        let service = rpc(FakeStore::default());
        let status = export(&service, v1::SdmxFormat::Unspecified, query("SDG_10_7_3"))
            .await
            .expect_err("format");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(bad_field(&status), "format");
        let status = export(&service, v1::SdmxFormat::Csv, None)
            .await
            .expect_err("indicator");
        assert_eq!(bad_field(&status), "query.indicator");
        // Nothing selected: a header (CSV) or an empty message (JSON), not an error.
        let (_, csv) = export(&service, v1::SdmxFormat::Csv, query("X"))
            .await
            .expect("empty");
        assert_eq!(csv.lines().count(), 1);
        let (_, json) = export(&service, v1::SdmxFormat::Json, query("X"))
            .await
            .expect("empty");
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    }

    #[tokio::test]
    async fn export_uses_the_catalogue_structure() {
        let catalogue = v1::CatalogueDocument {
            agency: "GFMD".into(),
            catalogue_version: "1.0.0".into(),
            indicators: vec![v1::IndicatorDefinition {
                code: "SDG_10_7_3".into(),
                dimensions: vec![
                    v1::IndicatorDimension {
                        id: "AGE".into(),
                        required: false,
                        default_code: "_T".into(),
                    },
                    v1::IndicatorDimension {
                        id: "SEX".into(),
                        required: false,
                        default_code: "_T".into(),
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut store = FakeStore {
            documents: vec![(catalogue_chain("hub"), hub_document(1, 1, &catalogue))],
            ..Default::default()
        };
        store.rows.push(row(
            2,
            0,
            observation(ObservationAction::Append, "FRA", "2024"),
        ));
        let (_, text) = export(&rpc(store), v1::SdmxFormat::Csv, query("SDG_10_7_3"))
            .await
            .expect("export");
        let mut lines = text.lines();
        assert!(lines.next().is_some_and(|h| {
            h.starts_with("STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,AGE,SEX,TIME_PERIOD,")
        }));
        assert!(lines.next().is_some_and(|r| {
            r.starts_with("dataflow,GFMD:SDG_10_7_3(1.0.0),I,FRA,_T,F,2024,1.5,")
        }));
    }
}
