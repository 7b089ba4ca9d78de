//! The normal exchange: publish on nodes, delivery with verified receipts, the feed mirrored on
//! every node in the hub's order; retries are idempotent.

use crate::harness::{
    ALL_NODES, Cluster, HUB_ID, HUB_PRELUDE, RawNode, TIMEOUT, assert_catalogue_v1, is_registry,
    keyed, node_statements, publish_request,
};
use rcpfed_core::SignedEnvelope;
use rcpfed_core::receipt::Receipt;
use rcpfed_core::registry::{REGISTRY_PAYLOAD_TYPE, RootTrustFile, verify_first};
use rcpfed_proto::v1;
use std::collections::BTreeMap;

/// Asserts `record` is registry version 1 as a new hub logs it: the hub's own statement, seq 1,
/// feed index 1, the registry payload type, signed by a threshold of the GFMD root keys in
/// `root-trust.toml`, for this federation and hub.
fn assert_registry_v1(c: &Cluster, record: &v1::StatementRecord) {
    assert!(is_registry(record), "not a registry version: {record:?}");
    assert_eq!(record.name, format!("nodes/{HUB_ID}/statements/1"));
    assert_eq!((record.node_id.as_str(), record.seq), (HUB_ID, 1));
    assert_eq!(
        record.feed_index, 1,
        "the registry version is the first feed entry"
    );
    let env = SignedEnvelope::from_proto(record.envelope.clone().expect("envelope"));
    assert_eq!(env.payload_type, REGISTRY_PAYLOAD_TYPE);
    assert_eq!(
        env.digest().0.to_vec(),
        record.digest,
        "digest of the payload"
    );
    let trust = std::fs::read_to_string(c.fed_dir().join("root-trust.toml")).expect("root trust");
    let trust = RootTrustFile::from_toml(&trust).expect("root trust file");
    let root = trust.to_root_set().expect("root set");
    let registry = verify_first(
        &env,
        &root,
        &trust.federation_id,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap_or_else(|e| panic!("registry version 1 does not verify from the root keys: {e}"));
    let federation = c.federation();
    assert_eq!(registry.version, 1);
    assert_eq!(registry.federation_id, federation.federation_id);
    assert_eq!(registry.hub_id, federation.hub_id);
    assert_eq!(registry.hub_id, HUB_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_publish_and_every_mirror_matches_the_hub() {
    let c = Cluster::start(&ALL_NODES).await;
    let mut expected: BTreeMap<&str, Vec<v1::PublishDocumentResponse>> = BTreeMap::new();
    // Interleave: colombo twice, so feed order differs from node order.
    for (node, title) in [
        ("colombo", "Colombo fair recruitment"),
        ("abu-dhabi", "Abu Dhabi skills mobility"),
        ("midwa", "MIDWA free movement"),
        ("colombo", "Colombo remittance costs"),
    ] {
        let r = c.publish_policy(node, title).await;
        expected.entry(node).or_default().push(r);
    }
    for (node, published) in &expected {
        let seqs: Vec<u64> = published.iter().map(|r| r.seq).collect();
        let want: Vec<u64> = (1..=published.len() as u64).collect();
        assert_eq!(seqs, want, "{node}: seqs are 1, 2, …");
    }

    for node in ALL_NODES {
        let n = expected[node].len() as u64;
        assert_eventually!(
            c,
            TIMEOUT,
            c.delivered(node, n).await,
            "{node}: {n} statements delivered"
        );
    }

    // The hub: registry version 1 at feed index 1 and catalogue version 1 at 2 (the hub
    // prelude), then the 4 statements; the same list with page size 1.
    let published: u64 = expected.values().map(|v| v.len() as u64).sum();
    let total = HUB_PRELUDE + published;
    let hub = c.hub_statements().await;
    assert_eq!(
        hub.len() as u64,
        total,
        "hub lists the registry version, the catalogue and every statement"
    );
    let indexes: Vec<u64> = hub.iter().map(|r| r.feed_index).collect();
    assert_eq!(indexes, (1..=total).collect::<Vec<_>>(), "dense feed");
    assert_registry_v1(&c, &hub[0]);
    assert_catalogue_v1(&c, &hub[1]);
    let statements = node_statements(&hub);
    assert_eq!(statements.len() as u64, published, "every node statement");
    assert!(
        statements.iter().all(|r| r.node_id != HUB_ID),
        "only one registry version"
    );
    let paged = c
        .hub_statements_paged(v1::ListStatementsRequest::default(), 1)
        .await;
    assert_eq!(keyed(&paged), keyed(&hub), "paging with page_size 1");
    // In the log, the registry version is leaf 0, under every checkpoint that covers the feed.
    let mut hub_client = c.hub_client("operator").await;
    assert_eventually!(
        c,
        TIMEOUT,
        hub_client
            .get_statement(v1::GetStatementRequest {
                name: hub[0].name.clone(),
            })
            .await
            .expect("GetStatement of the registry version")
            .into_inner()
            .statement
            .and_then(|s| s.log)
            .is_some_and(|log| log.leaf_index == 0 && log.tree_size >= total),
        "the registry version is leaf 0 of a checkpoint covering all {total} entries"
    );

    // Every node mirrors everything, in the hub's order, with the same digests.
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&ALL_NODES).await,
        "every mirror equals the hub's list"
    );
    for node in ALL_NODES {
        let status = c.node_status(node).await;
        assert_eq!(status.mirror_count, total, "{node} mirror_count");
        assert_eq!(status.feed_cursor, total, "{node} feed_cursor");
        assert_eq!(status.head_seq, expected[node].len() as u64);
        // Envelopes in the mirror are byte-identical to the hub's; the first are registry
        // version 1 and catalogue version 1.
        let mirror = c.mirror(node).await;
        assert_eq!(mirror.len(), hub.len(), "{node}: mirror size");
        assert_registry_v1(&c, &mirror[0]);
        assert_catalogue_v1(&c, &mirror[1]);
        for (m, h) in mirror.iter().zip(&hub) {
            assert_eq!(m.envelope, h.envelope, "{node}: envelope of {}", h.name);
            assert_eq!(m.receipt, h.receipt, "{node}: receipt of {}", h.name);
        }
    }

    // Receipts in each outbox verify with the hub's key and name the right statement.
    let federation = c.federation();
    let hub_keys = federation.hub().expect("hub member").keys.clone();
    let by_name: BTreeMap<String, &v1::StatementRecord> =
        hub.iter().map(|r| (r.name.clone(), r)).collect();
    for node in ALL_NODES {
        let outbox = c.outbox(node).await;
        assert_eq!(outbox.len(), expected[node].len(), "{node} outbox size");
        for entry in &outbox {
            assert_eq!(entry.state, v1::DeliveryState::Delivered as i32);
            let published = &expected[node][(entry.seq - 1) as usize];
            assert_eq!(entry.digest, published.digest, "{node}#{}", entry.seq);
            let env = SignedEnvelope::from_proto(entry.receipt.clone().expect("receipt"));
            let receipt = Receipt::verify(&env, &hub_keys, &federation.federation_id)
                .unwrap_or_else(|e| panic!("{node}#{} receipt does not verify: {e}", entry.seq));
            assert_eq!(receipt.federation_id, federation.federation_id);
            assert_eq!(receipt.hub_id, federation.hub_id);
            assert_eq!(receipt.node_id, node);
            assert_eq!(receipt.seq, entry.seq);
            assert_eq!(receipt.statement_digest.0.to_vec(), entry.digest);
            let record = by_name[&format!("nodes/{node}/statements/{}", entry.seq)];
            assert_eq!(receipt.feed_index, record.feed_index);
            assert_eq!(record.digest, entry.digest);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_the_same_envelope_returns_the_original_receipt() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let statement = raw.policy("Dhaka Declaration");
    let (env, first) = raw.accept(&statement).await;
    let before = c.hub_snapshot().await;
    assert_eq!(
        before.statements.len() as u64,
        HUB_PRELUDE + 1,
        "the registry version, the catalogue and the statement"
    );

    let second = raw.submit(env.to_proto()).await.expect("resubmission");
    assert!(second.duplicate, "the resubmission is marked duplicate");
    assert_eq!(
        prost::Message::encode_to_vec(&second.receipt.clone().expect("receipt")),
        prost::Message::encode_to_vec(&first.receipt.clone().expect("receipt")),
        "the original receipt bytes are returned"
    );
    assert!(!first.duplicate);
    assert_eq!(c.hub_snapshot().await, before, "nothing new stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_the_same_request_id_signs_once() {
    let c = Cluster::start(&["colombo"]).await;
    let mut node = c.node_client("colombo", "operator").await;
    let mut request = publish_request("colombo", "Retry safe");
    request.request_id = "req-7f3a".into();
    let first = node
        .publish_document(request.clone())
        .await
        .expect("first")
        .into_inner();
    let second = node
        .publish_document(request)
        .await
        .expect("second")
        .into_inner();
    assert_eq!(first.seq, 1);
    assert_eq!(second.seq, first.seq, "same seq");
    assert_eq!(second.digest, first.digest, "same digest");
    assert_eq!(second.revision, first.revision);
    assert_eq!(c.node_status("colombo").await.head_seq, 1);
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 1).await, "delivered");
    let hub = c.hub_statements().await;
    assert_eq!(
        hub.len() as u64,
        HUB_PRELUDE + 1,
        "the registry version, the catalogue and one statement at the hub"
    );
    assert_registry_v1(&c, &hub[0]);
    assert_catalogue_v1(&c, &hub[1]);
    let statement = &hub[HUB_PRELUDE as usize];
    assert_eq!(statement.name, "nodes/colombo/statements/1");
    assert_eq!(statement.digest, first.digest);
    assert_eq!(c.outbox("colombo").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_signs_nothing() {
    let c = Cluster::start(&["colombo"]).await;
    let published = c.publish_policy("colombo", "Signed").await;
    assert_eq!(published.seq, 1);
    let mut node = c.node_client("colombo", "operator").await;
    let mut request = publish_request("colombo", "Signed");
    request.validate_only = true;
    let dry = node
        .publish_document(request)
        .await
        .expect("dry run")
        .into_inner();
    assert_eq!(dry.seq, 0, "no seq for a dry run");
    assert!(dry.digest.is_empty(), "no digest for a dry run");
    assert_eq!(dry.revision, 2, "would be the next revision");
    assert_eq!(dry.document, "regions/colombo/policies/signed");

    let status = c.node_status("colombo").await;
    assert_eq!(status.head_seq, 1, "head unchanged");
    assert_eq!(status.head_digest, published.digest);
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 1).await, "delivered");
    assert_eq!(c.outbox("colombo").await.len(), 1, "nothing queued");
    assert_eq!(
        node_statements(&c.hub_statements().await).len(),
        1,
        "nothing sent"
    );
    // The next real publish is seq 2, revision 2.
    let next = c.publish_policy("colombo", "Signed").await;
    assert_eq!((next.seq, next.revision), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishing_on_three_nodes_keeps_every_chain() {
    const PER_NODE: u64 = 15;
    let c = Cluster::start(&ALL_NODES).await;
    let publish_all = |node: &'static str| {
        let c = &c;
        async move {
            let mut client = c.node_client(node, "operator").await;
            for i in 0..PER_NODE {
                let r = client
                    .publish_document(publish_request(node, &format!("{node} burst {i}")))
                    .await
                    .expect("published")
                    .into_inner();
                assert_eq!(r.seq, i + 1);
            }
        }
    };
    tokio::join!(
        publish_all("colombo"),
        publish_all("abu-dhabi"),
        publish_all("midwa")
    );
    for node in ALL_NODES {
        assert_eventually!(
            c,
            TIMEOUT,
            c.delivered(node, PER_NODE).await,
            "{node}: all delivered"
        );
        let seqs: Vec<u64> = c
            .hub_statements_of(node)
            .await
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=PER_NODE).collect::<Vec<_>>(),
            "{node} at the hub"
        );
    }
    // Registry version 1 at feed index 1 and catalogue version 1 at 2, then every statement:
    // a dense feed.
    let hub = c.hub_statements().await;
    let indexes: Vec<u64> = hub.iter().map(|r| r.feed_index).collect();
    assert_eq!(
        indexes,
        (1..=HUB_PRELUDE + 3 * PER_NODE).collect::<Vec<_>>(),
        "dense feed"
    );
    assert_registry_v1(&c, &hub[0]);
    assert_catalogue_v1(&c, &hub[1]);
    assert_eq!(node_statements(&hub).len() as u64, 3 * PER_NODE);
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&ALL_NODES).await,
        "every mirror equals the hub's list"
    );
}
