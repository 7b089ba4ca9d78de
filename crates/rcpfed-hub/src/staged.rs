//! A large snapshot received in bounded memory (`SubmitSnapshot`): each chunk is checked as it
//! arrives (length and SHA-256 against the signed manifest, then every observation rule of
//! the whole-snapshot check, row by row with [`ObservationRows`]) and written to a scratch
//! file ([`SnapshotStaging`]), whose key index also finds keys repeated across chunks. The
//! hub holds at most a few chunks of a snapshot in memory, whatever its size.
//!
//! The action check is made chunk by chunk too, against the view as it stands
//! ([`ActionsChecked`]), so the sequencer, which every member's statements go through, need
//! not read a large snapshot again unless the view it was checked against has changed for that
//! node and indicator ([`StagedSnapshot::check_actions`]). The commit reads the staged chunks
//! back one at a time ([`StagedChunks`]); the scratch file goes when the last
//! holder drops it (refused, abandoned or committed), and leftovers of a killed hub go when
//! it starts.

use rcpfed_core::Digest;
use rcpfed_core::admission::actions;
use rcpfed_core::admission::{AdmissionContext, ChunkedAdmission, ChunkedFindings};
use rcpfed_core::catalogue::SignedCatalogue;
use rcpfed_core::chunks::decode_chunk;
use rcpfed_core::members::Federation;
use rcpfed_core::rejection::{Rejection, Violation};
use rcpfed_core::statement::{ChunkManifest, Observation};
use rcpfed_core::validate::Findings;
use rcpfed_store::snapshot_staging::{needs_action_probes, nothing_in_force};
use rcpfed_store::{ChunkSource, IndicatorStore, SnapshotStaging, StoreError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// A chunked snapshot's chunks in a scratch file, in manifest order.
pub struct StagedSnapshot {
    manifest: Arc<ChunkManifest>,
    staging: Mutex<SnapshotStaging>,
    /// The id of each chunk in the staging file, in manifest order.
    ids: Vec<i64>,
    /// The action check made while the chunks arrived, if it was made.
    actions: Option<ActionsChecked>,
}

/// The action check of a snapshot made against the view as it was applied through feed index
/// `view_at`: it stands as long as no snapshot of the same node and indicator after `view_at`
/// has been accepted (only those change what that node has in force for that indicator), so
/// the sequencer need not read the snapshot again.
#[derive(Debug, Clone)]
pub struct ActionsChecked {
    /// How far the view was applied when the check started.
    pub view_at: u64,
    /// What it found (at most the limit), named by position in the whole snapshot.
    pub violations: Vec<Violation>,
}

impl std::fmt::Debug for StagedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedSnapshot")
            .field("chunks", &self.ids.len())
            .finish()
    }
}

impl StagedSnapshot {
    /// Chunk `position`: its SHA-256 and bytes.
    fn chunk(&self, position: usize) -> Result<(Digest, Vec<u8>), StoreError> {
        let (Some(id), Some(entry)) = (self.ids.get(position), self.manifest.chunks.get(position))
        else {
            return Err(StoreError::Corrupt(format!(
                "staged chunk {position} of {} is missing",
                self.ids.len()
            )));
        };
        let staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        Ok((entry.sha256, staging.chunk(*id)?))
    }

    /// The action check made while the chunks arrived, if it was made.
    pub fn actions_checked(&self) -> Option<&ActionsChecked> {
        self.actions.as_ref()
    }

    /// How many chunks are staged.
    pub fn chunk_count(&self) -> usize {
        self.ids.len()
    }

    /// The SHA-256 of each staged chunk, in order.
    pub fn digests(&self) -> Vec<Digest> {
        self.manifest.chunks.iter().map(|c| c.sha256).collect()
    }

    /// The observations of chunk `position`, decoded again from the staged bytes (which were
    /// checked against the manifest when they arrived).
    fn observations(&self, position: usize) -> Result<Vec<Observation>, StoreError> {
        let (_, bytes) = self.chunk(position)?;
        decode_chunk(&self.manifest, position, &bytes)
            .map_err(|r| StoreError::Corrupt(format!("staged chunk {position}: {}", r.message)))
    }

    /// The action check of every staged observation against what `node_id` has in force for
    /// `indicator`, chunk by chunk: at most `limit` violations, named by their position in
    /// the whole snapshot. The snapshot has no repeated key (the receive check refuses one),
    /// so chunks are independent.
    pub fn check_actions<S: IndicatorStore + ?Sized>(
        &self,
        store: &S,
        node_id: &str,
        indicator: &str,
        limit: usize,
    ) -> Result<Vec<Violation>, StoreError> {
        let mut found = Vec::new();
        let mut offset = 0;
        for position in 0..self.ids.len() {
            let room = limit.saturating_sub(found.len());
            if room == 0 {
                break;
            }
            let observations = self.observations(position)?;
            let part = store.check_observation_actions(node_id, indicator, &observations, room)?;
            found.extend(named_for_snapshot(part, offset, &[])?);
            offset += observations.len();
        }
        Ok(found)
    }
}

/// What the store's action check found in a part of a snapshot, named for the whole snapshot.
fn named_for_snapshot(
    found: Vec<Violation>,
    offset: usize,
    repeats: &[Option<u64>],
) -> Result<Vec<Violation>, StoreError> {
    actions::in_whole_snapshot(found, offset, repeats).ok_or_else(unnamed_action_violation)
}

/// A view whose action check named no observation.
fn unnamed_action_violation() -> StoreError {
    StoreError::Corrupt("the action check named no observation".into())
}

/// The chunks of several staged snapshots, one at a time, for the commit that stores them.
pub struct StagedChunks<'a> {
    snapshots: &'a [Arc<StagedSnapshot>],
    snapshot: usize,
    chunk: usize,
}

