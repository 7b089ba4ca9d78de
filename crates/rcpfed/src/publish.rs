//! `rcpfed publish indicators FILE`: the project's CSV or SDMX-CSV 2.0, published through a
//! node.
//!
//! A snapshot of at most [`STREAM_ABOVE`] observations goes in one
//! `NodeService.PublishDocument` request. A larger one is streamed with
//! `NodeService.PublishSnapshot` (a header, then batches of [`BATCH`] observations) straight
//! from the file, read in batches by [`IndicatorCsvBatches`]: the CLI never holds the whole
//! file. A progress bar on stderr (hidden when stderr is not a terminal) follows the bytes read.
//!
//! When the node refuses, each field violation is printed at its place in the file,
//! `line N, column X: <description> (<REASON>)`, and the command fails. A file that cannot be
//! read stops the stream before its end, so the node never signs half a snapshot.

use crate::client;
use anyhow::{Context as _, Result};
use rcpfed_core::catalogue::Catalogue;
use rcpfed_import::{
    CellRef, ImportError, ImportReport, IndicatorCsvBatches, IndicatorDoc, ObservationBatch,
};
use rcpfed_proto::v1;
use rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

/// Snapshots with more observations than this are streamed (the node cuts such snapshots
/// into chunks anyway).
pub const STREAM_ABOVE: usize = rcpfed_core::chunks::OBSERVATIONS_PER_CHUNK;
/// Observations per streamed `ObservationBatch` message.
pub const BATCH: usize = 5_000;

/// How to publish.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Validate only (`validate_only`): sign and store nothing.
    pub dry_run: bool,
    /// Stream with PublishSnapshot even a small snapshot.
    pub stream: bool,
    /// How long to wait for the hub's receipt after signing (zero: do not wait).
    pub wait_delivery: std::time::Duration,
    /// Some rows of the file could not be read: the others are only checked (never signed),
    /// so that every problem of the file is reported in one run.
    pub rows_left_out: bool,
}

