//! The log as C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>), with no I/O: tile paths, which
//! tiles a tree has, the stored subtrees a hash tile is made of, and entry bundles.
//!
//! A tile is 256 consecutive hashes of one tree level: hash `i` of tile `n` at tile level `l` is
//! the hash of the complete subtree over leaves `[(n·256 + i)·256^l, (n·256 + i + 1)·256^l)`,
//! which is exactly the stored node `(8·l, n·256 + i)` of [`crate::merkle`]. So a hash tile is
//! a run of stored nodes and needs no hashing. A *partial* tile holds the first `W` (1–255) of
//! those hashes; only hashes of subtrees that are complete in the tree are ever served. The
//! entry bundle `n` holds the entries of the leaves of level-0 tile `n`, each as a big-endian
//! `u16` length and the entry bytes, so an entry longer than 65 535 bytes cannot be put in a
//! bundle (the tlog-tiles format has no room for it; its leaf hash is still in the hash tiles).

use crate::merkle::Hash;
use std::fmt;
use std::ops::Range;

/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels spanned by one tile level (256 = 2^8).
const TILE_HEIGHT: u32 = 8;
/// Largest entry an entry bundle can hold (its length is a big-endian `u16`).
pub const MAX_BUNDLE_ENTRY_BYTES: usize = u16::MAX as usize;
/// Highest tile level a path may name (the spec's bound). Levels above 7 name subtrees of
/// 2^64 leaves or more, which no tree has.
const MAX_PATH_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Tree hashes at tile level `level` (tree level `8 · level`).
    Hashes {
        /// The tile level, 0 for leaf hashes.
        level: u8,
    },
    /// An entry bundle: the entries of the leaves of one level-0 tile.
    Entries,
}

/// One tile or entry bundle: `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Hashes or entries.
    pub kind: TileKind,
    /// The tile's index `N` within its level.
    pub index: u64,
    /// The number of hashes or entries, 1 to 256; 256 is a full tile.
    pub width: u32,
}

/// Why a tile path was refused (an HTTP 400: the path is not a tile path of the spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadTilePath(pub String);

impl fmt::Display for BadTilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadTilePath {}

/// A tile some of whose hashes or entries are beyond the tree (an HTTP 404).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotInTree {
    /// The tile asked for.
    pub tile: Tile,
    /// The tree it was looked for in.
    pub tree_size: u64,
}

impl fmt::Display for NotInTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is beyond the tree of size {}",
            self.tile.path(),
            self.tree_size
        )
    }
}

impl std::error::Error for NotInTree {}

fn bad(path: &str, why: &str) -> BadTilePath {
    BadTilePath(format!("{path:?} is not a tlog-tiles path: {why}"))
}

