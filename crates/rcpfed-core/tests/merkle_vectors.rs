//! RFC 6962 Merkle tree: the Certificate Transparency reference test vectors (the 8-leaf
//! tree of the CT reference implementation's merkle_tree_test), cross-checked against an
//! independent hashlib implementation of RFC 9162 §2.1, and property tests.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rcpfed_core::merkle::{
    Frontier, Hash, HashSource, MemorySource, ProofError, consistency_proof, empty_root,
    inclusion_proof, leaf_hash, node_hash, root, root_from_leaves, subtree_hash,
    verify_consistency, verify_inclusion,
};
use rcpfed_core::rejection::reasons;
use std::collections::HashMap;
use std::convert::Infallible;

/// The leaf inputs of the CT reference tree.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of the first 1..=8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index (0-based), tree size, PATH).
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, PROOF).
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        8,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
];

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn hs(v: &[&str]) -> Vec<Hash> {
    v.iter().map(|s| h(s)).collect()
}

fn ct_leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).unwrap()))
        .collect()
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(root_from_leaves(&[]), empty_root());
    assert_eq!(
        root(&MemorySource::from_leaves(&[]), 0).unwrap(),
        empty_root()
    );
    assert_eq!(Frontier::new().root(), empty_root());
}

#[test]
fn ct_reference_roots() {
    let leaves = ct_leaves();
    let src = MemorySource::from_leaves(&leaves);
    let mut frontier = Frontier::new();
    for (i, want) in ROOTS.iter().enumerate() {
        let size = i as u64 + 1;
        frontier.append(leaves[i]);
        assert_eq!(
            hex::encode(root_from_leaves(&leaves[..=i])),
            *want,
            "size {size}"
        );
        assert_eq!(hex::encode(root(&src, size).unwrap()), *want, "size {size}");
        assert_eq!(hex::encode(frontier.root()), *want, "size {size}");
    }
}

#[test]
fn ct_reference_inclusion_proofs() {
    let leaves = ct_leaves();
    let src = MemorySource::from_leaves(&leaves);
    for &(index, size, want) in INCLUSION {
        let proof = inclusion_proof(&src, index, size).unwrap();
        assert_eq!(proof, hs(want), "leaf {index} size {size}");
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
    }
}

#[test]
fn ct_reference_consistency_proofs() {
    let leaves = ct_leaves();
    let src = MemorySource::from_leaves(&leaves);
    for &(old, new, want) in CONSISTENCY {
        let proof = consistency_proof(&src, old, new).unwrap();
        assert_eq!(proof, hs(want), "{old} -> {new}");
        let old_root = h(ROOTS[old as usize - 1]);
        let new_root = h(ROOTS[new as usize - 1]);
        verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
    }
}

#[test]
fn ct_reference_interior_nodes() {
    // A few interior nodes of the reference tree, as stored complete subtrees.
    let src = MemorySource::from_leaves(&ct_leaves());
    assert_eq!(
        src.node(1, 2).unwrap(),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a")
    );
    assert_eq!(
        src.node(2, 1).unwrap(),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")
    );
    assert_eq!(src.node(3, 0).unwrap(), h(ROOTS[7]));
    assert_eq!(subtree_hash(&src, 4, 7).unwrap(), {
        let l = ct_leaves();
        node_hash(&node_hash(&l[4], &l[5]), &l[6])
    });
}

#[test]
fn proof_requests_out_of_range_are_refused() {
    let src = MemorySource::from_leaves(&ct_leaves());
    assert!(matches!(
        inclusion_proof(&src, 8, 8),
        Err(ProofError::OutOfRange(_))
    ));
    assert!(matches!(
        inclusion_proof(&src, 0, 0),
        Err(ProofError::OutOfRange(_))
    ));
    assert!(matches!(
        consistency_proof(&src, 5, 4),
        Err(ProofError::OutOfRange(_))
    ));
    assert!(matches!(
        consistency_proof(&src, 0, 4),
        Err(ProofError::OutOfRange(_))
    ));
    // A size beyond the stored tree is a source error, not a wrong proof.
    assert!(matches!(
        inclusion_proof(&src, 0, 9),
        Err(ProofError::Source(_))
    ));
}

