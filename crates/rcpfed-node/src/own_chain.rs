//! This node's own chain after its database was restored from a backup.
//!
//! A backup is a point in time: the node may have signed and delivered statements after it.
//! The hub's feed holds them, signed by this node, so while recovering the mirror adopts each
//! one it meets that the outbox lacks (as delivered, with the hub's receipt), and the chain continues after it
//! instead of reusing its sequence number (which the hub would refuse as equivocation). Until
//! the mirror has caught up with the feed once, the publisher signs nothing new; `rcpfed
//! restore node` leaves a marker file in the data directory that turns this wait on.

use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::rejection::{RejectClass, Rejection};
use rcpfed_core::statement::{Body, DocumentKind, Statement};
use rcpfed_store::{DeliveryState, MirroredStatement, NodeStore, OwnStatement, StoreError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Reason of the refusal while the own chain is being recovered.
pub const OWN_CHAIN_RECOVERING: &str = "OWN_CHAIN_RECOVERING";

/// Whether the publisher may sign: closed from start-up while the restore marker exists,
/// until the mirror has caught up with the hub's feed.
#[derive(Debug)]
pub struct OwnChainGate {
    marker: Option<PathBuf>,
    open: AtomicBool,
}

impl OwnChainGate {
    /// Closed if `marker` (written by `rcpfed restore node`) exists, else open.
    pub fn new(marker: Option<PathBuf>) -> Self {
        let closed = marker.as_ref().is_some_and(|m| m.exists());
        if closed {
            tracing::warn!(
                "this node's database was restored from a backup: signing waits until the mirror has caught up with the hub's feed"
            );
        }
        OwnChainGate {
            marker,
            open: AtomicBool::new(!closed),
        }
    }

    /// Whether the own chain is known whole (no restore pending): every own statement the feed
    /// shows from now on was signed from this outbox.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Refuses to sign while the own chain may lack statements the hub holds.
    pub fn check(&self) -> Result<(), Rejection> {
        if self.is_open() {
            return Ok(());
        }
        Err(Rejection::new(
            RejectClass::Precondition,
            OWN_CHAIN_RECOVERING,
            "this node's database was restored from a backup; it signs nothing new until its mirror has caught up with the hub's feed, which may hold statements it signed after the backup. Retry when GetNodeStatus shows the mirror caught up",
        ))
    }

    /// The mirror holds every entry the hub had when the feed was opened: signing may resume.
    pub fn caught_up(&self) {
        if self.open.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(marker) = &self.marker
            && let Err(e) = std::fs::remove_file(marker)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(marker = %marker.display(), error = %e, "cannot remove the restore marker; the next start will wait for the feed again");
        }
        tracing::info!(
            "the mirror has caught up with the hub's feed: this node's chain is complete and signing resumes"
        );
    }
}

/// What [`adopt`] did with one of this node's statements met in the feed.
#[derive(Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The outbox already holds it.
    Known,
    /// The outbox lacked it: now held as delivered.
    Adopted,
}

/// Whether an own statement met in the feed is a chunked snapshot, from the statement the
/// mirror decoded to verify it (the envelope is decoded only when it has none).
fn is_chunked(m: &MirroredStatement) -> Result<bool, StoreError> {
    if m.kind != DocumentKind::IndicatorSnapshot.as_str() {
        return Ok(false);
    }
    let decoded;
    let statement = match m.decoded.get() {
        Some(statement) => statement,
        None => {
            decoded = SignedEnvelope::decode(&m.envelope)
                .ok()
                .and_then(|envelope| Statement::decode(&envelope.payload).ok())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "this node's statement {} in the feed does not decode",
                        m.seq
                    ))
                })?;
            &decoded
        }
    };
    Ok(matches!(&statement.body, Body::Indicators(s) if s.chunks.is_some()))
}

