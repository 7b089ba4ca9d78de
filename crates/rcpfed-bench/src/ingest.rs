//! The `ingest` benchmark: hub ingest of signed ~2 KB statements from N concurrent node clients
//! over mTLS, durable before the receipt, with real mirror nodes subscribed to the feed,
//! against two baselines measured in the same run:
//!
//! - a bare tonic service that only acknowledges the same payload over the same mTLS, once at
//!   the hub's concurrency and once driven hard (more connections, several requests in flight
//!   on each) so that its server core is busy; its CPU use is reported;
//! - the single-core `verify_strict` rate of the same statements.
//!
//! The hub and the bare server run on core 0; every thread of this process (the load
//! generator) and the mirror nodes run on core 1 (`taskset`; checked per thread at the end).
//! It prints p50 / p99 receipt latency and the feed latency, from the receipt reaching the
//! client to every mirror having applied the entry (seen by polling each node's
//! `GetNodeStatus.feed_cursor` every [`POLL`]; the poll's answer time is used, so each figure
//! can be late by up to one poll and one call). All data is synthetic and labelled so.
//!
//! With `--rate R` the hub run is paced instead of as fast as possible: each client sends on a
//! fixed schedule so that the clients together offer R statements a second (open loop; a
//! request that starts late because the previous one was slow is timed from its scheduled
//! start, so queueing shows in the latency). Run once without it to find the maximum rate,
//! then with half of it for "p99 feed latency at half the maximum ingest rate".
//!
//! With mirrors, a late node then joins: the first mirror's configuration with an empty data
//! directory, on both cores, timed mirroring the whole log from its start.

use super::snapshot::{self as snap, Proc};
use super::{commit_metrics, make_chains, member_id, pin_self, pinned_command, tls_of, wait_addr};
use anyhow::{Context as _, Result, anyhow, bail};
use rcpfed_core::digest::Digest;
use rcpfed_core::envelope::pae;
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_core::receipt::Receipt;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Command-line options of `rcpfed-bench ingest`.
pub struct Options {
    pub rcpfed: PathBuf,
    pub clients: usize,
    pub per_client: usize,
    /// Statements each client keeps in flight (at most the protocol's in-flight window).
    pub inflight: usize,
    pub payload_bytes: usize,
    pub mirrors: usize,
    pub bare_connections: usize,
    pub bare_inflight: usize,
    /// Statements per second offered to the hub in all; None: as fast as possible.
    pub rate: Option<f64>,
}

const FEDERATION: &str = "bench-federation";
/// The regional nodes `rcpfed pki init` knows; the first `--mirrors` of them follow the feed.
const MIRROR_NODES: [&str; 3] = ["colombo", "abu-dhabi", "midwa"];
/// How often each mirror's feed cursor is read.
const POLL: Duration = Duration::from_millis(5);