impl<'a> StagedChunks<'a> {
    /// Every chunk of `snapshots`, in order.
    pub fn new(snapshots: &'a [Arc<StagedSnapshot>]) -> Self {
        StagedChunks {
            snapshots,
            snapshot: 0,
            chunk: 0,
        }
    }
}

impl ChunkSource for StagedChunks<'_> {
    fn next_chunk(&mut self) -> Result<Option<(Digest, Vec<u8>)>, StoreError> {
        while let Some(staged) = self.snapshots.get(self.snapshot) {
            if self.chunk < staged.chunk_count() {
                self.chunk += 1;
                return staged.chunk(self.chunk - 1).map(Some);
            }
            self.snapshot += 1;
            self.chunk = 0;
        }
        Ok(None)
    }

    fn is_empty(&self) -> bool {
        self.snapshots.iter().all(|s| s.chunk_count() == 0)
    }
}

/// What a snapshot's chunks are checked against, fixed when the first chunk is read.
pub(crate) struct ReceiveContext {
    /// The view the action check reads.
    pub(crate) store: Arc<dyn crate::HubBackend>,
    pub(crate) federation: Arc<Federation>,
    pub(crate) catalogue: Arc<SignedCatalogue>,
    pub(crate) member_id: String,
    pub(crate) indicator: String,
    pub(crate) manifest: Arc<ChunkManifest>,
    /// Where the scratch file goes.
    pub(crate) staging_dir: PathBuf,
}

/// Why receiving stopped before the last chunk was checked.
pub(crate) enum ReceiveError {
    /// Chunk `index` does not match the manifest or is not a valid chunk.
    Chunk(usize, Rejection),
    /// The member may not submit (checked before any row).
    Refused(Rejection),
    /// The scratch file could not be written or read.
    Store(StoreError),
}

impl From<StoreError> for ReceiveError {
    fn from(e: StoreError) -> Self {
        ReceiveError::Store(e)
    }
}

/// A snapshot whose every chunk arrived and was checked: the staged chunks and what the
/// rows gave (the caller refuses on errors).
pub(crate) struct Received {
    pub(crate) staged: StagedSnapshot,
    pub(crate) findings: Findings,
}

/// Checks and stages the chunks `chunks` brings, in manifest order, until the manifest's
/// last; runs on a blocking thread for the whole transfer. None: the sender went away first
/// (the transfer failed or was abandoned), and the scratch file goes with this frame.
pub(crate) fn check_and_stage(
    cx: ReceiveContext,
    mut chunks: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<Option<Received>, ReceiveError> {
    let mut staging = SnapshotStaging::create_in(&cx.staging_dir)?;
    let member = AdmissionContext::new(
        &cx.federation,
        &cx.member_id,
        rcpfed_core::clock::now_utc(),
        Some(&cx.catalogue.catalogue),
    )
    .map_err(ReceiveError::Refused)?;
    let mut admission = ChunkedAdmission::start(&cx.indicator, &member);
    let mut ids = Vec::with_capacity(cx.manifest.chunks.len());
    // The action check, chunk by chunk while the observations are in memory, against the view
    // as applied from here on (see ActionsChecked for when the sequencer may rely on it).
    let view_at = cx.store.applied_feed_size()?;
    // Read after view_at: a snapshot of this indicator applied in between is after
    // view_at too, so the sequencer checks again (ActionsChecked).
    let nothing_in_force = nothing_in_force(cx.store.as_ref(), &cx.indicator)?;
    for index in 0..cx.manifest.chunks.len() {
        let Some(bytes) = chunks.blocking_recv() else {
            return Ok(None);
        };
        let observations =
            decode_chunk(&cx.manifest, index, &bytes).map_err(|r| ReceiveError::Chunk(index, r))?;
        let (rows, offset) = admission.rows();
        let repeats = staging.check_rows(rows, offset, &observations)?;
        // A refused snapshot is never stored: its bytes need not be kept, nor its actions
        // checked (every key is distinct once the rows pass).
        if !admission.has_errors() {
            ids.push(staging.put_chunk(&bytes)?);
            let room = admission.action_room();
            if room > 0 && needs_action_probes(nothing_in_force, &observations, &repeats) {
                let found = cx.store.check_observation_actions(
                    &cx.member_id,
                    &cx.indicator,
                    &observations,
                    room,
                )?;
                admission
                    .add_actions(found, &repeats)
                    .ok_or_else(unnamed_action_violation)?;
            }
        }
        admission.advance(observations.len());
    }
    let ChunkedFindings {
        findings,
        action_violations: violations,
        ..
    } = admission.finish();
    Ok(Some(Received {
        staged: StagedSnapshot {
            manifest: cx.manifest,
            staging: Mutex::new(staging),
            ids,
            actions: Some(ActionsChecked {
                view_at,
                violations,
            }),
        },
        findings,
    }))
}

/// Stages already-encoded chunks of `manifest` at once (unit tests: what [`check_and_stage`]
/// leaves for an acceptable snapshot, with the action check `actions` if given).
#[cfg(test)]
pub(crate) fn stage_for_test(
    manifest: ChunkManifest,
    bytes: &[Vec<u8>],
    actions: Option<ActionsChecked>,
) -> Result<StagedSnapshot, StoreError> {
    let mut staging =
        SnapshotStaging::create_in(&std::env::temp_dir().join("rcpfed-hub-test-staging"))?;
    let ids = bytes
        .iter()
        .map(|b| staging.put_chunk(b))
        .collect::<Result<_, _>>()?;
    Ok(StagedSnapshot {
        manifest: Arc::new(manifest),
        staging: Mutex::new(staging),
        ids,
        actions,
    })
}
