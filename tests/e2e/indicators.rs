//! Indicators and coherence (issue 5) over real processes: the signed catalogue reaches every
//! node and a new version follows it; bad snapshots are refused row by row at the node and at
//! the hub with nothing signed or stored; revisions are queryable with `as_of`,
//! `updated_after` and `include_history`, identically from the hub and from any mirror; the
//! coherence report names conflicts (with both signed sources), coverage gaps and revisions;
//! SDMX exports are read by real SDMX libraries (pysdmx, sdmx1); large snapshots travel in chunks;
//! acknowledged observations survive a hub crash.

use crate::harness::{
    Cluster, FAST_COHERENCE, HUB_ID, MigStock, RawNode, TIMEOUT, assert_refused, describe,
    every_alpha3, field_violations, observation, run_rcpfed_async, undated_states,
};
use prost::Message as _;
use rcpfed_core::Digest;
use rcpfed_core::catalogue::{embedded_catalogue_toml, verify_catalogue};
use rcpfed_core::chunks::{OBSERVATIONS_PER_CHUNK, encode_chunks};
use rcpfed_core::envelope::{SignedEnvelope, verify_signatures};
use rcpfed_core::keys::VerifyKey;
use rcpfed_core::statement::{
    Body, DocumentKind, IndicatorSnapshot, Observation, ObservationAction, Statement,
};
use rcpfed_proto::v1;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::Code;

/// Payload type of coherence reports (indicator_service.proto).
const COHERENCE_PAYLOAD_TYPE: &str = "application/vnd.rcpfed.coherence-report.v1+protobuf";

// ----- helpers ---------------------------------------------------------------------------------

/// A cluster for the indicator tests: coherence reports every 200 ms.
async fn start(nodes: &[&str]) -> Cluster {
    Cluster::start_with_env(nodes, &[FAST_COHERENCE]).await
}

/// Waits until `at` ("hub" or a node) serves a catalogue.
async fn wait_for_catalogue(c: &Cluster, at: &str) -> v1::GetCatalogueResponse {
    c.wait_for_catalogue(at).await;
    c.catalogue_at(at)
        .await
        .unwrap_or_else(|s| panic!("GetCatalogue at {at}: {}", describe(&s)))
}

/// The hub member's statement verification keys.
fn hub_keys(c: &Cluster) -> Vec<VerifyKey> {
    c.federation().hub().expect("hub member").keys.clone()
}

fn action(a: v1::ObservationAction) -> i32 {
    a as i32
}

/// A REMIT_INFLOW observation in billions of current USD.
fn remit(
    a: v1::ObservationAction,
    area: &str,
    period: &str,
    value: Option<f64>,
) -> v1::Observation {
    v1::Observation {
        action: action(a),
        ref_area: area.into(),
        time_period: period.into(),
        dimensions: Vec::new(),
        obs_value: value,
        obs_status: "A".into(),
        unit_measure: "current USD".into(),
        unit_mult: 9,
        conf_status: String::new(),
        footnote: String::new(),
        source: "World Bank/KNOMAD (e2e test figure)".into(),
    }
}

fn append(area: &str, period: &str, value: f64) -> v1::Observation {
    remit(v1::ObservationAction::Append, area, period, Some(value))
}

fn dim(id: &str, value: &str) -> v1::Dimension {
    v1::Dimension {
        id: id.into(),
        value: value.into(),
    }
}

/// A PublishDocument request for an indicator snapshot of `node`.
fn snapshot_request(
    node: &str,
    name: &str,
    indicator: &str,
    observations: Vec<v1::Observation>,
    validate_only: bool,
) -> v1::PublishDocumentRequest {
    v1::PublishDocumentRequest {
        document: format!(
            "regions/{node}/indicators/{}/{name}",
            indicator.to_lowercase()
        ),
        body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
            v1::IndicatorSnapshot {
                indicator: indicator.into(),
                observations,
                chunks: None,
            },
        )),
        validate_only,
        request_id: String::new(),
    }
}

/// Publishes a snapshot on `node`; panics if refused.
async fn publish(
    c: &Cluster,
    node: &str,
    name: &str,
    indicator: &str,
    observations: Vec<v1::Observation>,
) -> v1::PublishDocumentResponse {
    c.node_client(node, "operator")
        .await
        .publish_document(snapshot_request(node, name, indicator, observations, false))
        .await
        .unwrap_or_else(|s| panic!("publishing on {node}: {}\n{}", describe(&s), c.logs()))
        .into_inner()
}

/// Waits until `node` has `n` statements delivered, then returns the hub's record of the one
/// with `digest`.
async fn delivered_record(c: &Cluster, node: &str, n: u64, digest: &[u8]) -> v1::StatementRecord {
    assert_eventually!(
        c,
        TIMEOUT,
        c.delivered(node, n).await,
        "{node}: {n} delivered"
    );
    c.hub_statements_of(node)
        .await
        .into_iter()
        .find(|r| r.digest == digest)
        .unwrap_or_else(|| panic!("{node}: the hub does not list the delivered statement"))
}

fn query(indicator: &str) -> v1::ObservationQuery {
    v1::ObservationQuery {
        indicator: indicator.into(),
        ..Default::default()
    }
}

async fn query_at(c: &Cluster, at: &str, q: &v1::ObservationQuery) -> Vec<v1::ObservationRecord> {
    c.query_observations(at, q, 1000)
        .await
        .unwrap_or_else(|s| panic!("QueryObservations at {at}: {}\n{}", describe(&s), c.logs()))
        .0
}

fn ts_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn ts_from_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).expect("nanos"),
    }
}

/// (ref_area, time_period, value) of each record, in the order given.
fn values(records: &[v1::ObservationRecord]) -> Vec<(String, String, Option<f64>)> {
    records
        .iter()
        .map(|r| {
            let o = r.observation.as_ref().expect("observation");
            (o.ref_area.clone(), o.time_period.clone(), o.obs_value)
        })
        .collect()
}

fn key(area: &str, period: &str, value: Option<f64>) -> (String, String, Option<f64>) {
    (area.into(), period.into(), value)
}

/// Asserts every record's provenance matches the hub's ListStatements record of its statement:
/// node, digest, document, revision, feed index, leaf index = feed index − 1, acceptance time,
/// and the observation at `position` of the signed snapshot.
fn assert_provenance(records: &[v1::ObservationRecord], statements: &[v1::StatementRecord]) {
    let by_digest: BTreeMap<&[u8], &v1::StatementRecord> = statements
        .iter()
        .map(|s| (s.digest.as_slice(), s))
        .collect();
    for r in records {
        let p = r.provenance.as_ref().expect("provenance");
        let s = by_digest
            .get(p.statement_digest.as_slice())
            .unwrap_or_else(|| panic!("no statement with the digest of {r:?}"));
        let st = Statement::decode(&s.envelope.as_ref().expect("envelope").payload)
            .expect("statement payload");
        assert_eq!(p.node_id, s.node_id, "provenance node of {r:?}");
        assert_eq!(p.node_id, st.header.node_id);
        assert_eq!(
            p.document, st.header.document,
            "provenance document of {r:?}"
        );
        assert_eq!(
            p.revision, st.header.revision,
            "provenance revision of {r:?}"
        );
        assert_eq!(p.feed_index, s.feed_index, "provenance feed index of {r:?}");
        assert_eq!(
            p.leaf_index + 1,
            p.feed_index,
            "leaf index = feed index − 1"
        );
        assert_eq!(p.accepted_at, s.accepted_at, "acceptance time of {r:?}");
        let Body::Indicators(snap) = &st.body else {
            panic!("not a snapshot: {}", s.name)
        };
        assert_eq!(r.indicator, snap.indicator);
        let signed = snap.observations[usize::try_from(p.position).expect("position")].to_proto();
        assert_eq!(
            r.observation.as_ref(),
            Some(&signed),
            "the observation as signed"
        );
    }
}

/// The CLI's connection arguments for the hub.
fn hub_cli(c: &Cluster) -> Vec<String> {
    vec![
        "--hub".into(),
        c.hub_endpoint(),
        "--pki".into(),
        c.fed_dir().to_string_lossy().into_owned(),
    ]
}

/// The CLI's connection arguments for a node.
fn node_cli(c: &Cluster, node: &str) -> Vec<String> {
    vec![
        "--node".into(),
        format!("https://localhost:{}", c.node_addr(node).port()),
        "--pki".into(),
        c.fed_dir().to_string_lossy().into_owned(),
    ]
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
}

/// LKA, BGD and IND remittances for 2023, appended.
fn three_remittances() -> Vec<v1::Observation> {
    vec![
        append("LKA", "2023", 6.5),
        append("BGD", "2023", 21.5),
        append("IND", "2023", 120.0),
    ]
}

/// Runs `rcpfed publish indicators <file> --dry-run` against `node`.
async fn dry_run(c: &Cluster, node: &str, file: &Path) -> (i32, String, String) {
    let mut args = strings(&["publish"]);
    args.extend(node_cli(c, node));
    args.extend(strings(&[
        "indicators",
        &file.to_string_lossy(),
        "--dry-run",
    ]));
    run_rcpfed_async(args).await
}

/// Runs `rcpfed <command> <hub connection> <extra>`.
async fn run_at_hub(c: &Cluster, command: &[&str], extra: &[&str]) -> (i32, String, String) {
    let mut args = strings(command);
    args.extend(hub_cli(c));
    args.extend(strings(extra));
    run_rcpfed_async(args).await
}

/// How many MIG_STOCK observations of midwa the hub stores.
async fn midwa_stored_at_hub(c: &Cluster) -> usize {
    c.query_observations(
        "hub",
        &v1::ObservationQuery {
            node_ids: vec!["midwa".into()],
            ..query("MIG_STOCK")
        },
        10_000,
    )
    .await
    .expect("midwa query")
    .0
    .len()
}