pub async fn run(o: Options) -> Result<()> {
    if !o.rcpfed.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p rcpfed",
            o.rcpfed.display()
        );
    }
    if o.clients == 0 || o.per_client == 0 || o.bare_connections == 0 || o.bare_inflight == 0 {
        bail!("--clients, --per-client, --bare-connections and --bare-inflight must be at least 1");
    }
    if o.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of statements per second");
    }
    if o.mirrors > MIRROR_NODES.len() {
        bail!(
            "--mirrors: at most {} (the nodes {})",
            MIRROR_NODES.len(),
            MIRROR_NODES.join(", ")
        );
    }
    let dir = std::env::temp_dir().join(format!("rcpfed-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&o, &dir).await;
    if result.is_err() {
        println!("working directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(o: &Options, dir: &Path) -> Result<()> {
    let pki = dir.join("fed");
    let (fed, chains) = synthetic_statements(o, &pki)?;
    let total = o.clients * o.per_client;
    // Every thread of this process, the runtime's workers included; threads started later
    // inherit it.
    let pinned = pin_self(1, true);
    print_setup(o, &chains, pinned);

    // (b) single-core verify_strict of the same statements, in this process; with the hub's
    // own check and its receipt signature, for the one-core floor.
    let signatures = signature_rates(&fed, &chains, total)?;

    // (a) the bare ack service over the same mTLS: at the hub's concurrency, then driven hard.
    let (bare_same, bare_hard) = bare_runs(o, dir, &pki, &chains).await?;

    // The real hub, durable before each receipt, with the mirrors following its feed.
    let mut hub = HubWithMirrors::start(o, dir, &pki).await?;
    let before = hub.catch_up(&pki).await?;
    let (hub_run, caught_up, mirror_cpu) = hub.timed_run(o, &pki, chains, total, before).await?;
    let (samples, commits) = hub.stop_mirrors(dir).await?;
    let late = if o.mirrors > 0 {
        let last = hub_run.receipts.iter().map(|r| r.0).max().unwrap_or(before);
        Some(hub.late_mirror(o, dir, &pki, last).await?)
    } else {
        None
    };
    hub.stop().await;
    let (threads_pinned, threads) = threads_on(1);

    let feed_latency = feed_latency(&hub_run.receipts, &samples)?;

    print_report(&IngestReport {
        o,
        total,
        signatures,
        bare_same: &bare_same,
        bare_hard: &bare_hard,
        hub_run: &hub_run,
        commits: &commits,
        feed_latency,
        caught_up,
        mirror_cpu,
        late,
        threads_pinned,
        threads,
    });
    if pinned && threads_pinned != threads {
        bail!("{threads_pinned} of this process's {threads} threads are pinned to core 1");
    }
    Ok(())
}

/// The federation made by the real `rcpfed pki init` in `pki` (so the hub runs on a
/// threshold-signed registry as in production; the client nodes are labelled synthetic), and
/// each client's chain of signed synthetic statements.
fn synthetic_statements(o: &Options, pki: &Path) -> Result<(Federation, Vec<Vec<v1::Envelope>>)> {
    super::pki_init(
        &o.rcpfed,
        pki,
        FEDERATION,
        o.clients,
        &MIRROR_NODES[..o.mirrors],
    )?;
    let fed = Federation::from_toml(&std::fs::read_to_string(pki.join("federation.toml"))?)?;
    let keys: Vec<SecretKey> = (0..o.clients)
        .map(|i| {
            Ok(SecretKey::from_file_text(&std::fs::read_to_string(
                pki.join("members").join(member_id(i)).join("signing.key"),
            )?)?)
        })
        .collect::<Result<_>>()?;
    let chains = make_chains(&fed, &keys, &[], o.per_client, o.payload_bytes);
    Ok((fed, chains))
}

/// The run's first line: its shape, where it runs, and the load on the machine.
fn print_setup(o: &Options, chains: &[Vec<v1::Envelope>], pinned: bool) {
    let payload_len = chains
        .first()
        .and_then(|c| c.first())
        .map(|e| e.payload.len())
        .unwrap_or(0);
    println!(
        "rcpfed-bench ingest: {} clients × {} statements, {} in flight per client, payload {payload_len} bytes (synthetic), {} mirror node(s), hub and bare server on core 0, load and mirrors on core 1: {pinned}; load average {}",
        o.clients,
        o.per_client,
        o.inflight,
        o.mirrors,
        snap::loadavg()
    );
}

/// The real hub on core 0 and the first `--mirrors` nodes on core 1 following its feed, each
/// mirror's feed cursor polled.
struct HubWithMirrors {
    hub: Proc,
    endpoint: String,
    mirrors: Vec<Proc>,
    feed: Feed,
}

impl HubWithMirrors {
    async fn start(o: &Options, dir: &Path, pki: &Path) -> Result<Self> {
        let hub = snap::spawn(&o.rcpfed, 0, dir, "hub", &pki.join("hub.toml"), None).await?;
        let endpoint = hub.endpoint();
        let mut mirrors = Vec::new();
        for id in &MIRROR_NODES[..o.mirrors] {
            mirrors.push(
                snap::spawn(
                    &o.rcpfed,
                    1,
                    dir,
                    "node",
                    &pki.join(format!("{id}.toml")),
                    Some(&endpoint),
                )
                .await?,
            );
        }
        let feed = Feed::watch(pki, &mirrors).await?;
        Ok(HubWithMirrors {
            hub,
            endpoint,
            mirrors,
            feed,
        })
    }

    /// Waits until the mirrors have caught up with the hub's own entries (registry,
    /// catalogue); returns the log size they reached.
    async fn catch_up(&mut self, pki: &Path) -> Result<u64> {
        let mut hub_rpc = HubServiceClient::new(snap::connect(&self.endpoint, pki).await?);
        let before = hub_rpc
            .get_checkpoint(v1::GetCheckpointRequest::default())
            .await?
            .into_inner()
            .tree_size;
        self.feed
            .wait_all(before, &mut self.hub, &mut self.mirrors)
            .await?;
        Ok(before)
    }

    /// The timed load on the hub (paced with `--rate`), every statement with a log entry in
    /// its receipt; then the time from the load's end until every mirror has applied the
    /// last entry, and the mirrors' CPU seconds from the load's start until then (None when
    /// unknown or without mirrors).
    async fn timed_run(
        &mut self,
        o: &Options,
        pki: &Path,
        chains: Vec<Vec<v1::Envelope>>,
        total: usize,
        before: u64,
    ) -> Result<(LoadRun, Duration, Option<f64>)> {
        let mirrors_before = self.mirrors_cpu();
        // Each client's interval between scheduled sends, when paced.
        let pace = o
            .rate
            .map(|r| Duration::from_secs_f64(o.clients as f64 / r));
        let hub_run = load(
            &self.endpoint,
            pki,
            o.clients,
            o.clients,
            chains,
            self.hub.pid(),
            Sending {
                window: o.inflight,
                pace,
            },
        )
        .await?;
        let load_end = Instant::now();
        let last = hub_run.receipts.iter().map(|r| r.0).max().unwrap_or(before);
        if hub_run.receipts.len() != total {
            bail!(
                "{} of {total} receipts carried a log entry",
                hub_run.receipts.len()
            );
        }
        self.feed
            .wait_all(last, &mut self.hub, &mut self.mirrors)
            .await?;
        let caught_up = load_end.elapsed();
        let mirror_cpu = match (mirrors_before, self.mirrors_cpu()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        Ok((hub_run, caught_up, mirror_cpu))
    }

    /// CPU seconds of all the mirror nodes so far; None without mirrors or when one is unknown.
    fn mirrors_cpu(&self) -> Option<f64> {
        if self.mirrors.is_empty() {
            return None;
        }
        self.mirrors
            .iter()
            .map(|m| m.pid().and_then(cpu_seconds))
            .sum()
    }

    /// Stops the pollers, reads the hub's commit metrics from its ops port, and stops the
    /// mirrors; returns each mirror's cursor samples and the metrics.
    async fn stop_mirrors(&mut self, dir: &Path) -> Result<(Vec<CursorSamples>, String)> {
        let samples = self.feed.stop().await?;
        let ops = std::fs::read_to_string(dir.join("hub.addr.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["ops"].as_str().map(str::to_string))
            .unwrap_or_default();
        let commits = commit_metrics(&ops);
        for m in &mut self.mirrors {
            snap::stop(m).await;
        }
        Ok((samples, commits))
    }

    /// A node that joins once the load is over: the first mirror's configuration with an
    /// empty data directory, on both cores, mirroring the whole log from its start while the
    /// hub only serves the feed; its time and CPU to reach `last`.
    async fn late_mirror(
        &mut self,
        o: &Options,
        dir: &Path,
        pki: &Path,
        last: u64,
    ) -> Result<CatchUp> {
        let id = MIRROR_NODES[0];
        let text = std::fs::read_to_string(pki.join(format!("{id}.toml")))?;
        let late_text = text.replace(
            &format!("data_dir = \"data/{id}\""),
            &format!("data_dir = \"data/{id}-late\""),
        );
        if late_text == text {
            bail!("no data_dir = \"data/{id}\" in {id}.toml to move");
        }
        let config = pki.join(format!("{id}-late.toml"));
        std::fs::write(&config, late_text)?;
        let start = Instant::now();
        let mut node =
            snap::spawn_on(&o.rcpfed, "0,1", dir, "node", &config, Some(&self.endpoint)).await?;
        let client = NodeServiceClient::new(snap::connect(&node.endpoint(), pki).await?);
        let pid = node.pid();
        snap::poll_until(
            &format!("a late node mirroring the feed up to {last}"),
            &mut [&mut node, &mut self.hub],
            || {
                let mut client = client.clone();
                async move {
                    let status = client
                        .get_node_status(v1::GetNodeStatusRequest::default())
                        .await
                        .ok()?
                        .into_inner();
                    (status.feed_cursor >= last).then_some(())
                }
            },
        )
        .await?;
        let took = start.elapsed();
        let cpu = pid.and_then(cpu_seconds);
        snap::stop(&mut node).await;
        Ok(CatchUp {
            entries: last,
            took,
            cpu,
        })
    }

    async fn stop(mut self) {
        snap::stop(&mut self.hub).await;
    }
}

/// A late node's catch-up: the log it mirrored, how long it took from its start, and its CPU
/// seconds (start-up included).
struct CatchUp {
    entries: u64,
    took: Duration,
    cpu: Option<f64>,
}

/// The bare ack service over the same mTLS: the load at the hub's concurrency, then driven
/// hard (`bare_connections` × `bare_inflight` lanes).
async fn bare_runs(
    o: &Options,
    dir: &Path,
    pki: &Path,
    chains: &[Vec<v1::Envelope>],
) -> Result<(LoadRun, LoadRun)> {
    let exe = std::env::current_exe()?;
    let bare_addr_file = dir.join("bare.addr.json");
    let mut bare = pinned_command(0, &exe);
    bare.arg("bare-server")
        .arg("--pki")
        .arg(pki)
        .arg("--addr-file")
        .arg(&bare_addr_file);
    let mut bare = bare.spawn()?;
    let addr = wait_addr(&bare_addr_file, &mut bare).await?;
    let port = addr.rsplit(':').next().unwrap_or_default().to_string();
    let bare_endpoint = format!("https://localhost:{port}");
    let bare_same = load(
        &bare_endpoint,
        pki,
        o.clients,
        o.clients,
        chains.to_vec(),
        bare.id(),
        Sending {
            window: o.inflight,
            pace: None,
        },
    )
    .await?;
    let lanes = o.bare_connections * o.bare_inflight;
    let mut hard: Vec<Vec<v1::Envelope>> = vec![Vec::new(); lanes];
    for (i, env) in chains.iter().flatten().enumerate() {
        hard[i % lanes].push(env.clone());
    }
    let bare_hard = load(
        &bare_endpoint,
        pki,
        o.clients,
        o.bare_connections,
        hard,
        bare.id(),
        Sending {
            window: 1,
            pace: None,
        },
    )
    .await?;
    bare.kill().await?;
    Ok((bare_same, bare_hard))
}

/// Single-core rates of the signature work a hub cannot avoid, over the same statements.
#[derive(Clone, Copy)]
struct SignatureRates {
    /// ed25519-dalek's `verify_strict`: the baseline.
    verify_strict: f64,
    /// rcpfed's check (`VerifyKey::verify`: the same outcome as `verify_strict`, without
    /// decoding R), which the hub runs on every statement.
    rcpfed_verify: f64,
    /// The hub's signature of one receipt per statement.
    receipt_sign: f64,
}

/// Measures [`SignatureRates`] on this core; every statement must verify both ways. The three
/// are timed in turn over the same batch of statements, batch after batch (which one goes first
/// alternating), and each rate is that of its fastest batch: on a shared machine a batch the
/// scheduler interrupted says nothing about the work, and the fastest is the core's capacity.
fn signature_rates(
    fed: &Federation,
    chains: &[Vec<v1::Envelope>],
    total: usize,
) -> Result<SignatureRates> {
    const BATCH: usize = 100;
    // Each statement with its key both ways, its signature for dalek, and its receipt.
    let mut checks = Vec::with_capacity(total);
    for (n, env) in chains.iter().flatten().enumerate() {
        let (owner, key) = fed.key_owner(&env.signatures[0].key_id).context("key")?;
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes())?;
        let sig = <[u8; 64]>::try_from(env.signatures[0].sig.as_slice())?;
        let receipt = Receipt {
            federation_id: FEDERATION.into(),
            hub_id: "gfmd".into(),
            node_id: owner.id.clone(),
            seq: n as u64 + 1,
            statement_digest: Digest::of(&env.payload),
            feed_index: n as u64 + 1,
            accepted_at: time::OffsetDateTime::now_utc(),
        };
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        checks.push((key, dalek, env, sig, receipt));
    }
    let hub_key = SecretKey::generate()?;
    let (mut strict, mut ours) = (0usize, 0usize);
    // The fastest time per statement of each, over the batches.
    let mut best = [f64::INFINITY; 3];
    for (b, batch) in checks.chunks(BATCH).enumerate() {
        for turn in 0..3 {
            let which = (turn + b) % 3;
            let start = Instant::now();
            match which {
                0 => {
                    strict += batch
                        .iter()
                        .filter(|(_, dalek, env, sig, _)| {
                            dalek
                                .verify_strict(&pae(&env.payload_type, &env.payload), sig)
                                .is_ok()
                        })
                        .count();
                }
                1 => {
                    ours += batch
                        .iter()
                        .filter(|(key, _, env, _, _)| {
                            key.verify_strict(
                                &pae(&env.payload_type, &env.payload),
                                &env.signatures[0].sig,
                            )
                        })
                        .count();
                }
                _ => {
                    for (_, _, _, _, receipt) in batch {
                        std::hint::black_box(receipt.sign(&hub_key));
                    }
                }
            }
            let per_statement = start.elapsed().as_secs_f64() / batch.len() as f64;
            best[which] = best[which].min(per_statement);
        }
    }
    if strict != total || ours != total {
        bail!(
            "of {total} synthetic statements, {strict} pass verify_strict and {ours} rcpfed's check"
        );
    }
    let [verify_strict, rcpfed_verify, receipt_sign] = best.map(|t| 1.0 / t);
    Ok(SignatureRates {
        verify_strict,
        rcpfed_verify,
        receipt_sign,
    })
}

/// Feed latency of each entry: receipt at the client → the last mirror to apply it (each
/// mirror's samples are (time, cursor) in cursor order). Empty without mirrors.
fn feed_latency(receipts: &[(u64, Instant)], samples: &[CursorSamples]) -> Result<Vec<Duration>> {
    let mut feed_latency = Vec::new();
    if samples.is_empty() {
        return Ok(feed_latency);
    }
    for &(index, receipt) in receipts {
        let mut latest = receipt;
        for s in samples {
            let k = s.partition_point(|&(_, cursor)| cursor < index);
            let at = s
                .get(k)
                .map(|&(t, _)| t)
                .with_context(|| format!("no mirror sample reached feed index {index}"))?;
            latest = latest.max(at);
        }
        feed_latency.push(latest.saturating_duration_since(receipt));
    }
    Ok(feed_latency)
}

/// What an ingest run measured, for [`print_report`].
struct IngestReport<'a> {
    o: &'a Options,
    total: usize,
    signatures: SignatureRates,
    bare_same: &'a LoadRun,
    bare_hard: &'a LoadRun,
    hub_run: &'a LoadRun,
    commits: &'a str,
    feed_latency: Vec<Duration>,
    caught_up: Duration,
    /// All the mirrors' CPU seconds from the load's start until they caught up.
    mirror_cpu: Option<f64>,
    /// A node that joined after the load, mirroring the whole log.
    late: Option<CatchUp>,
    threads_pinned: usize,
    threads: usize,
}

/// Prints the rates, latencies and ratios of an ingest run.
fn print_report(r: &IngestReport<'_>) {
    let IngestReport {
        o,
        total,
        signatures,
        bare_same,
        bare_hard,
        hub_run,
        commits,
        caught_up,
        ref feed_latency,
        ..
    } = *r;
    let hub_rate = hub_run.rate();
    let verify_rate = signatures.verify_strict;
    println!();
    println!("verify_strict, 1 core, same statements     : {verify_rate:>9.0} statements/s");
    println!(
        "  rcpfed's check (same outcome, R not decoded): {:>7.0}/s; the hub's receipt signature {:.0}/s",
        signatures.rcpfed_verify, signatures.receipt_sign
    );
    println!(
        "bare tonic ack, same mTLS, {:>3} conn × {}    : {:>9.0} statements/s   {}",
        o.clients,
        o.inflight,
        bare_same.rate(),
        bare_same.describe()
    );
    println!(
        "bare tonic ack, {:>3} conn × {:>2} in flight    : {:>9.0} statements/s   {}",
        o.bare_connections,
        o.bare_inflight,
        bare_hard.rate(),
        bare_hard.describe()
    );
    if let Some(rate) = o.rate {
        println!(
            "rcpfed hub, PACED at {rate:.0} statements/s offered: {hub_rate:>9.0} statements/s achieved   {}",
            hub_run.describe()
        );
    } else {
        println!(
            "rcpfed hub, durable before each receipt    : {hub_rate:>9.0} statements/s   {}",
            hub_run.describe()
        );
    }
    println!(
        "  ({total} statements from {} clients × {} in flight; {} mirror(s) subscribed)",
        o.clients, o.inflight, o.mirrors
    );
    println!("hub commits                                : {commits}");
    if o.mirrors > 0 {
        let l = Percentiles::of(feed_latency.clone());
        println!(
            "feed latency, receipt → all {} mirrors      : p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (poll every {} ms); all caught up {:.2} s after the last receipt",
            o.mirrors,
            l.p50,
            l.p99,
            l.max,
            POLL.as_millis(),
            caught_up.as_secs_f64()
        );
        print_mirror_core(r);
    }
    if let Some(late) = &r.late {
        let rate = late.entries as f64 / late.took.as_secs_f64();
        // Each entry costs a mirror two signature checks: the statement's and the receipt's.
        let single_core = signatures.rcpfed_verify / 2.0;
        println!(
            "late node, whole log mirrored (both cores) : {:>9.0} entries/s   ({} entries in {:.2} s from its start, node CPU {}; {:.2} × the single-core rate of two signature checks per entry, {:.0}/s)",
            rate,
            late.entries,
            late.took.as_secs_f64(),
            late.cpu.map_or("unknown".into(), |c| format!("{c:.2} s")),
            rate / single_core,
            single_core
        );
    }
    print_ratios(r);
}

/// What the mirrors cost and how fast their shared core can keep up: each node's CPU per
/// feed entry, and the rate at which the mirrors and the load generator fill core 1.
fn print_mirror_core(r: &IngestReport<'_>) {
    let (Some(mirror_cpu), Some(load_cpu)) = (r.mirror_cpu, r.hub_run.load_cpu) else {
        return;
    };
    let entries = r.hub_run.sent as f64;
    let per_entry = mirror_cpu / entries / r.o.mirrors as f64;
    let load_per_statement = load_cpu / entries;
    let core_full = 1.0 / (per_entry * r.o.mirrors as f64 + load_per_statement);
    println!(
        "mirror CPU per feed entry, each node       : {:>9.1} µs   (load generator {:.1} µs per statement; together they fill core 1 at {:.0} statements/s{})",
        per_entry * 1e6,
        load_per_statement * 1e6,
        core_full,
        r.o.rate
            .map(|rate| format!(
                ", {:.0} % of it at the offered rate",
                rate / core_full * 100.0
            ))
            .unwrap_or_default()
    );
}

/// The most any hub could reach on one core: the bare server's transport cost plus the work
/// no hub can skip, one strict signature check per statement (batch verification is not
/// strict-equivalent) and one receipt signature (no storage, log or feed at all), and the
/// ratios that floor allows against the two baselines. Against the bare server the ratio is
/// to its capacity, which is its rate only when the load saturates its core (as the target
/// asks); an unsaturated baseline makes the measured throughput ratio flatter the hub.
fn print_floor(bare_cpu: Option<f64>, signatures: SignatureRates) {
    let Some(bare_cpu) = bare_cpu else {
        println!(
            "one core's floor for any hub              :   unknown (the bare server's CPU was too small to measure)"
        );
        return;
    };
    let verify = 1.0 / signatures.rcpfed_verify;
    let sign = 1.0 / signatures.receipt_sign;
    let floor = bare_cpu + verify + sign;
    println!(
        "one core's floor for any hub              : {:>9.1} µs per statement   (transport {:.1} + one strict check {:.1} + receipt signature {:.1}; at most {:.0}/s: {:.2} × bare ack's capacity, its rate when it saturates its core, and {:.2} × verify_strict)",
        floor * 1e6,
        bare_cpu * 1e6,
        verify * 1e6,
        sign * 1e6,
        1.0 / floor,
        bare_cpu / floor,
        1.0 / floor / signatures.verify_strict
    );
}

/// The ratios of the hub to the bare ack service and to verify_strict, and where the load
/// ran.
fn print_ratios(r: &IngestReport<'_>) {
    let IngestReport {
        bare_same,
        bare_hard,
        hub_run,
        threads_pinned,
        threads,
        ..
    } = *r;
    let hub_rate = hub_run.rate();
    let busy = bare_hard.server_busy().unwrap_or(0.0);
    let load_busy = bare_hard.load_busy().unwrap_or(0.0);
    if busy < 0.9 {
        let why = if load_busy >= 0.9 {
            "the load generator's core was saturated first"
        } else {
            "neither process used its whole core: other processes on this machine took the rest"
        };
        println!(
            "NOTE: the bare server's core was {:.0} % busy when driven hard (load generator {:.0} %): {why}, so the throughput ratio below flatters the hub; the CPU ratio does not depend on it",
            busy * 100.0,
            load_busy * 100.0
        );
    }
    if let (Some(hub_cpu), Some(bare_cpu)) =
        (hub_run.cpu_per_statement(), bare_hard.cpu_per_statement())
    {
        println!(
            "CPU per statement, bare ack / hub          : {:>9.2}   ({:.1} µs / {:.1} µs; one core's capacity: bare {:.0}/s, hub {:.0}/s)",
            bare_cpu / hub_cpu,
            bare_cpu * 1e6,
            hub_cpu * 1e6,
            1.0 / bare_cpu,
            1.0 / hub_cpu
        );
    }
    print_floor(bare_hard.cpu_per_statement(), r.signatures);
    println!(
        "ratio hub / bare ack driven hard           : {:>9.2}   (target ≥ 0.50)",
        hub_rate / bare_hard.rate()
    );
    println!(
        "ratio hub / bare ack at the same concurrency: {:>8.2}",
        hub_rate / bare_same.rate()
    );
    println!(
        "ratio hub / single-core verify_strict      : {:>9.2}   (target ≥ 0.50)",
        hub_rate / r.signatures.verify_strict
    );
    println!(
        "load generator threads pinned to core 1    : {threads_pinned} of {threads}; load average {}",
        snap::loadavg()
    );
}

/// What one load run gave.
struct LoadRun {
    sent: usize,
    took: Duration,
    /// Each request, submit to answer.
    latencies: Vec<Duration>,
    /// (feed index, when the receipt arrived) of every answer carrying a log entry.
    receipts: Vec<(u64, Instant)>,
    /// CPU seconds of the server process during the run.
    server_cpu: Option<f64>,
    /// CPU seconds of this process (the load generator) during the run.
    load_cpu: Option<f64>,
}

impl LoadRun {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.took.as_secs_f64()
    }

    /// Share of one core the server used.
    fn server_busy(&self) -> Option<f64> {
        Some(self.server_cpu? / self.took.as_secs_f64())
    }

    /// Server CPU seconds per statement.
    fn cpu_per_statement(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (cpu > 0.0 && self.sent > 0).then(|| cpu / self.sent as f64)
    }

    fn load_busy(&self) -> Option<f64> {
        Some(self.load_cpu? / self.took.as_secs_f64())
    }

    fn describe(&self) -> String {
        let l = Percentiles::of(self.latencies.clone());
        let cpu = match (self.server_busy(), self.server_cpu) {
            (Some(busy), Some(cpu)) => format!(
                "server core {:.0} % busy, {:.1} µs CPU per statement",
                busy * 100.0,
                cpu * 1e6 / self.sent as f64
            ),
            _ => "server CPU unknown".into(),
        };
        let load = self
            .load_busy()
            .map(|b| format!("load core {:.0} % busy", b * 100.0))
            .unwrap_or_default();
        format!(
            "(receipt latency p50 {:.2} ms, p99 {:.2} ms; {cpu}; {load})",
            l.p50, l.p99
        )
    }
}

/// Sends `lanes`, each a sequence of envelopes with `window` requests in flight (started in
/// order, each as soon as the oldest of a full window is answered), over `connections`
/// mTLS connections (lane i on connection i mod connections; connection c authenticated as
/// synthetic member c mod identities). Connections are made before the clock starts. With
/// `pace`, lane i sends its k-th envelope at `start + (k + i / lanes) × pace` (or as soon as the
/// previous answer came, if later), and its latency counts from that scheduled time.
async fn load(
    endpoint: &str,
    pki: &Path,
    identities: usize,
    connections: usize,
    lanes: Vec<Vec<v1::Envelope>>,
    server_pid: Option<u32>,
    Sending { window, pace }: Sending,
) -> Result<LoadRun> {
    let mut clients = Vec::with_capacity(connections);
    for c in 0..connections {
        let tls = tls_of(pki, &member_id(c % identities));
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
            .tls_config(tls.client_config("localhost")?)?
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        clients.push(
            HubServiceClient::new(channel)
                .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES),
        );
    }
    let sent: usize = lanes.iter().map(Vec::len).sum();
    let server_before = server_pid.and_then(cpu_seconds);
    let load_before = cpu_seconds(std::process::id());
    let start = Instant::now();
    let lane_count = lanes.len().max(1);
    let mut tasks = Vec::with_capacity(lanes.len());
    for (i, lane) in lanes.into_iter().enumerate() {
        let client = clients[i % connections].clone();
        // Lanes are spread over the interval, so the offered load is even.
        let offset = pace.map(|p| p.mul_f64(i as f64 / lane_count as f64));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(lane.len());
            let mut receipts = Vec::with_capacity(lane.len());
            let mut in_flight = std::collections::VecDeque::with_capacity(window);
            for (k, env) in lane.into_iter().enumerate() {
                let t = match (pace, offset) {
                    (Some(pace), Some(offset)) => {
                        let scheduled = start + offset + pace.mul_f64(k as f64);
                        tokio::time::sleep_until(scheduled.into()).await;
                        scheduled
                    }
                    _ => Instant::now(),
                };
                if in_flight.len() >= window.max(1) {
                    settle(&mut in_flight, &mut latencies, &mut receipts).await?;
                }
                let mut sender = client.clone();
                // The answer's time is taken as it arrives: with one request in flight the
                // lane only collects it at its next scheduled send.
                let call = tokio::spawn(async move {
                    let answer = sender
                        .submit_statement(v1::SubmitStatementRequest {
                            envelope: Some(env),
                        })
                        .await;
                    (answer, Instant::now())
                });
                in_flight.push_back((t, call));
            }
            while !in_flight.is_empty() {
                settle(&mut in_flight, &mut latencies, &mut receipts).await?;
            }
            Ok::<_, anyhow::Error>((latencies, receipts))
        }));
    }
    let mut latencies = Vec::with_capacity(sent);
    let mut receipts = Vec::with_capacity(sent);
    for t in tasks {
        let (l, r) = t.await??;
        latencies.extend(l);
        receipts.extend(r);
    }
    let took = start.elapsed();
    let server_cpu = match (server_before, server_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let load_cpu = match (load_before, cpu_seconds(std::process::id())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(LoadRun {
        sent,
        took,
        latencies,
        receipts,
        server_cpu,
        load_cpu,
    })
}

/// How each lane sends: requests in flight, and the interval between scheduled sends.
#[derive(Clone, Copy)]
struct Sending {
    window: usize,
    pace: Option<Duration>,
}

/// A submission in flight: when it was (scheduled to be) sent, and the call, which gives the
/// answer and when it arrived.
type Submission = (
    Instant,
    tokio::task::JoinHandle<(
        Result<tonic::Response<v1::SubmitStatementResponse>, tonic::Status>,
        Instant,
    )>,
);

/// Waits for the oldest submission in flight and records its latency and log entry.
async fn settle(
    in_flight: &mut std::collections::VecDeque<Submission>,
    latencies: &mut Vec<Duration>,
    receipts: &mut Vec<(u64, Instant)>,
) -> Result<()> {
    let Some((t, call)) = in_flight.pop_front() else {
        return Ok(());
    };
    let (answer, answered) = call.await?;
    let answer = answer.map_err(|s| anyhow!("submit failed: {:?} {}", s.code(), s.message()))?;
    latencies.push(answered.saturating_duration_since(t));
    if let Some(log) = answer.into_inner().log {
        receipts.push((log.leaf_index + 1, answered));
    }
    Ok(())
}

/// One mirror's feed cursor at each change: (when the poll answered, cursor).
type CursorSamples = Vec<(Instant, u64)>;

/// Pollers of every mirror's feed cursor.
struct Feed {
    stop: Arc<AtomicBool>,
    latest: Vec<Arc<AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<Result<CursorSamples>>>,
}

impl Feed {
    async fn watch(pki: &Path, mirrors: &[Proc]) -> Result<Feed> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut latest = Vec::new();
        let mut tasks = Vec::new();
        for m in mirrors {
            let mut client = NodeServiceClient::new(snap::connect(&m.endpoint(), pki).await?);
            let (stop, cursor) = (Arc::clone(&stop), Arc::new(AtomicU64::new(0)));
            latest.push(Arc::clone(&cursor));
            tasks.push(tokio::spawn(async move {
                let mut samples = CursorSamples::new();
                let mut tick = tokio::time::interval(POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let status = client
                        .get_node_status(v1::GetNodeStatusRequest::default())
                        .await
                        .map_err(|s| anyhow!("GetNodeStatus: {:?} {}", s.code(), s.message()))?
                        .into_inner();
                    let at = Instant::now();
                    if samples.last().is_none_or(|&(_, c)| c != status.feed_cursor) {
                        samples.push((at, status.feed_cursor));
                        cursor.store(status.feed_cursor, Ordering::Relaxed);
                    }
                }
                Ok(samples)
            }));
        }
        Ok(Feed {
            stop,
            latest,
            tasks,
        })
    }

    /// Waits until every mirror has applied the feed up to `index`.
    async fn wait_all(&self, index: u64, hub: &mut Proc, mirrors: &mut [Proc]) -> Result<()> {
        let mut procs: Vec<&mut Proc> = std::iter::once(hub).chain(mirrors.iter_mut()).collect();
        snap::poll_until(
            &format!("every mirror applying the feed up to {index}"),
            &mut procs,
            || {
                let done = self
                    .latest
                    .iter()
                    .all(|c| c.load(Ordering::Relaxed) >= index);
                async move { done.then_some(()) }
            },
        )
        .await
    }

    async fn stop(&mut self) -> Result<Vec<CursorSamples>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in std::mem::take(&mut self.tasks) {
            out.push(t.await??);
        }
        Ok(out)
    }
}

