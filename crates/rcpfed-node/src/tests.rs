//! Unit tests of the node's publish path, the checks of hub documents in the feed, and the
//! chunk transfers (outbox and mirror) against a fake hub on a plaintext loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::NodeStorage;
use crate::catalogue::CatalogueInForce;
use crate::mirror::{Failure, check_catalogue_entry, check_coherence_entry, stage_chunks};
use crate::publish::{Draft, PublishError, Published, Publisher};
use rcpfed_core::Digest;
use rcpfed_core::catalogue::{
    Catalogue, SignedCatalogue, embedded_catalogue_toml, sign_catalogue, verify_catalogue,
};
use rcpfed_core::chunks::{OBSERVATIONS_PER_CHUNK, decode_chunk, encode_chunks};
use rcpfed_core::coherence::{CoherenceReport, sign_report};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::feed::FeedEntry;
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_core::receipt::Receipt;
use rcpfed_core::rejection::{Rejection, reasons};
use rcpfed_core::statement::{
    Body, ChunkManifest, IndicatorSnapshot, Observation, ObservationAction, Statement,
};
use rcpfed_grpc::shared::SharedFederation;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::hub_service_server::{HubService, HubServiceServer};
use rcpfed_store::{MirroredStatement, OwnStatement, SqliteNodeStore, catalogue_chain};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

const FED: &str = "test-fed";

fn hub_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn colombo_key() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

fn federation() -> Federation {
    let member = |id: &str, kind: &str, roles: &str, k: &SecretKey, states: &[&str]| {
        let mut text = format!(
            "[[members]]\nid = \"{id}\"\nname = \"{id}\"\nkind = \"{kind}\"\nroles = [{roles}]\n\
             spiffe_id = \"spiffe://{FED}/node/{id}\"\n\
             [[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
            k.key_id(),
            k.verify_key().to_base64()
        );
        for s in states {
            text.push_str(&format!("[[members.states]]\niso3 = \"{s}\"\n"));
        }
        text
    };
    let text = format!(
        "federation_id = \"{FED}\"\nhub_id = \"gfmd\"\n{}{}",
        member("gfmd", "hub", "\"reader\"", &hub_key(), &[]),
        member(
            "colombo",
            "RCP",
            "\"publisher\", \"reader\", \"admin\"",
            &colombo_key(),
            &["LKA", "BGD", "NPL", "IND"]
        ),
    );
    Federation::from_toml(&text).unwrap()
}

/// Catalogue version 1 signed by the hub, and its envelope.
fn catalogue_v1() -> SignedCatalogue {
    let cat = Catalogue::from_toml(embedded_catalogue_toml()).unwrap();
    let env = sign_catalogue(
        &cat,
        FED,
        1,
        time::OffsetDateTime::now_utc(),
        None,
        &hub_key(),
    );
    verify_catalogue(&env, &[hub_key().verify_key().clone()], FED, None).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn NodeStorage>,
    catalogue: CatalogueInForce,
    publisher: Publisher,
}

fn fixture(with_catalogue: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn NodeStorage> =
        Arc::new(SqliteNodeStore::open(&dir.path().join("node.db")).unwrap());
    let catalogue = CatalogueInForce::empty();
    if with_catalogue {
        catalogue.set(catalogue_v1());
    }
    let publisher = Publisher::new(
        SharedFederation::new(federation()),
        catalogue.clone(),
        "colombo".into(),
        colombo_key(),
        Arc::clone(&store),
        Arc::new(tokio::sync::Notify::new()),
    );
    Fixture {
        _dir: dir,
        store,
        catalogue,
        publisher,
    }
}

fn obs(action: ObservationAction, area: &str, year: u32, value: Option<f64>) -> Observation {
    Observation {
        action,
        ref_area: area.into(),
        time_period: year.to_string(),
        dimensions: Vec::new(),
        obs_value: value,
        obs_status: String::new(),
        unit_measure: if value.is_some() {
            "persons".into()
        } else {
            String::new()
        },
        unit_mult: 0,
        conf_status: String::new(),
        footnote: String::new(),
        source: String::new(),
    }
}

fn snapshot_draft(indicator: &str, observations: Vec<Observation>) -> Draft {
    Draft {
        document: "regions/colombo/indicators/stock".into(),
        body: Body::Indicators(IndicatorSnapshot {
            indicator: indicator.into(),
            observations,
            chunks: None,
        }),
        validate_only: false,
        request_id: None,
    }
}

fn rejected(result: Result<Published, PublishError>) -> Rejection {
    match result {
        Err(PublishError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Every ISO 3166-1 alpha-3 code, for many distinct keys.
fn iso_codes() -> Vec<String> {
    let mut out = Vec::new();
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            for c in b'A'..=b'Z' {
                let code = String::from_utf8(vec![a, b, c]).unwrap();
                if rcpfed_core::iso3166::is_alpha3(&code) {
                    out.push(code);
                }
            }
        }
    }
    out
}

/// `n` distinct MIG_STOCK appends (area × year × counterpart area).
fn many_appends(n: usize) -> Vec<Observation> {
    let codes = iso_codes();
    let mut out = Vec::with_capacity(n);
    'outer: for area in ["LKA", "BGD", "NPL", "IND"] {
        for year in 1990..2025 {
            for origin in &codes {
                if out.len() == n {
                    break 'outer;
                }
                let mut o = obs(ObservationAction::Append, area, year, Some(1000.0));
                o.dimensions = vec![("COUNTERPART_AREA".into(), origin.clone())];
                out.push(o);
            }
        }
    }
    assert_eq!(out.len(), n, "not enough distinct keys");
    out
}

/// Colombo's own snapshot statement as the hub's feed gives it back at `feed_index`.
fn as_fed_back(own: OwnStatement, feed_index: u64) -> MirroredStatement {
    MirroredStatement {
        feed_index,
        node_id: "colombo".into(),
        seq: own.seq,
        digest: own.digest,
        kind: "indicator_snapshot".into(),
        document: own.document,
        revision: own.revision,
        envelope: own.envelope,
        receipt: vec![1],
        accepted_at_ms: 1_000 * feed_index as i64,
        mirrored_at_ms: 0,
        decoded: rcpfed_store::DecodedStatement::default(),
    }
}

