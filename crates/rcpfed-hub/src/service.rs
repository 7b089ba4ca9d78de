//! `rcpfed.v1.HubService`: authorization per RPC, then the ingest checks in the order
//! PROTOCOL.md specifies.

use crate::ingest::{Ingest, IngestError, IngestOutcome, VerifiedStatement};
use prost::Message as _;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope, verify_signatures};
use rcpfed_core::members::Role;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_core::statement::{DocumentKind, Statement};
use rcpfed_core::validate::{ValidationContext, validate_statement};
use rcpfed_grpc::records::{RecordParts, parse_statement_name, statement_record};
use rcpfed_grpc::status::{
    internal, invalid_field, next_page, not_found, page_size, parse_page_token,
};
use rcpfed_grpc::{authorize, limits, rejection_status};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_server::HubService;
use rcpfed_store::{HubStore, StatementFilter, StoredFlag, StoredStatement};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Store work off the async runtime (store errors become INTERNAL).
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, rcpfed_store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    rcpfed_grpc::status::blocking(what, f).await
}

/// The hub's gRPC service.
pub struct Hub {
    pub(crate) federation: rcpfed_grpc::shared::SharedFederation,
    pub(crate) store: Arc<dyn HubStore>,
    pub(crate) ingest: Ingest,
    pub(crate) shutdown: CancellationToken,
    /// Cosignatures that make a checkpoint final.
    pub(crate) quorum: u32,
    /// The registry version in force; the mutex serializes publishing.
    pub(crate) registry: Arc<tokio::sync::Mutex<crate::registry::RegistryState>>,
}

