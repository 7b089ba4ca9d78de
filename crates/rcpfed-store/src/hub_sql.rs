//! The hub store's SQL and row mapping, once for both backends ([`crate::SqliteHubStore`] and
//! the PostgreSQL one): each function runs on a connection or transaction the backend opened
//! (the backend decides read or write, and the snapshot), through [`Sql`]; and [`HubStore`]
//! once for both, over what each backend provides ([`HubBackend`]).

use crate::db::{bound, int, key, limit};
use crate::hub::{
    ChainHead, Cosignature, FlagRecord, HubStore, LogNode, MAX_EQUIVOCATIONS_PER_MEMBER,
    NewCheckpoint, NewEquivocation, StatementFilter, StoredCheckpoint, StoredEquivocation,
    StoredFlag, StoredStatement,
};
use crate::sql::{BytePage, Param, Query, Sql, SqlRow, query};
use crate::view_rows::{Entry, PieceLimit, PieceStart, entry_of_stored};
use crate::view_step::{self, Chunks, InlineView, Pieces, StoredEntry, ViewPiece, ViewSteps};
use crate::{ChunkSource, DecodedStatement, HubLease, StoreError};
use rcpfed_core::Digest;
use rcpfed_core::merkle::Hash;
use rcpfed_core::statement::Statement;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

/// The view cursor (hub version 8 on SQLite, 4 on PostgreSQL; the same text for both): how far
/// the indicator view is applied (see [`view_applied_through`]). A store from before it had
/// every stored entry applied in its commit.
macro_rules! view_cursor_sql {
    () => {
        r#"
        CREATE TABLE view_cursor (
            id              INTEGER PRIMARY KEY CHECK (id = 1),
            applied_through BIGINT  NOT NULL CHECK (applied_through >= 0)
        );
        INSERT INTO view_cursor (id, applied_through)
            SELECT 1, coalesce(max(feed_index), 0) FROM statements;
        "#
    };
}
pub(crate) use view_cursor_sql;

/// Which versions a superseding snapshot's pieces replaced (hub version 9 on SQLite, 5 on
/// PostgreSQL, node version 10; the same text for all three): `superseded_by` is the feed
/// index of the version that superseded a row (NULL for a version in force, and for one
/// superseded before this migration), and `view_cursor.superseding` the chunked snapshot
/// whose view is being applied in pieces over versions in force (NULL when none is). While it
/// is set, readers take a row superseded by an entry past the view cursor as still in force
/// (`indicator_queries::ViewReading`), so they see the view as it was before that snapshot
/// until its last piece moves the cursor.
macro_rules! superseded_by_sql {
    () => {
        r#"
        ALTER TABLE observations ADD COLUMN superseded_by BIGINT CHECK (superseded_by >= 1);
        ALTER TABLE view_cursor ADD COLUMN superseding BIGINT CHECK (superseding >= 1);
        "#
    };
}
pub(crate) use superseded_by_sql;

/// Rows fetched per round trip while a byte-bounded listing streams (PostgreSQL).
const LISTING_FETCH: usize = 16;

/// Column list matching [`statement_at`].
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

/// Every node's latest statement. Walks the distinct node ids through the (node_id, seq)
/// index (a skip scan, or loose index scan), then one probe per node: O(nodes · log n), never
/// a log scan. SQLite finds the probe as a correlated max(); PostgreSQL needs a lateral join.
pub(crate) const CHAIN_HEADS: Query = Query::per_dialect(
    "
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
    ORDER BY n.node_id",
    "
    WITH RECURSIVE nodes(node_id) AS (
        SELECT (SELECT min(node_id) FROM statements)
        UNION ALL
        SELECT (SELECT min(s.node_id) FROM statements s WHERE s.node_id > nodes.node_id)
        FROM nodes WHERE nodes.node_id IS NOT NULL
    )
    SELECT s.node_id, s.seq, s.digest
    FROM nodes n
    JOIN LATERAL (SELECT node_id, seq, digest FROM statements m WHERE m.node_id = n.node_id
                  ORDER BY seq DESC LIMIT 1) s ON TRUE
    WHERE n.node_id IS NOT NULL
    ORDER BY n.node_id",
);