/// Mirrors the node's own statement `seq` as the hub would feed it back at `feed_index`, and
/// applies the view.
fn mirror_own(store: &Arc<dyn NodeStorage>, seq: u64, feed_index: u64) {
    let own = store
        .list_own(u64::MAX, 1000)
        .unwrap()
        .into_iter()
        .find(|o| o.seq == seq)
        .unwrap();
    store.mirror_insert(&as_fed_back(own, feed_index)).unwrap();
    // As the view applier does: a chunked snapshot is stored before its view is applied.
    while store.applied_feed_size().unwrap() < store.mirror_cursor().unwrap() {
        store.apply_view_step().unwrap();
    }
}

#[tokio::test]
async fn a_snapshot_waits_for_the_catalogue() {
    let f = fixture(false);
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![obs(ObservationAction::Append, "LKA", 2020, Some(5.0))],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::NO_CATALOGUE);
    assert_eq!(
        rcpfed_grpc::status::code_for(r.class),
        tonic::Code::FailedPrecondition
    );
    assert!(r.message.contains("catalogue has not reached this node"));
    assert!(f.store.head().unwrap().is_none());
}

#[tokio::test]
async fn catalogue_errors_name_the_row_and_nothing_is_signed() {
    let f = fixture(true);
    let mut bad_unit = obs(ObservationAction::Append, "BGD", 2020, Some(5.0));
    bad_unit.unit_measure = "tonnes".into();
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![
                    obs(ObservationAction::Append, "LKA", 2020, Some(5.0)),
                    bad_unit,
                ],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::UNIT_MISMATCH);
    assert_eq!(
        rcpfed_grpc::status::code_for(r.class),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        r.violations[0].field,
        "indicator_snapshot.observations[1].unit_measure"
    );
    let unknown = rejected(
        f.publisher
            .publish(snapshot_draft(
                "NOT_AN_INDICATOR",
                vec![obs(ObservationAction::Append, "LKA", 2020, Some(5.0))],
            ))
            .await,
    );
    assert_eq!(unknown.reason, reasons::UNKNOWN_INDICATOR);
    assert!(f.store.head().unwrap().is_none());
}

#[tokio::test]
async fn warnings_come_back_and_validate_only_signs_nothing() {
    let f = fixture(true);
    let mut draft = snapshot_draft(
        "SDG_10_7_3",
        vec![obs(ObservationAction::Append, "NPL", 2021, Some(25_000.0))],
    );
    draft.validate_only = true;
    let p = f.publisher.publish(draft.clone()).await.unwrap();
    assert_eq!((p.seq, p.digest), (0, None));
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with("indicator_snapshot.observations[0]"),
        "{:?}",
        p.warnings
    );
    assert!(f.store.head().unwrap().is_none());
    draft.validate_only = false;
    let signed = f.publisher.publish(draft).await.unwrap();
    assert_eq!(signed.seq, 1);
    assert_eq!(signed.warnings, p.warnings);
}

#[tokio::test]
async fn aggregates_of_the_catalogue_are_accepted() {
    let f = fixture(true);
    let p = f
        .publisher
        .publish(snapshot_draft(
            "MIG_STOCK",
            vec![obs(ObservationAction::Append, "WLD", 2024, Some(304.0))],
        ))
        .await
        .unwrap();
    assert_eq!(p.seq, 1);
    // A state that is not a member of this RCP is still refused.
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![obs(ObservationAction::Append, "FRA", 2024, Some(3.0))],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::NOT_A_MEMBER_STATE);
}

#[tokio::test]
async fn a_client_manifest_is_refused() {
    let f = fixture(true);
    let (manifest, _) = encode_chunks(
        &[obs(ObservationAction::Append, "LKA", 2020, Some(5.0))],
        10,
    );
    let draft = Draft {
        body: Body::Indicators(IndicatorSnapshot {
            indicator: "MIG_STOCK".into(),
            observations: Vec::new(),
            chunks: Some(manifest),
        }),
        ..snapshot_draft("MIG_STOCK", Vec::new())
    };
    let r = rejected(f.publisher.publish(draft).await);
    assert_eq!(r.reason, reasons::CHUNKS_REQUIRED);
    assert_eq!(r.violations[0].field, "indicator_snapshot.chunks");
}

#[tokio::test]
async fn a_large_snapshot_is_signed_as_a_manifest_with_staged_chunks() {
    let f = fixture(true);
    let n = 2 * OBSERVATIONS_PER_CHUNK + 1;
    let observations = many_appends(n);
    let mut draft = snapshot_draft("MIG_STOCK", observations.clone());
    draft.request_id = Some("big-1".into());
    let p = f.publisher.publish(draft.clone()).await.unwrap();
    assert_eq!(p.observation_count, n as u64);
    assert_eq!(p.chunk_count, 3);
    let own = f.store.pending(10).unwrap().remove(0);
    let env = SignedEnvelope::decode(&own.envelope).unwrap();
    assert!(env.payload.len() < 10_000, "only the manifest is signed");
    let st = Statement::decode(&env.payload).unwrap();
    let Body::Indicators(s) = st.body else {
        panic!("not a snapshot")
    };
    assert!(s.observations.is_empty());
    let manifest = s.chunks.unwrap();
    let mut decoded = Vec::new();
    for (i, c) in manifest.chunks.iter().enumerate() {
        let bytes = f.store.chunk(&c.sha256).unwrap().expect("chunk staged");
        decoded.extend(decode_chunk(&manifest, i, &bytes).unwrap());
    }
    // Signed with the catalogue's defaults filled in (SEX and AGE are `_T`).
    let defaults = catalogue_v1()
        .catalogue
        .indicator("MIG_STOCK")
        .unwrap()
        .key_defaults();
    let signed: Vec<Observation> = observations
        .iter()
        .cloned()
        .map(|mut o| {
            rcpfed_core::obskey::fill_defaults(&defaults, &mut o.dimensions);
            o
        })
        .collect();
    assert_eq!(decoded, signed);
    // A retry with the same request id answers with the first result and signs nothing.
    let again = f.publisher.publish(draft).await.unwrap();
    assert_eq!((again.seq, again.chunk_count), (p.seq, 3));
    assert_eq!(f.store.head().unwrap().map(|h| h.0), Some(1));
    // Once mirrored, its observations are in the node's view.
    mirror_own(&f.store, 1, 1);
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![observations[n - 1].clone()],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::OBSERVATION_EXISTS);
}

