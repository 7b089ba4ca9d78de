//! The node as a witness of the hub's transparency log (C2SP tlog-witness in spirit).
//!
//! The witness keeps the latest checkpoint it has verified ("trusted") and moves it forward
//! only along a verified consistency proof, with a compare-and-swap in the store. It cosigns
//! only checkpoints it has moved to. Two hub-signed checkpoints that cannot both be true (same
//! size with different roots) are a fork: the witness keeps both as evidence, refuses to cosign anything more, turns its health entry
//! `rcpfed.v1.WitnessService` NOT_SERVING, and logs loudly. A consistency proof that does not
//! verify is not evidence (proofs are unsigned and the network may alter them): it is counted
//! (`rcpfed_witness_proof_failures_total`), logged, and retried, and the witness does not move.
//!
//! Every checkpoint the node meets (receipts, feed entries, the periodic poll) goes through
//! [`Witness::observe`], so a hub that shows this node a different history is caught whichever
//! way the checkpoint arrives.

use rcpfed_core::checkpoint::{Checkpoint, cosign, open_checkpoint};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::feed::LogProof;
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_core::merkle::{self, Hash};
use rcpfed_core::note::{NoteSignature, NoteVerifier};
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_grpc::failover::FailoverChannel as Channel;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_store::{NodeStore, StoreError, TrustedCheckpoint};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Health service name of the witness role.
pub const WITNESS_SERVICE: &str = "rcpfed.v1.WitnessService";

/// The witness's state, as `GetWitnessStatus` reports it.
#[derive(Debug)]
pub struct WitnessStatus {
    /// The checkpoint it trusts (note, size), once it has one.
    pub trusted: Option<(String, u64)>,
    /// Whether it has seen a checkpoint that contradicts the one it trusts.
    pub forked: bool,
    /// The contradictions it recorded, oldest first.
    pub forks: Vec<rcpfed_store::ForkRecord>,
    /// Its name (the note's key name).
    pub name: String,
}

/// This node's witness.
pub struct Witness {
    store: Arc<dyn NodeStore>,
    log: NoteVerifier,
    name: String,
    key: SecretKey,
    forked: AtomicBool,
    /// The largest log size of a hub-signed checkpoint met so far (exported as a metric: the
    /// mirror's and the witness's lag are measured against it).
    hub_size_seen: AtomicU64,
    /// Consistency proofs from the hub that did not verify (exported as a metric).
    proof_failures: prometheus_client::metrics::counter::Counter,
    /// Bound on each call to the hub (consistency proofs).
    call_timeout: std::time::Duration,
    health: HealthReporter,
    lock: tokio::sync::Mutex<()>,
    /// The last checkpoint note [`Self::observe`] accepted: feed entries of one batch carry
    /// the same note, which is then neither verified nor looked up again. (Safe: the trusted
    /// checkpoint only moves to consistent extensions, so a note once consistent with it stays
    /// so.)
    last_observed: std::sync::Mutex<Option<(String, Checkpoint)>>,
    /// Cosignatures being submitted in the background by the mirror and the outbox; over this
    /// many, a new one is left to the witness loop, which cosigns the latest checkpoint anyway.
    cosign_slots: Arc<tokio::sync::Semaphore>,
}

/// Cosignatures submitted in the background at once (see `Witness::cosign_slots`).
const COSIGNATURES_IN_FLIGHT: usize = 4;

fn store_error(e: StoreError) -> Rejection {
    Rejection::new(
        RejectClass::Precondition,
        "WITNESS_STORE",
        format!("witness store: {e}"),
    )
}

fn hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>, Rejection> {
    proof
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice()).map_err(|_| {
                Rejection::new(
                    RejectClass::Invalid,
                    reasons::BAD_PROOF,
                    "a proof hash is not 32 bytes",
                )
            })
        })
        .collect()
}

