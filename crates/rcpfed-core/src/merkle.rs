//! RFC 6962 / RFC 9162 §2.1 Merkle tree math for the hub's transparency log, with no I/O.
//!
//! Leaves are hashed as `SHA-256(0x00 || entry)` and interior nodes as
//! `SHA-256(0x01 || left || right)`; the tree over `n` leaves splits at the largest power of
//! two strictly below `n`. Storage sees the tree as *complete subtrees* addressed by
//! `(level, index)`: the node at level `l`, index `i` covers leaves `[i << l, (i + 1) << l)`.
//! Only complete subtrees are ever stored; the hash of an incomplete subtree (the right edge
//! of a tree whose size is not a power of two) is folded from at most 64 complete ones.
//!
//! Architecture invariant: every proof and root here costs O(log n) reads of a
//! [`HashSource`] and never loads the tree; [`Frontier`] keeps the right edge in memory so
//! appends and the current root need no reads at all.

use crate::rejection::{RejectClass, Rejection, reasons};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// Hash of one log entry: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// The largest power of two strictly less than `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Root of a list of leaf hashes, by the RFC's recursive definition (reference
/// implementation, O(n) hashing, for tests and small trees).
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            // n fits in u64 and the split is below n, so it fits in usize too.
            let k = split_point(n as u64) as usize;
            node_hash(
                &root_from_leaves(&leaves[..k]),
                &root_from_leaves(&leaves[k..]),
            )
        }
    }
}

/// A source of hashes of complete subtrees, typically the hub's store.
///
/// Level 0 holds the leaf hashes; the node at `(level, index)` covers leaves
/// `[index << level, (index + 1) << level)`. Implementations are asked only for nodes
/// whose leaves all exist.
pub trait HashSource {
    /// Why a node could not be read.
    type Error;
    /// The hash of the complete subtree at `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: HashSource + ?Sized> HashSource for &S {
    type Error = S::Error;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// The maximal complete subtrees covering `[start, end)`, left to right, as `(level, index)`.
/// For a range of the RFC's recursive split their sizes strictly decrease.
fn decompose(mut start: u64, end: u64) -> Vec<(u8, u64)> {
    let mut out = Vec::new();
    while start < end {
        let align = start.trailing_zeros(); // 64 when start == 0
        let fit = 63 - (end - start).leading_zeros(); // floor(log2(end - start))
        let level = align.min(fit);
        out.push((level as u8, start >> level));
        start += 1u64 << level;
    }
    out
}

/// Hash of the subtree covering leaves `[start, end)`, where the range is one of the RFC's
/// recursive split (so `start` is a multiple of the smallest power of two `>= end - start`).
/// Reads at most 64 complete subtrees (O(log n)). An empty range gives [`empty_root`].
pub fn subtree_hash<S: HashSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let parts = decompose(start, end);
    let mut iter = parts.iter().rev();
    let Some(&(level, index)) = iter.next() else {
        return Ok(empty_root());
    };
    let mut acc = src.node(level, index)?;
    for &(level, index) in iter {
        acc = node_hash(&src.node(level, index)?, &acc);
    }
    Ok(acc)
}

/// Root of the tree of the first `size` leaves, from O(log n) reads.
pub fn root<S: HashSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    subtree_hash(src, 0, size)
}

/// Why a proof could not be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The requested index or sizes do not describe a proof that exists.
    OutOfRange(String),
    /// The hash source failed.
    Source(E),
}

impl<E: fmt::Display> fmt::Display for ProofError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::OutOfRange(msg) => f.write_str(msg),
            ProofError::Source(e) => write!(f, "reading the tree failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ProofError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProofError::OutOfRange(_) => None,
            ProofError::Source(e) => Some(e),
        }
    }
}

/// The RFC 9162 inclusion proof (PATH) of leaf `index` in the tree of `size` leaves, from
/// the leaf's sibling up to the root's child. O(log n) reads.
pub fn inclusion_proof<S: HashSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf index {index} is not in a tree of size {size}"
        )));
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut path = Vec::new();
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            path.push(subtree_hash(src, mid, hi).map_err(ProofError::Source)?);
            hi = mid;
        } else {
            path.push(subtree_hash(src, lo, mid).map_err(ProofError::Source)?);
            lo = mid;
        }
    }
    path.reverse();
    Ok(path)
}

