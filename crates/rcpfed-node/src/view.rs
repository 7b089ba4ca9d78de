//! The node's view applier: applies to the indicator view what the mirror stored without
//! applying it (a chunked snapshot, and the entries after it until the view catches up; see
//! `NodeStore::apply_view_step`). The mirror stores such a snapshot as soon as it verifies and
//! goes on with the feed; this task fetches its chunks from the hub (each checked against the
//! signed manifest, `mirror::stage_chunks`) and applies its view, so the feed never waits for
//! a large snapshot. It goes a piece per transaction, so this node's own writes do not wait for
//! it either, as at the hub; while the pieces of a snapshot supersede versions in force, readers
//! keep seeing those (`view_step::superseding`). Readers see the view up to its cursor. Each
//! step is durable, so after a restart the applier resumes from the store.

use crate::mirror::{Failure, stage_chunks, stored_chunk_manifest};
use crate::{NodeState, NodeStorage};
use rcpfed_grpc::failover::FailoverChannel as Channel;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the view applier works with.
pub struct ViewApplier {
    /// The node's store (mirror, chunks, indicator view).
    pub store: Arc<dyn NodeStorage>,
    /// Status shown to operators.
    pub state: Arc<NodeState>,
    /// Told by the mirror each time it stores entries.
    pub wake: Arc<Notify>,
    /// Bound on each call to the hub.
    pub call_timeout: Duration,
}

/// How long the applier waits after a failed step before it tries again: doubling from the
/// first to the last, with jitter, like the mirror's reconnects (a hub serving a bad chunk is
/// not asked again every second).
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_LAST: Duration = Duration::from_secs(10);

/// Runs until `shutdown`: catches the view up with the mirror at start, then each time the
/// mirror stores entries.
pub async fn run(applier: ViewApplier, channel: Channel, shutdown: CancellationToken) {
    let mut client = HubServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let mut backoff = RETRY_FIRST;
    loop {
        let caught_up = tokio::select! {
            r = applier.catch_up(&mut client, &shutdown) => r,
            () = shutdown.cancelled() => return,
        };
        match caught_up {
            Ok(()) => {
                backoff = RETRY_FIRST;
                tokio::select! {
                    () = applier.wake.notified() => {}
                    () = shutdown.cancelled() => return,
                }
            }
            Err(Failure::Shutdown) => return,
            Err(failure) => {
                let problem = match failure {
                    // The hub unreachable is the network's doing, not this store's or the hub's.
                    Failure::Hub(p) => {
                        tracing::warn!(problem = %p, "cannot fetch a snapshot's chunks; trying again");
                        p
                    }
                    Failure::Verify(p) | Failure::Store(p) => {
                        tracing::error!(problem = %p, "the indicator view could not be applied; trying again");
                        p
                    }
                    Failure::Shutdown => String::new(),
                };
                applier
                    .state
                    .set_error(format!("indicator view: {problem}"));
                tokio::select! {
                    () = tokio::time::sleep(crate::jitter(backoff)) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(RETRY_LAST);
            }
        }
    }
}

impl ViewApplier {
    /// Steps until the view is applied up to the mirror's head (one transaction each, on the
    /// blocking pool), fetching a chunked snapshot's chunks before its first step.
    pub(crate) async fn catch_up(
        &self,
        client: &mut HubServiceClient<Channel>,
        shutdown: &CancellationToken,
    ) -> Result<(), Failure> {
        loop {
            let store = Arc::clone(&self.store);
            let next = blocking(move || store.first_unapplied()).await?;
            let Some(next) = next else {
                return Ok(());
            };
            if let Some(manifest) = stored_chunk_manifest(&next) {
                stage_chunks(
                    client,
                    &self.store,
                    &next.digest,
                    &manifest,
                    self.call_timeout,
                    shutdown,
                )
                .await?;
            }
            let store = Arc::clone(&self.store);
            let started = std::time::Instant::now();
            let through = blocking(move || store.apply_view_step()).await?;
            tracing::debug!(
                through,
                ms = started.elapsed().as_millis(),
                "indicator view applied in the background"
            );
        }
    }
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, rcpfed_store::StoreError> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::Store(format!("view task failed: {e}")))?
        .map_err(|e| Failure::Store(e.to_string()))
}
