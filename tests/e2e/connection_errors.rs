//! Connection mistakes of the CLI commands (issue 12): each is one line on stderr, printed once,
//! that says what is wrong and what to try, with a non-zero exit. A node's port where the hub
//! is expected and the reverse, `http://`, an ops port, another federation's CA, a `--pki`
//! directory, identity or key that is not there, nothing listening, a member posing as the
//! hub, a revoked client certificate. And `report coherence` answers from a node.

use crate::harness::{Cluster, FAST_COHERENCE, TIMEOUT, pki_init, revoke_cert, run_rcpfed_async};
use std::path::Path;
use std::time::{Duration, Instant};

/// `rcpfed <args>` must fail with one line on stderr, `error: …`, holding every one of
/// `expected`, and nothing on stdout. Returns the line.
async fn one_line_failure(args: &[String], expected: &[&str]) -> String {
    let (code, stdout, stderr) = run_rcpfed_async(args.to_vec()).await;
    assert_ne!(code, 0, "{args:?} succeeded:\n{stdout}{stderr}");
    assert!(stdout.is_empty(), "{args:?} printed on stdout:\n{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: one line on stderr expected:\n{stderr}"
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{args:?}: {line}");
    for part in expected {
        assert!(line.contains(part), "{args:?}: {part:?} is not in:\n{line}");
    }
    line.to_string()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A PKI directory holding only the operator's files that `keep` lets through (copied from
/// `fed`), to take a piece away.
fn partial_pki(fed: &Path, to: &Path, keep: impl Fn(&str) -> bool) {
    let operator = to.join("members").join("operator");
    std::fs::create_dir_all(&operator).unwrap();
    for (from, name) in [
        (fed.join("ca.pem"), "ca.pem"),
        (fed.join("federation.toml"), "federation.toml"),
        (
            fed.join("members/operator/tls.pem"),
            "members/operator/tls.pem",
        ),
        (
            fed.join("members/operator/tls.key"),
            "members/operator/tls.key",
        ),
    ] {
        if keep(name) {
            std::fs::copy(from, to.join(name)).unwrap();
        }
    }
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_mistake_is_one_line_that_says_what_to_do() {
    let c = Cluster::start(&["colombo"]).await;
    let fed = c.fed_dir().display().to_string();
    let hub = c.hub_endpoint();
    let node = format!("https://localhost:{}", c.node_addr("colombo").port());
    let hub_ops = format!("https://localhost:{}", c.hub_ops().port());
    let node_ops = format!("https://localhost:{}", c.node_ops("colombo").port());
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/sample/colombo/policy.toml"
    );
    let registry_v1 = c.fed_dir().join("registry/registry.v1.json");
    let registry_v1 = registry_v1.display().to_string();
    let out_dir = c.root().join("fetched").display().to_string();
    let sdmx_out = c.root().join("out.sdmx.csv").display().to_string();

    // The commands, each with the address and PKI directory given.
    let publish =
        |at: &str, pki: &str| strings(&["publish", "--pki", pki, "--node", at, "policy", policy]);
    let query = |at: &str, pki: &str| {
        strings(&[
            "query",
            "observations",
            "--pki",
            pki,
            "--endpoint",
            at,
            "--indicator",
            "REMIT_INFLOW",
        ])
    };
    let report =
        |at: &str, pki: &str| strings(&["report", "coherence", "--pki", pki, "--endpoint", at]);
    let export_sdmx = |at: &str, pki: &str| {
        strings(&[
            "export",
            "sdmx",
            "--pki",
            pki,
            "--endpoint",
            at,
            "--indicator",
            "REMIT_INFLOW",
            "--format",
            "csv",
            "--out",
            &sdmx_out,
        ])
    };
    let fetch = |at: &str, pki: &str| {
        strings(&[
            "registry",
            "fetch",
            "--pki",
            pki,
            "--hub",
            at,
            "--out-dir",
            &out_dir,
        ])
    };
    let registry_publish = |at: &str, pki: &str| {
        strings(&[
            "registry",
            "publish",
            &registry_v1,
            "--pki",
            pki,
            "--hub",
            at,
        ])
    };
    let export_bundle = |at: &str, pki: &str| {
        strings(&[
            "export",
            "bundle",
            "--pki",
            pki,
            "--hub",
            at,
            "--statement",
            "nodes/colombo/statements/1",
        ])
    };

    // The right addresses work (the arguments above are sound).
    let (code, stdout, stderr) = run_rcpfed_async(query(&node, &fed)).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = run_rcpfed_async(fetch(&hub, &fed)).await;
    assert_eq!(code, 0, "{stdout}{stderr}");

    // A node's port where the hub is expected: the hub's identity is refused (the PKI
    // directory's member file names the hub) ...
    for args in [
        fetch(&node, &fed),
        registry_publish(&node, &fed),
        export_bundle(&node, &fed),
    ] {
        one_line_failure(
            &args,
            &[
                &format!("{node} is not the hub"),
                "the member colombo",
                "--hub",
            ],
        )
        .await;
    }
    // ... and without a member file, the node's health check says it is a node (where the
    // first call used to fail with a bare UNIMPLEMENTED).
    let no_member_file = c.root().join("pki-without-federation-toml");
    partial_pki(c.fed_dir(), &no_member_file, |name| {
        name != "federation.toml"
    });
    let no_member_file = no_member_file.display().to_string();
    one_line_failure(
        &fetch(&node, &no_member_file),
        &[&format!("{node} is a node, not the hub"), "--hub"],
    )
    .await;

    // The hub's port where a node is expected.
    one_line_failure(
        &publish(&hub, &fed),
        &[&format!("{hub} is the hub, not a node"), "--node"],
    )
    .await;

    // http:// instead of https://.
    let plain = node.replace("https://", "http://");
    let line = one_line_failure(
        &publish(&plain, &fed),
        &["only mutual TLS", &format!("use {node}")],
    )
    .await;
    assert!(line.contains("--node"), "{line}");
    one_line_failure(
        &query(&hub.replace("https://", "http://"), &fed),
        &["use https://"],
    )
    .await;

    // An ops port (plaintext) where the gRPC port is expected.
    for (args, flag) in [
        (query(&hub_ops, &fed), "--endpoint"),
        (publish(&node_ops, &fed), "--node"),
        (fetch(&hub_ops, &fed), "--hub"),
    ] {
        one_line_failure(&args, &["does not answer TLS", "ops port", flag]).await;
    }

    // Another federation's CA.
    let other = c.root().join("other-federation");
    pki_init(&other);
    let other_ca = other.join("ca.pem").display().to_string();
    let other = other.display().to_string();
    for args in [
        query(&hub, &other),
        fetch(&hub, &other),
        publish(&node, &other),
    ] {
        one_line_failure(&args, &[&other_ca, "did not sign", "another federation"]).await;
    }

    // A --pki directory, an identity or a key that is not there.
    let nowhere = c.root().join("no-such-dir").display().to_string();
    for args in [report(&hub, &nowhere), export_sdmx(&hub, &nowhere)] {
        one_line_failure(&args, &["--pki", "no such directory", "rcpfed pki init"]).await;
    }
    let mut as_nobody = export_bundle(&hub, &fed);
    as_nobody.extend(strings(&["--identity", "nobody"]));
    one_line_failure(
        &as_nobody,
        &["--identity nobody", "identities in", "operator"],
    )
    .await;
    let no_key = c.root().join("pki-without-key");
    partial_pki(c.fed_dir(), &no_key, |name| {
        name != "members/operator/tls.key"
    });
    one_line_failure(
        &query(&hub, &no_key.display().to_string()),
        &["tls.key is missing", "private key"],
    )
    .await;
    assert!(
        !Path::new(&sdmx_out).exists(),
        "a failed export leaves no file"
    );

    // Nothing listens.
    let closed = format!("https://localhost:{}", free_port());
    for (args, role) in [
        (publish(&closed, &fed), "the node"),
        (query(&closed, &fed), "the hub or the node"),
        (registry_publish(&closed, &fed), "the hub"),
    ] {
        one_line_failure(&args, &["nothing listens at", "connection refused", role]).await;
    }

    // A revoked client certificate: the server's refusal (a TLS alert after the handshake)
    // is named, not "operation was canceled". Servers reload the CRL within seconds.
    revoke_cert(c.fed_dir(), "midwa");
    let mut as_midwa = query(&hub, &fed);
    as_midwa.extend(strings(&["--identity", "midwa"]));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (code, _, stderr) = run_rcpfed_async(as_midwa.clone()).await;
        if code != 0 && stderr.contains("CertificateRevoked") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked certificate is not named within {TIMEOUT:?}: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for args in [as_midwa.clone(), {
        let mut a = fetch(&hub, &fed);
        a.extend(strings(&["--identity", "midwa"]));
        a
    }] {
        one_line_failure(
            &args,
            &[
                "refused this client's certificate",
                "members/midwa/tls.pem",
                "CertificateRevoked",
            ],
        )
        .await;
    }
}

/// `rcpfed report coherence --endpoint <a node>` used to fail with UNIMPLEMENTED although a
/// node serves the report from its verified mirror: now the registry that holds the hub's key
/// is read from the node's mirror too, and the node's answer is the hub's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_coherence_is_verified_from_a_node() {
    let c = Cluster::start_with_env(&["colombo"], &[FAST_COHERENCE]).await;
    // Something to report on.
    c.publish_policy("colombo", "Coherence from a node").await;
    let deadline = Instant::now() + TIMEOUT;
    while c.coherence_report_at("colombo").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no coherence report at colombo within {TIMEOUT:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fed = c.fed_dir().display().to_string();
    let node = format!("https://localhost:{}", c.node_addr("colombo").port());
    let run = |at: String, format: &str| {
        strings(&[
            "report",
            "coherence",
            "--pki",
            &fed,
            "--endpoint",
            &at,
            "--number",
            "1",
            "--format",
            format,
        ])
    };
    let (code, stdout, stderr) = run_rcpfed_async(run(node.clone(), "table")).await;
    assert_eq!(code, 0, "report coherence at a node:\n{stdout}{stderr}");
    assert!(
        stdout.starts_with("verified: coherence report 1")
            && stdout.contains("(read from the node's mirror)"),
        "{stdout}"
    );
    let (code, at_node, stderr) = run_rcpfed_async(run(node, "json")).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, at_hub, stderr) = run_rcpfed_async(run(c.hub_endpoint(), "json")).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(at_node, at_hub, "the node's report is the hub's");
}
