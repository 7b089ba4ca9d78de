//! Issue 9, findings 1, 13 and 15, as a hostile member would try them over real processes and
//! real mTLS: whole-envelope bounds (and that the largest acceptable statement still travels
//! everywhere, and so does the largest snapshot chunk), inputs out of range, and refusals small enough for any client to read.
//!
//! Most tests act as colombo directly (`RawNode`: its TLS identity and signing key) next to a
//! real node (midwa) whose mirror must keep up.

use crate::harness::{
    Cluster, MigStock, RawNode, assert_refused, connect, describe, run_rcpfed_async, undated_states,
};
use rcpfed_core::chunks::{MAX_CHUNK_BYTES, OBSERVATIONS_PER_CHUNK, encode_chunks};
use rcpfed_core::envelope::{EnvelopeSignature, SignedEnvelope};
use rcpfed_core::limits::{MAX_PAGE_BYTES, MAX_PAYLOAD_BYTES, MAX_SIGNATURES};
use rcpfed_core::statement::{
    Body, DocumentKind, Header, IndicatorSnapshot, LocalizedText, Observation, Statement,
};
use rcpfed_core::validate::MAX_NOTE_CHARS;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use rcpfed_proto::v1::submit_snapshot_request::Part;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The header block most gRPC clients accept by default (grpc-core and grpcio: 8 KiB).
const CLIENT_HEADER_LIMIT: usize = 8 * 1024;

/// A hub client as the operator with tonic's default limits (4 MiB per message decoded), as
/// a third party would use.
async fn default_client(c: &Cluster) -> HubServiceClient<Channel> {
    let channel = connect(c.hub_addr().port(), &c.tls("operator"))
        .await
        .expect("connecting to the hub");
    HubServiceClient::new(channel)
}

/// An upper bound of what a refusal costs in trailers: `grpc-message` (percent-encoded, at
/// most 3 bytes per byte) and `grpc-status-details-bin` (base64).
fn trailer_bytes(status: &tonic::Status) -> usize {
    status.message().len() * 3 + status.details().len().div_ceil(3) * 4 + 64
}

fn summary_of(st: &mut Statement) -> &mut Vec<LocalizedText> {
    match &mut st.body {
        Body::Policy(p) => &mut p.summary,
        Body::Indicators(_) => panic!("not a policy"),
    }
}

/// The next colombo statement padded so its payload is exactly [`MAX_PAYLOAD_BYTES`]: summaries
/// of 20 000 characters (the per-text limit) in distinct private-use languages.
fn largest_policy(raw: &RawNode, title: &str) -> Statement {
    let mut st = raw.policy(title);
    let mut n = 0;
    while st.encode().len() + 20_100 < MAX_PAYLOAD_BYTES {
        summary_of(&mut st).push(LocalizedText {
            language: format!("en-x{n}"),
            text: "a".repeat(20_000),
        });
        n += 1;
    }
    // The last text takes up what is left, byte for byte (its length prefix may grow by one).
    let mut len = MAX_PAYLOAD_BYTES - st.encode().len();
    loop {
        let mut candidate = st.clone();
        summary_of(&mut candidate).push(LocalizedText {
            language: format!("en-x{n}"),
            text: "a".repeat(len),
        });
        let size = candidate.encode().len();
        if size == MAX_PAYLOAD_BYTES {
            return candidate;
        }
        len = len + MAX_PAYLOAD_BYTES - size;
        assert!(size > MAX_PAYLOAD_BYTES - 16, "{size}");
    }
}

/// `env` with extra well-formed signatures after the first, up to [`MAX_SIGNATURES`]: the
/// largest envelope the protocol accepts for this payload.
fn with_all_signatures(mut env: SignedEnvelope) -> SignedEnvelope {
    let first = env.signatures[0].clone();
    while env.signatures.len() < MAX_SIGNATURES {
        env.signatures.push(EnvelopeSignature {
            key_id: format!("ed25519:{:016x}", env.signatures.len()),
            sig: first.sig.clone(),
        });
    }
    env
}

