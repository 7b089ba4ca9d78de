//! Staging of a snapshot that streams in, so memory does not grow with its size: the chunks
//! so far and the keys seen so far, in a scratch SQLite file. A node stages a snapshot it is
//! publishing (`PublishSnapshot`) next to its database; a hub stages the chunks of a snapshot
//! it is receiving (`SubmitSnapshot`) in its staging directory.
//!
//! The file is the stream's alone: no journal and no fsync (a crash loses a stream that was
//! never acknowledged anyway), removed when the stream ends (dropped) and, for a process that
//! was killed, when the process starts ([`clear_staging_dir`]). Nothing in it is published or
//! logged until the chunks are copied into the store in the transaction that stores the
//! statement listing them ([`crate::NodeStore::append_own_streamed`],
//! [`crate::HubStore::append_streamed`]).

use crate::{IndicatorStore, ObservationFilter, StoreError};
use rcpfed_core::statement::{Observation, ObservationAction};
use rcpfed_core::validate::{ObservationRows, key_bytes};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of the staging files of the node database at `db_path`.
pub fn publish_staging_dir(db_path: &Path) -> PathBuf {
    let name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "node".into());
    db_path.with_file_name(format!("{name}.publish-staging"))
}

/// Removes every staging file under the node database at `db_path` (left by streams of a
/// process that stopped mid-way); returns how many there were.
pub fn clear_publish_staging(db_path: &Path) -> Result<usize, StoreError> {
    clear_staging_dir(&publish_staging_dir(db_path))
}

/// Removes every staging file in `dir` (left by streams of a process that stopped mid-way);
/// returns how many there were.
pub fn clear_staging_dir(dir: &Path) -> Result<usize, StoreError> {
    let dir = dir.to_path_buf();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error("reading", &dir, &e)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(|e| io_error("reading", &dir, &e))?.path();
        std::fs::remove_file(&path).map_err(|e| io_error("removing", &path, &e))?;
        removed += 1;
    }
    Ok(removed)
}

/// The staging directory of one process among several that may share a parent directory
/// (a hub and its standbys on one data directory): `<parent>/<pid>`, held by a lock on its
/// `lock` file for as long as this value lives. Opening one removes the directories whose
/// process is gone (their lock is free) with whatever they staged.
#[derive(Debug)]
pub struct StagingArea {
    dir: PathBuf,
    _lock: std::fs::File,
}

impl StagingArea {
    /// This process's staging directory under `parent`, after the leftovers of processes
    /// that stopped mid-transfer are removed; returns it and how many were removed.
    pub fn open(parent: &Path) -> Result<(Self, usize), StoreError> {
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, &e))?;
        let mut removed = 0;
        let entries = std::fs::read_dir(parent).map_err(|e| io_error("reading", parent, &e))?;
        for entry in entries {
            let path = entry.map_err(|e| io_error("reading", parent, &e))?.path();
            if path.is_dir() && lock_if_free(&path.join("lock"))?.is_some() {
                std::fs::remove_dir_all(&path).map_err(|e| io_error("removing", &path, &e))?;
                removed += 1;
            }
        }
        let dir = parent.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).map_err(|e| io_error("creating", &dir, &e))?;
        let Some(lock) = lock_if_free(&dir.join("lock"))? else {
            return Err(io_error(
                "locking",
                &dir,
                &std::io::Error::other("another process holds it"),
            ));
        };
        Ok((StagingArea { dir, _lock: lock }, removed))
    }

    /// Where this process's staging files go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The lock file at `path` (created if missing), locked; None if another process holds it.
fn lock_if_free(path: &Path) -> Result<Option<std::fs::File>, StoreError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_error("opening", path, &e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error("locking", path, &e)),
    }
}

/// A file-system failure as SQLite's I/O error, so it reads as a condition of the machine
/// ([`StoreError::is_unavailable`]).
fn io_error(what: &str, path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some(format!(
            "{what} the snapshot staging {}: {e}",
            path.display()
        )),
    ))
}

/// Page cache of a staging file: the key index of a ten-million-row snapshot does not fit, and
/// need not (the operating system caches the file too).
const STAGING_CACHE_KIB: i64 = 32 * 1024;

/// Tells apart the staging files of one process.
static NEXT_STAGING: AtomicU64 = AtomicU64::new(0);

/// One streamed snapshot's scratch file; removed when dropped.
pub struct SnapshotStaging {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SnapshotStaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStaging")
            .field("path", &self.path)
            .finish()
    }
}

