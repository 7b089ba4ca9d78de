//! The hub's transparency log on top of the store: every accepted statement is a leaf
//! (`SHA-256(0x00 || PAE(payload_type, payload))`, leaf index = feed index - 1); the store keeps
//! the hash of every complete subtree, so any proof is O(log n) point reads and start-up reads
//! only the O(log n) nodes of the right edge.

use rcpfed_core::checkpoint::Checkpoint;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::merkle::{self, Frontier, Hash, HashSource};
use rcpfed_proto::v1;
use rcpfed_store::{Cosignature, HubStore, StoreError, StoredCheckpoint};
use std::collections::HashMap;

/// The log origin (and log key name) of a federation.
pub fn origin(federation_id: &str) -> String {
    rcpfed_core::logkeys::log_origin(federation_id)
}

/// The leaf hash of a stored envelope.
pub fn leaf_of_envelope(envelope_bytes: &[u8]) -> Result<Hash, StoreError> {
    let env = SignedEnvelope::decode(envelope_bytes)
        .map_err(|e| StoreError::Corrupt(format!("stored envelope does not decode: {e}")))?;
    Ok(env.leaf_hash())
}

/// Complete-subtree hashes read from the store.
pub struct StoreSource<'a>(pub &'a dyn HubStore);

impl HashSource for StoreSource<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.0
            .log_node(level, index)?
            .ok_or_else(|| StoreError::Corrupt(format!("log node ({level}, {index}) is missing")))
    }
}

/// The store plus nodes not yet committed (the batch being written).
pub struct OverlaySource<'a> {
    /// The committed nodes.
    pub store: &'a dyn HubStore,
    /// Nodes of the batch in progress.
    pub pending: &'a HashMap<(u8, u64), Hash>,
}

impl HashSource for OverlaySource<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        match self.pending.get(&(level, index)) {
            Some(h) => Ok(*h),
            None => StoreSource(self.store).node(level, index),
        }
    }
}

/// Loads the right edge of the log and checks it against the latest checkpoint. Reads
/// O(log n) nodes: start-up time does not grow with the log.
pub fn load_frontier(
    store: &dyn HubStore,
) -> Result<(Frontier, Option<StoredCheckpoint>), StoreError> {
    let latest = store.latest_checkpoint()?;
    let size = latest.as_ref().map(|c| c.size).unwrap_or(0);
    let keys = Frontier::boundaries(size);
    let nodes = store
        .log_nodes(&keys)?
        .into_iter()
        .zip(&keys)
        .map(|(n, (level, index))| {
            n.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "log node ({level}, {index}) of the right edge is missing"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let frontier = Frontier::try_from_nodes(size, nodes).map_err(StoreError::Corrupt)?;
    if let Some(cp) = &latest
        && frontier.root() != cp.root
    {
        return Err(StoreError::Corrupt(format!(
            "the stored log does not match its latest checkpoint (size {}): refusing to continue a rewritten log",
            cp.size
        )));
    }
    Ok((frontier, latest))
}

/// A signed checkpoint note followed by the witnesses' cosignature lines.
pub fn note_with_cosignatures(note: &str, cosignatures: &[Cosignature]) -> String {
    let mut out = note.to_string();
    for c in cosignatures {
        out.push_str(&c.line);
        if !c.line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Inclusion proof of `leaf_index` against `checkpoint`, as the wire message.
pub fn log_proof(
    store: &dyn HubStore,
    leaf_index: u64,
    checkpoint: &StoredCheckpoint,
) -> Result<v1::LogProof, StoreError> {
    let mut proofs = log_proofs(store, &[leaf_index], checkpoint)?;
    proofs
        .pop()
        .ok_or_else(|| StoreError::Corrupt("no proof built".into()))
}

/// Inclusion proofs of several leaves against one checkpoint; its note and cosignatures are
/// read once, not once per leaf (the feed sends a batch of entries at a time).
pub fn log_proofs(
    store: &dyn HubStore,
    leaf_indexes: &[u64],
    checkpoint: &StoredCheckpoint,
) -> Result<Vec<v1::LogProof>, StoreError> {
    let note = note_with_cosignatures(&checkpoint.note, &store.cosignatures(checkpoint.size)?);
    leaf_indexes
        .iter()
        .map(|&leaf_index| {
            let proof = merkle::inclusion_proof(&StoreSource(store), leaf_index, checkpoint.size)
                .map_err(|e| match e {
                merkle::ProofError::OutOfRange(m) => StoreError::Corrupt(m),
                merkle::ProofError::Source(e) => e,
            })?;
            Ok(v1::LogProof {
                leaf_index,
                tree_size: checkpoint.size,
                checkpoint: note.clone(),
                inclusion_proof: proof.iter().map(|h| h.to_vec()).collect(),
            })
        })
        .collect()
}

/// Consistency proof between two sizes.
pub fn consistency(
    store: &dyn HubStore,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, merkle::ProofError<StoreError>> {
    merkle::consistency_proof(&StoreSource(store), old_size, new_size)
}

/// Parses the checkpoint body of a stored note.
pub fn checkpoint_of(stored: &StoredCheckpoint) -> Result<Checkpoint, StoreError> {
    let note = rcpfed_core::note::parse_note(&stored.note).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored checkpoint {} does not parse: {e}",
            stored.size
        ))
    })?;
    Checkpoint::parse(&note.text).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored checkpoint {} does not parse: {e}",
            stored.size
        ))
    })
}

