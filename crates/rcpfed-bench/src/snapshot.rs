//! The `snapshot` benchmark: a one-million-observation indicator snapshot imported, validated,
//! signed, sent and stored, against `sqlite3 .import` of the same CSV in the same run, then
//! the hub's query latency for one indicator across all regions.
//!
//! All data is SYNTHETIC: the CSV comes from `rcpfed_import::synthetic_indicator_csv` (every
//! row's SOURCE says "SYNTHETIC load-test data, not real"; the keys are enumerated from the
//! shipped catalogue for the sample node `colombo`, the values drawn inside its plausible
//! ranges), and the two small snapshots of `abu-dhabi` and `midwa` come from the same
//! `SyntheticPlan` for their own member states.
//!
//! What is timed for rcpfed, wall-clock from the first byte read to the hub having stored and
//! applied the snapshot:
//!
//! 1. this process reads and parses the CSV (`IndicatorCsvBatches`) and streams the
//!    observations to the real `colombo` node with `NodeService.PublishSnapshot`;
//! 2. the node validates them against the catalogue it received through the feed, cuts them
//!    into chunks, signs the manifest, stores statement and chunks, and answers;
//! 3. its outbox streams the envelope and chunks to the real hub with
//!    `HubService.SubmitSnapshot`; the hub checks each chunk against the manifest, validates
//!    the whole snapshot again, stores it and applies its observations (one transaction);
//! 4. this process polls the hub's `GetStatement` every 25 ms until the statement is stored; the
//!    hub applies the observations in the same transaction, so that is the end of the timed
//!    path. Pollers alongside report when the node holds the hub's receipt (`GetNodeStatus`)
//!    and confirm that `IndicatorService.QueryObservations` answers with a `feed_size` that
//!    includes the snapshot.
//!
//! The hub runs on core 0 and this process and the nodes on core 1 (`taskset`, when
//! available); the `sqlite3` baseline runs on core 0, alone.

use super::{pin_self, pinned_command, tls_of};
use anyhow::{Context as _, Result, anyhow, bail};
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Command-line options of `rcpfed-bench snapshot`.
pub struct Options {
    pub rcpfed: PathBuf,
    pub sqlite3: PathBuf,
    pub observations: usize,
    pub small: usize,
    pub batch: usize,
    pub sqlite_runs: usize,
    pub queries: usize,
    pub dir: Option<PathBuf>,
}

const FEDERATION: &str = "bench-snapshot-federation";
const BIG_NODE: &str = rcpfed_import::SYNTHETIC_NODE;
const SMALL_NODES: [&str; 2] = ["abu-dhabi", "midwa"];
pub(crate) const OPERATOR: &str = "operator";
/// How often the hub and nodes are polled.
const POLL: Duration = Duration::from_millis(25);
/// Longest wait for any one step (start-up, catalogue, delivery, catch-up).
const STEP_LIMIT: Duration = Duration::from_secs(900);

/// A running hub or node.
pub(crate) struct Proc {
    child: tokio::process::Child,
    grpc: String,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) fn endpoint(&self) -> String {
        let port = self.grpc.rsplit(':').next().unwrap_or_default();
        format!("https://localhost:{port}")
    }
}

/// SIGTERM (graceful), then SIGKILL after 10 s.
pub(crate) async fn stop(p: &mut Proc) {
    if let Some(pid) = p.child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(10), p.child.wait())
        .await
        .is_err()
    {
        let _ = p.child.kill().await;
    }
}

/// Starts `rcpfed hub` or `rcpfed node` pinned to `cpu` and waits for its address file.
pub(crate) async fn spawn(
    rcpfed: &Path,
    cpu: usize,
    dir: &Path,
    role: &str,
    config: &Path,
    hub_endpoint: Option<&str>,
) -> Result<Proc> {
    spawn_on(rcpfed, &cpu.to_string(), dir, role, config, hub_endpoint).await
}

