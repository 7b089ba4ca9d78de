//! The files of a hub's or node's data directory (its database, the marker a restore leaves)
//! and the lock that keeps two processes out of one directory: shared by the serving commands
//! and by backup and restore.

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};

/// The database file of a hub data directory.
pub fn hub_db(data_dir: &Path) -> PathBuf {
    data_dir.join("hub.sqlite")
}

/// The database file of a node data directory.
pub fn node_db(data_dir: &Path) -> PathBuf {
    data_dir.join("node.sqlite")
}

/// The marker a node restore leaves in the data directory: the node signs nothing new until
/// its mirror has caught up with the hub's feed (rcpfed_node::own_chain).
pub fn restore_marker(data_dir: &Path) -> PathBuf {
    data_dir.join("restored-from-backup")
}

/// Holds the data directory's lock for as long as it lives: a hub or node serving from the
/// directory, or a restore into it. Two holders never run at once.
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the lock of `data_dir` for `role` ("hub" or "node"), or says who holds it.
pub fn lock_data_dir(data_dir: &Path, role: &str) -> Result<DataDirLock> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join(format!("{role}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another rcpfed {role} is using {} (its lock {} is held); stop it first",
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}