/// Latency percentiles in milliseconds.
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<Duration>) -> Percentiles {
        if v.is_empty() {
            return Percentiles {
                p50: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
        v.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p99 = (v.len() * 99 / 100).min(v.len() - 1);
        Percentiles {
            p50: ms(v[v.len() / 2]),
            p99: ms(v[p99]),
            max: ms(v[v.len() - 1]),
        }
    }
}

/// User + system CPU seconds of a process so far (`/proc/<pid>/stat`).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // state is the first of them, utime the 12th and stime the 13th.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be read).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// (threads of this process allowed only on `cpu`, all threads).
fn threads_on(cpu: usize) -> (usize, usize) {
    let want = cpu.to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let mut on = 0;
    let mut all = 0;
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        all += 1;
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim);
        if allowed == Some(want.as_str()) {
            on += 1;
        }
    }
    (on, all)
}

/// Command-line options of `rcpfed-bench ingest --from-log`.
pub struct OnLogOptions {
    pub rcpfed: PathBuf,
    /// A directory grown by `rcpfed-bench log --dir`: its PKI (`fed/`) and hub database
    /// (`data/`).
    pub log_dir: PathBuf,
    pub clients: usize,
    pub per_client: usize,
    /// Statements each client keeps in flight.
    pub inflight: usize,
    pub payload_bytes: usize,
    pub mirrors: usize,
    pub rate: Option<f64>,
    pub rounds: usize,
}

