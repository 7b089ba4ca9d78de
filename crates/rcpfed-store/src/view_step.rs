//! How stored feed entries reach the indicator view, once for the hub and the node: a commit
//! applies its entries in its own transaction while the view is current ([`InlineView`]); from
//! the first chunked snapshot on, entries are stored only and the view cursor stays behind,
//! and a background applier works through them in feed order ([`step`]), a large snapshot a
//! piece per transaction on SQLite. Readers see the view up to the cursor
//! (`indicator_queries::applied_rows`), and while the pieces of a snapshot supersede versions
//! in force, those versions as still in force ([`superseding`]).

use crate::StoreError;
use crate::db::int;
use crate::sql::{Query, Sql, query};
use crate::view_rows::{Entry, PieceLimit, PieceStart};
use rcpfed_core::statement::{Body, ChunkManifest, DocumentKind, Statement};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VIEW_CURSOR: Query = query!("SELECT applied_through FROM view_cursor WHERE id = 1");
const SET_VIEW_CURSOR: Query = query!("UPDATE view_cursor SET applied_through = $1 WHERE id = 1");

/// The view cursor: every entry up to this feed index is applied to the indicator view, none
/// after it. It equals the log's (or mirror's) head except while the background applier works
/// through the entries commits left to it.
pub(crate) fn view_applied_through(tx: &mut impl Sql) -> Result<u64, StoreError> {
    tx.one(&VIEW_CURSOR, &[], |row| row.u64(0))
}

fn set_view_applied_through(tx: &mut impl Sql, feed_index: u64) -> Result<(), StoreError> {
    tx.exec(&SET_VIEW_CURSOR, &[&int(feed_index, "view cursor")?])?;
    Ok(())
}

/// Whether an entry's view is left to the background applier: a chunked indicator snapshot,
/// whose observations can run to millions (applying them in the commit would hold every other
/// statement for seconds). An entry that does not decode is applied inline, where the apply
/// step refuses it in plain words.
pub(crate) fn applied_in_background(entry: &Entry<'_>) -> bool {
    with_background_manifest(entry, |_| ()).is_some()
}

/// The indicator of a chunked snapshot whose view is applied in pieces where the backend
/// takes pieces: one with more than one chunk. None for any other entry.
fn indicator_in_pieces(entry: &Entry<'_>) -> Result<Option<String>, StoreError> {
    let statement = entry.statement()?;
    let Body::Indicators(snapshot) = &statement.body else {
        return Ok(None);
    };
    Ok(snapshot
        .chunks
        .as_ref()
        .filter(|m| m.chunks.len() >= 2)
        .map(|_| snapshot.indicator.clone()))
}

/// `f` of the chunk manifest of an entry applied in the background (see
/// [`applied_in_background`]); None for any other entry.
fn with_background_manifest<T>(
    entry: &Entry<'_>,
    f: impl FnOnce(&ChunkManifest) -> T,
) -> Option<T> {
    if entry.kind != DocumentKind::IndicatorSnapshot.as_str() {
        return None;
    }
    match &entry.statement().ok()?.body {
        Body::Indicators(snapshot) => snapshot.chunks.as_ref().map(f),
        Body::Policy(_) => None,
    }
}

const CHUNK_LENGTH: Query = Query::per_dialect(
    "SELECT length(bytes) FROM chunks WHERE sha256 = ?1",
    "SELECT octet_length(bytes)::bigint FROM chunks WHERE sha256 = $1",
);

