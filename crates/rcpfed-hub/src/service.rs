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
use crate::ingest::{Ingest, IngestError, IngestOutcome, SnapshotPayload, VerifiedStatement};
use crate::metrics::HubMetrics;
use crate::quotas::{self, CpuPool, PerMember, Quotas, quota_status};
use prost::Message as _;
use rcpfed_core::Digest;
use rcpfed_core::catalogue::{SignedCatalogue, validate_observations_against};
use rcpfed_core::chunks::decode_chunk;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::members::{Federation, Role};
use rcpfed_core::rejection::{RejectClass, Rejection, Violation, reasons};
use rcpfed_core::statement::{Body, ChunkManifest, DocumentKind, Observation, Statement};
use rcpfed_core::validate::{Findings, ValidationContext, check_observations_all, check_statement};
use rcpfed_grpc::records::{RecordParts, parse_statement_name, statement_record};
use rcpfed_grpc::status::{
    internal, invalid_field, next_page, not_found, page_size, parse_page_token,
};
use rcpfed_grpc::{authorize, limits, rejection_status};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_server::HubService;
use rcpfed_proto::v1::submit_snapshot_request::Part;
use rcpfed_store::{StatementFilter, StoredCheckpoint, StoredFlag, StoredStatement};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// `ErrorInfo.reason` (FAILED_PRECONDITION) of `GetSnapshotChunks` for a statement that has
/// no chunks: a policy summary, an inline snapshot or a hub document.
pub const NOT_A_CHUNKED_SNAPSHOT: &str = "NOT_A_CHUNKED_SNAPSHOT";

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
    /// Large snapshots each member is sending (at most one).
    pub(crate) snapshot_slots: PerMember,
    /// None while this process leads; on a standby, the endpoint the leader advertises ("" when
    /// unknown), named in the NOT_LEADER answer to every write.
    pub(crate) standby: Option<tokio::sync::watch::Receiver<String>>,
}

/// What a submission gets back: the receipt, whether it was a resubmission, the log proof.
struct Answer {
    receipt: Vec<u8>,
    duplicate: bool,
    log: Option<v1::LogProof>,
}

/// Catalogue warnings of a snapshot that passed the catalogue check.
struct Warnings {
    total: usize,
    first: Option<Violation>,
}

/// Checks observations against the catalogue: errors refuse, warnings come back.
fn catalogue_check(
    catalogue: &SignedCatalogue,
    indicator: &str,
    observations: &[Observation],
) -> Result<Warnings, Rejection> {
    let check = validate_observations_against(&catalogue.catalogue, indicator, observations);
    let total = check.total_warnings;
    let warnings = check.into_result()?;
    Ok(Warnings {
        total,
        first: warnings.into_iter().next(),
    })
}

/// A chunked snapshot sent where its chunks cannot follow, or a statement without chunks
/// sent where they must.
fn chunks_required(message: &str) -> Rejection {
    Rejection::invalid(reasons::CHUNKS_REQUIRED, message).with_violations(vec![Violation::new(
        "indicator_snapshot.chunks",
        reasons::CHUNKS_REQUIRED,
        message,
    )])
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

/// What the hub validates `member_id`'s statements against: its federation, its clock now and
/// the catalogue's aggregate areas; refused with PEER_NOT_A_MEMBER for a non-member. One place,
/// so inline statements and large snapshots (checked once their chunks are in) meet the same
/// rules.
fn hub_validation_context<'a>(
    federation: &'a Federation,
    member_id: &str,
    catalogue: &'a SignedCatalogue,
) -> Result<ValidationContext<'a>, Rejection> {
    let member = federation.member(member_id).ok_or_else(|| {
        Rejection::new(
            RejectClass::Forbidden,
            reasons::PEER_NOT_A_MEMBER,
            "caller is not a member",
        )
    })?;
    Ok(ValidationContext {
        federation_id: &federation.federation_id,
        member,
        now: rcpfed_core::clock::now_utc(),
        aggregates: catalogue.catalogue.area_aggregates(),
    })
}

