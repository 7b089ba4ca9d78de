//! `rcpfed.v1.HubService`: authorization per RPC, then the ingest checks in the order
//! PROTOCOL.md specifies.

use crate::ingest::{Ingest, IngestError, IngestOutcome, VerifiedStatement};
use prost::Message as _;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope, verify_signatures};
use rcpfed_core::members::{Federation, Role};
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_core::statement::{DocumentKind, Statement};
use rcpfed_core::validate::{ValidationContext, validate_statement};
use rcpfed_grpc::records::{RecordParts, parse_statement_name, statement_record};
use rcpfed_grpc::status::{internal, invalid_field, not_found, page_size, parse_page_token};
use rcpfed_grpc::{authorize, limits, rejection_status};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_server::HubService;
use rcpfed_store::{HubStore, StatementFilter, StoredStatement};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The hub's gRPC service.
pub struct Hub {
    pub(crate) federation: Arc<Federation>,
    pub(crate) store: Arc<dyn HubStore>,
    pub(crate) ingest: Ingest,
    pub(crate) shutdown: CancellationToken,
}

fn reject(rejection: Rejection) -> Status {
    rejection_status(&rejection)
}

/// Runs a store read off the async runtime.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, rcpfed_store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(what, &e)),
        Err(e) => Err(internal(what, &e)),
    }
}

fn record(st: &StoredStatement) -> v1::StatementRecord {
    statement_record(RecordParts {
        node_id: &st.node_id,
        seq: st.seq,
        digest: st.digest.as_bytes(),
        feed_index: st.feed_index,
        accepted_at_ms: st.accepted_at_ms,
        envelope: &st.envelope,
        receipt: &st.receipt,
    })
}

fn kind_name(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::PolicySummary => "policy_summary",
        DocumentKind::IndicatorSnapshot => "indicator_snapshot",
    }
}

fn kind_filter(kind: i32) -> Result<Option<String>, Status> {
    match v1::DocumentKind::try_from(kind) {
        Ok(v1::DocumentKind::Unspecified) => Ok(None),
        Ok(v1::DocumentKind::PolicySummary) => Ok(Some("policy_summary".into())),
        Ok(v1::DocumentKind::IndicatorSnapshot) => Ok(Some("indicator_snapshot".into())),
        Err(_) => Err(invalid_field(
            "kind",
            reasons::INVALID_ARGUMENT,
            format!("kind {kind} is not a DocumentKind"),
        )),
    }
}

fn non_empty(text: String) -> Option<String> {
    if text.is_empty() { None } else { Some(text) }
}

impl Hub {
    /// Everything before the chain rules: envelope shape, payload type, signature, owner,
    /// decoding and validation. Pure CPU; runs concurrently across requests.
    fn verify(
        &self,
        member_id: &str,
        envelope: v1::Envelope,
    ) -> Result<VerifiedStatement, Rejection> {
        let envelope_bytes = envelope.encode_to_vec();
        if envelope.payload.len() > limits::MAX_PAYLOAD_BYTES {
            return Err(Rejection::new(
                RejectClass::TooLarge,
                reasons::PAYLOAD_TOO_LARGE,
                format!(
                    "payload is {} bytes; the hub accepts at most {} bytes per statement",
                    envelope.payload.len(),
                    limits::MAX_PAYLOAD_BYTES
                ),
            ));
        }
        if envelope.payload_type != STATEMENT_PAYLOAD_TYPE {
            return Err(Rejection::new(
                RejectClass::Invalid,
                reasons::UNKNOWN_PAYLOAD_TYPE,
                format!(
                    "payload type {:?} is not one the hub accepts; use {STATEMENT_PAYLOAD_TYPE:?}",
                    envelope.payload_type
                ),
            ));
        }
        let signed = SignedEnvelope::from_proto(envelope);
        let federation = &self.federation;
        let key = verify_signatures(&signed, |key_id| {
            federation.key_owner(key_id).map(|(_, k)| k)
        })?;
        let owner = federation
            .key_owner(&key.key_id)
            .map(|(m, _)| m.id.as_str())
            .unwrap_or_default();
        if owner != member_id {
            return Err(Rejection::new(
                RejectClass::Forbidden,
                reasons::KEY_NOT_OWNED,
                format!(
                    "the envelope is signed with key {} of {owner}, not with a key of {member_id}",
                    key.key_id
                ),
            )
            .with_meta("key_id", key.key_id.clone()));
        }
        let statement = Statement::decode(&signed.payload)?;
        let member = federation.member(member_id).ok_or_else(|| {
            Rejection::new(
                RejectClass::Forbidden,
                reasons::PEER_NOT_A_MEMBER,
                "caller is not a member",
            )
        })?;
        validate_statement(
            &statement,
            &ValidationContext {
                federation_id: &federation.federation_id,
                member,
                now: time::OffsetDateTime::now_utc(),
            },
        )?;
        Ok(VerifiedStatement {
            node_id: statement.header.node_id.clone(),
            seq: statement.header.seq,
            prev_digest: statement.header.prev_digest,
            digest: signed.digest(),
            payload_type: signed.payload_type.clone(),
            kind: kind_name(statement.header.kind),
            document: statement.header.document.clone(),
            revision: statement.header.revision,
            envelope: envelope_bytes,
        })
    }
}

