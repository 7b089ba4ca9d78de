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

/// The `(level, index)` and hash of each maximal complete subtree of `frontier`'s tree.
pub fn right_edge(frontier: &Frontier) -> Vec<((u8, u64), Hash)> {
    Frontier::boundaries(frontier.size())
        .into_iter()
        .zip(frontier.nodes().iter().copied())
        .collect()
}

/// The log nodes the inclusion proofs of one batch need, held in memory: the right edge of
/// the log before the batch and every complete node the batch created. A leaf of the batch
/// has, outside the batch, only left siblings that are right-edge nodes (the split of the
/// tree that puts the leaf right of a subtree ending at or before the old size puts that
/// subtree on the old right edge), so a receipt's proof needs no store read.
pub struct BatchTree {
    size: u64,
    root: Hash,
    nodes: HashMap<(u8, u64), Hash>,
}

impl BatchTree {
    /// The tree of `size` leaves and `root` after a batch, from the right edge before it
    /// ([`right_edge`]) and the nodes the batch created.
    pub fn new(
        edge: Vec<((u8, u64), Hash)>,
        created: &[(u8, u64, Hash)],
        size: u64,
        root: Hash,
    ) -> Self {
        let mut nodes: HashMap<(u8, u64), Hash> = edge.into_iter().collect();
        nodes.extend(
            created
                .iter()
                .map(|(level, index, hash)| ((*level, *index), *hash)),
        );
        BatchTree { size, root, nodes }
    }

    /// The inclusion proof of a leaf of the batch against `checkpoint` (the batch's), checked
    /// against the checkpoint's root before it is returned: a wrong node is caught here, not
    /// by the member that verifies the receipt.
    pub fn log_proof(
        &self,
        leaf_index: u64,
        checkpoint: &StoredCheckpoint,
    ) -> Result<v1::LogProof, StoreError> {
        if checkpoint.size != self.size || checkpoint.root != self.root {
            return Err(StoreError::Corrupt(format!(
                "the batch's nodes are of the tree of size {}, not of checkpoint {}",
                self.size, checkpoint.size
            )));
        }
        let proof = merkle::inclusion_proof(self, leaf_index, self.size).map_err(|e| {
            StoreError::Corrupt(format!(
                "no inclusion proof of leaf {leaf_index} from the batch's nodes: {e}"
            ))
        })?;
        let leaf = self.node(0, leaf_index).map_err(|e| {
            StoreError::Corrupt(format!("leaf {leaf_index} is not in the batch: {e}"))
        })?;
        merkle::verify_inclusion(&leaf, leaf_index, self.size, &proof, &self.root).map_err(
            |e| {
                StoreError::Corrupt(format!(
                    "the inclusion proof of leaf {leaf_index} does not verify against the batch's checkpoint: {}",
                    e.message
                ))
            },
        )?;
        // Witnesses cosign a checkpoint only after it is committed: the note has no
        // cosignature lines yet.
        Ok(v1::LogProof {
            leaf_index,
            tree_size: self.size,
            checkpoint: checkpoint.note.clone(),
            inclusion_proof: proof.iter().map(|h| h.to_vec()).collect(),
        })
    }
}