/// Finding 1: a 15 MiB key id, thousands of signatures and a wrong-length signature are each
/// refused with their own reason before any signature work; nothing is stored; a later
/// statement reaches the hub and the other member's mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_envelope_is_bounded_and_the_federation_keeps_working() {
    let c = Cluster::start(&["midwa"]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    raw.accept(&raw.policy("Before the attack")).await;
    let before = c.hub_snapshot().await;

    // A valid statement whose first signature verifies, then one with a 15 MiB key id: before
    // the fix accepted, and its feed entry then stalled every mirror.
    let mut huge_key_id = raw.sign(&raw.policy("Huge key id"));
    huge_key_id.signatures.push(EnvelopeSignature {
        key_id: "k".repeat(15 * 1024 * 1024),
        sig: vec![0; 64],
    });
    let status = raw
        .submit(huge_key_id.to_proto())
        .await
        .expect_err("refused");
    // The transport may refuse a request this large before the service reads it; if it
    // reaches the service, the bound names it.
    if !matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted) {
        assert_eq!(
            (status.code(), crate::harness::reason(&status)),
            (Code::InvalidArgument, "INVALID_KEY_ID".to_string()),
            "{}",
            describe(&status)
        );
    }
    assert!(
        trailer_bytes(&status) < CLIENT_HEADER_LIMIT,
        "{}",
        trailer_bytes(&status)
    );

    // A 100 KB key id in a small request: INVALID_KEY_ID, quoted only in part.
    let mut long_key_id = raw.sign(&raw.policy("Long key id"));
    long_key_id.signatures.push(EnvelopeSignature {
        key_id: "k".repeat(100_000),
        sig: vec![0; 64],
    });
    let status = assert_refused(
        raw.submit(long_key_id.to_proto()).await,
        Code::InvalidArgument,
        "INVALID_KEY_ID",
    );
    assert!(status.message().len() < 512, "{}", status.message());

    // 5000 signatures: the first verifies, the rest are never needed.
    let mut many = raw.sign(&raw.policy("Many signatures"));
    let first = many.signatures[0].clone();
    many.signatures = vec![first; 5000];
    assert_refused(
        raw.submit(many.to_proto()).await,
        Code::ResourceExhausted,
        "TOO_MANY_SIGNATURES",
    );

    // A 65-byte signature is malformed, not merely a bad signature.
    let mut long_sig = raw.sign(&raw.policy("Long signature"));
    long_sig.signatures[0].sig.push(0);
    assert_refused(
        raw.submit(long_sig.to_proto()).await,
        Code::InvalidArgument,
        "INVALID_SIGNATURE_LENGTH",
    );
    assert_eq!(c.hub_snapshot().await, before, "a refusal stored something");

    // The federation still works: colombo's next statement and a midwa publication reach the
    // hub and midwa's mirror.
    raw.accept(&raw.policy("After the attack")).await;
    c.publish_policy("midwa", "Midwa after the attack").await;
    assert_eventually!(c, TIMEOUT, c.delivered("midwa", 1).await, "midwa delivered");
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["midwa"]).await,
        "midwa's mirror matches the hub"
    );
}