/// Decimal with no leading zeros ("0" itself is fine).
fn canonical_decimal(s: &str) -> Option<u64> {
    let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// `N` as 3-digit path elements, all but the last prefixed with `x`: 1234067 is
/// `x001/x234/067`.
fn index_path(mut index: u64) -> String {
    let mut out = format!("{:03}", index % 1000);
    while index >= 1000 {
        index /= 1000;
        out = format!("x{:03}/{out}", index % 1000);
    }
    out
}

impl Tile {
    /// Whether the tile is full (256 wide).
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The path below the log's prefix, without a leading slash: `tile/0/x001/234.p/5`.
    pub fn path(&self) -> String {
        let level = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_string(),
        };
        let mut out = format!("tile/{level}/{}", index_path(self.index));
        if !self.is_full() {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Parses a path below the log's prefix (`tile/…`, no leading slash). Only the canonical
    /// spelling is accepted, so every tile has exactly one path.
    pub fn parse(path: &str) -> Result<Tile, BadTilePath> {
        let Some(rest) = path.strip_prefix("tile/") else {
            return Err(bad(path, "it does not start with tile/"));
        };
        let mut parts: Vec<&str> = rest.split('/').collect();
        if parts.len() < 2 {
            return Err(bad(path, "it has no tile index"));
        }
        let kind = match parts[0] {
            "entries" => TileKind::Entries,
            level => match canonical_decimal(level) {
                Some(l) if l <= u64::from(MAX_PATH_LEVEL) => TileKind::Hashes { level: l as u8 },
                _ => {
                    return Err(bad(
                        path,
                        "the level is not \"entries\" or a decimal from 0 to 63 without leading zeros",
                    ));
                }
            },
        };
        parts.remove(0);
        // A partial tile ends in `<last index element>.p/<W>`.
        let mut width = TILE_WIDTH as u32;
        if parts.len() >= 2
            && let Some(last_index) = parts[parts.len() - 2].strip_suffix(".p")
        {
            let w = parts[parts.len() - 1];
            width = match canonical_decimal(w) {
                Some(w) if (1..TILE_WIDTH).contains(&w) => w as u32,
                _ => {
                    return Err(bad(
                        path,
                        "the partial width is not a decimal from 1 to 255 without leading zeros",
                    ));
                }
            };
            let at = parts.len() - 2;
            parts[at] = last_index;
            parts.pop();
        }
        // A u64 has at most 20 digits: 7 elements.
        if parts.len() > 7 {
            return Err(bad(path, "the index has more than 7 path elements"));
        }
        let mut index: u64 = 0;
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let digits = if i < last {
                part.strip_prefix('x').ok_or_else(|| {
                    bad(path, "every index element but the last must start with x")
                })?
            } else {
                part
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(
                    path,
                    "each index element must be exactly 3 digits (x-prefixed but the last)",
                ));
            }
            let group: u64 = digits
                .parse()
                .map_err(|_| bad(path, "an index element is not a number"))?;
            index = index
                .checked_mul(1000)
                .and_then(|v| v.checked_add(group))
                .ok_or_else(|| bad(path, "the index does not fit in 64 bits"))?;
        }
        let tile = Tile { kind, index, width };
        // Refuses the spellings the encoder never writes, such as a leading x000.
        if tile.path() != path {
            return Err(bad(path, "the index is not in its canonical encoding"));
        }
        Ok(tile)
    }

    /// The range of leaf indexes this tile's hashes or entries cover, or None when it overflows
    /// 64 bits (a tile no tree has).
    fn leaf_span(&self) -> Option<Range<u64>> {
        let level = match self.kind {
            TileKind::Hashes { level } => u32::from(level),
            TileKind::Entries => 0,
        };
        let shift = TILE_HEIGHT.checked_mul(level)?;
        if shift > 63 {
            return None;
        }
        let first = self.index.checked_mul(TILE_WIDTH)?;
        let start = first.checked_mul(1u64 << shift)?;
        if start >> shift != first {
            return None;
        }
        let end_nodes = first.checked_add(u64::from(self.width))?;
        let end = end_nodes.checked_shl(shift)?;
        if end >> shift != end_nodes {
            return None;
        }
        Some(start..end)
    }

    /// Checks that every hash or entry of the tile is in the tree of `tree_size` leaves.
    fn check_in(&self, tree_size: u64) -> Result<(), NotInTree> {
        match self.leaf_span() {
            Some(span) if span.end <= tree_size => Ok(()),
            _ => Err(NotInTree {
                tile: *self,
                tree_size,
            }),
        }
    }

    /// For a hash tile in the tree of `tree_size` leaves: the stored complete subtrees
    /// `(tree level, index)` whose hashes, in order, are the tile's bytes. For an entry bundle:
    /// its leaves' level-0 nodes (the leaf hashes its entries must hash to).
    pub fn node_keys(&self, tree_size: u64) -> Result<Vec<(u8, u64)>, NotInTree> {
        self.check_in(tree_size)?;
        let level = match self.kind {
            TileKind::Hashes { level } => level * TILE_HEIGHT as u8,
            TileKind::Entries => 0,
        };
        let first = self.index * TILE_WIDTH;
        Ok((first..first + u64::from(self.width))
            .map(|i| (level, i))
            .collect())
    }

    /// For an entry bundle in the tree of `tree_size` leaves: the leaf indexes it holds.
    pub fn leaf_range(&self, tree_size: u64) -> Result<Range<u64>, NotInTree> {
        self.check_in(tree_size)?;
        let first = self.index * TILE_WIDTH;
        Ok(first..first + u64::from(self.width))
    }
}

