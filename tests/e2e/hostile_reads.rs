//! A member that reads without reading: streams it opens and never drains hold only its own
//! quota, over real processes and real mTLS. Before, every `ExportSdmx` held a blocking thread
//! of the server until its client read (a few hundred unread exports stopped every store read
//! and submission), and every `GetSnapshotChunks` stream up to three 4 MiB chunks, without a
//! per-member limit.

use crate::harness::{Cluster, RawNode, TIMEOUT, connect, describe};
use crate::hostile_quotas::assert_quota;
use crate::snapshot_view::{hub_view, of_node, send_large_snapshot};
use rcpfed_proto::v1;
use rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient;
use std::time::Duration;
use tonic::transport::Channel;

/// Observations of the snapshot read below: several MiB of CSV, far more than a connection's
/// flow-control windows and the server's queue hold for a client that reads nothing.
const N: usize = 40_000;

/// The hub's IndicatorService as `member`, on a connection of its own.
async fn indicators_as(c: &Cluster, member: &str) -> IndicatorServiceClient<Channel> {
    let channel = connect(c.hub_addr().port(), &c.tls(member))
        .await
        .unwrap_or_else(|e| panic!("connecting to the hub as {member}: {e:?}"));
    IndicatorServiceClient::new(channel)
}

fn csv_export_of(node: &str) -> v1::ExportSdmxRequest {
    v1::ExportSdmxRequest {
        query: Some(of_node(node)),
        format: v1::SdmxFormat::Csv as i32,
    }
}

/// Publishes colombo's large snapshot and waits until the hub's view holds it.
async fn large_snapshot(c: &Cluster) -> Vec<u8> {
    let mut raw = RawNode::connect(c, "colombo").await;
    let index = send_large_snapshot(c, &mut raw, N).await;
    assert_eventually!(
        c,
        TIMEOUT * 3,
        hub_view(c, &of_node("colombo"), 1).await.0 >= index,
        "the hub's view holds the snapshot"
    );
    c.hub_statements_of("colombo")
        .await
        .pop()
        .expect("the snapshot is stored")
        .digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_exports_hold_only_their_members_quota() {
    let c = Cluster::start(&["midwa"]).await;
    large_snapshot(&c).await;

    // abu-dhabi opens the most exports it may, each on its own connection, and reads none.
    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = indicators_as(&c, "abu-dhabi")
            .await
            .export_sdmx(csv_export_of("colombo"))
            .await
            .unwrap_or_else(|s| panic!("an export within the quota: {}", describe(&s)))
            .into_inner();
        held.push(stream);
    }
    let over = indicators_as(&c, "abu-dhabi")
        .await
        .export_sdmx(csv_export_of("colombo"))
        .await
        .expect_err("a third export of one member is refused");
    assert_quota(&over, "TOO_MANY_EXPORTS");
    eprintln!("third export: {}", describe(&over));
    let metrics = crate::harness::http_get(&c.hub_ops().to_string(), "/metrics").await;
    assert!(
        metrics.contains("rcpfed_hub_quota_refusals_total{reason=\"TOO_MANY_EXPORTS\"} 1"),
        "the refusal is counted: {metrics}"
    );

    // Another member exports the whole snapshot meanwhile, and publishing goes on.
    let mut whole = indicators_as(&c, "midwa")
        .await
        .export_sdmx(csv_export_of("colombo"))
        .await
        .unwrap_or_else(|s| panic!("midwa's export: {}", describe(&s)))
        .into_inner();
    let mut text = Vec::new();
    while let Some(piece) = tokio::time::timeout(TIMEOUT, whole.message())
        .await
        .expect("the export keeps coming")
        .unwrap_or_else(|s| panic!("midwa's export stream: {}", describe(&s)))
    {
        text.extend(piece.data);
    }
    let rows = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(rows, N + 1, "the header and every observation");
    c.publish_policy("midwa", "while abu-dhabi hogs its exports")
        .await;

    // A client that goes away gives its place back.
    drop(held.pop());
    let mut client = indicators_as(&c, "abu-dhabi").await;
    assert_eventually!(
        c,
        TIMEOUT,
        client
            .export_sdmx(csv_export_of("colombo"))
            .await
            .map(|s| held.push(s.into_inner()))
            .is_ok(),
        "abu-dhabi exports again once one of its exports is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_chunk_streams_hold_only_their_members_quota() {
    let c = Cluster::start(&["colombo"]).await;
    let digest = large_snapshot(&c).await;
    let request = || v1::GetSnapshotChunksRequest {
        digest: digest.clone(),
        first_chunk: 0,
    };

    // abu-dhabi opens the most chunk streams it may and reads none.
    let mut hog = c.hub_client("abu-dhabi").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = hog
            .get_snapshot_chunks(request())
            .await
            .unwrap_or_else(|s| panic!("a chunk stream within the quota: {}", describe(&s)))
            .into_inner();
        held.push(stream);
    }
    let over = hog
        .get_snapshot_chunks(request())
        .await
        .expect_err("a third chunk stream of one member is refused");
    assert_quota(&over, "TOO_MANY_CHUNK_STREAMS");

    // Another member reads every chunk meanwhile.
    let mut chunks = c
        .hub_client("midwa")
        .await
        .get_snapshot_chunks(request())
        .await
        .unwrap_or_else(|s| panic!("midwa's chunk stream: {}", describe(&s)))
        .into_inner();
    let mut count = 0;
    while let Some(chunk) = tokio::time::timeout(TIMEOUT, chunks.message())
        .await
        .expect("the chunks keep coming")
        .unwrap_or_else(|s| panic!("midwa's chunk stream: {}", describe(&s)))
    {
        assert_eq!(chunk.index, count);
        count += 1;
    }
    assert!(count > 1, "a chunked snapshot");

    // A closed stream gives its place back.
    drop(held.pop());
    assert_eventually!(
        c,
        Duration::from_secs(10),
        hog.get_snapshot_chunks(request())
            .await
            .map(|s| held.push(s.into_inner()))
            .is_ok(),
        "abu-dhabi streams chunks again once one of its streams is closed"
    );
}
