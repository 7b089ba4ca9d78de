//! A node's store: its own signed statements with their delivery state (the outbox), and the
//! verified mirror of the hub's feed.

use crate::StoreError;
use crate::db::{self, Db, Schema, constraint_message};
use crate::indicator_queries;
use crate::indicators_sql::{
    self, indicator_indexes_v2_sql, indicator_key_rule_sql, indicator_policy_coverage_sql,
    indicator_tables_sql,
};
use crate::sql::{BytePage, Lite, Param, Params, Sql, SqlRow};
use crate::view_rows::{Entry, Log, PieceLimit, PieceStart, entry_of_stored};
use crate::view_step::{self, Chunks, InlineView, Pieces, StoredEntry, ViewPiece, ViewSteps};
use rcpfed_core::Digest;
use rcpfed_core::merkle::Hash;
use rcpfed_core::statement::Statement;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

/// Where an own statement is in its delivery to the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not yet acknowledged by the hub; will be (re)sent.
    Pending,
    /// The hub accepted it and returned a receipt.
    Delivered,
    /// The hub refused it for good.
    Rejected,
}

impl DeliveryState {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Rejected => "rejected",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "rejected" => Ok(DeliveryState::Rejected),
            other => Err(StoreError::Corrupt(format!(
                "unknown delivery state {other:?}"
            ))),
        }
    }
}

/// A statement this node signed, with its delivery state.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnStatement {
    /// The node's sequence number (from 1).
    pub seq: u64,
    /// SHA-256 of the statement payload.
    pub digest: Digest,
    /// The document the statement is a revision of.
    pub document: String,
    /// The document revision.
    pub revision: u32,
    /// The signed envelope, verbatim.
    pub envelope: Vec<u8>,
    /// When it was signed (unix ms, UTC).
    pub created_at_ms: i64,
    /// The client's request id, for idempotent publishing.
    pub request_id: Option<String>,
    /// Delivery state.
    pub state: DeliveryState,
    /// Delivery attempts that failed.
    pub attempts: u32,
    /// The last delivery error ("" if none).
    pub last_error: String,
    /// The hub's receipt, once delivered.
    pub receipt: Option<Vec<u8>>,
    /// The hub feed index, once delivered.
    pub feed_index: Option<u64>,
    /// Whether it is a chunked snapshot, sent with its chunks (`SubmitSnapshot`): recorded when
    /// it is stored, so the outbox decodes only such a statement's payload (a manifest, small)
    /// to find its chunks, never an inline one's.
    pub chunked: bool,
}

/// A verified statement copied from the hub's feed.
#[derive(Clone, Debug, PartialEq)]
pub struct MirroredStatement {
    /// Position in the hub's feed.
    pub feed_index: u64,
    /// The node that signed it.
    pub node_id: String,
    /// That node's seq.
    pub seq: u64,
    /// SHA-256 of the statement payload.
    pub digest: Digest,
    /// "policy_summary", "indicator_snapshot" (both applied to the indicator view when
    /// stored), or a hub document kind ("registry", "catalogue", "coherence_report").
    pub kind: String,
    /// The document the statement is a revision of.
    pub document: String,
    /// The document revision.
    pub revision: u32,
    /// The signed envelope, verbatim.
    pub envelope: Vec<u8>,
    /// The hub's receipt, verbatim.
    pub receipt: Vec<u8>,
    /// When the hub accepted it (unix ms, UTC).
    pub accepted_at_ms: i64,
    /// When this node mirrored it (unix ms, UTC).
    pub mirrored_at_ms: i64,
    /// The envelope's decoded statement, when the mirror hands the one it verified (none
    /// when read back).
    pub decoded: crate::DecodedStatement,
}

/// Own statements per delivery state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Awaiting delivery.
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Refused by the hub.
    pub rejected: u64,
    /// When the oldest statement still awaiting delivery was signed (ms since the epoch).
    pub oldest_pending_ms: Option<i64>,
}

/// What a node's status shows of its store, read in one snapshot ([`NodeStore::status`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStoreStatus {
    /// The own chain's head (seq, digest), None before the first statement.
    pub head: Option<(u64, Digest)>,
    /// Own statements per delivery state.
    pub outbox: OutboxCounts,
    /// Mirrored statements ([`NodeStore::mirror_count`]).
    pub mirror_count: u64,
    /// The mirror's cursor ([`NodeStore::mirror_cursor`]).
    pub mirror_cursor: u64,
    /// How far the indicator view is applied.
    pub view_applied: u64,
}

/// The hub checkpoint a node currently trusts (the last one it verified consistent).
#[derive(Clone, Debug, PartialEq)]
pub struct TrustedCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The C2SP signed note text, verbatim.
    pub note: String,
}

/// Evidence of a forked or inconsistent hub log: two checkpoints that cannot both be honest.
#[derive(Clone, Debug, PartialEq)]
pub struct ForkRecord {
    /// Record id, ascending in detection order.
    pub id: u64,
    /// The trusted checkpoint's note.
    pub trusted_note: String,
    /// The conflicting checkpoint's note.
    pub conflicting_note: String,
    /// What is wrong, in plain words.
    pub problem: String,
    /// When it was first detected (unix ms, UTC).
    pub detected_at_ms: i64,
}

