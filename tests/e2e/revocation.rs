//! Certificate revocation without restart: `rcpfed pki revoke-cert` re-issues `crl.pem` while
//! the hub runs; the hub reloads it, refuses new connections with the revoked certificate,
//! closes the ones already open, and keeps serving every other member.

use crate::harness::{Cluster, RawNode, connect, describe, reason, revoke_cert};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use std::time::Duration;
use tonic::Code;

/// A fresh mTLS connection to the hub as `identity` and one read call.
async fn fresh_hub_call(c: &Cluster, identity: &str) -> Result<(), tonic::Status> {
    let channel = connect(c.hub_addr().port(), &c.tls(identity))
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect failed: {e:?}")))?;
    HubServiceClient::new(channel)
        .list_statements(v1::ListStatementsRequest::default())
        .await
        .map(|_| ())
}

fn hub_log(c: &Cluster) -> String {
    std::fs::read_to_string(c.root().join("hub.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_certificate_cannot_connect_and_the_hub_keeps_running() {
    let c = Cluster::start(&["colombo", "abu-dhabi"]).await;
    let mut colombo = RawNode::connect(&c, "colombo").await;
    colombo.accept(&colombo.policy("Before revocation")).await;
    fresh_hub_call(&c, "abu-dhabi")
        .await
        .expect("abu-dhabi before");
    assert_eventually!(
        c,
        Duration::from_secs(20),
        c.node_status("colombo").await.feed_connected,
        "node colombo follows the feed before its certificate is revoked"
    );
    assert!(
        hub_log(&c).contains("CRL loaded: 0 revoked certificates"),
        "the hub starts with pki init's empty CRL:\n{}",
        c.logs()
    );

    let out = revoke_cert(c.fed_dir(), "colombo");
    assert!(out.contains("revoked certificate"), "{out}");

    assert_eventually!(
        c,
        Duration::from_secs(5),
        fresh_hub_call(&c, "colombo").await.is_err(),
        "a fresh colombo connection is refused after the revocation"
    );
    let refused = fresh_hub_call(&c, "colombo").await.unwrap_err();
    assert!(
        matches!(
            refused.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ) && reason(&refused).is_empty(),
        "a TLS refusal, not an application one: {}",
        describe(&refused)
    );
    // The connection colombo had open is closed, so its client cannot submit any more.
    let late = colombo.policy("After revocation");
    let envelope = colombo.sign(&late).to_proto();
    assert_eventually!(
        c,
        Duration::from_secs(5),
        colombo.submit(envelope.clone()).await.is_err(),
        "colombo's already-open connection is closed"
    );
    // Node colombo's own feed connection is cut too and cannot come back.
    assert_eventually!(
        c,
        Duration::from_secs(10),
        !c.node_status("colombo").await.feed_connected,
        "node colombo loses its feed connection"
    );

    // Everyone else is unaffected, and the hub was not restarted.
    fresh_hub_call(&c, "abu-dhabi")
        .await
        .unwrap_or_else(|s| panic!("abu-dhabi after: {}\n{}", describe(&s), c.logs()));
    fresh_hub_call(&c, "operator")
        .await
        .expect("operator after");
    c.publish_policy("abu-dhabi", "Published through the node")
        .await;
    assert_eventually!(
        c,
        Duration::from_secs(20),
        c.node_status("abu-dhabi").await.outbox_delivered == 1,
        "node abu-dhabi still delivers to the hub"
    );
    let log = hub_log(&c);
    assert!(
        log.contains("CRL reloaded: 1 revoked certificates"),
        "{}",
        c.logs()
    );
    assert!(
        log.contains("client certificate is revoked"),
        "{}",
        c.logs()
    );
    assert_eq!(
        log.matches("===== starting hub").count(),
        1,
        "the hub was not restarted"
    );
}
