//! The one implementation of the chunk rule (docs/spec/indicators.md §7): 10 000 observations
//! per chunk, halved for all chunks until every chunk is at most 4 MiB, at most 1 000 chunks.
//! It cuts as observations arrive: when a chunk outgrows 4 MiB, the chunks cut so far are cut
//! again from their own bytes with half the count, so the result is exactly that of cutting the
//! whole list at once. A snapshot that streams in keeps its chunks in its staging file; one that
//! is already whole (`PublishDocument`) keeps them in memory ([`InMemory`]).

use rcpfed_core::Digest;
use rcpfed_core::chunks::{
    MAX_CHUNK_BYTES, MAX_CHUNKS, OBSERVATIONS_PER_CHUNK, append_to_chunk, decode_chunk,
};
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use rcpfed_core::statement::{ChunkManifest, ChunkRef, Observation};
use rcpfed_store::{SnapshotStaging, StoreError};

/// Where the cutter keeps the chunks it has cut.
pub(crate) trait ChunkShelf {
    /// Why the shelf failed.
    type Error;
    /// Keeps a chunk's bytes; returns its id.
    fn put(&mut self, bytes: &[u8]) -> Result<i64, Self::Error>;
    /// The bytes of chunk `id`.
    fn get(&self, id: i64) -> Result<Vec<u8>, Self::Error>;
    /// Drops chunks `ids` (a cut redone with smaller chunks).
    fn remove(&mut self, ids: &[i64]) -> Result<(), Self::Error>;
    /// A kept chunk that did not read back: damage to the shelf, not a fault of the snapshot.
    fn damaged(what: String) -> Self::Error;
}

impl ChunkShelf for SnapshotStaging {
    type Error = StoreError;

    fn put(&mut self, bytes: &[u8]) -> Result<i64, StoreError> {
        self.put_chunk(bytes)
    }

    fn get(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        self.chunk(id)
    }

    fn remove(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        self.remove_chunks(ids)
    }

    fn damaged(what: String) -> StoreError {
        StoreError::Corrupt(what)
    }
}

/// Chunks in memory, for a snapshot that is already whole (its observations are in memory too).
#[derive(Default)]
pub(crate) struct InMemory(Vec<Option<Vec<u8>>>);

impl InMemory {
    /// Takes chunk `id` out.
    pub(crate) fn take(&mut self, id: i64) -> Option<Vec<u8>> {
        self.0.get_mut(usize::try_from(id).ok()?)?.take()
    }
}

/// The in-memory shelf's one failure: a chunk it kept did not read back (a bug, never input).
#[derive(Debug)]
pub(crate) struct Damaged(String);

impl ChunkShelf for InMemory {
    type Error = Damaged;

    fn put(&mut self, bytes: &[u8]) -> Result<i64, Self::Error> {
        self.0.push(Some(bytes.to_vec()));
        Ok(self.0.len() as i64 - 1)
    }

    fn get(&self, id: i64) -> Result<Vec<u8>, Self::Error> {
        // Ids come from `put`; the cutter reads only chunks it kept.
        Ok(usize::try_from(id)
            .ok()
            .and_then(|i| self.0.get(i))
            .and_then(Clone::clone)
            .unwrap_or_default())
    }

    fn remove(&mut self, ids: &[i64]) -> Result<(), Self::Error> {
        for id in ids {
            self.take(*id);
        }
        Ok(())
    }

    fn damaged(what: String) -> Damaged {
        Damaged(what)
    }
}

/// Why a cut failed: the snapshot breaks the chunk rule, or the shelf failed.
#[derive(Debug)]
pub(crate) enum CutError<E> {
    Rejected(Rejection),
    Shelf(E),
}

impl<E> From<E> for CutError<E> {
    fn from(e: E) -> Self {
        CutError::Shelf(e)
    }
}

