//! `rcpfed.v1.HubService`: authorization per RPC, then the ingest checks in the order
//! docs/spec/ingest.md §1 specifies.
//!
//! Indicator snapshots are checked against the catalogue in force after the statement rules
//! (errors refuse, warnings are logged and counted); their revision actions are checked by
//! the sequencer. A large snapshot arrives through `SubmitSnapshot`: the envelope first, then
//! exactly the chunks its signed manifest lists, each checked (length and SHA-256) before it
//! is decoded. The chunks travel with the statement to the sequencer and are stored in the
//! transaction that stores it, only if it is accepted. At most
//! [`limits::MAX_CONCURRENT_SNAPSHOTS`] snapshots are received and checked at once; a call
//! over the limit waits for a turn before its chunks are read.

use crate::HubBackend;
use crate::catalogue::SharedCatalogue;
use crate::ingest::{Ingest, IngestError, IngestOutcome, VerifiedStatement};
use crate::metrics::HubMetrics;
use crate::quotas::{self, CpuPool, PerMember, Quotas, quota_status};
use crate::staged::{ReceiveContext, ReceiveError, Received, check_and_stage};
use rcpfed_core::Digest;
use rcpfed_core::admission::{AdmissionContext, admit_envelope, admit_inline, chunks_required};
use rcpfed_core::catalogue::SignedCatalogue;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::members::Federation;
use rcpfed_core::rejection::{RejectClass, Rejection, Violation, reasons};
use rcpfed_core::statement::{Body, ChunkManifest, DocumentKind, Statement};
use rcpfed_core::validate::Findings;
use rcpfed_grpc::records::{RecordParts, statement_record};
use rcpfed_grpc::status::{internal, invalid_field};
use rcpfed_grpc::{limits, rejection_status};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_server::HubService;
use rcpfed_proto::v1::submit_snapshot_request::Part;
use rcpfed_store::StoredStatement;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

mod feed;
mod feed_pages;
mod log;
mod registry;
mod snapshots;
mod statements;

/// `ErrorInfo.reason` (FAILED_PRECONDITION) of `GetSnapshotChunks` for a statement that has
/// no chunks: a policy summary, an inline snapshot or a hub document.
pub const NOT_A_CHUNKED_SNAPSHOT: &str = "NOT_A_CHUNKED_SNAPSHOT";

pub(crate) use feed_pages::FeedPages;
pub use rcpfed_grpc::BACKLOG_END_HEADER;

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
    pub(crate) store: Arc<dyn HubBackend>,
    pub(crate) ingest: Ingest,
    /// Stores verified cosignatures in groups, one transaction each.
    pub(crate) cosignatures: crate::cosign::CosignatureWriter,
    pub(crate) shutdown: CancellationToken,
    /// Cosignatures that make a checkpoint final.
    pub(crate) quorum: u32,
    /// The registry version in force; the mutex serializes publishing.
    pub(crate) registry: Arc<tokio::sync::Mutex<crate::registry::RegistryState>>,
    /// The indicator catalogue in force: snapshots are checked against it.
    pub(crate) catalogue: SharedCatalogue,
    /// Counts catalogue warnings.
    pub(crate) metrics: HubMetrics,
    /// Turns for `SubmitSnapshot` ([`limits::MAX_CONCURRENT_SNAPSHOTS`]): each call holds one
    /// from before its first chunk is read until its statement is committed or refused.
    pub(crate) snapshot_permits: Arc<tokio::sync::Semaphore>,
    /// This service itself, so CPU work that needs `&self` can move onto the pool.
    pub(crate) me: std::sync::Weak<Hub>,
    /// Threads for signatures, decoding and validation, off the async workers.
    pub(crate) pool: CpuPool,
    /// Per-member limits.
    pub(crate) quotas: Quotas,
    /// Statements each member has being checked or sequenced.
    pub(crate) submissions: PerMember,
    /// Feed streams each member holds.
    pub(crate) subscriptions: PerMember,
    /// `GetSnapshotChunks` streams each member holds.
    pub(crate) chunk_streams: PerMember,
    /// Feed pages built once for every subscriber at the same cursor.
    pub(crate) feed_pages: Arc<FeedPages>,
    /// Large snapshots each member is sending (at most one).
    pub(crate) snapshot_slots: PerMember,
    /// None while this process leads; on a standby, the endpoint the leader advertises ("" when
    /// unknown), named in the NOT_LEADER answer to every write.
    pub(crate) standby: Option<tokio::sync::watch::Receiver<String>>,
    /// Where large snapshots are staged while their chunks arrive.
    pub(crate) staging_dir: std::path::PathBuf,
}

