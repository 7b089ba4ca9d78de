//! `rcpfed report coherence`: reads a coherence report from the hub
//! (IndicatorService.GetCoherenceReport), verifies the hub's signature on it with the hub
//! member's key from the registry (itself verified from the GFMD root keys), and prints it.

use crate::client;
use crate::query::EndpointArgs;
use crate::table::{Format, Output, Table};
use crate::view;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use prost::Message as _;
use rcpfed_core::coherence::{CoherenceReport, ObservationKey, RevisionEntry};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::members::Federation;
use rcpfed_proto::v1;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `rcpfed report …`.
#[derive(Subcommand)]
pub enum ReportCommand {
    /// The hub's signed coherence report: conflicts between regions' figures, coverage and
    /// its gaps, policy coverage of the GCM objectives, revisions since the previous report.
    Coherence(CoherenceArgs),
}

/// Arguments of `rcpfed report coherence`.
#[derive(Args)]
pub struct CoherenceArgs {
    /// The hub or a node (a node answers from its verified mirror): the report, and the
    /// registry versions that hold the hub's key, are read from it.
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Report number; the latest when not given.
    #[arg(long)]
    pub number: Option<u64>,
    /// The GFMD root trust file the registry is verified from (default: root-trust.toml in
    /// the --pki directory).
    #[arg(long)]
    pub root_trust: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write here instead of to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `rcpfed report …`.
pub async fn run(command: ReportCommand) -> Result<ExitCode> {
    let ReportCommand::Coherence(args) = command;
    coherence(&args).await
}

/// The federation of the latest registry version the server holds, verified as a chain from
/// the root keys in `root_trust`; and that version's number. The hub serves its registry
/// versions (HubService, its identity checked); a node holds them in its verified mirror,
/// under the hub's member id (NodeService.ListMirroredStatements).
async fn trusted_federation(
    endpoint: &EndpointArgs,
    tls: &rcpfed_grpc::tls::TlsFiles,
    channel: &tonic::transport::Channel,
    root_trust: &Path,
) -> Result<(Federation, u64, &'static str)> {
    let text = std::fs::read_to_string(root_trust).with_context(|| {
        format!(
            "reading the root trust file {} (pass --root-trust)",
            root_trust.display()
        )
    })?;
    let file = rcpfed_core::registry::RootTrustFile::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", root_trust.display()))?;
    let root = file
        .to_root_set()
        .map_err(|e| anyhow::anyhow!("{}: {e}", root_trust.display()))?;
    let kind = client::server_kind(channel, false)
        .await
        .map_err(client::status_error)?;
    let (envelopes, source): (Vec<SignedEnvelope>, &'static str) = match kind {
        client::ServerKind::Hub => {
            let mut hub = client::hub_client(&endpoint.endpoint, "--endpoint", tls).await?;
            let versions = crate::registry_cmd::fetch_versions(&mut hub)
                .await
                .with_context(|| format!("reading the registry from {}", endpoint.endpoint))?;
            (versions.into_iter().map(|(_, e)| e).collect(), "the hub")
        }
        client::ServerKind::Node => {
            let hub_id = hub_id_hint(&endpoint.pki)?;
            let node = client::node_service(channel.clone());
            (
                mirrored_registry(node, &hub_id, &endpoint.endpoint).await?,
                "the node's mirror",
            )
        }
        client::ServerKind::Other => bail!(
            "{} is neither an rcpfed hub nor a node; give --endpoint the gRPC address of the hub or of a node",
            endpoint.endpoint
        ),
    };
    // Expiry is not held against the registry: the report's signature does not depend on it.
    let registry = rcpfed_core::registry::verify_chain(
        &root,
        &file.federation_id,
        &envelopes,
        time::OffsetDateTime::UNIX_EPOCH,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "the registry in {source} does not verify from the root keys in {}: {}",
            root_trust.display(),
            crate::registry_cmd::describe(&e)
        )
    })?;
    let version = registry.version;
    Ok((
        registry
            .to_federation()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        version,
        source,
    ))
}

