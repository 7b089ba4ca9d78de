//! The ingest sequencer: the one place that applies chain rules and writes statements.
//!
//! Handlers verify signatures and validate content concurrently, then hand verified statements
//! to one sequencer thread. It drains whatever is waiting (up to [`MAX_BATCH`]), applies the
//! chain rules in arrival order against the in-memory chain heads, signs receipts, and commits
//! the whole batch in one durable transaction (group commit) before it answers anyone. Only
//! after the commit do callers get their receipts and do feed subscribers wake up.
//!
//! Invariant: nothing is acknowledged before it is durable, and the in-memory heads always
//! equal the stored heads between batches (a failed commit reloads them from the store).

use rcpfed_core::Digest;
use rcpfed_core::checkpoint::{Checkpoint, sign_checkpoint};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::merkle::{self, Frontier, Hash};
use rcpfed_core::receipt::Receipt;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_store::{
    HubStore, NewCheckpoint, NewEquivocation, StoreError, StoredCheckpoint, StoredStatement,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// Most statements committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// A statement whose signature and content have been checked.
pub struct VerifiedStatement {
    /// Issuing node (the authenticated peer).
    pub node_id: String,
    /// Sequence number.
    pub seq: u64,
    /// Previous digest from the header.
    pub prev_digest: Option<Digest>,
    /// SHA-256 of the payload.
    pub digest: Digest,
    /// Payload type.
    pub payload_type: String,
    /// "policy_summary" or "indicator_snapshot".
    pub kind: &'static str,
    /// Logical document.
    pub document: String,
    /// Revision.
    pub revision: u32,
    /// The envelope bytes as stored.
    pub envelope: Vec<u8>,
    /// Its log leaf: SHA-256(0x00 || PAE(payload_type, payload)).
    pub leaf_hash: Hash,
}

/// What the sequencer answers.
#[derive(Debug)]
pub enum IngestOutcome {
    /// Newly accepted; the receipt bytes (an encoded receipt envelope).
    Accepted {
        /// Encoded signed receipt envelope.
        receipt: Vec<u8>,
        /// The statement's leaf index in the log.
        leaf_index: u64,
        /// The checkpoint committed with it.
        checkpoint: Arc<StoredCheckpoint>,
    },
    /// Already accepted earlier; the original receipt.
    Duplicate {
        /// Encoded signed receipt envelope.
        receipt: Vec<u8>,
        /// The statement's leaf index in the log.
        leaf_index: u64,
    },
}

/// Why the sequencer did not accept.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A chain rule refused it.
    #[error("{0}")]
    Rejected(Rejection),
    /// The store failed; nothing was acknowledged.
    #[error("store failure: {0}")]
    Store(String),
    /// The sequencer has stopped (shutdown).
    #[error("the hub is shutting down")]
    Stopped,
}

struct Job {
    statement: VerifiedStatement,
    reply: oneshot::Sender<Result<IngestOutcome, IngestError>>,
}

/// Handle to the sequencer thread.
#[derive(Clone)]
pub struct Ingest {
    tx: tokio::sync::mpsc::Sender<Job>,
    feed_head: watch::Receiver<u64>,
}

/// Identity the sequencer signs receipts with.
pub struct ReceiptSigner {
    /// Federation id.
    pub federation_id: String,
    /// Hub member id.
    pub hub_id: String,
    /// The hub's signing key.
    pub key: SecretKey,
}