fn reject(rejection: Rejection) -> Status {
    rejection_status(&rejection)
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
        federation: &rcpfed_core::members::Federation,
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
        // The key's lifecycle in the registry, judged at the hub's clock (the signer controls
        // issued_at, so it cannot date a statement back before a retirement).
        use rcpfed_core::members::KeyState;
        let refusal = match federation.key_state(&key.key_id, time::OffsetDateTime::now_utc()) {
            KeyState::Active => None,
            KeyState::Retired { at } => Some((
                reasons::KEY_RETIRED,
                format!("was retired at {at}; sign with the member's current key"),
            )),
            KeyState::Revoked { at } => {
                Some((reasons::KEY_REVOKED, format!("was revoked at {at}")))
            }
            KeyState::NotYetValid => Some((reasons::KEY_NOT_YET_VALID, "is not valid yet".into())),
            // verify_signatures found the key in this registry; kept for completeness.
            KeyState::Unknown => Some((reasons::UNKNOWN_KEY_ID, "is not in the registry".into())),
        };
        if let Some((reason, what)) = refusal {
            return Err(Rejection::new(
                RejectClass::Forbidden,
                reason,
                format!("key {} of {member_id} {what}", key.key_id),
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
            leaf_hash: rcpfed_core::merkle::leaf_hash(&rcpfed_core::envelope::pae(
                &signed.payload_type,
                &signed.payload,
            )),
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
        // One registry version decides the whole request.
        let federation = self.federation.get();
        let member_id = authorize(&request, &federation, Role::Publisher)?
            .id
            .clone();
        let envelope = request.into_inner().envelope.ok_or_else(|| {
            invalid_field(
                "envelope",
                reasons::ENVELOPE_MALFORMED,
                "envelope is required",
            )
        })?;
        let verified = self.verify(&federation, &member_id, envelope).map_err(|rejection| {
            tracing::info!(member = %member_id, reason = rejection.reason, message = %rejection.message, "statement refused");
            reject(rejection)
        })?;
        let (node, seq) = (verified.node_id.clone(), verified.seq);
        let outcome = self.ingest.submit(verified).await;
        let (receipt, duplicate, leaf_index, checkpoint) = match outcome {
            Ok(IngestOutcome::Accepted {
                receipt,
                leaf_index,
                checkpoint,
            }) => {
                tracing::debug!(%node, seq, leaf_index, "statement accepted");
                (receipt, false, leaf_index, Some(checkpoint))
            }
            Ok(IngestOutcome::Duplicate {
                receipt,
                leaf_index,
            }) => (receipt, true, leaf_index, None),
            Err(IngestError::Rejected(rejection)) => {
                tracing::info!(%node, seq, reason = rejection.reason, message = %rejection.message, "statement refused");
                return Err(reject(rejection));
            }
            Err(IngestError::Stopped) => {
                return Err(Status::unavailable("the hub is shutting down; retry later"));
            }
            Err(e @ IngestError::Store(_)) => return Err(internal("storing the statement", &e)),
        };
        // The proof is built after the commit, off the sequencer, from committed nodes.
        let store = Arc::clone(&self.store);
        let log = blocking("building the inclusion proof", move || {
            let checkpoint = match checkpoint {
                Some(cp) => Some((*cp).clone()),
                None => store.latest_checkpoint()?,
            };
            match checkpoint {
                Some(cp) => crate::log::log_proof(store.as_ref(), leaf_index, &cp).map(Some),
                None => Ok(None),
            }
        })
        .await?;
        Ok(Response::new(v1::SubmitStatementResponse {
            receipt: v1::Envelope::decode(receipt.as_slice()).ok(),
            duplicate,
            log,
        }))
    }

    async fn get_statement(
        &self,
        request: Request<v1::GetStatementRequest>,
    ) -> Result<Response<v1::GetStatementResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
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
        let mut statement = record(&st);
        let store = Arc::clone(&self.store);
        let leaf_index = st.feed_index - 1;
        statement.log = blocking("building the inclusion proof", move || {
            match store.latest_checkpoint()? {
                Some(cp) if leaf_index < cp.size => {
                    crate::log::log_proof(store.as_ref(), leaf_index, &cp).map(Some)
                }
                _ => Ok(None),
            }
        })
        .await?;
        Ok(Response::new(v1::GetStatementResponse {
            statement: Some(statement),
        }))
    }

    async fn list_statements(
        &self,
        request: Request<v1::ListStatementsRequest>,
    ) -> Result<Response<v1::ListStatementsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
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
        let next_page_token = next_page(&mut rows, limit, |r| r.feed_index);
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
        let member = authorize(&request, &self.federation.get(), Role::Reader)?
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
                // Each entry carries its inclusion proof against the latest checkpoint, so
                // the subscriber can check it against what it has witnessed.
                let proof_store = Arc::clone(&store);
                let indexes: Vec<u64> = rows.iter().map(|r| r.feed_index - 1).collect();
                let proofs = match blocking("building inclusion proofs", move || {
                    let Some(cp) = proof_store.latest_checkpoint()? else {
                        return Ok(Vec::new());
                    };
                    crate::log::log_proofs(proof_store.as_ref(), &indexes, &cp)
                })
                .await
                {
                    Ok(p) => p,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let mut proofs = proofs.into_iter();
                for st in rows {
                    cursor = st.feed_index;
                    let item = v1::SubscribeFeedResponse {
                        feed_index: st.feed_index,
                        envelope: v1::Envelope::decode(st.envelope.as_slice()).ok(),
                        receipt: v1::Envelope::decode(st.receipt.as_slice()).ok(),
                        log: proofs.next(),
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
        authorize(&request, &self.federation.get(), Role::Admin)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let node = non_empty(req.node_id);
        let store = Arc::clone(&self.store);
        let mut rows = blocking("listing equivocations", move || {
            store.list_equivocations(node.as_deref(), after, limit + 1)
        })
        .await?;
        let next_page_token = next_page(&mut rows, limit, |r| r.id);
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
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let federation = self.federation.get();
        let members = federation
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
            federation_id: self.federation.get().federation_id.clone(),
            members,
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::GetCheckpointResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let final_only = request.into_inner().final_only;
        let store = Arc::clone(&self.store);
        let quorum = self.quorum;
        let found = blocking("reading the checkpoint", move || {
            let cp = if final_only {
                store.latest_final_checkpoint(quorum)?
            } else {
                store.latest_checkpoint()?
            };
            match cp {
                Some(cp) => {
                    let cosignatures = store.cosignatures(cp.size)?;
                    Ok(Some((cp, cosignatures)))
                }
                None => Ok(None),
            }
        })
        .await?;
        let (cp, cosignatures) = found.ok_or_else(|| {
            not_found(if final_only {
                "no checkpoint has reached the witness quorum yet".to_string()
            } else {
                "the log is empty: no checkpoint has been issued yet".to_string()
            })
        })?;
        Ok(Response::new(v1::GetCheckpointResponse {
            checkpoint: crate::log::note_with_cosignatures(&cp.note, &cosignatures),
            tree_size: cp.size,
            root_hash: cp.root.to_vec(),
            cosignature_count: cp.cosignature_count,
            quorum: self.quorum,
            r#final: cp.cosignature_count >= self.quorum,
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::GetInclusionProofResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let store = Arc::clone(&self.store);
        let leaf = req.leaf.ok_or_else(|| {
            invalid_field(
                "leaf",
                reasons::FIELD_REQUIRED,
                "give a leaf_index or a statement_digest",
            )
        })?;
        let digest = match &leaf {
            v1::get_inclusion_proof_request::Leaf::StatementDigest(d) => {
                Some(rcpfed_core::Digest::from_slice(d).ok_or_else(|| {
                    invalid_field(
                        "statement_digest",
                        reasons::INVALID_ARGUMENT,
                        "statement_digest must be 32 bytes",
                    )
                })?)
            }
            v1::get_inclusion_proof_request::Leaf::LeafIndex(_) => None,
        };
        let tree_size = req.tree_size;
        let answer = blocking("building an inclusion proof", move || {
            let statement = match (&leaf, digest) {
                (_, Some(d)) => store.statement_by_digest(&d)?,
                (v1::get_inclusion_proof_request::Leaf::LeafIndex(i), None) => {
                    store.statement_by_feed_index(i + 1)?
                }
                _ => None,
            };
            let Some(statement) = statement else {
                return Ok(Err("no such log entry".to_string()));
            };
            let checkpoint = if tree_size == 0 {
                store.latest_checkpoint()?
            } else {
                store.checkpoint_at(tree_size)?
            };
            let Some(checkpoint) = checkpoint else {
                return Ok(Err(format!(
                    "the hub has no checkpoint for tree size {tree_size}"
                )));
            };
            let leaf_index = statement.feed_index - 1;
            if leaf_index >= checkpoint.size {
                return Ok(Err(format!(
                    "leaf {leaf_index} is not in the tree of size {}",
                    checkpoint.size
                )));
            }
            let proof = crate::log::log_proof(store.as_ref(), leaf_index, &checkpoint)?;
            let leaf_hash = crate::log::leaf_of_envelope(&statement.envelope)?;
            Ok(Ok((proof, leaf_hash)))
        })
        .await?;
        let (proof, leaf_hash) = answer.map_err(not_found)?;
        Ok(Response::new(v1::GetInclusionProofResponse {
            proof: Some(proof),
            leaf_hash: leaf_hash.to_vec(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::GetConsistencyProofResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let store = Arc::clone(&self.store);
        let answer = blocking("building a consistency proof", move || {
            let checkpoint = if req.new_size == 0 {
                store.latest_checkpoint()?
            } else {
                store.checkpoint_at(req.new_size)?
            };
            let Some(checkpoint) = checkpoint else {
                return Ok(Err(not_found(format!(
                    "the hub has no checkpoint for tree size {}",
                    req.new_size
                ))));
            };
            if req.old_size == 0 || req.old_size > checkpoint.size {
                return Ok(Err(invalid_field(
                    "old_size",
                    reasons::INVALID_ARGUMENT,
                    format!(
                        "old_size must be between 1 and the new size {}, got {}",
                        checkpoint.size, req.old_size
                    ),
                )));
            }
            let proof = match crate::log::consistency(store.as_ref(), req.old_size, checkpoint.size)
            {
                Ok(p) => p,
                Err(rcpfed_core::merkle::ProofError::OutOfRange(m)) => {
                    return Ok(Err(invalid_field("old_size", reasons::INVALID_ARGUMENT, m)));
                }
                Err(rcpfed_core::merkle::ProofError::Source(e)) => return Err(e),
            };
            let cosignatures = store.cosignatures(checkpoint.size)?;
            Ok(Ok(v1::GetConsistencyProofResponse {
                old_size: req.old_size,
                new_size: checkpoint.size,
                proof: proof.iter().map(|h| h.to_vec()).collect(),
                checkpoint: crate::log::note_with_cosignatures(&checkpoint.note, &cosignatures),
            }))
        })
        .await?;
        answer.map(Response::new)
    }

    async fn list_log_entries(
        &self,
        request: Request<v1::ListLogEntriesRequest>,
    ) -> Result<Response<v1::ListLogEntriesResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let store = Arc::clone(&self.store);
        let start = req.start_index;
        let rows = blocking("listing log entries", move || {
            // Leaf i is feed entry i + 1, so entries from `start` follow feed index `start`.
            store.list_statements(&StatementFilter::default(), start, limit)
        })
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for st in &rows {
            let leaf_hash = crate::log::leaf_of_envelope(&st.envelope)
                .map_err(|e| internal("hashing a log entry", &e))?;
            entries.push(v1::LogEntry {
                leaf_index: st.feed_index - 1,
                leaf_hash: leaf_hash.to_vec(),
                envelope: v1::Envelope::decode(st.envelope.as_slice()).ok(),
            });
        }
        let next_start_index = rows.last().map(|r| r.feed_index).unwrap_or(start);
        Ok(Response::new(v1::ListLogEntriesResponse {
            entries,
            next_start_index,
        }))
    }

    async fn submit_cosignature(
        &self,
        request: Request<v1::SubmitCosignatureRequest>,
    ) -> Result<Response<v1::SubmitCosignatureResponse>, Status> {
        let witness = authorize(&request, &self.federation.get(), Role::Witness)?
            .id
            .clone();
        let req = request.into_inner();
        let signature =
            rcpfed_core::note::parse_signature_line(&req.cosignature).map_err(|_| {
                invalid_field(
                    "cosignature",
                    reasons::BAD_COSIGNATURE,
                    "cosignature is not a signed-note signature line",
                )
            })?;
        let verifiers: Vec<_> = rcpfed_core::logkeys::witness_verifiers(&self.federation.get())
            .into_iter()
            .filter(|(id, _)| *id == witness)
            .map(|(_, v)| v)
            .collect();
        let store = Arc::clone(&self.store);
        let size = req.tree_size;
        let stored = blocking("reading the checkpoint", move || store.checkpoint_at(size)).await?;
        let stored = stored
            .ok_or_else(|| not_found(format!("the hub issued no checkpoint of size {size}")))?;
        let checkpoint =
            crate::log::checkpoint_of(&stored).map_err(|e| internal("reading a checkpoint", &e))?;
        let mut timestamp = None;
        let mut last_error = None;
        for v in &verifiers {
            match rcpfed_core::checkpoint::verify_cosignature(&checkpoint, &signature, v) {
                Ok(ts) => {
                    timestamp = Some(ts);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(timestamp) = timestamp else {
            return Err(reject(last_error.unwrap_or_else(|| {
                Rejection::new(
                    RejectClass::Forbidden,
                    reasons::BAD_COSIGNATURE,
                    format!("{witness} has no witness key in the member file"),
                )
            })));
        };
        let store = Arc::clone(&self.store);
        let line = signature.to_line();
        let cosignature = rcpfed_store::Cosignature {
            size,
            witness_id: witness.clone(),
            line,
            timestamp,
        };
        let count = blocking("storing a cosignature", move || {
            store.add_cosignature(&cosignature)
        })
        .await?;
        tracing::info!(%witness, size, count, quorum = self.quorum, "checkpoint cosigned");
        Ok(Response::new(v1::SubmitCosignatureResponse {
            cosignature_count: count,
            r#final: count >= self.quorum,
        }))
    }

    async fn publish_registry(
        &self,
        request: Request<v1::PublishRegistryRequest>,
    ) -> Result<Response<v1::PublishRegistryResponse>, Status> {
        let admin = authorize(&request, &self.federation.get(), Role::Admin)?
            .id
            .clone();
        let envelope = request.into_inner().registry.ok_or_else(|| {
            invalid_field("registry", reasons::FIELD_REQUIRED, "registry is required")
        })?;
        let envelope = SignedEnvelope::from_proto(envelope);
        let mut current = self.registry.lock().await;
        if envelope.digest() == current.digest {
            // A retry of the version in force: answer as the first time.
            let version = current.registry.version;
            let store = Arc::clone(&self.store);
            let hub_id = current.registry.hub_id.clone();
            let log = blocking("building the inclusion proof", move || {
                let Some(st) = store.statement_by_node_seq(&hub_id, version)? else {
                    return Ok(None);
                };
                match store.latest_checkpoint()? {
                    Some(cp) => {
                        crate::log::log_proof(store.as_ref(), st.feed_index - 1, &cp).map(Some)
                    }
                    None => Ok(None),
                }
            })
            .await?;
            return Ok(Response::new(v1::PublishRegistryResponse {
                version,
                log,
                newly_flagged: 0,
            }));
        }
        let next = rcpfed_core::registry::verify_next(
            &current.registry,
            &current.digest,
            &envelope,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|r| {
            tracing::warn!(%admin, reason = r.reason, message = %r.message, "registry version refused");
            reject(r)
        })?;
        let federation = next.to_federation().map_err(reject)?;
        let state = crate::registry::RegistryState {
            registry: next,
            digest: envelope.digest(),
            envelope,
        };
        let statement = crate::registry::as_statement(&state, Some(current.digest));
        let (leaf_index, checkpoint) = match self.ingest.submit(statement).await {
            Ok(IngestOutcome::Accepted {
                leaf_index,
                checkpoint,
                ..
            }) => (leaf_index, checkpoint),
            Ok(IngestOutcome::Duplicate { .. }) => {
                return Err(internal(
                    "logging the registry version",
                    &"it was already logged",
                ));
            }
            Err(IngestError::Rejected(r)) => return Err(reject(r)),
            Err(IngestError::Stopped) => {
                return Err(Status::unavailable("the hub is shutting down; retry later"));
            }
            Err(e @ IngestError::Store(_)) => {
                return Err(internal("logging the registry version", &e));
            }
        };
        // Logged and durable: put it in force, then flag what its revocations reach.
        self.federation.set(federation);
        let previous = std::mem::replace(&mut *current, state);
        let version = current.registry.version;
        tracing::info!(%admin, version, "registry version in force");
        let store = Arc::clone(&self.store);
        let next_registry = current.registry.clone();
        let (log, newly_flagged) = blocking("flagging statements of revoked keys", move || {
            let flagged =
                crate::registry::flag_revoked(store.as_ref(), &previous.registry, &next_registry)?;
            let log = crate::log::log_proof(store.as_ref(), leaf_index, &checkpoint)?;
            Ok((Some(log), flagged))
        })
        .await?;
        if newly_flagged > 0 {
            tracing::warn!(
                version,
                newly_flagged,
                "statements flagged: signed with keys revoked before their acceptance"
            );
        }
        Ok(Response::new(v1::PublishRegistryResponse {
            version,
            log,
            newly_flagged,
        }))
    }

    async fn get_registry(
        &self,
        request: Request<v1::GetRegistryRequest>,
    ) -> Result<Response<v1::GetRegistryResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let version = request.into_inner().version;
        let current = self.registry.lock().await.clone();
        let envelope = if version == 0 || version == current.registry.version {
            current.envelope
        } else {
            let store = Arc::clone(&self.store);
            let hub_id = current.registry.hub_id.clone();
            let row = blocking("reading a registry version", move || {
                store.statement_by_node_seq(&hub_id, version)
            })
            .await?
            .filter(|r| r.kind == crate::registry::REGISTRY_KIND)
            .ok_or_else(|| not_found(format!("registry version {version} does not exist")))?;
            SignedEnvelope::decode(&row.envelope)
                .map_err(|r| internal("reading a registry version", &r))?
        };
        let document = rcpfed_core::registry::decode_and_check(&envelope.payload)
            .map(|r| r.to_proto())
            .ok();
        Ok(Response::new(v1::GetRegistryResponse {
            registry: Some(envelope.to_proto()),
            document,
        }))
    }

    async fn list_registry_versions(
        &self,
        request: Request<v1::ListRegistryVersionsRequest>,
    ) -> Result<Response<v1::ListRegistryVersionsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let hub_id = self.registry.lock().await.registry.hub_id.clone();
        let store = Arc::clone(&self.store);
        let versions = blocking("listing registry versions", move || {
            crate::registry::stored_versions(store.as_ref(), &hub_id)
        })
        .await?;
        let versions = versions
            .into_iter()
            .skip(usize::try_from(req.after_version).unwrap_or(usize::MAX))
            .take(limit)
            .map(|e| e.to_proto())
            .collect();
        Ok(Response::new(v1::ListRegistryVersionsResponse { versions }))
    }

    // Large snapshots: implemented in the next commits of issue 5 (chunked transfer).
    async fn submit_snapshot(
        &self,
        _request: Request<tonic::Streaming<v1::SubmitSnapshotRequest>>,
    ) -> Result<Response<v1::SubmitSnapshotResponse>, Status> {
        Err(Status::unimplemented(
            "large snapshots are not accepted yet",
        ))
    }

    type GetSnapshotChunksStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<v1::GetSnapshotChunksResponse, Status>> + Send>,
    >;

    async fn get_snapshot_chunks(
        &self,
        _request: Request<v1::GetSnapshotChunksRequest>,
    ) -> Result<Response<Self::GetSnapshotChunksStream>, Status> {
        Err(Status::unimplemented("large snapshots are not served yet"))
    }

    async fn list_flagged_statements(
        &self,
        request: Request<v1::ListFlaggedStatementsRequest>,
    ) -> Result<Response<v1::ListFlaggedStatementsResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = parse_page_token(&req.page_token)?;
        let store = Arc::clone(&self.store);
        let mut rows = blocking("listing flagged statements", move || {
            store.list_flags(after, limit + 1)
        })
        .await?;
        let next_page_token = next_page(&mut rows, limit, |r| r.id);
        let statements = rows
            .into_iter()
            .map(|StoredFlag { flag: f, .. }| v1::FlaggedStatement {
                name: rcpfed_grpc::records::statement_name(&f.node_id, f.seq),
                reason: f.reason,
                key_id: f.key_id,
                registry_version: f.registry_version,
                flagged_at: Some(rcpfed_grpc::timestamp_from_ms(f.flagged_at_ms)),
            })
            .collect();
        Ok(Response::new(v1::ListFlaggedStatementsResponse {
            statements,
            next_page_token,
        }))
    }
}
