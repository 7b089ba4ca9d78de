//! `rcpfed publish` tells the operator whether the hub has the statement ("delivered") or
//! whether it is only signed and queued at the node (hub unreachable), not one "signed" line
//! for both.

use crate::harness::{BIN, Cluster};
use std::path::Path;

fn policy_file(dir: &Path, slug: &str, title: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{slug}.toml"));
    std::fs::write(
        &path,
        format!(
            "document = \"regions/colombo/policies/{slug}\"\nstatus = \"draft\"\n\
             countries = [\"LKA\"]\n\n[title]\nen = \"{title}\"\n\n[summary]\nen = \"A test.\"\n"
        ),
    )
    .unwrap();
    path
}

async fn publish(c: &Cluster, file: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN.as_str())
        .arg("publish")
        .args([
            "--node",
            &format!("https://localhost:{}", c.node_addr("colombo").port()),
            "--pki",
        ])
        .arg(c.fed_dir())
        .args(extra)
        .arg("policy")
        .arg(file)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_says_delivered_or_queued_not_yet_delivered() {
    let mut c = Cluster::start(&["colombo"]).await;
    let first = policy_file(c.root(), "delivered-one", "Delivered while the hub is up");
    let (ok, stdout, stderr) = publish(&c, &first, &[]).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("signed: regions/colombo/policies/delivered-one"),
        "{stdout}"
    );
    assert!(stdout.contains("delivered: colombo#1"), "{stdout}");

    c.stop_hub().await;
    let second = policy_file(c.root(), "queued-one", "Queued while the hub is down");
    let (ok, stdout, stderr) = publish(&c, &second, &["--wait-delivery", "2"]).await;
    assert!(ok, "signed and queued is not a failure: {stdout}{stderr}");
    assert!(
        stdout.contains("queued, not yet delivered: colombo#2"),
        "{stdout}"
    );
    assert!(!stdout.contains("delivered: colombo#2 ("), "{stdout}");

    // The node delivers it by itself once the hub is back.
    c.start_hub().await;
    assert_eventually!(
        c,
        crate::harness::TIMEOUT,
        c.delivered("colombo", 2).await,
        "the queued statement is delivered after the hub returns"
    );
}