/// Runs a Python script with the venv's Python; returns its standard output; panics unless
/// it exits 0.
async fn run_python(script: &str, args: &[&Path]) -> String {
    let mut cmd = tokio::process::Command::new(crate::harness::venv_python("pysdmx and sdmx1"));
    cmd.arg("-c").arg(script).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("python took more than 120 s")
        .expect("running python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The whole text ExportSdmx streams for `q` in `format` at `at`, and its media type.
async fn export(
    c: &Cluster,
    at: &str,
    q: &v1::ObservationQuery,
    format: v1::SdmxFormat,
) -> (String, String) {
    let mut stream = c
        .indicators(at)
        .await
        .export_sdmx(v1::ExportSdmxRequest {
            query: Some(q.clone()),
            format: format as i32,
        })
        .await
        .unwrap_or_else(|s| panic!("ExportSdmx at {at}: {}", describe(&s)))
        .into_inner();
    let mut data = Vec::new();
    let mut media_type = String::new();
    while let Some(piece) = stream
        .message()
        .await
        .unwrap_or_else(|s| panic!("ExportSdmx stream at {at}: {}", describe(&s)))
    {
        if media_type.is_empty() {
            media_type = piece.media_type;
        }
        data.extend(piece.data);
    }
    (String::from_utf8(data).expect("UTF-8 export"), media_type)
}

/// `n` distinct, valid MIG_STOCK observations (2020, persons) over `areas` × every ISO 3166-1
/// origin × SEX × AGE.
fn mig_stock(areas: &[String], n: usize) -> Vec<Observation> {
    MigStock {
        origins: every_alpha3(),
        value: |index| f64::from(u32::try_from(index % 5000).unwrap_or(0)),
        ..MigStock::new(areas.to_vec())
    }
    .take(n)
}

/// Writes observations as the project's simple CSV format.
fn write_csv(path: &Path, indicator: &str, observations: &[Observation]) {
    let mut text = String::from(
        "INDICATOR,REF_AREA,TIME_PERIOD,SEX,AGE,COUNTERPART_AREA,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,ACTION,SOURCE\n",
    );
    for o in observations {
        let d = |id: &str| {
            o.dimensions
                .iter()
                .find(|(k, _)| k == id)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        text.push_str(&format!(
            "{indicator},{},{},{},{},{},{},{},{},{},append,{}\n",
            o.ref_area,
            o.time_period,
            d("SEX"),
            d("AGE"),
            d("COUNTERPART_AREA"),
            o.obs_value.expect("value"),
            o.unit_measure,
            o.unit_mult,
            o.obs_status,
            o.source
        ));
    }
    std::fs::write(path, text).expect("writing CSV");
}

// ----- 1. catalogue distribution ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_reaches_every_node_and_a_new_version_follows() {
    let mut c = start(&["colombo", "abu-dhabi"]).await;
    let fed = c.federation();
    let keys = hub_keys(&c);

    // Version 1, signed by the hub member, first in its chain.
    let v1 = wait_for_catalogue(&c, "hub").await;
    let doc1 = v1.catalogue.clone().expect("decoded catalogue");
    assert_eq!(doc1.version, 1);
    assert!(doc1.previous_digest.is_empty(), "version 1 has no previous");
    assert_eq!(doc1.federation_id, fed.federation_id);
    let env1 = SignedEnvelope::from_proto(v1.envelope.clone().expect("envelope"));
    verify_catalogue(&env1, &keys, &fed.federation_id, None)
        .unwrap_or_else(|e| panic!("catalogue v1 does not verify with the hub key: {e}"));
    assert_eq!(
        v1::CatalogueDocument::decode(env1.payload.as_slice()).expect("payload"),
        doc1,
        "the decoded catalogue is the signed one"
    );
    assert!(v1.feed_index >= 1);
    assert!(
        doc1.indicators.iter().any(|i| i.code == "REMIT_INFLOW"),
        "the shipped catalogue"
    );
    // It is a feed entry like any other: the hub lists it with the same envelope.
    let listed = c.hub_statements().await;
    let entry = listed
        .iter()
        .find(|r| r.feed_index == v1.feed_index)
        .expect("the catalogue's feed entry");
    assert_eq!(entry.node_id, format!("{HUB_ID}/catalogue"));
    assert_eq!(
        entry.envelope, v1.envelope,
        "ListStatements has the same envelope"
    );

    // Every node mirrors the identical envelope, byte for byte.
    for node in ["colombo", "abu-dhabi"] {
        assert_eventually!(
            c,
            TIMEOUT,
            c.catalogue_at(node)
                .await
                .ok()
                .map(|r| r.envelope.map(|e| e.encode_to_vec()))
                == Some(v1.envelope.clone().map(|e| e.encode_to_vec())),
            "{node} serves catalogue v1 byte for byte"
        );
        let at_node = c.catalogue_at(node).await.expect("node catalogue");
        assert_eq!(at_node, v1, "{node}: the same response");
    }

    // An indicator the catalogue does not have yet is refused at the node.
    let new_obs = v1::Observation {
        unit_measure: "persons".into(),
        unit_mult: 0,
        ..append("LKA", "2023", 1_500_000.0)
    };
    let mut node = c.node_client("colombo", "operator").await;
    let refused = node
        .publish_document(snapshot_request(
            "colombo",
            "emigrants",
            "EMIGRANT_STOCK",
            vec![new_obs.clone()],
            true,
        ))
        .await;
    assert_refused(refused, Code::InvalidArgument, "UNKNOWN_INDICATOR");

    // The hub restarts with a changed catalogue file: version 2 chained to version 1.
    let changed =
        embedded_catalogue_toml().replacen("version = \"1.0.0\"", "version = \"1.1.0\"", 1)
            + r#"
[[indicators]]
code = "EMIGRANT_STOCK"
sdg_series = ""
name = "Emigrant stock (added by the e2e test)"
custodian = "UN DESA Population Division"
units = ["persons"]
unit_mults = [0]
frequencies = ["A"]
dimensions = []
ranges = [
  { min = 0.0, severity = "error" },
]
"#;
    let path = c.root().join("catalogue-v2.toml");
    std::fs::write(&path, changed).expect("writing the catalogue");
    c.set_env("RCPFED_HUB_CATALOGUE", &path.to_string_lossy());
    c.stop_hub().await;
    c.start_hub().await;
    let v2 = wait_for_catalogue(&c, "hub").await;
    let doc2 = v2.catalogue.clone().expect("decoded catalogue");
    assert_eq!(doc2.version, 2, "a changed file is a new version");
    assert_eq!(doc2.catalogue_version, "1.1.0");
    assert_eq!(
        doc2.previous_digest,
        env1.digest().0.to_vec(),
        "previous_digest is the SHA-256 of version 1's payload"
    );
    assert!(doc2.indicators.iter().any(|i| i.code == "EMIGRANT_STOCK"));
    assert!(v2.feed_index > v1.feed_index);
    let env2 = SignedEnvelope::from_proto(v2.envelope.clone().expect("envelope"));
    verify_catalogue(&env2, &keys, &fed.federation_id, Some((1, env1.digest())))
        .unwrap_or_else(|e| panic!("catalogue v2 does not chain to v1: {e}"));

    // Version 2 reaches the nodes; version 1 stays readable.
    for node in ["colombo", "abu-dhabi"] {
        assert_eventually!(
            c,
            TIMEOUT,
            c.catalogue_at(node).await.ok().map(|r| r.envelope) == Some(v2.envelope.clone()),
            "{node} serves catalogue v2"
        );
        let old = c
            .indicators(node)
            .await
            .get_catalogue(v1::GetCatalogueRequest { version: 1 })
            .await
            .expect("version 1")
            .into_inner();
        assert_eq!(old.envelope, v1.envelope, "{node}: version 1 by number");
    }

    // The node now validates against version 2, and so does the hub.
    let published = publish(&c, "colombo", "emigrants", "EMIGRANT_STOCK", vec![new_obs]).await;
    delivered_record(&c, "colombo", 1, &published.digest).await;

    // Restarting with the same file issues nothing new.
    c.stop_hub().await;
    c.start_hub().await;
    let again = wait_for_catalogue(&c, "hub").await;
    assert_eq!(again.envelope, v2.envelope, "same content, same version 2");
}

// ----- 2. validation at the node ---------------------------------------------------------------

struct Case {
    what: &'static str,
    indicator: &'static str,
    observations: Vec<v1::Observation>,
    reason: &'static str,
    field: &'static str,
}

fn node_cases() -> Vec<Case> {
    use v1::ObservationAction as A;
    let mig = |area: &str, sex: &str| v1::Observation {
        dimensions: vec![dim("SEX", sex)],
        unit_measure: "persons".into(),
        unit_mult: 6,
        ..append(area, "2020", 1.5)
    };
    let fee = |period: &str| v1::Observation {
        unit_measure: "percent".into(),
        unit_mult: 0,
        ..append("LKA", period, 6.2)
    };
    vec![
        Case {
            what: "unknown indicator",
            indicator: "NOT_IN_CATALOGUE",
            observations: vec![append("BGD", "2023", 21.0)],
            reason: "UNKNOWN_INDICATOR",
            field: "indicator_snapshot.indicator",
        },
        Case {
            what: "unknown dimension",
            indicator: "REMIT_INFLOW",
            observations: vec![
                append("BGD", "2023", 21.0),
                v1::Observation {
                    dimensions: vec![dim("COLOUR", "RED")],
                    ..append("IND", "2023", 120.0)
                },
            ],
            reason: "UNKNOWN_DIMENSION",
            field: "indicator_snapshot.observations[1].dimensions[0].id",
        },
        Case {
            what: "code not in its codelist",
            indicator: "MIG_STOCK",
            observations: vec![mig("BGD", "F"), mig("IND", "X")],
            reason: "CODE_NOT_IN_CODELIST",
            field: "indicator_snapshot.observations[1].dimensions[0].value",
        },
        Case {
            what: "value outside the error range",
            indicator: "REMIT_INFLOW",
            observations: vec![append("BGD", "2023", -3.0)],
            reason: "VALUE_OUT_OF_RANGE",
            field: "indicator_snapshot.observations[0].obs_value",
        },
        Case {
            what: "wrong unit",
            indicator: "REMIT_INFLOW",
            observations: vec![v1::Observation {
                unit_measure: "persons".into(),
                ..append("BGD", "2023", 21.0)
            }],
            reason: "UNIT_MISMATCH",
            field: "indicator_snapshot.observations[0].unit_measure",
        },
        Case {
            what: "unit multiplier not allowed",
            indicator: "REMIT_INFLOW",
            observations: vec![v1::Observation {
                unit_mult: 3,
                ..append("BGD", "2023", 21.0)
            }],
            reason: "UNIT_MISMATCH",
            field: "indicator_snapshot.observations[0].unit_mult",
        },
        Case {
            what: "duplicate keys",
            indicator: "REMIT_INFLOW",
            observations: vec![append("BGD", "2023", 21.0), append("BGD", "2023", 22.0)],
            reason: "DUPLICATE_KEY",
            field: "indicator_snapshot.observations[1]",
        },
        Case {
            what: "mixed frequencies",
            indicator: "SDG_10_C_1",
            observations: vec![fee("2022"), fee("2023-Q3")],
            reason: "MIXED_FREQUENCIES",
            field: "indicator_snapshot.observations[1].time_period",
        },
        Case {
            what: "frequency the indicator does not allow",
            indicator: "REMIT_INFLOW",
            observations: vec![append("BGD", "2023-Q1", 5.0)],
            reason: "FREQUENCY_NOT_ALLOWED",
            field: "indicator_snapshot.observations[0].time_period",
        },
        Case {
            what: "a state that is not a member of colombo",
            indicator: "REMIT_INFLOW",
            observations: vec![append("BGD", "2023", 21.0), append("ARE", "2023", 1.0)],
            reason: "NOT_A_MEMBER_STATE",
            field: "indicator_snapshot.observations[1].ref_area",
        },
        Case {
            what: "delete of an observation that does not exist",
            indicator: "REMIT_INFLOW",
            observations: vec![remit(A::Delete, "BGD", "2019", None)],
            reason: "OBSERVATION_NOT_FOUND",
            field: "indicator_snapshot.observations[0]",
        },
        Case {
            what: "replace of an observation that does not exist",
            indicator: "REMIT_INFLOW",
            observations: vec![remit(A::Replace, "BGD", "2019", Some(4.0))],
            reason: "OBSERVATION_NOT_FOUND",
            field: "indicator_snapshot.observations[0]",
        },
        Case {
            what: "append of an observation that exists",
            indicator: "REMIT_INFLOW",
            observations: vec![append("IND", "2022", 1.0), append("LKA", "2023", 7.0)],
            reason: "OBSERVATION_EXISTS",
            field: "indicator_snapshot.observations[1]",
        },
    ]
}

/// Asserts `status` names exactly `field` among its BadRequest violations, with a description,
/// and says what is wrong in its message.
fn assert_names_field(status: &tonic::Status, field: &str, what: &str) {
    let fields = field_violations(status);
    assert!(
        fields.iter().any(|(f, d)| f == field && !d.is_empty()),
        "{what}: expected a violation on {field}, got {}",
        describe(status)
    );
    assert!(
        !status.message().is_empty(),
        "{what}: a message in plain words"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refuses_bad_snapshots_row_by_row_and_signs_nothing() {
    let c = start(&["colombo"]).await;
    wait_for_catalogue(&c, "colombo").await;
    // One accepted snapshot, mirrored back, so that "append of an existing one" has a target.
    let first = publish(
        &c,
        "colombo",
        "base",
        "REMIT_INFLOW",
        vec![append("LKA", "2023", 7.0)],
    )
    .await;
    delivered_record(&c, "colombo", 1, &first.digest).await;
    assert_eventually!(
        c,
        TIMEOUT,
        query_at(&c, "colombo", &query("REMIT_INFLOW")).await.len() == 1,
        "colombo mirrors its own snapshot"
    );
    let outbox = c.outbox("colombo").await;
    let status = c.node_status("colombo").await;

    let mut node = c.node_client("colombo", "operator").await;
    for case in node_cases() {
        for validate_only in [true, false] {
            let result = node
                .publish_document(snapshot_request(
                    "colombo",
                    "bad",
                    case.indicator,
                    case.observations.clone(),
                    validate_only,
                ))
                .await;
            let s = assert_refused(result, Code::InvalidArgument, case.reason);
            assert_names_field(&s, case.field, case.what);
        }
    }
    // Nothing was signed or queued.
    assert_eq!(c.outbox("colombo").await, outbox, "the outbox is unchanged");
    let after = c.node_status("colombo").await;
    assert_eq!(
        (after.head_seq, after.head_digest.clone()),
        (status.head_seq, status.head_digest.clone()),
        "the chain head is unchanged"
    );

    // A value in a warning range is accepted with a warning: validate-only, then for real.
    let warn = vec![append("BGD", "2023", 2500.0)];
    let dry = node
        .publish_document(snapshot_request(
            "colombo",
            "big-figure",
            "REMIT_INFLOW",
            warn.clone(),
            true,
        ))
        .await
        .unwrap_or_else(|s| panic!("a warning refused the snapshot: {}", describe(&s)))
        .into_inner();
    assert_eq!(dry.seq, 0);
    assert!(
        !dry.warnings.is_empty(),
        "validate-only reports the range warning"
    );
    assert_eq!(
        c.outbox("colombo").await,
        outbox,
        "validate-only signs nothing"
    );
    let real = publish(&c, "colombo", "big-figure", "REMIT_INFLOW", warn).await;
    assert_eq!(real.seq, 2);
    assert_eq!(
        real.warnings, dry.warnings,
        "the same warnings when signing"
    );
    delivered_record(&c, "colombo", 2, &real.digest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_dry_run_names_line_and_column_and_malformed_sdmx_headers_are_refused() {
    let c = start(&["colombo"]).await;
    wait_for_catalogue(&c, "colombo").await;
    let dir = c.root();

    // Line 3 has a unit the indicator does not use.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS\n\
         REMIT_INFLOW,LKA,2023,7.0,current USD,9,A\n\
         REMIT_INFLOW,BGD,2023,21.0,persons,9,A\n",
    )
    .expect("bad.csv");
    let (code, stdout, stderr) = dry_run(&c, "colombo", &bad).await;
    let text = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "a bad row fails the dry run: {text}");
    assert!(
        text.contains("line 3, column UNIT_MEASURE"),
        "names the line and column: {text}"
    );

    // The same file without the bad row passes the dry run and signs nothing.
    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS\n\
         REMIT_INFLOW,LKA,2023,7.0,current USD,9,A\n",
    )
    .expect("good.csv");
    let (code, stdout, stderr) = dry_run(&c, "colombo", &good).await;
    assert_eq!(code, 0, "a good file passes the dry run: {stdout}{stderr}");

    // SDMX-CSV 2.0 whose header has a malformed column name.
    let sdmx = dir.join("malformed.csv");
    std::fs::write(
        &sdmx,
        "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,SEX[]\n\
         dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023,7.0,current USD,9,\n",
    )
    .expect("malformed.csv");
    let (code, stdout, stderr) = dry_run(&c, "colombo", &sdmx).await;
    let text = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "a malformed header is refused: {text}");
    assert!(text.contains("SEX[]"), "names the column: {text}");

    // An SDMX-CSV file without the required OBS_VALUE column.
    let missing = dir.join("missing.csv");
    std::fs::write(
        &missing,
        "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,UNIT_MEASURE\n\
         dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023,current USD\n",
    )
    .expect("missing.csv");
    let (code, stdout, stderr) = dry_run(&c, "colombo", &missing).await;
    let text = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "a header without OBS_VALUE is refused: {text}");
    assert!(text.contains("OBS_VALUE"), "names the column: {text}");

    assert!(c.outbox("colombo").await.is_empty(), "nothing was signed");
}

// ----- 3. validation at the hub ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_refuses_signed_snapshots_that_break_the_catalogue() {
    let c = start(&[]).await;
    wait_for_catalogue(&c, "hub").await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let first = raw.indicators(vec![observation("LKA", "2023", 7000.0)]);
    raw.accept(&first).await;
    let before = c.hub_statements_of("colombo").await;
    let observations_before = query_at(&c, "hub", &query("REMIT_INFLOW")).await;
    assert_eq!(observations_before.len(), 1);

    let with = |f: &dyn Fn(&mut Observation)| {
        let mut o = observation("BGD", "2023", 21_000.0);
        f(&mut o);
        vec![observation("IND", "2023", 120_000.0), o]
    };
    let mut cases: Vec<(&str, Statement, &str, &str)> = vec![
        (
            "wrong unit",
            raw.indicators(with(&|o| o.unit_measure = "persons".into())),
            "UNIT_MISMATCH",
            "indicator_snapshot.observations[1].unit_measure",
        ),
        (
            "value outside the error range",
            raw.indicators(with(&|o| o.obs_value = Some(-1.0))),
            "VALUE_OUT_OF_RANGE",
            "indicator_snapshot.observations[1].obs_value",
        ),
        (
            "unknown dimension",
            raw.indicators(with(&|o| {
                o.dimensions = vec![("COLOUR".into(), "RED".into())];
            })),
            "UNKNOWN_DIMENSION",
            "indicator_snapshot.observations[1].dimensions[0].id",
        ),
        (
            "frequency not allowed",
            raw.indicators(with(&|o| o.time_period = "2023-05".into())),
            "FREQUENCY_NOT_ALLOWED",
            "indicator_snapshot.observations[1].time_period",
        ),
        (
            "non-member state",
            raw.indicators(with(&|o| o.ref_area = "ARE".into())),
            "NOT_A_MEMBER_STATE",
            "indicator_snapshot.observations[1].ref_area",
        ),
        (
            "append of an existing observation",
            raw.indicators(vec![observation("LKA", "2023", 7100.0)]),
            "OBSERVATION_EXISTS",
            "indicator_snapshot.observations[0]",
        ),
        (
            "delete of an observation that does not exist",
            raw.indicators(vec![Observation {
                action: ObservationAction::Delete,
                obs_value: None,
                ..observation("LKA", "2020", 0.0)
            }]),
            "OBSERVATION_NOT_FOUND",
            "indicator_snapshot.observations[0]",
        ),
    ];
    let mut unknown = raw.indicators(vec![observation("LKA", "2021", 1.0)]);
    if let Body::Indicators(s) = &mut unknown.body {
        s.indicator = "NOT_IN_CATALOGUE".into();
    }
    cases.push((
        "unknown indicator",
        unknown,
        "UNKNOWN_INDICATOR",
        "indicator_snapshot.indicator",
    ));

    for (what, statement, reason, field) in cases {
        let env = raw.sign(&statement);
        let s = assert_refused(
            raw.submit(env.to_proto()).await,
            Code::InvalidArgument,
            reason,
        );
        assert_names_field(&s, field, what);
        assert_eq!(
            c.hub_statements_of("colombo").await,
            before,
            "{what}: ListStatements unchanged"
        );
    }
    assert_eq!(
        query_at(&c, "hub", &query("REMIT_INFLOW")).await,
        observations_before,
        "no observation stored"
    );
    // The chain did not move: the next valid statement takes seq 2.
    let next = raw.indicators(vec![observation("BGD", "2023", 21_000.0)]);
    assert_eq!(next.header.seq, 2);
    raw.accept(&next).await;
    assert_eq!(query_at(&c, "hub", &query("REMIT_INFLOW")).await.len(), 2);
}