/// A node's storage.
pub trait NodeStore: Send + Sync + 'static {
    /// This node's latest own statement (seq, digest), None before the first.
    fn head(&self) -> Result<Option<(u64, Digest)>, StoreError>;
    /// Highest revision of `document` among own statements (0 if none).
    fn latest_revision(&self, document: &str) -> Result<u32, StoreError>;
    /// The own statement created for this request id, if any (idempotent publish).
    fn own_by_request_id(&self, request_id: &str) -> Result<Option<OwnStatement>, StoreError>;
    /// Appends a newly signed own statement as Pending (the state, attempts, last_error, receipt and feed_index of `st` are ignored), in a BEGIN IMMEDIATE transaction that first checks seq == head+1 (else StoreError::Conflict), so concurrent publishers never fork the chain. Request id and digest are unique (Conflict). `chunks` are the bytes of a chunked snapshot's chunks, keyed by SHA-256 (the outbox sends them from the store); they are stored content-addressed in the same transaction, so a refused append stores none.
    fn append_own(&self, st: &OwnStatement, chunks: &[(Digest, Vec<u8>)])
    -> Result<(), StoreError>;
    /// [`NodeStore::append_own`] with the chunks read one at a time from `next_chunk` (None:
    /// no more) inside the transaction, so a snapshot of any size is stored in bounded memory.
    fn append_own_streamed(
        &self,
        st: &OwnStatement,
        next_chunk: &mut dyn FnMut() -> Result<Option<(Digest, Vec<u8>)>, StoreError>,
    ) -> Result<(), StoreError>;
    /// A new scratch file for a snapshot that streams in ([`crate::SnapshotStaging`]), next to
    /// the database; it is removed when dropped.
    fn publish_staging(&self) -> Result<crate::SnapshotStaging, StoreError>;
    /// Removes the scratch files of streams a stopped process left; returns how many.
    fn clear_publish_staging(&self) -> Result<usize, StoreError>;
    /// Pending own statements in seq order, at most limit.
    fn pending(&self, limit: usize) -> Result<Vec<OwnStatement>, StoreError>;
    /// Records the hub's receipt and feed index; the statement becomes Delivered.
    fn mark_delivered(&self, seq: u64, receipt: &[u8], feed_index: u64) -> Result<(), StoreError>;
    /// Increments attempts and records the error (stays Pending).
    fn record_attempt_failure(&self, seq: u64, error: &str) -> Result<(), StoreError>;
    /// Records the hub's refusal; the statement becomes Rejected (attempts unchanged).
    fn mark_rejected(&self, seq: u64, error: &str) -> Result<(), StoreError>;
    /// Own statements with seq < before_seq (u64::MAX for the newest), newest first, at most limit.
    fn list_own(&self, before_seq: u64, limit: usize) -> Result<Vec<OwnStatement>, StoreError>;
    /// Own statements per delivery state.
    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;
    /// The head, outbox counts, mirror count and cursor and the view's progress, from one
    /// snapshot of the store, at a cost that does not grow with the mirror.
    fn status(&self) -> Result<NodeStoreStatus, StoreError>;
    /// Inserts a verified mirrored statement and, while the view is current, applies it to the
    /// indicator view in the same transaction (an inline snapshot breaking an action rule →
    /// StoreError::Conflict, nothing written). A chunked snapshot, and every entry after it
    /// until the view catches up, is stored only: its chunks are staged afterwards with
    /// [`crate::IndicatorStore::stage_chunks`], one at a time as they are fetched (bounded
    /// memory), then [`Self::apply_view_step`] applies it; readers see the view up to
    /// [`crate::IndicatorStore::applied_feed_size`]. The mirror cursor is max(feed_index), so
    /// insert and cursor advance are one atomic write. Inserting an already present
    /// feed_index with the same digest is a no-op; with a different digest (or a digest or
    /// (node_id, seq) already mirrored at another index) → StoreError::Conflict (the hub
    /// showed two histories); a new entry at or below the highest mirrored feed index →
    /// StoreError::Conflict (the feed went back).
    fn mirror_insert(&self, st: &MirroredStatement) -> Result<(), StoreError>;
    /// Inserts verified mirrored statements in order, each exactly as [`Self::mirror_insert`]
    /// does, stopping at the first error. A store that can should write them in one
    /// transaction (one durable commit for a whole feed batch: all or nothing); this default
    /// commits them one by one, so after an error the entries before the failing one may be
    /// stored (the cursor tells). Either way the entries from the failing one on are not.
    fn mirror_insert_batch(&self, batch: &[MirroredStatement]) -> Result<(), StoreError> {
        batch.iter().try_for_each(|st| self.mirror_insert(st))
    }
    /// Highest mirrored feed index (0 if none).
    fn mirror_cursor(&self) -> Result<u64, StoreError>;
    /// Applies to the indicator view, in one transaction, what the mirror stored without
    /// applying it (see [`Self::mirror_insert`]): small entries in feed order, or a chunked
    /// snapshot alone (a piece of it when its indicator is new to the view, the piece ending
    /// early when another write waits for the database). Gives how far the view is applied;
    /// below [`Self::mirror_cursor`], call again.
    fn apply_view_step(&self) -> Result<u64, StoreError>;
    /// The first mirrored entry the view has not applied, if any: when it is a chunked
    /// snapshot, its chunks are staged before the next [`Self::apply_view_step`].
    fn first_unapplied(&self) -> Result<Option<MirroredStatement>, StoreError>;
    /// Mirrored statements with feed_index > after_index (optionally one node), ascending, at
    /// most limit, and no more once the next one's envelope and receipt would take the page
    /// past `max_bytes` (at least one; read row by row, so a page of large statements is never
    /// held whole); also says whether more follow.
    fn mirror_list(
        &self,
        node_id: Option<&str>,
        after_index: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<MirroredStatement>, bool), StoreError>;
    /// Mirrored statements of this `kind` ("policy_summary", ...) with feed_index >
    /// after_index, ascending, at most limit (an index on kind serves it), bounded by
    /// `max_bytes` as [`NodeStore::mirror_list`]; also says whether more follow.
    fn mirror_list_kind(
        &self,
        kind: &str,
        after_index: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<MirroredStatement>, bool), StoreError>;
    /// Number of mirrored statements.
    fn mirror_count(&self) -> Result<u64, StoreError>;
    /// The mirrored statement at (node, seq).
    fn mirror_by_node_seq(
        &self,
        node_id: &str,
        seq: u64,
    ) -> Result<Option<MirroredStatement>, StoreError>;
    /// The hub checkpoint this node trusts, None before the first.
    fn trusted_checkpoint(&self) -> Result<Option<TrustedCheckpoint>, StoreError>;
    /// Compare-and-swap: replaces the trusted checkpoint only if the stored one's size is still
    /// `expected_old_size` (0 = none stored yet); otherwise Conflict. Also Conflict if
    /// new.size < expected_old_size. Equal size with the same root is a no-op success (the
    /// stored note is kept); equal size with a different root is a Conflict.
    fn advance_trusted(
        &self,
        expected_old_size: u64,
        new: &TrustedCheckpoint,
    ) -> Result<(), StoreError>;
    /// Records fork evidence; an identical (trusted_note, conflicting_note) pair is stored once
    /// (the first problem and detection time are kept).
    fn record_fork(
        &self,
        trusted_note: &str,
        conflicting_note: &str,
        problem: &str,
        detected_at_ms: i64,
    ) -> Result<(), StoreError>;
    /// All fork records, in detection order.
    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError>;
}

