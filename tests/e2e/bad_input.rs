//! Bad input at the hub (and one at a node): each refusal has the intended gRPC code and
//! `ErrorInfo` reason, and leaves the hub's store exactly as it was.
//!
//! Most tests act as node colombo directly (`RawNode`): its TLS identity and signing key, with
//! statements built, signed and mutated here.

use crate::harness::{
    Cluster, HUB_ID, HUB_PRELUDE, RawNode, Snapshot, assert_refused, describe, field_violations,
    observation, pki_init, reason,
};
use rcpfed_core::Digest;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::statement::{Body, Statement};
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use tonic::Code;

/// A hub with one accepted colombo statement; the raw node; the hub's snapshot; the accepted
/// envelope.
async fn setup() -> (Cluster, RawNode, Snapshot, SignedEnvelope) {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let first = raw.policy("Accepted first");
    let (env, _) = raw.accept(&first).await;
    let snapshot = c.hub_snapshot().await;
    // The hub prelude (registry version 1, catalogue version 1), then the accepted statement.
    let names: Vec<&str> = snapshot.statements.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("nodes/{HUB_ID}/statements/1"),
            format!(
                "nodes/{}/statements/1",
                rcpfed_store::catalogue_chain(HUB_ID)
            ),
            "nodes/colombo/statements/1".to_string(),
        ]
    );
    assert_eq!(names.len() as u64, HUB_PRELUDE + 1);
    (c, raw, snapshot, env)
}

async fn assert_unchanged(c: &Cluster, before: &Snapshot) {
    assert_eq!(&c.hub_snapshot().await, before, "the hub's store changed");
}

fn policy_body(st: &mut Statement) -> &mut rcpfed_core::statement::PolicySummary {
    match &mut st.body {
        Body::Policy(p) => p,
        Body::Indicators(_) => panic!("not a policy"),
    }
}

