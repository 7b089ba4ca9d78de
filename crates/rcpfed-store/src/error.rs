//! The store's error type.

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (I/O, locking, a malformed file, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer rcpfed; opening it could damage it.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The write contradicts what is stored (a uniqueness or ordering rule); nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The stored data is not what this code expects.
    #[error("corrupt store: {0}")]
    Corrupt(String),
}