/// The document name part: `--name`, or the file's stem in lower case.
pub fn document_name(file: &Path, name: Option<&str>) -> String {
    match name {
        Some(n) => n.to_string(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_else(|| "snapshot".into()),
    }
}

// ------------------------------------------------------------------------------------------
// Violations at their place in the file (pure)

/// A violation's description and reason. The servers put the reason at the end of the
/// description, `… (REASON)`, and may also give it in `FieldViolation.reason`; either way it
/// is returned once, separately.
pub fn split_reason(description: &str, reason: &str) -> (String, String) {
    let d = description.trim_end();
    let trailing = d.strip_suffix(')').and_then(|rest| {
        let open = rest.rfind('(')?;
        let r = &rest[open + 1..];
        let is_reason = !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && r.bytes().next().is_some_and(|b| b.is_ascii_uppercase());
        is_reason.then(|| (rest[..open].trim_end(), r))
    });
    match trailing {
        Some((text, r)) if reason.is_empty() || reason == r => (text.to_string(), r.to_string()),
        _ => (d.to_string(), reason.to_string()),
    }
}

/// One violation as the operator reads it: `line N, column X: <description> (<REASON>)`;
/// `line N: …` when it names a whole row; `<field>: …` when it names no place in the file.
pub fn violation_line(
    cell: Option<&CellRef>,
    field: &str,
    description: &str,
    reason: &str,
) -> String {
    let (text, reason) = split_reason(description, reason);
    let mut line = match cell {
        Some(CellRef {
            line,
            column: Some(column),
        }) => format!("line {line}, column {column}: {text}"),
        Some(CellRef { line, column: None }) => format!("line {line}: {text}"),
        None if field.is_empty() => text,
        None => format!("{field}: {text}"),
    };
    if !reason.is_empty() {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

/// A warning of the node ("field: description") at its place in the file.
pub fn warning_line(warning: &str, locate: impl Fn(&str) -> Option<CellRef>) -> String {
    if let Some((field, description)) = warning.split_once(": ")
        && !field.contains(' ')
        && let Some(cell) = locate(field)
    {
        return format!(
            "warning: {}",
            violation_line(Some(&cell), field, description, "")
        );
    }
    format!("warning: {warning}")
}

/// The index of the observation a violation path names
/// (`indicator_snapshot.observations[3].ref_area` → 3) and the rest of the path
/// (`.ref_area`).
pub fn observation_index(field: &str) -> Option<(usize, &str)> {
    let path = field.strip_prefix("indicator_snapshot.").unwrap_or(field);
    let rest = path.strip_prefix("observations[")?;
    let (index, rest) = rest.split_once(']')?;
    Some((index.parse().ok()?, rest))
}

/// The line of each observation of a streamed snapshot, kept batch by batch.
#[derive(Clone, Debug, Default)]
pub struct LineIndex {
    /// (index of the batch's first observation, the line of each of its observations).
    batches: Vec<(usize, Vec<usize>)>,
}

impl LineIndex {
    /// Records a batch's lines.
    pub fn push(&mut self, first_index: usize, lines: Vec<usize>) {
        self.batches.push((first_index, lines));
    }

    /// The line of observation `i`.
    pub fn line_of(&self, i: usize) -> Option<usize> {
        let b = self.batches.partition_point(|(first, _)| *first <= i);
        let (first, lines) = self.batches.get(b.checked_sub(1)?)?;
        lines.get(i - first).copied()
    }
}

/// Where a streamed file's violations are: the line of every observation, and the header's
/// columns; a dimension's column is found by reading that observation again from the file.
pub struct StreamLocator {
    /// The file.
    pub path: PathBuf,
    /// The indicator (as in the file).
    pub indicator: String,
    /// Header cells as written, by canonical column id.
    pub columns: BTreeMap<String, String>,
    /// Lines of the observations sent.
    pub lines: LineIndex,
    /// Whether observation `i` of the snapshot is the `i`-th of the file, so that it can be
    /// read again (false for a file with several indicators).
    pub reread: bool,
}

impl StreamLocator {
    /// Locates each field (one pass over the file when some field names a dimension).
    pub fn locate_all(&self, fields: &[&str]) -> Vec<Option<CellRef>> {
        let wanted: BTreeSet<usize> = fields
            .iter()
            .filter_map(|f| observation_index(f))
            .filter(|(_, rest)| rest.contains("dimensions["))
            .map(|(i, _)| i)
            .collect();
        let observations = if wanted.is_empty() || !self.reread {
            HashMap::new()
        } else {
            read_observations(&self.path, &wanted)
        };
        fields
            .iter()
            .map(|f| self.locate_with(f, &observations))
            .collect()
    }

    fn locate_with(
        &self,
        field: &str,
        observations: &HashMap<usize, v1::Observation>,
    ) -> Option<CellRef> {
        if matches!(field, "indicator" | "indicator_snapshot.indicator") {
            return Some(CellRef {
                line: self.lines.line_of(0)?,
                column: Some(
                    ["INDICATOR", "DATAFLOW", "STRUCTURE_ID"]
                        .iter()
                        .find_map(|k| self.columns.get(*k))
                        .cloned()
                        .unwrap_or_else(|| "INDICATOR".into()),
                ),
            });
        }
        let (i, rest) = observation_index(field)?;
        let line = self.lines.line_of(i)?;
        // The library's locate, on a one-observation document standing for observation i.
        let doc = IndicatorDoc {
            document: String::new(),
            snapshot: v1::IndicatorSnapshot {
                indicator: self.indicator.clone(),
                observations: vec![observations.get(&i).cloned().unwrap_or_default()],
                chunks: None,
            },
            lines: vec![line],
            columns: self.columns.clone(),
        };
        doc.locate(&format!("indicator_snapshot.observations[0]{rest}"))
            .or(Some(CellRef { line, column: None }))
    }
}

/// Reads the observations at `indices` from the file again (for the column of a dimension).
fn read_observations(path: &Path, indices: &BTreeSet<usize>) -> HashMap<usize, v1::Observation> {
    let mut found = HashMap::new();
    let Some(&last) = indices.last() else {
        return found;
    };
    let Ok(file) = std::fs::File::open(path) else {
        return found;
    };
    let Ok(batches) = IndicatorCsvBatches::new(BufReader::new(file), BATCH) else {
        return found;
    };
    for batch in batches {
        let Ok(batch) = batch else { break };
        for (j, o) in batch.observations.into_iter().enumerate() {
            let i = batch.first_index + j;
            if indices.contains(&i) {
                found.insert(i, o);
            }
        }
        if batch.first_index + batch.lines.len() > last {
            break;
        }
    }
    found
}

/// The lines printed for a refusal: what the status says (with its ErrorInfo reason), then
/// every field violation at its place in the file.
pub fn refusal_lines(
    status: &tonic::Status,
    locate: impl Fn(&[&str]) -> Vec<Option<CellRef>>,
) -> Vec<String> {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    let mut head = format!("{:?}: {}", status.code(), status.message());
    if let Some(info) = details.error_info() {
        head.push_str(&format!(" [reason {}]", info.reason));
    }
    let mut lines = vec![head];
    if let Some(bad) = details.bad_request() {
        let fields: Vec<&str> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        let cells = locate(&fields);
        for (v, cell) in bad.field_violations.iter().zip(cells) {
            lines.push(format!(
                "  {}",
                violation_line(cell.as_ref(), &v.field, &v.description, &v.reason)
            ));
        }
    }
    lines
}

// ------------------------------------------------------------------------------------------
// Publishing

/// The node's catalogue in force (IndicatorService.GetCatalogue), to fill blank optional
/// dimensions with their defaults as the node does before signing; None when the node has
/// none yet or does not answer (the node fills them itself).
pub async fn node_catalogue(channel: Channel) -> Option<Catalogue> {
    let mut client = IndicatorServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let response = client
        .get_catalogue(v1::GetCatalogueRequest { version: 0 })
        .await
        .ok()?
        .into_inner();
    Catalogue::from_document(&response.catalogue?).ok()
}

/// Publishes every snapshot of `file`. Returns whether all were accepted (or valid, for a dry
/// run); what went wrong has been printed.
///
/// Every problem of the file is reported in one run: the rows that cannot be read are listed
/// (line and column, at most [`rcpfed_import::MAX_IMPORT_PROBLEMS`]), and the other rows are
/// still sent to the node, for checking only, so that its refusal lists the problems of those
/// rows (statement rules, catalogue and actions together). Nothing is signed then. With
/// `catalogue`, blank optional dimensions are filled with their defaults before sending.
pub async fn publish_indicators(
    node: &mut NodeServiceClient<Channel>,
    node_id: &str,
    file: &Path,
    name: Option<&str>,
    options: &Options,
    catalogue: Option<&Catalogue>,
) -> Result<bool> {
    let name = document_name(file, name);
    let handle =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let total_bytes = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let mut batches = match IndicatorCsvBatches::new(BufReader::new(handle), BATCH) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return Ok(false);
        }
    };
    let head = read_ahead(&mut batches);
    if !head.failed && (head.count > STREAM_ABOVE || options.stream) {
        // One indicator, large: stream it from the file.
        let source = FileToStream {
            file,
            name: &name,
            total_bytes,
        };
        return stream_from_file(
            node,
            node_id,
            source,
            head.first_batches,
            batches,
            options,
            catalogue,
        )
        .await;
    }
    drop(head);
    drop(batches);
    // Small, or several indicators, or rows the whole-file reader names best.
    publish_whole_file(node, node_id, file, &name, options, catalogue).await
}

/// The first batches of a CSV file: just enough to know whether its snapshot is large.
struct ReadAhead {
    first_batches: Vec<ObservationBatch>,
    /// Observations in `first_batches`.
    count: usize,
    /// A row could not be read: the whole-file reader names the problems best.
    failed: bool,
}

/// Reads batches until more than [`STREAM_ABOVE`] observations, the end, or a row that cannot
/// be read.
fn read_ahead(batches: &mut IndicatorCsvBatches<BufReader<std::fs::File>>) -> ReadAhead {
    let mut head = ReadAhead {
        first_batches: Vec::new(),
        count: 0,
        failed: false,
    };
    while head.count <= STREAM_ABOVE {
        match batches.next() {
            Some(Ok(b)) => {
                head.count += b.observations.len();
                head.first_batches.push(b);
            }
            Some(Err(_)) => {
                head.failed = true;
                break;
            }
            None => break,
        }
    }
    head
}

/// The file a large snapshot is streamed from, and its name as a document.
struct FileToStream<'a> {
    file: &'a Path,
    name: &'a str,
    total_bytes: u64,
}