type FeedStream = Pin<Box<dyn Stream<Item = Result<v1::SubscribeFeedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HubService for Hub {
    async fn submit_statement(
        &self,
        request: Request<v1::SubmitStatementRequest>,
    ) -> Result<Response<v1::SubmitStatementResponse>, Status> {
        let member_id = authorize(&request, &self.federation, Role::Publisher)?
            .id
            .clone();
        let envelope = request.into_inner().envelope.ok_or_else(|| {
            invalid_field(
                "envelope",
                reasons::ENVELOPE_MALFORMED,
                "envelope is required",
            )
        })?;
        let verified = self.verify(&member_id, envelope).map_err(|rejection| {
            tracing::info!(member = %member_id, reason = rejection.reason, message = %rejection.message, "statement refused");
            reject(rejection)
        })?;
        let (node, seq) = (verified.node_id.clone(), verified.seq);
        match self.ingest.submit(verified).await {
            Ok(IngestOutcome::Accepted { receipt }) => {
                tracing::debug!(%node, seq, "statement accepted");
                Ok(Response::new(v1::SubmitStatementResponse {
                    receipt: v1::Envelope::decode(receipt.as_slice()).ok(),
                    duplicate: false,
                }))
            }
            Ok(IngestOutcome::Duplicate { receipt }) => {
                Ok(Response::new(v1::SubmitStatementResponse {
                    receipt: v1::Envelope::decode(receipt.as_slice()).ok(),
                    duplicate: true,
                }))
            }
            Err(IngestError::Rejected(rejection)) => {
                tracing::info!(%node, seq, reason = rejection.reason, message = %rejection.message, "statement refused");
                Err(reject(rejection))
            }
            Err(IngestError::Stopped) => {
                Err(Status::unavailable("the hub is shutting down; retry later"))
            }
            Err(e @ IngestError::Store(_)) => Err(internal("storing the statement", &e)),
        }
    }

    async fn get_statement(
        &self,
        request: Request<v1::GetStatementRequest>,
    ) -> Result<Response<v1::GetStatementResponse>, Status> {
        authorize(&request, &self.federation, Role::Reader)?;
        let name = request.into_inner().name;
        let (node, seq) = parse_statement_name(&name).ok_or_else(|| {
            invalid_field(
                "name",
                reasons::INVALID_ARGUMENT,
                format!("{name:?} is not a statement name; expected nodes/{{node_id}}/statements/{{seq}}"),
            )
        })?;
        let store = Arc::clone(&self.store);
        let found = blocking("reading a statement", move || {
            store.statement_by_node_seq(&node, seq)
        })
        .await?;
        let st = found.ok_or_else(|| not_found(format!("statement {name} does not exist")))?;
        Ok(Response::new(v1::GetStatementResponse {
            statement: Some(record(&st)),
        }))
    }

    async fn list_statements(
        &self,
        request: Request<v1::ListStatementsRequest>,
    ) -> Result<Response<v1::ListStatementsResponse>, Status> {
        authorize(&request, &self.federation, Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let filter = StatementFilter {
            node_id: non_empty(req.node_id),
            kind: kind_filter(req.kind)?,
            document: non_empty(req.document),
        };
        let store = Arc::clone(&self.store);
        // One extra row tells whether there is a next page.
        let mut rows = blocking("listing statements", move || {
            store.list_statements(&filter, after, limit + 1)
        })
        .await?;
        let next_page_token = if rows.len() > limit {
            rows.truncate(limit);
            rows.last()
                .map(|r| r.feed_index.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListStatementsResponse {
            statements: rows.iter().map(record).collect(),
            next_page_token,
        }))
    }

    type SubscribeFeedStream = FeedStream;

    async fn subscribe_feed(
        &self,
        request: Request<v1::SubscribeFeedRequest>,
    ) -> Result<Response<Self::SubscribeFeedStream>, Status> {
        let member = authorize(&request, &self.federation, Role::Reader)?
            .id
            .clone();
        let mut cursor = request.into_inner().after_index;
        let store = Arc::clone(&self.store);
        let mut head = self.ingest.feed_head();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tracing::info!(%member, after = cursor, "feed subscriber connected");
        tokio::spawn(async move {
            loop {
                let batch_store = Arc::clone(&store);
                let after = cursor;
                let rows = match blocking("reading the feed", move || {
                    batch_store.list_statements(&StatementFilter::default(), after, 256)
                })
                .await
                {
                    Ok(rows) => rows,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if rows.is_empty() {
                    // Caught up: wait for the next commit, or stop on shutdown.
                    tokio::select! {
                        changed = head.changed() => if changed.is_err() { return },
                        () = shutdown.cancelled() => return,
                        () = tx.closed() => return,
                    }
                    continue;
                }
                for st in rows {
                    cursor = st.feed_index;
                    let item = v1::SubscribeFeedResponse {
                        feed_index: st.feed_index,
                        envelope: v1::Envelope::decode(st.envelope.as_slice()).ok(),
                        receipt: v1::Envelope::decode(st.receipt.as_slice()).ok(),
                    };
                    tokio::select! {
                        sent = tx.send(Ok(item)) => if sent.is_err() { return },
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_equivocations(
        &self,
        request: Request<v1::ListEquivocationsRequest>,
    ) -> Result<Response<v1::ListEquivocationsResponse>, Status> {
        authorize(&request, &self.federation, Role::Admin)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let node = non_empty(req.node_id);
        let store = Arc::clone(&self.store);
        let mut rows = blocking("listing equivocations", move || {
            store.list_equivocations(node.as_deref(), after, limit + 1)
        })
        .await?;
        let next_page_token = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        let equivocations = rows
            .into_iter()
            .map(|e| v1::Equivocation {
                node_id: e.node_id,
                seq: e.seq,
                accepted_digest: e.accepted_digest.0.to_vec(),
                accepted_envelope: v1::Envelope::decode(e.accepted_envelope.as_slice()).ok(),
                conflicting_digest: e.conflicting_digest.0.to_vec(),
                conflicting_envelope: v1::Envelope::decode(e.conflicting_envelope.as_slice()).ok(),
                detected_at: Some(rcpfed_grpc::timestamp_from_ms(e.detected_at_ms)),
            })
            .collect();
        Ok(Response::new(v1::ListEquivocationsResponse {
            equivocations,
            next_page_token,
        }))
    }

    async fn list_members(
        &self,
        request: Request<v1::ListMembersRequest>,
    ) -> Result<Response<v1::ListMembersResponse>, Status> {
        authorize(&request, &self.federation, Role::Reader)?;
        let members = self
            .federation
            .members()
            .map(|m| v1::Member {
                id: m.id.clone(),
                name: m.name.clone(),
                kind: m.kind.clone(),
                roles: m.roles.iter().map(|r| r.as_str().to_string()).collect(),
                spiffe_id: m.spiffe_id.clone(),
                member_states: m
                    .states
                    .iter()
                    .map(|s| v1::MemberState {
                        iso3: s.iso3.clone(),
                        since: s.since.map(|d| d.to_string()).unwrap_or_default(),
                        until: s.until.map(|d| d.to_string()).unwrap_or_default(),
                    })
                    .collect(),
                keys: m
                    .keys
                    .iter()
                    .map(|k| v1::VerifyKey {
                        key_id: k.key_id.clone(),
                        public_key: k.to_bytes().to_vec(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(v1::ListMembersResponse {
            federation_id: self.federation.federation_id.clone(),
            members,
        }))
    }
}