#[test]
fn bad_consistency_requests_are_refused_with_reasons() {
    let r = |n: usize| h(ROOTS[n - 1]);
    let proof = hs(CONSISTENCY[2].2); // 6 -> 8
    // From a larger to a smaller tree.
    let e = verify_consistency(8, 6, &r(8), &r(6), &proof).unwrap_err();
    assert_eq!(e.reason, reasons::BAD_PROOF);
    assert!(e.message.contains("larger"), "{}", e.message);
    // From the empty tree with a non-empty proof.
    let e = verify_consistency(0, 8, &empty_root(), &r(8), &proof).unwrap_err();
    assert_eq!(e.reason, reasons::BAD_PROOF);
    // From the empty tree with an empty proof: fine.
    verify_consistency(0, 8, &empty_root(), &r(8), &[]).unwrap();
    // Same size, different roots: a fork.
    let e = verify_consistency(6, 6, &r(6), &r(7), &[]).unwrap_err();
    assert_eq!(e.reason, reasons::INCONSISTENT_CHECKPOINT);
    // Same size, non-empty proof.
    assert!(verify_consistency(6, 6, &r(6), &r(6), &proof).is_err());
    // Empty proof between different sizes.
    assert!(verify_consistency(6, 8, &r(6), &r(8), &[]).is_err());
    // Wrong sizes for the right proof.
    assert!(verify_consistency(6, 8, &r(6), &r(7), &proof).is_err());
    assert!(verify_consistency(5, 8, &r(6), &r(8), &proof).is_err());
    assert!(verify_consistency(6, 9, &r(6), &r(8), &proof).is_err());
    // RFC 9162 binds the sizes only through the proof's shape: 6 -> 7 has the same shape
    // as 6 -> 8, so this proof and root also pass as "size 7" (the would-be 7-leaf tree's
    // last leaf hash is an interior node hash, which no entry can produce). A checkpoint
    // signs size and root together, which is what pins the size.
    assert_eq!(cons_shape(6, 7), cons_shape(6, 8));
    assert!(verify_consistency(6, 7, &r(6), &r(8), &proof).is_ok());
    // Swapped roots.
    assert!(verify_consistency(6, 8, &r(8), &r(6), &proof).is_err());
    // Too long and too short.
    let mut long = proof.clone();
    long.push(r(1));
    assert!(verify_consistency(6, 8, &r(6), &r(8), &long).is_err());
    assert!(verify_consistency(6, 8, &r(6), &r(8), &proof[..2]).is_err());
}

#[test]
fn bad_inclusion_requests_are_refused() {
    let leaves = ct_leaves();
    let proof = hs(INCLUSION[2].2); // leaf 5 of 8
    let root8 = h(ROOTS[7]);
    verify_inclusion(&leaves[5], 5, 8, &proof, &root8).unwrap();
    let e = verify_inclusion(&leaves[5], 8, 8, &proof, &root8).unwrap_err();
    assert_eq!(e.reason, reasons::BAD_PROOF);
    assert!(verify_inclusion(&leaves[5], 4, 8, &proof, &root8).is_err());
    assert!(verify_inclusion(&leaves[4], 5, 8, &proof, &root8).is_err());
    assert!(verify_inclusion(&leaves[5], 5, 6, &proof, &root8).is_err());
    assert!(verify_inclusion(&leaves[5], 5, 9, &proof, &root8).is_err());
    // Same shape, so the RFC algorithm cannot tell size 7 from 8 here (see above).
    assert_eq!(incl_shape(5, 7), incl_shape(5, 8));
    assert!(verify_inclusion(&leaves[5], 5, 7, &proof, &root8).is_ok());
    assert!(verify_inclusion(&leaves[5], 5, 8, &proof[..2], &root8).is_err());
    let mut long = proof.clone();
    long.push(root8);
    assert!(verify_inclusion(&leaves[5], 5, 8, &long, &root8).is_err());
    assert!(verify_inclusion(&leaves[5], 5, 8, &proof, &h(ROOTS[6])).is_err());
}

