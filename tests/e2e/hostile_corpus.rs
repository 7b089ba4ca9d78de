//! A data-driven corpus of hostile inputs (issue 9): malformed protobuf, bad signatures, wrong
//! identities, out-of-range dates and numbers, hostile CSV and SDMX-CSV, TLS and HTTP/2 abuse.
//! Each test function starts ONE federation and runs every case of its table against it; for
//! every case it asserts the gRPC code and the `ErrorInfo` reason (or, for transport abuse, raw
//! wire messages and the CLI, how the connection, the call or the command fails), that nothing was stored (the hub's
//! statements, equivocation evidence and log size unchanged), and that the hub still answers
//! its health check with SERVING. All mismatches are collected and reported together.
//!
//! LATER CASES: [`pending_cases`] (envelopes and statements; a function because its entries
//! are closures), [`PENDING_WIRE_CASES`] (read requests and raw wire messages) and
//! [`PENDING_CSV_CASES`] list inputs that the first version of this corpus found wrongly
//! accepted (or refused with the wrong code or without a reason); they were fixed by the rest
//! of issue 9 and are asserted by [`pending_cases_once_fixed`].

use crate::harness::{
    Cluster, HUB_ID, RawNode, describe, field_violations, reason, run_rcpfed_async,
};
use rcpfed_core::Digest;
use rcpfed_core::envelope::{RECEIPT_PAYLOAD_TYPE, STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE;
use rcpfed_core::statement::{DocumentKind, Statement};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

// ----- what the hub stores, and whether it serves ----------------------------------------------

/// Everything a refused input must leave unchanged at the hub.
#[derive(Debug, PartialEq, Eq)]
struct HubState {
    statements: Vec<(String, Vec<u8>)>,
    equivocations: usize,
    log_size: u64,
}

/// An operator's view of the hub, reused across cases.
struct Probe {
    hub: HubServiceClient<Channel>,
    ops: SocketAddr,
}

impl Probe {
    async fn new(c: &Cluster) -> Probe {
        Probe {
            hub: c.hub_client("operator").await,
            ops: c.hub_ops(),
        }
    }

    async fn state(&mut self) -> HubState {
        let mut statements = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .hub
                .list_statements(v1::ListStatementsRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("ListStatements: {}", describe(&s)))
                .into_inner();
            statements.extend(page.statements.into_iter().map(|r| (r.name, r.digest)));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let equivocations = self
            .hub
            .list_equivocations(v1::ListEquivocationsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("ListEquivocations: {}", describe(&s)))
            .into_inner()
            .equivocations
            .len();
        let log_size = self
            .hub
            .get_checkpoint(v1::GetCheckpointRequest {
                final_only: false,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("GetCheckpoint: {}", describe(&s)))
            .into_inner()
            .tree_size;
        HubState {
            statements,
            equivocations,
            log_size,
        }
    }

    /// The hub's overall health on its ops port ("" service).
    async fn serving(&self) -> Result<(), String> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.ops))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("health connect: {e:?}"))?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| format!("health check: {s:?}"))?
            .into_inner()
            .status;
        if status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err(format!("hub health is {status}, not SERVING"))
        }
    }
}

/// Collected mismatches; the test fails at the end with all of them.
#[derive(Default)]
struct Findings {
    ran: usize,
    failures: Vec<String>,
}

impl Findings {
    fn fail(&mut self, case: &str, what: String) {
        self.failures.push(format!("[{case}] {what}"));
    }

    fn finish(self, what: &str, min_cases: usize) {
        eprintln!(
            "{what}: {} cases run, {} failed",
            self.ran,
            self.failures.len()
        );
        assert!(
            self.ran >= min_cases,
            "{what}: only {} cases ran (expected at least {min_cases})",
            self.ran
        );
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} cases failed:\n{}",
            self.failures.len(),
            self.ran,
            self.failures.join("\n")
        );
    }
}

/// Checks one refused call: code, reason, store unchanged, hub serving.
async fn check_refusal<T: std::fmt::Debug>(
    probe: &mut Probe,
    findings: &mut Findings,
    case: &str,
    before: &HubState,
    result: Result<T, tonic::Status>,
    want: (Code, &str),
) -> bool {
    findings.ran += 1;
    let accepted = result.is_ok();
    match result {
        Ok(v) => findings.fail(case, format!("accepted (wanted {want:?}): {v:?}")),
        Err(s) => {
            // "VALIDATION_FAILED/INVALID_ENUM": that ErrorInfo reason, and a BadRequest field
            // violation with the second reason.
            let (top, field) = match want.1.split_once('/') {
                Some((top, field)) => (top, Some(field)),
                None => (want.1, None),
            };
            let got = (s.code(), reason(&s));
            let field_ok = field.is_none_or(|f| {
                field_violations(&s)
                    .iter()
                    .any(|(_, d)| d.ends_with(&format!("({f})")))
            });
            if (got.0, got.1.as_str()) != (want.0, top) || !field_ok {
                findings.fail(case, format!("wanted {want:?}, got {}", describe(&s)));
            }
        }
    }
    let after = probe.state().await;
    if &after != before {
        findings.fail(
            case,
            format!("the hub's store changed: {before:?} -> {after:?}"),
        );
    }
    if let Err(e) = probe.serving().await {
        findings.fail(case, e);
    }
    accepted
}

// ----- statement and envelope cases -------------------------------------------------------------

/// A change to colombo's next valid statement (policy or indicator), in wire form, before it
/// is signed with colombo's key.
type StatementEdit = Box<dyn Fn(&mut v1::Statement)>;
/// A change to colombo's next correctly signed policy envelope (wire form), after signing.
type EnvelopeEdit = Box<dyn Fn(&mut v1::Envelope, &RawNode, &Keys)>;

/// Keys other than colombo's own.
struct Keys {
    abu_dhabi: SecretKey,
    midwa: SecretKey,
    hub: SecretKey,
    strangers: Vec<SecretKey>,
}

enum Base {
    Policy,
    Indicators,
}

fn header(st: &mut v1::Statement) -> &mut v1::StatementHeader {
    st.header.get_or_insert_with(Default::default)
}

fn policy(st: &mut v1::Statement) -> &mut v1::PolicySummary {
    match &mut st.body {
        Some(v1::statement::Body::PolicySummary(p)) => p,
        _ => panic!("not a policy statement"),
    }
}

fn snapshot(st: &mut v1::Statement) -> &mut v1::IndicatorSnapshot {
    match &mut st.body {
        Some(v1::statement::Body::IndicatorSnapshot(s)) => s,
        _ => panic!("not an indicator statement"),
    }
}

fn obs(st: &mut v1::Statement) -> &mut v1::Observation {
    &mut snapshot(st).observations[0]
}

fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// A valid first observation: LKA (a Colombo Process member) 2023 remittances.
fn lka_2023() -> v1::Observation {
    crate::harness::observation("LKA", "2023", 7000.0).to_proto()
}

const INVALID: Code = Code::InvalidArgument;
const UNAUTH: Code = Code::Unauthenticated;
const DENIED: Code = Code::PermissionDenied;
const PRECOND: Code = Code::FailedPrecondition;

