//! What operators read in the logs: a filter typo is an error at start-up (not silence), JSON
//! lines on request, and no colour codes when the output is not a terminal.

use crate::harness::{BIN, Cluster};
use std::process::Command;
use std::time::Duration;

#[test]
fn an_invalid_log_filter_stops_the_hub_at_start_up_with_the_closest_level() {
    let dir = tempfile::tempdir().unwrap();
    let fed = dir.path().join("fed");
    crate::harness::pki_init(&fed);
    let out = Command::new(BIN.as_str())
        .args(["hub", "--config"])
        .arg(fed.join("hub.toml"))
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .env("RCPFED_LOG", "degub")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the hub started: {stderr}");
    assert!(
        stderr.contains("\"degub\"") && stderr.contains("did you mean \"debug\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_on_request_and_no_colour_codes_off_a_terminal() {
    let c = Cluster::start_with_env(&["colombo"], &[("RCPFED_LOG_FORMAT", "json")]).await;
    c.publish_policy("colombo", "Logged as JSON").await;
    assert_eventually!(
        c,
        Duration::from_secs(10),
        c.delivered("colombo", 1).await,
        "delivered"
    );
    for name in ["hub", "colombo"] {
        let text = std::fs::read_to_string(c.root().join(format!("{name}.log"))).unwrap();
        assert!(
            !text.contains('\u{1b}'),
            "{name}: colour codes in a file:\n{text}"
        );
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("=====") && !l.trim().is_empty())
            .collect();
        assert!(!lines.is_empty(), "{name} logged nothing");
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
        }
    }
}
