//! The ingest sequencer: the one place that applies chain rules and writes statements.
//!
//! Handlers verify signatures and validate content concurrently, then hand verified statements
//! to one sequencer thread. It drains whatever is waiting (up to [`MAX_BATCH`]), applies the
//! chain rules in arrival order against the in-memory chain heads, signs receipts and the
//! batch's checkpoint, and hands the batch to a committer thread, which writes it in one
//! durable transaction (group commit) and only then answers its callers and wakes feed
//! subscribers. The two are pipelined: batch N+1 is decided and signed while batch N is
//! written and synced (when at least as many jobs wait as N holds, so batches do not shrink),
//! and batches are committed in the order they were decided.
//!
//! Invariant: nothing is acknowledged before it is durable. The in-memory heads are the
//! stored heads plus the batches in flight; when a batch fails, it and every batch decided
//! on top of it are refused (none of them acknowledged) and the sequencer reloads its state
//! from the store before it decides anything else.
//!
//! Indicator snapshots also get their revision check here (APPEND needs no value in force,
//! REPLACE and DELETE need one), after the chain rules so that a resubmitted accepted
//! snapshot still gets its original receipt. The check reads the committed view, which
//! does not yet hold the statements in flight: a snapshot of a node and indicator that has
//! one in flight is therefore deferred until what is in flight is committed, together with
//! every later statement of that node (its chain order must not change).
//!
//! The commit stores a chunked snapshot and its chunks but not its view: a view applier
//! thread applies it afterwards from the stored chunks (see `HubStore::apply_view_step`),
//! so a large snapshot never holds up other members' statements. Until it has, the view
//! lags the log, and a later snapshot of the same node and indicator is deferred the same
//! way, until the view applier has passed the earlier one.

use crate::staged::{ActionsChecked, StagedChunks, StagedSnapshot};
use rcpfed_core::Digest;
use rcpfed_core::admission::actions;
use rcpfed_core::checkpoint::{Checkpoint, sign_checkpoint};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::limits::{IN_FLIGHT_WAIT_MS, IN_FLIGHT_WINDOW};
use rcpfed_core::merkle::{Frontier, Hash};
use rcpfed_core::receipt::Receipt;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_core::statement::{Body, Observation, Statement};
use rcpfed_store::{
    DecodedStatement, HubStore, NewCheckpoint, NewEquivocation, StoreError, StoredCheckpoint,
    StoredStatement,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Most statements committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// Most revision-check violations reported for one snapshot.
pub use actions::MAX_ACTION_VIOLATIONS;

/// A snapshot's observations, for the revision check.
#[derive(Debug)]
pub struct SnapshotPayload {
    /// The indicator.
    pub indicator: String,
    /// The observations, in snapshot order.
    pub observations: SnapshotObservations,
}

/// Where a snapshot's observations are.
#[derive(Debug)]
pub enum SnapshotObservations {
    /// In the statement itself (bounded by the payload limit): the decoded statement, shared
    /// with [`VerifiedStatement::decoded`].
    Inline(Arc<Statement>),
    /// A chunked snapshot's chunks, staged as they arrived, checked against the signed
    /// manifest. They are stored in the transaction that stores the statement, and only if
    /// it is accepted: a refused snapshot leaves no chunk behind.
    Staged(Arc<StagedSnapshot>),
}

impl SnapshotPayload {
    /// The action check of these observations against what `node_id` has in force.
    fn check_actions(
        &self,
        store: &dyn crate::HubBackend,
        node_id: &str,
    ) -> Result<Vec<rcpfed_core::rejection::Violation>, StoreError> {
        match &self.observations {
            SnapshotObservations::Inline(statement) => store.check_observation_actions(
                node_id,
                &self.indicator,
                inline_observations(statement),
                MAX_ACTION_VIOLATIONS,
            ),
            SnapshotObservations::Staged(staged) => {
                staged.check_actions(store, node_id, &self.indicator, MAX_ACTION_VIOLATIONS)
            }
        }
    }

    /// The action check made while a chunked snapshot arrived.
    fn actions_checked(&self) -> Option<&crate::staged::ActionsChecked> {
        match &self.observations {
            SnapshotObservations::Staged(staged) => staged.actions_checked(),
            SnapshotObservations::Inline(_) => None,
        }
    }
}

/// The observations of an inline snapshot (none for any other body).
fn inline_observations(statement: &Statement) -> &[Observation] {
    match &statement.body {
        Body::Indicators(snapshot) => &snapshot.observations,
        Body::Policy(_) => &[],
    }
}

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
    /// For an indicator snapshot: its observations, checked against the committed view.
    pub snapshot: Option<Arc<SnapshotPayload>>,
    /// The statement as verified, handed to the store's apply step at the commit so that it
    /// does not decode the envelope again (none for hub documents and chunked snapshots,
    /// whose view the store applies from the stored envelope and chunks).
    pub decoded: DecodedStatement,
}

impl VerifiedStatement {
    /// A chunked snapshot's staged chunks.
    pub fn staged(&self) -> Option<&Arc<StagedSnapshot>> {
        match &self.snapshot.as_deref()?.observations {
            SnapshotObservations::Staged(staged) => Some(staged),
            SnapshotObservations::Inline(_) => None,
        }
    }
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
        /// The log nodes its inclusion proof against that checkpoint is built from.
        tree: Arc<crate::log::BatchTree>,
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
    /// The store could not take the batch (full disk or quota, I/O error): nothing of it was
    /// acknowledged, the sequencer is back at the committed state and tries the next batch
    /// afresh. Answered with UNAVAILABLE, see `rcpfed_grpc::status::store_status`.
    #[error("store unavailable: {0}")]
    Unavailable(Arc<StoreError>),
    /// The sequencer has stopped (shutdown).
    #[error("the hub is shutting down")]
    Stopped,
    /// This hub process stands by: another one holds the hub lease and sequences.
    #[error("this hub is a standby and does not sequence")]
    NotLeader,
}

struct Job {
    statement: VerifiedStatement,
    reply: oneshot::Sender<Result<IngestOutcome, IngestError>>,
}