/// The largest acceptable statements (payload exactly the limit, every allowed signature) pass
/// through the feed (midwa's mirror), GetStatement, ListStatements and ListLogEntries (pages cut
/// to fit a default 4 MiB client) and `rcpfed export bundle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_statements_travel_everywhere() {
    let c = Cluster::start(&["midwa"]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    // Enough of them that one page of 100 would be over 4 MiB.
    let count = MAX_PAGE_BYTES / MAX_PAYLOAD_BYTES + 2;
    let mut envelopes = Vec::new();
    for i in 0..count {
        let st = largest_policy(&raw, &format!("Largest {i}"));
        let env = with_all_signatures(raw.sign(&st));
        assert_eq!(env.payload.len(), MAX_PAYLOAD_BYTES);
        let accepted = raw.submit(env.to_proto()).await;
        assert!(
            accepted.is_ok(),
            "{:?}",
            accepted.err().map(|s| describe(&s))
        );
        raw.seq = st.header.seq;
        raw.head = Some(env.digest());
        envelopes.push(env);
    }
    let hub = c.hub_statements().await;
    assert_eventually!(
        c,
        Duration::from_secs(60),
        c.mirrors_match_hub(&["midwa"]).await,
        "midwa mirrors the largest statements"
    );

    let mut client = default_client(&c).await;
    let one = client
        .get_statement(v1::GetStatementRequest {
            name: "nodes/colombo/statements/1".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("GetStatement: {}", describe(&s)))
        .into_inner()
        .statement
        .expect("a record");
    let stored = one.envelope.expect("the envelope");
    assert_eq!(stored.payload, envelopes[0].payload);
    assert_eq!(stored.signatures.len(), MAX_SIGNATURES);

    // Every page fits the default client; together they list everything.
    let mut start = 0;
    let mut leaves = 0;
    loop {
        let page = client
            .list_log_entries(v1::ListLogEntriesRequest {
                start_index: start,
                page_size: 1000,
            })
            .await
            .unwrap_or_else(|s| panic!("ListLogEntries from {start}: {}", describe(&s)))
            .into_inner();
        if page.entries.is_empty() {
            break;
        }
        leaves += page.entries.len();
        start = page.next_start_index;
    }
    assert_eq!(leaves, hub.len(), "ListLogEntries lists every leaf");
    let mut token = String::new();
    let mut listed = 0;
    loop {
        let page = client
            .list_statements(v1::ListStatementsRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("ListStatements: {}", describe(&s)))
            .into_inner();
        listed += page.statements.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, hub.len(), "ListStatements lists every statement");
    // midwa's node lists its mirror the same way: each record also carries the decoded
    // statement (about twice the envelope), and a page still fits the default client.
    let channel = connect(c.node_addr("midwa").port(), &c.tls("operator"))
        .await
        .expect("connecting to midwa's node");
    let mut node = NodeServiceClient::new(channel);
    let mut token = String::new();
    let mut mirrored = 0;
    loop {
        let page = node
            .list_mirrored_statements(v1::ListMirroredStatementsRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("ListMirroredStatements: {}", describe(&s)))
            .into_inner();
        mirrored += page.statements.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        mirrored,
        hub.len(),
        "ListMirroredStatements lists every statement"
    );

    let bundle = c.root().join("largest.json");
    let (code, stdout, stderr) = run_rcpfed_async(vec![
        "export".into(),
        "bundle".into(),
        "--hub".into(),
        c.hub_endpoint(),
        "--pki".into(),
        c.fed_dir().to_string_lossy().into_owned(),
        "--statement".into(),
        format!("nodes/colombo/statements/{count}"),
        "--out".into(),
        bundle.to_string_lossy().into_owned(),
    ])
    .await;
    assert_eq!(code, 0, "export bundle:\n{stdout}\n{stderr}");
    let size = std::fs::metadata(&bundle).map(|m| m.len()).unwrap_or(0);
    assert!(
        size as usize > MAX_PAYLOAD_BYTES,
        "the bundle holds the payload"
    );
}

/// Finding 15: a 5000-byte and a 100 KB document name are refused with INVALID_DOCUMENT_NAME in
/// trailers a default client accepts; the consistency proof answers as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_stay_small_and_codes_match_the_documentation() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    raw.accept(&raw.policy("First")).await;
    let before = c.hub_snapshot().await;
    for len in [5_000, 100_000] {
        let mut st = raw.policy("Long name");
        st.header.document = format!("regions/colombo/{}", "a".repeat(len));
        let status = assert_refused(
            raw.submit(raw.sign(&st).to_proto()).await,
            Code::InvalidArgument,
            "INVALID_DOCUMENT_NAME",
        );
        assert!(
            trailer_bytes(&status) < CLIENT_HEADER_LIMIT,
            "{len}: {} bytes of trailers",
            trailer_bytes(&status)
        );
        assert!(status.message().contains("bytes)"), "{}", status.message());
    }
    assert_eq!(c.hub_snapshot().await, before);

    let mut client = default_client(&c).await;
    let status = assert_refused(
        client
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: 1,
                new_size: 99_999,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        crate::harness::field_violations(&status)
            .first()
            .map(|v| v.0.clone()),
        Some("new_size".to_string())
    );
    raw.accept(&raw.policy("Still working")).await;
}