/// The hub's member id, under which a node mirrors the registry versions: from the member file
/// of the PKI directory, else from its registry version 1. Only a hint: what is found under it
/// is verified from the root keys.
fn hub_id_hint(pki: &Path) -> Result<String> {
    if let Ok(text) = std::fs::read_to_string(pki.join("federation.toml"))
        && let Ok(federation) = Federation::from_toml(&text)
    {
        return Ok(federation.hub_id);
    }
    let v1 = pki.join("registry").join("registry.v1.json");
    if let Ok(text) = std::fs::read_to_string(&v1)
        && let Ok(envelope) = crate::registry_cmd::envelope_from_json(&text)
        && let Ok(document) = v1::RegistryDocument::decode(envelope.payload.as_slice())
    {
        return Ok(document.hub_id);
    }
    bail!(
        "a node holds the registry under the hub's member id, and neither {} nor {} names it; \
         ask the hub instead (--endpoint <the hub's address>)",
        pki.join("federation.toml").display(),
        v1.display()
    )
}

/// Every registry version in a node's verified mirror (the chain `hub_id`), in order, checked
/// to run 1, 2, … without a gap.
async fn mirrored_registry(
    mut node: v1::node_service_client::NodeServiceClient<tonic::transport::Channel>,
    hub_id: &str,
    endpoint: &str,
) -> Result<Vec<SignedEnvelope>> {
    let mut versions: Vec<(u64, SignedEnvelope)> = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = node
            .list_mirrored_statements(v1::ListMirroredStatementsRequest {
                node_id: hub_id.to_string(),
                page_size: 1000,
                page_token,
            })
            .await
            .map_err(client::status_error)
            .with_context(|| format!("reading the registry from the mirror of {endpoint}"))?
            .into_inner();
        for record in page.statements {
            let Some(envelope) = record.envelope else {
                continue;
            };
            let envelope = SignedEnvelope::from_proto(envelope);
            if envelope.payload_type != rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE {
                continue;
            }
            let version = v1::RegistryDocument::decode(envelope.payload.as_slice())
                .with_context(|| {
                    format!(
                        "the mirror of {endpoint} holds a registry version that does not decode"
                    )
                })?
                .version;
            versions.push((version, envelope));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    versions.sort_by_key(|(version, _)| *version);
    for (expected, (version, _)) in (1u64..).zip(&versions) {
        if *version != expected {
            bail!(
                "the mirror of {endpoint} holds registry version {version} where {expected} was expected"
            );
        }
    }
    if versions.is_empty() {
        bail!(
            "the mirror of {endpoint} holds no registry version under the hub's id {hub_id:?} (the node has not caught up with the feed yet?)"
        );
    }
    Ok(versions.into_iter().map(|(_, e)| e).collect())
}

/// Checks a report envelope: its payload type, the hub member's signature, the federation
/// and (when one was asked for) the number. Returns the report decoded from the signed bytes
/// and the key that verified it.
pub fn verify_report(
    envelope: &SignedEnvelope,
    federation: &Federation,
    number: Option<u64>,
) -> Result<(CoherenceReport, String)> {
    let verified =
        rcpfed_core::coherence::verify_report(envelope, federation).map_err(anyhow::Error::msg)?;
    if let Some(n) = number
        && verified.report.number != n
    {
        bail!(
            "report {n} was asked for, but the hub sent report {}",
            verified.report.number
        );
    }
    Ok((verified.report, verified.key_id))
}

/// `rcpfed report coherence`.
pub async fn coherence(args: &CoherenceArgs) -> Result<ExitCode> {
    let root_trust = args
        .root_trust
        .clone()
        .unwrap_or_else(|| args.endpoint.pki.join("root-trust.toml"));
    let tls = client::identity_files(&args.endpoint.pki, &args.endpoint.identity)?;
    let channel = client::connect(&args.endpoint.endpoint, "--endpoint", &tls).await?;
    let (federation, registry_version, registry_source) =
        trusted_federation(&args.endpoint, &tls, &channel, &root_trust).await?;
    let mut rpc = v1::indicator_service_client::IndicatorServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let response = rpc
        .get_coherence_report(v1::GetCoherenceReportRequest {
            number: args.number.unwrap_or(0),
        })
        .await
        .map_err(client::status_error)
        .with_context(|| format!("GetCoherenceReport at {}", args.endpoint.endpoint))?
        .into_inner();
    let envelope = SignedEnvelope::from_proto(
        response
            .envelope
            .context("the hub answered without the signed report")?,
    );
    let (report, key_id) = verify_report(&envelope, &federation, args.number)?;
    if response
        .report
        .is_some_and(|r| CoherenceReport::from_proto(r).as_ref() != Ok(&report))
    {
        bail!("the hub's decoded report differs from the one it signed; not printing it");
    }
    let verified = format!(
        "verified: coherence report {} (feed index {}) is signed by the hub {} with key {}, from registry version {} (read from {registry_source}) verified from the root keys in {}",
        report.number,
        response.feed_index,
        federation.hub_id,
        key_id,
        registry_version,
        root_trust.display()
    );
    let mut out = Output::open(args.out.as_deref())?;
    match args.format {
        Format::Table => {
            if !out.is_file() {
                writeln!(out, "{verified}\n")?;
            }
            out.write_all(render_table(&report).as_bytes())?;
        }
        Format::Csv => out.write_all(report_csv(&report).to_csv()?.as_bytes())?,
        Format::Json => {
            // The protobuf JSON mapping of the signed message, decoded from the signed
            // bytes themselves (not rebuilt from the domain report).
            let signed =
                <v1::CoherenceReport as prost::Message>::decode(envelope.payload.as_slice())
                    .context("the signed report does not decode")?;
            let json = crate::pbjson::coherence_report(&signed);
            serde_json::to_writer_pretty(&mut out, &json)?;
            out.write_all(b"\n")?;
        }
    }
    out.finish()?;
    match &args.out {
        Some(path) => {
            println!("{verified}");
            println!("wrote {}", path.display());
        }
        None if args.format != Format::Table => eprintln!("{verified}"),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn objectives(list: &[u32]) -> String {
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn periods(first: &str, last: &str) -> String {
    match (first, last) {
        ("", "") => String::new(),
        (f, l) if f == l => f.to_string(),
        (f, l) => format!("{f}–{l}"),
    }
}

fn listed(what: &str, listed: usize, total: u64) -> String {
    if total > listed as u64 {
        format!("{what} ({total}, {listed} listed)")
    } else {
        format!("{what} ({total})")
    }
}

/// The report as the terminal shows it: a title, then the sections Conflicts, Coverage,
/// Policy coverage and Revisions, each a table (or a line saying it is empty).
pub fn render_table(r: &CoherenceReport) -> String {
    let mut out = format!(
        "Coherence report {} of {} — generated {}, covers feed entries 1–{} (revisions after entry {}), catalogue version {}\n",
        r.number,
        r.federation_id,
        view::timestamp(r.to_proto().generated_at.as_ref()),
        r.feed_size,
        r.previous_feed_size,
        r.catalogue_version
    );

    push_conflicts(&mut out, r);
    push_coverage(&mut out, r);
    push_policy_coverage(&mut out, r);
    push_revisions(&mut out, r);
    out
}

/// The Conflicts section: each key reported with different values, one row per value.
fn push_conflicts(out: &mut String, r: &CoherenceReport) {
    out.push('\n');
    out.push_str(&listed("Conflicts", r.conflicts.len(), r.total_conflicts));
    out.push('\n');
    let mut t = Table::new(["KEY", "DIFF", "NODE", "VALUE", "STATUS", "SOURCE"]);
    for c in &r.conflicts {
        let key = view::key(&c.key.to_proto());
        for (i, v) in c.values.iter().enumerate() {
            let o = v.observation.to_proto();
            let node = v.provenance.node_id.clone();
            let first = i == 0;
            t.push([
                if first { key.clone() } else { String::new() },
                if first {
                    format!("{:.1}%", c.relative_difference * 100.0)
                } else {
                    String::new()
                },
                node,
                view::value_with_unit(&o),
                o.obs_status.clone(),
                view::source(Some(&v.provenance.to_proto())),
            ]);
        }
    }
    push_section(
        out,
        &t,
        "no conflicts: no key is reported with different values",
    );
}

/// The Coverage section: one row per node and indicator.
fn push_coverage(out: &mut String, r: &CoherenceReport) {
    out.push_str(&format!(
        "\nCoverage (node × indicator, {} rows)\n",
        r.coverage.len()
    ));
    let mut t = Table::new([
        "NODE",
        "INDICATOR",
        "AREAS",
        "PERIODS",
        "OBSERVATIONS",
        "MISSING MEMBER STATES",
    ]);
    for c in &r.coverage {
        t.push([
            c.node_id.clone(),
            c.indicator.clone(),
            c.ref_areas.len().to_string(),
            periods(&c.first_period, &c.last_period),
            c.observation_count.to_string(),
            if c.missing_member_states.is_empty() {
                "none".to_string()
            } else {
                format!(
                    "{} ({})",
                    c.missing_member_states.len(),
                    c.missing_member_states.join(" ")
                )
            },
        ]);
    }
    push_section(out, &t, "no observations in force");
}

/// The Policy coverage section, and the GCM objectives no node addresses.
fn push_policy_coverage(out: &mut String, r: &CoherenceReport) {
    out.push_str(&format!(
        "\nPolicy coverage ({} node(s); GCM objectives 1–23)\n",
        r.policy_coverage.len()
    ));
    let mut t = Table::new(["NODE", "DOCUMENTS", "GCM OBJECTIVES"]);
    for p in &r.policy_coverage {
        t.push([
            p.node_id.clone(),
            p.policy_documents.to_string(),
            objectives(&p.gcm_objectives),
        ]);
    }
    push_section(out, &t, "no policy summaries");
    if r.unaddressed_gcm_objectives.is_empty() {
        out.push_str("  every GCM objective is addressed by at least one node\n");
    } else {
        out.push_str(&format!(
            "  unaddressed GCM objectives: {}\n",
            objectives(&r.unaddressed_gcm_objectives)
        ));
    }
}

/// The Revisions section: observations revised since the previous report.
fn push_revisions(out: &mut String, r: &CoherenceReport) {
    out.push('\n');
    out.push_str(&listed(
        "Revisions since the previous report",
        r.revisions.len(),
        r.total_revisions,
    ));
    out.push('\n');
    let mut t = Table::new(["NODE", "KEY", "OLD", "NEW", "ACTION", "SOURCE"]);
    for e in &r.revisions {
        let (old, new) = revision_observations(e);
        t.push([
            e.node_id.clone(),
            view::key(&e.key.to_proto()),
            view::value_with_unit(&old),
            view::value_with_unit(&new),
            view::action(new.action),
            view::source(Some(&e.new_value.provenance.to_proto())),
        ]);
    }
    push_section(out, &t, "no revisions");
}

/// The observation a revision replaced and the one that replaced it, in the wire form the
/// cell formatters share with the commands that print gRPC answers; the table and the CSV show
/// the same pair.
fn revision_observations(e: &RevisionEntry) -> (v1::Observation, v1::Observation) {
    (
        e.old_value.observation.to_proto(),
        e.new_value.observation.to_proto(),
    )
}

fn push_section(out: &mut String, t: &Table, empty: &str) {
    if t.is_empty() {
        out.push_str("  ");
        out.push_str(empty);
        out.push('\n');
    } else {
        out.push_str(&t.render("  "));
    }
}

/// The CSV columns of a report: one flat table, the `section` column saying which part of
/// the report a row belongs to (`conflict`, `coverage`, `policy`, `unaddressed_objective`,
/// `revision`).
pub const CSV_HEADER: [&str; 24] = [
    "section",
    "node_id",
    "indicator",
    "ref_area",
    "time_period",
    "dimensions",
    "obs_value",
    "unit_mult",
    "unit_measure",
    "value",
    "obs_status",
    "action",
    "relative_difference",
    "old_value",
    "new_value",
    "statement_digest",
    "feed_index",
    "ref_areas",
    "first_period",
    "last_period",
    "observation_count",
    "missing_member_states",
    "gcm_objectives",
    "policy_documents",
];

/// Builds one CSV row by column name.
struct Row(Vec<String>);

impl Row {
    fn new(section: &str) -> Self {
        let mut cells = vec![String::new(); CSV_HEADER.len()];
        cells[0] = section.to_string();
        Row(cells)
    }

    fn set(mut self, column: &str, value: impl Into<String>) -> Self {
        if let Some(i) = CSV_HEADER.iter().position(|c| *c == column) {
            self.0[i] = value.into();
        }
        self
    }

    fn key(self, k: &ObservationKey) -> Self {
        let k = k.to_proto();
        self.set("indicator", k.indicator)
            .set("ref_area", k.ref_area)
            .set("time_period", k.time_period)
            .set("dimensions", view::csv_dimensions(&k.dimensions))
    }
}

/// The report as one flat table (see [`CSV_HEADER`]). Values are OBS_VALUE × 10^UNIT_MULT;
/// lists are separated by spaces.
pub fn report_csv(r: &CoherenceReport) -> Table {
    let mut t = Table::new(CSV_HEADER);
    for c in &r.conflicts {
        for v in &c.values {
            let o = v.observation.to_proto();
            let p = &v.provenance;
            let row = Row::new("conflict")
                .key(&c.key)
                .set("node_id", p.node_id.clone())
                .set("obs_value", view::raw(&o))
                .set("unit_mult", o.unit_mult.to_string())
                .set("unit_measure", o.unit_measure.clone())
                .set("value", view::scaled(&o))
                .set("obs_status", o.obs_status.clone())
                .set("action", view::action(o.action))
                .set("relative_difference", format!("{}", c.relative_difference))
                .set("statement_digest", p.digest.to_hex())
                .set("feed_index", p.feed_index.to_string());
            t.rows.push(row.0);
        }
    }
    for c in &r.coverage {
        let row = Row::new("coverage")
            .set("node_id", c.node_id.clone())
            .set("indicator", c.indicator.clone())
            .set("ref_areas", c.ref_areas.join(" "))
            .set("first_period", c.first_period.clone())
            .set("last_period", c.last_period.clone())
            .set("observation_count", c.observation_count.to_string())
            .set("missing_member_states", c.missing_member_states.join(" "));
        t.rows.push(row.0);
    }
    for p in &r.policy_coverage {
        let row = Row::new("policy")
            .set("node_id", p.node_id.clone())
            .set("gcm_objectives", objectives(&p.gcm_objectives))
            .set("policy_documents", p.policy_documents.to_string());
        t.rows.push(row.0);
    }
    for o in &r.unaddressed_gcm_objectives {
        t.rows.push(
            Row::new("unaddressed_objective")
                .set("gcm_objectives", o.to_string())
                .0,
        );
    }
    for e in &r.revisions {
        let (old, new) = revision_observations(e);
        let p = &e.new_value.provenance;
        let row = Row::new("revision")
            .key(&e.key)
            .set("node_id", e.node_id.clone())
            .set("obs_value", view::raw(&new))
            .set("unit_mult", new.unit_mult.to_string())
            .set("unit_measure", new.unit_measure.clone())
            .set("value", view::scaled(&new))
            .set("obs_status", new.obs_status.clone())
            .set("action", view::action(new.action))
            .set("old_value", view::scaled(&old))
            .set("new_value", view::scaled(&new))
            .set("statement_digest", p.digest.to_hex())
            .set("feed_index", p.feed_index.to_string());
        t.rows.push(row.0);
    }
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rcpfed_core::coherence::COHERENCE_REPORT_PAYLOAD_TYPE;

    fn obs(action: v1::ObservationAction, v: f64, mult: i32, unit: &str) -> v1::Observation {
        v1::Observation {
            action: action as i32,
            ref_area: "WLD".into(),
            time_period: "2020".into(),
            obs_value: Some(v),
            unit_mult: mult,
            unit_measure: unit.into(),
            obs_status: "A".into(),
            ..Default::default()
        }
    }

    fn prov(node: &str, byte: u8, feed_index: u64) -> v1::Provenance {
        v1::Provenance {
            node_id: node.into(),
            statement_digest: vec![byte; 32],
            feed_index,
            // As the hub writes them: the leaf before the feed index, a time in ms.
            leaf_index: feed_index - 1,
            accepted_at: Some(prost_types::Timestamp {
                seconds: 1_735_689_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    fn key(indicator: &str, area: &str, period: &str) -> v1::ObservationKey {
        v1::ObservationKey {
            indicator: indicator.into(),
            ref_area: area.into(),
            time_period: period.into(),
            dimensions: Vec::new(),
        }
    }

    /// The sample as the CLI holds it once verified.
    pub(super) fn domain(r: v1::CoherenceReport) -> CoherenceReport {
        CoherenceReport::from_proto(r).unwrap()
    }

    pub(super) fn sample() -> v1::CoherenceReport {
        use v1::ObservationAction::{Append, Replace};
        v1::CoherenceReport {
            federation_id: "rcp-federation".into(),
            number: 3,
            generated_at: Some(prost_types::Timestamp {
                seconds: 1_735_689_600,
                nanos: 0,
            }),
            feed_size: 14,
            previous_feed_size: 10,
            previous_digest: vec![1; 32],
            catalogue_version: 1,
            conflicts: vec![v1::Conflict {
                key: Some(key("MIG_STOCK", "WLD", "2020")),
                values: vec![
                    v1::ReportedValue {
                        observation: Some(obs(Append, 281.0, 6, "persons")),
                        provenance: Some(prov("abu-dhabi", 0xab, 12)),
                    },
                    v1::ReportedValue {
                        observation: Some(obs(Append, 275.0, 6, "persons")),
                        provenance: Some(prov("colombo", 0xcd, 11)),
                    },
                ],
                relative_difference: 6.0 / 281.0,
            }],
            total_conflicts: 1,
            coverage: vec![v1::CoverageRow {
                node_id: "colombo".into(),
                indicator: "REMIT_INFLOW".into(),
                ref_areas: vec!["IND".into(), "LKA".into()],
                missing_member_states: vec!["AFG".into(), "BGD".into()],
                first_period: "2023".into(),
                last_period: "2024".into(),
                observation_count: 3,
            }],
            policy_coverage: vec![v1::PolicyCoverage {
                node_id: "colombo".into(),
                gcm_objectives: vec![6, 20],
                policy_documents: 1,
            }],
            unaddressed_gcm_objectives: vec![1, 2],
            revisions: vec![v1::RevisionEntry {
                node_id: "colombo".into(),
                key: Some(key("REMIT_INFLOW", "LMC_AGG", "2023")),
                old_value: Some(v1::ReportedValue {
                    observation: Some(obs(Append, 669.0, 9, "current USD")),
                    provenance: Some(prov("colombo", 0x11, 13)),
                }),
                new_value: Some(v1::ReportedValue {
                    observation: Some(obs(Replace, 647.0, 9, "current USD")),
                    provenance: Some(prov("colombo", 0x22, 14)),
                }),
            }],
            total_revisions: 1,
        }
    }

    #[test]
    fn the_table_has_every_section() {
        let text = render_table(&domain(sample()));
        assert!(
            text.starts_with("Coherence report 3 of rcp-federation"),
            "{text}"
        );
        for needle in [
            "Conflicts (1)",
            "MIG_STOCK WLD 2020",
            "2.1%",
            "281 ×10^6 persons",
            "275 ×10^6 persons",
            "abababab #12",
            "cdcdcdcd #11",
            "Coverage (node × indicator, 1 rows)",
            "2023–2024",
            "2 (AFG BGD)",
            "Policy coverage",
            "6 20",
            "unaddressed GCM objectives: 1 2",
            "Revisions since the previous report (1)",
            "669 ×10^9 current USD",
            "647 ×10^9 current USD",
            "replace",
            "22222222 #14",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // The second value of a conflict does not repeat the key.
        let lines: Vec<&str> = text.lines().collect();
        let i = lines.iter().position(|l| l.contains("abu-dhabi")).unwrap();
        assert!(lines[i].contains("MIG_STOCK"));
        assert!(lines[i + 1].contains("colombo") && !lines[i + 1].contains("MIG_STOCK"));
    }

    #[test]
    fn empty_sections_say_so() {
        let r = CoherenceReport {
            number: 1,
            ..Default::default()
        };
        let text = render_table(&r);
        assert!(text.contains("no conflicts"));
        assert!(text.contains("no observations in force"));
        assert!(text.contains("no revisions"));
    }

    #[test]
    fn the_csv_is_one_flat_table_with_a_section_column() {
        let csv = report_csv(&domain(sample())).to_csv().unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(header, CSV_HEADER);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let sections: Vec<&str> = rows.iter().map(|r| r.get(0).unwrap()).collect();
        assert_eq!(
            sections,
            [
                "conflict",
                "conflict",
                "coverage",
                "policy",
                "unaddressed_objective",
                "unaddressed_objective",
                "revision"
            ]
        );
        let col = |name: &str| CSV_HEADER.iter().position(|c| *c == name).unwrap();
        assert_eq!(&rows[0][col("value")], "281000000");
        assert_eq!(&rows[0][col("statement_digest")], "ab".repeat(32));
        assert_eq!(&rows[2][col("missing_member_states")], "AFG BGD");
        assert_eq!(&rows[6][col("old_value")], "669000000000");
        assert_eq!(&rows[6][col("new_value")], "647000000000");
        assert_eq!(&rows[6][col("action")], "replace");
    }

    #[test]
    fn only_the_hubs_signature_is_accepted() {
        use rcpfed_core::keys::SecretKey;
        let hub_key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let text = format!(
            "federation_id = \"rcp-federation\"\nhub_id = \"gfmd\"\n\n[[members]]\nid = \"gfmd\"\nname = \"GFMD\"\nkind = \"hub\"\nroles = [\"reader\"]\nspiffe_id = \"spiffe://rcp-federation/hub/gfmd\"\n[[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n\n[[members]]\nid = \"colombo\"\nname = \"Colombo Process\"\nkind = \"RCP\"\nroles = [\"publisher\"]\nspiffe_id = \"spiffe://rcp-federation/node/colombo\"\n[[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
            hub_key.key_id(),
            hub_key.verify_key().to_base64(),
            other.key_id(),
            other.verify_key().to_base64()
        );
        let federation = Federation::from_toml(&text).unwrap();
        let report = sample();
        let payload = report.encode_to_vec();
        let signed = SignedEnvelope::sign(COHERENCE_REPORT_PAYLOAD_TYPE, payload.clone(), &hub_key);
        let (decoded, key_id) = verify_report(&signed, &federation, None).unwrap();
        // The domain report carries everything the signed one says.
        assert_eq!(decoded.to_proto(), report);
        assert_eq!(key_id, hub_key.key_id());
        assert!(verify_report(&signed, &federation, Some(4)).is_err());
        // A member's key is not the hub's.
        let forged = SignedEnvelope::sign(COHERENCE_REPORT_PAYLOAD_TYPE, payload.clone(), &other);
        let err = verify_report(&forged, &federation, None).unwrap_err();
        assert!(err.to_string().contains("not signed by the hub"), "{err}");
        // Another payload type is refused.
        let wrong = SignedEnvelope::sign("application/octet-stream", payload, &hub_key);
        assert!(verify_report(&wrong, &federation, None).is_err());
    }
}
