//! The checked client channel over real mutual TLS: it talks to the server presenting the
//! expected SPIFFE id, refuses another member's CA-signed certificate (with the same host
//! names), and refuses a server whose certificate the CRL revokes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcpfed_grpc::acceptor::mtls_incoming;
use rcpfed_grpc::client_tls::{
    ChannelTiming, IdentityRefused, ServerIdentityCheck, checked_channel, connect_checked,
};
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_pki::{MemberPlan, PkiLayout, PkiPlan, RevocationReason, RevokeTarget};
use std::sync::Arc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const FEDERATION: &str = "client-identity";

fn member(id: &str, kind: &str) -> MemberPlan {
    MemberPlan {
        id: id.into(),
        name: id.into(),
        kind: kind.into(),
        states: Vec::new(),
    }
}

fn tls(layout: &PkiLayout, id: &str) -> TlsFiles {
    TlsFiles {
        ca_cert: layout.ca_cert(),
        cert: layout.tls_cert(id),
        key: layout.tls_key(id),
    }
}

/// A health server presenting `id`'s certificate; returns its port.
async fn serve_as(layout: &PkiLayout, id: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = mtls_incoming(listener, &tls(layout, id), Some(&layout.crl())).unwrap();
    let reporter = tonic_health::server::HealthReporter::new();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                tonic_health::server::HealthService::from_health_reporter(reporter),
            ))
            .serve_with_incoming(incoming),
    );
    port
}

/// The check of a client that expects the hub `gfmd`.
fn expecting_hub(layout: &PkiLayout) -> ServerIdentityCheck {
    let expected = format!("spiffe://{FEDERATION}/node/gfmd");
    ServerIdentityCheck {
        files: tls(layout, "midwa"),
        crl: Some(layout.crl()),
        federation_id: FEDERATION.into(),
        expected: Arc::new(move || Some(expected.clone())),
    }
}

/// One call through a checked channel that expects the hub `gfmd`.
async fn call_expecting_hub(layout: &PkiLayout, port: u16) -> Result<(), tonic::Status> {
    let channel = checked_channel(
        &format!("https://localhost:{port}"),
        expecting_hub(layout),
        ChannelTiming::default(),
    )
    .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_expected_unrevoked_hub_is_talked_to() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let layout = rcpfed_pki::init(
        dir.path(),
        &PkiPlan {
            federation_id: FEDERATION.into(),
            hub: member("gfmd", "hub"),
            nodes: vec![member("colombo", "RCP"), member("midwa", "RCP")],
            operators: vec!["operator".into()],
            server_hosts: rcpfed_pki::default_server_hosts(),
            member_hosts: Default::default(),
            valid_days: 2,
        },
    )
    .expect("pki init");

    let hub = serve_as(&layout, "gfmd").await;
    call_expecting_hub(&layout, hub)
        .await
        .expect("the real hub is reachable");

    let impostor = serve_as(&layout, "colombo").await;
    let refused = call_expecting_hub(&layout, impostor)
        .await
        .expect_err("colombo's certificate must not pass as the hub's");
    assert!(
        format!("{refused:?}").contains("/node/colombo"),
        "the refusal names the identity presented: {refused:?}"
    );

    // Dialled at once, the refusal comes back typed, for the CLI to word.
    let error = connect_checked(
        &format!("https://localhost:{impostor}"),
        expecting_hub(&layout),
        ChannelTiming::default(),
    )
    .await
    .expect_err("colombo's certificate must not pass as the hub's");
    let refusal = IdentityRefused::find(error.as_ref()).expect("an IdentityRefused in the chain");
    assert_eq!(
        refusal.presented,
        [format!("spiffe://{FEDERATION}/node/colombo")]
    );
    assert_eq!(
        refusal.expected.as_deref(),
        Some(format!("spiffe://{FEDERATION}/node/gfmd").as_str())
    );
    connect_checked(
        &format!("https://localhost:{hub}"),
        expecting_hub(&layout),
        ChannelTiming::default(),
    )
    .await
    .expect("the real hub is dialled at once");

    rcpfed_pki::revoke(
        &layout,
        &RevokeTarget::Member("gfmd".into()),
        RevocationReason::KeyCompromise,
    )
    .expect("revoke the hub's certificate");
    let revoked = call_expecting_hub(&layout, hub)
        .await
        .expect_err("a revoked hub certificate is refused on a fresh dial");
    assert!(
        format!("{revoked:?}").contains("Revoked"),
        "the refusal says it is revoked: {revoked:?}"
    );
}