#[tokio::test]
async fn actions_are_checked_against_the_mirror_once_it_has_caught_up() {
    let f = fixture(true);
    // Nothing published yet: a replace has nothing to revise.
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![obs(ObservationAction::Replace, "LKA", 2020, Some(6.0))],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::OBSERVATION_NOT_FOUND);
    assert_eq!(r.violations[0].field, "indicator_snapshot.observations[0]");
    f.publisher
        .publish(snapshot_draft(
            "MIG_STOCK",
            vec![obs(ObservationAction::Append, "LKA", 2020, Some(5.0))],
        ))
        .await
        .unwrap();
    // Statement 1 has not come back through the feed: the check is skipped, with a note.
    let p = f
        .publisher
        .publish(snapshot_draft(
            "MIG_STOCK",
            vec![obs(ObservationAction::Replace, "LKA", 2020, Some(6.0))],
        ))
        .await
        .unwrap();
    assert_eq!(p.seq, 2);
    assert!(
        p.warnings.iter().any(|w| w.contains("not checked")),
        "{:?}",
        p.warnings
    );
    mirror_own(&f.store, 1, 1);
    mirror_own(&f.store, 2, 2);
    // Deleting twice: the second delete finds no value in force.
    f.publisher
        .publish(snapshot_draft(
            "MIG_STOCK",
            vec![obs(ObservationAction::Delete, "LKA", 2020, None)],
        ))
        .await
        .unwrap();
    mirror_own(&f.store, 3, 3);
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![obs(ObservationAction::Delete, "LKA", 2020, None)],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::OBSERVATION_NOT_FOUND);
}

// ---- hub documents in the feed ----

/// A feed entry for `envelope`, with the hub's receipt naming (`node_id`, `seq`).
fn feed_entry(envelope: &SignedEnvelope, feed_index: u64, node_id: &str, seq: u64) -> FeedEntry {
    let receipt = Receipt {
        federation_id: FED.into(),
        hub_id: "gfmd".into(),
        node_id: node_id.into(),
        seq,
        statement_digest: envelope.digest(),
        feed_index,
        accepted_at: time::OffsetDateTime::now_utc(),
    }
    .sign(&hub_key());
    FeedEntry {
        feed_index,
        envelope: envelope.clone(),
        receipt,
        log: None,
    }
}

/// The node statements of a run are verified in parallel and come back in feed order, each
/// with its own result: a statement whose signature was altered fails at its place (the
/// mirror stores what comes before it and stops there), a hub document is left to be
/// verified in turn, and so is a statement alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_statements_are_verified_in_parallel_and_come_back_in_order() {
    let f = fixture(true);
    for year in 1990..2030 {
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![obs(ObservationAction::Append, "LKA", year, Some(1.0))],
            ))
            .await
            .unwrap();
    }
    let own = f.store.list_own(u64::MAX, 1000).unwrap();
    assert_eq!(own.len(), 40);
    let entry = |index: u64, o: &OwnStatement| -> crate::mirror::RunEntry {
        let envelope = SignedEnvelope::decode(&o.envelope).unwrap();
        (index, Ok(feed_entry(&envelope, index, "colombo", o.seq)))
    };
    let mut run: Vec<_> = (1..).zip(&own).map(|(i, o)| entry(i, o)).collect();
    if let (_, Ok(e)) = &mut run[17] {
        e.envelope.signatures[0].sig[0] ^= 1;
    }
    let catalogue = catalogue_envelope(2, None, &hub_key());
    run.push((41, Ok(feed_entry(&catalogue, 41, "gfmd", 2))));

    let out = crate::mirror::verify_run(Arc::new(federation()), run).await;
    assert_eq!(out.len(), 41);
    for (i, ((index, entry), verified)) in out.iter().enumerate() {
        assert_eq!(*index, i as u64 + 1);
        assert_eq!(entry.as_ref().unwrap().feed_index, *index);
        match (i, verified) {
            (17, Some(Err(problem))) => {
                assert!(problem.starts_with("statement signature"), "{problem}")
            }
            (40, None) => {}
            (i, Some(Ok(m))) if i != 17 && i != 40 => {
                assert_eq!(m.feed_index, *index);
                assert_eq!(m.seq, own[i].seq);
                assert_eq!(m.digest, own[i].digest);
            }
            (i, other) => panic!(
                "entry {i}: unexpected {:?}",
                other.as_ref().map(|r| r.as_ref().map(|m| m.feed_index))
            ),
        }
    }

    let alone = crate::mirror::verify_run(Arc::new(federation()), vec![entry(1, &own[0])]).await;
    assert!(
        alone[0].1.is_none(),
        "a statement alone is verified in turn"
    );
}

fn catalogue_envelope(version: u64, previous: Option<Digest>, key: &SecretKey) -> SignedEnvelope {
    let cat = Catalogue::from_toml(embedded_catalogue_toml()).unwrap();
    sign_catalogue(
        &cat,
        FED,
        version,
        time::OffsetDateTime::now_utc(),
        previous,
        key,
    )
}

