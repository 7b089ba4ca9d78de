//! The log as C2SP tlog-tiles (issue 13), read as an outside client would: over the hub's
//! public HTTP listener, and from the directory `rcpfed tiles write` makes for a static web
//! server. Everything is checked with implementations no one here wrote: the `tlog_tiles`
//! crate (tiles, tree hashes, inclusion and consistency proofs) and the `signed_note` crate
//! (the checkpoint's signature); only the tlog-cosignature/v1 check of the witnesses' lines
//! and the entry bundle split are written here, from the specifications. The member file gives
//! the keys.
//!
//! The load: 3 × 90 statements after the hub's prelude, so the log passes 256 leaves (one full
//! level-0 tile, a partial one, and a partial level-1 tile).

use crate::harness::{ALL_NODES, BIN, Cluster, HUB_PRELUDE, PublicHttp, RawNode};
use rcpfed_core::envelope::pae;
use rcpfed_core::logkeys;
use rcpfed_core::members::Federation;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tlog_tiles::{TileHashReader, TileReader};

const PER_CLIENT: u64 = 90;

/// One HTTP/1.1 answer.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP/1.1 request over HTTPS on a fresh connection (`Connection: close`, so the body is
/// everything after the head).
fn http(public: &PublicHttp, method: &str, path: &str) -> Answer {
    let raw = public
        .exchange(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept-Encoding: identity\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("an answer from the public HTTPS port");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<HashMap<_, _>>();
    assert!(
        !headers
            .get("transfer-encoding")
            .is_some_and(|v| v.contains("chunked")),
        "expected a sized body"
    );
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Where a tlog-tiles copy of the log is read from: the hub over HTTP, or a directory.
trait Source: Sync {
    /// The resource at `path` below the log's prefix, None when it does not exist.
    fn get(&self, path: &str) -> Option<Vec<u8>>;
}

struct OverHttp(PublicHttp);

impl Source for OverHttp {
    fn get(&self, path: &str) -> Option<Vec<u8>> {
        let answer = http(&self.0, "GET", &format!("/tlog/{path}"));
        match answer.status {
            200 => Some(answer.body),
            404 => None,
            other => panic!(
                "GET /tlog/{path}: {other} {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }
}

struct InDirectory(PathBuf);

impl Source for InDirectory {
    fn get(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.0.join(path)).ok()
    }
}

/// `tlog_tiles` names tiles like the Go checksum database, with the tile height as an extra
/// path element (`tile/8/0/…`, `tile/8/data/…`); C2SP tlog-tiles has none (`tile/0/…`,
/// `tile/entries/…`).
fn c2sp_path(tile: &tlog_tiles::Tile) -> String {
    let go = tile.path();
    let rest = go.strip_prefix("tile/8/").expect("height-8 tiles");
    match rest.strip_prefix("data/") {
        Some(index) => format!("tile/entries/{index}"),
        None => format!("tile/{rest}"),
    }
}

/// A `tlog_tiles` tile reader over a [`Source`], caching what it fetched (tiles never change).
struct Tiles<'a> {
    source: &'a dyn Source,
    cache: Mutex<HashMap<String, Vec<u8>>>,
}

impl TileReader for Tiles<'_> {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        let mut cache = self.cache.lock().expect("cache");
        tiles
            .iter()
            .map(|tile| {
                let path = c2sp_path(tile);
                if let Some(bytes) = cache.get(&path) {
                    return Ok(bytes.clone());
                }
                let bytes = self.source.get(&path).ok_or_else(|| {
                    tlog_tiles::Error::InvalidInput(format!("{path} is not served"))
                })?;
                cache.insert(path, bytes.clone());
                Ok(bytes)
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[tlog_tiles::Tile], _data: &[Vec<u8>]) {}
}

/// A tlog-cosignature/v1 (Ed25519) key, for `signed_note`'s verification, written from the
/// C2SP tlog-cosignature specification: the key ID is SHA-256(name ‖ "\n" ‖ 0x04 ‖ key)[:4];
/// a signature is an 8-byte big-endian timestamp `t` and an Ed25519 signature over
/// "cosignature/v1\ntime {t}\n" followed by the checkpoint text.
struct CosignatureV1 {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl CosignatureV1 {
    fn new(name: &str, public_key: [u8; 32]) -> CosignatureV1 {
        let mut typed = vec![0x04];
        typed.extend_from_slice(&public_key);
        CosignatureV1 {
            name: name.to_string(),
            id: signed_note::key_id(name, &typed),
            key: ed25519_dalek::VerifyingKey::from_bytes(&public_key).expect("an Ed25519 key"),
        }
    }
}

impl signed_note::Verifier for CosignatureV1 {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <&[u8; 72]>::try_from(sig) else {
            return false;
        };
        let (time, signature) = sig.split_at(8);
        let time = u64::from_be_bytes(time.try_into().expect("8 bytes"));
        if time > i64::MAX as u64 {
            return false;
        }
        let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
        message.extend_from_slice(msg);
        let signature =
            ed25519_dalek::Signature::from_bytes(signature.try_into().expect("64 bytes"));
        self.key.verify_strict(&message, &signature).is_ok()
    }
}

/// Splits an entry bundle: each entry is a big-endian u16 length and that many bytes.
fn split_bundle(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "a bundle ends inside a length");
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        assert!(bytes.len() >= 2 + len, "a bundle entry runs past the end");
        out.push(bytes[2..2 + len].to_vec());
        bytes = &bytes[2 + len..];
    }
    out
}

/// A checkpoint the client has verified.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Verified {
    size: u64,
    root: tlog_tiles::Hash,
}

