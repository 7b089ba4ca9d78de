//! The hub's store: the append-only log of accepted statements (the feed), the evidence of
//! equivocations, and the transparency log over the feed: complete Merkle subtree hashes,
//! signed checkpoints and the witnesses' cosignatures.

use crate::StoreError;
use crate::db::{self, Db, Schema, constraint_message, get_digest, get_hash, get_u32, get_u64};
use crate::indicators_sql::{
    self, Entry, Log, indicator_indexes_v2_sql, indicator_key_rule_sql, indicator_tables_sql,
};
use rcpfed_core::Digest;
use rcpfed_core::merkle::Hash;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use std::path::Path;

/// An accepted statement as the hub's log holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredStatement {
    /// Position in the hub's feed, from 1, without gaps.
    pub feed_index: u64,
    /// The node that signed the statement.
    pub node_id: String,
    /// The node's sequence number (from 1).
    pub seq: u64,
    /// SHA-256 of the statement payload.
    pub digest: Digest,
    /// The DSSE payload type.
    pub payload_type: String,
    /// "policy_summary", "indicator_snapshot" (both applied to the indicator view when
    /// stored), or a hub document kind ("registry", "catalogue", "coherence_report").
    pub kind: String,
    /// The document the statement is a revision of.
    pub document: String,
    /// The document revision.
    pub revision: u32,
    /// The signed envelope, verbatim.
    pub envelope: Vec<u8>,
    /// The hub's signed receipt, verbatim.
    pub receipt: Vec<u8>,
    /// When the hub accepted it (unix ms, UTC).
    pub accepted_at_ms: i64,
}

/// The latest accepted statement of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainHead {
    /// The node.
    pub node_id: String,
    /// Its latest accepted seq.
    pub seq: u64,
    /// The digest of that statement.
    pub digest: Digest,
}

/// Most equivocation evidence entries kept per member (the first conflicting statement of a
/// seq only): enough to prove any misbehaviour, bounded on disk.
pub const MAX_EQUIVOCATIONS_PER_MEMBER: usize = 16;

/// Evidence of an equivocation to record: a second, different statement for an accepted (node, seq).
#[derive(Clone, Debug, PartialEq)]
pub struct NewEquivocation {
    /// The equivocating node.
    pub node_id: String,
    /// The seq used twice.
    pub seq: u64,
    /// Digest of the accepted statement (must be in the log).
    pub accepted_digest: Digest,
    /// Digest of the refused statement.
    pub conflicting_digest: Digest,
    /// The refused statement's envelope, verbatim.
    pub conflicting_envelope: Vec<u8>,
    /// When the hub detected it (unix ms, UTC).
    pub detected_at_ms: i64,
}

/// Recorded equivocation evidence, with both envelopes.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEquivocation {
    /// Evidence id, ascending in detection order.
    pub id: u64,
    /// The equivocating node.
    pub node_id: String,
    /// The seq used twice.
    pub seq: u64,
    /// Digest of the accepted statement.
    pub accepted_digest: Digest,
    /// The accepted statement's envelope.
    pub accepted_envelope: Vec<u8>,
    /// Digest of the refused statement.
    pub conflicting_digest: Digest,
    /// The refused statement's envelope.
    pub conflicting_envelope: Vec<u8>,
    /// When the hub detected it (unix ms, UTC).
    pub detected_at_ms: i64,
}

/// Which statements to list; `None` fields match everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatementFilter {
    /// Only this node's statements.
    pub node_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only revisions of this document.
    pub document: Option<String>,
}

/// A complete Merkle subtree hash keyed by (level, index): the node at level `l`, index `i`
/// covers leaves `[i << l, (i + 1) << l)`; level 0 holds the leaf hashes.
pub type LogNode = (u8, u64, Hash);

/// A checkpoint the hub signed, to store with the entries it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCheckpoint {
    /// Tree size (number of log entries) the checkpoint commits to.
    pub size: u64,
    /// Root hash of the tree of that size.
    pub root: Hash,
    /// The C2SP signed note text, verbatim.
    pub note: String,
    /// When the hub signed it (unix ms, UTC).
    pub created_at_ms: i64,
}

/// A stored checkpoint with the number of witnesses that cosigned it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The C2SP signed note text, verbatim.
    pub note: String,
    /// When the hub signed it (unix ms, UTC).
    pub created_at_ms: i64,
    /// Distinct witnesses whose cosignature is stored for this size.
    pub cosignature_count: u32,
}

/// A witness's cosignature of the checkpoint of one size.
#[derive(Clone, Debug, PartialEq)]
pub struct Cosignature {
    /// Size of the cosigned checkpoint.
    pub size: u64,
    /// The witness (its key name).
    pub witness_id: String,
    /// The tlog-cosignature signature line, verbatim.
    pub line: String,
    /// The cosignature's timestamp (unix seconds, as signed).
    pub timestamp: u64,
}

