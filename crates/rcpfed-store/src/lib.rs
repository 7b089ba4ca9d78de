//! rcpfed storage: the hub's statement log and the node's outbox and mirror.
//!
//! The API is synchronous; async callers run it on `spawn_blocking` or a dedicated thread.
//! Timestamps are unix milliseconds (UTC); envelope and receipt bytes are kept verbatim.
//! The SQLite implementation uses WAL with `synchronous=FULL` so an acknowledged write survives
//! a crash, one writer connection (`BEGIN IMMEDIATE` transactions) and a small pool of read-only
//! connections so reads never wait for the writer. The pool is bounded ([`MAX_READERS`]), and
//! reads honour the caller's deadline ([`with_deadline`]): a query still running at the
//! deadline is interrupted. The file can be capped (`set_max_db_bytes`); a full disk or cap
//! refuses the write whole ([`StoreError::is_full`]).
//!
//! With the `postgres` feature, [`PgHubStore`] implements the hub's traits on a PostgreSQL
//! database given by a connection URL, for a hub that outgrows one machine; the same
//! conformance suite runs against both backends.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod backup;
mod db;
mod decoded;
mod error;
pub mod hub;
mod hub_sql;
mod hub_sqlite;
mod indicator_queries;
pub mod indicators;
mod indicators_sql;
pub mod lease;
pub mod node;
#[cfg(feature = "postgres")]
mod pg;
mod pool;
pub mod snapshot_staging;
mod sql;
mod view_rows;
mod view_step;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use db::{current_deadline, with_deadline};
pub use decoded::DecodedStatement;
pub use error::StoreError;
pub use hub::*;
pub use hub_sqlite::SqliteHubStore;
pub use indicators::*;
pub use lease::{HubLease, LeaseHolder};
pub use node::*;
#[cfg(feature = "postgres")]
pub use pg::{PgHubStore, copy as pg_copy, is_postgres_url};
pub use pool::{MAX_READERS, READER_WAIT};
/// A SHA-256 Merkle tree hash (log nodes, checkpoint roots).
pub use rcpfed_core::merkle::Hash;
pub use snapshot_staging::SnapshotStaging;

#[cfg(all(test, feature = "postgres"))]
mod pg_tests;
#[cfg(test)]
mod sqlite_tests;