/// Streams one large indicator's snapshot from the file: the batches read ahead, then the
/// rest of `batches`, blank optional dimensions filled from `catalogue`.
async fn stream_from_file(
    node: &mut NodeServiceClient<Channel>,
    node_id: &str,
    source: FileToStream<'_>,
    head: Vec<ObservationBatch>,
    batches: IndicatorCsvBatches<BufReader<std::fs::File>>,
    options: &Options,
    catalogue: Option<&Catalogue>,
) -> Result<bool> {
    let indicator = head
        .first()
        .map(|b| b.indicator.clone())
        .unwrap_or_default();
    let locator = StreamLocator {
        path: source.file.to_path_buf(),
        indicator: indicator.clone(),
        columns: batches.columns().clone(),
        lines: LineIndex::default(),
        reread: true,
    };
    let document = rcpfed_import::indicator_document(node_id, &indicator, source.name);
    let at = batches.bytes_read();
    let catalogue = catalogue.cloned().map(Arc::new);
    let fill = move |mut batch: ObservationBatch| {
        if let Some(c) = &catalogue {
            batch.fill_defaults(c);
        }
        batch
    };
    let fill_too = fill.clone();
    let batches = head
        .into_iter()
        .map(move |b| Ok((fill(b), at)))
        .chain(FileBatches(batches).map(move |b| b.map(|(b, at)| (fill_too(b), at))));
    stream_snapshot(
        node,
        node_id,
        &document,
        &indicator,
        batches,
        source.total_bytes,
        locator,
        options,
    )
    .await
}

