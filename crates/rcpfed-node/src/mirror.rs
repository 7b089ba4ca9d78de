//! The mirror: follows the hub's federation feed and keeps every statement whose signature,
//! signer, and hub receipt verify. Resumes from the last mirrored feed index after any
//! disconnect or restart, so it catches up in order, with no duplicates.

use crate::NodeState;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope, verify_signatures};
use rcpfed_core::members::Federation;
use rcpfed_core::receipt::Receipt;
use rcpfed_core::statement::{DocumentKind, Statement};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_store::{MirroredStatement, NodeStore};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Checks one feed entry completely: statement signature by a key of its issuer, payload
/// decodes, hub receipt signature, and receipt naming this statement at this feed index.
pub fn verify_entry(
    federation: &Federation,
    entry: &v1::SubscribeFeedResponse,
    now_ms: i64,
) -> Result<MirroredStatement, String> {
    let envelope = entry.envelope.clone().ok_or("feed entry has no envelope")?;
    let receipt = entry.receipt.clone().ok_or("feed entry has no receipt")?;
    let signed = SignedEnvelope::from_proto(envelope);
    if signed.payload_type != STATEMENT_PAYLOAD_TYPE {
        return Err(format!("unknown payload type {:?}", signed.payload_type));
    }
    let key = verify_signatures(&signed, |key_id| {
        federation.key_owner(key_id).map(|(_, k)| k)
    })
    .map_err(|e| format!("statement signature: {e}"))?;
    let statement = Statement::decode(&signed.payload).map_err(|e| format!("statement: {e}"))?;
    let owner = federation
        .key_owner(&key.key_id)
        .map(|(m, _)| m.id.clone())
        .unwrap_or_default();
    if owner != statement.header.node_id {
        return Err(format!(
            "statement claims node {} but is signed by a key of {owner}",
            statement.header.node_id
        ));
    }
    let receipt_env = SignedEnvelope::from_proto(receipt.clone());
    let digest = signed.digest();
    let r = entry_receipt(
        federation,
        &receipt_env,
        entry.feed_index,
        &digest,
        &statement.header.node_id,
        statement.header.seq,
    )?;
    Ok(MirroredStatement {
        feed_index: entry.feed_index,
        node_id: statement.header.node_id.clone(),
        seq: statement.header.seq,
        digest,
        kind: match statement.header.kind {
            DocumentKind::PolicySummary => "policy_summary".into(),
            DocumentKind::IndicatorSnapshot => "indicator_snapshot".into(),
        },
        document: statement.header.document.clone(),
        revision: statement.header.revision,
        envelope: signed.encode(),
        receipt: receipt_env.encode(),
        accepted_at_ms: (r.accepted_at.unix_timestamp_nanos() / 1_000_000) as i64,
        mirrored_at_ms: now_ms,
    })
}

