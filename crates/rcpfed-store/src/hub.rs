//! The hub's store: the append-only log of accepted statements (the feed), the evidence of
//! equivocations, and the transparency log over the feed: complete Merkle subtree hashes,
//! signed checkpoints and the witnesses' cosignatures.

use crate::StoreError;
use rcpfed_core::Digest;
use rcpfed_core::merkle::Hash;

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
    /// The envelope's decoded statement, when the sequencer hands it to the commit (none
    /// when read back).
    pub decoded: crate::DecodedStatement,
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

/// Chunks handed to a write one at a time (see [`HubStore::append_streamed`]).
pub trait ChunkSource: Send {
    /// The next chunk (its SHA-256 and bytes); None after the last.
    fn next_chunk(&mut self) -> Result<Option<(Digest, Vec<u8>)>, StoreError>;
    /// Whether there are none at all (a write with nothing else to store is skipped).
    fn is_empty(&self) -> bool;
}

/// Chunks already in memory.
pub struct SliceChunks<'a>(pub std::slice::Iter<'a, (Digest, Vec<u8>)>);

impl ChunkSource for SliceChunks<'_> {
    fn next_chunk(&mut self) -> Result<Option<(Digest, Vec<u8>)>, StoreError> {
        Ok(self.0.next().cloned())
    }

    fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
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
    ///   rule or missing a chunk is a Conflict. Except: from the first chunked snapshot on, or
    ///   from the start when the view lags the log, entries are stored without their view;
    ///   [`HubStore::apply_view_step`] applies them afterwards, and the view's
    ///   `applied_feed_size` stays behind until it has.
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
    ) -> Result<(), StoreError> {
        self.append_streamed(
            statements,
            &mut SliceChunks(chunks.iter()),
            evidence,
            log_nodes,
            checkpoint,
        )
    }
    /// [`HubStore::append`] with the chunks read one at a time from `chunks` inside the
    /// transaction, so a large snapshot's chunks are never all in memory.
    fn append_streamed(
        &self,
        statements: &[StoredStatement],
        chunks: &mut dyn ChunkSource,
        evidence: &[NewEquivocation],
        log_nodes: &[LogNode],
        checkpoint: Option<&NewCheckpoint>,
    ) -> Result<(), StoreError>;
    /// Applies to the indicator view, in one durable transaction, the next stored entries the
    /// commit left to the background (see `append`): in feed order from the view cursor, a
    /// chunked snapshot alone in its transaction (readers see all of it or none of it), a
    /// run of small entries together. Returns the view cursor after it, which equals
    /// `last_feed_index` once everything is applied. Crash safe: the cursor moves in the
    /// transaction that applies the entries, so a restart resumes after the last one applied.
    fn apply_view_step(&self) -> Result<u64, StoreError>;
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
    /// Stores several cosignatures in one durable transaction, each as [`HubStore::add_cosignature`]
    /// would, in order; returns one outcome per cosignature (one refused, e.g. Conflict for a
    /// size with no checkpoint, does not keep the others from being stored). Err: the transaction
    /// failed and none of them was stored.
    fn add_cosignatures(
        &self,
        batch: &[Cosignature],
    ) -> Result<Vec<Result<u32, StoreError>>, StoreError>;
    /// The cosignatures of the checkpoint of this size, ordered by witness_id.
    fn cosignatures(&self, size: u64) -> Result<Vec<Cosignature>, StoreError>;
    /// Statements with feed_index > after_index matching the filter, ascending, at most limit.
    fn list_statements(
        &self,
        filter: &StatementFilter,
        after_index: u64,
        limit: usize,
    ) -> Result<Vec<StoredStatement>, StoreError>;
    /// Like [`HubStore::list_statements`], but no more once the next statement's envelope and
    /// receipt would take the page past `max_bytes` (at least one), read row by row so a page
    /// of large statements is never held whole; also says whether more statements follow.
    fn list_statements_within(
        &self,
        filter: &StatementFilter,
        after_index: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<StoredStatement>, bool), StoreError>;
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
