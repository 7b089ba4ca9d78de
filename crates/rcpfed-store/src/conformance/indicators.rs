//! Backend-neutral checks of [`IndicatorStore`]. The same suite runs against a hub store (feed
//! entries arrive through [`HubStore::append`]) and a node store (through
//! [`NodeStore::mirror_insert`]): the view must not depend on which one fills it.
//!
//! Entries are real statements signed with test keys, so the stores decode them exactly as
//! they decode production ones.

use crate::{
    ConflictRows, CoverageData, DecodedStatement, HubDocument, HubStore, IndicatorStore,
    MirroredStatement, NodeStore, ObservationCursor, ObservationFilter, ObservationProvenance,
    ObservationRow, PolicyCoverageData, StoreError, StoredStatement,
};
use rcpfed_core::Digest;
use rcpfed_core::catalogue::{Catalogue, sign_catalogue};
use rcpfed_core::chunks::encode_chunks;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::rejection::reasons;
use rcpfed_core::statement::{
    Body, ChunkManifest, DocumentKind, Header, IndicatorSnapshot, LocalizedText, Observation,
    ObservationAction, PolicyStatus, PolicySummary, Statement,
};
use std::sync::Arc;

/// A feed entry to give a store under test, as the hub logged it.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    /// Feed index.
    pub feed_index: u64,
    /// Signer, or hub document chain.
    pub node_id: String,
    /// Seq in that chain.
    pub seq: u64,
    /// Statement kind.
    pub kind: String,
    /// Document.
    pub document: String,
    /// Document revision.
    pub revision: u32,
    /// SHA-256 of the payload.
    pub digest: Digest,
    /// The encoded signed envelope.
    pub envelope: Vec<u8>,
    /// Acceptance time (unix ms).
    pub accepted_at_ms: i64,
}

impl FeedEntry {
    /// The entry as the hub stores it.
    pub fn stored(&self) -> StoredStatement {
        StoredStatement {
            feed_index: self.feed_index,
            node_id: self.node_id.clone(),
            seq: self.seq,
            digest: self.digest,
            payload_type: STATEMENT_PAYLOAD_TYPE.to_string(),
            kind: self.kind.clone(),
            document: self.document.clone(),
            revision: self.revision,
            envelope: self.envelope.clone(),
            receipt: format!("receipt {}", self.feed_index).into_bytes(),
            accepted_at_ms: self.accepted_at_ms,
            decoded: DecodedStatement::default(),
        }
    }

    /// The envelope's statement decoded, as a verifier hands it to the store; none for a hub
    /// document or an envelope that does not decode (the store then decodes and refuses it).
    pub fn decoded(&self) -> DecodedStatement {
        let statement_kinds = [DocumentKind::IndicatorSnapshot, DocumentKind::PolicySummary];
        if !statement_kinds.iter().any(|k| k.as_str() == self.kind) {
            return DecodedStatement::default();
        }
        SignedEnvelope::decode(&self.envelope)
            .ok()
            .and_then(|envelope| Statement::decode(&envelope.payload).ok())
            .map(|statement| DecodedStatement::of(Arc::new(statement)))
            .unwrap_or_default()
    }

    /// The entry as a node mirrors it.
    pub fn mirrored(&self) -> MirroredStatement {
        MirroredStatement {
            feed_index: self.feed_index,
            node_id: self.node_id.clone(),
            seq: self.seq,
            digest: self.digest,
            kind: self.kind.clone(),
            document: self.document.clone(),
            revision: self.revision,
            envelope: self.envelope.clone(),
            receipt: format!("receipt {}", self.feed_index).into_bytes(),
            accepted_at_ms: self.accepted_at_ms,
            mirrored_at_ms: self.accepted_at_ms + 5,
            decoded: DecodedStatement::default(),
        }
    }
}

/// Stores one feed entry in a store under test.
pub type AddEntry = Box<dyn Fn(&FeedEntry) -> Result<(), StoreError>>;

/// A store under test: how a feed entry reaches it, and its indicator view.
pub struct Target {
    /// Stores one feed entry (the hub's append or the node's mirror_insert).
    pub add: AddEntry,
    /// The view.
    pub view: Arc<dyn IndicatorStore>,
}

/// A hub store as a target: entries go through `append`, then the background apply step
/// (a chunked snapshot's view) until the view has caught up.
pub fn hub_target<S: HubStore + IndicatorStore>(store: Arc<S>) -> Target {
    let hub = Arc::clone(&store);
    Target {
        add: Box::new(move |e| {
            hub.append(&[e.stored()], &[], &[], &[], None)?;
            catch_up_view(&*hub)
        }),
        view: store,
    }
}

/// [`hub_target`] whose entries come with their decoded statement, as the hub's sequencer
/// hands them to the commit: the view must be the same as from the envelopes alone.
pub fn hub_target_handing_statements<S: HubStore + IndicatorStore>(store: Arc<S>) -> Target {
    let hub = Arc::clone(&store);
    Target {
        add: Box::new(move |e| {
            let stored = StoredStatement {
                decoded: e.decoded(),
                ..e.stored()
            };
            hub.append(&[stored], &[], &[], &[], None)?;
            catch_up_view(&*hub)
        }),
        view: store,
    }
}

/// Runs the hub's background apply step until the view has applied every stored entry.
pub fn catch_up_view<S: HubStore + IndicatorStore + ?Sized>(hub: &S) -> Result<(), StoreError> {
    let last = hub.last_feed_index()?;
    while hub.apply_view_step()? < last {}
    Ok(())
}

/// Runs the node's background apply step until the view has applied every mirrored entry.
pub fn catch_up_node_view<S: NodeStore + ?Sized>(node: &S) -> Result<(), StoreError> {
    let last = node.mirror_cursor()?;
    while node.apply_view_step()? < last {}
    Ok(())
}

/// A node store as a target: entries go through `mirror_insert` (and the view applier).
pub fn node_target<S: NodeStore + IndicatorStore>(store: Arc<S>) -> Target {
    let node = Arc::clone(&store);
    Target {
        add: Box::new(move |e| {
            node.mirror_insert(&e.mirrored())?;
            catch_up_node_view(&*node)
        }),
        view: store,
    }
}

/// [`node_target`] whose entries come with their decoded statement, as the node's mirror
/// hands the one it verified.
pub fn node_target_handing_statements<S: NodeStore + IndicatorStore>(store: Arc<S>) -> Target {
    let node = Arc::clone(&store);
    Target {
        add: Box::new(move |e| {
            node.mirror_insert(&MirroredStatement {
                decoded: e.decoded(),
                ..e.mirrored()
            })?;
            catch_up_node_view(&*node)
        }),
        view: store,
    }
}

/// Runs every indicator check, each on a fresh target from `new_target`.
pub fn indicator_suite(new_target: &dyn Fn() -> Target) {
    history_as_of_updated_after(&new_target());
    refused_entries_write_nothing(&new_target());
    actions_apply_in_position_order(&new_target());
    query_filters(&new_target());
    check_actions(&new_target());
    revisions(&new_target());
    conflicts_between_nodes(&new_target());
    conflicts_among_three_nodes(&new_target());
    coverage_in_force(&new_target());
    policy_coverage_latest_revisions(&new_target());
    chunked_snapshot_refused(&new_target());
    chunked_snapshot(&new_target());
    hub_documents(&new_target());
    coherence_rows_in_one_read(&new_target());
    key_rule(&new_target());
    nothing_in_force_is_asked_per_indicator(&new_target());
}

/// The test signing key of a node.
pub fn node_key(node_id: &str) -> SecretKey {
    SecretKey::from_seed(&Digest::of(node_id.as_bytes()).0)
}

/// An observation in persons (UNIT_MULT 0); `value` None for a DELETE.
pub fn obs(
    action: ObservationAction,
    ref_area: &str,
    time_period: &str,
    dims: &[(&str, &str)],
    value: Option<f64>,
) -> Observation {
    Observation {
        action,
        ref_area: ref_area.to_string(),
        time_period: time_period.to_string(),
        dimensions: dims
            .iter()
            .map(|(id, v)| (id.to_string(), v.to_string()))
            .collect(),
        obs_value: value,
        obs_status: "A".to_string(),
        unit_measure: "persons".to_string(),
        unit_mult: 0,
        conf_status: String::new(),
        footnote: format!("{ref_area} {time_period}"),
        source: "test".to_string(),
    }
}

/// APPEND without dimensions.
pub fn append(ref_area: &str, time_period: &str, value: f64) -> Observation {
    obs(
        ObservationAction::Append,
        ref_area,
        time_period,
        &[],
        Some(value),
    )
}

/// REPLACE without dimensions.
pub fn replace(ref_area: &str, time_period: &str, value: f64) -> Observation {
    obs(
        ObservationAction::Replace,
        ref_area,
        time_period,
        &[],
        Some(value),
    )
}

