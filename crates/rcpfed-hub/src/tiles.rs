//! The hub's log as C2SP tlog-tiles, read from the store: the cosigned checkpoint, hash tiles
//! (runs of stored complete-subtree hashes, no hashing) and entry bundles (each leaf's
//! `PAE(payload_type, payload)`, the bytes its leaf hash is over). Served over HTTP by
//! [`router`] under the public listener's `/tlog`, and written to a directory by [`write_dir`]
//! for any static web server or CDN. The tile math is `rcpfed_core::tiles`.

use crate::log::{StoreSource, note_with_cosignatures};
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rcpfed_core::checkpoint::Checkpoint;
use rcpfed_core::envelope::{SignedEnvelope, pae};
use rcpfed_core::tiles::{self, NotInTree, Tile, TileKind};
use rcpfed_store::{HubStore, StoreError, StoredCheckpoint};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a tile could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    /// Part of the tile is beyond the latest checkpoint's tree.
    #[error("{0}")]
    NotInTree(#[from] NotInTree),
    /// An entry of the bundle is longer than a bundle can hold.
    #[error(
        "entry bundle {bundle}: log entry {leaf} is {bytes} bytes, more than the {max} a tlog-tiles entry bundle can hold; its leaf hash is in the level-0 tile, and ListLogEntries returns the entry"
    )]
    EntryTooLarge {
        /// The bundle's path.
        bundle: String,
        /// The leaf index of the entry.
        leaf: u64,
        /// Its length.
        bytes: usize,
        /// The bundle format's limit.
        max: usize,
    },
    /// The store failed or is inconsistent.
    #[error("reading the log: {0}")]
    Store(#[from] StoreError),
}

/// The latest checkpoint and its note followed by the witnesses' cosignature lines (what
/// `<prefix>/checkpoint` serves), or None while the log is empty.
pub fn latest_cosigned(
    store: &dyn HubStore,
) -> Result<Option<(StoredCheckpoint, String)>, StoreError> {
    let Some(latest) = store.latest_checkpoint()? else {
        return Ok(None);
    };
    let text = note_with_cosignatures(&latest.note, &store.cosignatures(latest.size)?);
    Ok(Some((latest, text)))
}

/// The bytes of `tile` in the tree of `tree_size` leaves (a size with a checkpoint, so every
/// node and entry below it is stored).
pub fn read_tile(store: &dyn HubStore, tile: Tile, tree_size: u64) -> Result<Vec<u8>, TileError> {
    match tile.kind {
        TileKind::Hashes { .. } => {
            let keys = tile.node_keys(tree_size)?;
            let hashes = store
                .log_nodes(&keys)?
                .into_iter()
                .zip(&keys)
                .map(|(hash, (level, index))| {
                    hash.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "log node ({level}, {index}) below the latest checkpoint is missing"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(tiles::hash_tile_bytes(&hashes))
        }
        TileKind::Entries => {
            let leaves = tile.leaf_range(tree_size)?;
            let mut bundle = Vec::new();
            let mut next = leaves.start;
            while next < leaves.end {
                // Leaf i is feed index i + 1; pages are bounded in bytes, whatever the entries' size.
                let rows = usize::try_from(leaves.end - next).unwrap_or(usize::MAX);
                let page = store.list_feed(next, rows, 4 * 1024 * 1024)?;
                if page.is_empty() {
                    return Err(StoreError::Corrupt(format!(
                        "log entry {next} below the latest checkpoint is missing"
                    ))
                    .into());
                }
                for statement in page {
                    if statement.feed_index != next + 1 {
                        return Err(StoreError::Corrupt(format!(
                            "the feed skips from leaf {next} to feed index {}",
                            statement.feed_index
                        ))
                        .into());
                    }
                    let envelope = SignedEnvelope::decode(&statement.envelope).map_err(|e| {
                        StoreError::Corrupt(format!("stored envelope {next} does not decode: {e}"))
                    })?;
                    let entry = pae(&envelope.payload_type, &envelope.payload);
                    let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLarge {
                        bundle: tile.path(),
                        leaf: next,
                        bytes: entry.len(),
                        max: tiles::MAX_BUNDLE_ENTRY_BYTES,
                    })?;
                    bundle.extend_from_slice(&len.to_be_bytes());
                    bundle.extend_from_slice(&entry);
                    next += 1;
                }
            }
            Ok(bundle)
        }
    }
}

/// How long a client or cache may keep the checkpoint: it changes at every commit.
const CHECKPOINT_CACHE: &str = "no-cache";
/// Tiles and bundles, full or partial, never change once they exist.
const TILE_CACHE: &str = "public, max-age=31536000, immutable";

fn plain(status: http::StatusCode, message: String) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn store_failure(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "tlog-tiles read failed");
    plain(
        http::StatusCode::SERVICE_UNAVAILABLE,
        format!("the log could not be read now, try again: {e}"),
    )
}