/// One hub run of `--from-log`.
struct OnLogRun {
    /// Log entries when the hub started.
    entries_before: u64,
    run: LoadRun,
    commits: String,
}

/// Ingest on a large existing log against ingest on an empty log, in one run: the same PKI
/// (the `log` benchmark's, so the hub's registry, keys and catalogue match its database), the
/// same clients and payload size, the hub pinned to core 0 and the load to core 1. The large
/// database is a copy, so the grown one is left as it was. Each client's chain continues from
/// its head in the database it is sent to (the `log` benchmark's synthetic nodes are the
/// clients). Rounds alternate empty and large so drift on a shared machine hits both alike.
pub async fn run_on_log(o: OnLogOptions) -> Result<()> {
    if !o.rcpfed.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p rcpfed",
            o.rcpfed.display()
        );
    }
    if o.clients == 0 || o.per_client == 0 || o.rounds == 0 {
        bail!("--clients, --per-client and --rounds must be at least 1");
    }
    if o.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of statements per second");
    }
    if o.mirrors != 0 {
        bail!(
            "--from-log needs --mirrors 0: the log benchmark's PKI has no regional nodes, and a mirror would first have to replay the whole log"
        );
    }
    let log_dir = std::path::absolute(&o.log_dir)
        .with_context(|| format!("--from-log {}", o.log_dir.display()))?;
    let pki = log_dir.join("fed");
    let source = log_dir.join("data");
    if !pki.join("federation.toml").is_file() || !source.join("hub.sqlite").is_file() {
        bail!(
            "--from-log {}: no fed/federation.toml and data/hub.sqlite there; grow one with `rcpfed-bench log --dir {0}`",
            log_dir.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("rcpfed-bench-ingest-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_on_log_in(&o, &pki, &source, &dir).await;
    if result.is_err() {
        println!("working directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// What every timed run on the grown log shares.
struct OnLogSetup<'a> {
    o: &'a OnLogOptions,
    pki: &'a Path,
    dir: &'a Path,
    fed: Federation,
    keys: Vec<SecretKey>,
    pace: Option<Duration>,
}

const ON_LOG_LABELS: [&str; 2] = ["empty log", "large log"];

async fn run_on_log_in(o: &OnLogOptions, pki: &Path, source: &Path, dir: &Path) -> Result<()> {
    use rcpfed_store::{HubStore as _, SqliteHubStore};

    let fed = Federation::from_toml(&std::fs::read_to_string(pki.join("federation.toml"))?)?;
    let keys = member_signing_keys(pki, o.clients)?;

    // The hub writes into the database it serves: copy the grown one (the hub was stopped,
    // so the files are consistent).
    let large = dir.join("large");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&large)?;
    std::fs::create_dir_all(&empty)?;
    let copy_start = Instant::now();
    let copied = copy_files(source, &large)?;
    let large_db = large.join("hub.sqlite");
    let empty_db = empty.join("hub.sqlite");
    let large_entries = SqliteHubStore::open(&large_db)?.last_feed_index()?;
    let pinned = pin_self(1, true);
    println!(
        "rcpfed-bench ingest --from-log: {} clients × {} statements per run, {} in flight per client, payload ~{} bytes (synthetic), {} round(s) alternating an empty log and a copy of {} ({large_entries} entries, {:.2} GB copied in {:.1} s); hub on core 0, load on core 1: {pinned}; load average {}",
        o.clients,
        o.per_client,
        o.inflight,
        o.payload_bytes,
        o.rounds,
        source.join("hub.sqlite").display(),
        copied as f64 / 1e9,
        copy_start.elapsed().as_secs_f64(),
        snap::loadavg()
    );

    let configs = [
        write_hub_config(dir, "hub-empty.toml", pki, &empty)?,
        write_hub_config(dir, "hub-large.toml", pki, &large)?,
    ];
    let dbs = [&empty_db, &large_db];
    let setup = OnLogSetup {
        o,
        pki,
        dir,
        fed,
        keys,
        pace: o
            .rate
            .map(|r| Duration::from_secs_f64(o.clients as f64 / r)),
    };
    let mut runs: [Vec<OnLogRun>; 2] = [Vec::new(), Vec::new()];
    for round in 0..o.rounds {
        for which in 0..2 {
            let run = one_run_on_log(&setup, which, dbs[which], &configs[which]).await?;
            println!(
                "  round {} {:<9} ({:>9} entries): {:>7.0} statements/s   {}",
                round + 1,
                ON_LOG_LABELS[which],
                run.entries_before,
                run.run.rate(),
                run.run.describe()
            );
            if !run.commits.is_empty() {
                println!("      hub commits: {}", run.commits);
            }
            runs[which].push(run);
        }
    }
    print_on_log_summary(o, &runs, large_entries);
    Ok(())
}

/// The signing keys of the first `clients` synthetic members of the log's PKI.
fn member_signing_keys(pki: &Path, clients: usize) -> Result<Vec<SecretKey>> {
    (0..clients)
        .map(|i| {
            let path = pki.join("members").join(member_id(i)).join("signing.key");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{} is missing: --clients must not exceed the log's synthetic nodes (`log --nodes`)",
                    path.display()
                )
            })?;
            Ok(SecretKey::from_file_text(&text)?)
        })
        .collect()
}

