//! The README's grpcurl commands, run with the real grpcurl against a real hub and node, and the
//! ops port's /metrics over plain HTTP/1.1.

use crate::harness::{Cluster, FAST_COHERENCE, TIMEOUT, publish_request};
use rcpfed_proto::v1;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// grpcurl: $RCPFED_GRPCURL (scripts/test.sh sets it), else `grpcurl` on PATH, else the copy
/// scripts/install-tools.sh puts in .tools/. Never skipped: without grpcurl the test fails.
fn grpcurl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RCPFED_GRPCURL") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "RCPFED_GRPCURL={} does not exist; run scripts/install-tools.sh",
            path.display()
        );
        return path;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("grpcurl");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/grpcurl");
    if installed.is_file() {
        return installed;
    }
    panic!(
        "grpcurl not found: set RCPFED_GRPCURL or put grpcurl on PATH; run scripts/install-tools.sh (scripts/test.sh does both)"
    );
}

struct Output {
    ok: bool,
    text: String,
}

struct Grpcurl {
    bin: PathBuf,
    tls: Vec<String>,
}

impl Grpcurl {
    fn new(c: &Cluster) -> Self {
        let fed = c.fed_dir();
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        Grpcurl {
            bin: grpcurl_binary(),
            tls: vec![
                "-cacert".into(),
                s(fed.join("ca.pem")),
                "-cert".into(),
                s(fed.join("members/operator/tls.pem")),
                "-key".into(),
                s(fed.join("members/operator/tls.key")),
            ],
        }
    }

