//! The hub store on PostgreSQL: the same log, evidence, transparency log, flags and indicator
//! view as [`crate::SqliteHubStore`], with the same rules (see [`HubStore`]).

use super::indicators::{self as view, Entry};
use super::{PgDb, PgSchema, Tx, get_digest, get_hash, get_u32, get_u64, int, violated_constraint};
use crate::StoreError;
use crate::db::{bound, key, limit};
use crate::hub::{
    ChainHead, Cosignature, FlagRecord, HubStore, LogNode, MAX_EQUIVOCATIONS_PER_MEMBER,
    NewCheckpoint, NewEquivocation, StatementFilter, StoredCheckpoint, StoredEquivocation,
    StoredFlag, StoredStatement,
};
use postgres::Row;
use postgres::types::ToSql;
use rcpfed_core::Digest;
use rcpfed_core::merkle::Hash;

/// Schema of the hub database on PostgreSQL. Append new migrations; never edit shipped ones.
///
/// Text columns that are sorted or compared use the "C" collation, so every order is the
/// byte order SQLite uses and both backends list rows identically whatever the server's
/// locale. Secondary indexes end with the paging column explicitly (SQLite's end with the
/// rowid implicitly).
pub(crate) const HUB_SCHEMA: PgSchema = PgSchema {
    name: "hub",
    migrations: &[
        r#"
        CREATE TABLE statements (
            feed_index     BIGINT PRIMARY KEY CHECK (feed_index >= 1),
            node_id        TEXT COLLATE "C" NOT NULL,
            seq            BIGINT NOT NULL CHECK (seq >= 1),
            digest         BYTEA  NOT NULL CHECK (octet_length(digest) = 32),
            payload_type   TEXT   NOT NULL,
            kind           TEXT COLLATE "C" NOT NULL,
            document       TEXT COLLATE "C" NOT NULL,
            revision       BIGINT NOT NULL CHECK (revision >= 0),
            envelope       BYTEA  NOT NULL,
            receipt        BYTEA  NOT NULL,
            accepted_at_ms BIGINT NOT NULL,
            CONSTRAINT statements_node_seq UNIQUE (node_id, seq),
            CONSTRAINT statements_digest UNIQUE (digest)
        );
        CREATE INDEX statements_node ON statements (node_id, feed_index);
        CREATE INDEX statements_kind ON statements (kind, feed_index);
        CREATE INDEX statements_document ON statements (document, feed_index);

        CREATE TABLE equivocations (
            id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            node_id              TEXT COLLATE "C" NOT NULL,
            seq                  BIGINT NOT NULL,
            accepted_digest      BYTEA  NOT NULL REFERENCES statements (digest),
            conflicting_digest   BYTEA  NOT NULL CHECK (octet_length(conflicting_digest) = 32),
            conflicting_envelope BYTEA  NOT NULL,
            detected_at_ms       BIGINT NOT NULL,
            UNIQUE (node_id, seq, conflicting_digest)
        );
        CREATE INDEX equivocations_node ON equivocations (node_id, id);

        CREATE TABLE log_nodes (
            level BIGINT NOT NULL CHECK (level BETWEEN 0 AND 63),
            idx   BIGINT NOT NULL CHECK (idx >= 0),
            hash  BYTEA  NOT NULL CHECK (octet_length(hash) = 32),
            PRIMARY KEY (level, idx)
        );

        CREATE TABLE checkpoints (
            size              BIGINT PRIMARY KEY CHECK (size >= 0),
            root              BYTEA  NOT NULL CHECK (octet_length(root) = 32),
            note              TEXT   NOT NULL,
            created_at_ms     BIGINT NOT NULL,
            cosignature_count BIGINT NOT NULL DEFAULT 0 CHECK (cosignature_count >= 0)
        );
        CREATE INDEX checkpoints_cosignature_count ON checkpoints (cosignature_count, size);

        CREATE TABLE cosignatures (
            size       BIGINT NOT NULL REFERENCES checkpoints (size),
            witness_id TEXT COLLATE "C" NOT NULL,
            line       TEXT   NOT NULL,
            timestamp  BIGINT NOT NULL CHECK (timestamp >= 0),
            PRIMARY KEY (size, witness_id)
        );

        CREATE TABLE statement_flags (
            id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            node_id          TEXT COLLATE "C" NOT NULL,
            seq              BIGINT NOT NULL CHECK (seq >= 1),
            reason           TEXT   NOT NULL,
            key_id           TEXT COLLATE "C" NOT NULL,
            registry_version BIGINT NOT NULL CHECK (registry_version >= 0),
            flagged_at_ms    BIGINT NOT NULL,
            UNIQUE (node_id, seq, key_id, registry_version),
            FOREIGN KEY (node_id, seq) REFERENCES statements (node_id, seq)
        );

        -- The indicator view (see indicators.rs): every version of every observation, with
        -- superseded_at_ms set when a later version of the same key is accepted.
        CREATE TABLE observations (
            feed_index       BIGINT NOT NULL CHECK (feed_index >= 1),
            position         BIGINT NOT NULL CHECK (position >= 0),
            node_id          TEXT COLLATE "C" NOT NULL,
            indicator        TEXT COLLATE "C" NOT NULL,
            ref_area         TEXT COLLATE "C" NOT NULL,
            time_period      TEXT COLLATE "C" NOT NULL,
            dims             TEXT COLLATE "C" NOT NULL,
            period_start     TEXT COLLATE "C" NOT NULL,
            period_end       TEXT COLLATE "C" NOT NULL,
            action           BIGINT NOT NULL CHECK (action IN (1, 2, 3)),
            obs_value        DOUBLE PRECISION,
            obs_status       TEXT   NOT NULL,
            unit_measure     TEXT COLLATE "C" NOT NULL,
            unit_mult        BIGINT NOT NULL,
            conf_status      TEXT   NOT NULL,
            footnote         TEXT   NOT NULL,
            source           TEXT   NOT NULL,
            digest           BYTEA  NOT NULL,
            document         TEXT   NOT NULL,
            revision         BIGINT NOT NULL,
            accepted_at_ms   BIGINT NOT NULL,
            superseded_at_ms BIGINT,
            defaulted        BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (feed_index, position)
        );
        -- At most one version in force per (key, node), tombstones included; the apply
        -- step's probe, and the conflicts' scan (keys side by side).
        CREATE UNIQUE INDEX observations_in_force
            ON observations (indicator, ref_area, time_period, dims, node_id)
            WHERE superseded_at_ms IS NULL;
        CREATE INDEX observations_key
            ON observations (indicator, ref_area, time_period, feed_index, position);
        CREATE INDEX observations_indicator ON observations (indicator, feed_index, position);
        CREATE INDEX observations_area
            ON observations (indicator, ref_area, feed_index, position);
        CREATE INDEX observations_revisions ON observations (feed_index, position)
            WHERE action IN (2, 3);

        CREATE TABLE policy_objectives (
            node_id    TEXT COLLATE "C" NOT NULL,
            document   TEXT COLLATE "C" NOT NULL,
            revision   BIGINT NOT NULL,
            feed_index BIGINT NOT NULL,
            objective  BIGINT
        );
        CREATE INDEX policy_objectives_document ON policy_objectives (node_id, document);

        CREATE TABLE chunks (
            sha256 BYTEA PRIMARY KEY CHECK (octet_length(sha256) = 32),
            bytes  BYTEA NOT NULL
        );
    "#,
        // The hub lease (see lease.rs): one row, timed by the database's clock; epoch 0 and an
        // expiry in the past mean nobody ever held it.
        r#"
        CREATE TABLE hub_lease (
            id         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
            holder     TEXT        NOT NULL,
            endpoint   TEXT        NOT NULL,
            epoch      BIGINT      NOT NULL CHECK (epoch >= 0),
            expires_at TIMESTAMPTZ NOT NULL
        );
        INSERT INTO hub_lease (holder, endpoint, epoch, expires_at)
            VALUES ('', '', 0, '-infinity');
    "#,
    ],
};

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

