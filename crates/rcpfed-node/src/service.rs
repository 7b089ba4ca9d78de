//! `rcpfed.v1.NodeService`.

use crate::NodeState;
use crate::publish::{PublishError, Publisher};
use rcpfed_core::members::Role;
use rcpfed_core::rejection::reasons;
use rcpfed_core::statement::{Body, IndicatorSnapshot, PolicySummary};
use rcpfed_grpc::records::{RecordParts, statement_record};
use rcpfed_grpc::status::{internal, invalid_field, next_page, page_size, parse_page_token};
use rcpfed_grpc::{authorize, rejection_status};
use rcpfed_proto::v1;
use rcpfed_proto::v1::node_service_server::NodeService;
use rcpfed_store::{DeliveryState, NodeStore};
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
    pub(crate) store: Arc<dyn NodeStore>,
    pub(crate) publisher: Publisher,
    pub(crate) state: Arc<NodeState>,
}

#[tonic::async_trait]
impl NodeService for Node {
    async fn get_node_status(
        &self,
        request: Request<v1::GetNodeStatusRequest>,
    ) -> Result<Response<v1::GetNodeStatusResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let store = Arc::clone(&self.store);
        let (head, counts, mirror_count, cursor) = blocking("reading node status", move || {
            Ok((
                store.head()?,
                store.outbox_counts()?,
                store.mirror_count()?,
                store.mirror_cursor()?,
            ))
        })
        .await?;
        Ok(Response::new(v1::GetNodeStatusResponse {
            node_id: self.node_id.clone(),
            federation_id: self.federation.get().federation_id.clone(),
            head_seq: head.map(|h| h.0).unwrap_or(0),
            head_digest: head.map(|h| h.1.0.to_vec()).unwrap_or_default(),
            outbox_pending: counts.pending,
            outbox_delivered: counts.delivered,
            outbox_rejected: counts.rejected,
            mirror_count,
            feed_cursor: cursor,
            feed_connected: self
                .state
                .feed_connected
                .load(std::sync::atomic::Ordering::Relaxed),
            last_error: self.state.last_error(),
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
        let request_id = if req.request_id.is_empty() {
            None
        } else {
            Some(req.request_id)
        };
        match self
            .publisher
            .publish(req.document, body, req.validate_only, request_id)
            .await
        {
            Ok(p) => Ok(Response::new(v1::PublishDocumentResponse {
                seq: p.seq,
                digest: p.digest.map(|d| d.0.to_vec()).unwrap_or_default(),
                revision: p.revision,
                warnings: Vec::new(),
                document: p.document,
            })),
            Err(PublishError::Rejected(r)) => Err(rejection_status(&r)),
            Err(e @ PublishError::Store(_)) => {
                Err(internal("signing and queueing the statement", &e))
            }
        }
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
            .map(|o| v1::OutboxEntry {
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
                receipt: o
                    .receipt
                    .and_then(|r| prost::Message::decode(r.as_slice()).ok()),
            })
            .collect();
        Ok(Response::new(v1::ListOutboxResponse {
            entries,
            next_page_token,
        }))
    }

    // Large snapshots: implemented in the next commits of issue 5 (chunked transfer).
    async fn publish_snapshot(
        &self,
        _request: Request<tonic::Streaming<v1::PublishSnapshotRequest>>,
    ) -> Result<Response<v1::PublishSnapshotResponse>, Status> {
        Err(Status::unimplemented(
            "large snapshots are not accepted yet",
        ))
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
        let mut rows = blocking("listing the mirror", move || {
            store.mirror_list(node.as_deref(), after, limit + 1)
        })
        .await?;
        let next_page_token = next_page(&mut rows, limit, |r| r.feed_index);
        let statements = rows
            .iter()
            .map(|m| {
                statement_record(RecordParts {
                    node_id: &m.node_id,
                    seq: m.seq,
                    digest: m.digest.as_bytes(),
                    feed_index: m.feed_index,
                    accepted_at_ms: m.accepted_at_ms,
                    envelope: &m.envelope,
                    receipt: &m.receipt,
                })
            })
            .collect();
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
        self.witness
            .status()
            .await
            .map(Response::new)
            .map_err(|r| rejection_status(&r))
    }
}