    /// Runs `grpcurl $TLS [args…]` (or without TLS if `tls` is false).
    async fn run(&self, tls: bool, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(&self.bin);
        if tls {
            cmd.args(&self.tls);
        }
        cmd.args(args).kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("grpcurl {args:?} took more than 30 s"))
            .expect("running grpcurl");
        Output {
            ok: out.status.success(),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    async fn ok(&self, tls: bool, args: &[&str]) -> String {
        let out = self.run(tls, args).await;
        assert!(out.ok, "grpcurl {args:?} failed:\n{}", out.text);
        out.text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_commands_work() {
    let g_bin = grpcurl_binary(); // fail fast, before starting anything
    // Coherence reports on: the README reads one.
    let c = Cluster::start_with_env(&["colombo"], &[FAST_COHERENCE]).await;
    let g = Grpcurl::new(&c);
    assert_eq!(g.bin, g_bin);
    c.publish_policy("colombo", "Dhaka Declaration").await;
    let mut node = c.node_client("colombo", "operator").await;
    node.publish_document(v1::PublishDocumentRequest {
        document: "regions/colombo/indicators/remit-inflow".into(),
        body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
            v1::IndicatorSnapshot {
                indicator: "REMIT_INFLOW".into(),
                observations: vec![crate::harness::observation("LKA", "2023", 6.5).to_proto()],
                chunks: None,
            },
        )),
        ..Default::default()
    })
    .await
    .expect("indicator published");
    // A third document, so page_size matters below.
    node.publish_document(publish_request("colombo", "Kathmandu outcome"))
        .await
        .expect("policy published");
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 3).await, "delivered");

    let hub = format!("localhost:{}", c.hub_addr().port());
    let node_addr = format!("localhost:{}", c.node_addr("colombo").port());
    let ops = c.hub_ops().to_string();

    let list = g.ok(true, &[&hub, "list"]).await;
    assert!(list.contains("rcpfed.v1.HubService"), "{list}");
    assert!(list.contains("grpc.health.v1.Health"), "{list}");

    let health = g.ok(true, &[&hub, "grpc.health.v1.Health/Check"]).await;
    assert!(
        health.contains("SERVING") && !health.contains("NOT_SERVING"),
        "{health}"
    );

    let page = g
        .ok(
            true,
            &[
                "-d",
                r#"{"page_size": 2}"#,
                &hub,
                "rcpfed.v1.HubService/ListStatements",
            ],
        )
        .await;
    let page: serde_json::Value = serde_json::from_str(&page).expect("JSON");
    assert_eq!(
        page["statements"].as_array().map(Vec::len),
        Some(2),
        "{page}"
    );
    assert!(
        page["nextPageToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{page}"
    );

    let filtered = g
        .ok(
            true,
            &[
                "-d",
                r#"{"node_id": "colombo", "kind": "DOCUMENT_KIND_INDICATOR_SNAPSHOT"}"#,
                &hub,
                "rcpfed.v1.HubService/ListStatements",
            ],
        )
        .await;
    let filtered: serde_json::Value = serde_json::from_str(&filtered).expect("JSON");
    let statements = filtered["statements"].as_array().expect("statements");
    assert_eq!(statements.len(), 1, "{filtered}");
    assert_eq!(statements[0]["name"], "nodes/colombo/statements/2");

    let one = g
        .ok(
            true,
            &[
                "-d",
                r#"{"name": "nodes/colombo/statements/1"}"#,
                &hub,
                "rcpfed.v1.HubService/GetStatement",
            ],
        )
        .await;
    assert!(one.contains("colombo"), "{one}");
    assert!(
        one.contains("Dhaka Declaration"),
        "decoded statement shown: {one}"
    );

    g.ok(true, &[&hub, "rcpfed.v1.HubService/ListEquivocations"])
        .await;

    let members = g
        .ok(true, &[&hub, "rcpfed.v1.HubService/ListMembers"])
        .await;
    assert!(members.contains("Colombo Process"), "{members}");

    let status = g
        .ok(true, &[&node_addr, "rcpfed.v1.NodeService/GetNodeStatus"])
        .await;
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    assert_eq!(status["nodeId"], "colombo", "{status}");
    assert_eq!(status["headSeq"], "3", "{status}");

    let outbox = g
        .ok(true, &[&node_addr, "rcpfed.v1.NodeService/ListOutbox"])
        .await;
    assert!(outbox.contains("DELIVERY_STATE_DELIVERED"), "{outbox}");

    // The transparency log: the latest checkpoint (a C2SP signed note) and a witness's view.
    let checkpoint = g
        .ok(true, &[&hub, "rcpfed.v1.HubService/GetCheckpoint"])
        .await;
    assert!(checkpoint.contains("rcpfed/"), "{checkpoint}");
    let witness = g
        .ok(
            true,
            &[&node_addr, "rcpfed.v1.WitnessService/GetWitnessStatus"],
        )
        .await;
    assert!(witness.contains("witnessName"), "{witness}");

    // The registry in force, its history and the flagged statements.
    let registry = g
        .ok(true, &[&hub, "rcpfed.v1.HubService/GetRegistry"])
        .await;
    assert!(registry.contains("Colombo Process"), "{registry}");
    assert!(registry.contains("KEY_STATUS_ACTIVE"), "{registry}");
    let first = g
        .ok(
            true,
            &[
                "-d",
                r#"{"version": 1}"#,
                &hub,
                "rcpfed.v1.HubService/GetRegistry",
            ],
        )
        .await;
    assert!(first.contains("\"version\": \"1\""), "{first}");
    let versions = g
        .ok(true, &[&hub, "rcpfed.v1.HubService/ListRegistryVersions"])
        .await;
    assert!(
        versions.contains("application/vnd.rcpfed.registry.v1+protobuf"),
        "{versions}"
    );
    g.ok(true, &[&hub, "rcpfed.v1.HubService/ListFlaggedStatements"])
        .await;

    // Indicators: the README's IndicatorService commands, on the hub and on a node's mirror.
    let catalogue = g
        .ok(true, &[&hub, "rcpfed.v1.IndicatorService/GetCatalogue"])
        .await;
    assert!(catalogue.contains("REMIT_INFLOW"), "{catalogue}");
    assert!(
        catalogue.contains("application/vnd.rcpfed.catalogue.v1+protobuf"),
        "{catalogue}"
    );
    let first = g
        .ok(
            true,
            &[
                "-d",
                r#"{"version": 1}"#,
                &hub,
                "rcpfed.v1.IndicatorService/GetCatalogue",
            ],
        )
        .await;
    assert!(first.contains("\"version\": \"1\""), "{first}");
    let query = |body: &'static str, at: String| {
        let g = &g;
        async move {
            let text = g
                .ok(
                    true,
                    &[
                        "-d",
                        body,
                        &at,
                        "rcpfed.v1.IndicatorService/QueryObservations",
                    ],
                )
                .await;
            let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            json["observations"].as_array().cloned().unwrap_or_default()
        }
    };
    // LKA is the one published area; IND and PHL select nothing here.
    let none = query(
        r#"{"query": {"indicator": "REMIT_INFLOW", "ref_areas": ["IND", "PHL"], "start_period": "2015"}, "page_size": 100}"#,
        hub.clone(),
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    let as_of = query(
        r#"{"query": {"indicator": "REMIT_INFLOW", "as_of": "2030-01-01T00:00:00Z"}}"#,
        hub.clone(),
    )
    .await;
    assert_eq!(as_of.len(), 1, "{as_of:?}");
    assert_eq!(as_of[0]["observation"]["refArea"], "LKA", "{as_of:?}");
    assert_eq!(as_of[0]["provenance"]["nodeId"], "colombo", "{as_of:?}");
    let changes = query(
        r#"{"query": {"indicator": "REMIT_INFLOW", "updated_after": "2020-01-01T00:00:00Z", "include_history": true}}"#,
        hub.clone(),
    )
    .await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    let from_node = query(
        r#"{"query": {"indicator": "REMIT_INFLOW"}}"#,
        node_addr.clone(),
    )
    .await;
    assert_eq!(from_node, as_of, "the node's mirror answers like the hub");

    // The first coherence report follows the published content within a few intervals.
    let mut report = g
        .run(
            true,
            &[&hub, "rcpfed.v1.IndicatorService/GetCoherenceReport"],
        )
        .await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !report.ok && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = g
            .run(
                true,
                &[&hub, "rcpfed.v1.IndicatorService/GetCoherenceReport"],
            )
            .await;
    }
    assert!(report.ok, "no coherence report: {}", report.text);
    assert!(report.text.contains("coverage"), "{}", report.text);
    let numbered = g
        .ok(
            true,
            &[
                "-d",
                r#"{"number": 1}"#,
                &hub,
                "rcpfed.v1.IndicatorService/GetCoherenceReport",
            ],
        )
        .await;
    assert!(numbered.contains("\"number\": \"1\""), "{numbered}");
    let export = g
        .ok(
            true,
            &[
                "-d",
                r#"{"query": {"indicator": "REMIT_INFLOW"}, "format": "SDMX_FORMAT_CSV"}"#,
                &hub,
                "rcpfed.v1.IndicatorService/ExportSdmx",
            ],
        )
        .await;
    assert!(
        export.contains("application/vnd.sdmx.data+csv;version=2.0.0"),
        "{export}"
    );

    // An error prints its code and ErrorInfo reason.
    let missing = g
        .run(
            true,
            &[
                "-d",
                r#"{"name": "nodes/colombo/statements/99"}"#,
                &hub,
                "rcpfed.v1.HubService/GetStatement",
            ],
        )
        .await;
    assert!(!missing.ok, "a missing statement is an error");
    assert!(missing.text.contains("NotFound"), "{}", missing.text);
    assert!(missing.text.contains("NOT_FOUND"), "{}", missing.text);

    // curl http://<ops>/metrics
    let metrics = crate::harness::http_get(&ops, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("rcpfed_hub_statements_accepted"),
        "{metrics}"
    );

    // Last, so a failure here does not hide the checks above: the ops-port probe from the README.
    let probe = g
        .ok(false, &["-plaintext", &ops, "grpc.health.v1.Health/Check"])
        .await;
    assert!(
        probe.contains("SERVING") && !probe.contains("NOT_SERVING"),
        "{probe}"
    );
    // A node's link to the hub, as the README asks its ops port.
    let node_ops = c.node_ops("colombo").to_string();
    let link = g
        .ok(
            false,
            &[
                "-plaintext",
                "-d",
                r#"{"service": "rcpfed.hub-link"}"#,
                &node_ops,
                "grpc.health.v1.Health/Check",
            ],
        )
        .await;
    assert!(
        link.contains("SERVING") && !link.contains("NOT_SERVING"),
        "{link}"
    );
}
