//! `PublishSnapshot` in bounded memory: the observations are checked, keyed and cut into chunks
//! as the batches arrive, and each full chunk goes to a scratch file ([`SnapshotStaging`]); the
//! node never holds more than a batch and one chunk, whatever the snapshot's size.
//!
//! The checks are the ones `PublishDocument` runs on a whole snapshot, row by row
//! ([`ObservationRows`]): the duplicate-key rule looks each key up in the staging file's key
//! index, the one-frequency rule keeps the first frequency, and the actions are checked against
//! the mirror one batch at a time. Chunks are cut by the rule of docs/spec/indicators.md §7: 10 000
//! observations, halved for all chunks until every chunk is at most 4 MiB; when a chunk
//! outgrows 4 MiB the chunks staged so far are cut again from their own bytes with half the
//! count, so the result is exactly that of cutting the whole snapshot at once.
//!
//! A stream that ends with a refusal, is abandoned or whose node stops leaves nothing: the
//! scratch file goes with the stream, and a node removes leftovers when it starts.

use super::PublishError;
use crate::NodeStorage;
use rcpfed_core::admission::actions::{self, MAX_ACTION_VIOLATIONS};
use rcpfed_core::admission::{AdmissionContext, chunked_observation_rows, fill_defaults_of_rows};
use rcpfed_core::catalogue::SignedCatalogue;
use rcpfed_core::chunks::{
    MAX_CHUNK_BYTES, MAX_CHUNKS, OBSERVATIONS_PER_CHUNK, append_to_chunk, decode_chunk,
};
use rcpfed_core::members::Federation;
use rcpfed_core::rejection::{RejectClass, Rejection, Violation, reasons};
use rcpfed_core::statement::{ChunkManifest, ChunkRef, Observation};
use rcpfed_core::validate::Findings;
use rcpfed_core::{Digest, clock};
use rcpfed_store::{SnapshotStaging, StoreError};
use std::sync::Arc;

/// Batches waiting between the gRPC stream and the checker: the stream waits (HTTP/2 flow
/// control) while the checker is busy.
pub(crate) const BATCHES_IN_FLIGHT: usize = 2;

/// What the gRPC handler passes to the checker.
pub(crate) enum StreamMessage {
    /// The next observations, in snapshot order.
    Batch(Vec<Observation>),
    /// The stream ended normally; without it, a closed channel means the stream was abandoned.
    End,
}

/// What a stream is checked against, fixed when it starts.
pub(crate) struct StreamContext {
    pub(crate) federation: Arc<Federation>,
    pub(crate) catalogue: Arc<SignedCatalogue>,
    pub(crate) node_id: String,
    pub(crate) store: Arc<dyn NodeStorage>,
    pub(crate) indicator: String,
    /// This node's head when the stream started: the actions are checked against the mirror
    /// only if that statement has come back through the feed.
    pub(crate) head_seq: u64,
}

/// How the actions were judged.
pub(crate) enum ActionCheck {
    /// Against the mirror as it was when the stream started at head `head_seq`: the
    /// violations in document order (repeated keys' second touches left out) and whether the
    /// check stopped at its limit.
    Checked {
        head_seq: u64,
        violations: Vec<Violation>,
        at_least: bool,
    },
    /// Not checked, with the note saying why.
    Skipped(String),
    /// Nothing to look up: the catalogue does not define the indicator (refused for that).
    NotApplicable,
}

/// The snapshot's observations in the form it will be signed in.
pub(crate) enum StreamedBody {
    /// At most [`OBSERVATIONS_PER_CHUNK`] observations, kept in memory: signed inline if the
    /// statement fits, otherwise cut like a `PublishDocument` snapshot.
    Small(Vec<Observation>),
    /// The chunks, staged in order (their ids in the staging file and their manifest).
    Chunked {
        manifest: ChunkManifest,
        staged: Vec<i64>,
    },
}

