//! HubService, large snapshots: the chunked submission and the chunks served to mirrors.

use super::{
    Hub, blocking, checked_warnings, chunks_required, receipt_envelope, reject, stored_manifest,
};
use crate::ingest::{SnapshotObservations, SnapshotPayload};
use crate::quotas::{self, quota_status};
use crate::staged::ReceiveContext;
use rcpfed_core::Digest;
use rcpfed_core::admission::known_indicator;
use rcpfed_core::members::Role;
use rcpfed_core::rejection::{Rejection, reasons};
use rcpfed_core::statement::{Body, ChunkManifest, IndicatorSnapshot};
use rcpfed_grpc::authorize;
use rcpfed_grpc::status::{internal, invalid_field, not_found};
use rcpfed_proto::v1;
use rcpfed_proto::v1::submit_snapshot_request::Part;
use rcpfed_store::DecodedStatement;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The snapshot of a statement sent with SubmitSnapshot and its chunk manifest; a policy
/// summary or an inline snapshot belongs to SubmitStatement.
fn chunked_snapshot(body: Body) -> Result<(IndicatorSnapshot, ChunkManifest), Rejection> {
    let mut snapshot = match body {
        Body::Indicators(snapshot) => snapshot,
        Body::Policy(_) => {
            return Err(chunks_required(
                "a policy summary has no chunks; send it with SubmitStatement",
            ));
        }
    };
    let Some(manifest) = snapshot.chunks.take() else {
        return Err(chunks_required(
            "this snapshot carries its observations inline; send it with SubmitStatement",
        ));
    };
    Ok((snapshot, manifest))
}

impl Hub {
    pub(super) async fn submit_snapshot(
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
        let _slot = self.take_snapshot_slot(&member_id)?;
        let deadline = tokio::time::Instant::now() + rcpfed_grpc::deadline::SNAPSHOT_TIMEOUT;
        let mut parts = request.into_inner();
        let envelope = self.first_envelope(&mut parts, deadline).await?;
        // Signature, decoding and the statement rules (the manifest among them).
        let (mut verified, statement, _) = self
            .verify_on_pool(&federation, &member_id, envelope)
            .await?
            .map_err(refused)?;
        // The commit reads the manifest from the statement as decoded here (it is small: the
        // observations travel in the chunks).
        let decoded = DecodedStatement::of(Arc::new(statement.clone()));
        let (snapshot, manifest) = chunked_snapshot(statement.body).map_err(refused)?;
        // A resubmission of an accepted snapshot: its original receipt, without the chunks.
        if let Some(stored) = self.stored(verified.digest).await? {
            let log = self.proof(stored.feed_index - 1).await?;
            return Ok(Response::new(v1::SubmitSnapshotResponse {
                receipt: Some(receipt_envelope(&stored.receipt)?),
                duplicate: true,
                log,
            }));
        }
        let catalogue = self.catalogue.get();
        // An unknown indicator is refused before any chunk is read.
        known_indicator(&catalogue.catalogue, &snapshot.indicator).map_err(refused)?;
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
        let indicator = snapshot.indicator;
        let cx = ReceiveContext {
            store: Arc::clone(&self.store),
            federation: Arc::clone(&federation),
            catalogue: Arc::clone(&catalogue),
            member_id: member_id.clone(),
            indicator: indicator.clone(),
            manifest: Arc::new(manifest),
            staging_dir: self.staging_dir.clone(),
        };
        // The chunks are checked with the rules an inline snapshot meets, and staged, as they
        // arrive.
        let received = self
            .receive_chunks(&mut parts, cx, transfer_deadline)
            .await
            .inspect_err(|status| {
                tracing::info!(member = %member_id, code = ?status.code(), message = status.message(), "snapshot chunks refused");
            })?;
        let warnings = checked_warnings(received.findings).map_err(refused)?;
        self.note_warnings(&member_id, &indicator, warnings);
        // The staged chunks go to the sequencer with the statement: they are stored in the
        // same transaction, only if it is accepted, so a refusal leaves nothing behind.
        verified.snapshot = Some(Arc::new(SnapshotPayload {
            indicator,
            observations: SnapshotObservations::Staged(Arc::new(received.staged)),
        }));
        verified.decoded = decoded;
        let answer = self.sequence(verified).await?;
        Ok(Response::new(v1::SubmitSnapshotResponse {
            receipt: Some(receipt_envelope(&answer.receipt)?),
            duplicate: answer.duplicate,
            log: answer.log,
        }))
    }

    /// The member's one snapshot slot, or RESOURCE_EXHAUSTED while it is sending another.
    fn take_snapshot_slot(&self, member_id: &str) -> Result<quotas::Held, Status> {
        self.snapshot_slots.try_take(member_id, 1).ok_or_else(|| {
            self.metrics.quota_refused(quotas::SNAPSHOT_SLOT_BUSY);
            tracing::info!(member = %member_id, "snapshot refused: the member is already sending one");
            quota_status(
                quotas::SNAPSHOT_SLOT_BUSY,
                1,
                format!(
                    "{member_id} is already sending a snapshot; send one at a time, this one when the other is answered"
                ),
            )
        })
    }

    /// The signed envelope the SubmitSnapshot stream must open with.
    async fn first_envelope(
        &self,
        parts: &mut tonic::Streaming<v1::SubmitSnapshotRequest>,
        deadline: tokio::time::Instant,
    ) -> Result<v1::Envelope, Status> {
        match self.next_part(parts, deadline).await? {
            Some(Part::Envelope(envelope)) => Ok(envelope),
            Some(Part::Chunk(_)) => Err(invalid_field(
                "envelope",
                reasons::ENVELOPE_MALFORMED,
                "the first message must carry the signed envelope; the chunks follow it",
            )),
            None => Err(invalid_field(
                "envelope",
                reasons::ENVELOPE_MALFORMED,
                "the stream ended before the envelope",
            )),
        }
    }

    pub(super) async fn get_snapshot_chunks(
        &self,
        request: Request<v1::GetSnapshotChunksRequest>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<v1::GetSnapshotChunksResponse, Status>> + Send>>>,
        Status,
    > {
        let member = authorize(&request, &self.federation.get(), Role::Reader)?
            .id
            .clone();
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
        // Held by the response stream, so until the call ends: a member that opens streams
        // and reads none holds at most CHUNK_STREAMS_PER_MEMBER of them, with what they queued.
        let limit = quotas::CHUNK_STREAMS_PER_MEMBER;
        let stream_slot = self.chunk_streams.try_take(&member, limit).ok_or_else(|| {
            self.metrics.quota_refused(quotas::TOO_MANY_CHUNK_STREAMS);
            tracing::info!(%member, limit, "snapshot chunk stream refused: too many open");
            quota_status(
                quotas::TOO_MANY_CHUNK_STREAMS,
                limit,
                format!(
                    "{member} already has {limit} GetSnapshotChunks streams open; finish or cancel one and ask again"
                ),
            )
        })?;
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
        Ok(Response::new(Box::pin(quotas::HeldStream::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            stream_slot,
        ))))
    }
}
