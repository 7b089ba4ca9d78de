//! What one member may hold of the hub at once, and the bounded pool CPU-heavy work runs on.
//!
//! Every quota refusal is `RESOURCE_EXHAUSTED` with an `ErrorInfo` reason from this module and
//! a `RetryInfo` saying when to try again: the limit is on what the member holds now, so the
//! same call succeeds once an earlier one finishes. Values are in docs/spec/limits.md.

pub use rcpfed_grpc::per_member::{Held, HeldStream, PerMember, RETRY_AFTER, quota_status};
use rcpfed_grpc::status::internal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tonic::Status;

/// `ErrorInfo.reason`: the member already has [`Quotas::submissions_in_flight`] statements
/// being checked or sequenced.
pub const TOO_MANY_SUBMISSIONS_IN_FLIGHT: &str = "TOO_MANY_SUBMISSIONS_IN_FLIGHT";
/// `ErrorInfo.reason`: the member already holds [`Quotas::feed_subscriptions`] feed streams.
pub const TOO_MANY_FEED_SUBSCRIPTIONS: &str = "TOO_MANY_FEED_SUBSCRIPTIONS";
/// `ErrorInfo.reason`: the member already holds [`CHUNK_STREAMS_PER_MEMBER`]
/// `GetSnapshotChunks` streams.
pub const TOO_MANY_CHUNK_STREAMS: &str = "TOO_MANY_CHUNK_STREAMS";
/// `ErrorInfo.reason`: the member is already sending a large snapshot (one at a time each).
pub const SNAPSHOT_SLOT_BUSY: &str = "SNAPSHOT_SLOT_BUSY";
/// `ErrorInfo.reason`: a snapshot's chunks arrived too slowly (a gap over the idle limit, or
/// an average rate under the minimum), so its slot was given back.
pub const SNAPSHOT_TOO_SLOW: &str = "SNAPSHOT_TOO_SLOW";

/// Default of [`Quotas::submissions_in_flight`]. A node's outbox sends one statement at a
/// time; a few more leave room for operators' tools.
pub const DEFAULT_SUBMISSIONS_IN_FLIGHT: usize = 8;
/// Default of [`Quotas::feed_subscriptions`]: a node's mirror holds one; a reconnect may
/// briefly overlap the stream it replaces.
pub const DEFAULT_FEED_SUBSCRIPTIONS: usize = 4;
/// Open `GetSnapshotChunks` streams per member. Each holds up to three chunks (4 MiB each:
/// one being read, two queued) whether or not its client reads; a node fetches one snapshot
/// at a time.
pub const CHUNK_STREAMS_PER_MEMBER: usize = 2;
/// Default of [`Quotas::snapshot_chunk_idle`]: the longest gap between two messages of a
/// `SubmitSnapshot` stream.
pub const DEFAULT_SNAPSHOT_CHUNK_IDLE: Duration = Duration::from_secs(30);
/// Default of [`Quotas::snapshot_min_rate`], bytes per second (256 KiB/s, about 2 Mbit/s).
pub const DEFAULT_SNAPSHOT_MIN_RATE: u64 = 256 * 1024;
/// Most bytes of feed entries one subscriber's reader holds at once (plus one entry): the
/// backlog is read in pieces of at most this size, not a fixed number of rows.
pub const FEED_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most feed entries read at once, whatever their size.
pub const FEED_BATCH_ROWS: usize = 256;
/// Feed entries queued per subscriber between the reader and the connection.
pub const FEED_QUEUE: usize = 4;
/// Most bytes of envelopes one `ListEquivocations` page carries (at least one entry): like a
/// `QueryObservations` page, under the 4 MiB a default gRPC client accepts.
pub const EQUIVOCATION_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// Per-member limits; the hub configuration can change them.
#[derive(Clone, Debug)]
pub struct Quotas {
    /// Threads CPU-heavy work (signatures, decoding, validation) runs on; 0 means one per
    /// core.
    pub cpu_threads: usize,
    /// Statements of one member being checked or sequenced at once.
    pub submissions_in_flight: usize,
    /// Open `SubscribeFeed` streams per member.
    pub feed_subscriptions: usize,
    /// Longest gap between two messages of a `SubmitSnapshot` stream.
    pub snapshot_chunk_idle: Duration,
    /// Lowest average rate, bytes per second, of a snapshot's chunks: the chunks must all be
    /// in within one idle period plus their signed total size at this rate, so a trickling
    /// publisher cannot keep a slot by sending just inside the idle limit.
    pub snapshot_min_rate: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            cpu_threads: 0,
            submissions_in_flight: DEFAULT_SUBMISSIONS_IN_FLIGHT,
            feed_subscriptions: DEFAULT_FEED_SUBSCRIPTIONS,
            snapshot_chunk_idle: DEFAULT_SNAPSHOT_CHUNK_IDLE,
            snapshot_min_rate: DEFAULT_SNAPSHOT_MIN_RATE,
        }
    }
}