/// Schema of the node database. Append new migrations; never edit shipped ones.
pub(crate) const NODE_SCHEMA: Schema = Schema {
    name: "node",
    application_id: 0x5243_464E, // "RCFN"
    migrations: &[
        r#"
        CREATE TABLE own_statements (
            seq           INTEGER PRIMARY KEY CHECK (seq >= 1),
            digest        BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
            document      TEXT    NOT NULL,
            revision      INTEGER NOT NULL CHECK (revision >= 0),
            envelope      BLOB    NOT NULL,
            created_at_ms INTEGER NOT NULL,
            request_id    TEXT    UNIQUE,
            state         TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'rejected')),
            attempts      INTEGER NOT NULL DEFAULT 0,
            last_error    TEXT    NOT NULL DEFAULT '',
            receipt       BLOB,
            feed_index    INTEGER
        );
        CREATE INDEX own_document ON own_statements (document, revision);
        -- (state) implicitly ends with seq: serves pending() in seq order and the counts.
        CREATE INDEX own_state ON own_statements (state);

        -- A consistent hub never repeats a digest or (node, seq); if it does, refuse it.
        CREATE TABLE mirror (
            feed_index     INTEGER PRIMARY KEY CHECK (feed_index >= 1),
            node_id        TEXT    NOT NULL,
            seq            INTEGER NOT NULL,
            digest         BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
            kind           TEXT    NOT NULL,
            document       TEXT    NOT NULL,
            revision       INTEGER NOT NULL CHECK (revision >= 0),
            envelope       BLOB    NOT NULL,
            receipt        BLOB    NOT NULL,
            accepted_at_ms INTEGER NOT NULL,
            mirrored_at_ms INTEGER NOT NULL,
            UNIQUE (node_id, seq)
        );
        CREATE INDEX mirror_node ON mirror (node_id);
    "#,
        r#"
        -- Transparency log (issue 3). At most one trusted checkpoint: the row with id 1.
        CREATE TABLE trusted_checkpoint (
            id   INTEGER PRIMARY KEY CHECK (id = 1),
            size INTEGER NOT NULL CHECK (size >= 0),
            root BLOB    NOT NULL CHECK (length(root) = 32),
            note TEXT    NOT NULL
        );

        CREATE TABLE forks (
            id               INTEGER PRIMARY KEY,
            trusted_note     TEXT    NOT NULL,
            conflicting_note TEXT    NOT NULL,
            problem          TEXT    NOT NULL,
            detected_at_ms   INTEGER NOT NULL,
            UNIQUE (trusted_note, conflicting_note)
        );
    "#,
        concat!(
            indicator_tables_sql!(),
            "CREATE INDEX mirror_kind ON mirror (kind);"
        ),
        indicator_indexes_v2_sql!(),
        indicator_key_rule_sql!(),
        indicator_policy_coverage_sql!(),
        // Filled for the statements stored before it by `upgrade_node`.
        "ALTER TABLE own_statements ADD COLUMN chunked INTEGER NOT NULL DEFAULT 0 \
         CHECK (chunked IN (0, 1));",
        // The view's cursor under the hub's name, so the shared queries read only the rows
        // applied (see `indicator_queries::applied_rows`): the node applies each mirrored
        // entry in the transaction that stores it, so its view is at the mirror's head.
        "CREATE VIEW view_cursor (id, applied_through) AS
             SELECT 1, coalesce(max(feed_index), 0) FROM mirror;",
        // Version 9: the view may lag the mirror while a chunked snapshot is applied in the
        // background (`view_step`), so the cursor becomes a table like the hub's.
        r#"
        DROP VIEW view_cursor;
        CREATE TABLE view_cursor (
            id              INTEGER PRIMARY KEY CHECK (id = 1),
            applied_through INTEGER NOT NULL CHECK (applied_through >= 0)
        );
        INSERT INTO view_cursor (id, applied_through)
            SELECT 1, coalesce(max(feed_index), 0) FROM mirror;
        "#,
        crate::hub_sql::superseded_by_sql!(),
        // Version 11: the number of mirrored statements, kept by the inserts, so a node's
        // status does not count a mirror of millions of rows each time it is asked.
        r#"
        CREATE TABLE mirror_count (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            n  INTEGER NOT NULL CHECK (n >= 0)
        );
        INSERT INTO mirror_count (id, n) SELECT 1, count(*) FROM mirror;
        CREATE TRIGGER mirror_counted AFTER INSERT ON mirror
            BEGIN UPDATE mirror_count SET n = n + 1 WHERE id = 1; END;
        CREATE TRIGGER mirror_uncounted AFTER DELETE ON mirror
            BEGIN UPDATE mirror_count SET n = n - 1 WHERE id = 1; END;
        "#,
    ],
    upgrade: Some(upgrade_node),
};