// Hundreds of hashes say nothing in a log line: the size and the count.
impl std::fmt::Debug for BatchTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchTree")
            .field("size", &self.size)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl HashSource for BatchTree {
    type Error = merkle::MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, merkle::MissingNode> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(merkle::MissingNode { level, index })
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
/// read once, not once per leaf (the feed sends a batch of entries at a time), and every node
/// the proofs need is read in one store call (one read transaction), each node once.
pub fn log_proofs(
    store: &dyn HubStore,
    leaf_indexes: &[u64],
    checkpoint: &StoredCheckpoint,
) -> Result<Vec<v1::LogProof>, StoreError> {
    let note = note_with_cosignatures(&checkpoint.note, &store.cosignatures(checkpoint.size)?);
    let size = checkpoint.size;
    let proofs = read_once(store, |source| {
        leaf_indexes
            .iter()
            .map(|&leaf_index| merkle::inclusion_proof(&source, leaf_index, size))
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(|e| match e {
        merkle::ProofError::OutOfRange(m) => StoreError::Corrupt(m),
        merkle::ProofError::Source(e) => e,
    })?;
    Ok(leaf_indexes
        .iter()
        .zip(proofs)
        .map(|(&leaf_index, proof)| v1::LogProof {
            leaf_index,
            tree_size: size,
            checkpoint: note.clone(),
            inclusion_proof: proof.iter().map(|h| h.to_vec()).collect(),
        })
        .collect())
}

/// Runs `proofs` on the nodes it needs, read in one store call (one read transaction, each
/// node once) instead of one call per node: which nodes a proof reads depends only on the
/// indexes and sizes, so a first run with placeholder hashes names them.
fn read_once<T>(
    store: &dyn HubStore,
    proofs: impl Fn(&dyn HashSource<Error = StoreError>) -> Result<T, merkle::ProofError<StoreError>>,
) -> Result<T, merkle::ProofError<StoreError>> {
    let wanted = NodesRead::default();
    proofs(&wanted)?;
    let mut keys = wanted.0.into_inner();
    keys.sort_unstable();
    keys.dedup();
    let read = store.log_nodes(&keys).map_err(merkle::ProofError::Source)?;
    let nodes = keys
        .into_iter()
        .zip(read)
        .filter_map(|(key, hash)| hash.map(|h| (key, h)))
        .collect();
    proofs(&NodesFetched(nodes))
}

/// Records the nodes a proof asks for (answering a placeholder hash).
#[derive(Default)]
struct NodesRead(std::cell::RefCell<Vec<(u8, u64)>>);

impl HashSource for NodesRead {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.0.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// The nodes [`NodesRead`] named, as read from the store.
struct NodesFetched(HashMap<(u8, u64), Hash>);

impl HashSource for NodesFetched {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or_else(|| StoreError::Corrupt(format!("log node ({level}, {index}) is missing")))
    }
}

/// Consistency proof between two sizes.
pub fn consistency(
    store: &dyn HubStore,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, merkle::ProofError<StoreError>> {
    read_once(store, |source| {
        merkle::consistency_proof(&source, old_size, new_size)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcpfed_core::merkle::MemorySource;

    fn leaf(i: u64) -> Hash {
        merkle::leaf_hash(&i.to_be_bytes())
    }

    fn checkpoint(size: u64, root: Hash) -> StoredCheckpoint {
        StoredCheckpoint {
            size,
            root,
            note: "note\n".into(),
            created_at_ms: 0,
            cosignature_count: 0,
        }
    }

    /// (level, index) and hash of a node.
    type Node = ((u8, u64), Hash);

    /// The batch after `old` leaves, `added` long: its tree, the right edge before it and the
    /// nodes it created.
    fn batch(old: u64, added: u64) -> (Frontier, Vec<Node>, Vec<(u8, u64, Hash)>) {
        let mut frontier = Frontier::new();
        for i in 0..old {
            frontier.append(leaf(i));
        }
        let edge = right_edge(&frontier);
        let created = (old..old + added)
            .flat_map(|i| frontier.append(leaf(i)))
            .collect();
        (frontier, edge, created)
    }

    /// Every leaf of a batch gets, from the batch's nodes alone, the proof the whole tree
    /// gives, at every old size and batch length up to a few levels.
    #[test]
    fn batch_proofs_are_the_whole_tree_proofs() {
        for old in 0..40u64 {
            for added in 1..20u64 {
                let (frontier, edge, created) = batch(old, added);
                let size = old + added;
                let tree = BatchTree::new(edge, &created, size, frontier.root());
                let leaves: Vec<Hash> = (0..size).map(leaf).collect();
                let whole = MemorySource::from_leaves(&leaves);
                let cp = checkpoint(size, frontier.root());
                for i in old..size {
                    let proof = tree.log_proof(i, &cp).expect("proof from the batch");
                    let want = merkle::inclusion_proof(&whole, i, size).expect("proof");
                    let got: Vec<Vec<u8>> = want.iter().map(|h| h.to_vec()).collect();
                    assert_eq!(proof.inclusion_proof, got, "leaf {i} after {old} + {added}");
                    assert_eq!(proof.checkpoint, cp.note);
                }
            }
        }
    }

    /// Proofs read from the store in one call each are those of the whole tree.
    #[test]
    fn stored_proofs_are_the_whole_tree_proofs() {
        use rcpfed_store::{NewCheckpoint, SqliteHubStore};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteHubStore::open(&dir.path().join("hub.sqlite")).expect("store");
        let mut frontier = Frontier::new();
        for batch in [1u64, 12, 24] {
            let created: Vec<(u8, u64, Hash)> = (frontier.size()..batch)
                .flat_map(|i| frontier.append(leaf(i)))
                .collect();
            let cp = NewCheckpoint {
                size: frontier.size(),
                root: frontier.root(),
                note: format!("note {}\n", frontier.size()),
                created_at_ms: 0,
            };
            store
                .append(&[], &[], &[], &created, Some(&cp))
                .expect("append");
        }
        let size = frontier.size();
        let leaves: Vec<Hash> = (0..size).map(leaf).collect();
        let whole = MemorySource::from_leaves(&leaves);
        let latest = store
            .latest_checkpoint()
            .expect("read")
            .expect("a checkpoint");
        let all: Vec<u64> = (0..size).collect();
        let proofs = log_proofs(&store, &all, &latest).expect("proofs");
        for (i, proof) in all.iter().zip(&proofs) {
            let want = merkle::inclusion_proof(&whole, *i, size).expect("proof");
            let want: Vec<Vec<u8>> = want.iter().map(|h| h.to_vec()).collect();
            assert_eq!(proof.inclusion_proof, want, "leaf {i}");
        }
        for old in 1..=size {
            assert_eq!(
                consistency(&store, old, size).expect("consistency"),
                merkle::consistency_proof(&whole, old, size).expect("consistency"),
                "from {old}"
            );
        }
        assert!(
            log_proofs(&store, &[size], &latest).is_err(),
            "no such leaf"
        );
    }

    /// A wrong node is caught before a proof leaves, and so is another checkpoint.
    #[test]
    fn a_wrong_node_or_checkpoint_gives_no_proof() {
        let (frontier, edge, mut created) = batch(5, 3);
        let root = frontier.root();
        // Leaf 6 is the sibling in leaf 7's proof.
        for node in created.iter_mut() {
            if (node.0, node.1) == (0, 6) {
                node.2 = leaf(99);
            }
        }
        let tree = BatchTree::new(edge, &created, 8, root);
        assert!(tree.log_proof(7, &checkpoint(8, root)).is_err());
        assert!(tree.log_proof(5, &checkpoint(7, root)).is_err());
    }
}