/// DELETE without dimensions.
pub fn delete(ref_area: &str, time_period: &str) -> Observation {
    obs(ObservationAction::Delete, ref_area, time_period, &[], None)
}

/// `o` with another unit and multiplier.
pub fn in_unit(mut o: Observation, unit_measure: &str, unit_mult: i32) -> Observation {
    o.unit_measure = unit_measure.to_string();
    o.unit_mult = unit_mult;
    o
}

fn header(node_id: &str, seq: u64, kind: DocumentKind, document: &str, revision: u32) -> Header {
    Header {
        federation_id: "rcp-federation".to_string(),
        node_id: node_id.to_string(),
        seq,
        prev_digest: None,
        issued_at: time::OffsetDateTime::UNIX_EPOCH,
        kind,
        schema_version: 1,
        document: document.to_string(),
        revision,
    }
}

/// `statement` signed by its node's test key, logged at `feed_index`.
pub fn signed_entry(feed_index: u64, statement: &Statement, accepted_at_ms: i64) -> FeedEntry {
    let h = &statement.header;
    let env = SignedEnvelope::sign(
        STATEMENT_PAYLOAD_TYPE,
        statement.encode(),
        &node_key(&h.node_id),
    );
    FeedEntry {
        feed_index,
        node_id: h.node_id.clone(),
        seq: h.seq,
        kind: h.kind.as_str().to_string(),
        document: h.document.clone(),
        revision: h.revision,
        digest: env.digest(),
        envelope: env.encode(),
        accepted_at_ms,
    }
}

/// An indicator snapshot entry; its document is "{node}/{indicator}".
#[allow(clippy::too_many_arguments)]
pub fn snapshot_entry(
    feed_index: u64,
    node_id: &str,
    seq: u64,
    revision: u32,
    indicator: &str,
    observations: Vec<Observation>,
    chunks: Option<ChunkManifest>,
    accepted_at_ms: i64,
) -> FeedEntry {
    let document = format!("{node_id}/{indicator}");
    let statement = Statement {
        header: header(
            node_id,
            seq,
            DocumentKind::IndicatorSnapshot,
            &document,
            revision,
        ),
        body: Body::Indicators(IndicatorSnapshot {
            indicator: indicator.to_string(),
            observations,
            chunks,
        }),
    };
    signed_entry(feed_index, &statement, accepted_at_ms)
}

/// A policy summary entry addressing `objectives`.
pub fn policy_entry(
    feed_index: u64,
    node_id: &str,
    seq: u64,
    document: &str,
    revision: u32,
    objectives: &[u32],
    accepted_at_ms: i64,
) -> FeedEntry {
    let statement = Statement {
        header: header(
            node_id,
            seq,
            DocumentKind::PolicySummary,
            document,
            revision,
        ),
        body: Body::Policy(PolicySummary {
            title: vec![LocalizedText {
                language: "en".to_string(),
                text: document.to_string(),
            }],
            summary: Vec::new(),
            meeting: "Ministerial Consultation".to_string(),
            meeting_date: "2024-05-17".to_string(),
            status: PolicyStatus::Adopted,
            countries: vec!["LKA".to_string()],
            gcm_objectives: objectives.to_vec(),
            sdg_targets: Vec::new(),
            references: Vec::new(),
        }),
    };
    signed_entry(feed_index, &statement, accepted_at_ms)
}

/// A hub-issued document entry (catalogue or coherence report) of chain `chain`. A catalogue
/// version carries the shipped catalogue (`data/catalogue/catalogue.toml`) as version `seq`:
/// the view keys later snapshots with its defaults. A coherence report's payload is opaque
/// here (the view stores nothing for it).
pub fn hub_document_entry(
    feed_index: u64,
    chain: &str,
    seq: u64,
    kind: &str,
    accepted_at_ms: i64,
) -> FeedEntry {
    let env = if kind == crate::CATALOGUE_KIND {
        sign_catalogue(
            &shipped_catalogue(),
            "rcp-federation",
            seq,
            time::OffsetDateTime::UNIX_EPOCH,
            None,
            &node_key("hub"),
        )
    } else {
        SignedEnvelope::sign(
            "application/vnd.rcpfed.catalogue.v1+protobuf",
            format!("{chain} {seq}").into_bytes(),
            &node_key("hub"),
        )
    };
    FeedEntry {
        feed_index,
        node_id: chain.to_string(),
        seq,
        kind: kind.to_string(),
        document: kind.to_string(),
        revision: u32::try_from(seq).unwrap(),
        digest: env.digest(),
        envelope: env.encode(),
        accepted_at_ms,
    }
}

/// The shipped catalogue.
pub fn shipped_catalogue() -> Catalogue {
    Catalogue::from_toml(rcpfed_core::catalogue::embedded_catalogue_toml()).unwrap()
}

/// A filter on one indicator and nothing else.
pub fn filter(indicator: &str) -> ObservationFilter {
    ObservationFilter {
        indicator: indicator.to_string(),
        ..ObservationFilter::default()
    }
}

/// (feed_index, position, superseded_at_ms) of each row: what the history checks compare.
pub fn positions(rows: &[ObservationRow]) -> Vec<(u64, u64, Option<i64>)> {
    rows.iter()
        .map(|r| {
            (
                r.provenance.feed_index,
                r.provenance.position,
                r.superseded_at_ms,
            )
        })
        .collect()
}

fn query(t: &Target, f: &ObservationFilter) -> Vec<ObservationRow> {
    t.view.query_observations(f, None, 1000).unwrap()
}

/// Stores `entries` in order.
pub fn add_all(t: &Target, entries: &[FeedEntry]) {
    for e in entries {
        (t.add)(e).unwrap();
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, context: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{context}: expected Conflict, got {other:?}"),
    }
}

/// An IND snapshot of `node_id` with revision = `seq` and no chunks.
fn ind_entry(
    feed_index: u64,
    node_id: &str,
    seq: u64,
    observations: Vec<Observation>,
    accepted_at_ms: i64,
) -> FeedEntry {
    let revision = u32::try_from(seq).expect("revision");
    snapshot_entry(
        feed_index,
        node_id,
        seq,
        revision,
        "IND",
        observations,
        None,
        accepted_at_ms,
    )
}

/// LKA 2020 appended (t=1000), replaced (2000), deleted (3000) and appended again (4000) by
/// node-a; BGD 2020 (SEX=F) appended once at 1000.
pub fn history_feed() -> Vec<FeedEntry> {
    vec![
        ind_entry(
            1,
            "node-a",
            1,
            vec![
                append("LKA", "2020", 1.0),
                obs(
                    ObservationAction::Append,
                    "BGD",
                    "2020",
                    &[("SEX", "F")],
                    Some(2.0),
                ),
            ],
            1_000,
        ),
        ind_entry(2, "node-a", 2, vec![replace("LKA", "2020", 1.5)], 2_000),
        ind_entry(3, "node-a", 3, vec![delete("LKA", "2020")], 3_000),
        ind_entry(4, "node-a", 4, vec![append("LKA", "2020", 9.0)], 4_000),
    ]
}