#[test]
fn frontier_emits_complete_nodes_and_reloads() {
    let leaves = ct_leaves();
    let mut f = Frontier::new();
    let mut emitted = Vec::new();
    for l in &leaves[..7] {
        emitted.extend(f.append(*l));
    }
    // Appending leaf 7 completes (0,7), (1,3), (2,1), (3,0).
    let last = f.append(leaves[7]);
    let where_: Vec<(u8, u64)> = last.iter().map(|&(l, i, _)| (l, i)).collect();
    assert_eq!(where_, vec![(0, 7), (1, 3), (2, 1), (3, 0)]);
    assert_eq!(last[3].2, h(ROOTS[7]));
    assert_eq!(emitted.len(), 7 + 3 + 1); // 7 leaves, 3 pairs, 1 quad before leaf 7
    // Reload a frontier from boundaries at every size.
    let src = MemorySource::from_leaves(&leaves);
    for size in 0..=8u64 {
        let nodes: Vec<Hash> = Frontier::boundaries(size)
            .into_iter()
            .map(|(l, i)| src.node(l, i).unwrap())
            .collect();
        let f = Frontier::from_nodes(size, nodes);
        assert_eq!(f.size(), size);
        assert_eq!(f.root(), root_from_leaves(&leaves[..size as usize]));
    }
    assert!(Frontier::try_from_nodes(3, vec![[0; 32]]).is_err());
}

/// The shape of the RFC 9162 PATH for (index, size), derived from the RFC's recursive
/// definition independently of the verifier: leaf to root, `true` where the sibling is on
/// the left. The verifier's computation depends on the sizes only through this shape.
fn incl_shape(index: u64, size: u64) -> Vec<bool> {
    let (mut lo, mut hi) = (0u64, size);
    let mut out = Vec::new();
    while hi - lo > 1 {
        let k = (hi - lo).next_power_of_two() / 2;
        if index < lo + k {
            out.push(false);
            hi = lo + k;
        } else {
            out.push(true);
            lo += k;
        }
    }
    out.reverse();
    out
}

/// The shape of the RFC 9162 PROOF for (old, new) (0 < old < new), from SUBPROOF: whether
/// the old root itself starts the path (old is a complete left subtree), then leaf to root
/// whether each hash is a left sibling (part of both trees) or a right one (new tree only).
fn cons_shape(old: u64, new: u64) -> (bool, Vec<bool>) {
    let (mut lo, mut hi) = (0u64, new);
    let mut whole = true;
    let mut out = Vec::new();
    loop {
        if old - lo == hi - lo {
            break;
        }
        let k = (hi - lo).next_power_of_two() / 2;
        if old <= lo + k {
            out.push(false);
            hi = lo + k;
        } else {
            out.push(true);
            lo += k;
            whole = false;
        }
    }
    out.reverse();
    (whole, out)
}

/// The nodes a frontier emitted, as a store would keep them.
struct MapSource(HashMap<(u8, u64), Hash>);

impl HashSource for MapSource {
    type Error = Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        Ok(*self
            .0
            .get(&(level, index))
            .unwrap_or_else(|| panic!("node ({level}, {index}) was never emitted")))
    }
}