/// Finding 13: `..` and `.` name segments, query timestamps out of range and a CSV with an
/// unterminated quote are refused with the documented reason; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_out_of_range_are_refused() {
    let c = Cluster::start(&["colombo"]).await;
    c.wait_for_catalogue("colombo").await;
    // As midwa (no running midwa node), so colombo's node keeps its own chain.
    let mut raw = RawNode::connect(&c, "midwa").await;
    let before = c.hub_snapshot().await;
    for document in [
        "regions/midwa/../colombo/policies/x",
        "regions/midwa/./policies/x",
        "regions/midwa/policies/..",
    ] {
        let mut st = raw.policy("Dot segments");
        st.header.document = document.into();
        assert_refused(
            raw.submit(raw.sign(&st).to_proto()).await,
            Code::InvalidArgument,
            "INVALID_DOCUMENT_NAME",
        );
    }
    assert_eq!(c.hub_snapshot().await, before);

    for (field, at) in [
        // Year -29700 and year 10000, as the issue found them accepted.
        ("as_of", -999_367_286_400),
        ("updated_after", 253_402_300_800),
    ] {
        let ts = Some(prost_types::Timestamp {
            seconds: at,
            nanos: 0,
        });
        let mut query = v1::ObservationQuery {
            indicator: "REMIT_INFLOW".into(),
            ..Default::default()
        };
        if field == "as_of" {
            query.as_of = ts;
        } else {
            query.updated_after = ts;
        }
        for at in ["hub", "colombo"] {
            let status = assert_refused(
                c.query_observations(at, &query, 0).await,
                Code::InvalidArgument,
                "INVALID_QUERY",
            );
            assert_eq!(
                crate::harness::field_violations(&status)
                    .first()
                    .map(|v| v.0.clone()),
                Some(format!("query.{field}"))
            );
        }
    }

    // The CSV found to sign SOURCE="open": refused with its line, in a dry run and a publish.
    let csv = c.root().join("unterminated.csv");
    std::fs::write(
        &csv,
        "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,SOURCE\n\
         REMIT_INFLOW,LKA,2023,7.0,current USD,9,A,World Bank\n\
         REMIT_INFLOW,BGD,2023,21.0,current USD,9,A,\"open\n",
    )
    .expect("csv");
    let node = format!("https://localhost:{}", c.node_addr("colombo").port());
    for dry in [true, false] {
        let mut args: Vec<String> = [
            "publish",
            "--node",
            &node,
            "--pki",
            &c.fed_dir().to_string_lossy(),
            "indicators",
            &csv.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if dry {
            args.push("--dry-run".into());
        }
        let (code, stdout, stderr) = run_rcpfed_async(args).await;
        let text = format!("{stdout}{stderr}");
        assert_ne!(
            code, 0,
            "dry run {dry}: an unterminated quote passed: {text}"
        );
        assert!(
            text.contains("line 3") && text.contains("never closed"),
            "names the line: {text}"
        );
    }
    assert_eq!(c.hub_snapshot().await, before, "nothing was published");
    let status = c.node_status("colombo").await;
    assert_eq!(status.outbox_pending + status.outbox_delivered, 0);

    // Still working: colombo's node publishes and delivers.
    c.publish_policy("colombo", "After the bad inputs").await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered("colombo", 1).await,
        "colombo delivered"
    );
}

/// Observations of colombo's undated member states with the longest footnote and source the
/// rules allow, `n` distinct keys (years 2019 and 2020).
fn longest_observations(c: &Cluster, n: usize) -> Vec<Observation> {
    MigStock {
        years: vec!["2019".into(), "2020".into()],
        footnote: "f".repeat(MAX_NOTE_CHARS),
        source: "SYNTHETIC e2e test data, not real. ".repeat(30)[..MAX_NOTE_CHARS].to_string(),
        ..MigStock::new(undated_states(c, "colombo"))
    }
    .take(n)
}