/// Version 3 added the indicator view and version 5 the observation key rule, which empties
/// the view: a file from before version 5 gets the view rebuilt from its mirror. Version 7
/// added `own_statements.chunked`: a file from before it gets it from each own statement.
fn upgrade_node(tx: &Transaction<'_>, from_version: i64) -> Result<(), StoreError> {
    if (1..5).contains(&from_version) {
        indicators_sql::backfill(tx, Log::Node)?;
    }
    if (1..7).contains(&from_version) {
        mark_chunked_own_statements(tx)?;
    }
    Ok(())
}

/// Sets `chunked` on the own statements that are chunked snapshots, decoding each once. One
/// whose payload does not decode is left as it is: the outbox refuses to send it either way.
fn mark_chunked_own_statements(tx: &Transaction<'_>) -> Result<(), StoreError> {
    use rcpfed_core::envelope::SignedEnvelope;
    use rcpfed_core::statement::{Body, Statement};
    let mut chunked = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT seq, envelope FROM own_statements")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let envelope = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            let statement = SignedEnvelope::decode(envelope)
                .ok()
                .and_then(|envelope| Statement::decode(&envelope.payload).ok());
            if let Some(Statement {
                body: Body::Indicators(snapshot),
                ..
            }) = statement
                && snapshot.chunks.is_some()
            {
                chunked.push(row.get::<_, i64>(0)?);
            }
        }
    }
    let mut mark = tx.prepare("UPDATE own_statements SET chunked = 1 WHERE seq = ?1")?;
    for seq in chunked {
        mark.execute([seq])?;
    }
    Ok(())
}

/// Column list matching [`own_from_row`].
macro_rules! own_columns {
    () => {
        "seq, digest, document, revision, envelope, created_at_ms, request_id, state, attempts, \
         last_error, receipt, feed_index, chunked"
    };
}

fn own_from_row(row: &dyn SqlRow) -> Result<OwnStatement, StoreError> {
    Ok(OwnStatement {
        seq: row.u64(0)?,
        digest: row.digest(1)?,
        document: row.text(2)?,
        revision: row.u32(3)?,
        envelope: row.blob(4)?,
        created_at_ms: row.i64(5)?,
        request_id: row.opt_text(6)?,
        state: row.str(7)?.parse()?,
        attempts: row.u32(8)?,
        last_error: row.text(9)?,
        receipt: row.opt_bytes(10)?,
        feed_index: row.opt_u64(11)?,
        chunked: row.i64(12)? != 0,
    })
}

/// Column list matching [`mirrored_from_row`].
macro_rules! mirror_columns {
    () => {
        "feed_index, node_id, seq, digest, kind, document, revision, envelope, receipt, \
         accepted_at_ms, mirrored_at_ms"
    };
}

fn mirrored_from_row(row: &dyn SqlRow) -> Result<MirroredStatement, StoreError> {
    mirrored_at(row, 0)
}

/// The rows of a mirror listing `sql` (the envelope and receipt bytes, then
/// [`mirror_columns`]), stepped one by one: at most `limit`, and no more once the next row would
/// take them past `max_bytes` (at least one); also whether more follow (`sql` reads one row more
/// than `limit`).
fn mirror_rows_within(
    conn: &Connection,
    sql: &str,
    params: &Params<'_>,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<MirroredStatement>, bool), StoreError> {
    let mut page = BytePage::new(limit, max_bytes);
    Lite(conn).each(sql, params, |row| page.take(row, |row| mirrored_at(row, 1)))?;
    Ok(page.finish())
}