/// A flag to record against an accepted statement (issue 4): a registry version revoked the
/// signing key `key_id` from a moment before the hub accepted the statement. The statement
/// stays stored and provable; readers are warned.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagRecord {
    /// The node whose statement is flagged.
    pub node_id: String,
    /// The flagged statement's seq (it must be stored).
    pub seq: u64,
    /// Why, in words for readers.
    pub reason: String,
    /// The revoked signing key.
    pub key_id: String,
    /// The registry version that revoked it.
    pub registry_version: u64,
    /// When the hub flagged it (unix ms, UTC).
    pub flagged_at_ms: i64,
}

/// A stored flag.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFlag {
    /// Flag id, ascending in flagging order.
    pub id: u64,
    /// The flag as recorded.
    pub flag: FlagRecord,
}

/// The hub's storage.
pub trait HubStore: Send + Sync + 'static {
    /// The latest statement of every node (seq, digest): the chain heads the ingest pipeline checks against. Cheap at any log size; called at start-up.
    fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError>;
    /// Highest feed index stored (0 when empty). Cheap.
    fn last_feed_index(&self) -> Result<u64, StoreError>;
    /// The statement with this digest.
    fn statement_by_digest(&self, digest: &Digest) -> Result<Option<StoredStatement>, StoreError>;
    /// The statement at (node, seq).
    fn statement_by_node_seq(
        &self,
        node_id: &str,
        seq: u64,
    ) -> Result<Option<StoredStatement>, StoreError>;
    /// The statement at this feed index.
    fn statement_by_feed_index(
        &self,
        feed_index: u64,
    ) -> Result<Option<StoredStatement>, StoreError>;
    /// Appends accepted statements, equivocation evidence, Merkle log nodes and a checkpoint in
    /// ONE durable `BEGIN IMMEDIATE` transaction (group commit); any violation below is
    /// StoreError::Conflict and nothing at all is written.
    ///
    /// - Statements: feed indexes are assigned by the caller and must continue last_feed_index
    ///   without gaps; (node_id, seq) and digest are unique. Each is applied to the indicator
    ///   view in feed order (see [`crate::IndicatorStore`]); a snapshot breaking an action
    ///   rule or missing a chunk is a Conflict.
    /// - Chunks: the bytes of the chunked snapshots among `statements`, keyed by SHA-256 (the
    ///   caller has checked each against the signed manifest; the apply step checks again).
    ///   They are stored content-addressed (a chunk already stored is a no-op) in this same
    ///   transaction, before the statements are applied: a refused snapshot is never passed
    ///   here, and a failed append rolls its chunks back, so no chunk is ever stored without
    ///   an accepted statement listing it (or one stored by [`crate::IndicatorStore::stage_chunks`]).
    /// - Evidence: only the first conflicting statement of a (node_id, seq) is kept, and at
    ///   most [`MAX_EQUIVOCATIONS_PER_MEMBER`] per node; later evidence is ignored. Evidence whose accepted_digest is not a stored statement of that (node_id, seq) is a
    ///   Conflict.
    /// - Log nodes: complete subtree hashes keyed (level, index), level 0 being the leaves. A
    ///   key already stored with the same hash is ignored; with a different hash it is a
    ///   Conflict (history is never rewritten).
    /// - Checkpoint: compare-and-swap; its size must be strictly greater than the largest
    ///   stored checkpoint size (the hub never signs two checkpoints for one size).
    fn append(
        &self,
        statements: &[StoredStatement],
        chunks: &[(Digest, Vec<u8>)],
        evidence: &[NewEquivocation],
        log_nodes: &[LogNode],
        checkpoint: Option<&NewCheckpoint>,
    ) -> Result<(), StoreError>;
    /// The hash of the complete subtree at (level, index), if stored. One B-tree probe.
    fn log_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError>;
    /// Several log nodes, in the order of `keys`, read in one read transaction (one consistent
    /// snapshot; proof generation reads O(log n) of them).
    fn log_nodes(&self, keys: &[(u8, u64)]) -> Result<Vec<Option<Hash>>, StoreError>;
    /// The checkpoint of the largest size, None before the first. Cheap.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// The checkpoint of this size.
    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// The checkpoint of the largest size with cosignature_count >= quorum (a final one).
    /// Cheap at any log size: O(distinct counts · log n).
    fn latest_final_checkpoint(&self, quorum: u32) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// Stores (upserts) a witness's cosignature of the checkpoint of `c.size`, updating that
    /// checkpoint's cosignature_count in the same transaction; returns the number of distinct
    /// witnesses that cosigned that size. Conflict if no checkpoint of that size is stored.
    fn add_cosignature(&self, c: &Cosignature) -> Result<u32, StoreError>;
    /// The cosignatures of the checkpoint of this size, ordered by witness_id.
    fn cosignatures(&self, size: u64) -> Result<Vec<Cosignature>, StoreError>;
    /// Statements with feed_index > after_index matching the filter, ascending, at most limit.
    fn list_statements(
        &self,
        filter: &StatementFilter,
        after_index: u64,
        limit: usize,
    ) -> Result<Vec<StoredStatement>, StoreError>;
    /// Evidence with id > after_id (optionally for one node), ascending, at most limit. accepted_envelope is joined from the statements table.
    fn list_equivocations(
        &self,
        node_id: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<StoredEquivocation>, StoreError>;
    /// Feed entries with feed_index > after_index, ascending: at most `max_rows`, and no more
    /// once their envelopes and receipts reach `max_bytes` (at least one), so a reader's memory
    /// is bounded by bytes, not by a row count whatever the entries' size.
    fn list_feed(
        &self,
        after_index: u64,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredStatement>, StoreError>;
    /// Like [`HubStore::list_equivocations`], but at most `limit` entries whose envelopes add up
    /// to at most `max_bytes` (at least one entry); also says whether more entries follow.
    fn list_equivocations_within(
        &self,
        node_id: Option<&str>,
        after_id: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<StoredEquivocation>, bool), StoreError>;
    /// Number of statements in the log.
    fn count_statements(&self) -> Result<u64, StoreError>;
    /// Inserts flags in one transaction; a flag for the same (node_id, seq, key_id,
    /// registry_version) is stored once (the first one's reason and time are kept, also within
    /// one batch). Returns how many were new. The (node_id, seq) must be a stored statement,
    /// else Conflict and nothing written.
    fn flag_statements(&self, flags: &[FlagRecord]) -> Result<u32, StoreError>;
    /// Flags with id > after_id, ascending, at most limit.
    fn list_flags(&self, after_id: u64, limit: usize) -> Result<Vec<StoredFlag>, StoreError>;
    /// The lease that lets several hub processes share this store (one sequences, the others
    /// stand by); None for a store only one process can open (SQLite).
    fn lease(&self) -> Option<&dyn crate::HubLease> {
        None
    }
}

/// Schema of the hub database. Append new migrations; never edit shipped ones.
pub(crate) const HUB_SCHEMA: Schema = Schema {
    name: "hub",
    application_id: 0x5243_4648, // "RCFH"
    migrations: &[
        r#"
        -- feed_index is the rowid: MAX() is an O(log n) lookup and every secondary index
        -- implicitly ends with it, so (col) indexes serve "col = ? AND feed_index > ?" pages.
        CREATE TABLE statements (
            feed_index     INTEGER PRIMARY KEY CHECK (feed_index >= 1),
            node_id        TEXT    NOT NULL,
            seq            INTEGER NOT NULL CHECK (seq >= 1),
            digest         BLOB    NOT NULL CHECK (length(digest) = 32),
            payload_type   TEXT    NOT NULL,
            kind           TEXT    NOT NULL,
            document       TEXT    NOT NULL,
            revision       INTEGER NOT NULL CHECK (revision >= 0),
            envelope       BLOB    NOT NULL,
            receipt        BLOB    NOT NULL,
            accepted_at_ms INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX statements_node_seq ON statements (node_id, seq);
        CREATE UNIQUE INDEX statements_digest ON statements (digest);
        CREATE INDEX statements_node ON statements (node_id);
        CREATE INDEX statements_kind ON statements (kind);
        CREATE INDEX statements_document ON statements (document);

        CREATE TABLE equivocations (
            id                   INTEGER PRIMARY KEY,
            node_id              TEXT    NOT NULL,
            seq                  INTEGER NOT NULL,
            accepted_digest      BLOB    NOT NULL REFERENCES statements (digest),
            conflicting_digest   BLOB    NOT NULL CHECK (length(conflicting_digest) = 32),
            conflicting_envelope BLOB    NOT NULL,
            detected_at_ms       INTEGER NOT NULL,
            UNIQUE (node_id, seq, conflicting_digest)
        );
        CREATE INDEX equivocations_node ON equivocations (node_id);
    "#,
        r#"
        -- Transparency log (issue 3). Complete Merkle subtree hashes: the node at (level, idx)
        -- covers leaves [idx << level, (idx + 1) << level). WITHOUT ROWID: one B-tree probe
        -- per lookup and the key is stored once.
        CREATE TABLE log_nodes (
            level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
            idx   INTEGER NOT NULL CHECK (idx >= 0),
            hash  BLOB    NOT NULL CHECK (length(hash) = 32),
            PRIMARY KEY (level, idx)
        ) WITHOUT ROWID;

        -- size is the rowid: the latest checkpoint is an O(log n) max(). cosignature_count is
        -- maintained with the cosignatures; its index (implicitly ending with size) answers
        -- "latest with count = c" in one probe per distinct count.
        CREATE TABLE checkpoints (
            size              INTEGER PRIMARY KEY CHECK (size >= 0),
            root              BLOB    NOT NULL CHECK (length(root) = 32),
            note              TEXT    NOT NULL,
            created_at_ms     INTEGER NOT NULL,
            cosignature_count INTEGER NOT NULL DEFAULT 0 CHECK (cosignature_count >= 0)
        );
        CREATE INDEX checkpoints_cosignature_count ON checkpoints (cosignature_count);

        CREATE TABLE cosignatures (
            size       INTEGER NOT NULL REFERENCES checkpoints (size),
            witness_id TEXT    NOT NULL,
            line       TEXT    NOT NULL,
            timestamp  INTEGER NOT NULL CHECK (timestamp >= 0),
            PRIMARY KEY (size, witness_id)
        ) WITHOUT ROWID;
    "#,
        r#"
        -- Statements flagged after acceptance (issue 4): a registry version revoked the signing
        -- key from a moment before the hub accepted them. They stay in the log; readers are
        -- warned. id is the rowid (paging order); the unique key dedupes re-flagging and, led
        -- by (node_id, seq), answers "flags of this statement".
        CREATE TABLE statement_flags (
            id               INTEGER PRIMARY KEY,
            node_id          TEXT    NOT NULL,
            seq              INTEGER NOT NULL CHECK (seq >= 1),
            reason           TEXT    NOT NULL,
            key_id           TEXT    NOT NULL,
            registry_version INTEGER NOT NULL CHECK (registry_version >= 0),
            flagged_at_ms    INTEGER NOT NULL,
            UNIQUE (node_id, seq, key_id, registry_version),
            FOREIGN KEY (node_id, seq) REFERENCES statements (node_id, seq)
        );
    "#,
        indicator_tables_sql!(),
        indicator_indexes_v2_sql!(),
        indicator_key_rule_sql!(),
    ],
    upgrade: Some(upgrade_hub),
};

/// Version 4 added the indicator view and version 6 the observation key rule, which empties
/// the view: a file from before version 6 gets the view rebuilt from its log.
fn upgrade_hub(tx: &Transaction<'_>, from_version: i64) -> Result<(), StoreError> {
    if (1..6).contains(&from_version) {
        indicators_sql::backfill(tx, Log::Hub)?;
    }
    Ok(())
}

/// Column list matching [`statement_from_row`].
macro_rules! statement_columns {
    () => {
        "feed_index, node_id, seq, digest, payload_type, kind, document, revision, envelope, \
         receipt, accepted_at_ms"
    };
}

/// Column list matching [`checkpoint_from_row`].
macro_rules! checkpoint_columns {
    () => {
        "size, root, note, created_at_ms, cosignature_count"
    };
}

fn checkpoint_from_row(row: &Row<'_>) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: get_u64(row, 0)?,
        root: get_hash(row, 1)?,
        note: row.get(2)?,
        created_at_ms: row.get(3)?,
        cosignature_count: get_u32(row, 4)?,
    })
}