/// The tiles at `kind`'s level that the tree of `new_size` has and the tree of `old_size` had
/// not: the full tiles completed in between, then the right edge's partial tile of `new_size`
/// (if that level has one and it changed). With `old_size` 0, every tile of the tree.
fn new_tiles_of_kind(kind: TileKind, old_size: u64, new_size: u64) -> Vec<Tile> {
    let level = match kind {
        TileKind::Hashes { level } => u32::from(level),
        TileKind::Entries => 0,
    };
    let shift = TILE_HEIGHT * level;
    if shift > 63 {
        return Vec::new();
    }
    // Complete nodes at this tree level, before and after.
    let (old_nodes, new_nodes) = (old_size >> shift, new_size >> shift);
    let mut out: Vec<Tile> = (old_nodes / TILE_WIDTH..new_nodes / TILE_WIDTH)
        .map(|index| Tile {
            kind,
            index,
            width: TILE_WIDTH as u32,
        })
        .collect();
    let partial = (new_nodes % TILE_WIDTH) as u32;
    if partial > 0 && new_nodes != old_nodes {
        out.push(Tile {
            kind,
            index: new_nodes / TILE_WIDTH,
            width: partial,
        });
    }
    out
}

/// Every hash tile and entry bundle that the tree of `new_size` leaves has and the tree of
/// `old_size` had not (full tiles completed since, and the new right edge's partial tiles):
/// what a static copy of the log at `old_size` needs to serve `new_size`. Levels from 0 up,
/// entry bundles last. `old_size` 0 gives every tile of the tree.
pub fn new_tiles(old_size: u64, new_size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    if new_size <= old_size {
        return out;
    }
    let mut level: u8 = 0;
    while u32::from(level) * TILE_HEIGHT <= 63 && new_size >> (u32::from(level) * TILE_HEIGHT) > 0 {
        out.extend(new_tiles_of_kind(
            TileKind::Hashes { level },
            old_size,
            new_size,
        ));
        level += 1;
    }
    out.extend(new_tiles_of_kind(TileKind::Entries, old_size, new_size));
    out
}

/// A hash tile's bytes: its hashes concatenated.
pub fn hash_tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// An entry too long for an entry bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryTooLarge {
    /// Its position in the bundle (0-based).
    pub position: usize,
    /// Its length in bytes.
    pub bytes: usize,
}

impl fmt::Display for EntryTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {} of the bundle is {} bytes; a tlog-tiles entry bundle holds entries of at most {MAX_BUNDLE_ENTRY_BYTES} bytes",
            self.position, self.bytes
        )
    }
}

impl std::error::Error for EntryTooLarge {}