/// A mirrored statement from [`mirror_columns`] starting at column `first`.
fn mirrored_at(row: &dyn SqlRow, first: usize) -> Result<MirroredStatement, StoreError> {
    Ok(MirroredStatement {
        feed_index: row.u64(first)?,
        node_id: row.text(first + 1)?,
        seq: row.u64(first + 2)?,
        digest: row.digest(first + 3)?,
        kind: row.text(first + 4)?,
        document: row.text(first + 5)?,
        revision: row.u32(first + 6)?,
        envelope: row.blob(first + 7)?,
        receipt: row.blob(first + 8)?,
        accepted_at_ms: row.i64(first + 9)?,
        mirrored_at_ms: row.i64(first + 10)?,
        decoded: crate::DecodedStatement::default(),
    })
}

fn read_trusted(conn: &Connection) -> Result<Option<TrustedCheckpoint>, StoreError> {
    Lite(conn).first(
        "SELECT size, root, note FROM trusted_checkpoint WHERE id = 1",
        &[],
        |row| {
            Ok(TrustedCheckpoint {
                size: row.u64(0)?,
                root: row.hash(1)?,
                note: row.text(2)?,
            })
        },
    )
}

/// The node store on SQLite.
#[derive(Debug)]
pub struct SqliteNodeStore {
    pub(crate) db: Db,
    /// The chunked snapshot whose view is being applied a piece per transaction, if any.
    view_piece: Mutex<Option<ViewPiece>>,
    /// Most observations per piece ([`view_step::VIEW_PIECE_MAX`]; smaller in tests).
    pub(crate) view_piece_max: usize,
}

impl SqliteNodeStore {
    /// Opens (creating and migrating as needed) the node database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteNodeStore {
            db: Db::open(path, &NODE_SCHEMA)?,
            view_piece: Mutex::new(None),
            view_piece_max: view_step::VIEW_PIECE_MAX,
        })
    }

    /// Caps the database file at about `bytes` (the `max_db_bytes` setting; None lifts the
    /// cap); returns the cap in effect. See the store's crate documentation.
    pub fn set_max_db_bytes(&self, bytes: Option<u64>) -> Result<u64, StoreError> {
        self.db.set_max_bytes(bytes)
    }

    /// Runs an UPDATE on one own statement, failing if that seq does not exist.
    fn update_own(&self, seq: u64, sql: &str, args: &Params<'_>) -> Result<(), StoreError> {
        let seq_sql = db::int(seq, "seq")?;
        self.db.write(|tx| {
            let mut all: Vec<&dyn Param> = vec![&seq_sql];
            all.extend_from_slice(args);
            let changed = Lite(tx).exec(sql, &all)?;
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "no own statement with seq {seq}"
                )));
            }
            Ok(())
        })
    }
}

impl NodeStore for SqliteNodeStore {
    fn head(&self) -> Result<Option<(u64, Digest)>, StoreError> {
        self.db.read(own_head)
    }

    fn latest_revision(&self, document: &str) -> Result<u32, StoreError> {
        self.db.read(|conn| {
            Lite(conn).one(
                "SELECT coalesce(max(revision), 0) FROM own_statements WHERE document = ?1",
                &[&document],
                |row| row.u32(0),
            )
        })
    }

