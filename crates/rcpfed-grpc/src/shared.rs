//! The federation as currently in force, shared by every task of a hub or node and replaced
//! atomically when a new registry version is verified.

use rcpfed_core::members::Federation;
use std::sync::{Arc, RwLock};

/// A cheaply cloned handle to the current federation.
#[derive(Clone)]
pub struct SharedFederation(Arc<RwLock<Arc<Federation>>>);

impl SharedFederation {
    /// Starts with `federation`.
    pub fn new(federation: Federation) -> Self {
        SharedFederation(Arc::new(RwLock::new(Arc::new(federation))))
    }

    /// The federation in force now. Callers keep the `Arc` for the duration of one request, so
    /// a request is decided entirely under one registry version.
    pub fn get(&self) -> Arc<Federation> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts `federation` in force.
    pub fn set(&self, federation: Federation) {
        let new = Arc::new(federation);
        match self.0.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