/// Statement cases: (name, base, edit, expected code, expected reason).
fn statement_cases() -> Vec<(String, Base, StatementEdit, Code, &'static str)> {
    let mut cases: Vec<(String, Base, StatementEdit, Code, &'static str)> = Vec::new();
    let mut p = |name: &str, edit: StatementEdit, code: Code, why: &'static str| {
        cases.push((name.to_string(), Base::Policy, edit, code, why));
    };
    // Header identity.
    for fed in ["other-federation", "", "RCP-FEDERATION", "rcp-federation "] {
        p(
            &format!("federation_id {fed:?}"),
            Box::new(move |st| header(st).federation_id = fed.into()),
            DENIED,
            "WRONG_FEDERATION",
        );
    }
    for node in ["abu-dhabi", "midwa", HUB_ID, "unknown-node", "", "COLOMBO"] {
        p(
            &format!("node_id {node:?}"),
            Box::new(move |st| {
                let h = header(st);
                h.node_id = node.into();
                h.document = format!("regions/{node}/policies/x");
            }),
            DENIED,
            "NODE_MISMATCH",
        );
    }
    for v in [0u32, 2, 99, u32::MAX] {
        p(
            &format!("schema_version {v}"),
            Box::new(move |st| header(st).schema_version = v),
            INVALID,
            "UNSUPPORTED_SCHEMA_VERSION",
        );
    }
    // Chain position.
    for seq in [3u64, 10, 1_000_000, u64::MAX] {
        p(
            &format!("seq {seq} (gap)"),
            Box::new(move |st| header(st).seq = seq),
            PRECOND,
            "SEQ_GAP",
        );
    }
    p(
        "seq 0",
        Box::new(|st| header(st).seq = 0),
        INVALID,
        "INVALID_SEQ",
    );
    p(
        "prev_digest of another statement",
        Box::new(|st| header(st).prev_digest = Digest::of(b"another").0.to_vec()),
        PRECOND,
        "PREV_DIGEST_MISMATCH",
    );
    p(
        "prev_digest all zeros",
        Box::new(|st| header(st).prev_digest = vec![0; 32]),
        PRECOND,
        "PREV_DIGEST_MISMATCH",
    );
    p(
        "prev_digest missing at seq 2",
        Box::new(|st| header(st).prev_digest = vec![]),
        INVALID,
        "INVALID_PREV_DIGEST",
    );
    for len in [1usize, 31, 33, 64] {
        p(
            &format!("prev_digest of {len} bytes"),
            Box::new(move |st| header(st).prev_digest = vec![7; len]),
            INVALID,
            "VALIDATION_FAILED/INVALID_PREV_DIGEST",
        );
    }
    p(
        "revision 0",
        Box::new(|st| header(st).revision = 0),
        INVALID,
        "INVALID_REVISION",
    );
    // Dates: far future, far past, out of the representable range.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (label, secs) in [
        ("issued_at +1 day", now + 86_400),
        ("issued_at +10 minutes", now + 600),
        ("issued_at in year 2100", 4_102_444_800),
        ("issued_at in year 9999", 253_402_300_000),
    ] {
        p(
            label,
            Box::new(move |st| header(st).issued_at = Some(ts(secs))),
            INVALID,
            "ISSUED_AT_IN_FUTURE",
        );
    }
    // Before 2000: the same reason as the future (docs/spec/statement.md §1, "used for both
    // cases").
    for (label, secs) in [
        ("issued_at in 1999", 946_684_799),
        ("issued_at at the epoch", 0),
        ("issued_at before the epoch", -1_000_000_000),
    ] {
        p(
            label,
            Box::new(move |st| header(st).issued_at = Some(ts(secs))),
            INVALID,
            "ISSUED_AT_IN_FUTURE",
        );
    }
    for (label, secs, nanos) in [
        ("issued_at year 10000", 253_402_300_800i64, 0i32),
        ("issued_at i64::MAX seconds", i64::MAX, 0),
        ("issued_at i64::MIN seconds", i64::MIN, 0),
        ("issued_at negative nanos", now, -1),
        ("issued_at nanos over a second", now, 1_000_000_000),
    ] {
        p(
            label,
            Box::new(move |st| {
                header(st).issued_at = Some(prost_types::Timestamp {
                    seconds: secs,
                    nanos,
                })
            }),
            INVALID,
            "VALIDATION_FAILED/INVALID_DATE",
        );
    }
    p(
        "issued_at missing",
        Box::new(|st| header(st).issued_at = None),
        INVALID,
        "VALIDATION_FAILED/FIELD_REQUIRED",
    );
    // Document names.
    for doc in [
        "",
        "regions/colombo",
        "regions/colombo/",
        "regions/colombo//x",
        "/regions/colombo/x",
        "regions/abu-dhabi/policies/x",
        "Regions/colombo/x",
        "regions/colombo/UPPER",
        "regions/colombo/a b",
        "regions/colombo/x?y=1",
        "regions/colombo/é",
        "regions/colombo/x\u{0}",
        "regions/colombo/x\\y",
        "nodes/colombo/statements/1",
    ] {
        p(
            &format!("document {doc:?}"),
            Box::new(move |st| header(st).document = doc.into()),
            INVALID,
            "INVALID_DOCUMENT_NAME",
        );
    }
    p(
        "document of 300 bytes",
        Box::new(|st| header(st).document = format!("regions/colombo/{}", "a".repeat(284))),
        INVALID,
        "INVALID_DOCUMENT_NAME",
    );
    // Kinds.
    p(
        "kind says indicator, body is a policy",
        Box::new(|st| header(st).kind = DocumentKind::IndicatorSnapshot.to_proto() as i32),
        INVALID,
        "KIND_MISMATCH",
    );
    p(
        "kind unspecified",
        Box::new(|st| header(st).kind = 0),
        INVALID,
        "VALIDATION_FAILED/FIELD_REQUIRED",
    );
    for k in [3i32, 99, -1] {
        p(
            &format!("kind {k}"),
            Box::new(move |st| header(st).kind = k),
            INVALID,
            "VALIDATION_FAILED/INVALID_ENUM",
        );
    }
    p(
        "no header",
        Box::new(|st| st.header = None),
        INVALID,
        "VALIDATION_FAILED/FIELD_REQUIRED",
    );
    p(
        "no body",
        Box::new(|st| st.body = None),
        INVALID,
        "VALIDATION_FAILED/FIELD_REQUIRED",
    );
    // Policy bodies.
    p(
        "empty title",
        Box::new(|st| policy(st).title.clear()),
        INVALID,
        "EMPTY_TITLE",
    );
    p(
        "blank title text",
        Box::new(|st| policy(st).title[0].text = String::new()),
        INVALID,
        "EMPTY_TITLE",
    );
    for lang in ["", "english", "EN_us", "e", "123", "en-"] {
        p(
            &format!("title language {lang:?}"),
            Box::new(move |st| policy(st).title[0].language = lang.into()),
            INVALID,
            "INVALID_LANGUAGE",
        );
    }
    p(
        "duplicate title language",
        Box::new(|st| {
            let t = policy(st).title[0].clone();
            policy(st).title.push(t);
        }),
        INVALID,
        "DUPLICATE_LANGUAGE",
    );
    p(
        "title of 501 characters",
        Box::new(|st| policy(st).title[0].text = "t".repeat(501)),
        INVALID,
        "TOO_LONG",
    );
    p(
        "summary of 20001 characters",
        Box::new(|st| {
            policy(st).summary = vec![v1::LocalizedText {
                language: "en".into(),
                text: "s".repeat(20_001),
            }]
        }),
        INVALID,
        "TOO_LONG",
    );
    p(
        "meeting of 501 characters",
        Box::new(|st| policy(st).meeting = "m".repeat(501)),
        INVALID,
        "TOO_LONG",
    );
    for date in [
        "2024-13-01",
        "2024-02-30",
        "yesterday",
        "24-01-01",
        "2024/01/01",
        "99999-01-01",
    ] {
        p(
            &format!("meeting_date {date:?}"),
            Box::new(move |st| policy(st).meeting_date = date.into()),
            INVALID,
            "INVALID_DATE",
        );
    }
    for country in ["XYZ", "fr", "FRANCE", "", "LK", "12A"] {
        p(
            &format!("country {country:?}"),
            Box::new(move |st| policy(st).countries = vec![country.into()]),
            INVALID,
            "INVALID_COUNTRY_CODE",
        );
    }
    for g in [0u32, 24, 1000, u32::MAX] {
        p(
            &format!("gcm objective {g}"),
            Box::new(move |st| policy(st).gcm_objectives = vec![g]),
            INVALID,
            "INVALID_GCM_OBJECTIVE",
        );
    }
    // The rule is syntactic (docs/spec/statement.md §3: goal of 1-2 digits "." target): "99.9"
    // passes.
    for sdg in ["abc", "", "10.c.1", "100.1", "10.", ".7", "10.ABC"] {
        p(
            &format!("sdg target {sdg:?}"),
            Box::new(move |st| policy(st).sdg_targets = vec![sdg.into()]),
            INVALID,
            "INVALID_SDG_TARGET",
        );
    }
    for url in [
        "not a url",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://",
        "",
    ] {
        p(
            &format!("reference url {url:?}"),
            Box::new(move |st| {
                policy(st).references = vec![v1::Reference {
                    title: "A reference".into(),
                    url: url.into(),
                    sha256: vec![],
                }]
            }),
            INVALID,
            "INVALID_URL",
        );
    }
    p(
        "reference sha256 of 5 bytes",
        Box::new(|st| {
            policy(st).references = vec![v1::Reference {
                title: "A reference".into(),
                url: "https://example.org/x".into(),
                sha256: vec![1; 5],
            }]
        }),
        INVALID,
        "VALIDATION_FAILED/INVALID_DIGEST",
    );
    p(
        "policy status unspecified",
        Box::new(|st| policy(st).status = 0),
        INVALID,
        "VALIDATION_FAILED/FIELD_REQUIRED",
    );
    for s in [5i32, -3, 1000] {
        p(
            &format!("policy status {s}"),
            Box::new(move |st| policy(st).status = s),
            INVALID,
            "VALIDATION_FAILED/INVALID_ENUM",
        );
    }

    // Indicator bodies.
    let mut i = |name: &str, edit: StatementEdit, code: Code, why: &'static str| {
        cases.push((name.to_string(), Base::Indicators, edit, code, why));
    };
    for (label, v) in [
        ("NaN", f64::NAN),
        ("+inf", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
        ("negative NaN", -f64::NAN),
    ] {
        i(
            &format!("obs_value {label}"),
            Box::new(move |st| obs(st).obs_value = Some(v)),
            INVALID,
            "NON_FINITE_VALUE",
        );
    }
    i(
        "obs_value missing on append",
        Box::new(|st| obs(st).obs_value = None),
        INVALID,
        "VALUE_REQUIRED",
    );
    for code in ["", "remit_inflow", "REMIT INFLOW", "REMIT-INFLOW!"] {
        i(
            &format!("indicator {code:?}"),
            Box::new(move |st| snapshot(st).indicator = code.into()),
            INVALID,
            "INVALID_INDICATOR_CODE",
        );
    }
    for code in ["NOT_IN_CATALOGUE", "R", "SDG_99_9_9"] {
        i(
            &format!("indicator {code} not in the catalogue"),
            Box::new(move |st| snapshot(st).indicator = code.into()),
            INVALID,
            "UNKNOWN_INDICATOR",
        );
    }
    i(
        "no observations",
        Box::new(|st| snapshot(st).observations.clear()),
        INVALID,
        "NO_OBSERVATIONS",
    );
    for area in ["XYZ", "lka", "LK", "", "L K", "LKAA"] {
        i(
            &format!("ref_area {area:?}"),
            Box::new(move |st| obs(st).ref_area = area.into()),
            INVALID,
            "INVALID_COUNTRY_CODE",
        );
    }
    for area in ["FRA", "USA", "BRA"] {
        i(
            &format!("ref_area {area} (not a member state)"),
            Box::new(move |st| obs(st).ref_area = area.into()),
            INVALID,
            "NOT_A_MEMBER_STATE",
        );
    }
    for period in [
        "",
        "2023-13",
        "23",
        "2023-Q5",
        "abcd",
        "99999",
        "-2023",
        "2023-W60",
        "2023-00",
        "2023-02-30",
        "2023-M13",
        "2023 ",
    ] {
        i(
            &format!("time_period {period:?}"),
            Box::new(move |st| obs(st).time_period = period.into()),
            INVALID,
            "INVALID_TIME_PERIOD",
        );
    }
    for s in ["Z", "AA", "a", "?"] {
        i(
            &format!("obs_status {s:?}"),
            Box::new(move |st| obs(st).obs_status = s.into()),
            INVALID,
            "INVALID_OBS_STATUS",
        );
    }
    for s in ["Z", "FF", "x"] {
        i(
            &format!("conf_status {s:?}"),
            Box::new(move |st| obs(st).conf_status = s.into()),
            INVALID,
            "INVALID_CONF_STATUS",
        );
    }
    for m in [-1i32, 99, i32::MIN, i32::MAX] {
        i(
            &format!("unit_mult {m}"),
            Box::new(move |st| obs(st).unit_mult = m),
            INVALID,
            "INVALID_UNIT_MULT",
        );
    }
    i(
        "duplicate observation key",
        Box::new(|st| {
            let o = obs(st).clone();
            snapshot(st).observations.push(o);
        }),
        INVALID,
        "DUPLICATE_KEY",
    );
    i(
        "unit of another indicator",
        Box::new(|st| obs(st).unit_measure = "persons".into()),
        INVALID,
        "UNIT_MISMATCH",
    );
    i(
        "unknown dimension",
        Box::new(|st| {
            obs(st).dimensions = vec![v1::Dimension {
                id: "FOO".into(),
                value: "x".into(),
            }]
        }),
        INVALID,
        "UNKNOWN_DIMENSION",
    );
    i(
        "footnote of 1001 characters",
        Box::new(|st| obs(st).footnote = "f".repeat(1001)),
        INVALID,
        "TOO_LONG",
    );
    i(
        "source of 1001 characters",
        Box::new(|st| obs(st).source = "s".repeat(1001)),
        INVALID,
        "TOO_LONG",
    );
    i(
        "observation action unspecified",
        Box::new(|st| obs(st).action = 0),
        INVALID,
        "VALIDATION_FAILED/FIELD_REQUIRED",
    );
    for a in [4i32, 99, -1] {
        i(
            &format!("observation action {a}"),
            Box::new(move |st| obs(st).action = a),
            INVALID,
            "VALIDATION_FAILED/INVALID_ENUM",
        );
    }
    i(
        "inline observations and a chunk manifest",
        Box::new(|st| {
            snapshot(st).chunks = Some(v1::ChunkManifest {
                observation_count: 1,
                chunks: vec![],
            })
        }),
        INVALID,
        "INVALID_CHUNK_MANIFEST",
    );
    cases
}