/// Cuts chunks as observations arrive.
pub(crate) struct Cutter<S> {
    pub(crate) shelf: S,
    /// Observations per chunk: 10 000, halved while a chunk would exceed 4 MiB.
    per_chunk: usize,
    /// The chunks cut so far: (shelf id, manifest entry).
    cut: Vec<(i64, ChunkRef)>,
    /// The chunk being filled: its observations and its bytes.
    current: Vec<Observation>,
    bytes: Vec<u8>,
}

impl<S: ChunkShelf> Cutter<S> {
    pub(crate) fn new(shelf: S) -> Self {
        Cutter {
            shelf,
            per_chunk: OBSERVATIONS_PER_CHUNK,
            cut: Vec::new(),
            current: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// Adds the next observation; cuts again with smaller chunks when one outgrows 4 MiB.
    pub(crate) fn push(&mut self, o: Observation) -> Result<(), CutError<S::Error>> {
        if self.push_one(o)? {
            self.cut_smaller()?;
        }
        if self.cut.len() >= MAX_CHUNKS {
            // The chunk being filled would be one more than a manifest may list.
            return Err(CutError::Rejected(too_many_chunks()));
        }
        Ok(())
    }

    /// Whether nothing was cut yet and at most `OBSERVATIONS_PER_CHUNK` observations are in:
    /// a snapshot that may still be signed inline.
    pub(crate) fn is_one_chunk(&self) -> bool {
        self.cut.is_empty() && self.current.len() <= OBSERVATIONS_PER_CHUNK
    }

    /// The observations of the chunk being filled (all of them while [`Self::is_one_chunk`]).
    pub(crate) fn take_current(&mut self) -> Vec<Observation> {
        self.bytes.clear();
        std::mem::take(&mut self.current)
    }

    /// Adds `o` to the chunk being filled (keeping the previous one on the shelf when it is
    /// full, only now, so a snapshot of at most one chunk stays in memory for the inline form);
    /// true when the chunk is now over 4 MiB.
    fn push_one(&mut self, o: Observation) -> Result<bool, S::Error> {
        if self.current.len() >= self.per_chunk {
            self.shelve_current()?;
        }
        append_to_chunk(&mut self.bytes, &o);
        self.current.push(o);
        Ok(self.bytes.len() > MAX_CHUNK_BYTES as usize)
    }

    fn shelve_current(&mut self) -> Result<(), S::Error> {
        if self.current.is_empty() {
            return Ok(());
        }
        let id = self.shelf.put(&self.bytes)?;
        self.cut.push((
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

    /// Halves the chunk size and cuts everything so far again, from the shelved chunks' own
    /// bytes (checked against their hashes) and the chunk being filled, until every chunk fits.
    fn cut_smaller(&mut self) -> Result<(), CutError<S::Error>> {
        let old = std::mem::take(&mut self.cut);
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
                return Err(CutError::Rejected(Rejection::new(
                    RejectClass::TooLarge,
                    reasons::PAYLOAD_TOO_LARGE,
                    format!("an observation is larger than {MAX_CHUNK_BYTES} bytes"),
                )));
            }
            self.per_chunk /= 2;
            self.current.clear();
            self.bytes.clear();
            let mut over = false;
            'replay: for (index, (id, _)) in old.iter().enumerate() {
                let bytes = self.shelf.get(*id)?;
                let observations = decode_chunk(&old_manifest, index, &bytes).map_err(|r| {
                    CutError::Shelf(S::damaged(format!(
                        "a chunk kept while cutting did not read back: {}",
                        r.message
                    )))
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
                self.shelf.remove(&ids)?;
                return Ok(());
            }
            // Still too large: drop this attempt and halve again.
            let partial: Vec<i64> = self.cut.drain(..).map(|(id, _)| id).collect();
            self.shelf.remove(&partial)?;
        }
    }

    /// The manifest of all `total` observations and the shelf ids of its chunks, in order.
    pub(crate) fn finish(
        &mut self,
        total: usize,
    ) -> Result<(ChunkManifest, Vec<i64>), CutError<S::Error>> {
        self.shelve_current()?;
        if self.cut.len() > MAX_CHUNKS {
            return Err(CutError::Rejected(too_many_chunks()));
        }
        let cut = std::mem::take(&mut self.cut);
        let manifest = ChunkManifest {
            observation_count: total as u64,
            chunks: cut.iter().map(|(_, r)| r.clone()).collect(),
        };
        Ok((manifest, cut.into_iter().map(|(id, _)| id).collect()))
    }
}

/// Cuts a whole snapshot's observations: the manifest and each chunk's bytes, in order.
pub(crate) fn cut_whole(
    observations: Vec<Observation>,
) -> Result<(ChunkManifest, Vec<Vec<u8>>), Rejection> {
    let total = observations.len();
    let mut cutter = Cutter::new(InMemory::default());
    let cut = observations
        .into_iter()
        .try_for_each(|o| cutter.push(o))
        .and_then(|()| cutter.finish(total));
    let (manifest, ids) = match cut {
        Ok(cut) => cut,
        Err(CutError::Rejected(r)) => return Err(r),
        Err(CutError::Shelf(Damaged(what))) => {
            return Err(Rejection::new(
                RejectClass::Precondition,
                reasons::PAYLOAD_MALFORMED,
                what,
            ));
        }
    };
    let bytes = ids
        .into_iter()
        .map(|id| cutter.shelf.take(id).unwrap_or_default())
        .collect();
    Ok((manifest, bytes))
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

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use rcpfed_core::chunks::encode_chunks;
    use rcpfed_core::statement::ObservationAction;

    fn observations(n: usize, text: usize) -> Vec<Observation> {
        (0..n)
            .map(|i| Observation {
                action: ObservationAction::Append,
                ref_area: "LKA".into(),
                time_period: format!("{}", 1000 + i),
                dimensions: Vec::new(),
                obs_value: Some(i as f64),
                obs_status: "A".into(),
                unit_measure: "PS".into(),
                unit_mult: 0,
                conf_status: String::new(),
                footnote: "f".repeat(text),
                source: String::new(),
            })
            .collect()
    }

    /// The rule written out: the largest count from 10 000 down by halving at which every
    /// chunk fits, as `encode_chunks` cuts a whole list.
    fn by_the_rule(all: &[Observation]) -> (ChunkManifest, Vec<Vec<u8>>) {
        let mut per_chunk = OBSERVATIONS_PER_CHUNK;
        loop {
            let (manifest, bytes) = encode_chunks(all, per_chunk);
            if manifest
                .chunks
                .iter()
                .all(|c| c.byte_length <= MAX_CHUNK_BYTES)
            {
                return (manifest, bytes);
            }
            per_chunk /= 2;
        }
    }

    #[test]
    fn cutting_as_rows_arrive_gives_the_chunks_of_the_rule() {
        // Short rows: chunks of 10 000. Rows of ~2 KB: 10 000 would be 20 MB, so 1 250.
        for (n, text) in [(25_001, 0), (10_001, 2_000), (3, 0)] {
            let all = observations(n, text);
            let (manifest, bytes) = cut_whole(all.clone()).expect("cut");
            let (want_manifest, want_bytes) = by_the_rule(&all);
            assert_eq!(manifest, want_manifest, "{n} rows of {text} bytes");
            assert_eq!(bytes, want_bytes, "{n} rows of {text} bytes");
        }
    }

    #[test]
    fn an_observation_over_4_mib_is_refused_in_plain_words() {
        let huge = observations(1, MAX_CHUNK_BYTES as usize + 1);
        let r = cut_whole(huge).expect_err("one row over 4 MiB");
        assert_eq!(r.reason, reasons::PAYLOAD_TOO_LARGE);
        assert!(
            r.message.contains("an observation is larger than"),
            "{}",
            r.message
        );
    }
}