impl Quotas {
    /// Threads of the CPU pool: the configured number, else one per core.
    pub fn pool_size(&self) -> usize {
        if self.cpu_threads > 0 {
            self.cpu_threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// How long the chunks of a snapshot of `total_bytes` may take in all.
    pub fn snapshot_transfer_limit(&self, total_bytes: u64) -> Duration {
        let rate = self.snapshot_min_rate.max(1);
        self.snapshot_chunk_idle + Duration::from_secs(total_bytes.div_ceil(rate))
    }
}

/// A fixed number of threads for CPU-heavy work, so the async workers stay free for health,
/// reads and other members. A caller waits for a thread (within its own call deadline). One
/// member's work uses at most all threads but one (at least one): its other calls wait in its
/// own lane, not in the shared queue, so another member's call waits at most for work already
/// running, never behind a flood.
#[derive(Clone)]
pub struct CpuPool {
    threads: Arc<Semaphore>,
    per_member: usize,
    lanes: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl CpuPool {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        CpuPool {
            threads: Arc::new(Semaphore::new(threads)),
            per_member: threads.saturating_sub(1).max(1),
            lanes: Arc::default(),
        }
    }

    /// `member`'s lane (members are the registry's, so the map stays small).
    fn lane(&self, member: &str) -> Arc<Semaphore> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            lanes
                .entry(member.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_member))),
        )
    }

    /// Runs `work` for `member` on the pool once its lane and a thread are free; a panic
    /// becomes INTERNAL.
    pub async fn run<T: Send + 'static>(
        &self,
        member: &str,
        what: &'static str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Status> {
        let lane = self
            .lane(member)
            .acquire_owned()
            .await
            .map_err(|e| internal(what, &e))?;
        let thread = Arc::clone(&self.threads)
            .acquire_owned()
            .await
            .map_err(|e| internal(what, &e))?;
        tokio::task::spawn_blocking(move || {
            let _held = (lane, thread);
            work()
        })
        .await
        .map_err(|e| internal(what, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooding_member_leaves_a_thread_for_the_others() {
        let pool = CpuPool::new(2);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // The flooder's first call blocks its thread; its next ones wait in its lane.
        let mut flood = Vec::new();
        for _ in 0..4 {
            let (pool, gate) = (pool.clone(), Arc::clone(&gate));
            flood.push(tokio::spawn(async move {
                pool.run("flooder", "test", move || {
                    let _ = gate.lock().map(|g| g.recv());
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let other = tokio::time::timeout(Duration::from_secs(5), pool.run("other", "test", || 7))
            .await
            .expect("another member is not queued behind the flood");
        assert_eq!(other.ok(), Some(7));
        for _ in 0..4 {
            let _ = release.send(());
        }
        for task in flood {
            assert!(task.await.is_ok());
        }
    }

    #[test]
    fn the_transfer_limit_grows_with_the_signed_size_only() {
        let q = Quotas {
            snapshot_chunk_idle: Duration::from_secs(30),
            snapshot_min_rate: 1024,
            ..Quotas::default()
        };
        assert_eq!(q.snapshot_transfer_limit(0), Duration::from_secs(30));
        assert_eq!(
            q.snapshot_transfer_limit(10 * 1024),
            Duration::from_secs(40)
        );
    }
}