    fn own_by_request_id(&self, request_id: &str) -> Result<Option<OwnStatement>, StoreError> {
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                own_columns!(),
                " FROM own_statements WHERE request_id = ?1"
            );
            Lite(conn).first(sql, &[&request_id], own_from_row)
        })
    }

    fn append_own(
        &self,
        st: &OwnStatement,
        chunks: &[(Digest, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut chunks = chunks.iter();
        self.append_own_streamed(st, &mut || Ok(chunks.next().cloned()))
    }

    fn publish_staging(&self) -> Result<crate::SnapshotStaging, StoreError> {
        crate::SnapshotStaging::create(self.db.path())
    }

    fn clear_publish_staging(&self) -> Result<usize, StoreError> {
        crate::snapshot_staging::clear_publish_staging(self.db.path())
    }

    fn append_own_streamed(
        &self,
        st: &OwnStatement,
        next_chunk: &mut dyn FnMut() -> Result<Option<(Digest, Vec<u8>)>, StoreError>,
    ) -> Result<(), StoreError> {
        let seq = db::int(st.seq, "seq")?;
        self.db.write(|tx| {
            // Rolled back with the statement when the append is refused.
            while let Some(chunk) = next_chunk()? {
                indicator_queries::stage_chunks(&mut Lite(tx), std::slice::from_ref(&chunk))?;
            }
            // Checked inside the write transaction: no other writer can move the head between
            // this read and the insert.
            let head: i64 = tx
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM own_statements")?
                .query_row([], |r| r.get(0))?;
            if seq != head + 1 {
                return Err(StoreError::Conflict(format!(
                    "seq {} does not follow the head seq {head}",
                    st.seq
                )));
            }
            let res = tx
                .prepare_cached(
                    "INSERT INTO own_statements (seq, digest, document, revision, envelope,
                         created_at_ms, request_id, state, attempts, last_error, chunked)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, '', ?8)",
                )?
                .execute(params![
                    seq,
                    &st.digest.0[..],
                    st.document,
                    st.revision,
                    st.envelope,
                    st.created_at_ms,
                    st.request_id,
                    st.chunked,
                ]);
            match res {
                Ok(_) => Ok(()),
                Err(err) => match constraint_message(&err) {
                    Some(msg) if msg.contains("request_id") => Err(StoreError::Conflict(format!(
                        "request id {:?} was already used",
                        st.request_id.as_deref().unwrap_or_default()
                    ))),
                    Some(msg) if msg.contains("digest") => Err(StoreError::Conflict(format!(
                        "an own statement with digest {} is already stored",
                        st.digest
                    ))),
                    Some(msg) => Err(StoreError::Conflict(format!(
                        "own statement seq {} violates a constraint: {msg}",
                        st.seq
                    ))),
                    None => Err(err.into()),
                },
            }
        })
    }

    fn pending(&self, limit: usize) -> Result<Vec<OwnStatement>, StoreError> {
        let limit = db::limit(limit);
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                own_columns!(),
                " FROM own_statements WHERE state = 'pending' ORDER BY seq LIMIT ?1"
            );
            Lite(conn).all(sql, &[&limit], own_from_row)
        })
    }

    fn mark_delivered(&self, seq: u64, receipt: &[u8], feed_index: u64) -> Result<(), StoreError> {
        let feed_index = db::int(feed_index, "feed index")?;
        // Also from Rejected: a receipt is the hub's final word.
        self.update_own(
            seq,
            "UPDATE own_statements SET state = 'delivered', receipt = ?2, feed_index = ?3
             WHERE seq = ?1",
            &[&receipt, &feed_index],
        )
    }

    fn record_attempt_failure(&self, seq: u64, error: &str) -> Result<(), StoreError> {
        self.update_own(
            seq,
            "UPDATE own_statements SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1",
            &[&error],
        )
    }

    fn mark_rejected(&self, seq: u64, error: &str) -> Result<(), StoreError> {
        self.update_own(
            seq,
            "UPDATE own_statements SET state = 'rejected', last_error = ?2 WHERE seq = ?1",
            &[&error],
        )
    }

    fn list_own(&self, before_seq: u64, limit: usize) -> Result<Vec<OwnStatement>, StoreError> {
        let before = db::bound(before_seq);
        let limit = db::limit(limit);
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                own_columns!(),
                " FROM own_statements WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
            );
            Lite(conn).all(sql, &[&before, &limit], own_from_row)
        })
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.db.read(outbox_counts)
    }

    fn status(&self) -> Result<NodeStoreStatus, StoreError> {
        self.db.read_snapshot(|conn| {
            Ok(NodeStoreStatus {
                head: own_head(conn)?,
                outbox: outbox_counts(conn)?,
                mirror_count: mirror_count(conn)?,
                mirror_cursor: mirror_head(conn)?,
                view_applied: crate::indicator_queries::applied_feed_size(&mut Lite(conn))?,
            })
        })
    }

    fn mirror_insert(&self, st: &MirroredStatement) -> Result<(), StoreError> {
        self.mirror_insert_batch(std::slice::from_ref(st))
    }

    fn mirror_insert_batch(&self, batch: &[MirroredStatement]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // One transaction, one durable commit: any error rolls the whole batch back.
        self.db.write(|tx| {
            let mut head = mirror_head(tx)?;
            let mut view = InlineView::start(&mut Lite(tx), head, Chunks::BeforeTheView)?;
            for st in batch {
                if insert_mirrored(tx, st, head)? {
                    head = st.feed_index;
                    view.entry(&mut Lite(tx), &entry_of(st), |tx, entry| {
                        indicators_sql::apply_entry(tx.0, Log::Node, entry)
                    })?;
                }
            }
            view.finish(&mut Lite(tx))
        })
    }

    fn mirror_cursor(&self) -> Result<u64, StoreError> {
        self.db.read(mirror_head)
    }

    fn first_unapplied(&self) -> Result<Option<MirroredStatement>, StoreError> {
        self.db.read_snapshot(|tx| {
            let applied = view_step::view_applied_through(&mut Lite(tx))?;
            NodeSteps.next_after(&mut Lite(tx), applied)
        })
    }

    fn apply_view_step(&self) -> Result<u64, StoreError> {
        let resumed = self
            .view_piece
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (through, next_piece) = self.db.write_after_waiting(|tx| {
            let head = mirror_head(tx)?;
            let commit_waiting = || self.db.writers_waiting();
            let pieces = Pieces {
                resumed,
                max: self.view_piece_max,
                commit_waiting: &commit_waiting,
            };
            view_step::step(&mut Lite(tx), &NodeSteps, head, Some(pieces))
        })?;
        // Only once the piece is committed: a failed one is applied again from the same start.
        *self
            .view_piece
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next_piece;
        Ok(through)
    }

    fn mirror_list_kind(
        &self,
        kind: &str,
        after_index: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<MirroredStatement>, bool), StoreError> {
        let after = db::bound(after_index);
        // One more than asked: whether more follow.
        let fetch = db::limit(limit.saturating_add(1));
        self.db.read(|conn| {
            mirror_rows_within(
                conn,
                concat!(
                    "SELECT length(envelope) + length(receipt), ",
                    mirror_columns!(),
                    " FROM mirror WHERE kind = ?1 AND feed_index > ?2 \
                     ORDER BY feed_index LIMIT ?3"
                ),
                &[&kind, &after, &fetch],
                limit,
                max_bytes,
            )
        })
    }

    fn mirror_list(
        &self,
        node_id: Option<&str>,
        after_index: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<MirroredStatement>, bool), StoreError> {
        let after = db::bound(after_index);
        // One more than asked: whether more follow.
        let fetch = db::limit(limit.saturating_add(1));
        self.db.read(|conn| match node_id {
            Some(node_id) => mirror_rows_within(
                conn,
                concat!(
                    "SELECT length(envelope) + length(receipt), ",
                    mirror_columns!(),
                    " FROM mirror WHERE feed_index > ?1 AND node_id = ?2 \
                     ORDER BY feed_index LIMIT ?3"
                ),
                &[&after, &node_id, &fetch],
                limit,
                max_bytes,
            ),
            None => mirror_rows_within(
                conn,
                concat!(
                    "SELECT length(envelope) + length(receipt), ",
                    mirror_columns!(),
                    " FROM mirror WHERE feed_index > ?1 ORDER BY feed_index LIMIT ?2"
                ),
                &[&after, &fetch],
                limit,
                max_bytes,
            ),
        })
    }

    fn mirror_count(&self) -> Result<u64, StoreError> {
        self.db.read(mirror_count)
    }

    fn mirror_by_node_seq(
        &self,
        node_id: &str,
        seq: u64,
    ) -> Result<Option<MirroredStatement>, StoreError> {
        let Some(seq) = db::key(seq) else {
            return Ok(None);
        };
        self.db.read(|conn| {
            let sql = concat!(
                "SELECT ",
                mirror_columns!(),
                " FROM mirror WHERE node_id = ?1 AND seq = ?2"
            );
            Lite(conn).first(sql, &[&node_id, &seq], mirrored_from_row)
        })
    }

    fn trusted_checkpoint(&self) -> Result<Option<TrustedCheckpoint>, StoreError> {
        self.db.read(read_trusted)
    }

    fn advance_trusted(
        &self,
        expected_old_size: u64,
        new: &TrustedCheckpoint,
    ) -> Result<(), StoreError> {
        let size = db::int(new.size, "checkpoint size")?;
        self.db.write(|tx| {
            // Read inside the write transaction: nobody can advance it between check and swap.
            let current = read_trusted(tx)?;
            let current_size = current.as_ref().map_or(0, |c| c.size);
            if current_size != expected_old_size {
                return Err(StoreError::Conflict(format!(
                    "the trusted checkpoint has size {current_size}, not the expected \
                     {expected_old_size}"
                )));
            }
            if new.size < expected_old_size {
                return Err(StoreError::Conflict(format!(
                    "checkpoint size {} is smaller than the trusted size {expected_old_size}; \
                     a log never shrinks",
                    new.size
                )));
            }
            if let Some(current) = &current
                && current.size == new.size
            {
                if current.root == new.root {
                    return Ok(());
                }
                return Err(StoreError::Conflict(format!(
                    "checkpoint of size {} has a different root than the trusted one of that size",
                    new.size
                )));
            }
            tx.prepare_cached(
                "INSERT INTO trusted_checkpoint (id, size, root, note) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET
                     size = excluded.size, root = excluded.root, note = excluded.note",
            )?
            .execute(params![size, &new.root[..], new.note])?;
            Ok(())
        })
    }

    fn record_fork(
        &self,
        trusted_note: &str,
        conflicting_note: &str,
        problem: &str,
        detected_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.db.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO forks (trusted_note, conflicting_note, problem, detected_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (trusted_note, conflicting_note) DO NOTHING",
            )?
            .execute(params![
                trusted_note,
                conflicting_note,
                problem,
                detected_at_ms
            ])?;
            Ok(())
        })
    }

    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError> {
        self.db.read(|conn| {
            Lite(conn).all(
                "SELECT id, trusted_note, conflicting_note, problem, detected_at_ms
                 FROM forks ORDER BY id",
                &[],
                |row| {
                    Ok(ForkRecord {
                        id: row.u64(0)?,
                        trusted_note: row.text(1)?,
                        conflicting_note: row.text(2)?,
                        problem: row.text(3)?,
                        detected_at_ms: row.i64(4)?,
                    })
                },
            )
        })
    }
}

