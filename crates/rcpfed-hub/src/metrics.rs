//! Prometheus metrics of the hub, served on the plaintext ops port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabel {
    witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Counters and histograms the ingest pipeline updates.
#[derive(Clone)]
pub struct HubMetrics {
    accepted: Family<NodeLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    duplicates: Counter,
    equivocations: Family<NodeLabel, Counter>,
    batch_size: Histogram,
    commit_seconds: Histogram,
    deferred: Counter,
    parked: Counter,
    waiting: Gauge,
    catalogue_warnings: Counter,
    coherence_reports: Counter,
    quota_refusals: Family<ReasonLabel, Counter>,
    log_size: Gauge,
    checkpoint_time: Gauge,
    final_size: Gauge,
    cosignatures: Family<WitnessLabel, Counter>,
    witnessed_size: Family<WitnessLabel, Gauge>,
    leader: Gauge,
    lease_epoch: Gauge,
    feed_pages_built: Counter,
    feed_pages_shared: Counter,
}

impl HubMetrics {
    /// Records this process's role: leading (1) or standing by (0), and the lease term.
    pub fn role(&self, leading: bool, epoch: u64) {
        self.leader.set(i64::from(leading));
        self.lease_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = HubMetrics {
            accepted: Family::default(),
            rejected: Family::default(),
            duplicates: Counter::default(),
            equivocations: Family::default(),
            batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            commit_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ]),
            deferred: Counter::default(),
            parked: Counter::default(),
            waiting: Gauge::default(),
            catalogue_warnings: Counter::default(),
            coherence_reports: Counter::default(),
            quota_refusals: Family::default(),
            log_size: Gauge::default(),
            checkpoint_time: Gauge::default(),
            final_size: Gauge::default(),
            cosignatures: Family::default(),
            witnessed_size: Family::default(),
            leader: Gauge::default(),
            lease_epoch: Gauge::default(),
            feed_pages_built: Counter::default(),
            feed_pages_shared: Counter::default(),
        };
        m.register_role(registry);
        m.register_ingest(registry);
        m.register_log(registry);
        m.register_feed(registry);
        m
    }

    /// Whether this process leads (sequences and signs), and its lease term.
    fn register_role(&self, registry: &mut Registry) {
        registry.register(
            "rcpfed_hub_leader",
            "1 while this hub process sequences and signs (holds the hub lease, or runs without standbys), 0 while it stands by",
            self.leader.clone(),
        );
        registry.register(
            "rcpfed_hub_lease_epoch",
            "The hub lease term this process holds or last saw held (0: no lease in use)",
            self.lease_epoch.clone(),
        );
    }

    /// What happened to submissions: accepted, refused, duplicated, deferred, committed.
    fn register_ingest(&self, registry: &mut Registry) {
        registry.register(
            "rcpfed_hub_statements_accepted",
            "Statements accepted, by node",
            self.accepted.clone(),
        );
        registry.register(
            "rcpfed_hub_statements_rejected",
            "Statements refused, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "rcpfed_hub_statements_duplicate",
            "Resubmissions answered with the original receipt",
            self.duplicates.clone(),
        );
        registry.register(
            "rcpfed_hub_equivocations",
            "Equivocations detected, by node",
            self.equivocations.clone(),
        );
        registry.register(
            "rcpfed_hub_commit_batch_size",
            "Statements per group commit",
            self.batch_size.clone(),
        );
        registry.register(
            "rcpfed_hub_commit_seconds",
            "Duration of a group commit",
            self.commit_seconds.clone(),
        );
        registry.register(
            "rcpfed_hub_statements_deferred",
            "Statements deferred to the next batch so their revision check sees an earlier snapshot of the same node committed",
            self.deferred.clone(),
        );
        registry.register(
            "rcpfed_hub_statements_parked",
            "Statements that arrived ahead of their node's next seq (within the in-flight window) and waited for their predecessor",
            self.parked.clone(),
        );
        registry.register(
            "rcpfed_hub_statements_waiting_for_predecessor",
            "Statements waiting now for their predecessor (at most the in-flight window per node)",
            self.waiting.clone(),
        );
        registry.register(
            "rcpfed_hub_catalogue_warnings",
            "Catalogue warnings (values outside a warning-severity plausible range) in submissions that passed the catalogue check",
            self.catalogue_warnings.clone(),
        );
        registry.register(
            "rcpfed_hub_coherence_reports",
            "Coherence reports issued and logged",
            self.coherence_reports.clone(),
        );
        registry.register(
            "rcpfed_hub_quota_refusals",
            "Calls refused because a member was over a quota (RESOURCE_EXHAUSTED), by reason",
            self.quota_refusals.clone(),
        );
    }

    /// The transparency log: its size, latest checkpoint, and what the witnesses cosigned.
    fn register_log(&self, registry: &mut Registry) {
        registry.register(
            "rcpfed_hub_log_size",
            "Entries in the transparency log (size of the latest checkpoint)",
            self.log_size.clone(),
        );
        registry.register(
            "rcpfed_hub_checkpoint_timestamp_seconds",
            "When the latest checkpoint was signed (Unix time; its age is time() minus this)",
            self.checkpoint_time.clone(),
        );
        registry.register(
            "rcpfed_hub_final_log_size",
            "Size of the largest checkpoint cosigned by the witness quorum (final)",
            self.final_size.clone(),
        );
        registry.register(
            "rcpfed_hub_cosignatures",
            "Witness cosignatures accepted, by witness",
            self.cosignatures.clone(),
        );
        registry.register(
            "rcpfed_hub_witnessed_log_size",
            "Size of the largest checkpoint each witness has cosigned since start-up (its lag is rcpfed_hub_log_size minus this)",
            self.witnessed_size.clone(),
        );
    }

    /// The feed's shared pages: how many were built, how many handed to a subscriber that
    /// found them built or being built.
    fn register_feed(&self, registry: &mut Registry) {
        registry.register(
            "rcpfed_hub_feed_pages_built",
            "Feed pages (entries after a cursor with their proofs against the latest checkpoint) built from the store",
            self.feed_pages_built.clone(),
        );
        registry.register(
            "rcpfed_hub_feed_pages_shared",
            "Feed pages handed to a subscriber as another subscriber built them (only the latest checkpoint is read again)",
            self.feed_pages_shared.clone(),
        );
    }

    pub(crate) fn feed_page_built(&self) {
        self.feed_pages_built.inc();
    }

    pub(crate) fn feed_page_shared(&self) {
        self.feed_pages_shared.inc();
    }

    /// Feed pages (built, shared) so far.
    #[cfg(test)]
    pub(crate) fn feed_pages(&self) -> (u64, u64) {
        (self.feed_pages_built.get(), self.feed_pages_shared.get())
    }

    /// A checkpoint of `size` entries signed at `at_ms` is durable (also at start-up: the
    /// latest stored one).
    pub(crate) fn checkpoint_issued(&self, size: u64, at_ms: i64) {
        self.log_size.set(gauge_value(size));
        self.checkpoint_time.set(at_ms / 1000);
    }

    /// The largest final checkpoint (at start-up).
    pub(crate) fn final_checkpoint(&self, size: u64) {
        raise(&self.final_size, size);
    }

    /// `witness` cosigned the checkpoint of `size`, which is now final or not.
    pub(crate) fn cosigned(&self, witness: &str, size: u64, is_final: bool) {
        let label = WitnessLabel {
            witness: witness.to_string(),
        };
        self.cosignatures.get_or_create(&label).inc();
        raise(&self.witnessed_size.get_or_create(&label), size);
        if is_final {
            raise(&self.final_size, size);
        }
    }

    pub(crate) fn quota_refused(&self, reason: &str) {
        self.quota_refusals
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn deferred(&self) {
        self.deferred.inc();
    }

    /// A statement waits for its predecessor; `waiting` wait now in all.
    pub(crate) fn parked(&self, waiting: usize) {
        self.parked.inc();
        self.waiting(waiting);
    }

    /// How many statements wait for their predecessor now.
    pub(crate) fn waiting(&self, waiting: usize) {
        self.waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    pub(crate) fn catalogue_warnings(&self, count: usize) {
        self.catalogue_warnings.inc_by(count as u64);
    }

    pub(crate) fn coherence_report(&self) {
        self.coherence_reports.inc();
    }

    pub(crate) fn accepted(&self, node: &str) {
        self.accepted
            .get_or_create(&NodeLabel {
                node: node.to_string(),
            })
            .inc();
    }

    pub(crate) fn rejected(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn duplicate(&self) {
        self.duplicates.inc();
    }

    pub(crate) fn equivocation(&self, node: &str) {
        self.equivocations
            .get_or_create(&NodeLabel {
                node: node.to_string(),
            })
            .inc();
    }

    pub(crate) fn observe_commit(&self, statements: usize, took: Duration) {
        self.batch_size.observe(statements as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sets `gauge` to `size` unless it already holds more (a witness may cosign an older
/// checkpoint again).
fn raise(gauge: &Gauge, size: u64) {
    let value = gauge_value(size);
    let mut current = gauge.get();
    while current < value {
        // Another cosignature may raise it meanwhile: only a compare-and-swap may lower nothing.
        match gauge.inner().compare_exchange(
            current,
            value,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => current = now,
        }
    }
}