/// Follows the feed until `shutdown`.
pub async fn run(
    federation: rcpfed_grpc::shared::SharedFederation,
    store: Arc<dyn NodeStore>,
    channel: Channel,
    state: Arc<NodeState>,
    witness: Arc<crate::witness::Witness>,
    registry: Arc<crate::registry::NodeRegistry>,
    shutdown: CancellationToken,
) {
    let mut client = HubServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let mut backoff = Duration::from_millis(200);
    loop {
        let cursor = {
            let store = Arc::clone(&store);
            match tokio::task::spawn_blocking(move || store.mirror_cursor()).await {
                Ok(Ok(c)) => c,
                _ => 0,
            }
        };
        let stream = tokio::select! {
            s = client.subscribe_feed(v1::SubscribeFeedRequest { after_index: cursor }) => s,
            () = shutdown.cancelled() => return,
        };
        match stream {
            Ok(response) => {
                let mut stream = response.into_inner();
                state
                    .feed_connected
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                backoff = Duration::from_millis(200);
                loop {
                    let next = tokio::select! {
                        m = stream.message() => m,
                        () = shutdown.cancelled() => {
                            state.feed_connected.store(false, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                    };
                    match next {
                        Ok(Some(entry)) => {
                            let is_registry = entry.envelope.as_ref().is_some_and(|e| {
                                e.payload_type == rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE
                            });
                            let checked = if is_registry {
                                check_registry_entry(&federation.get(), &entry, crate::now_ms())
                            } else {
                                verify_entry(&federation.get(), &entry, crate::now_ms())
                            };
                            let mut verified = match checked {
                                Ok(m) => check_logged(&witness, &mut client, &entry)
                                    .await
                                    .map(|()| m)
                                    .map_err(|e| format!("transparency log: {e}")),
                                Err(e) => Err(e),
                            };
                            // A registry version is put in force only once its receipt and its
                            // place in the witnessed log have verified.
                            if is_registry && let Ok(m) = &verified {
                                let logged_at = time::OffsetDateTime::from_unix_timestamp_nanos(
                                    i128::from(m.accepted_at_ms) * 1_000_000,
                                )
                                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                                let envelope = SignedEnvelope::from_proto(
                                    entry.envelope.clone().unwrap_or_default(),
                                );
                                if let Err(e) = registry.observe(&envelope, logged_at).await {
                                    verified = Err(format!("registry version: {e}"));
                                }
                            }
                            match verified {
                                Ok(mirrored) => {
                                    let store = Arc::clone(&store);
                                    let index = mirrored.feed_index;
                                    match tokio::task::spawn_blocking(move || {
                                        store.mirror_insert(&mirrored)
                                    })
                                    .await
                                    {
                                        Ok(Ok(())) => {
                                            tracing::debug!(feed_index = index, "mirrored")
                                        }
                                        Ok(Err(e)) => {
                                            tracing::error!(feed_index = index, error = %e, "mirror refused a feed entry");
                                            state.set_error(format!("mirror: {e}"));
                                            break;
                                        }
                                        Err(_) => break,
                                    }
                                }
                                Err(problem) => {
                                    // Never skip: the cursor stays put and we retry after a pause.
                                    tracing::error!(feed_index = entry.feed_index, %problem, "feed entry failed verification");
                                    state.set_error(format!(
                                        "feed entry {} failed verification: {problem}",
                                        entry.feed_index
                                    ));
                                    break;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            state.set_error(format!("feed: {}", status.message()));
                            break;
                        }
                    }
                }
                state
                    .feed_connected
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "feed subscription failed; retrying");
                state.set_error(format!("feed subscription: {}", status.message()));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(crate::outbox::jitter(backoff)) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Checks that a feed entry is in the hub's log, at a checkpoint consistent with everything
/// this node has witnessed, and submits this node's cosignature when the checkpoint is new.
pub async fn check_logged(
    witness: &crate::witness::Witness,
    hub: &mut HubServiceClient<Channel>,
    entry: &v1::SubscribeFeedResponse,
) -> Result<(), rcpfed_core::rejection::Rejection> {
    use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
    let log = entry.log.as_ref().ok_or_else(|| {
        Rejection::new(
            RejectClass::Invalid,
            reasons::BAD_PROOF,
            "feed entry carries no inclusion proof",
        )
    })?;
    let envelope = entry
        .envelope
        .clone()
        .map(SignedEnvelope::from_proto)
        .ok_or_else(|| {
            Rejection::new(
                RejectClass::Invalid,
                reasons::BAD_PROOF,
                "feed entry has no envelope",
            )
        })?;
    if log.leaf_index + 1 != entry.feed_index {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::BAD_PROOF,
            format!(
                "leaf index {} does not match feed index {}",
                log.leaf_index, entry.feed_index
            ),
        ));
    }
    let (cp, cosignature) = witness.observe(&log.checkpoint, hub).await?;
    crate::witness::verify_inclusion(&cp, &envelope, log)?;
    if let Some(sig) = cosignature
        && let Err(status) = crate::witness::submit_cosignature(hub, cp.size, &sig).await
    {
        tracing::debug!(
            message = status.message(),
            "cosignature not delivered; the witness loop retries"
        );
    }
    Ok(())
}

/// Checks a registry version met in the feed: it decodes, and the hub's receipt names it at
/// this feed index. Whether it may be put in force is decided afterwards, by
/// [`crate::registry::NodeRegistry::observe`], once its log inclusion has verified.
pub fn check_registry_entry(
    federation: &Federation,
    entry: &v1::SubscribeFeedResponse,
    now_ms: i64,
) -> Result<MirroredStatement, String> {
    let envelope = entry.envelope.clone().ok_or("feed entry has no envelope")?;
    let receipt = entry.receipt.clone().ok_or("feed entry has no receipt")?;
    let signed = SignedEnvelope::from_proto(envelope);
    let receipt_env = SignedEnvelope::from_proto(receipt);
    let version = rcpfed_core::registry::decode_and_check(&signed.payload)
        .map_err(|e| format!("registry version: {e}"))?;
    let r = entry_receipt(
        federation,
        &receipt_env,
        entry.feed_index,
        &signed.digest(),
        &version.hub_id,
        version.version,
    )?;
    Ok(MirroredStatement {
        feed_index: entry.feed_index,
        node_id: version.hub_id.clone(),
        seq: version.version,
        digest: signed.digest(),
        kind: "registry".into(),
        document: "registry".into(),
        revision: u32::try_from(version.version).unwrap_or(u32::MAX),
        envelope: signed.encode(),
        receipt: receipt_env.encode(),
        accepted_at_ms: (r.accepted_at.unix_timestamp_nanos() / 1_000_000) as i64,
        mirrored_at_ms: now_ms,
    })
}

/// The hub's receipt for a feed entry: signed by a hub key, for this federation, and naming
/// exactly this entry (digest, feed index, issuer and seq).
fn entry_receipt(
    federation: &Federation,
    receipt: &SignedEnvelope,
    feed_index: u64,
    digest: &rcpfed_core::Digest,
    node_id: &str,
    seq: u64,
) -> Result<Receipt, String> {
    let hub_keys = federation.hub().map(|h| h.keys.clone()).unwrap_or_default();
    let r = Receipt::verify(receipt, &hub_keys).map_err(|e| format!("receipt: {e}"))?;
    if r.statement_digest != *digest
        || r.feed_index != feed_index
        || r.node_id != node_id
        || r.seq != seq
        || r.federation_id != federation.federation_id
    {
        return Err(format!(
            "receipt does not match the entry it accompanies ({node_id}#{seq} at feed index {feed_index})"
        ));
    }
    Ok(r)
}
