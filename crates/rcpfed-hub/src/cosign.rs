//! Group commit of witness cosignatures. Every witness cosigns every new checkpoint, so with
//! several witnesses cosignatures arrive in bursts; storing each in its own durable transaction
//! cost about three fsyncs apiece and held the store's one writer away from the ingest
//! committer. Here one writer task takes whatever cosignatures are waiting (up to
//! [`MAX_COSIGNATURE_BATCH`]), stores them in one transaction, and only then answers each caller:
//! an answered cosignature is durable, exactly as before.

use crate::HubBackend;
use rcpfed_grpc::status::{internal, store_status};
use rcpfed_store::{Cosignature, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// At most this many cosignatures in one transaction; also the queue's bound, so a burst beyond
/// it waits for room (back-pressure) instead of growing memory.
pub(crate) const MAX_COSIGNATURE_BATCH: usize = 256;

/// What the status of a failed write says was being done.
const STORING: &str = "storing a cosignature";

/// The one store call the writer makes (a seam so a test can watch the batches).
pub(crate) trait CosignatureStore: Send + Sync + 'static {
    /// See [`rcpfed_store::HubStore::add_cosignatures`].
    fn add_cosignatures(
        &self,
        batch: &[Cosignature],
    ) -> Result<Vec<Result<u32, StoreError>>, StoreError>;
}

impl CosignatureStore for dyn HubBackend {
    fn add_cosignatures(
        &self,
        batch: &[Cosignature],
    ) -> Result<Vec<Result<u32, StoreError>>, StoreError> {
        rcpfed_store::HubStore::add_cosignatures(self, batch)
    }
}

struct Pending {
    cosignature: Cosignature,
    /// The number of witnesses that cosigned that size, once stored.
    reply: oneshot::Sender<Result<u32, Status>>,
}

/// Handle to the cosignature writer task; it ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct CosignatureWriter {
    queue: mpsc::Sender<Pending>,
}

impl CosignatureWriter {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start<S: CosignatureStore + ?Sized>(store: Arc<S>) -> Self {
        let (queue, waiting) = mpsc::channel(MAX_COSIGNATURE_BATCH);
        tokio::spawn(write_batches(store, waiting));
        CosignatureWriter { queue }
    }

    /// Stores a verified cosignature and answers once it is durable: the count of distinct
    /// witnesses of its checkpoint, or the store's refusal as a status.
    pub(crate) async fn store(&self, cosignature: Cosignature) -> Result<u32, Status> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { cosignature, reply })
            .await
            .map_err(|_| Status::unavailable("the cosignature writer has stopped; retry later"))?;
        answer.await.map_err(|_| {
            Status::unavailable(
                "the cosignature writer stopped before answering; the cosignature may or may \
                 not be stored; submitting it again is safe",
            )
        })?
    }
}