/// [`spawn`] on the cores `cpus` ("0,1": both).
pub(crate) async fn spawn_on(
    rcpfed: &Path,
    cpus: &str,
    dir: &Path,
    role: &str,
    config: &Path,
    hub_endpoint: Option<&str>,
) -> Result<Proc> {
    let tag = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(role)
        .to_string();
    let addr_file = dir.join(format!("{tag}.addr.json"));
    let log = dir.join(format!("{tag}.log"));
    let mut cmd = super::pinned_to(cpus, rcpfed);
    cmd.arg(role)
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .arg("--addr-file")
        .arg(&addr_file)
        // RCPFED_BENCH_LOG: what the processes log to `<dir>/<role>.log` (with --dir), e.g.
        // "warn,rcpfed_hub::ingest=debug" for each step of the hub's view applier.
        .env(
            "RCPFED_LOG",
            std::env::var("RCPFED_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    if let Some(hub) = hub_endpoint {
        cmd.arg("--hub-endpoint").arg(hub);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {role} {tag}"))?;
    let start = Instant::now();
    let grpc = loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(g) = v["grpc"].as_str()
        {
            break g.to_string();
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{role} {tag} exited with {status} before listening; see {}",
                log.display()
            );
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{role} {tag} did not start; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ok(Proc { child, grpc, log })
}

pub(crate) async fn connect(endpoint: &str, pki: &Path) -> Result<Channel> {
    let tls = tls_of(pki, OPERATOR);
    let start = Instant::now();
    loop {
        let attempt = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
            .tls_config(tls.client_config("localhost")?)?
            .tcp_nodelay(true)
            .connect()
            .await;
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                return Err(anyhow!(e).context(format!("connecting to {endpoint}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Polls `probe` every [`POLL`] until it returns `Some`; fails after [`STEP_LIMIT`] or when
/// one of `procs` has exited.
pub(crate) async fn poll_until<T, F, Fut>(
    what: &str,
    procs: &mut [&mut Proc],
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        for p in procs.iter_mut() {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "waiting for {what}: a process exited with {status}; see {}",
                    p.log.display()
                );
            }
        }
        if start.elapsed() > STEP_LIMIT {
            bail!("waiting for {what}: gave up after {STEP_LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits, as [`poll_until`] does, for `task` (a poller of its own) to finish, and gives its
/// result: the processes are watched while it runs.
async fn join_watched<T>(
    what: &str,
    procs: &mut [&mut Proc],
    task: tokio::task::JoinHandle<T>,
) -> Result<T> {
    poll_until(what, procs, || {
        let done = task.is_finished();
        async move { done.then_some(()) }
    })
    .await?;
    Ok(task.await?)
}

/// Waits, as [`poll_until`] does, until the store behind `ix` has the catalogue (a node takes
/// snapshots only once it has).
async fn wait_catalogue(
    what: &str,
    procs: &mut [&mut Proc],
    ix: &IndicatorServiceClient<Channel>,
) -> Result<v1::CatalogueDocument> {
    poll_until(what, procs, || {
        let mut c = ix.clone();
        async move {
            c.get_catalogue(v1::GetCatalogueRequest { version: 0 })
                .await
                .ok()
                .and_then(|r| r.into_inner().catalogue)
        }
    })
    .await
}

/// Waits, as [`poll_until`] does, until the store behind `ix` has applied the feed up to
/// `feed_index` (seen through a query of `indicator`).
async fn wait_applied(
    what: &str,
    procs: &mut [&mut Proc],
    ix: &IndicatorServiceClient<Channel>,
    indicator: &str,
    feed_index: u64,
) -> Result<u64> {
    poll_until(what, procs, || {
        let (mut ix, ind) = (ix.clone(), indicator.to_string());
        async move {
            applied_feed_size(&mut ix, &ind)
                .await
                .filter(|n| *n >= feed_index)
        }
    })
    .await
}

/// Waits, as [`poll_until`] does, until the hub's latest coherence report covers the feed up
/// to `feed_index`, and gives it.
async fn wait_report(
    what: &str,
    procs: &mut [&mut Proc],
    hub_ix: &IndicatorServiceClient<Channel>,
    feed_index: u64,
) -> Result<v1::CoherenceReport> {
    poll_until(what, procs, || {
        let mut ix = hub_ix.clone();
        async move {
            ix.get_coherence_report(v1::GetCoherenceReportRequest { number: 0 })
                .await
                .ok()
                .and_then(|r| r.into_inner().report)
                .filter(|r| r.feed_size >= feed_index)
        }
    })
    .await
}

/// `VmHWM` and `VmRSS` of a process, in MB.
fn rss_mb(pid: Option<u32>) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn file_mb(paths: &[PathBuf]) -> f64 {
    paths
        .iter()
        .flat_map(|p| {
            let mut wal = p.as_os_str().to_owned();
            wal.push("-wal");
            [p.clone(), PathBuf::from(wal)]
        })
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum::<u64>() as f64
        / 1e6
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The sqlite3 baseline: a fresh database file, default rollback journal (DELETE,
/// synchronous=FULL), one table with the CSV's columns (OBS_VALUE REAL, UNIT_MULT INTEGER,
/// the rest TEXT; no key, no index), then `.import --csv --skip 1`. Timed wall-clock around
/// the whole `sqlite3` process; the row count is checked afterwards, untimed.
async fn sqlite_import(sqlite3: &Path, csv: &Path, db: &Path, rows: usize) -> Result<Duration> {
    let _ = std::fs::remove_file(db);
    let header = {
        let mut line = String::new();
        std::io::BufReader::new(std::fs::File::open(csv)?).read_line(&mut line)?;
        line.trim_end().to_string()
    };
    let columns: Vec<String> = header
        .split(',')
        .map(|c| {
            let ty = match c {
                "OBS_VALUE" => "REAL",
                "UNIT_MULT" => "INTEGER",
                _ => "TEXT",
            };
            format!("\"{c}\" {ty}")
        })
        .collect();
    let csv_path = csv
        .to_str()
        .context("the CSV path is not UTF-8")?
        .replace('\'', "''");
    let script = format!(
        "CREATE TABLE observations ({});\n.import --csv --skip 1 '{csv_path}' observations\n",
        columns.join(", ")
    );
    let mut cmd = pinned_command(0, sqlite3);
    cmd.arg("-bail")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting sqlite3")?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt as _;
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    let took = start.elapsed();
    if !out.status.success() || !out.stderr.is_empty() {
        bail!(
            "sqlite3 .import failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let count = std::process::Command::new(sqlite3)
        .arg(db)
        .arg("SELECT count(*) FROM observations")
        .output()?;
    let n: usize = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .context("reading the sqlite3 row count")?;
    if n != rows {
        bail!("sqlite3 imported {n} rows, expected {rows}");
    }
    Ok(took)
}

/// What streaming one CSV to a node's `PublishSnapshot` gave.
struct Published {
    seq: u64,
    chunks: u32,
    observations: u64,
    /// When the reader had parsed the last row (from the start).
    parsed: Duration,
    /// When the node answered (from the start).
    answered: Duration,
}

/// Reads `csv` in batches of `batch` and streams it to the node with `PublishSnapshot`;
/// `start` is the benchmark's clock origin.
async fn publish_csv(
    node: &mut NodeServiceClient<Channel>,
    csv: PathBuf,
    node_id: &str,
    batch: usize,
    start: Instant,
) -> Result<Published> {
    let node_id = node_id.to_string();
    use v1::publish_snapshot_request::Part;
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::PublishSnapshotRequest>(4);
    let reader = tokio::task::spawn_blocking(move || -> Result<(String, Duration)> {
        let file = std::fs::File::open(&csv)?;
        let mut batches = rcpfed_import::IndicatorCsvBatches::new(
            std::io::BufReader::with_capacity(1 << 20, file),
            batch,
        )
        .map_err(|e| anyhow!("{}: {e:?}", csv.display()))?;
        let mut header_sent = false;
        let mut indicator = String::new();
        for b in &mut batches {
            let b = b.map_err(|e| anyhow!("{}: {e:?}", csv.display()))?;
            if !header_sent {
                indicator.clone_from(&b.indicator);
                let header = v1::PublishSnapshotRequest {
                    part: Some(Part::Header(v1::PublishSnapshotHeader {
                        document: rcpfed_import::indicator_document(
                            &node_id,
                            &b.indicator,
                            "synthetic-benchmark",
                        ),
                        indicator: b.indicator.clone(),
                        validate_only: false,
                        request_id: format!("bench-{node_id}-{}", std::process::id()),
                    })),
                };
                if tx.blocking_send(header).is_err() {
                    bail!("the PublishSnapshot call ended early");
                }
                header_sent = true;
            }
            let msg = v1::PublishSnapshotRequest {
                part: Some(Part::Batch(v1::ObservationBatch {
                    observations: b.observations,
                })),
            };
            if tx.blocking_send(msg).is_err() {
                bail!("the PublishSnapshot call ended early");
            }
        }
        Ok((indicator, start.elapsed()))
    });
    let answer = node
        .publish_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let answered = start.elapsed();
    let (_, parsed) = reader.await??;
    let r = answer
        .map_err(|s| anyhow!("PublishSnapshot refused: {:?} {}", s.code(), s.message()))?
        .into_inner();
    Ok(Published {
        seq: r.seq,
        chunks: r.chunk_count,
        observations: r.observation_count,
        parsed,
        answered,
    })
}

/// The hub's feed index of `node`'s statement `seq`, once stored.
async fn hub_feed_index(hub: &mut HubServiceClient<Channel>, node: &str, seq: u64) -> Option<u64> {
    hub.get_statement(v1::GetStatementRequest {
        name: format!("nodes/{node}/statements/{seq}"),
    })
    .await
    .ok()
    .and_then(|r| r.into_inner().statement)
    .map(|s| s.feed_index)
}

/// The number of feed entries the store behind `ix` has applied.
async fn applied_feed_size(
    ix: &mut IndicatorServiceClient<Channel>,
    indicator: &str,
) -> Option<u64> {
    ix.query_observations(v1::QueryObservationsRequest {
        query: Some(v1::ObservationQuery {
            indicator: indicator.to_string(),
            ..Default::default()
        }),
        page_size: 1,
        page_token: String::new(),
    })
    .await
    .ok()
    .map(|r| r.into_inner().feed_size)
}

/// Latency summary in milliseconds.
struct Lat {
    median: f64,
    p99: f64,
}

fn lat(mut v: Vec<Duration>) -> Lat {
    if v.is_empty() {
        return Lat {
            median: 0.0,
            p99: 0.0,
        };
    }
    v.sort_unstable();
    let p99 = (v.len() * 99 / 100).min(v.len() - 1);
    Lat {
        median: ms(v[v.len() / 2]),
        p99: ms(v[p99]),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub async fn run(o: Options) -> Result<()> {
    if !o.rcpfed.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p rcpfed -p rcpfed-bench",
            o.rcpfed.display()
        );
    }
    let sqlite_ok = std::process::Command::new(&o.sqlite3)
        .arg("-version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !sqlite_ok {
        bail!(
            "the sqlite3 command-line shell ({}) was not found or does not run; it is the baseline of this benchmark (Debian/Ubuntu: apt-get install sqlite3), or pass --sqlite3 PATH",
            o.sqlite3.display()
        );
    }
    let sqlite_version = String::from_utf8_lossy(
        &std::process::Command::new(&o.sqlite3)
            .arg("-version")
            .output()?
            .stdout,
    )
    .split_whitespace()
    .next()
    .unwrap_or_default()
    .to_string();
    let (dir, keep) = match &o.dir {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!("rcpfed-bench-snapshot-{}", std::process::id())),
            false,
        ),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} is not empty", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&o, &dir, &sqlite_version).await;
    if keep || result.is_err() {
        println!("working directory kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(o: &Options, dir: &Path, sqlite_version: &str) -> Result<()> {
    let pinned = pin_self(1, true);
    println!(
        "rcpfed-bench snapshot: {} synthetic observations; hub on core 0, this process and the nodes on core 1: {pinned}; load average {}",
        o.observations,
        loadavg()
    );
    // 1. The synthetic CSV.
    let input = generate_csv(o, dir)?;
    // 2. The sqlite3 baseline, on core 0 alone, and read + parse alone.
    let baseline = sqlite_baseline(o, dir, &input.csv).await?;
    let parse_only = read_and_parse(o, &input.csv)?;
    // 3. The federation: fresh PKI, the real hub and the colombo node; the timed path.
    let pki = init_pki(o, dir)?;
    let mut fed = start_federation(o, dir, &pki).await?;
    let timed = timed_path(o, dir, &pki, &input, &mut fed).await?;
    // 4. Two small snapshots of the same indicator from two more regions.
    let mut small = small_snapshots(
        o,
        dir,
        &pki,
        &input.plan.indicator,
        &mut fed,
        timed.feed_index,
    )
    .await?;
    // 5. Query latency on the hub.
    let queries = query_latency(o, &input.plan.indicator, &mut fed).await?;
    let hub_rss_end = rss_mb(fed.hub.pid());
    for (_, p, _) in &mut small.procs {
        stop(p).await;
    }
    stop(&mut fed.big).await;
    stop(&mut fed.hub).await;
    print_summary(
        o,
        sqlite_version,
        input,
        baseline,
        parse_only,
        timed,
        hub_rss_end,
        small,
        queries,
    );
    Ok(())
}

/// The synthetic CSV of the large snapshot.
struct Input {
    csv: PathBuf,
    plan: rcpfed_import::SyntheticPlan,
    csv_mb: f64,
}

/// Writes the synthetic CSV of `o.observations` rows for the large node.
fn generate_csv(o: &Options, dir: &Path) -> Result<Input> {
    let csv = dir.join("synthetic-snapshot.csv");
    let plan = rcpfed_import::synthetic_plan()?;
    let t = Instant::now();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        rcpfed_import::synthetic_indicator_csv(o.observations, 20_261_128, &mut f)?;
        f.flush()?;
    }
    let csv_mb = std::fs::metadata(&csv)?.len() as f64 / 1e6;
    println!(
        "  generated {} ({csv_mb:.1} MB; {} for node {BIG_NODE}, {} member states, SOURCE \"{}\") in {:.1} s",
        csv.display(),
        plan.indicator,
        plan.areas.len(),
        rcpfed_import::SYNTHETIC_SOURCE,
        secs(t.elapsed())
    );

    Ok(Input { csv, plan, csv_mb })
}

/// The `sqlite3 .import` runs of the CSV.
struct Baseline {
    times: Vec<Duration>,
    median: Duration,
}

/// Imports the CSV with `sqlite3 .import` `o.sqlite_runs` times (at least once), each into a
/// fresh file.
async fn sqlite_baseline(o: &Options, dir: &Path, csv: &Path) -> Result<Baseline> {
    let mut sqlite_times = Vec::new();
    for i in 0..o.sqlite_runs.max(1) {
        let took = sqlite_import(
            &o.sqlite3,
            csv,
            &dir.join(format!("baseline-{i}.sqlite")),
            o.observations,
        )
        .await?;
        println!("  sqlite3 .import run {}: {:.2} s", i + 1, secs(took));
        sqlite_times.push(took);
        // Each run's file is only measured; one left behind takes space, nothing else.
        if let Err(e) = std::fs::remove_file(dir.join(format!("baseline-{i}.sqlite"))) {
            println!("  (cannot remove baseline-{i}.sqlite: {e})");
        }
    }
    let sqlite_median = median(sqlite_times.clone());

    Ok(Baseline {
        times: sqlite_times,
        median: sqlite_median,
    })
}

/// Read + parse alone (information: the rcpfed path's first stage, in this process).
fn read_and_parse(o: &Options, csv: &Path) -> Result<Duration> {
    let t = Instant::now();
    let mut parsed = 0usize;
    for b in rcpfed_import::IndicatorCsvBatches::new(
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(csv)?),
        o.batch,
    )
    .map_err(|e| anyhow!("{e:?}"))?
    {
        parsed += b.map_err(|e| anyhow!("{e:?}"))?.observations.len();
    }
    let parse_only = t.elapsed();
    if parsed != o.observations {
        bail!(
            "the reader found {parsed} observations, expected {}",
            o.observations
        );
    }
    println!(
        "  read + parse only (IndicatorCsvBatches, core 1): {:.2} s",
        secs(parse_only)
    );

    Ok(parse_only)
}

/// A fresh federation PKI under `dir`/fed: the hub, the large and the small nodes, the operator.
fn init_pki(o: &Options, dir: &Path) -> Result<PathBuf> {
    let pki = dir.join("fed");
    let out = std::process::Command::new(&o.rcpfed)
        .args(["pki", "init", "--dir"])
        .arg(&pki)
        .args(["--federation", FEDERATION, "--nodes"])
        .arg(
            std::iter::once(BIG_NODE)
                .chain(SMALL_NODES)
                .collect::<Vec<_>>()
                .join(","),
        )
        .args(["--operators", OPERATOR])
        .output()
        .context("running rcpfed pki init")?;
    if !out.status.success() {
        bail!(
            "rcpfed pki init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(pki)
}

/// The hub and the large node, running, with the clients the benchmark calls them with.
struct Federation {
    hub: Proc,
    big: Proc,
    hub_endpoint: String,
    hub_rpc: HubServiceClient<Channel>,
    hub_ix: IndicatorServiceClient<Channel>,
    big_node: NodeServiceClient<Channel>,
    big_ix: IndicatorServiceClient<Channel>,
}

/// Starts the hub and the large node, and waits until the hub's catalogue has reached the node.
async fn start_federation(o: &Options, dir: &Path, pki: &Path) -> Result<Federation> {
    let mut hub = spawn(&o.rcpfed, 0, dir, "hub", &pki.join("hub.toml"), None).await?;
    let hub_endpoint = hub.endpoint();
    let mut big = spawn(
        &o.rcpfed,
        1,
        dir,
        "node",
        &pki.join(format!("{BIG_NODE}.toml")),
        Some(&hub_endpoint),
    )
    .await?;
    let hub_channel = connect(&hub_endpoint, pki).await?;
    let hub_rpc = HubServiceClient::new(hub_channel.clone());
    let hub_ix = IndicatorServiceClient::new(hub_channel.clone());
    let big_channel = connect(&big.endpoint(), pki).await?;
    let big_node = NodeServiceClient::new(big_channel.clone())
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let big_ix = IndicatorServiceClient::new(big_channel.clone());

    // The node takes snapshots only once the hub's catalogue has reached it through the feed.
    let t = Instant::now();
    let catalogue = wait_catalogue(
        "the catalogue at the colombo node",
        &mut [&mut hub, &mut big],
        &big_ix,
    )
    .await?;
    println!(
        "  catalogue {} version {} reached {BIG_NODE} {:.2} s after it connected",
        catalogue.id,
        catalogue.version,
        secs(t.elapsed())
    );

    Ok(Federation {
        hub,
        big,
        hub_endpoint,
        hub_rpc,
        hub_ix,
        big_node,
        big_ix,
    })
}

/// What the timed path and the catch-up after it measured.
struct Timed {
    published: Published,
    feed_index: u64,
    stored_at: Duration,
    delivered: Duration,
    visible_at: Duration,
    commits_before: Option<Commits>,
    commits_after: Option<Commits>,
    hub_rss: Option<(f64, f64)>,
    node_rss: Option<(f64, f64)>,
    hub_db_mb: f64,
    node_db_mb: f64,
    mirror_catch_up: Duration,
    report_catch_up: Duration,
    hub_rss_after_report: Option<(f64, f64)>,
    /// When the large node's own mirror stored the snapshot (from the start).
    node_mirrored_at: Duration,
    /// When that node's view had applied it (from the start).
    node_view_at: Duration,
}

/// The timed rcpfed path: the CSV streamed to the large node until the hub has stored and
/// applied it; then, untimed, the node's mirror and the coherence report catching up.
async fn timed_path(
    o: &Options,
    dir: &Path,
    pki: &Path,
    input: &Input,
    fed: &mut Federation,
) -> Result<Timed> {
    let Federation {
        hub,
        big,
        hub_rpc,
        hub_ix,
        big_node,
        big_ix: fed_big_ix,
        ..
    } = fed;
    let (csv, plan) = (&input.csv, &input.plan);
    let commits_before = hub_commits(dir);
    println!(
        "  publishing {} observations to {BIG_NODE} …",
        o.observations
    );
    let start = Instant::now();
    let published = publish_all(o, big_node, csv, start).await?;
    // Three pollers, each on its own: the hub storing the statement (GetStatement), the node
    // holding the hub's receipt (GetNodeStatus), and the hub's indicator view answering with
    // a feed size that includes it (QueryObservations).
    let stored_task = tokio::spawn(poll_stored(hub_rpc.clone(), published.seq, start));
    let delivered_task = tokio::spawn(poll_delivered(big_node.clone(), published.seq, start));
    let (feed_index, stored_at) = join_watched(
        "the hub storing the snapshot",
        &mut [&mut *hub, &mut *big],
        stored_task,
    )
    .await?;
    let indicator = plan.indicator.clone();
    // The node's own mirror of it, from here on: stored (once its chunks are fetched back from
    // the hub), then applied to the node's view in the background.
    let node_mirror_task = tokio::spawn(poll_node_mirror(
        big_node.clone(),
        fed_big_ix.clone(),
        indicator.clone(),
        feed_index,
        start,
    ));
    // The hub applies a snapshot's observations in the transaction that stores it, so `stored_at`
    // is also when it is applied; this confirms that the indicator view answers with it.
    let visible_task = tokio::spawn(poll_visible(
        hub_ix.clone(),
        indicator.clone(),
        feed_index,
        start,
    ));
    let delivered = join_watched(
        "the node holding the receipt",
        &mut [&mut *hub, &mut *big],
        delivered_task,
    )
    .await??;
    let visible_at = join_watched(
        "the hub's view answering",
        &mut [&mut *hub, &mut *big],
        visible_task,
    )
    .await?;
    let commits_after = hub_commits(dir);
    let (node_mirrored_at, node_view_at) = join_watched(
        "the node's mirror storing and applying the snapshot",
        &mut [&mut *hub, &mut *big],
        node_mirror_task,
    )
    .await?;
    let hub_rss = rss_mb(hub.pid());
    let node_rss = rss_mb(big.pid());
    let hub_db = pki.join("data/gfmd/hub.sqlite");
    let hub_db_mb = file_mb(std::slice::from_ref(&hub_db));
    let node_db_mb = file_mb(&[pki.join(format!("data/{BIG_NODE}/node.sqlite"))]);

    let (mirror_catch_up, report_catch_up, hub_rss_after_report) =
        catch_up(fed, &indicator, feed_index).await?;

    Ok(Timed {
        published,
        feed_index,
        stored_at,
        delivered,
        visible_at,
        commits_before,
        commits_after,
        hub_rss,
        node_rss,
        hub_db_mb,
        node_db_mb,
        mirror_catch_up,
        report_catch_up,
        hub_rss_after_report,
        node_mirrored_at,
        node_view_at,
    })
}

/// Streams the CSV to the large node and checks it published every observation.
async fn publish_all(
    o: &Options,
    big_node: &mut NodeServiceClient<Channel>,
    csv: &Path,
    start: Instant,
) -> Result<Published> {
    let published = publish_csv(big_node, csv.to_path_buf(), BIG_NODE, o.batch, start).await?;
    if published.observations != o.observations as u64 {
        bail!(
            "the node published {} observations, expected {}",
            published.observations,
            o.observations
        );
    }
    Ok(published)
}

/// Untimed: how long the node's mirror, then the coherence report, take to cover the snapshot
/// at `feed_index`, and the hub's RSS after that.
async fn catch_up(
    fed: &mut Federation,
    indicator: &str,
    feed_index: u64,
) -> Result<(Duration, Duration, Option<(f64, f64)>)> {
    let Federation {
        hub,
        big,
        hub_ix,
        big_ix,
        ..
    } = fed;
    let t = Instant::now();
    wait_applied(
        "the colombo node's mirror applying the snapshot",
        &mut [&mut *hub, &mut *big],
        big_ix,
        indicator,
        feed_index,
    )
    .await?;
    let mirror_catch_up = t.elapsed();
    let t = Instant::now();
    wait_report(
        "the coherence report covering the snapshot",
        &mut [&mut *hub],
        hub_ix,
        feed_index,
    )
    .await?;
    let report_catch_up = t.elapsed();
    Ok((mirror_catch_up, report_catch_up, rss_mb(hub.pid())))
}

/// Polls until the hub has stored the large node's statement `seq`; gives its feed index and
/// when it was found (from `start`).
async fn poll_stored(
    mut hub_rpc: HubServiceClient<Channel>,
    seq: u64,
    start: Instant,
) -> (u64, Duration) {
    loop {
        if let Some(fi) = hub_feed_index(&mut hub_rpc, BIG_NODE, seq).await {
            return (fi, start.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until the node holds the hub's receipt for its statement `seq` (an error if the hub
/// refused it); gives when (from `start`). A failed status call is asked again.
async fn poll_delivered(
    mut node: NodeServiceClient<Channel>,
    seq: u64,
    start: Instant,
) -> Result<Duration> {
    loop {
        if let Ok(s) = node
            .get_node_status(v1::GetNodeStatusRequest {})
            .await
            .map(|r| r.into_inner())
        {
            if s.outbox_rejected > 0 {
                return Err(anyhow!("the hub refused the snapshot: {}", s.last_error));
            }
            if s.outbox_delivered >= seq {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the node until its mirror holds the entry at `feed_index` (`GetNodeStatus`) and its
/// indicator view has applied it (`QueryObservations`' feed size); gives when each was first
/// seen (from `start`). The mirror stores a chunked snapshot without its view and goes on
/// with the feed; the node's view applier follows.
async fn poll_node_mirror(
    mut node: NodeServiceClient<Channel>,
    mut ix: IndicatorServiceClient<Channel>,
    indicator: String,
    feed_index: u64,
    start: Instant,
) -> (Duration, Duration) {
    let mut mirrored = None;
    loop {
        if mirrored.is_none()
            && let Ok(s) = node.get_node_status(v1::GetNodeStatusRequest {}).await
            && s.into_inner().feed_cursor >= feed_index
        {
            mirrored = Some(start.elapsed());
        }
        if let Some(n) = applied_feed_size(&mut ix, &indicator).await
            && n >= feed_index
        {
            let viewed = start.elapsed();
            return (mirrored.unwrap_or(viewed), viewed);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until the hub's indicator view answers with a feed size of at least `feed_index`;
/// gives when (from `start`).
async fn poll_visible(
    mut ix: IndicatorServiceClient<Channel>,
    indicator: String,
    feed_index: u64,
    start: Instant,
) -> Duration {
    loop {
        if applied_feed_size(&mut ix, &indicator)
            .await
            .is_some_and(|n| n >= feed_index)
        {
            return start.elapsed();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The small snapshots and the quiet wait before the queries.
struct Small {
    procs: Vec<(&'static str, Proc, IndicatorServiceClient<Channel>)>,
    summary: Vec<String>,
    quiet_steps: Vec<String>,
    report: v1::CoherenceReport,
}

/// Writes the synthetic CSV of `o.small` observations of `indicator` by `node_id`, over its
/// current member states.
fn small_csv(
    o: &Options,
    dir: &Path,
    cat: &rcpfed_core::catalogue::Catalogue,
    indicator: &str,
    node_id: &str,
) -> Result<(PathBuf, rcpfed_import::SyntheticPlan)> {
    let (_, _, states) = rcpfed_import::sample::member_plan(node_id)
        .with_context(|| format!("no member plan for {node_id}"))?;
    let areas: Vec<String> = states
        .into_iter()
        .filter(|s| s.since.is_empty() && s.until.is_empty())
        .map(|s| s.iso3)
        .collect();
    let small_plan = rcpfed_import::SyntheticPlan::for_indicator(cat, indicator, node_id, &areas)
        .map_err(|e| anyhow!("{node_id}: {e}"))?;
    let path = dir.join(format!("synthetic-{node_id}.csv"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    small_plan.write_csv(o.small, 7, v1::ObservationAction::Append, &mut f)?;
    f.flush()?;
    Ok((path, small_plan))
}

/// Two small snapshots of `indicator` from two more regions, each stored by the hub; then
/// quiet: the hub has applied everything, every node's mirror has caught up and the coherence
/// report covers the last snapshot.
async fn small_snapshots(
    o: &Options,
    dir: &Path,
    pki: &Path,
    indicator: &str,
    fed: &mut Federation,
    feed_index: u64,
) -> Result<Small> {
    let cat = rcpfed_core::catalogue::Catalogue::from_toml(
        rcpfed_core::catalogue::embedded_catalogue_toml(),
    )
    .map_err(|e| anyhow!("the shipped catalogue: {e:?}"))?;
    let mut small_procs = Vec::new();
    let mut last_feed_index = feed_index;
    let mut small_summary = Vec::new();
    for node_id in SMALL_NODES {
        let (p, ix, fi, summary) =
            one_small_snapshot(o, dir, pki, &cat, indicator, fed, node_id).await?;
        last_feed_index = last_feed_index.max(fi);
        small_summary.push(summary);
        small_procs.push((node_id, p, ix));
    }
    let (quiet_steps, report) =
        wait_quiet(fed, &mut small_procs, indicator, last_feed_index).await?;
    Ok(Small {
        procs: small_procs,
        summary: small_summary,
        quiet_steps,
        report,
    })
}

/// Starts small node `node_id` (core 1), publishes its snapshot and waits until the hub stores
/// it; gives the node, its indicator client, the snapshot's feed index and a summary line.
async fn one_small_snapshot(
    o: &Options,
    dir: &Path,
    pki: &Path,
    cat: &rcpfed_core::catalogue::Catalogue,
    indicator: &str,
    fed: &mut Federation,
    node_id: &'static str,
) -> Result<(Proc, IndicatorServiceClient<Channel>, u64, String)> {
    let Federation {
        hub,
        hub_endpoint,
        hub_rpc,
        ..
    } = fed;
    let (path, small_plan) = small_csv(o, dir, cat, indicator, node_id)?;
    let mut p = spawn(
        &o.rcpfed,
        1,
        dir,
        "node",
        &pki.join(format!("{node_id}.toml")),
        Some(hub_endpoint),
    )
    .await?;
    let ch = connect(&p.endpoint(), pki).await?;
    let mut node = NodeServiceClient::new(ch.clone())
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES);
    let ix = IndicatorServiceClient::new(ch);
    wait_catalogue(
        &format!("the catalogue at {node_id}"),
        &mut [&mut *hub, &mut p],
        &ix,
    )
    .await?;
    let t = Instant::now();
    let pubd = publish_csv(&mut node, path, node_id, o.batch, t).await?;
    let fi = poll_until(
        &format!("{node_id}'s snapshot at the hub"),
        &mut [&mut *hub, &mut p],
        || {
            let mut h = hub_rpc.clone();
            async move { hub_feed_index(&mut h, node_id, pubd.seq).await }
        },
    )
    .await?;
    let summary = format!(
        "{node_id}: {} observations ({} member states) stored by the hub in {:.2} s",
        pubd.observations,
        small_plan.areas.len(),
        secs(t.elapsed())
    );
    Ok((p, ix, fi, summary))
}

/// Quiet before the queries: the hub has applied everything, every node's mirror has caught
/// up (they fetch the large snapshot's chunks from the hub), and the coherence report covers
/// the last snapshot. Gives the steps with their times and the report.
async fn wait_quiet(
    fed: &mut Federation,
    small_procs: &mut [(&'static str, Proc, IndicatorServiceClient<Channel>)],
    indicator: &str,
    last_feed_index: u64,
) -> Result<(Vec<String>, v1::CoherenceReport)> {
    let Federation { hub, hub_ix, .. } = fed;
    let t = Instant::now();
    wait_applied(
        "the hub applying the small snapshots",
        &mut [&mut *hub],
        hub_ix,
        indicator,
        last_feed_index,
    )
    .await?;
    let mut quiet_steps = vec![format!("hub applied both {:.2} s", secs(t.elapsed()))];
    for (node_id, p, ix) in small_procs.iter_mut() {
        wait_applied(
            &format!("{node_id}'s mirror catching up"),
            &mut [&mut *hub, p],
            ix,
            indicator,
            last_feed_index,
        )
        .await?;
        quiet_steps.push(format!(
            "{node_id}'s mirror applied everything (1 large + 2 small snapshots) {:.2} s",
            secs(t.elapsed())
        ));
    }
    let report = wait_report(
        "the coherence report covering every snapshot",
        &mut [&mut *hub],
        hub_ix,
        last_feed_index,
    )
    .await?;
    let quiet_after = t.elapsed();
    quiet_steps.push(format!(
        "coherence report {} {:.2} s",
        report.number,
        secs(quiet_after)
    ));
    Ok((quiet_steps, report))
}

/// The hub's query latency by kind.
struct Queries {
    area: String,
    series_name: String,
    series_rows: usize,
    regions: Vec<&'static str>,
    checkpoint: Lat,
    list: Lat,
    q_all: Lat,
    q_area: Lat,
    q_series: Lat,
}

/// Query latency on the hub, one connection, the kinds interleaved so that the machine's noise
/// falls on all of them alike; first, untimed, a check that the view holds what was sent.
async fn query_latency(o: &Options, indicator: &str, fed: &mut Federation) -> Result<Queries> {
    let Federation {
        hub_rpc, hub_ix, ..
    } = fed;
    let views = views(indicator, hub_ix).await?;
    let checked = check_views(o, indicator, hub_ix, &views).await?;
    let [checkpoint, list, q_all, q_area, q_series] =
        time_queries(o, hub_rpc, hub_ix, &views).await?;
    Ok(Queries {
        area: views.area,
        series_name: checked.series_name,
        series_rows: checked.series_rows,
        regions: checked.regions,
        checkpoint,
        list,
        q_all,
        q_area,
        q_series,
    })
}

/// The three observation queries timed: all regions, one area, one series.
struct Views {
    all_regions: v1::QueryObservationsRequest,
    one_area: v1::QueryObservationsRequest,
    series: v1::QueryObservationsRequest,
    /// The area of `one_area` and `series`.
    area: String,
    /// The first page of `one_area`.
    filtered: v1::QueryObservationsResponse,
}

/// Builds the timed observation queries from what the hub's view holds.
async fn views(indicator: &str, hub_ix: &mut IndicatorServiceClient<Channel>) -> Result<Views> {
    let query = |ref_areas: Vec<String>, start_period: &str, end_period: &str| {
        v1::QueryObservationsRequest {
            query: Some(v1::ObservationQuery {
                indicator: indicator.to_string(),
                ref_areas,
                start_period: start_period.into(),
                end_period: end_period.into(),
                ..Default::default()
            }),
            page_size: 1000,
            page_token: String::new(),
        }
    };
    let all_regions = query(Vec::new(), "", "");
    // The filtered queries use IND (a member state of both colombo and abu-dhabi; with the
    // default sizes both report it), or else the area of the first observation in the view.
    let area = {
        let mut probe = query(vec!["IND".into()], "", "");
        probe.page_size = 1;
        let ind = hub_ix.query_observations(probe).await?.into_inner();
        if ind.observations.is_empty() {
            let mut probe = query(Vec::new(), "", "");
            probe.page_size = 1;
            hub_ix
                .query_observations(probe)
                .await?
                .into_inner()
                .observations
                .first()
                .and_then(|r| r.observation.as_ref())
                .map(|o| o.ref_area.clone())
                .with_context(|| format!("the hub has no {indicator} observation"))?
        } else {
            "IND".to_string()
        }
    };
    let one_area = query(vec![area.clone()], "", "");
    let filtered = hub_ix
        .query_observations(one_area.clone())
        .await?
        .into_inner();
    // One series: the area, the first row's period and counterpart area (every SEX and AGE).
    let series = {
        let o = filtered
            .observations
            .first()
            .and_then(|r| r.observation.clone())
            .with_context(|| format!("the hub has no {area} observation"))?;
        let mut q = query(vec![area.clone()], &o.time_period, &o.time_period);
        if let Some(q) = q.query.as_mut() {
            q.dimensions = o
                .dimensions
                .into_iter()
                .filter(|d| d.id == "COUNTERPART_AREA")
                .collect();
        }
        q
    };
    Ok(Views {
        all_regions,
        one_area,
        series,
        area,
        filtered,
    })
}

/// What [`check_views`] found.
struct Checked {
    regions: Vec<&'static str>,
    series_name: String,
    series_rows: usize,
}

/// Sanity, untimed: every region is in the view, and the first page is full.
async fn check_views(
    o: &Options,
    indicator: &str,
    hub_ix: &mut IndicatorServiceClient<Channel>,
    views: &Views,
) -> Result<Checked> {
    let Views {
        all_regions,
        series,
        area,
        filtered,
        ..
    } = views;
    let mut regions = Vec::new();
    for n in std::iter::once(BIG_NODE).chain(SMALL_NODES) {
        let mut q = all_regions.clone();
        if let Some(q) = q.query.as_mut() {
            q.node_ids = vec![n.to_string()];
        }
        q.page_size = 1;
        let got = hub_ix.query_observations(q).await?.into_inner();
        if got.observations.is_empty() {
            bail!("the hub's view has no {indicator} observation of {n}");
        }
        regions.push(n);
    }
    let first = hub_ix
        .query_observations(all_regions.clone())
        .await?
        .into_inner();
    let small_page = hub_ix
        .query_observations(series.clone())
        .await?
        .into_inner();
    let series_name = series
        .query
        .as_ref()
        .map(|q| {
            let dims: Vec<String> = q
                .dimensions
                .iter()
                .map(|d| format!("{}={}", d.id, d.value))
                .collect();
            format!("REF_AREA={area}, {}, {}", q.start_period, dims.join(", "))
        })
        .unwrap_or_default();
    let page_bytes = |r: &v1::QueryObservationsResponse| prost::Message::encoded_len(r);
    println!(
        "  query check: all regions page {} rows ({} KB, next page: {}), REF_AREA={area} page {} rows ({} KB), {series_name}: {} rows",
        first.observations.len(),
        page_bytes(&first) / 1024,
        !first.next_page_token.is_empty(),
        filtered.observations.len(),
        page_bytes(filtered) / 1024,
        small_page.observations.len()
    );
    let in_view = o.observations + 2 * o.small;
    if first.observations.len() != in_view.min(1000)
        || (in_view > 1000) == first.next_page_token.is_empty()
    {
        bail!(
            "the first page across all regions has {} rows (next page: {}), expected {} of {in_view}",
            first.observations.len(),
            !first.next_page_token.is_empty(),
            in_view.min(1000)
        );
    }
    Ok(Checked {
        regions,
        series_name,
        series_rows: small_page.observations.len(),
    })
}

/// Times `o.queries` rounds (after ten rounds of warm-up) of five kinds of call, interleaved:
/// GetCheckpoint, ListStatements, and the three observation queries of `views`.
async fn time_queries(
    o: &Options,
    hub_rpc: &mut HubServiceClient<Channel>,
    hub_ix: &mut IndicatorServiceClient<Channel>,
    views: &Views,
) -> Result<[Lat; 5]> {
    let Views {
        all_regions,
        one_area,
        series,
        ..
    } = views;
    let kinds = 5;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); kinds];
    for round in 0..(o.queries + 10) {
        for (k, slot) in times.iter_mut().enumerate() {
            let t = Instant::now();
            match k {
                0 => {
                    hub_rpc
                        .get_checkpoint(v1::GetCheckpointRequest {
                            final_only: false,
                            ..Default::default()
                        })
                        .await?;
                }
                1 => {
                    hub_rpc
                        .list_statements(v1::ListStatementsRequest {
                            node_id: BIG_NODE.into(),
                            page_size: 1,
                            ..Default::default()
                        })
                        .await?;
                }
                2 => {
                    hub_ix.query_observations(all_regions.clone()).await?;
                }
                3 => {
                    hub_ix.query_observations(one_area.clone()).await?;
                }
                _ => {
                    hub_ix.query_observations(series.clone()).await?;
                }
            }
            // The first ten rounds warm up connections and caches.
            if round >= 10 {
                slot.push(t.elapsed());
            }
        }
    }
    times
        .into_iter()
        .map(lat)
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| anyhow!("five kinds"))
}

/// Prints what the benchmark measured.
#[allow(clippy::too_many_arguments)]
fn print_summary(
    o: &Options,
    sqlite_version: &str,
    input: Input,
    baseline: Baseline,
    parse_only: Duration,
    timed: Timed,
    hub_rss_end: Option<(f64, f64)>,
    small: Small,
    queries: Queries,
) {
    let Input { plan, csv_mb, .. } = input;
    println!();
    println!(
        "snapshot of {} synthetic observations ({} {}, {csv_mb:.1} MB CSV), load average {}",
        o.observations,
        plan.indicator,
        plan.frequency.word(),
        loadavg()
    );
    println!(
        "sqlite3 {sqlite_version} .import --csv (fresh file, rollback journal, core 0): median {:.2} s of {} runs ({})",
        secs(baseline.median),
        baseline.times.len(),
        baseline
            .times
            .iter()
            .map(|d| format!("{:.2}", secs(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_timed_steps(&timed, parse_only);
    // The total is the time until the hub stored (and applied) the snapshot.
    let total = timed.stored_at;
    let ratio = secs(total) / secs(baseline.median);
    let queryable = secs(timed.visible_at) / secs(baseline.median);
    println!(
        "ratio rcpfed / sqlite3 .import              : {ratio:>7.2} to stored, {queryable:.2} to stored and queryable (target ≤ 2 to queryable: {})",
        if queryable <= 2.0 { "met" } else { "NOT met" }
    );
    println!(
        "throughput                                  : {:>7.0} observations/s (sqlite3 {:.0}/s)",
        o.observations as f64 / secs(total),
        o.observations as f64 / secs(baseline.median)
    );
    print_memory_and_catch_up(&timed, hub_rss_end);
    print_small_and_queries(o, &plan.indicator, small, queries);
}

/// Prints when each step of the timed snapshot was done, from the first byte read.
fn print_timed_steps(timed: &Timed, parse_only: Duration) {
    let published = &timed.published;
    println!("rcpfed, from the first byte read:");
    println!(
        "  CSV read and parsed, streamed to the node : {:>7.2} s   (read + parse alone: {:.2} s)",
        secs(published.parsed),
        secs(parse_only)
    );
    println!(
        "  node answered PublishSnapshot             : {:>7.2} s   (validated, {} chunks, manifest signed, stored; seq {})",
        secs(published.answered),
        published.chunks,
        published.seq
    );
    println!(
        "  hub stored it (GetStatement finds it)     : {:>7.2} s   (feed index {})",
        secs(timed.stored_at),
        timed.feed_index
    );
    println!(
        "  node holds the hub's receipt              : {:>7.2} s",
        secs(timed.delivered)
    );
    println!(
        "  total: stored (the receipt)               : {:>7.2} s   (the view follows in the background: QueryObservations answered with it at {:.2} s)",
        secs(timed.stored_at),
        secs(timed.visible_at)
    );
    if let (Some(a), Some(b)) = (&timed.commits_before, &timed.commits_after) {
        println!(
            "  of which the hub's commit of the snapshot : {:>7.2} s   ({} group commit(s) meanwhile: statement, log entry and chunks; not the view)",
            b.seconds - a.seconds,
            b.batches - a.batches
        );
    }
}

/// Prints the processes' memory, the databases' sizes and how long the mirror and the
/// coherence report took to catch up.
fn print_memory_and_catch_up(timed: &Timed, hub_rss_end: Option<(f64, f64)>) {
    let rss = |r: Option<(f64, f64)>| match r {
        Some((hwm, now)) => format!("peak {hwm:.0} MB, now {now:.0} MB"),
        None => "unknown".into(),
    };
    println!(
        "hub RSS after the import: {}; after the coherence report: {}; at the end: {}",
        rss(timed.hub_rss),
        rss(timed.hub_rss_after_report),
        rss(hub_rss_end)
    );
    println!("node RSS after the import: {}", rss(timed.node_rss));
    println!(
        "hub database {:.0} MB, node database {:.0} MB (with WAL)",
        timed.hub_db_mb, timed.node_db_mb
    );
    println!(
        "the {BIG_NODE} node's own mirror: stored the snapshot at {:.2} s (the hub stored it at {:.2} s), its view applied it at {:.2} s",
        secs(timed.node_mirrored_at),
        secs(timed.stored_at),
        secs(timed.node_view_at)
    );
    println!(
        "after the timed part: the {BIG_NODE} mirror applied it {:.2} s later, the coherence report covered it {:.2} s after that",
        secs(timed.mirror_catch_up),
        secs(timed.report_catch_up)
    );
}

/// Prints the small snapshots, the quiet before the queries, and the query latency by kind.
fn print_small_and_queries(o: &Options, indicator: &str, small: Small, queries: Queries) {
    let Queries {
        area,
        series_name,
        series_rows,
        regions,
        checkpoint,
        list,
        q_all,
        q_area,
        q_series,
    } = queries;
    let Small {
        summary: small_summary,
        quiet_steps,
        report,
        ..
    } = small;
    for s in &small_summary {
        println!("{s}");
    }
    println!(
        "quiet before the queries (coherence report {} over feed {}: {} conflicts), after the small snapshots: {}",
        report.number,
        report.feed_size,
        report.total_conflicts,
        quiet_steps.join("; ")
    );
    println!(
        "hub query latency, {} calls each, interleaved, one mTLS connection (ms, median / p99; ratio of medians to GetCheckpoint):",
        o.queries
    );
    let row = |name: &str, l: &Lat| {
        println!(
            "  {name:<70} {:>7.2} / {:>7.2}   ×{:.1}",
            l.median,
            l.p99,
            l.median / checkpoint.median.max(1e-9)
        );
    };
    row("GetCheckpoint (baseline)", &checkpoint);
    row(
        &format!("ListStatements of {BIG_NODE}, page of 1 (the snapshot's manifest)"),
        &list,
    );
    row(
        &format!("QueryObservations {indicator}, all regions, page of 1000"),
        &q_all,
    );
    row(&format!("  … REF_AREA={area}, page of 1000"), &q_area);
    row(
        &format!("  … one series: {series_name} ({} rows)", series_rows),
        &q_series,
    );
    println!("regions in the view: {}", regions.join(", "));
}

/// The hub's group-commit counters.
#[derive(Clone, Copy)]
struct Commits {
    batches: f64,
    seconds: f64,
}

/// Reads the hub's group-commit counters from its ops port's `/metrics`.
fn hub_commits(dir: &Path) -> Option<Commits> {
    use std::io::Read as _;
    let ops = std::fs::read_to_string(dir.join("hub.addr.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["ops"].as_str().map(str::to_string))?;
    let mut s = std::net::TcpStream::connect(ops).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let value = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(Commits {
        batches: value("rcpfed_hub_commit_batch_size_count")?,
        seconds: value("rcpfed_hub_commit_seconds_sum")?,
    })
}