// ----- 4. revisions, as_of, updated_after, history; hub and mirrors agree ----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_queryable_as_of_and_updated_after_identically_on_hub_and_mirrors() {
    use v1::ObservationAction as A;
    let c = start(&["colombo", "abu-dhabi"]).await;
    wait_for_catalogue(&c, "colombo").await;

    let s1 = publish(&c, "colombo", "rev", "REMIT_INFLOW", three_remittances()).await;
    let r1 = delivered_record(&c, "colombo", 1, &s1.digest).await;
    // The node checks actions against its mirror: wait until its own statement is back.
    assert_eventually!(
        c,
        TIMEOUT,
        query_at(&c, "colombo", &query("REMIT_INFLOW")).await.len() == 3,
        "colombo mirrors the appends"
    );
    let s2 = publish(
        &c,
        "colombo",
        "rev",
        "REMIT_INFLOW",
        vec![remit(A::Replace, "LKA", "2023", Some(6.8))],
    )
    .await;
    let r2 = delivered_record(&c, "colombo", 2, &s2.digest).await;
    assert_eventually!(
        c,
        TIMEOUT,
        query_at(&c, "colombo", &query("REMIT_INFLOW"))
            .await
            .iter()
            .any(|r| r.observation.as_ref().and_then(|o| o.obs_value) == Some(6.8)),
        "colombo mirrors the replacement"
    );
    let s3 = publish(
        &c,
        "colombo",
        "rev",
        "REMIT_INFLOW",
        vec![remit(A::Delete, "BGD", "2023", None)],
    )
    .await;
    let r3 = delivered_record(&c, "colombo", 3, &s3.digest).await;
    assert_eq!((s1.revision, s2.revision, s3.revision), (1, 2, 3));
    let (t1, t2, t3) = (
        ts_ms(r1.accepted_at.as_ref().expect("t1")),
        ts_ms(r2.accepted_at.as_ref().expect("t2")),
        ts_ms(r3.accepted_at.as_ref().expect("t3")),
    );
    assert!(t1 < t2 && t2 < t3, "acceptance times {t1} < {t2} < {t3}");

    let queries: Vec<(&str, v1::ObservationQuery)> = vec![
        ("current", query("REMIT_INFLOW")),
        (
            "as_of between the appends and the replacement",
            v1::ObservationQuery {
                as_of: Some(ts_from_ms(t2 - 1)),
                ..query("REMIT_INFLOW")
            },
        ),
        (
            "as_of between the replacement and the delete",
            v1::ObservationQuery {
                as_of: Some(ts_from_ms(t3 - 1)),
                ..query("REMIT_INFLOW")
            },
        ),
        (
            "updated_after the appends",
            v1::ObservationQuery {
                updated_after: Some(ts_from_ms(t1)),
                ..query("REMIT_INFLOW")
            },
        ),
        (
            "include_history",
            v1::ObservationQuery {
                include_history: true,
                ..query("REMIT_INFLOW")
            },
        ),
        (
            "include_history for LKA only",
            v1::ObservationQuery {
                include_history: true,
                ref_areas: vec!["LKA".into()],
                node_ids: vec!["colombo".into()],
                start_period: "2023".into(),
                end_period: "2023".into(),
                ..query("REMIT_INFLOW")
            },
        ),
    ];
    let mut at_hub = Vec::new();
    for (_, q) in &queries {
        at_hub.push(query_at(&c, "hub", q).await);
    }
    let hub_statements = c.hub_statements().await;
    for ((what, _), records) in queries.iter().zip(&at_hub) {
        assert_provenance(records, &hub_statements);
        let order: Vec<(u64, u64)> = records
            .iter()
            .map(|r| {
                let p = r.provenance.as_ref().expect("provenance");
                (p.feed_index, p.position)
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "{what}: in feed order, then position");
    }
    let actions = |records: &[v1::ObservationRecord]| -> Vec<i32> {
        records
            .iter()
            .map(|r| r.observation.as_ref().expect("obs").action)
            .collect()
    };

    // Current view: the replaced value, the deleted key absent.
    assert_eq!(
        values(&at_hub[0]),
        [
            key("IND", "2023", Some(120.0)),
            key("LKA", "2023", Some(6.8))
        ],
        "current view"
    );
    assert!(at_hub[0].iter().all(|r| r.superseded_at.is_none()));
    // As of a moment between the appends and the replacement: the old values.
    assert_eq!(
        values(&at_hub[1]),
        [
            key("LKA", "2023", Some(6.5)),
            key("BGD", "2023", Some(21.5)),
            key("IND", "2023", Some(120.0)),
        ],
        "as_of before the replacement"
    );
    assert_eq!(
        values(&at_hub[2]),
        [
            key("BGD", "2023", Some(21.5)),
            key("IND", "2023", Some(120.0)),
            key("LKA", "2023", Some(6.8)),
        ],
        "as_of before the delete"
    );
    // Updated after the appends: the replacement and the tombstone.
    assert_eq!(
        values(&at_hub[3]),
        [key("LKA", "2023", Some(6.8)), key("BGD", "2023", None)],
        "updated_after"
    );
    assert_eq!(actions(&at_hub[3]), [action(A::Replace), action(A::Delete)]);
    // History: every version; the superseded ones say when.
    let history = &at_hub[4];
    assert_eq!(
        values(history),
        [
            key("LKA", "2023", Some(6.5)),
            key("BGD", "2023", Some(21.5)),
            key("IND", "2023", Some(120.0)),
            key("LKA", "2023", Some(6.8)),
            key("BGD", "2023", None),
        ],
        "include_history"
    );
    let superseded: Vec<Option<i64>> = history
        .iter()
        .map(|r| r.superseded_at.as_ref().map(ts_ms))
        .collect();
    assert_eq!(superseded, [Some(t2), Some(t3), None, None, None]);
    assert_eq!(
        values(&at_hub[5]),
        [key("LKA", "2023", Some(6.5)), key("LKA", "2023", Some(6.8))],
        "filters: area, node, period"
    );

    // The same queries against every node's mirror give identical records.
    for node in ["colombo", "abu-dhabi"] {
        for ((what, q), expected) in queries.iter().zip(&at_hub) {
            assert_eventually!(
                c,
                TIMEOUT,
                &query_at(&c, node, q).await == expected,
                "{node}: {what} as on the hub"
            );
        }
    }

    // Small pages give the same records.
    let (paged, pages) = c
        .query_observations("abu-dhabi", &queries[4].1, 2)
        .await
        .expect("paged");
    assert_eq!(&paged, history);
    assert_eq!(pages, 3);
    // The CLI answers the same from a node's mirror: the history, and the view as of a moment.
    let rfc3339 = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .expect("time")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    };
    for (extra, expected) in [
        (vec!["--history".to_string()], history.len()),
        (vec!["--as-of".to_string(), rfc3339(t2 - 1)], 3),
    ] {
        let out = c.root().join("query.json");
        let mut args = strings(&["query", "observations", "--endpoint"]);
        args.push(format!(
            "https://localhost:{}",
            c.node_addr("abu-dhabi").port()
        ));
        args.extend(strings(&["--pki", &c.fed_dir().to_string_lossy()]));
        args.extend(strings(&[
            "--indicator",
            "REMIT_INFLOW",
            "--format",
            "json",
            "--out",
        ]));
        args.push(out.to_string_lossy().into_owned());
        args.extend(extra.clone());
        let (code, stdout, stderr) = run_rcpfed_async(args).await;
        assert_eq!(
            code, 0,
            "rcpfed query observations {extra:?}: {stdout}{stderr}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("query file"))
                .expect("JSON");
        let records = json
            .as_array()
            .or_else(|| json["observations"].as_array())
            .unwrap_or_else(|| panic!("no records in {json}"));
        assert_eq!(records.len(), expected, "{extra:?}: {json}");
        if extra[0] == "--as-of" {
            // The values themselves (a timestamp such as "…:26.834Z" contains "6.8" too).
            let values: Vec<f64> = records
                .iter()
                .filter_map(|r| r["observation"]["obsValue"].as_f64())
                .collect();
            assert!(
                values.contains(&6.5) && !values.contains(&6.8),
                "as of before the replacement: {json}"
            );
        }
    }

    // A query without an indicator is refused.
    let refused = c
        .indicators("hub")
        .await
        .query_observations(v1::QueryObservationsRequest {
            query: Some(v1::ObservationQuery::default()),
            ..Default::default()
        })
        .await;
    assert_refused(refused, Code::InvalidArgument, "INVALID_QUERY");
}