/// Reads the log from `source` as an outside client: the checkpoint verifies with the log key
/// and carries at least `min_cosigners` valid witness cosignatures; every entry of every bundle
/// hashes to its leaf in the authenticated level-0 tiles, and its inclusion proof built from
/// the tiles verifies; the tree is consistent with every `earlier` checkpoint. Returns the
/// checkpoint and the entries.
fn read_and_verify(
    source: &dyn Source,
    fed: &Federation,
    min_cosigners: usize,
    earlier: &[Verified],
) -> (Verified, Vec<Vec<u8>>) {
    let note_bytes = source.get("checkpoint").expect("a checkpoint is served");
    let note = signed_note::Note::from_bytes(&note_bytes).expect("the checkpoint is a signed note");
    let log_vkey = logkeys::log_verifier(fed)
        .expect("the hub's log key")
        .to_vkey();
    let mut verifiers: Vec<Box<dyn signed_note::Verifier>> = vec![Box::new(
        signed_note::StandardVerifier::new(&log_vkey).expect("the log's vkey"),
    )];
    for (_, witness) in logkeys::witness_verifiers(fed) {
        verifiers.push(Box::new(CosignatureV1::new(
            &witness.name,
            witness.key.to_bytes(),
        )));
    }
    let (verified, unverified) = note
        .verify(&signed_note::VerifierList::new(verifiers))
        .expect("every known signature on the checkpoint verifies");
    let log_name = logkeys::log_origin(&fed.federation_id);
    assert!(
        verified.iter().any(|s| s.name() == log_name),
        "the log key signed the checkpoint"
    );
    let cosigners = verified.iter().filter(|s| s.name() != log_name).count();
    assert!(
        cosigners >= min_cosigners,
        "{cosigners} witness cosignatures, expected at least {min_cosigners}"
    );
    assert!(
        unverified.is_empty(),
        "unknown signature lines: {unverified:?}"
    );
    let checkpoint =
        tlog_tiles::Checkpoint::from_bytes(note.text()).expect("the note text is a checkpoint");
    assert_eq!(checkpoint.origin(), log_name);
    let tree = Verified {
        size: checkpoint.size(),
        root: *checkpoint.hash(),
    };
    let tiles = Tiles {
        source,
        cache: Mutex::new(HashMap::new()),
    };
    // Every hash this reader returns comes from tiles it checked against the root.
    let hashes = TileHashReader::new(tree.size, tree.root, &tiles);
    let mut entries = Vec::new();
    for bundle in 0..tree.size.div_ceil(256) {
        let width = (tree.size - bundle * 256).min(256) as u32;
        let mut tile = tlog_tiles::Tile::new(8, 0, bundle, width, false);
        tile.set_is_data();
        let path = c2sp_path(&tile);
        let bytes = source
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is not served"));
        let bundle_entries = split_bundle(&bytes);
        assert_eq!(
            bundle_entries.len(),
            width as usize,
            "{path} holds its width"
        );
        entries.extend(bundle_entries);
    }
    for (index, entry) in entries.iter().enumerate() {
        let index = index as u64;
        let leaf = tlog_tiles::record_hash(entry);
        let stored = tlog_tiles::HashReader::read_hashes(
            &hashes,
            &[tlog_tiles::stored_hash_index(0, index)],
        )
        .expect("the leaf's tile verifies against the root");
        assert_eq!(stored, vec![leaf], "entry {index} hashes to its leaf");
        let proof = tlog_tiles::prove_record(tree.size, index, &hashes).expect("inclusion proof");
        tlog_tiles::check_record(&proof, tree.size, tree.root, index, leaf)
            .unwrap_or_else(|e| panic!("entry {index}: inclusion proof fails: {e}"));
    }
    for old in earlier {
        let proof =
            tlog_tiles::prove_tree(tree.size, old.size, &hashes).expect("consistency proof");
        tlog_tiles::check_tree(&proof, tree.size, tree.root, old.size, old.root).unwrap_or_else(
            |e| {
                panic!(
                    "size {} is not a prefix of size {}: {e}",
                    old.size, tree.size
                )
            },
        );
    }
    (tree, entries)
}

