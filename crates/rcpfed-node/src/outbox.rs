//! The outbox: delivers this node's signed statements to the hub, in seq order, with retry and
//! backoff, across restarts and hub downtime.
//!
//! Up to `IN_FLIGHT_WINDOW` statements are in flight at once, each its own `SubmitStatement`
//! call; the hub holds one that arrives before its predecessor. Answers are settled in seq
//! order, so a statement is marked delivered only after every earlier one. A statement sent
//! ahead that the hub did not hold (`SEQ_GAP` from a hub without the window, or a busy hub) is
//! sent again at once, with a window of one for a while: never a refusal.
//!
//! A statement leaves the outbox only when the hub's receipt verifies against the hub's key and
//! names exactly this statement. Transport errors and hub-side failures are retried; a refusal
//! (the hub says the statement itself is wrong) stops delivery at that statement, because every
//! later statement chains from it; the operator sees it in `GetNodeStatus` and `ListOutbox`.
//!
//! A large snapshot (its statement signs a chunk manifest) goes with `SubmitSnapshot`: the
//! envelope, then every chunk read from the store in manifest order. Everything else goes with
//! `SubmitStatement`. Both answers are checked the same way.

use crate::{NodeState, NodeStorage};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::feed::LogProof;
use rcpfed_core::limits::IN_FLIGHT_WINDOW;
use rcpfed_core::members::Federation;
use rcpfed_core::receipt::{Acknowledged, Receipt};
use rcpfed_core::statement::{Body, ChunkManifest, Statement};
use rcpfed_grpc::failover::FailoverChannel as Channel;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_store::OwnStatement;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// First retry delay.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Bound on one `SubmitSnapshot` upload (the hub's own bound on a snapshot call).
const SNAPSHOT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Whether a failed call may succeed if repeated unchanged: transport and server-side
/// failures and refusals that carry `RetryInfo` (a quota), but not a refusal of the statement
/// itself, which the hub marks with an `ErrorInfo` reason other than `INTERNAL`.
pub fn is_transient(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    // The server could not take it now (its store full, a deadline): retry, whatever the reason.
    if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) {
        return true;
    }
    let details = status.get_error_details();
    // A hub quota (RESOURCE_EXHAUSTED with RetryInfo) refuses for now, not for good.
    if details.retry_info().is_some() {
        return true;
    }
    let refused_by_rule = details
        .error_info()
        .is_some_and(|info| info.domain == rcpfed_grpc::ERROR_DOMAIN && info.reason != "INTERNAL");
    if refused_by_rule {
        return false;
    }
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

/// Verifies that `receipt` is the hub's signed receipt for `own`.
pub fn check_receipt(
    federation: &Federation,
    node_id: &str,
    own: &OwnStatement,
    receipt: &SignedEnvelope,
) -> Result<Receipt, String> {
    Receipt::verify_for(
        receipt,
        federation,
        Acknowledged {
            node_id,
            seq: own.seq,
            digest: &own.digest,
            feed_index: None,
        },
    )
    .map_err(|e| format!("receipt refused: {e}"))
}

/// What the delivery loop works with.
pub struct Outbox {
    /// The member file.
    pub federation: rcpfed_grpc::shared::SharedFederation,
    /// This node.
    pub node_id: String,
    /// The node's store (outbox and staged chunks).
    pub store: Arc<dyn NodeStorage>,
    /// Signalled when a statement is queued.
    pub wakeup: Arc<Notify>,
    /// Status shown to operators.
    pub state: Arc<NodeState>,
    /// Checks receipts' log proofs.
    pub witness: Arc<crate::witness::Witness>,
    /// Bound on each unary call to the hub.
    pub call_timeout: Duration,
}

/// Statements delivered with a window of one after the hub refused a statement sent ahead of
/// its predecessor's receipt (a hub that does not hold such statements), before the full
/// window is tried again.
const NARROW_DELIVERIES: u32 = 100;