// ----- 5. the coherence report -----------------------------------------------------------------

/// Waits for a report at the hub that covers feed index `index`; returns it.
async fn report_covering(c: &Cluster, index: u64) -> v1::GetCoherenceReportResponse {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok(r) = c.coherence_report_at("hub").await
            && r.report.as_ref().is_some_and(|rep| rep.feed_size >= index)
        {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no coherence report covering feed index {index}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Verifies the report envelope with the hub member's key; returns the payload's report.
fn verify_report(c: &Cluster, response: &v1::GetCoherenceReportResponse) -> v1::CoherenceReport {
    let env = SignedEnvelope::from_proto(response.envelope.clone().expect("envelope"));
    assert_eq!(env.payload_type, COHERENCE_PAYLOAD_TYPE);
    let keys = hub_keys(c);
    verify_signatures(&env, |id| keys.iter().find(|k| k.key_id == id))
        .unwrap_or_else(|e| panic!("the report is not signed by the hub member: {e}"));
    let report = v1::CoherenceReport::decode(env.payload.as_slice()).expect("report payload");
    assert_eq!(
        Some(&report),
        response.report.as_ref(),
        "the decoded report is the signed one"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coherence_report_names_conflicts_coverage_and_revisions() {
    use v1::ObservationAction as A;
    let c = start(&["colombo", "abu-dhabi"]).await;
    wait_for_catalogue(&c, "colombo").await;
    wait_for_catalogue(&c, "abu-dhabi").await;

    // BGD is a member of both processes: they report different figures for it.
    let colombo = publish(
        &c,
        "colombo",
        "remittances",
        "REMIT_INFLOW",
        vec![append("BGD", "2023", 21.5), append("LKA", "2023", 6.5)],
    )
    .await;
    let abu_dhabi = publish(
        &c,
        "abu-dhabi",
        "remittances",
        "REMIT_INFLOW",
        vec![append("BGD", "2023", 22.0)],
    )
    .await;
    c.publish_policy("colombo", "Fair recruitment").await;
    let colombo_rec = delivered_record(&c, "colombo", 2, &colombo.digest).await;
    let abu_rec = delivered_record(&c, "abu-dhabi", 1, &abu_dhabi.digest).await;
    let last = c
        .hub_statements()
        .await
        .iter()
        .filter(|r| r.node_id == "colombo" || r.node_id == "abu-dhabi")
        .map(|r| r.feed_index)
        .max()
        .expect("statements");

    let first = report_covering(&c, last).await;
    let report = verify_report(&c, &first);
    assert_eq!(report.federation_id, c.federation().federation_id);
    assert!(report.catalogue_version >= 1);
    assert!(
        first.feed_index > report.feed_size,
        "a report follows what it covers"
    );

    // The conflict, with both values and their signed sources.
    let conflict = report
        .conflicts
        .iter()
        .find(|k| {
            k.key.as_ref().is_some_and(|k| {
                k.indicator == "REMIT_INFLOW" && k.ref_area == "BGD" && k.time_period == "2023"
            })
        })
        .unwrap_or_else(|| panic!("no BGD 2023 conflict in {report:?}"));
    assert_eq!(
        report.conflicts.len(),
        1,
        "LKA is reported by one node only"
    );
    assert_eq!(report.total_conflicts, 1);
    let sides: Vec<(String, Option<f64>, Vec<u8>)> = conflict
        .values
        .iter()
        .map(|v| {
            let p = v.provenance.as_ref().expect("provenance");
            (
                p.node_id.clone(),
                v.observation.as_ref().and_then(|o| o.obs_value),
                p.statement_digest.clone(),
            )
        })
        .collect();
    assert_eq!(
        sides,
        [
            (
                "abu-dhabi".to_string(),
                Some(22.0),
                abu_dhabi.digest.clone()
            ),
            ("colombo".to_string(), Some(21.5), colombo.digest.clone()),
        ],
        "both sides, sorted by node, with their statements"
    );
    for v in &conflict.values {
        let p = v.provenance.as_ref().expect("provenance");
        let rec = if p.node_id == "colombo" {
            &colombo_rec
        } else {
            &abu_rec
        };
        assert_eq!(p.feed_index, rec.feed_index);
        assert_eq!(p.leaf_index + 1, p.feed_index);
    }
    let expected = (22.0 - 21.5) / 22.0;
    assert!(
        (conflict.relative_difference - expected).abs() < 1e-9,
        "relative difference {} (expected {expected})",
        conflict.relative_difference
    );

    // Coverage: each node's areas and the member states it does not report.
    let fed = c.federation();
    let states = |m: &str| -> Vec<String> {
        let mut s: Vec<String> = fed
            .members()
            .find(|x| x.id == m)
            .expect("member")
            .states
            .iter()
            .map(|s| s.iso3.clone())
            .collect();
        s.sort();
        s
    };
    for (node, areas) in [("colombo", vec!["BGD", "LKA"]), ("abu-dhabi", vec!["BGD"])] {
        let row = report
            .coverage
            .iter()
            .find(|r| r.node_id == node && r.indicator == "REMIT_INFLOW")
            .unwrap_or_else(|| panic!("no coverage row for {node}: {report:?}"));
        assert_eq!(row.ref_areas, areas, "{node} areas");
        let missing: Vec<String> = states(node)
            .into_iter()
            .filter(|s| !areas.contains(&s.as_str()))
            .collect();
        assert_eq!(row.missing_member_states, missing, "{node} gaps");
        assert_eq!(row.observation_count, areas.len() as u64);
        assert_eq!(
            (row.first_period.as_str(), row.last_period.as_str()),
            ("2023", "2023")
        );
    }
    // Policy coverage: colombo's summary addresses objective 6; objective 1 is unaddressed.
    let policy = report
        .policy_coverage
        .iter()
        .find(|p| p.node_id == "colombo")
        .expect("colombo policy coverage");
    assert_eq!(policy.gcm_objectives, [6]);
    assert!(report.unaddressed_gcm_objectives.contains(&1));
    assert!(!report.unaddressed_gcm_objectives.contains(&6));

    // Every node mirrors the same signed report.
    for node in ["colombo", "abu-dhabi"] {
        assert_eventually!(
            c,
            TIMEOUT,
            c.indicators(node)
                .await
                .get_coherence_report(v1::GetCoherenceReportRequest {
                    number: report.number
                })
                .await
                .ok()
                .map(|r| r.into_inner().envelope)
                == Some(first.envelope.clone()),
            "{node} serves report {} byte for byte",
            report.number
        );
    }

    // A revision after that report appears in the next one with its old and new values.
    assert_eventually!(
        c,
        TIMEOUT,
        query_at(
            &c,
            "colombo",
            &v1::ObservationQuery {
                node_ids: vec!["colombo".into()],
                ..query("REMIT_INFLOW")
            }
        )
        .await
        .len()
            == 2,
        "colombo mirrors its snapshot"
    );
    let revised = publish(
        &c,
        "colombo",
        "remittances",
        "REMIT_INFLOW",
        vec![remit(A::Replace, "BGD", "2023", Some(23.0))],
    )
    .await;
    let revised_rec = delivered_record(&c, "colombo", 3, &revised.digest).await;
    let next = report_covering(&c, revised_rec.feed_index).await;
    let next_report = verify_report(&c, &next);
    assert!(next_report.number > report.number);
    assert!(next_report.previous_feed_size < revised_rec.feed_index);
    if next_report.number == report.number + 1 {
        assert_eq!(next_report.previous_feed_size, report.feed_size);
        assert_eq!(
            next_report.previous_digest,
            SignedEnvelope::from_proto(first.envelope.clone().expect("env"))
                .digest()
                .0
                .to_vec(),
            "chained to the previous report"
        );
    }
    assert_eq!(next_report.revisions.len(), 1, "{next_report:?}");
    assert_eq!(next_report.total_revisions, 1);
    let revision = &next_report.revisions[0];
    assert_eq!(revision.node_id, "colombo");
    let k = revision.key.as_ref().expect("key");
    assert_eq!(
        (
            k.indicator.as_str(),
            k.ref_area.as_str(),
            k.time_period.as_str()
        ),
        ("REMIT_INFLOW", "BGD", "2023")
    );
    let old = revision.old_value.as_ref().expect("old");
    let new = revision.new_value.as_ref().expect("new");
    assert_eq!(
        old.observation.as_ref().and_then(|o| o.obs_value),
        Some(21.5)
    );
    assert_eq!(
        old.provenance.as_ref().map(|p| p.statement_digest.clone()),
        Some(colombo.digest.clone())
    );
    assert_eq!(
        new.observation.as_ref().and_then(|o| o.obs_value),
        Some(23.0)
    );
    assert_eq!(
        new.observation.as_ref().map(|o| o.action),
        Some(action(A::Replace))
    );
    assert_eq!(
        new.provenance.as_ref().map(|p| p.statement_digest.clone()),
        Some(revised.digest.clone())
    );
    // The conflict now shows the revised value.
    let values_now: Vec<Option<f64>> = next_report.conflicts[0]
        .values
        .iter()
        .map(|v| v.observation.as_ref().and_then(|o| o.obs_value))
        .collect();
    assert_eq!(values_now, [Some(22.0), Some(23.0)]);

    // The CLI writes the report as JSON.
    let out = c.root().join("coherence.json");
    let (code, stdout, stderr) = run_at_hub(
        &c,
        &["report", "coherence"],
        &["--format", "json", "--out", &out.to_string_lossy()],
    )
    .await;
    assert_eq!(code, 0, "rcpfed report coherence: {stdout}{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report file"))
            .expect("the report file is JSON");
    // The protobuf JSON mapping of the report in force (lowerCamelCase, 64-bit integers as
    // strings, bytes as base64).
    use base64::Engine as _;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    assert_eq!(json["number"], next_report.number.to_string(), "{json}");
    assert_eq!(json["totalConflicts"], "1");
    let sides: Vec<(String, f64, String)> = json["conflicts"][0]["values"]
        .as_array()
        .expect("conflict values")
        .iter()
        .map(|v| {
            (
                v["provenance"]["nodeId"]
                    .as_str()
                    .expect("node")
                    .to_string(),
                v["observation"]["obsValue"].as_f64().expect("value"),
                v["provenance"]["statementDigest"]
                    .as_str()
                    .expect("digest")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        sides,
        [
            ("abu-dhabi".to_string(), 22.0, b64(&abu_dhabi.digest)),
            ("colombo".to_string(), 23.0, b64(&revised.digest)),
        ]
    );
    let revision = &json["revisions"][0];
    assert_eq!(
        revision["oldValue"]["observation"]["obsValue"].as_f64(),
        Some(21.5)
    );
    assert_eq!(
        revision["newValue"]["observation"]["obsValue"].as_f64(),
        Some(23.0)
    );
    assert!(
        json["coverage"]
            .as_array()
            .expect("coverage")
            .iter()
            .any(|r| r["nodeId"] == "colombo" && r["refAreas"] == serde_json::json!(["BGD", "LKA"])),
        "coverage rows: {json}"
    );

    // CSV to a file.
    let out_csv = c.root().join("coherence.csv");
    let (code, stdout, stderr) = run_at_hub(
        &c,
        &["report", "coherence"],
        &["--format", "csv", "--out", &out_csv.to_string_lossy()],
    )
    .await;
    assert_eq!(
        code, 0,
        "rcpfed report coherence --format csv: {stdout}{stderr}"
    );
    let csv = std::fs::read_to_string(&out_csv).expect("CSV report");
    let line = |prefix: &str| {
        csv.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix}… in the CSV report:\n{csv}"))
            .to_string()
    };
    assert!(line("section,node_id,indicator,ref_area,time_period").contains("statement_digest"));
    assert!(
        line("conflict,abu-dhabi,REMIT_INFLOW,BGD,2023,").contains(&hex::encode(&abu_dhabi.digest))
    );
    assert!(
        line("conflict,colombo,REMIT_INFLOW,BGD,2023,").contains(&hex::encode(&revised.digest))
    );
    assert!(line("revision,colombo,REMIT_INFLOW,BGD,2023,").contains("21500000000,23000000000"));
    assert!(line("coverage,colombo,REMIT_INFLOW,").contains("BGD LKA"));

    // The terminal table names the conflict too.
    let (code, stdout, stderr) = run_at_hub(&c, &["report", "coherence"], &[]).await;
    assert_eq!(code, 0, "rcpfed report coherence (table): {stdout}{stderr}");
    assert!(
        stdout.contains("BGD") && stdout.contains("abu-dhabi") && stdout.contains("colombo"),
        "the table names the conflict: {stdout}"
    );
}

// ----- 6. SDMX export read by a real SDMX library ----------------------------------------------

/// Reads SDMX exports with real SDMX libraries from PyPI and prints one JSON object per file.
/// Arguments: the data structure's dimension ids (comma-separated), a REF_AREA and a
/// TIME_PERIOD to look up, then the files.
/// - `.csv` (SDMX-CSV 2.0): read by pysdmx (`read_sdmx`) and by sdmx1 (`sdmx.read_sdmx` with a
///   data structure built from the dimension ids); each gives the number of observations and
///   the OBS_VALUE of the key (the last one in the file: the version in force).
/// - `.json` (SDMX-JSON 2.0 data message): validated against the SDMX-JSON 2.0.0 data schema
///   by pysdmx (neither library loads SDMX-JSON 2.0 data: pysdmx reads structures only and
///   sdmx1 fails on it), then the observations are counted.
const READ_SDMX: &str = r#"
import json, sys, warnings
from pysdmx.io import read_sdmx
from pysdmx.io.json.sdmxjson2.reader.doc_validation import validate_sdmx_json
import sdmx
from sdmx.model import v30
dims, area, period, files = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4:]
dsd = v30.DataStructureDefinition(id="RCPFED")
for d in dims:
    dsd.dimensions.getdefault(d)
dsd.measures.getdefault("OBS_VALUE")
for a in ["OBS_STATUS", "UNIT_MEASURE", "UNIT_MULT", "CONF_STATUS"]:
    dsd.attributes.getdefault(a)
out = []
for name in files:
    if name.endswith(".json"):
        text = open(name, encoding="utf-8").read()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            validate_sdmx_json(text)
        doc = json.loads(text)
        n = 0
        for ds in doc["data"]["dataSets"]:
            n += len(ds.get("observations", {}))
            n += sum(len(s.get("observations", {})) for s in ds.get("series", {}).values())
        out.append({"file": name, "observations": n})
        continue
    msg = read_sdmx(name)
    rows, value, urns, actions = 0, None, [], []
    for ds in msg.data:
        df = ds.data
        rows += len(df)
        urns.append(ds.short_urn)
        actions.append(str(ds.action))
        hit = df[(df["REF_AREA"] == area) & (df["TIME_PERIOD"].astype(str) == period)]
        if len(hit):
            value = float(hit["OBS_VALUE"].iloc[-1])
    msg1 = sdmx.read_sdmx(name, structure=dsd)
    rows1, value1 = 0, None
    for ds in msg1.data:
        rows1 += len(ds.obs)
        for o in ds.obs:
            key = {k: v.value for k, v in o.dimension.values.items()}
            if key.get("REF_AREA") == area and str(key.get("TIME_PERIOD")) == period and o.value not in (None, ""):
                value1 = float(o.value)
    out.append({"file": name, "rows": rows, "value": value, "urns": urns, "actions": actions,
                "sdmx1_rows": rows1, "sdmx1_value": value1})
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdmx_exports_are_read_by_pysdmx() {
    use v1::ObservationAction as A;
    let c = start(&["colombo"]).await;
    wait_for_catalogue(&c, "colombo").await;
    let first = publish(
        &c,
        "colombo",
        "remittances",
        "REMIT_INFLOW",
        vec![
            append("LKA", "2022", 7.0),
            append("LKA", "2023", 6.5),
            append("BGD", "2023", 21.5),
            append("IND", "2023", 120.0),
        ],
    )
    .await;
    delivered_record(&c, "colombo", 1, &first.digest).await;
    assert_eventually!(
        c,
        TIMEOUT,
        query_at(&c, "colombo", &query("REMIT_INFLOW")).await.len() == 4,
        "mirrored"
    );
    let second = publish(
        &c,
        "colombo",
        "remittances",
        "REMIT_INFLOW",
        vec![remit(A::Replace, "LKA", "2023", Some(6.6))],
    )
    .await;
    delivered_record(&c, "colombo", 2, &second.digest).await;

    let dir = c.root();
    let current = query("REMIT_INFLOW");
    let history = v1::ObservationQuery {
        include_history: true,
        ..query("REMIT_INFLOW")
    };
    let mut csv_files = Vec::new();
    let mut json_files = Vec::new();
    for (name, q) in [("current", &current), ("history", &history)] {
        let (csv, media) = export(&c, "hub", q, v1::SdmxFormat::Csv).await;
        assert!(
            media.starts_with("application/vnd.sdmx.data+csv"),
            "{media}"
        );
        let path = dir.join(format!("{name}.csv"));
        std::fs::write(&path, &csv).expect("csv");
        csv_files.push(path);
        let (json, media) = export(&c, "hub", q, v1::SdmxFormat::Json).await;
        assert!(
            media.starts_with("application/vnd.sdmx.data+json"),
            "{media}"
        );
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, &json).expect("json");
        json_files.push(path);
        // A node exports the same bytes from its mirror.
        assert_eventually!(
            c,
            TIMEOUT,
            export(&c, "colombo", q, v1::SdmxFormat::Csv).await.0 == csv,
            "colombo exports the same {name} CSV"
        );
    }

    // The CLI writes the same SDMX-CSV.
    let cli_csv = dir.join("cli.csv");
    let (code, stdout, stderr) = run_at_hub(
        &c,
        &["export", "sdmx"],
        &[
            "--indicator",
            "REMIT_INFLOW",
            "--format",
            "csv",
            "--out",
            &cli_csv.to_string_lossy(),
        ],
    )
    .await;
    assert_eq!(code, 0, "rcpfed export sdmx: {stdout}{stderr}");
    csv_files.push(cli_csv);

    let mut py_args: Vec<&Path> = vec![
        Path::new("REF_AREA,TIME_PERIOD"),
        Path::new("LKA"),
        Path::new("2023"),
    ];
    py_args.extend(csv_files.iter().map(PathBuf::as_path));
    py_args.extend(json_files.iter().map(PathBuf::as_path));
    let out = run_python(READ_SDMX, &py_args).await;
    let read: serde_json::Value = serde_json::from_str(out.trim()).expect("python JSON");
    eprintln!("read by pysdmx and sdmx1: {read}");
    let files = read.as_array().expect("array");
    let csv: Vec<&serde_json::Value> = files.iter().filter(|f| f.get("rows").is_some()).collect();
    let rows: Vec<(u64, u64)> = csv
        .iter()
        .map(|f| {
            (
                f["rows"].as_u64().expect("rows"),
                f["sdmx1_rows"].as_u64().expect("rows"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [(4, 4), (5, 5), (4, 4)],
        "current, history, CLI current"
    );
    for f in &csv {
        assert_eq!(f["value"].as_f64(), Some(6.6), "pysdmx: LKA 2023 in {f}");
        assert_eq!(
            f["sdmx1_value"].as_f64(),
            Some(6.6),
            "sdmx1: LKA 2023 in {f}"
        );
        assert!(
            f["urns"].to_string().contains("REMIT_INFLOW"),
            "the dataflow is named: {f}"
        );
    }
    let counts: Vec<u64> = files
        .iter()
        .filter_map(|f| f.get("observations").and_then(serde_json::Value::as_u64))
        .collect();
    assert_eq!(counts, [4, 5], "observations in the JSON messages");
}

// ----- 7. large snapshots ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_snapshot_travels_in_chunks_and_a_tampered_chunk_is_refused() {
    const N: usize = 25_000;
    let c = start(&["colombo", "abu-dhabi"]).await;
    wait_for_catalogue(&c, "colombo").await;
    let observations = mig_stock(&undated_states(&c, "colombo"), N);
    let csv = c.root().join("big.csv");
    write_csv(&csv, "MIG_STOCK", &observations);

    // Published through the CLI (streamed to the node), signed as a chunk manifest.
    let mut args = strings(&["publish"]);
    args.extend(node_cli(&c, "colombo"));
    args.extend(strings(&["indicators", &csv.to_string_lossy()]));
    let (code, stdout, stderr) = run_rcpfed_async(args).await;
    assert_eq!(
        code, 0,
        "rcpfed publish indicators big.csv: {stdout}{stderr}"
    );
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 1).await, "delivered");
    let record = c
        .hub_statements_of("colombo")
        .await
        .pop()
        .expect("the snapshot");
    let st =
        Statement::decode(&record.envelope.as_ref().expect("envelope").payload).expect("payload");
    let Body::Indicators(snap) = &st.body else {
        panic!("not a snapshot")
    };
    assert!(snap.observations.is_empty(), "only the manifest is signed");
    let manifest = snap.chunks.clone().expect("a chunk manifest");
    assert_eq!(manifest.observation_count, N as u64);
    assert_eq!(manifest.chunks.len(), N.div_ceil(OBSERVATIONS_PER_CHUNK));
    assert!(record.envelope.as_ref().expect("envelope").payload.len() < 4096);

    // The hub serves the chunks as listed in the manifest, from any index.
    let mut hub = c.hub_client("operator").await;
    let mut stream = hub
        .get_snapshot_chunks(v1::GetSnapshotChunksRequest {
            digest: record.digest.clone(),
            first_chunk: 0,
        })
        .await
        .expect("GetSnapshotChunks")
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        chunks.push(chunk);
    }
    assert_eq!(chunks.len(), manifest.chunks.len());
    for (i, (chunk, r)) in chunks.iter().zip(&manifest.chunks).enumerate() {
        assert_eq!(chunk.index as usize, i);
        assert_eq!(Digest::of(&chunk.chunk), r.sha256, "chunk {i}");
    }
    let tail = hub
        .get_snapshot_chunks(v1::GetSnapshotChunksRequest {
            digest: record.digest.clone(),
            first_chunk: 2,
        })
        .await
        .expect("from chunk 2")
        .into_inner()
        .message()
        .await
        .expect("chunk 2")
        .expect("one chunk");
    assert_eq!(tail.index, 2);

    // Hub and a mirror that fetched the chunks give the same 25,000 records, the hub once its
    // view applier has applied the snapshot (after the receipt, in the background).
    let q = query("MIG_STOCK");
    let hub_feed_size = || async {
        c.indicators("hub")
            .await
            .query_observations(v1::QueryObservationsRequest {
                query: Some(q.clone()),
                page_size: 1,
                page_token: String::new(),
            })
            .await
            .map(|r| r.into_inner().feed_size)
            .unwrap_or(0)
    };
    assert_eventually!(
        c,
        TIMEOUT,
        hub_feed_size().await >= record.feed_index,
        "the hub's view has the snapshot"
    );
    let (at_hub, pages) = c.query_observations("hub", &q, 10_000).await.expect("hub");
    assert_eq!(at_hub.len(), N);
    assert!(pages >= 3);
    for (i, (r, o)) in at_hub.iter().zip(&observations).enumerate().step_by(997) {
        let p = r.provenance.as_ref().expect("provenance");
        assert_eq!(p.position, i as u64);
        assert_eq!(p.statement_digest, record.digest);
        assert_eq!(
            r.observation
                .as_ref()
                .map(|x| (x.ref_area.clone(), x.obs_value)),
            Some((o.ref_area.clone(), o.obs_value))
        );
    }
    assert_eventually!(
        c,
        TIMEOUT,
        c.query_observations("abu-dhabi", &q, 10_000)
            .await
            .ok()
            .map(|r| r.0)
            == Some(at_hub.clone()),
        "abu-dhabi's mirror agrees with the hub"
    );

    // Acting as midwa: a chunked snapshot whose second chunk is tampered with.
    let mut raw = RawNode::connect(&c, "midwa").await;
    let midwa_obs = mig_stock(&undated_states(&c, "midwa"), OBSERVATIONS_PER_CHUNK + 50);
    let (manifest, chunk_bytes) = encode_chunks(&midwa_obs, OBSERVATIONS_PER_CHUNK);
    assert_eq!(chunk_bytes.len(), 2);
    let statement = Statement {
        header: rcpfed_core::statement::Header {
            document: "regions/midwa/indicators/mig_stock/big".into(),
            ..raw.header(DocumentKind::IndicatorSnapshot)
        },
        body: Body::Indicators(IndicatorSnapshot {
            indicator: "MIG_STOCK".into(),
            observations: Vec::new(),
            chunks: Some(manifest),
        }),
    };
    let env = raw.sign(&statement);
    let before = c.hub_statements().await.len();
    let hub_as_midwa = raw.client.clone();
    let submit = |chunks: Vec<Vec<u8>>| {
        let mut parts = vec![v1::SubmitSnapshotRequest {
            part: Some(v1::submit_snapshot_request::Part::Envelope(env.to_proto())),
        }];
        parts.extend(chunks.into_iter().map(|b| v1::SubmitSnapshotRequest {
            part: Some(v1::submit_snapshot_request::Part::Chunk(b)),
        }));
        let mut client = hub_as_midwa.clone();
        async move {
            client
                .submit_snapshot(tokio_stream::iter(parts))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let mut tampered = chunk_bytes.clone();
    let mid = tampered[1].len() / 2;
    tampered[1][mid] ^= 0x01;
    let s = assert_refused(
        submit(tampered).await,
        Code::InvalidArgument,
        "CHUNK_MISMATCH",
    );
    eprintln!("tampered chunk: {}", describe(&s));
    // Sent without its chunks through SubmitStatement: refused too.
    assert_refused(
        raw.submit(env.to_proto()).await,
        Code::InvalidArgument,
        "CHUNKS_REQUIRED",
    );
    assert!(
        c.hub_statements_of("midwa").await.is_empty(),
        "nothing stored"
    );
    assert_eq!(
        c.hub_statements().await.len(),
        before,
        "the feed did not move"
    );
    assert_eq!(midwa_stored_at_hub(&c).await, 0, "no observation stored");
    // The untampered chunks are accepted.
    let accepted = submit(chunk_bytes)
        .await
        .unwrap_or_else(|s| panic!("the untampered snapshot was refused: {}", describe(&s)));
    assert!(!accepted.duplicate);
    // Its view is applied after the receipt, in the background.
    assert_eventually!(
        c,
        TIMEOUT,
        midwa_stored_at_hub(&c).await == OBSERVATIONS_PER_CHUNK + 50,
        "the snapshot's observations at the hub"
    );
}

// ----- 8. a hub crash loses nothing acknowledged -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_observations_survive_a_hub_kill() {
    let mut c = start(&["colombo"]).await;
    wait_for_catalogue(&c, "colombo").await;
    let published = publish(
        &c,
        "colombo",
        "remittances",
        "REMIT_INFLOW",
        three_remittances(),
    )
    .await;
    // Acknowledged: the node holds a verified receipt.
    delivered_record(&c, "colombo", 1, &published.digest).await;
    let q = v1::ObservationQuery {
        include_history: true,
        ..query("REMIT_INFLOW")
    };
    let before = query_at(&c, "hub", &q).await;
    assert_eq!(before.len(), 3);
    let catalogue = wait_for_catalogue(&c, "hub").await;

    c.kill_hub().await;
    c.start_hub().await;
    assert_eq!(
        query_at(&c, "hub", &q).await,
        before,
        "the same records after kill -9"
    );
    assert_eq!(
        wait_for_catalogue(&c, "hub").await.envelope,
        catalogue.envelope,
        "the same catalogue; no new version"
    );
    // The federation goes on: the next revision is accepted and applied.
    assert_eventually!(
        c,
        TIMEOUT,
        query_at(&c, "colombo", &query("REMIT_INFLOW")).await.len() == 3,
        "colombo mirrors its snapshot"
    );
    let next = publish(
        &c,
        "colombo",
        "remittances",
        "REMIT_INFLOW",
        vec![remit(
            v1::ObservationAction::Replace,
            "LKA",
            "2023",
            Some(6.6),
        )],
    )
    .await;
    delivered_record(&c, "colombo", 2, &next.digest).await;
    assert_eq!(query_at(&c, "hub", &q).await.len(), 4);
}

// ----- one key per observation (issue 10) -------------------------------------------------------

/// A MIG_STOCK observation in millions of persons with the given dimensions.
fn stock(action: ObservationAction, area: &str, dims: &[(&str, &str)], value: f64) -> Observation {
    Observation {
        action,
        dimensions: dims
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        unit_measure: "persons".into(),
        unit_mult: 6,
        source: "UN DESA (e2e test figure)".into(),
        ..observation(area, "2020", value)
    }
}

/// `raw`'s next statement: a MIG_STOCK snapshot.
fn stock_statement(raw: &RawNode, observations: Vec<Observation>) -> Statement {
    let mut st = raw.indicators(observations);
    if let Body::Indicators(s) = &mut st.body {
        s.indicator = "MIG_STOCK".into();
    }
    st
}

/// (node, dimensions as `ID=VALUE` sorted, value) of each record.
fn keyed_values(records: &[v1::ObservationRecord]) -> Vec<(String, String, Option<f64>)> {
    records
        .iter()
        .map(|r| {
            let o = r.observation.as_ref().expect("observation");
            let mut dims: Vec<String> = o
                .dimensions
                .iter()
                .map(|d| format!("{}={}", d.id, d.value))
                .collect();
            dims.sort();
            (
                r.provenance.as_ref().expect("provenance").node_id.clone(),
                dims.join(";"),
                o.obs_value,
            )
        })
        .collect()
}

/// The issue's `MIG_STOCK,BGD,2020,_T,_T,40.5` and `MIG_STOCK,BGD,2020,,,41.0`, signed by a
/// node that does not fill defaults (RawNode): the hub refuses both in one snapshot as one key,
/// takes the blank one alone, refuses the explicit total as an APPEND of a key in force and
/// accepts it as a REPLACE (a revision); the hub, a mirror, the SDMX export and the coherence
/// report all see one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_dimension_and_its_default_are_one_key_everywhere() {
    use ObservationAction::{Append, Replace};
    let c = start(&["abu-dhabi"]).await;
    wait_for_catalogue(&c, "hub").await;
    wait_for_catalogue(&c, "abu-dhabi").await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let total = [("SEX", "_T"), ("AGE", "_T")];

    // Both forms in one signed snapshot: a duplicate key.
    let both = stock_statement(
        &raw,
        vec![
            stock(Append, "BGD", &total, 40.5),
            stock(Append, "BGD", &[], 41.0),
        ],
    );
    let s = assert_refused(
        raw.submit(raw.sign(&both).to_proto()).await,
        Code::InvalidArgument,
        "DUPLICATE_KEY",
    );
    assert_names_field(&s, "indicator_snapshot.observations[1]", "both forms");
    assert!(
        s.message().contains("catalogue default"),
        "says why: {}",
        s.message()
    );

    // The blank form alone is accepted as signed (the hub cannot change a signed statement)
    // and keyed as the default.
    let blank = stock_statement(&raw, vec![stock(Append, "BGD", &[], 41.0)]);
    raw.accept(&blank).await;
    let q = v1::ObservationQuery {
        ref_areas: vec!["BGD".into()],
        ..query("MIG_STOCK")
    };
    let total_key = "AGE=_T;SEX=_T".to_string();
    assert_eq!(
        keyed_values(&query_at(&c, "hub", &q).await),
        [("colombo".to_string(), total_key.clone(), Some(41.0))]
    );

    // The explicit total appended again: the key has a value in force.
    let again = stock_statement(&raw, vec![stock(Append, "BGD", &total, 40.5)]);
    let s = assert_refused(
        raw.submit(raw.sign(&again).to_proto()).await,
        Code::InvalidArgument,
        "OBSERVATION_EXISTS",
    );
    assert_names_field(&s, "indicator_snapshot.observations[0]", "append again");
    // As a replace (SEX given, AGE left out): a revision of the same key.
    let revision = stock_statement(&raw, vec![stock(Replace, "BGD", &[("SEX", "_T")], 40.5)]);
    raw.accept(&revision).await;

    // abu-dhabi publishes the same total through its node, which signs the defaults.
    let theirs = publish(
        &c,
        "abu-dhabi",
        "stock",
        "MIG_STOCK",
        vec![v1::Observation {
            dimensions: Vec::new(),
            unit_measure: "persons".into(),
            unit_mult: 6,
            ..remit(v1::ObservationAction::Append, "BGD", "2020", Some(44.0))
        }],
    )
    .await;
    let theirs_rec = delivered_record(&c, "abu-dhabi", 1, &theirs.digest).await;

    // The hub: one version in force per node, both under the one key; the history of
    // colombo's key is its two versions.
    let expected = vec![
        ("colombo".to_string(), total_key.clone(), Some(40.5)),
        ("abu-dhabi".to_string(), total_key.clone(), Some(44.0)),
    ];
    assert_eq!(keyed_values(&query_at(&c, "hub", &q).await), expected);
    let history = v1::ObservationQuery {
        include_history: true,
        node_ids: vec!["colombo".into()],
        ..q.clone()
    };
    let at_hub = query_at(&c, "hub", &history).await;
    assert_eq!(
        keyed_values(&at_hub),
        [
            ("colombo".to_string(), total_key.clone(), Some(41.0)),
            ("colombo".to_string(), total_key.clone(), Some(40.5)),
        ]
    );
    assert!(at_hub[0].superseded_at.is_some() && at_hub[1].superseded_at.is_none());

    // The mirror answers the same.
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["abu-dhabi"]).await,
        "abu-dhabi mirrors the hub"
    );
    assert_eq!(
        query_at(&c, "abu-dhabi", &q).await,
        query_at(&c, "hub", &q).await
    );
    assert_eq!(query_at(&c, "abu-dhabi", &history).await, at_hub);

    // The export lists colombo's total once.
    let colombo_only = v1::ObservationQuery {
        node_ids: vec!["colombo".into()],
        ..q.clone()
    };
    let (csv, _) = export(&c, "hub", &colombo_only, v1::SdmxFormat::Csv).await;
    let rows: Vec<&str> = csv.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 1, "one row for the one key: {csv}");
    assert!(rows[0].contains(",BGD,_T,_T,"), "{csv}");

    // The coherence report: one conflict between the two nodes on that key, and colombo's
    // revision paired with the version it superseded.
    let report = verify_report(&c, &report_covering(&c, theirs_rec.feed_index).await);
    let conflict = report
        .conflicts
        .iter()
        .find(|k| {
            k.key
                .as_ref()
                .is_some_and(|k| k.indicator == "MIG_STOCK" && k.ref_area == "BGD")
        })
        .unwrap_or_else(|| panic!("no MIG_STOCK BGD conflict in {report:?}"));
    let sides: Vec<(String, Option<f64>)> = conflict
        .values
        .iter()
        .map(|v| {
            (
                v.provenance.as_ref().expect("provenance").node_id.clone(),
                v.observation.as_ref().and_then(|o| o.obs_value),
            )
        })
        .collect();
    assert_eq!(
        sides,
        [
            ("abu-dhabi".to_string(), Some(44.0)),
            ("colombo".to_string(), Some(40.5))
        ]
    );
    // A report lists the revisions of its own window: a report issued between colombo's
    // revision and abu-dhabi's statement holds the revision, so look back through the reports.
    let mut listing = report.clone();
    let revised = loop {
        if let Some(r) = listing
            .revisions
            .iter()
            .find(|r| r.key.as_ref().is_some_and(|k| k.indicator == "MIG_STOCK"))
        {
            break r.clone();
        }
        assert!(
            listing.number > 1,
            "no MIG_STOCK revision in any report up to {report:?}"
        );
        let earlier = c
            .indicators("hub")
            .await
            .get_coherence_report(v1::GetCoherenceReportRequest {
                number: listing.number - 1,
            })
            .await
            .expect("an earlier coherence report")
            .into_inner();
        listing = verify_report(&c, &earlier);
    };
    assert_eq!(
        revised
            .old_value
            .as_ref()
            .and_then(|o| o.observation.as_ref())
            .and_then(|o| o.obs_value),
        Some(41.0)
    );
}