/// Sends a valid next statement over a connection made with `tls`; returns the error text.
async fn submit_with(c: &Cluster, raw: &RawNode, tls: tonic::transport::ClientTlsConfig) -> String {
    let envelope = raw.sign(&raw.policy("Over a bad connection")).to_proto();
    let endpoint = tonic::transport::Endpoint::from_shared(format!(
        "https://localhost:{}",
        c.hub_addr().port()
    ))
    .expect("endpoint")
    .connect_timeout(std::time::Duration::from_secs(5))
    .timeout(std::time::Duration::from_secs(10));
    let channel = match endpoint.tls_config(tls).expect("tls").connect().await {
        Ok(ch) => ch,
        Err(e) => return format!("connect failed: {e:?}"),
    };
    match HubServiceClient::new(channel)
        .submit_statement(v1::SubmitStatementRequest {
            envelope: Some(envelope),
        })
        .await
    {
        Ok(r) => panic!("accepted over a connection without a valid client certificate: {r:?}"),
        Err(s) => {
            assert!(
                matches!(
                    s.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled
                ),
                "a TLS failure, not an application refusal: {}",
                describe(&s)
            );
            format!("call failed: {s:?}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused() {
    let (c, raw, before, _) = setup().await;
    let ca = std::fs::read(c.fed_dir().join("ca.pem")).expect("ca");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let error = submit_with(&c, &raw, tls).await;
    eprintln!("without a client certificate: {error}");
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let (c, raw, before, _) = setup().await;
    let other = c.root().join("other-federation");
    pki_init(&other);
    // Same SPIFFE id (spiffe://rcp-federation/node/colombo), different CA.
    let files = TlsFiles {
        ca_cert: c.fed_dir().join("ca.pem"),
        cert: other.join("members/colombo/tls.pem"),
        key: other.join("members/colombo/tls.key"),
    };
    let error = submit_with(&c, &raw, files.client_config("localhost").expect("tls")).await;
    eprintln!("with another CA's certificate: {error}");
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_signed_with_another_members_key_is_key_not_owned() {
    let (c, mut raw, before, _) = setup().await;
    let st = raw.policy("Signed by abu-dhabi");
    let env = SignedEnvelope::sign(
        STATEMENT_PAYLOAD_TYPE,
        st.encode(),
        &c.signing_key("abu-dhabi"),
    );
    assert_refused(
        raw.submit(env.to_proto()).await,
        Code::PermissionDenied,
        "KEY_NOT_OWNED",
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_problems_are_unauthenticated() {
    let (c, mut raw, before, _) = setup().await;
    let st = raw.policy("Signature problems");
    let good = raw.sign(&st);

    let mut flipped = good.to_proto();
    flipped.signatures[0].sig[10] ^= 0x01;
    assert_refused(
        raw.submit(flipped).await,
        Code::Unauthenticated,
        "BAD_SIGNATURE",
    );

    let mut none = good.to_proto();
    none.signatures.clear();
    assert_refused(
        raw.submit(none).await,
        Code::Unauthenticated,
        "MISSING_SIGNATURE",
    );

    let stranger = SecretKey::generate().expect("key");
    let unknown = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, st.encode(), &stranger);
    assert_refused(
        raw.submit(unknown.to_proto()).await,
        Code::Unauthenticated,
        "UNKNOWN_KEY_ID",
    );
    assert_unchanged(&c, &before).await;

    // The untouched envelope is still accepted: the refusals changed nothing.
    raw.submit(good.to_proto())
        .await
        .expect("the good envelope");
}

/// The `google.rpc.ErrorInfo` metadata value `key` of a status.
fn error_meta(status: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
}

/// Signatures that break the exact Ed25519 rule of docs/spec/keys.md §2 in their encoding (S >= L,
/// a non-canonical or small-order R) are BAD_SIGNATURE, and the ErrorInfo names the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_name_the_ed25519_check_that_refused_them() {
    let (c, mut raw, before, _) = setup().await;
    let st = raw.policy("Signature encodings");
    let good = raw.sign(&st);
    // The group order L, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let s_plus_l = |sig: &mut Vec<u8>| {
        let mut carry = 0u16;
        for (b, l) in sig[32..].iter_mut().zip(L) {
            let v = u16::from(*b) + u16::from(l) + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
    };
    let identity_r = |sig: &mut Vec<u8>| {
        sig[..32].fill(0);
        sig[0] = 1;
    };
    // The identity again, encoded with y = p + 1.
    let non_canonical_r = |sig: &mut Vec<u8>| {
        sig[..32].fill(0xff);
        sig[0] = 0xee;
        sig[31] = 0x7f;
    };
    let other_s = |sig: &mut Vec<u8>| sig[32] ^= 0x01;
    type Edit = fn(&mut Vec<u8>);
    let cases: [(Edit, &str); 4] = [
        (s_plus_l, "S_OUT_OF_RANGE"),
        (identity_r, "R_SMALL_ORDER"),
        (non_canonical_r, "R_NON_CANONICAL"),
        (other_s, "EQUATION"),
    ];
    for (edit, check) in cases {
        let mut env = good.to_proto();
        edit(&mut env.signatures[0].sig);
        let status = assert_refused(
            raw.submit(env).await,
            Code::Unauthenticated,
            "BAD_SIGNATURE",
        );
        assert_eq!(
            error_meta(&status, "signature_check").as_deref(),
            Some(check),
            "{}",
            describe(&status)
        );
        assert_eq!(
            error_meta(&status, "key_id").as_deref(),
            Some(raw.key.key_id())
        );
    }
    assert_unchanged(&c, &before).await;
    raw.submit(good.to_proto())
        .await
        .expect("the good envelope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_payload_is_malformed_or_bad_signature() {
    let (c, mut raw, before, _) = setup().await;
    let st = raw.policy("Truncated");
    let mut payload = st.encode();
    payload.truncate(payload.len() - 1);
    let resigned = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload.clone(), &raw.key);
    assert_refused(
        raw.submit(resigned.to_proto()).await,
        Code::InvalidArgument,
        "PAYLOAD_MALFORMED",
    );
    let mut not_resigned = raw.sign(&st).to_proto();
    not_resigned.payload = payload;
    assert_refused(
        raw.submit(not_resigned).await,
        Code::Unauthenticated,
        "BAD_SIGNATURE",
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_over_one_mib_is_payload_too_large() {
    let (c, mut raw, before, _) = setup().await;
    let mut st = raw.policy("Oversized");
    policy_body(&mut st).summary = vec![rcpfed_core::statement::LocalizedText {
        language: "en".into(),
        text: "a".repeat(1_200_000),
    }];
    let env = raw.sign(&st);
    assert!(env.payload.len() > 1024 * 1024);
    assert_refused(
        raw.submit(env.to_proto()).await,
        Code::ResourceExhausted,
        "PAYLOAD_TOO_LARGE",
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_limits_are_refused_with_specific_codes() {
    let (c, mut raw, before, _) = setup().await;
    // Between the 1 MiB payload limit and SubmitStatement's 2 MiB message limit: decoded,
    // then refused with the rcpfed reason.
    let payload = vec![0x2a_u8; 1536 * 1024];
    let env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &raw.key);
    assert_refused(
        raw.submit(env.to_proto()).await,
        Code::ResourceExhausted,
        "PAYLOAD_TOO_LARGE",
    );
    assert_unchanged(&c, &before).await;
    // Over the method's message limit (and over the old 16 MiB transport limit): refused on
    // the message's length prefix, before it is read (issue 9, finding 4).
    for size in [5 * 1024 * 1024, 16 * 1024 * 1024 + 100_000] {
        let payload = vec![0x2a_u8; size];
        let env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &raw.key);
        assert_refused(
            raw.submit(env.to_proto()).await,
            Code::ResourceExhausted,
            "MESSAGE_TOO_LARGE",
        );
        assert_unchanged(&c, &before).await;
    }
    // The hub still works for this client afterwards.
    let next = raw.policy("After the big one");
    raw.accept(&next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_payload_type_is_refused() {
    let (c, mut raw, before, _) = setup().await;
    let st = raw.policy("JSON?");
    let env = SignedEnvelope::sign("application/json", st.encode(), &raw.key);
    assert_refused(
        raw.submit(env.to_proto()).await,
        Code::InvalidArgument,
        "UNKNOWN_PAYLOAD_TYPE",
    );
    assert_unchanged(&c, &before).await;
}

/// Statements in flight: seq 3 sent before seq 2 (within the window) waits for it, and both are
/// accepted in seq order. A member that then sends seq 6 with no 4 and 5 delays nobody: another
/// member is served meanwhile, and seq 6 gets `SEQ_GAP` once its wait (5 s) is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_ahead_waits_for_its_predecessor_and_stalls_nobody() {
    use std::time::{Duration, Instant};
    let (c, mut raw, _, _) = setup().await;
    let second = raw.policy("Second");
    let second_env = raw.sign(&second);
    let mut third = raw.policy("Third");
    third.header.seq = 3;
    third.header.prev_digest = Some(second_env.digest());
    let third_env = raw.sign(&third);
    let mut early = raw.client.clone();
    let sent_third = tokio::spawn(async move {
        early
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(third_env.to_proto()),
            })
            .await
    });
    // Seq 3 reaches the hub first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second_answer = raw
        .submit(second_env.to_proto())
        .await
        .unwrap_or_else(|s| panic!("seq 2 refused: {}", describe(&s)));
    let third_answer = sent_third
        .await
        .expect("joined")
        .unwrap_or_else(|s| panic!("seq 3 refused: {}", describe(&s)))
        .into_inner();
    let leaf = |answer: &v1::SubmitStatementResponse| answer.log.as_ref().expect("log").leaf_index;
    assert_eq!(
        leaf(&third_answer),
        leaf(&second_answer) + 1,
        "seq 3 is logged right after seq 2"
    );
    raw.seq = 3;
    raw.head = Some(raw.sign(&third).digest());

    let mut hostile = raw.policy("Skips two");
    hostile.header.seq = 6;
    let hostile_env = raw.sign(&hostile);
    let mut ahead = raw.client.clone();
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let answer = ahead
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(hostile_env.to_proto()),
            })
            .await;
        (answer, started.elapsed())
    });
    let mut midwa = RawNode::connect(&c, "midwa").await;
    let served = midwa.policy("Served meanwhile");
    midwa.accept(&served).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "another member waited {:?}",
        started.elapsed()
    );
    let (answer, waited) = waiting.await.expect("joined");
    let status = assert_refused(answer, Code::FailedPrecondition, "SEQ_GAP");
    assert!(
        status.message().contains("did not arrive") && status.message().contains("must have seq 4"),
        "{}",
        status.message()
    );
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(10),
        "refused after {waited:?}"
    );
    // The operator sees it: seq 6 waited (and seq 3 too, unless seq 2 overtook it on a busy
    // machine), none waits now.
    let metrics = crate::harness::http_get(&c.hub_ops().to_string(), "/metrics").await;
    let value = |series: &str| {
        metrics.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let parked = value("rcpfed_hub_statements_parked_total").unwrap_or(0.0);
    assert!((1.0..=2.0).contains(&parked), "{metrics}");
    assert_eq!(
        value("rcpfed_hub_statements_waiting_for_predecessor"),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_seq_is_seq_gap() {
    let (c, mut raw, before, _) = setup().await;
    let mut st = raw.policy("Skips ahead");
    st.header.seq = 3;
    let status = assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::FailedPrecondition,
        "SEQ_GAP",
    );
    assert!(
        status.message().contains("must have seq 2"),
        "{}",
        status.message()
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_prev_digest_is_prev_digest_mismatch() {
    let (c, mut raw, before, _) = setup().await;
    let mut st = raw.policy("Wrong link");
    st.header.prev_digest = Some(Digest::of(b"not the previous statement"));
    assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::FailedPrecondition,
        "PREV_DIGEST_MISMATCH",
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_seq_with_other_content_is_equivocation_with_evidence() {
    let (c, mut raw, before, accepted) = setup().await;
    // Back to seq 1 with a different document.
    raw.seq = 0;
    raw.head = None;
    let conflicting = raw.sign(&raw.policy("A different first statement"));
    assert_ne!(conflicting.digest(), accepted.digest());
    assert_refused(
        raw.submit(conflicting.to_proto()).await,
        Code::AlreadyExists,
        "EQUIVOCATION",
    );
    let after = c.hub_snapshot().await;
    assert_eq!(after.statements, before.statements, "no statement stored");
    let evidence = c.equivocations().await;
    assert_eq!(evidence.len(), 1, "one piece of evidence");
    let e = &evidence[0];
    assert_eq!((e.node_id.as_str(), e.seq), ("colombo", 1));
    assert_eq!(e.accepted_digest, accepted.digest().0.to_vec());
    assert_eq!(e.conflicting_digest, conflicting.digest().0.to_vec());
    assert_eq!(
        e.accepted_envelope,
        Some(accepted.to_proto()),
        "accepted envelope kept"
    );
    assert_eq!(
        e.conflicting_envelope,
        Some(conflicting.to_proto()),
        "conflicting envelope kept verbatim"
    );
    assert!(e.detected_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_values_are_refused_with_the_field() {
    let (c, mut raw, before, _) = setup().await;
    for value in [f64::NAN, f64::INFINITY] {
        let st = raw.indicators(vec![observation("IND", "2024", value)]);
        let status = assert_refused(
            raw.submit(raw.sign(&st).to_proto()).await,
            Code::InvalidArgument,
            "NON_FINITE_VALUE",
        );
        let fields: Vec<String> = field_violations(&status).into_iter().map(|f| f.0).collect();
        assert_eq!(
            fields,
            vec!["indicator_snapshot.observations[0].obs_value".to_string()],
            "value {value}"
        );
    }
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_area_must_be_a_member_state_for_the_period() {
    let (c, mut raw, before, _) = setup().await;
    let cases = [
        ("XYZ", "INVALID_COUNTRY_CODE"),
        ("FRA", "NOT_A_MEMBER_STATE"),
    ];
    for (area, want) in cases {
        let st = raw.indicators(vec![observation(area, "2024", 100.0)]);
        let status = assert_refused(
            raw.submit(raw.sign(&st).to_proto()).await,
            Code::InvalidArgument,
            want,
        );
        assert_eq!(
            field_violations(&status)[0].0,
            "indicator_snapshot.observations[0].ref_area"
        );
    }
    assert_unchanged(&c, &before).await;

    // Mali left ECOWAS (MIDWA) on 2025-01-29: 2024 is fine, 2025 is not.
    let mut midwa = RawNode::connect(&c, "midwa").await;
    let st = midwa.indicators(vec![observation("MLI", "2025", 100.0)]);
    assert_refused(
        midwa.submit(midwa.sign(&st).to_proto()).await,
        Code::InvalidArgument,
        "NOT_A_MEMBER_STATE",
    );
    assert_unchanged(&c, &before).await;
    let st = midwa.indicators(vec![observation("MLI", "2024", 100.0)]);
    midwa.accept(&st).await;
    // The hub prelude, colombo#1 and now midwa#1.
    let after = c.hub_snapshot().await;
    assert_eq!(after.statements.len(), before.statements.len() + 1);
    assert_eq!(
        after.statements[..before.statements.len()],
        before.statements[..]
    );
    assert_eq!(after.statements.len() as u64, HUB_PRELUDE + 2);
    assert_eq!(
        after.statements[HUB_PRELUDE as usize + 1].0,
        "nodes/midwa/statements/1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_at_in_the_future_is_refused() {
    let (c, mut raw, before, _) = setup().await;
    let mut st = raw.policy("From tomorrow");
    st.header.issued_at = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let status = assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::InvalidArgument,
        "ISSUED_AT_IN_FUTURE",
    );
    assert_eq!(field_violations(&status)[0].0, "header.issued_at");
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_title_is_refused() {
    let (c, mut raw, before, _) = setup().await;
    let st = raw.policy("");
    let status = assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::InvalidArgument,
        "EMPTY_TITLE",
    );
    assert!(
        field_violations(&status)
            .iter()
            .any(|(f, _)| f.starts_with("policy_summary.title")),
        "{}",
        describe(&status)
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_for_another_node_is_node_mismatch() {
    let (c, mut raw, before, _) = setup().await;
    let mut st = raw.policy("Pretending to be Abu Dhabi");
    st.header.node_id = "abu-dhabi".into();
    st.header.document = "regions/abu-dhabi/policies/x".into();
    st.header.seq = 1;
    st.header.prev_digest = None;
    assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::PermissionDenied,
        "NODE_MISMATCH",
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_and_missing_envelope() {
    let (c, mut raw, before, _) = setup().await;
    let mut st = raw.policy("Other federation");
    st.header.federation_id = "other-federation".into();
    assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::PermissionDenied,
        "WRONG_FEDERATION",
    );
    let mut st = raw.policy("Schema two");
    st.header.schema_version = 2;
    assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::InvalidArgument,
        "UNSUPPORTED_SCHEMA_VERSION",
    );
    let missing = raw
        .client
        .submit_statement(v1::SubmitStatementRequest { envelope: None })
        .await;
    assert_refused(missing, Code::InvalidArgument, "ENVELOPE_MALFORMED");
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_the_role_are_role_required() {
    let (c, _raw, before, _) = setup().await;
    let mut as_node = c.hub_client("colombo").await;
    let status = assert_refused(
        as_node
            .list_equivocations(v1::ListEquivocationsRequest::default())
            .await,
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    assert!(status.message().contains("admin"), "{}", status.message());

    // The operator has no publisher role (and no signing key): any envelope is refused first
    // for the role.
    let mut as_operator = c.hub_client("operator").await;
    let raw = RawNode::connect(&c, "colombo").await;
    let envelope = raw.sign(&raw.policy("Operator submits")).to_proto();
    assert_refused(
        as_operator
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(envelope),
            })
            .await,
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refuses_a_non_finite_value_before_signing() {
    let c = Cluster::start(&["colombo"]).await;
    let mut node = c.node_client("colombo", "operator").await;
    let mut obs = observation("IND", "2024", 1.0).to_proto();
    obs.obs_value = Some(f64::NAN);
    let request = v1::PublishDocumentRequest {
        document: "regions/colombo/indicators/remit-inflow".into(),
        body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
            v1::IndicatorSnapshot {
                indicator: "REMIT_INFLOW".into(),
                observations: vec![obs],
                chunks: None,
            },
        )),
        ..Default::default()
    };
    let status = assert_refused(
        node.publish_document(request).await,
        Code::InvalidArgument,
        "NON_FINITE_VALUE",
    );
    assert_eq!(
        field_violations(&status)[0].0,
        "indicator_snapshot.observations[0].obs_value",
        "{}",
        reason(&status)
    );
    // The node itself (no admin role) may read its status but not publish.
    let mut as_node = c.node_client("colombo", "colombo").await;
    assert_refused(
        as_node
            .publish_document(crate::harness::publish_request("colombo", "Not an admin"))
            .await,
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    let s = c.node_status("colombo").await;
    assert_eq!(s.head_seq, 0, "nothing signed");
    assert!(c.outbox("colombo").await.is_empty(), "nothing queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_read_requests_name_the_field() {
    let (c, _raw, before, _) = setup().await;
    let mut hub = c.hub_client("operator").await;
    let status = assert_refused(
        hub.get_statement(v1::GetStatementRequest {
            name: "statements/colombo/1".into(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(field_violations(&status)[0].0, "name");
    assert_refused(
        hub.get_statement(v1::GetStatementRequest {
            name: "nodes/colombo/statements/2".into(),
        })
        .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let status = assert_refused(
        hub.list_statements(v1::ListStatementsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    assert_eq!(field_violations(&status)[0].0, "page_token");
    let status = assert_refused(
        hub.list_statements(v1::ListStatementsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(field_violations(&status)[0].0, "page_size");
    let status = assert_refused(
        hub.list_statements(v1::ListStatementsRequest {
            kind: 99,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(field_violations(&status)[0].0, "kind");
    assert_unchanged(&c, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refuses_a_document_over_the_hubs_payload_limit_before_signing() {
    // Every field is within its own limit (20 000 characters per summary), but 30 languages of
    // two-byte characters make a payload of about 1.2 MB: the hub can never accept it.
    let c = Cluster::start(&["colombo"]).await;
    let mut request = crate::harness::publish_request("colombo", "Too big to travel");
    if let Some(v1::publish_document_request::Body::PolicySummary(p)) = &mut request.body {
        p.summary = (0..30u8)
            .map(|i| v1::LocalizedText {
                language: format!("a{}", char::from(b'a' + i % 26))
                    + if i >= 26 { "a" } else { "" },
                text: "é".repeat(20_000),
            })
            .collect();
    }
    let mut node = c.node_client("colombo", "operator").await;
    let result = node.publish_document(request).await;
    if result.is_ok() {
        // Show what the outbox does with it before failing.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let s = c.node_status("colombo").await;
        panic!(
            "the node signed a statement the hub must refuse (PAYLOAD_TOO_LARGE): head_seq {}, \
             pending {}, rejected {}, last_error {:?}",
            s.head_seq, s.outbox_pending, s.outbox_rejected, s.last_error
        );
    }
    assert_refused(result, Code::ResourceExhausted, "PAYLOAD_TOO_LARGE");
    assert_eq!(c.node_status("colombo").await.head_seq, 0, "nothing signed");
}
