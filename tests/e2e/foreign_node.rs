//! A foreign member in the federation: tests/foreign/foreign_node.py, a node written in Python
//! from the proto files and docs/spec/ alone, against the real hub and a real Rust node.
//!
//! It takes the identity `pki init` gave midwa (whose Rust node is not started): its TLS
//! certificate and signing key, enrolled in registry version 1 like every member. It verifies
//! the whole feed (entries of the Rust node among them), publishes and cosigns, and checks the
//! hub's refusals; the Rust node then mirrors the Python-signed statement, which it verifies
//! with its own rules. So the spec and the proto are shown to be enough, at every commit.

use crate::harness::{Cluster, FAST_COHERENCE, TIMEOUT};
use std::path::Path;
use std::time::Duration;

/// Runs the foreign node as `member` once; returns its summary (what it verified and
/// published). Panics with its output unless it exits 0.
async fn run_foreign_node(c: &Cluster, member: &str, run: u32) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../foreign/foreign_node.py");
    let summary = c.root().join(format!("foreign-{member}-{run}.json"));
    let mut cmd = tokio::process::Command::new(crate::harness::venv_python(
        "grpcio, grpcio-tools and cryptography",
    ));
    cmd.arg(&script)
        .args(["--hub", &format!("localhost:{}", c.hub_addr().port())])
        .arg("--pki")
        .arg(c.fed_dir())
        .args(["--member", member])
        .arg("--summary")
        .arg(&summary)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the foreign node took more than 120 s")
        .expect("running the foreign node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the foreign node failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        c.logs()
    );
    let text = std::fs::read_to_string(&summary).expect("the foreign node's summary");
    serde_json::from_str(&text).expect("summary JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_python_node_interoperates_with_the_hub_and_a_rust_node() {
    // Coherence reports on, so the feed also carries the third kind of hub document.
    let c = Cluster::start_with_env(&["colombo"], &[FAST_COHERENCE]).await;
    c.publish_policy("colombo", "Colombo before the foreign node")
        .await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", 1).await,
        "colombo#1 delivered"
    );

    let first = run_foreign_node(&c, "midwa", 1).await;
    // A policy summary (seq 1), then indicator snapshots built from the catalogue: one in two
    // chunks through SubmitSnapshot (seq 2), one inline (seq 3).
    assert_eq!(first["own_seq"], 1, "{first}");
    assert_eq!(first["chunked_seq"], 2, "{first}");
    assert_eq!(first["snapshot_seq"], 3, "{first}");
    assert!(
        first["counts"]["foreign-implementation"].as_u64() >= Some(1),
        "the foreign node verified no statement of the Rust node: {first}"
    );
    assert!(first["consistency_proofs"].as_u64() >= Some(1), "{first}");

    // The hub's feed holds the foreign statements, the first where its receipt said.
    let on_hub = c.hub_statements_of("midwa").await;
    assert_eq!(on_hub.len(), 3, "midwa's statements on the hub: {on_hub:?}");
    assert_eq!(hex::encode(&on_hub[0].digest), first["own_digest"]);
    assert_eq!(on_hub[0].feed_index, first["own_feed_index"]);
    assert_eq!(hex::encode(&on_hub[2].digest), first["snapshot_digest"]);
    // The Rust node verified and mirrored it like any entry.
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo"]).await,
        "colombo mirrors the hub (fetching the chunks, applying the snapshots to its view), the foreign statements included"
    );

    // The hub reports on the new content (the foreign snapshot among it).
    assert_eventually!(
        c,
        TIMEOUT,
        !c.hub_statements_of("gfmd/coherence").await.is_empty(),
        "a coherence report on the hub"
    );

    // Both ways again: the Rust node publishes after the foreign one, which resumes its chain.
    c.publish_policy("colombo", "Colombo after the foreign node")
        .await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", 2).await,
        "colombo#2 delivered"
    );
    let second = run_foreign_node(&c, "midwa", 2).await;
    assert_eq!(second["own_seq"], 4, "{second}");
    assert_eq!(second["snapshot_seq"], 6, "{second}");
    assert!(
        second["counts"]["coherence"].as_u64() >= Some(1),
        "{second}"
    );
    assert!(
        second["counts"]["foreign-implementation"].as_u64() >= Some(2),
        "{second}"
    );
    assert_eq!(c.hub_statements_of("midwa").await.len(), 6);
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo"]).await,
        "colombo mirrors every foreign statement"
    );
    // Each run left one equivocation at its head (its deliberate bad input), stored as evidence.
    let evidence = c.equivocations().await;
    assert_eq!(
        evidence
            .iter()
            .filter(|e| e.node_id == "midwa")
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![3, 6]
    );
}