/// Copies the regular files of `source` into `target`; returns the bytes copied.
fn copy_files(source: &Path, target: &Path) -> Result<u64> {
    let mut copied = 0u64;
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            copied += std::fs::copy(entry.path(), target.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(copied)
}

/// One timed run: starts the hub on database `db` (config `config`), sends every client's
/// next chain and stops the hub.
async fn one_run_on_log(
    setup: &OnLogSetup<'_>,
    which: usize,
    db: &Path,
    config: &Path,
) -> Result<OnLogRun> {
    use rcpfed_store::{HubStore as _, SqliteHubStore};

    let o = setup.o;
    // Each chain continues from the client's head in this database.
    let store = SqliteHubStore::open(db)?;
    let entries_before = store.last_feed_index()?;
    let stored = store.chain_heads()?;
    drop(store);
    let heads: Vec<_> = (0..o.clients)
        .map(|i| {
            let id = member_id(i);
            stored
                .iter()
                .find(|h| h.node_id == id)
                .map(|h| (h.seq, h.digest))
        })
        .collect();
    let chains = make_chains(
        &setup.fed,
        &setup.keys,
        &heads,
        o.per_client,
        o.payload_bytes,
    );
    let stem = if which == 0 { "hub-empty" } else { "hub-large" };
    let addr_file = setup.dir.join(format!("{stem}.addr.json"));
    // The previous round's address file would be taken for this hub's.
    if addr_file.exists() {
        std::fs::remove_file(&addr_file)?;
    }
    let mut hub = snap::spawn(&o.rcpfed, 0, setup.dir, "hub", config, None).await?;
    let endpoint = hub.endpoint();
    let run = load(
        &endpoint,
        setup.pki,
        o.clients,
        o.clients,
        chains,
        hub.pid(),
        Sending {
            window: o.inflight,
            pace: setup.pace,
        },
    )
    .await;
    let ops = std::fs::read_to_string(&addr_file)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["ops"].as_str().map(str::to_string))
        .unwrap_or_default();
    let commits = commit_metrics(&ops);
    snap::stop(&mut hub).await;
    let run = run?;
    let total = o.clients * o.per_client;
    if run.receipts.len() != total {
        bail!(
            "{}: {} of {total} receipts carried a log entry",
            ON_LOG_LABELS[which],
            run.receipts.len()
        );
    }
    Ok(OnLogRun {
        entries_before,
        run,
        commits,
    })
}