/// Envelope cases: (name, edit, expected code, expected reason).
fn envelope_cases() -> Vec<(String, EnvelopeEdit, Code, &'static str)> {
    let mut cases: Vec<(String, EnvelopeEdit, Code, &'static str)> = Vec::new();
    let mut e = |name: &str, edit: EnvelopeEdit, code: Code, why: &'static str| {
        cases.push((name.to_string(), edit, code, why));
    };
    // Bad signatures.
    for at in [0usize, 1, 31, 32, 62, 63] {
        e(
            &format!("signature byte {at} flipped"),
            Box::new(move |env, _, _| env.signatures[0].sig[at] ^= 0x01),
            UNAUTH,
            "BAD_SIGNATURE",
        );
    }
    for len in [0usize, 1, 32, 63] {
        e(
            &format!("signature truncated to {len} bytes"),
            Box::new(move |env, _, _| env.signatures[0].sig.truncate(len)),
            INVALID,
            "INVALID_SIGNATURE_LENGTH",
        );
    }
    for extra in [1usize, 64] {
        e(
            &format!("signature with {extra} extra bytes"),
            Box::new(move |env, _, _| env.signatures[0].sig.extend(vec![0; extra])),
            INVALID,
            "INVALID_SIGNATURE_LENGTH",
        );
    }
    for byte in [0x00u8, 0xff] {
        e(
            &format!("signature of 64 bytes 0x{byte:02x}"),
            Box::new(move |env, _, _| env.signatures[0].sig = vec![byte; 64]),
            UNAUTH,
            "BAD_SIGNATURE",
        );
    }
    e(
        "no signature",
        Box::new(|env, _, _| env.signatures.clear()),
        UNAUTH,
        "MISSING_SIGNATURE",
    );
    for at in [0usize, 5, 40] {
        e(
            &format!("payload byte {at} changed after signing"),
            Box::new(move |env, _, _| env.payload[at] ^= 0x20),
            UNAUTH,
            "BAD_SIGNATURE",
        );
    }
    e(
        "payload truncated after signing",
        Box::new(|env, _, _| {
            let n = env.payload.len() - 1;
            env.payload.truncate(n)
        }),
        UNAUTH,
        "BAD_SIGNATURE",
    );
    e(
        "payload extended after signing",
        Box::new(|env, _, _| env.payload.push(0)),
        UNAUTH,
        "BAD_SIGNATURE",
    );
    // Wrong identities and keys.
    e(
        "signature names abu-dhabi's key",
        Box::new(|env, _, k| env.signatures[0].key_id = k.abu_dhabi.key_id().into()),
        UNAUTH,
        "BAD_SIGNATURE",
    );
    e(
        "signature names the hub's key",
        Box::new(|env, _, k| env.signatures[0].key_id = k.hub.key_id().into()),
        UNAUTH,
        "BAD_SIGNATURE",
    );
    e(
        "key_id of the right form that no member has",
        Box::new(|env, _, _| env.signatures[0].key_id = "ed25519:0123456789abcdef".into()),
        UNAUTH,
        "UNKNOWN_KEY_ID",
    );
    for id in ["", "unknown", "ed25519:AAAA", "../../etc/passwd"] {
        e(
            &format!("key_id {id:?}"),
            Box::new(move |env, _, _| env.signatures[0].key_id = id.into()),
            INVALID,
            "INVALID_KEY_ID",
        );
    }
    for n in 0..3 {
        e(
            &format!("signed by stranger key {n}"),
            Box::new(move |env, _, k| {
                *env = SignedEnvelope::sign(
                    STATEMENT_PAYLOAD_TYPE,
                    env.payload.clone(),
                    &k.strangers[n],
                )
                .to_proto()
            }),
            UNAUTH,
            "UNKNOWN_KEY_ID",
        );
    }
    e(
        "signed by abu-dhabi's key",
        Box::new(|env, _, k| {
            *env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, env.payload.clone(), &k.abu_dhabi)
                .to_proto()
        }),
        DENIED,
        "KEY_NOT_OWNED",
    );
    e(
        "signed by midwa's key",
        Box::new(|env, _, k| {
            *env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, env.payload.clone(), &k.midwa)
                .to_proto()
        }),
        DENIED,
        "KEY_NOT_OWNED",
    );
    e(
        "signed by the hub's key",
        Box::new(|env, _, k| {
            *env =
                SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, env.payload.clone(), &k.hub).to_proto()
        }),
        DENIED,
        "KEY_NOT_OWNED",
    );
    // Payload types.
    for pt in [
        "",
        "application/json",
        RECEIPT_PAYLOAD_TYPE,
        "application/vnd.rcpfed.statement.v2+protobuf",
        "APPLICATION/VND.RCPFED.STATEMENT.V1+PROTOBUF",
    ] {
        e(
            &format!("payload type {pt:?}, re-signed"),
            Box::new(move |env, raw, _| {
                *env = SignedEnvelope::sign(pt, env.payload.clone(), &raw.key).to_proto()
            }),
            INVALID,
            "UNKNOWN_PAYLOAD_TYPE",
        );
    }
    e(
        "registry payload type, re-signed",
        Box::new(|env, raw, _| {
            *env = SignedEnvelope::sign(REGISTRY_PAYLOAD_TYPE, env.payload.clone(), &raw.key)
                .to_proto()
        }),
        INVALID,
        "UNKNOWN_PAYLOAD_TYPE",
    );
    e(
        "payload type changed after signing",
        Box::new(|env, _, _| env.payload_type = "application/json".into()),
        INVALID,
        "UNKNOWN_PAYLOAD_TYPE",
    );
    // Malformed protobuf payloads, correctly signed.
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("16 bytes 0xff", vec![0xff; 16]),
        ("16 zero bytes", vec![0; 16]),
        ("overlong varint tag", vec![0x80; 11]),
        (
            "length prefix past the end",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2],
        ),
        ("plain text", b"hello, federation".to_vec()),
        ("JSON text", br#"{"header":{"node_id":"colombo"}}"#.to_vec()),
        ("end-group tag without a start", vec![0x0c]),
        ("field number 0", vec![0x02, 0x00]),
        ("invalid wire type 7", vec![0x0f, 0x00]),
    ];
    e(
        "payload: empty (a statement with no header)",
        Box::new(|env, raw, _| {
            *env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, vec![], &raw.key).to_proto()
        }),
        INVALID,
        "VALIDATION_FAILED/FIELD_REQUIRED",
    );
    for (label, bytes) in garbage {
        e(
            &format!("payload: {label}"),
            Box::new(move |env, raw, _| {
                *env =
                    SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, bytes.clone(), &raw.key).to_proto()
            }),
            INVALID,
            "PAYLOAD_MALFORMED",
        );
    }
    // Truncations of the valid payload inside its header field, and near the end.
    for keep in [1usize, 2, 3, 5, 8, 13, 21, 34] {
        e(
            &format!("payload truncated to {keep} bytes, re-signed"),
            Box::new(move |env, raw, _| {
                let mut p = env.payload.clone();
                p.truncate(keep);
                *env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, p, &raw.key).to_proto()
            }),
            INVALID,
            "PAYLOAD_MALFORMED",
        );
    }
    e(
        "payload missing its last byte, re-signed",
        Box::new(|env, raw, _| {
            let mut p = env.payload.clone();
            p.pop();
            *env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, p, &raw.key).to_proto()
        }),
        INVALID,
        "PAYLOAD_MALFORMED",
    );
    // The header field (1, length-delimited) with every other wire type.
    for tag in [0x08u8, 0x09, 0x0b, 0x0d, 0x0e, 0x0f] {
        e(
            &format!("header field with tag byte 0x{tag:02x}, re-signed"),
            Box::new(move |env, raw, _| {
                let mut p = env.payload.clone();
                p[0] = tag;
                *env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, p, &raw.key).to_proto()
            }),
            INVALID,
            "PAYLOAD_MALFORMED",
        );
    }
    cases
}

