//! `rcpfed demo`: the main job. Creates a fresh federation PKI, starts the GFMD hub and three
//! regional nodes (Colombo Process, Abu Dhabi Dialogue, MIDWA) as separate processes on
//! loopback, each with its own SQLite database; each node publishes the bundled sample data; the
//! demo waits until every statement is delivered with a verified receipt and mirrored, verified,
//! on every node, then prints what happened and how to explore it with grpcurl.

use crate::client;
use crate::commands::{PkiInitArgs, PublishWhat, cancel_on_signal, documents_for, pki_init};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use rcpfed_core::coherence::{CoherenceReport, ObservationKey, ReportedValue};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Arguments of `rcpfed demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Exit after the exchange: status 0 only if everything was delivered and verified.
    #[arg(long)]
    pub once: bool,
    /// Working directory (PKI, configurations, databases). Default: a new temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// How long to wait for delivery and mirroring.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

const NODES: [&str; 3] = ["colombo", "abu-dhabi", "midwa"];

/// The hub-issued entries a new hub's feed starts with, before any node statement: registry
/// version 1 and indicator catalogue version 1.
const HUB_PRELUDE: u64 = 2;

/// A child process started by the demo; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    grpc: String,
    ops: String,
    /// The public HTTP listener (the hub's tlog-tiles), when started with one.
    http: Option<String>,
}

async fn spawn(dir: &Path, role: &str, name: &str, extra: &[String]) -> Result<Proc> {
    let exe = std::env::current_exe()?;
    let addr_file = dir.join(format!("{name}.addr.json"));
    let _ = std::fs::remove_file(&addr_file);
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let mut cmd = Command::new(exe);
    cmd.arg(role)
        .arg("--config")
        .arg(dir.join(format!("{name}.toml")))
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .arg("--addr-file")
        .arg(&addr_file)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let grpc = v["grpc"].as_str().unwrap_or_default().to_string();
            let ops = v["ops"].as_str().unwrap_or_default().to_string();
            let http = v["http"].as_str().map(str::to_string);
            return Ok(Proc {
                name: name.to_string(),
                child,
                grpc,
                ops,
                http,
            });
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited with {status} before listening; see {}",
                dir.join(format!("{name}.log")).display()
            );
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("{name} did not start listening within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or(addr)
}

/// `rcpfed demo`.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("rcpfed-demo-{}", std::process::id())),
    };
    println!("rcpfed demo — working directory {}", dir.display());
    let federation = pki_init(&PkiInitArgs {
        dir: dir.clone(),
        federation: "rcp-federation".into(),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
        operators: vec!["operator".into()],
        hosts: vec!["localhost".into(), "127.0.0.1".into()],
        member_hosts: Vec::new(),
        hub_endpoint: "https://localhost:50051".into(),
        synthetic_nodes: 0,
    })?;
    println!(
        "1. PKI: federation CA, mTLS certificates (spiffe://{}/node/<id>), Ed25519 signing keys, member file",
        federation.federation_id
    );

    // The public read-only HTTP side, on loopback like everything in the demo.
    let mut hub = spawn(
        &dir,
        "hub",
        "hub",
        &["--http-listen".to_string(), "127.0.0.1:0".to_string()],
    )
    .await?;
    println!(
        "2. hub gfmd listening on {} (mTLS), ops {} (health, /metrics)",
        hub.grpc, hub.ops
    );
    if let Some(http) = &hub.http {
        println!(
            "   public read-only HTTPS {} : the log as C2SP tlog-tiles under /tlog/, SDMX REST under /sdmx/",
            public_url(http)
        );
        println!(
            "   the dashboard (public, read-only): {}dashboard/",
            public_url(http)
        );
    }
    let hub_endpoint = format!("https://localhost:{}", port(&hub.grpc));
    let mut nodes = Vec::new();
    for id in NODES {
        let p = spawn(
            &dir,
            "node",
            id,
            &[
                "--hub-endpoint".to_string(),
                hub_endpoint.clone(),
                "--http-listen".to_string(),
                "127.0.0.1:0".to_string(),
            ],
        )
        .await?;
        match &p.http {
            Some(http) => println!(
                "   node {:<9} listening on {} (mTLS), public HTTPS {}",
                id,
                p.grpc,
                public_url(http)
            ),
            None => println!("   node {:<9} listening on {}", id, p.grpc),
        }
        nodes.push(p);
    }

    let outcome = exchange(&dir, &hub, &nodes, Duration::from_secs(args.timeout_secs)).await;
    let ok = match &outcome {
        Ok(()) => true,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            false
        }
    };
    print_grpcurl(&dir, &hub, &nodes);
    if !args.once && ok {
        println!("\nrunning; press Ctrl-C to stop");
        let stop = CancellationToken::new();
        cancel_on_signal(stop.clone());
        stop.cancelled().await;
    }
    stop_all(&mut hub, &mut nodes).await;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn stop_all(hub: &mut Proc, nodes: &mut [Proc]) {
    for p in nodes.iter_mut().chain(std::iter::once(hub)) {
        if let Some(pid) = p.child.id() {
            // SIGTERM lets the process flip health to NOT_SERVING and drain.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
        let _ = p.child.kill().await;
        tracing::debug!(name = %p.name, "stopped");
    }
}

/// The `ErrorInfo` reason of a refusal, or "".
fn reason_of(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// Steps 3 to 8: publish, wait for delivery and mirroring, verify the hub's listing, wait for
/// the witnesses, verify a bundle offline, then the conflict and the revision.
async fn exchange(dir: &Path, hub: &Proc, nodes: &[Proc], timeout: Duration) -> Result<()> {
    let operator = client::identity_in(dir, "operator");
    let started = Instant::now();
    let clock = Deadline { started, timeout };
    let expected_per_node = publish_samples(nodes, &operator, clock).await?;
    let expected_total: u64 = expected_per_node.iter().sum();
    wait_for_delivery(nodes, &operator, &expected_per_node, clock).await?;
    let took = started.elapsed();

    // Independent check from the hub's own listing: every statement and receipt verifies.
    let mut hub_client = client::hub_client(
        &format!("https://localhost:{}", port(&hub.grpc)),
        "--hub",
        &operator,
    )
    .await?;
    let listed = hub_client
        .list_statements(v1::ListStatementsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    let registry = verified_registry(dir, &listed)?;
    let trusted = registry.to_federation()?;
    let counted = verify_listing(&listed, &trusted)?;
    if counted.statements != expected_total {
        bail!(
            "hub lists {} statements, expected {expected_total}",
            counted.statements
        );
    }
    println!(
        "5. done in {:.2} s: {expected_total} statements signed by {} nodes, accepted by the hub, each signature and receipt verified here, each log inclusion proof verified by the nodes, mirrored on all {} nodes",
        took.as_secs_f64(),
        nodes.len(),
        nodes.len()
    );
    if counted.hub_documents > 0 {
        println!(
            "   and {} hub-issued document(s) (indicator catalogue, coherence reports) in the log, each verified against the hub's key",
            counted.hub_documents
        );
    }
    println!(
        "   registry version {} (threshold {} of {} GFMD root keys) verified from the root keys; it is the log's first entry",
        registry.version,
        registry.root.threshold,
        registry.root.keys.len()
    );
    let final_cp =
        wait_for_final_checkpoint(&mut hub_client, listed.statements.len() as u64, clock).await?;
    verify_bundle_offline(dir, &mut hub_client, &trusted, final_cp.quorum as usize).await?;
    conflict_and_revision(dir, hub, nodes, &trusted, timeout).await
}

/// When the demo's waiting ends.
#[derive(Clone, Copy)]
struct Deadline {
    started: Instant,
    timeout: Duration,
}

impl Deadline {
    fn passed(&self) -> bool {
        self.started.elapsed() > self.timeout
    }

    /// An error saying `what` did not happen in time, once the deadline has passed.
    fn check(&self, what: &str) -> Result<()> {
        if self.passed() {
            bail!("{what} within {} s", self.timeout.as_secs());
        }
        Ok(())
    }
}

/// Step 3: each node signs its sample documents (policy, indicators) and queues them for the
/// hub. Returns how many each node signed.
async fn publish_samples(
    nodes: &[Proc],
    operator: &rcpfed_grpc::tls::TlsFiles,
    clock: Deadline,
) -> Result<Vec<u64>> {
    println!("3. each node signs its sample documents and queues them for the hub:");
    let samples = std::env::temp_dir().join(format!("rcpfed-demo-samples-{}", std::process::id()));
    std::fs::create_dir_all(&samples)?;
    let mut expected_per_node = Vec::new();
    for p in nodes {
        let mut node = client::node_client(
            &format!("https://localhost:{}", port(&p.grpc)),
            "--node",
            operator,
        )
        .await?;
        let mut count = 0u64;
        for w in &sample_documents(&samples, &p.name)? {
            for doc in documents_for(w, &p.name)? {
                let r = publish_when_catalogue_arrives(&mut node, &p.name, doc, clock).await?;
                println!(
                    "   {:<9} #{} {} (revision {}) digest {}…",
                    p.name,
                    r.seq,
                    r.document,
                    r.revision,
                    &hex::encode(&r.digest)[..16]
                );
                count += 1;
            }
        }
        expected_per_node.push(count);
    }
    // Only temporary copies of the bundled samples: one left behind does no harm.
    if let Err(e) = std::fs::remove_dir_all(&samples) {
        tracing::debug!(error = %e, dir = %samples.display(), "cannot remove the sample copies");
    }
    Ok(expected_per_node)
}

/// The bundled sample documents of node `name`, written under `samples` for publishing.
fn sample_documents(samples: &Path, name: &str) -> Result<Vec<PublishWhat>> {
    let mut what = Vec::new();
    if let Some(policy) = rcpfed_import::sample::policy_toml(name) {
        let file = samples.join(format!("{name}-policy.toml"));
        std::fs::write(&file, policy)?;
        what.push(PublishWhat::Policy { file });
    }
    if let Some(csv) = rcpfed_import::sample::indicator_csv(name) {
        let file = samples.join(format!(
            "{name}-{}.csv",
            rcpfed_import::sample::INDICATOR_DOCUMENT_NAME
        ));
        std::fs::write(&file, csv)?;
        what.push(PublishWhat::Indicators {
            file,
            name: Some(rcpfed_import::sample::INDICATOR_DOCUMENT_NAME.into()),
            stream: false,
        });
    }
    Ok(what)
}

/// Publishes `doc` at the node. A node checks indicators against the catalogue it mirrors
/// from the hub; just after start-up the catalogue may not have reached it yet
/// (NO_CATALOGUE, a state that passes): wait for it, within the demo's timeout.
async fn publish_when_catalogue_arrives(
    node: &mut NodeServiceClient<Channel>,
    node_name: &str,
    doc: v1::PublishDocumentRequest,
    clock: Deadline,
) -> Result<v1::PublishDocumentResponse> {
    let name = doc.document.clone();
    loop {
        match node.publish_document(doc.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if reason_of(&s) == "NO_CATALOGUE" && !clock.passed() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => {
                return Err(anyhow::anyhow!(
                    "{node_name} refused {name}: {}",
                    client::describe_status(&s)
                ));
            }
        }
    }
}

/// Step 4: waits until every node has its statements delivered (verified hub receipts) and
/// its mirror holds every statement of every node.
async fn wait_for_delivery(
    nodes: &[Proc],
    operator: &rcpfed_grpc::tls::TlsFiles,
    expected_per_node: &[u64],
    clock: Deadline,
) -> Result<()> {
    println!(
        "4. waiting for delivery (verified hub receipts) and for every node's mirror to fill…"
    );
    // The feed also carries the hub's first documents: registry version 1 and catalogue
    // version 1, the log's first entries.
    let mirrored = expected_per_node.iter().sum::<u64>() + HUB_PRELUDE;
    loop {
        let mut done = true;
        let mut lines = Vec::new();
        for (p, expected) in nodes.iter().zip(expected_per_node) {
            let mut node = client::node_client(
                &format!("https://localhost:{}", port(&p.grpc)),
                "--node",
                operator,
            )
            .await?;
            let s = node
                .get_node_status(v1::GetNodeStatusRequest {})
                .await?
                .into_inner();
            if s.outbox_rejected > 0 {
                bail!("{}: the hub refused a statement: {}", p.name, s.last_error);
            }
            if s.outbox_delivered < *expected || s.mirror_count < mirrored {
                done = false;
            }
            lines.push(format!(
                "   {:<9} delivered {}/{} · mirror {}/{} · feed {}",
                p.name,
                s.outbox_delivered,
                expected,
                s.mirror_count,
                mirrored,
                if s.feed_connected {
                    "connected"
                } else {
                    "disconnected"
                }
            ));
        }
        if done || clock.passed() {
            for l in lines {
                println!("{l}");
            }
        }
        if done {
            return Ok(());
        }
        if clock.passed() {
            bail!(
                "not everything was delivered and mirrored within {} s",
                clock.timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The registry versions in the hub's listing, verified from the GFMD root keys alone (the
/// statements are then checked against the federation they define, not the readable member
/// file).
fn verified_registry(
    dir: &Path,
    listed: &v1::ListStatementsResponse,
) -> Result<rcpfed_core::registry::Registry> {
    let registry_versions: Vec<rcpfed_core::envelope::SignedEnvelope> = listed
        .statements
        .iter()
        .filter_map(|r| r.envelope.clone())
        .filter(|e| e.payload_type == rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE)
        .map(rcpfed_core::envelope::SignedEnvelope::from_proto)
        .collect();
    let trust_text = std::fs::read_to_string(dir.join("root-trust.toml"))?;
    let trust_file = rcpfed_core::registry::RootTrustFile::from_toml(&trust_text)?;
    Ok(rcpfed_core::registry::verify_chain(
        &trust_file.to_root_set()?,
        &trust_file.federation_id,
        &registry_versions,
        time::OffsetDateTime::now_utc(),
    )?)
}

/// What [`verify_listing`] verified.
struct Verified {
    /// Node statements: signature, receipt and entry.
    statements: u64,
    /// Hub-issued documents: each checked as its kind (catalogue versions as a chain).
    hub_documents: u64,
}

/// Verifies every entry of the hub's listing (its first page, from the start) other than
/// registry versions: node statements (signature and receipt) and hub-issued documents with
/// their own verifiers (catalogue versions in chain order from version 1, coherence reports).
fn verify_listing(
    listed: &v1::ListStatementsResponse,
    trusted: &rcpfed_core::members::Federation,
) -> Result<Verified> {
    let hub_member = trusted
        .hub()
        .ok_or_else(|| anyhow::anyhow!("the registry names no hub member"))?;
    let mut counted = Verified {
        statements: 0,
        hub_documents: 0,
    };
    // The catalogue version verified last: the next one must follow it.
    let mut catalogue_in_force: Option<(u64, rcpfed_core::Digest)> = None;
    for record in &listed.statements {
        let Some(envelope) = &record.envelope else {
            bail!("hub statement {} has no envelope", record.name);
        };
        let payload_type = envelope.payload_type.as_str();
        if payload_type == rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE {
            continue;
        }
        if payload_type == rcpfed_core::catalogue::CATALOGUE_PAYLOAD_TYPE {
            let envelope = rcpfed_core::envelope::SignedEnvelope::from_proto(envelope.clone());
            let catalogue = rcpfed_core::catalogue::verify_catalogue(
                &envelope,
                &hub_member.keys,
                &trusted.federation_id,
                catalogue_in_force,
            )
            .map_err(|e| anyhow::anyhow!("catalogue {} does not verify: {e}", record.name))?;
            catalogue_in_force = Some((catalogue.version, catalogue.digest));
            counted.hub_documents += 1;
            continue;
        }
        if payload_type == rcpfed_core::coherence::COHERENCE_REPORT_PAYLOAD_TYPE {
            let envelope = rcpfed_core::envelope::SignedEnvelope::from_proto(envelope.clone());
            rcpfed_core::coherence::verify_report(&envelope, trusted).map_err(|e| {
                anyhow::anyhow!("coherence report {} does not verify: {e}", record.name)
            })?;
            counted.hub_documents += 1;
            continue;
        }
        rcpfed_core::feed::FeedEntry::from_parts(
            record.feed_index,
            record.envelope.clone(),
            record.receipt.clone(),
            record.log.clone(),
        )
        .and_then(|entry| rcpfed_node::mirror::verify_entry(trusted, &entry, 0))
        .map_err(|e| anyhow::anyhow!("hub statement {} does not verify: {e}", record.name))?;
        counted.statements += 1;
    }
    Ok(counted)
}

/// Step 6: the regional nodes witness the hub's log; waits until a checkpoint covering
/// `log_size` entries has the quorum of cosignatures, and prints it.
async fn wait_for_final_checkpoint(
    hub_client: &mut HubServiceClient<Channel>,
    log_size: u64,
    clock: Deadline,
) -> Result<v1::GetCheckpointResponse> {
    println!(
        "6. waiting for the witnesses (the regional nodes) to cosign a checkpoint of the whole log…"
    );
    let final_cp = loop {
        // A refusal (no final checkpoint yet) or a failed call is asked again until the
        // deadline.
        let cp = hub_client
            .get_checkpoint(v1::GetCheckpointRequest {
                final_only: true,
                ..Default::default()
            })
            .await
            .ok()
            .map(|r| r.into_inner());
        if let Some(cp) = cp.filter(|cp| cp.tree_size >= log_size) {
            break cp;
        }
        if clock.passed() {
            bail!(
                "no checkpoint of the whole log reached the witness quorum within {} s",
                clock.timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "   final checkpoint: tree size {}, {} witness cosignatures (quorum {}):",
        final_cp.tree_size, final_cp.cosignature_count, final_cp.quorum
    );
    for line in final_cp.checkpoint.lines() {
        println!("   │ {line}");
    }
    Ok(final_cp)
}

/// Step 7: one statement bundle, verified the way a third party would: offline, from the
/// member file alone.
async fn verify_bundle_offline(
    dir: &Path,
    hub_client: &mut HubServiceClient<Channel>,
    trusted: &rcpfed_core::members::Federation,
    quorum: usize,
) -> Result<()> {
    let statement = "nodes/colombo/statements/2";
    let (bundle, _, _) = crate::verify::fetch_bundle(hub_client, statement, true).await?;
    let bundle_path = dir.join("colombo-2.bundle.json");
    std::fs::write(&bundle_path, bundle.to_json() + "\n")?;
    let anchors = rcpfed_core::bundle::TrustAnchors::from_federation(trusted.clone(), quorum)
        .ok_or_else(|| anyhow::anyhow!("the member file has no hub key"))?;
    let steps = rcpfed_core::bundle::verify_bundle(&bundle, &anchors);
    println!(
        "7. offline verification of {statement} ({}):",
        bundle_path.display()
    );
    for step in &steps {
        println!(
            "   {} {}: {}",
            if step.ok { "✓" } else { "✗" },
            step.name,
            step.detail
        );
    }
    if !rcpfed_core::bundle::all_ok(&steps) || steps.len() < 6 {
        bail!("the exported bundle did not verify");
    }
    println!(
        "   anyone can repeat this with: rcpfed verify {} --root-trust {} --registry {}",
        bundle_path.display(),
        dir.join("root-trust.toml").display(),
        dir.join("registry").join("registry.v1.json").display()
    );
    Ok(())
}

/// The observation of `data/sample/figures.csv` for this key.
fn figure(indicator: &str, ref_area: &str, time_period: &str) -> Result<v1::Observation> {
    rcpfed_import::parse_indicator_csv(rcpfed_import::sample::FIGURES_CSV, "demo", "figures")?
        .into_iter()
        .filter(|d| d.snapshot.indicator == indicator)
        .flat_map(|d| d.snapshot.observations)
        .find(|o| o.ref_area == ref_area && o.time_period == time_period)
        .with_context(|| {
            format!("data/sample/figures.csv has no {indicator} {ref_area} {time_period}")
        })
}

/// Signs one observation as a one-observation snapshot; returns the digest.
async fn publish_figure(
    dir: &Path,
    node: &Proc,
    name: &str,
    indicator: &str,
    observation: v1::Observation,
) -> Result<Vec<u8>> {
    let operator = client::identity_in(dir, "operator");
    let mut client = client::node_client(
        &format!("https://localhost:{}", port(&node.grpc)),
        "--node",
        &operator,
    )
    .await?;
    let document = rcpfed_import::indicator_document(&node.name, indicator, name);
    let shown = crate::view::value_with_unit(&observation);
    let action = crate::view::action(observation.action);
    let key = format!(
        "{indicator} {} {}",
        observation.ref_area, observation.time_period
    );
    let source = observation.source.clone();
    let r = client
        .publish_document(v1::PublishDocumentRequest {
            document: document.clone(),
            body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
                v1::IndicatorSnapshot {
                    indicator: indicator.to_string(),
                    observations: vec![observation],
                    chunks: None,
                },
            )),
            ..Default::default()
        })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "{} refused {document}: {}",
                node.name,
                client::describe_status(&s)
            )
        })?
        .into_inner();
    println!(
        "   {:<9} #{} {key} = {shown} ({action}, revision {}) — {source}",
        node.name, r.seq, r.revision
    );
    Ok(r.digest)
}

/// Step 8: two overlapping processes report different figures for the same key (the UN DESA
/// 2024 revision of the 2020 world migrant stock against the 2020 edition), and Colombo
/// revises a remittance figure (the World Bank/KNOMAD June 2024 brief, then its December
/// 2024 revision), as recorded in data/sample/figures.csv. The hub's next coherence report,
/// verified here against the hub's key, names both sides of the conflict and the revision.
async fn conflict_and_revision(
    dir: &Path,
    hub: &Proc,
    nodes: &[Proc],
    trusted: &rcpfed_core::members::Federation,
    timeout: Duration,
) -> Result<()> {
    let clock = Deadline {
        started: Instant::now(),
        timeout,
    };
    let node = |id: &str| {
        nodes
            .iter()
            .find(|p| p.name == id)
            .with_context(|| format!("the demo runs no node {id}"))
    };
    let (colombo, abu_dhabi) = (node("colombo")?, node("abu-dhabi")?);
    println!(
        "8. a real conflict and a real revision, from data/sample/figures.csv (Colombo Process and Abu Dhabi Dialogue overlap):"
    );
    let replace_digest = publish_conflict_and_revision(dir, colombo, abu_dhabi).await?;
    let operator = client::identity_in(dir, "operator");
    let hub_endpoint = format!("https://localhost:{}", port(&hub.grpc));
    let mut hub_client = client::hub_client(&hub_endpoint, "--hub", &operator).await?;
    let revision_index = revision_feed_index(&mut hub_client, &replace_digest, clock).await?;
    // The first report that covers it lists the revision; the conflict stays in every report
    // until one side changes.
    let mut rpc = rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient::new(
        client::connect(&hub_endpoint, "--hub", &operator).await?,
    );
    let (latest, latest_index) = loop {
        if let Some((r, i)) = verified_report(&mut rpc, trusted, 0).await?
            && r.feed_size >= revision_index
        {
            break (r, i);
        }
        clock.check("no coherence report covered the new figures")?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut with_revision = latest.clone();
    while with_revision.previous_feed_size >= revision_index && with_revision.number > 1 {
        match verified_report(&mut rpc, trusted, with_revision.number - 1).await? {
            Some((r, _)) => with_revision = r,
            None => break,
        }
    }
    println!(
        "9. coherence report {} (feed index {latest_index}), its signature verified against the hub's key:",
        latest.number
    );
    print_conflict(&latest)?;
    print_revision(&with_revision)?;
    println!(
        "   the whole report: rcpfed report coherence --pki {} --hub {hub_endpoint}",
        dir.display()
    );
    Ok(())
}

/// Publishes the figures of step 8: the conflict (Colombo and Abu Dhabi report different
/// editions of one figure) and the revision (Colombo replaces its own figure). Returns the
/// digest of the revision.
async fn publish_conflict_and_revision(
    dir: &Path,
    colombo: &Proc,
    abu_dhabi: &Proc,
) -> Result<Vec<u8>> {
    // The 2024 revision of the 2020 world migrant stock, as figures.csv records it, and the
    // 2020 edition's figure that the same row says it revised.
    let revised_stock = figure("MIG_STOCK", "WLD", "2020")?;
    let mut first_edition = revised_stock.clone();
    first_edition.obs_value = Some(281.0);
    first_edition.source = "UN DESA International Migrant Stock 2020".into();
    publish_figure(dir, colombo, "world-stock", "MIG_STOCK", revised_stock).await?;
    publish_figure(dir, abu_dhabi, "world-stock", "MIG_STOCK", first_edition).await?;
    // Remittances to low- and middle-income countries in 2023: the June 2024 brief's figure,
    // then the December 2024 revision (figures.csv), replacing it.
    let revised_flow = figure("REMIT_INFLOW", "LMC_AGG", "2023")?;
    let mut june = revised_flow.clone();
    june.obs_value = Some(669.0);
    june.source = "World Bank/KNOMAD June 2024 brief".into();
    publish_figure(dir, colombo, "lmc-aggregate", "REMIT_INFLOW", june).await?;
    let mut december = revised_flow;
    december.action = v1::ObservationAction::Replace as i32;
    let replace_digest =
        publish_figure(dir, colombo, "lmc-aggregate", "REMIT_INFLOW", december).await?;

    Ok(replace_digest)
}

/// The feed index of the statement with `digest` (Colombo's revision), once the hub has
/// accepted it.
async fn revision_feed_index(
    hub_client: &mut HubServiceClient<Channel>,
    digest: &[u8],
    clock: Deadline,
) -> Result<u64> {
    loop {
        let listed = hub_client
            .list_statements(v1::ListStatementsRequest {
                node_id: "colombo".into(),
                document: rcpfed_import::indicator_document(
                    "colombo",
                    "REMIT_INFLOW",
                    "lmc-aggregate",
                ),
                page_size: 100,
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", client::describe_status(&s)))?
            .into_inner();
        if let Some(r) = listed.statements.iter().find(|r| r.digest == digest) {
            return Ok(r.feed_index);
        }
        clock.check("the hub did not accept the revision")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Coherence report `number` (0: the latest) with its feed index, its signature verified
/// against the hub's key; None when the hub has no such report.
async fn verified_report(
    rpc: &mut rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient<Channel>,
    trusted: &rcpfed_core::members::Federation,
    number: u64,
) -> Result<Option<(CoherenceReport, u64)>> {
    match rpc
        .get_coherence_report(v1::GetCoherenceReportRequest { number })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            let envelope = rcpfed_core::envelope::SignedEnvelope::from_proto(
                r.envelope
                    .context("the hub answered without the signed report")?,
            );
            let (report, _) =
                crate::report::verify_report(&envelope, trusted, (number > 0).then_some(number))?;
            Ok(Some((report, r.feed_index)))
        }
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => bail!("{}", client::describe_status(&s)),
    }
}

/// Whether `k` is the key (indicator, area, period).
fn is_key(k: &ObservationKey, indicator: &str, area: &str, period: &str) -> bool {
    k.indicator == indicator && k.ref_area == area && k.time_period == period
}

/// A reported value as the demo prints it: the value with its unit and its source in short.
fn shown(v: &ReportedValue) -> (String, String) {
    (
        crate::view::value_with_unit(&v.observation.to_proto()),
        crate::view::source(Some(&v.provenance.to_proto())),
    )
}

/// Prints the MIG_STOCK WLD 2020 conflict of `latest`: both values, who signed them, sources.
fn print_conflict(latest: &CoherenceReport) -> Result<()> {
    let conflict = latest
        .conflicts
        .iter()
        .find(|c| is_key(&c.key, "MIG_STOCK", "WLD", "2020"))
        .context("the coherence report does not list the MIG_STOCK WLD 2020 conflict")?;
    println!(
        "   conflict {} (relative difference {:.1}%):",
        crate::view::key(&conflict.key.to_proto()),
        conflict.relative_difference * 100.0
    );
    for v in &conflict.values {
        let (value, source) = shown(v);
        println!(
            "     {:<9} {:<18} signed statement {} — {}",
            v.provenance.node_id, value, source, v.observation.source
        );
    }
    Ok(())
}

/// Prints the REMIT_INFLOW LMC_AGG 2023 revision that `with_revision` lists.
fn print_revision(with_revision: &CoherenceReport) -> Result<()> {
    let revision = with_revision
        .revisions
        .iter()
        .find(|e| is_key(&e.key, "REMIT_INFLOW", "LMC_AGG", "2023"))
        .context("no coherence report lists the REMIT_INFLOW LMC_AGG 2023 revision")?;
    println!(
        "   revision (report {}): {} {}: {} → {} ({})",
        with_revision.number,
        revision.node_id,
        crate::view::key(&revision.key.to_proto()),
        shown(&revision.old_value).0,
        shown(&revision.new_value).0,
        crate::view::action(revision.new_value.observation.action.to_proto() as i32)
    );
    Ok(())
}

/// The public listener's base URL, by the host name its certificate carries.
fn public_url(addr: &str) -> String {
    format!("https://localhost:{}/", port(addr))
}

fn print_grpcurl(dir: &Path, hub: &Proc, nodes: &[Proc]) {
    let d = dir.display();
    let tls = format!(
        "-cacert {d}/ca.pem -cert {d}/members/operator/tls.pem -key {d}/members/operator/tls.key"
    );
    let h = format!("localhost:{}", port(&hub.grpc));
    if let Some(http) = &hub.http {
        let url = public_url(http);
        println!(
            "\nThe dashboard, in a browser: {url}dashboard/ (the demo's own CA, {d}/ca.pem, signed its certificate)"
        );
        println!(
            "\nThe log over HTTPS (C2SP tlog-tiles, any tlog client or curl; the demo's \
             certificates come from its own CA, {d}/ca.pem):"
        );
        println!("  curl --cacert {d}/ca.pem {url}tlog/checkpoint");
        println!("  curl -s --cacert {d}/ca.pem {url}tlog/tile/0/000.p/1 | xxd | head");
        println!(
            "  rcpfed tiles write --config {d}/hub.toml --dir {d}/tiles   # the same as static files"
        );
        println!(
            "\nThe indicators over SDMX REST 1.5.0 (sdmx1, pysdmx, .Stat, curl; also on each node):"
        );
        println!("  curl --cacert {d}/ca.pem {url}sdmx/dataflow/GFMD");
        println!(
            "  curl --cacert {d}/ca.pem -H 'Accept: application/vnd.sdmx.data+csv;version=2.0.0' {url}sdmx/data/REMIT_INFLOW"
        );
    }
    println!("\nExplore with grpcurl (mTLS as the operator identity):");
    println!("  grpcurl {tls} {h} list");
    println!("  grpcurl {tls} {h} grpc.health.v1.Health/Check");
    println!("  grpcurl {tls} -d '{{\"page_size\": 5}}' {h} rcpfed.v1.HubService/ListStatements");
    println!(
        "  grpcurl {tls} -d '{{\"name\": \"nodes/colombo/statements/1\"}}' {h} rcpfed.v1.HubService/GetStatement"
    );
    println!("  grpcurl {tls} {h} rcpfed.v1.HubService/ListEquivocations");
    println!("  grpcurl {tls} {h} rcpfed.v1.HubService/ListMembers");
    println!("  grpcurl {tls} {h} rcpfed.v1.HubService/GetCheckpoint");
    println!("  grpcurl {tls} {h} rcpfed.v1.IndicatorService/GetCoherenceReport");
    println!(
        "  grpcurl {tls} -d '{{\"query\": {{\"indicator\": \"MIG_STOCK\"}}}}' {h} rcpfed.v1.IndicatorService/QueryObservations"
    );
    if let Some(n) = nodes.first() {
        println!(
            "  grpcurl {tls} localhost:{} rcpfed.v1.NodeService/GetNodeStatus",
            port(&n.grpc)
        );
        println!(
            "  grpcurl {tls} localhost:{} rcpfed.v1.WitnessService/GetWitnessStatus",
            port(&n.grpc)
        );
    }
    println!(
        "  grpcurl -plaintext {} grpc.health.v1.Health/Check   # ops port, no TLS",
        hub.ops
    );
    println!("  curl http://{}/metrics", hub.ops);
}