/// Handle to the sequencer thread.
#[derive(Clone)]
pub struct Ingest {
    /// None on a standby hub, which sequences nothing.
    tx: Option<tokio::sync::mpsc::Sender<Job>>,
    feed_head: watch::Receiver<u64>,
    /// How far the view is applied (the store's view cursor).
    view_applied: watch::Receiver<u64>,
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
    /// Loads the chain heads (cheap at any log size) and starts the sequencer thread and the
    /// committer thread behind it.
    pub fn start(
        store: Arc<dyn crate::HubBackend>,
        signer: ReceiptSigner,
        metrics: crate::metrics::HubMetrics,
    ) -> Result<Self, StoreError> {
        let (mut sequencer, feed_head) = Sequencer::load(store, signer, metrics)?;
        let view_applied = sequencer.view_applied.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(4 * MAX_BATCH);
        let mut committer = sequencer
            .committer
            .take()
            .ok_or_else(|| StoreError::Corrupt("the committer was already started".into()))?;
        // A rendezvous: at most one decided batch waits while the one before it is written,
        // so a batch holds what arrived during that write.
        let (to_commit, batches) = std::sync::mpsc::sync_channel::<Batch>(0);
        let (done_tx, done) = std::sync::mpsc::channel::<Finished>();
        let applier = sequencer
            .view_applier
            .take()
            .ok_or_else(|| StoreError::Corrupt("the view applier was already started".into()))?;
        let wake_applier = applier.wake_sender();
        std::thread::Builder::new()
            .name("rcpfed-view".into())
            .spawn(move || applier.run())
            .map_err(|e| StoreError::Corrupt(format!("cannot start the view applier: {e}")))?;
        std::thread::Builder::new()
            .name("rcpfed-commit".into())
            .spawn(move || {
                for batch in batches {
                    let generation = batch.generation;
                    let committed = committer.commit(batch);
                    // Whatever the commit left to the background (a chunked snapshot's view).
                    if committed {
                        let _ = wake_applier.send(());
                    }
                    if done_tx
                        .send(Finished {
                            generation,
                            committed,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the commit thread: {e}")))?;
        std::thread::Builder::new()
            .name("rcpfed-ingest".into())
            .spawn(move || sequencer.run(rx, to_commit, done))
            .map_err(|e| StoreError::Corrupt(format!("cannot start ingest thread: {e}")))?;
        Ok(Ingest {
            tx: Some(tx),
            feed_head,
            view_applied,
        })
    }

    /// The handle of a standby hub: nothing is sequenced ([`IngestError::NotLeader`]), and the
    /// feed head is what the leader committed, as `feed_head` (polled from the store) says.
    pub fn standby(feed_head: watch::Receiver<u64>) -> Self {
        Ingest {
            tx: None,
            view_applied: feed_head.clone(),
            feed_head,
        }
    }

    /// Submits a verified statement and waits until it is durably stored (or refused).
    pub async fn submit(&self, statement: VerifiedStatement) -> Result<IngestOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        let Some(tx) = &self.tx else {
            return Err(IngestError::NotLeader);
        };
        // The channel is bounded: a full queue pushes back on the caller instead of growing.
        tx.send(Job { statement, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }

    /// Watch the highest committed feed index.
    pub fn feed_head(&self) -> watch::Receiver<u64> {
        self.feed_head.clone()
    }

    /// Watch how far the indicator view is applied (at most the feed head; below it while
    /// the view applier works through a chunked snapshot).
    pub fn view_applied(&self) -> watch::Receiver<u64> {
        self.view_applied.clone()
    }
}

/// Applies to the view what the commits left to the background, in feed order, on a thread
/// of its own; woken by the committer after each commit. Its work is durable transaction by
/// transaction, so after a crash it resumes from the store's view cursor.
struct ViewApplier {
    store: Arc<dyn crate::HubBackend>,
    feed_head: watch::Receiver<u64>,
    applied: watch::Sender<u64>,
    wake: std::sync::mpsc::Receiver<()>,
    wake_tx: std::sync::mpsc::Sender<()>,
}

/// How long the view applier waits after a failed step before it tries again.
const VIEW_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl ViewApplier {
    fn wake_sender(&self) -> std::sync::mpsc::Sender<()> {
        self.wake_tx.clone()
    }

    /// Runs until every wake sender (the committer) is gone.
    fn run(self) {
        let ViewApplier {
            store,
            feed_head,
            applied,
            wake,
            wake_tx,
        } = self;
        drop(wake_tx);
        loop {
            let head = *feed_head.borrow();
            if *applied.borrow() < head {
                match Self::catch_up(store.as_ref(), head) {
                    Ok(through) => {
                        applied.send_replace(through);
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, applied = *applied.borrow(), head, "the view could not be applied; trying again");
                        std::thread::sleep(VIEW_RETRY);
                        continue;
                    }
                }
            }
            if wake.recv().is_err() {
                break;
            }
            while wake.try_recv().is_ok() {}
        }
    }

    /// One step towards `head`: nothing to do when the commit applied the view itself (a
    /// read), otherwise one transaction of the store's background apply.
    fn catch_up(store: &dyn crate::HubBackend, head: u64) -> Result<u64, StoreError> {
        let through = store.applied_feed_size()?;
        if through >= head {
            return Ok(through);
        }
        let started = std::time::Instant::now();
        let through = store.apply_view_step()?;
        tracing::debug!(
            through,
            head,
            ms = started.elapsed().as_millis(),
            "view applied in the background"
        );
        Ok(through)
    }
}

fn load_heads(store: &dyn HubStore) -> Result<HashMap<String, (u64, Digest)>, StoreError> {
    Ok(store
        .chain_heads()?
        .into_iter()
        .map(|h| (h.node_id, (h.seq, h.digest)))
        .collect())
}

/// What the sequencer remembers of a statement accepted in a batch that may not be committed
/// yet: enough to answer a retry with its receipt or to see an equivocation.
#[derive(Clone)]
struct Known {
    digest: Digest,
    receipt: Vec<u8>,
    feed_index: u64,
}

/// What a batch handed to the committer added to the sequencer's in-flight state, forgotten
/// once the committer reports on the batch.
#[derive(Default)]
struct InFlight {
    /// Jobs in the batch (decided, deferred ones not counted).
    jobs: usize,
    statements: Vec<(String, u64)>,
    snapshots: Vec<(String, String)>,
}

/// The committer's report on one batch, in batch order.
struct Finished {
    generation: u64,
    committed: bool,
}

/// A decided batch: what the committer stores in one transaction, and the answers it sends
/// once that is durable.
struct Batch {
    /// The sequencer's generation when it decided the batch (see [`Committer::failed`]).
    generation: u64,
    accepted: Vec<StoredStatement>,
    /// The staged chunks of the accepted chunked snapshots, stored with them.
    staged: Vec<Arc<StagedSnapshot>>,
    evidence: Vec<NewEquivocation>,
    log_nodes: Vec<(u8, u64, Hash)>,
    checkpoint: Option<NewCheckpoint>,
    /// The nodes the receipts' inclusion proofs are built from.
    tree: Option<Arc<crate::log::BatchTree>>,
    /// Why the batch cannot be committed at all (its checkpoint could not be signed).
    unsigned: Option<StoreError>,
    decided: Vec<(Job, Decision)>,
    /// The feed head once the batch is committed.
    last_index: u64,
}

/// Why a batch was not committed, as its callers are told.
#[derive(Clone)]
enum Failure {
    Unavailable(Arc<StoreError>),
    Other(String),
}

impl Failure {
    fn of(error: StoreError) -> Self {
        if error.is_unavailable() {
            Failure::Unavailable(Arc::new(error))
        } else {
            Failure::Other(error.to_string())
        }
    }

    fn answer(&self) -> IngestError {
        match self {
            Failure::Unavailable(e) => IngestError::Unavailable(Arc::clone(e)),
            Failure::Other(message) => IngestError::Store(message.clone()),
        }
    }
}

/// Writes decided batches in order, each in one durable transaction, then answers its jobs
/// and wakes the feed. Runs on a thread of its own, so the sequencer decides and signs the
/// next batch while this one is written and synced.
struct Committer {
    store: Arc<dyn crate::HubBackend>,
    metrics: crate::metrics::HubMetrics,
    feed_tx: watch::Sender<u64>,
    /// The generation of the last batch that failed, and why. Every later batch of that
    /// generation was decided on top of the failed one, so it is refused the same way; the
    /// sequencer reloads from the store and starts a new generation.
    failed: Option<(u64, Failure)>,
}

impl Committer {
    /// Commits one batch and answers its jobs; false if nothing of it was committed.
    fn commit(&mut self, batch: Batch) -> bool {
        let Batch {
            generation,
            accepted,
            staged,
            evidence,
            log_nodes,
            checkpoint,
            tree,
            unsigned,
            decided,
            last_index,
        } = batch;
        if let Some((failed, failure)) = &self.failed
            && *failed == generation
        {
            refuse_batch(decided, failure);
            return false;
        }
        if let Some(e) = unsigned {
            tracing::error!(error = %e, "refusing to sign a checkpoint; nothing in this batch is acknowledged");
            return self.fail(generation, decided, e);
        }
        if !accepted.is_empty() || !evidence.is_empty() {
            let started = std::time::Instant::now();
            if let Err(e) = self.store.append_streamed(
                &accepted,
                &mut StagedChunks::new(&staged),
                &evidence,
                &log_nodes,
                checkpoint.as_ref(),
            ) {
                tracing::error!(error = %e, batch = decided.len(), "commit failed; nothing in this batch is acknowledged");
                return self.fail(generation, decided, e);
            }
            // The scratch files go.
            drop(staged);
            self.metrics
                .observe_commit(accepted.len(), started.elapsed());
            if let Some(cp) = &checkpoint {
                self.metrics.checkpoint_issued(cp.size, cp.created_at_ms);
            }
            for st in &accepted {
                self.metrics.accepted(&st.node_id);
            }
            let _ = self.feed_tx.send(last_index);
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
        for (job, decision) in decided {
            let answer = match decision {
                Decision::Accept(receipt, leaf_index) => match (&committed, &tree) {
                    (Some(cp), Some(tree)) => Ok(IngestOutcome::Accepted {
                        receipt,
                        leaf_index,
                        checkpoint: Arc::clone(cp),
                        tree: Arc::clone(tree),
                    }),
                    _ => Err(IngestError::Store("accepted without a checkpoint".into())),
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
        true
    }

    fn fail(&mut self, generation: u64, decided: Vec<(Job, Decision)>, error: StoreError) -> bool {
        let failure = Failure::of(error);
        refuse_batch(decided, &failure);
        self.failed = Some((generation, failure));
        false
    }
}

struct Sequencer {
    store: Arc<dyn crate::HubBackend>,
    signer: ReceiptSigner,
    heads: HashMap<String, (u64, Digest)>,
    last_index: u64,
    metrics: crate::metrics::HubMetrics,
    /// Right edge of the log, including the batches handed to the committer.
    frontier: Frontier,
    /// Log origin and key name.
    origin: String,
    /// The latest time stamped on a receipt or checkpoint (unix ms): stamps never go below it,
    /// so a clock stepping backwards cannot put receipts or checkpoints out of order.
    last_stamp_ms: i64,
    /// Statements accepted in batches not yet reported committed, by (node, seq): the store
    /// does not show them yet.
    in_flight: HashMap<(String, u64), Known>,
    /// (node, indicator) of snapshots accepted in batches not yet reported committed: the
    /// committed view the revision check reads does not show them yet.
    in_flight_snapshots: HashSet<(String, String)>,
    /// Batches handed to the committer and not yet reported on, oldest first.
    pending: VecDeque<InFlight>,
    /// (node, indicator) of accepted snapshots, with the feed index of the latest one, whose
    /// view may not be applied yet: deferred like `in_flight_snapshots` until the view
    /// applier has passed that index. Forgotten once it has.
    awaiting_view: HashMap<(String, String), u64>,
    /// How far the view is applied, as the view applier reports it.
    view_applied: watch::Receiver<u64>,
    /// (node, indicator) of snapshots accepted since this sequencer started, and of those
    /// stored but not in the view when it started, with the feed index of the latest: an
    /// action check made before against the view applied through `i` stands if nothing of
    /// its node and indicator here is after `i` (and `i` is at least `view_at_start`).
    latest_snapshot: HashMap<(String, String), u64>,
    /// How far the view was applied when this sequencer started.
    view_at_start: u64,
    /// Taken by [`Ingest::start`] onto its own thread.
    view_applier: Option<ViewApplier>,
    /// Bumped whenever a batch fails and the state is reloaded from the store.
    generation: u64,
    /// Taken by [`Ingest::start`] onto its own thread; kept here for [`Sequencer::process`].
    committer: Option<Committer>,
    /// Statements that arrived ahead of their node's next seq (within [`IN_FLIGHT_WINDOW`]),
    /// by node, waiting for their predecessor: at most [`IN_FLIGHT_WINDOW`] per node.
    parked: HashMap<String, Vec<Parked>>,
}

/// A statement waiting for its predecessor to be decided.
struct Parked {
    job: Job,
    /// When it is refused with `SEQ_GAP` if its predecessor has not been decided by then.
    until: Instant,
}

/// How long a statement ahead of its node's head waits for its predecessor.
const PARK_WAIT: Duration = Duration::from_millis(IN_FLIGHT_WAIT_MS);

impl Sequencer {
    /// Loads the chain heads and the log's right edge (building the log for statements
    /// stored before it existed).
    fn load(
        store: Arc<dyn crate::HubBackend>,
        signer: ReceiptSigner,
        metrics: crate::metrics::HubMetrics,
    ) -> Result<(Self, watch::Receiver<u64>), StoreError> {
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
        let (feed_tx, feed_head) = watch::channel(last_index);
        let applied_through = store.applied_feed_size()?;
        let awaiting_view = unapplied_snapshots(store.as_ref(), applied_through, last_index)?;
        let latest_snapshot = awaiting_view.clone();
        let (applied_tx, view_applied) = watch::channel(applied_through);
        let (wake_tx, wake) = std::sync::mpsc::channel();
        let view_applier = ViewApplier {
            store: Arc::clone(&store),
            feed_head: feed_head.clone(),
            applied: applied_tx,
            wake,
            wake_tx,
        };
        let origin = crate::log::origin(&signer.federation_id);
        // Every accepted batch stores a checkpoint stamped like its receipts.
        let last_stamp_ms = store
            .latest_checkpoint()?
            .map_or(i64::MIN, |cp| cp.created_at_ms);
        let committer = Committer {
            store: Arc::clone(&store),
            metrics: metrics.clone(),
            feed_tx,
            failed: None,
        };
        let sequencer = Sequencer {
            store,
            signer,
            heads,
            last_index,
            metrics,
            frontier,
            origin,
            last_stamp_ms,
            in_flight: HashMap::new(),
            in_flight_snapshots: HashSet::new(),
            pending: VecDeque::new(),
            awaiting_view,
            view_applied,
            latest_snapshot,
            view_at_start: applied_through,
            view_applier: Some(view_applier),
            generation: 0,
            committer: Some(committer),
            parked: HashMap::new(),
        };
        Ok((sequencer, feed_head))
    }
}

/// A decision about one job within a batch, applied after the commit.
enum Decision {
    Accept(Vec<u8>, u64),
    Duplicate(Vec<u8>, u64),
    Refuse(Rejection),
    Fail(String),
}

impl Sequencer {
    /// Decides batch after batch and hands each to the committer; the next batch is decided
    /// while the previous one is written.
    fn run(
        &mut self,
        mut rx: tokio::sync::mpsc::Receiver<Job>,
        to_commit: std::sync::mpsc::SyncSender<Batch>,
        done: std::sync::mpsc::Receiver<Finished>,
    ) {
        // Only a clock: a parked statement is refused when its wait is over even if no other
        // statement arrives.
        let timer = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(timer) => timer,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sequencer's timer; no statements are accepted");
                return;
            }
        };
        // Jobs deferred by the previous batch go first, in their arrival order.
        let mut deferred: Vec<Job> = Vec::new();
        loop {
            while let Ok(finished) = done.try_recv() {
                self.finished(finished);
            }
            // Deferred jobs wait for what is in flight to be committed (a snapshot's revision
            // check reads the committed view).
            if !deferred.is_empty() {
                while !self.pending.is_empty() {
                    match done.recv() {
                        Ok(finished) => self.finished(finished),
                        Err(_) => return,
                    }
                }
                // Jobs waiting for the view applier: new jobs of other nodes go ahead, and
                // so does the refusal of a parked statement whose wait is over.
                while rx.is_empty()
                    && !rx.is_closed()
                    && self.all_wait_for_view(&deferred)
                    && !self.parked_wait_over(Instant::now())
                {
                    std::thread::sleep(VIEW_POLL);
                }
            }
            // Deciding early shrinks batches when few jobs wait (each node has one statement
            // in flight, and the callers of the batch being written are waiting for it):
            // the next batch is decided while one is written only if at least as many jobs
            // wait as it holds; otherwise the write ends first and the batch takes all.
            if deferred.is_empty() && self.pending.back().is_some_and(|last| rx.len() < last.jobs) {
                while !self.pending.is_empty() {
                    match done.recv() {
                        Ok(finished) => self.finished(finished),
                        Err(_) => return,
                    }
                }
            }
            self.expire_parked(Instant::now());
            let mut jobs = std::mem::take(&mut deferred);
            if jobs.is_empty() {
                match self.next_job(&mut rx, &timer) {
                    Received::Job(first) => jobs.push(*first),
                    Received::ParkedDue => continue,
                    Received::Closed => break,
                }
            }
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            // A failure reported while this thread waited for jobs: reload before deciding,
            // rather than decide on top of it and have the batch refused.
            while let Ok(finished) = done.try_recv() {
                self.finished(finished);
            }
            let (batch, later) = self.decide_batch(jobs);
            deferred = later;
            if to_commit.send(batch).is_err() {
                tracing::error!("the commit thread has stopped; no more statements are accepted");
                break;
            }
        }
        tracing::info!("ingest sequencer stopped");
    }

    /// Whether some parked statement has waited its time.
    fn parked_wait_over(&self, now: Instant) -> bool {
        self.parked
            .values()
            .flatten()
            .any(|parked| parked.until <= now)
    }

    /// The next job; or nothing once the earliest parked statement's wait is over.
    fn next_job(
        &self,
        rx: &mut tokio::sync::mpsc::Receiver<Job>,
        timer: &tokio::runtime::Runtime,
    ) -> Received {
        let due = self
            .parked
            .values()
            .flatten()
            .map(|parked| parked.until)
            .min();
        let received = match due {
            None => rx.blocking_recv(),
            Some(due) => {
                // The timer is made inside the runtime, which drives it.
                let wait = async { tokio::time::timeout_at(due.into(), rx.recv()).await };
                match timer.block_on(wait) {
                    Ok(received) => received,
                    Err(_) => return Received::ParkedDue,
                }
            }
        };
        match received {
            Some(job) => Received::Job(Box::new(job)),
            None => Received::Closed,
        }
    }

    /// Decides one batch and commits it on this thread; returns the jobs deferred to the
    /// next batch.
    #[cfg(test)]
    fn process(&mut self, jobs: Vec<Job>) -> Vec<Job> {
        let (batch, deferred) = self.decide_batch(jobs);
        let generation = batch.generation;
        let committed = match self.committer.as_mut() {
            Some(committer) => committer.commit(batch),
            None => false,
        };
        self.catch_up_view();
        self.finished(Finished {
            generation,
            committed,
        });
        deferred
    }

    /// Whether every job of `jobs` would be deferred again for a view not yet applied (its
    /// own snapshot's, or an earlier job's of its node).
    fn all_wait_for_view(&mut self, jobs: &[Job]) -> bool {
        let applied = *self.view_applied.borrow();
        self.awaiting_view.retain(|_, index| *index > applied);
        let mut held: HashSet<&str> = HashSet::new();
        for job in jobs {
            let st = &job.statement;
            if !held.contains(st.node_id.as_str()) && !self.waits_for_view(st) {
                return false;
            }
            held.insert(&st.node_id);
        }
        true
    }

    /// Whether `st` is a snapshot of a node and indicator with a snapshot whose view is not
    /// applied yet (the action check would read a view without it).
    fn waits_for_view(&self, st: &VerifiedStatement) -> bool {
        st.snapshot.as_ref().is_some_and(|s| {
            self.awaiting_view
                .get(&(st.node_id.clone(), s.indicator.clone()))
                .is_some_and(|index| *index > *self.view_applied.borrow())
        })
    }

    /// The view applier's work, done on this thread at once.
    #[cfg(test)]
    fn catch_up_view(&self) {
        if let Some(applier) = &self.view_applier {
            let head = *applier.feed_head.borrow();
            while let Ok(through) = ViewApplier::catch_up(applier.store.as_ref(), head) {
                applier.applied.send_replace(through);
                if through >= head {
                    break;
                }
            }
        }
    }

    /// The committer's report on the oldest batch in flight.
    fn finished(&mut self, finished: Finished) {
        if finished.generation != self.generation {
            // A batch decided on top of a failed one: already refused, state already reloaded.
            return;
        }
        if !finished.committed {
            // Nothing after the last committed batch stands: back to what the store holds.
            self.reload();
            self.generation += 1;
            self.pending.clear();
            self.in_flight.clear();
            self.in_flight_snapshots.clear();
            // Feed indexes above the committed head will be given again.
            let last = self.last_index;
            self.awaiting_view.retain(|_, index| *index <= last);
            return;
        }
        if let Some(batch) = self.pending.pop_front() {
            for key in batch.statements {
                self.in_flight.remove(&key);
            }
            for key in batch.snapshots {
                self.in_flight_snapshots.remove(&key);
            }
        }
    }

    /// Applies the chain rules to a batch in arrival order, signs its receipts and its
    /// checkpoint; returns it for the committer and the jobs deferred to the next batch.
    fn decide_batch(&mut self, jobs: Vec<Job>) -> (Batch, Vec<Job>) {
        // The right edge before the batch: with the batch's own nodes, every proof of it.
        let edge = crate::log::right_edge(&self.frontier);
        let now_ms = self.stamp();
        let mut d = Decided::default();
        for job in jobs {
            self.take_job(job, now_ms, &mut d);
        }
        let Decided {
            accepted,
            staged,
            evidence,
            log_nodes,
            decided,
            deferred,
            mut in_flight,
            held: _,
        } = d;
        let (mut checkpoint, mut tree, mut unsigned) = (None, None, None);
        if !accepted.is_empty() {
            match self.checkpoint(now_ms) {
                Ok(cp) => {
                    tree = Some(Arc::new(crate::log::BatchTree::new(
                        edge, &log_nodes, cp.size, cp.root,
                    )));
                    checkpoint = Some(cp);
                }
                Err(e) => unsigned = Some(e),
            }
        }
        in_flight.jobs = decided.len();
        // Statements unparked or refused with their predecessor in this batch.
        self.metrics.waiting(self.parked_count());
        self.pending.push_back(in_flight);
        let batch = Batch {
            generation: self.generation,
            accepted,
            staged,
            evidence,
            log_nodes,
            checkpoint,
            tree,
            unsigned,
            decided,
            last_index: self.last_index,
        };
        (batch, deferred)
    }

    /// Decides one job, or defers it or parks it; then decides the statements of its node
    /// that were parked and are now next in its chain, in seq order.
    fn take_job(&mut self, job: Job, now_ms: i64, d: &mut Decided) {
        let mut next = Some(job);
        while let Some(mut job) = next.take() {
            let st = &job.statement;
            let wait = d.held.contains(&st.node_id)
                || st.snapshot.as_ref().is_some_and(|s| {
                    self.in_flight_snapshots
                        .contains(&(st.node_id.clone(), s.indicator.clone()))
                })
                || self.waits_for_view(st);
            if wait {
                d.held.insert(st.node_id.clone());
                self.metrics.deferred();
                d.deferred.push(job);
                return;
            }
            let head_seq = self.head_seq(&st.node_id);
            // Statements whose callers gave up (a node that resends after abandoning a
            // window) free their places.
            if let Some(waiting) = self.parked.get_mut(&st.node_id) {
                waiting.retain(|parked| !parked.job.reply.is_closed());
            }
            if self.may_park(st, head_seq) {
                let node = st.node_id.clone();
                self.parked.entry(node).or_default().push(Parked {
                    job,
                    until: Instant::now() + PARK_WAIT,
                });
                self.metrics.parked(self.parked_count());
                return;
            }
            let node = st.node_id.clone();
            let decision = self.decide(st, now_ms, &mut d.accepted, &mut d.evidence);
            let accepted = matches!(decision, Decision::Accept(..));
            if accepted {
                d.log_nodes.extend(self.frontier.append(st.leaf_hash));
                d.in_flight.statements.push((st.node_id.clone(), st.seq));
                if let Some(s) = &st.snapshot {
                    let key = (st.node_id.clone(), s.indicator.clone());
                    self.in_flight_snapshots.insert(key.clone());
                    self.awaiting_view.insert(key.clone(), self.last_index);
                    // Kept when a batch fails too: a later index only makes it stricter.
                    self.latest_snapshot.insert(key.clone(), self.last_index);
                    d.in_flight.snapshots.push(key);
                }
                if let Some(staged) = job.statement.staged() {
                    d.staged.push(Arc::clone(staged));
                }
            }
            let next_refused = !accepted && job.statement.seq == head_seq + 1;
            // The staged chunks were needed only for the action check: not held through the
            // commit (the apply step decodes them again, one at a time). A refused, duplicate
            // or failed snapshot's staged chunks go now, never stored. The decoded statement
            // stays only in an accepted one's stored form, until its commit.
            job.statement.snapshot = None;
            job.statement.decoded = DecodedStatement::default();
            d.decided.push((job, decision));
            if next_refused {
                self.refuse_parked(&node, head_seq + 1, d);
            } else {
                next = self.unpark(&node);
            }
        }
    }

    /// Whether an action check made before against the view applied through
    /// `checked.view_at` still holds: no snapshot of `node` and `indicator` accepted after that
    /// index (only those change what it checked against), as far as this sequencer knows.
    fn check_stands(&self, node: &str, indicator: &str, checked: &ActionsChecked) -> bool {
        let key = (node.to_string(), indicator.to_string());
        checked.view_at >= self.view_at_start
            && !self.in_flight_snapshots.contains(&key)
            && self
                .latest_snapshot
                .get(&key)
                .is_none_or(|latest| *latest <= checked.view_at)
    }

    /// The seq of `node`'s head, including the batches in flight (0 before its first).
    fn head_seq(&self, node: &str) -> u64 {
        self.heads.get(node).map_or(0, |(seq, _)| *seq)
    }

    /// Whether `st` waits for its predecessor: ahead of its node's head, but within the
    /// window, and not a chunked snapshot (whose chunks would be held in memory).
    fn may_park(&self, st: &VerifiedStatement, head_seq: u64) -> bool {
        let waiting = self.parked.get(&st.node_id).map_or(0, Vec::len);
        st.seq > head_seq + 1
            && st.seq <= head_seq.saturating_add(IN_FLIGHT_WINDOW)
            && st.staged().is_none()
            && (waiting as u64) < IN_FLIGHT_WINDOW
    }

    /// Takes `node`'s parked statement that is now next in its chain (or a retry of one
    /// already decided), the lowest seq first.
    fn unpark(&mut self, node: &str) -> Option<Job> {
        let next_seq = self.head_seq(node) + 1;
        let waiting = self.parked.get_mut(node)?;
        // The first of equal seqs: a retry is decided after the statement it repeats.
        let index = waiting
            .iter()
            .enumerate()
            .filter(|(_, parked)| parked.job.statement.seq <= next_seq)
            .min_by_key(|(_, parked)| parked.job.statement.seq)
            .map(|(index, _)| index)?;
        let parked = waiting.remove(index);
        if waiting.is_empty() {
            self.parked.remove(node);
        }
        Some(parked.job)
    }

    /// `node`'s statement `refused_seq` was refused: every statement of it waiting for that
    /// one is refused too, answered after it.
    fn refuse_parked(&mut self, node: &str, refused_seq: u64, d: &mut Decided) {
        for parked in self.parked.remove(node).unwrap_or_default() {
            let seq = parked.job.statement.seq;
            let why = format!("it waited for {node}'s statement {refused_seq}, which was refused");
            d.decided.push((
                parked.job,
                Decision::Refuse(seq_gap(node, seq, refused_seq, &why)),
            ));
        }
    }

    /// How many statements wait for their predecessor, all nodes together.
    fn parked_count(&self) -> usize {
        self.parked.values().map(Vec::len).sum()
    }

    /// Refuses the parked statements whose wait is over: their predecessor did not come.
    /// Answered at once: nothing of theirs is stored.
    fn expire_parked(&mut self, now: Instant) {
        let mut expired = Vec::new();
        self.parked.retain(|_, waiting| {
            let (over, still): (Vec<Parked>, Vec<Parked>) =
                waiting.drain(..).partition(|parked| parked.until <= now);
            expired.extend(over);
            *waiting = still;
            !waiting.is_empty()
        });
        for parked in expired {
            let st = &parked.job.statement;
            let expected = self.head_seq(&st.node_id) + 1;
            let why = format!(
                "it waited {} s for {}'s statement {expected}, which did not arrive",
                PARK_WAIT.as_secs(),
                st.node_id
            );
            let refusal = seq_gap(&st.node_id, st.seq, expected, &why);
            self.metrics.rejected(refusal.reason);
            let _ = parked.job.reply.send(Err(IngestError::Rejected(refusal)));
        }
        self.metrics.waiting(self.parked_count());
    }

    /// Signs the checkpoint for the log after this batch. Its root is the in-memory
    /// frontier's; each receipt's inclusion proof is checked against it before it is sent,
    /// which catches a wrong node (see [`crate::log::BatchTree`]).
    fn checkpoint(&self, now_ms: i64) -> Result<NewCheckpoint, StoreError> {
        let size = self.frontier.size();
        let root = self.frontier.root();
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

    /// The time to stamp this batch's receipts and checkpoint with: the clock, but never
    /// before the last stamp issued (the clock may step back, e.g. an NTP correction).
    fn stamp(&mut self) -> i64 {
        let clock = rcpfed_core::clock::now_ms();
        if clock < self.last_stamp_ms.saturating_sub(1000) {
            tracing::warn!(
                behind_ms = self.last_stamp_ms - clock,
                "the clock is behind the last receipt or checkpoint issued; stamping with that one instead"
            );
        }
        self.last_stamp_ms = self.last_stamp_ms.max(clock);
        self.last_stamp_ms
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
        evidence: &mut Vec<NewEquivocation>,
    ) -> Decision {
        let head = self.heads.get(&st.node_id).copied();
        let head_seq = head.map(|(seq, _)| seq).unwrap_or(0);
        if st.seq <= head_seq {
            // Already used: a retry of the same statement, or equivocation.
            // In flight (this batch or one being written) or committed: a statement leaves
            // `in_flight` only once the store holds it.
            let existing = match self.in_flight.get(&(st.node_id.clone(), st.seq)) {
                Some(known) => Some(known.clone()),
                None => match self.store.statement_by_node_seq(&st.node_id, st.seq) {
                    Ok(found) => found.map(|s| Known {
                        digest: s.digest,
                        receipt: s.receipt,
                        feed_index: s.feed_index,
                    }),
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
                "EQUIVOCATION: node signed two different statements with the same seq"
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
                        "{} already has a different statement with seq {} (digest {}); the first conflicting statement of a seq is kept as equivocation evidence",
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
            let why = if st.seq > head_seq.saturating_add(IN_FLIGHT_WINDOW) {
                format!("it is more than {IN_FLIGHT_WINDOW} ahead of the node's head")
            } else if st.staged().is_some() {
                "a chunked snapshot does not wait for its predecessor".to_string()
            } else {
                format!("{IN_FLIGHT_WINDOW} statements of the node already wait")
            };
            return Decision::Refuse(seq_gap(&st.node_id, st.seq, expected, &why));
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
        if let Some(snapshot) = &st.snapshot {
            let checked = match snapshot.actions_checked() {
                Some(checked) if self.check_stands(&st.node_id, &snapshot.indicator, checked) => {
                    Ok(checked.violations.clone())
                }
                _ => snapshot.check_actions(self.store.as_ref(), &st.node_id),
            };
            match checked {
                Ok(violations) => {
                    if let Some(refusal) = actions::refusal(violations, MAX_ACTION_VIOLATIONS) {
                        return Decision::Refuse(refusal);
                    }
                }
                Err(e) => return Decision::Fail(e.to_string()),
            }
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
            decoded: st.decoded.clone(),
        };
        accepted.push(stored);
        self.in_flight.insert(
            (st.node_id.clone(), st.seq),
            Known {
                digest: st.digest,
                receipt: receipt.clone(),
                feed_index: self.last_index,
            },
        );
        Decision::Accept(receipt, self.last_index - 1)
    }
}

/// The `SEQ_GAP` refusal of `node`'s statement `seq`, whose chain needs `expected` first.
fn seq_gap(node: &str, seq: u64, expected: u64, why: &str) -> Rejection {
    Rejection::new(
        RejectClass::Precondition,
        reasons::SEQ_GAP,
        format!(
            "seq {seq} skips ahead ({why}): the next statement of {node} must have seq {expected}"
        ),
    )
    .with_meta("expected_seq", expected.to_string())
}

/// What deciding one batch collects.
#[derive(Default)]
struct Decided {
    accepted: Vec<StoredStatement>,
    staged: Vec<Arc<StagedSnapshot>>,
    evidence: Vec<NewEquivocation>,
    log_nodes: Vec<(u8, u64, Hash)>,
    decided: Vec<(Job, Decision)>,
    deferred: Vec<Job>,
    in_flight: InFlight,
    /// Nodes with a deferred job: their later jobs wait too, to keep chain order.
    held: HashSet<String>,
}

/// What the sequencer's wait for a job ended with.
enum Received {
    Job(Box<Job>),
    /// The earliest parked statement's wait is over.
    ParkedDue,
    /// Every sender is gone (shutdown).
    Closed,
}

/// How often jobs deferred for the view look whether the view applier has moved on.
const VIEW_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// The (node, indicator) of every snapshot stored after the view cursor, with the feed index
/// of the latest: at start-up, what the view applier has still to apply.
fn unapplied_snapshots(
    store: &dyn crate::HubBackend,
    applied_through: u64,
    last_index: u64,
) -> Result<HashMap<(String, String), u64>, StoreError> {
    use rcpfed_core::envelope::SignedEnvelope;
    let mut awaiting = HashMap::new();
    for index in applied_through + 1..=last_index {
        let Some(st) = store.statement_by_feed_index(index)? else {
            continue;
        };
        if st.kind != rcpfed_core::statement::DocumentKind::IndicatorSnapshot.as_str() {
            continue;
        }
        // A stored snapshot that does not decode is damage to the store, not "no snapshot".
        let statement = SignedEnvelope::decode(&st.envelope)
            .and_then(|envelope| Statement::decode(&envelope.payload))
            .map_err(|e| StoreError::Corrupt(format!("feed entry {index} as stored: {e}")))?;
        if let Body::Indicators(snapshot) = statement.body {
            awaiting.insert((st.node_id, snapshot.indicator), index);
        }
    }
    Ok(awaiting)
}

/// Answers every job of a batch that could not be committed: none of it is acknowledged.
fn refuse_batch(decided: Vec<(Job, Decision)>, failure: &Failure) {
    for (job, _) in decided {
        let _ = job.reply.send(Err(failure.answer()));
    }
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
        // Bounded by bytes too: statements may each be 1 MiB.
        let (rows, _) = store.list_statements_within(
            &rcpfed_store::StatementFilter::default(),
            after,
            10_000,
            64 * 1024 * 1024,
        )?;
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

#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests {
    use super::*;
    use rcpfed_core::statement::ObservationAction;
    use rcpfed_store::{IndicatorStore, ObservationFilter, SqliteHubStore};
    use testkit::obs;
    use tokio::sync::oneshot::Receiver;

    type Reply = Receiver<Result<IngestOutcome, IngestError>>;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<SqliteHubStore>,
        sequencer: Sequencer,
        key: SecretKey,
        /// Last (seq, digest) built per node, to chain the next statement.
        built: HashMap<String, (u64, Digest)>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteHubStore::open(&dir.path().join("hub.sqlite")).expect("store"));
        let key = SecretKey::from_seed(&[3; 32]);
        let metrics = crate::metrics::HubMetrics::register(
            &mut prometheus_client::registry::Registry::default(),
        );
        let (sequencer, _) = Sequencer::load(
            Arc::clone(&store) as Arc<dyn crate::HubBackend>,
            ReceiptSigner {
                federation_id: testkit::FEDERATION.into(),
                hub_id: "gfmd".into(),
                key: key.clone(),
            },
            metrics,
        )
        .expect("sequencer");
        Fixture {
            _dir: dir,
            store,
            sequencer,
            key,
            built: HashMap::new(),
        }
    }

    impl Fixture {
        /// The next snapshot statement of `node`, chained after the last one built.
        fn snapshot(
            &mut self,
            node: &str,
            indicator: &str,
            observations: Vec<Observation>,
        ) -> VerifiedStatement {
            let (seq, prev) = match self.built.get(node) {
                Some((seq, digest)) => (seq + 1, Some(*digest)),
                None => (1, None),
            };
            let st = testkit::snapshot(&self.key, node, seq, prev, indicator, observations);
            self.built.insert(node.to_string(), (seq, st.digest));
            st
        }

        /// Processes one batch; returns the replies and the deferred jobs.
        fn batch(&mut self, statements: Vec<VerifiedStatement>) -> (Vec<Reply>, Vec<Job>) {
            let mut replies = Vec::new();
            let mut jobs = Vec::new();
            for statement in statements {
                let (reply, answer) = oneshot::channel();
                jobs.push(Job { statement, reply });
                replies.push(answer);
            }
            let deferred = self.sequencer.process(jobs);
            (replies, deferred)
        }

        fn values(&self, node: &str) -> Vec<Option<f64>> {
            self.store
                .query_observations(
                    &ObservationFilter {
                        indicator: "MIGRANT_STOCK".into(),
                        node_ids: vec![node.into()],
                        ..ObservationFilter::default()
                    },
                    None,
                    100,
                )
                .expect("query")
                .into_iter()
                .map(|r| r.observation.obs_value)
                .collect()
        }
    }

    fn answered(reply: &mut Reply) -> Result<IngestOutcome, IngestError> {
        reply.try_recv().expect("answered in this batch")
    }

    fn reason(outcome: Result<IngestOutcome, IngestError>) -> &'static str {
        match outcome {
            Err(IngestError::Rejected(r)) => r.reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The action check `SubmitSnapshot` made while the chunks arrived decides, unless a
    /// snapshot of the same node and indicator was accepted after the view it read: then the
    /// sequencer checks again. (The recorded checks below disagree with the store on purpose,
    /// to show which one decided.)
    #[test]
    fn an_action_check_made_on_arrival_stands_until_the_view_moves_for_its_node() {
        let mut f = fixture();
        let chunked = |f: &mut Fixture, area: &str, view_at: u64| {
            let (seq, prev) = match f.built.get("colombo") {
                Some((seq, digest)) => (seq + 1, Some(*digest)),
                None => (1, None),
            };
            let said = rcpfed_core::rejection::Violation::new(
                "indicator_snapshot.observations[0]",
                reasons::OBSERVATION_EXISTS,
                "recorded on arrival",
            );
            let st = testkit::snapshot_checked(
                &f.key,
                "colombo",
                seq,
                prev,
                "MIGRANT_STOCK",
                vec![obs(ObservationAction::Append, area, Some(1.0))],
                Some(1),
                Some(ActionsChecked {
                    view_at,
                    violations: vec![said],
                }),
            );
            (st, seq, prev)
        };
        // Checked against the view as it is: the recorded refusal stands, though the store
        // would accept (nothing of colombo is in force).
        let view_at = f.store.applied_feed_size().expect("cursor");
        let (fresh, _, _) = chunked(&mut f, "BGD", view_at);
        let (mut replies, _) = f.batch(vec![fresh]);
        match answered(&mut replies[0]) {
            Err(IngestError::Rejected(r)) => {
                assert_eq!(r.reason, reasons::OBSERVATION_EXISTS);
                assert!(r.message.contains("recorded on arrival"), "{r:?}");
            }
            other => panic!("expected the recorded refusal, got {other:?}"),
        }
        // A snapshot of colombo's MIGRANT_STOCK is accepted after that view.
        let inline = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "LKA", Some(2.0))],
        );
        let (mut replies, _) = f.batch(vec![inline]);
        assert!(matches!(
            answered(&mut replies[0]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        f.sequencer.catch_up_view();
        // A check recorded against the older view no longer stands: the sequencer checks the
        // staged chunks itself, and NPL is new.
        let (stale, seq, _) = chunked(&mut f, "NPL", view_at);
        let digest = stale.digest;
        let (mut replies, _) = f.batch(vec![stale]);
        assert!(
            matches!(
                answered(&mut replies[0]),
                Ok(IngestOutcome::Accepted { .. })
            ),
            "checked again against the view"
        );
        f.built.insert("colombo".into(), (seq, digest));
        f.sequencer.catch_up_view();
        assert_eq!(f.values("colombo"), [Some(2.0), Some(1.0)]);
    }

    #[test]
    fn second_snapshot_of_a_node_waits_for_the_first_to_commit() {
        let mut f = fixture();
        let first = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
        );
        let revision = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Replace, "BGD", Some(2.0))],
        );
        // A later statement of the same node (another indicator) must keep its chain order.
        let other_indicator = f.snapshot(
            "colombo",
            "REMITTANCES",
            vec![obs(ObservationAction::Append, "BGD", Some(9.0))],
        );
        // Another node is not held back.
        let other_node = f.snapshot(
            "midwa",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(3.0))],
        );
        let (mut replies, deferred) = f.batch(vec![first, revision, other_indicator, other_node]);
        assert!(matches!(
            answered(&mut replies[0]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        assert!(matches!(
            answered(&mut replies[3]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        assert_eq!(
            deferred.len(),
            2,
            "the revision and the node's later statement wait"
        );
        assert!(replies[1].try_recv().is_err() && replies[2].try_recv().is_err());
        assert_eq!(f.values("colombo"), [Some(1.0)]);

        // The next batch sees the first snapshot committed: the REPLACE finds its value.
        let again = f.sequencer.process(deferred);
        assert!(again.is_empty());
        assert!(matches!(
            answered(&mut replies[1]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        assert!(matches!(
            answered(&mut replies[2]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        let history = f
            .store
            .query_observations(
                &ObservationFilter {
                    indicator: "MIGRANT_STOCK".into(),
                    node_ids: vec!["colombo".into()],
                    include_history: true,
                    ..ObservationFilter::default()
                },
                None,
                100,
            )
            .expect("query");
        assert_eq!(
            history.len(),
            2,
            "the first value is superseded, not overwritten"
        );
        assert_eq!(f.values("colombo"), [Some(2.0)]);
    }

    #[test]
    fn actions_that_do_not_fit_the_committed_view_are_refused_alone() {
        let mut f = fixture();
        let first = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
        );
        let (mut replies, _) = f.batch(vec![first]);
        let accepted = answered(&mut replies[0]);
        assert!(matches!(accepted, Ok(IngestOutcome::Accepted { .. })));

        // APPEND of a key in force, then (same batch, deferred) a valid REPLACE is not
        // blocked: the refused statement does not advance the chain, so it is rebuilt.
        let exists = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(5.0))],
        );
        let unrelated = f.snapshot(
            "midwa",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Delete, "NPL", None)],
        );
        let (mut replies, deferred) = f.batch(vec![exists, unrelated]);
        assert!(deferred.is_empty());
        let refused = answered(&mut replies[0]);
        match &refused {
            Err(IngestError::Rejected(r)) => {
                assert_eq!(r.reason, reasons::OBSERVATION_EXISTS);
                assert_eq!(r.class, RejectClass::Invalid);
                assert_eq!(
                    r.violations.first().map(|v| v.field.as_str()),
                    Some("indicator_snapshot.observations[0]")
                );
            }
            other => panic!("expected OBSERVATION_EXISTS, got {other:?}"),
        }
        assert_eq!(
            reason(answered(&mut replies[1])),
            reasons::OBSERVATION_NOT_FOUND
        );
        assert_eq!(f.values("colombo"), [Some(1.0)]);
        assert!(f.values("midwa").is_empty());

        // Mixed reasons: VALIDATION_FAILED with both violations.
        f.built.insert(
            "colombo".into(),
            (1, f.sequencer.heads.get("colombo").expect("head").1),
        );
        let mixed = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![
                obs(ObservationAction::Append, "BGD", Some(5.0)),
                obs(ObservationAction::Replace, "LKA", Some(5.0)),
            ],
        );
        let (mut replies, _) = f.batch(vec![mixed]);
        match answered(&mut replies[0]) {
            Err(IngestError::Rejected(r)) => {
                assert_eq!(r.reason, reasons::VALIDATION_FAILED);
                assert_eq!(r.violations.len(), 2);
            }
            other => panic!("expected VALIDATION_FAILED, got {other:?}"),
        }
    }

    /// A chunked snapshot's chunks are stored with it when it is accepted, and not at all
    /// when the sequencer refuses it (actions, equivocation).
    #[test]
    fn chunks_are_stored_only_with_an_accepted_snapshot() {
        let mut f = fixture();
        let chunked = |f: &Fixture, seq: u64, observations: Vec<Observation>| {
            let prev = f.sequencer.heads.get("colombo").map(|(_, d)| *d);
            testkit::snapshot_cut(
                &f.key,
                "colombo",
                seq,
                prev,
                "MIGRANT_STOCK",
                observations,
                Some(1),
            )
        };
        let digests = |st: &VerifiedStatement| -> Vec<Digest> {
            st.staged().map(|s| s.digests()).unwrap_or_default()
        };
        let first = chunked(
            &f,
            1,
            vec![
                obs(ObservationAction::Append, "BGD", Some(1.0)),
                obs(ObservationAction::Append, "LKA", Some(2.0)),
            ],
        );
        let first_chunks = digests(&first);
        assert_eq!(first_chunks.len(), 2);
        let (mut replies, _) = f.batch(vec![first]);
        assert!(matches!(
            answered(&mut replies[0]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        assert_eq!(
            f.store.has_chunks(&first_chunks).expect("has_chunks"),
            [true, true]
        );
        assert_eq!(f.values("colombo"), [Some(1.0), Some(2.0)]);

        // Refused by the action check: its chunks are not stored.
        let not_found = chunked(
            &f,
            2,
            vec![
                obs(ObservationAction::Replace, "NPL", Some(3.0)),
                obs(ObservationAction::Append, "PAK", Some(4.0)),
            ],
        );
        let refused_chunks = digests(&not_found);
        let (mut replies, _) = f.batch(vec![not_found]);
        assert_eq!(
            reason(answered(&mut replies[0])),
            reasons::OBSERVATION_NOT_FOUND
        );
        assert_eq!(
            f.store.has_chunks(&refused_chunks).expect("has_chunks"),
            [false, false]
        );

        // An equivocation at seq 1: evidence is kept, its chunks are not.
        let other = testkit::snapshot_cut(
            &f.key,
            "colombo",
            1,
            None,
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "IND", Some(9.0))],
            Some(1),
        );
        let other_chunks = digests(&other);
        let (mut replies, _) = f.batch(vec![other]);
        assert_eq!(reason(answered(&mut replies[0])), reasons::EQUIVOCATION);
        assert_eq!(
            f.store.has_chunks(&other_chunks).expect("has_chunks"),
            [false]
        );
        assert_eq!(f.values("colombo"), [Some(1.0), Some(2.0)]);
    }

    #[test]
    fn an_accepted_snapshot_resubmitted_gets_its_receipt_not_an_action_refusal() {
        let mut f = fixture();
        let first = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
        );
        let (original_digest, envelope) = (first.digest, first.envelope.clone());
        let first_snapshot = first.snapshot.clone();
        let (mut replies, _) = f.batch(vec![first]);
        let receipt = match answered(&mut replies[0]) {
            Ok(IngestOutcome::Accepted { receipt, .. }) => receipt,
            other => panic!("expected acceptance, got {other:?}"),
        };
        // The same envelope again: its APPEND now meets its own value, yet it is a retry.
        let mut retry = f.snapshot("colombo", "MIGRANT_STOCK", Vec::new());
        retry.seq = 1;
        retry.prev_digest = None;
        retry.digest = original_digest;
        retry.envelope = envelope;
        retry.snapshot = first_snapshot;
        let (mut replies, _) = f.batch(vec![retry]);
        match answered(&mut replies[0]) {
            Ok(IngestOutcome::Duplicate {
                receipt: again,
                leaf_index,
            }) => {
                assert_eq!(again, receipt);
                assert_eq!(leaf_index, 0);
            }
            other => panic!("expected the original receipt, got {other:?}"),
        }
    }

    /// Jobs for `statements`, and where their answers arrive.
    fn jobs(statements: Vec<VerifiedStatement>) -> (Vec<Job>, Vec<Reply>) {
        statements
            .into_iter()
            .map(|statement| {
                let (reply, answer) = oneshot::channel();
                (Job { statement, reply }, answer)
            })
            .unzip()
    }

    fn commit(f: &mut Fixture, batch: Batch) -> bool {
        let committed = f
            .sequencer
            .committer
            .as_mut()
            .expect("the committer of a test sequencer")
            .commit(batch);
        f.sequencer.catch_up_view();
        committed
    }

    /// Batch N+1 is decided on top of batch N before N is written. When N fails, N+1 is
    /// refused too, even though it could be written alone, and the sequencer goes back to
    /// what the store holds.
    #[test]
    fn a_failed_batch_refuses_the_batches_decided_on_top_of_it() {
        let mut f = fixture();
        // Large enough to need new database pages.
        let many = (0..400)
            .map(|i| obs(ObservationAction::Append, &format!("A{i:03}"), Some(1.0)))
            .collect();
        let first = f.snapshot("colombo", "MIGRANT_STOCK", many);
        let (jobs_n, mut replies_n) = jobs(vec![first]);
        let (batch_n, deferred) = f.sequencer.decide_batch(jobs_n);
        assert!(deferred.is_empty());
        // On top of it: colombo's next statement, and another node's.
        let next = f.snapshot(
            "colombo",
            "REMITTANCES",
            vec![obs(ObservationAction::Append, "BGD", Some(2.0))],
        );
        let other = f.snapshot(
            "midwa",
            "REMITTANCES",
            vec![obs(ObservationAction::Append, "BGD", Some(3.0))],
        );
        let (jobs_n1, mut replies_n1) = jobs(vec![next, other]);
        let (batch_n1, deferred) = f.sequencer.decide_batch(jobs_n1);
        assert!(deferred.is_empty());
        assert_eq!(f.sequencer.last_index, 3, "decided ahead of the store");

        f.store.set_max_db_bytes(Some(1)).expect("cap");
        assert!(!commit(&mut f, batch_n), "the full store refuses batch N");
        f.store.set_max_db_bytes(None).expect("lift the cap");
        let generation = batch_n1.generation;
        assert!(
            !commit(&mut f, batch_n1),
            "batch N+1 is refused although the store has room again"
        );
        // N's failure (the store is full), not one of N+1's own: written alone, N+1 would be
        // refused as a Conflict (its feed indices do not continue the stored log).
        for reply in replies_n.iter_mut().chain(replies_n1.iter_mut()) {
            assert!(matches!(answered(reply), Err(IngestError::Unavailable(_))));
        }
        assert_eq!(f.store.count_statements().expect("count"), 0);

        // The reports reach the sequencer: the first reloads, the second is stale.
        for _ in 0..2 {
            f.sequencer.finished(Finished {
                generation,
                committed: false,
            });
        }
        assert_eq!(f.sequencer.generation, generation + 1);
        assert_eq!(f.sequencer.last_index, 0);
        assert_eq!(f.sequencer.frontier.size(), 0);
        assert!(f.sequencer.heads.is_empty() && f.sequencer.in_flight.is_empty());

        // Sent again, all of it is accepted from feed index 1.
        f.built.clear();
        let again = vec![
            f.snapshot(
                "colombo",
                "MIGRANT_STOCK",
                vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
            ),
            f.snapshot(
                "colombo",
                "REMITTANCES",
                vec![obs(ObservationAction::Append, "BGD", Some(2.0))],
            ),
            f.snapshot(
                "midwa",
                "REMITTANCES",
                vec![obs(ObservationAction::Append, "BGD", Some(3.0))],
            ),
        ];
        let (mut replies, deferred) = f.batch(again);
        assert!(deferred.is_empty());
        for (i, reply) in replies.iter_mut().enumerate() {
            match answered(reply) {
                Ok(IngestOutcome::Accepted { leaf_index, .. }) => assert_eq!(leaf_index, i as u64),
                other => panic!("expected acceptance, got {other:?}"),
            }
        }
        assert_eq!(f.store.count_statements().expect("count"), 3);
    }

    /// A retry of a statement whose batch is still being written is a duplicate (not a missing
    /// statement), answered with the original receipt only once its own batch is committed.
    #[test]
    fn a_retry_of_a_statement_in_flight_gets_its_receipt_after_the_commit() {
        let mut f = fixture();
        let first = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
        );
        let mut retry = f.snapshot("colombo", "MIGRANT_STOCK", Vec::new());
        retry.seq = 1;
        retry.prev_digest = None;
        retry.digest = first.digest;
        retry.envelope = first.envelope.clone();
        retry.snapshot = None;
        let (jobs_n, mut replies_n) = jobs(vec![first]);
        let (batch_n, _) = f.sequencer.decide_batch(jobs_n);
        let (jobs_n1, mut replies_n1) = jobs(vec![retry]);
        let (batch_n1, _) = f.sequencer.decide_batch(jobs_n1);
        assert!(
            replies_n[0].try_recv().is_err(),
            "nothing answered before the commit"
        );

        assert!(commit(&mut f, batch_n));
        let receipt = match answered(&mut replies_n[0]) {
            Ok(IngestOutcome::Accepted {
                receipt,
                leaf_index,
                checkpoint,
                tree,
            }) => {
                let proof = tree.log_proof(leaf_index, &checkpoint).expect("proof");
                assert_eq!((proof.leaf_index, proof.tree_size), (0, 1));
                receipt
            }
            other => panic!("expected acceptance, got {other:?}"),
        };
        assert!(
            replies_n1[0].try_recv().is_err(),
            "the retry waits for its batch"
        );
        assert!(commit(&mut f, batch_n1));
        match answered(&mut replies_n1[0]) {
            Ok(IngestOutcome::Duplicate {
                receipt: again,
                leaf_index,
            }) => {
                assert_eq!(again, receipt);
                assert_eq!(leaf_index, 0);
            }
            other => panic!("expected the original receipt, got {other:?}"),
        }
    }

    /// A snapshot revision waits while the snapshot it revises is being written: the revision
    /// check reads the committed view.
    #[test]
    fn a_revision_waits_for_the_snapshot_in_flight_it_revises() {
        let mut f = fixture();
        let first = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
        );
        let revision = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Replace, "BGD", Some(2.0))],
        );
        let (jobs_n, mut replies_n) = jobs(vec![first]);
        let (batch_n, _) = f.sequencer.decide_batch(jobs_n);
        let (jobs_n1, mut replies_n1) = jobs(vec![revision]);
        let (batch_n1, deferred) = f.sequencer.decide_batch(jobs_n1);
        assert_eq!(deferred.len(), 1, "the revision waits");
        let generation = batch_n.generation;
        for batch in [batch_n, batch_n1] {
            assert!(commit(&mut f, batch));
            f.sequencer.finished(Finished {
                generation,
                committed: true,
            });
        }
        assert!(matches!(
            answered(&mut replies_n[0]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        assert!(f.sequencer.pending.is_empty() && f.sequencer.in_flight_snapshots.is_empty());
        assert!(f.sequencer.process(deferred).is_empty());
        assert!(matches!(
            answered(&mut replies_n1[0]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        assert_eq!(f.values("colombo"), [Some(2.0)]);
    }

    /// `count` statements of `node`, chained, each of its own indicator (so none waits for
    /// another's revision check).
    fn chain(f: &mut Fixture, node: &str, count: usize) -> Vec<VerifiedStatement> {
        (0..count)
            .map(|i| {
                f.snapshot(
                    node,
                    &format!("INDICATOR_{i}"),
                    vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
                )
            })
            .collect()
    }

    fn leaf_index(outcome: Result<IngestOutcome, IngestError>) -> u64 {
        match outcome {
            Ok(IngestOutcome::Accepted { leaf_index, .. }) => leaf_index,
            other => panic!("expected acceptance, got {other:?}"),
        }
    }

    /// Statements that arrive out of order within the window wait for their predecessors and
    /// are accepted in seq order, in one batch or across batches.
    #[test]
    fn statements_ahead_within_the_window_are_accepted_in_seq_order() {
        let mut f = fixture();
        let mut statements = chain(&mut f, "colombo", 7).into_iter();
        let mut next = || statements.next().expect("built");
        let (s1, s2, s3, s4) = (next(), next(), next(), next());
        let (mut replies, deferred) = f.batch(vec![s3, s2, s4, s1]);
        assert!(deferred.is_empty());
        let leaves: Vec<u64> = replies
            .iter_mut()
            .map(|r| leaf_index(answered(r)))
            .collect();
        assert_eq!(
            leaves,
            [2, 1, 3, 0],
            "feed order is seq order, not arrival order"
        );

        // Across batches: 7 arrives, then 6, then 5; nothing is answered before 5 comes.
        let (s5, s6, s7) = (next(), next(), next());
        let (mut late, _) = f.batch(vec![s7]);
        let (mut middle, _) = f.batch(vec![s6]);
        assert!(late[0].try_recv().is_err() && middle[0].try_recv().is_err());
        assert_eq!(f.sequencer.parked.get("colombo").map(Vec::len), Some(2));
        let (mut first, _) = f.batch(vec![s5]);
        assert_eq!(leaf_index(answered(&mut first[0])), 4);
        assert_eq!(leaf_index(answered(&mut middle[0])), 5);
        assert_eq!(leaf_index(answered(&mut late[0])), 6);
        assert!(f.sequencer.parked.is_empty());
        let stored = f
            .store
            .statement_by_node_seq("colombo", 7)
            .expect("read")
            .expect("stored");
        assert_eq!(stored.feed_index, 7);
    }

    /// A statement beyond the window, or a chunked snapshot ahead of its head, is refused at
    /// once.
    #[test]
    fn a_statement_beyond_the_window_gets_seq_gap_at_once() {
        let mut f = fixture();
        let window = usize::try_from(IN_FLIGHT_WINDOW).expect("small");
        let statements = chain(&mut f, "colombo", window + 1);
        let beyond = statements.into_iter().last().expect("built");
        let (mut replies, _) = f.batch(vec![beyond]);
        match answered(&mut replies[0]) {
            Err(IngestError::Rejected(r)) => {
                assert_eq!(r.reason, reasons::SEQ_GAP);
                assert!(r.message.contains("must have seq 1"), "{}", r.message);
            }
            other => panic!("expected SEQ_GAP, got {other:?}"),
        }
        let chunked = testkit::snapshot_cut(
            &f.key,
            "midwa",
            2,
            None,
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
            Some(1),
        );
        let (mut replies, _) = f.batch(vec![chunked]);
        assert_eq!(reason(answered(&mut replies[0])), reasons::SEQ_GAP);
        assert!(f.sequencer.parked.is_empty());
    }

    /// When the statement a parked one waits for is refused, the parked one is refused with
    /// `SEQ_GAP`, answered after it.
    #[test]
    fn statements_waiting_for_a_refused_one_get_seq_gap() {
        let mut f = fixture();
        let first = chain(&mut f, "colombo", 1);
        let (mut replies, _) = f.batch(first);
        leaf_index(answered(&mut replies[0]));
        // Seq 2 replaces a value that does not exist: refused.
        let refused = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Replace, "NPL", Some(1.0))],
        );
        let waiting = chain(&mut f, "colombo", 2);
        let (mut parked, _) = f.batch(waiting);
        assert!(parked.iter_mut().all(|r| r.try_recv().is_err()));
        let (mut replies, _) = f.batch(vec![refused]);
        assert_eq!(
            reason(answered(&mut replies[0])),
            reasons::OBSERVATION_NOT_FOUND
        );
        for reply in &mut parked {
            match answered(reply) {
                Err(IngestError::Rejected(r)) => {
                    assert_eq!(r.reason, reasons::SEQ_GAP);
                    assert!(r.message.contains("which was refused"), "{}", r.message);
                }
                other => panic!("expected SEQ_GAP, got {other:?}"),
            }
        }
        assert!(f.sequencer.parked.is_empty());
        assert_eq!(f.sequencer.head_seq("colombo"), 1);
    }

    /// A parked statement whose predecessor does not come is refused once its wait is over.
    #[test]
    fn a_parked_statement_is_refused_when_its_wait_is_over() {
        let mut f = fixture();
        let statements = chain(&mut f, "colombo", 3);
        let third = statements.into_iter().last().expect("built");
        let (mut replies, _) = f.batch(vec![third]);
        f.sequencer.expire_parked(Instant::now());
        assert!(replies[0].try_recv().is_err(), "still within its wait");
        f.sequencer.expire_parked(Instant::now() + PARK_WAIT);
        match answered(&mut replies[0]) {
            Err(IngestError::Rejected(r)) => {
                assert_eq!(r.reason, reasons::SEQ_GAP);
                assert!(r.message.contains("did not arrive"), "{}", r.message);
            }
            other => panic!("expected SEQ_GAP, got {other:?}"),
        }
        assert!(f.sequencer.parked.is_empty());
    }

    /// A hostile member sends seq 5 with no 2-4: another member is served at once, and the
    /// hostile statement gets `SEQ_GAP` within the wait bound, through the running sequencer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_ahead_of_its_chain_stalls_nobody_and_gets_seq_gap_in_time() {
        let mut f = fixture();
        let colombo = chain(&mut f, "colombo", 5);
        let midwa = chain(&mut f, "midwa", 2);
        let metrics = crate::metrics::HubMetrics::register(
            &mut prometheus_client::registry::Registry::default(),
        );
        let ingest = Ingest::start(
            Arc::clone(&f.store) as Arc<dyn crate::HubBackend>,
            ReceiptSigner {
                federation_id: testkit::FEDERATION.into(),
                hub_id: "gfmd".into(),
                key: f.key.clone(),
            },
            metrics,
        )
        .expect("start");
        let mut colombo = colombo.into_iter();
        let first = colombo.next().expect("built");
        let fifth = colombo.last().expect("built");
        assert!(matches!(
            ingest.submit(first).await,
            Ok(IngestOutcome::Accepted { .. })
        ));
        let started = Instant::now();
        let hostile = {
            let ingest = ingest.clone();
            tokio::spawn(async move { ingest.submit(fifth).await })
        };
        for statement in midwa {
            assert!(matches!(
                ingest.submit(statement).await,
                Ok(IngestOutcome::Accepted { .. })
            ));
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "another member waited {:?}",
            started.elapsed()
        );
        let answer = hostile.await.expect("joined");
        let waited = started.elapsed();
        assert_eq!(reason(answer), reasons::SEQ_GAP);
        assert!(
            waited >= PARK_WAIT - Duration::from_millis(100) && waited < PARK_WAIT * 2,
            "refused after {waited:?}"
        );
    }

    /// A chunked snapshot is stored without its view; the view applier applies it afterwards.
    /// Until it has, a revision of the same node and indicator waits, another node does not.
    #[test]
    fn a_chunked_snapshot_is_applied_after_its_commit_and_its_revision_waits_for_it() {
        let mut f = fixture();
        let first = testkit::snapshot_cut(
            &f.key,
            "colombo",
            1,
            None,
            "MIGRANT_STOCK",
            vec![
                obs(ObservationAction::Append, "BGD", Some(1.0)),
                obs(ObservationAction::Append, "LKA", Some(2.0)),
            ],
            Some(1),
        );
        let first_digest = first.digest;
        f.built.insert("colombo".into(), (1, first_digest));
        let (jobs_n, mut replies_n) = jobs(vec![first]);
        let (batch, deferred) = f.sequencer.decide_batch(jobs_n);
        assert!(deferred.is_empty());
        let generation = batch.generation;
        let committed = f
            .sequencer
            .committer
            .as_mut()
            .expect("the committer of a test sequencer")
            .commit(batch);
        assert!(committed);
        f.sequencer.finished(Finished {
            generation,
            committed,
        });
        assert!(matches!(
            answered(&mut replies_n[0]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        // Stored and receipted, its view not applied yet.
        assert!(
            f.store
                .statement_by_digest(&first_digest)
                .expect("read")
                .is_some()
        );
        assert_eq!(f.store.applied_feed_size().expect("applied"), 0);
        assert!(f.values("colombo").is_empty());

        let revision = f.snapshot(
            "colombo",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Replace, "BGD", Some(3.0))],
        );
        let other_node = f.snapshot(
            "kathmandu",
            "MIGRANT_STOCK",
            vec![obs(ObservationAction::Append, "NPL", Some(4.0))],
        );
        let (mut replies, deferred) = f.batch(vec![revision, other_node]);
        assert_eq!(deferred.len(), 1, "the revision waits for the view");
        assert!(matches!(
            answered(&mut replies[1]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        // `batch` ran the view applier's work: the first snapshot is applied now.
        assert_eq!(f.values("colombo"), [Some(1.0), Some(2.0)]);
        assert_eq!(f.store.applied_feed_size().expect("applied"), 2);
        assert!(f.sequencer.process(deferred).is_empty());
        assert!(matches!(
            answered(&mut replies[0]),
            Ok(IngestOutcome::Accepted { .. })
        ));
        assert_eq!(f.values("colombo"), [Some(2.0), Some(3.0)]);
    }
}
