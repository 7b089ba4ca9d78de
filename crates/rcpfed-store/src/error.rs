//! The store's error type.

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (I/O, locking, a malformed file, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL server or the connection to it failed.
    #[cfg(feature = "postgres")]
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
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
    /// A read ran past its caller's deadline and was stopped, or no read connection came
    /// free before it; nothing was changed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The write was refused because this process does not hold the hub lease (a standby, or a
    /// leader whose term another process has taken over); nothing was written.
    #[error("not the leader: {0}")]
    NotLeader(String),
}

impl StoreError {
    /// The disk (or the store's `max_db_bytes` quota) is full: a write was refused whole and
    /// nothing of it is stored. Space returning makes the same write succeed.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            #[cfg(feature = "postgres")]
            StoreError::Postgres(e) => crate::pg::is_full(e),
            _ => false,
        }
    }

    /// The storage could not be written or read (full disk, I/O error, read-only or locked
    /// file): a condition of the machine, not of the request, that may pass by itself.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(
                    C::DiskFull
                        | C::SystemIoFailure
                        | C::ReadOnly
                        | C::CannotOpen
                        | C::DatabaseBusy
                        | C::DatabaseLocked
                        | C::OutOfMemory
                )
            ),
            #[cfg(feature = "postgres")]
            StoreError::Postgres(e) => crate::pg::is_unavailable(e),
            StoreError::NotLeader(_) => true,
            _ => false,
        }
    }

    /// SQLite stopped a statement on request (the deadline check of a read).
    pub(crate) fn is_interrupted(&self) -> bool {
        matches!(self, StoreError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted))
    }
}