/// `rcpfed publish --dry-run` reports every problem of a file in one run: a cell that is not
/// a number (the importer), a duplicate key once the blank dimensions are the catalogue's
/// defaults and a state that is not a member (the statement rules), a code not in its
/// codelist (the catalogue), and a replace of nothing (the actions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_dry_run_reports_every_kind_of_problem_in_one_pass() {
    let c = start(&["colombo"]).await;
    wait_for_catalogue(&c, "colombo").await;
    let file = c.root().join("stock.csv");
    std::fs::write(
        &file,
        "INDICATOR,REF_AREA,TIME_PERIOD,SEX,AGE,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,ACTION\n\
         MIG_STOCK,LKA,2020,_T,_T,40.5,persons,6,append\n\
         MIG_STOCK,LKA,2020,,,41.0,persons,6,append\n\
         MIG_STOCK,FRA,2020,,,1.0,persons,6,append\n\
         MIG_STOCK,LKA,2021,X,,1.0,persons,6,append\n\
         MIG_STOCK,LKA,2019,,,1.0,persons,6,replace\n\
         MIG_STOCK,LKA,2022,,,abc,persons,6,append\n",
    )
    .expect("stock.csv");
    let (code, stdout, stderr) = dry_run(&c, "colombo", &file).await;
    let text = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "the file has problems: {text}");
    for expected in [
        "line 7, column OBS_VALUE: \"abc\" is not a number",
        "line 3: has the same key as observation 0",
        "(DUPLICATE_KEY)",
        "line 4, column REF_AREA:",
        "(NOT_A_MEMBER_STATE)",
        "line 5, column SEX:",
        "(CODE_NOT_IN_CODELIST)",
        "line 6:",
        "(OBSERVATION_NOT_FOUND)",
        "[reason VALIDATION_FAILED]",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("valid:"), "not reported valid: {text}");
    assert!(c.outbox("colombo").await.is_empty(), "nothing was signed");
    // Without --dry-run it is the same: nothing is signed while the file has problems.
    let mut args = strings(&["publish"]);
    args.extend(node_cli(&c, "colombo"));
    args.extend(strings(&["indicators", &file.to_string_lossy()]));
    let (code, stdout, stderr) = run_rcpfed_async(args).await;
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(c.outbox("colombo").await.is_empty(), "nothing was signed");
}