fn query_checkpoint(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => Ok(Some(checkpoint_from_row(row)?)),
        None => Ok(None),
    }
}

fn statement_from_row(row: &Row<'_>) -> Result<StoredStatement, StoreError> {
    Ok(StoredStatement {
        feed_index: get_u64(row, 0)?,
        node_id: row.get(1)?,
        seq: get_u64(row, 2)?,
        digest: get_digest(row, 3)?,
        payload_type: row.get(4)?,
        kind: row.get(5)?,
        document: row.get(6)?,
        revision: get_u32(row, 7)?,
        envelope: row.get(8)?,
        receipt: row.get(9)?,
        accepted_at_ms: row.get(10)?,
    })
}

/// The hub store on SQLite.
#[derive(Debug)]
pub struct SqliteHubStore {
    pub(crate) db: Db,
}

impl SqliteHubStore {
    /// Opens (creating and migrating as needed) the hub database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteHubStore {
            db: Db::open(path, &HUB_SCHEMA)?,
        })
    }

    /// Caps the database file at about `bytes` (the `max_db_bytes` setting; None lifts the
    /// cap); returns the cap in effect. See the store's crate documentation.
    pub fn set_max_db_bytes(&self, bytes: Option<u64>) -> Result<u64, StoreError> {
        self.db.set_max_bytes(bytes)
    }
}