/// The latest checkpoint with cosignature_count >= $1. Walks the distinct counts >= quorum
/// through the cosignature_count index (a skip scan over a handful of values: counts never
/// exceed the number of witnesses) and takes each count's largest size with one probe, so the
/// cost never grows with the number of checkpoints, final or not.
pub(crate) const LATEST_FINAL: Query = query!(concat!(
    "WITH RECURSIVE counts(c) AS (
        SELECT (SELECT min(cosignature_count) FROM checkpoints WHERE cosignature_count >= $1)
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
));

const LAST_FEED_INDEX: Query = query!("SELECT coalesce(max(feed_index), 0) FROM statements");
const STATEMENT_BY_DIGEST: Query = query!(concat!(
    "SELECT ",
    statement_columns!(),
    " FROM statements WHERE digest = $1"
));
const STATEMENT_BY_NODE_SEQ: Query = query!(concat!(
    "SELECT ",
    statement_columns!(),
    " FROM statements WHERE node_id = $1 AND seq = $2"
));
const STATEMENT_BY_FEED_INDEX: Query = query!(concat!(
    "SELECT ",
    statement_columns!(),
    " FROM statements WHERE feed_index = $1"
));
/// The size comes first, so a row past the byte budget is never loaded.
const FEED: Query = query!(concat!(
    "SELECT CAST(length(envelope) AS BIGINT) + length(receipt), ",
    statement_columns!(),
    " FROM statements WHERE feed_index > $1 ORDER BY feed_index LIMIT $2"
));
const COUNT_STATEMENTS: Query = query!("SELECT count(*) FROM statements");
const STATEMENT_EXISTS: Query = query!("SELECT 1 FROM statements WHERE node_id = $1 AND seq = $2");
const INSERT_STATEMENT: Query = query!(concat!(
    "INSERT INTO statements (",
    statement_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
));

const LOG_NODE: Query = query!("SELECT hash FROM log_nodes WHERE level = $1 AND idx = $2");
const INSERT_LOG_NODE: Query = query!(
    "INSERT INTO log_nodes (level, idx, hash) VALUES ($1, $2, $3)
     ON CONFLICT (level, idx) DO NOTHING"
);

const LATEST_CHECKPOINT: Query = query!(concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints ORDER BY size DESC LIMIT 1"
));
const CHECKPOINT_AT: Query = query!(concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints WHERE size = $1"
));
const LARGEST_CHECKPOINT_SIZE: Query = query!("SELECT max(size) FROM checkpoints");
const INSERT_CHECKPOINT: Query = query!(
    "INSERT INTO checkpoints (size, root, note, created_at_ms, cosignature_count)
     VALUES ($1, $2, $3, $4, 0)"
);
/// The checkpoint a cosignature is for. On PostgreSQL the row is locked (FOR UPDATE), so the
/// count stored below is of the row as locked; a SQLite write transaction is exclusive anyway.
const CHECKPOINT_TO_COSIGN: Query = Query::per_dialect(
    "SELECT 1 FROM checkpoints WHERE size = ?1",
    "SELECT 1 FROM checkpoints WHERE size = $1 FOR UPDATE",
);
const UPSERT_COSIGNATURE: Query = query!(
    "INSERT INTO cosignatures (size, witness_id, line, timestamp)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (size, witness_id)
     DO UPDATE SET line = excluded.line, timestamp = excluded.timestamp"
);
const COUNT_COSIGNATURES: Query = query!("SELECT count(*) FROM cosignatures WHERE size = $1");
const SET_COSIGNATURE_COUNT: Query =
    query!("UPDATE checkpoints SET cosignature_count = $2 WHERE size = $1");
const COSIGNATURES: Query = query!(
    "SELECT size, witness_id, line, timestamp FROM cosignatures
     WHERE size = $1 ORDER BY witness_id"
);

/// Evidence with the size of its two envelopes first (see [`FEED`]); `$2` NULL lists every node.
const EQUIVOCATIONS: Query = query!(
    "SELECT CAST(length(s.envelope) AS BIGINT) + length(e.conflicting_envelope), e.id,
            e.node_id, e.seq, e.accepted_digest, s.envelope, e.conflicting_digest,
            e.conflicting_envelope, e.detected_at_ms
     FROM equivocations e JOIN statements s ON s.digest = e.accepted_digest
     WHERE e.id > $1 AND (CAST($2 AS TEXT) IS NULL OR e.node_id = CAST($2 AS TEXT))
     ORDER BY e.id LIMIT $3"
);
const STATEMENT_OWNER: Query = query!("SELECT node_id, seq FROM statements WHERE digest = $1");
const EVIDENCE_FOR_SEQ: Query =
    query!("SELECT 1 FROM equivocations WHERE node_id = $1 AND seq = $2 LIMIT 1");