#[test]
fn catalogue_entries_follow_the_chain_in_force() {
    let fed = federation();
    let v1 = catalogue_envelope(1, None, &hub_key());
    let entry = feed_entry(&v1, 3, "gfmd/catalogue", 1);
    let (m, c) = check_catalogue_entry(&fed, &entry, None, 0).unwrap();
    assert_eq!(
        (m.node_id.as_str(), m.seq, m.kind.as_str()),
        ("gfmd/catalogue", 1, "catalogue")
    );
    assert_eq!(c.version, 1);
    // Replayed once in force: refused.
    let err = check_catalogue_entry(&fed, &entry, Some((1, c.digest)), 0).unwrap_err();
    assert!(err.contains("not newer"), "{err}");
    // Version 2 must name version 1's digest.
    let forked = catalogue_envelope(2, Some(Digest::of(b"other")), &hub_key());
    let err = check_catalogue_entry(
        &fed,
        &feed_entry(&forked, 4, "gfmd/catalogue", 2),
        Some((1, c.digest)),
        0,
    )
    .unwrap_err();
    assert!(err.contains("previous_digest"), "{err}");
    let v2 = catalogue_envelope(2, Some(c.digest), &hub_key());
    assert!(
        check_catalogue_entry(
            &fed,
            &feed_entry(&v2, 4, "gfmd/catalogue", 2),
            Some((1, c.digest)),
            0
        )
        .is_ok()
    );
    // Signed by a node, not the hub.
    let forged = catalogue_envelope(1, None, &colombo_key());
    assert!(
        check_catalogue_entry(&fed, &feed_entry(&forged, 3, "gfmd/catalogue", 1), None, 0).is_err()
    );
    // A receipt that names another chain.
    let err = check_catalogue_entry(&fed, &feed_entry(&v1, 3, "gfmd", 1), None, 0).unwrap_err();
    assert!(err.contains("receipt"), "{err}");
}

fn report_envelope(number: u64, previous: Option<Digest>, key: &SecretKey) -> SignedEnvelope {
    let report = CoherenceReport {
        federation_id: FED.into(),
        number,
        previous_digest: previous,
        ..Default::default()
    };
    sign_report(&report, key)
}

#[test]
fn coherence_reports_are_hub_signed_and_chained() {
    let fed = federation();
    let r1 = report_envelope(1, None, &hub_key());
    let m = check_coherence_entry(&fed, &feed_entry(&r1, 5, "gfmd/coherence", 1), None, 0).unwrap();
    assert_eq!(
        (m.node_id.as_str(), m.kind.as_str()),
        ("gfmd/coherence", "coherence_report")
    );
    let r2 = report_envelope(2, Some(r1.digest()), &hub_key());
    let entry2 = feed_entry(&r2, 6, "gfmd/coherence", 2);
    assert!(check_coherence_entry(&fed, &entry2, Some((1, r1.digest())), 0).is_ok());
    assert!(check_coherence_entry(&fed, &entry2, None, 0).is_err());
    assert!(check_coherence_entry(&fed, &entry2, Some((1, Digest::of(b"x"))), 0).is_err());
    let forged = report_envelope(1, None, &colombo_key());
    let err = check_coherence_entry(&fed, &feed_entry(&forged, 5, "gfmd/coherence", 1), None, 0)
        .unwrap_err();
    assert!(err.contains("not signed by the hub"), "{err}");
}

#[test]
fn the_mirrored_catalogue_is_loaded_and_checked_at_start_up() {
    let f = fixture(false);
    let fed = federation();
    assert!(CatalogueInForce::load(&*f.store, &fed).unwrap().is_none());
    let v1 = catalogue_envelope(1, None, &hub_key());
    let (m1, c1) =
        check_catalogue_entry(&fed, &feed_entry(&v1, 1, "gfmd/catalogue", 1), None, 0).unwrap();
    f.store.mirror_insert(&m1).unwrap();
    let v2 = catalogue_envelope(2, Some(c1.digest), &hub_key());
    let (m2, _) = check_catalogue_entry(
        &fed,
        &feed_entry(&v2, 2, "gfmd/catalogue", 2),
        Some((1, c1.digest)),
        0,
    )
    .unwrap();
    f.store.mirror_insert(&m2).unwrap();
    let loaded = CatalogueInForce::load(&*f.store, &fed).unwrap().unwrap();
    assert_eq!(loaded.version, 2);
    assert_eq!(
        f.store
            .hub_document(&catalogue_chain("gfmd"), None)
            .unwrap()
            .map(|d| d.seq),
        Some(2)
    );
    assert!(f.catalogue.get().is_none());
}

// ---- chunk transfers against a fake hub ----

/// A hub that serves chunks (optionally cut short per call, or tampered) and records what
/// SubmitSnapshot receives; every other RPC is unimplemented.
#[derive(Clone, Default)]
struct FakeHub {
    chunks: Arc<Vec<Vec<u8>>>,
    per_call: Option<usize>,
    requests: Arc<Mutex<Vec<u32>>>,
    submitted: Arc<Mutex<Vec<v1::SubmitSnapshotRequest>>>,
}

type Unary<T> = Result<Response<T>, Status>;

fn nope<T>() -> Unary<T> {
    Err(Status::unimplemented("fake hub"))
}