/// A stream that ended normally, checked and cut, ready to be signed.
pub(crate) struct StreamedSnapshot {
    pub(crate) indicator: String,
    pub(crate) catalogue: Arc<SignedCatalogue>,
    /// The observation rules and catalogue rules (the header is checked when signing).
    pub(crate) findings: Findings,
    pub(crate) actions: ActionCheck,
    /// Why the snapshot cannot be cut (too many chunks, an observation over 4 MiB): reported
    /// only if the observations themselves are acceptable, as for `PublishDocument`.
    pub(crate) cut_error: Option<Rejection>,
    pub(crate) body: StreamedBody,
    /// The scratch file of the staged chunks; removed when dropped.
    pub(crate) staging: SnapshotStaging,
}

impl StreamedSnapshot {
    /// The staged chunks in order, one at a time.
    pub(crate) fn chunk_reader(
        &self,
    ) -> impl FnMut() -> Result<Option<(Digest, Vec<u8>)>, StoreError> + '_ {
        let (refs, ids): (&[ChunkRef], &[i64]) = match &self.body {
            StreamedBody::Chunked { manifest, staged } => (&manifest.chunks, staged),
            StreamedBody::Small(_) => (&[], &[]),
        };
        let mut next = refs.iter().zip(ids);
        move || {
            next.next()
                .map(|(r, id)| Ok((r.sha256, self.staging.chunk(*id)?)))
                .transpose()
        }
    }
}

/// Checks and cuts the observations `messages` brings until [`StreamMessage::End`]; runs on a
/// blocking thread for the whole stream. An abandoned stream (the channel closes first) gives
/// None, and its staging goes with it.
pub(crate) fn check_and_stage(
    cx: StreamContext,
    mut messages: tokio::sync::mpsc::Receiver<StreamMessage>,
) -> Result<Option<StreamedSnapshot>, PublishError> {
    let staging = cx.store.publish_staging()?;
    let catalogue = &cx.catalogue.catalogue;
    let member = AdmissionContext::new(&cx.federation, &cx.node_id, clock::now_utc(), None)?
        .with_catalogue(Some(catalogue));
    let mut rows = chunked_observation_rows(&cx.indicator, &member);
    // The defaults the signed statement names (filled in before anything is checked, as for
    // PublishDocument).
    let fill: Vec<(String, String)> = catalogue
        .indicator(&cx.indicator)
        .map(|i| i.key_defaults())
        .unwrap_or_default();
    let mut actions = Actions::start(&cx)?;
    let mut cutter = Cutter::new(staging);
    let mut cut_error = None;
    let mut seen = 0usize;
    loop {
        let batch = match messages.blocking_recv() {
            Some(StreamMessage::Batch(batch)) => batch,
            Some(StreamMessage::End) => break,
            // Abandoned: nobody waits for an answer; the staging goes with this frame.
            None => return Ok(None),
        };
        let mut batch = batch;
        fill_defaults_of_rows(&fill, &mut batch);
        let repeats = cutter.staging.check_rows(&mut rows, seen, &batch)?;
        actions.check(&cx, seen, &batch, &repeats)?;
        seen += batch.len();
        // A refused snapshot is not signed: cutting it would be wasted work.
        if cut_error.is_none() && !rows.has_errors() && !actions.found_any() {
            for o in batch {
                if let Err(e) = cutter.push(o) {
                    match e {
                        PublishError::Rejected(r) => cut_error = Some(r),
                        store => return Err(store),
                    }
                    break;
                }
            }
        }
    }
    let findings = rows.finish();
    let body = if cut_error.is_some() || !findings.is_ok() || actions.found_any() {
        StreamedBody::Small(Vec::new())
    } else {
        cutter.finish(seen)?
    };
    Ok(Some(StreamedSnapshot {
        indicator: cx.indicator,
        catalogue: Arc::clone(&cx.catalogue),
        findings,
        actions: actions.into_check(),
        cut_error,
        body,
        staging: cutter.staging,
    }))
}