/// Inputs that are wrongly accepted (or refused with the wrong reason) today and that other
/// issue-9 work fixes (docs/spec/errors.md §2 reasons as the issue describes them). Not asserted
/// until [`pending_cases_once_fixed`] loses its `#[ignore]`. Each: (name, edit of colombo's
/// next signed policy envelope, expected code, expected reason).
#[allow(clippy::type_complexity)]
fn pending_cases() -> Vec<(String, EnvelopeEdit, Code, &'static str)> {
    let mut cases: Vec<(String, EnvelopeEdit, Code, &'static str)> = Vec::new();
    let resign_doc = |doc: &'static str| -> EnvelopeEdit {
        Box::new(move |env, raw, _| {
            let mut st = match Statement::decode(&env.payload) {
                Ok(st) => st.to_proto(),
                Err(e) => panic!("{e}"),
            };
            header(&mut st).document = doc.into();
            *env = SignedEnvelope::sign(
                STATEMENT_PAYLOAD_TYPE,
                prost::Message::encode_to_vec(&st),
                &raw.key,
            )
            .to_proto()
        })
    };
    // Issue 9 finding 13: `.` and `..` segments.
    for doc in [
        "regions/colombo/..",
        "regions/colombo/.",
        "regions/colombo/./x",
        "regions/colombo/x/../../abu-dhabi/y",
        "regions/colombo/policies/../x",
    ] {
        cases.push((
            format!("document {doc:?}"),
            resign_doc(doc),
            INVALID,
            "INVALID_DOCUMENT_NAME",
        ));
    }
    // Issue 9 finding 1: the whole envelope bounded (reasons as docs/spec/errors.md §2 will name
    // them; the bound-setting helper may choose the exact reason words).
    cases.push((
        "key_id of 1 MiB".into(),
        Box::new(|env, _, _| env.signatures[0].key_id = "k".repeat(1 << 20)),
        INVALID,
        "INVALID_KEY_ID",
    ));
    cases.push((
        "5000 signatures".into(),
        Box::new(|env, _, _| {
            let s = env.signatures[0].clone();
            env.signatures = vec![s; 5000];
        }),
        Code::ResourceExhausted,
        "TOO_MANY_SIGNATURES",
    ));
    cases.push((
        "signature of 1 MiB".into(),
        Box::new(|env, _, _| env.signatures[0].sig = vec![0; 1 << 20]),
        INVALID,
        "INVALID_SIGNATURE_LENGTH",
    ));
    cases
}