/// Current view, as_of, updated_after and include_history, alone and combined; paging.
pub fn history_as_of_updated_after(t: &Target) {
    let v = &*t.view;
    assert_eq!(v.applied_feed_size().unwrap(), 0);
    assert_eq!(v.last_content_feed_index().unwrap(), 0);
    assert!(query(t, &filter("IND")).is_empty());
    let feed = history_feed();
    add_all(t, &feed);
    assert_eq!(v.applied_feed_size().unwrap(), 4);
    assert_eq!(v.last_content_feed_index().unwrap(), 4);
    // Rows and feed size from one read.
    let (rows, feed_size) = v.query_observations_at(&filter("IND"), None, 1000).unwrap();
    assert_eq!(feed_size, 4);
    assert_eq!(rows, query(t, &filter("IND")));

    let at = |f: ObservationFilter| positions(&query(t, &f));
    let base = filter("IND");
    // Current view: versions in force, tombstones excluded; the re-append is in force.
    assert_eq!(at(base.clone()), vec![(1, 1, None), (4, 0, None)]);
    let as_of = |ms| ObservationFilter {
        as_of_ms: Some(ms),
        ..base.clone()
    };
    assert_eq!(at(as_of(999)), vec![]);
    assert_eq!(at(as_of(1_000)), vec![(1, 0, Some(2_000)), (1, 1, None)]);
    assert_eq!(at(as_of(1_999)), vec![(1, 0, Some(2_000)), (1, 1, None)]);
    // Superseded at 2000: from that moment the replacement is in force.
    assert_eq!(at(as_of(2_000)), vec![(1, 1, None), (2, 0, Some(3_000))]);
    assert_eq!(at(as_of(2_500)), vec![(1, 1, None), (2, 0, Some(3_000))]);
    // Deleted at 3000: the tombstone is not returned.
    assert_eq!(at(as_of(3_500)), vec![(1, 1, None)]);
    assert_eq!(at(as_of(4_000)), vec![(1, 1, None), (4, 0, None)]);

    let all = vec![
        (1, 0, Some(2_000)),
        (1, 1, None),
        (2, 0, Some(3_000)),
        (3, 0, Some(4_000)),
        (4, 0, None),
    ];
    let history = ObservationFilter {
        include_history: true,
        ..base.clone()
    };
    assert_eq!(at(history.clone()), all);
    let rows = query(t, &history);
    let actions: Vec<_> = rows.iter().map(|r| r.observation.action).collect();
    use ObservationAction::*;
    assert_eq!(actions, vec![Append, Append, Replace, Delete, Append]);
    assert_eq!(rows[3].observation.obs_value, None);
    // History as known at a moment: every version accepted by then.
    assert_eq!(
        at(ObservationFilter {
            as_of_ms: Some(2_500),
            ..history.clone()
        }),
        all[..3].to_vec()
    );
    assert_eq!(
        at(ObservationFilter {
            as_of_ms: Some(3_000),
            ..history.clone()
        }),
        all[..4].to_vec()
    );

    let updated = ObservationFilter {
        updated_after_ms: Some(1_000),
        ..base.clone()
    };
    // Changes after 1000 still in force now.
    assert_eq!(at(updated.clone()), vec![(4, 0, None)]);
    // ...in force at 3500: the tombstone is a change and is returned.
    assert_eq!(
        at(ObservationFilter {
            as_of_ms: Some(3_500),
            ..updated.clone()
        }),
        vec![(3, 0, Some(4_000))]
    );
    assert_eq!(
        at(ObservationFilter {
            include_history: true,
            ..updated.clone()
        }),
        all[2..].to_vec()
    );
    assert_eq!(
        at(ObservationFilter {
            include_history: true,
            as_of_ms: Some(3_500),
            ..updated.clone()
        }),
        all[2..4].to_vec()
    );
    assert_eq!(
        at(ObservationFilter {
            updated_after_ms: Some(4_000),
            ..base.clone()
        }),
        vec![]
    );

    // Paging by (feed_index, position).
    let mut paged = Vec::new();
    let mut after: Option<ObservationCursor> = None;
    loop {
        let page = v.query_observations(&history, after, 2).unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.provenance.feed_index, last.provenance.position));
        paged.extend(page);
    }
    assert_eq!(positions(&paged), all);
    assert!(v.query_observations(&history, None, 0).unwrap().is_empty());
    assert!(
        v.query_observations(&history, Some((u64::MAX, u64::MAX)), 10)
            .unwrap()
            .is_empty()
    );

    // Every field of a row, provenance included.
    let e4 = &feed[3];
    let current = query(t, &base);
    assert_eq!(
        current[1],
        ObservationRow {
            indicator: "IND".to_string(),
            observation: append("LKA", "2020", 9.0),
            provenance: ObservationProvenance {
                node_id: "node-a".to_string(),
                digest: e4.digest,
                document: "node-a/IND".to_string(),
                revision: 4,
                feed_index: 4,
                position: 0,
                accepted_at_ms: 4_000,
            },
            superseded_at_ms: None,
        }
    );
    assert_eq!(
        current[0].observation.dimensions,
        vec![("SEX".to_string(), "F".to_string())]
    );
}

/// An entry breaking an action rule is refused as a Conflict and nothing of it is stored,
/// not even the observations before the offending one.
pub fn refused_entries_write_nothing(t: &Target) {
    add_all(t, &history_feed());
    let before = query(
        t,
        &ObservationFilter {
            include_history: true,
            ..filter("IND")
        },
    );
    let refused = [
        // PAK is fine, LKA 2020 already has a value in force.
        vec![append("PAK", "2020", 1.0), append("LKA", "2020", 1.0)],
        vec![replace("PAK", "2020", 1.0)],
        vec![delete("NPL", "2020")],
        // BGD 2020 exists only with SEX=F: this is another key.
        vec![delete("BGD", "2020")],
        // A key appended and appended again within one snapshot.
        vec![append("IND", "2020", 1.0), append("IND", "2020", 2.0)],
    ];
    for (i, observations) in refused.into_iter().enumerate() {
        let e = ind_entry(5, "node-a", 5, observations, 5_000);
        assert_conflict((t.add)(&e), &format!("refused snapshot {i}"));
        assert_eq!(t.view.applied_feed_size().unwrap(), 4, "snapshot {i}");
    }
    assert_eq!(
        query(
            t,
            &ObservationFilter {
                include_history: true,
                ..filter("IND")
            }
        ),
        before
    );
    // A key touched twice in one snapshot follows the rules in position order.
    let e = ind_entry(
        5,
        "node-a",
        5,
        vec![append("PAK", "2020", 1.0), replace("PAK", "2020", 2.0)],
        5_000,
    );
    (t.add)(&e).unwrap();
    let pak = query(
        t,
        &ObservationFilter {
            ref_areas: vec!["PAK".to_string()],
            include_history: true,
            ..filter("IND")
        },
    );
    assert_eq!(positions(&pak), vec![(5, 0, Some(5_000)), (5, 1, None)]);
    // Another node may append the same key: keys are per node.
    let e = ind_entry(6, "node-b", 1, vec![append("LKA", "2020", 9.0)], 6_000);
    (t.add)(&e).unwrap();
}

/// One snapshot that mixes actions on a key, across the apply step's batches: every
/// observation meets the version in force its predecessors left, whether the apply step
/// inserted it straight away (an APPEND) or looked its key up first.
pub fn actions_apply_in_position_order(t: &Target) {
    let batch = crate::indicators_sql::APPLY_BATCH;
    let first = ind_entry(
        1,
        "node-a",
        1,
        vec![append("LKA", "2020", 1.0), delete("LKA", "2020")],
        1_000,
    );
    (t.add)(&first).unwrap();
    let mut observations = vec![
        // A stored tombstone: appending again is allowed.
        append("LKA", "2020", 2.0),
        append("NPL", "2020", 1.0),
        delete("NPL", "2020"),
        append("NPL", "2020", 3.0),
    ];
    observations.extend((0..batch).map(|i| append(&format!("X{i}"), "2020", 1.0)));
    // In the next batch: the key's version in force is the first batch's last.
    observations.push(replace("NPL", "2020", 4.0));
    let last = u64::try_from(observations.len() - 1).expect("position");
    (t.add)(&ind_entry(2, "node-a", 2, observations, 2_000)).unwrap();
    let history = |area: &str| {
        let rows = query(
            t,
            &ObservationFilter {
                ref_areas: vec![area.to_string()],
                include_history: true,
                ..filter("IND")
            },
        );
        let values: Vec<Option<f64>> = rows.iter().map(|r| r.observation.obs_value).collect();
        (positions(&rows), values)
    };
    assert_eq!(
        history("LKA").0,
        vec![(1, 0, Some(1_000)), (1, 1, Some(2_000)), (2, 0, None)]
    );
    assert_eq!(
        history("NPL"),
        (
            vec![
                (2, 1, Some(2_000)),
                (2, 2, Some(2_000)),
                (2, 3, Some(2_000)),
                (2, last, None)
            ],
            vec![Some(1.0), None, Some(3.0), Some(4.0)]
        )
    );
    // An APPEND of a key in force is refused after a new key went in, and neither is kept.
    let refused = ind_entry(
        3,
        "node-a",
        3,
        vec![append("BGD", "2020", 1.0), append("X7", "2020", 2.0)],
        3_000,
    );
    match (t.add)(&refused) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("observation 1 "), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(history("BGD").0.is_empty());
    assert_eq!(t.view.applied_feed_size().unwrap(), 2);
}

