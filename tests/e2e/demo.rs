//! `rcpfed demo --once`, the main job, as a user runs it.

use crate::harness::{BIN, HUB_PRELUDE};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_once_exchanges_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let mut cmd = tokio::process::Command::new(BIN.as_str());
    cmd.args(["demo", "--once", "--timeout-secs", "30", "--dir"])
        .arg(&dir)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the demo finishes within 60 s")
        .expect("running the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("mirrored on all 3 nodes"),
        "demo output:\n{stdout}\n{stderr}"
    );
    // The final checkpoint covers the whole log of the exchange: the hub prelude (registry
    // version 1, catalogue version 1) and the five sample statements (colombo 2, abu-dhabi 2,
    // midwa 1). The hub's coherence task (every 2 s by default) may already have logged its
    // first report on those statements by then, and nothing else can be logged before the
    // demo's next step: so one entry more at most.
    const SAMPLE_STATEMENTS: u64 = 5;
    let whole = HUB_PRELUDE + SAMPLE_STATEMENTS;
    let tree_size: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("final checkpoint: tree size "))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no final checkpoint in the demo output:\n{stdout}"));
    assert!(
        tree_size == whole || tree_size == whole + 1,
        "final checkpoint of size {tree_size}, expected {whole} (or {} with a coherence report):\n{stdout}",
        whole + 1
    );
    assert!(
        stdout.contains(&format!("mirror {whole}/{whole}"))
            || stdout.contains(&format!("mirror {}/{whole}", whole + 1)),
        "every node mirrors the hub prelude and the five statements:\n{stdout}"
    );
    // The offline verification of one bundle, every step passing.
    for step in [
        "✓ statement signature",
        "✓ receipt",
        "✓ checkpoint signature",
        "✓ inclusion",
        "✓ witness cosignatures",
    ] {
        assert!(
            stdout.contains(step),
            "missing {step:?} in demo output:\n{stdout}"
        );
    }
    assert!(!stdout.contains("✗"), "demo output:\n{stdout}");
    assert!(
        stdout.contains("grpcurl"),
        "the demo prints grpcurl commands"
    );
    // The public HTTPS listeners, on loopback, with their URLs: the hub's serves the log.
    assert!(
        stdout.lines().any(|l| l
            .trim()
            .strip_prefix("public read-only HTTPS https://localhost:")
            .is_some_and(|rest| rest.contains("C2SP tlog-tiles under /tlog/"))),
        "the demo prints the hub's public URL:\n{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("public HTTPS https://localhost:"))
            .count(),
        3,
        "the demo prints each node's public URL:\n{stdout}"
    );
}