/// Read requests and wire messages the first version of the hub refused with the wrong code or
/// without an `ErrorInfo` reason. The proof-size cases are issue 9 finding 15 (codes that match
/// the documentation). The last two were findings of this corpus: an index past the log
/// overflowed, and a request message that is not valid protobuf got tonic's own INTERNAL with
/// no reason (now `MALFORMED_MESSAGE`, `rcpfed-proto` `codec.rs`). (case, what the hub
/// answered then, what it answers now).
pub const PENDING_WIRE_CASES: &[(&str, &str, (Code, &str))] = &[
    (
        "GetConsistencyProof(u64::MAX, u64::MAX)",
        "NOT_FOUND",
        (Code::InvalidArgument, "INVALID_ARGUMENT"),
    ),
    (
        "GetConsistencyProof(1, 99999)",
        "NOT_FOUND",
        (Code::InvalidArgument, "INVALID_ARGUMENT"),
    ),
    (
        "GetInclusionProof(leaf_index u64::MAX, tree_size 0)",
        "INTERNAL \"internal error while building an inclusion proof\"",
        (Code::NotFound, "NOT_FOUND"),
    ),
    (
        "any request message that is not valid protobuf (0xff bytes, truncated fields, wrong \
         wire types, invalid UTF-8, field number 0) to SubmitStatement, GetStatement, \
         ListStatements",
        "INTERNAL \"failed to decode Protobuf message: …\" with no ErrorInfo",
        (Code::InvalidArgument, "MALFORMED_MESSAGE"),
    ),
];

/// The hub's refusals of hostile statements and envelopes submitted as colombo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_refuses_every_hostile_statement_and_envelope() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let first = raw.policy("Accepted first");
    raw.accept(&first).await;
    let mut probe = Probe::new(&c).await;
    let mut before = probe.state().await;
    let keys = Keys {
        abu_dhabi: c.signing_key("abu-dhabi"),
        midwa: c.signing_key("midwa"),
        hub: c.signing_key(HUB_ID),
        strangers: (0..3)
            .map(|n| SecretKey::from_seed(&[0xa0 + n; 32]))
            .collect(),
    };
    let mut findings = Findings::default();

    for (name, base, edit, code, why) in statement_cases() {
        let st = match base {
            Base::Policy => raw.policy("A hostile variant"),
            Base::Indicators => raw.indicators(vec![]),
        };
        let mut wire = st.to_proto();
        if let Base::Indicators = base {
            snapshot(&mut wire).observations = vec![lka_2023()];
        }
        edit(&mut wire);
        let payload = prost::Message::encode_to_vec(&wire);
        let env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &raw.key);
        let result = raw.submit(env.to_proto()).await;
        if check_refusal(
            &mut probe,
            &mut findings,
            &name,
            &before,
            result,
            (code, why),
        )
        .await
        {
            // Wrongly accepted (reported): move the chain on so later cases stay meaningful.
            raw.seq += 1;
            raw.head = Some(env.digest());
            before = probe.state().await;
        }
    }
    for (name, edit, code, why) in envelope_cases() {
        let mut env = raw.sign(&raw.policy("A hostile envelope")).to_proto();
        edit(&mut env, &raw, &keys);
        let digest = SignedEnvelope::from_proto(env.clone()).digest();
        let result = raw.submit(env).await;
        if check_refusal(
            &mut probe,
            &mut findings,
            &name,
            &before,
            result,
            (code, why),
        )
        .await
        {
            raw.seq += 1;
            raw.head = Some(digest);
            before = probe.state().await;
        }
    }
    findings.finish("hostile statements and envelopes", 150);
    // The untouched next statement is still accepted: the refusals changed nothing.
    let next = raw.policy("After the corpus");
    raw.accept(&next).await;
}

/// [`pending_cases`], [`PENDING_WIRE_CASES`] and [`PENDING_CSV_CASES`], asserted: the inputs
/// the first version of this corpus found wrongly accepted, refused since the envelope bounds,
/// the document-name grammar, the CSV quote check and the error-code fixes of issue 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_cases_once_fixed() {
    let c = Cluster::start(&["colombo"]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let mut probe = Probe::new(&c).await;
    let mut before = probe.state().await;
    let keys = Keys {
        abu_dhabi: c.signing_key("abu-dhabi"),
        midwa: c.signing_key("midwa"),
        hub: c.signing_key(HUB_ID),
        strangers: vec![],
    };
    let mut findings = Findings::default();
    for (name, edit, code, why) in pending_cases() {
        let mut env = raw.sign(&raw.policy("A pending hostile case")).to_proto();
        edit(&mut env, &raw, &keys);
        let digest = SignedEnvelope::from_proto(env.clone()).digest();
        let result = raw.submit(env).await;
        if check_refusal(
            &mut probe,
            &mut findings,
            &name,
            &before,
            result,
            (code, why),
        )
        .await
        {
            // Wrongly accepted (reported): move the chain on so later cases stay meaningful.
            raw.seq += 1;
            raw.head = Some(digest);
            before = probe.state().await;
        }
    }
    for (case, today, want) in PENDING_WIRE_CASES {
        eprintln!("pending: {case}: today {today}, wanted {want:?}");
    }
    let mut hub = c.hub_client("operator").await;
    for (old, new) in [(u64::MAX, u64::MAX), (1, 99_999)] {
        let result = hub
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: old,
                new_size: new,
            })
            .await;
        let case = format!("GetConsistencyProof({old}, {new})");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (INVALID, "INVALID_ARGUMENT"),
        )
        .await;
    }
    let result = hub
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(u64::MAX)),
            tree_size: 0,
        })
        .await;
    check_refusal(
        &mut probe,
        &mut findings,
        "GetInclusionProof(u64::MAX)",
        &before,
        result,
        (Code::NotFound, "NOT_FOUND"),
    )
    .await;
    for body in [
        vec![0xff; 8],
        vec![0x0a, 0x20, 0x0a, 0x02],
        vec![0x08, 0x01],
    ] {
        findings.ran += 1;
        let case = format!("SubmitStatement with raw bytes {body:02x?}");
        match raw_call(&c, "colombo", "/rcpfed.v1.HubService/SubmitStatement", body).await {
            Err(s) if s.code() == INVALID && !reason(&s).is_empty() => {}
            other => findings.fail(
                &case,
                format!("wanted INVALID_ARGUMENT with a reason: {other:?}"),
            ),
        }
    }
    for (n, (name, text, want)) in PENDING_CSV_CASES.iter().enumerate() {
        findings.ran += 1;
        let file = c.root().join(format!("pending-{n}.csv"));
        std::fs::write(&file, text).expect("write case file");
        let args = vec![
            "publish".to_string(),
            "--node".into(),
            format!("https://localhost:{}", c.node_addr("colombo").port()),
            "--pki".into(),
            c.fed_dir().to_string_lossy().into_owned(),
            "indicators".into(),
            file.to_string_lossy().into_owned(),
            "--dry-run".into(),
        ];
        let (code, stdout, stderr) = run_rcpfed_async(args).await;
        if code == 0 || !format!("{stdout}{stderr}").contains(want) {
            findings.fail(
                name,
                format!("wanted a refusal naming {want:?}: {stdout}{stderr}"),
            );
        }
    }
    findings.finish("pending cases", 10);
}

