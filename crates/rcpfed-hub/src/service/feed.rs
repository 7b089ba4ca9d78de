//! HubService, the feed: a subscription streams every accepted entry with its proofs, then follows the log.

use super::{BACKLOG_END_HEADER, FeedStream, Hub, blocking};
use crate::quotas::{self, quota_status};
use rcpfed_core::members::Role;
use rcpfed_grpc::authorize;
use rcpfed_proto::v1;
use std::sync::Arc;
use tonic::{Request, Response, Status};

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
        let mut head = self.ingest.feed_head();
        // The end of the backlog, told to the subscriber in the response headers.
        let backlog_end = *head.borrow();
        let shutdown = self.shutdown.clone();
        // Memory per subscriber: one batch (bounded by bytes) plus a few queued entries.
        let (tx, rx) = tokio::sync::mpsc::channel(quotas::FEED_QUEUE);
        tracing::info!(%member, after = cursor, "feed subscriber connected");
        tokio::spawn(async move {
            let _subscription = subscription;
            loop {
                let batch_store = Arc::clone(&store);
                let after = cursor;
                let rows = match blocking("reading the feed", move || {
                    batch_store.list_feed(after, quotas::FEED_BATCH_ROWS, quotas::FEED_BATCH_BYTES)
                })
                .await
                {
                    Ok(rows) => rows,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if rows.is_empty() {
                    // Caught up: wait for the next commit, or stop on shutdown.
                    tokio::select! {
                        changed = head.changed() => if changed.is_err() { return },
                        () = shutdown.cancelled() => return,
                        () = tx.closed() => return,
                    }
                    continue;
                }
                // Each entry carries its inclusion proof against the latest checkpoint, so
                // the subscriber can check it against what it has witnessed.
                let proof_store = Arc::clone(&store);
                let indexes: Vec<u64> = rows.iter().map(|r| r.feed_index - 1).collect();
                let proofs = match blocking("building inclusion proofs", move || {
                    let Some(cp) = proof_store.latest_checkpoint()? else {
                        return Ok(Vec::new());
                    };
                    crate::log::log_proofs(proof_store.as_ref(), &indexes, &cp)
                })
                .await
                {
                    Ok(p) => p,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let mut proofs = proofs.into_iter();
                for st in rows {
                    cursor = st.feed_index;
                    let item = match feed_item(&st, proofs.next()) {
                        Ok(item) => item,
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    };
                    tokio::select! {
                        sent = tx.send(Ok(item)) => if sent.is_err() { return },
                        () = shutdown.cancelled() => return,
                    }
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

/// A stored entry as a feed message. One that no longer decodes is damage to the log: INTERNAL,
/// and the stream ends, rather than a hole every mirror would stall on.
fn feed_item(
    st: &rcpfed_store::StoredStatement,
    log: Option<v1::LogProof>,
) -> Result<v1::SubscribeFeedResponse, Status> {
    let what = format!("feed entry {} as stored", st.feed_index);
    Ok(v1::SubscribeFeedResponse {
        feed_index: st.feed_index,
        envelope: Some(super::stored_envelope(&what, &st.envelope)?),
        receipt: Some(super::stored_envelope(&what, &st.receipt)?),
        log,
    })
}