#[tonic::async_trait]
impl HubService for FakeHub {
    async fn submit_statement(
        &self,
        _: Request<v1::SubmitStatementRequest>,
    ) -> Unary<v1::SubmitStatementResponse> {
        nope()
    }
    async fn get_statement(
        &self,
        _: Request<v1::GetStatementRequest>,
    ) -> Unary<v1::GetStatementResponse> {
        nope()
    }
    async fn list_statements(
        &self,
        _: Request<v1::ListStatementsRequest>,
    ) -> Unary<v1::ListStatementsResponse> {
        nope()
    }
    type SubscribeFeedStream = tokio_stream::Empty<Result<v1::SubscribeFeedResponse, Status>>;
    async fn subscribe_feed(
        &self,
        _: Request<v1::SubscribeFeedRequest>,
    ) -> Unary<Self::SubscribeFeedStream> {
        nope()
    }
    async fn list_equivocations(
        &self,
        _: Request<v1::ListEquivocationsRequest>,
    ) -> Unary<v1::ListEquivocationsResponse> {
        nope()
    }
    async fn list_members(
        &self,
        _: Request<v1::ListMembersRequest>,
    ) -> Unary<v1::ListMembersResponse> {
        nope()
    }
    async fn get_checkpoint(
        &self,
        _: Request<v1::GetCheckpointRequest>,
    ) -> Unary<v1::GetCheckpointResponse> {
        nope()
    }
    async fn get_inclusion_proof(
        &self,
        _: Request<v1::GetInclusionProofRequest>,
    ) -> Unary<v1::GetInclusionProofResponse> {
        nope()
    }
    async fn get_consistency_proof(
        &self,
        _: Request<v1::GetConsistencyProofRequest>,
    ) -> Unary<v1::GetConsistencyProofResponse> {
        nope()
    }
    async fn list_log_entries(
        &self,
        _: Request<v1::ListLogEntriesRequest>,
    ) -> Unary<v1::ListLogEntriesResponse> {
        nope()
    }
    async fn submit_cosignature(
        &self,
        _: Request<v1::SubmitCosignatureRequest>,
    ) -> Unary<v1::SubmitCosignatureResponse> {
        nope()
    }
    async fn publish_registry(
        &self,
        _: Request<v1::PublishRegistryRequest>,
    ) -> Unary<v1::PublishRegistryResponse> {
        nope()
    }
    async fn get_registry(
        &self,
        _: Request<v1::GetRegistryRequest>,
    ) -> Unary<v1::GetRegistryResponse> {
        nope()
    }
    async fn list_registry_versions(
        &self,
        _: Request<v1::ListRegistryVersionsRequest>,
    ) -> Unary<v1::ListRegistryVersionsResponse> {
        nope()
    }
    async fn list_flagged_statements(
        &self,
        _: Request<v1::ListFlaggedStatementsRequest>,
    ) -> Unary<v1::ListFlaggedStatementsResponse> {
        nope()
    }
    async fn submit_snapshot(
        &self,
        request: Request<tonic::Streaming<v1::SubmitSnapshotRequest>>,
    ) -> Unary<v1::SubmitSnapshotResponse> {
        let mut stream = request.into_inner();
        while let Some(m) = stream.message().await? {
            self.submitted.lock().unwrap().push(m);
        }
        Ok(Response::new(v1::SubmitSnapshotResponse {
            receipt: None,
            duplicate: true,
            log: None,
        }))
    }
    type GetSnapshotChunksStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<v1::GetSnapshotChunksResponse, Status>>>;
    async fn get_snapshot_chunks(
        &self,
        request: Request<v1::GetSnapshotChunksRequest>,
    ) -> Unary<Self::GetSnapshotChunksStream> {
        let first = request.into_inner().first_chunk;
        self.requests.lock().unwrap().push(first);
        let items: Vec<_> = self
            .chunks
            .iter()
            .enumerate()
            .skip(first as usize)
            .take(self.per_call.unwrap_or(usize::MAX))
            .map(|(i, c)| {
                Ok(v1::GetSnapshotChunksResponse {
                    index: i as u32,
                    chunk: c.clone(),
                })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(items)))
    }
}

async fn serve(hub: FakeHub) -> HubServiceClient<rcpfed_grpc::failover::FailoverChannel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HubServiceServer::new(hub))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HubServiceClient::new(rcpfed_grpc::failover::FailoverChannel::single(
        &addr.to_string(),
        channel,
    ))
}

/// A fake hub serving `chunks` (every call from the chunk asked for to the last).
async fn serve_chunks(
    chunks: Vec<Vec<u8>>,
) -> HubServiceClient<rcpfed_grpc::failover::FailoverChannel> {
    serve(FakeHub {
        chunks: Arc::new(chunks),
        ..FakeHub::default()
    })
    .await
}

/// `chunks` with the last byte of chunk 1 flipped.
fn with_chunk_1_tampered(mut chunks: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let last = chunks[1].len() - 1;
    chunks[1][last] ^= 1;
    chunks
}

fn chunked(n: usize, per_chunk: usize) -> (ChunkManifest, Vec<Vec<u8>>) {
    encode_chunks(&many_appends(n), per_chunk)
}

/// The oldest pending own statement, a large snapshot, and its signed chunk manifest.
fn first_pending_manifest(store: &Arc<dyn NodeStorage>) -> (OwnStatement, ChunkManifest) {
    let own = store.pending(1).unwrap().remove(0);
    let env = SignedEnvelope::decode(&own.envelope).unwrap();
    let Body::Indicators(snapshot) = Statement::decode(&env.payload).unwrap().body else {
        panic!("not a snapshot")
    };
    let manifest = snapshot.chunks.unwrap();
    (own, manifest)
}

#[tokio::test]
async fn the_mirror_fetches_missing_chunks_and_resumes() {
    let f = fixture(false);
    let (manifest, bytes) = chunked(50, 10);
    // Chunk 0 is already here (for instance from an earlier, interrupted fetch).
    f.store
        .stage_chunks(&[(manifest.chunks[0].sha256, bytes[0].clone())])
        .unwrap();
    let hub = FakeHub {
        chunks: Arc::new(bytes),
        per_call: Some(2),
        ..FakeHub::default()
    };
    let mut client = serve(hub.clone()).await;
    let digest = Digest::of(b"snapshot");
    stage_chunks(
        &mut client,
        &f.store,
        &digest,
        &manifest,
        std::time::Duration::from_secs(30),
        &CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|_| panic!("staging failed"));
    for c in &manifest.chunks {
        assert!(f.store.chunk(&c.sha256).unwrap().is_some());
    }
    assert_eq!(*hub.requests.lock().unwrap(), vec![1, 3]);
}