const MIRROR_HEAD: &str = "SELECT coalesce(max(feed_index), 0) FROM mirror";
const MIRROR_NEXT: &str = concat!(
    "SELECT ",
    mirror_columns!(),
    " FROM mirror WHERE feed_index > ?1 ORDER BY feed_index LIMIT 1"
);

/// The own chain's head (seq, digest).
fn own_head(conn: &Connection) -> Result<Option<(u64, Digest)>, StoreError> {
    Lite(conn).first(
        "SELECT seq, digest FROM own_statements ORDER BY seq DESC LIMIT 1",
        &[],
        |row| Ok((row.u64(0)?, row.digest(1)?)),
    )
}

/// Own statements per delivery state, and when the oldest pending one was signed.
fn outbox_counts(conn: &Connection) -> Result<OutboxCounts, StoreError> {
    let mut conn = Lite(conn);
    let mut counts = OutboxCounts::default();
    conn.each(
        "SELECT state, count(*) FROM own_statements GROUP BY state",
        &[],
        |row| {
            let n = row.u64(1)?;
            match row.str(0)?.parse()? {
                DeliveryState::Pending => counts.pending = n,
                DeliveryState::Delivered => counts.delivered = n,
                DeliveryState::Rejected => counts.rejected = n,
            }
            Ok(true)
        },
    )?;
    counts.oldest_pending_ms = conn.one(
        "SELECT min(created_at_ms) FROM own_statements WHERE state = 'pending'",
        &[],
        |row| row.opt_i64(0),
    )?;
    Ok(counts)
}

