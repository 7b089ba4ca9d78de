//! Backups of a SQLite store file, taken while the hub or node keeps serving.

use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Writes a consistent copy of the SQLite database at `db` to `out`, which must not exist,
/// while the store may be in use. `VACUUM INTO` reads one snapshot (in WAL mode the writer
/// and this reader never wait for each other) and writes a compact file; the copy is written
/// under a temporary name, synced and renamed, so a crash never leaves a partial backup at
/// `out`. Returns the size of the copy in bytes.
pub fn sqlite_backup(db: &Path, out: &Path) -> Result<u64, StoreError> {
    if out.exists() {
        return Err(StoreError::Conflict(format!(
            "{} already exists; a backup never overwrites a file",
            out.display()
        )));
    }
    if !db.is_file() {
        return Err(StoreError::Corrupt(format!(
            "no database at {}",
            db.display()
        )));
    }
    let partial = with_suffix(out, ".partial");
    let _ = std::fs::remove_file(&partial);
    let target = partial.to_str().ok_or_else(|| {
        StoreError::Conflict(format!(
            "{} is not valid UTF-8; SQLite needs a UTF-8 path",
            partial.display()
        ))
    })?;
    // Read-write without create: nothing is written to the source, but a WAL database needs
    // its shared-memory file, which a read-only connection may not be able to create.
    let source = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(30))?;
    source.execute("VACUUM INTO ?1", [target])?;
    drop(source);
    // VACUUM INTO does not sync what it wrote.
    let file = std::fs::File::open(&partial).map_err(io("opening the copy"))?;
    file.sync_all().map_err(io("syncing the copy"))?;
    let bytes = file
        .metadata()
        .map_err(io("reading the copy's size"))?
        .len();
    drop(file);
    std::fs::rename(&partial, out).map_err(io("moving the copy into place"))?;
    sync_parent(out)?;
    Ok(bytes)
}

/// Checks a SQLite file page by page and index by index (`PRAGMA integrity_check`).
pub fn sqlite_integrity(path: &Path) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "{} fails SQLite's integrity check: {}",
        path.display(),
        problems.join("; ")
    )))
}

/// Copies the backup `from` next to the database `db` (as `<db>.restoring`, replacing a
/// leftover of an interrupted restore), so that it can be opened and checked there: the
/// backup itself is only read, never opened by SQLite, so it is not migrated, switched to WAL
/// or written beside, and may sit on read-only media. Returns the copy's path.
pub fn stage_restore(from: &Path, db: &Path) -> Result<std::path::PathBuf, StoreError> {
    let staged = with_suffix(db, ".restoring");
    discard_staged(&staged);
    // A new file, not `fs::copy`, which would carry over a read-only backup's permissions.
    let mut source = std::fs::File::open(from).map_err(io("opening the backup"))?;
    let mut copy = std::fs::File::create(&staged).map_err(io("creating the restored copy"))?;
    std::io::copy(&mut source, &mut copy).map_err(io("copying the backup"))?;
    Ok(staged)
}

/// Removes a staged copy and any WAL files SQLite left beside it (after a refused check).
pub fn discard_staged(staged: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(staged, suffix));
    }
}

/// Puts the staged copy (see [`stage_restore`]; possibly opened and checked since, with every
/// connection to it closed) in place of the database `db`, which must not be open (the caller
/// holds the data directory's lock). Its WAL is first folded into it
/// (journal mode DELETE), so the one file carries everything; the copy is synced before the
/// rename that makes it the database. A database already at `db` is kept next to it, renamed
/// with `aside_suffix` together with its WAL files, never deleted. Returns where the old
/// database went, if any.
pub fn install_restore(
    staged: &Path,
    db: &Path,
    aside_suffix: &str,
) -> Result<Option<std::path::PathBuf>, StoreError> {
    {
        let conn = Connection::open_with_flags(
            staged,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        crate::db::set_journal_mode(&conn, staged, "DELETE")?;
    }
    std::fs::File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing the restored copy"))?;
    let mut aside = None;
    if db.exists() {
        let moved = with_suffix(db, aside_suffix);
        if moved.exists() {
            return Err(StoreError::Conflict(format!(
                "{} already exists; move it away first",
                moved.display()
            )));
        }
        std::fs::rename(db, &moved).map_err(io("moving the old database aside"))?;
        aside = Some(moved);
    }
    // The old database's WAL files belong to it, not to the restored copy.
    for wal in ["-wal", "-shm"] {
        let file = with_suffix(db, wal);
        if file.exists() {
            let target = with_suffix(db, &format!("{aside_suffix}{wal}"));
            std::fs::rename(&file, &target).map_err(io("moving the old WAL files aside"))?;
        }
    }
    std::fs::rename(staged, db).map_err(io("moving the restored copy into place"))?;
    sync_parent(db)?;
    Ok(aside)
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

/// Makes a rename durable: syncs the directory that holds `path`.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{HubStore, SqliteHubStore};

    /// Appends `n` statements of one node, feed indexes and seqs from `from`.
    fn append(store: &SqliteHubStore, from: u64, n: u64) {
        let batch: Vec<_> = (from..from + n)
            .map(|i| crate::conformance::statement(i, "node-a", i, "backup"))
            .collect();
        store.append(&batch, &[], &[], &[], None).unwrap();
    }

    #[test]
    fn a_backup_taken_while_the_store_is_open_is_a_consistent_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.sqlite");
        let store = SqliteHubStore::open(&db).unwrap();
        append(&store, 1, 3);
        let out = dir.path().join("backup.sqlite");
        let bytes = sqlite_backup(&db, &out).unwrap();
        assert!(bytes > 0);
        // The store is still open and writable; the backup holds what was committed.
        append(&store, 4, 1);
        sqlite_integrity(&out).unwrap();
        let copy = SqliteHubStore::open(&out).unwrap();
        assert_eq!(copy.last_feed_index().unwrap(), 3);
        assert_eq!(store.last_feed_index().unwrap(), 4);
        assert!(!with_suffix(&out, ".partial").exists());
        let again = sqlite_backup(&db, &out);
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    }

    #[test]
    fn restore_keeps_the_old_database_aside() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.sqlite");
        let store = SqliteHubStore::open(&db).unwrap();
        append(&store, 1, 2);
        let out = dir.path().join("backup.sqlite");
        sqlite_backup(&db, &out).unwrap();
        append(&store, 3, 2);
        drop(store);
        let staged = stage_restore(&out, &db).unwrap();
        let aside = install_restore(&staged, &db, ".before-restore").unwrap();
        assert_eq!(aside, Some(dir.path().join("hub.sqlite.before-restore")));
        assert_eq!(
            SqliteHubStore::open(&db)
                .unwrap()
                .last_feed_index()
                .unwrap(),
            2
        );
        assert_eq!(
            SqliteHubStore::open(aside.as_deref().unwrap())
                .unwrap()
                .last_feed_index()
                .unwrap(),
            4
        );
    }

    #[test]
    fn a_damaged_file_fails_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.sqlite");
        let store = SqliteHubStore::open(&db).unwrap();
        append(&store, 1, 20);
        let out = dir.path().join("backup.sqlite");
        sqlite_backup(&db, &out).unwrap();
        let mut bytes = std::fs::read(&out).unwrap();
        // Past the header: damage b-tree pages.
        let len = bytes.len();
        for b in &mut bytes[4096..len.min(4096 * 3)] {
            *b = 0x5a;
        }
        std::fs::write(&out, bytes).unwrap();
        assert!(sqlite_integrity(&out).is_err());
    }
}
