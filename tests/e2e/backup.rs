//! `rcpfed backup` and `rcpfed restore` on real hub and node processes: the backup is taken
//! while they serve, checked, and restored in place of a lost database; the restored hub's log
//! is the one every witness holds, and the federation carries on from it.

use crate::harness::{Cluster, TIMEOUT, publish_request, run_rcpfed};
use std::path::{Path, PathBuf};

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs rcpfed; panics with its output unless it exits 0; returns its standard output.
fn succeeds(args: &[&str]) -> String {
    let (code, out, err) = run_rcpfed(args);
    assert_eq!(code, 0, "rcpfed {args:?} failed:\n{out}{err}");
    out
}

/// Runs rcpfed; panics unless it fails; returns its standard error.
fn fails(args: &[&str]) -> String {
    let (code, out, err) = run_rcpfed(args);
    assert_ne!(code, 0, "rcpfed {args:?} should have failed:\n{out}{err}");
    err
}

/// After a hub restore: the hub's log is the `size` the witnesses hold; colombo (which had
/// `delivered` statements) publishes one more, it is delivered and mirrored by colombo and
/// midwa, and neither witness sees a fork.
pub(crate) async fn carries_on_after_restore(c: &Cluster, size: u64, delivered: u64) {
    assert_eq!(
        c.hub_checkpoint_size().await,
        size,
        "the log the witnesses hold"
    );
    c.publish_policy("colombo", "After the restore").await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", delivered + 1).await
            && c.mirrors_match_hub(&["colombo", "midwa"]).await,
        "the federation carries on from the restored hub"
    );
    for node in ["colombo", "midwa"] {
        assert!(
            !c.witness_status(node).await.forked,
            "{node}'s witness saw a fork after the restore"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_then_restore_of_a_lost_hub_database() {
    let mut c = Cluster::start(&["colombo", "midwa"]).await;
    for i in 1..=3 {
        c.publish_policy("colombo", &format!("Before the backup {i}"))
            .await;
    }
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 3).await, "delivered");
    let hub_config = c.fed_dir().join("hub.toml");
    let node_config = c.fed_dir().join("colombo.toml");
    let backups = c.root().join("backups");
    std::fs::create_dir_all(&backups).expect("backup dir");
    let hub_backup = backups.join("hub.sqlite");
    let node_backup = backups.join("colombo.sqlite");

    // Online: the hub and the node keep serving while the copies are taken.
    let out = succeeds(&[
        "backup",
        "hub",
        "--config",
        path(&hub_config),
        "--out",
        path(&hub_backup),
    ]);
    eprintln!("{out}");
    let size = c.hub_checkpoint_size().await;
    assert!(
        out.contains(&format!(
            "log of {size} entries reproduces the latest checkpoint"
        )),
        "{out}"
    );
    let out = succeeds(&[
        "backup",
        "node",
        "--config",
        path(&node_config),
        "--out",
        path(&node_backup),
    ]);
    assert!(out.contains("3 delivered"), "{out}");
    let again = fails(&[
        "backup",
        "hub",
        "--config",
        path(&hub_config),
        "--out",
        path(&hub_backup),
    ]);
    assert!(again.contains("already exists"), "{again}");

    // Never into a running hub's directory.
    let restore = [
        "restore",
        "hub",
        "--config",
        path(&hub_config),
        "--from",
        path(&hub_backup),
    ];
    let refused = fails(&restore);
    assert!(refused.contains("another rcpfed hub is using"), "{refused}");

    // A damaged backup is refused before anything changes.
    let damaged = backups.join("damaged.sqlite");
    std::fs::copy(&hub_backup, &damaged).expect("copy");
    {
        let conn = rusqlite::Connection::open(&damaged).expect("open copy");
        conn.execute(
            "UPDATE log_nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 1",
            [],
        )
        .expect("damage a leaf");
    }
    c.stop_hub().await;
    let refused = fails(&[
        "restore",
        "hub",
        "--config",
        path(&hub_config),
        "--from",
        path(&damaged),
        "--force",
    ]);
    assert!(refused.contains("stored log node (0, 1)"), "{refused}");
    // The hub's own database is in place: no --force, no change.
    let refused = fails(&restore);
    assert!(refused.contains("a database is already at"), "{refused}");

    // The machine is lost: the database is gone; restore the backup and start again.
    let db = c.hub_db();
    std::fs::remove_file(&db).expect("remove the hub database");
    for wal in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{wal}", db.display()));
    }
    let out = succeeds(&restore);
    eprintln!("{out}");
    assert!(out.contains("hub database restored"), "{out}");
    c.start_hub().await;
    carries_on_after_restore(&c, size, 3).await;

    // A node restored from a backup older than its last statement: it keeps the database it
    // replaces, takes back from the hub's feed what it signed after the backup, and signs
    // nothing new before that (else it would reuse seq 4: equivocation). The backup is made to
    // look as if an earlier release wrote it (node schema 10, before the kept mirror count):
    // the restore checks and upgrades a copy, and leaves the backup's bytes as they were.
    c.stop_node("colombo").await;
    {
        let conn = rusqlite::Connection::open(&node_backup).expect("open the node backup");
        conn.execute_batch(
            "DROP TRIGGER mirror_counted; DROP TRIGGER mirror_uncounted;
             DROP TABLE mirror_count; PRAGMA user_version = 10;
             PRAGMA journal_mode = DELETE;",
        )
        .expect("make the backup a version 10 file");
    }
    let backup_bytes = std::fs::read(&node_backup).expect("read the node backup");
    let out = succeeds(&[
        "restore",
        "node",
        "--config",
        path(&node_config),
        "--from",
        path(&node_backup),
        "--force",
    ]);
    assert!(out.contains("kept the previous database as"), "{out}");
    assert!(out.contains("node database restored"), "{out}");
    assert!(
        std::fs::read(&node_backup).expect("read the node backup again") == backup_bytes,
        "restoring changed the backup file"
    );
    for wal in ["-wal", "-shm"] {
        let beside = PathBuf::from(format!("{}{wal}", node_backup.display()));
        assert!(!beside.exists(), "restoring left {}", beside.display());
    }
    let marker = c
        .fed_dir()
        .join("data")
        .join("colombo")
        .join("restored-from-backup");
    assert!(marker.exists(), "no restore marker at {}", marker.display());
    c.restart_node("colombo").await;
    assert_eventually!(
        c,
        TIMEOUT,
        match c
            .node_client("colombo", "operator")
            .await
            .publish_document(publish_request("colombo", "After the node restore"))
            .await
        {
            Ok(published) => {
                assert_eq!(
                    published.into_inner().seq,
                    5,
                    "the chain continues after seq 4"
                );
                true
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                false
            }
        },
        "the restored node signs again once its mirror has caught up"
    );
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", 5).await && c.mirrors_match_hub(&["colombo", "midwa"]).await,
        "the restored node's new statement is delivered"
    );
    assert!(c.equivocations().await.is_empty(), "no equivocation");
    // The count the upgrade took from the restored rows, kept since by the inserts.
    let status = c
        .node_client("colombo", "operator")
        .await
        .get_node_status(rcpfed_proto::v1::GetNodeStatusRequest::default())
        .await
        .expect("colombo's status")
        .into_inner();
    assert_eq!(
        status.mirror_count, status.feed_cursor,
        "every feed entry mirrored once: {status:?}"
    );
    assert!(
        !marker.exists(),
        "the restore marker is removed once caught up"
    );
    let log = std::fs::read_to_string(c.root().join("colombo.log")).expect("node log");
    assert!(
        log.contains("adopted as delivered") && log.contains("seq=4"),
        "colombo did not take seq 4 back from the feed:\n{log}"
    );
}
