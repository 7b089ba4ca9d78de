//! Smoke runs: every `rcpfed-bench` program runs to the end at a tiny size against the real
//! `rcpfed` binary, so a change to the store, the protocol or the statement format that breaks
//! a benchmark fails the test command. No timing is asserted; each run must succeed and print
//! its summary.
//!
//! The `rcpfed` binary is `RCPFED_BIN` if set, else `rcpfed` next to this test's target
//! directory (target/<profile>/rcpfed), which `cargo test --workspace` builds first, as does
//! `cargo build -p rcpfed`. The `snapshot` program needs the `sqlite3` shell (its baseline).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn rcpfed_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RCPFED_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let bin = profile_dir.join("rcpfed");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p rcpfed` (cargo test --workspace does), \
         or set RCPFED_BIN",
        bin.display()
    );
    bin
}

/// Runs `rcpfed-bench <args> --rcpfed <bin>`, fails with its output unless it succeeds, and
/// gives its standard output.
fn bench(args: &[&str]) -> String {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rcpfed-bench"))
        .args(args)
        .arg("--rcpfed")
        .arg(rcpfed_bin())
        .output()
        .expect("running rcpfed-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rcpfed-bench {} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        args.join(" "),
        out.status
    );
    eprintln!(
        "rcpfed-bench {} ran in {:.1} s",
        args.join(" "),
        start.elapsed().as_secs_f64()
    );
    stdout
}

#[test]
fn ingest_runs_with_mirrors() {
    let out = bench(&[
        "ingest",
        "--clients",
        "2",
        "--per-client",
        "10",
        "--mirrors",
        "3",
        "--bare-connections",
        "2",
        "--bare-inflight",
        "2",
    ]);
    for line in [
        "rcpfed hub, durable before each receipt",
        "feed latency, receipt → all 3 mirrors",
        "late node, whole log mirrored (both cores)",
        "mirror CPU per feed entry, each node",
        "one core's floor for any hub",
        "ratio hub / bare ack driven hard",
        "load generator threads pinned to core 1",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn ingest_runs_paced() {
    let out = bench(&[
        "ingest",
        "--clients",
        "2",
        "--per-client",
        "10",
        "--mirrors",
        "1",
        "--bare-connections",
        "2",
        "--bare-inflight",
        "2",
        "--rate",
        "40",
    ]);
    for line in [
        "rcpfed hub, PACED at 40 statements/s offered",
        "feed latency, receipt → all 1 mirrors",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn log_grows_measures_and_resumes() {
    let dir = std::env::temp_dir().join(format!("rcpfed-bench-smoke-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();
    let common = [
        "--batch",
        "16",
        "--samples",
        "5",
        "--startups",
        "1",
        "--nodes",
        "2",
        "--dir",
        dir_arg.as_str(),
    ];
    let first = bench(&[&["log", "--sizes", "20,50"][..], &common[..]].concat());
    assert!(
        first.contains("| 50 |"),
        "no row for 50 entries in:\n{first}"
    );
    // A later run grows the same database further.
    let second = bench(&[&["log", "--sizes", "50,80"][..], &common[..]].concat());
    assert!(
        second.contains("| 50 | (existing) |") && second.contains("| 80 |"),
        "the second run did not resume at 50 entries:\n{second}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshot_runs_end_to_end() {
    let out = bench(&[
        "snapshot",
        "--observations",
        "2000",
        "--small",
        "200",
        "--batch",
        "500",
        "--sqlite-runs",
        "1",
        "--queries",
        "3",
    ]);
    for line in ["ratio rcpfed / sqlite3 .import", "regions in the view"] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn ingest_on_a_grown_log_against_an_empty_one() {
    let dir = std::env::temp_dir().join(format!(
        "rcpfed-bench-smoke-ingest-log-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();
    bench(&[
        "log",
        "--sizes",
        "2000",
        "--batch",
        "500",
        "--samples",
        "5",
        "--startups",
        "1",
        "--nodes",
        "2",
        "--dir",
        dir_arg.as_str(),
    ]);
    // Two rounds: the second continues each client's chain in both databases.
    let out = bench(&[
        "ingest",
        "--from-log",
        dir_arg.as_str(),
        "--clients",
        "2",
        "--per-client",
        "10",
        "--mirrors",
        "0",
        "--rounds",
        "2",
    ]);
    for line in [
        "round 2 large log",
        "2000-entry log",
        "ratio large log / empty log",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    // The grown database is copied, never written: a second run starts from 2000 entries again.
    let again = bench(&[
        "ingest",
        "--from-log",
        dir_arg.as_str(),
        "--clients",
        "2",
        "--per-client",
        "5",
        "--mirrors",
        "0",
    ]);
    assert!(
        again.contains("(     2000 entries)"),
        "the grown database changed:\n{again}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