async fn checkpoint(State(store): State<Arc<dyn HubStore>>) -> Response {
    match tokio::task::spawn_blocking(move || latest_cosigned(store.as_ref())).await {
        Ok(Ok(Some((_, text)))) => (
            [
                (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (http::header::CACHE_CONTROL, CHECKPOINT_CACHE),
            ],
            text,
        )
            .into_response(),
        Ok(Ok(None)) => plain(
            http::StatusCode::NOT_FOUND,
            "the log is empty: no checkpoint yet".into(),
        ),
        Ok(Err(e)) => store_failure(e),
        Err(e) => store_failure(e),
    }
}

async fn tile(State(store): State<Arc<dyn HubStore>>, UrlPath(rest): UrlPath<String>) -> Response {
    let tile = match Tile::parse(&format!("tile/{rest}")) {
        Ok(tile) => tile,
        Err(e) => return plain(http::StatusCode::BAD_REQUEST, e.to_string()),
    };
    let read = tokio::task::spawn_blocking(move || {
        let size = store.latest_checkpoint()?.map_or(0, |c| c.size);
        read_tile(store.as_ref(), tile, size)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => (
            [
                (http::header::CONTENT_TYPE, "application/octet-stream"),
                (http::header::CACHE_CONTROL, TILE_CACHE),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(TileError::NotInTree(e))) => plain(http::StatusCode::NOT_FOUND, e.to_string()),
        // The bundle format cannot express it; the rest of the log stays servable.
        Ok(Err(e @ TileError::EntryTooLarge { .. })) => {
            plain(http::StatusCode::NOT_IMPLEMENTED, e.to_string())
        }
        Ok(Err(TileError::Store(e))) => store_failure(e),
        Err(e) => store_failure(e),
    }
}

/// `GET checkpoint`, `GET tile/<L>/<N>[.p/<W>]` and `GET tile/entries/<N>[.p/<W>]`, to be
/// nested under the log's prefix (`/tlog`). Malformed tile paths are 400, tiles beyond the
/// latest checkpoint 404.
pub fn router(store: Arc<dyn HubStore>) -> axum::Router {
    axum::Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*rest}", get(tile))
        .with_state(store)
}

/// What [`write_dir`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// The tree size the directory held before (0 if it had no checkpoint).
    pub old_size: u64,
    /// The tree size it holds now.
    pub tree_size: u64,
    /// Tiles and bundles written.
    pub tiles_written: usize,
    /// Their bytes.
    pub bytes_written: u64,
    /// Bundles that could not be written, with why (an entry over 65 535 bytes).
    pub skipped: Vec<String>,
}

/// Why [`write_dir`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The log has no checkpoint yet.
    #[error("the log is empty: no checkpoint to write")]
    EmptyLog,
    /// The directory holds another log, or a checkpoint this log never had.
    #[error("{0}")]
    NotThisLog(String),
    /// Reading the store failed.
    #[error("reading the log: {0}")]
    Store(#[from] StoreError),
    /// Writing a file failed.
    #[error("writing {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a web server never
/// serves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let io = |error| WriteError::Io {
        path: path.to_path_buf(),
        error,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The checkpoint a directory already holds, checked to be a tree of this log: same origin,
/// not larger than the store's latest, and the same root as the store has for that size.
fn checkpoint_in_dir(
    store: &dyn HubStore,
    file: &Path,
    latest: &Checkpoint,
) -> Result<Option<Checkpoint>, WriteError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(WriteError::Io {
                path: file.to_path_buf(),
                error,
            });
        }
    };
    let not_ours = |why: String| {
        WriteError::NotThisLog(format!(
            "{} {why}; write to an empty directory, or remove it",
            file.display()
        ))
    };
    let note = rcpfed_core::note::parse_note(&text)
        .map_err(|e| not_ours(format!("is not a signed note: {e}")))?;
    let old =
        Checkpoint::parse(&note.text).map_err(|e| not_ours(format!("is not a checkpoint: {e}")))?;
    if old.origin != latest.origin {
        return Err(not_ours(format!(
            "is a checkpoint of log {:?}, not of {:?}",
            old.origin, latest.origin
        )));
    }
    if old.size > latest.size {
        return Err(not_ours(format!(
            "has tree size {}, larger than this log's latest checkpoint ({})",
            old.size, latest.size
        )));
    }
    let root = rcpfed_core::merkle::root(&StoreSource(store), old.size)?;
    if root != old.root {
        return Err(not_ours(format!(
            "has a root for tree size {} that this log does not have",
            old.size
        )));
    }
    Ok(Some(old))
}