/// Every node's latest statement: walks the distinct node ids through the (node_id, seq)
/// index (a loose index scan), then one probe per node. O(nodes · log n).
const CHAIN_HEADS_SQL: &str = "
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
    ORDER BY n.node_id";

/// The latest checkpoint with cosignature_count >= $1: a loose scan of the distinct counts
/// (a handful: never more than the witnesses), one probe per count.
const LATEST_FINAL_SQL: &str = concat!(
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
);

fn statement_from_row(row: &Row) -> Result<StoredStatement, StoreError> {
    statement_at(row, 0)
}

/// The statement whose columns start at `first`.
fn statement_at(row: &Row, first: usize) -> Result<StoredStatement, StoreError> {
    Ok(StoredStatement {
        feed_index: get_u64(row, first)?,
        node_id: row.try_get(first + 1)?,
        seq: get_u64(row, first + 2)?,
        digest: get_digest(row, first + 3)?,
        payload_type: row.try_get(first + 4)?,
        kind: row.try_get(first + 5)?,
        document: row.try_get(first + 6)?,
        revision: get_u32(row, first + 7)?,
        envelope: row.try_get(first + 8)?,
        receipt: row.try_get(first + 9)?,
        accepted_at_ms: row.try_get(first + 10)?,
    })
}

fn checkpoint_from_row(row: &Row) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: get_u64(row, 0)?,
        root: get_hash(row, 1)?,
        note: row.try_get(2)?,
        created_at_ms: row.try_get(3)?,
        cosignature_count: get_u32(row, 4)?,
    })
}