const EVIDENCE_FOR_NODE: Query = query!("SELECT count(*) FROM equivocations WHERE node_id = $1");
const INSERT_EVIDENCE: Query = query!(
    "INSERT INTO equivocations (node_id, seq, accepted_digest, conflicting_digest,
         conflicting_envelope, detected_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (node_id, seq, conflicting_digest) DO NOTHING"
);

const INSERT_FLAG: Query = query!(
    "INSERT INTO statement_flags (node_id, seq, reason, key_id, registry_version,
         flagged_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (node_id, seq, key_id, registry_version) DO NOTHING"
);
const FLAGS: Query = query!(
    "SELECT id, node_id, seq, reason, key_id, registry_version, flagged_at_ms
     FROM statement_flags WHERE id > $1 ORDER BY id LIMIT $2"
);

/// The statement whose columns ([`statement_columns`]) start at `first`.
fn statement_at(row: &dyn SqlRow, first: usize) -> Result<StoredStatement, StoreError> {
    Ok(StoredStatement {
        feed_index: row.u64(first)?,
        node_id: row.text(first + 1)?,
        seq: row.u64(first + 2)?,
        digest: row.digest(first + 3)?,
        payload_type: row.text(first + 4)?,
        kind: row.text(first + 5)?,
        document: row.text(first + 6)?,
        revision: row.u32(first + 7)?,
        envelope: row.blob(first + 8)?,
        receipt: row.blob(first + 9)?,
        accepted_at_ms: row.i64(first + 10)?,
        decoded: DecodedStatement::default(),
    })
}

fn statement_from_row(row: &dyn SqlRow) -> Result<StoredStatement, StoreError> {
    statement_at(row, 0)
}

fn checkpoint_from_row(row: &dyn SqlRow) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: row.u64(0)?,
        root: row.hash(1)?,
        note: row.text(2)?,
        created_at_ms: row.i64(3)?,
        cosignature_count: row.u32(4)?,
    })
}

/// The evidence whose columns (as [`EQUIVOCATIONS`] lists them) start at `first`.
fn equivocation_at(row: &dyn SqlRow, first: usize) -> Result<StoredEquivocation, StoreError> {
    Ok(StoredEquivocation {
        id: row.u64(first)?,
        node_id: row.text(first + 1)?,
        seq: row.u64(first + 2)?,
        accepted_digest: row.digest(first + 3)?,
        accepted_envelope: row.blob(first + 4)?,
        conflicting_digest: row.digest(first + 5)?,
        conflicting_envelope: row.blob(first + 6)?,
        detected_at_ms: row.i64(first + 7)?,
    })
}

/// Highest feed index stored (0 when empty).
pub(crate) fn last_feed_index(tx: &mut impl Sql) -> Result<u64, StoreError> {
    tx.one(&LAST_FEED_INDEX, &[], |row| row.u64(0))
}

/// The apply step's view of a stored statement, with the decoded statement it carries.
fn entry_of(st: &StoredStatement) -> Entry<'_> {
    entry_of_stored!(st)
}

