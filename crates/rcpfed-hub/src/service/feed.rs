//! HubService, the feed: a subscription streams every accepted entry with its proofs, then follows the log.

use super::{BACKLOG_END_HEADER, FeedStream, Hub};
use crate::quotas::{self, quota_status};
use rcpfed_core::members::Role;
use rcpfed_grpc::authorize;
use rcpfed_proto::v1;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

/// Least time between two pages sent to a caught-up subscriber: entries committed faster are
/// sent together, with their proofs against the latest checkpoint, so a node checks (and
/// witnesses) one checkpoint per page rather than one per commit (issue 11: at 650
/// statements/s the hub committed ~400 checkpoints a second, and each of three nodes spent
/// more on checking them than on the entries). A subscriber that is behind gets its pages
/// back to back.
pub const FEED_PAGE_INTERVAL: Duration = Duration::from_millis(25);

impl Hub {
    pub(super) async fn subscribe_feed(
        &self,
        request: Request<v1::SubscribeFeedRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        let member = authorize(&request, &self.federation.get(), Role::Reader)?
            .id
            .clone();
        let limit = self.quotas.feed_subscriptions;
        // Held by the stream's task: given back when the subscriber goes away.
        let subscription = self.subscriptions.try_take(&member, limit).ok_or_else(|| {
            self.metrics.quota_refused(quotas::TOO_MANY_FEED_SUBSCRIPTIONS);
            tracing::info!(%member, limit, "feed subscription refused: too many open");
            quota_status(
                quotas::TOO_MANY_FEED_SUBSCRIPTIONS,
                limit,
                format!(
                    "{member} already has {limit} feed subscriptions open; close one (or wait until a dropped one is noticed) and subscribe again"
                ),
            )
        })?;
        let mut cursor = request.into_inner().after_index;
        let store = Arc::clone(&self.store);
        let pages = Arc::clone(&self.feed_pages);
        let mut head = self.ingest.feed_head();
        // The end of the backlog, told to the subscriber in the response headers.
        let backlog_end = *head.borrow();
        let shutdown = self.shutdown.clone();
        // Memory per subscriber: the page it is sending (bounded by bytes, shared with the
        // other subscribers at the same cursor) plus a few queued entries.
        let (tx, rx) = tokio::sync::mpsc::channel(quotas::FEED_QUEUE);
        tracing::info!(%member, after = cursor, "feed subscriber connected");
        tokio::spawn(async move {
            let _subscription = subscription;
            // When the last page was asked for, if it left the subscriber caught up.
            let mut caught_up_at: Option<Instant> = None;
            loop {
                // The head moves only once a commit is durable: at or below the cursor, nothing
                // new is committed, and the wait below needs no store read.
                let target = *head.borrow_and_update();
                if target > cursor {
                    if let Some(at) = caught_up_at.take() {
                        tokio::select! {
                            () = tokio::time::sleep_until(at + FEED_PAGE_INTERVAL) => {}
                            () = shutdown.cancelled() => return,
                            () = tx.closed() => return,
                        }
                    }
                    let asked_at = Instant::now();
                    // Each entry carries its inclusion proof against the latest checkpoint, so
                    // the subscriber can check it against what it has witnessed.
                    let page = tokio::select! {
                        page = pages.page(&store, cursor) => page,
                        () = shutdown.cancelled() => return,
                        () = tx.closed() => return,
                    };
                    match page {
                        Ok(Some(page)) if !page.entries().is_empty() => {
                            for entry in page.entries() {
                                cursor = entry.feed_index;
                                tokio::select! {
                                    sent = tx.send(Ok(entry.clone())) => if sent.is_err() { return },
                                    () = shutdown.cancelled() => return,
                                }
                            }
                            if cursor >= target {
                                caught_up_at = Some(asked_at);
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
                // Caught up: wait for the next commit, or stop on shutdown.
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return },
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                }
            }
        });
        let mut response =
            Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as FeedStream);
        response
            .metadata_mut()
            .insert(BACKLOG_END_HEADER, backlog_end.into());
        Ok(response)
    }
}