fn leaves_of(n: usize, seed: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("entry {seed} {i}").as_bytes()))
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_inclusion_proof_verifies(n in 1usize..300, seed in any::<u64>()) {
        let leaves = leaves_of(n, seed);
        let src = MemorySource::from_leaves(&leaves);
        let size = n as u64;
        let root = root_from_leaves(&leaves);
        prop_assert_eq!(rcpfed_core::merkle::root(&src, size).unwrap(), root);
        for i in 0..size {
            let proof = inclusion_proof(&src, i, size).unwrap();
            prop_assert!(verify_inclusion(&leaves[i as usize], i, size, &proof, &root).is_ok());
        }
    }

    #[test]
    fn every_consistency_proof_verifies(n in 1usize..300, seed in any::<u64>()) {
        let leaves = leaves_of(n, seed);
        let src = MemorySource::from_leaves(&leaves);
        let new_size = n as u64;
        let new_root = root_from_leaves(&leaves);
        for old in 1..=new_size {
            let proof = consistency_proof(&src, old, new_size).unwrap();
            let old_root = root_from_leaves(&leaves[..old as usize]);
            prop_assert!(verify_consistency(old, new_size, &old_root, &new_root, &proof).is_ok(),
                "{} -> {}", old, new_size);
        }
    }

    #[test]
    fn any_change_breaks_an_inclusion_proof(
        n in 2usize..300,
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        which in any::<prop::sample::Index>(),
        bit in 0usize..256,
        delta in 1u64..5,
    ) {
        let leaves = leaves_of(n, seed);
        let src = MemorySource::from_leaves(&leaves);
        let size = n as u64;
        let i = pick.index(n) as u64;
        let leaf = leaves[i as usize];
        let root = root_from_leaves(&leaves);
        let proof = inclusion_proof(&src, i, size).unwrap();
        prop_assert!(verify_inclusion(&leaf, i, size, &proof, &root).is_ok());
        // Any bit of any proof hash.
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = which.index(bad.len());
            bad[k] = flip(&bad[k], bit);
            prop_assert!(verify_inclusion(&leaf, i, size, &bad, &root).is_err());
        }
        // The leaf, the root.
        prop_assert!(verify_inclusion(&flip(&leaf, bit), i, size, &proof, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, i, size, &proof, &flip(&root, bit)).is_err());
        // Another index always fails; another size fails exactly when it changes the
        // proof's shape (RFC 9162 binds the size no further; checkpoints sign size and root).
        let other_i = (i + 1 + delta % (size - 1)) % size; // never i
        prop_assert!(verify_inclusion(&leaf, other_i, size, &proof, &root).is_err());
        let shape = incl_shape(i, size);
        for s in [size + delta, size.saturating_sub(delta)] {
            let ok = verify_inclusion(&leaf, i, s, &proof, &root).is_ok();
            prop_assert_eq!(ok, i < s && incl_shape(i, s) == shape, "size {} -> {}", size, s);
        }
        // Dropping or adding a hash.
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(&leaf, i, size, &proof[..proof.len() - 1], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, i, size, &longer, &root).is_err());
    }

    #[test]
    fn any_change_breaks_a_consistency_proof(
        n in 2usize..300,
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        which in any::<prop::sample::Index>(),
        bit in 0usize..256,
        delta in 1u64..5,
    ) {
        let leaves = leaves_of(n, seed);
        let src = MemorySource::from_leaves(&leaves);
        let new = n as u64;
        let old = 1 + pick.index(n - 1) as u64; // 1..new, strictly smaller
        let old_root = root_from_leaves(&leaves[..old as usize]);
        let new_root = root_from_leaves(&leaves);
        let proof = consistency_proof(&src, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());
        let mut bad = proof.clone();
        let k = which.index(bad.len());
        bad[k] = flip(&bad[k], bit);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
        prop_assert!(verify_consistency(old, new, &flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flip(&new_root, bit), &proof).is_err());
        // Other sizes fail exactly when they change the proof's shape.
        let shape = cons_shape(old, new);
        for (o, n2) in [
            (old, new + delta),
            (old, new - delta.min(new - old)),
            (old.saturating_sub(delta), new),
            (old + delta, new),
        ] {
            if (o, n2) == (old, new) {
                continue;
            }
            let ok = verify_consistency(o, n2, &old_root, &new_root, &proof).is_ok();
            prop_assert_eq!(ok, 0 < o && o < n2 && cons_shape(o, n2) == shape, "{}->{} as {}->{}", old, new, o, n2);
        }
        prop_assert!(verify_consistency(new, old, &new_root, &old_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof[..proof.len() - 1]).is_err());
    }

    #[test]
    fn frontier_matches_reference_and_its_nodes_serve_proofs(n in 1usize..300, seed in any::<u64>()) {
        let leaves = leaves_of(n, seed);
        let mut f = Frontier::new();
        let mut store = HashMap::new();
        for (i, l) in leaves.iter().enumerate() {
            for (level, index, hash) in f.append(*l) {
                prop_assert!(store.insert((level, index), hash).is_none(), "node emitted twice");
            }
            prop_assert_eq!(f.size(), i as u64 + 1);
            prop_assert_eq!(f.root(), root_from_leaves(&leaves[..=i]));
            prop_assert_eq!(f.nodes().len(), (i + 1).count_ones() as usize);
        }
        let mem = MemorySource::from_leaves(&leaves);
        let map = MapSource(store);
        let size = n as u64;
        // Exactly the complete subtrees were emitted.
        let complete: usize = mem.0.iter().map(Vec::len).sum();
        prop_assert_eq!(map.0.len(), complete);
        for i in 0..size {
            prop_assert_eq!(
                inclusion_proof(&map, i, size).unwrap(),
                inclusion_proof(&mem, i, size).unwrap()
            );
        }
        for old in 1..=size {
            prop_assert_eq!(
                consistency_proof(&map, old, size).unwrap(),
                consistency_proof(&mem, old, size).unwrap()
            );
        }
        // Reloading from boundaries gives the same frontier.
        let nodes: Vec<Hash> = Frontier::boundaries(size)
            .into_iter()
            .map(|(l, i)| map.node(l, i).unwrap())
            .collect();
        prop_assert_eq!(Frontier::from_nodes(size, nodes), f);
    }
}
