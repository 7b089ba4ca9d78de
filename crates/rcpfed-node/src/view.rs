//! The node's view applier: applies to the indicator view what the mirror stored without
//! applying it (a chunked snapshot, and the entries after it until the view catches up; see
//! `NodeStore::apply_view_step`). The mirror stores such a snapshot in a short transaction and
//! goes on with the feed, and this node's own writes wait at most for one piece of its view,
//! instead of both waiting seconds for a million observations. Readers see the view up to its
//! cursor. Each step is durable, so after a restart the applier resumes from the store.

use crate::{NodeState, NodeStorage};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long the applier waits after a failed step before it tries again.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until `shutdown`: catches the view up with the mirror at start, then each time the
/// mirror stores entries (`wake`).
pub async fn run(
    store: Arc<dyn NodeStorage>,
    state: Arc<NodeState>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let caught_up = tokio::select! {
            r = catch_up(&store) => r,
            () = shutdown.cancelled() => return,
        };
        match caught_up {
            Ok(()) => {
                tokio::select! {
                    () = wake.notified() => {}
                    () = shutdown.cancelled() => return,
                }
            }
            Err(problem) => {
                tracing::error!(%problem, "the indicator view could not be applied; trying again");
                state.set_error(format!("indicator view: {problem}"));
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Steps until the view is applied up to the mirror's head (one transaction each, on the
/// blocking pool).
async fn catch_up(store: &Arc<dyn NodeStorage>) -> Result<(), String> {
    loop {
        let store = Arc::clone(store);
        let step = tokio::task::spawn_blocking(move || {
            let head = store.mirror_cursor()?;
            if store.applied_feed_size()? >= head {
                return Ok(None);
            }
            let started = std::time::Instant::now();
            let through = store.apply_view_step()?;
            Ok::<_, rcpfed_store::StoreError>(Some((through, head, started.elapsed())))
        })
        .await
        .map_err(|e| format!("view task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        match step {
            None => return Ok(()),
            Some((through, head, took)) => tracing::debug!(
                through,
                head,
                ms = took.as_millis(),
                "indicator view applied in the background"
            ),
        }
    }
}