// ----- hostile CSV and SDMX-CSV through the CLI and the node -------------------------------------

const CSV_HEADER: &str =
    "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS\n";
const CSV_GOOD_ROW: &str = "REMIT_INFLOW,LKA,2023,7.0,current USD,9,A\n";
const SDMX_HEADER: &str = "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS\n";

/// A simple-format file: the header, a good row, then `row`.
fn csv_with(row: &str) -> Vec<u8> {
    format!("{CSV_HEADER}{CSV_GOOD_ROW}{row}\n").into_bytes()
}

/// An SDMX-CSV 2.0 file with one data row.
fn sdmx_with(row: &str) -> Vec<u8> {
    format!("{SDMX_HEADER}{row}\n").into_bytes()
}

/// CSV cases: (name, file bytes, text the CLI's output must contain).
fn csv_cases() -> Vec<(String, Vec<u8>, String)> {
    let reason = |r: &str| format!("[reason {r}]");
    let mut cases: Vec<(String, Vec<u8>, String)> = vec![];
    let mut add = |name: &str, bytes: Vec<u8>, want: String| cases.push((name.into(), bytes, want));
    for v in ["NaN", "nan", "inf", "-inf", "Infinity", "1e999", "-1e999"] {
        add(
            &format!("value {v}"),
            csv_with(&format!("REMIT_INFLOW,BGD,2023,{v},current USD,9,A")),
            reason("NON_FINITE_VALUE"),
        );
    }
    for v in ["abc", "1,5", "0x10", "1.2.3", "--1"] {
        add(
            &format!("value {v:?}"),
            csv_with(&format!("REMIT_INFLOW,BGD,2023,\"{v}\",current USD,9,A")),
            "line 3".into(),
        );
    }
    for (area, why) in [
        ("FRA", "NOT_A_MEMBER_STATE"),
        ("XYZ", "INVALID_COUNTRY_CODE"),
        ("lka", "INVALID_COUNTRY_CODE"),
    ] {
        add(
            &format!("ref_area {area}"),
            csv_with(&format!("REMIT_INFLOW,{area},2023,5,current USD,9,A")),
            reason(why),
        );
    }
    for period in ["2023-13", "99999", "-2023", "2023-Q9", "last year"] {
        add(
            &format!("time_period {period:?}"),
            csv_with(&format!("REMIT_INFLOW,BGD,{period},5,current USD,9,A")),
            reason("INVALID_TIME_PERIOD"),
        );
    }
    add(
        "unit of another indicator",
        csv_with("REMIT_INFLOW,BGD,2023,5,persons,9,A"),
        "line 3, column UNIT_MEASURE".into(),
    );
    add(
        "unit_mult 99",
        csv_with("REMIT_INFLOW,BGD,2023,5,current USD,99,A"),
        reason("INVALID_UNIT_MULT"),
    );
    add(
        "unit_mult not a number",
        csv_with("REMIT_INFLOW,BGD,2023,5,current USD,nine,A"),
        "line 3".into(),
    );
    add(
        "obs_status Z",
        csv_with("REMIT_INFLOW,BGD,2023,5,current USD,9,Z"),
        "line 3".into(),
    );
    add(
        "indicator not in the catalogue",
        format!("{CSV_HEADER}NOT_IN_CATALOGUE,BGD,2023,5,current USD,9,A\n").into_bytes(),
        "NOT_IN_CATALOGUE".into(),
    );
    add(
        "duplicate row",
        csv_with(CSV_GOOD_ROW.trim_end()),
        reason("DUPLICATE_KEY"),
    );
    add(
        "row with too many fields",
        csv_with("REMIT_INFLOW,BGD,2023,5,current USD,9,A,extra"),
        "line 3".into(),
    );
    add(
        "row with too few fields",
        csv_with("REMIT_INFLOW,BGD,2023"),
        "line 3".into(),
    );
    add("empty file", vec![], "error".into());
    add(
        "header only",
        CSV_HEADER.as_bytes().to_vec(),
        "error".into(),
    );
    add(
        "no OBS_VALUE column",
        b"INDICATOR,REF_AREA,TIME_PERIOD\nREMIT_INFLOW,LKA,2023\n".to_vec(),
        "OBS_VALUE".into(),
    );
    add(
        "duplicate column",
        b"INDICATOR,REF_AREA,REF_AREA,TIME_PERIOD,OBS_VALUE\nREMIT_INFLOW,LKA,LKA,2023,5\n"
            .to_vec(),
        "REF_AREA".into(),
    );
    add(
        "invalid UTF-8",
        [
            CSV_HEADER.as_bytes(),
            b"REMIT_INFLOW,LKA,2023,\xff\xfe,current USD,9,A\n",
        ]
        .concat(),
        "error".into(),
    );
    add(
        "source of 5000 characters",
        format!(
            "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,SOURCE\n\
             REMIT_INFLOW,LKA,2023,7.0,current USD,9,A,{}\n",
            "s".repeat(5000)
        )
        .into_bytes(),
        reason("TOO_LONG"),
    );
    // SDMX-CSV 2.0.
    add(
        "SDMX: malformed column name",
        b"STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE,SEX[]\n\
          dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023,7.0,\n"
            .to_vec(),
        "SEX[]".into(),
    );
    add(
        "SDMX: no OBS_VALUE column",
        b"STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD\n\
          dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023\n"
            .to_vec(),
        "OBS_VALUE".into(),
    );
    add(
        "SDMX: NaN",
        sdmx_with("dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023,NaN,current USD,9,A"),
        reason("NON_FINITE_VALUE"),
    );
    add(
        "SDMX: not a member state",
        sdmx_with("dataflow,GFMD:REMIT_INFLOW(1.0.0),I,FRA,2023,5,current USD,9,A"),
        reason("NOT_A_MEMBER_STATE"),
    );
    add(
        "SDMX: unknown action",
        sdmx_with("dataflow,GFMD:REMIT_INFLOW(1.0.0),X,LKA,2023,5,current USD,9,A"),
        "line 2".into(),
    );
    add(
        "SDMX: structure type not dataflow",
        sdmx_with("datastructure,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023,5,current USD,9,A"),
        "line 2".into(),
    );
    add(
        "SDMX: malformed STRUCTURE_ID",
        sdmx_with("dataflow,REMIT_INFLOW,I,LKA,2023,5,current USD,9,A"),
        "line 2".into(),
    );
    add(
        "SDMX: bad time period",
        sdmx_with("dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023-13,5,current USD,9,A"),
        reason("INVALID_TIME_PERIOD"),
    );
    cases
}

/// CSV inputs wrongly accepted today, fixed by other issue-9 work (finding 13); not asserted.
pub const PENDING_CSV_CASES: &[(&str, &str, &str)] = &[
    (
        "unterminated quote",
        "INDICATOR,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,SOURCE\n\
         REMIT_INFLOW,LKA,2023,7.0,current USD,9,A,\"open\n",
        "line 2",
    ),
    (
        "SDMX: unterminated quote",
        "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,COMMENT\n\
         dataflow,GFMD:REMIT_INFLOW(1.0.0),I,LKA,2023,5,current USD,9,A,\"open\n",
        "line 2",
    ),
];