/// An entry bundle: each entry as a big-endian `u16` length followed by its bytes.
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, EntryTooLarge> {
    let total: usize = entries.iter().map(|e| 2 + e.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for (position, entry) in entries.iter().enumerate() {
        let entry = entry.as_ref();
        let len = u16::try_from(entry.len()).map_err(|_| EntryTooLarge {
            position,
            bytes: entry.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries; None if a length runs past the end.
pub fn decode_entry_bundle(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let (entry, rest) = rest.split_at(len);
        out.push(entry);
        bytes = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{Hash, leaf_hash, root_from_leaves};

    fn hashes(level: u8, index: u64, width: u32) -> Tile {
        Tile {
            kind: TileKind::Hashes { level },
            index,
            width,
        }
    }

    #[test]
    fn paths_follow_the_spec_examples() {
        assert_eq!(hashes(0, 1_234_067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(hashes(4, 1_234_067, 1).path(), "tile/4/x001/x234/067.p/1");
        assert_eq!(hashes(1, 0, 17).path(), "tile/1/000.p/17");
        let entries = Tile {
            kind: TileKind::Entries,
            index: 1000,
            width: 112,
        };
        assert_eq!(entries.path(), "tile/entries/x001/000.p/112");
        for tile in [
            hashes(0, 1_234_067, 256),
            hashes(4, 1_234_067, 1),
            entries,
            hashes(63, u64::MAX, 255),
        ] {
            assert_eq!(Tile::parse(&tile.path()), Ok(tile), "{}", tile.path());
        }
    }

    #[test]
    fn only_canonical_paths_parse() {
        for path in [
            "tile/0",
            "tile/0/",
            "tiles/0/000",
            "tile/00/000",
            "tile/64/000",
            "tile/-1/000",
            "tile/0/00",
            "tile/0/0000",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/0/x1/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/017",
            "tile/0/000.p/",
            "tile/0/000.p",
            "tile/0/+12",
            "tile/entry/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x001/x018/x446/x744/x073/x709/x551/615",
            "tile/0/000/",
        ] {
            assert!(Tile::parse(path).is_err(), "{path} parsed");
        }
        assert_eq!(
            Tile::parse("tile/0/x018/x446/x744/x073/x709/x551/615").map(|t| t.index),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn tiles_of_a_tree_of_70000_are_those_of_the_spec() {
        // The spec's example: 273 full level-0 tiles, a level-0 partial of 112, one full
        // level-1 tile, a level-1 partial of 17 and a level-2 partial of 1.
        let tiles = new_tiles(0, 70_000);
        let of = |kind: TileKind| -> Vec<(u64, u32)> {
            tiles
                .iter()
                .filter(|t| t.kind == kind)
                .map(|t| (t.index, t.width))
                .collect()
        };
        let level0 = of(TileKind::Hashes { level: 0 });
        assert_eq!(level0.len(), 274);
        assert_eq!(level0[273], (273, 112));
        assert!(level0[..273].iter().all(|&(_, w)| w == 256));
        assert_eq!(of(TileKind::Hashes { level: 1 }), vec![(0, 256), (1, 17)]);
        assert_eq!(of(TileKind::Hashes { level: 2 }), vec![(0, 1)]);
        assert!(of(TileKind::Hashes { level: 3 }).is_empty());
        assert_eq!(of(TileKind::Entries), level0);
        // A tree of 256: one full level-0 tile and a level-1 partial of width 1.
        let t256 = new_tiles(0, 256);
        assert_eq!(
            t256,
            vec![
                hashes(0, 0, 256),
                hashes(1, 0, 1),
                Tile {
                    kind: TileKind::Entries,
                    index: 0,
                    width: 256
                }
            ]
        );
    }

    #[test]
    fn incremental_tiles_add_up_to_the_whole_tree() {
        // Writing 0→a then a→b leaves every tile of b present (partials of a remain too).
        for (a, b) in [
            (1, 2),
            (255, 256),
            (256, 257),
            (300, 70_000),
            (65_535, 65_536),
        ] {
            let mut written: std::collections::HashSet<Tile> =
                new_tiles(0, a).into_iter().collect();
            written.extend(new_tiles(a, b));
            for tile in new_tiles(0, b) {
                assert!(written.contains(&tile), "{a}→{b}: {} missing", tile.path());
            }
        }
        assert!(new_tiles(5, 5).is_empty());
        // Level-1 tiles do not change between 300 and 400 (one complete level-8 node).
        assert!(
            new_tiles(300, 400)
                .iter()
                .all(|t| t.kind != TileKind::Hashes { level: 1 })
        );
    }

    #[test]
    fn tiles_beyond_the_tree_are_not_in_it() {
        assert!(hashes(0, 0, 5).node_keys(5).is_ok());
        assert!(hashes(0, 0, 6).node_keys(5).is_err());
        assert!(hashes(0, 1, 1).node_keys(256).is_err());
        assert!(hashes(1, 0, 1).node_keys(255).is_err());
        assert_eq!(hashes(1, 0, 1).node_keys(256), Ok(vec![(8, 0)]));
        assert_eq!(
            hashes(1, 1, 2).node_keys(258 * 256),
            Ok(vec![(8, 256), (8, 257)])
        );
        // Levels whose subtrees exceed 2^64 leaves, and indexes that overflow.
        assert!(hashes(8, 0, 1).node_keys(u64::MAX).is_err());
        assert!(hashes(63, 0, 1).node_keys(u64::MAX).is_err());
        assert!(hashes(0, u64::MAX, 256).node_keys(u64::MAX).is_err());
        assert_eq!(hashes(7, 0, 1).node_keys(u64::MAX), Ok(vec![(56, 0)]));
        let entries = Tile {
            kind: TileKind::Entries,
            index: 2,
            width: 3,
        };
        assert_eq!(entries.leaf_range(515), Ok(512..515));
        assert!(entries.leaf_range(514).is_err());
    }

    /// The spec's definition, computed from the leaves with the RFC's recursion: hash `i` of
    /// tile `n` at level `l` is MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l]).
    fn tile_by_definition(leaves: &[Hash], level: u32, index: u64, width: u32) -> Vec<u8> {
        let span = 256usize.pow(level);
        (0..width as usize)
            .flat_map(|i| {
                let start = (index as usize * 256 + i) * span;
                root_from_leaves(&leaves[start..start + span])
            })
            .collect()
    }

    #[test]
    fn hash_tiles_from_stored_nodes_match_the_definition() {
        // Stored nodes: every complete subtree, as the hub keeps them.
        let size: u64 = 256 * 256 + 3 * 256 + 7;
        let leaves: Vec<Hash> = (0..size)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect();
        let mut levels = vec![leaves.clone()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks_exact(2)
                .map(|pair| crate::merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(above);
        }
        let node = |(level, index): (u8, u64)| levels[usize::from(level)][index as usize];
        let tiles = new_tiles(0, size);
        // Level 0: 259 full and a partial of 7; level 1: one full and a partial of 3; level 2: a
        // partial of 1; and as many entry bundles as level-0 tiles.
        assert_eq!(tiles.len(), 260 + 2 + 1 + 260);
        for tile in tiles {
            let TileKind::Hashes { level } = tile.kind else {
                continue;
            };
            let keys = tile.node_keys(size).expect("in the tree");
            let bytes = hash_tile_bytes(&keys.into_iter().map(node).collect::<Vec<_>>());
            assert_eq!(
                bytes,
                tile_by_definition(&leaves, u32::from(level), tile.index, tile.width),
                "{}",
                tile.path()
            );
        }
    }

    #[test]
    fn entry_bundles_round_trip_and_refuse_long_entries() {
        let entries: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), vec![7; 65_535]];
        let bundle = encode_entry_bundle(&entries).expect("fits");
        assert_eq!(&bundle[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(bundle.len(), 2 + 3 + 2 + 65_535);
        let decoded = decode_entry_bundle(&bundle).expect("decodes");
        assert_eq!(
            decoded,
            entries.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        assert_eq!(
            encode_entry_bundle(&[vec![0u8; 3], vec![0u8; 65_536]]),
            Err(EntryTooLarge {
                position: 1,
                bytes: 65_536
            })
        );
        assert_eq!(decode_entry_bundle(&[0, 2, 1]), None);
        assert_eq!(decode_entry_bundle(&[0]), None);
    }
}