/// Runs delivery until `shutdown`.
pub async fn run(outbox: Outbox, channel: Channel, shutdown: CancellationToken) {
    let mut delivery = Delivery::new(outbox, channel);
    loop {
        let pending = delivery.load_pending().await;
        if !pending.is_empty() && delivery.has_refused().await {
            // Every later statement chains from the refused one: nothing after it can be
            // accepted. Wait for an operator instead of sending statements the hub must refuse.
            delivery.state.set_error(
                "delivery stopped: the hub refused an earlier statement of this node (see ListOutbox); operator action is required".into(),
            );
            shutdown.cancelled().await;
            return;
        }
        if pending.is_empty() {
            tokio::select! {
                () = delivery.wakeup.notified() => continue,
                () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                () = shutdown.cancelled() => return,
            }
        }
        match delivery.deliver(pending, &shutdown).await {
            Round::Done | Round::Resend => {}
            Round::Stalled => {
                tokio::select! {
                    () = tokio::time::sleep(crate::jitter(delivery.backoff)) => {}
                    () = shutdown.cancelled() => return,
                }
                delivery.backoff = (delivery.backoff * 2).min(BACKOFF_MAX);
            }
            Round::Refused => {
                // Nothing after a refused statement can be accepted: wait for an operator.
                shutdown.cancelled().await;
                return;
            }
            Round::Shutdown => return,
        }
    }
}

/// How a round of delivery over the pending statements ended.
enum Round {
    /// Every statement of the round was delivered.
    Done,
    /// A statement sent ahead of its predecessor's receipt was not accepted: the outbox
    /// narrows its window and sends it again at once.
    Resend,
    /// A failure to retry after the backoff.
    Stalled,
    /// The hub refused a statement: delivery stops.
    Refused,
    /// The node is shutting down.
    Shutdown,
}

/// One statement sent and not yet settled.
struct Sent {
    own: OwnStatement,
    envelope: SignedEnvelope,
    /// Sent before its predecessor's receipt came back.
    ahead: bool,
    /// A chunked snapshot, sent alone.
    chunked: bool,
    call: AbortOnDrop<Result<Answer, Failed>>,
}

/// A spawned call that is cancelled when it is no longer awaited (a round ended early).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The delivery loop's state.
struct Delivery {
    federation: rcpfed_grpc::shared::SharedFederation,
    node_id: String,
    store: Arc<dyn NodeStorage>,
    wakeup: Arc<Notify>,
    state: Arc<NodeState>,
    witness: Arc<crate::witness::Witness>,
    call_timeout: Duration,
    client: HubServiceClient<Channel>,
    backoff: Duration,
    /// Deliveries left with a window of one (see [`NARROW_DELIVERIES`]).
    narrow_for: u32,
}

impl Delivery {
    fn new(outbox: Outbox, channel: Channel) -> Self {
        let client = HubServiceClient::new(channel)
            .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
        Delivery {
            federation: outbox.federation,
            node_id: outbox.node_id,
            store: outbox.store,
            wakeup: outbox.wakeup,
            state: outbox.state,
            witness: outbox.witness,
            call_timeout: outbox.call_timeout,
            client,
            backoff: BACKOFF_START,
            narrow_for: 0,
        }
    }