/// ref_areas, start/end dates, dimension pairs and node ids.
pub fn query_filters(t: &Target) {
    let a = vec![
        obs(
            ObservationAction::Append,
            "LKA",
            "2020",
            &[("SEX", "F"), ("AGE", "Y15T24")],
            Some(1.0),
        ),
        obs(
            ObservationAction::Append,
            "LKA",
            "2020",
            &[("SEX", "M")],
            Some(2.0),
        ),
        append("LKA", "2021-Q3", 3.0),
        append("BGD", "2019", 4.0),
    ];
    let b = vec![obs(
        ObservationAction::Append,
        "LKA",
        "2020",
        &[("AGE", "Y15T24"), ("SEX", "F")],
        Some(1.0),
    )];
    add_all(
        t,
        &[
            ind_entry(1, "node-a", 1, a, 1_000),
            ind_entry(2, "node-b", 1, b, 2_000),
            snapshot_entry(
                3,
                "node-a",
                2,
                1,
                "OTHER",
                vec![append("LKA", "2020", 5.0)],
                None,
                3_000,
            ),
        ],
    );
    let at = |f: ObservationFilter| -> Vec<(u64, u64)> {
        query(t, &f)
            .iter()
            .map(|r| (r.provenance.feed_index, r.provenance.position))
            .collect()
    };
    let base = filter("IND");
    assert_eq!(
        at(base.clone()),
        vec![(1, 0), (1, 1), (1, 2), (1, 3), (2, 0)]
    );
    assert_eq!(at(filter("OTHER")), vec![(3, 0)]);
    assert_eq!(at(filter("NONE")), vec![]);
    let areas = |areas: &[&str]| ObservationFilter {
        ref_areas: areas.iter().map(|a| a.to_string()).collect(),
        ..base.clone()
    };
    assert_eq!(at(areas(&["LKA"])), vec![(1, 0), (1, 1), (1, 2), (2, 0)]);
    assert_eq!(at(areas(&["BGD", "NPL"])), vec![(1, 3)]);
    assert_eq!(at(areas(&["NPL"])), vec![]);
    let dates = |start: Option<&str>, end: Option<&str>| ObservationFilter {
        start_date: start.map(str::to_string),
        end_date: end.map(str::to_string),
        ..base.clone()
    };
    assert_eq!(
        at(dates(Some("2020-01-01"), None)),
        vec![(1, 0), (1, 1), (1, 2), (2, 0)]
    );
    // 2021-Q3 ends on 2021-09-30.
    assert_eq!(
        at(dates(None, Some("2020-12-31"))),
        vec![(1, 0), (1, 1), (1, 3), (2, 0)]
    );
    assert_eq!(
        at(dates(Some("2021-07-01"), Some("2021-09-30"))),
        vec![(1, 2)]
    );
    assert_eq!(at(dates(Some("2021-07-02"), Some("2021-09-30"))), vec![]);
    assert_eq!(at(dates(Some("2021-07-01"), Some("2021-09-29"))), vec![]);
    let dims = |pairs: &[(&str, &str)]| ObservationFilter {
        dimensions: pairs
            .iter()
            .map(|(i, v)| (i.to_string(), v.to_string()))
            .collect(),
        ..base.clone()
    };
    // A dimension not listed is not filtered.
    assert_eq!(at(dims(&[("SEX", "F")])), vec![(1, 0), (2, 0)]);
    assert_eq!(
        at(dims(&[("SEX", "F"), ("AGE", "Y15T24")])),
        vec![(1, 0), (2, 0)]
    );
    assert_eq!(at(dims(&[("SEX", "M")])), vec![(1, 1)]);
    assert_eq!(at(dims(&[("SEX", "M"), ("AGE", "Y15T24")])), vec![]);
    assert_eq!(at(dims(&[("SEX", "X")])), vec![]);
    assert_eq!(at(dims(&[("AGE", "Y15")])), vec![]);
    let nodes = |ids: &[&str]| ObservationFilter {
        node_ids: ids.iter().map(|a| a.to_string()).collect(),
        ..base.clone()
    };
    assert_eq!(at(nodes(&["node-b"])), vec![(2, 0)]);
    assert_eq!(at(nodes(&["node-b", "node-a"])).len(), 5);
    assert_eq!(at(nodes(&["node-c"])), vec![]);
    // Combined.
    assert_eq!(
        at(ObservationFilter {
            ref_areas: vec!["LKA".to_string()],
            start_date: Some("2020-01-01".to_string()),
            end_date: Some("2020-12-31".to_string()),
            dimensions: vec![("SEX".to_string(), "F".to_string())],
            node_ids: vec!["node-a".to_string()],
            ..base.clone()
        }),
        vec![(1, 0)]
    );
    // Dimensions come back sorted by id, whatever order they were signed in.
    let row = &query(t, &nodes(&["node-a"]))[0];
    assert_eq!(
        row.observation.dimensions,
        vec![
            ("AGE".to_string(), "Y15T24".to_string()),
            ("SEX".to_string(), "F".to_string())
        ]
    );
}

/// check_observation_actions: reasons, fields, words, limit; read only.
pub fn check_actions(t: &Target) {
    add_all(t, &history_feed()[..3]);
    let v = &*t.view;
    let snapshot = vec![
        append("BGD", "2020", 1.0), // BGD 2020 exists only with SEX=F: fine
        obs(
            ObservationAction::Append,
            "BGD",
            "2020",
            &[("SEX", "F")],
            Some(1.0),
        ),
        replace("PAK", "2020", 1.0),
        delete("PAK", "2021"),
        append("NPL", "2020", 1.0),
        replace("NPL", "2020", 2.0),
        replace("LKA", "2020", 2.0), // deleted at feed 3
        append("LKA", "2020", 3.0),  // fine after the tombstone
        delete("LKA", "2020"),       // and so is deleting it again
        delete("LKA", "2020"),
    ];
    let violations = v
        .check_observation_actions("node-a", "IND", &snapshot, 100)
        .unwrap();
    let summary: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.field.as_str(), v.reason))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "indicator_snapshot.observations[1]",
                reasons::OBSERVATION_EXISTS
            ),
            (
                "indicator_snapshot.observations[2]",
                reasons::OBSERVATION_NOT_FOUND
            ),
            (
                "indicator_snapshot.observations[3]",
                reasons::OBSERVATION_NOT_FOUND
            ),
            (
                "indicator_snapshot.observations[6]",
                reasons::OBSERVATION_NOT_FOUND
            ),
            (
                "indicator_snapshot.observations[9]",
                reasons::OBSERVATION_NOT_FOUND
            ),
        ]
    );
    let words: Vec<&str> = violations.iter().map(|v| v.description.as_str()).collect();
    assert!(
        words[0].contains("IND BGD 2020 (SEX=F)")
            && words[0].contains("node-a")
            && words[0].contains("REPLACE"),
        "{}",
        words[0]
    );
    assert!(
        words[1].contains("IND PAK 2020") && words[1].contains("APPEND"),
        "{}",
        words[1]
    );
    assert!(words[3].contains("deleted"), "{}", words[3]);
    assert!(words[4].contains("already deleted"), "{}", words[4]);
    assert_eq!(
        v.check_observation_actions("node-a", "IND", &snapshot, 2)
            .unwrap()
            .len(),
        2
    );
    assert!(
        v.check_observation_actions("node-a", "IND", &snapshot, 0)
            .unwrap()
            .is_empty()
    );
    // Keys are per node and per indicator.
    let again = vec![snapshot[1].clone(), replace("LKA", "2020", 1.0)];
    assert_eq!(
        v.check_observation_actions("node-a", "IND", &again, 10)
            .unwrap()
            .len(),
        2
    );
    let again = vec![snapshot[1].clone(), append("LKA", "2020", 1.0)];
    assert!(
        v.check_observation_actions("node-b", "IND", &again, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        v.check_observation_actions("node-a", "OTHER", &again, 10)
            .unwrap()
            .is_empty()
    );
    // Read only.
    assert_eq!(v.applied_feed_size().unwrap(), 3);
    assert_eq!(
        query(
            t,
            &ObservationFilter {
                include_history: true,
                ..filter("IND")
            }
        )
        .len(),
        4
    );
}

/// revisions_since pairs every REPLACE and DELETE with the version it superseded.
pub fn revisions(t: &Target) {
    add_all(t, &history_feed());
    let v = &*t.view;
    let (rows, total) = v.revisions_since(0, 10).unwrap();
    assert_eq!(total, 2);
    let pairs: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                (r.old.provenance.feed_index, r.old.provenance.position),
                (r.new.provenance.feed_index, r.new.provenance.position),
                r.new.observation.action,
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ((1, 0), (2, 0), ObservationAction::Replace),
            ((2, 0), (3, 0), ObservationAction::Delete),
        ]
    );
    for r in &rows {
        assert_eq!(
            r.old.superseded_at_ms,
            Some(r.new.provenance.accepted_at_ms)
        );
    }
    assert_eq!(rows[0].old.observation.obs_value, Some(1.0));
    assert_eq!(rows[0].new.observation.obs_value, Some(1.5));
    let (page, total) = v.revisions_since(0, 1).unwrap();
    assert_eq!(
        (positions(&[page[0].new.clone()]), total),
        (vec![(2, 0, Some(3_000))], 2)
    );
    let (rows, total) = v.revisions_since(2, 10).unwrap();
    assert_eq!((rows.len(), total), (1, 1));
    assert_eq!(rows[0].new.provenance.feed_index, 3);
    assert_eq!(v.revisions_since(3, 10).unwrap(), (Vec::new(), 0));
    assert_eq!(v.revisions_since(u64::MAX, 10).unwrap(), (Vec::new(), 0));
}

