//! The outbox: delivers this node's signed statements to the hub, in seq order, with retry and
//! backoff, across restarts and hub downtime.
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
use rcpfed_core::members::Federation;
use rcpfed_core::receipt::{Acknowledged, Receipt};
use rcpfed_core::statement::{Body, ChunkManifest, Statement};
use rcpfed_grpc::failover::FailoverChannel as Channel;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_store::OwnStatement;
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

/// Runs delivery until `shutdown`.
pub async fn run(outbox: Outbox, channel: Channel, shutdown: CancellationToken) {
    let Outbox {
        federation,
        node_id,
        store,
        wakeup,
        state,
        witness,
        call_timeout,
    } = outbox;
    let mut client = HubServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let mut backoff = BACKOFF_START;
    loop {
        let pending = {
            let store = Arc::clone(&store);
            match tokio::task::spawn_blocking(move || store.pending(64)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    state.set_error(format!("outbox store: {e}"));
                    Vec::new()
                }
                Err(_) => Vec::new(),
            }
        };
        let refused = {
            let store = Arc::clone(&store);
            matches!(
                tokio::task::spawn_blocking(move || store.outbox_counts()).await,
                Ok(Ok(c)) if c.rejected > 0
            )
        };
        if refused && !pending.is_empty() {
            // Every later statement chains from the refused one: nothing after it can be
            // accepted. Wait for an operator instead of sending statements the hub must refuse.
            state.set_error(
                "delivery stopped: the hub refused an earlier statement of this node (see ListOutbox); operator action is required".into(),
            );
            shutdown.cancelled().await;
            return;
        }
        if pending.is_empty() {
            tokio::select! {
                () = wakeup.notified() => continue,
                () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let mut stalled = false;
        for own in pending {
            if shutdown.is_cancelled() {
                return;
            }
            let (envelope, manifest) = match decode_own(&own) {
                Ok(decoded) => decoded,
                Err(e) => {
                    mark(
                        &store,
                        own.seq,
                        Err(format!("stored envelope unreadable: {e}")),
                        true,
                    )
                    .await;
                    stalled = true;
                    break;
                }
            };
            let envelope_for_log = envelope.clone();
            let sent = match manifest {
                Some(manifest) => {
                    // An upload of up to a thousand chunks: its own, longer bound (a dead link
                    // is caught sooner by the keepalive pings).
                    match tokio::time::timeout(
                        SNAPSHOT_UPLOAD_TIMEOUT,
                        submit_snapshot(&mut client, &store, own.seq, envelope, manifest),
                    )
                    .await
                    {
                        Ok(answer) => answer,
                        Err(_) => Err(Failed::Hub(tonic::Status::deadline_exceeded(
                            "the snapshot upload did not finish in time",
                        ))),
                    }
                }
                None => crate::bounded(
                    call_timeout,
                    client.submit_statement(v1::SubmitStatementRequest {
                        envelope: Some(envelope.to_proto()),
                    }),
                )
                .await
                .map(|r| {
                    let r = r.into_inner();
                    Answer::from_proto(r.receipt, r.duplicate, r.log)
                })
                .map_err(Failed::Hub),
            };
            match &sent {
                Err(Failed::Hub(status)) if crate::hub_not_reached(status) => {
                    state.hub_unreachable("outbox", status, backoff);
                }
                Err(Failed::Local(_)) => {}
                Ok(_) | Err(Failed::Hub(_)) => state.hub_answered(),
            }
            match sent {
                Ok(response) => {
                    let mut checked = response
                        .receipt
                        .as_ref()
                        .ok_or_else(|| "hub answered without a receipt".to_string())
                        .and_then(|r| {
                            check_receipt(&federation.get(), &node_id, &own, r)
                                .map(|receipt| (receipt, r.encode()))
                        });
                    if let Ok((receipt, _)) = &checked {
                        // The receipt counts only once its inclusion in the witnessed log
                        // verifies.
                        if let Err(e) = crate::witness::check_logged(
                            &witness,
                            &mut client,
                            receipt.feed_index,
                            &envelope_for_log,
                            response.log.as_ref(),
                            call_timeout,
                        )
                        .await
                        {
                            checked = Err(format!("receipt's log proof refused: {e}"));
                        }
                    }
                    match checked {
                        Ok((receipt, bytes)) => {
                            let store2 = Arc::clone(&store);
                            let seq = own.seq;
                            let index = receipt.feed_index;
                            let recorded = tokio::task::spawn_blocking(move || {
                                store2.mark_delivered(seq, &bytes, index)
                            })
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()));
                            match recorded {
                                Ok(()) => {
                                    tracing::info!(
                                        seq,
                                        feed_index = index,
                                        duplicate = response.duplicate,
                                        "delivered; receipt verified"
                                    );
                                    backoff = BACKOFF_START;
                                    state.clear_error();
                                }
                                Err(error) => {
                                    tracing::error!(seq, %error, "cannot record delivery");
                                    state.set_error("cannot record delivery".into());
                                    stalled = true;
                                    break;
                                }
                            }
                        }
                        Err(problem) => {
                            // A bad receipt is not a delivery; try again later.
                            tracing::warn!(seq = own.seq, %problem, "receipt did not verify");
                            mark(&store, own.seq, Err(problem.clone()), false).await;
                            state.set_error(problem);
                            stalled = true;
                            break;
                        }
                    }
                }
                Err(Failed::Local(problem)) => {
                    // This node could not send what it signed (a chunk missing from its
                    // store): not the hub's judgement, so not a refusal.
                    tracing::error!(seq = own.seq, %problem, "cannot send statement");
                    mark(&store, own.seq, Err(problem.clone()), false).await;
                    state.set_error(problem);
                    stalled = true;
                    break;
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
                        backoff = BACKOFF_START / 2;
                    }
                    mark(&store, own.seq, Err(problem.clone()), false).await;
                    state.set_error(problem);
                    stalled = true;
                    break;
                }
                Err(Failed::Hub(status)) => {
                    let problem = format!(
                        "hub refused statement {} ({:?}): {}",
                        own.seq,
                        status.code(),
                        status.message()
                    );
                    tracing::error!(seq = own.seq, %problem, "delivery stopped at a refused statement");
                    mark(&store, own.seq, Err(problem.clone()), true).await;
                    state.set_error(problem);
                    // Nothing after a refused statement can be accepted: wait for an operator.
                    shutdown.cancelled().await;
                    return;
                }
            }
        }
        if stalled {
            tokio::select! {
                () = tokio::time::sleep(crate::jitter(backoff)) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
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

/// The stored envelope, and its chunk manifest when it is a large snapshot.
fn decode_own(own: &OwnStatement) -> Result<(SignedEnvelope, Option<ChunkManifest>), String> {
    let envelope = SignedEnvelope::decode(&own.envelope).map_err(|e| e.to_string())?;
    let statement = Statement::decode(&envelope.payload).map_err(|e| e.to_string())?;
    let manifest = match statement.body {
        Body::Indicators(s) => s.chunks,
        Body::Policy(_) => None,
    };
    Ok((envelope, manifest))
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