/// Refuses a snapshot stored without its view unless every chunk of its manifest is stored
/// with the manifest's length: the view applier and the mirrors read them from here later.
/// (The apply step checks each chunk's hash again as it decodes it.)
fn check_chunks_stored(
    tx: &mut impl Sql,
    entry: &Entry<'_>,
    manifest: &ChunkManifest,
) -> Result<(), StoreError> {
    for (index, chunk) in manifest.chunks.iter().enumerate() {
        let stored = tx.first(&CHUNK_LENGTH, &[&&chunk.sha256.0[..]], |row| row.u64(0))?;
        match stored {
            None => {
                return Err(
                    entry.conflict(format!("chunk {index} ({}) is not stored", chunk.sha256))
                );
            }
            Some(length) if length != u64::from(chunk.byte_length) => {
                return Err(entry.conflict(format!(
                    "chunk {index} ({}) is stored with {length} bytes, the manifest says {}",
                    chunk.sha256, chunk.byte_length
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The view's side of a commit that stores feed entries: each entry is applied in the commit's
/// transaction as long as the view is current; from the first chunked snapshot on (or from the
/// start, when the view already lags), entries are stored only and the cursor stays behind.
pub(crate) struct InlineView {
    applied: u64,
    through: u64,
    current: bool,
    chunks: Chunks,
}

/// When a chunked snapshot's chunks are stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunks {
    /// With the statement, in the same commit (the hub): checked there.
    WithTheEntry,
    /// Before its view is applied (a node's mirror fetches them after storing the entry).
    BeforeTheView,
}

impl InlineView {
    /// Before the commit's first entry; `head` is the highest feed index stored before it.
    pub(crate) fn start(tx: &mut impl Sql, head: u64, chunks: Chunks) -> Result<Self, StoreError> {
        let applied = view_applied_through(tx)?;
        Ok(InlineView {
            applied,
            through: applied,
            current: applied == head,
            chunks,
        })
    }

    /// One entry just stored: a chunked snapshot ends the inline applies (its chunks checked
    /// when they come with it); any other entry is applied with `apply` while the view is
    /// current.
    pub(crate) fn entry<S: Sql>(
        &mut self,
        tx: &mut S,
        entry: &Entry<'_>,
        apply: impl FnOnce(&mut S, &Entry<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let with_entry = self.chunks == Chunks::WithTheEntry;
        if let Some(stored) = with_background_manifest(entry, |m| {
            if with_entry {
                check_chunks_stored(tx, entry, m)
            } else {
                Ok(())
            }
        }) {
            stored?;
            self.current = false;
        }
        if self.current {
            apply(tx, entry)?;
            // An entry below the head (a gap filled late) leaves the cursor where it is.
            self.through = self.through.max(entry.feed_index);
        }
        Ok(())
    }

    /// After the commit's last entry: moves the cursor past what was applied.
    pub(crate) fn finish(self, tx: &mut impl Sql) -> Result<(), StoreError> {
        if self.through != self.applied {
            set_view_applied_through(tx, self.through)?;
        }
        Ok(())
    }
}

/// A chunked snapshot whose view is applied in pieces, and where its next piece starts.
#[derive(Clone, Debug)]
pub(crate) struct ViewPiece {
    feed_index: u64,
    next: PieceStart,
}

/// Most entries the background applier applies in one transaction (small ones; a chunked
/// snapshot always gets a transaction of its own).
const VIEW_STEP_ENTRIES: u64 = 256;

/// Least work in a piece before it ends for a waiting commit: each transaction writes the
/// index pages it touched to the WAL again, so smaller pieces make the whole apply slower.
/// Measured with a commit every ~5 ms during a million-observation apply
/// (`commit_wait_behind_a_snapshot_view`): pieces of ~600 observations took 2.2 × the one
/// transaction's time and commits waited at most 39 ms; pieces of at least 4 000, 1.5 × and
/// 111 ms; one transaction, 11 s. A time rather than a count, because an observation that
/// supersedes a version in force costs about 1.5 × one that does not.
pub(crate) const VIEW_PIECE_MIN_TIME: Duration = Duration::from_millis(50);

/// Most observations of a piece when a snapshot's view is applied in pieces (about 1–2 s of
/// work on SQLite): with no commit waiting, a million observations take ten transactions, so
/// the WAL is checkpointed between them and does not grow with the snapshot.
pub(crate) const VIEW_PIECE_MAX: usize = 100_000;

/// Whether the view holds any row of the indicator from before `feed_index`: if so, a
/// snapshot at `feed_index` may supersede versions in force, and while its pieces are applied
/// readers must keep seeing those versions ([`superseding`]). (A snapshot supersedes only its
/// own node's versions; asking per indicator keeps this one probe of `observations_indicator`.)
const INDICATOR_IN_VIEW: Query =
    query!("SELECT 1 FROM observations WHERE indicator = $1 AND feed_index < $2 LIMIT 1");
/// The rows of a snapshot whose pieces a stopped process left behind: its apply starts over.
const FORGET_PIECES: Query = query!("DELETE FROM observations WHERE feed_index = $1");
/// The versions those pieces superseded, in force again (once the pieces' rows are gone: the
/// index of the versions in force allows one per key). A scan, run only after a stop in the
/// middle of a superseding snapshot.
const RESTORE_SUPERSEDED: Query = query!(
    "UPDATE observations SET superseded_at_ms = NULL, superseded_by = NULL
     WHERE superseded_by = $1"
);
const SUPERSEDING: Query = query!("SELECT superseding FROM view_cursor WHERE id = 1");
const SET_SUPERSEDING: Query = query!("UPDATE view_cursor SET superseding = $1 WHERE id = 1");

/// The chunked snapshot whose view is being applied in pieces over versions in force, if any:
/// its pieces mark the versions they replace superseded (`superseded_by` its feed index), and
/// readers take those as still in force until the view cursor passes it. It is always the
/// entry just past the cursor.
pub(crate) fn superseding(tx: &mut impl Sql) -> Result<Option<u64>, StoreError> {
    let at = tx.one(&SUPERSEDING, &[], |row| row.opt_i64(0))?;
    at.map(|i| {
        u64::try_from(i).map_err(|_| StoreError::Corrupt(format!("superseding feed index {i}")))
    })
    .transpose()
}

fn set_superseding(tx: &mut impl Sql, feed_index: Option<u64>) -> Result<(), StoreError> {
    let at = feed_index.map(|i| int(i, "feed index")).transpose()?;
    tx.exec(&SET_SUPERSEDING, &[&at])?;
    Ok(())
}

/// Undoes whatever pieces of the snapshot at `feed_index` an earlier process applied and
/// did not finish (a stop, or a backup taken meanwhile and restored): its rows go, and the
/// versions they superseded are in force again. Usually there is nothing to undo.
fn forget_pieces(tx: &mut impl Sql, feed_index: u64) -> Result<(), StoreError> {
    let at = int(feed_index, "feed index")?;
    tx.exec(&FORGET_PIECES, &[&at])?;
    if superseding(tx)? == Some(feed_index) {
        tx.exec(&RESTORE_SUPERSEDED, &[&at])?;
        set_superseding(tx, None)?;
    }
    Ok(())
}

/// A stored feed entry as the background applier reads it back.
pub(crate) trait StoredEntry {
    /// The apply step's view of it.
    fn entry(&self) -> Entry<'_>;
    /// Keeps the statement decoded from its envelope, so it is decoded once per step.
    fn hold_decoded(&mut self, statement: Arc<Statement>);
}

/// The store's side of a background step, on its write transaction `S`.
pub(crate) trait ViewSteps<S> {
    /// The stored entry with the lowest feed index above `after` (at most the head); None
    /// when there is none.
    type Stored: StoredEntry;
    fn next_after(&self, tx: &mut S, after: u64) -> Result<Option<Self::Stored>, StoreError>;
    /// One entry applied to the view inside `tx`.
    fn apply_entry(&self, tx: &mut S, entry: &Entry<'_>) -> Result<(), StoreError>;
    /// One piece of a chunked snapshot's view, from `from` on, until `limit` ends it: where the
    /// next piece starts, or None when the snapshot is applied.
    fn apply_piece(
        &self,
        tx: &mut S,
        entry: &Entry<'_>,
        from: PieceStart,
        limit: &PieceLimit<'_>,
    ) -> Result<Option<PieceStart>, StoreError>;
}

/// Pieces on a backend whose commits wait for the view's transactions (SQLite): the piece
/// the last step left unfinished, if any, and when a piece ends.
pub(crate) struct Pieces<'a> {
    pub(crate) resumed: Option<ViewPiece>,
    pub(crate) max: usize,
    pub(crate) commit_waiting: &'a (dyn Fn() -> bool + Sync),
}

/// What [`large_entry`] did with a chunked snapshot.
enum Large {
    /// Nothing of its view yet: the caller applies it in one go (a backend without pieces, or
    /// a snapshot of one chunk).
    Whole,
    /// One piece of it; the next starts there.
    Piece(ViewPiece),
    /// Its last piece: it is applied.
    Applied,
}

/// A chunked snapshot at the view cursor, before it is applied: whatever an earlier process
/// left of it is undone unless its pieces resume, and where the backend takes pieces and it
/// has several chunks, one piece of it is applied.
fn large_entry<S: Sql, V: ViewSteps<S>>(
    tx: &mut S,
    store: &V,
    entry: &Entry<'_>,
    pieces: Option<&Pieces<'_>>,
) -> Result<Large, StoreError> {
    let resumed = pieces
        .and_then(|p| p.resumed.clone())
        .filter(|p| p.feed_index == entry.feed_index);
    if resumed.is_none() {
        forget_pieces(tx, entry.feed_index)?;
    }
    let Some(pieces) = pieces else {
        return Ok(Large::Whole);
    };
    let Some(indicator) = indicator_in_pieces(entry)? else {
        return Ok(Large::Whole);
    };
    let from = match resumed {
        Some(p) => p.next,
        None => {
            let feed_index = int(entry.feed_index, "feed index")?;
            if tx.exists(&INDICATOR_IN_VIEW, &[&indicator, &feed_index])? {
                set_superseding(tx, Some(entry.feed_index))?;
            }
            PieceStart::default()
        }
    };
    let limit = PieceLimit {
        started: Instant::now(),
        min_time: VIEW_PIECE_MIN_TIME,
        max: pieces.max,
        yield_now: pieces.commit_waiting,
    };
    match store.apply_piece(tx, entry, from, &limit)? {
        Some(next) => Ok(Large::Piece(ViewPiece {
            feed_index: entry.feed_index,
            next,
        })),
        None => {
            // The last piece: readers see the snapshot, and only it, from this transaction on.
            set_superseding(tx, None)?;
            Ok(Large::Applied)
        }
    }
}

/// One transaction of the background applier, on `tx` (the caller's write transaction): the
/// entries from the view cursor to `head` in feed order, at most [`VIEW_STEP_ENTRIES`] small
/// ones, or one chunked snapshot alone (with `pieces`, one piece of it when it has several
/// chunks). Gives the new cursor and, when a snapshot is left half-applied, where
/// its next piece starts (to be handed back once this transaction has committed).
pub(crate) fn step<S: Sql, V: ViewSteps<S>>(
    tx: &mut S,
    store: &V,
    head: u64,
    pieces: Option<Pieces<'_>>,
) -> Result<(u64, Option<ViewPiece>), StoreError> {
    let start = view_applied_through(tx)?;
    let mut through = start;
    let mut applied = 0;
    let mut next_piece = None;
    while through < head && applied < VIEW_STEP_ENTRIES {
        let Some(mut stored) = store.next_after(tx, through)? else {
            break;
        };
        // Decoded once, for both the choice below and the apply step.
        let decoded = {
            let entry = stored.entry();
            if entry.changes_view() && entry.statement.is_none() {
                Some(Arc::new(entry.statement()?.into_owned()))
            } else {
                None
            }
        };
        if let Some(statement) = decoded {
            stored.hold_decoded(statement);
        }
        let entry = stored.entry();
        let large = applied_in_background(&entry);
        // A chunked snapshot gets a transaction of its own, or one per piece: readers see all
        // of it or none, and the small entries before it are not held back.
        if large && applied > 0 {
            break;
        }
        if large {
            match large_entry(tx, store, &entry, pieces.as_ref())? {
                Large::Whole => {}
                Large::Piece(next) => {
                    next_piece = Some(next);
                    break;
                }
                Large::Applied => {
                    through = entry.feed_index;
                    break;
                }
            }
        }
        store.apply_entry(tx, &entry)?;
        through = entry.feed_index;
        applied += 1;
        if large {
            break;
        }
    }
    if through != start {
        set_view_applied_through(tx, through)?;
    }
    Ok((through, next_piece))
}