/// Inserts accepted statements like [`insert_statements`] and applies each to the view in the
/// same transaction with `apply`, as long as the view is current: from the first chunked
/// snapshot on (or from the start, when the view already lags the log), entries are stored
/// only and the view cursor stays behind; the background applier ([`HubStore::apply_view_step`])
/// applies them in feed order afterwards (see [`crate::view_step`]).
pub(crate) fn insert_statements_and_view<S: Sql>(
    tx: &mut S,
    statements: &[StoredStatement],
    clash: impl Fn(&StoreError) -> Option<StatementClash>,
    mut apply: impl FnMut(&mut S, &Entry<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if statements.is_empty() {
        return Ok(());
    }
    let head = last_feed_index(tx)?;
    let mut view = InlineView::start(tx, head, Chunks::WithTheEntry)?;
    insert_statements(tx, statements, clash, |tx, entry| {
        view.entry(tx, entry, &mut apply)
    })?;
    view.finish(tx)?;
    Ok(())
}

/// The hash of the complete subtree at (level, index), if stored.
fn log_node(tx: &mut impl Sql, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
    let Some(index) = key(index) else {
        return Ok(None);
    };
    tx.first(&LOG_NODE, &[&i64::from(level), &index], |row| row.hash(0))
}

/// The uniqueness rule a failed statement insert broke; each backend reads its own error.
pub(crate) enum StatementClash {
    Digest,
    NodeSeq,
    FeedIndex,
    /// Another constraint, described ("the constraint X", "a constraint: <message>").
    Other(String),
}

/// Inserts accepted statements, which must continue the feed without gaps, and hands each
/// stored entry to `apply` in feed order in the same transaction ([`insert_statements_and_view`]
/// decides which of them the view takes now). `clash` tells which rule a failed insert broke,
/// for a plain-words Conflict.
fn insert_statements<S: Sql>(
    tx: &mut S,
    statements: &[StoredStatement],
    clash: impl Fn(&StoreError) -> Option<StatementClash>,
    mut apply: impl FnMut(&mut S, &Entry<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if statements.is_empty() {
        return Ok(());
    }
    let mut expected = last_feed_index(tx)?;
    for st in statements {
        expected += 1;
        if st.feed_index != expected {
            return Err(StoreError::Conflict(format!(
                "feed index {} does not continue the log (expected {expected})",
                st.feed_index
            )));
        }
        let inserted = tx.exec(
            &INSERT_STATEMENT,
            &[
                &int(st.feed_index, "feed index")?,
                &st.node_id,
                &int(st.seq, "seq")?,
                &&st.digest.0[..],
                &st.payload_type,
                &st.kind,
                &st.document,
                &i64::from(st.revision),
                &st.envelope,
                &st.receipt,
                &st.accepted_at_ms,
            ],
        );
        if let Err(err) = inserted {
            return Err(match clash(&err) {
                Some(clash) => statement_conflict(clash, st),
                None => err,
            });
        }
        apply(tx, &entry_of(st))?;
    }
    Ok(())
}

/// Explains a failed statement insert in plain words.
/// Upserts one cosignature inside `tx` and sets its checkpoint's count. The inner result is
/// this cosignature's own refusal (checked before anything is written, so the transaction
/// stays usable for the others); the outer one a failure of the transaction itself.
fn store_cosignature(
    tx: &mut impl Sql,
    c: &Cosignature,
) -> Result<Result<u32, StoreError>, StoreError> {
    let (size, timestamp) = match (
        int(c.size, "checkpoint size"),
        int(c.timestamp, "cosignature timestamp"),
    ) {
        (Ok(size), Ok(timestamp)) => (size, timestamp),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    if !tx.exists(&CHECKPOINT_TO_COSIGN, &[&size])? {
        return Ok(Err(StoreError::Conflict(format!(
            "no checkpoint of size {} to cosign (witness {})",
            c.size, c.witness_id
        ))));
    }
    tx.exec(
        &UPSERT_COSIGNATURE,
        &[&size, &c.witness_id, &c.line, &timestamp],
    )?;
    // Counted, not incremented: an upsert of a known witness leaves the count as is.
    // O(witnesses of this size) through the primary key.
    let count = tx.one(&COUNT_COSIGNATURES, &[&size], |row| row.i64(0))?;
    tx.exec(&SET_COSIGNATURE_COUNT, &[&size, &count])?;
    Ok(u32::try_from(count)
        .map_err(|_| StoreError::Corrupt(format!("cosignature count {count} out of range"))))
}

fn statement_conflict(clash: StatementClash, st: &StoredStatement) -> StoreError {
    StoreError::Conflict(match clash {
        StatementClash::Digest => {
            format!("a statement with digest {} is already stored", st.digest)
        }
        StatementClash::NodeSeq => format!(
            "node {} already has a statement at seq {}",
            st.node_id, st.seq
        ),
        StatementClash::FeedIndex => format!("feed index {} is already used", st.feed_index),
        StatementClash::Other(what) => format!(
            "statement {} (node {} seq {}) violates {what}",
            st.digest, st.node_id, st.seq
        ),
    })
}

/// Stores equivocation evidence (see [`crate::HubStore::append`]): only the first conflicting
/// statement of a (node, seq), at most [`MAX_EQUIVOCATIONS_PER_MEMBER`] per node.
pub(crate) fn insert_evidence(
    tx: &mut impl Sql,
    evidence: &[NewEquivocation],
) -> Result<(), StoreError> {
    for ev in evidence {
        let seq = int(ev.seq, "seq")?;
        let owner = tx.first(&STATEMENT_OWNER, &[&&ev.accepted_digest.0[..]], |row| {
            Ok((row.text(0)?, row.i64(1)?))
        })?;
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
        // Bounded per member: the first conflicting statement of a seq proves the
        // equivocation, later ones add nothing but bytes (up to a whole envelope each).
        if tx.exists(&EVIDENCE_FOR_SEQ, &[&ev.node_id, &seq])? {
            continue;
        }
        let kept = tx.one(&EVIDENCE_FOR_NODE, &[&ev.node_id], |row| row.size(0))?;
        if kept >= MAX_EQUIVOCATIONS_PER_MEMBER {
            tracing::warn!(
                node = %ev.node_id,
                seq = ev.seq,
                "equivocation evidence not stored: the member already has the most kept"
            );
            continue;
        }
        tx.exec(
            &INSERT_EVIDENCE,
            &[
                &ev.node_id,
                &seq,
                &&ev.accepted_digest.0[..],
                &&ev.conflicting_digest.0[..],
                &ev.conflicting_envelope,
                &ev.detected_at_ms,
            ],
        )?;
    }
    Ok(())
}

/// Inserts log nodes; a key already stored is read back only then (no per-row SELECT on the
/// common path) and must hold the same hash.
pub(crate) fn insert_log_nodes(tx: &mut impl Sql, nodes: &[LogNode]) -> Result<(), StoreError> {
    for (level, index, hash) in nodes {
        if *level > 63 {
            return Err(StoreError::Conflict(format!(
                "log node level {level} is beyond a 64-bit tree"
            )));
        }
        let idx = int(*index, "log node index")?;
        let inserted = tx.exec(&INSERT_LOG_NODE, &[&i64::from(*level), &idx, &&hash[..]])?;
        if inserted == 0 {
            match log_node(tx, *level, *index)? {
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

/// Stores a checkpoint only if it is larger than every stored one (compare-and-swap; the
/// backend's write lock makes the read and the insert one step).
pub(crate) fn insert_checkpoint(tx: &mut impl Sql, cp: &NewCheckpoint) -> Result<(), StoreError> {
    let size = int(cp.size, "checkpoint size")?;
    let latest = tx.one(&LARGEST_CHECKPOINT_SIZE, &[], |row| row.opt_i64(0))?;
    if let Some(latest) = latest
        && size <= latest
    {
        return Err(StoreError::Conflict(format!(
            "checkpoint size {} does not exceed the latest stored checkpoint size {latest}",
            cp.size
        )));
    }
    tx.exec(
        &INSERT_CHECKPOINT,
        &[&size, &&cp.root[..], &cp.note, &cp.created_at_ms],
    )?;
    Ok(())
}

/// What a hub store's backend provides: its transactions, and its `append` (the one write
/// whose steps differ: the apply step and the reading of a failed insert; it calls the
/// `insert_*` functions above). Every other [`HubStore`] method is written once, below.
pub(crate) trait HubBackend: Send + Sync + 'static {
    /// A connection or transaction the shared queries run on.
    type Conn<'c>: Sql;

    /// Runs `f` on a read connection, bound by the caller's deadline.
    fn read_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Self::Conn<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>;

    /// Like [`HubBackend::read_tx`], with every read of `f` in one snapshot.
    fn snapshot_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Self::Conn<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>;

    /// Runs `f` in the store's write transaction and commits; any error rolls it back.
    fn write_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Self::Conn<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>;

    /// The background view apply's transaction: the write transaction by default. A backend
    /// whose writers do not exclude each other (PostgreSQL) runs it beside the commits, so a
    /// snapshot's apply does not hold them up; with one writer (SQLite) they wait for it, so
    /// there a large snapshot is applied a piece per transaction ([`HubBackend::view_pieces`]).
    fn view_write_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Self::Conn<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.write_tx(f)
    }

    /// See [`HubStore::append_streamed`] (called with something to store).
    fn append_batch(
        &self,
        statements: &[StoredStatement],
        chunks: &mut dyn ChunkSource,
        evidence: &[NewEquivocation],
        log_nodes: &[LogNode],
        checkpoint: Option<&NewCheckpoint>,
    ) -> Result<(), StoreError>;

    /// See [`HubStore::lease`].
    fn backend_lease(&self) -> Option<&dyn HubLease> {
        None
    }

    /// The backend's apply step: one stored feed entry applied to the view inside `tx`.
    fn apply_view_entry(tx: &mut Self::Conn<'_>, entry: &Entry<'_>) -> Result<(), StoreError>;

    /// Where the piece applied next starts, on a backend whose commits wait for the view's
    /// transactions (SQLite): there a chunked snapshot of an indicator the view holds nothing
    /// of is applied a piece per transaction ([`HubBackend::apply_view_piece`]), each ending
    /// when a commit waits for the writer, so a commit waits a few milliseconds, not for the
    /// whole snapshot. None: one transaction per snapshot (PostgreSQL, whose view
    /// transactions run beside the commits).
    fn view_pieces(&self) -> Option<&Mutex<Option<ViewPiece>>> {
        None
    }

    /// Whether a commit is waiting for the writer (ends a piece; see [`PieceLimit`]).
    fn commit_waiting(&self) -> bool {
        false
    }

    /// Most observations of a piece ([`PieceLimit::max`]).
    fn view_piece_max(&self) -> usize {
        view_step::VIEW_PIECE_MAX
    }

    /// One piece of a chunked snapshot's view, from `from` on, until `limit` ends it: where
    /// the next piece starts, or None when the snapshot is applied. Only called when
    /// [`HubBackend::view_pieces`] is Some.
    fn apply_view_piece(
        _tx: &mut Self::Conn<'_>,
        entry: &Entry<'_>,
        _from: PieceStart,
        _limit: &PieceLimit<'_>,
    ) -> Result<Option<PieceStart>, StoreError> {
        Err(StoreError::Corrupt(format!(
            "feed entry {}: this store applies a snapshot's view in one transaction",
            entry.feed_index
        )))
    }
}

/// The hub's stored statements and apply steps, for the background applier's [`view_step::step`].
struct HubSteps<B>(PhantomData<B>);

impl StoredEntry for StoredStatement {
    fn entry(&self) -> Entry<'_> {
        entry_of(self)
    }

    fn hold_decoded(&mut self, statement: Arc<Statement>) {
        self.decoded = DecodedStatement::of(statement);
    }
}

impl<'c, B: HubBackend> ViewSteps<B::Conn<'c>> for HubSteps<B> {
    type Stored = StoredStatement;

    fn next_after(
        &self,
        tx: &mut B::Conn<'c>,
        after: u64,
    ) -> Result<Option<StoredStatement>, StoreError> {
        // The log has no gaps: the entry after the cursor is there.
        let index = int(after + 1, "feed index")?;
        tx.first(&STATEMENT_BY_FEED_INDEX, &[&index], statement_from_row)?
            .map(Some)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "feed entry {} is missing below the feed head",
                    after + 1
                ))
            })
    }

    fn apply_entry(&self, tx: &mut B::Conn<'c>, entry: &Entry<'_>) -> Result<(), StoreError> {
        B::apply_view_entry(tx, entry)
    }

    fn apply_piece(
        &self,
        tx: &mut B::Conn<'c>,
        entry: &Entry<'_>,
        from: PieceStart,
        limit: &PieceLimit<'_>,
    ) -> Result<Option<PieceStart>, StoreError> {
        B::apply_view_piece(tx, entry, from, limit)
    }
}