/// node-a and node-b report BGD 2020 differently and NPL 2020 in different
/// units; LKA 2020 and LKA 2021 agree once scaled; PAK 2020 differs but node-b deleted it.
pub fn conflict_feed() -> Vec<FeedEntry> {
    let usd = |o, mult| in_unit(o, "USD", mult);
    vec![
        ind_entry(
            1,
            "node-a",
            1,
            vec![
                usd(append("LKA", "2020", 5.9), 9),
                usd(append("LKA", "2021", 0.3), 1),
                append("BGD", "2020", 10.0),
                append("NPL", "2020", 3.0),
                append("PAK", "2020", 1.0),
                append("IND", "2020", 1.0),
            ],
            1_000,
        ),
        ind_entry(
            2,
            "node-b",
            1,
            vec![
                usd(append("LKA", "2020", 5_900_000_000.0), 0),
                usd(append("LKA", "2021", 3.0), 0),
                append("BGD", "2020", 11.0),
                in_unit(append("NPL", "2020", 3.0), "households", 0),
                append("PAK", "2020", 2.0),
            ],
            2_000,
        ),
        ind_entry(3, "node-b", 2, vec![delete("PAK", "2020")], 3_000),
    ]
}

/// Conflicts: keys in force at more than one node with different scaled values or units.
pub fn conflicts_between_nodes(t: &Target) {
    let v = &*t.view;
    assert_eq!(v.conflicts(10).unwrap(), (Vec::new(), 0));
    add_all(t, &conflict_feed());
    let (rows, total) = v.conflicts(10).unwrap();
    assert_eq!(total, 2);
    let keys: Vec<_> = rows.iter().map(conflict_key).collect();
    assert_eq!(
        keys,
        vec![
            (
                "BGD".to_string(),
                vec!["node-a".to_string(), "node-b".to_string()]
            ),
            (
                "NPL".to_string(),
                vec!["node-a".to_string(), "node-b".to_string()]
            ),
        ]
    );
    assert_eq!(rows[0].values[0].observation.obs_value, Some(10.0));
    assert_eq!(rows[0].values[1].observation.obs_value, Some(11.0));
    let (page, total) = v.conflicts(1).unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(page[0], rows[0]);
    assert_eq!(v.conflicts(0).unwrap(), (Vec::new(), 2));
    // node-a revises BGD to node-b's figure: one conflict left.
    (t.add)(&ind_entry(
        4,
        "node-a",
        2,
        vec![replace("BGD", "2020", 11.0)],
        4_000,
    ))
    .unwrap();
    let (rows, total) = v.conflicts(10).unwrap();
    assert_eq!(total, 1);
    assert_eq!(conflict_key(&rows[0]).0, "NPL");
}

/// coherence_rows answers what the separate reads answer on a store at rest, and every row it
/// lists lies within its feed size.
pub fn coherence_rows_in_one_read(t: &Target) {
    let v = &*t.view;
    let empty = v.coherence_rows(0, 10).unwrap();
    assert_eq!(empty.feed_size, 0);
    assert_eq!(empty.conflicts, (Vec::new(), 0));
    assert_eq!(empty.revisions, (Vec::new(), 0));
    assert!(empty.coverage.is_empty() && empty.policy_coverage.is_empty());
    add_all(t, &conflict_feed());
    (t.add)(&policy_entry(
        4,
        "node-a",
        3,
        "node-a/plan",
        1,
        &[2, 5],
        4_000,
    ))
    .unwrap();
    let rows = v.coherence_rows(1, 10).unwrap();
    assert_eq!(rows.feed_size, 4);
    assert_eq!(rows.conflicts, v.conflicts(10).unwrap());
    assert_eq!(rows.coverage, v.coverage().unwrap());
    assert_eq!(rows.policy_coverage, v.policy_coverage().unwrap());
    assert_eq!(rows.revisions, v.revisions_since(1, 10).unwrap());
    assert_eq!(rows.revisions.1, 1, "node-b's delete at feed index 3");
    let limited = v.coherence_rows(0, 1).unwrap();
    assert_eq!((limited.conflicts.0.len(), limited.conflicts.1), (1, 2));
}

/// Conflicts among three nodes, each key's versions read side by side: agreement once scaled
/// is no conflict however many nodes agree; one node differing lists every node's version;
/// a key only one node still has in force (the other deleted it) is none; the total counts
/// keys beyond the listing limit.
pub fn conflicts_among_three_nodes(t: &Target) {
    let v = &*t.view;
    let usd = |o, mult| in_unit(o, "USD", mult);
    add_all(
        t,
        &[
            ind_entry(
                1,
                "node-a",
                1,
                vec![
                    usd(append("LKA", "2020", 5.9), 9),
                    append("BGD", "2019", 1.0),
                    append("BGD", "2020", 1.0),
                    append("NPL", "2020", 1.0),
                ],
                1_000,
            ),
            ind_entry(
                2,
                "node-b",
                1,
                vec![
                    usd(append("LKA", "2020", 5_900_000_000.0), 0),
                    append("BGD", "2019", 2.0),
                    append("BGD", "2020", 2.0),
                    append("NPL", "2020", 2.0),
                ],
                2_000,
            ),
            ind_entry(
                3,
                "node-c",
                1,
                vec![
                    usd(append("LKA", "2020", 5_900_000.0), 3),
                    append("BGD", "2020", 1.0),
                ],
                3_000,
            ),
            ind_entry(4, "node-b", 2, vec![delete("NPL", "2020")], 4_000),
        ],
    );
    // BGD 2019 (a, b) and BGD 2020 (a, b, c); LKA agrees once scaled; NPL only at node-a.
    let (rows, total) = v.conflicts(10).unwrap();
    assert_eq!(total, 2);
    let listed: Vec<_> = rows
        .iter()
        .map(|c| (c.values[0].observation.time_period.clone(), conflict_key(c)))
        .collect();
    let nodes = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        listed,
        vec![
            (
                "2019".to_string(),
                ("BGD".to_string(), nodes(&["node-a", "node-b"]))
            ),
            (
                "2020".to_string(),
                ("BGD".to_string(), nodes(&["node-a", "node-b", "node-c"]))
            ),
        ]
    );
    assert_eq!(rows[1].values[2].observation.obs_value, Some(1.0));
    let (page, total) = v.conflicts(1).unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(page[0], rows[0]);
    // node-c's LKA moves off the others' figure by one unit: a conflict of all three.
    (t.add)(&ind_entry(
        5,
        "node-c",
        2,
        vec![usd(replace("LKA", "2020", 5_900_001.0), 3)],
        5_000,
    ))
    .unwrap();
    let (rows, total) = v.conflicts(10).unwrap();
    assert_eq!(total, 3);
    assert_eq!(
        conflict_key(&rows[2]),
        ("LKA".to_string(), nodes(&["node-a", "node-b", "node-c"]))
    );
}

fn conflict_key(c: &ConflictRows) -> (String, Vec<String>) {
    (
        c.values[0].observation.ref_area.clone(),
        c.values
            .iter()
            .map(|r| r.provenance.node_id.clone())
            .collect(),
    )
}

/// Coverage counts the versions in force per (node, indicator), tombstones excluded.
pub fn coverage_in_force(t: &Target) {
    assert!(t.view.coverage().unwrap().is_empty());
    add_all(t, &history_feed());
    add_all(t, &conflict_feed_after(4));
    (t.add)(&snapshot_entry(
        8,
        "node-a",
        6,
        1,
        "OTHER",
        vec![append("LKA", "2021-Q3", 1.0), append("LKA", "2019", 1.0)],
        None,
        8_000,
    ))
    .unwrap();
    let cov = t.view.coverage().unwrap();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        cov,
        vec![
            CoverageData {
                node_id: "node-a".to_string(),
                indicator: "IND".to_string(),
                ref_areas: strings(&["BGD", "IND", "LKA", "NPL", "PAK"]),
                first_period: "2020".to_string(),
                last_period: "2021".to_string(),
                // BGD 2020 (SEX=F) and LKA 2020 from the history, five keys from the
                // conflict feed.
                observation_count: 7,
            },
            CoverageData {
                node_id: "node-a".to_string(),
                indicator: "OTHER".to_string(),
                ref_areas: strings(&["LKA"]),
                first_period: "2019".to_string(),
                last_period: "2021-Q3".to_string(),
                observation_count: 2,
            },
            CoverageData {
                node_id: "node-b".to_string(),
                indicator: "IND".to_string(),
                ref_areas: strings(&["BGD", "LKA", "NPL"]),
                first_period: "2020".to_string(),
                last_period: "2021".to_string(),
                observation_count: 4,
            },
        ]
    );
}

/// [`conflict_feed`] after [`history_feed`]: renumbered to follow `last_feed_index`, without
/// node-a's LKA 2020, which the history feed holds (node-b's now conflicts with it).
fn conflict_feed_after(last_feed_index: u64) -> Vec<FeedEntry> {
    let usd = |o, mult| in_unit(o, "USD", mult);
    vec![
        ind_entry(
            last_feed_index + 1,
            "node-a",
            5,
            vec![
                usd(append("LKA", "2021", 0.3), 1),
                append("BGD", "2020", 10.0),
                append("NPL", "2020", 3.0),
                append("PAK", "2020", 1.0),
                append("IND", "2020", 1.0),
            ],
            5_000,
        ),
        ind_entry(
            last_feed_index + 2,
            "node-b",
            1,
            vec![
                usd(append("LKA", "2020", 5_900_000_000.0), 0),
                usd(append("LKA", "2021", 3.0), 0),
                append("BGD", "2020", 11.0),
                in_unit(append("NPL", "2020", 3.0), "households", 0),
                append("PAK", "2020", 2.0),
            ],
            6_000,
        ),
        ind_entry(
            last_feed_index + 3,
            "node-b",
            2,
            vec![delete("PAK", "2020")],
            7_000,
        ),
    ]
}

