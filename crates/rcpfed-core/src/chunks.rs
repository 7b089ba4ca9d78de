//! Large snapshots: observations cut into chunks, each named by the SHA-256 of its exact bytes
//! in a small signed [`ChunkManifest`].
//!
//! Why: Ed25519 hashes the whole signed message with SHA-512 (about 0.6 GB/s), and one huge
//! gRPC message hits size limits. Signing a manifest of chunk hashes keeps the signature cheap
//! and lets chunks stream; SHA-256 of every chunk still binds every observation to the
//! signature. A receiver checks a chunk's length and hash BEFORE decoding it.

use crate::Digest;
use crate::rejection::{Rejection, Violation, reasons};
use crate::statement::{ChunkManifest, ChunkRef, Observation};
use prost::Message;
use rcpfed_proto::v1 as pb;

/// Observations per chunk the node cuts (about 0.5–1 MiB of protobuf per chunk).
pub const OBSERVATIONS_PER_CHUNK: usize = 10_000;

/// Largest chunk accepted, in bytes.
pub const MAX_CHUNK_BYTES: u32 = 4 * 1024 * 1024;

/// Largest number of chunks in one manifest (10 million observations at the default size).
pub const MAX_CHUNKS: usize = 1_000;

/// Most observations in one snapshot. A receiver holds them all while it checks the snapshot
/// (the duplicate-key rule spans every chunk), so this bounds its memory: without it, 4 MiB
/// chunks of near-empty observations would decode to hundreds of millions of them.
pub const MAX_SNAPSHOT_OBSERVATIONS: u64 = 10_000_000;

/// Encodes `observations` as chunks of at most `per_chunk` observations; returns the manifest
/// and the chunk bytes in order. `per_chunk` of 0 is taken as 1.
pub fn encode_chunks(
    observations: &[Observation],
    per_chunk: usize,
) -> (ChunkManifest, Vec<Vec<u8>>) {
    let per_chunk = per_chunk.max(1);
    let mut refs = Vec::new();
    let mut bytes = Vec::new();
    for part in observations.chunks(per_chunk) {
        let chunk = pb::ObservationChunk {
            observations: part.iter().map(Observation::to_proto).collect(),
        }
        .encode_to_vec();
        refs.push(ChunkRef {
            sha256: Digest::of(&chunk),
            observation_count: part.len() as u32,
            byte_length: chunk.len() as u32,
        });
        bytes.push(chunk);
    }
    (
        ChunkManifest {
            observation_count: observations.len() as u64,
            chunks: refs,
        },
        bytes,
    )
}

/// Appends `o` to the bytes of a chunk being cut: a chunk is its observations' fields one after
/// another, so a chunk built this way, one observation at a time, has exactly the bytes
/// [`encode_chunks`] gives for the same observations.
pub fn append_to_chunk(chunk: &mut Vec<u8>, o: &Observation) {
    prost::encoding::message::encode(1, &o.to_proto(), chunk);
}

/// A manifest rejection whose reason and field violation are both INVALID_CHUNK_MANIFEST.
fn manifest_error(field: String, reason: &'static str, description: String) -> Rejection {
    Rejection::invalid(reason, format!("{field}: {description}"))
        .with_violations(vec![Violation::new(field, reason, description)])
}

/// Checks that a manifest is well formed: at least one chunk, at most [`MAX_CHUNKS`], every
/// chunk non-empty and within [`MAX_CHUNK_BYTES`], counts adding up to at most
/// [`MAX_SNAPSHOT_OBSERVATIONS`].
pub fn check_manifest(m: &ChunkManifest) -> Result<(), Rejection> {
    let field = "indicator_snapshot.chunks";
    if m.observation_count > MAX_SNAPSHOT_OBSERVATIONS {
        return Err(manifest_error(
            format!("{field}.observation_count"),
            reasons::INVALID_CHUNK_MANIFEST,
            format!(
                "says {} observations; a snapshot holds at most {MAX_SNAPSHOT_OBSERVATIONS}, so split it into several documents",
                m.observation_count
            ),
        ));
    }
    if m.chunks.is_empty() || m.chunks.len() > MAX_CHUNKS {
        return Err(manifest_error(
            format!("{field}.chunks"),
            reasons::INVALID_CHUNK_MANIFEST,
            format!(
                "must list 1 to {MAX_CHUNKS} chunks, lists {}",
                m.chunks.len()
            ),
        ));
    }
    let mut total: u64 = 0;
    for (i, c) in m.chunks.iter().enumerate() {
        if c.observation_count == 0 || c.byte_length == 0 || c.byte_length > MAX_CHUNK_BYTES {
            return Err(manifest_error(
                format!("{field}.chunks[{i}]"),
                reasons::INVALID_CHUNK_MANIFEST,
                format!(
                    "a chunk needs at least one observation and 1 to {MAX_CHUNK_BYTES} bytes; \
                     this one lists {} observations in {} bytes",
                    c.observation_count, c.byte_length
                ),
            ));
        }
        total += u64::from(c.observation_count);
    }
    if total != m.observation_count {
        return Err(manifest_error(
            format!("{field}.observation_count"),
            reasons::INVALID_CHUNK_MANIFEST,
            format!(
                "says {} observations but the chunks hold {total}",
                m.observation_count
            ),
        ));
    }
    Ok(())
}