/// Hostile CSV and SDMX-CSV through `rcpfed publish indicators --dry-run` (the node's
/// validate-only PublishSnapshot) and, for those that parse, a real publish; then hostile
/// documents through the node's PublishDocument: refused, nothing signed or queued at the node,
/// nothing stored at the hub, the hub still SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_node_refuse_every_hostile_csv_and_document() {
    let c = Cluster::start(&["colombo"]).await;
    let mut probe = Probe::new(&c).await;
    let before = probe.state().await;
    let node_args = vec![
        "--node".to_string(),
        format!("https://localhost:{}", c.node_addr("colombo").port()),
        "--pki".to_string(),
        c.fed_dir().to_string_lossy().into_owned(),
    ];
    let mut findings = Findings::default();
    for (n, (name, bytes, want)) in csv_cases().into_iter().enumerate() {
        let file = c.root().join(format!("hostile-{n}.csv"));
        std::fs::write(&file, &bytes).expect("write case file");
        for dry in [true, false] {
            let mut args = vec!["publish".to_string()];
            args.extend(node_args.clone());
            args.extend([
                "indicators".to_string(),
                file.to_string_lossy().into_owned(),
            ]);
            if dry {
                args.push("--dry-run".into());
            }
            let (code, stdout, stderr) = run_rcpfed_async(args).await;
            let text = format!("{stdout}{stderr}");
            let case = format!("{name}{}", if dry { " (dry run)" } else { "" });
            findings.ran += 1;
            if code == 0 {
                findings.fail(&case, format!("the CLI succeeded: {text}"));
            } else if !text.contains(&want) {
                findings.fail(&case, format!("output lacks {want:?}: {text}"));
            }
        }
        let status = c.node_status("colombo").await;
        if status.head_seq != 0 || status.outbox_pending != 0 {
            findings.fail(
                name.as_str(),
                format!(
                    "the node signed or queued something: head_seq {}, pending {}",
                    status.head_seq, status.outbox_pending
                ),
            );
        }
        if probe.state().await != before {
            findings.fail(name.as_str(), "the hub's store changed".into());
        }
        if let Err(e) = probe.serving().await {
            findings.fail(name.as_str(), e);
        }
    }
    // Hostile documents through the node's PublishDocument (as its operator): refused before
    // signing, with the same reasons as at the hub.
    type DocumentEdit = Box<dyn Fn(&mut v1::PublishDocumentRequest)>;
    fn doc_policy(r: &mut v1::PublishDocumentRequest) -> &mut v1::PolicySummary {
        match &mut r.body {
            Some(v1::publish_document_request::Body::PolicySummary(p)) => p,
            _ => panic!("not a policy request"),
        }
    }
    let documents: Vec<(&str, DocumentEdit, Code, &str)> = vec![
        (
            "empty title",
            Box::new(|r| doc_policy(r).title.clear()),
            INVALID,
            "EMPTY_TITLE",
        ),
        (
            "title language \"english\"",
            Box::new(|r| doc_policy(r).title[0].language = "english".into()),
            INVALID,
            "INVALID_LANGUAGE",
        ),
        (
            "country XYZ",
            Box::new(|r| doc_policy(r).countries = vec!["XYZ".into()]),
            INVALID,
            "INVALID_COUNTRY_CODE",
        ),
        (
            "gcm objective 0",
            Box::new(|r| doc_policy(r).gcm_objectives = vec![0]),
            INVALID,
            "INVALID_GCM_OBJECTIVE",
        ),
        (
            "meeting_date 2024-02-30",
            Box::new(|r| doc_policy(r).meeting_date = "2024-02-30".into()),
            INVALID,
            "INVALID_DATE",
        ),
        (
            "title of 501 characters",
            Box::new(|r| doc_policy(r).title[0].text = "t".repeat(501)),
            INVALID,
            "TOO_LONG",
        ),
        (
            "document of another member",
            Box::new(|r| r.document = "regions/abu-dhabi/policies/x".into()),
            INVALID,
            "INVALID_DOCUMENT_NAME",
        ),
        (
            "document with upper case",
            Box::new(|r| r.document = "regions/colombo/Policies".into()),
            INVALID,
            "INVALID_DOCUMENT_NAME",
        ),
        (
            "no body",
            Box::new(|r| r.body = None),
            INVALID,
            "FIELD_REQUIRED",
        ),
        (
            "NaN observation",
            Box::new(|r| {
                let mut o = lka_2023();
                o.obs_value = Some(f64::NAN);
                r.document = "regions/colombo/indicators/remit-inflow".into();
                r.body = Some(v1::publish_document_request::Body::IndicatorSnapshot(
                    v1::IndicatorSnapshot {
                        indicator: "REMIT_INFLOW".into(),
                        observations: vec![o],
                        chunks: None,
                    },
                ));
            }),
            INVALID,
            "NON_FINITE_VALUE",
        ),
        (
            "observation of a non-member state",
            Box::new(|r| {
                let mut o = lka_2023();
                o.ref_area = "FRA".into();
                r.document = "regions/colombo/indicators/remit-inflow".into();
                r.body = Some(v1::publish_document_request::Body::IndicatorSnapshot(
                    v1::IndicatorSnapshot {
                        indicator: "REMIT_INFLOW".into(),
                        observations: vec![o],
                        chunks: None,
                    },
                ));
            }),
            INVALID,
            "NOT_A_MEMBER_STATE",
        ),
    ];
    let mut node = c.node_client("colombo", "operator").await;
    for (name, edit, code, why) in documents {
        for validate_only in [true, false] {
            let mut request = crate::harness::publish_request("colombo", "A hostile document");
            request.validate_only = validate_only;
            edit(&mut request);
            let result = node.publish_document(request).await;
            let case = format!(
                "PublishDocument {name}{}",
                if validate_only {
                    " (validate only)"
                } else {
                    ""
                }
            );
            check_refusal(
                &mut probe,
                &mut findings,
                &case,
                &before,
                result,
                (code, why),
            )
            .await;
        }
        let status = c.node_status("colombo").await;
        if status.head_seq != 0 || status.outbox_pending != 0 {
            findings.fail(
                name,
                format!(
                    "the node signed or queued something: head_seq {}",
                    status.head_seq
                ),
            );
        }
    }
    findings.finish("hostile CSV and documents at the node", 60);
}

// ----- wrong identities, malformed protobuf on the wire, TLS and HTTP/2 abuse --------------------

/// Sends raw bytes as a gRPC message body, so the hub's own decoder meets malformed protobuf.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf as _;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// Calls `method` of HubService with `body` as the request message, over mTLS as `identity`.
async fn raw_call(
    c: &Cluster,
    identity: &str,
    method: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = crate::harness::connect(c.hub_addr().port(), &c.tls(identity))
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// What the hub does with raw bytes on its TLS port: how the connection ended and the first
/// bytes it sent back.
async fn raw_tcp(addr: SocketAddr, send: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if !send.is_empty() {
        // The server may close before reading everything; that is a refusal too.
        let _ = stream.write_all(send).await;
    }
    let _ = stream.shutdown().await;
    let mut got = Vec::new();
    // The hub must end the connection itself: a generous bound, well above any handshake work
    // on a loaded machine, below the 10 s the issue allows a silent peer.
    match tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut got)).await {
        Ok(_) => Ok(got),
        Err(_) => Err(format!("the hub kept the connection open; it sent {got:?}")),
    }
}