/// What a full check of a stored log found ([`verify_stored_log`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCheck {
    /// Entries in the log, and the size of the latest checkpoint.
    pub size: u64,
    /// The root of the log, equal to the latest checkpoint's.
    pub root: Hash,
    /// Witness cosignatures stored for the latest checkpoint.
    pub cosignatures: usize,
}

/// Rows and bytes per page read while checking a whole log.
const CHECK_PAGE_ROWS: usize = 1024;
const CHECK_PAGE_BYTES: usize = 32 << 20;

/// Checks a whole stored log, as after a restore: every entry, in feed order with no gap, is
/// hashed again from its stored envelope; every stored subtree hash equals the one recomputed;
/// the entries are exactly those of the latest checkpoint, whose root they reproduce and whose
/// signature verifies with `log` (the hub's log key). Reads the log once, page by page, in
/// bounded memory.
pub fn verify_stored_log(
    store: &dyn HubStore,
    log: &rcpfed_core::note::NoteVerifier,
) -> Result<LogCheck, StoreError> {
    let corrupt = StoreError::Corrupt;
    let latest = store.latest_checkpoint()?;
    let mut frontier = Frontier::new();
    loop {
        let page = store.list_feed(frontier.size(), CHECK_PAGE_ROWS, CHECK_PAGE_BYTES)?;
        if page.is_empty() {
            break;
        }
        let mut created = Vec::new();
        for st in &page {
            if st.feed_index != frontier.size() + 1 {
                return Err(corrupt(format!(
                    "the log jumps from entry {} to entry {}",
                    frontier.size(),
                    st.feed_index
                )));
            }
            created.extend(frontier.append(leaf_of_envelope(&st.envelope)?));
        }
        let keys: Vec<(u8, u64)> = created.iter().map(|(l, i, _)| (*l, *i)).collect();
        for ((level, index, want), stored) in created.iter().zip(store.log_nodes(&keys)?) {
            if stored.as_ref() != Some(want) {
                return Err(corrupt(format!(
                    "stored log node ({level}, {index}) is {} but the entries give another hash",
                    if stored.is_some() {
                        "different"
                    } else {
                        "missing"
                    }
                )));
            }
        }
    }
    let Some(latest) = latest else {
        if frontier.size() == 0 {
            return Ok(LogCheck {
                size: 0,
                root: frontier.root(),
                cosignatures: 0,
            });
        }
        return Err(corrupt(format!(
            "{} log entries but no checkpoint",
            frontier.size()
        )));
    };
    if latest.size != frontier.size() || latest.root != frontier.root() {
        return Err(corrupt(format!(
            "the latest checkpoint (size {}) does not match the {} stored entries",
            latest.size,
            frontier.size()
        )));
    }
    let (signed, _) = rcpfed_core::checkpoint::open_checkpoint(&latest.note, log).map_err(|e| {
        corrupt(format!(
            "the latest checkpoint's signature does not verify with the hub's log key: {e}"
        ))
    })?;
    if signed.size != latest.size || signed.root != latest.root {
        return Err(corrupt(
            "the latest checkpoint's signed note names another size or root than the stored one"
                .into(),
        ));
    }
    Ok(LogCheck {
        size: latest.size,
        root: latest.root,
        cosignatures: store.cosignatures(latest.size)?.len(),
    })
}