/// Waits until the served checkpoint has at least `size` leaves and two witness lines.
async fn wait_for_cosigned(c: &Cluster, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = c.hub_http();
    loop {
        let public = addr.clone();
        let answer = tokio::task::spawn_blocking(move || http(&public, "GET", "/tlog/checkpoint"))
            .await
            .expect("request");
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        let served = text
            .lines()
            .nth(1)
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0);
        if answer.status == 200 && served >= size && text.matches("/witness/").count() >= 2 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of size {size} with two cosignatures within 60 s; last:\n{text}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_tiles(fed_dir: &Path, out: &Path) -> String {
    let output = Command::new(BIN.as_str())
        .args(["tiles", "write", "--config"])
        .arg(fed_dir.join("hub.toml"))
        .arg("--dir")
        .arg(out)
        .output()
        .expect("running rcpfed tiles write");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "rcpfed tiles write failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn submit_load(c: &Cluster, per_client: u64, from: u64) {
    let mut clients = Vec::new();
    for node in ALL_NODES {
        let mut raw = RawNode::connect(c, node).await;
        clients.push(tokio::spawn(async move {
            for i in from..from + per_client {
                let st = raw.policy(&format!("Tiles {} {i}", raw.node_id));
                raw.accept(&st).await;
            }
            raw
        }));
    }
    for client in clients {
        client.await.expect("load client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_as_tlog_tiles_verifies_with_independent_clients_over_http_and_from_a_directory() {
    let c = Cluster::start_with_env(
        &ALL_NODES,
        &[
            ("RCPFED_NODE_WITNESS_INTERVAL_MS", "100"),
            ("RCPFED_HUB_HTTP_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    let fed = c.federation();
    let addr = c.hub_http();
    let out = c.root().join("tiles");

    // A first, small tree: read it over HTTP and write it to the directory.
    let first_size = HUB_PRELUDE + 3 * 5;
    submit_load(&c, 5, 0).await;
    wait_for_cosigned(&c, first_size).await;
    let (first, _) = {
        let fed = fed.clone();
        let source = OverHttp(addr.clone());
        tokio::task::spawn_blocking(move || read_and_verify(&source, &fed, 2, &[]))
            .await
            .expect("verify")
    };
    let written = write_tiles(c.fed_dir(), &out);
    assert!(written.contains("(was 0)"), "{written}");
    let (first_in_dir, _) = {
        let (fed, out) = (fed.clone(), out.clone());
        tokio::task::spawn_blocking(move || read_and_verify(&InDirectory(out), &fed, 2, &[]))
            .await
            .expect("verify")
    };
    assert!(first_in_dir.size >= first.size);

    // Past one full tile.
    let final_size = HUB_PRELUDE + 3 * PER_CLIENT;
    submit_load(&c, PER_CLIENT - 5, 5).await;
    wait_for_cosigned(&c, final_size).await;
    let earlier = [first, first_in_dir];
    let (last, entries) = {
        let fed = fed.clone();
        let source = OverHttp(addr.clone());
        tokio::task::spawn_blocking(move || read_and_verify(&source, &fed, 2, &earlier))
            .await
            .expect("verify")
    };
    assert_eq!(last.size, final_size);

    // The entries are the logged statements: PAE(type, payload) of each, in feed order.
    let statements = c.hub_statements().await;
    assert_eq!(statements.len() as u64, final_size);
    for (index, record) in statements.iter().enumerate() {
        let envelope = record.envelope.as_ref().expect("an envelope");
        assert_eq!(
            entries[index],
            pae(&envelope.payload_type, &envelope.payload),
            "entry {index} is {}",
            record.name
        );
    }

    // The directory, brought up to date incrementally, reads the same.
    let written = write_tiles(c.fed_dir(), &out);
    assert!(
        written.contains(&format!(
            "tree size {final_size} (was {})",
            first_in_dir.size
        )),
        "{written}"
    );
    let (in_dir, dir_entries) = {
        let (fed, out) = (fed.clone(), out.clone());
        tokio::task::spawn_blocking(move || {
            read_and_verify(&InDirectory(out), &fed, 2, &[first, first_in_dir])
        })
        .await
        .expect("verify")
    };
    assert_eq!((in_dir, dir_entries), (last, entries));
    assert!(out.join("tile/0/000").is_file(), "the full level-0 tile");
    assert!(out.join("tile/entries/000").is_file(), "the full bundle");
    assert!(
        out.join(format!("tile/1/000.p/{}", final_size / 256))
            .is_file(),
        "the level-1 partial tile"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlog_tiles_http_answers_follow_the_spec() {
    let c = Cluster::start_with_env(&[], &[("RCPFED_HUB_HTTP_LISTEN", "127.0.0.1:0")]).await;
    let addr = c.hub_http();
    let size = HUB_PRELUDE;
    tokio::task::spawn_blocking(move || {
        let checkpoint = http(&addr, "GET", "/tlog/checkpoint");
        assert_eq!(checkpoint.status, 200);
        assert_eq!(
            checkpoint.headers["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(checkpoint.headers["cache-control"], "no-cache");
        assert!(String::from_utf8_lossy(&checkpoint.body).contains(&format!("\n{size}\n")));

        let tile = http(&addr, "GET", &format!("/tlog/tile/0/000.p/{size}"));
        assert_eq!(tile.status, 200);
        assert_eq!(tile.body.len(), 32 * size as usize);
        assert_eq!(tile.headers["content-type"], "application/octet-stream");
        assert!(tile.headers["cache-control"].contains("immutable"));
        let bundle = http(&addr, "GET", &format!("/tlog/tile/entries/000.p/{size}"));
        assert_eq!(bundle.status, 200);
        assert_eq!(split_bundle(&bundle.body).len(), size as usize);
        assert_eq!(bundle.headers["content-type"], "application/octet-stream");
        // HEAD answers like GET, without the body.
        let head = http(&addr, "HEAD", "/tlog/tile/0/000.p/1");
        assert_eq!((head.status, head.body.len()), (200, 0));

        // Beyond the tree: 404, with what the tree has.
        for path in [
            "/tlog/tile/0/000",
            &format!("/tlog/tile/0/000.p/{}", size + 1),
            "/tlog/tile/0/001.p/1",
            "/tlog/tile/1/000.p/1",
            "/tlog/tile/entries/000",
            "/tlog/tile/9/000.p/1",
            "/tlog/tile/63/x018/x446/x744/x073/x709/x551/615.p/255",
        ] {
            let answer = http(&addr, "GET", path);
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            assert_eq!(answer.status, 404, "{path}: {text}");
            assert!(
                text.contains(&format!("beyond the tree of size {size}")),
                "{path}: {text}"
            );
        }
        // Not a tile path of the spec: 400, saying why.
        for path in [
            "/tlog/tile/00/000",
            "/tlog/tile/64/000",
            "/tlog/tile/0/x000/001",
            "/tlog/tile/0/1",
            "/tlog/tile/0/000.p/0",
            "/tlog/tile/0/000.p/256",
            "/tlog/tile/0/000.p/01",
            "/tlog/tile/entries",
            "/tlog/tile/data/000",
        ] {
            let answer = http(&addr, "GET", path);
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            assert_eq!(answer.status, 400, "{path}: {text}");
            assert!(text.contains("is not a tlog-tiles path"), "{path}: {text}");
        }
        // Anything else is not here; nothing can be written.
        let other = http(&addr, "GET", "/tlog/tiles/0/000");
        assert_eq!(other.status, 404);
        assert!(String::from_utf8_lossy(&other.body).contains("/tlog/checkpoint"));
        assert_eq!(http(&addr, "POST", "/tlog/checkpoint").status, 405);
    })
    .await
    .expect("checks");
}

#[test]
fn tiles_write_names_a_missing_database_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("tiles");
    let missing = tmp.path().join("no-such-hub.sqlite");
    let (code, _, stderr) = crate::harness::run_rcpfed(&[
        "tiles",
        "write",
        "--db",
        &missing.to_string_lossy(),
        "--dir",
        &out.to_string_lossy(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!missing.exists(), "no empty database was created");
    assert!(!out.exists(), "nothing was written");
    let (code, _, stderr) =
        crate::harness::run_rcpfed(&["tiles", "write", "--dir", &out.to_string_lossy()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--config hub.toml or --db"), "{stderr}");
}
