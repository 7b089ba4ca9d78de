//! After `rcpfed publish` signs a statement, the node delivers it to the hub in the
//! background. The command waits a little for the node's outbox to show the outcome, so the
//! operator is told plainly whether the hub has it ("delivered") or whether it is only signed
//! and queued (hub unreachable, retried by the node), instead of one "signed" line for both.

use anyhow::Result;
use rcpfed_proto::v1;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// What became of a signed statement within the wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The hub's receipt came back and the node verified it.
    Delivered,
    /// Still in the outbox; the node keeps retrying. The last error, if any.
    Queued(String),
    /// The hub refused it.
    Refused(String),
}

/// The outbox entry of `seq`, newest pages first.
async fn outbox_entry(
    node: &mut NodeServiceClient<Channel>,
    seq: u64,
) -> Result<Option<v1::OutboxEntry>> {
    let mut page_token = String::new();
    loop {
        let page = node
            .list_outbox(v1::ListOutboxRequest {
                page_size: 100,
                page_token: page_token.clone(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", crate::client::describe_status(&s)))?
            .into_inner();
        if let Some(entry) = page.entries.iter().find(|e| e.seq == seq) {
            return Ok(Some(entry.clone()));
        }
        let past = page.entries.last().is_none_or(|e| e.seq < seq);
        if past || page.next_page_token.is_empty() {
            return Ok(None);
        }
        page_token = page.next_page_token;
    }
}

/// Waits up to `wait` for statement `seq` to leave the PENDING state.
pub async fn wait_for(
    node: &mut NodeServiceClient<Channel>,
    seq: u64,
    wait: Duration,
) -> Result<Delivery> {
    let deadline = Instant::now() + wait;
    loop {
        let entry = outbox_entry(node, seq).await?;
        let state = entry.as_ref().map(|e| e.state);
        let last_error = entry.map(|e| e.last_error).unwrap_or_default();
        if state == Some(v1::DeliveryState::Delivered as i32) {
            return Ok(Delivery::Delivered);
        }
        if state == Some(v1::DeliveryState::Rejected as i32) {
            return Ok(Delivery::Refused(last_error));
        }
        if Instant::now() >= deadline {
            return Ok(Delivery::Queued(last_error));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (unless `wait` is zero) and prints the outcome for `node_id#seq`. Returns false if
/// the hub refused the statement.
pub async fn report(
    node: &mut NodeServiceClient<Channel>,
    node_id: &str,
    seq: u64,
    wait: Duration,
) -> Result<bool> {
    if wait.is_zero() {
        return Ok(true);
    }
    match wait_for(node, seq, wait).await? {
        Delivery::Delivered => {
            println!("delivered: {node_id}#{seq} (the hub's signed receipt verified by the node)");
            Ok(true)
        }
        Delivery::Queued(last_error) => {
            let why = if last_error.is_empty() {
                String::new()
            } else {
                format!(" Last attempt: {last_error}.")
            };
            println!(
                "queued, not yet delivered: {node_id}#{seq} is signed and kept in the node's outbox; \
                 the node retries until the hub answers.{why} Follow it with NodeService/ListOutbox."
            );
            Ok(true)
        }
        Delivery::Refused(last_error) => {
            eprintln!("refused by the hub: {node_id}#{seq}: {last_error}");
            Ok(false)
        }
    }
}
