//! Nodes know who the hub is (issue 9, findings 3 and 10): a member's CA-signed certificate
//! presented as the hub is refused by the node; a consistency proof that does not verify is a
//! failed proof (counted, retried), not a fork; a registry cache that vouches for itself is
//! refused at start-up.

use crate::harness::{Cluster, HUB_ID, assert_refused, revoke_cert, run_rcpfed_async};
use rcpfed_core::checkpoint::{Checkpoint, sign_checkpoint};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::keys::SecretKey;
use rcpfed_core::logkeys;
use rcpfed_core::registry::{REGISTRY_PAYLOAD_TYPE, RootSet, add_root_signature, decode_and_check};
use rcpfed_proto::v1;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::Code;

/// A TLS server presenting `member`'s certificate (CA-signed, serverAuth, the same host names
/// as the hub's): counts the connections, and the handshakes that complete (the clients that
/// accepted it).
fn impostor(c: &Cluster, member: &str) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let tls = c.tls(member);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(&tls.key).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let dialled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let dials = Arc::clone(&dialled);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut sock) = stream else { continue };
            dials.fetch_add(1, Ordering::SeqCst);
            let config = Arc::clone(&config);
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(mut conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                while conn.is_handshaking() {
                    if conn.complete_io(&mut sock).is_err() {
                        return;
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                // Hold the connection a moment, then hang up.
                std::thread::sleep(Duration::from_millis(500));
            });
        }
    });
    (port, dialled, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_certificate_presented_as_the_hub_is_refused() {
    let mut c = Cluster::start(&[]).await;
    let (port, dialled, accepted) = impostor(&c, "colombo");
    c.start_node_towards("midwa", &format!("https://localhost:{port}"), &[])
        .await;
    assert_eventually!(
        c,
        Duration::from_secs(20),
        dialled.load(Ordering::SeqCst) >= 3,
        "midwa dials the impostor"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "midwa completed a TLS handshake with colombo posing as the hub\n{}",
        c.logs()
    );
    let log = c.root().join("midwa.log");
    assert_eventually!(
        c,
        Duration::from_secs(20),
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("SERVER IDENTITY REFUSED"),
        "midwa logs that it refuses colombo's certificate as the hub"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("spiffe://") && text.contains("/node/colombo"),
        "the log names the identity presented:\n{text}"
    );
    // A few more dials (mirror, outbox, witness retry) and none completes a handshake.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "midwa completed a TLS handshake with colombo posing as the hub\n{}",
        c.logs()
    );
}

/// The CLI, given a PKI directory whose member file names the hub, checks the hub's identity:
/// it does not complete a handshake with another member posing as the hub, and still works
/// with the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_a_member_posing_as_the_hub() {
    let c = Cluster::start(&[]).await;
    let (port, dialled, accepted) = impostor(&c, "colombo");
    let fetch = |hub: String, out: &str| {
        vec![
            "registry".to_string(),
            "fetch".into(),
            "--hub".into(),
            hub,
            "--pki".into(),
            c.fed_dir().display().to_string(),
            "--out-dir".into(),
            c.root().join(out).display().to_string(),
        ]
    };
    let (code, stdout, stderr) = run_rcpfed_async(fetch(
        format!("https://localhost:{port}"),
        "fetched-impostor",
    ))
    .await;
    assert_ne!(
        code, 0,
        "the CLI fetched from an impostor:\n{stdout}{stderr}"
    );
    assert!(
        dialled.load(Ordering::SeqCst) >= 1,
        "the CLI dialled the impostor"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the CLI completed a TLS handshake with colombo posing as the hub:\n{stderr}"
    );
    let (code, stdout, stderr) = run_rcpfed_async(fetch(c.hub_endpoint(), "fetched-hub")).await;
    assert_eq!(
        code, 0,
        "the CLI works with the real hub:\n{stdout}{stderr}"
    );
}

/// The node checks the hub's certificate against its CRL at every dial: once the hub's
/// certificate is revoked, the node refuses to talk to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_hub_certificate_is_refused_by_the_node() {
    let mut c = Cluster::start(&["colombo"]).await;
    assert!(c.stop_node("colombo").await.success());
    let out = revoke_cert(c.fed_dir(), HUB_ID);
    assert!(out.contains("revoked certificate"), "{out}");
    // The node restarts (a fresh dial) with the new crl.pem next to its configuration.
    c.restart_node("colombo").await;
    let log = c.root().join("colombo.log");
    assert_eventually!(
        c,
        Duration::from_secs(20),
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("SERVER IDENTITY REFUSED") && l.contains("Revoked")),
        "colombo refuses the hub's revoked certificate"
    );
    assert!(
        !c.node_status("colombo").await.feed_connected,
        "colombo does not follow a hub whose certificate is revoked"
    );
}