/// What a submission gets back: the receipt, whether it was a resubmission, the log proof.
struct Answer {
    receipt: Vec<u8>,
    duplicate: bool,
    log: Option<v1::LogProof>,
}

/// A signed receipt as the hub stored or just signed it, for an answer; one that does not
/// decode is damage to the store (INTERNAL), never an answer without its receipt.
fn receipt_envelope(receipt: &[u8]) -> Result<v1::Envelope, Status> {
    stored_envelope("a stored receipt", receipt)
}

/// An envelope (`what`) as the hub stored it; one that does not decode is damage to the store:
/// INTERNAL, never an answer with a hole.
fn stored_envelope(what: &str, bytes: &[u8]) -> Result<v1::Envelope, Status> {
    <v1::Envelope as prost::Message>::decode(bytes).map_err(|e| internal(what, &e))
}

/// Catalogue warnings of a snapshot that passed the catalogue check.
struct Warnings {
    total: usize,
    first: Option<Violation>,
}

/// A CHUNK_MISMATCH refusal naming message `index` of the chunks.
fn chunk_mismatch(index: usize, description: String) -> Status {
    rejection_status(&chunk_violation(
        index,
        Rejection::invalid(reasons::CHUNK_MISMATCH, description),
    ))
}

/// Adds the chunk as the field of a chunk refusal that names none.
fn chunk_violation(index: usize, mut rejection: Rejection) -> Rejection {
    if rejection.violations.is_empty() {
        rejection.violations.push(Violation::new(
            format!("chunk[{index}]"),
            rejection.reason,
            rejection.message.clone(),
        ));
    }
    rejection.with_meta("chunk_index", index.to_string())
}

/// The manifest of a stored chunked snapshot; FAILED_PRECONDITION for any other statement.
fn stored_manifest(st: &StoredStatement) -> Result<ChunkManifest, Status> {
    let not_chunked = || {
        rejection_status(
            &Rejection::new(
                RejectClass::Precondition,
                NOT_A_CHUNKED_SNAPSHOT,
                format!(
                    "statement {} is not a chunked indicator snapshot; read it with GetStatement",
                    rcpfed_grpc::records::statement_name(&st.node_id, st.seq)
                ),
            )
            .with_meta("digest", st.digest.to_hex()),
        )
    };
    if st.kind != DocumentKind::IndicatorSnapshot.as_str() {
        return Err(not_chunked());
    }
    let envelope =
        SignedEnvelope::decode(&st.envelope).map_err(|e| internal("reading a snapshot", &e))?;
    let statement =
        Statement::decode(&envelope.payload).map_err(|e| internal("reading a snapshot", &e))?;
    match statement.body {
        Body::Indicators(snapshot) => snapshot.chunks.ok_or_else(not_chunked),
        Body::Policy(_) => Err(not_chunked()),
    }
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

fn kind_filter(kind: i32) -> Result<Option<String>, Status> {
    match v1::DocumentKind::try_from(kind) {
        Ok(v1::DocumentKind::Unspecified) => Ok(None),
        Ok(v1::DocumentKind::PolicySummary) => {
            Ok(Some(DocumentKind::PolicySummary.as_str().into()))
        }
        Ok(v1::DocumentKind::IndicatorSnapshot) => {
            Ok(Some(DocumentKind::IndicatorSnapshot.as_str().into()))
        }
        Err(_) => Err(invalid_field(
            "kind",
            reasons::INVALID_ARGUMENT,
            format!("kind {kind} is not a DocumentKind"),
        )),
    }
}

/// What the hub admits `member_id`'s statements against: its federation, its clock now and
/// the catalogue in force; refused with PEER_NOT_A_MEMBER for a non-member. One place, so
/// inline statements and large snapshots (checked once their chunks are in) meet the same
/// rules.
fn hub_admission<'a>(
    federation: &'a Federation,
    member_id: &str,
    catalogue: &'a SignedCatalogue,
) -> Result<AdmissionContext<'a>, Rejection> {
    AdmissionContext::new(
        federation,
        member_id,
        rcpfed_core::clock::now_utc(),
        Some(&catalogue.catalogue),
    )
}

