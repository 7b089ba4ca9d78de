//! Revocation cannot go backwards (issue 9, finding 9): the reloading acceptor refuses a CRL
//! whose CRL Number is lower than that of the CRL in force, and keeps the newer one; a CRL
//! past its nextUpdate makes the server refuse connections instead of only warning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcpfed_grpc::acceptor::ReloadOutcome;
use rcpfed_grpc::acceptor::ReloadingTlsAcceptor;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_pki::{MemberPlan, PkiPlan, RevocationReason, RevokeTarget};

use std::time::Duration;
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

fn pki(dir: &std::path::Path) -> rcpfed_pki::PkiLayout {
    rcpfed_pki::init(
        dir,
        &PkiPlan {
            federation_id: "rcp-federation".into(),
            hub: member("gfmd", "hub"),
            nodes: vec![member("colombo", "RCP")],
            operators: vec!["operator".into()],
            server_hosts: rcpfed_pki::default_server_hosts(),
            member_hosts: Default::default(),
            valid_days: 2,
        },
    )
    .expect("pki init")
}

fn tls(layout: &rcpfed_pki::PkiLayout, id: &str) -> TlsFiles {
    TlsFiles {
        ca_cert: layout.ca_cert(),
        cert: layout.tls_cert(id),
        key: layout.tls_key(id),
    }
}

/// Replaces the CRL with one signed by the CA, numbered 7, whose nextUpdate passed an hour ago.
fn write_stale_crl(layout: &rcpfed_pki::PkiLayout) {
    write_crl(layout, 7, true);
}

/// Replaces the CRL with an empty one signed by the CA, numbered `number`, stale or fresh.
fn write_crl(layout: &rcpfed_pki::PkiLayout, number: u8, stale: bool) {
    let ca_pem = std::fs::read_to_string(layout.ca_cert()).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(layout.ca_key()).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::from_secs(2 * 3600),
        next_update: if stale {
            now - Duration::from_secs(3600)
        } else {
            now + Duration::from_secs(3600)
        },
        crl_number: rcgen::SerialNumber::from_slice(&[number]),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    std::fs::write(layout.crl(), crl.pem().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_refuses_connections() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let layout = pki(&tmp.path().join("pki"));
    write_stale_crl(&layout);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming =
        rcpfed_grpc::acceptor::mtls_incoming(listener, &tls(&layout, "gfmd"), Some(&layout.crl()))
            .unwrap();
    let reporter = tonic_health::server::HealthReporter::new();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                tonic_health::server::HealthService::from_health_reporter(reporter),
            ))
            .serve_with_incoming(incoming),
    );
    let call = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(tls(&layout, "colombo").client_config("localhost").unwrap())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|_| ())
            .map_err(|s| format!("call: {s:?}"))
    };
    assert!(
        call.await.is_err(),
        "a server whose CRL is past its nextUpdate still accepts connections"
    );
}

#[test]
fn an_older_crl_does_not_replace_a_newer_one() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = rcpfed_pki::init(
        &tmp.path().join("pki"),
        &PkiPlan {
            federation_id: "rcp-federation".into(),
            hub: member("gfmd", "hub"),
            nodes: vec![member("colombo", "RCP")],
            operators: vec!["operator".into()],
            server_hosts: rcpfed_pki::default_server_hosts(),
            member_hosts: Default::default(),
            valid_days: 2,
        },
    )
    .expect("pki init");
    let files = TlsFiles {
        ca_cert: layout.ca_cert(),
        cert: layout.tls_cert("gfmd"),
        key: layout.tls_key("gfmd"),
    };
    let acceptor = ReloadingTlsAcceptor::new(files, Some(layout.crl())).unwrap();
    assert_eq!(acceptor.current().crl_number, Some(1u32.into()));
    let first = std::fs::read(layout.crl()).unwrap();

    rcpfed_pki::revoke(
        &layout,
        &RevokeTarget::Member("colombo".into()),
        RevocationReason::KeyCompromise,
    )
    .unwrap();
    assert_eq!(
        acceptor.reload_if_changed(),
        ReloadOutcome::Reloaded {
            revoked: 1,
            closed: 0
        }
    );
    assert_eq!(acceptor.current().crl_number, Some(2u32.into()));

    // The older CRL (number 1, nothing revoked) put back: refused, the newer one stays.
    std::fs::write(layout.crl(), &first).unwrap();
    match acceptor.reload_if_changed() {
        ReloadOutcome::Failed(why) => assert!(why.contains("lower than"), "{why}"),
        other => panic!("the older CRL was not refused: {other:?}"),
    }
    assert_eq!(acceptor.current().crl_number, Some(2u32.into()));
    assert_eq!(acceptor.current().revoked.len(), 1);

    // A newer CRL is taken again.
    rcpfed_pki::revoke(
        &layout,
        &RevokeTarget::Member("operator".into()),
        RevocationReason::Superseded,
    )
    .unwrap();
    assert!(matches!(
        acceptor.reload_if_changed(),
        ReloadOutcome::Reloaded { revoked: 2, .. }
    ));
    assert_eq!(acceptor.current().crl_number, Some(3u32.into()));
    assert_eq!(acceptor.current().stale_since(0), None);
}

/// With `stale_crl = "not_serving"` the server keeps accepting connections while its CRL is
/// past nextUpdate, but says so: health `NOT_SERVING` until a fresh CRL is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_can_mean_not_serving_instead() {
    use rcpfed_grpc::acceptor::{StaleCrl, mtls_incoming_with_acceptor, watch_crl_freshness};
    use tonic_health::pb::health_check_response::ServingStatus;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let layout = pki(&tmp.path().join("pki"));
    write_stale_crl(&layout);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (incoming, acceptor) =
        mtls_incoming_with_acceptor(listener, &tls(&layout, "gfmd"), Some(&layout.crl())).unwrap();
    acceptor.set_stale_crl(StaleCrl::NotServing);
    let reporter = tonic_health::server::HealthReporter::new();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _watch = watch_crl_freshness(acceptor.clone(), reporter.clone(), shutdown.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                tonic_health::server::HealthService::from_health_reporter(reporter),
            ))
            .serve_with_incoming(incoming),
    );
    let status = || async {
        let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(tls(&layout, "colombo").client_config("localhost").unwrap())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("a stale CRL under not_serving still accepts connections");
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status
    };
    let until = |want: ServingStatus| {
        let status = &status;
        async move {
            for _ in 0..50 {
                if status().await == want as i32 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("health never became {want:?}");
        }
    };
    until(ServingStatus::NotServing).await;
    // A fresh CRL (higher number) is installed: serving again.
    write_crl(&layout, 8, false);
    acceptor.reload_if_changed();
    until(ServingStatus::Serving).await;
    shutdown.cancel();
}