/// GET `path` on a plaintext ops port.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("ops connect");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("ops write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn proof_failures(c: &Cluster, node: &str) -> Option<u64> {
    http_get(c.node_ops(node), "/metrics")
        .lines()
        .find(|l| l.starts_with("rcpfed_witness_proof_failures_total "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_consistency_proof_is_a_failed_proof_not_a_fork() {
    let c = Cluster::start(&["colombo"]).await;
    c.publish_policy("colombo", "Before the altered proof")
        .await;
    assert_eventually!(
        c,
        Duration::from_secs(20),
        c.witness_status("colombo").await.trusted_size >= 3,
        "colombo witnesses the hub prelude and its statement"
    );
    let trusted = c.witness_status("colombo").await;
    let fed = c.federation();
    let origin = logkeys::log_origin(&fed.federation_id);
    // A checkpoint signed by the log key, as the hub would send, with a proof whose hashes were
    // altered on the way.
    let note = sign_checkpoint(
        &Checkpoint {
            origin: origin.clone(),
            size: trusted.trusted_size + 2,
            root: [0x17; 32],
            extensions: Vec::new(),
        },
        &origin,
        &c.signing_key(HUB_ID),
    )
    .expect("checkpoint");
    let refused = c
        .witness_client("colombo", HUB_ID)
        .await
        .add_checkpoint(v1::AddCheckpointRequest {
            old_size: trusted.trusted_size,
            consistency_proof: vec![vec![0xab; 32], vec![0xcd; 32]],
            checkpoint: note,
        })
        .await;
    assert_refused(refused, Code::InvalidArgument, "BAD_PROOF");
    let after = c.witness_status("colombo").await;
    assert!(
        !after.forked && after.evidence.is_empty(),
        "an unsigned proof that does not verify is no evidence of a fork: {:?}",
        after.evidence
    );
    assert_eq!(
        after.trusted_size, trusted.trusted_size,
        "the witness did not move"
    );
    assert_eq!(
        proof_failures(&c, "colombo"),
        Some(1),
        "the failed proof is counted in the node's metrics"
    );
    // The witness goes on witnessing the honest log.
    c.publish_policy("colombo", "After the altered proof").await;
    assert_eventually!(
        c,
        Duration::from_secs(20),
        c.witness_status("colombo").await.trusted_size > trusted.trusted_size,
        "colombo's witness moves on with the honest log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_registry_cache_is_refused_at_start_up() {
    let mut c = Cluster::start(&["colombo"]).await;
    let status = c.stop_node("colombo").await;
    assert!(status.success(), "colombo stops cleanly");
    let cache = c.fed_dir().join("data/colombo/registry-trusted.bin");
    let bytes = std::fs::read(&cache).expect("colombo's registry cache");
    // The cache holds the chain (length-prefixed envelopes after a magic line) or, from older
    // nodes, one envelope; take the first version either way.
    let magic = b"rcpfed-registry-chain-v1\n";
    let first = match bytes.strip_prefix(magic.as_slice()) {
        Some(rest) => {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            SignedEnvelope::decode(&rest[4..4 + len]).expect("first cached version")
        }
        None => SignedEnvelope::decode(&bytes).expect("cached version"),
    };
    // An attacker with write access to the data directory: a registry under its own root key
    // (signed by it, so it vouches for itself), making colombo's key a hub key.
    let mut registry = decode_and_check(&first.payload).expect("cached registry");
    let attacker = SecretKey::generate().expect("key");
    registry.root = RootSet {
        keys: vec![(attacker.verify_key().clone(), "attacker".into())],
        threshold: 1,
    };
    let mut forged = SignedEnvelope {
        payload_type: REGISTRY_PAYLOAD_TYPE.to_string(),
        payload: registry.encode(),
        signatures: Vec::new(),
    };
    add_root_signature(&mut forged, &attacker);
    std::fs::write(&cache, forged.encode()).expect("write the forged cache");

    c.restart_node("colombo").await;
    let exit = c.node_exit("colombo", false, Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(c.root().join("colombo.log")).unwrap_or_default();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "colombo must refuse to start from a registry cache the trusted root keys did not sign (exit {exit:?})\n{}",
        c.logs()
    );
    assert!(
        log.contains("registry cache") && log.contains("refused"),
        "the refusal is explained:\n{log}"
    );
}