async fn write_batches<S: CosignatureStore + ?Sized>(
    store: Arc<S>,
    mut waiting: mpsc::Receiver<Pending>,
) {
    let mut taken = Vec::with_capacity(MAX_COSIGNATURE_BATCH);
    while waiting.recv_many(&mut taken, MAX_COSIGNATURE_BATCH).await > 0 {
        let (batch, replies): (Vec<Cosignature>, Vec<_>) =
            taken.drain(..).map(|p| (p.cosignature, p.reply)).unzip();
        let store = Arc::clone(&store);
        let expected = batch.len();
        let written = tokio::task::spawn_blocking(move || store.add_cosignatures(&batch)).await;
        let answers: Vec<Result<u32, Status>> = match written {
            Ok(Ok(outcomes)) if outcomes.len() == expected => outcomes
                .into_iter()
                .map(|o| o.map_err(|e| store_status(STORING, &e)))
                .collect(),
            Ok(Ok(outcomes)) => {
                let error = StoreError::Corrupt(format!(
                    "the store answered {} outcomes for {expected} cosignatures",
                    outcomes.len()
                ));
                vec![Err(store_status(STORING, &error)); expected]
            }
            Ok(Err(e)) => vec![Err(store_status(STORING, &e)); expected],
            Err(e) => vec![Err(internal(STORING, &e)); expected],
        };
        tracing::debug!(
            cosignatures = expected,
            "cosignatures stored in one transaction"
        );
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A caller that gave up no longer listens; its cosignature is stored all the same.
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcpfed_store::{HubStore, NewCheckpoint, SqliteHubStore};
    use std::sync::Mutex;

    /// The real SQLite store, recording each batch's size and holding the first write until
    /// released, so the cosignatures sent meanwhile queue up behind it.
    struct Watched {
        store: SqliteHubStore,
        batches: Mutex<Vec<usize>>,
        first_write: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    impl CosignatureStore for Watched {
        fn add_cosignatures(
            &self,
            batch: &[Cosignature],
        ) -> Result<Vec<Result<u32, StoreError>>, StoreError> {
            let gate = self.first_write.lock().expect("gate").take();
            if let Some(gate) = gate {
                gate.recv().expect("released");
            }
            let outcomes = self.store.add_cosignatures(batch);
            self.batches.lock().expect("batches").push(batch.len());
            outcomes
        }
    }

    fn checkpoint(size: u64) -> NewCheckpoint {
        NewCheckpoint {
            size,
            root: [7; 32],
            note: format!("note of {size}\n"),
            created_at_ms: 1_700_000_000_000,
        }
    }

    fn cosignature(size: u64, witness: &str) -> Cosignature {
        Cosignature {
            size,
            witness_id: witness.into(),
            line: format!("— {witness} line of {size}"),
            timestamp: 1_700_000_000,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_cosignatures_are_grouped_and_answered_once_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteHubStore::open(&dir.path().join("hub.sqlite")).expect("store");
        for size in [1, 2] {
            store
                .append(&[], &[], &[], &[], Some(&checkpoint(size)))
                .expect("checkpoint");
        }
        let (release, gate) = std::sync::mpsc::channel();
        let watched = Arc::new(Watched {
            store,
            batches: Mutex::new(Vec::new()),
            first_write: Mutex::new(Some(gate)),
        });
        let writer = CosignatureWriter::start(Arc::clone(&watched));

        // The first cosignature is taken alone and held in its write.
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.store(cosignature(1, "w-first")).await }
        });
        while watched.first_write.lock().expect("gate").is_some() {
            tokio::task::yield_now().await;
        }
        // 60 more (and one for a size with no checkpoint) queue meanwhile.
        let mut calls = Vec::new();
        for i in 0..60 {
            let writer = writer.clone();
            let watched = Arc::clone(&watched);
            let c = cosignature(2, &format!("w{i:02}"));
            calls.push(tokio::spawn(async move {
                let count = writer.store(c.clone()).await;
                // Answered only once durable: the store already holds it.
                let stored = watched.store.cosignatures(2).expect("read");
                (count, stored.contains(&c))
            }));
        }
        let refused = tokio::spawn({
            let writer = writer.clone();
            async move { writer.store(cosignature(9, "w00")).await }
        });
        while writer.queue.capacity() > MAX_COSIGNATURE_BATCH - 61 {
            tokio::task::yield_now().await;
        }
        assert!(!first.is_finished(), "answered before its write finished");
        release.send(()).expect("release");

        assert_eq!(first.await.expect("first call").expect("stored"), 1);
        let mut counts = Vec::new();
        for call in calls {
            let (count, stored) = call.await.expect("call");
            assert!(stored, "a cosignature was answered before it was stored");
            counts.push(count.expect("stored"));
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=60).collect::<Vec<u32>>());
        // The handler checks the checkpoint exists before queueing, so a store conflict here
        // means the store changed under it: INTERNAL, as a single write answered.
        let refusal = refused
            .await
            .expect("call")
            .expect_err("no checkpoint of size 9");
        assert_eq!(refusal.code(), tonic::Code::Internal, "{refusal:?}");

        assert_eq!(watched.store.cosignatures(2).expect("read").len(), 60);
        assert_eq!(
            watched
                .store
                .checkpoint_at(2)
                .expect("read")
                .expect("cp")
                .cosignature_count,
            60
        );
        // The 61 that queued behind the held write went in one transaction.
        assert_eq!(*watched.batches.lock().expect("batches"), vec![1, 61]);
    }
}