/// Every check of a large snapshot's observations once all chunks are in, in one pass: the
/// statement rules an inline snapshot meets (membership, duplicate keys under the catalogue's
/// key rule, values) and the catalogue.
fn check_all(
    federation: &Federation,
    member_id: &str,
    catalogue: &SignedCatalogue,
    indicator: &str,
    observations: &[Observation],
) -> Result<Warnings, Rejection> {
    let ctx = hub_validation_context(federation, member_id, catalogue)?;
    checked_warnings(check_observations_all(
        indicator,
        observations,
        &ctx,
        Some(&catalogue.catalogue),
    ))
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

    /// Everything before the chain rules: envelope shape, payload type, signature, owner,
    /// decoding and validation. Pure CPU; runs concurrently across requests.
    fn verify(
        &self,
        federation: &Federation,
        member_id: &str,
        envelope: v1::Envelope,
    ) -> Result<Verified, Rejection> {
        let signed = SignedEnvelope::from_proto(envelope);
        // Every bound of the whole envelope, before any hashing or signature work: what is
        // accepted must fit every feed entry and response (docs/spec/limits.md).
        rcpfed_core::limits::check_envelope(&signed, rcpfed_core::limits::MAX_PAYLOAD_BYTES)?;
        let signed_by = rcpfed_core::statement::verify_statement_signature(&signed, federation)?;
        signed_by.owned_by(member_id)?;
        let key = signed_by.key;
        let envelope_bytes = signed.encode();
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
        let catalogue = self.catalogue.get();
        // Steps 9c and 9e in one pass, so one refusal lists every problem: the field rules
        // and, for an inline snapshot, the catalogue rules (duplicate keys under its key
        // rule). A chunked snapshot's observations are checked once its chunks are in.
        let inline = matches!(&statement.body, Body::Indicators(s) if s.chunks.is_none());
        let findings = check_statement(
            &statement,
            &hub_validation_context(federation, member_id, &catalogue)?,
            inline.then_some(catalogue.catalogue.as_ref()),
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
            chunks: Vec::new(),
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

    /// The inclusion proof of `leaf_index` against `checkpoint`, or the latest one.
    async fn proof(
        &self,
        leaf_index: u64,
        checkpoint: Option<Arc<StoredCheckpoint>>,
    ) -> Result<Option<v1::LogProof>, Status> {
        // Built after the commit, off the sequencer, from committed nodes.
        let store = Arc::clone(&self.store);
        blocking("building the inclusion proof", move || {
            let checkpoint = match checkpoint {
                Some(cp) => Some((*cp).clone()),
                None => store.latest_checkpoint()?,
            };
            match checkpoint {
                Some(cp) => crate::log::log_proof(store.as_ref(), leaf_index, &cp).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Hands a verified statement to the sequencer and waits for its receipt.
    async fn sequence(&self, verified: VerifiedStatement) -> Result<Answer, Status> {
        let (node, seq) = (verified.node_id.clone(), verified.seq);
        let (receipt, duplicate, leaf_index, checkpoint) = match self.ingest.submit(verified).await
        {
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
        let log = self.proof(leaf_index, checkpoint).await?;
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

    /// Reads and checks exactly the chunks `manifest` lists, in order, and the end of the
    /// stream after them. Each chunk's length and SHA-256 are checked before it is decoded.
    async fn receive_chunks(
        &self,
        parts: &mut tonic::Streaming<v1::SubmitSnapshotRequest>,
        manifest: Arc<ChunkManifest>,
        deadline: tokio::time::Instant,
        member_id: &str,
    ) -> Result<(Vec<(Digest, Vec<u8>)>, Vec<Observation>), Status> {
        let n = manifest.chunks.len();
        let mut staged = Vec::with_capacity(n);
        let mut observations = Vec::new();
        for (index, chunk) in manifest.chunks.iter().enumerate() {
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
            let m = Arc::clone(&manifest);
            // Hashing and decoding up to 4 MiB is CPU work: on the pool.
            let (bytes, decoded) = self
                .pool
                .run(member_id, "checking a chunk", move || {
                    let decoded = decode_chunk(&m, index, &bytes);
                    (bytes, decoded)
                })
                .await?;
            let decoded = decoded.map_err(|r| rejection_status(&chunk_violation(index, r)))?;
            observations.extend(decoded);
            staged.push((chunk.sha256, bytes));
        }
        if self.next_part(parts, deadline).await?.is_some() {
            return Err(chunk_mismatch(
                n,
                format!("more messages followed the {n} chunks the signed manifest lists"),
            ));
        }
        Ok((staged, observations))
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
        self.writable("the statement")?;
        let envelope = request.into_inner().envelope.ok_or_else(|| {
            invalid_field(
                "envelope",
                reasons::ENVELOPE_MALFORMED,
                "envelope is required",
            )
        })?;
        let refused = |rejection: Rejection| {
            tracing::info!(member = %member_id, reason = rejection.reason, message = %rejection.message, "statement refused");
            reject(rejection)
        };
        // Held until the answer: one member cannot queue unbounded work on the pool.
        let _turn = self.submission_turn(&member_id)?;
        let (mut verified, statement, catalogue_outcome) = self
            .verify_on_pool(&federation, &member_id, envelope)
            .await?
            .map_err(refused)?;
        if let Body::Indicators(snapshot) = statement.body {
            if snapshot.chunks.is_some() {
                return Err(refused(chunks_required(
                    "this snapshot lists chunks in a manifest; send it with SubmitSnapshot, followed by its chunks",
                )));
            }
            match catalogue_outcome {
                Some(Ok(warnings)) => {
                    self.note_warnings(&member_id, &snapshot.indicator, warnings);
                }
                // An envelope accepted earlier still gets its original receipt (from the
                // sequencer) even if it no longer passes: nothing new is stored.
                Some(Err(rejection)) if self.stored(verified.digest).await?.is_none() => {
                    return Err(refused(rejection));
                }
                Some(Err(_)) | None => {}
            }
            verified.snapshot = Some(Arc::new(SnapshotPayload {
                indicator: snapshot.indicator,
                observations: snapshot.observations,
            }));
        }
        let answer = self.sequence(verified).await?;
        Ok(Response::new(v1::SubmitStatementResponse {
            receipt: v1::Envelope::decode(answer.receipt.as_slice()).ok(),
            duplicate: answer.duplicate,
            log: answer.log,
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
        // A page stops before MAX_PAGE_BYTES (always at least one record), so a page of the
        // largest statements still fits a default 4 MiB client.
        let mut statements = Vec::with_capacity(rows.len().min(limit));
        let mut bytes = 0;
        for row in rows.iter().take(limit) {
            let r = record(row);
            bytes += r.encoded_len() + 8;
            if !statements.is_empty() && bytes > rcpfed_core::limits::MAX_PAGE_BYTES {
                break;
            }
            statements.push(r);
        }
        let next_page_token = next_page(&mut rows, statements.len(), |r| r.feed_index);
        Ok(Response::new(v1::ListStatementsResponse {
            statements,
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
        let limit = self.quotas.feed_subscriptions;
        // Held by the stream's task: given back when the subscriber goes away.
        let subscription = self.subscriptions.try_take(&member, limit).ok_or_else(|| {
            self.metrics.quota_refused(quotas::TOO_MANY_FEED_SUBSCRIPTIONS);
            tracing::info!(%member, limit, "feed subscription refused: too many open");
            quota_status(
                quotas::TOO_MANY_FEED_SUBSCRIPTIONS,
                limit,
                format!(
                    "{member} already has {limit} feed subscriptions open; close one (or wait until a dropped one is noticed) and subscribe again"
                ),
            )
        })?;
        let mut cursor = request.into_inner().after_index;
        let store = Arc::clone(&self.store);
        let mut head = self.ingest.feed_head();
        // The end of the backlog, told to the subscriber in the response headers.
        let backlog_end = *head.borrow();
        let shutdown = self.shutdown.clone();
        // Memory per subscriber: one batch (bounded by bytes) plus a few queued entries.
        let (tx, rx) = tokio::sync::mpsc::channel(quotas::FEED_QUEUE);
        tracing::info!(%member, after = cursor, "feed subscriber connected");
        tokio::spawn(async move {
            let _subscription = subscription;
            loop {
                let batch_store = Arc::clone(&store);
                let after = cursor;
                let rows = match blocking("reading the feed", move || {
                    batch_store.list_feed(after, quotas::FEED_BATCH_ROWS, quotas::FEED_BATCH_BYTES)
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
        let mut response =
            Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
                as Self::SubscribeFeedStream);
        response
            .metadata_mut()
            .insert(BACKLOG_END_HEADER, backlog_end.into());
        Ok(response)
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
        // Paged by bytes too: each entry carries two envelopes, so a page of full-size ones
        // would not fit in a response.
        let (rows, more) = blocking("listing equivocations", move || {
            store.list_equivocations_within(
                node.as_deref(),
                after,
                limit,
                quotas::EQUIVOCATION_PAGE_BYTES,
            )
        })
        .await?;
        let next_page_token = match rows.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
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
        let v1::GetCheckpointRequest {
            final_only,
            tree_size,
        } = request.into_inner();
        if final_only && tree_size != 0 {
            return Err(invalid_field(
                "final_only",
                reasons::INVALID_ARGUMENT,
                "give final_only or tree_size, not both: the answer says whether the checkpoint of a given size is final",
            ));
        }
        let store = Arc::clone(&self.store);
        let quorum = self.quorum;
        let found = blocking("reading the checkpoint", move || {
            let cp = if tree_size != 0 {
                store.checkpoint_at(tree_size)?
            } else if final_only {
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
            not_found(if tree_size != 0 {
                format!(
                    "the hub issued no checkpoint of tree size {tree_size} (one is issued per committed batch; receipts and feed entries name the sizes that have one)"
                )
            } else if final_only {
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
                // Feed indexes are 1-based and stored as SQL integers: an index past them
                // names no entry (not an overflow).
                (v1::get_inclusion_proof_request::Leaf::LeafIndex(i), None) => {
                    match i.checked_add(1).filter(|n| i64::try_from(*n).is_ok()) {
                        Some(n) => store.statement_by_feed_index(n)?,
                        None => None,
                    }
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
                // docs/spec/log.md §4: every error of this call is INVALID_ARGUMENT, naming the
                // size at fault.
                return Ok(Err(invalid_field(
                    "new_size",
                    reasons::INVALID_ARGUMENT,
                    if req.new_size == 0 {
                        "the log is empty: there is no tree to prove consistency with".to_string()
                    } else {
                        format!("the hub has no checkpoint for tree size {}", req.new_size)
                    },
                )));
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
        let mut bytes = 0;
        let mut next_start_index = start;
        for st in &rows {
            // A page stops before MAX_PAGE_BYTES (always at least one entry), so a page of
            // the largest envelopes still fits a client's message limit.
            bytes += st.envelope.len() + 64;
            if !entries.is_empty() && bytes > rcpfed_core::limits::MAX_PAGE_BYTES {
                break;
            }
            let leaf_hash = crate::log::leaf_of_envelope(&st.envelope)
                .map_err(|e| internal("hashing a log entry", &e))?;
            entries.push(v1::LogEntry {
                leaf_index: st.feed_index - 1,
                leaf_hash: leaf_hash.to_vec(),
                envelope: v1::Envelope::decode(st.envelope.as_slice()).ok(),
            });
            next_start_index = st.feed_index;
        }
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
        self.writable("the cosignature")?;
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
        self.metrics.cosigned(&witness, size, count >= self.quorum);
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
        self.writable("the registry version")?;
        let envelope = request.into_inner().registry.ok_or_else(|| {
            invalid_field("registry", reasons::FIELD_REQUIRED, "registry is required")
        })?;
        let envelope = SignedEnvelope::from_proto(envelope);
        // A registry version is logged and fed to every node like a statement: bounded the
        // same way, before its signatures are checked.
        rcpfed_core::limits::check_envelope(&envelope, rcpfed_core::limits::MAX_HUB_DOCUMENT_BYTES)
            .map_err(reject)?;
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
            Err(IngestError::NotLeader) => {
                return Err(rcpfed_grpc::status::not_leader(
                    "the registry version was refused: this hub is a standby",
                    None,
                ));
            }
            Err(e @ IngestError::Store(_)) => {
                return Err(internal("logging the registry version", &e));
            }
            Err(IngestError::Unavailable(e)) => {
                return Err(rcpfed_grpc::status::store_status(
                    "logging the registry version",
                    &e,
                ));
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

    async fn submit_snapshot(
        &self,
        request: Request<tonic::Streaming<v1::SubmitSnapshotRequest>>,
    ) -> Result<Response<v1::SubmitSnapshotResponse>, Status> {
        // One registry version decides the whole request.
        let federation = self.federation.get();
        let member_id = authorize(&request, &federation, Role::Publisher)?
            .id
            .clone();
        self.writable("the snapshot")?;
        let refused = |rejection: Rejection| {
            tracing::info!(member = %member_id, reason = rejection.reason, message = %rejection.message, "snapshot refused");
            reject(rejection)
        };
        // One large snapshot per member at a time, so one member cannot hold every turn.
        let _slot = self.snapshot_slots.try_take(&member_id, 1).ok_or_else(|| {
            self.metrics.quota_refused(quotas::SNAPSHOT_SLOT_BUSY);
            tracing::info!(member = %member_id, "snapshot refused: the member is already sending one");
            quota_status(
                quotas::SNAPSHOT_SLOT_BUSY,
                1,
                format!(
                    "{member_id} is already sending a snapshot; send one at a time, this one when the other is answered"
                ),
            )
        })?;
        let deadline = tokio::time::Instant::now() + rcpfed_grpc::deadline::SNAPSHOT_TIMEOUT;
        let mut parts = request.into_inner();
        let envelope = match self.next_part(&mut parts, deadline).await? {
            Some(Part::Envelope(envelope)) => envelope,
            Some(Part::Chunk(_)) => {
                return Err(invalid_field(
                    "envelope",
                    reasons::ENVELOPE_MALFORMED,
                    "the first message must carry the signed envelope; the chunks follow it",
                ));
            }
            None => {
                return Err(invalid_field(
                    "envelope",
                    reasons::ENVELOPE_MALFORMED,
                    "the stream ended before the envelope",
                ));
            }
        };
        // Signature, decoding and the statement rules (the manifest among them).
        let (mut verified, statement, _) = self
            .verify_on_pool(&federation, &member_id, envelope)
            .await?
            .map_err(refused)?;
        let snapshot = match statement.body {
            Body::Indicators(snapshot) => snapshot,
            Body::Policy(_) => {
                return Err(refused(chunks_required(
                    "a policy summary has no chunks; send it with SubmitStatement",
                )));
            }
        };
        let Some(manifest) = snapshot.chunks else {
            return Err(refused(chunks_required(
                "this snapshot carries its observations inline; send it with SubmitStatement",
            )));
        };
        // A resubmission of an accepted snapshot: its original receipt, without the chunks.
        if let Some(stored) = self.stored(verified.digest).await? {
            let log = self.proof(stored.feed_index - 1, None).await?;
            return Ok(Response::new(v1::SubmitSnapshotResponse {
                receipt: v1::Envelope::decode(stored.receipt.as_slice()).ok(),
                duplicate: true,
                log,
            }));
        }
        let catalogue = self.catalogue.get();
        // An unknown indicator is refused before any chunk is read.
        catalogue_check(&catalogue, &snapshot.indicator, &[]).map_err(refused)?;
        // Memory: only a few snapshots in flight. Held until the statement is committed or
        // refused; waiting counts against the call's own deadline.
        let _permit = self.snapshot_turn(deadline).await?;
        // From the turn on, the chunks must keep a minimum average rate: a publisher sending
        // just inside the idle limit cannot hold the turn for the whole call.
        let total_bytes: u64 = manifest
            .chunks
            .iter()
            .map(|c| u64::from(c.byte_length))
            .sum();
        let transfer_deadline = deadline
            .min(tokio::time::Instant::now() + self.quotas.snapshot_transfer_limit(total_bytes));
        let (chunks, observations) = self
            .receive_chunks(&mut parts, Arc::new(manifest), transfer_deadline, &member_id)
            .await
            .inspect_err(|status| {
                tracing::info!(member = %member_id, code = ?status.code(), message = status.message(), "snapshot chunks refused");
            })?;
        // The whole snapshot, with the rules an inline one meets.
        let indicator = snapshot.indicator;
        let checked = {
            let lane = member_id.clone();
            let (federation, member_id, catalogue) = (
                Arc::clone(&federation),
                member_id.clone(),
                Arc::clone(&catalogue),
            );
            let indicator = indicator.clone();
            self.pool
                .run(&lane, "validating a snapshot", move || {
                    let result = check_all(
                        &federation,
                        &member_id,
                        &catalogue,
                        &indicator,
                        &observations,
                    );
                    (observations, result)
                })
                .await?
        };
        let (observations, result) = checked;
        let warnings = result.map_err(refused)?;
        self.note_warnings(&member_id, &indicator, warnings);
        // The chunks go to the sequencer with the statement: they are stored in the same
        // transaction, only if it is accepted, so a refusal leaves nothing behind.
        verified.chunks = chunks;
        verified.snapshot = Some(Arc::new(SnapshotPayload {
            indicator,
            observations,
        }));
        let answer = self.sequence(verified).await?;
        Ok(Response::new(v1::SubmitSnapshotResponse {
            receipt: v1::Envelope::decode(answer.receipt.as_slice()).ok(),
            duplicate: answer.duplicate,
            log: answer.log,
        }))
    }

    type GetSnapshotChunksStream =
        Pin<Box<dyn Stream<Item = Result<v1::GetSnapshotChunksResponse, Status>> + Send>>;

    async fn get_snapshot_chunks(
        &self,
        request: Request<v1::GetSnapshotChunksRequest>,
    ) -> Result<Response<Self::GetSnapshotChunksStream>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let digest = Digest::from_slice(&req.digest).ok_or_else(|| {
            invalid_field(
                "digest",
                reasons::INVALID_DIGEST,
                format!(
                    "must be the 32-byte SHA-256 of a snapshot statement's payload, got {} bytes",
                    req.digest.len()
                ),
            )
        })?;
        let stored = self.stored(digest).await?.ok_or_else(|| {
            not_found(format!(
                "no accepted statement has digest {}",
                digest.to_hex()
            ))
        })?;
        let manifest = stored_manifest(&stored)?;
        let n = manifest.chunks.len();
        let first = usize::try_from(req.first_chunk).unwrap_or(usize::MAX);
        if first >= n {
            return Err(invalid_field(
                "first_chunk",
                reasons::INVALID_ARGUMENT,
                format!(
                    "must be below {n}, the number of chunks of this snapshot, got {}",
                    req.first_chunk
                ),
            ));
        }
        // Two chunks in flight at most (each up to 4 MiB): memory stays bounded per reader.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let store = Arc::clone(&self.store);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            for (index, chunk) in manifest.chunks.into_iter().enumerate().skip(first) {
                let chunk_store = Arc::clone(&store);
                let sha256 = chunk.sha256;
                let read = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    read = blocking("reading a chunk", move || chunk_store.chunk(&sha256)) => read,
                };
                let item = match read {
                    Ok(Some(bytes)) => Ok(v1::GetSnapshotChunksResponse {
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                        chunk: bytes,
                    }),
                    Ok(None) => Err(internal(
                        "reading a chunk",
                        &format!("chunk {index} ({sha256}) of snapshot {digest} is not stored"),
                    )),
                    Err(status) => Err(status),
                };
                let failed = item.is_err();
                tokio::select! {
                    sent = tx.send(item) => if sent.is_err() { return },
                    () = shutdown.cancelled() => return,
                }
                if failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
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