/// The warnings of findings without errors; otherwise the one refusal of all of them.
fn checked_warnings(findings: Findings) -> Result<Warnings, Rejection> {
    let total = findings.total_warnings;
    let warnings = findings.into_result()?;
    Ok(Warnings {
        total,
        first: warnings.into_iter().next(),
    })
}

/// What [`Hub::verify`] found: the statement, and for an inline indicator snapshot the outcome
/// of its catalogue rules (step 9e), which refuse only if the statement is not stored already.
type Verified = (
    VerifiedStatement,
    Statement,
    Option<Result<Warnings, Rejection>>,
);

fn non_empty(text: String) -> Option<String> {
    if text.is_empty() { None } else { Some(text) }
}

impl Hub {
    /// Refuses a write on a standby (UNAVAILABLE, NOT_LEADER, naming the leader when known),
    /// before anything of it is read or checked.
    fn writable(&self, what: &str) -> Result<(), Status> {
        match &self.standby {
            None => Ok(()),
            Some(leader) => {
                let leader = leader.borrow().clone();
                Err(rcpfed_grpc::status::not_leader(
                    &format!("{what} was refused: this hub is a standby"),
                    Some(&leader),
                ))
            }
        }
    }

    /// Everything before the chain rules: the envelope's admission (bounds, payload type,
    /// signature, owner, key lifecycle), decoding and the statement's admission. Pure CPU;
    /// runs concurrently across requests.
    fn verify(
        &self,
        federation: &Federation,
        member_id: &str,
        envelope: v1::Envelope,
    ) -> Result<Verified, Rejection> {
        let signed = SignedEnvelope::from_proto(envelope);
        admit_envelope(
            &signed,
            federation,
            member_id,
            rcpfed_core::clock::now_utc(),
        )?;
        let envelope_bytes = signed.encode();
        let statement = Statement::decode(&signed.payload)?;
        let catalogue = self.catalogue.get();
        // Steps 9c and 9e in one pass, so one refusal lists every problem: the field rules
        // and, for an inline snapshot, the catalogue rules (duplicate keys under its key
        // rule). A chunked snapshot's observations are checked once its chunks are in.
        let inline = matches!(&statement.body, Body::Indicators(s) if s.chunks.is_none());
        // The actions are judged by the sequencer, at the statement's place in the log (see
        // admit_inline).
        let findings = admit_inline(
            &statement,
            &hub_admission(federation, member_id, &catalogue)?,
            |_, _| Ok::<_, Rejection>(None),
        )?;
        // The field rules refuse whether or not the statement is stored (docs/spec/ingest.md §1,
        // notes); the refusal lists the catalogue's errors too. Catalogue errors alone are step
        // 9e's.
        let rule_errors = findings.rule_errors;
        let catalogue_outcome = match checked_warnings(findings) {
            Err(rejection) if rule_errors > 0 || !inline => return Err(rejection),
            outcome => inline.then_some(outcome),
        };
        let verified = VerifiedStatement {
            node_id: statement.header.node_id.clone(),
            seq: statement.header.seq,
            prev_digest: statement.header.prev_digest,
            digest: signed.digest(),
            payload_type: signed.payload_type.clone(),
            kind: statement.header.kind.as_str(),
            document: statement.header.document.clone(),
            revision: statement.header.revision,
            envelope: envelope_bytes,
            leaf_hash: signed.leaf_hash(),
            snapshot: None,
            decoded: rcpfed_store::DecodedStatement::default(),
        };
        Ok((verified, statement, catalogue_outcome))
    }