/// The action check of a stream, one batch at a time.
enum Actions {
    Checking {
        head_seq: u64,
        /// Violations the store returned (its limit counts them all).
        returned: usize,
        violations: Vec<Violation>,
    },
    Skipped(String),
    /// The indicator is not in the catalogue: refused for that, nothing to look up.
    NotApplicable,
}

impl Actions {
    fn start(cx: &StreamContext) -> Result<Self, StoreError> {
        if cx.catalogue.catalogue.indicator(&cx.indicator).is_none() {
            return Ok(Actions::NotApplicable);
        }
        let head_seq = cx.head_seq;
        if !super::own_head_mirrored(cx.store.as_ref(), &cx.node_id, head_seq)? {
            return Ok(Actions::Skipped(super::actions_not_checked(head_seq)));
        }
        Ok(Actions::Checking {
            head_seq,
            returned: 0,
            violations: Vec::new(),
        })
    }

    /// Checks `batch` (observations `offset`…): `repeats` says which repeat an earlier key;
    /// their second touch is the duplicate rule's, not the action rule's.
    fn check(
        &mut self,
        cx: &StreamContext,
        offset: usize,
        batch: &[Observation],
        repeats: &[Option<u64>],
    ) -> Result<(), StoreError> {
        let Actions::Checking {
            returned,
            violations,
            ..
        } = self
        else {
            return Ok(());
        };
        let room = MAX_ACTION_VIOLATIONS.saturating_sub(*returned);
        if room == 0 {
            return Ok(());
        }
        let found = cx
            .store
            .check_observation_actions(&cx.node_id, &cx.indicator, batch, room)?;
        *returned += found.len();
        // The store names positions within the batch.
        let named = actions::in_whole_snapshot(found, offset, repeats)
            .ok_or_else(|| StoreError::Corrupt("the action check named no observation".into()))?;
        violations.extend(named);
        Ok(())
    }

    fn found_any(&self) -> bool {
        matches!(self, Actions::Checking { violations, .. } if !violations.is_empty())
    }

    fn into_check(self) -> ActionCheck {
        match self {
            Actions::Checking {
                head_seq,
                returned,
                violations,
            } => ActionCheck::Checked {
                head_seq,
                violations,
                at_least: returned >= MAX_ACTION_VIOLATIONS,
            },
            Actions::Skipped(note) => ActionCheck::Skipped(note),
            Actions::NotApplicable => ActionCheck::NotApplicable,
        }
    }
}

/// Cuts chunks as observations arrive (docs/spec/indicators.md §7).
struct Cutter {
    staging: SnapshotStaging,
    /// Observations per chunk: 10 000, halved while a chunk would exceed 4 MiB.
    per_chunk: usize,
    /// The chunks cut so far: (staging id, manifest entry).
    staged: Vec<(i64, ChunkRef)>,
    /// The chunk being filled: its observations and its bytes.
    current: Vec<Observation>,
    bytes: Vec<u8>,
}