/// The medians over the rounds and the large / empty ratio.
fn print_on_log_summary(o: &OnLogOptions, runs: &[Vec<OnLogRun>; 2], large_entries: u64) {
    let median = |v: &[OnLogRun]| {
        let mut rates: Vec<f64> = v.iter().map(|r| r.run.rate()).collect();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    };
    let (empty_rate, large_rate) = (median(&runs[0]), median(&runs[1]));
    let per_round: Vec<String> = runs[0]
        .iter()
        .zip(&runs[1])
        .map(|(e, l)| format!("{:.2}", l.run.rate() / e.run.rate()))
        .collect();
    let cpu = |v: &[OnLogRun]| {
        let mut c: Vec<f64> = v.iter().filter_map(|r| r.run.cpu_per_statement()).collect();
        c.sort_by(f64::total_cmp);
        c.get(c.len() / 2).map(|s| s * 1e6)
    };
    println!();
    println!(
        "ingest on an empty log                      : {empty_rate:>9.0} statements/s (median of {})",
        o.rounds
    );
    println!(
        "ingest on a {:>9}-entry log              : {large_rate:>9.0} statements/s (median of {})",
        runs[1].first().map_or(large_entries, |r| r.entries_before),
        o.rounds
    );
    if let (Some(e), Some(l)) = (cpu(&runs[0]), cpu(&runs[1])) {
        println!("hub CPU per statement, empty / large log    : {e:.1} µs / {l:.1} µs");
    }
    for (label, v) in ON_LOG_LABELS.iter().zip(runs) {
        if let Some(last) = v.last().filter(|r| !r.commits.is_empty()) {
            println!(
                "hub commits, {label:<9} (last round)       : {}",
                last.commits
            );
        }
    }
    println!(
        "ratio large log / empty log                 : {:>9.2}   (target ≥ 0.90; per round {})",
        large_rate / empty_rate,
        per_round.join(" ")
    );
    println!(
        "load average                                : {}",
        snap::loadavg()
    );
}

/// A hub configuration on the `log` benchmark's PKI serving the database in `data_dir`
/// (absolute paths; revocation off as in the `log` benchmark, whose PKI has no CRL).
fn write_hub_config(dir: &Path, name: &str, pki: &Path, data_dir: &Path) -> Result<PathBuf> {
    let p = |rel: &str| pki.join(rel).to_string_lossy().into_owned();
    let text = format!(
        "# rcpfed-bench ingest --from-log: synthetic hub configuration\nroot_trust_file = {:?}\nregistry_file = {:?}\nrevocation = \"disabled\"\ndata_dir = {:?}\nsigning_key = {:?}\n[tls]\nca_cert = {:?}\ncert = {:?}\nkey = {:?}\n",
        p("root-trust.toml"),
        p("registry/registry.v1.json"),
        data_dir.to_string_lossy(),
        p("members/gfmd/signing.key"),
        p("ca.pem"),
        p("members/gfmd/tls.pem"),
        p("members/gfmd/tls.key"),
    );
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}