impl<B: HubBackend> HubStore for B {
    fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        self.read_tx(|tx| {
            tx.all(&CHAIN_HEADS, &[], |row| {
                Ok(ChainHead {
                    node_id: row.text(0)?,
                    seq: row.u64(1)?,
                    digest: row.digest(2)?,
                })
            })
        })
    }

    fn last_feed_index(&self) -> Result<u64, StoreError> {
        self.read_tx(|tx| last_feed_index(tx))
    }

    fn statement_by_digest(&self, digest: &Digest) -> Result<Option<StoredStatement>, StoreError> {
        self.read_tx(|tx| tx.first(&STATEMENT_BY_DIGEST, &[&&digest.0[..]], statement_from_row))
    }

    fn statement_by_node_seq(
        &self,
        node_id: &str,
        seq: u64,
    ) -> Result<Option<StoredStatement>, StoreError> {
        let Some(seq) = key(seq) else {
            return Ok(None);
        };
        self.read_tx(|tx| {
            tx.first(
                &STATEMENT_BY_NODE_SEQ,
                &[&node_id, &seq],
                statement_from_row,
            )
        })
    }

    fn statement_by_feed_index(
        &self,
        feed_index: u64,
    ) -> Result<Option<StoredStatement>, StoreError> {
        let Some(feed_index) = key(feed_index) else {
            return Ok(None);
        };
        self.read_tx(|tx| tx.first(&STATEMENT_BY_FEED_INDEX, &[&feed_index], statement_from_row))
    }

    fn append_streamed(
        &self,
        statements: &[StoredStatement],
        chunks: &mut dyn ChunkSource,
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
        self.append_batch(statements, chunks, evidence, log_nodes, checkpoint)
    }

    fn apply_view_step(&self) -> Result<u64, StoreError> {
        let pieces = self.view_pieces();
        let resumed = pieces.and_then(|p| p.lock().unwrap_or_else(PoisonError::into_inner).clone());
        let (through, next_piece) = self.view_write_tx(|tx| {
            // The head first, then the cursor (read by the step): on a backend where this
            // runs beside the commits, a commit in between that applied its own entries moved
            // the cursor past them too, so nothing here is applied twice.
            let head = last_feed_index(tx)?;
            let commit_waiting = || self.commit_waiting();
            let pieces = pieces.map(|_| Pieces {
                resumed,
                max: self.view_piece_max(),
                commit_waiting: &commit_waiting,
            });
            view_step::step(tx, &HubSteps::<B>(PhantomData), head, pieces)
        })?;
        // Only once the piece is committed: a failed one is applied again from the same start.
        if let Some(pieces) = pieces {
            *pieces.lock().unwrap_or_else(PoisonError::into_inner) = next_piece;
        }
        Ok(through)
    }

    fn log_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        self.read_tx(|tx| log_node(tx, level, index))
    }

    fn log_nodes(&self, keys: &[(u8, u64)]) -> Result<Vec<Option<Hash>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One snapshot: a proof is never assembled from two tree states.
        self.snapshot_tx(|tx| {
            keys.iter()
                .map(|&(level, index)| log_node(tx, level, index))
                .collect()
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read_tx(|tx| tx.first(&LATEST_CHECKPOINT, &[], checkpoint_from_row))
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let Some(size) = key(size) else {
            return Ok(None);
        };
        self.read_tx(|tx| tx.first(&CHECKPOINT_AT, &[&size], checkpoint_from_row))
    }

    fn latest_final_checkpoint(&self, quorum: u32) -> Result<Option<StoredCheckpoint>, StoreError> {
        let quorum = i64::from(quorum);
        self.read_tx(|tx| tx.first(&LATEST_FINAL, &[&quorum], checkpoint_from_row))
    }

    fn add_cosignature(&self, c: &Cosignature) -> Result<u32, StoreError> {
        self.write_tx(|tx| store_cosignature(tx, c))?
    }

    fn add_cosignatures(
        &self,
        batch: &[Cosignature],
    ) -> Result<Vec<Result<u32, StoreError>>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write_tx(|tx| {
            batch
                .iter()
                .map(|c| store_cosignature(tx, c))
                .collect::<Result<Vec<_>, _>>()
        })
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<Cosignature>, StoreError> {
        let Some(size) = key(size) else {
            return Ok(Vec::new());
        };
        self.read_tx(|tx| {
            tx.all(&COSIGNATURES, &[&size], |row| {
                Ok(Cosignature {
                    size: row.u64(0)?,
                    witness_id: row.text(1)?,
                    line: row.text(2)?,
                    timestamp: row.u64(3)?,
                })
            })
        })
    }

    fn list_statements(
        &self,
        filter: &StatementFilter,
        after_index: u64,
        max: usize,
    ) -> Result<Vec<StoredStatement>, StoreError> {
        Ok(self
            .list_statements_within(filter, after_index, max, usize::MAX)?
            .0)
    }

    fn list_statements_within(
        &self,
        filter: &StatementFilter,
        after_index: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<(Vec<StoredStatement>, bool), StoreError> {
        let after = bound(after_index);
        // One more than asked: whether more follow.
        let fetch = limit(max.saturating_add(1));
        self.read_tx(|tx| {
            let dialect = tx.dialect();
            let mut sql = String::from(concat!(
                "SELECT CAST(length(envelope) AS BIGINT) + length(receipt), ",
                statement_columns!(),
                " FROM statements WHERE feed_index > "
            ));
            sql.push_str(&dialect.placeholder(1));
            let mut args: Vec<&dyn Param> = vec![&after];
            // One statement per filter combination (eight, each prepared once) rather than
            // "($2 IS NULL OR col = $2)": the planner then sees which columns are constrained,
            // and SQLite uses the indexes.
            for (column, value) in [
                ("node_id", &filter.node_id),
                ("kind", &filter.kind),
                ("document", &filter.document),
            ] {
                if let Some(value) = value {
                    args.push(value);
                    let _ = write!(sql, " AND {column} = {}", dialect.placeholder(args.len()));
                }
            }
            args.push(&fetch);
            let _ = write!(
                sql,
                " ORDER BY feed_index LIMIT {}",
                dialect.placeholder(args.len())
            );
            let mut page = BytePage::new(max, max_bytes);
            tx.stream(&sql, &args, LISTING_FETCH, |row| {
                page.take(row, |row| statement_at(row, 1))
            })?;
            Ok(page.finish())
        })
    }

    fn list_equivocations(
        &self,
        node_id: Option<&str>,
        after_id: u64,
        max: usize,
    ) -> Result<Vec<StoredEquivocation>, StoreError> {
        Ok(self
            .list_equivocations_within(node_id, after_id, max, usize::MAX)?
            .0)
    }

    fn list_feed(
        &self,
        after_index: u64,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredStatement>, StoreError> {
        let after = bound(after_index);
        let max = limit(max_rows);
        self.read_tx(|tx| {
            let mut page = BytePage::new(usize::MAX, max_bytes);
            tx.stream(&FEED, &[&after, &max], LISTING_FETCH, |row| {
                page.take(row, |row| statement_at(row, 1))
            })?;
            Ok(page.finish().0)
        })
    }

    fn list_equivocations_within(
        &self,
        node_id: Option<&str>,
        after_id: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<(Vec<StoredEquivocation>, bool), StoreError> {
        let after = bound(after_id);
        // One more than asked: whether more follow.
        let fetch = limit(max.saturating_add(1));
        self.read_tx(|tx| {
            let mut page = BytePage::new(max, max_bytes);
            tx.stream(
                &EQUIVOCATIONS,
                &[&after, &node_id, &fetch],
                LISTING_FETCH,
                |row| page.take(row, |row| equivocation_at(row, 1)),
            )?;
            Ok(page.finish())
        })
    }

    fn count_statements(&self) -> Result<u64, StoreError> {
        self.read_tx(|tx| tx.one(&COUNT_STATEMENTS, &[], |row| row.u64(0)))
    }

    fn flag_statements(&self, flags: &[FlagRecord]) -> Result<u32, StoreError> {
        if flags.is_empty() {
            return Ok(0);
        }
        // Any error returns before commit: the whole batch rolls back.
        self.write_tx(|tx| {
            let mut new = 0u32;
            for f in flags {
                let stored = match key(f.seq) {
                    Some(seq) => tx.exists(&STATEMENT_EXISTS, &[&f.node_id, &seq])?,
                    None => false,
                };
                if !stored {
                    return Err(StoreError::Conflict(format!(
                        "cannot flag node {} seq {}: no such statement is stored",
                        f.node_id, f.seq
                    )));
                }
                let inserted = tx.exec(
                    &INSERT_FLAG,
                    &[
                        &f.node_id,
                        &int(f.seq, "seq")?,
                        &f.reason,
                        &f.key_id,
                        &int(f.registry_version, "registry version")?,
                        &f.flagged_at_ms,
                    ],
                )?;
                if inserted > 0 {
                    new = new.checked_add(1).ok_or_else(|| {
                        StoreError::Conflict("more than u32::MAX flags in one batch".into())
                    })?;
                }
            }
            Ok(new)
        })
    }

    fn list_flags(&self, after_id: u64, max: usize) -> Result<Vec<StoredFlag>, StoreError> {
        let after = bound(after_id);
        let max = limit(max);
        self.read_tx(|tx| {
            tx.all(&FLAGS, &[&after, &max], |row| {
                Ok(StoredFlag {
                    id: row.u64(0)?,
                    flag: FlagRecord {
                        node_id: row.text(1)?,
                        seq: row.u64(2)?,
                        reason: row.text(3)?,
                        key_id: row.text(4)?,
                        registry_version: row.u64(5)?,
                        flagged_at_ms: row.i64(6)?,
                    },
                })
            })
        })
    }

    fn lease(&self) -> Option<&dyn HubLease> {
        self.backend_lease()
    }
}
