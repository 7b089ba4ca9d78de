//! The hub lease: which of several hub processes on one database sequences and signs.
//!
//! Only a store that several processes can share (PostgreSQL) implements [`HubLease`]. The
//! lease is one row in the database, timed by the database's clock, with an epoch that grows by
//! one at every change of holder. Once fencing is on, every write transaction of the store first
//! checks, under a lock on that row that a takeover waits for, that the row still holds this process's epoch: a
//! leader that was paused past its lease and lost it cannot write anything afterwards, whatever
//! its own clock or memory say, and a takeover waits for a write already in progress to end.

use crate::StoreError;
use std::time::Duration;

/// Who holds the lease, as the database says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's process name (host, process id and a random part).
    pub holder: String,
    /// The gRPC endpoint the holder advertises ("" when it advertises none).
    pub endpoint: String,
    /// The epoch of its term.
    pub epoch: u64,
    /// Whether the lease has not yet expired.
    pub live: bool,
}

/// The lease operations of a store shared by a leader hub and its standbys.
pub trait HubLease: Send + Sync {
    /// Turns fencing on for this store: from now on every write must find this process's epoch
    /// in the lease row, so a standby writes nothing. A write transaction left idle longer than
    /// `ttl` (a paused process) is ended by the server, so its locks cannot hold up a takeover.
    fn enable_fencing(&self, ttl: Duration) -> Result<(), StoreError>;
    /// Takes the lease for `holder` if it has expired (by the database's clock) or was
    /// released: Some(new epoch) when taken, None when another holder's lease is live.
    fn try_acquire(
        &self,
        holder: &str,
        endpoint: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError>;
    /// Extends the lease of term `epoch` by `ttl` from the database's now; false when the term
    /// is over (another process took the lease), after which every write is refused.
    fn renew(&self, epoch: u64, ttl: Duration) -> Result<bool, StoreError>;
    /// Ends term `epoch` at once (a clean shutdown), so a standby need not wait for expiry.
    fn release(&self, epoch: u64) -> Result<(), StoreError>;
    /// The epoch this process's writes are fenced with; None on a standby and after the term
    /// was found lost (by a renewal or by a refused write).
    fn held_epoch(&self) -> Option<u64>;
    /// The lease row as it is now.
    fn current(&self) -> Result<LeaseHolder, StoreError>;
}