fn query_statements(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<Vec<StoredStatement>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(statement_from_row(row)?);
    }
    Ok(out)
}

impl HubStore for SqliteHubStore {
    fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(CHAIN_HEADS_SQL)?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(ChainHead {
                    node_id: row.get(0)?,
                    seq: get_u64(row, 1)?,
                    digest: get_digest(row, 2)?,
                });
            }
            Ok(out)
        })
    }

    fn last_feed_index(&self) -> Result<u64, StoreError> {
        self.db.read(last_feed_index)
    }

    fn statement_by_digest(&self, digest: &Digest) -> Result<Option<StoredStatement>, StoreError> {
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                statement_columns!(),
                " FROM statements WHERE digest = ?1"
            );
            Ok(query_statements(conn, sql, &[&&digest.0[..]])?.pop())
        })
    }

    fn statement_by_node_seq(
        &self,
        node_id: &str,
        seq: u64,
    ) -> Result<Option<StoredStatement>, StoreError> {
        let Some(seq) = db::key(seq) else {
            return Ok(None);
        };
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                statement_columns!(),
                " FROM statements WHERE node_id = ?1 AND seq = ?2"
            );
            Ok(query_statements(conn, sql, &[&node_id, &seq])?.pop())
        })
    }

    fn statement_by_feed_index(
        &self,
        feed_index: u64,
    ) -> Result<Option<StoredStatement>, StoreError> {
        let Some(feed_index) = db::key(feed_index) else {
            return Ok(None);
        };
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                statement_columns!(),
                " FROM statements WHERE feed_index = ?1"
            );
            Ok(query_statements(conn, sql, &[&feed_index])?.pop())
        })
    }

    fn append(
        &self,
        statements: &[StoredStatement],
        chunks: &[(Digest, Vec<u8>)],
        evidence: &[NewEquivocation],
        log_nodes: &[LogNode],
        checkpoint: Option<&NewCheckpoint>,
    ) -> Result<(), StoreError> {
        if statements.is_empty()
            && chunks.is_empty()
            && evidence.is_empty()
            && log_nodes.is_empty()
            && checkpoint.is_none()
        {
            return Ok(());
        }
        // Any error returns before commit; the dropped transaction rolls everything back.
        self.db.write(|tx| {
            // Before the statements: their apply step reads the chunks from the table.
            indicators_sql::stage_chunks(tx, chunks)?;
            insert_statements(tx, statements)?;
            insert_evidence(tx, evidence)?;
            insert_log_nodes(tx, log_nodes)?;
            if let Some(checkpoint) = checkpoint {
                insert_checkpoint(tx, checkpoint)?;
            }
            Ok(())
        })
    }

    fn log_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        let Some(index) = db::key(index) else {
            return Ok(None);
        };
        self.db.read(|conn| read_log_node(conn, level, index))
    }

    fn log_nodes(&self, keys: &[(u8, u64)]) -> Result<Vec<Option<Hash>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.db.read(|conn| {
            // One snapshot for all reads: a proof is never assembled from two tree states.
            let tx = conn.unchecked_transaction()?;
            let out = keys
                .iter()
                .map(|&(level, index)| match db::key(index) {
                    Some(index) => read_log_node(&tx, level, index),
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                checkpoint_columns!(),
                " FROM checkpoints ORDER BY size DESC LIMIT 1"
            );
            query_checkpoint(conn, sql, &[])
        })
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let Some(size) = db::key(size) else {
            return Ok(None);
        };
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                checkpoint_columns!(),
                " FROM checkpoints WHERE size = ?1"
            );
            query_checkpoint(conn, sql, &[&size])
        })
    }

    fn latest_final_checkpoint(&self, quorum: u32) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.db
            .read(|conn| query_checkpoint(conn, LATEST_FINAL_SQL, &[&quorum]))
    }

    fn add_cosignature(&self, c: &Cosignature) -> Result<u32, StoreError> {
        let size = db::int(c.size, "checkpoint size")?;
        let timestamp = db::int(c.timestamp, "cosignature timestamp")?;
        self.db.write(|tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM checkpoints WHERE size = ?1")?
                .exists([size])?;
            if !exists {
                return Err(StoreError::Conflict(format!(
                    "no checkpoint of size {} to cosign (witness {})",
                    c.size, c.witness_id
                )));
            }
            tx.prepare_cached(
                "INSERT INTO cosignatures (size, witness_id, line, timestamp)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (size, witness_id)
                 DO UPDATE SET line = excluded.line, timestamp = excluded.timestamp",
            )?
            .execute(params![size, c.witness_id, c.line, timestamp])?;
            // Counted, not incremented: an upsert of a known witness leaves the count as is.
            // O(witnesses of this size) through the primary key.
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM cosignatures WHERE size = ?1")?
                .query_row([size], |r| r.get(0))?;
            tx.prepare_cached("UPDATE checkpoints SET cosignature_count = ?2 WHERE size = ?1")?
                .execute([size, count])?;
            u32::try_from(count)
                .map_err(|_| StoreError::Corrupt(format!("cosignature count {count} out of range")))
        })
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<Cosignature>, StoreError> {
        let Some(size) = db::key(size) else {
            return Ok(Vec::new());
        };
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT size, witness_id, line, timestamp FROM cosignatures
                 WHERE size = ?1 ORDER BY witness_id",
            )?;
            let mut rows = stmt.query([size])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(Cosignature {
                    size: get_u64(row, 0)?,
                    witness_id: row.get(1)?,
                    line: row.get(2)?,
                    timestamp: get_u64(row, 3)?,
                });
            }
            Ok(out)
        })
    }

    fn list_statements(
        &self,
        filter: &StatementFilter,
        after_index: u64,
        limit: usize,
    ) -> Result<Vec<StoredStatement>, StoreError> {
        let after = db::bound(after_index);
        let limit = db::limit(limit);
        let mut sql = String::from(concat!(
            "SELECT ",
            statement_columns!(),
            " FROM statements WHERE feed_index > ?"
        ));
        let mut args: Vec<&dyn ToSql> = vec![&after];
        // Built per filter combination (eight variants, each cached) rather than
        // "(?1 IS NULL OR col = ?1)", which stops SQLite from using the indexes.
        for (column, value) in [
            ("node_id", &filter.node_id),
            ("kind", &filter.kind),
            ("document", &filter.document),
        ] {
            if let Some(value) = value {
                sql.push_str(" AND ");
                sql.push_str(column);
                sql.push_str(" = ?");
                args.push(value);
            }
        }
        sql.push_str(" ORDER BY feed_index LIMIT ?");
        args.push(&limit);
        self.db.read(|conn| query_statements(conn, &sql, &args))
    }

    fn list_equivocations(
        &self,
        node_id: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<StoredEquivocation>, StoreError> {
        let after = db::bound(after_id);
        let limit = db::limit(limit);
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT e.id, e.node_id, e.seq, e.accepted_digest, s.envelope,
                        e.conflicting_digest, e.conflicting_envelope, e.detected_at_ms
                 FROM equivocations e JOIN statements s ON s.digest = e.accepted_digest
                 WHERE e.id > ?1 AND (?2 IS NULL OR e.node_id = ?2)
                 ORDER BY e.id LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![after, node_id, limit])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(StoredEquivocation {
                    id: get_u64(row, 0)?,
                    node_id: row.get(1)?,
                    seq: get_u64(row, 2)?,
                    accepted_digest: get_digest(row, 3)?,
                    accepted_envelope: row.get(4)?,
                    conflicting_digest: get_digest(row, 5)?,
                    conflicting_envelope: row.get(6)?,
                    detected_at_ms: row.get(7)?,
                });
            }
            Ok(out)
        })
    }

    fn list_feed(
        &self,
        after_index: u64,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredStatement>, StoreError> {
        let after = db::bound(after_index);
        let limit = db::limit(max_rows);
        self.db.read(|conn| {
            // The size comes first, so a row past the budget is never loaded.
            let mut stmt = conn.prepare_cached(concat!(
                "SELECT length(envelope) + length(receipt), ",
                statement_columns!(),
                " FROM statements WHERE feed_index > ?1 ORDER BY feed_index LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![after, limit])?;
            let mut out = Vec::new();
            let mut used = 0usize;
            while let Some(row) = rows.next()? {
                let size = usize::try_from(row.get::<_, i64>(0)?).unwrap_or(usize::MAX);
                if !out.is_empty() && used.saturating_add(size) > max_bytes {
                    break;
                }
                used = used.saturating_add(size);
                out.push(StoredStatement {
                    feed_index: get_u64(row, 1)?,
                    node_id: row.get(2)?,
                    seq: get_u64(row, 3)?,
                    digest: get_digest(row, 4)?,
                    payload_type: row.get(5)?,
                    kind: row.get(6)?,
                    document: row.get(7)?,
                    revision: get_u32(row, 8)?,
                    envelope: row.get(9)?,
                    receipt: row.get(10)?,
                    accepted_at_ms: row.get(11)?,
                });
            }
            Ok(out)
        })
    }

    fn list_equivocations_within(
        &self,
        node_id: Option<&str>,
        after_id: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<StoredEquivocation>, bool), StoreError> {
        let after = db::bound(after_id);
        let fetch = db::limit(limit.saturating_add(1));
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT length(s.envelope) + length(e.conflicting_envelope), e.id, e.node_id,
                        e.seq, e.accepted_digest, s.envelope, e.conflicting_digest,
                        e.conflicting_envelope, e.detected_at_ms
                 FROM equivocations e JOIN statements s ON s.digest = e.accepted_digest
                 WHERE e.id > ?1 AND (?2 IS NULL OR e.node_id = ?2)
                 ORDER BY e.id LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![after, node_id, fetch])?;
            let mut out = Vec::new();
            let mut used = 0usize;
            while let Some(row) = rows.next()? {
                let size = usize::try_from(row.get::<_, i64>(0)?).unwrap_or(usize::MAX);
                if out.len() >= limit || (!out.is_empty() && used.saturating_add(size) > max_bytes)
                {
                    return Ok((out, true));
                }
                used = used.saturating_add(size);
                out.push(StoredEquivocation {
                    id: get_u64(row, 1)?,
                    node_id: row.get(2)?,
                    seq: get_u64(row, 3)?,
                    accepted_digest: get_digest(row, 4)?,
                    accepted_envelope: row.get(5)?,
                    conflicting_digest: get_digest(row, 6)?,
                    conflicting_envelope: row.get(7)?,
                    detected_at_ms: row.get(8)?,
                });
            }
            Ok((out, false))
        })
    }

    fn count_statements(&self) -> Result<u64, StoreError> {
        self.db.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM statements")?
                .query_row([], |r| r.get(0))?;
            u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
        })
    }

    fn flag_statements(&self, flags: &[FlagRecord]) -> Result<u32, StoreError> {
        if flags.is_empty() {
            return Ok(0);
        }
        // Any error returns before commit; the dropped transaction rolls everything back.
        self.db.write(|tx| {
            let mut exists =
                tx.prepare_cached("SELECT 1 FROM statements WHERE node_id = ?1 AND seq = ?2")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO statement_flags (node_id, seq, reason, key_id, registry_version,
                     flagged_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (node_id, seq, key_id, registry_version) DO NOTHING",
            )?;
            let mut new = 0u32;
            for f in flags {
                let stored = match db::key(f.seq) {
                    Some(seq) => exists.exists(params![f.node_id, seq])?,
                    None => false,
                };
                if !stored {
                    return Err(StoreError::Conflict(format!(
                        "cannot flag node {} seq {}: no such statement is stored",
                        f.node_id, f.seq
                    )));
                }
                let inserted = insert.execute(params![
                    f.node_id,
                    db::int(f.seq, "seq")?,
                    f.reason,
                    f.key_id,
                    db::int(f.registry_version, "registry version")?,
                    f.flagged_at_ms,
                ])?;
                if inserted > 0 {
                    new = new.checked_add(1).ok_or_else(|| {
                        StoreError::Conflict("more than u32::MAX flags in one batch".into())
                    })?;
                }
            }
            Ok(new)
        })
    }

    fn list_flags(&self, after_id: u64, limit: usize) -> Result<Vec<StoredFlag>, StoreError> {
        let after = db::bound(after_id);
        let limit = db::limit(limit);
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, node_id, seq, reason, key_id, registry_version, flagged_at_ms
                 FROM statement_flags WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![after, limit])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(StoredFlag {
                    id: get_u64(row, 0)?,
                    flag: FlagRecord {
                        node_id: row.get(1)?,
                        seq: get_u64(row, 2)?,
                        reason: row.get(3)?,
                        key_id: row.get(4)?,
                        registry_version: get_u64(row, 5)?,
                        flagged_at_ms: row.get(6)?,
                    },
                });
            }
            Ok(out)
        })
    }
}