/// The RFC 9162 consistency proof (PROOF, i.e. SUBPROOF with the flag set) from the tree of
/// `old_size` leaves to the tree of `new_size` leaves. `old_size` must be in
/// `1..=new_size`; equal sizes give the empty proof. O(log n) reads.
pub fn consistency_proof<S: HashSource>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size == 0 {
        return Err(ProofError::OutOfRange(
            "there is no consistency proof from the empty tree: every tree extends it".into(),
        ));
    }
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "old tree size {old_size} is larger than new tree size {new_size}"
        )));
    }
    let (mut lo, mut hi) = (0u64, new_size);
    let mut whole_old_tree = true; // the RFC's `b` flag
    let mut proof = Vec::new();
    loop {
        let m = old_size - lo;
        if m == hi - lo {
            if !whole_old_tree {
                proof.push(subtree_hash(src, lo, hi).map_err(ProofError::Source)?);
            }
            break;
        }
        let mid = lo + split_point(hi - lo);
        if old_size <= mid {
            proof.push(subtree_hash(src, mid, hi).map_err(ProofError::Source)?);
            hi = mid;
        } else {
            proof.push(subtree_hash(src, lo, mid).map_err(ProofError::Source)?);
            lo = mid;
            whole_old_tree = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

fn bad_proof(message: String) -> Rejection {
    Rejection::new(RejectClass::Invalid, reasons::BAD_PROOF, message)
}

/// Verifies an inclusion proof with the RFC 9162 §2.1.3.2 algorithm: `leaf` (a leaf hash)
/// is at `index` in the tree of `size` leaves whose root is `root`.
///
/// As in the RFC, the size is bound only through the proof's shape: a proof and root can
/// also pass under another size whose path has the same shape (e.g. leaf 5 at sizes 7 and
/// 8), because a "leaf" on the right edge could be an interior node hash that no entry
/// produces. Check sizes and roots as the signed checkpoint states them together.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Rejection> {
    if index >= size {
        return Err(bad_proof(format!(
            "inclusion proof names leaf index {index}, which is not in a tree of size {size}"
        )));
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(bad_proof(format!(
                "inclusion proof for leaf {index} in a tree of size {size} has too many hashes ({})",
                proof.len()
            )));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(bad_proof(format!(
            "inclusion proof for leaf {index} in a tree of size {size} has too few hashes ({})",
            proof.len()
        )));
    }
    if r != *root {
        return Err(bad_proof(format!(
            "inclusion proof for leaf {index} in a tree of size {size} does not lead to the expected root"
        )));
    }
    Ok(())
}

/// Verifies a consistency proof with the RFC 9162 §2.1.4.2 algorithm: the tree of
/// `old_size` leaves with root `old_root` is a prefix of the tree of `new_size` leaves with
/// root `new_root`.
///
/// The sizes are bound only through the proof's shape, as for [`verify_inclusion`].
///
/// Refused: a proof from a larger to a smaller tree; a non-empty proof from the empty tree
/// or between equal sizes; two different roots for the same size (INCONSISTENT_CHECKPOINT:
/// that alone proves a fork); and any proof that does not recompute both roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), Rejection> {
    if old_size > new_size {
        return Err(bad_proof(format!(
            "consistency proof goes from a larger tree (size {old_size}) to a smaller one (size {new_size})"
        )));
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(bad_proof(
                "a consistency proof from the empty tree must be empty".into(),
            ));
        }
        if *old_root != empty_root() {
            return Err(bad_proof(
                "the old root is not the root of the empty tree (sha-256 of nothing)".into(),
            ));
        }
        return Ok(());
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(bad_proof(format!(
                "a consistency proof between two trees of the same size ({old_size}) must be empty"
            )));
        }
        if old_root != new_root {
            return Err(Rejection::new(
                RejectClass::Conflict,
                reasons::INCONSISTENT_CHECKPOINT,
                format!("two different roots for the same tree size {old_size}: the log forked"),
            ));
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(bad_proof(format!(
            "consistency proof from size {old_size} to size {new_size} is empty"
        )));
    };
    // Step 2: a power-of-two old tree is itself a node of the new tree, so its root starts
    // the path.
    let (start, rest): (&Hash, &[Hash]) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *start;
    let mut sr = *start;
    for c in rest {
        if snode == 0 {
            return Err(bad_proof(format!(
                "consistency proof from size {old_size} to size {new_size} has too many hashes ({})",
                proof.len()
            )));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(bad_proof(format!(
            "consistency proof from size {old_size} to size {new_size} has too few hashes ({})",
            proof.len()
        )));
    }
    if fr != *old_root {
        return Err(bad_proof(format!(
            "consistency proof from size {old_size} to size {new_size} does not lead to the old root"
        )));
    }
    if sr != *new_root {
        return Err(bad_proof(format!(
            "consistency proof from size {old_size} to size {new_size} does not lead to the new root"
        )));
    }
    Ok(())
}