fn equivocation_at(row: &Row, first: usize) -> Result<StoredEquivocation, StoreError> {
    Ok(StoredEquivocation {
        id: get_u64(row, first)?,
        node_id: row.try_get(first + 1)?,
        seq: get_u64(row, first + 2)?,
        accepted_digest: get_digest(row, first + 3)?,
        accepted_envelope: row.try_get(first + 4)?,
        conflicting_digest: get_digest(row, first + 5)?,
        conflicting_envelope: row.try_get(first + 6)?,
        detected_at_ms: row.try_get(first + 7)?,
    })
}

/// The hub store on PostgreSQL, at the database (and schema, through the URL's
/// `options=-csearch_path=...`) a connection URL names.
#[derive(Debug)]
pub struct PgHubStore {
    pub(crate) db: PgDb,
}

impl PgHubStore {
    /// Connects to `url` (`postgres://user@host:port/dbname?...`) and creates or migrates the
    /// hub's tables in its current schema. A schema holding anything else is refused.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Ok(PgHubStore {
            db: PgDb::open(url, &HUB_SCHEMA)?,
        })
    }
}

fn query_statements(
    tx: &mut Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<StoredStatement>, StoreError> {
    tx.query(sql, params)?
        .iter()
        .map(statement_from_row)
        .collect()
}

fn query_checkpoint(
    tx: &mut Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<StoredCheckpoint>, StoreError> {
    tx.query_opt(sql, params)?
        .map(|row| checkpoint_from_row(&row))
        .transpose()
}

pub(crate) fn last_feed_index(tx: &mut Tx<'_>) -> Result<u64, StoreError> {
    let row = tx.query_one("SELECT coalesce(max(feed_index), 0) FROM statements", &[])?;
    get_u64(&row, 0)
}

fn read_log_node(tx: &mut Tx<'_>, level: u8, index: i64) -> Result<Option<Hash>, StoreError> {
    tx.query_opt(
        "SELECT hash FROM log_nodes WHERE level = $1 AND idx = $2",
        &[&i64::from(level), &index],
    )?
    .map(|row| get_hash(&row, 0))
    .transpose()
}

impl HubStore for PgHubStore {
    fn chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        self.db.read(|tx| {
            tx.query(CHAIN_HEADS_SQL, &[])?
                .iter()
                .map(|row| {
                    Ok(ChainHead {
                        node_id: row.try_get(0)?,
                        seq: get_u64(row, 1)?,
                        digest: get_digest(row, 2)?,
                    })
                })
                .collect()
        })
    }

    fn last_feed_index(&self) -> Result<u64, StoreError> {
        self.db.read(last_feed_index)
    }

    fn statement_by_digest(&self, digest: &Digest) -> Result<Option<StoredStatement>, StoreError> {
        let digest = &digest.0[..];
        self.db.read(|tx| {
            let sql = concat!(
                "SELECT ",
                statement_columns!(),
                " FROM statements WHERE digest = $1"
            );
            Ok(query_statements(tx, sql, &[&digest])?.pop())
        })
    }

    fn statement_by_node_seq(
        &self,
        node_id: &str,
        seq: u64,
    ) -> Result<Option<StoredStatement>, StoreError> {
        let Some(seq) = key(seq) else {
            return Ok(None);
        };
        self.db.read(|tx| {
            let sql = concat!(
                "SELECT ",
                statement_columns!(),
                " FROM statements WHERE node_id = $1 AND seq = $2"
            );
            Ok(query_statements(tx, sql, &[&node_id, &seq])?.pop())
        })
    }

    fn statement_by_feed_index(
        &self,
        feed_index: u64,
    ) -> Result<Option<StoredStatement>, StoreError> {
        let Some(feed_index) = key(feed_index) else {
            return Ok(None);
        };
        self.db.read(|tx| {
            let sql = concat!(
                "SELECT ",
                statement_columns!(),
                " FROM statements WHERE feed_index = $1"
            );
            Ok(query_statements(tx, sql, &[&feed_index])?.pop())
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
            view::stage_chunks(tx, chunks)?;
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
        let Some(index) = key(index) else {
            return Ok(None);
        };
        self.db.read(|tx| read_log_node(tx, level, index))
    }

    fn log_nodes(&self, keys: &[(u8, u64)]) -> Result<Vec<Option<Hash>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One read transaction is one snapshot: a proof is never assembled from two trees.
        self.db.read(|tx| {
            keys.iter()
                .map(|&(level, index)| match key(index) {
                    Some(index) => read_log_node(tx, level, index),
                    None => Ok(None),
                })
                .collect()
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.db.read(|tx| {
            let sql = concat!(
                "SELECT ",
                checkpoint_columns!(),
                " FROM checkpoints ORDER BY size DESC LIMIT 1"
            );
            query_checkpoint(tx, sql, &[])
        })
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let Some(size) = key(size) else {
            return Ok(None);
        };
        self.db.read(|tx| {
            let sql = concat!(
                "SELECT ",
                checkpoint_columns!(),
                " FROM checkpoints WHERE size = $1"
            );
            query_checkpoint(tx, sql, &[&size])
        })
    }

    fn latest_final_checkpoint(&self, quorum: u32) -> Result<Option<StoredCheckpoint>, StoreError> {
        let quorum = i64::from(quorum);
        self.db
            .read(|tx| query_checkpoint(tx, LATEST_FINAL_SQL, &[&quorum]))
    }

    fn add_cosignature(&self, c: &Cosignature) -> Result<u32, StoreError> {
        let size = int(c.size, "checkpoint size")?;
        let timestamp = int(c.timestamp, "cosignature timestamp")?;
        self.db.write(|tx| {
            // FOR UPDATE: the count below is of this checkpoint's row as locked.
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM checkpoints WHERE size = $1 FOR UPDATE",
                    &[&size],
                )?
                .is_some();
            if !exists {
                return Err(StoreError::Conflict(format!(
                    "no checkpoint of size {} to cosign (witness {})",
                    c.size, c.witness_id
                )));
            }
            tx.execute(
                "INSERT INTO cosignatures (size, witness_id, line, timestamp)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (size, witness_id)
                 DO UPDATE SET line = excluded.line, timestamp = excluded.timestamp",
                &[&size, &c.witness_id, &c.line, &timestamp],
            )?;
            // Counted, not incremented: an upsert of a known witness leaves the count as is.
            let count: i64 = tx
                .query_one(
                    "SELECT count(*) FROM cosignatures WHERE size = $1",
                    &[&size],
                )?
                .try_get(0)?;
            tx.execute(
                "UPDATE checkpoints SET cosignature_count = $2 WHERE size = $1",
                &[&size, &count],
            )?;
            u32::try_from(count)
                .map_err(|_| StoreError::Corrupt(format!("cosignature count {count} out of range")))
        })
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<Cosignature>, StoreError> {
        let Some(size) = key(size) else {
            return Ok(Vec::new());
        };
        self.db.read(|tx| {
            tx.query(
                "SELECT size, witness_id, line, timestamp FROM cosignatures
                 WHERE size = $1 ORDER BY witness_id",
                &[&size],
            )?
            .iter()
            .map(|row| {
                Ok(Cosignature {
                    size: get_u64(row, 0)?,
                    witness_id: row.try_get(1)?,
                    line: row.try_get(2)?,
                    timestamp: get_u64(row, 3)?,
                })
            })
            .collect()
        })
    }

    fn list_statements(
        &self,
        filter: &StatementFilter,
        after_index: u64,
        max: usize,
    ) -> Result<Vec<StoredStatement>, StoreError> {
        let after = bound(after_index);
        let max = limit(max);
        let mut sql = String::from(concat!(
            "SELECT ",
            statement_columns!(),
            " FROM statements WHERE feed_index > $1"
        ));
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&after];
        // One statement per filter combination (eight, each prepared once), so the planner
        // sees which columns are constrained.
        for (column, value) in [
            ("node_id", &filter.node_id),
            ("kind", &filter.kind),
            ("document", &filter.document),
        ] {
            if let Some(value) = value {
                args.push(value);
                sql.push_str(&format!(" AND {column} = ${}", args.len()));
            }
        }
        args.push(&max);
        sql.push_str(&format!(" ORDER BY feed_index LIMIT ${}", args.len()));
        self.db.read(|tx| query_statements(tx, &sql, &args))
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
        self.db.read(|tx| {
            let mut out = Vec::new();
            let mut used = 0usize;
            // Fetched a few rows at a time, sizes first: rows past the budget are never read
            // into memory.
            tx.for_each_row(
                concat!(
                    "SELECT octet_length(envelope) + octet_length(receipt), ",
                    statement_columns!(),
                    " FROM statements WHERE feed_index > $1 ORDER BY feed_index LIMIT $2"
                ),
                &[&after, &max],
                16,
                |row| {
                    let size = usize::try_from(row.try_get::<_, i32>(0)?).unwrap_or(usize::MAX);
                    if !out.is_empty() && used.saturating_add(size) > max_bytes {
                        return Ok(false);
                    }
                    used = used.saturating_add(size);
                    out.push(statement_at(row, 1)?);
                    Ok(true)
                },
            )?;
            Ok(out)
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
        let fetch = limit(max.saturating_add(1));
        self.db.read(|tx| {
            let mut out = Vec::new();
            let mut used = 0usize;
            let mut more = false;
            tx.for_each_row(
                "SELECT octet_length(s.envelope) + octet_length(e.conflicting_envelope), e.id,
                        e.node_id, e.seq, e.accepted_digest, s.envelope, e.conflicting_digest,
                        e.conflicting_envelope, e.detected_at_ms
                 FROM equivocations e JOIN statements s ON s.digest = e.accepted_digest
                 WHERE e.id > $1 AND ($2::text IS NULL OR e.node_id = $2::text)
                 ORDER BY e.id LIMIT $3",
                &[&after, &node_id, &fetch],
                16,
                |row| {
                    let size = usize::try_from(row.try_get::<_, i32>(0)?).unwrap_or(usize::MAX);
                    if out.len() >= max
                        || (!out.is_empty() && used.saturating_add(size) > max_bytes)
                    {
                        more = true;
                        return Ok(false);
                    }
                    used = used.saturating_add(size);
                    out.push(equivocation_at(row, 1)?);
                    Ok(true)
                },
            )?;
            Ok((out, more))
        })
    }

    fn count_statements(&self) -> Result<u64, StoreError> {
        self.db.read(|tx| {
            let row = tx.query_one("SELECT count(*) FROM statements", &[])?;
            get_u64(&row, 0)
        })
    }

    fn flag_statements(&self, flags: &[FlagRecord]) -> Result<u32, StoreError> {
        if flags.is_empty() {
            return Ok(0);
        }
        self.db.write(|tx| {
            let mut new = 0u32;
            for f in flags {
                let stored = match key(f.seq) {
                    Some(seq) => tx
                        .query_opt(
                            "SELECT 1 FROM statements WHERE node_id = $1 AND seq = $2",
                            &[&f.node_id, &seq],
                        )?
                        .is_some(),
                    None => false,
                };
                if !stored {
                    return Err(StoreError::Conflict(format!(
                        "cannot flag node {} seq {}: no such statement is stored",
                        f.node_id, f.seq
                    )));
                }
                let inserted = tx.execute(
                    "INSERT INTO statement_flags (node_id, seq, reason, key_id,
                         registry_version, flagged_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (node_id, seq, key_id, registry_version) DO NOTHING",
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

    fn lease(&self) -> Option<&dyn crate::HubLease> {
        Some(self)
    }

    fn list_flags(&self, after_id: u64, max: usize) -> Result<Vec<StoredFlag>, StoreError> {
        let after = bound(after_id);
        let max = limit(max);
        self.db.read(|tx| {
            tx.query(
                "SELECT id, node_id, seq, reason, key_id, registry_version, flagged_at_ms
                 FROM statement_flags WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &max],
            )?
            .iter()
            .map(|row| {
                Ok(StoredFlag {
                    id: get_u64(row, 0)?,
                    flag: FlagRecord {
                        node_id: row.try_get(1)?,
                        seq: get_u64(row, 2)?,
                        reason: row.try_get(3)?,
                        key_id: row.try_get(4)?,
                        registry_version: get_u64(row, 5)?,
                        flagged_at_ms: row.try_get(6)?,
                    },
                })
            })
            .collect()
        })
    }
}

fn insert_statements(tx: &mut Tx<'_>, statements: &[StoredStatement]) -> Result<(), StoreError> {
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
        let res = tx.execute(
            concat!(
                "INSERT INTO statements (",
                statement_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
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
        if let Err(err) = res {
            return Err(statement_conflict(err, st));
        }
        // In feed order, in this transaction: the view never lags the log.
        view::apply_entry(
            tx,
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

/// Explains a failed statement insert in plain words.
fn statement_conflict(err: StoreError, st: &StoredStatement) -> StoreError {
    let Some(constraint) = violated_constraint(&err) else {
        return err;
    };
    let what = match constraint {
        "statements_digest" => format!("a statement with digest {} is already stored", st.digest),
        "statements_node_seq" => format!(
            "node {} already has a statement at seq {}",
            st.node_id, st.seq
        ),
        "statements_pkey" => format!("feed index {} is already used", st.feed_index),
        other => format!(
            "statement {} (node {} seq {}) violates the constraint {other}",
            st.digest, st.node_id, st.seq
        ),
    };
    StoreError::Conflict(what)
}

fn insert_evidence(tx: &mut Tx<'_>, evidence: &[NewEquivocation]) -> Result<(), StoreError> {
    for ev in evidence {
        let seq = int(ev.seq, "seq")?;
        let owner = tx
            .query_opt(
                "SELECT node_id, seq FROM statements WHERE digest = $1",
                &[&&ev.accepted_digest.0[..]],
            )?
            .map(|row| -> Result<(String, i64), StoreError> {
                Ok((row.try_get(0)?, row.try_get(1)?))
            })
            .transpose()?;
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
        // Bounded per member: the first conflicting statement of a seq proves it.
        let kept_for_seq = tx
            .query_opt(
                "SELECT 1 FROM equivocations WHERE node_id = $1 AND seq = $2 LIMIT 1",
                &[&ev.node_id, &seq],
            )?
            .is_some();
        if kept_for_seq {
            continue;
        }
        let kept: i64 = tx
            .query_one(
                "SELECT count(*) FROM equivocations WHERE node_id = $1",
                &[&ev.node_id],
            )?
            .try_get(0)?;
        if usize::try_from(kept).unwrap_or(usize::MAX) >= MAX_EQUIVOCATIONS_PER_MEMBER {
            tracing::warn!(
                node = %ev.node_id,
                seq = ev.seq,
                "equivocation evidence not stored: the member already has the most kept"
            );
            continue;
        }
        tx.execute(
            "INSERT INTO equivocations (node_id, seq, accepted_digest, conflicting_digest,
                 conflicting_envelope, detected_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (node_id, seq, conflicting_digest) DO NOTHING",
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

/// Inserts log nodes; a key already stored is read back only then and must hold the same hash.
fn insert_log_nodes(tx: &mut Tx<'_>, nodes: &[LogNode]) -> Result<(), StoreError> {
    for (level, index, hash) in nodes {
        if *level > 63 {
            return Err(StoreError::Conflict(format!(
                "log node level {level} is beyond a 64-bit tree"
            )));
        }
        let idx = int(*index, "log node index")?;
        let inserted = tx.execute(
            "INSERT INTO log_nodes (level, idx, hash) VALUES ($1, $2, $3)
             ON CONFLICT (level, idx) DO NOTHING",
            &[&i64::from(*level), &idx, &&hash[..]],
        )?;
        if inserted == 0 {
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

/// Stores a checkpoint only if it is larger than every stored one (compare-and-swap; the
/// write lock makes the read and the insert one step).
fn insert_checkpoint(tx: &mut Tx<'_>, cp: &NewCheckpoint) -> Result<(), StoreError> {
    let size = int(cp.size, "checkpoint size")?;
    let latest: Option<i64> = tx
        .query_one("SELECT max(size) FROM checkpoints", &[])?
        .try_get(0)?;
    if let Some(latest) = latest
        && size <= latest
    {
        return Err(StoreError::Conflict(format!(
            "checkpoint size {} does not exceed the latest stored checkpoint size {latest}",
            cp.size
        )));
    }
    tx.execute(
        "INSERT INTO checkpoints (size, root, note, created_at_ms, cosignature_count)
         VALUES ($1, $2, $3, $4, 0)",
        &[&size, &&cp.root[..], &cp.note, &cp.created_at_ms],
    )?;
    Ok(())
}