/// Reads the whole file and publishes each indicator's snapshot; with rows that cannot be
/// read, lists them and sends the rest for checking only.
async fn publish_whole_file(
    node: &mut NodeServiceClient<Channel>,
    node_id: &str,
    file: &Path,
    name: &str,
    options: &Options,
    catalogue: Option<&Catalogue>,
) -> Result<bool> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let report = match rcpfed_import::read_any_indicator_csv(&text, node_id, name) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return Ok(false);
        }
    };
    drop(text);
    let ImportReport {
        docs,
        problems,
        total_problems,
    } = report;
    if total_problems > 0 {
        print_unreadable_rows(file, &problems, total_problems);
        if docs.is_empty() {
            return Ok(false);
        }
        eprintln!("the other rows are checked by the node; nothing is signed:");
    }
    let options = Options {
        dry_run: options.dry_run || total_problems > 0,
        rows_left_out: total_problems > 0,
        ..options.clone()
    };
    let mut ok = total_problems == 0;
    for mut doc in docs {
        if let Some(c) = catalogue {
            doc.fill_defaults(c);
        }
        let accepted = if options.stream || doc.snapshot.observations.len() > STREAM_ABOVE {
            stream_doc(node, node_id, file, doc, &options).await?
        } else {
            publish_doc(node, node_id, file, &doc, &options).await?
        };
        ok &= accepted;
    }
    Ok(ok)
}

/// Lists the rows of `file` that cannot be read (the first `problems` of `total_problems`).
fn print_unreadable_rows(file: &Path, problems: &[ImportError], total_problems: usize) {
    eprintln!(
        "error: {}: {total_problems} problem{} in rows that cannot be read:",
        file.display(),
        if total_problems == 1 { "" } else { "s" }
    );
    for p in problems {
        eprintln!("  {p}");
    }
    if total_problems > problems.len() {
        eprintln!("  and {} more", total_problems - problems.len());
    }
}

/// What a dry run that passed says: "valid", or, when rows of the file were left out, that the
/// rest passes.
fn dry_run_line(document: &str, what: &str, options: &Options) -> String {
    if options.rows_left_out {
        format!("checked: {document} passes the node's checks without the rows above ({what})")
    } else {
        format!("valid: {document} ({what})")
    }
}