/// Wrong identities, malformed protobuf on the wire, and transport abuse against the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_refuses_wrong_identities_malformed_wire_messages_and_transport_abuse() {
    let c = Cluster::start(&[]).await;
    let raw = RawNode::connect(&c, "colombo").await;
    let mut probe = Probe::new(&c).await;
    let before = probe.state().await;
    let mut findings = Findings::default();
    let good = raw.sign(&raw.policy("Sent by the wrong member")).to_proto();

    // Wrong identities: a valid colombo envelope sent over another member's connection, and
    // calls without the role.
    for identity in ["operator", HUB_ID] {
        let mut client = c.hub_client(identity).await;
        let result = client
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(good.clone()),
            })
            .await;
        let case = format!("SubmitStatement as {identity}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (DENIED, "ROLE_REQUIRED"),
        )
        .await;
    }
    for identity in ["abu-dhabi", "midwa"] {
        let mut client = c.hub_client(identity).await;
        let result = client
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(good.clone()),
            })
            .await;
        let case = format!("colombo's envelope sent by {identity}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (DENIED, "KEY_NOT_OWNED"),
        )
        .await;
    }
    for identity in ["colombo", "abu-dhabi"] {
        let mut client = c.hub_client(identity).await;
        let result = client
            .list_equivocations(v1::ListEquivocationsRequest::default())
            .await;
        let case = format!("ListEquivocations as {identity}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (DENIED, "ROLE_REQUIRED"),
        )
        .await;
    }

    // Out-of-range numbers and names in read requests.
    let mut hub = c.hub_client("operator").await;
    for size in [-1i32, i32::MIN, 100_000] {
        let result = hub
            .list_statements(v1::ListStatementsRequest {
                page_size: size,
                ..Default::default()
            })
            .await;
        let case = format!("ListStatements page_size {size}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (INVALID, "INVALID_ARGUMENT"),
        )
        .await;
    }
    for token in ["not-a-token", "\u{0}", "AAAA"] {
        let result = hub
            .list_statements(v1::ListStatementsRequest {
                page_token: token.into(),
                ..Default::default()
            })
            .await;
        let case = format!("ListStatements page_token {token:?}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (INVALID, "INVALID_PAGE_TOKEN"),
        )
        .await;
    }
    for name in [
        "",
        "statements/colombo/1",
        "nodes/colombo/statements/x",
        "nodes//statements/1",
        "nodes/colombo/statements/-1",
    ] {
        let result = hub
            .get_statement(v1::GetStatementRequest { name: name.into() })
            .await;
        let case = format!("GetStatement {name:?}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (INVALID, "INVALID_ARGUMENT"),
        )
        .await;
    }
    for seq in ["99", "18446744073709551615"] {
        let result = hub
            .get_statement(v1::GetStatementRequest {
                name: format!("nodes/colombo/statements/{seq}"),
            })
            .await;
        let case = format!("GetStatement of missing seq {seq}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (Code::NotFound, "NOT_FOUND"),
        )
        .await;
    }
    for (label, index, size) in [
        ("index past the tree", 99u64, 0u64),
        ("index past a given size", 99, 2),
    ] {
        let result = hub
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(index)),
                tree_size: size,
            })
            .await;
        let case = format!("GetInclusionProof {label}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (Code::NotFound, "NOT_FOUND"),
        )
        .await;
    }
    for (old, new) in [(5u64, 2u64), (0, 1), (3, 2)] {
        let result = hub
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: old,
                new_size: new,
            })
            .await;
        let case = format!("GetConsistencyProof {old} -> {new}");
        check_refusal(
            &mut probe,
            &mut findings,
            &case,
            &before,
            result,
            (INVALID, "INVALID_ARGUMENT"),
        )
        .await;
    }

    // Malformed protobuf as the request message itself.
    let submit = "/rcpfed.v1.HubService/SubmitStatement";
    let wire: Vec<(&str, &'static str, Vec<u8>)> = vec![
        ("SubmitStatement: 0xff bytes", submit, vec![0xff; 8]),
        (
            "SubmitStatement: truncated envelope",
            submit,
            vec![0x0a, 0x20, 0x0a, 0x02],
        ),
        (
            "SubmitStatement: envelope as a varint",
            submit,
            vec![0x08, 0x01],
        ),
        (
            "SubmitStatement: invalid UTF-8 payload type",
            submit,
            vec![0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe],
        ),
        ("SubmitStatement: field number 0", submit, vec![0x00, 0x01]),
        ("SubmitStatement: plain text", submit, b"hello".to_vec()),
        (
            "GetStatement: truncated name",
            "/rcpfed.v1.HubService/GetStatement",
            vec![0x0a, 0x10, b'n'],
        ),
        (
            "ListStatements: overlong varint",
            "/rcpfed.v1.HubService/ListStatements",
            vec![
                0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
        ),
    ];
    for (case, method, body) in wire {
        // Today tonic's own decoder answers INTERNAL without an ErrorInfo (see
        // PENDING_WIRE_CASES); asserted here: refused, nothing stored, hub serving.
        findings.ran += 1;
        match raw_call(&c, "colombo", method, body).await {
            Ok(v) => findings.fail(case, format!("answered {v:?}")),
            Err(s) if s.code() == Code::Ok => findings.fail(case, describe(&s)),
            Err(_) => {}
        }
        if probe.state().await != before {
            findings.fail(case, "the hub's store changed".into());
        }
        if let Err(e) = probe.serving().await {
            findings.fail(case, e);
        }
    }

    // Transport abuse on the hub's TLS port: each must end without any HTTP or gRPC answer
    // (a TLS alert at most).
    let tls_port = c.hub_addr();
    let http2_preface =
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec();
    let abuse: Vec<(&str, Vec<u8>)> = vec![
        ("connect and close", vec![]),
        ("garbage bytes instead of TLS", (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect()),
        ("zero bytes instead of TLS", vec![0; 1024]),
        ("plaintext HTTP/2 to the TLS port", http2_preface),
        ("HTTP/1.1 request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("HTTP/1.1 POST of a gRPC path", b"POST /rcpfed.v1.HubService/SubmitStatement HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\n\r\n\x00\x00\x00\x00\x00".to_vec()),
        ("TLS record header announcing 16 KiB, then nothing", vec![0x16, 0x03, 0x01, 0x40, 0x00]),
        ("SSLv2-style hello", vec![0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10]),
        ("TLS alert record", vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
    ];
    for (case, bytes) in abuse {
        findings.ran += 1;
        match raw_tcp(tls_port, &bytes).await {
            Ok(got) => {
                let looks_like_tls_alert = got.first() == Some(&0x15);
                if !(got.is_empty() || looks_like_tls_alert) {
                    findings.fail(
                        case,
                        format!(
                            "answered with {} bytes: {:?}",
                            got.len(),
                            String::from_utf8_lossy(&got[..got.len().min(64)])
                        ),
                    );
                }
            }
            Err(e) => findings.fail(case, e),
        }
        if probe.state().await != before {
            findings.fail(case, "the hub's store changed".into());
        }
        if let Err(e) = probe.serving().await {
            findings.fail(case, e);
        }
    }

    // TLS without a client certificate, and with a certificate from another CA.
    let ca = std::fs::read(c.fed_dir().join("ca.pem")).expect("ca");
    let no_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let other = c.root().join("other-federation");
    crate::harness::pki_init(&other);
    let other_ca = rcpfed_grpc::tls::TlsFiles {
        ca_cert: c.fed_dir().join("ca.pem"),
        cert: other.join("members/colombo/tls.pem"),
        key: other.join("members/colombo/tls.key"),
    }
    .client_config("localhost")
    .expect("tls");
    for (case, tls) in [
        ("no client certificate", no_cert),
        ("certificate of another CA", other_ca),
    ] {
        findings.ran += 1;
        let endpoint = tonic::transport::Endpoint::from_shared(format!(
            "https://localhost:{}",
            tls_port.port()
        ))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
        let outcome = match endpoint.tls_config(tls).expect("tls").connect().await {
            Err(e) => Err(format!("connect failed: {e:?}")),
            Ok(ch) => HubServiceClient::new(ch)
                .submit_statement(v1::SubmitStatementRequest {
                    envelope: Some(good.clone()),
                })
                .await
                .map_err(|s| {
                    if matches!(
                        s.code(),
                        Code::Unavailable | Code::Unknown | Code::Cancelled
                    ) {
                        format!("call failed: {s:?}")
                    } else {
                        format!("UNEXPECTED application answer: {}", describe(&s))
                    }
                }),
        };
        match outcome {
            Ok(r) => findings.fail(case, format!("accepted: {r:?}")),
            Err(e) if e.starts_with("UNEXPECTED") => findings.fail(case, e),
            Err(_) => {}
        }
        if probe.state().await != before {
            findings.fail(case, "the hub's store changed".into());
        }
        if let Err(e) = probe.serving().await {
            findings.fail(case, e);
        }
    }
    findings.finish("identities, wire and transport", 40);
}
