//! The hub store on PostgreSQL: the same log, evidence, transparency log, flags and indicator
//! view as [`crate::SqliteHubStore`], with the same rules (see [`HubStore`]).

use super::indicators as view;
use super::{PgDb, PgSchema, Tx, violated_constraint};
use crate::StoreError;
use crate::hub::{LogNode, NewCheckpoint, NewEquivocation, StoredStatement};
use crate::hub_sql::{self, HubBackend, StatementClash};

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
        // Policy coverage counted as policy summaries are applied: per node, objective 0
        // counts its documents and objective k the documents whose latest revision addresses
        // GCM objective k (the SQLite stores' `indicator_policy_coverage_sql`).
        r#"
        CREATE TABLE policy_coverage (
            node_id   TEXT COLLATE "C" NOT NULL,
            objective BIGINT NOT NULL CHECK (objective BETWEEN 0 AND 23),
            documents BIGINT NOT NULL CHECK (documents >= 0),
            PRIMARY KEY (node_id, objective)
        );
        INSERT INTO policy_coverage (node_id, objective, documents)
            SELECT node_id, 0, count(DISTINCT document) FROM policy_objectives GROUP BY node_id;
        INSERT INTO policy_coverage (node_id, objective, documents)
            SELECT node_id, objective, count(*) FROM policy_objectives
             WHERE objective IS NOT NULL GROUP BY node_id, objective;
    "#,
        hub_sql::view_cursor_sql!(),
        hub_sql::superseded_by_sql!(),
    ],
};

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

/// Explains which statement rule a failed insert broke, by the constraint's name.
fn statement_clash(err: &StoreError) -> Option<StatementClash> {
    Some(match violated_constraint(err)? {
        "statements_digest" => StatementClash::Digest,
        "statements_node_seq" => StatementClash::NodeSeq,
        "statements_pkey" => StatementClash::FeedIndex,
        other => StatementClash::Other(format!("the constraint {other}")),
    })
}

// Every query, row mapping and HubStore method is in hub_sql, shared with the SQLite store;
// here are the transactions (a read-only snapshot, or a write under the write lock and fence)
// and the append's PostgreSQL steps.
impl HubBackend for PgHubStore {
    type Conn<'c> = Tx<'c>;

    fn read_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Tx<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.read(f)
    }

    fn snapshot_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Tx<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        // Every read transaction is one snapshot (REPEATABLE READ).
        self.db.read(f)
    }

    fn write_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Tx<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.write(f)
    }

    fn view_write_tx<T: Send>(
        &self,
        f: impl for<'c> FnOnce(&mut Tx<'c>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.db.write_beside(f)
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
            crate::indicator_queries::stage_chunk_source(tx, chunks)?;
            hub_sql::insert_statements_and_view(
                tx,
                statements,
                statement_clash,
                view::apply_entry,
            )?;
            hub_sql::insert_evidence(tx, evidence)?;
            hub_sql::insert_log_nodes(tx, log_nodes)?;
            if let Some(checkpoint) = checkpoint {
                hub_sql::insert_checkpoint(tx, checkpoint)?;
            }
            Ok(())
        })
    }

    fn backend_lease(&self) -> Option<&dyn crate::HubLease> {
        Some(self)
    }

    fn apply_view_entry(
        tx: &mut Tx<'_>,
        entry: &crate::view_rows::Entry<'_>,
    ) -> Result<(), StoreError> {
        view::apply_entry(tx, entry)
    }
}
