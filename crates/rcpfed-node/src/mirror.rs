//! The mirror: follows the hub's federation feed and keeps every entry whose signature,
//! signer, and hub receipt verify. Resumes from the last mirrored feed index after any
//! disconnect or restart, so it catches up in order, with no duplicates.
//!
//! Entries are node statements, registry versions (handed to [`crate::registry`]), and the
//! hub's own documents: catalogue versions (verified against the catalogue in force, then put
//! in force once stored) and coherence reports. A large snapshot is stored as soon as it
//! verifies; its chunks are fetched from the hub and checked against its signed manifest by
//! the view applier ([`crate::view`]), which then applies its observations, so the entries
//! after it are not held up. Verified node statements are stored
//! in batches, one transaction each, as the stream delivers them (at most [`MAX_BATCH`] or
//! [`MAX_BATCH_BYTES`], and never ahead of a registry, catalogue or coherence entry, which are
//! stored one at a time).
//!
//! The signatures are the mirror's main cost (a statement's and the hub's receipt's per entry),
//! so the node statements the stream already holds are taken as a run ([`ready_run`]) and
//! checked in parallel on the blocking pool ([`verify_run`]); the log check, the batching and
//! every decision then follow feed order exactly as if each had been checked in turn.

use crate::catalogue::CatalogueInForce;
use crate::{NodeState, NodeStorage};
use rcpfed_core::Digest;
use rcpfed_core::catalogue::{CATALOGUE_PAYLOAD_TYPE, SignedCatalogue, verify_catalogue};
use rcpfed_core::chunks::{check_manifest, decode_chunk};
use rcpfed_core::coherence::{COHERENCE_REPORT_PAYLOAD_TYPE, verify_report};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::feed::FeedEntry;
use rcpfed_core::members::Federation;
use rcpfed_core::receipt::{Acknowledged, Receipt};
use rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE;
use rcpfed_core::statement::{Body, ChunkManifest, Statement};
use rcpfed_grpc::BACKLOG_END_HEADER;
use rcpfed_grpc::failover::FailoverChannel as Channel;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_store::{
    CATALOGUE_KIND, COHERENCE_KIND, DecodedStatement, MirroredStatement, catalogue_chain,
    coherence_chain,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;

/// Checks one feed entry completely: statement signature by a key of its issuer, payload
/// decodes, hub receipt signature, and receipt naming this statement at this feed index.
pub fn verify_entry(
    federation: &Federation,
    entry: &FeedEntry,
    now_ms: i64,
) -> Result<MirroredStatement, String> {
    verify_statement_entry(federation, entry, now_ms)
}

/// [`verify_entry`], the mirrored record carrying the decoded statement (for the store's apply
/// step; the mirror reads its manifest).
fn verify_statement_entry(
    federation: &Federation,
    entry: &FeedEntry,
    now_ms: i64,
) -> Result<MirroredStatement, String> {
    let (signed, receipt_env) = (&entry.envelope, &entry.receipt);
    let signed_by = rcpfed_core::statement::verify_statement_signature(signed, federation)
        .map_err(|e| format!("statement signature: {e}"))?;
    let statement = Statement::decode(&signed.payload).map_err(|e| format!("statement: {e}"))?;
    signed_by
        .owned_by(&statement.header.node_id)
        .map_err(|e| format!("statement of {}: {e}", statement.header.node_id))?;
    let digest = signed.digest();
    let r = entry_receipt(
        federation,
        receipt_env,
        entry.feed_index,
        &digest,
        &statement.header.node_id,
        statement.header.seq,
    )?;
    Ok(MirroredStatement {
        feed_index: entry.feed_index,
        node_id: statement.header.node_id.clone(),
        seq: statement.header.seq,
        digest,
        kind: statement.header.kind.as_str().into(),
        document: statement.header.document.clone(),
        revision: statement.header.revision,
        envelope: signed.encode(),
        receipt: receipt_env.encode(),
        accepted_at_ms: ms(r.accepted_at),
        mirrored_at_ms: now_ms,
        decoded: DecodedStatement::of(Arc::new(statement)),
    })
}

fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Checks a catalogue version met in the feed: signed by the hub member's key, the next
/// version after `in_force` (version + 1, previous digest, consistent content; see
/// [`verify_catalogue`]), and the hub's receipt names it (`{hub_id}/catalogue`, version) at
/// this feed index. The caller puts it in force only after it is stored.
pub fn check_catalogue_entry(
    federation: &Federation,
    entry: &FeedEntry,
    in_force: Option<(u64, Digest)>,
    now_ms: i64,
) -> Result<(MirroredStatement, SignedCatalogue), String> {
    let (signed, receipt) = (&entry.envelope, &entry.receipt);
    let hub = federation
        .hub()
        .ok_or_else(|| format!("the member file has no hub member {}", federation.hub_id))?;
    let catalogue = verify_catalogue(signed, &hub.keys, &federation.federation_id, in_force)
        .map_err(|e| format!("catalogue: {e}"))?;
    let mirrored = hub_document_record(
        federation,
        entry.feed_index,
        signed,
        receipt,
        HubDoc {
            chain: catalogue_chain(&federation.hub_id),
            seq: catalogue.version,
            kind: CATALOGUE_KIND,
            document: "catalogue",
        },
        now_ms,
    )?;
    Ok((mirrored, catalogue))
}

/// Checks a coherence report met in the feed: signed by the hub member's key, for this
/// federation, the next report after `previous` (the latest mirrored one: number + 1 and its
/// digest as `previous_digest`), and the hub's receipt names it (`{hub_id}/coherence`,
/// number) at this feed index.
pub fn check_coherence_entry(
    federation: &Federation,
    entry: &FeedEntry,
    previous: Option<(u64, Digest)>,
    now_ms: i64,
) -> Result<MirroredStatement, String> {
    let (signed, receipt) = (&entry.envelope, &entry.receipt);
    let report = verify_report(signed, federation)?.report;
    let expected = previous.map_or(1, |(n, _)| n.saturating_add(1));
    if report.number != expected {
        return Err(format!(
            "coherence report {} does not follow the mirrored reports: the next is {expected}",
            report.number
        ));
    }
    let linked = report.previous_digest == previous.map(|(_, d)| d);
    if !linked {
        return Err(format!(
            "coherence report {}'s previous_digest does not name the mirrored report before it",
            report.number
        ));
    }
    hub_document_record(
        federation,
        entry.feed_index,
        signed,
        receipt,
        HubDoc {
            chain: coherence_chain(&federation.hub_id),
            seq: report.number,
            kind: COHERENCE_KIND,
            document: "coherence",
        },
        now_ms,
    )
}

/// What the mirror works with.
pub struct Mirror {
    /// This node's member id: its own statements met in the feed go to [`crate::own_chain`].
    pub node_id: String,
    /// Opened once the mirror has caught up with the feed.
    pub own_chain: Arc<crate::own_chain::OwnChainGate>,
    /// The registry in force.
    pub federation: rcpfed_grpc::shared::SharedFederation,
    /// The node's store (mirror, chunks, indicator view).
    pub store: Arc<dyn NodeStorage>,
    /// Status shown to operators.
    pub state: Arc<NodeState>,
    /// Checks entries' log proofs.
    pub witness: Arc<crate::witness::Witness>,
    /// Takes registry versions from the feed.
    pub registry: Arc<crate::registry::NodeRegistry>,
    /// Takes catalogue versions from the feed.
    pub catalogue: CatalogueInForce,
    /// Bound on each call to the hub and on opening each stream (a stream that then goes
    /// silent is caught by the channel's keepalive pings).
    pub call_timeout: Duration,
    /// Told each time entries are stored: the view applier ([`crate::view`]) applies what
    /// the store left to it.
    pub view_wake: Arc<tokio::sync::Notify>,
}

/// Why an entry was not mirrored; the stream stops and the entry is retried, never skipped.
pub(crate) enum Failure {
    /// The entry (or the hub's chunks for it) did not verify.
    Verify(String),
    /// The hub could not be read (transport or server error); retried like a dropped feed.
    Hub(String),
    /// The store refused or failed.
    Store(String),
    /// Shutting down.
    Shutdown,
}

/// A verified entry, before it is stored.
enum Checked {
    Statement(MirroredStatement),
    Registry(MirroredStatement),
    Catalogue(MirroredStatement, Box<SignedCatalogue>),
    Coherence(MirroredStatement),
}

/// Follows the feed until `shutdown`.
pub async fn run(mirror: Mirror, channel: Channel, shutdown: CancellationToken) {
    let mut client = HubServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let state = Arc::clone(&mirror.state);
    let mut backoff = Duration::from_millis(200);
    loop {
        // A store that cannot say where to resume is an error to retry, never a reason to
        // start the feed over from the beginning.
        if let Some(cursor) = read_cursor(&mirror).await {
            let stream = tokio::select! {
                s = crate::bounded(mirror.call_timeout, client.subscribe_feed(v1::SubscribeFeedRequest { after_index: cursor })) => s,
                () = shutdown.cancelled() => return,
            };
            match stream {
                Ok(response) => {
                    backoff = Duration::from_millis(200);
                    let end =
                        follow_feed(&mirror, &mut client, response, cursor, backoff, &shutdown)
                            .await;
                    if end == FeedEnd::Shutdown {
                        return;
                    }
                }
                Err(status) => subscription_failed(&state, &status, backoff),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(crate::jitter(backoff)) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The feed index to resume after; None (logged and shown) when the store cannot say.
async fn read_cursor(mirror: &Mirror) -> Option<u64> {
    let store = Arc::clone(&mirror.store);
    match tokio::task::spawn_blocking(move || store.mirror_cursor()).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the mirror's cursor; retrying");
            mirror.state.set_error(format!("mirror cursor: {e}"));
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the mirror's cursor failed; retrying");
            None
        }
    }
}

/// Logs and shows why the feed subscription failed.
fn subscription_failed(state: &NodeState, status: &tonic::Status, backoff: Duration) {
    if crate::hub_not_reached(status) {
        state.hub_unreachable("mirror", status, backoff);
    } else {
        state.hub_answered();
        tracing::warn!(code = ?status.code(), message = status.message(), "the hub refused the feed subscription; retrying");
    }
    state.set_error(format!("feed subscription: {}", status.message()));
}

/// How following one feed stream ended.
#[derive(PartialEq, Eq)]
enum FeedEnd {
    /// The node is shutting down.
    Shutdown,
    /// The stream ended or failed, or an entry did not verify: subscribe again.
    Dropped,
}

/// Follows one opened feed stream, storing what verifies, until it ends or fails.
async fn follow_feed(
    mirror: &Mirror,
    client: &mut HubServiceClient<Channel>,
    response: tonic::Response<tonic::Streaming<v1::SubscribeFeedResponse>>,
    cursor: u64,
    backoff: Duration,
    shutdown: &CancellationToken,
) -> FeedEnd {
    let state = &mirror.state;
    state.hub_answered();
    // The feed's end when the hub opened it; reaching it means caught up.
    let backlog_end = response
        .metadata()
        .get(BACKLOG_END_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if backlog_end.is_some_and(|end| cursor >= end) {
        mirror.own_chain.caught_up();
    }
    let stream = response.into_inner();
    state
        .feed_connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // One run ahead: the next run's signatures are checked while this one is handled and
    // stored.
    let (runs, mut verified_runs) = tokio::sync::mpsc::channel::<VerifiedRun>(1);
    let reader = read_runs(&mirror.federation, stream, runs, shutdown);
    let handler = async move {
        // Verified statements not yet stored: written in one transaction when no verified
        // run is waiting, when the batch is full, or before an entry that must see everything
        // before it stored.
        let mut pending: Vec<MirroredStatement> = Vec::new();
        loop {
            let run = if pending.is_empty() {
                verified_runs.recv().await
            } else {
                match verified_runs.try_recv() {
                    Ok(run) => Some(run),
                    Err(TryRecvError::Empty) if mirror.flush_or_report(&mut pending).await => {
                        continue;
                    }
                    Err(TryRecvError::Empty) => return FeedEnd::Dropped,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            // The reader stops without a last run only on shutdown.
            let Some(run) = run else {
                mirror.flush_or_report(&mut pending).await;
                return FeedEnd::Shutdown;
            };
            for (entry, verified) in run.entries {
                let taken = mirror
                    .take_entry(client, entry, verified, &mut pending, backlog_end)
                    .await;
                if !taken {
                    return FeedEnd::Dropped;
                }
            }
            if let Some(handled) = run.handled {
                let _ = handled.send(());
            }
            match run.after {
                StreamAfterRun::Open => {}
                StreamAfterRun::Ended => {
                    return mirror.stream_ended(&mut pending, None, backoff).await;
                }
                StreamAfterRun::Failed(status) => {
                    return mirror
                        .stream_ended(&mut pending, Some(status), backoff)
                        .await;
                }
            }
        }
    };
    let ((), end) = tokio::join!(reader, handler);
    state
        .feed_connected
        .store(false, std::sync::atomic::Ordering::Relaxed);
    end
}

/// A run verified ahead of the handler ([`read_runs`]).
struct VerifiedRun {
    entries: Vec<VerifiedRunEntry>,
    /// How the stream stood after the run; the reader stops unless it is open.
    after: StreamAfterRun,
    /// Told once the run is handled, when it ends with a registry, catalogue or coherence
    /// entry: the next run is verified under what that entry puts in force.
    handled: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Takes runs from `stream` ([`ready_run`]) and verifies each ([`verify_run`]) while the
/// handler works on the one before, until the stream ends or fails (told with the last run,
/// which may be empty), `shutdown`, or the handler stops listening.
async fn read_runs(
    federation: &rcpfed_grpc::shared::SharedFederation,
    mut stream: tonic::Streaming<v1::SubscribeFeedResponse>,
    runs: tokio::sync::mpsc::Sender<VerifiedRun>,
    shutdown: &CancellationToken,
) {
    loop {
        let next = tokio::select! {
            m = stream.message() => m,
            () = shutdown.cancelled() => return,
            () = runs.closed() => return,
        };
        let (run, after) = match next {
            Ok(Some(first)) => ready_run(first, || ready_now(stream.message())),
            Ok(None) => (Vec::new(), StreamAfterRun::Ended),
            Err(status) => (Vec::new(), StreamAfterRun::Failed(status)),
        };
        let ends_in_order = run
            .last()
            .is_some_and(|(_, e)| e.as_ref().is_ok_and(stored_in_order));
        let entries = verify_run(federation.get(), run).await;
        let (handled, wait) = if ends_in_order {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let open = matches!(after, StreamAfterRun::Open);
        let sent = runs.send(VerifiedRun {
            entries,
            after,
            handled,
        });
        if sent.await.is_err() || !open {
            return;
        }
        // A dropped sender: the handler stopped before the run's end.
        if let Some(wait) = wait
            && wait.await.is_err()
        {
            return;
        }
    }
}

/// Most verified statements written in one transaction.
const MAX_BATCH: usize = 512;

/// Most envelope bytes of the verified statements waiting for one transaction: each also holds
/// its decoded statement until it is stored, so a backlog of large inline snapshots is written
/// in smaller batches rather than held 512 at a time.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Whether `pending` is to be stored before another entry joins it.
fn batch_full(pending: &[MirroredStatement]) -> bool {
    pending.len() >= MAX_BATCH
        || pending.iter().map(|m| m.envelope.len()).sum::<usize>() >= MAX_BATCH_BYTES
}

/// Whether an entry must be handled with everything before it stored: registry and catalogue
/// versions take effect once stored, and a coherence report is checked against the last one
/// stored.
fn stored_in_order(entry: &FeedEntry) -> bool {
    in_order_payload(&entry.envelope.payload_type)
}

/// [`stored_in_order`] by payload type: any other entry is a node statement.
fn in_order_payload(payload_type: &str) -> bool {
    matches!(
        payload_type,
        REGISTRY_PAYLOAD_TYPE | CATALOGUE_PAYLOAD_TYPE | COHERENCE_REPORT_PAYLOAD_TYPE
    )
}

/// Most entries taken from the stream at once, to be verified in parallel.
const MAX_RUN: usize = 256;

/// Most payload bytes in one run (give or take its last entry): a backlog of large inline
/// snapshots is taken a few at a time. Each entry also holds its decoded statement once
/// verified, and up to three runs are held at once (one being handled, one verified and
/// waiting, one being verified), beside the batch waiting to be stored ([`MAX_BATCH_BYTES`]).
const MAX_RUN_BYTES: usize = 4 * 1024 * 1024;

/// Node statements verified by one blocking task, at least: fewer are not worth a thread.
const MIN_PER_TASK: usize = 8;

/// How the stream stood once a run was taken from it.
enum StreamAfterRun {
    /// Open: the next message is awaited as usual.
    Open,
    /// It ended after the run.
    Ended,
    /// It failed after the run.
    Failed(tonic::Status),
}

/// An entry of a run: its feed index and the entry, or why it is not one.
pub(crate) type RunEntry = (u64, Result<FeedEntry, String>);

/// What the stream holds ready without waiting: None when nothing is.
type ReadyMessage = Option<Result<Option<v1::SubscribeFeedResponse>, tonic::Status>>;

/// `first` and the entries the stream has ready after it (`next_ready`), up to [`MAX_RUN`]
/// entries or [`MAX_RUN_BYTES`]; the run ends after a registry, catalogue or coherence entry,
/// since the entries after it may be checked against what it puts in force.
fn ready_run(
    first: v1::SubscribeFeedResponse,
    mut next_ready: impl FnMut() -> ReadyMessage,
) -> (Vec<RunEntry>, StreamAfterRun) {
    let payload = |m: &v1::SubscribeFeedResponse| {
        m.envelope.as_ref().map_or((0, false), |e| {
            (e.payload.len(), in_order_payload(&e.payload_type))
        })
    };
    let (mut bytes, mut in_order) = payload(&first);
    let mut run = vec![first];
    let mut after = StreamAfterRun::Open;
    while !in_order && run.len() < MAX_RUN && bytes < MAX_RUN_BYTES {
        match next_ready() {
            Some(Ok(Some(m))) => {
                let (len, order) = payload(&m);
                bytes += len;
                in_order = order;
                run.push(m);
            }
            Some(Ok(None)) => {
                after = StreamAfterRun::Ended;
                break;
            }
            Some(Err(status)) => {
                after = StreamAfterRun::Failed(status);
                break;
            }
            None => break,
        }
    }
    let run = run
        .into_iter()
        .map(|m| (m.feed_index, FeedEntry::from_proto(m)))
        .collect();
    (run, after)
}

/// The entry if it is a node statement, checked alike whatever comes before it in the feed
/// (see [`verify_statement_entry`]).
fn statement_of(entry: &RunEntry) -> Option<&FeedEntry> {
    entry.1.as_ref().ok().filter(|e| !stored_in_order(e))
}

/// An entry of a run with the result of its verification, when it was verified with the run.
pub(crate) type VerifiedRunEntry = (RunEntry, Option<Result<MirroredStatement, String>>);

/// Verifies the node statements of `run` under `federation` on the blocking pool, spread over
/// the cores, and gives each entry back in order with its result; the other entries (and a
/// run with fewer than two statements) get None and are verified in turn by
/// [`Mirror::handle`]. Every statement of a run is checked under the same registry version,
/// as in turn: a run ends at the first entry that could change it ([`ready_run`]).
pub(crate) async fn verify_run(
    federation: Arc<Federation>,
    run: Vec<RunEntry>,
) -> Vec<VerifiedRunEntry> {
    let statements = run.iter().filter_map(statement_of).count();
    if statements < 2 {
        return run.into_iter().map(|e| (e, None)).collect();
    }
    let tasks = verify_threads().min(statements / MIN_PER_TASK).max(1);
    let now = crate::now_ms();
    let run = Arc::new(run);
    let per_task = run.len().div_ceil(tasks);
    let mut handles = Vec::with_capacity(tasks);
    for start in (0..run.len()).step_by(per_task) {
        let end = (start + per_task).min(run.len());
        let (run, federation) = (Arc::clone(&run), Arc::clone(&federation));
        let handle = tokio::task::spawn_blocking(move || {
            run[start..end]
                .iter()
                .map(|e| statement_of(e).map(|e| verify_statement_entry(&federation, e, now)))
                .collect::<Vec<_>>()
        });
        handles.push((end - start, handle));
    }
    let mut verified = Vec::with_capacity(run.len());
    for (len, handle) in handles {
        match handle.await {
            Ok(results) => verified.extend(results),
            // Left to be verified in turn.
            Err(e) => {
                tracing::warn!(error = %e, "a verification task failed");
                verified.extend(std::iter::repeat_with(|| None).take(len));
            }
        }
    }
    let run = Arc::unwrap_or_clone(run);
    run.into_iter().zip(verified).collect()
}

/// Cores the mirror verifies on.
fn verify_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The output of `fut` if it is ready at once, without waiting.
fn ready_now<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// Logs and shows why the entry at `feed_index` was not mirrored (the stream then stops and
/// the entry is retried, never skipped).
fn report(state: &NodeState, feed_index: u64, failure: Failure) {
    match failure {
        Failure::Verify(problem) => {
            tracing::error!(feed_index, %problem, "feed entry failed verification");
            state.set_error(format!(
                "feed entry {feed_index} failed verification: {problem}"
            ));
        }
        Failure::Hub(problem) => {
            tracing::warn!(feed_index, %problem, "cannot fetch what a feed entry needs; retrying");
            state.set_error(format!("feed entry {feed_index}: {problem}"));
        }
        Failure::Store(e) => {
            tracing::error!(feed_index, error = %e, "mirror refused a feed entry");
            state.set_error(format!("mirror: {e}"));
        }
        Failure::Shutdown => {}
    }
}

impl Mirror {
    /// Stores what verified before the stream ended (`None`) or failed, and shows why.
    async fn stream_ended(
        &self,
        pending: &mut Vec<MirroredStatement>,
        failure: Option<tonic::Status>,
        backoff: Duration,
    ) -> FeedEnd {
        self.flush_or_report(pending).await;
        if let Some(status) = failure {
            if crate::hub_not_reached(&status) {
                self.state.hub_unreachable("mirror", &status, backoff);
            }
            self.state.set_error(format!("feed: {}", status.message()));
        }
        FeedEnd::Dropped
    }

    /// [`Self::flush`], reporting a failure; whether the batch was stored.
    async fn flush_or_report(&self, pending: &mut Vec<MirroredStatement>) -> bool {
        match self.flush(pending).await {
            Ok(()) => true,
            Err((index, failure)) => {
                report(&self.state, index, failure);
                false
            }
        }
    }

    /// Verifies one entry of the stream and queues it in `pending` (storing the batch first
    /// when it is full or the entry must follow everything before it); false, after
    /// reporting why, when the stream must be dropped and the entry retried.
    async fn take_entry(
        &self,
        client: &mut HubServiceClient<Channel>,
        (index, entry): RunEntry,
        verified: Option<Result<MirroredStatement, String>>,
        pending: &mut Vec<MirroredStatement>,
        backlog_end: Option<u64>,
    ) -> bool {
        let entry = match entry {
            Ok(entry) => entry,
            Err(problem) => {
                self.flush_or_report(pending).await;
                report(&self.state, index, Failure::Verify(problem));
                return false;
            }
        };
        if (batch_full(pending) || stored_in_order(&entry)) && !self.flush_or_report(pending).await
        {
            return false;
        }
        match self.handle(client, &entry, verified).await {
            Ok(verified) => {
                match verified {
                    Some(m) => pending.push(m),
                    None => tracing::debug!(feed_index = entry.feed_index, "mirrored"),
                }
                // Own statements are adopted as they are verified, so the own chain is whole
                // once the backlog's end is, stored or still in the batch.
                if backlog_end.is_some_and(|end| entry.feed_index >= end) {
                    self.own_chain.caught_up();
                }
                true
            }
            Err(failure) => {
                // What verified before it is kept; this entry is retried.
                self.flush_or_report(pending).await;
                report(&self.state, entry.feed_index, failure);
                false
            }
        }
    }

    /// Stores the verified statements of `pending` in one transaction, and empties it; on
    /// failure gives the first feed index of the batch.
    async fn flush(&self, pending: &mut Vec<MirroredStatement>) -> Result<(), (u64, Failure)> {
        let Some(first) = pending.first().map(|m| m.feed_index) else {
            return Ok(());
        };
        let last = pending.last().map_or(first, |m| m.feed_index);
        let batch = std::mem::take(pending);
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.mirror_insert_batch(&batch)).await {
            Ok(Ok(())) => {
                tracing::debug!(first, last, "mirrored");
                self.view_wake.notify_one();
                Ok(())
            }
            Ok(Err(e)) => Err((first, Failure::Store(e.to_string()))),
            Err(e) => Err((first, Failure::Store(format!("mirror task failed: {e}")))),
        }
    }

    /// Verifies one entry (a node statement may come `verified` already) and checks its place
    /// in the witnessed log. A node statement is given back to be stored in the caller's next
    /// batch (a large snapshot's chunks are the view applier's to fetch); any other entry is
    /// stored here.
    async fn handle(
        &self,
        client: &mut HubServiceClient<Channel>,
        entry: &FeedEntry,
        verified: Option<Result<MirroredStatement, String>>,
    ) -> Result<Option<MirroredStatement>, Failure> {
        let federation = self.federation.get();
        let now = crate::now_ms();
        let checked = match entry.envelope.payload_type.as_str() {
            REGISTRY_PAYLOAD_TYPE => {
                check_registry_entry(&federation, entry, now).map(Checked::Registry)
            }
            CATALOGUE_PAYLOAD_TYPE => {
                check_catalogue_entry(&federation, entry, self.catalogue.chain_position(), now)
                    .map(|(m, c)| Checked::Catalogue(m, Box::new(c)))
            }
            COHERENCE_REPORT_PAYLOAD_TYPE => {
                let store = Arc::clone(&self.store);
                let chain = coherence_chain(&federation.hub_id);
                let previous =
                    tokio::task::spawn_blocking(move || store.hub_document(&chain, None))
                        .await
                        .map_err(|e| {
                            Failure::Store(format!("reading the last coherence report: {e}"))
                        })?
                        .map_err(|e| {
                            Failure::Store(format!("reading the last coherence report: {e}"))
                        })?
                        .map(|d| (d.seq, d.digest));
                check_coherence_entry(&federation, entry, previous, now).map(Checked::Coherence)
            }
            _ => verified
                .unwrap_or_else(|| verify_statement_entry(&federation, entry, now))
                .map(Checked::Statement),
        }
        .map_err(Failure::Verify)?;
        crate::witness::check_logged(
            &self.witness,
            client,
            entry.feed_index,
            &entry.envelope,
            entry.log.as_ref(),
            self.call_timeout,
        )
        .await
        .map_err(|e| Failure::Verify(format!("transparency log: {e}")))?;
        match checked {
            Checked::Registry(m) => {
                // A registry version is put in force only once its receipt and its place in
                // the witnessed log have verified.
                let logged_at = time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(m.accepted_at_ms) * 1_000_000,
                )
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                self.registry
                    .observe(&entry.envelope, logged_at)
                    .await
                    .map_err(|e| Failure::Verify(format!("registry version: {e}")))?;
                self.insert(m).await.map(|()| None)
            }
            Checked::Statement(m) => {
                // Its chunks are fetched by the view applier, so the entries after it are not
                // held up; a manifest that breaks the chunk rules is refused here.
                if let Some(manifest) = chunk_manifest(&m) {
                    check_manifest(manifest)
                        .map_err(|e| Failure::Verify(format!("chunk manifest: {e}")))?;
                }
                // Only while recovering from a restore: otherwise this node signed it from
                // its own outbox, which holds it already.
                if m.node_id == self.node_id && !self.own_chain.is_open() {
                    self.adopt_own(&m).await?;
                }
                Ok(Some(m))
            }
            Checked::Catalogue(m, catalogue) => {
                self.insert(m).await?;
                // Only now: the catalogue in force is always one the mirror holds.
                tracing::info!(
                    version = catalogue.version,
                    "indicator catalogue version in force"
                );
                self.catalogue.set(*catalogue);
                Ok(None)
            }
            Checked::Coherence(m) => self.insert(m).await.map(|()| None),
        }
    }

    /// One of this node's statements in the feed: adopted if the outbox lacks it (a restored
    /// database). Before the insert, so a retried entry adopts again rather than never.
    async fn adopt_own(&self, m: &MirroredStatement) -> Result<(), Failure> {
        let store = Arc::clone(&self.store);
        let own = m.clone();
        let adopted = tokio::task::spawn_blocking(move || {
            crate::own_chain::adopt(store.as_ref() as &dyn rcpfed_store::NodeStore, &own)
        })
        .await
        .map_err(|e| Failure::Store(format!("adopting an own statement failed: {e}")))?;
        match adopted {
            Ok(crate::own_chain::Adoption::Known) => Ok(()),
            Ok(crate::own_chain::Adoption::Adopted) => {
                tracing::warn!(
                    seq = m.seq,
                    feed_index = m.feed_index,
                    "the hub's feed holds a statement this node signed that its database lacked (restored from an older backup?): adopted as delivered"
                );
                Ok(())
            }
            // This node's own two histories: loud, but the federation's feed goes on.
            Err(rcpfed_store::StoreError::Conflict(problem)) => {
                tracing::error!(seq = m.seq, %problem, "this node's outbox contradicts the hub's log");
                self.state.set_error(format!("own chain: {problem}"));
                Ok(())
            }
            Err(e) => Err(Failure::Store(format!(
                "adopting own statement {}: {e}",
                m.seq
            ))),
        }
    }

    async fn insert(&self, m: MirroredStatement) -> Result<(), Failure> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.mirror_insert(&m)).await {
            Ok(Ok(())) => {
                self.view_wake.notify_one();
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::Store(e.to_string())),
            Err(e) => Err(Failure::Store(format!("mirror task failed: {e}"))),
        }
    }
}

/// The chunk manifest of a verified large snapshot (from the statement its check decoded).
fn chunk_manifest(m: &MirroredStatement) -> Option<&ChunkManifest> {
    match &m.decoded.get()?.body {
        Body::Indicators(snapshot) => snapshot.chunks.as_ref(),
        Body::Policy(_) => None,
    }
}

/// The chunk manifest of a mirrored entry read back from the store, if it is a large snapshot
/// (the mirror verified its envelope when it stored it).
pub(crate) fn stored_chunk_manifest(m: &MirroredStatement) -> Option<ChunkManifest> {
    if m.kind != rcpfed_core::statement::DocumentKind::IndicatorSnapshot.as_str() {
        return None;
    }
    let envelope = SignedEnvelope::decode(&m.envelope).ok()?;
    match Statement::decode(&envelope.payload).ok()?.body {
        Body::Indicators(snapshot) => snapshot.chunks,
        Body::Policy(_) => None,
    }
}

/// Makes sure every chunk of a large snapshot is staged locally: the missing ones are
/// fetched from the hub (resuming at the first missing chunk) and each is checked against
/// the signed manifest (length, SHA-256, count) before it is staged. A chunk that does not
/// match is hub misbehaviour like a bad receipt: it is not staged, and the snapshot's view
/// waits (the view applier reports it and tries again).
pub(crate) async fn stage_chunks(
    client: &mut HubServiceClient<Channel>,
    store: &Arc<dyn NodeStorage>,
    digest: &Digest,
    manifest: &ChunkManifest,
    call_timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<(), Failure> {
    check_manifest(manifest).map_err(|e| Failure::Verify(format!("chunk manifest: {e}")))?;
    let manifest = Arc::new(manifest.clone());
    loop {
        let first = first_missing(store, &manifest).await?;
        let Some(first) = first else {
            return Ok(());
        };
        let request = v1::GetSnapshotChunksRequest {
            digest: digest.0.to_vec(),
            first_chunk: first,
        };
        let mut stream = tokio::select! {
            s = crate::bounded(call_timeout, client.get_snapshot_chunks(request)) => s,
            () = shutdown.cancelled() => return Err(Failure::Shutdown),
        }
        .map_err(|s| {
            Failure::Hub(format!(
                "fetching the chunks of snapshot {digest}: {:?}: {}",
                s.code(),
                s.message()
            ))
        })?
        .into_inner();
        let mut expected = first;
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                () = shutdown.cancelled() => return Err(Failure::Shutdown),
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(s) => {
                    return Err(Failure::Hub(format!(
                        "fetching chunk {expected} of snapshot {digest}: {:?}: {}",
                        s.code(),
                        s.message()
                    )));
                }
            };
            if chunk.index != expected {
                return Err(Failure::Verify(format!(
                    "the hub sent chunk {} of snapshot {digest} where chunk {expected} was due",
                    chunk.index
                )));
            }
            let store = Arc::clone(store);
            let shared = Arc::clone(&manifest);
            let index = expected as usize;
            let digest = *digest;
            tokio::task::spawn_blocking(move || {
                let manifest = shared;
                decode_chunk(&manifest, index, &chunk.chunk).map_err(|e| {
                    Failure::Verify(format!("chunk {index} of snapshot {digest}: {e}"))
                })?;
                // decode_chunk checked that the manifest lists chunk `index`.
                let Some(sha) = manifest.chunks.get(index).map(|c| c.sha256) else {
                    return Err(Failure::Verify(format!(
                        "chunk {index} is not in the manifest"
                    )));
                };
                store
                    .stage_chunks(&[(sha, chunk.chunk)])
                    .map_err(|e| Failure::Store(format!("staging a chunk: {e}")))
            })
            .await
            .map_err(|e| Failure::Store(format!("chunk task failed: {e}")))??;
            expected += 1;
            if expected as usize == manifest.chunks.len() {
                break;
            }
        }
        if expected == first {
            return Err(Failure::Verify(format!(
                "the hub's stream of snapshot {digest}'s chunks ended before chunk {first}"
            )));
        }
    }
}

/// Index of the first chunk of `manifest` not staged locally, if any.
async fn first_missing(
    store: &Arc<dyn NodeStorage>,
    manifest: &Arc<ChunkManifest>,
) -> Result<Option<u32>, Failure> {
    let store = Arc::clone(store);
    let manifest = Arc::clone(manifest);
    tokio::task::spawn_blocking(move || {
        let sha256s: Vec<Digest> = manifest.chunks.iter().map(|c| c.sha256).collect();
        let held = store.has_chunks(&sha256s)?;
        Ok(held.iter().position(|&held| !held).map(|i| i as u32))
    })
    .await
    .map_err(|e| Failure::Store(format!("chunk task failed: {e}")))?
    .map_err(|e: rcpfed_store::StoreError| Failure::Store(format!("reading chunks: {e}")))
}

/// Checks a registry version met in the feed: it decodes, and the hub's receipt names it at
/// this feed index. Whether it may be put in force is decided afterwards, by
/// [`crate::registry::NodeRegistry::observe`], once its log inclusion has verified.
pub fn check_registry_entry(
    federation: &Federation,
    entry: &FeedEntry,
    now_ms: i64,
) -> Result<MirroredStatement, String> {
    let (signed, receipt) = (&entry.envelope, &entry.receipt);
    let version = rcpfed_core::registry::decode_and_check(&signed.payload)
        .map_err(|e| format!("registry version: {e}"))?;
    hub_document_record(
        federation,
        entry.feed_index,
        signed,
        receipt,
        HubDoc {
            chain: version.hub_id.clone(),
            seq: version.version,
            kind: "registry",
            document: "registry",
        },
        now_ms,
    )
}

/// Which hub-issued document a feed entry is: its chain (`node_id`), seq, kind and document.
struct HubDoc {
    chain: String,
    seq: u64,
    kind: &'static str,
    document: &'static str,
}

/// The mirrored record of a hub-issued document (registry version, catalogue version,
/// coherence report) whose content the caller has checked, once the hub's receipt names it
/// (chain, seq, SHA-256 of the payload) at this feed index.
fn hub_document_record(
    federation: &Federation,
    feed_index: u64,
    signed: &SignedEnvelope,
    receipt: &SignedEnvelope,
    doc: HubDoc,
    now_ms: i64,
) -> Result<MirroredStatement, String> {
    let digest = signed.digest();
    let r = entry_receipt(
        federation, receipt, feed_index, &digest, &doc.chain, doc.seq,
    )?;
    Ok(MirroredStatement {
        feed_index,
        node_id: doc.chain,
        seq: doc.seq,
        digest,
        kind: doc.kind.into(),
        document: doc.document.into(),
        revision: u32::try_from(doc.seq).unwrap_or(u32::MAX),
        envelope: signed.encode(),
        receipt: receipt.encode(),
        accepted_at_ms: ms(r.accepted_at),
        mirrored_at_ms: now_ms,
        decoded: DecodedStatement::default(),
    })
}

/// The hub's receipt for a feed entry: signed by a hub key, for this federation, and naming
/// exactly this entry (digest, feed index, issuer and seq).
fn entry_receipt(
    federation: &Federation,
    receipt: &SignedEnvelope,
    feed_index: u64,
    digest: &rcpfed_core::Digest,
    node_id: &str,
    seq: u64,
) -> Result<Receipt, String> {
    Receipt::verify_for(
        receipt,
        federation,
        Acknowledged {
            node_id,
            seq,
            digest,
            feed_index: Some(feed_index),
        },
    )
    .map_err(|e| format!("receipt of {node_id}#{seq} at feed index {feed_index}: {e}"))
}

#[cfg(test)]
mod run_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(feed_index: u64, payload_type: &str, bytes: usize) -> v1::SubscribeFeedResponse {
        v1::SubscribeFeedResponse {
            feed_index,
            envelope: Some(v1::Envelope {
                payload_type: payload_type.into(),
                payload: vec![0; bytes],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A run taken from `messages` (then nothing ready): its feed indexes and how it ended.
    fn run_of(messages: Vec<ReadyMessage>) -> (Vec<u64>, StreamAfterRun, usize) {
        let mut messages = messages.into_iter();
        let first = messages.next().flatten().unwrap().unwrap().unwrap();
        let (run, after) = ready_run(first, || messages.next().flatten());
        let left = messages.len();
        (run.into_iter().map(|(i, _)| i).collect(), after, left)
    }

    const STATEMENT: &str = rcpfed_core::envelope::STATEMENT_PAYLOAD_TYPE;

    /// A hub that floods the stream gets its entries taken a bounded run at a time: by count,
    /// by payload bytes, and never past a registry entry; an error or the end after some
    /// entries comes after them.
    #[test]
    fn a_run_is_bounded_by_count_bytes_and_in_order_entries() {
        let small: Vec<ReadyMessage> = (1..=1000)
            .map(|i| Some(Ok(Some(message(i, STATEMENT, 2_048)))))
            .collect();
        let (run, after, left) = run_of(small);
        assert_eq!(run, (1..=MAX_RUN as u64).collect::<Vec<_>>());
        assert!(matches!(after, StreamAfterRun::Open));
        assert_eq!(left, 1000 - MAX_RUN);

        let large: Vec<ReadyMessage> = (1..=20)
            .map(|i| Some(Ok(Some(message(i, STATEMENT, 1024 * 1024)))))
            .collect();
        let (run, _, _) = run_of(large);
        assert_eq!(run.len(), MAX_RUN_BYTES / (1024 * 1024));

        let registry = vec![
            Some(Ok(Some(message(1, STATEMENT, 10)))),
            Some(Ok(Some(message(2, REGISTRY_PAYLOAD_TYPE, 10)))),
            Some(Ok(Some(message(3, STATEMENT, 10)))),
        ];
        let (run, after, left) = run_of(registry);
        assert_eq!(run, vec![1, 2]);
        assert!(matches!(after, StreamAfterRun::Open));
        assert_eq!(left, 1);

        let failing = vec![
            Some(Ok(Some(message(1, STATEMENT, 10)))),
            Some(Ok(Some(message(2, STATEMENT, 10)))),
            Some(Err(tonic::Status::internal("gone"))),
        ];
        let (run, after, _) = run_of(failing);
        assert_eq!(run, vec![1, 2]);
        assert!(matches!(after, StreamAfterRun::Failed(_)));

        let ended = vec![Some(Ok(Some(message(1, STATEMENT, 10)))), Some(Ok(None))];
        assert!(matches!(run_of(ended).1, StreamAfterRun::Ended));

        let quiet = vec![Some(Ok(Some(message(1, STATEMENT, 10)))), None];
        assert_eq!(run_of(quiet).0, vec![1]);
    }
}

#[cfg(test)]
mod batch_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn verified(feed_index: u64, envelope_bytes: usize) -> MirroredStatement {
        MirroredStatement {
            feed_index,
            node_id: "colombo".into(),
            seq: feed_index,
            digest: Digest::of(&feed_index.to_be_bytes()),
            kind: "policy_summary".into(),
            document: "regions/colombo/policies/p".into(),
            revision: 1,
            envelope: vec![0; envelope_bytes],
            receipt: Vec::new(),
            accepted_at_ms: 0,
            mirrored_at_ms: 0,
            decoded: DecodedStatement::default(),
        }
    }

    /// Small statements fill a batch by count, large ones by bytes.
    #[test]
    fn a_batch_is_full_at_its_count_or_its_bytes() {
        let small: Vec<_> = (1..MAX_BATCH as u64).map(|i| verified(i, 2_048)).collect();
        assert!(!batch_full(&small));
        let mut at_count = small.clone();
        at_count.push(verified(MAX_BATCH as u64, 2_048));
        assert!(batch_full(&at_count));

        let per_large = 1024 * 1024;
        let mut large: Vec<_> = (1..16).map(|i| verified(i, per_large)).collect();
        assert!(!batch_full(&large));
        large.push(verified(16, per_large));
        assert!(batch_full(&large));
    }
}
