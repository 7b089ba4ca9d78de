//! Certificate revocation over real mutual TLS: a tonic server on the reloading acceptor refuses
//! a certificate as soon as the CRL file lists it, closes that certificate's open connections,
//! keeps serving everyone else, and survives a bad CRL file, all without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcpfed_grpc::acceptor::mtls_incoming;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_pki::{MemberPlan, PkiLayout, PkiPlan, RevocationReason, RevokeTarget};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn member(id: &str, kind: &str) -> MemberPlan {
    MemberPlan {
        id: id.into(),
        name: id.into(),
        kind: kind.into(),
        states: Vec::new(),
    }
}

fn pki(dir: &Path, federation: &str) -> PkiLayout {
    rcpfed_pki::init(
        dir,
        &PkiPlan {
            federation_id: federation.into(),
            hub: member("gfmd", "hub"),
            nodes: vec![member("colombo", "RCP"), member("midwa", "RCP")],
            operators: vec!["operator".into()],
            server_hosts: rcpfed_pki::default_server_hosts(),
            member_hosts: Default::default(),
            valid_days: 2,
        },
    )
    .expect("pki init")
}

fn tls(layout: &PkiLayout, id: &str) -> TlsFiles {
    TlsFiles {
        ca_cert: layout.ca_cert(),
        cert: layout.tls_cert(id),
        key: layout.tls_key(id),
    }
}

/// Starts a health server as the hub with the reloading acceptor; returns its port and the
/// SPIFFE ids its interceptor saw through `Request::peer_certs()`.
async fn serve(layout: &PkiLayout) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = mtls_incoming(listener, &tls(layout, "gfmd"), Some(&layout.crl())).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reporter = tonic_health::server::HealthReporter::new();
    let seen_in = Arc::clone(&seen);
    let service = tonic_health::pb::health_server::HealthServer::with_interceptor(
        tonic_health::server::HealthService::from_health_reporter(reporter),
        move |req: tonic::Request<()>| {
            let id = rcpfed_grpc::peer_spiffe_id(&req)?;
            seen_in.lock().unwrap().push(id);
            Ok(req)
        },
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (port, seen)
}

async fn channel(port: u16, files: &TlsFiles) -> Result<Channel, String> {
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(files.client_config("localhost").unwrap())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))
}

async fn health(channel: Channel) -> Result<(), String> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|s| format!("call: {s:?}"))
}

/// A fresh connection and one call.
async fn fresh_call(port: u16, files: &TlsFiles) -> Result<(), String> {
    health(channel(port, files).await?).await
}

async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if cond().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not true within 5 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_without_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let layout = pki(&tmp.path().join("pki"), "rcp-federation");
    let (port, seen) = serve(&layout).await;
    let colombo = tls(&layout, "colombo");
    let midwa = tls(&layout, "midwa");

    fresh_call(port, &colombo)
        .await
        .expect("colombo before revocation");
    fresh_call(port, &midwa)
        .await
        .expect("midwa before revocation");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [
            "spiffe://rcp-federation/node/colombo",
            "spiffe://rcp-federation/node/midwa"
        ],
        "peer_certs() sees the client certificate"
    );
    // A long-lived connection of colombo, open before the revocation.
    let open = channel(port, &colombo).await.unwrap();
    health(open.clone()).await.unwrap();

    let revocation = rcpfed_pki::revoke(
        &layout,
        &RevokeTarget::Member("colombo".into()),
        RevocationReason::KeyCompromise,
    )
    .unwrap();
    assert_eq!(revocation.revoked_count, 1);
    let took = eventually("a new colombo connection is refused", async || {
        fresh_call(port, &colombo).await.is_err()
    })
    .await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let err = fresh_call(port, &colombo).await.unwrap_err();
    eprintln!("revoked colombo: {err}");
    fresh_call(port, &midwa)
        .await
        .expect("midwa after colombo's revocation");
    // The connection colombo had open was closed: the next call on it needs a new handshake,
    // which is refused.
    eventually("colombo's open connection is closed", async || {
        health(open.clone()).await.is_err()
    })
    .await;

    // A CRL that is not usable (garbage, then one signed by another CA) keeps the previous
    // configuration: colombo stays refused, midwa keeps working.
    std::fs::write(layout.crl(), "not a CRL").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        fresh_call(port, &colombo).await.is_err(),
        "garbage CRL un-revoked colombo"
    );
    fresh_call(port, &midwa)
        .await
        .expect("midwa with a garbage CRL file");

    let other = pki(&tmp.path().join("other"), "other-federation");
    std::fs::copy(other.crl(), layout.crl()).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        fresh_call(port, &colombo).await.is_err(),
        "foreign CRL un-revoked colombo"
    );
    fresh_call(port, &midwa)
        .await
        .expect("midwa with a foreign CRL file");

    // Re-issuing the real CRL (revoking midwa too) is picked up again.
    rcpfed_pki::revoke(
        &layout,
        &RevokeTarget::Member("midwa".into()),
        RevocationReason::Superseded,
    )
    .unwrap();
    eventually("midwa is refused after its revocation", async || {
        fresh_call(port, &midwa).await.is_err()
    })
    .await;
    fresh_call(port, &tls(&layout, "operator"))
        .await
        .expect("an unrevoked operator still connects");
    assert!(fresh_call(port, &colombo).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_foreign_client_certificate_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let layout = pki(&tmp.path().join("pki"), "rcp-federation");
    let other = pki(&tmp.path().join("other"), "other-federation");
    let (port, seen) = serve(&layout).await;
    let foreign = TlsFiles {
        ca_cert: layout.ca_cert(),
        cert: other.tls_cert("colombo"),
        key: other.tls_key("colombo"),
    };
    assert!(fresh_call(port, &foreign).await.is_err());
    let no_cert = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(
                    std::fs::read(layout.ca_cert()).unwrap(),
                ))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Ok(ch) = no_cert.connect().await {
        assert!(health(ch).await.is_err());
    }
    assert!(seen.lock().unwrap().is_empty());
    // A silent client (no ClientHello) does not block others; it is dropped after the
    // handshake timeout.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    fresh_call(port, &tls(&layout, "midwa")).await.unwrap();
}

#[test]
fn a_missing_or_bad_crl_at_start_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = pki(&tmp.path().join("pki"), "rcp-federation");
    let files = tls(&layout, "gfmd");
    assert!(rcpfed_grpc::acceptor::load_server_config(&files, None).is_ok());
    let loaded = rcpfed_grpc::acceptor::load_server_config(&files, Some(&layout.crl())).unwrap();
    assert!(loaded.revoked.is_empty());
    let missing = tmp.path().join("nope.pem");
    assert!(rcpfed_grpc::acceptor::load_server_config(&files, Some(&missing)).is_err());
    std::fs::write(tmp.path().join("bad.pem"), "junk").unwrap();
    let err = rcpfed_grpc::acceptor::load_server_config(&files, Some(&tmp.path().join("bad.pem")))
        .err()
        .unwrap();
    assert!(err.to_string().contains("no CRL"), "{err}");
}
