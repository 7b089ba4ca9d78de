//! `rcpfed.v1.NodeService`.

use crate::NodeState;
use crate::publish::stream::{BATCHES_IN_FLIGHT, StreamMessage, check_and_stage};
use crate::publish::{Draft, PublishError, Published, Publisher, StreamedDraft};
use rcpfed_core::members::Role;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_core::statement::{Body, IndicatorSnapshot, Observation, PolicySummary};
use rcpfed_grpc::records::{RecordParts, statement_record};
use rcpfed_grpc::status::{invalid_field, next_page, next_page_after, page_size, parse_page_token};
use rcpfed_grpc::{authorize, rejection_status};
use rcpfed_proto::v1;
use rcpfed_proto::v1::node_service_server::NodeService;
use rcpfed_proto::v1::publish_snapshot_request::Part;
use rcpfed_store::DeliveryState;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Store work off the async runtime (store errors become INTERNAL).
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, rcpfed_store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    rcpfed_grpc::status::blocking(what, f).await
}

/// The node's gRPC service.
pub struct Node {
    pub(crate) federation: rcpfed_grpc::shared::SharedFederation,
    pub(crate) node_id: String,
    pub(crate) store: Arc<dyn crate::NodeStorage>,
    pub(crate) publisher: Publisher,
    pub(crate) state: Arc<NodeState>,
}

/// Most observations `PublishSnapshot` accepts: bounds the node's memory, and is what the
/// signed chunk manifest may list ([`rcpfed_core::chunks::MAX_SNAPSHOT_OBSERVATIONS`]).
pub const MAX_STREAMED_OBSERVATIONS: usize =
    rcpfed_core::chunks::MAX_SNAPSHOT_OBSERVATIONS as usize;

/// An empty request id means none.
fn request_id(id: String) -> Option<String> {
    (!id.is_empty()).then_some(id)
}

fn digest_bytes(p: &Published) -> Vec<u8> {
    p.digest.map(|d| d.0.to_vec()).unwrap_or_default()
}

/// The answer to a publication that failed.
fn publish_status(e: PublishError) -> Status {
    match e {
        PublishError::Rejected(r) => rejection_status(&r),
        PublishError::Store(e) => {
            rcpfed_grpc::status::store_status("signing and queueing the statement", &e)
        }
    }
}

impl Node {
    /// The publish path of PublishDocument.
    async fn publish(&self, draft: Draft) -> Result<Published, Status> {
        self.publisher.publish(draft).await.map_err(publish_status)
    }
}

/// A `PublishSnapshot` stream with its own time limits.
struct SnapshotStream {
    stream: tonic::Streaming<v1::PublishSnapshotRequest>,
    deadline: tokio::time::Instant,
}