/// One snapshot in one PublishDocument request.
async fn publish_doc(
    node: &mut NodeServiceClient<Channel>,
    node_id: &str,
    file: &Path,
    doc: &IndicatorDoc,
    options: &Options,
) -> Result<bool> {
    let request = v1::PublishDocumentRequest {
        document: doc.document.clone(),
        body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
            doc.snapshot.clone(),
        )),
        validate_only: options.dry_run,
        request_id: String::new(),
    };
    let n = doc.snapshot.observations.len();
    match node.publish_document(request).await {
        Ok(r) => {
            let r = r.into_inner();
            for w in &r.warnings {
                eprintln!("{}", warning_line(w, |f| doc.locate(f)));
            }
            if options.dry_run {
                println!(
                    "{}",
                    dry_run_line(
                        &r.document,
                        &format!("would be revision {}; {n} observations", r.revision),
                        options
                    )
                );
            } else {
                println!(
                    "signed: {} revision {} as {node_id}#{} digest {} ({n} observations, inline)",
                    r.document,
                    r.revision,
                    r.seq,
                    hex::encode(&r.digest)
                );
                return crate::delivery::report(node, node_id, r.seq, options.wait_delivery).await;
            }
            Ok(true)
        }
        Err(s) => {
            eprintln!("refused: {} ({}):", doc.document, file.display());
            for line in refusal_lines(&s, |fields| fields.iter().map(|f| doc.locate(f)).collect()) {
                eprintln!("{line}");
            }
            Ok(false)
        }
    }
}

/// A snapshot already in memory (from a file with several indicators), streamed.
async fn stream_doc(
    node: &mut NodeServiceClient<Channel>,
    node_id: &str,
    file: &Path,
    doc: IndicatorDoc,
    options: &Options,
) -> Result<bool> {
    let IndicatorDoc {
        document,
        snapshot,
        lines,
        columns,
    } = doc;
    let indicator = snapshot.indicator;
    let mut batches = Vec::new();
    let mut observations = snapshot.observations.into_iter();
    let mut lines_iter = lines.into_iter();
    let mut first_index = 0;
    loop {
        let obs: Vec<v1::Observation> = observations.by_ref().take(BATCH).collect();
        if obs.is_empty() {
            break;
        }
        let l: Vec<usize> = lines_iter.by_ref().take(obs.len()).collect();
        let n = obs.len();
        batches.push(Ok((
            ObservationBatch {
                indicator: indicator.clone(),
                first_index,
                observations: obs,
                lines: l,
            },
            0,
        )));
        first_index += n;
    }
    let locator = StreamLocator {
        path: file.to_path_buf(),
        indicator: indicator.clone(),
        columns,
        lines: LineIndex::default(),
        reread: false,
    };
    stream_snapshot(
        node,
        node_id,
        &document,
        &indicator,
        batches.into_iter(),
        0,
        locator,
        options,
    )
    .await
}

/// The batches of a file, each with the bytes read so far (for the progress bar).
struct FileBatches(IndicatorCsvBatches<BufReader<std::fs::File>>);

impl Iterator for FileBatches {
    type Item = Result<(ObservationBatch, u64), ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.0.next()?;
        let at = self.0.bytes_read();
        Some(batch.map(|b| (b, at)))
    }
}

/// What the stream carries: messages, then an explicit end. A stream whose sender goes away
/// without the end marker (the file could not be read) never ends cleanly: the caller drops
/// the call, which resets it, so the node signs nothing.
enum Frame {
    Message(v1::PublishSnapshotRequest),
    End,
}

struct RequestStream {
    rx: mpsc::Receiver<Frame>,
    ended: bool,
}

impl tokio_stream::Stream for RequestStream {
    type Item = v1::PublishSnapshotRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Frame::Message(m))) => Poll::Ready(Some(m)),
            Poll::Ready(Some(Frame::End)) => {
                self.ended = true;
                Poll::Ready(None)
            }
            // The reader failed: stay open until the call is dropped.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