impl Witness {
    /// A witness for `node_id`, cosigning with `key`. Restores the forked state from the store.
    pub fn new(
        federation: &Federation,
        node_id: &str,
        key: SecretKey,
        store: Arc<dyn NodeStore>,
        health: HealthReporter,
    ) -> Result<Self, String> {
        let log = rcpfed_core::logkeys::log_verifier(federation)
            .ok_or("the member file gives no hub key to verify checkpoints with")?;
        let forked = !store.forks().map_err(|e| e.to_string())?.is_empty();
        Ok(Witness {
            store,
            log,
            name: rcpfed_core::logkeys::witness_name(&federation.federation_id, node_id),
            key,
            forked: AtomicBool::new(forked),
            hub_size_seen: AtomicU64::new(0),
            proof_failures: prometheus_client::metrics::counter::Counter::default(),
            call_timeout: rcpfed_grpc::limits::REQUEST_TIMEOUT,
            health,
            lock: tokio::sync::Mutex::new(()),
            last_observed: std::sync::Mutex::new(None),
            cosign_slots: Arc::new(tokio::sync::Semaphore::new(COSIGNATURES_IN_FLIGHT)),
        })
    }

    /// The witness name used in cosignatures.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts failed proofs in `counter` (registered with the ops port's metrics).
    pub fn with_proof_counter(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.proof_failures = counter;
        self
    }

    /// Bounds each call the witness makes to the hub by `timeout`.
    pub fn with_call_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The largest log size of a checkpoint signed by the hub that this node has met since
    /// start-up (0: none yet), verified or not against the trusted one.
    pub fn hub_log_size_seen(&self) -> u64 {
        self.hub_size_seen.load(Ordering::Relaxed)
    }

    /// Consistency proofs from the hub that did not verify since start-up.
    pub fn proof_failures(&self) -> u64 {
        self.proof_failures.get()
    }

    /// A proof that did not verify: retried later, counted and logged, never a fork. The proof
    /// carries no signature, so it may have been altered on the way (a man in the middle, a
    /// bug); only two conflicting checkpoints signed by the log are evidence against the hub.
    fn proof_failed(&self, problem: String) -> Rejection {
        self.proof_failures.inc();
        tracing::error!(
            witness = %self.name,
            %problem,
            failures = self.proof_failures.get(),
            "consistency proof from the hub did not verify; not cosigning, will retry"
        );
        Rejection::new(RejectClass::Invalid, reasons::BAD_PROOF, problem)
    }

    /// Whether a fork has been seen.
    pub fn is_forked(&self) -> bool {
        self.forked.load(Ordering::Relaxed)
    }

    /// Sets the health entry from the forked state (called at start-up).
    pub async fn report_health(&self) {
        let status = if self.is_forked() {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        };
        self.health
            .set_service_status(WITNESS_SERVICE, status)
            .await;
    }