/// The largest acceptable snapshot chunk (cut as close to the 4 MiB chunk limit as the node's
/// cutter goes) passes through SubmitSnapshot, GetSnapshotChunks, midwa's mirror (which
/// fetches the chunks), GetStatement and `rcpfed export bundle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_snapshot_chunk_travels_everywhere() {
    let c = Cluster::start(&["midwa"]).await;
    let raw = RawNode::connect(&c, "colombo").await;
    // As many of the longest observations as one chunk can hold.
    let mut observations = longest_observations(&c, 2600);
    let limit = MAX_CHUNK_BYTES as usize;
    let per_hundred = encode_chunks(&observations[..100], 100).1[0].len();
    observations.truncate(limit * 100 / per_hundred + 2);
    while encode_chunks(&observations, OBSERVATIONS_PER_CHUNK).1[0].len() > limit {
        observations.pop();
    }
    let (manifest, chunks) = encode_chunks(&observations, OBSERVATIONS_PER_CHUNK);
    assert_eq!(chunks.len(), 1);
    let largest = chunks[0].len();
    assert!(
        largest > limit - 4 * 1024,
        "the chunk ({largest} bytes) is not as large as a chunk may be"
    );
    eprintln!(
        "{} observations in one chunk of {largest} bytes",
        observations.len()
    );
    let statement = Statement {
        header: Header {
            document: "regions/colombo/indicators/mig_stock/largest".into(),
            ..raw.header(DocumentKind::IndicatorSnapshot)
        },
        body: Body::Indicators(IndicatorSnapshot {
            indicator: "MIG_STOCK".into(),
            observations: Vec::new(),
            chunks: Some(manifest.clone()),
        }),
    };
    let envelope = raw.sign(&statement);
    let mut parts = vec![v1::SubmitSnapshotRequest {
        part: Some(Part::Envelope(envelope.to_proto())),
    }];
    parts.extend(chunks.iter().map(|b| v1::SubmitSnapshotRequest {
        part: Some(Part::Chunk(b.clone())),
    }));
    raw.client
        .clone()
        .submit_snapshot(tokio_stream::iter(parts))
        .await
        .unwrap_or_else(|s| panic!("SubmitSnapshot: {}", describe(&s)));

    // The hub serves every chunk as signed.
    let mut hub = c.hub_client("operator").await;
    let mut stream = hub
        .get_snapshot_chunks(v1::GetSnapshotChunksRequest {
            digest: envelope.digest().as_bytes().to_vec(),
            first_chunk: 0,
        })
        .await
        .unwrap_or_else(|s| panic!("GetSnapshotChunks: {}", describe(&s)))
        .into_inner();
    let mut served = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .unwrap_or_else(|s| panic!("a chunk: {}", describe(&s)))
    {
        served.push(chunk.chunk);
    }
    assert_eq!(served, chunks, "the hub serves the chunks as signed");

    // midwa's mirror fetched and applied them: the same observations at the node.
    let query = v1::ObservationQuery {
        indicator: "MIG_STOCK".into(),
        ..Default::default()
    };
    assert_eventually!(
        c,
        Duration::from_secs(60),
        c.mirrors_match_hub(&["midwa"]).await
            && c.query_observations("midwa", &query, 10_000)
                .await
                .map(|(records, _)| records.len())
                .unwrap_or(0)
                == observations.len(),
        "midwa mirrors the largest chunk"
    );

    // A third party with default client limits reads the statement, and the bundle exports.
    let record = default_client(&c)
        .await
        .get_statement(v1::GetStatementRequest {
            name: "nodes/colombo/statements/1".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("GetStatement: {}", describe(&s)))
        .into_inner()
        .statement
        .expect("a record");
    assert_eq!(record.digest, envelope.digest().as_bytes().to_vec());
    let bundle = c.root().join("largest-chunk.json");
    let (code, stdout, stderr) = run_rcpfed_async(vec![
        "export".into(),
        "bundle".into(),
        "--hub".into(),
        c.hub_endpoint(),
        "--pki".into(),
        c.fed_dir().to_string_lossy().into_owned(),
        "--statement".into(),
        "nodes/colombo/statements/1".into(),
        "--out".into(),
        bundle.to_string_lossy().into_owned(),
    ])
    .await;
    assert_eq!(code, 0, "export bundle:\n{stdout}\n{stderr}");
}