    /// [`Hub::verify`] on the CPU pool: signatures over up to a whole payload each, decoding
    /// and validation never run on the async workers.
    async fn verify_on_pool(
        &self,
        federation: &Arc<Federation>,
        member_id: &str,
        envelope: v1::Envelope,
    ) -> Result<Result<Verified, Rejection>, Status> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| Status::unavailable("the hub is shutting down; retry later"))?;
        let (federation, member) = (Arc::clone(federation), member_id.to_string());
        self.pool
            .run(member_id, "verifying a statement", move || {
                me.verify(&federation, &member, envelope)
            })
            .await
    }

    /// One of `member_id`'s [`Quotas::submissions_in_flight`], or RESOURCE_EXHAUSTED.
    fn submission_turn(&self, member_id: &str) -> Result<quotas::Held, Status> {
        let limit = self.quotas.submissions_in_flight;
        self.submissions.try_take(member_id, limit).ok_or_else(|| {
            self.metrics.quota_refused(quotas::TOO_MANY_SUBMISSIONS_IN_FLIGHT);
            tracing::info!(member = %member_id, limit, "submission refused: too many in flight");
            quota_status(
                quotas::TOO_MANY_SUBMISSIONS_IN_FLIGHT,
                limit,
                format!(
                    "{member_id} already has {limit} statements being checked at the hub; wait for their answers and send this one again"
                ),
            )
        })
    }

    /// Logs and counts the warnings of a snapshot that passed the catalogue check.
    fn note_warnings(&self, member_id: &str, indicator: &str, warnings: Warnings) {
        if warnings.total == 0 {
            return;
        }
        self.metrics.catalogue_warnings(warnings.total);
        let first = warnings
            .first
            .map(|v| format!("{}: {}", v.field, v.description))
            .unwrap_or_default();
        tracing::info!(
            member = %member_id,
            indicator,
            warnings = warnings.total,
            first = %first,
            "snapshot passes the catalogue check with warnings"
        );
    }

    /// The stored statement with this digest, if any.
    async fn stored(&self, digest: Digest) -> Result<Option<StoredStatement>, Status> {
        let store = Arc::clone(&self.store);
        blocking("looking up a statement", move || {
            store.statement_by_digest(&digest)
        })
        .await
    }

    /// The inclusion proof of `leaf_index` against the latest checkpoint (a duplicate's: a
    /// new acceptance's proof comes with it from the sequencer).
    async fn proof(&self, leaf_index: u64) -> Result<Option<v1::LogProof>, Status> {
        let store = Arc::clone(&self.store);
        blocking("building the inclusion proof", move || {
            match store.latest_checkpoint()? {
                Some(cp) => crate::log::log_proof(store.as_ref(), leaf_index, &cp).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Hands a verified statement to the sequencer and waits for its receipt.
    async fn sequence(&self, verified: VerifiedStatement) -> Result<Answer, Status> {
        let (node, seq) = (verified.node_id.clone(), verified.seq);
        let (receipt, duplicate, log) = match self.ingest.submit(verified).await {
            Ok(IngestOutcome::Accepted {
                receipt,
                leaf_index,
                checkpoint,
                tree,
            }) => {
                tracing::debug!(%node, seq, leaf_index, "statement accepted");
                // From the batch's nodes in memory, checked against its root: no store read.
                let log = tree.log_proof(leaf_index, &checkpoint).map_err(|e| {
                    tracing::error!(%node, seq, leaf_index, error = %e, "the receipt's inclusion proof could not be built");
                    internal("building the inclusion proof", &e)
                })?;
                (receipt, false, Some(log))
            }
            Ok(IngestOutcome::Duplicate {
                receipt,
                leaf_index,
            }) => (receipt, true, self.proof(leaf_index).await?),
            Err(IngestError::Rejected(rejection)) => {
                tracing::info!(%node, seq, reason = rejection.reason, message = %rejection.message, "statement refused");
                return Err(reject(rejection));
            }
            Err(IngestError::Stopped) => {
                return Err(Status::unavailable("the hub is shutting down; retry later"));
            }
            Err(IngestError::NotLeader) => {
                return Err(rcpfed_grpc::status::not_leader(
                    "the statement was refused: this hub is a standby",
                    None,
                ));
            }
            Err(e @ IngestError::Store(_)) => return Err(internal("storing the statement", &e)),
            Err(IngestError::Unavailable(e)) => {
                return Err(rcpfed_grpc::status::store_status(
                    "storing the statement",
                    &e,
                ));
            }
        };
        Ok(Answer {
            receipt,
            duplicate,
            log,
        })
    }

    /// A turn to receive a snapshot's chunks: waits while [`limits::MAX_CONCURRENT_SNAPSHOTS`]
    /// others are in progress, at most until the call's `deadline` (DEADLINE_EXCEEDED, which
    /// the outbox retries) or shutdown (UNAVAILABLE).
    async fn snapshot_turn(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        let permits = Arc::clone(&self.snapshot_permits);
        tokio::select! {
            permit = permits.acquire_owned() => {
                permit.map_err(|e| internal("waiting for a snapshot turn", &e))
            }
            () = self.shutdown.cancelled() => Err(Status::unavailable(
                "the hub is shutting down; send the snapshot again later",
            )),
            () = tokio::time::sleep_until(deadline) => Err(Status::deadline_exceeded(format!(
                "the hub was receiving {} other snapshots for the whole {} s this call may last; send it again later",
                limits::MAX_CONCURRENT_SNAPSHOTS,
                rcpfed_grpc::deadline::SNAPSHOT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The next message of a SubmitSnapshot stream, or None at its end; UNAVAILABLE as soon
    /// as the hub shuts down, DEADLINE_EXCEEDED when the client stalls (this call is exempt
    /// from the unary deadline, see [`crate::deadline`]).
    async fn next_part(
        &self,
        parts: &mut tonic::Streaming<v1::SubmitSnapshotRequest>,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Part>, Status> {
        let idle = self.quotas.snapshot_chunk_idle;
        let wait = deadline.min(tokio::time::Instant::now() + idle);
        let message = tokio::select! {
            () = self.shutdown.cancelled() => {
                return Err(Status::unavailable(
                    "the hub is shutting down; send the snapshot again later",
                ));
            }
            () = tokio::time::sleep_until(wait) => {
                self.metrics.quota_refused(quotas::SNAPSHOT_TOO_SLOW);
                return Err(quota_status(
                    quotas::SNAPSHOT_TOO_SLOW,
                    usize::try_from(idle.as_millis()).unwrap_or(usize::MAX),
                    format!(
                        "the snapshot arrived too slowly: at most {} ms between messages, and all chunks within {} ms plus their size at {} bytes/s (at most {} s in all); its slot is given back, send it again",
                        idle.as_millis(),
                        idle.as_millis(),
                        self.quotas.snapshot_min_rate,
                        rcpfed_grpc::deadline::SNAPSHOT_TIMEOUT.as_secs()
                    ),
                ));
            }
            message = parts.message() => message?,
        };
        match message {
            None => Ok(None),
            Some(v1::SubmitSnapshotRequest { part: Some(part) }) => Ok(Some(part)),
            Some(v1::SubmitSnapshotRequest { part: None }) => Err(invalid_field(
                "part",
                reasons::FIELD_REQUIRED,
                "a message carries neither the envelope nor a chunk",
            )),
        }
    }

    /// Reads exactly the chunks the manifest lists, in order, and the end of the stream after
    /// them; a checker on a blocking thread checks each chunk as it comes (length and SHA-256
    /// before it is decoded, then every observation rule) and stages it on disk
    /// ([`crate::staged::check_and_stage`]), so at most a few chunks are in memory at once.
    async fn receive_chunks(
        &self,
        parts: &mut tonic::Streaming<v1::SubmitSnapshotRequest>,
        cx: ReceiveContext,
        deadline: tokio::time::Instant,
    ) -> Result<Received, Status> {
        let n = cx.manifest.chunks.len();
        // One chunk waits while the checker works on the one before.
        let (chunks, for_checker) = tokio::sync::mpsc::channel(1);
        let checker = tokio::task::spawn_blocking(move || check_and_stage(cx, for_checker));
        for index in 0..n {
            let bytes = match self.next_part(parts, deadline).await? {
                Some(Part::Chunk(bytes)) => bytes,
                Some(Part::Envelope(_)) => {
                    return Err(chunk_mismatch(
                        index,
                        format!(
                            "a second envelope arrived where chunk {index} was expected; only the {n} chunks of the manifest follow the envelope"
                        ),
                    ));
                }
                None => {
                    return Err(chunk_mismatch(
                        index,
                        format!(
                            "the stream ended after {index} chunks; the signed manifest lists {n}"
                        ),
                    ));
                }
            };
            if chunks.send(bytes).await.is_err() {
                // The checker stopped at a bad chunk: its answer says which.
                break;
            }
        }
        drop(chunks);
        let received = match checker.await {
            Ok(Ok(Some(received))) => received,
            Ok(Ok(None)) => {
                return Err(internal(
                    "receiving a snapshot",
                    &"the checker stopped before the last chunk",
                ));
            }
            Ok(Err(ReceiveError::Chunk(index, r))) => {
                return Err(rejection_status(&chunk_violation(index, r)));
            }
            Ok(Err(ReceiveError::Refused(r))) => return Err(reject(r)),
            Ok(Err(ReceiveError::Store(e))) => {
                return Err(rcpfed_grpc::status::store_status(
                    "staging the snapshot",
                    &e,
                ));
            }
            Err(e) => return Err(internal("receiving a snapshot", &e)),
        };
        if self.next_part(parts, deadline).await?.is_some() {
            return Err(chunk_mismatch(
                n,
                format!("more messages followed the {n} chunks the signed manifest lists"),
            ));
        }
        Ok(received)
    }
}

type FeedStream = Pin<Box<dyn Stream<Item = Result<v1::SubscribeFeedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HubService for Hub {
    // Each RPC's body is in the file of its area (statements, snapshots, feed, log, registry).
    async fn submit_statement(
        &self,
        request: Request<v1::SubmitStatementRequest>,
    ) -> Result<Response<v1::SubmitStatementResponse>, Status> {
        Hub::submit_statement(self, request).await
    }

    async fn get_statement(
        &self,
        request: Request<v1::GetStatementRequest>,
    ) -> Result<Response<v1::GetStatementResponse>, Status> {
        Hub::get_statement(self, request).await
    }

    async fn list_statements(
        &self,
        request: Request<v1::ListStatementsRequest>,
    ) -> Result<Response<v1::ListStatementsResponse>, Status> {
        Hub::list_statements(self, request).await
    }

    type SubscribeFeedStream = FeedStream;

    async fn subscribe_feed(
        &self,
        request: Request<v1::SubscribeFeedRequest>,
    ) -> Result<Response<Self::SubscribeFeedStream>, Status> {
        Hub::subscribe_feed(self, request).await
    }

    async fn list_equivocations(
        &self,
        request: Request<v1::ListEquivocationsRequest>,
    ) -> Result<Response<v1::ListEquivocationsResponse>, Status> {
        Hub::list_equivocations(self, request).await
    }

    async fn list_members(
        &self,
        request: Request<v1::ListMembersRequest>,
    ) -> Result<Response<v1::ListMembersResponse>, Status> {
        Hub::list_members(self, request).await
    }

    async fn get_checkpoint(
        &self,
        request: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::GetCheckpointResponse>, Status> {
        Hub::get_checkpoint(self, request).await
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::GetInclusionProofResponse>, Status> {
        Hub::get_inclusion_proof(self, request).await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::GetConsistencyProofResponse>, Status> {
        Hub::get_consistency_proof(self, request).await
    }

    async fn list_log_entries(
        &self,
        request: Request<v1::ListLogEntriesRequest>,
    ) -> Result<Response<v1::ListLogEntriesResponse>, Status> {
        Hub::list_log_entries(self, request).await
    }

    async fn submit_cosignature(
        &self,
        request: Request<v1::SubmitCosignatureRequest>,
    ) -> Result<Response<v1::SubmitCosignatureResponse>, Status> {
        Hub::submit_cosignature(self, request).await
    }

    async fn publish_registry(
        &self,
        request: Request<v1::PublishRegistryRequest>,
    ) -> Result<Response<v1::PublishRegistryResponse>, Status> {
        Hub::publish_registry(self, request).await
    }

    async fn get_registry(
        &self,
        request: Request<v1::GetRegistryRequest>,
    ) -> Result<Response<v1::GetRegistryResponse>, Status> {
        Hub::get_registry(self, request).await
    }

    async fn list_registry_versions(
        &self,
        request: Request<v1::ListRegistryVersionsRequest>,
    ) -> Result<Response<v1::ListRegistryVersionsResponse>, Status> {
        Hub::list_registry_versions(self, request).await
    }

    async fn submit_snapshot(
        &self,
        request: Request<tonic::Streaming<v1::SubmitSnapshotRequest>>,
    ) -> Result<Response<v1::SubmitSnapshotResponse>, Status> {
        Hub::submit_snapshot(self, request).await
    }

    type GetSnapshotChunksStream =
        Pin<Box<dyn Stream<Item = Result<v1::GetSnapshotChunksResponse, Status>> + Send>>;

    async fn get_snapshot_chunks(
        &self,
        request: Request<v1::GetSnapshotChunksRequest>,
    ) -> Result<Response<Self::GetSnapshotChunksStream>, Status> {
        Hub::get_snapshot_chunks(self, request).await
    }

    async fn list_flagged_statements(
        &self,
        request: Request<v1::ListFlaggedStatementsRequest>,
    ) -> Result<Response<v1::ListFlaggedStatementsResponse>, Status> {
        Hub::list_flagged_statements(self, request).await
    }
}