/// Policy coverage uses the latest revision of each document only.
pub fn policy_coverage_latest_revisions(t: &Target) {
    let v = &*t.view;
    assert!(v.policy_coverage().unwrap().is_empty());
    add_all(
        t,
        &[
            policy_entry(1, "node-a", 1, "doc-1", 1, &[2, 1], 1_000),
            policy_entry(2, "node-a", 2, "doc-2", 1, &[], 2_000),
            policy_entry(3, "node-b", 1, "doc-1", 1, &[5, 2], 3_000),
            hub_document_entry(4, "hub/catalogue", 1, "catalogue", 4_000),
        ],
    );
    assert_eq!(v.last_content_feed_index().unwrap(), 3);
    let coverage = |objectives_a: Vec<u32>| {
        vec![
            PolicyCoverageData {
                node_id: "node-a".to_string(),
                gcm_objectives: objectives_a,
                policy_documents: 2,
            },
            PolicyCoverageData {
                node_id: "node-b".to_string(),
                gcm_objectives: vec![2, 5],
                policy_documents: 1,
            },
        ]
    };
    assert_eq!(v.policy_coverage().unwrap(), coverage(vec![1, 2]));
    // Revision 2 of doc-1 drops objective 1 and adds 3.
    (t.add)(&policy_entry(5, "node-a", 3, "doc-1", 2, &[3, 2], 5_000)).unwrap();
    assert_eq!(v.policy_coverage().unwrap(), coverage(vec![2, 3]));
    assert_eq!(v.last_content_feed_index().unwrap(), 5);
    // A new revision addressing nothing keeps the document counted.
    (t.add)(&policy_entry(6, "node-a", 4, "doc-1", 3, &[], 6_000)).unwrap();
    assert_eq!(v.policy_coverage().unwrap(), coverage(Vec::new()));
    // A revision older than the one recorded changes nothing, counts included.
    (t.add)(&policy_entry(7, "node-a", 5, "doc-1", 1, &[7], 7_000)).unwrap();
    assert_eq!(v.policy_coverage().unwrap(), coverage(Vec::new()));
    // doc-2 (none so far) now addresses 4 and 2; doc-1 comes back to 2: counted once each.
    (t.add)(&policy_entry(8, "node-a", 6, "doc-2", 2, &[4, 2], 8_000)).unwrap();
    (t.add)(&policy_entry(9, "node-a", 7, "doc-1", 4, &[2], 9_000)).unwrap();
    assert_eq!(v.policy_coverage().unwrap(), coverage(vec![2, 4]));
    // Dropping 2 from one of the two documents that address it keeps it covered.
    (t.add)(&policy_entry(10, "node-a", 8, "doc-1", 5, &[], 10_000)).unwrap();
    assert_eq!(v.policy_coverage().unwrap(), coverage(vec![2, 4]));
}

/// The observations of a chunked test snapshot: `n` APPENDs for LKA, one year each.
pub fn chunked_observations(n: usize) -> Vec<Observation> {
    (0..n)
        .map(|i| {
            obs(
                ObservationAction::Append,
                "LKA",
                &format!("{}", 1900 + i % 200),
                &[
                    ("SEX", ["F", "M", "_T"][i / 200 % 3]),
                    ("AGE", &format!("A{}", i / 600)),
                ],
                Some(i as f64),
            )
        })
        .collect()
}

/// `observations` as a later snapshot that replaces each of them: REPLACE, value + `by`.
pub fn replacing(observations: &[Observation], by: f64) -> Vec<Observation> {
    observations
        .iter()
        .map(|o| Observation {
            action: ObservationAction::Replace,
            obs_value: o.obs_value.map(|v| v + by),
            ..o.clone()
        })
        .collect()
}

/// A missing or wrong chunk refuses a chunked snapshot's view: the hub refuses the entry; a
/// node stores it and its view applier refuses to apply it until the chunks are right.
pub fn chunked_snapshot_refused(t: &Target) {
    let v = &*t.view;
    let all = chunked_observations(25);
    let (manifest, bytes) = encode_chunks(&all, 10);
    assert_eq!(bytes.len(), 3);
    let staged: Vec<(Digest, Vec<u8>)> = manifest
        .chunks
        .iter()
        .map(|c| c.sha256)
        .zip(bytes.iter().cloned())
        .collect();
    let entry = snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);

    assert_eq!(v.chunk(&staged[0].0).unwrap(), None);
    let shas: Vec<Digest> = staged.iter().map(|(sha, _)| *sha).collect();
    assert_eq!(v.has_chunks(&shas).unwrap(), vec![false; 3]);
    assert!(v.has_chunks(&[]).unwrap().is_empty());
    v.stage_chunks(&staged[..2]).unwrap();
    v.stage_chunks(&[]).unwrap();
    // In the order asked, an unknown digest false.
    assert_eq!(
        v.has_chunks(&[shas[2], shas[1], Digest::of(b"unknown"), shas[0]])
            .unwrap(),
        vec![false, true, false, true]
    );
    assert_conflict((t.add)(&entry), "chunk 2 is not staged");
    assert_eq!(v.applied_feed_size().unwrap(), 0);
    assert!(query(t, &filter("IND")).is_empty());

    // A chunk staged under a digest its bytes do not have.
    let wrong = vec![(staged[2].0, staged[1].1.clone())];
    v.stage_chunks(&wrong).unwrap();
    assert_conflict((t.add)(&entry), "chunk 2 does not match");
    assert_eq!(v.applied_feed_size().unwrap(), 0);
    assert!(query(t, &filter("IND")).is_empty());
}

/// A chunked snapshot applies from the staged chunks. (A fresh store: at a node the refused
/// snapshot of [`chunked_snapshot_refused`] stays mirrored, its view waiting for chunks that a
/// real mirror stages only once they match.)
pub fn chunked_snapshot(t: &Target) {
    let v = &*t.view;
    let all = chunked_observations(25);
    let (manifest, bytes) = encode_chunks(&all, 9);
    let staged: Vec<(Digest, Vec<u8>)> = manifest
        .chunks
        .iter()
        .map(|c| c.sha256)
        .zip(bytes.iter().cloned())
        .collect();
    v.stage_chunks(&staged).unwrap();
    v.stage_chunks(&staged[..1]).unwrap();
    for (sha, b) in &staged {
        assert_eq!(v.chunk(sha).unwrap().as_ref(), Some(b));
    }
    let entry = snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    (t.add)(&entry).unwrap();
    assert_eq!(v.applied_feed_size().unwrap(), 1);
    assert_eq!(v.last_content_feed_index().unwrap(), 1);
    let rows = query(t, &filter("IND"));
    assert_eq!(rows.len(), 25);
    for (i, (row, o)) in rows.iter().zip(&all).enumerate() {
        assert_eq!(row.provenance.position, i as u64);
        assert_eq!(row.provenance.digest, entry.digest);
        assert_eq!(row.observation.obs_value, o.obs_value);
        assert_eq!(row.observation.time_period, o.time_period);
    }
}

/// Chunks (SHA-256, bytes) of `observations` cut `per_chunk` at a time, and the manifest.
pub fn chunks_of(
    observations: &[Observation],
    per_chunk: usize,
) -> (ChunkManifest, Vec<(Digest, Vec<u8>)>) {
    let (manifest, bytes) = encode_chunks(observations, per_chunk);
    let chunks = manifest
        .chunks
        .iter()
        .map(|c| c.sha256)
        .zip(bytes)
        .collect();
    (manifest, chunks)
}

fn digests(chunks: &[(Digest, Vec<u8>)]) -> Vec<Digest> {
    chunks.iter().map(|(sha, _)| *sha).collect()
}