#[tokio::test]
async fn a_chunk_that_does_not_match_the_manifest_is_not_staged() {
    let f = fixture(false);
    let (manifest, bytes) = chunked(30, 10);
    let mut client = serve_chunks(with_chunk_1_tampered(bytes)).await;
    let result = stage_chunks(
        &mut client,
        &f.store,
        &Digest::of(b"snapshot"),
        &manifest,
        std::time::Duration::from_secs(30),
        &CancellationToken::new(),
    )
    .await;
    match result {
        Err(Failure::Verify(problem)) => assert!(problem.contains("chunk 1"), "{problem}"),
        _ => panic!("a tampered chunk must fail verification"),
    }
    assert!(f.store.chunk(&manifest.chunks[0].sha256).unwrap().is_some());
    assert!(f.store.chunk(&manifest.chunks[1].sha256).unwrap().is_none());
}

/// A node's mirror stores another node's large snapshot without its chunks; the view applier
/// fetches them before it applies the snapshot, refuses a chunk that does not match the
/// manifest (the view stays before the snapshot, nothing of it visible) and applies it once
/// the hub serves the right chunks.
#[tokio::test]
async fn the_view_applier_fetches_a_mirrored_snapshots_chunks_and_refuses_a_wrong_one() {
    let n = OBSERVATIONS_PER_CHUNK + 5;
    // Signed (with its chunks) by colombo's publisher in a store of its own.
    let publisher = fixture(true);
    publisher
        .publisher
        .publish(snapshot_draft("MIG_STOCK", many_appends(n)))
        .await
        .unwrap();
    let (own, manifest) = first_pending_manifest(&publisher.store);
    let bytes: Vec<Vec<u8>> = manifest
        .chunks
        .iter()
        .map(|c| publisher.store.chunk(&c.sha256).unwrap().unwrap())
        .collect();
    assert_eq!(bytes.len(), 2);

    // Mirrored by another node, which holds none of its chunks.
    let f = fixture(false);
    f.store.mirror_insert(&as_fed_back(own, 1)).unwrap();
    assert_eq!(
        f.store.mirror_cursor().unwrap(),
        1,
        "stored without its chunks"
    );
    assert_eq!(f.store.applied_feed_size().unwrap(), 0);
    let applier = crate::view::ViewApplier {
        store: Arc::clone(&f.store),
        state: Arc::new(crate::NodeState::default()),
        wake: Arc::new(tokio::sync::Notify::new()),
        call_timeout: std::time::Duration::from_secs(30),
    };
    let visible = || {
        f.store
            .query_observations(
                &rcpfed_store::ObservationFilter {
                    indicator: "MIG_STOCK".into(),
                    ..Default::default()
                },
                None,
                10,
            )
            .unwrap()
            .len()
    };

    let mut hub = serve_chunks(with_chunk_1_tampered(bytes.clone())).await;
    match applier.catch_up(&mut hub, &CancellationToken::new()).await {
        Err(Failure::Verify(problem)) => assert!(problem.contains("chunk 1"), "{problem}"),
        _ => panic!("a tampered chunk must fail verification"),
    }
    assert_eq!(f.store.applied_feed_size().unwrap(), 0);
    assert_eq!(visible(), 0);

    let mut hub = serve_chunks(bytes).await;
    if applier
        .catch_up(&mut hub, &CancellationToken::new())
        .await
        .is_err()
    {
        panic!("the right chunks must apply");
    }
    assert_eq!(f.store.applied_feed_size().unwrap(), 1);
    assert_eq!(visible(), 10);
    let all = f
        .store
        .coverage()
        .unwrap()
        .iter()
        .map(|c| c.observation_count)
        .sum::<u64>();
    assert_eq!(all, n as u64);
}

#[tokio::test]
async fn the_outbox_sends_the_envelope_then_every_chunk_in_order() {
    let f = fixture(true);
    f.publisher
        .publish(snapshot_draft(
            "MIG_STOCK",
            many_appends(OBSERVATIONS_PER_CHUNK + 5),
        ))
        .await
        .unwrap();
    let (own, manifest) = first_pending_manifest(&f.store);
    let env = SignedEnvelope::decode(&own.envelope).unwrap();
    let hub = FakeHub::default();
    let mut client = serve(hub.clone()).await;
    let answer = crate::outbox::submit_snapshot(
        &mut client,
        &f.store,
        own.seq,
        env.clone(),
        manifest.clone(),
    )
    .await
    .unwrap_or_else(|_| panic!("submit failed"));
    assert!(answer.duplicate);
    use v1::submit_snapshot_request::Part;
    let got = hub.submitted.lock().unwrap().clone();
    assert_eq!(got.len(), 1 + manifest.chunks.len());
    assert!(matches!(&got[0].part, Some(Part::Envelope(e)) if *e == env.to_proto()));
    for (i, c) in manifest.chunks.iter().enumerate() {
        let Some(Part::Chunk(bytes)) = &got[i + 1].part else {
            panic!("message {} is not a chunk", i + 1)
        };
        assert_eq!(Digest::of(bytes), c.sha256);
    }
}

fn with_dims(mut o: Observation, dims: &[(&str, &str)]) -> Observation {
    o.dimensions = dims
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    o
}

/// The observations of own statement `seq` as signed (inline).
fn signed_observations(store: &Arc<dyn NodeStorage>, seq: u64) -> Vec<Observation> {
    let own = store
        .list_own(u64::MAX, 1000)
        .unwrap()
        .into_iter()
        .find(|o| o.seq == seq)
        .unwrap();
    let st = Statement::decode(&SignedEnvelope::decode(&own.envelope).unwrap().payload).unwrap();
    match st.body {
        Body::Indicators(s) => s.observations,
        Body::Policy(_) => panic!("not a snapshot"),
    }
}