    async fn trusted(&self) -> Result<Option<TrustedCheckpoint>, Rejection> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.trusted_checkpoint())
            .await
            .map_err(|e| store_error(StoreError::Corrupt(e.to_string())))?
            .map_err(store_error)
    }

    async fn fork(&self, trusted: &str, conflicting: &str, problem: String) -> Rejection {
        tracing::error!(
            witness = %self.name,
            %problem,
            "LOG FORK: the hub signed checkpoints that cannot both be true; evidence kept, no more cosignatures"
        );
        let store = Arc::clone(&self.store);
        let (t, c, p) = (
            trusted.to_string(),
            conflicting.to_string(),
            problem.clone(),
        );
        let now = crate::now_ms();
        // The fork stops cosigning whether or not its evidence could be kept; a lost record is
        // logged so the operator can save the checkpoints from this log.
        match tokio::task::spawn_blocking(move || store.record_fork(&t, &c, &p, now)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, trusted, conflicting, "cannot store the fork evidence")
            }
            Err(e) => {
                tracing::error!(error = %e, trusted, conflicting, "storing the fork evidence failed")
            }
        }
        self.forked.store(true, Ordering::Relaxed);
        self.health
            .set_service_status(WITNESS_SERVICE, ServingStatus::NotServing)
            .await;
        Rejection::new(
            RejectClass::Precondition,
            reasons::INCONSISTENT_CHECKPOINT,
            problem,
        )
    }

    /// tlog-witness add-checkpoint: `note` must be signed by the hub's log key, `old_size` must
    /// be the trusted size, and `proof` must prove `old_size` → the new size. Moves the trusted
    /// checkpoint forward and returns this witness's cosignature.
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Vec<u8>],
        note: &str,
    ) -> Result<NoteSignature, Rejection> {
        self.add_checkpoint_from(old_size, proof, note, true).await
    }

    /// [`Self::add_checkpoint`] for a caller that is not the hub (an admin): a proof that does
    /// not verify is refused but is not evidence against the hub, since the hub did not send it.
    pub async fn add_checkpoint_offered(
        &self,
        old_size: u64,
        proof: &[Vec<u8>],
        note: &str,
    ) -> Result<NoteSignature, Rejection> {
        self.add_checkpoint_from(old_size, proof, note, false).await
    }

    async fn add_checkpoint_from(
        &self,
        old_size: u64,
        proof: &[Vec<u8>],
        note: &str,
        from_hub: bool,
    ) -> Result<NoteSignature, Rejection> {
        let _guard = self.lock.lock().await;
        if self.is_forked() {
            return Err(Rejection::new(
                RejectClass::Precondition,
                reasons::INCONSISTENT_CHECKPOINT,
                "this witness has seen a fork of the log and cosigns nothing more; see GetWitnessStatus",
            ));
        }
        let (cp, _) = open_checkpoint(note, &self.log)?;
        let proof = match hashes(proof) {
            Ok(p) => p,
            Err(e) if from_hub => return Err(self.proof_failed(e.message)),
            Err(e) => return Err(e),
        };
        let trusted = self.trusted().await?;
        let trusted_size = trusted.as_ref().map(|t| t.size).unwrap_or(0);
        if old_size != trusted_size {
            return Err(Rejection::new(
                RejectClass::Precondition,
                "OLD_SIZE_MISMATCH",
                format!("this witness trusts tree size {trusted_size}, not {old_size}; send a proof from {trusted_size}"),
            )
            .with_meta("known_size", trusted_size.to_string()));
        }
        if cp.size < trusted_size {
            return Err(Rejection::new(
                RejectClass::Invalid,
                reasons::BAD_PROOF,
                format!(
                    "the checkpoint's tree size {} is smaller than the trusted size {trusted_size}: a log never shrinks",
                    cp.size
                ),
            ));
        }
        if let Some(t) = &trusted {
            if cp.size == t.size {
                if cp.root != t.root {
                    return Err(self
                        .fork(
                            &t.note,
                            note,
                            format!("two checkpoints of size {} with different roots", cp.size),
                        )
                        .await);
                }
            } else if let Err(e) =
                merkle::verify_consistency(t.size, cp.size, &t.root, &cp.root, &proof)
            {
                let problem = format!(
                    "the consistency proof from {} to {} does not verify: {}",
                    t.size, cp.size, e.message
                );
                if !from_hub {
                    return Err(Rejection::new(
                        RejectClass::Invalid,
                        reasons::BAD_PROOF,
                        problem,
                    ));
                }
                return Err(self.proof_failed(problem));
            }
        }
        let new = TrustedCheckpoint {
            size: cp.size,
            root: cp.root,
            note: note.to_string(),
        };
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.advance_trusted(trusted_size, &new))
            .await
            .map_err(|e| store_error(StoreError::Corrupt(e.to_string())))?
            .map_err(store_error)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        Ok(cosign(&cp, &self.name, &self.key, now))
    }

    /// Checks a hub checkpoint met anywhere (receipt, feed, poll) against the trusted one,
    /// fetching consistency proofs from the hub as needed. When it is newer, the witness moves
    /// to it and returns its cosignature for the caller to submit to the hub.
    pub async fn observe(
        &self,
        note: &str,
        hub: &mut HubServiceClient<Channel>,
    ) -> Result<(Checkpoint, Option<NoteSignature>), Rejection> {
        if let Some(cp) = self.seen_before(note) {
            return Ok((cp, None));
        }
        // Another path may move the trusted checkpoint between our read and our write; the
        // compare-and-swap then refuses and we look again.
        let mut attempts = 0;
        let observed = loop {
            match self.observe_once(note, hub).await {
                Err(e) if e.reason == "OLD_SIZE_MISMATCH" && attempts < 3 => attempts += 1,
                other => break other,
            }
        };
        if let Ok((cp, _)) = &observed {
            *self
                .last_observed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((note.to_string(), cp.clone()));
        }
        observed
    }

    /// The checkpoint of `note` if it is the note last accepted (and no fork was seen since).
    fn seen_before(&self, note: &str) -> Option<Checkpoint> {
        if self.is_forked() {
            return None;
        }
        let last = self
            .last_observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some((seen, cp)) if seen == note => Some(cp.clone()),
            _ => None,
        }
    }

    /// Submits `sig` (this witness's cosignature of the checkpoint of `size`) without making the
    /// caller wait: the mirror and the outbox go on with the next entry. When
    /// [`COSIGNATURES_IN_FLIGHT`] are already on their way it is left out; the witness loop
    /// cosigns the latest checkpoint at its next round.
    pub fn submit_in_background(
        &self,
        mut hub: HubServiceClient<Channel>,
        size: u64,
        sig: NoteSignature,
        timeout: std::time::Duration,
    ) {
        let Ok(slot) = Arc::clone(&self.cosign_slots).try_acquire_owned() else {
            tracing::debug!(
                size,
                "cosignature left to the witness loop (others in flight)"
            );
            return;
        };
        tokio::spawn(async move {
            if let Err(status) = submit_cosignature(&mut hub, size, &sig, timeout).await {
                tracing::debug!(
                    message = status.message(),
                    "cosignature not delivered; the witness loop retries"
                );
            }
            drop(slot);
        });
    }

    async fn observe_once(
        &self,
        note: &str,
        hub: &mut HubServiceClient<Channel>,
    ) -> Result<(Checkpoint, Option<NoteSignature>), Rejection> {
        let (cp, _) = open_checkpoint(note, &self.log)?;
        self.hub_size_seen.fetch_max(cp.size, Ordering::Relaxed);
        let trusted = self.trusted().await?;
        let Some(t) = trusted else {
            // First checkpoint this node sees: trust on first use, then every later one must
            // extend it.
            let sig = self.add_checkpoint(0, &[], note).await?;
            return Ok((cp, Some(sig)));
        };
        if cp.size > t.size {
            let proof = crate::bounded(
                self.call_timeout,
                hub.get_consistency_proof(v1::GetConsistencyProofRequest {
                    old_size: t.size,
                    new_size: cp.size,
                }),
            )
            .await
            .map_err(|s| {
                Rejection::new(
                    RejectClass::Precondition,
                    "HUB_UNAVAILABLE",
                    format!("consistency proof: {}", s.message()),
                )
            })?
            .into_inner();
            let sig = self.add_checkpoint(t.size, &proof.proof, note).await?;
            return Ok((cp, Some(sig)));
        }
        if cp.size == t.size {
            if cp.root != t.root {
                return Err(self
                    .fork(
                        &t.note,
                        note,
                        format!("two checkpoints of size {} with different roots", cp.size),
                    )
                    .await);
            }
            return Ok((cp, None));
        }
        // An older checkpoint: it must be a prefix of the trusted tree.
        let proof = crate::bounded(
            self.call_timeout,
            hub.get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: cp.size,
                new_size: t.size,
            }),
        )
        .await
        .map_err(|s| {
            Rejection::new(
                RejectClass::Precondition,
                "HUB_UNAVAILABLE",
                format!("consistency proof: {}", s.message()),
            )
        })?
        .into_inner();
        let proof = hashes(&proof.proof).map_err(|e| self.proof_failed(e.message))?;
        if let Err(e) = merkle::verify_consistency(cp.size, t.size, &cp.root, &t.root, &proof) {
            return Err(self.proof_failed(format!(
                "the proof that older checkpoint {} is a prefix of trusted checkpoint {} does not verify: {}",
                cp.size, t.size, e.message
            )));
        }
        Ok((cp, None))
    }

    /// What the witness trusts and what it has seen contradict it (`GetWitnessStatus`).
    pub async fn status(&self) -> Result<WitnessStatus, Rejection> {
        let trusted = self.trusted().await?;
        let store = Arc::clone(&self.store);
        let forks = tokio::task::spawn_blocking(move || store.forks())
            .await
            .map_err(|e| store_error(StoreError::Corrupt(e.to_string())))?
            .map_err(store_error)?;
        Ok(WitnessStatus {
            trusted: trusted.map(|t| (t.note, t.size)),
            forked: self.is_forked(),
            forks,
            name: self.name.clone(),
        })
    }
}