/// The hub's `append` stores a chunked snapshot's chunks in the statement's own transaction:
/// an aborted or refused append leaves no chunk behind, an accepted one leaves them all.
pub fn hub_chunks_stored_with_statement<S: HubStore + IndicatorStore>(store: &S) {
    let all = chunked_observations(25);
    let (manifest, chunks) = chunks_of(&all, 10);
    let shas = digests(&chunks);
    let none = vec![false; shas.len()];

    // Aborted: the feed index does not continue the log.
    let gap = snapshot_entry(
        2,
        "node-a",
        1,
        1,
        "IND",
        Vec::new(),
        Some(manifest.clone()),
        1_000,
    );
    assert_conflict(
        store.append(&[gap.stored()], &chunks, &[], &[], None),
        "feed index gap",
    );
    assert_eq!(store.has_chunks(&shas).unwrap(), none);

    // A chunk neither passed nor stored: refused, and the others are not kept either.
    let entry = snapshot_entry(1, "node-a", 1, 1, "IND", Vec::new(), Some(manifest), 1_000);
    assert_conflict(
        store.append(&[entry.stored()], &chunks[..2], &[], &[], None),
        "chunk 2 missing",
    );
    assert_eq!(store.has_chunks(&shas).unwrap(), none);
    assert_eq!(store.applied_feed_size().unwrap(), 0);

    // Accepted: the chunks are stored; the view is applied from them afterwards, by the
    // background step, in a transaction of its own.
    store
        .append(&[entry.stored()], &chunks, &[], &[], None)
        .unwrap();
    assert_eq!(store.has_chunks(&shas).unwrap(), vec![true; shas.len()]);
    for (sha, bytes) in &chunks {
        assert_eq!(store.chunk(sha).unwrap().as_ref(), Some(bytes));
    }
    assert_eq!(store.applied_feed_size().unwrap(), 0);
    assert!(
        store
            .query_observations(&filter("IND"), None, 1000)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.apply_view_step().unwrap(), 1);
    assert_eq!(store.applied_feed_size().unwrap(), 1);
    assert_eq!(
        store
            .query_observations(&filter("IND"), None, 1000)
            .unwrap()
            .len(),
        25
    );
}

/// The node's `append_own` stores its chunks in the statement's own transaction: a refused
/// append leaves no chunk behind.
pub fn node_chunks_stored_with_own_statement<S: NodeStore + IndicatorStore>(store: &S) {
    let (_, chunks) = chunks_of(&chunked_observations(25), 10);
    let shas = digests(&chunks);
    assert_conflict(
        store.append_own(&crate::conformance::own(2, "c", None), &chunks),
        "seq 2 does not follow the head",
    );
    assert_eq!(store.has_chunks(&shas).unwrap(), vec![false; shas.len()]);
    let chunked = crate::OwnStatement {
        chunked: true,
        ..crate::conformance::own(1, "c", None)
    };
    store.append_own(&chunked, &chunks).unwrap();
    assert_eq!(store.has_chunks(&shas).unwrap(), vec![true; shas.len()]);
    for (sha, bytes) in &chunks {
        assert_eq!(store.chunk(sha).unwrap().as_ref(), Some(bytes));
    }
    // The outbox finds it chunked without decoding it.
    assert_eq!(store.pending(10).unwrap(), vec![chunked]);
}

/// hub_document finds a chain's latest document or the one of a seq.
pub fn hub_documents(t: &Target) {
    let v = &*t.view;
    assert_eq!(v.hub_document("hub/catalogue", None).unwrap(), None);
    let entries = [
        hub_document_entry(1, "hub/catalogue", 1, "catalogue", 1_000),
        hub_document_entry(2, "hub/coherence", 1, "coherence_report", 2_000),
        hub_document_entry(3, "hub/catalogue", 2, "catalogue", 3_000),
    ];
    add_all(t, &entries);
    let doc = |e: &FeedEntry| HubDocument {
        feed_index: e.feed_index,
        seq: e.seq,
        digest: e.digest,
        envelope: e.envelope.clone(),
        accepted_at_ms: e.accepted_at_ms,
    };
    assert_eq!(
        v.hub_document("hub/catalogue", None).unwrap(),
        Some(doc(&entries[2]))
    );
    assert_eq!(
        v.hub_document("hub/catalogue", Some(1)).unwrap(),
        Some(doc(&entries[0]))
    );
    assert_eq!(
        v.hub_document("hub/coherence", None).unwrap(),
        Some(doc(&entries[1]))
    );
    assert_eq!(v.hub_document("hub/catalogue", Some(3)).unwrap(), None);
    assert_eq!(
        v.hub_document("hub/catalogue", Some(u64::MAX)).unwrap(),
        None
    );
    assert_eq!(v.hub_document("hub/other", None).unwrap(), None);
    // Hub documents are not content: they neither move the content index nor fill the view.
    assert_eq!(v.applied_feed_size().unwrap(), 3);
    assert_eq!(v.last_content_feed_index().unwrap(), 0);
    assert!(v.coverage().unwrap().is_empty());
}

/// A feed mixing everything: history, conflicts, policies, a chunked snapshot and hub
/// documents. Returns the entries and the chunks to stage first.
pub fn mixed_feed() -> (Vec<FeedEntry>, Vec<(Digest, Vec<u8>)>) {
    let mut entries = history_feed();
    entries.extend(conflict_feed_after(4));
    entries.push(policy_entry(8, "node-a", 6, "doc-1", 1, &[2, 1], 8_000));
    entries.push(hub_document_entry(
        9,
        "hub/catalogue",
        1,
        "catalogue",
        9_000,
    ));
    entries.push(policy_entry(10, "node-a", 7, "doc-1", 2, &[3], 10_000));
    let all = chunked_observations(1_234);
    let (manifest, bytes) = encode_chunks(&all, 100);
    let staged = manifest
        .chunks
        .iter()
        .map(|c| c.sha256)
        .zip(bytes)
        .collect();
    entries.push(snapshot_entry(
        11,
        "node-c",
        1,
        1,
        "IND",
        Vec::new(),
        Some(manifest),
        11_000,
    ));
    entries.push(ind_entry(
        12,
        "node-c",
        2,
        vec![
            obs(
                ObservationAction::Replace,
                "LKA",
                "1900",
                &[("SEX", "F"), ("AGE", "A0")],
                Some(-1.0),
            ),
            obs(
                ObservationAction::Delete,
                "LKA",
                "1901",
                &[("AGE", "A0"), ("SEX", "F")],
                None,
            ),
        ],
        12_000,
    ));
    entries.push(hub_document_entry(
        13,
        "hub/coherence",
        1,
        "coherence_report",
        13_000,
    ));
    (entries, staged)
}

/// Feeds [`mixed_feed`] to both targets and checks that every read answers identically.
pub fn same_answers(a: &Target, b: &Target) {
    for t in [a, b] {
        fill_mixed(t);
    }
    answer_alike(&*a.view, &*b.view);
}

/// Gives `t` the feed of [`mixed_feed`] (chunks staged first).
pub fn fill_mixed(t: &Target) {
    let (entries, staged) = mixed_feed();
    t.view.stage_chunks(&staged).unwrap();
    add_all(t, &entries);
}

/// Asserts that two views holding [`mixed_feed`] give the same answer to every query (many
/// filters and pages, the coherence reads, hub documents and action checks).
pub fn answer_alike(va: &dyn IndicatorStore, vb: &dyn IndicatorStore) {
    let mut filters = Vec::new();
    for indicator in ["IND", "OTHER"] {
        for as_of_ms in [None, Some(2_500), Some(6_500), Some(11_000)] {
            for updated_after_ms in [None, Some(1_000), Some(5_000)] {
                for include_history in [false, true] {
                    filters.push(ObservationFilter {
                        as_of_ms,
                        updated_after_ms,
                        include_history,
                        ..filter(indicator)
                    });
                }
            }
        }
    }
    filters.push(ObservationFilter {
        ref_areas: vec!["LKA".to_string(), "BGD".to_string()],
        start_date: Some("1950-01-01".to_string()),
        end_date: Some("2020-12-31".to_string()),
        dimensions: vec![("SEX".to_string(), "F".to_string())],
        node_ids: vec!["node-c".to_string(), "node-a".to_string()],
        ..filter("IND")
    });
    let mut compared = 0;
    for f in &filters {
        for (after, limit) in [(None, 10_000), (None, 7), (Some((11, 500)), 50)] {
            let rows = va.query_observations(f, after, limit).unwrap();
            assert_eq!(
                rows,
                vb.query_observations(f, after, limit).unwrap(),
                "{f:?}"
            );
            compared += rows.len();
        }
    }
    assert!(
        compared > 10_000,
        "the filters returned only {compared} rows"
    );
    assert_eq!(va.applied_feed_size().unwrap(), 13);
    assert_eq!(vb.applied_feed_size().unwrap(), 13);
    assert_eq!(va.last_content_feed_index().unwrap(), 12);
    assert_eq!(vb.last_content_feed_index().unwrap(), 12);
    let conflicts = va.conflicts(100).unwrap();
    assert!(conflicts.1 > 0);
    assert_eq!(conflicts, vb.conflicts(100).unwrap());
    assert_eq!(va.coverage().unwrap(), vb.coverage().unwrap());
    assert_eq!(va.policy_coverage().unwrap(), vb.policy_coverage().unwrap());
    for after in [0, 2, 11] {
        let revisions = va.revisions_since(after, 100).unwrap();
        assert!(revisions.1 > 0);
        assert_eq!(revisions, vb.revisions_since(after, 100).unwrap());
    }
    for (chain, seq) in [("hub/catalogue", None), ("hub/coherence", Some(1))] {
        let doc = va.hub_document(chain, seq).unwrap();
        assert!(doc.is_some());
        assert_eq!(doc, vb.hub_document(chain, seq).unwrap());
    }
    let probe = chunked_observations(1_300);
    let violations = va
        .check_observation_actions("node-c", "IND", &probe, 10_000)
        .unwrap();
    assert_eq!(violations.len(), 1_233, "all but the deleted key exist");
    assert_eq!(
        violations,
        vb.check_observation_actions("node-c", "IND", &probe, 10_000)
            .unwrap()
    );
}