/// Takes one of this node's own statements from the hub's feed (already verified and logged)
/// into the outbox as delivered when the outbox lacks it. A different statement at the same
/// sequence number in the outbox is this node's own equivocation: Conflict.
pub fn adopt(store: &dyn NodeStore, m: &MirroredStatement) -> Result<Adoption, StoreError> {
    let head = store.head()?.map_or(0, |(seq, _)| seq);
    if m.seq <= head {
        let own = store.list_own(m.seq + 1, 1)?;
        return match own.first() {
            Some(own) if own.seq == m.seq && own.digest == m.digest => Ok(Adoption::Known),
            _ => Err(StoreError::Conflict(format!(
                "the hub logged this node's statement {} with digest {}, but the outbox holds another statement at that sequence number",
                m.seq, m.digest
            ))),
        };
    }
    if m.seq != head + 1 {
        return Err(StoreError::Conflict(format!(
            "the hub logged this node's statement {} but the outbox ends at {head}",
            m.seq
        )));
    }
    store.append_own(
        &OwnStatement {
            seq: m.seq,
            digest: m.digest,
            document: m.document.clone(),
            revision: m.revision,
            envelope: m.envelope.clone(),
            created_at_ms: m.accepted_at_ms,
            request_id: None,
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: String::new(),
            receipt: None,
            feed_index: None,
            chunked: is_chunked(m)?,
        },
        &[],
    )?;
    // A crash between the two writes leaves it pending: the outbox sends it again and the hub
    // answers with the original receipt.
    store.mark_delivered(m.seq, &m.receipt, m.feed_index)?;
    Ok(Adoption::Adopted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rcpfed_core::Digest;
    use rcpfed_store::SqliteNodeStore;

    fn own(seq: u64) -> MirroredStatement {
        MirroredStatement {
            feed_index: seq + 10,
            node_id: "colombo".into(),
            seq,
            digest: Digest::of(format!("statement {seq}").as_bytes()),
            kind: "policy".into(),
            document: "regions/colombo/policies/p".into(),
            revision: u32::try_from(seq).unwrap(),
            envelope: format!("envelope {seq}").into_bytes(),
            receipt: format!("receipt {seq}").into_bytes(),
            accepted_at_ms: 1_700_000_000_000,
            mirrored_at_ms: 1_700_000_000_001,
            decoded: rcpfed_store::DecodedStatement::default(),
        }
    }

    #[test]
    fn statements_the_outbox_lacks_are_adopted_in_order_and_known_ones_are_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteNodeStore::open(&dir.path().join("node.sqlite")).unwrap();
        assert_eq!(adopt(&store, &own(1)).unwrap(), Adoption::Adopted);
        assert_eq!(adopt(&store, &own(2)).unwrap(), Adoption::Adopted);
        assert_eq!(adopt(&store, &own(1)).unwrap(), Adoption::Known);
        assert_eq!(store.head().unwrap(), Some((2, own(2).digest)));
        assert_eq!(
            store.latest_revision("regions/colombo/policies/p").unwrap(),
            2
        );
        let counts = store.outbox_counts().unwrap();
        assert_eq!((counts.pending, counts.delivered), (0, 2));
        let adopted = store.list_own(u64::MAX, 1).unwrap().remove(0);
        assert_eq!(adopted.receipt.as_deref(), Some(&b"receipt 2"[..]));
        assert_eq!(adopted.feed_index, Some(12));
        // A gap, or another statement at a known seq: refused, nothing written.
        assert!(matches!(
            adopt(&store, &own(4)),
            Err(StoreError::Conflict(_))
        ));
        let mut other = own(2);
        other.digest = Digest::of(b"another statement 2");
        assert!(matches!(
            adopt(&store, &other),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.head().unwrap(), Some((2, own(2).digest)));
    }

    #[test]
    fn the_gate_is_closed_only_with_the_marker_and_opening_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("restored");
        assert!(OwnChainGate::new(Some(marker.clone())).check().is_ok());
        std::fs::write(&marker, "").unwrap();
        let gate = OwnChainGate::new(Some(marker.clone()));
        let refused = gate.check().unwrap_err();
        assert_eq!(refused.reason, OWN_CHAIN_RECOVERING);
        gate.caught_up();
        assert!(gate.check().is_ok());
        assert!(!marker.exists());
    }
}