/// Verifies that `proof` places the statement `envelope` in the checkpoint `cp`.
pub fn verify_inclusion(
    cp: &Checkpoint,
    envelope: &rcpfed_core::envelope::SignedEnvelope,
    proof: &LogProof,
) -> Result<(), Rejection> {
    if proof.tree_size != cp.size {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::BAD_PROOF,
            format!(
                "the proof is for tree size {} but the checkpoint has size {}",
                proof.tree_size, cp.size
            ),
        ));
    }
    let leaf = envelope.leaf_hash();
    merkle::verify_inclusion(
        &leaf,
        proof.leaf_index,
        proof.tree_size,
        &hashes(&proof.inclusion_proof)?,
        &cp.root,
    )
}

/// Submits a cosignature to the hub, giving up after `timeout`.
pub async fn submit_cosignature(
    hub: &mut HubServiceClient<Channel>,
    size: u64,
    sig: &NoteSignature,
    timeout: std::time::Duration,
) -> Result<(), tonic::Status> {
    crate::bounded(
        timeout,
        hub.submit_cosignature(v1::SubmitCosignatureRequest {
            tree_size: size,
            cosignature: sig.to_line(),
        }),
    )
    .await
    .map(|_| ())
}

/// Polls the hub's latest checkpoint every `interval`, witnesses it and submits the
/// cosignature, until `shutdown`.
pub async fn run(
    witness: Arc<Witness>,
    channel: Channel,
    interval: std::time::Duration,
    call_timeout: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut hub = HubServiceClient::new(channel);
    let mut submitted: u64 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        if witness.is_forked() {
            continue;
        }
        let Ok(latest) = crate::bounded(
            call_timeout,
            hub.get_checkpoint(v1::GetCheckpointRequest {
                final_only: false,
                ..Default::default()
            }),
        )
        .await
        else {
            continue;
        };
        let latest = latest.into_inner();
        match witness.observe(&latest.checkpoint, &mut hub).await {
            Ok((cp, Some(sig))) => {
                if submit_cosignature(&mut hub, cp.size, &sig, call_timeout)
                    .await
                    .is_ok()
                {
                    submitted = cp.size;
                }
            }
            Ok((cp, None)) if cp.size != submitted => {
                // Trusted already (e.g. via a receipt) but our cosignature may not have
                // reached the hub: cosign the trusted checkpoint again.
                if let Ok(sig) = witness
                    .add_checkpoint(cp.size, &[], &latest.checkpoint)
                    .await
                    && submit_cosignature(&mut hub, cp.size, &sig, call_timeout)
                        .await
                        .is_ok()
                {
                    submitted = cp.size;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(reason = e.reason, message = %e.message, "checkpoint not witnessed")
            }
        }
    }
}

/// Checks that the statement at `feed_index` (its `envelope`, as stored by the hub) is in the
/// hub's log by the proof `log`, at a checkpoint consistent with everything this node has
/// witnessed, and submits this node's cosignature when the checkpoint is new. Used by the
/// mirror for feed entries and by the outbox for receipts.
pub async fn check_logged(
    witness: &Witness,
    hub: &mut HubServiceClient<Channel>,
    feed_index: u64,
    envelope: &SignedEnvelope,
    log: Option<&LogProof>,
    call_timeout: Duration,
) -> Result<(), Rejection> {
    let log = log.ok_or_else(|| {
        Rejection::new(
            RejectClass::Invalid,
            reasons::BAD_PROOF,
            "no inclusion proof came with the entry",
        )
    })?;
    if log.leaf_index + 1 != feed_index {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::BAD_PROOF,
            format!(
                "leaf index {} does not match feed index {feed_index}",
                log.leaf_index
            ),
        ));
    }
    let (cp, cosignature) = witness.observe(&log.checkpoint, hub).await?;
    verify_inclusion(&cp, envelope, log)?;
    if let Some(sig) = cosignature {
        witness.submit_in_background(hub.clone(), cp.size, sig, call_timeout);
    }
    Ok(())
}
