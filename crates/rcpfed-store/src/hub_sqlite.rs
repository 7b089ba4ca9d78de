//! The hub store on SQLite: its schema and migrations, and the backend the shared hub SQL
//! ([`crate::hub_sql`]) runs on.

use crate::StoreError;
use crate::db::{Db, Schema, constraint_message};
use crate::hub::{LogNode, NewCheckpoint, NewEquivocation, StoredStatement};
use crate::hub_sql::{self, HubBackend, StatementClash, superseded_by_sql, view_cursor_sql};
use crate::indicator_queries;
use crate::indicators_sql::{
    self, indicator_indexes_v2_sql, indicator_key_rule_sql, indicator_policy_coverage_sql,
    indicator_tables_sql,
};
use crate::sql::Lite;
use crate::view_rows::{Log, PieceLimit, PieceStart};
use crate::view_step::{self, ViewPiece};
use rusqlite::Transaction;
use std::path::Path;
use std::sync::Mutex;

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
        indicator_policy_coverage_sql!(),
        view_cursor_sql!(),
        superseded_by_sql!(),
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

/// The hub store on SQLite.
#[derive(Debug)]
pub struct SqliteHubStore {
    pub(crate) db: Db,
    /// The chunked snapshot whose view is being applied a piece per transaction, if any.
    view_piece: Mutex<Option<ViewPiece>>,
    /// Most observations per piece ([`view_step::VIEW_PIECE_MAX`]; smaller in tests).
    pub(crate) view_piece_max: usize,
}

impl SqliteHubStore {
    /// Opens (creating and migrating as needed) the hub database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteHubStore {
            db: Db::open(path, &HUB_SCHEMA)?,
            view_piece: Mutex::new(None),
            view_piece_max: view_step::VIEW_PIECE_MAX,
        })
    }

    /// Caps the database file at about `bytes` (the `max_db_bytes` setting; None lifts the
    /// cap); returns the cap in effect. See the store's crate documentation.
    pub fn set_max_db_bytes(&self, bytes: Option<u64>) -> Result<u64, StoreError> {
        self.db.set_max_bytes(bytes)
    }
}

// Every query, row mapping and HubStore method is in hub_sql, shared with the PostgreSQL store;
// here are the connections (a pooled reader, or the writer's IMMEDIATE transaction) and the
// append's SQLite steps.
impl HubBackend for SqliteHubStore {
    type Conn<'c> = Lite<'c>;

    fn read_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Lite<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.read(|conn| f(&mut Lite(conn)))
    }

    fn snapshot_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Lite<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.read_snapshot(|tx| f(&mut Lite(tx)))
    }

    fn write_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Lite<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.write(|tx| f(&mut Lite(tx)))
    }

    fn append_batch(
        &self,
        statements: &[StoredStatement],
        chunks: &mut dyn crate::ChunkSource,
        evidence: &[NewEquivocation],
        log_nodes: &[LogNode],
        checkpoint: Option<&NewCheckpoint>,
    ) -> Result<(), StoreError> {
        // Any error returns before commit; the dropped transaction rolls everything back.
        self.db.write(|tx| {
            // Before the statements: their apply step reads the chunks from the table.
            let mut tx = Lite(tx);
            indicator_queries::stage_chunk_source(&mut tx, chunks)?;
            hub_sql::insert_statements_and_view(
                &mut tx,
                statements,
                statement_clash,
                |tx, entry| indicators_sql::apply_entry(tx.0, Log::Hub, entry),
            )?;
            hub_sql::insert_evidence(&mut tx, evidence)?;
            hub_sql::insert_log_nodes(&mut tx, log_nodes)?;
            if let Some(checkpoint) = checkpoint {
                hub_sql::insert_checkpoint(&mut tx, checkpoint)?;
            }
            Ok(())
        })
    }

    fn apply_view_entry(
        tx: &mut Lite<'_>,
        entry: &crate::view_rows::Entry<'_>,
    ) -> Result<(), StoreError> {
        indicators_sql::apply_entry(tx.0, Log::Hub, entry)
    }

    /// One writer: a commit waits for whatever view transaction runs, so a large snapshot's
    /// view goes in a piece at a time.
    fn view_pieces(&self) -> Option<&Mutex<Option<ViewPiece>>> {
        Some(&self.view_piece)
    }

    fn commit_waiting(&self) -> bool {
        self.db.writers_waiting()
    }

    fn view_piece_max(&self) -> usize {
        self.view_piece_max
    }

    fn apply_view_piece(
        tx: &mut Lite<'_>,
        entry: &crate::view_rows::Entry<'_>,
        from: PieceStart,
        limit: &PieceLimit<'_>,
    ) -> Result<Option<PieceStart>, StoreError> {
        indicators_sql::apply_piece(tx.0, Log::Hub, entry, from, limit)
    }

    /// Yields to a commit waiting for the writer between two pieces of a snapshot's view.
    fn view_write_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Lite<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.write_after_waiting(|tx| f(&mut Lite(tx)))
    }
}

/// Explains which statement rule a failed insert broke, from SQLite's message.
fn statement_clash(err: &StoreError) -> Option<StatementClash> {
    let StoreError::Sqlite(err) = err else {
        return None;
    };
    let msg = constraint_message(err)?;
    Some(if msg.contains("statements.digest") {
        StatementClash::Digest
    } else if msg.contains("statements.node_id") {
        StatementClash::NodeSeq
    } else if msg.contains("statements.feed_index") {
        StatementClash::FeedIndex
    } else {
        StatementClash::Other(format!("a constraint: {msg}"))
    })
}