impl SnapshotStream {
    /// The next message, within the idle limit and the overall deadline.
    async fn next(&mut self) -> Result<Option<v1::PublishSnapshotRequest>, Status> {
        let idle = tokio::time::Instant::now() + rcpfed_grpc::deadline::SNAPSHOT_IDLE_TIMEOUT;
        match tokio::time::timeout_at(self.deadline.min(idle), self.stream.message()).await {
            Ok(message) => message,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the snapshot stream sent nothing for {} s or took longer than {} s in all",
                rcpfed_grpc::deadline::SNAPSHOT_IDLE_TIMEOUT.as_secs(),
                rcpfed_grpc::deadline::SNAPSHOT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Reads the batches of a `PublishSnapshot` stream after its header and passes their
/// observations on to the checker, numbered across the whole snapshot; an error refuses the
/// stream. The checker stopping (an error of its own) ends the reading.
async fn read_batches(
    stream: &mut SnapshotStream,
    batches: &tokio::sync::mpsc::Sender<StreamMessage>,
) -> Result<(), Status> {
    let mut count = 0usize;
    // Messages are counted from 1, the header.
    let mut message = 1usize;
    while let Some(next) = stream.next().await? {
        message += 1;
        let batch = match next.part {
            Some(Part::Batch(b)) => b,
            Some(Part::Header(_)) => {
                return Err(invalid_field(
                    "header",
                    reasons::INVALID_ARGUMENT,
                    format!(
                        "message {message} carries a second header; only the first message may"
                    ),
                ));
            }
            None => {
                return Err(invalid_field(
                    "batch",
                    reasons::FIELD_REQUIRED,
                    format!("message {message} carries neither a header nor a batch"),
                ));
            }
        };
        if count + batch.observations.len() > MAX_STREAMED_OBSERVATIONS {
            return Err(rejection_status(&Rejection::new(
                RejectClass::TooLarge,
                reasons::PAYLOAD_TOO_LARGE,
                format!(
                    "a snapshot holds at most {MAX_STREAMED_OBSERVATIONS} observations; split it into several documents"
                ),
            )));
        }
        let mut observations = Vec::with_capacity(batch.observations.len());
        for o in batch.observations {
            observations.push(Observation::from_proto(count, o).map_err(|r| rejection_status(&r))?);
            count += 1;
        }
        if batches
            .send(StreamMessage::Batch(observations))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl NodeService for Node {
    async fn get_node_status(
        &self,
        request: Request<v1::GetNodeStatusRequest>,
    ) -> Result<Response<v1::GetNodeStatusResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let store = Arc::clone(&self.store);
        let status = blocking("reading node status", move || store.status()).await?;
        let (head, counts) = (status.head, status.outbox);
        Ok(Response::new(v1::GetNodeStatusResponse {
            node_id: self.node_id.clone(),
            federation_id: self.federation.get().federation_id.clone(),
            head_seq: head.map(|h| h.0).unwrap_or(0),
            head_digest: head.map(|h| h.1.0.to_vec()).unwrap_or_default(),
            outbox_pending: counts.pending,
            outbox_delivered: counts.delivered,
            outbox_rejected: counts.rejected,
            mirror_count: status.mirror_count,
            feed_cursor: status.mirror_cursor,
            feed_connected: self
                .state
                .feed_connected
                .load(std::sync::atomic::Ordering::Relaxed),
            last_error: self.state.last_error(),
            hub_reachable: self.state.hub_reachable(),
            view_applied: status.view_applied,
            last_hub_answer: self
                .state
                .last_hub_answer_ms()
                .map(|ms| prost_types::Timestamp {
                    seconds: ms.div_euclid(1000),
                    nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
                }),
        }))
    }

    async fn publish_document(
        &self,
        request: Request<v1::PublishDocumentRequest>,
    ) -> Result<Response<v1::PublishDocumentResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Admin)?;
        let req = request.into_inner();
        let body = match req.body {
            Some(v1::publish_document_request::Body::PolicySummary(p)) => {
                Body::Policy(PolicySummary::from_proto(p).map_err(|r| rejection_status(&r))?)
            }
            Some(v1::publish_document_request::Body::IndicatorSnapshot(s)) => Body::Indicators(
                IndicatorSnapshot::from_proto(s).map_err(|r| rejection_status(&r))?,
            ),
            None => {
                return Err(invalid_field(
                    "body",
                    reasons::FIELD_REQUIRED,
                    "a policy_summary or an indicator_snapshot is required",
                ));
            }
        };
        let published = self
            .publish(Draft {
                document: req.document,
                body,
                validate_only: req.validate_only,
                request_id: request_id(req.request_id),
            })
            .await?;
        Ok(Response::new(v1::PublishDocumentResponse {
            seq: published.seq,
            digest: digest_bytes(&published),
            revision: published.revision,
            warnings: published.warnings,
            document: published.document,
        }))
    }

    async fn list_outbox(
        &self,
        request: Request<v1::ListOutboxRequest>,
    ) -> Result<Response<v1::ListOutboxResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let before = match parse_page_token(&req.page_token)? {
            0 => u64::MAX,
            n => n,
        };
        let store = Arc::clone(&self.store);
        let mut rows = blocking("listing the outbox", move || {
            store.list_own(before, limit + 1)
        })
        .await?;
        let next_page_token = next_page(&mut rows, limit, |r| r.seq);
        let entries = rows
            .into_iter()
            .map(|o| {
                // A stored receipt that does not decode is damage to the store, not "none".
                let receipt = o
                    .receipt
                    .map(|r| prost::Message::decode(r.as_slice()))
                    .transpose()
                    .map_err(|e| {
                        rcpfed_grpc::status::internal(
                            &format!("the receipt of own statement {}", o.seq),
                            &e,
                        )
                    })?;
                Ok(v1::OutboxEntry {
                    seq: o.seq,
                    digest: o.digest.0.to_vec(),
                    document: o.document,
                    revision: o.revision,
                    state: match o.state {
                        DeliveryState::Pending => v1::DeliveryState::Pending,
                        DeliveryState::Delivered => v1::DeliveryState::Delivered,
                        DeliveryState::Rejected => v1::DeliveryState::Rejected,
                    } as i32,
                    attempts: o.attempts,
                    last_error: o.last_error,
                    created_at: Some(rcpfed_grpc::timestamp_from_ms(o.created_at_ms)),
                    receipt,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(v1::ListOutboxResponse {
            entries,
            next_page_token,
        }))
    }

    async fn publish_snapshot(
        &self,
        request: Request<tonic::Streaming<v1::PublishSnapshotRequest>>,
    ) -> Result<Response<v1::PublishSnapshotResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Admin)?;
        let mut stream = SnapshotStream {
            stream: request.into_inner(),
            // The server's per-call deadline exempts this stream (see rcpfed_grpc::deadline),
            // so it bounds itself: an idle limit between messages and an overall limit.
            deadline: tokio::time::Instant::now() + rcpfed_grpc::deadline::SNAPSHOT_TIMEOUT,
        };
        let header = match stream.next().await?.and_then(|m| m.part) {
            Some(Part::Header(h)) => h,
            Some(Part::Batch(_)) => {
                return Err(invalid_field(
                    "header",
                    reasons::FIELD_REQUIRED,
                    "the first message must carry the header (document and indicator); the observation batches follow it",
                ));
            }
            None => {
                return Err(invalid_field(
                    "header",
                    reasons::FIELD_REQUIRED,
                    "the first message must carry the header (document and indicator)",
                ));
            }
        };
        let cx = self
            .publisher
            .stream_context(header.indicator)
            .map_err(publish_status)?;
        // The observations are checked and cut on a thread of their own as they arrive
        // (crate::publish::stream); this loop only reads the stream and converts them.
        let (batches, received) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
        let checker = tokio::task::spawn_blocking(move || check_and_stage(cx, received));
        let read = read_batches(&mut stream, &batches).await;
        let ended = match read {
            Ok(()) => batches.send(StreamMessage::End).await.is_ok(),
            Err(status) => {
                // The checker sees the stream abandoned and drops what it staged.
                drop(batches);
                return Err(status);
            }
        };
        drop(batches);
        let checked = checker
            .await
            .map_err(|e| Status::internal(format!("the snapshot checker failed: {e}")))?
            .map_err(publish_status)?;
        let snapshot = match (ended, checked) {
            (true, Some(snapshot)) => snapshot,
            // The checker stopped reading: only an error of its own does that, returned above.
            _ => {
                return Err(Status::internal(
                    "the snapshot checker stopped before the stream ended",
                ));
            }
        };
        let published = self
            .publisher
            .publish_streamed(StreamedDraft {
                document: header.document,
                validate_only: header.validate_only,
                request_id: request_id(header.request_id),
                snapshot,
            })
            .await
            .map_err(publish_status)?;
        Ok(Response::new(v1::PublishSnapshotResponse {
            seq: published.seq,
            digest: digest_bytes(&published),
            revision: published.revision,
            document: published.document.clone(),
            observation_count: published.observation_count,
            chunk_count: published.chunk_count,
            warnings: published.warnings,
        }))
    }

    async fn list_mirrored_statements(
        &self,
        request: Request<v1::ListMirroredStatementsRequest>,
    ) -> Result<Response<v1::ListMirroredStatementsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let node = if req.node_id.is_empty() {
            None
        } else {
            Some(req.node_id)
        };
        let store = Arc::clone(&self.store);
        // Paged by bytes as the hub's ListStatements: read row by row up to MAX_PAGE_BYTES of
        // stored bytes, then cut before MAX_PAGE_BYTES encoded (each record also carries the
        // decoded statement), so a page of large snapshots fits a default 4 MiB client.
        let (rows, more) = blocking("listing the mirror", move || {
            store.mirror_list(
                node.as_deref(),
                after,
                limit,
                rcpfed_core::limits::MAX_PAGE_BYTES,
            )
        })
        .await?;
        let mut statements = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for m in &rows {
            let record = statement_record(RecordParts {
                node_id: &m.node_id,
                seq: m.seq,
                digest: m.digest.as_bytes(),
                feed_index: m.feed_index,
                accepted_at_ms: m.accepted_at_ms,
                envelope: &m.envelope,
                receipt: &m.receipt,
            });
            bytes += prost::Message::encoded_len(&record) + 8;
            if !statements.is_empty() && bytes > rcpfed_core::limits::MAX_PAGE_BYTES {
                break;
            }
            statements.push(record);
        }
        let next_page_token = next_page_after(&rows, statements.len(), more, |m| m.feed_index);
        Ok(Response::new(v1::ListMirroredStatementsResponse {
            statements,
            next_page_token,
        }))
    }
}

/// `rcpfed.v1.WitnessService`.
pub struct WitnessRpc {
    pub(crate) federation: rcpfed_grpc::shared::SharedFederation,
    pub(crate) witness: Arc<crate::witness::Witness>,
}

#[tonic::async_trait]
impl v1::witness_service_server::WitnessService for WitnessRpc {
    async fn add_checkpoint(
        &self,
        request: Request<v1::AddCheckpointRequest>,
    ) -> Result<Response<v1::AddCheckpointResponse>, Status> {
        // The hub offers its checkpoints; an admin may too (for audits and tests).
        let spiffe = rcpfed_grpc::peer_spiffe_id(&request)?;
        let is_hub = self
            .federation
            .get()
            .hub()
            .is_some_and(|hub| hub.spiffe_id == spiffe);
        if !is_hub {
            authorize(&request, &self.federation.get(), Role::Admin)?;
        }
        let req = request.into_inner();
        let offered = if is_hub {
            self.witness
                .add_checkpoint(req.old_size, &req.consistency_proof, &req.checkpoint)
                .await
        } else {
            self.witness
                .add_checkpoint_offered(req.old_size, &req.consistency_proof, &req.checkpoint)
                .await
        };
        let signature = offered.map_err(|r| rejection_status(&r))?;
        Ok(Response::new(v1::AddCheckpointResponse {
            cosignature: signature.to_line(),
        }))
    }

    async fn get_witness_status(
        &self,
        request: Request<v1::GetWitnessStatusRequest>,
    ) -> Result<Response<v1::GetWitnessStatusResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let status = self
            .witness
            .status()
            .await
            .map_err(|r| rejection_status(&r))?;
        let (trusted_checkpoint, trusted_size) = status.trusted.unwrap_or_default();
        Ok(Response::new(v1::GetWitnessStatusResponse {
            trusted_checkpoint,
            trusted_size,
            forked: status.forked,
            evidence: status
                .forks
                .into_iter()
                .map(|f| v1::ForkEvidence {
                    trusted_checkpoint: f.trusted_note,
                    conflicting_checkpoint: f.conflicting_note,
                    problem: f.problem,
                    detected_at: Some(rcpfed_grpc::timestamp_from_ms(f.detected_at_ms)),
                })
                .collect(),
            witness_name: status.name,
        }))
    }
}