impl Ingest {
    /// Loads the chain heads (cheap at any log size) and starts the sequencer thread.
    pub fn start(
        store: Arc<dyn HubStore>,
        signer: ReceiptSigner,
        metrics: crate::metrics::HubMetrics,
    ) -> Result<Self, StoreError> {
        let last_index = store.last_feed_index()?;
        let heads = load_heads(store.as_ref())?;
        let (frontier, _) = crate::log::load_frontier(store.as_ref())?;
        let frontier = if frontier.size() < last_index {
            backfill_log(store.as_ref(), &signer, frontier, last_index)?
        } else {
            frontier
        };
        if frontier.size() != last_index {
            return Err(StoreError::Corrupt(format!(
                "the log has {} leaves but the feed has {last_index} statements",
                frontier.size()
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(4 * MAX_BATCH);
        let (feed_tx, feed_head) = watch::channel(last_index);
        let origin = crate::log::origin(&signer.federation_id);
        let mut sequencer = Sequencer {
            store,
            signer,
            heads,
            last_index,
            feed_tx,
            metrics,
            frontier,
            origin,
        };
        std::thread::Builder::new()
            .name("rcpfed-ingest".into())
            .spawn(move || sequencer.run(rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start ingest thread: {e}")))?;
        Ok(Ingest { tx, feed_head })
    }

    /// Submits a verified statement and waits until it is durably stored (or refused).
    pub async fn submit(&self, statement: VerifiedStatement) -> Result<IngestOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        // The channel is bounded: a full queue pushes back on the caller instead of growing.
        self.tx
            .send(Job { statement, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }

    /// Watch the highest committed feed index.
    pub fn feed_head(&self) -> watch::Receiver<u64> {
        self.feed_head.clone()
    }
}

fn load_heads(store: &dyn HubStore) -> Result<HashMap<String, (u64, Digest)>, StoreError> {
    Ok(store
        .chain_heads()?
        .into_iter()
        .map(|h| (h.node_id, (h.seq, h.digest)))
        .collect())
}

struct Sequencer {
    store: Arc<dyn HubStore>,
    signer: ReceiptSigner,
    heads: HashMap<String, (u64, Digest)>,
    last_index: u64,
    feed_tx: watch::Sender<u64>,
    metrics: crate::metrics::HubMetrics,
    /// Right edge of the log, always equal to the committed log between batches.
    frontier: Frontier,
    /// Log origin and key name.
    origin: String,
}

/// A decision about one job within a batch, applied after the commit.
enum Decision {
    Accept(Vec<u8>, u64),
    Duplicate(Vec<u8>, u64),
    Refuse(Rejection),
    Fail(String),
}

impl Sequencer {
    fn run(&mut self, mut rx: tokio::sync::mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.process(jobs);
        }
        tracing::info!("ingest sequencer stopped");
    }

    fn process(&mut self, jobs: Vec<Job>) {
        let mut accepted: Vec<StoredStatement> = Vec::new();
        let mut evidence: Vec<NewEquivocation> = Vec::new();
        let mut log_nodes: Vec<(u8, u64, Hash)> = Vec::new();
        let mut decisions = Vec::with_capacity(jobs.len());
        // Statements accepted earlier in this batch, not yet in the store.
        let mut in_batch: HashMap<(String, u64), usize> = HashMap::new();
        let now_ms = now_ms();
        for job in &jobs {
            let decision = self.decide(
                &job.statement,
                now_ms,
                &mut accepted,
                &in_batch,
                &mut evidence,
            );
            if let Decision::Accept(..) = decision {
                log_nodes.extend(self.frontier.append(job.statement.leaf_hash));
                in_batch.insert(
                    (job.statement.node_id.clone(), job.statement.seq),
                    accepted.len() - 1,
                );
            }
            decisions.push(decision);
        }
        // The tentative statements were pushed by `decide`; commit them with the evidence.
        let mut checkpoint = None;
        if !accepted.is_empty() {
            match self.checkpoint(&log_nodes, now_ms) {
                Ok(cp) => checkpoint = Some(cp),
                Err(e) => {
                    tracing::error!(error = %e, "refusing to sign a checkpoint; nothing in this batch is acknowledged");
                    self.reload();
                    for job in jobs {
                        let _ = job.reply.send(Err(IngestError::Store(e.to_string())));
                    }
                    return;
                }
            }
        }
        if !accepted.is_empty() || !evidence.is_empty() {
            let started = std::time::Instant::now();
            if let Err(e) = self
                .store
                .append(&accepted, &evidence, &log_nodes, checkpoint.as_ref())
            {
                tracing::error!(error = %e, batch = jobs.len(), "commit failed; nothing in this batch is acknowledged");
                self.reload();
                for job in jobs {
                    let _ = job.reply.send(Err(IngestError::Store(e.to_string())));
                }
                return;
            }
            self.metrics
                .observe_commit(accepted.len(), started.elapsed());
            for st in &accepted {
                self.metrics.accepted(&st.node_id);
            }
            let _ = self.feed_tx.send(self.last_index);
        }
        let committed = checkpoint.map(|cp| {
            Arc::new(StoredCheckpoint {
                size: cp.size,
                root: cp.root,
                note: cp.note,
                created_at_ms: cp.created_at_ms,
                cosignature_count: 0,
            })
        });
        for (job, decision) in jobs.into_iter().zip(decisions) {
            let answer = match decision {
                Decision::Accept(receipt, leaf_index) => match &committed {
                    Some(cp) => Ok(IngestOutcome::Accepted {
                        receipt,
                        leaf_index,
                        checkpoint: Arc::clone(cp),
                    }),
                    None => Err(IngestError::Store("accepted without a checkpoint".into())),
                },
                Decision::Duplicate(receipt, leaf_index) => {
                    self.metrics.duplicate();
                    Ok(IngestOutcome::Duplicate {
                        receipt,
                        leaf_index,
                    })
                }
                Decision::Refuse(rejection) => {
                    self.metrics.rejected(rejection.reason);
                    Err(IngestError::Rejected(rejection))
                }
                Decision::Fail(message) => Err(IngestError::Store(message)),
            };
            let _ = job.reply.send(answer);
        }
    }

    /// Signs the checkpoint for the log after this batch, after recomputing the root from the
    /// stored and new nodes and checking it against the frontier (a corrupted node must never
    /// be signed into a checkpoint).
    fn checkpoint(
        &self,
        log_nodes: &[(u8, u64, Hash)],
        now_ms: i64,
    ) -> Result<NewCheckpoint, StoreError> {
        let size = self.frontier.size();
        let root = self.frontier.root();
        let pending: HashMap<(u8, u64), Hash> = log_nodes
            .iter()
            .map(|(level, index, hash)| ((*level, *index), *hash))
            .collect();
        let recomputed = merkle::root(
            &crate::log::OverlaySource {
                store: self.store.as_ref(),
                pending: &pending,
            },
            size,
        )?;
        if recomputed != root {
            return Err(StoreError::Corrupt(format!(
                "recomputed root of size {size} differs from the in-memory root: the stored log is damaged"
            )));
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        };
        let note = sign_checkpoint(&cp, &self.origin, &self.signer.key)
            .map_err(|e| StoreError::Corrupt(format!("cannot sign checkpoint: {e}")))?;
        Ok(NewCheckpoint {
            size,
            root,
            note,
            created_at_ms: now_ms,
        })
    }

    /// After a failed batch: in-memory state back to what is committed.
    fn reload(&mut self) {
        match load_heads(self.store.as_ref()) {
            Ok(heads) => self.heads = heads,
            Err(e) => tracing::error!(error = %e, "cannot reload chain heads"),
        }
        if let Ok(last) = self.store.last_feed_index() {
            self.last_index = last;
        }
        match crate::log::load_frontier(self.store.as_ref()) {
            Ok((frontier, _)) => self.frontier = frontier,
            Err(e) => tracing::error!(error = %e, "cannot reload the log frontier"),
        }
    }

    /// Applies the chain rules to one statement. On acceptance pushes the stored form onto
    /// `accepted` and advances the in-memory head.
    fn decide(
        &mut self,
        st: &VerifiedStatement,
        now_ms: i64,
        accepted: &mut Vec<StoredStatement>,
        in_batch: &HashMap<(String, u64), usize>,
        evidence: &mut Vec<NewEquivocation>,
    ) -> Decision {
        let head = self.heads.get(&st.node_id).copied();
        let head_seq = head.map(|(seq, _)| seq).unwrap_or(0);
        if st.seq <= head_seq {
            // Already used: a retry of the same statement, or equivocation.
            let existing = match in_batch.get(&(st.node_id.clone(), st.seq)) {
                Some(&i) => accepted.get(i).cloned(),
                None => match self.store.statement_by_node_seq(&st.node_id, st.seq) {
                    Ok(found) => found,
                    Err(e) => return Decision::Fail(e.to_string()),
                },
            };
            let Some(existing) = existing else {
                return Decision::Fail(format!(
                    "chain head of {} is {head_seq} but statement {} is missing",
                    st.node_id, st.seq
                ));
            };
            if existing.digest == st.digest {
                return Decision::Duplicate(existing.receipt, existing.feed_index - 1);
            }
            tracing::warn!(
                node = %st.node_id,
                seq = st.seq,
                accepted = %existing.digest,
                conflicting = %st.digest,
                "EQUIVOCATION: node signed two different statements with the same seq; evidence kept"
            );
            self.metrics.equivocation(&st.node_id);
            evidence.push(NewEquivocation {
                node_id: st.node_id.clone(),
                seq: st.seq,
                accepted_digest: existing.digest,
                conflicting_digest: st.digest,
                conflicting_envelope: st.envelope.clone(),
                detected_at_ms: now_ms,
            });
            return Decision::Refuse(
                Rejection::new(
                    RejectClass::Conflict,
                    reasons::EQUIVOCATION,
                    format!(
                        "{} already has a different statement with seq {} (digest {}); both are kept as equivocation evidence",
                        st.node_id, st.seq, existing.digest
                    ),
                )
                .with_meta("node_id", st.node_id.clone())
                .with_meta("seq", st.seq.to_string())
                .with_meta("accepted_digest", existing.digest.to_hex()),
            );
        }
        let expected = head_seq + 1;
        if st.seq != expected {
            return Decision::Refuse(
                Rejection::new(
                    RejectClass::Precondition,
                    reasons::SEQ_GAP,
                    format!(
                        "seq {} skips ahead: the next statement of {} must have seq {expected}",
                        st.seq, st.node_id
                    ),
                )
                .with_meta("expected_seq", expected.to_string()),
            );
        }
        let expected_prev = head.map(|(_, digest)| digest);
        if st.prev_digest != expected_prev {
            let expected_text = expected_prev.map(|d| d.to_hex()).unwrap_or_default();
            return Decision::Refuse(
                Rejection::new(
                    RejectClass::Precondition,
                    reasons::PREV_DIGEST_MISMATCH,
                    format!(
                        "prev_digest does not match the digest of {}'s statement {head_seq} ({})",
                        st.node_id,
                        if expected_text.is_empty() {
                            "none: seq 1 has no predecessor"
                        } else {
                            &expected_text
                        }
                    ),
                )
                .with_meta("expected_prev_digest", expected_text),
            );
        }
        self.last_index += 1;
        let receipt = Receipt {
            federation_id: self.signer.federation_id.clone(),
            hub_id: self.signer.hub_id.clone(),
            node_id: st.node_id.clone(),
            seq: st.seq,
            statement_digest: st.digest,
            feed_index: self.last_index,
            accepted_at: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(now_ms) * 1_000_000,
            )
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        }
        .sign(&self.signer.key)
        .encode();
        self.heads.insert(st.node_id.clone(), (st.seq, st.digest));
        let stored = StoredStatement {
            feed_index: self.last_index,
            node_id: st.node_id.clone(),
            seq: st.seq,
            digest: st.digest,
            payload_type: st.payload_type.clone(),
            kind: st.kind.to_string(),
            document: st.document.clone(),
            revision: st.revision,
            envelope: st.envelope.clone(),
            receipt: receipt.clone(),
            accepted_at_ms: now_ms,
        };
        accepted.push(stored);
        Decision::Accept(receipt, self.last_index - 1)
    }
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Builds the log for statements stored before the log existed (a one-time migration): each
/// stored envelope becomes a leaf in feed order, then one checkpoint is signed.
fn backfill_log(
    store: &dyn HubStore,
    signer: &ReceiptSigner,
    mut frontier: Frontier,
    last_index: u64,
) -> Result<Frontier, StoreError> {
    tracing::warn!(
        from = frontier.size(),
        to = last_index,
        "building the transparency log for statements stored before it existed"
    );
    let mut after = frontier.size();
    while after < last_index {
        let rows =
            store.list_statements(&rcpfed_store::StatementFilter::default(), after, 10_000)?;
        if rows.is_empty() {
            break;
        }
        let mut nodes = Vec::new();
        for st in &rows {
            if st.feed_index != frontier.size() + 1 {
                return Err(StoreError::Corrupt(format!(
                    "feed index {} is out of order",
                    st.feed_index
                )));
            }
            nodes.extend(frontier.append(crate::log::leaf_of_envelope(&st.envelope)?));
            after = st.feed_index;
        }
        let origin = crate::log::origin(&signer.federation_id);
        let cp = Checkpoint {
            origin: origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
            extensions: Vec::new(),
        };
        let note = sign_checkpoint(&cp, &origin, &signer.key)
            .map_err(|e| StoreError::Corrupt(format!("cannot sign checkpoint: {e}")))?;
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        store.append(
            &[],
            &[],
            &nodes,
            Some(&NewCheckpoint {
                size: cp.size,
                root: cp.root,
                note,
                created_at_ms: now,
            }),
        )?;
    }
    Ok(frontier)
}