    /// The oldest pending statements, in seq order.
    async fn load_pending(&self) -> Vec<OwnStatement> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.pending(64)).await {
            Ok(Ok(pending)) => pending,
            Ok(Err(e)) => {
                self.state.set_error(format!("outbox store: {e}"));
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Whether a statement of this node was refused (delivery stays stopped).
    async fn has_refused(&self) -> bool {
        let store = Arc::clone(&self.store);
        matches!(
            tokio::task::spawn_blocking(move || store.outbox_counts()).await,
            Ok(Ok(c)) if c.rejected > 0
        )
    }

    /// Statements sent at once: [`IN_FLIGHT_WINDOW`], or one while narrowed.
    fn window(&self) -> usize {
        if self.narrow_for > 0 {
            1
        } else {
            usize::try_from(IN_FLIGHT_WINDOW).unwrap_or(1)
        }
    }

    /// Sends `pending` with up to a window of calls in flight and settles the answers in seq
    /// order. A chunked snapshot is sent alone.
    async fn deliver(&mut self, pending: Vec<OwnStatement>, shutdown: &CancellationToken) -> Round {
        let mut queue = pending.into_iter().peekable();
        let mut in_flight: VecDeque<Sent> = VecDeque::new();
        loop {
            if shutdown.is_cancelled() {
                return Round::Shutdown;
            }
            let alone = in_flight.front().is_some_and(|sent| sent.chunked);
            while !alone && in_flight.len() < self.window() {
                let Some(own) = queue.peek() else { break };
                let decoded = decode_own(own);
                let chunked = matches!(&decoded, Ok((_, Some(_))));
                if !in_flight.is_empty() && (chunked || decoded.is_err()) {
                    break; // sent (or marked) once what is before it is settled
                }
                let Some(own) = queue.next() else { break };
                match decoded {
                    Ok((envelope, manifest)) => {
                        let ahead = !in_flight.is_empty();
                        in_flight.push_back(self.send(own, envelope, manifest, ahead));
                    }
                    Err(e) => {
                        let problem = format!("stored envelope unreadable: {e}");
                        mark(&self.store, own.seq, Err(problem), true).await;
                        return Round::Stalled;
                    }
                }
                if chunked {
                    break;
                }
            }
            let Some(sent) = in_flight.pop_front() else {
                return Round::Done;
            };
            let Sent {
                own,
                envelope,
                ahead,
                mut call,
                ..
            } = sent;
            let answer = match (&mut call.0).await {
                Ok(answer) => answer,
                Err(e) => Err(Failed::Local(format!("the delivery call failed: {e}"))),
            };
            match self.settle(&own, &envelope, ahead, answer).await {
                None => {}
                Some(ended) => return ended, // the calls still in flight are cancelled
            }
        }
    }

    /// Starts the call that sends `own`.
    fn send(
        &self,
        own: OwnStatement,
        envelope: SignedEnvelope,
        manifest: Option<ChunkManifest>,
        ahead: bool,
    ) -> Sent {
        let mut client = self.client.clone();
        let store = Arc::clone(&self.store);
        let call_timeout = self.call_timeout;
        let seq = own.seq;
        let chunked = manifest.is_some();
        let to_send = envelope.clone();
        let call = tokio::spawn(async move {
            match manifest {
                // An upload of up to a thousand chunks: its own, longer bound (a dead link is
                // caught sooner by the keepalive pings).
                Some(manifest) => match tokio::time::timeout(
                    SNAPSHOT_UPLOAD_TIMEOUT,
                    submit_snapshot(&mut client, &store, seq, to_send, manifest),
                )
                .await
                {
                    Ok(answer) => answer,
                    Err(_) => Err(Failed::Hub(tonic::Status::deadline_exceeded(
                        "the snapshot upload did not finish in time",
                    ))),
                },
                None => crate::bounded(
                    call_timeout,
                    client.submit_statement(v1::SubmitStatementRequest {
                        envelope: Some(to_send.to_proto()),
                    }),
                )
                .await
                .map(|r| {
                    let r = r.into_inner();
                    Answer::from_proto(r.receipt, r.duplicate, r.log)
                })
                .map_err(Failed::Hub),
            }
        });
        Sent {
            own,
            envelope,
            ahead,
            chunked,
            call: AbortOnDrop(call),
        }
    }

    /// Settles one answer, in seq order: None when the statement is delivered and the round
    /// goes on, otherwise how the round ends.
    async fn settle(
        &mut self,
        own: &OwnStatement,
        envelope: &SignedEnvelope,
        ahead: bool,
        answer: Result<Answer, Failed>,
    ) -> Option<Round> {
        match &answer {
            Err(Failed::Hub(status)) if crate::hub_not_reached(status) => {
                self.state.hub_unreachable("outbox", status, self.backoff);
            }
            Err(Failed::Local(_)) => {}
            Ok(_) | Err(Failed::Hub(_)) => self.state.hub_answered(),
        }
        match answer {
            Ok(response) => self.record_receipt(own, envelope, response).await,
            Err(Failed::Local(problem)) => {
                // This node could not send what it signed (a chunk missing from its store):
                // not the hub's judgement, so not a refusal.
                tracing::error!(seq = own.seq, %problem, "cannot send statement");
                mark(&self.store, own.seq, Err(problem.clone()), false).await;
                self.state.set_error(problem);
                Some(Round::Stalled)
            }
            Err(Failed::Hub(status)) if ahead && (is_transient(&status) || is_seq_gap(&status)) => {
                // Sent before its predecessor's receipt, which has now come back: the hub did
                // not hold it (a hub without a window, or it waited too long), or could not
                // take another call. Sent again at once, one at a time for a while.
                tracing::debug!(seq = own.seq, code = ?status.code(), message = status.message(), "statement sent ahead was not accepted; sending again in order");
                self.narrow_for = NARROW_DELIVERIES;
                Some(Round::Resend)
            }
            Err(Failed::Hub(status)) if is_transient(&status) => {
                let problem = format!(
                    "hub unreachable or busy ({:?}): {}",
                    status.code(),
                    status.message()
                );
                tracing::debug!(seq = own.seq, %problem, "delivery will be retried");
                if rcpfed_grpc::status::is_not_leader(&status) {
                    // The next try goes to the next hub endpoint, which may lead: soon.
                    self.backoff = BACKOFF_START / 2;
                }
                mark(&self.store, own.seq, Err(problem.clone()), false).await;
                self.state.set_error(problem);
                Some(Round::Stalled)
            }
            Err(Failed::Hub(status)) => {
                let problem = format!(
                    "hub refused statement {} ({:?}): {}",
                    own.seq,
                    status.code(),
                    status.message()
                );
                tracing::error!(seq = own.seq, %problem, "delivery stopped at a refused statement");
                mark(&self.store, own.seq, Err(problem.clone()), true).await;
                self.state.set_error(problem);
                Some(Round::Refused)
            }
        }
    }

    /// Checks the hub's receipt and its log proof and records the delivery: None when
    /// delivered, otherwise a stall (retried after the backoff).
    async fn record_receipt(
        &mut self,
        own: &OwnStatement,
        envelope: &SignedEnvelope,
        response: Answer,
    ) -> Option<Round> {
        let mut checked = response
            .receipt
            .as_ref()
            .ok_or_else(|| "hub answered without a receipt".to_string())
            .and_then(|r| {
                check_receipt(&self.federation.get(), &self.node_id, own, r)
                    .map(|receipt| (receipt, r.encode()))
            });
        if let Ok((receipt, _)) = &checked {
            // The receipt counts only once its inclusion in the witnessed log verifies.
            if let Err(e) = crate::witness::check_logged(
                &self.witness,
                &mut self.client,
                receipt.feed_index,
                envelope,
                response.log.as_ref(),
                self.call_timeout,
            )
            .await
            {
                checked = Err(format!("receipt's log proof refused: {e}"));
            }
        }
        let (receipt, bytes) = match checked {
            Ok(checked) => checked,
            Err(problem) => {
                // A bad receipt is not a delivery; try again later.
                tracing::warn!(seq = own.seq, %problem, "receipt did not verify");
                mark(&self.store, own.seq, Err(problem.clone()), false).await;
                self.state.set_error(problem);
                return Some(Round::Stalled);
            }
        };
        let store = Arc::clone(&self.store);
        let seq = own.seq;
        let index = receipt.feed_index;
        let recorded =
            tokio::task::spawn_blocking(move || store.mark_delivered(seq, &bytes, index))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(error) = recorded {
            tracing::error!(seq, %error, "cannot record delivery");
            self.state.set_error("cannot record delivery".into());
            return Some(Round::Stalled);
        }
        tracing::info!(
            seq,
            feed_index = index,
            duplicate = response.duplicate,
            "delivered; receipt verified"
        );
        self.backoff = BACKOFF_START;
        self.narrow_for = self.narrow_for.saturating_sub(1);
        self.state.clear_error();
        None
    }
}

/// Whether the hub refused a statement with `SEQ_GAP` (its predecessor not there).
fn is_seq_gap(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    status.get_error_details().error_info().is_some_and(|info| {
        info.domain == rcpfed_grpc::ERROR_DOMAIN
            && info.reason == rcpfed_core::rejection::reasons::SEQ_GAP
    })
}

/// The hub's answer to SubmitStatement or SubmitSnapshot (the same fields).
pub(crate) struct Answer {
    pub(crate) receipt: Option<SignedEnvelope>,
    pub(crate) duplicate: bool,
    pub(crate) log: Option<LogProof>,
}

impl Answer {
    /// The edge: the response's fields as domain types.
    fn from_proto(
        receipt: Option<v1::Envelope>,
        duplicate: bool,
        log: Option<v1::LogProof>,
    ) -> Self {
        Answer {
            receipt: receipt.map(SignedEnvelope::from_proto),
            duplicate,
            log: log.map(LogProof::from_proto),
        }
    }
}

/// Why a delivery attempt failed.
pub(crate) enum Failed {
    /// The hub answered with an error (classified by [`is_transient`]).
    Hub(tonic::Status),
    /// This node could not send the statement; retried later.
    Local(String),
}

/// The stored envelope, and its chunk manifest when it is a large snapshot. Only a large
/// snapshot's payload is decoded (its observations are in the chunks, so it is small): the
/// store recorded which statements are.
fn decode_own(own: &OwnStatement) -> Result<(SignedEnvelope, Option<ChunkManifest>), String> {
    let envelope = SignedEnvelope::decode(&own.envelope).map_err(|e| e.to_string())?;
    if !own.chunked {
        return Ok((envelope, None));
    }
    let statement = Statement::decode(&envelope.payload).map_err(|e| e.to_string())?;
    match statement.body {
        Body::Indicators(snapshot) if snapshot.chunks.is_some() => Ok((envelope, snapshot.chunks)),
        _ => Err("it is stored as a chunked snapshot but lists no chunks".to_string()),
    }
}

/// Chunks in flight between the store reader and the gRPC stream: bounded memory however
/// large the snapshot.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Sends a large snapshot with `SubmitSnapshot`: the envelope, then every chunk read from the
/// store in manifest order, while the stream is being sent.
pub(crate) async fn submit_snapshot(
    client: &mut HubServiceClient<Channel>,
    store: &Arc<dyn NodeStorage>,
    seq: u64,
    envelope: SignedEnvelope,
    manifest: ChunkManifest,
) -> Result<Answer, Failed> {
    use v1::submit_snapshot_request::Part;
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let store = Arc::clone(store);
    let reader = tokio::spawn(async move {
        let first = v1::SubmitSnapshotRequest {
            part: Some(Part::Envelope(envelope.to_proto())),
        };
        if tx.send(first).await.is_err() {
            return Ok(()); // the call ended; its answer says why
        }
        for (index, chunk) in manifest.chunks.into_iter().enumerate() {
            let store = Arc::clone(&store);
            let bytes = tokio::task::spawn_blocking(move || store.chunk(&chunk.sha256))
                .await
                .map_err(|e| format!("reading chunk {index} of statement {seq}: {e}"))?
                .map_err(|e| format!("reading chunk {index} of statement {seq}: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "chunk {index} ({}) of statement {seq} is missing from this node's store",
                        chunk.sha256
                    )
                })?;
            let next = v1::SubmitSnapshotRequest {
                part: Some(Part::Chunk(bytes)),
            };
            if tx.send(next).await.is_err() {
                return Ok(());
            }
        }
        Ok::<(), String>(())
    });
    let answer = client
        .submit_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    // A local failure explains whatever the hub said about the cut-short stream.
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(problem)) => return Err(Failed::Local(problem)),
        Err(e) => return Err(Failed::Local(format!("chunk reader failed: {e}"))),
    }
    answer
        .map(|r| {
            let r = r.into_inner();
            Answer::from_proto(r.receipt, r.duplicate, r.log)
        })
        .map_err(Failed::Hub)
}

async fn mark(store: &Arc<dyn NodeStorage>, seq: u64, outcome: Result<(), String>, refused: bool) {
    let store = Arc::clone(store);
    let recorded = tokio::task::spawn_blocking(move || match outcome {
        Ok(()) => Ok(()),
        Err(e) if refused => store.mark_rejected(seq, &e),
        Err(e) => store.record_attempt_failure(seq, &e),
    })
    .await;
    // Delivery goes on either way (the statement is retried from the outbox), but the
    // operator must learn that its status was not recorded.
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(seq, error = %e, "cannot record the delivery attempt"),
        Err(e) => tracing::error!(seq, error = %e, "recording the delivery attempt failed"),
    }
}
