//! Signing: turns a document body into the next statement of this node's chain.
//!
//! Invariant: the chain never forks. One async mutex serializes publishing, and the store
//! refuses an own statement whose seq is not head + 1 in the same transaction that inserts it.

use rcpfed_core::Digest;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_core::statement::{Body, DocumentKind, Header, Statement};
use rcpfed_core::validate::{ValidationContext, validate_statement};
use rcpfed_store::{DeliveryState, NodeStore, OwnStatement, StoreError};
use std::sync::Arc;

/// What publishing produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// Sequence number (0 for a validation-only run).
    pub seq: u64,
    /// Payload digest (None for a validation-only run).
    pub digest: Option<Digest>,
    /// Revision of the document.
    pub revision: u32,
    /// Document name.
    pub document: String,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The document is not acceptable; nothing was signed.
    #[error("{0}")]
    Rejected(Rejection),
    /// The store failed; nothing was signed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Signs and records this node's statements.
pub struct Publisher {
    federation: rcpfed_grpc::shared::SharedFederation,
    node_id: String,
    key: SecretKey,
    store: Arc<dyn NodeStore>,
    lock: tokio::sync::Mutex<()>,
    outbox_wakeup: Arc<tokio::sync::Notify>,
}

impl Publisher {
    /// A publisher for `node_id` signing with `key`.
    pub fn new(
        federation: rcpfed_grpc::shared::SharedFederation,
        node_id: String,
        key: SecretKey,
        store: Arc<dyn NodeStore>,
        outbox_wakeup: Arc<tokio::sync::Notify>,
    ) -> Self {
        Publisher {
            federation,
            node_id,
            key,
            store,
            lock: tokio::sync::Mutex::new(()),
            outbox_wakeup,
        }
    }

    /// Validates `body` as the next revision of `document`; unless `validate_only`, signs it as
    /// the next statement and queues it in the outbox. A repeated `request_id` answers with the
    /// first result.
    pub async fn publish(
        &self,
        document: String,
        body: Body,
        validate_only: bool,
        request_id: Option<String>,
    ) -> Result<Published, PublishError> {
        let _guard = self.lock.lock().await;
        let store = Arc::clone(&self.store);
        let request = request_id.clone();
        let (existing, head, revision) = tokio::task::spawn_blocking(move || {
            let existing = match &request {
                Some(id) => store.own_by_request_id(id)?,
                None => None,
            };
            let head = store.head()?;
            let revision = store.latest_revision(&document)? + 1;
            Ok::<_, StoreError>((existing, head, (revision, document)))
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("publish task failed: {e}")))??;
        if let Some(own) = existing {
            return Ok(Published {
                seq: own.seq,
                digest: Some(own.digest),
                revision: own.revision,
                document: own.document,
            });
        }
        let (revision, document) = revision;
        let (head_seq, prev_digest) = match head {
            Some((seq, digest)) => (seq, Some(digest)),
            None => (0, None),
        };
        let kind = match &body {
            Body::Policy(_) => DocumentKind::PolicySummary,
            Body::Indicators(_) => DocumentKind::IndicatorSnapshot,
        };
        let federation = self.federation.get();
        let statement = Statement {
            header: Header {
                federation_id: federation.federation_id.clone(),
                node_id: self.node_id.clone(),
                seq: head_seq + 1,
                prev_digest,
                issued_at: time::OffsetDateTime::now_utc(),
                kind,
                schema_version: 1,
                document: document.clone(),
                revision,
            },
            body,
        };
        let member = federation.member(&self.node_id).ok_or_else(|| {
            PublishError::Rejected(Rejection::new(
                RejectClass::Forbidden,
                reasons::PEER_NOT_A_MEMBER,
                format!("node {} is not in the member file", self.node_id),
            ))
        })?;
        // The same validation the hub runs, so problems are reported here, before signing.
        validate_statement(
            &statement,
            &ValidationContext {
                federation_id: &federation.federation_id,
                member,
                now: time::OffsetDateTime::now_utc(),
            },
        )
        .map_err(PublishError::Rejected)?;
        let payload = statement.encode();
        // The hub refuses payloads over the limit; refusing here keeps them out of the chain,
        // where one would block every later statement.
        if payload.len() > rcpfed_grpc::limits::MAX_PAYLOAD_BYTES {
            return Err(PublishError::Rejected(Rejection::new(
                RejectClass::TooLarge,
                reasons::PAYLOAD_TOO_LARGE,
                format!(
                    "the signed statement would be {} bytes; the hub accepts at most {} bytes per statement, so split the document",
                    payload.len(),
                    rcpfed_grpc::limits::MAX_PAYLOAD_BYTES
                ),
            )));
        }
        if validate_only {
            return Ok(Published {
                seq: 0,
                digest: None,
                revision,
                document,
            });
        }
        let envelope = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &self.key);
        let own = OwnStatement {
            seq: statement.header.seq,
            digest: envelope.digest(),
            document: document.clone(),
            revision,
            envelope: envelope.encode(),
            created_at_ms: crate::now_ms(),
            request_id,
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: String::new(),
            receipt: None,
            feed_index: None,
        };
        let store = Arc::clone(&self.store);
        let stored = own.clone();
        tokio::task::spawn_blocking(move || store.append_own(&stored))
            .await
            .map_err(|e| StoreError::Corrupt(format!("publish task failed: {e}")))??;
        tracing::info!(seq = own.seq, %document, revision, digest = %own.digest, "statement signed and queued");
        self.outbox_wakeup.notify_one();
        Ok(Published {
            seq: own.seq,
            digest: Some(own.digest),
            revision,
            document,
        })
    }
}