/// Every node's latest statement. Walks the distinct node ids through the (node_id, seq) index
/// (a "skip scan"), then looks up each node's highest seq: O(nodes · log n), never a log scan.
pub(crate) const CHAIN_HEADS_SQL: &str = "
    WITH RECURSIVE nodes(node_id) AS (
        SELECT (SELECT min(node_id) FROM statements)
        UNION ALL
        SELECT (SELECT min(s.node_id) FROM statements s WHERE s.node_id > nodes.node_id)
        FROM nodes WHERE nodes.node_id IS NOT NULL
    )
    SELECT n.node_id, s.seq, s.digest
    FROM nodes n
    JOIN statements s ON s.node_id = n.node_id
        AND s.seq = (SELECT max(m.seq) FROM statements m WHERE m.node_id = n.node_id)
    WHERE n.node_id IS NOT NULL
    ORDER BY n.node_id";

/// The latest checkpoint with cosignature_count >= ?1. Walks the distinct counts >= quorum
/// through the cosignature_count index (a skip scan over a handful of values: counts never
/// exceed the number of witnesses) and takes each count's largest size with one probe, so the
/// cost never grows with the number of checkpoints, final or not.
pub(crate) const LATEST_FINAL_SQL: &str = concat!(
    "WITH RECURSIVE counts(c) AS (
        SELECT (SELECT min(cosignature_count) FROM checkpoints WHERE cosignature_count >= ?1)
        UNION ALL
        SELECT (SELECT min(k.cosignature_count) FROM checkpoints k
                WHERE k.cosignature_count > counts.c)
        FROM counts WHERE counts.c IS NOT NULL
    )
    SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints WHERE size = (
        SELECT max((SELECT max(m.size) FROM checkpoints m WHERE m.cosignature_count = counts.c))
        FROM counts WHERE counts.c IS NOT NULL
    )"
);