/// Mirrored statements, as counted by the triggers on `mirror` (schema version 11).
fn mirror_count(conn: &Connection) -> Result<u64, StoreError> {
    Lite(conn).one("SELECT n FROM mirror_count WHERE id = 1", &[], |row| {
        row.u64(0)
    })
}

/// The highest feed index mirrored (0: none).
fn mirror_head(conn: &Connection) -> Result<u64, StoreError> {
    let head: i64 = conn
        .prepare_cached(MIRROR_HEAD)?
        .query_row([], |r| r.get(0))?;
    u64::try_from(head).map_err(|_| StoreError::Corrupt(format!("mirror head {head}")))
}

/// The apply step's view of a mirrored statement.
fn entry_of(st: &MirroredStatement) -> Entry<'_> {
    entry_of_stored!(st)
}

impl StoredEntry for MirroredStatement {
    fn entry(&self) -> Entry<'_> {
        entry_of(self)
    }

    fn hold_decoded(&mut self, statement: Arc<Statement>) {
        self.decoded = crate::DecodedStatement::of(statement);
    }
}

/// The mirror's entries and the node's apply steps, for [`view_step::step`].
struct NodeSteps;

impl ViewSteps<Lite<'_>> for NodeSteps {
    type Stored = MirroredStatement;

    fn next_after(
        &self,
        tx: &mut Lite<'_>,
        after: u64,
    ) -> Result<Option<MirroredStatement>, StoreError> {
        let after = db::int(after, "feed index")?;
        tx.0.prepare_cached(MIRROR_NEXT)?
            .query_row([after], |row| Ok(mirrored_from_row(row)))
            .optional()?
            .transpose()
    }

    fn apply_entry(&self, tx: &mut Lite<'_>, entry: &Entry<'_>) -> Result<(), StoreError> {
        indicators_sql::apply_entry(tx.0, Log::Node, entry)
    }

    fn apply_piece(
        &self,
        tx: &mut Lite<'_>,
        entry: &Entry<'_>,
        from: PieceStart,
        limit: &PieceLimit<'_>,
    ) -> Result<Option<PieceStart>, StoreError> {
        indicators_sql::apply_piece(tx.0, Log::Node, entry, from, limit)
    }
}

/// Inserts one verified mirrored statement in the caller's transaction (see
/// [`NodeStore::mirror_insert`]): whether it was new (the view is the caller's to apply). A
/// new entry must come after the mirror's `head`: the feed never goes back, and the view
/// applies the entries past its cursor in order, so one stored below them would never be.
fn insert_mirrored(tx: &Connection, st: &MirroredStatement, head: u64) -> Result<bool, StoreError> {
    let feed_index = db::int(st.feed_index, "feed index")?;
    let seq = db::int(st.seq, "seq")?;
    let existing: Option<Vec<u8>> = tx
        .prepare_cached("SELECT digest FROM mirror WHERE feed_index = ?1")?
        .query_row([feed_index], |r| r.get(0))
        .optional()?;
    if let Some(existing) = existing {
        if existing == st.digest.0 {
            return Ok(false);
        }
        return Err(StoreError::Conflict(format!(
            "feed index {} is already mirrored with a different digest \
             (the hub showed two histories)",
            st.feed_index
        )));
    }
    if st.feed_index <= head {
        return Err(StoreError::Conflict(format!(
            "feed index {} comes after feed index {head} in the hub's feed \
             (the hub's feed went back)",
            st.feed_index
        )));
    }
    let res = tx
        .prepare_cached(concat!(
            "INSERT INTO mirror (",
            mirror_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))?
        .execute(params![
            feed_index,
            st.node_id,
            seq,
            &st.digest.0[..],
            st.kind,
            st.document,
            st.revision,
            st.envelope,
            st.receipt,
            st.accepted_at_ms,
            st.mirrored_at_ms,
        ]);
    match res {
        Ok(_) => Ok(true),
        Err(err) => match constraint_message(&err) {
            Some(msg) => Err(StoreError::Conflict(format!(
                "mirrored statement at feed index {} (node {} seq {}, digest {}) \
                 repeats one mirrored at another index ({msg}): the hub showed two \
                 histories",
                st.feed_index, st.node_id, st.seq, st.digest
            ))),
            None => Err(err.into()),
        },
    }
}