/// The scratch files of `PublishSnapshot` streams in `node`'s data directory.
fn publish_staging_files(c: &Cluster, node: &str) -> usize {
    let dir = c
        .fed_dir()
        .join("data")
        .join(node)
        .join("node.sqlite.publish-staging");
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The messages of a `PublishSnapshot` of `observations` on colombo, in batches of 5000.
fn publish_snapshot_messages(
    name: &str,
    observations: &[Observation],
) -> Vec<v1::PublishSnapshotRequest> {
    use v1::publish_snapshot_request::Part;
    let mut parts = vec![v1::PublishSnapshotRequest {
        part: Some(Part::Header(v1::PublishSnapshotHeader {
            document: format!("regions/colombo/indicators/mig_stock/{name}"),
            indicator: "MIG_STOCK".into(),
            validate_only: false,
            request_id: String::new(),
        })),
    }];
    parts.extend(
        observations
            .chunks(5000)
            .map(|batch| v1::PublishSnapshotRequest {
                part: Some(Part::Batch(v1::ObservationBatch {
                    observations: batch.iter().map(Observation::to_proto).collect(),
                })),
            }),
    );
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_stream_leaves_no_staging_behind_even_when_its_node_is_killed() {
    let mut c = start(&["colombo"]).await;
    wait_for_catalogue(&c, "colombo").await;
    let observations = mig_stock(&undated_states(&c, "colombo"), OBSERVATIONS_PER_CHUNK + 100);

    // Refused for a row of its second chunk: nothing signed, nothing staged.
    let mut bad = observations.clone();
    bad[OBSERVATIONS_PER_CHUNK + 50].ref_area = "ZZZ".into();
    let mut node = c.node_client("colombo", "operator").await;
    let refused = node
        .publish_snapshot(tokio_stream::iter(publish_snapshot_messages("bad", &bad)))
        .await;
    let s = assert_refused(refused, Code::InvalidArgument, "INVALID_COUNTRY_CODE");
    assert_eq!(
        field_violations(&s)
            .iter()
            .map(|v| v.0.as_str())
            .collect::<Vec<_>>(),
        ["indicator_snapshot.observations[10050].ref_area"]
    );
    assert_eq!(publish_staging_files(&c, "colombo"), 0, "a refused stream");

    // A stream still open when its node is killed: its scratch file stays behind until the node
    // starts again.
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    for part in publish_snapshot_messages("cut-short", &observations)
        .into_iter()
        .take(4)
    {
        sender.send(part).await.expect("queued");
    }
    let mut streaming = c.node_client("colombo", "operator").await;
    let call = tokio::spawn(async move {
        streaming
            .publish_snapshot(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    assert_eventually!(
        c,
        TIMEOUT,
        publish_staging_files(&c, "colombo") == 1,
        "the open stream stages its chunks"
    );
    c.kill_node("colombo").await;
    assert!(call.await.expect("call task").is_err(), "the node died");
    drop(sender);
    assert_eq!(publish_staging_files(&c, "colombo"), 1, "left by the kill");
    c.restart_node("colombo").await;
    // The node writes its address file before it opens its store, then clears the leftovers.
    assert_eq!(c.node_status("colombo").await.head_seq, 0, "nothing signed");
    assert_eventually!(
        c,
        TIMEOUT,
        publish_staging_files(&c, "colombo") == 0,
        "removed when the node starts"
    );

    // The whole snapshot, sent again, is signed as a chunk manifest and leaves nothing staged.
    let mut node = c.node_client("colombo", "operator").await;
    let published = node
        .publish_snapshot(tokio_stream::iter(publish_snapshot_messages(
            "whole",
            &observations,
        )))
        .await
        .unwrap_or_else(|s| panic!("the whole snapshot: {}", describe(&s)))
        .into_inner();
    assert_eq!(
        (
            published.seq,
            published.observation_count,
            published.chunk_count
        ),
        (1, (OBSERVATIONS_PER_CHUNK + 100) as u64, 2)
    );
    assert_eq!(publish_staging_files(&c, "colombo"), 0);
}
