//! HubService, the transparency log: checkpoints, inclusion and consistency proofs, entries, witness cosignatures.

use super::{Hub, blocking, reject};
use prost::Message as _;
use rcpfed_core::members::Role;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_grpc::authorize;
use rcpfed_grpc::status::{internal, invalid_field, not_found, page_size};
use rcpfed_proto::v1;
use rcpfed_store::StatementFilter;
use std::sync::Arc;
use tonic::{Request, Response, Status};

impl Hub {
    pub(super) async fn get_checkpoint(
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
        // Counted from the lines in the answer: a cosignature stored between the two reads
        // above is in the note, so the count must include it too.
        let cosignature_count = u32::try_from(cosignatures.len()).unwrap_or(u32::MAX);
        Ok(Response::new(v1::GetCheckpointResponse {
            checkpoint: crate::log::note_with_cosignatures(&cp.note, &cosignatures),
            tree_size: cp.size,
            root_hash: cp.root.to_vec(),
            cosignature_count,
            quorum: self.quorum,
            r#final: cosignature_count >= self.quorum,
        }))
    }

    pub(super) async fn get_inclusion_proof(
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

    pub(super) async fn get_consistency_proof(
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

    pub(super) async fn list_log_entries(
        &self,
        request: Request<v1::ListLogEntriesRequest>,
    ) -> Result<Response<v1::ListLogEntriesResponse>, Status> {
        authorize(&request, &self.federation.get(), Role::Reader)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let store = Arc::clone(&self.store);
        let start = req.start_index;
        let (rows, _) = blocking("listing log entries", move || {
            // Leaf i is feed entry i + 1, so entries from `start` follow feed index `start`.
            // Read row by row up to MAX_PAGE_BYTES: a page of large envelopes is never held
            // whole.
            store.list_statements_within(
                &StatementFilter::default(),
                start,
                limit,
                rcpfed_core::limits::MAX_PAGE_BYTES,
            )
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

    pub(super) async fn submit_cosignature(
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
        let line = signature.to_line();
        let cosignature = rcpfed_store::Cosignature {
            size,
            witness_id: witness.clone(),
            line,
            timestamp,
        };
        // Durable before the answer; written in one transaction with any that arrive meanwhile.
        let count = self.cosignatures.store(cosignature).await?;
        tracing::info!(%witness, size, count, quorum = self.quorum, "checkpoint cosigned");
        self.metrics.cosigned(&witness, size, count >= self.quorum);
        Ok(Response::new(v1::SubmitCosignatureResponse {
            cosignature_count: count,
            r#final: count >= self.quorum,
        }))
    }
}
