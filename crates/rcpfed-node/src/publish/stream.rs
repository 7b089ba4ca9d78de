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
use super::cut::{CutError, Cutter};
use crate::NodeStorage;
use rcpfed_core::admission::{
    AdmissionContext, ChunkedAdmission, ChunkedFindings, fill_defaults_of_rows,
};
use rcpfed_core::catalogue::SignedCatalogue;
use rcpfed_core::members::Federation;
use rcpfed_core::rejection::{Rejection, Violation};
use rcpfed_core::statement::{ChunkManifest, ChunkRef, Observation};
use rcpfed_core::validate::Findings;
use rcpfed_core::{Digest, clock};
use rcpfed_store::{SnapshotStaging, StoreError, snapshot_staging};
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
    /// This node's head when the stream started: the actions are checked against the view
    /// only if that statement has come back through the feed and is applied to it.
    pub(crate) head_seq: u64,
}

/// How the actions were judged.
pub(crate) enum ActionCheck {
    /// Against the view as it was when the stream started at head `head_seq`: the
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
    let mut admission = ChunkedAdmission::start(&cx.indicator, &member);
    // The defaults the signed statement names (filled in before anything is checked, as for
    // PublishDocument).
    let fill = admission.key_defaults().to_vec();
    let actions = Actions::start(&cx)?;
    let mut cutter = Cutter::new(staging);
    let mut cut_error = None;
    loop {
        let batch = match messages.blocking_recv() {
            Some(StreamMessage::Batch(batch)) => batch,
            Some(StreamMessage::End) => break,
            // Abandoned: nobody waits for an answer; the staging goes with this frame.
            None => return Ok(None),
        };
        let mut batch = batch;
        fill_defaults_of_rows(&fill, &mut batch);
        let (rows, offset) = admission.rows();
        let repeats = cutter.shelf.check_rows(rows, offset, &batch)?;
        actions.check(&cx, &mut admission, &batch, &repeats)?;
        admission.advance(batch.len());
        // A refused snapshot is not signed: cutting it would be wasted work.
        if cut_error.is_none() && !admission.has_errors() && !admission.found_actions() {
            for o in batch {
                if let Err(e) = cutter.push(o) {
                    match e {
                        CutError::Rejected(r) => cut_error = Some(r),
                        CutError::Shelf(store) => return Err(store.into()),
                    }
                    break;
                }
            }
        }
    }
    let seen = admission.seen();
    let ChunkedFindings {
        findings,
        action_violations,
        actions_at_least,
    } = admission.finish();
    let body = if cut_error.is_some() || !findings.is_ok() || !action_violations.is_empty() {
        StreamedBody::Small(Vec::new())
    } else {
        streamed_body(&mut cutter, seen)?
    };
    Ok(Some(StreamedSnapshot {
        indicator: cx.indicator,
        catalogue: Arc::clone(&cx.catalogue),
        findings,
        actions: actions.into_check(action_violations, actions_at_least),
        cut_error,
        body,
        staging: cutter.shelf,
    }))
}

/// The snapshot's body once all `total` observations are in: kept in memory while it fits
/// one chunk (it may still be signed inline), otherwise its staged chunks.
fn streamed_body(
    cutter: &mut Cutter<SnapshotStaging>,
    total: usize,
) -> Result<StreamedBody, PublishError> {
    if cutter.is_one_chunk() {
        return Ok(StreamedBody::Small(cutter.take_current()));
    }
    match cutter.finish(total) {
        Ok((manifest, staged)) => Ok(StreamedBody::Chunked { manifest, staged }),
        Err(CutError::Rejected(r)) => Err(r.into()),
        Err(CutError::Shelf(store)) => Err(store.into()),
    }
}

/// Whether and how a stream's actions are checked; what they found is the admission's.
enum Actions {
    /// Against the mirror as it is at this node's head `head_seq`.
    Checking {
        head_seq: u64,
        /// The mirror holds nothing of this indicator (of any node): appends need no probe.
        nothing_in_force: bool,
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
        let nothing_in_force =
            snapshot_staging::nothing_in_force(cx.store.as_ref(), &cx.indicator)?;
        Ok(Actions::Checking {
            head_seq,
            nothing_in_force,
        })
    }

    /// Checks `batch` (the admission's current piece) against the mirror: `repeats` says
    /// which repeat an earlier key; their second touch is the duplicate rule's, not the action
    /// rule's.
    fn check(
        &self,
        cx: &StreamContext,
        admission: &mut ChunkedAdmission<'_>,
        batch: &[Observation],
        repeats: &[Option<u64>],
    ) -> Result<(), StoreError> {
        let Actions::Checking {
            nothing_in_force, ..
        } = self
        else {
            return Ok(());
        };
        let room = admission.action_room();
        if room == 0 || !snapshot_staging::needs_action_probes(*nothing_in_force, batch, repeats) {
            return Ok(());
        }
        let found = cx
            .store
            .check_observation_actions(&cx.node_id, &cx.indicator, batch, room)?;
        admission
            .add_actions(found, repeats)
            .ok_or_else(|| StoreError::Corrupt("the action check named no observation".into()))
    }

    fn into_check(self, violations: Vec<Violation>, at_least: bool) -> ActionCheck {
        match self {
            Actions::Checking { head_seq, .. } => ActionCheck::Checked {
                head_seq,
                violations,
                at_least,
            },
            Actions::Skipped(note) => ActionCheck::Skipped(note),
            Actions::NotApplicable => ActionCheck::NotApplicable,
        }
    }
}
