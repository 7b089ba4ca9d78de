//! The indicator catalogue in force at this node.
//!
//! The hub issues the catalogue as a chain of signed versions logged in the feed. The mirror
//! verifies each version against the one in force ([`rcpfed_core::catalogue::verify_catalogue`]:
//! hub signature, version + 1, previous digest, content), stores it, and only then puts it in
//! force here, so the node never validates against a catalogue its mirror does not hold. At
//! start-up the latest mirrored version is read back and its signature and link to its
//! predecessor are checked again, because the database file is not trusted blindly.

use rcpfed_core::catalogue::{SignedCatalogue, verify_catalogue};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::members::Federation;
use rcpfed_store::{IndicatorStore, catalogue_chain};
use std::sync::{Arc, RwLock};

/// The catalogue version in force, shared by the publisher and the mirror.
#[derive(Clone, Default)]
pub struct CatalogueInForce(Arc<RwLock<Option<Arc<SignedCatalogue>>>>);

impl CatalogueInForce {
    /// No catalogue yet (a new node, before the hub's first version arrives).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The version in force, if any; callers keep the `Arc` for one whole check.
    pub fn get(&self) -> Option<Arc<SignedCatalogue>> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The (version, digest) the next version must follow.
    pub fn chain_position(&self) -> Option<(u64, rcpfed_core::Digest)> {
        self.get().map(|c| (c.version, c.digest))
    }

    /// Puts `next` in force; call only once it is stored in the mirror.
    pub fn set(&self, next: SignedCatalogue) {
        let next = Arc::new(next);
        match self.0.write() {
            Ok(mut guard) => *guard = Some(next),
            Err(poisoned) => *poisoned.into_inner() = Some(next),
        }
    }

    /// Reads the latest mirrored catalogue version and verifies it again: hub signature,
    /// content and link to the mirrored version before it. None when the mirror holds none.
    pub fn load(
        store: &dyn IndicatorStore,
        federation: &Federation,
    ) -> Result<Option<SignedCatalogue>, String> {
        let chain = catalogue_chain(&federation.hub_id);
        let Some(latest) = store
            .hub_document(&chain, None)
            .map_err(|e| format!("reading the mirrored catalogue: {e}"))?
        else {
            return Ok(None);
        };
        let previous = match latest.seq {
            0 | 1 => None,
            v => {
                let before = store
                    .hub_document(&chain, Some(v - 1))
                    .map_err(|e| format!("reading the mirrored catalogue: {e}"))?
                    .ok_or_else(|| {
                        format!(
                            "the mirror holds catalogue version {v} but not version {}",
                            v - 1
                        )
                    })?;
                Some((before.seq, before.digest))
            }
        };
        let envelope = SignedEnvelope::decode(&latest.envelope)
            .map_err(|e| format!("mirrored catalogue version {}: {e}", latest.seq))?;
        let hub_keys = federation.hub().map(|h| h.keys.clone()).unwrap_or_default();
        let signed = verify_catalogue(&envelope, &hub_keys, &federation.federation_id, previous)
            .map_err(|e| {
                format!(
                    "mirrored catalogue version {} does not verify: {e}",
                    latest.seq
                )
            })?;
        Ok(Some(signed))
    }
}