#[tokio::test]
async fn a_blank_optional_dimension_is_signed_as_its_default_and_is_one_key() {
    let f = fixture(true);
    let total = [("SEX", "_T"), ("AGE", "_T")];
    let stock = |a, year, value| obs(a, "LKA", year, value);
    // The two lines in one snapshot: one key, so the second is a duplicate.
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![
                    with_dims(stock(ObservationAction::Append, 2020, Some(40.5)), &total),
                    stock(ObservationAction::Append, 2020, Some(41.0)),
                ],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::DUPLICATE_KEY);
    assert_eq!(r.violations.len(), 1);
    assert_eq!(r.violations[0].field, "indicator_snapshot.observations[1]");
    assert!(f.store.head().unwrap().is_none(), "nothing signed");

    // Alone, the blank row is signed with its defaults named, after the dimensions given.
    let p = f
        .publisher
        .publish(snapshot_draft(
            "MIG_STOCK",
            vec![
                stock(ObservationAction::Append, 2020, Some(41.0)),
                with_dims(
                    stock(ObservationAction::Append, 2021, Some(1.0)),
                    &[("SEX", "F")],
                ),
            ],
        ))
        .await
        .unwrap();
    let signed = signed_observations(&f.store, p.seq);
    let dims = |o: &Observation| -> Vec<(String, String)> { o.dimensions.clone() };
    assert_eq!(
        dims(&signed[0]),
        [
            ("AGE".to_string(), "_T".to_string()),
            ("SEX".into(), "_T".into())
        ]
    );
    assert_eq!(
        dims(&signed[1]),
        [
            ("SEX".to_string(), "F".to_string()),
            ("AGE".into(), "_T".into())
        ]
    );
    mirror_own(&f.store, 1, 1);
    // Across snapshots: appending the explicit total again is refused; revising it in
    // either form is a revision of the same key.
    let r = rejected(
        f.publisher
            .publish(snapshot_draft(
                "MIG_STOCK",
                vec![with_dims(
                    stock(ObservationAction::Append, 2020, Some(40.5)),
                    &total,
                )],
            ))
            .await,
    );
    assert_eq!(r.reason, reasons::OBSERVATION_EXISTS);
    assert!(
        r.violations[0]
            .description
            .contains("MIG_STOCK LKA 2020 (AGE=_T, SEX=_T)"),
        "{}",
        r.violations[0].description
    );
    let p = f
        .publisher
        .publish(snapshot_draft(
            "MIG_STOCK",
            vec![with_dims(
                stock(ObservationAction::Replace, 2020, Some(40.5)),
                &[("SEX", "_T")],
            )],
        ))
        .await
        .unwrap();
    assert_eq!(p.seq, 2);
}

#[tokio::test]
async fn every_kind_of_problem_is_refused_in_one_pass() {
    let f = fixture(true);
    let mut usd = obs(ObservationAction::Append, "LKA", 2021, Some(1.0));
    usd.unit_measure = "current USD".into();
    let draft = snapshot_draft(
        "MIG_STOCK",
        vec![
            obs(ObservationAction::Append, "LKA", 2020, Some(40.5)),
            with_dims(
                obs(ObservationAction::Append, "LKA", 2020, Some(41.0)),
                &[("SEX", "_T"), ("AGE", "_T")],
            ),
            obs(ObservationAction::Append, "FRA", 2020, Some(1.0)),
            usd,
            with_dims(
                obs(ObservationAction::Append, "LKA", 2022, Some(1.0)),
                &[("SEX", "X")],
            ),
            obs(ObservationAction::Replace, "LKA", 2019, Some(1.0)),
        ],
    );
    for validate_only in [true, false] {
        let draft = Draft {
            validate_only,
            ..draft.clone()
        };
        let r = rejected(f.publisher.publish(draft).await);
        assert_eq!(r.reason, reasons::VALIDATION_FAILED);
        let fields: Vec<(&str, &str)> = r
            .violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason))
            .collect();
        assert_eq!(
            fields,
            [
                ("indicator_snapshot.observations[1]", reasons::DUPLICATE_KEY),
                (
                    "indicator_snapshot.observations[2].ref_area",
                    reasons::NOT_A_MEMBER_STATE
                ),
                (
                    "indicator_snapshot.observations[3].unit_measure",
                    reasons::UNIT_MISMATCH
                ),
                (
                    "indicator_snapshot.observations[4].dimensions[0].value",
                    reasons::CODE_NOT_IN_CODELIST
                ),
                (
                    "indicator_snapshot.observations[5]",
                    reasons::OBSERVATION_NOT_FOUND
                ),
            ]
        );
        assert!(
            r.message.ends_with("(and 4 more problems)"),
            "{}",
            r.message
        );
    }
    assert!(f.store.head().unwrap().is_none(), "nothing signed");
}

// ---- PublishSnapshot: checked and cut as the stream arrives ----