/// Checks chunk `index`'s bytes against the manifest (length, then SHA-256) and only then
/// decodes them. Observations are named in errors by their position in the whole snapshot
/// (the observations of the chunks before `index` come first).
pub fn decode_chunk(
    m: &ChunkManifest,
    index: usize,
    bytes: &[u8],
) -> Result<Vec<Observation>, Rejection> {
    let Some(r) = m.chunks.get(index) else {
        return Err(Rejection::invalid(
            reasons::CHUNK_MISMATCH,
            format!(
                "chunk {index} is not in the manifest, which lists {} chunks",
                m.chunks.len()
            ),
        ));
    };
    if bytes.len() != r.byte_length as usize {
        return Err(Rejection::invalid(
            reasons::CHUNK_MISMATCH,
            format!(
                "chunk {index} is {} bytes but the signed manifest says {}",
                bytes.len(),
                r.byte_length
            ),
        ));
    }
    if Digest::of(bytes) != r.sha256 {
        return Err(Rejection::invalid(
            reasons::CHUNK_MISMATCH,
            format!("chunk {index} does not match the SHA-256 in the signed manifest"),
        ));
    }
    let chunk = pb::ObservationChunk::decode(bytes).map_err(|e| {
        Rejection::invalid(
            reasons::PAYLOAD_MALFORMED,
            format!("chunk {index} is not a valid ObservationChunk: {e}"),
        )
    })?;
    if chunk.observations.len() != r.observation_count as usize {
        return Err(Rejection::invalid(
            reasons::CHUNK_MISMATCH,
            format!(
                "chunk {index} holds {} observations but the signed manifest says {}",
                chunk.observations.len(),
                r.observation_count
            ),
        ));
    }
    let first: usize = m.chunks[..index]
        .iter()
        .map(|c| c.observation_count as usize)
        .sum();
    chunk
        .observations
        .into_iter()
        .enumerate()
        .map(|(i, o)| Observation::from_proto(first + i, o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::ObservationAction;

    fn obs(i: usize) -> Observation {
        Observation {
            action: ObservationAction::Append,
            ref_area: "BGD".into(),
            time_period: format!("{}", 1900 + i),
            dimensions: Vec::new(),
            obs_value: Some(i as f64),
            obs_status: "A".into(),
            unit_measure: "persons".into(),
            unit_mult: 0,
            conf_status: String::new(),
            footnote: String::new(),
            source: String::new(),
        }
    }

    #[test]
    fn a_chunk_built_one_observation_at_a_time_has_the_bytes_of_encode_chunks() {
        let mut observations: Vec<Observation> = (0..7).map(obs).collect();
        observations[3].footnote = "a note, with \u{e9}".into();
        observations[4].dimensions = vec![("SEX".into(), "F".into())];
        let (manifest, whole) = encode_chunks(&observations, observations.len());
        let mut built = Vec::new();
        for o in &observations {
            append_to_chunk(&mut built, o);
        }
        assert_eq!(whole, [built.clone()]);
        assert_eq!(manifest.chunks[0].sha256, Digest::of(&built));
    }

    #[test]
    fn chunks_round_trip_and_detect_tampering() {
        let all: Vec<Observation> = (0..25).map(obs).collect();
        let (m, bytes) = encode_chunks(&all, 10);
        assert_eq!(m.chunks.len(), 3);
        assert_eq!(m.observation_count, 25);
        check_manifest(&m).expect("well formed");
        let mut back = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            back.extend(decode_chunk(&m, i, b).expect("chunk matches"));
        }
        assert_eq!(back, all);

        let mut bad = bytes[1].clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = decode_chunk(&m, 1, &bad).expect_err("flipped bit");
        assert_eq!(err.reason, reasons::CHUNK_MISMATCH);
        let err = decode_chunk(&m, 0, &bytes[1]).expect_err("wrong order");
        assert_eq!(err.reason, reasons::CHUNK_MISMATCH);
        let err = decode_chunk(&m, 3, &bytes[1]).expect_err("no such chunk");
        assert_eq!(err.reason, reasons::CHUNK_MISMATCH);
    }

    #[test]
    fn manifest_counts_must_add_up() {
        let all: Vec<Observation> = (0..5).map(obs).collect();
        let (mut m, _) = encode_chunks(&all, 2);
        m.observation_count = 6;
        assert_eq!(
            check_manifest(&m).expect_err("sum").reason,
            reasons::INVALID_CHUNK_MANIFEST
        );
        m.chunks.clear();
        m.observation_count = 0;
        assert_eq!(
            check_manifest(&m).expect_err("empty").reason,
            reasons::INVALID_CHUNK_MANIFEST
        );
    }

    #[test]
    fn manifest_holds_at_most_the_snapshot_limit() {
        // Two chunks whose counts add up, but to more than a receiver may hold.
        let all: Vec<Observation> = (0..2).map(obs).collect();
        let (mut m, _) = encode_chunks(&all, 1);
        let half = u32::try_from(MAX_SNAPSHOT_OBSERVATIONS / 2).expect("fits");
        for c in &mut m.chunks {
            c.observation_count = half + 1;
        }
        m.observation_count = 2 * u64::from(half + 1);
        let err = check_manifest(&m).expect_err("over the limit");
        assert_eq!(err.reason, reasons::INVALID_CHUNK_MANIFEST);
        assert_eq!(
            err.violations.first().map(|v| v.field.as_str()),
            Some("indicator_snapshot.chunks.observation_count")
        );
        for c in &mut m.chunks {
            c.observation_count = half;
        }
        m.observation_count = MAX_SNAPSHOT_OBSERVATIONS;
        check_manifest(&m).expect("exactly at the limit");
    }
}
