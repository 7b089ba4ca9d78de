//! The bounded pool of read connections both backends lend their readers from.

use crate::StoreError;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most read connections open at once: each holds a page cache and a WAL snapshot, so an
/// unbounded number under load would exhaust memory and file handles. A caller finding all of
/// them busy waits, at most until its deadline (or [`READER_WAIT`] without one).
pub const MAX_READERS: usize = 16;
/// Longest wait for a free read connection when the caller has no deadline of its own.
pub const READER_WAIT: Duration = Duration::from_secs(30);

/// Idle read connections kept; more are opened on demand up to [`MAX_READERS`].
pub(crate) const IDLE_READERS: usize = 4;

/// The read connections: idle ones, and how many exist in all (idle plus lent out).
struct Readers<C> {
    idle: Vec<C>,
    open: usize,
}

/// At most [`MAX_READERS`] connections exist at once; a caller finding all of them lent out
/// waits for one to come back, at most until its deadline.
pub(crate) struct ReaderPool<C> {
    readers: Mutex<Readers<C>>,
    returned: Condvar,
}

impl<C> ReaderPool<C> {
    /// A pool holding the already open `idle` connections.
    pub fn new(idle: Vec<C>) -> Self {
        ReaderPool {
            readers: Mutex::new(Readers {
                open: idle.len(),
                idle,
            }),
            returned: Condvar::new(),
        }
    }

    /// A free connection: an idle one that `usable` accepts (others are dropped), a new one
    /// from `open` while fewer than [`MAX_READERS`] exist, or else the next one given back,
    /// waiting at most until `deadline` (or [`READER_WAIT`] without one).
    pub fn take(
        &self,
        deadline: Option<Instant>,
        usable: impl Fn(&C) -> bool,
        open: impl FnOnce() -> Result<C, StoreError>,
    ) -> Result<C, StoreError> {
        let until = deadline.unwrap_or_else(|| Instant::now() + READER_WAIT);
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = readers.idle.pop() {
                if !usable(&conn) {
                    readers.open = readers.open.saturating_sub(1);
                    continue;
                }
                return Ok(conn);
            }
            if readers.open < MAX_READERS {
                readers.open += 1;
                drop(readers);
                return open().inspect_err(|_| self.forget());
            }
            let now = Instant::now();
            if now >= until {
                return Err(StoreError::DeadlineExceeded(format!(
                    "all {MAX_READERS} read connections stayed busy until the call's deadline"
                )));
            }
            readers = self
                .returned
                .wait_timeout(readers, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Takes a connection back; beyond [`IDLE_READERS`] idle ones it is closed, so the pool
    /// shrinks back after a burst.
    pub fn give_back(&self, conn: C) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.idle.len() < IDLE_READERS {
            readers.idle.push(conn);
        } else {
            readers.open = readers.open.saturating_sub(1);
        }
        drop(readers);
        self.returned.notify_one();
    }

    /// Accounts for a lent connection that failed to open or was dropped.
    pub fn forget(&self) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        readers.open = readers.open.saturating_sub(1);
        drop(readers);
        self.returned.notify_one();
    }

    /// The idle connections, taken out (to close them elsewhere).
    #[cfg(feature = "postgres")]
    pub fn take_idle(&mut self) -> Vec<C> {
        std::mem::take(
            &mut self
                .readers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .idle,
        )
    }

    /// How many connections exist (idle plus lent out).
    #[cfg(test)]
    pub fn open_count(&self) -> usize {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
    }
}