/// A MIG_STOCK observation in persons (millions): the shipped catalogue defaults its SEX and
/// AGE to `_T`.
pub fn stock(
    action: ObservationAction,
    area: &str,
    period: &str,
    dims: &[(&str, &str)],
    value: Option<f64>,
) -> Observation {
    in_unit(obs(action, area, period, dims, value), "persons", 6)
}

/// A MIG_STOCK snapshot entry of `node_id` with revision = `seq`.
pub fn stock_entry(
    feed_index: u64,
    node_id: &str,
    seq: u64,
    observations: Vec<Observation>,
    accepted_at_ms: i64,
) -> FeedEntry {
    let revision = u32::try_from(seq).expect("revision");
    snapshot_entry(
        feed_index,
        node_id,
        seq,
        revision,
        "MIG_STOCK",
        observations,
        None,
        accepted_at_ms,
    )
}

/// The two lines, `MIG_STOCK,LKA,2020,_T,_T,40.5` and `MIG_STOCK,LKA,2020,,,41.0`, as
/// legacy statements accepted before the key rule (both forms in one snapshot at feed 3, and
/// a later snapshot leaving the dimensions out at feed 4), after the shipped catalogue (feed
/// 2); node-b's snapshot at feed 1, before any catalogue, is keyed as given.
pub fn key_rule_feed() -> Vec<FeedEntry> {
    use ObservationAction::{Append, Replace};
    let total = [("SEX", "_T"), ("AGE", "_T")];
    vec![
        stock_entry(
            1,
            "node-b",
            1,
            vec![stock(Append, "LKA", "2019", &[], Some(1.0))],
            1_000,
        ),
        hub_document_entry(2, "hub/catalogue", 1, crate::CATALOGUE_KIND, 2_000),
        stock_entry(
            3,
            "node-a",
            1,
            vec![
                stock(Append, "LKA", "2020", &total, Some(40.5)),
                stock(Append, "LKA", "2020", &[], Some(41.0)),
                stock(Append, "LKA", "2021", &[("AGE", "_T")], Some(7.0)),
            ],
            3_000,
        ),
        stock_entry(
            4,
            "node-a",
            2,
            vec![
                stock(Append, "LKA", "2021", &total, Some(7.5)),
                stock(Replace, "LKA", "2020", &[("SEX", "_T")], Some(42.0)),
            ],
            4_000,
        ),
        stock_entry(
            5,
            "node-c",
            1,
            vec![stock(Append, "LKA", "2020", &[], Some(50.0))],
            5_000,
        ),
    ]
}

/// One key per observation: a dimension left out and its catalogue default are one key, in
/// the view, the action check, the revisions and the conflicts; entries accepted before the
/// rule apply as revisions of the same key (the later wins), and the action rule still holds
/// between keys no default merged.
pub fn key_rule(t: &Target) {
    use ObservationAction::{Append, Replace};
    let v = &*t.view;
    let feed = key_rule_feed();
    add_all(t, &feed);
    let stock_filter = |areas: &[&str]| ObservationFilter {
        ref_areas: areas.iter().map(|a| a.to_string()).collect(),
        ..filter("MIG_STOCK")
    };
    let dims = |r: &ObservationRow| crate::dimension_key(&r.observation.dimensions);
    // In force: one version per (node, key), the defaults named.
    let now = query(t, &stock_filter(&["LKA"]));
    let summary: Vec<(String, String, String, Option<f64>)> = now
        .iter()
        .map(|r| {
            (
                r.provenance.node_id.clone(),
                r.observation.time_period.clone(),
                dims(r),
                r.observation.obs_value,
            )
        })
        .collect();
    let total = "AGE=_T;SEX=_T".to_string();
    assert_eq!(
        summary,
        vec![
            // Before the first catalogue: keyed as given.
            ("node-b".into(), "2019".into(), String::new(), Some(1.0)),
            ("node-a".into(), "2021".into(), total.clone(), Some(7.5)),
            ("node-a".into(), "2020".into(), total.clone(), Some(42.0)),
            ("node-c".into(), "2020".into(), total.clone(), Some(50.0)),
        ]
    );
    // The history of node-a's LKA 2020 total: three versions, each superseded by the next.
    let history = query(
        t,
        &ObservationFilter {
            include_history: true,
            node_ids: vec!["node-a".into()],
            ref_areas: vec!["LKA".into()],
            start_date: Some("2020-01-01".into()),
            end_date: Some("2020-12-31".into()),
            ..filter("MIG_STOCK")
        },
    );
    assert_eq!(
        positions(&history),
        vec![(3, 0, Some(3_000)), (3, 1, Some(4_000)), (4, 1, None)]
    );
    assert!(history.iter().all(|r| dims(r) == total));
    // A query for SEX=_T selects the observations that left SEX out.
    let by_default = query(
        t,
        &ObservationFilter {
            dimensions: vec![("SEX".into(), "_T".into())],
            ..stock_filter(&[])
        },
    );
    assert_eq!(by_default.len(), 3);

    // The action check keys alike: appending the total again is refused in either form.
    let probe = vec![
        stock(Append, "LKA", "2020", &[], Some(1.0)),
        stock(
            Append,
            "LKA",
            "2021",
            &[("SEX", "_T"), ("AGE", "_T")],
            Some(1.0),
        ),
        stock(Replace, "LKA", "2021", &[], Some(1.0)),
        stock(Append, "LKA", "2020", &[("SEX", "F")], Some(1.0)),
    ];
    let found = v
        .check_observation_actions("node-a", "MIG_STOCK", &probe, 100)
        .unwrap();
    let summary: Vec<(&str, &str)> = found.iter().map(|x| (x.field.as_str(), x.reason)).collect();
    assert_eq!(
        summary,
        vec![
            (
                "indicator_snapshot.observations[0]",
                reasons::OBSERVATION_EXISTS
            ),
            (
                "indicator_snapshot.observations[1]",
                reasons::OBSERVATION_EXISTS
            ),
        ]
    );
    assert!(
        found[0]
            .description
            .contains("MIG_STOCK LKA 2020 (AGE=_T, SEX=_T)"),
        "{}",
        found[0].description
    );

    // The revisions pair each version with its predecessor under the one key.
    let (revisions, count) = v.revisions_since(3, 10).unwrap();
    assert_eq!(count, 1);
    assert_eq!(revisions[0].old.provenance.position, 1);
    assert_eq!(revisions[0].new.observation.obs_value, Some(42.0));
    // node-a and node-c disagree on the same total: one conflict, whatever form each used.
    let (conflicts, count) = v.conflicts(10).unwrap();
    assert_eq!(count, 1);
    let nodes: Vec<&str> = conflicts[0]
        .values
        .iter()
        .map(|r| r.provenance.node_id.as_str())
        .collect();
    assert_eq!(nodes, ["node-a", "node-c"]);

    // Between keys no default merged, the apply step still refuses a broken action.
    let explicit = [("SEX", "F"), ("AGE", "_T")];
    (t.add)(&stock_entry(
        6,
        "node-a",
        3,
        vec![stock(Append, "LKA", "2022", &explicit, Some(3.0))],
        6_000,
    ))
    .unwrap();
    assert_conflict(
        (t.add)(&stock_entry(
            7,
            "node-a",
            4,
            vec![stock(Append, "LKA", "2022", &explicit, Some(3.5))],
            7_000,
        )),
        "an APPEND of an explicit key in force",
    );
    assert_eq!(v.applied_feed_size().unwrap(), 6);
}

/// The streamed snapshot's skip of the per-key action probes rests on this answer: "nothing"
/// only while the view holds no version of the indicator from any node, and a key deleted
/// since still counts as something (its tombstone is a version).
pub fn nothing_in_force_is_asked_per_indicator(t: &Target) {
    let v = &*t.view;
    let nothing =
        |indicator: &str| crate::snapshot_staging::nothing_in_force(v, indicator).unwrap();
    assert!(nothing("IND"), "an empty view");
    add_all(t, &history_feed()[..1]);
    assert!(!nothing("IND"), "node-a's rows of IND");
    assert!(nothing("OTHER"), "another indicator's view is still empty");
    add_all(t, &history_feed()[1..3]);
    assert!(!nothing("IND"), "LKA 2020 deleted, BGD 2020 in force");
}