/// The in-memory right edge ("compact range") of the log: the hashes of the maximal
/// complete subtrees of the current tree, left to right (one per set bit of the size, the
/// largest first).
///
/// Appending a leaf returns every complete node it creates, to persist; the current root
/// needs no reads. At start-up, [`Frontier::boundaries`] names the O(log n) nodes to read
/// back and [`Frontier::from_nodes`] rebuilds the frontier from them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Rebuilds a frontier from the hashes of the nodes named by
    /// [`Frontier::boundaries`]`(size)`, in that order.
    ///
    /// # Panics
    /// If `nodes.len()` is not the number of set bits of `size`; use
    /// [`Frontier::try_from_nodes`] to get an error instead.
    pub fn from_nodes(size: u64, nodes: Vec<Hash>) -> Self {
        match Self::try_from_nodes(size, nodes) {
            Ok(f) => f,
            Err(msg) => panic!("{msg}"),
        }
    }

    /// Like [`Frontier::from_nodes`], with a plain-words error when the node count does not
    /// match the size.
    pub fn try_from_nodes(size: u64, nodes: Vec<Hash>) -> Result<Self, String> {
        let want = size.count_ones() as usize;
        if nodes.len() != want {
            return Err(format!(
                "a tree of size {size} has {want} maximal complete subtrees, but {} hashes were given",
                nodes.len()
            ));
        }
        Ok(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns every complete node created, as `(level, index, hash)`,
    /// starting with the leaf itself at level 0 and going up.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let old = self.size;
        let mut created = vec![(0u8, old, leaf)];
        let mut hash = leaf;
        let mut level = 0u8;
        // Each set low bit of the old size is a complete subtree on the right edge that the
        // new leaf now completes into a subtree one level up.
        while (old >> level) & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                break; // unreachable: one node per set bit
            };
            hash = node_hash(&left, &hash);
            level += 1;
            created.push((level, old >> level, hash));
        }
        self.nodes.push(hash);
        self.size = old + 1;
        created
    }

    /// Root of the current tree ([`empty_root`] when empty).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// The maximal complete subtrees, left to right.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// `(level, index)` of the maximal complete subtrees of a tree of `size` leaves, left to
    /// right: the nodes to read to rebuild the frontier.
    pub fn boundaries(size: u64) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if (size >> level) & 1 == 1 {
                out.push((level, start >> level));
                start += 1u64 << level;
            }
        }
        out
    }
}

/// A node the source does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingNode {
    /// Level asked for.
    pub level: u8,
    /// Index asked for.
    pub index: u64,
}

impl fmt::Display for MissingNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no tree node at level {} index {}",
            self.level, self.index
        )
    }
}

impl std::error::Error for MissingNode {}

/// Every complete subtree hash of a tree, in memory: `self.0[level][index]`. For tests and
/// small trees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemorySource(pub Vec<Vec<Hash>>);

impl MemorySource {
    /// All complete subtrees over `leaves` (leaf hashes).
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let mut levels = vec![leaves.to_vec()];
        while let Some(below) = levels.last() {
            if below.len() < 2 {
                break;
            }
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(up);
        }
        MemorySource(levels)
    }
}

impl HashSource for MemorySource {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.0
            .get(usize::from(level))
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn decompose_right_edge() {
        assert_eq!(decompose(0, 7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(decompose(4, 7), vec![(1, 2), (0, 6)]);
        assert_eq!(decompose(8, 16), vec![(3, 1)]);
        assert!(decompose(5, 5).is_empty());
    }

    #[test]
    fn boundaries_match_frontier_nodes() {
        assert_eq!(Frontier::boundaries(0), vec![]);
        assert_eq!(Frontier::boundaries(7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(Frontier::boundaries(8), vec![(3, 0)]);
    }
}
