//! `rcpfed demo --once`, the main job, as a user runs it.

use crate::harness::BIN;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_once_exchanges_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let mut cmd = tokio::process::Command::new(BIN);
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
    // The final checkpoint and the offline verification of one bundle, every step passing.
    assert!(
        stdout.contains("final checkpoint: tree size 6"),
        "demo output:\n{stdout}"
    );
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
}