/// Brings the tlog-tiles copy of the log in `dir` up to the store's latest checkpoint:
/// writes the tiles and bundles the new tree has that the directory's tree had not (all of
/// them for an empty directory), then `checkpoint` last, so a reader never meets a checkpoint
/// whose tiles are missing. Files are written through a rename. Partial tiles of earlier
/// sizes are left in place (the spec lets a log keep or drop them). Running it again at the
/// same size only refreshes the checkpoint's cosignatures.
pub fn write_dir(store: &dyn HubStore, dir: &Path) -> Result<WriteSummary, WriteError> {
    let (latest, text) = latest_cosigned(store)?.ok_or(WriteError::EmptyLog)?;
    let parsed = crate::log::checkpoint_of(&latest)?;
    let checkpoint_file = dir.join("checkpoint");
    let old_size = checkpoint_in_dir(store, &checkpoint_file, &parsed)?.map_or(0, |c| c.size);
    let mut summary = WriteSummary {
        old_size,
        tree_size: latest.size,
        tiles_written: 0,
        bytes_written: 0,
        skipped: Vec::new(),
    };
    for tile in tiles::new_tiles(old_size, latest.size) {
        match read_tile(store, tile, latest.size) {
            Ok(bytes) => {
                write_atomically(&dir.join(tile.path()), &bytes)?;
                summary.tiles_written += 1;
                summary.bytes_written += bytes.len() as u64;
            }
            Err(e @ TileError::EntryTooLarge { .. }) => summary.skipped.push(e.to_string()),
            Err(TileError::NotInTree(e)) => {
                return Err(StoreError::Corrupt(format!("tile planning: {e}")).into());
            }
            Err(TileError::Store(e)) => return Err(e.into()),
        }
    }
    write_atomically(&checkpoint_file, text.as_bytes())?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::testkit::{FEDERATION, obs, snapshot};
    use crate::ingest::{Ingest, ReceiptSigner};
    use rcpfed_core::keys::SecretKey;
    use rcpfed_core::merkle::{leaf_hash, root_from_leaves};
    use rcpfed_core::statement::ObservationAction;
    use rcpfed_store::SqliteHubStore;

    /// The chain head of each test node: (node, last seq, last digest).
    type Heads = Vec<(&'static str, u64, Option<rcpfed_core::Digest>)>;

    /// `per_node` real signed snapshots from each node, continuing its chain; the nodes submit
    /// concurrently so the sequencer commits them in batches.
    async fn log_statements(
        ingest: &Arc<Ingest>,
        key: &SecretKey,
        heads: &mut Heads,
        per_node: u64,
    ) {
        let mut tasks = Vec::new();
        for &(node, last, prev) in heads.iter() {
            let (ingest, key) = (Arc::clone(ingest), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut prev = prev;
                for seq in last + 1..=last + per_node {
                    let statement = snapshot(
                        &key,
                        node,
                        seq,
                        prev,
                        &format!("IND_{seq}"),
                        vec![obs(ObservationAction::Append, "BGD", Some(seq as f64))],
                    );
                    prev = Some(statement.digest);
                    ingest.submit(statement).await.expect("logged");
                }
                (node, last + per_node, prev)
            }));
        }
        let mut next = Vec::new();
        for task in tasks {
            next.push(task.await.expect("submitter"));
        }
        *heads = next;
    }

    /// The files `dir` holds for `tiles`, checked to be what the routes serve, and the leaves
    /// recomputed from the entry bundles.
    fn check_copy(store: &dyn HubStore, dir: &Path, size: u64) {
        let mut leaves = Vec::new();
        for tile in tiles::new_tiles(0, size) {
            let file = std::fs::read(dir.join(tile.path()))
                .unwrap_or_else(|e| panic!("{}: {e}", tile.path()));
            assert_eq!(
                file,
                read_tile(store, tile, size).expect("served"),
                "{}",
                tile.path()
            );
            if tile.kind == TileKind::Entries {
                let entries = tiles::decode_entry_bundle(&file).expect("a bundle");
                leaves.extend(entries.into_iter().map(leaf_hash));
            }
        }
        let text = std::fs::read_to_string(dir.join("checkpoint")).expect("checkpoint");
        let note = rcpfed_core::note::parse_note(&text).expect("a note");
        let checkpoint = Checkpoint::parse(&note.text).expect("a checkpoint");
        assert_eq!(checkpoint.size, size);
        assert_eq!(root_from_leaves(&leaves), checkpoint.root);
    }

    /// A store in `tmp` fed by a real sequencer, and the key its test statements are signed with.
    fn logging_store(tmp: &Path) -> (Arc<SqliteHubStore>, Arc<Ingest>, SecretKey) {
        let store = Arc::new(SqliteHubStore::open(&tmp.join("hub.sqlite")).expect("store"));
        let key = SecretKey::from_seed(&[7; 32]);
        let ingest = Arc::new(
            Ingest::start(
                Arc::clone(&store) as Arc<dyn crate::HubBackend>,
                ReceiptSigner {
                    federation_id: FEDERATION.into(),
                    hub_id: "gfmd".into(),
                    key: key.clone(),
                },
                crate::metrics::HubMetrics::register(
                    &mut prometheus_client::registry::Registry::default(),
                ),
            )
            .expect("sequencer"),
        );
        (store, ingest, key)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directory_copy_is_incremental_verifiable_and_refuses_another_log() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (store, ingest, key) = logging_store(tmp.path());
        let out = tmp.path().join("tiles");
        assert!(matches!(
            write_dir(store.as_ref(), &out),
            Err(WriteError::EmptyLog)
        ));

        let mut heads: Heads = vec![
            ("colombo", 0, None),
            ("abu-dhabi", 0, None),
            ("midwa", 0, None),
        ];
        log_statements(&ingest, &key, &mut heads, 100).await;
        let first = write_dir(store.as_ref(), &out).expect("written");
        assert_eq!((first.old_size, first.tree_size), (0, 300));
        assert_eq!(first.tiles_written, tiles::new_tiles(0, 300).len());
        assert!(first.skipped.is_empty());
        check_copy(store.as_ref(), &out, 300);

        log_statements(&ingest, &key, &mut heads, 100).await;
        let second = write_dir(store.as_ref(), &out).expect("written");
        assert_eq!((second.old_size, second.tree_size), (300, 600));
        // Only what 600 has and 300 had not: tiles 0/001, 0/002.p/88, 1/000.p/2, and bundles.
        assert_eq!(second.tiles_written, tiles::new_tiles(300, 600).len());
        assert_eq!(second.tiles_written, 5);
        check_copy(store.as_ref(), &out, 600);
        let again = write_dir(store.as_ref(), &out).expect("written");
        assert_eq!((again.old_size, again.tiles_written), (600, 0));

        // A directory holding a checkpoint this log never had is left alone.
        let text = std::fs::read_to_string(out.join("checkpoint")).expect("checkpoint");
        let root_line = text.lines().nth(2).expect("root line").to_string();
        for (forged, why) in [
            (
                text.replacen("\n600\n", "\n601\n", 1),
                "larger than this log's latest checkpoint",
            ),
            (
                text.replacen(
                    &root_line,
                    "q1h8a4ekJ8ZnRvlEW/TJ/IjDbeR6Vef3C+kaWCedK7Q=",
                    1,
                ),
                "that this log does not have",
            ),
            (
                text.replacen("fed-test", "another", 1),
                "is a checkpoint of log",
            ),
            ("not a note\n".to_string(), "is not a signed note"),
        ] {
            std::fs::write(out.join("checkpoint"), &forged).expect("forge");
            match write_dir(store.as_ref(), &out) {
                Err(WriteError::NotThisLog(message)) => {
                    assert!(message.contains(why), "{message}")
                }
                other => panic!("{forged:?} was not refused: {other:?}"),
            }
            assert_eq!(
                std::fs::read_to_string(out.join("checkpoint")).expect("checkpoint"),
                forged,
                "left alone"
            );
        }
    }

    /// A measurement, not run by default: the time `write_dir` takes for a log of
    /// `RCPFED_TILES_MEASURE_STATEMENTS` statements (default 30 000), checked like the copy
    /// above. `cargo test -p rcpfed-hub --lib tiles::tests::directory_write_time -- --ignored
    /// --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement; minutes to build the log"]
    async fn directory_write_time() {
        let statements: u64 = std::env::var("RCPFED_TILES_MEASURE_STATEMENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30_000);
        let tmp = tempfile::tempdir().expect("temp dir");
        let (store, ingest, key) = logging_store(tmp.path());
        let mut heads: Heads = vec![
            ("colombo", 0, None),
            ("abu-dhabi", 0, None),
            ("midwa", 0, None),
        ];
        let started = std::time::Instant::now();
        log_statements(&ingest, &key, &mut heads, statements.div_ceil(3)).await;
        let size = store
            .latest_checkpoint()
            .expect("read")
            .map_or(0, |c| c.size);
        eprintln!(
            "logged {size} statements in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let out = tmp.path().join("tiles");
        let started = std::time::Instant::now();
        let full = write_dir(store.as_ref(), &out).expect("written");
        let full_time = started.elapsed();
        log_statements(&ingest, &key, &mut heads, 1).await;
        let started = std::time::Instant::now();
        let update = write_dir(store.as_ref(), &out).expect("written");
        let update_time = started.elapsed();
        eprintln!(
            "tiles write of {size} entries: {} files, {} bytes in {:.3} s; then 3 more entries: {} files in {:.4} s",
            full.tiles_written,
            full.bytes_written,
            full_time.as_secs_f64(),
            update.tiles_written,
            update_time.as_secs_f64()
        );
        assert_eq!((full.old_size, update.old_size), (0, size));
        check_copy(store.as_ref(), &out, size + 3);
    }
}