impl SnapshotStaging {
    /// A new, empty staging file for the node database at `db_path`.
    pub fn create(db_path: &Path) -> Result<Self, StoreError> {
        Self::create_in(&publish_staging_dir(db_path))
    }

    /// A new, empty staging file in `dir` (created if missing).
    pub fn create_in(dir: &Path) -> Result<Self, StoreError> {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_error("creating", &dir, &e))?;
        let path = dir.join(format!(
            "{}-{}.sqlite",
            std::process::id(),
            NEXT_STAGING.fetch_add(1, Ordering::Relaxed)
        ));
        // A file of the same name is a leftover of an earlier process with this pid.
        let _ = std::fs::remove_file(&path);
        let conn = Connection::open(&path)?;
        // From here on the file is removed on drop, also when the set-up below fails.
        let staging = SnapshotStaging { conn, path };
        staging.conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA temp_store = FILE;
             PRAGMA cache_size = -{STAGING_CACHE_KIB};
             CREATE TABLE keys (key BLOB PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE chunks (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL);"
        ))?;
        Ok(staging)
    }

    /// Where the file is (for tests and logs).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `keys` (a key and the position of its observation, in stream order) and
    /// answers, for each, the position of the first observation with that key when an
    /// earlier one had it (in this call or an earlier one).
    pub fn first_positions(
        &mut self,
        keys: &[(Vec<u8>, u64)],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(keys.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO keys (key, position) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )?;
            let mut first = tx.prepare_cached("SELECT position FROM keys WHERE key = ?1")?;
            for (key, position) in keys {
                let position = i64::try_from(*position)
                    .map_err(|_| StoreError::Corrupt(format!("position {position} too large")))?;
                if insert.execute(params![key, position])? == 1 {
                    out.push(None);
                } else {
                    let earlier: i64 = first.query_row(params![key], |r| r.get(0))?;
                    out.push(u64::try_from(earlier).ok());
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Checks the next `observations` of a snapshot (positions `offset`…) with `rows`, the
    /// duplicate-key rule across everything recorded so far decided through this file's key
    /// index; returns, for each, the position of the earlier observation with its key.
    pub fn check_rows(
        &mut self,
        rows: &mut ObservationRows<'_>,
        offset: usize,
        observations: &[Observation],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let keys: Vec<(Vec<u8>, u64)> = observations
            .iter()
            .enumerate()
            .map(|(k, o)| (key_bytes(o, rows.key_defaults()), (offset + k) as u64))
            .collect();
        let repeats = self.first_positions(&keys)?;
        drop(keys);
        for (k, (o, repeat_of)) in observations.iter().zip(&repeats).enumerate() {
            rows.check(offset + k, o, repeat_of.map(|p| p as usize));
        }
        Ok(repeats)
    }

    /// Stages a chunk's bytes; returns its id.
    pub fn put_chunk(&mut self, bytes: &[u8]) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("INSERT INTO chunks (bytes) VALUES (?1)")?
            .execute(params![bytes])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The bytes of staged chunk `id`.
    pub fn chunk(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        self.conn
            .prepare_cached("SELECT bytes FROM chunks WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("staged chunk {id} is missing")))
    }

    /// Drops staged chunks `ids` (a cut that was redone with smaller chunks).
    pub fn remove_chunks(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM chunks WHERE id = ?1")?;
            for id in ids {
                delete.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Whether the view holds no version at all (tombstones and superseded ones included) of any
/// node's observations of `indicator`: then no key of any node is in force, and a streamed
/// snapshot's pieces need no probe per key ([`needs_action_probes`]). Asked of the whole
/// indicator, not of one node: that is one index probe per snapshot, where finding one node's
/// rows could mean reading past every other node's rows of the indicator.
pub fn nothing_in_force<S: IndicatorStore + ?Sized>(
    store: &S,
    indicator: &str,
) -> Result<bool, StoreError> {
    let filter = ObservationFilter {
        indicator: indicator.to_string(),
        include_history: true,
        ..ObservationFilter::default()
    };
    Ok(store.query_observations(&filter, None, 1)?.is_empty())
}

/// Whether a piece of a streamed snapshot must have its keys probed for the action rule.
/// Not when nothing is in force for the indicator ([`nothing_in_force`]), every
/// observation of the piece appends and none repeats an earlier key (`repeats`, from
/// [`SnapshotStaging::check_rows`]): each append then finds no value in force, which is the
/// rule, so the probe could find nothing; a REPLACE, a DELETE or a repeated key is probed as
/// before, so what is reported does not change.
pub fn needs_action_probes(
    nothing_in_force: bool,
    observations: &[Observation],
    repeats: &[Option<u64>],
) -> bool {
    !nothing_in_force
        || repeats.iter().any(Option::is_some)
        || observations
            .iter()
            .any(|o| o.action != ObservationAction::Append)
}

impl Drop for SnapshotStaging {
    fn drop(&mut self) {
        // Nothing of a stream outlives it; a file that cannot be removed now goes at the next
        // start.
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a snapshot staging file");
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_area_is_held_while_it_lives_and_removed_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory left by a process that is gone: its lock is free.
        let gone = dir.path().join("999999999");
        std::fs::create_dir_all(&gone).expect("mkdir");
        std::fs::write(gone.join("1-0.sqlite"), b"left over").expect("write");
        let (area, removed) = StagingArea::open(dir.path()).expect("open");
        assert_eq!(removed, 1);
        assert!(!gone.exists());
        let staging = SnapshotStaging::create_in(area.dir()).expect("staging");
        // Held: a second opening (another process sharing the parent) leaves it alone.
        let held = lock_if_free(&area.dir().join("lock")).expect("lock");
        assert!(held.is_none(), "the area's lock is held while it lives");
        drop(staging);
        let own = area.dir().to_path_buf();
        drop(area);
        let (_again, removed) = StagingArea::open(dir.path()).expect("open again");
        // Its own directory, now free, was removed and made again.
        assert_eq!(removed, 1);
        assert!(own.exists());
    }

    #[test]
    fn keys_answer_their_first_position_and_the_file_goes_with_the_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("node.sqlite");
        let mut staging = SnapshotStaging::create(&db).expect("staging");
        let path = staging.path().to_path_buf();
        assert!(path.exists());
        let k = |s: &str| s.as_bytes().to_vec();
        let first = staging
            .first_positions(&[(k("a"), 0), (k("b"), 1), (k("a"), 2)])
            .expect("keys");
        assert_eq!(first, [None, None, Some(0)]);
        let later = staging
            .first_positions(&[(k("b"), 3), (k("c"), 4)])
            .expect("keys");
        assert_eq!(later, [Some(1), None]);
        let id = staging.put_chunk(b"chunk bytes").expect("chunk");
        assert_eq!(staging.chunk(id).expect("read"), b"chunk bytes");
        staging.remove_chunks(&[id]).expect("remove");
        assert!(staging.chunk(id).is_err(), "a removed chunk is gone");
        drop(staging);
        assert!(!path.exists(), "the file goes with the stream");
    }

    #[test]
    fn only_a_piece_of_fresh_appends_skips_the_action_probes() {
        let obs = |action| Observation {
            action,
            ref_area: "LKA".into(),
            time_period: "2024".into(),
            dimensions: Vec::new(),
            obs_value: Some(1.0),
            obs_status: String::new(),
            unit_measure: "PS".into(),
            unit_mult: 0,
            conf_status: String::new(),
            footnote: String::new(),
            source: String::new(),
        };
        let appends = [
            obs(ObservationAction::Append),
            obs(ObservationAction::Append),
        ];
        let fresh = [None, None];
        assert!(!needs_action_probes(true, &appends, &fresh));
        // Something of the indicator is in the view: every key is probed.
        assert!(needs_action_probes(false, &appends, &fresh));
        // A repeated key: its second touch is probed as before.
        assert!(needs_action_probes(true, &appends, &[None, Some(0)]));
        // A revision needs a value in force: probed, so it is refused in the same words.
        for action in [ObservationAction::Replace, ObservationAction::Delete] {
            let mixed = [obs(ObservationAction::Append), obs(action)];
            assert!(needs_action_probes(true, &mixed, &fresh));
        }
    }

    #[test]
    fn a_start_clears_what_a_killed_process_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("node.sqlite");
        assert_eq!(clear_publish_staging(&db).expect("nothing there"), 0);
        let staging = SnapshotStaging::create(&db).expect("staging");
        // As a killed process leaves it: the file stays.
        std::mem::forget(staging);
        assert_eq!(clear_publish_staging(&db).expect("cleared"), 1);
        assert_eq!(
            std::fs::read_dir(publish_staging_dir(&db))
                .expect("dir")
                .count(),
            0
        );
    }
}