/// Publishes `draft`'s observations as `PublishSnapshot` does: batches of `batch` passed to the
/// stream checker as they come, then the streamed path of the publisher.
async fn publish_streaming(
    f: &Fixture,
    draft: Draft,
    batch: usize,
) -> Result<Published, PublishError> {
    use crate::publish::stream::{BATCHES_IN_FLIGHT, StreamMessage, check_and_stage};
    let Body::Indicators(snapshot) = draft.body else {
        panic!("not a snapshot")
    };
    let cx = f.publisher.stream_context(snapshot.indicator.clone())?;
    let (batches, received) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
    let checker = tokio::task::spawn_blocking(move || check_and_stage(cx, received));
    for part in snapshot.observations.chunks(batch) {
        if batches
            .send(StreamMessage::Batch(part.to_vec()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = batches.send(StreamMessage::End).await;
    let streamed = checker.await.unwrap()?.expect("the stream ended normally");
    f.publisher
        .publish_streamed(crate::publish::StreamedDraft {
            document: draft.document,
            validate_only: draft.validate_only,
            request_id: draft.request_id,
            snapshot: streamed,
        })
        .await
}

/// Scratch files of snapshot streams left in the node's data directory.
fn staging_files(f: &Fixture) -> usize {
    let dir = rcpfed_store::snapshot_staging::publish_staging_dir(&f._dir.path().join("node.db"));
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The manifest of own statement `seq`.
fn own_manifest(store: &Arc<dyn NodeStorage>, seq: u64) -> ChunkManifest {
    let own = store
        .list_own(u64::MAX, 1000)
        .unwrap()
        .into_iter()
        .find(|o| o.seq == seq)
        .unwrap();
    let st = Statement::decode(&SignedEnvelope::decode(&own.envelope).unwrap().payload).unwrap();
    match st.body {
        Body::Indicators(s) => s.chunks.expect("a chunk manifest"),
        Body::Policy(_) => panic!("not a snapshot"),
    }
}

#[tokio::test]
async fn a_streamed_snapshot_with_errors_in_several_chunks_is_refused_as_a_whole_one() {
    let n = 2 * OBSERVATIONS_PER_CHUNK + 500;
    let mut observations = many_appends(n);
    observations[3].ref_area = "XKX".into();
    observations[12_000].obs_status = "Z".into();
    observations[15_000].time_period = "2020-Q1".into();
    observations[20_100] = observations[5].clone();
    // More problems than a refusal lists: the count says all of them.
    for o in observations.iter_mut().skip(20_200).take(150) {
        o.unit_measure = "tonnes".into();
    }
    let whole = rejected(
        fixture(true)
            .publisher
            .publish(snapshot_draft("MIG_STOCK", observations.clone()))
            .await,
    );
    let f = fixture(true);
    let streamed =
        rejected(publish_streaming(&f, snapshot_draft("MIG_STOCK", observations), 5000).await);
    assert_eq!(streamed, whole, "the same refusal, word for word");
    assert_eq!(streamed.violations.len(), 100);
    assert!(
        streamed.message.contains("(and 153 more problems)"),
        "{}",
        streamed.message
    );
    let fields: Vec<&str> = streamed.violations[..4]
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "indicator_snapshot.observations[3].ref_area",
            "indicator_snapshot.observations[12000].obs_status",
            "indicator_snapshot.observations[15000].time_period",
            "indicator_snapshot.observations[20100]",
        ]
    );
    assert_eq!(f.store.head().unwrap(), None, "nothing signed");
    assert_eq!(
        staging_files(&f),
        0,
        "a refused stream leaves no staged chunk"
    );
}

#[tokio::test]
async fn a_streamed_snapshot_is_signed_with_the_chunks_of_a_whole_one() {
    let n = 2 * OBSERVATIONS_PER_CHUNK + 1;
    let observations = many_appends(n);
    let whole = fixture(true);
    whole
        .publisher
        .publish(snapshot_draft("MIG_STOCK", observations.clone()))
        .await
        .unwrap();
    let f = fixture(true);
    let p = publish_streaming(&f, snapshot_draft("MIG_STOCK", observations), 4999)
        .await
        .unwrap();
    assert_eq!(
        (p.seq, p.observation_count, p.chunk_count),
        (1, n as u64, 3)
    );
    let manifest = own_manifest(&f.store, 1);
    assert_eq!(manifest, own_manifest(&whole.store, 1));
    for c in &manifest.chunks {
        assert!(f.store.chunk(&c.sha256).unwrap().is_some(), "chunk stored");
    }
    assert_eq!(staging_files(&f), 0, "the staging went with the stream");
    // Once mirrored, the streamed observations are judged against the view.
    mirror_own(&f.store, 1, 1);
    let again = many_appends(OBSERVATIONS_PER_CHUNK + 1);
    let r = rejected(publish_streaming(&f, snapshot_draft("MIG_STOCK", again), 5000).await);
    assert_eq!(r.reason, reasons::OBSERVATION_EXISTS);
    assert!(r.message.contains("(and at least"), "{}", r.message);
    assert_eq!(staging_files(&f), 0);
}

#[tokio::test]
async fn long_rows_halve_every_chunk_as_when_the_snapshot_is_cut_whole() {
    // About 2 KB a row: 10 000 rows would be 20 MB, so chunks of 1 250 rows.
    let n = OBSERVATIONS_PER_CHUNK + 1;
    let mut observations = many_appends(n);
    for (i, o) in observations.iter_mut().enumerate() {
        o.footnote = format!("{i:>1000}");
        o.source = "s".repeat(1000);
    }
    let whole = fixture(true);
    whole
        .publisher
        .publish(snapshot_draft("MIG_STOCK", observations.clone()))
        .await
        .unwrap();
    let f = fixture(true);
    let p = publish_streaming(&f, snapshot_draft("MIG_STOCK", observations), 3000)
        .await
        .unwrap();
    let manifest = own_manifest(&f.store, 1);
    assert_eq!(manifest, own_manifest(&whole.store, 1));
    assert_eq!(p.chunk_count, 9);
    assert_eq!(manifest.chunks[0].observation_count, 1250);
    assert_eq!(staging_files(&f), 0);
}

#[tokio::test]
async fn an_abandoned_stream_leaves_nothing_and_a_small_one_is_signed_inline() {
    use crate::publish::stream::{StreamMessage, check_and_stage};
    let f = fixture(true);
    let cx = f.publisher.stream_context("MIG_STOCK".into()).unwrap();
    let (batches, received) = tokio::sync::mpsc::channel(1);
    let checker = tokio::task::spawn_blocking(move || check_and_stage(cx, received));
    batches
        .send(StreamMessage::Batch(many_appends(
            OBSERVATIONS_PER_CHUNK + 10,
        )))
        .await
        .unwrap();
    // The client went away: no End.
    drop(batches);
    assert!(checker.await.unwrap().unwrap().is_none(), "abandoned");
    assert_eq!(staging_files(&f), 0);
    assert_eq!(f.store.head().unwrap(), None);
    let small = publish_streaming(&f, snapshot_draft("MIG_STOCK", many_appends(10)), 3)
        .await
        .unwrap();
    assert_eq!((small.observation_count, small.chunk_count), (10, 0));
    assert_eq!(signed_observations(&f.store, 1).len(), 10, "signed inline");
}
