//! The coherence report: conflicts between regional processes' figures, coverage and its
//! gaps, policy coverage of the GCM objectives, and revisions since the previous report.
//!
//! The hub regenerates it when new content (an indicator snapshot or a policy summary) has
//! been accepted since the last report, signs it with its statement signing key and logs it
//! through the sequencer in the chain `{hub_id}/coherence` (seq = report number,
//! prev_digest = the previous report's payload digest), so it is witnessed and mirrored like
//! every hub-issued document. The report is assembled by [`assemble`], a pure function of the
//! store's rows, so what it says can be tested without a store.

use crate::HubBackend;
use crate::catalogue::SharedCatalogue;
use crate::ingest::{Ingest, IngestError, IngestOutcome, VerifiedStatement};
use crate::metrics::HubMetrics;
use rcpfed_core::Digest;
use rcpfed_core::coherence::{
    COHERENCE_REPORT_PAYLOAD_TYPE, CoherenceReport, Conflict, CoverageRow, ObservationKey,
    PolicyCoverage, ReportedValue, RevisionEntry, sign_report,
};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_grpc::shared::SharedFederation;
use rcpfed_store::{
    COHERENCE_KIND, ConflictRows, CoverageData, HubDocument, ObservationRow, PolicyCoverageData,
    RevisionRows, coherence_chain,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Document name of coherence reports in the log.
pub const COHERENCE_DOCUMENT: &str = "coherence";

/// Most conflicts and most revisions listed in one report (the totals count all), so that a
/// report stays a modest feed entry however much the regions disagree.
pub const MAX_LISTED: usize = 1000;

/// The Global Compact for Migration's objectives.
pub const GCM_OBJECTIVES: std::ops::RangeInclusive<u32> = 1..=23;

/// Everything one report is built from.
#[derive(Clone, Debug, Default)]
pub struct ReportInputs {
    /// The federation.
    pub federation_id: String,
    /// This report's number.
    pub number: u64,
    /// When it is generated (unix ms).
    pub generated_at_ms: i64,
    /// Feed entries the store had applied before it was read.
    pub feed_size: u64,
    /// The previous report's feed size (0 for the first).
    pub previous_feed_size: u64,
    /// The previous report's payload digest.
    pub previous_digest: Option<Digest>,
    /// Feed version of the catalogue in force.
    pub catalogue_version: u64,
    /// Conflicts, at most [`MAX_LISTED`], and how many there are.
    pub conflicts: (Vec<ConflictRows>, u64),
    /// Coverage per (node, indicator).
    pub coverage: Vec<CoverageData>,
    /// Member states of each node in the registry in force, now.
    pub member_states: HashMap<String, BTreeSet<String>>,
    /// Policy coverage per node.
    pub policy_coverage: Vec<PolicyCoverageData>,
    /// Revisions since the previous report, at most [`MAX_LISTED`], and how many there are.
    pub revisions: (Vec<RevisionRows>, u64),
}

/// The member states of every member at `today` (the gaps of coverage are measured against
/// the registry in force, not against every state a member ever had).
pub fn member_states_now(
    federation: &Federation,
    today: time::Date,
) -> HashMap<String, BTreeSet<String>> {
    federation
        .members()
        .map(|m| {
            let states = m
                .states
                .iter()
                .filter(|s| m.has_state_during(&s.iso3, today, today))
                .map(|s| s.iso3.clone())
                .collect();
            (m.id.clone(), states)
        })
        .collect()
}

/// The key of an observation, without its node.
fn key_of(row: &ObservationRow) -> ObservationKey {
    let mut dimensions = row.observation.dimensions.clone();
    dimensions.sort();
    ObservationKey {
        indicator: row.indicator.clone(),
        ref_area: row.observation.ref_area.clone(),
        time_period: row.observation.time_period.clone(),
        dimensions,
    }
}

fn reported(row: &ObservationRow) -> ReportedValue {
    ReportedValue {
        observation: row.observation.clone(),
        provenance: row.provenance.clone(),
    }
}

/// OBS_VALUE × 10^UNIT_MULT, if the observation has a value.
fn scaled(row: &ObservationRow) -> Option<f64> {
    row.observation
        .obs_value
        .map(|v| v * 10f64.powi(row.observation.unit_mult))
}

/// (largest − smallest) / largest absolute value, over the values that have one; 0 when
/// fewer than two values or all are zero.
pub fn relative_difference(rows: &[ObservationRow]) -> f64 {
    let values: Vec<f64> = rows.iter().filter_map(scaled).collect();
    if values.len() < 2 {
        return 0.0;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let scale = max.abs().max(min.abs());
    if scale == 0.0 {
        0.0
    } else {
        (max - min) / scale
    }
}

/// Builds the report from its inputs.
pub fn assemble(inputs: ReportInputs) -> CoherenceReport {
    let ReportInputs {
        federation_id,
        number,
        generated_at_ms,
        feed_size,
        previous_feed_size,
        previous_digest,
        catalogue_version,
        conflicts: (conflicts, total_conflicts),
        coverage,
        member_states,
        policy_coverage,
        revisions: (revisions, total_revisions),
    } = inputs;
    let conflicts = conflicts
        .iter()
        .filter_map(|c| {
            let first = c.values.first()?;
            Some(Conflict {
                key: key_of(first),
                values: c.values.iter().map(reported).collect(),
                relative_difference: relative_difference(&c.values),
            })
        })
        .collect();
    let no_states = BTreeSet::new();
    let coverage = coverage
        .into_iter()
        .map(|c| {
            let states = member_states.get(&c.node_id).unwrap_or(&no_states);
            let reported: BTreeSet<&str> = c.ref_areas.iter().map(String::as_str).collect();
            CoverageRow {
                missing_member_states: states
                    .iter()
                    .filter(|s| !reported.contains(s.as_str()))
                    .cloned()
                    .collect(),
                node_id: c.node_id,
                indicator: c.indicator,
                ref_areas: c.ref_areas,
                first_period: c.first_period,
                last_period: c.last_period,
                observation_count: c.observation_count,
            }
        })
        .collect();
    let addressed: BTreeSet<u32> = policy_coverage
        .iter()
        .flat_map(|p| p.gcm_objectives.iter().copied())
        .collect();
    let unaddressed_gcm_objectives = GCM_OBJECTIVES.filter(|o| !addressed.contains(o)).collect();
    // Per node, objectives sorted and distinct (the store says so; the report guarantees it).
    let policy_coverage = policy_coverage
        .into_iter()
        .map(|p| PolicyCoverage {
            gcm_objectives: p
                .gcm_objectives
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            node_id: p.node_id,
            policy_documents: p.policy_documents,
        })
        .collect();
    let revisions = revisions
        .iter()
        .map(|r| RevisionEntry {
            node_id: r.new.provenance.node_id.clone(),
            key: key_of(&r.new),
            old_value: reported(&r.old),
            new_value: reported(&r.new),
        })
        .collect();
    CoherenceReport {
        federation_id,
        number,
        generated_at_ms,
        feed_size,
        previous_feed_size,
        previous_digest,
        catalogue_version,
        conflicts,
        total_conflicts,
        coverage,
        policy_coverage,
        unaddressed_gcm_objectives,
        revisions,
        total_revisions,
    }
}

/// Issues coherence reports.
pub struct Reporter {
    /// The hub's store.
    pub store: Arc<dyn HubBackend>,
    /// The sequencer, which logs each report.
    pub ingest: Ingest,
    /// The registry in force (member states for the gaps).
    pub federation: SharedFederation,
    /// The catalogue in force (its version is named in the report).
    pub catalogue: SharedCatalogue,
    /// The hub member id.
    pub hub_id: String,
    /// The hub's statement signing key.
    pub key: SecretKey,
    /// Counts the reports issued.
    pub metrics: HubMetrics,
}

/// The previous report: (number, feed_size, digest).
fn previous_report(doc: &HubDocument) -> Result<(u64, u64, Digest), String> {
    let envelope = SignedEnvelope::decode(&doc.envelope)
        .map_err(|e| format!("logged coherence report {} does not decode: {e}", doc.seq))?;
    let report = CoherenceReport::decode_payload(&envelope.payload)
        .map_err(|e| format!("logged coherence report {} does not decode: {e}", doc.seq))?;
    Ok((doc.seq, report.feed_size, doc.digest))
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Reporter {
    /// The next report as a statement to log, or None when no content arrived since the last.
    pub fn prepare(&self) -> Result<Option<VerifiedStatement>, String> {
        let store = self.store.as_ref();
        let chain = coherence_chain(&self.hub_id);
        let last_content = store.last_content_feed_index().map_err(|e| e.to_string())?;
        let previous = store
            .hub_document(&chain, None)
            .map_err(|e| e.to_string())?
            .map(|doc| previous_report(&doc))
            .transpose()?;
        let previous_feed_size = previous.map_or(0, |p| p.1);
        if last_content <= previous_feed_size {
            return Ok(None);
        }
        // While a snapshot's view goes in over versions in force, the conflicts and coverage
        // queries scan the view (their index cannot serve them then), and the report would
        // describe the view before it anyway: the next tick after its last piece reports.
        if let Some(feed_index) = store.view_superseding().map_err(|e| e.to_string())? {
            tracing::debug!(feed_index, "coherence report waits for a snapshot's view");
            return Ok(None);
        }
        // One read snapshot: the report describes exactly feed entries 1 to feed_size, and
        // content arriving meanwhile makes the next tick issue another report.
        let rows = store
            .coherence_rows(previous_feed_size, MAX_LISTED)
            .map_err(|e| e.to_string())?;
        let federation = self.federation.get();
        let number = previous.map_or(1, |p| p.0 + 1);
        let previous_digest = previous.map(|p| p.2);
        let report = assemble(ReportInputs {
            federation_id: federation.federation_id.clone(),
            number,
            generated_at_ms: now_ms(),
            feed_size: rows.feed_size,
            previous_feed_size,
            previous_digest,
            catalogue_version: self.catalogue.get().version,
            conflicts: rows.conflicts,
            coverage: rows.coverage,
            member_states: member_states_now(&federation, time::OffsetDateTime::now_utc().date()),
            policy_coverage: rows.policy_coverage,
            revisions: rows.revisions,
        });
        let envelope = sign_report(&report, &self.key);
        // A report the feed could not hand on whole is not logged (docs/spec/limits.md).
        if let Err(r) = rcpfed_core::limits::check_envelope(
            &envelope,
            rcpfed_core::limits::MAX_HUB_DOCUMENT_BYTES,
        ) {
            tracing::error!(number, reason = r.reason, message = %r.message, "coherence report over the protocol limits; not issued");
            return Ok(None);
        }
        Ok(Some(VerifiedStatement {
            node_id: chain,
            seq: number,
            prev_digest: previous_digest,
            digest: envelope.digest(),
            payload_type: COHERENCE_REPORT_PAYLOAD_TYPE.to_string(),
            kind: COHERENCE_KIND,
            document: COHERENCE_DOCUMENT.to_string(),
            revision: u32::try_from(number).unwrap_or(u32::MAX),
            envelope: envelope.encode(),
            leaf_hash: envelope.leaf_hash(),
            snapshot: None,
            decoded: rcpfed_store::DecodedStatement::default(),
        }))
    }

    /// Issues a report if content arrived since the last one; returns its number.
    pub async fn tick(self: &Arc<Self>) -> Result<Option<u64>, String> {
        let me = Arc::clone(self);
        let statement = tokio::task::spawn_blocking(move || me.prepare())
            .await
            .map_err(|e| format!("report builder panicked: {e}"))??;
        let Some(statement) = statement else {
            return Ok(None);
        };
        let number = statement.seq;
        match self.ingest.submit(statement).await {
            Ok(IngestOutcome::Accepted { .. }) => {
                self.metrics.coherence_report();
                Ok(Some(number))
            }
            Ok(IngestOutcome::Duplicate { .. }) => Ok(None),
            Err(IngestError::Rejected(r)) => Err(format!("report {number} refused: {r}")),
            Err(e) => Err(format!("report {number} not logged: {e}")),
        }
    }
}

/// Regenerates the report every `interval` while content keeps arriving, until `shutdown`.
pub async fn run(reporter: Reporter, interval: Duration, shutdown: CancellationToken) {
    let reporter = Arc::new(reporter);
    // The first look is one interval after start-up, not at once: a restart does not issue a
    // report by itself, and an operator's long interval means no report for that long.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let outcome = tokio::select! {
            () = shutdown.cancelled() => break,
            outcome = reporter.tick() => outcome,
        };
        match outcome {
            Ok(Some(number)) => tracing::info!(number, "coherence report issued"),
            Ok(None) => {}
            // Retried at the next tick; the report is a derived view, nothing is lost.
            Err(e) => tracing::warn!(error = %e, "coherence report not issued"),
        }
    }
    tracing::info!("coherence reporter stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcpfed_core::statement::{Observation, ObservationAction};
    use rcpfed_store::ObservationProvenance;

    fn row(node: &str, area: &str, value: Option<f64>, mult: i32, feed: u64) -> ObservationRow {
        ObservationRow {
            indicator: "SDG_10_7_3".into(),
            observation: Observation {
                action: if value.is_some() {
                    ObservationAction::Append
                } else {
                    ObservationAction::Delete
                },
                ref_area: area.into(),
                time_period: "2020".into(),
                dimensions: vec![("SEX".into(), "F".into()), ("AGE".into(), "_T".into())],
                obs_value: value,
                obs_status: "A".into(),
                unit_measure: "persons".into(),
                unit_mult: mult,
                conf_status: String::new(),
                footnote: String::new(),
                source: String::new(),
            },
            provenance: ObservationProvenance {
                node_id: node.into(),
                digest: Digest::of(node.as_bytes()),
                document: format!("regions/{node}/deaths"),
                revision: 1,
                feed_index: feed,
                position: 0,
                accepted_at_ms: 1_700_000_000_000,
            },
            superseded_at_ms: None,
        }
    }

    fn inputs() -> ReportInputs {
        let mut member_states = HashMap::new();
        member_states.insert(
            "colombo".to_string(),
            ["BGD", "LKA", "NPL"].map(String::from).into(),
        );
        ReportInputs {
            federation_id: "gfmd-test".into(),
            number: 3,
            generated_at_ms: 1_700_000_000_500,
            feed_size: 42,
            previous_feed_size: 30,
            previous_digest: Some(Digest::of(b"report 2")),
            catalogue_version: 2,
            conflicts: (
                vec![ConflictRows {
                    values: vec![
                        row("abu-dhabi", "BGD", Some(1.0), 3, 10),
                        row("colombo", "BGD", Some(800.0), 0, 12),
                    ],
                }],
                7,
            ),
            coverage: vec![
                CoverageData {
                    node_id: "colombo".into(),
                    indicator: "SDG_10_7_3".into(),
                    ref_areas: vec!["BGD".into(), "WLD".into()],
                    first_period: "2019".into(),
                    last_period: "2021".into(),
                    observation_count: 5,
                },
                CoverageData {
                    node_id: "gone".into(),
                    indicator: "SDG_10_7_3".into(),
                    ref_areas: vec!["FRA".into()],
                    first_period: "2019".into(),
                    last_period: "2019".into(),
                    observation_count: 1,
                },
            ],
            member_states,
            policy_coverage: vec![
                PolicyCoverageData {
                    node_id: "colombo".into(),
                    gcm_objectives: vec![1, 2, 23],
                    policy_documents: 2,
                },
                PolicyCoverageData {
                    node_id: "midwa".into(),
                    gcm_objectives: vec![2, 5, 5, 3],
                    policy_documents: 1,
                },
            ],
            revisions: (
                vec![RevisionRows {
                    old: row("colombo", "LKA", Some(5.0), 0, 12),
                    new: row("colombo", "LKA", Some(6.0), 0, 35),
                }],
                1,
            ),
        }
    }

    #[test]
    fn report_carries_its_chain_position_and_totals() {
        let r = assemble(inputs());
        assert_eq!(r.federation_id, "gfmd-test");
        assert_eq!(r.number, 3);
        assert_eq!(r.feed_size, 42);
        assert_eq!(r.previous_feed_size, 30);
        assert_eq!(r.previous_digest, Some(Digest::of(b"report 2")));
        assert_eq!(r.catalogue_version, 2);
        assert_eq!(r.total_conflicts, 7);
        assert_eq!(r.total_revisions, 1);
        assert_eq!(r.generated_at_ms, 1_700_000_000_500);
        assert_eq!(
            r.to_proto().generated_at,
            Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 500_000_000
            })
        );
        let first = assemble(ReportInputs {
            number: 1,
            previous_feed_size: 0,
            previous_digest: None,
            ..inputs()
        });
        assert!(first.previous_digest.is_none());
    }

    #[test]
    fn conflict_names_both_sides_with_sources_and_scaled_difference() {
        let r = assemble(inputs());
        assert_eq!(r.conflicts.len(), 1);
        let c = &r.conflicts[0];
        let key = &c.key;
        assert_eq!(key.indicator, "SDG_10_7_3");
        assert_eq!(key.ref_area, "BGD");
        assert_eq!(key.time_period, "2020");
        // Dimensions sorted by id.
        let dims: Vec<&str> = key.dimensions.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(dims, ["AGE", "SEX"]);
        let nodes: Vec<&str> = c
            .values
            .iter()
            .map(|v| v.provenance.node_id.as_str())
            .collect();
        assert_eq!(nodes, ["abu-dhabi", "colombo"]);
        let p = &c.values[1].provenance;
        assert_eq!(p.digest, Digest::of(b"colombo"));
        assert_eq!(p.feed_index, 12);
        assert_eq!(p.to_proto().leaf_index, 11);
        // 1 × 10^3 = 1000 against 800: (1000 − 800) / 1000.
        assert!((c.relative_difference - 0.2).abs() < 1e-12);
    }

    #[test]
    fn coverage_gaps_are_member_states_in_force_without_observations() {
        let r = assemble(inputs());
        assert_eq!(r.coverage.len(), 2);
        let colombo = &r.coverage[0];
        assert_eq!(colombo.node_id, "colombo");
        assert_eq!(colombo.ref_areas, ["BGD", "WLD"]);
        assert_eq!(colombo.missing_member_states, ["LKA", "NPL"]);
        assert_eq!(colombo.first_period, "2019");
        assert_eq!(colombo.last_period, "2021");
        assert_eq!(colombo.observation_count, 5);
        // A node the registry no longer lists has no gaps to report.
        assert!(r.coverage[1].missing_member_states.is_empty());
    }

    #[test]
    fn objectives_no_node_addresses_are_listed() {
        let r = assemble(inputs());
        assert_eq!(r.policy_coverage.len(), 2);
        assert_eq!(r.policy_coverage[1].gcm_objectives, [2, 3, 5]);
        let expected: Vec<u32> = (1..=23).filter(|o| ![1, 2, 3, 5, 23].contains(o)).collect();
        assert_eq!(r.unaddressed_gcm_objectives, expected);
        let none = assemble(ReportInputs {
            policy_coverage: Vec::new(),
            ..inputs()
        });
        assert_eq!(none.unaddressed_gcm_objectives.len(), 23);
    }

    #[test]
    fn revisions_carry_old_and_new_values() {
        let r = assemble(inputs());
        assert_eq!(r.revisions.len(), 1);
        let rev = &r.revisions[0];
        assert_eq!(rev.node_id, "colombo");
        assert_eq!(rev.key.ref_area, "LKA");
        assert_eq!(rev.old_value.observation.obs_value, Some(5.0));
        assert_eq!(rev.new_value.observation.obs_value, Some(6.0));
    }

    fn federation(hub: &SecretKey) -> Federation {
        let node = SecretKey::from_seed(&[6; 32]);
        let text = format!(
            "federation_id = \"{fed}\"\nhub_id = \"gfmd\"\n\
             [[members]]\nid = \"gfmd\"\nname = \"Hub\"\nkind = \"hub\"\nroles = [\"reader\"]\nspiffe_id = \"spiffe://{fed}/node/gfmd\"\n\
             [[members.keys]]\nkey_id = \"{id}\"\npublic_key = \"{pk}\"\n\
             [[members]]\nid = \"colombo\"\nname = \"Colombo\"\nkind = \"RCP\"\nroles = [\"publisher\"]\nspiffe_id = \"spiffe://{fed}/node/colombo\"\n\
             [[members.keys]]\nkey_id = \"{node_id}\"\npublic_key = \"{node_pk}\"\n\
             [[members.states]]\niso3 = \"BGD\"\n\
             [[members.states]]\niso3 = \"LKA\"\n\
             [[members.states]]\niso3 = \"NPL\"\nuntil = \"2001-01-01\"\n",
            fed = crate::ingest::testkit::FEDERATION,
            id = hub.key_id(),
            pk = hub.verify_key().to_base64(),
            node_id = node.key_id(),
            node_pk = node.verify_key().to_base64(),
        );
        match Federation::from_toml(&text) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    /// The task's steps over a real store and sequencer: a report on new content only,
    /// chained to the previous one, with conflicts, gaps and revisions.
    #[tokio::test]
    async fn reports_are_issued_on_new_content_and_chained() {
        use crate::ingest::testkit::{obs, snapshot};
        use rcpfed_core::catalogue::{Catalogue, embedded_catalogue_toml};
        use rcpfed_store::SqliteHubStore;

        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn HubBackend> =
            Arc::new(SqliteHubStore::open(&dir.path().join("hub.sqlite")).expect("store"));
        let key = SecretKey::from_seed(&[5; 32]);
        let metrics = HubMetrics::register(&mut prometheus_client::registry::Registry::default());
        let ingest = Ingest::start(
            Arc::clone(&store),
            crate::ingest::ReceiptSigner {
                federation_id: crate::ingest::testkit::FEDERATION.into(),
                hub_id: "gfmd".into(),
                key: key.clone(),
            },
            metrics.clone(),
        )
        .expect("sequencer");
        let issuer = crate::catalogue::Issuer {
            federation_id: crate::ingest::testkit::FEDERATION.into(),
            hub_id: "gfmd".into(),
            hub_keys: vec![key.verify_key().clone()],
            key: key.clone(),
        };
        let catalogue = Catalogue::from_toml(embedded_catalogue_toml()).expect("catalogue");
        let (signed, _) = crate::catalogue::next_version(
            &catalogue,
            None,
            &issuer,
            time::OffsetDateTime::now_utc(),
        )
        .expect("signs")
        .expect("version 1");
        let reporter = Arc::new(Reporter {
            store: Arc::clone(&store),
            ingest: ingest.clone(),
            federation: SharedFederation::new(federation(&key)),
            catalogue: SharedCatalogue::new(signed),
            hub_id: "gfmd".into(),
            key: key.clone(),
            metrics,
        });
        let accept = |st| {
            let ingest = ingest.clone();
            async move {
                match ingest.submit(st).await {
                    Ok(IngestOutcome::Accepted { .. }) => {}
                    other => panic!("expected acceptance, got {other:?}"),
                }
            }
        };
        assert_eq!(reporter.tick().await, Ok(None), "no content, no report");

        use rcpfed_core::statement::ObservationAction::{Append, Replace};
        let colombo_1 = snapshot(
            &key,
            "colombo",
            1,
            None,
            "MIGRANT_STOCK",
            vec![obs(Append, "BGD", Some(100.0))],
        );
        let colombo_1_digest = colombo_1.digest;
        accept(colombo_1).await;
        let midwa_1 = snapshot(
            &key,
            "midwa",
            1,
            None,
            "MIGRANT_STOCK",
            vec![obs(Append, "BGD", Some(120.0))],
        );
        let midwa_1_digest = midwa_1.digest;
        accept(midwa_1).await;
        assert_eq!(reporter.tick().await, Ok(Some(1)));
        assert_eq!(
            reporter.tick().await,
            Ok(None),
            "nothing new since report 1"
        );

        let read = |number: u64| {
            let doc = store
                .hub_document(&coherence_chain("gfmd"), Some(number))
                .expect("read")
                .expect("report logged");
            let envelope = SignedEnvelope::decode(&doc.envelope).expect("envelope");
            assert_eq!(envelope.payload_type, COHERENCE_REPORT_PAYLOAD_TYPE);
            assert!(
                rcpfed_core::envelope::verify_signatures(&envelope, |id| {
                    (id == key.key_id()).then(|| key.verify_key())
                })
                .is_ok()
            );
            (
                doc.digest,
                CoherenceReport::decode_payload(&envelope.payload).expect("report"),
            )
        };
        let (digest_1, first) = read(1);
        assert_eq!(first.number, 1);
        assert_eq!(first.feed_size, 2);
        assert_eq!(first.catalogue_version, 1);
        assert!(first.previous_digest.is_none());
        assert_eq!(first.total_conflicts, 1);
        assert_eq!(first.conflicts[0].values.len(), 2);
        let colombo = first
            .coverage
            .iter()
            .find(|c| c.node_id == "colombo")
            .expect("colombo's coverage");
        // NPL left before today: not a gap.
        assert_eq!(colombo.missing_member_states, ["LKA"]);
        assert_eq!(first.total_revisions, 0);

        accept(snapshot(
            &key,
            "colombo",
            2,
            Some(colombo_1_digest),
            "MIGRANT_STOCK",
            vec![obs(Replace, "BGD", Some(120.0))],
        ))
        .await;
        assert_eq!(reporter.tick().await, Ok(Some(2)));
        let (_, second) = read(2);
        assert_eq!(second.number, 2);
        assert_eq!(second.previous_digest, Some(digest_1));
        assert_eq!(second.previous_feed_size, first.feed_size);
        // Report 1 is feed entry 3; the revision is entry 4.
        assert_eq!(second.feed_size, 4);
        assert_eq!(
            second.total_conflicts, 0,
            "the revision resolves the conflict"
        );
        assert_eq!(second.total_revisions, 1);
        let revision = &second.revisions[0];
        assert_eq!(revision.node_id, "colombo");
        assert_eq!(revision.old_value.observation.obs_value, Some(100.0));
        assert_eq!(revision.new_value.observation.obs_value, Some(120.0));

        // While a snapshot's view goes in over versions in force (as the view applier marks
        // it in the store), a report waits for its last piece.
        accept(snapshot(
            &key,
            "midwa",
            2,
            Some(midwa_1_digest),
            "MIGRANT_STOCK",
            vec![obs(Append, "LKA", Some(5.0))],
        ))
        .await;
        let superseding = |at: Option<i64>| {
            let conn = rusqlite::Connection::open(dir.path().join("hub.sqlite")).expect("open");
            conn.execute("UPDATE view_cursor SET superseding = ?1 WHERE id = 1", [at])
                .expect("mark");
        };
        superseding(Some(99));
        assert_eq!(store.view_superseding().expect("read"), Some(99));
        assert_eq!(
            reporter.tick().await,
            Ok(None),
            "waits for the snapshot's view"
        );
        superseding(None);
        assert_eq!(reporter.tick().await, Ok(Some(3)));
    }

    #[test]
    fn relative_difference_ignores_missing_values_and_zeros() {
        assert_eq!(
            relative_difference(&[row("a", "BGD", Some(1.0), 0, 1)]),
            0.0
        );
        assert_eq!(
            relative_difference(&[
                row("a", "BGD", Some(0.0), 0, 1),
                row("b", "BGD", Some(0.0), 0, 2)
            ]),
            0.0
        );
        assert_eq!(
            relative_difference(&[
                row("a", "BGD", Some(-2.0), 0, 1),
                row("b", "BGD", Some(2.0), 0, 2),
                row("c", "BGD", None, 0, 3)
            ]),
            2.0
        );
    }
}