fn progress_bar(total_bytes: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = if total_bytes > 0 {
        indicatif::ProgressBar::new(total_bytes)
    } else {
        indicatif::ProgressBar::no_length()
    };
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Streams one snapshot with PublishSnapshot: the header, then `source`'s batches, read on a
/// thread of their own so that reading the file and sending overlap.
#[allow(clippy::too_many_arguments)]
async fn stream_snapshot<I>(
    node: &mut NodeServiceClient<Channel>,
    node_id: &str,
    document: &str,
    indicator: &str,
    source: I,
    total_bytes: u64,
    mut locator: StreamLocator,
    options: &Options,
) -> Result<bool>
where
    I: Iterator<Item = Result<(ObservationBatch, u64), ImportError>> + Send + 'static,
{
    let bar = progress_bar(total_bytes);
    let (tx, rx) = mpsc::channel::<Frame>(4);
    let lines = Arc::new(Mutex::new(LineIndex::default()));
    let (done_tx, done_rx) = oneshot::channel::<Result<usize, ImportError>>();
    let header = v1::PublishSnapshotRequest {
        part: Some(v1::publish_snapshot_request::Part::Header(
            v1::PublishSnapshotHeader {
                document: document.to_string(),
                indicator: indicator.to_string(),
                validate_only: options.dry_run,
                request_id: String::new(),
            },
        )),
    };
    spawn_reader(
        source,
        header,
        tx,
        Arc::clone(&lines),
        bar.clone(),
        total_bytes,
        done_tx,
    );
    // A second handle for the delivery check: the streaming call borrows `node` to the end.
    let status_client = node.clone();
    let call = node.publish_snapshot(RequestStream { rx, ended: false });
    tokio::pin!(call);
    let mut done_rx = done_rx;
    let mut read: Option<Result<usize, ImportError>> = None;
    let response = loop {
        tokio::select! {
            r = &mut call => break r,
            d = &mut done_rx, if read.is_none() => {
                let d = d.unwrap_or_else(|_| Err(ImportError::file("the file reader stopped unexpectedly")));
                if let Err(e) = &d {
                    // Stop here: dropping the call resets the stream, so nothing is signed.
                    bar.finish_and_clear();
                    eprintln!("error: {}: {e}", locator.path.display());
                    eprintln!("nothing was published: the stream to the node was cancelled");
                    return Ok(false);
                }
                bar.set_message(format!(
                    "{} observations sent; the node is validating{}",
                    d.as_ref().map_or(0, |n| *n),
                    if options.dry_run { "" } else { " and signing" }
                ));
                read = Some(d);
            }
        }
    };
    bar.finish_and_clear();
    locator.lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    match response {
        Ok(r) => report_streamed(r.into_inner(), &locator, node_id, status_client, options).await,
        Err(s) => {
            eprintln!("refused: {document} ({}):", locator.path.display());
            for line in refusal_lines(&s, |fields| locator.locate_all(fields)) {
                eprintln!("{line}");
            }
            Ok(false)
        }
    }
}

/// Reads `source` on a thread of its own and sends the header, then each batch, then the end
/// of the stream on `tx`; `done` gets how many observations were sent, or why reading failed.
/// A plain thread, not the runtime's blocking pool: if the call ends early it may stay blocked
/// on a full channel, and must not hold the process open.
fn spawn_reader<I>(
    source: I,
    header: v1::PublishSnapshotRequest,
    tx: mpsc::Sender<Frame>,
    lines: Arc<Mutex<LineIndex>>,
    bar: indicatif::ProgressBar,
    total_bytes: u64,
    done: oneshot::Sender<Result<usize, ImportError>>,
) where
    I: Iterator<Item = Result<(ObservationBatch, u64), ImportError>> + Send + 'static,
{
    std::thread::spawn(move || {
        let mut sent = 0usize;
        let result = (|| {
            if tx.blocking_send(Frame::Message(header)).is_err() {
                return Ok(sent);
            }
            for item in source {
                let (batch, at) = item?;
                let n = batch.observations.len();
                if let Ok(mut index) = lines.lock() {
                    index.push(batch.first_index, batch.lines);
                }
                let message = v1::PublishSnapshotRequest {
                    part: Some(v1::publish_snapshot_request::Part::Batch(
                        v1::ObservationBatch {
                            observations: batch.observations,
                        },
                    )),
                };
                if tx.blocking_send(Frame::Message(message)).is_err() {
                    // The call is over (the node answered early).
                    return Ok(sent);
                }
                sent += n;
                if total_bytes > 0 {
                    bar.set_position(at.min(total_bytes));
                }
                bar.set_message(format!("{sent} observations sent"));
            }
            // A call already over (the node answered early) needs no end marker.
            let _ = tx.blocking_send(Frame::End);
            Ok(sent)
        })();
        if result.is_ok() && total_bytes > 0 {
            bar.set_position(total_bytes);
        }
        // The caller stopped waiting only when the call was already over.
        let _ = done.send(result);
    });
}

/// Prints the node's answer to a streamed snapshot: its warnings located in the file, then
/// what was signed (and its delivery) or, for a dry run, what would be.
async fn report_streamed(
    r: v1::PublishSnapshotResponse,
    locator: &StreamLocator,
    node_id: &str,
    mut status_client: NodeServiceClient<Channel>,
    options: &Options,
) -> Result<bool> {
    let warned: Vec<&str> = r
        .warnings
        .iter()
        .filter_map(|w| w.split_once(": ").map(|(f, _)| f))
        .collect();
    let cells = locator.locate_all(&warned);
    let by_field: HashMap<&str, Option<CellRef>> = warned.iter().copied().zip(cells).collect();
    for w in &r.warnings {
        eprintln!(
            "{}",
            warning_line(w, |f| by_field.get(f).cloned().flatten())
        );
    }
    if options.dry_run {
        println!(
            "{}",
            dry_run_line(
                &r.document,
                &format!(
                    "would be revision {}; {} observations in {} chunks",
                    r.revision, r.observation_count, r.chunk_count
                ),
                options
            )
        );
    } else {
        println!(
            "signed: {} revision {} as {node_id}#{} digest {} ({} observations in {} chunks, streamed)",
            r.document,
            r.revision,
            r.seq,
            hex::encode(&r.digest),
            r.observation_count,
            r.chunk_count
        );
        return crate::delivery::report(&mut status_client, node_id, r.seq, options.wait_delivery)
            .await;
    }
    Ok(true)
}

/// The id of the node behind `node` (GetNodeStatus).
pub async fn node_id_of(node: &mut NodeServiceClient<Channel>) -> Result<String> {
    Ok(node
        .get_node_status(v1::GetNodeStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", client::describe_status(&s)))?
        .into_inner()
        .node_id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reasons_are_split_off_once() {
        assert_eq!(
            split_reason("\"XXX\" is not in CL_AREA (CODE_NOT_IN_CODELIST)", ""),
            (
                "\"XXX\" is not in CL_AREA".to_string(),
                "CODE_NOT_IN_CODELIST".to_string()
            )
        );
        assert_eq!(
            split_reason("too large (CODE_NOT_IN_CODELIST)", "CODE_NOT_IN_CODELIST"),
            ("too large".to_string(), "CODE_NOT_IN_CODELIST".to_string())
        );
        assert_eq!(
            split_reason("outside 0 to 100 (percent)", "OUT_OF_RANGE"),
            (
                "outside 0 to 100 (percent)".to_string(),
                "OUT_OF_RANGE".to_string()
            )
        );
        assert_eq!(
            split_reason("no reason here", ""),
            ("no reason here".to_string(), String::new())
        );
    }

    #[test]
    fn violations_name_line_and_column() {
        let cell = CellRef {
            line: 7,
            column: Some("REF_AREA".into()),
        };
        assert_eq!(
            violation_line(
                Some(&cell),
                "indicator_snapshot.observations[5].ref_area",
                "\"XXX\" is not a code of CL_AREA (CODE_NOT_IN_CODELIST)",
                ""
            ),
            "line 7, column REF_AREA: \"XXX\" is not a code of CL_AREA (CODE_NOT_IN_CODELIST)"
        );
        let row = CellRef {
            line: 9,
            column: None,
        };
        assert_eq!(
            violation_line(
                Some(&row),
                "indicator_snapshot.observations[7]",
                "duplicate key",
                "DUPLICATE_KEY"
            ),
            "line 9: duplicate key (DUPLICATE_KEY)"
        );
        assert_eq!(
            violation_line(
                None,
                "document",
                "must start with regions/colombo/ (INVALID_DOCUMENT)",
                ""
            ),
            "document: must start with regions/colombo/ (INVALID_DOCUMENT)"
        );
    }

    fn doc() -> IndicatorDoc {
        let csv = "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,SEX\nSDG_10_7_3,WLD,2024,1,F\n\nSDG_10_7_3,XXX,2023,2,M\n";
        rcpfed_import::parse_any_indicator_csv(csv, "colombo", "t")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn refusals_print_each_violation_at_its_cell() {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let mut details = ErrorDetails::new();
        details.set_error_info("CODE_NOT_IN_CODELIST", "rcpfed.v1", HashMap::new());
        details.add_bad_request_violation(
            "indicator_snapshot.observations[1].ref_area",
            "\"XXX\" is not a code of CL_AREA (CODE_NOT_IN_CODELIST)",
        );
        details.add_bad_request_violation(
            "indicator_snapshot.observations[0].dimensions[0].value",
            "\"F\" is not allowed here (CODE_NOT_IN_CODELIST)",
        );
        let status =
            tonic::Status::with_error_details(tonic::Code::InvalidArgument, "2 problems", details);
        let d = doc();
        let lines = refusal_lines(&status, |fields| {
            fields.iter().map(|f| d.locate(f)).collect()
        });
        assert_eq!(
            lines,
            [
                "InvalidArgument: 2 problems [reason CODE_NOT_IN_CODELIST]",
                "  line 4, column REF_AREA: \"XXX\" is not a code of CL_AREA (CODE_NOT_IN_CODELIST)",
                "  line 2, column SEX: \"F\" is not allowed here (CODE_NOT_IN_CODELIST)",
            ]
        );
    }

    #[test]
    fn warnings_are_placed_too() {
        let d = doc();
        assert_eq!(
            warning_line(
                "indicator_snapshot.observations[1].obs_value: 2 is above the plausible maximum",
                |f| d.locate(f)
            ),
            "warning: line 4, column OBS_VALUE: 2 is above the plausible maximum"
        );
        assert_eq!(
            warning_line(
                "and 3 more observations outside a plausible range (warnings)",
                |f| d.locate(f)
            ),
            "warning: and 3 more observations outside a plausible range (warnings)"
        );
    }

    #[test]
    fn streamed_lines_are_found_batch_by_batch() {
        let mut index = LineIndex::default();
        index.push(0, vec![2, 3, 5]);
        index.push(3, vec![6, 9]);
        assert_eq!(index.line_of(0), Some(2));
        assert_eq!(index.line_of(2), Some(5));
        assert_eq!(index.line_of(3), Some(6));
        assert_eq!(index.line_of(4), Some(9));
        assert_eq!(index.line_of(5), None);
        assert_eq!(
            observation_index("indicator_snapshot.observations[12].dimensions[0].value"),
            Some((12, ".dimensions[0].value"))
        );
        assert_eq!(observation_index("document"), None);
    }

    #[test]
    fn a_streamed_file_locates_dimensions_by_reading_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let mut text =
            String::from("STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,SEX,OBS_VALUE\n");
        for year in 1900..1910 {
            text.push_str(&format!("dataflow,GFMD:SDG_10_7_3(1.0),I,WLD,{year},F,1\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let batches = IndicatorCsvBatches::new(std::fs::File::open(&path).unwrap(), 4).unwrap();
        let columns = batches.columns().clone();
        let mut lines = LineIndex::default();
        for b in batches {
            let b = b.unwrap();
            lines.push(b.first_index, b.lines);
        }
        let locator = StreamLocator {
            path: path.clone(),
            indicator: "SDG_10_7_3".into(),
            columns,
            lines,
            reread: true,
        };
        let cells = locator.locate_all(&[
            "indicator_snapshot.observations[9].dimensions[0].value",
            "indicator_snapshot.observations[5].ref_area",
            "indicator_snapshot.observations[6]",
            "indicator_snapshot.observations[99].ref_area",
            "document",
        ]);
        assert_eq!(
            cells,
            [
                Some(CellRef {
                    line: 11,
                    column: Some("SEX".into())
                }),
                Some(CellRef {
                    line: 7,
                    column: Some("REF_AREA".into())
                }),
                Some(CellRef {
                    line: 8,
                    column: None
                }),
                None,
                None,
            ]
        );
    }

    #[test]
    fn document_names_default_to_the_file_stem() {
        assert_eq!(
            document_name(Path::new("dir/Remittances.csv"), None),
            "remittances"
        );
        assert_eq!(document_name(Path::new("x.csv"), Some("mine")), "mine");
    }
}