impl Cutter {
    fn new(staging: SnapshotStaging) -> Self {
        Cutter {
            staging,
            per_chunk: OBSERVATIONS_PER_CHUNK,
            staged: Vec::new(),
            current: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// Adds the next observation; cuts again with smaller chunks when one outgrows 4 MiB.
    fn push(&mut self, o: Observation) -> Result<(), PublishError> {
        if self.push_one(o)? {
            self.cut_smaller()?;
        }
        if self.staged.len() >= MAX_CHUNKS {
            // The chunk being filled would be one more than a manifest may list.
            return Err(too_many_chunks().into());
        }
        Ok(())
    }

    /// Adds `o` to the chunk being filled (staging the previous one when it is full, only now,
    /// so a snapshot of at most one chunk stays in memory for the inline form); true when the
    /// chunk is now over 4 MiB.
    fn push_one(&mut self, o: Observation) -> Result<bool, StoreError> {
        if self.current.len() >= self.per_chunk {
            self.stage_current()?;
        }
        append_to_chunk(&mut self.bytes, &o);
        self.current.push(o);
        Ok(self.bytes.len() > MAX_CHUNK_BYTES as usize)
    }

    fn stage_current(&mut self) -> Result<(), StoreError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let id = self.staging.put_chunk(&self.bytes)?;
        self.staged.push((
            id,
            ChunkRef {
                sha256: Digest::of(&self.bytes),
                observation_count: self.current.len() as u32,
                byte_length: self.bytes.len() as u32,
            },
        ));
        self.current.clear();
        self.bytes.clear();
        Ok(())
    }

    /// Halves the chunk size and cuts everything so far again, from the staged chunks' own
    /// bytes (checked against their hashes) and the chunk being filled, until every chunk fits.
    fn cut_smaller(&mut self) -> Result<(), PublishError> {
        let old = std::mem::take(&mut self.staged);
        let old_manifest = ChunkManifest {
            observation_count: old
                .iter()
                .map(|(_, r)| u64::from(r.observation_count))
                .sum(),
            chunks: old.iter().map(|(_, r)| r.clone()).collect(),
        };
        let tail = std::mem::take(&mut self.current);
        loop {
            if self.per_chunk == 1 {
                return Err(Rejection::new(
                    RejectClass::TooLarge,
                    reasons::PAYLOAD_TOO_LARGE,
                    format!("an observation is larger than {MAX_CHUNK_BYTES} bytes"),
                )
                .into());
            }
            self.per_chunk /= 2;
            self.current.clear();
            self.bytes.clear();
            let mut over = false;
            'replay: for (index, (id, _)) in old.iter().enumerate() {
                let bytes = self.staging.chunk(*id)?;
                let observations = decode_chunk(&old_manifest, index, &bytes).map_err(|r| {
                    StoreError::Corrupt(format!("a staged chunk does not read back: {r}"))
                })?;
                for o in observations {
                    if self.push_one(o)? {
                        over = true;
                        break 'replay;
                    }
                }
            }
            if !over {
                for o in &tail {
                    if self.push_one(o.clone())? {
                        over = true;
                        break;
                    }
                }
            }
            if !over {
                let ids: Vec<i64> = old.iter().map(|(id, _)| *id).collect();
                self.staging.remove_chunks(&ids)?;
                return Ok(());
            }
            // Still too large: drop this attempt and halve again.
            let partial: Vec<i64> = self.staged.drain(..).map(|(id, _)| id).collect();
            self.staging.remove_chunks(&partial)?;
        }
    }

    /// The snapshot's body once all `total` observations are in.
    fn finish(&mut self, total: usize) -> Result<StreamedBody, PublishError> {
        if self.staged.is_empty() && total <= OBSERVATIONS_PER_CHUNK {
            return Ok(StreamedBody::Small(std::mem::take(&mut self.current)));
        }
        self.stage_current()?;
        if self.staged.len() > MAX_CHUNKS {
            return Err(too_many_chunks().into());
        }
        let staged = std::mem::take(&mut self.staged);
        let manifest = ChunkManifest {
            observation_count: total as u64,
            chunks: staged.iter().map(|(_, r)| r.clone()).collect(),
        };
        Ok(StreamedBody::Chunked {
            manifest,
            staged: staged.into_iter().map(|(id, _)| id).collect(),
        })
    }
}

fn too_many_chunks() -> Rejection {
    Rejection::new(
        RejectClass::TooLarge,
        reasons::PAYLOAD_TOO_LARGE,
        format!(
            "the observations need more than {MAX_CHUNKS} chunks; a snapshot has at most {MAX_CHUNKS} chunks of at most {MAX_CHUNK_BYTES} bytes, so split it into several documents"
        ),
    )
}