fn read_log_node(conn: &Connection, level: u8, index: i64) -> Result<Option<Hash>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT hash FROM log_nodes WHERE level = ?1 AND idx = ?2")?;
    let mut rows = stmt.query(params![level, index])?;
    match rows.next()? {
        Some(row) => Ok(Some(get_hash(row, 0)?)),
        None => Ok(None),
    }
}

fn insert_statements(tx: &Connection, statements: &[StoredStatement]) -> Result<(), StoreError> {
    if statements.is_empty() {
        return Ok(());
    }
    let mut expected = last_feed_index(tx)?;
    let mut insert = tx.prepare_cached(concat!(
        "INSERT INTO statements (",
        statement_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?;
    for st in statements {
        expected += 1;
        if st.feed_index != expected {
            return Err(StoreError::Conflict(format!(
                "feed index {} does not continue the log (expected {expected})",
                st.feed_index
            )));
        }
        let res = insert.execute(params![
            db::int(st.feed_index, "feed index")?,
            st.node_id,
            db::int(st.seq, "seq")?,
            &st.digest.0[..],
            st.payload_type,
            st.kind,
            st.document,
            st.revision,
            st.envelope,
            st.receipt,
            st.accepted_at_ms,
        ]);
        if let Err(err) = res {
            return Err(statement_conflict(err, st));
        }
        // In feed order, in this transaction: the view never lags the log.
        indicators_sql::apply_entry(
            tx,
            Log::Hub,
            &Entry {
                node_id: &st.node_id,
                kind: &st.kind,
                digest: &st.digest,
                document: &st.document,
                revision: st.revision,
                feed_index: st.feed_index,
                accepted_at_ms: st.accepted_at_ms,
                envelope: &st.envelope,
            },
        )?;
    }
    Ok(())
}

fn insert_evidence(tx: &Connection, evidence: &[NewEquivocation]) -> Result<(), StoreError> {
    if evidence.is_empty() {
        return Ok(());
    }
    let mut accepted =
        tx.prepare_cached("SELECT node_id, seq FROM statements WHERE digest = ?1")?;
    let mut insert_evidence = tx.prepare_cached(
        "INSERT INTO equivocations (node_id, seq, accepted_digest, conflicting_digest,
             conflicting_envelope, detected_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (node_id, seq, conflicting_digest) DO NOTHING",
    )?;
    // Evidence is bounded per member: the first conflicting statement of a seq proves the
    // equivocation, later ones add nothing but bytes (up to a whole envelope each).
    let mut kept_for_seq =
        tx.prepare_cached("SELECT 1 FROM equivocations WHERE node_id = ?1 AND seq = ?2 LIMIT 1")?;
    let mut kept_for_node =
        tx.prepare_cached("SELECT count(*) FROM equivocations WHERE node_id = ?1")?;
    for ev in evidence {
        let seq = db::int(ev.seq, "seq")?;
        let owner: Option<(String, i64)> = accepted
            .query_row([&ev.accepted_digest.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // Evidence must point at the statement it contradicts, or it proves nothing.
        if owner.as_ref() != Some(&(ev.node_id.clone(), seq)) {
            return Err(StoreError::Conflict(format!(
                "equivocation evidence for node {} seq {} names accepted digest {}, \
                 which is not that statement in the log",
                ev.node_id, ev.seq, ev.accepted_digest
            )));
        }
        if ev.conflicting_digest == ev.accepted_digest {
            return Err(StoreError::Conflict(format!(
                "equivocation evidence for node {} seq {} conflicts with itself",
                ev.node_id, ev.seq
            )));
        }
        if kept_for_seq
            .query_row(params![ev.node_id, seq], |_| Ok(()))
            .optional()?
            .is_some()
        {
            continue;
        }
        let kept: i64 = kept_for_node.query_row([&ev.node_id], |r| r.get(0))?;
        if usize::try_from(kept).unwrap_or(usize::MAX) >= MAX_EQUIVOCATIONS_PER_MEMBER {
            tracing::warn!(
                node = %ev.node_id,
                seq = ev.seq,
                "equivocation evidence not stored: the member already has the most kept"
            );
            continue;
        }
        insert_evidence.execute(params![
            ev.node_id,
            seq,
            &ev.accepted_digest.0[..],
            &ev.conflicting_digest.0[..],
            ev.conflicting_envelope,
            ev.detected_at_ms,
        ])?;
    }
    Ok(())
}

/// Inserts log nodes; a key already stored is read back only then (no per-row SELECT on the
/// common path) and must hold the same hash.
fn insert_log_nodes(tx: &Connection, nodes: &[LogNode]) -> Result<(), StoreError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (level, idx) DO NOTHING",
    )?;
    for (level, index, hash) in nodes {
        if *level > 63 {
            return Err(StoreError::Conflict(format!(
                "log node level {level} is beyond a 64-bit tree"
            )));
        }
        let idx = db::int(*index, "log node index")?;
        if insert.execute(params![level, idx, &hash[..]])? == 0 {
            match read_log_node(tx, *level, idx)? {
                Some(stored) if stored == *hash => {}
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "log node (level {level}, index {index}) is already stored with a \
                         different hash; the log's history is never rewritten"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Stores a checkpoint only if it is larger than every stored one (compare-and-swap).
fn insert_checkpoint(tx: &Connection, cp: &NewCheckpoint) -> Result<(), StoreError> {
    let size = db::int(cp.size, "checkpoint size")?;
    let latest: Option<i64> = tx
        .prepare_cached("SELECT max(size) FROM checkpoints")?
        .query_row([], |r| r.get(0))?;
    if let Some(latest) = latest
        && size <= latest
    {
        return Err(StoreError::Conflict(format!(
            "checkpoint size {} does not exceed the latest stored checkpoint size {latest}",
            cp.size
        )));
    }
    tx.prepare_cached(
        "INSERT INTO checkpoints (size, root, note, created_at_ms, cosignature_count)
         VALUES (?1, ?2, ?3, ?4, 0)",
    )?
    .execute(params![size, &cp.root[..], cp.note, cp.created_at_ms])?;
    Ok(())
}

fn last_feed_index(conn: &Connection) -> Result<u64, StoreError> {
    let max: i64 = conn
        .prepare_cached("SELECT coalesce(max(feed_index), 0) FROM statements")?
        .query_row([], |r| r.get(0))?;
    u64::try_from(max).map_err(|_| StoreError::Corrupt(format!("negative feed index {max}")))
}

/// Explains a failed statement insert in plain words.
fn statement_conflict(err: rusqlite::Error, st: &StoredStatement) -> StoreError {
    let Some(msg) = constraint_message(&err) else {
        return err.into();
    };
    let what = if msg.contains("statements.digest") {
        format!("a statement with digest {} is already stored", st.digest)
    } else if msg.contains("statements.node_id") {
        format!(
            "node {} already has a statement at seq {}",
            st.node_id, st.seq
        )
    } else if msg.contains("statements.feed_index") {
        format!("feed index {} is already used", st.feed_index)
    } else {
        format!(
            "statement {} (node {} seq {}) violates a constraint: {msg}",
            st.digest, st.node_id, st.seq
        )
    };
    StoreError::Conflict(what)
}
