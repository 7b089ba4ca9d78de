//! `rcpfed-bench`: benchmark programs that report ratios against baselines measured in the same
//! run on the same machine (machines here are shared and noisy; absolute numbers drift, ratios
//! hold better).
//!
//! `ingest`: hub ingest of signed ~2 KB statements from N concurrent node clients over mTLS,
//! durable before the receipt, with three real mirror nodes following the feed, compared with
//! (a) a bare tonic service that only acks the same payload over the same TLS (also driven hard,
//! its server CPU reported) and (b) the single-core `verify_strict` rate of the same statements;
//! receipt and feed latency percentiles (see [`ingest`]). The hub (or the bare server) is pinned
//! to core 0 and the load generator and mirrors to core 1 with `taskset` when available. All
//! data is synthetic and labelled so.
//!
//! `log`: grows one hub database through the real store API to each requested size (10 k, 1 M,
//! 10 M entries by default) and at each size reports inclusion and consistency proof latency
//! (read from the store, never loading the tree) and the real hub's start-up time, as a ratio
//! to the start-up time on an empty database measured in the same run.
//!
//! `snapshot`: a synthetic one-million-observation indicator snapshot read, parsed, streamed to
//! a real node (validated, chunked, manifest signed, stored), delivered to the real hub and
//! stored and applied there, against `sqlite3 .import` of the same CSV in the same run; then
//! the hub's query latency for one indicator across all regions (see [`snapshot`]).

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_core::statement::{
    Body, DocumentKind, Header, LocalizedText, PolicyStatus, PolicySummary, Statement,
};
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_server::{HubService, HubServiceServer};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

mod ingest;
mod snapshot;

#[derive(Parser)]
#[command(about = "rcpfed benchmarks (ratios against same-run baselines)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hub ingest throughput vs a bare ack service and vs single-core verify_strict.
    Ingest {
        /// Path to the rcpfed binary (build with `cargo build --release -p rcpfed`).
        #[arg(long, default_value = "target/release/rcpfed")]
        rcpfed: PathBuf,
        /// Concurrent node clients (each its own member, mTLS connection and chain).
        #[arg(long, default_value_t = 20)]
        clients: usize,
        /// Statements per client.
        #[arg(long, default_value_t = 1000)]
        per_client: usize,
        /// Approximate payload size in bytes.
        #[arg(long, default_value_t = 2048)]
        payload_bytes: usize,
        /// Statements in flight per client (1 to the protocol's in-flight window, 8): each
        /// client sends its chain in order, up to this many before the oldest is answered.
        #[arg(long, default_value_t = 1)]
        inflight: usize,
        /// Real nodes (colombo, abu-dhabi, midwa; 0 to 3) whose mirrors follow the hub's feed
        /// during the run; their feed latency is reported.
        #[arg(long, default_value_t = 3)]
        mirrors: usize,
        /// Connections of the bare-ack baseline when driven hard.
        #[arg(long, default_value_t = 40)]
        bare_connections: usize,
        /// Requests in flight on each of those connections.
        #[arg(long, default_value_t = 8)]
        bare_inflight: usize,
        /// Pace the hub run: statements per second offered by all clients together (open
        /// loop, latency from each scheduled send). Unset: as fast as possible.
        #[arg(long)]
        rate: Option<f64>,
        /// A `log --dir` directory: instead of the baselines, compare ingest on a copy of its
        /// grown hub database with ingest on an empty one (same PKI, clients and payload), and
        /// print the ratio. Needs `--clients` ≤ its `--nodes` and `--mirrors 0`.
        #[arg(long)]
        from_log: Option<PathBuf>,
        /// With `--from-log`: runs on each database, alternating empty and large.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// Transparency log at scale: proof latency and hub start-up time at growing log sizes.
    Log {
        /// Path to the rcpfed binary (build with `cargo build --release -p rcpfed`).
        #[arg(long, default_value = "target/release/rcpfed")]
        rcpfed: PathBuf,
        /// Log sizes to measure at, ascending; one database grows through them.
        #[arg(long, value_delimiter = ',', default_value = "10000,1000000,10000000")]
        sizes: Vec<u64>,
        /// Working directory (PKI, configs, databases). Kept afterwards, and a database already
        /// in it is grown further rather than rebuilt. Default: a temporary directory, removed.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Statements per store transaction while building.
        #[arg(long, default_value_t = 50_000)]
        batch: usize,
        /// Proofs of each kind timed at each size.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
        /// Hub start-ups timed at each size (and as many on the empty database).
        #[arg(long, default_value_t = 5)]
        startups: usize,
        /// Synthetic nodes whose statements are interleaved in the log.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// A 1-million-observation snapshot through node and hub vs `sqlite3 .import`, and hub
    /// query latency.
    Snapshot {
        /// Path to the rcpfed binary (build with `cargo build --release -p rcpfed`).
        #[arg(long, default_value = "target/release/rcpfed")]
        rcpfed: PathBuf,
        /// The sqlite3 command-line shell (the baseline).
        #[arg(long, default_value = "sqlite3")]
        sqlite3: PathBuf,
        /// Observations in the large snapshot.
        #[arg(long, default_value_t = 1_000_000)]
        observations: usize,
        /// Observations in each of the two small snapshots (abu-dhabi, midwa).
        #[arg(long, default_value_t = 10_000)]
        small: usize,
        /// Observations per PublishSnapshot message.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Runs of the sqlite3 baseline (the median is used).
        #[arg(long, default_value_t = 3)]
        sqlite_runs: usize,
        /// Timed calls of each query kind.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Working directory, kept afterwards (default: a temporary directory, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Internal: the bare ack server used as the baseline.
    BareServer {
        /// PKI directory.
        #[arg(long)]
        pki: PathBuf,
        /// Write the bound address here.
        #[arg(long)]
        addr_file: PathBuf,
    },
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Ingest {
            rcpfed,
            clients,
            per_client,
            payload_bytes,
            inflight,
            mirrors,
            bare_connections,
            bare_inflight,
            rate,
            from_log,
            rounds,
        } => {
            let window = usize::try_from(rcpfed_core::limits::IN_FLIGHT_WINDOW).unwrap_or(1);
            if inflight == 0 || inflight > window {
                bail!(
                    "--inflight must be 1 to {window}: a hub holds at most {window} statements of a node ahead of its head"
                );
            }
            if let Some(log_dir) = from_log {
                return rt.block_on(ingest::run_on_log(ingest::OnLogOptions {
                    rcpfed,
                    log_dir,
                    clients,
                    per_client,
                    inflight,
                    payload_bytes,
                    mirrors,
                    rate,
                    rounds,
                }));
            }
            rt.block_on(ingest::run(ingest::Options {
                rcpfed,
                clients,
                per_client,
                inflight,
                payload_bytes,
                mirrors,
                bare_connections,
                bare_inflight,
                rate,
            }))
        }
        Cmd::Log {
            rcpfed,
            sizes,
            dir,
            batch,
            samples,
            startups,
            nodes,
        } => rt.block_on(log_bench::run(log_bench::Options {
            rcpfed,
            sizes,
            dir,
            batch,
            samples,
            startups,
            nodes,
        })),
        Cmd::Snapshot {
            rcpfed,
            sqlite3,
            observations,
            small,
            batch,
            sqlite_runs,
            queries,
            dir,
        } => rt.block_on(snapshot::run(snapshot::Options {
            rcpfed,
            sqlite3,
            observations,
            small,
            batch,
            sqlite_runs,
            queries,
            dir,
        })),
        Cmd::BareServer { pki, addr_file } => rt.block_on(bare_server(&pki, &addr_file)),
    }
}

/// Runs `rcpfed pki init` with `nodes` synthetic nodes (synthetic-00, …), the regional nodes
/// `real` (ids from the bundled list, with their configuration files) and the operator.
fn pki_init(
    rcpfed: &Path,
    dir: &Path,
    federation: &str,
    nodes: usize,
    real: &[&str],
) -> Result<()> {
    let out = std::process::Command::new(rcpfed)
        .args(["pki", "init", "--dir"])
        .arg(dir)
        .args(["--federation", federation, "--nodes", &real.join(",")])
        .arg("--synthetic-nodes")
        .arg(nodes.to_string())
        .output()
        .with_context(|| format!("running {} pki init", rcpfed.display()))?;
    if !out.status.success() {
        bail!(
            "rcpfed pki init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn member_id(i: usize) -> String {
    format!("synthetic-{i:02}")
}

fn tls_of(pki: &Path, id: &str) -> TlsFiles {
    let dir = pki.join("members").join(id);
    TlsFiles {
        ca_cert: pki.join("ca.pem"),
        cert: dir.join("tls.pem"),
        key: dir.join("tls.key"),
    }
}

/// Pins this process to `cpu` if `taskset` exists (every thread with `all_threads`, else the
/// main thread, whose later threads inherit it); returns whether it did. Shared by the
/// benchmarks so they pin alike.
fn pin_self(cpu: usize, all_threads: bool) -> bool {
    let mut taskset = std::process::Command::new("taskset");
    if all_threads {
        taskset.arg("-a");
    }
    taskset
        .args([
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn pinned_command(cpu: usize, program: &Path) -> tokio::process::Command {
    pinned_to(&cpu.to_string(), program)
}

/// [`pinned_command`] on a list of cores in `taskset -c` form, e.g. "0,1".
fn pinned_to(cpus: &str, program: &Path) -> tokio::process::Command {
    let has_taskset = std::process::Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    let mut cmd = if has_taskset {
        let mut c = tokio::process::Command::new("taskset");
        c.arg("-c").arg(cpus).arg(program);
        c
    } else {
        tokio::process::Command::new(program)
    };
    cmd.kill_on_drop(true).stdin(Stdio::null());
    cmd
}

/// The hub's commit metrics (batch size and commit time), read from its ops port.
fn commit_metrics(ops: &str) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(ops) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let value = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let batches = value("rcpfed_hub_commit_batch_size_count");
    let statements = value("rcpfed_hub_commit_batch_size_sum");
    let seconds = value("rcpfed_hub_commit_seconds_sum");
    if batches == 0.0 {
        return String::new();
    }
    let mut out = format!(
        "{batches:.0} group commits, {:.1} statements per commit, {:.2} ms per commit",
        statements / batches,
        seconds / batches * 1000.0
    );
    // Feed pages read from the store, and handed as built to another subscriber at the same
    // cursor (hubs before the shared pages have neither).
    let built = value("rcpfed_hub_feed_pages_built_total");
    if built > 0.0 {
        let shared = value("rcpfed_hub_feed_pages_shared_total");
        out.push_str(&format!(
            "; feed pages built {built:.0}, shared {shared:.0}"
        ));
    }
    out
}

async fn wait_addr(path: &Path, child: &mut tokio::process::Child) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            return Ok(v["grpc"].as_str().unwrap_or_default().to_string());
        }
        if let Some(status) = child.try_wait()? {
            bail!("server exited early with {status}");
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("server did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Synthetic statements: one chain per client, each a ~`size`-byte policy summary. Client i's
/// chain continues after `heads[i]` (its last stored seq and digest; none: it starts at seq 1),
/// so a chain can be sent to a hub whose log already holds that client's statements.
fn make_chains(
    fed: &Federation,
    keys: &[SecretKey],
    heads: &[Option<(u64, rcpfed_core::Digest)>],
    per_client: usize,
    size: usize,
) -> Vec<Vec<v1::Envelope>> {
    let filler = "Synthetic benchmark text, not a real policy summary. ".repeat(size / 52 + 1);
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let id = member_id(i);
            let head = heads.get(i).copied().flatten();
            let first = head.map_or(1, |(seq, _)| seq + 1);
            let mut prev = head.map(|(_, digest)| digest);
            (first..first + per_client as u64)
                .map(|seq| {
                    let st = Statement {
                        header: Header {
                            federation_id: fed.federation_id.clone(),
                            node_id: id.clone(),
                            seq,
                            prev_digest: prev,
                            issued_at: time::OffsetDateTime::now_utc(),
                            kind: DocumentKind::PolicySummary,
                            schema_version: 1,
                            document: format!("regions/{id}/policies/synthetic-{seq}"),
                            revision: 1,
                        },
                        body: Body::Policy(PolicySummary {
                            title: vec![LocalizedText {
                                language: "en".into(),
                                text: format!("Synthetic statement {seq}"),
                            }],
                            summary: vec![LocalizedText {
                                language: "en".into(),
                                text: filler[..size.min(filler.len())].to_string(),
                            }],
                            meeting: String::new(),
                            meeting_date: String::new(),
                            status: PolicyStatus::Draft,
                            countries: vec!["IND".into()],
                            gcm_objectives: vec![6],
                            sdg_targets: vec!["10.7".into()],
                            references: Vec::new(),
                        }),
                    };
                    let env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, st.encode(), key);
                    prev = Some(env.digest());
                    env.to_proto()
                })
                .collect()
        })
        .collect()
}

/// Acknowledges every submission without looking at it: the transport baseline.
struct BareAck;

#[tonic::async_trait]
impl HubService for BareAck {
    async fn submit_statement(
        &self,
        request: Request<v1::SubmitStatementRequest>,
    ) -> Result<Response<v1::SubmitStatementResponse>, Status> {
        drop(request);
        Ok(Response::new(v1::SubmitStatementResponse {
            receipt: None,
            duplicate: false,
            log: None,
        }))
    }
    async fn get_statement(
        &self,
        _: Request<v1::GetStatementRequest>,
    ) -> Result<Response<v1::GetStatementResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn list_statements(
        &self,
        _: Request<v1::ListStatementsRequest>,
    ) -> Result<Response<v1::ListStatementsResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    type SubscribeFeedStream = tokio_stream::Empty<Result<v1::SubscribeFeedResponse, Status>>;
    async fn subscribe_feed(
        &self,
        _: Request<v1::SubscribeFeedRequest>,
    ) -> Result<Response<Self::SubscribeFeedStream>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn list_equivocations(
        &self,
        _: Request<v1::ListEquivocationsRequest>,
    ) -> Result<Response<v1::ListEquivocationsResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn list_members(
        &self,
        _: Request<v1::ListMembersRequest>,
    ) -> Result<Response<v1::ListMembersResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::GetCheckpointResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn get_inclusion_proof(
        &self,
        _: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::GetInclusionProofResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn get_consistency_proof(
        &self,
        _: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::GetConsistencyProofResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn list_log_entries(
        &self,
        _: Request<v1::ListLogEntriesRequest>,
    ) -> Result<Response<v1::ListLogEntriesResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn submit_cosignature(
        &self,
        _: Request<v1::SubmitCosignatureRequest>,
    ) -> Result<Response<v1::SubmitCosignatureResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn publish_registry(
        &self,
        _: Request<v1::PublishRegistryRequest>,
    ) -> Result<Response<v1::PublishRegistryResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn get_registry(
        &self,
        _: Request<v1::GetRegistryRequest>,
    ) -> Result<Response<v1::GetRegistryResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn list_registry_versions(
        &self,
        _: Request<v1::ListRegistryVersionsRequest>,
    ) -> Result<Response<v1::ListRegistryVersionsResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
    async fn list_flagged_statements(
        &self,
        _: Request<v1::ListFlaggedStatementsRequest>,
    ) -> Result<Response<v1::ListFlaggedStatementsResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }

    async fn submit_snapshot(
        &self,
        _: Request<tonic::Streaming<v1::SubmitSnapshotRequest>>,
    ) -> Result<Response<v1::SubmitSnapshotResponse>, Status> {
        Err(Status::unimplemented("baseline server"))
    }

    type GetSnapshotChunksStream =
        tokio_stream::Empty<Result<v1::GetSnapshotChunksResponse, Status>>;

    async fn get_snapshot_chunks(
        &self,
        _: Request<v1::GetSnapshotChunksRequest>,
    ) -> Result<Response<Self::GetSnapshotChunksStream>, Status> {
        Err(Status::unimplemented("baseline server"))
    }
}

async fn bare_server(pki: &Path, addr_file: &Path) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    std::fs::write(
        addr_file,
        serde_json::json!({ "grpc": addr.to_string() }).to_string(),
    )?;
    let tls = tls_of(pki, "gfmd");
    tonic::transport::Server::builder()
        .tls_config(tls.server_config()?)?
        .add_service(
            HubServiceServer::new(BareAck)
                .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// The `log` benchmark: the transparency log at 10 k, 1 M and 10 M entries.
///
/// One hub database grows through the requested sizes via the real store API
/// (`SqliteHubStore::append`, the hub's own data layout: statements, every complete Merkle
/// subtree hash, one signed checkpoint per batch). At each size it times inclusion and
/// consistency proofs read from the store exactly as the hub serves them
/// (`merkle::*_proof(&StoreSource(store), ..)`), verifies every proof (untimed), and times the
/// real hub process from spawn until its ops port reports SERVING, against the same on an empty
/// database in the same run.
///
/// The statements are SYNTHETIC: each payload is a real encoded statement, a short policy
/// summary labelled synthetic, chained per node (the store applies it to its view as it does
/// the hub's); the envelope signature is 64 zero bytes and the receipt is empty (neither is
/// read by the store, at start-up or by proofs). Leaf hashes are the real
/// `leaf_hash(PAE(type, payload))` of the stored envelopes, so the hub's start-up check against
/// the latest checkpoint passes.
mod log_bench {
    use super::pinned_command;
    use anyhow::{Context as _, Result, anyhow, bail};
    use rcpfed_core::Digest;
    use rcpfed_core::checkpoint::{Checkpoint, sign_checkpoint};
    use rcpfed_core::envelope::{EnvelopeSignature, STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
    use rcpfed_core::keys::SecretKey;
    use rcpfed_core::merkle::{self, Frontier, Hash, HashSource};
    use rcpfed_core::statement::{
        Body, DocumentKind, Header, LocalizedText, PolicyStatus, PolicySummary, Statement,
    };
    use rcpfed_hub::log::{StoreSource, leaf_of_envelope, load_frontier};
    use rcpfed_store::{
        HubStore, LogNode, NewCheckpoint, SqliteHubStore, StoreError, StoredStatement,
    };
    use std::cell::Cell;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    /// Command-line options of `rcpfed-bench log`.
    pub struct Options {
        pub rcpfed: PathBuf,
        pub sizes: Vec<u64>,
        pub dir: Option<PathBuf>,
        pub batch: usize,
        pub samples: usize,
        pub startups: usize,
        pub nodes: usize,
    }

    const FEDERATION: &str = "bench-log-federation";
    const HUB: &str = "gfmd";
    /// Longest a hub start-up may take before the benchmark gives up.
    const STARTUP_LIMIT: Duration = Duration::from_secs(300);
    /// Health polling interval.
    const POLL: Duration = Duration::from_millis(5);

    fn node_id(i: usize) -> String {
        format!("synthetic-{i:02}")
    }

    /// A synthetic node: member id and signing key id (from the generated PKI).
    struct Node {
        id: String,
        key_id: String,
    }

    /// Latency summary in microseconds.
    #[derive(Clone, Copy, Default)]
    struct Stats {
        median: f64,
        p99: f64,
        max: f64,
    }

    fn stats(mut v: Vec<Duration>) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let p99 = (v.len() * 99 / 100).min(v.len() - 1);
        Stats {
            median: us(v[v.len() / 2]),
            p99: us(v[p99]),
            max: us(v[v.len() - 1]),
        }
    }

    /// (median, min) of start-up times.
    fn median_min(mut v: Vec<Duration>) -> (Duration, Duration) {
        v.sort_unstable();
        (
            v.get(v.len() / 2).copied().unwrap_or_default(),
            v.first().copied().unwrap_or_default(),
        )
    }

    /// xorshift64*: reproducible sample indexes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
        }
    }

    /// Counts the node reads a proof makes.
    struct Counting<'a> {
        inner: StoreSource<'a>,
        reads: Cell<u64>,
    }

    impl HashSource for Counting<'_> {
        type Error = StoreError;
        fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
            self.reads.set(self.reads.get() + 1);
            self.inner.node(level, index)
        }
    }

    /// Proof latencies at one size.
    struct ProofStats {
        /// Wall time.
        inclusion: Stats,
        /// Wall time minus run-queue wait.
        inclusion_own: Stats,
        /// Store reads (B-tree probes) per proof.
        inclusion_reads: f64,
        consistency: Stats,
        consistency_own: Stats,
        consistency_reads: f64,
    }

    /// One row of the results table.
    struct Measured {
        size: u64,
        build: Option<(u64, Duration)>,
        proofs: ProofStats,
        /// (median, min) from spawn to SERVING on the log of `size` entries.
        startup: (Duration, Duration),
        /// (median, min) on the empty database, measured interleaved with `startup`.
        startup_empty: (Duration, Duration),
        db_bytes: u64,
        steps: String,
    }

    pub async fn run(o: Options) -> Result<()> {
        if !o.rcpfed.is_file() {
            bail!(
                "{} not found; build it first: cargo build --release -p rcpfed",
                o.rcpfed.display()
            );
        }
        if o.sizes.is_empty()
            || o.sizes.first() == Some(&0)
            || o.sizes.windows(2).any(|w| w[0] >= w[1])
        {
            bail!("--sizes must be positive and strictly ascending, e.g. 10000,1000000,10000000");
        }
        if o.batch == 0 || o.samples == 0 || o.startups == 0 || o.nodes == 0 {
            bail!("--batch, --samples, --startups and --nodes must be at least 1");
        }
        let (dir, temporary) = match &o.dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!("rcpfed-bench-log-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)?;
        let result = run_in(&o, &dir).await;
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    async fn run_in(o: &Options, dir: &Path) -> Result<()> {
        let pki = dir.join("fed");
        if !pki.join("federation.toml").is_file() {
            super::pki_init(&o.rcpfed, &pki, FEDERATION, o.nodes, &[])?;
        }
        let (hub_key, nodes) = hub_and_node_keys(&pki, o.nodes)?;
        let origin = rcpfed_core::logkeys::log_origin(FEDERATION);

        let config = write_config(dir, "hub.toml", "data")?;
        let config_empty = write_config(dir, "hub-empty.toml", "empty")?;
        let db = dir.join("data").join("hub.sqlite");
        let base = first_starts(o, dir, &db, &config, &config_empty, &nodes).await?;

        let affinity = current_affinity();
        println!(
            "rcpfed-bench log: sizes {:?}, {} synthetic nodes, batches of {}, {} proofs of each kind, {} start-ups per size (hub pinned to core 0: {}), {}",
            o.sizes,
            o.nodes,
            o.batch,
            o.samples,
            o.startups,
            affinity.is_some(),
            dir.display()
        );
        let bench = LogBench {
            o,
            dir,
            db: &db,
            config: &config,
            config_empty: &config_empty,
            base,
            nodes: &nodes,
            affinity: &affinity,
        };
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut rows = Vec::new();
        for &size in &o.sizes {
            let build = grow(&db, size, base, o.batch, &nodes, &hub_key, &origin)?;
            if let Some((rows, took)) = build {
                println!(
                    "  built {size} entries: +{rows} in {:.1} s = {:.0} rows/s",
                    took.as_secs_f64(),
                    rows as f64 / took.as_secs_f64()
                );
            }
            let m = bench.measure(size, build, &mut rng).await?;
            println!("  load average after measuring at {size}: {}", loadavg());
            print_row(&m);
            rows.push(m);
        }
        print_table(&rows);
        Ok(())
    }

    /// The hub's signing key and the synthetic nodes with their key ids, from the PKI.
    fn hub_and_node_keys(pki: &Path, count: usize) -> Result<(SecretKey, Vec<Node>)> {
        let read_key = |id: &str| -> Result<SecretKey> {
            let path = pki.join("members").join(id).join("signing.key");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(SecretKey::from_file_text(&text)?)
        };
        let hub_key = read_key(HUB)?;
        let nodes = (0..count)
            .map(|i| {
                let id = node_id(i);
                let key_id = read_key(&id)?.key_id().to_string();
                Ok(Node { id, key_id })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((hub_key, nodes))
    }

    /// A new hub logs its registry and catalogue at its first start. Let it, on both
    /// databases, before any synthetic entry: the synthetic entries then follow the hub's
    /// own, and no later start-up writes anything (checked after each size). Returns the
    /// number of the hub's own entries.
    async fn first_starts(
        o: &Options,
        dir: &Path,
        db: &Path,
        config: &Path,
        config_empty: &Path,
        nodes: &[Node],
    ) -> Result<u64> {
        let db_empty = dir.join("empty").join("hub.sqlite");
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::create_dir_all(dir.join("empty"))?;
        let base = first_start(&o.rcpfed, config, dir, db, nodes, "first").await?;
        let base_empty = first_start(
            &o.rcpfed,
            config_empty,
            dir,
            &db_empty,
            nodes,
            "empty-first",
        )
        .await?;
        if SqliteHubStore::open(&db_empty)?.last_feed_index()? != base_empty {
            bail!(
                "{} holds more than the hub's own {base_empty} entries",
                db_empty.display()
            );
        }
        if let Some(&small) = o.sizes.iter().find(|&&s| s <= base) {
            bail!("--sizes: {small} entries is not more than the hub's own {base} entries");
        }
        Ok(base)
    }

    /// What the measurement at every size shares.
    struct LogBench<'a> {
        o: &'a Options,
        dir: &'a Path,
        db: &'a Path,
        config: &'a Path,
        config_empty: &'a Path,
        base: u64,
        nodes: &'a [Node],
        affinity: &'a Option<String>,
    }

    impl LogBench<'_> {
        /// Start-up reads, proofs and hub start-ups on the log grown to `size`.
        async fn measure(
            &self,
            size: u64,
            build: Option<(u64, Duration)>,
            rng: &mut Rng,
        ) -> Result<Measured> {
            let (o, dir, db) = (self.o, self.dir, self.db);
            // Measure on core 1 while the hub runs on core 0; the build uses both.
            if self.affinity.is_some() {
                set_affinity("1");
            }
            println!("  load average before measuring at {size}: {}", loadavg());
            let steps = startup_steps(db, size, self.base, self.nodes)?;
            println!("  in-process start-up reads at {size}: {steps}");
            let proofs = proofs(db, size, o.samples, rng)?;
            let mut full = Vec::new();
            let mut empty = Vec::new();
            for k in 0..o.startups {
                // Interleaved so drift on a shared machine hits both alike.
                empty.push(
                    hub_startup(&o.rcpfed, self.config_empty, dir, &format!("empty-{k}")).await?,
                );
                full.push(hub_startup(&o.rcpfed, self.config, dir, &format!("{size}-{k}")).await?);
            }
            if let Some(all) = self.affinity {
                set_affinity(all);
            }
            let after = SqliteHubStore::open(db)?.last_feed_index()?;
            if after != size {
                bail!("the hub's start-ups changed the log from {size} to {after} entries");
            }
            let list = |v: &[Duration]| {
                v.iter()
                    .map(|d| format!("{:.1}", ms(*d)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "  hub start-up samples (ms) at {size}: {}; empty: {}",
                list(&full),
                list(&empty)
            );
            Ok(Measured {
                size,
                build,
                proofs,
                startup: median_min(full),
                startup_empty: median_min(empty),
                db_bytes: db_bytes(db),
                steps,
            })
        }
    }

    /// Starts the real hub once on `db` if it is new (it logs its registry and catalogue), and
    /// returns the number of the hub's own entries at the head of the log: the synthetic
    /// entries come after them.
    async fn first_start(
        rcpfed: &Path,
        config: &Path,
        dir: &Path,
        db: &Path,
        nodes: &[Node],
        tag: &str,
    ) -> Result<u64> {
        if SqliteHubStore::open(db)?.last_feed_index()? == 0 {
            hub_startup(rcpfed, config, dir, tag).await?;
        }
        let store = SqliteHubStore::open(db)?;
        let mut base = 0;
        while let Some(st) = store.statement_by_feed_index(base + 1)? {
            if nodes.iter().any(|n| n.id == st.node_id) {
                break;
            }
            base += 1;
        }
        if base == 0 {
            bail!(
                "{}: the hub logged nothing at its first start (expected its registry and catalogue)",
                db.display()
            );
        }
        Ok(base)
    }

    fn write_config(dir: &Path, name: &str, data_dir: &str) -> Result<PathBuf> {
        let text = format!(
            "# rcpfed-bench log: synthetic hub configuration\nroot_trust_file = \"fed/root-trust.toml\"\nregistry_file = \"fed/registry/registry.v1.json\"\nrevocation = \"disabled\"\ndata_dir = \"{data_dir}\"\nsigning_key = \"fed/members/{HUB}/signing.key\"\n[tls]\nca_cert = \"fed/ca.pem\"\ncert = \"fed/members/{HUB}/tls.pem\"\nkey = \"fed/members/{HUB}/tls.key\"\n"
        );
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Entry `f` (feed index, from 1) of the log, the synthetic entry `f - base` (the first `base`
    /// entries are the hub's own), and its leaf hash. Nodes take turns, so node `n` holds seq
    /// 1, 2, … at feed indexes base + n + 1, base + n + 1 + k, … `prev` is the digest
    /// of that node's previous statement (its chain); `now_ms` its issue and acceptance time.
    ///
    /// The payload is a real encoded statement (a short synthetic policy summary, labelled so)
    /// because the store applies every policy summary to its view as the hub's does; the
    /// envelope signature is 64 zero bytes and the receipt is empty (never read by the store,
    /// start-up or proofs).
    fn synthetic(
        f: u64,
        base: u64,
        nodes: &[Node],
        prev: Option<Digest>,
        now_ms: i64,
    ) -> Result<(StoredStatement, Hash)> {
        let k = nodes.len() as u64;
        let j = f - base;
        let node = &nodes[((j - 1) % k) as usize];
        let seq = (j - 1) / k + 1;
        let document = format!(
            "regions/{}/policies/synthetic-{:010}",
            node.id,
            (seq - 1) / 4
        );
        let revision = ((seq - 1) % 4) as u32 + 1;
        let issued_at =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
                .map_err(|e| anyhow!("issue time {now_ms} ms: {e}"))?;
        let statement = Statement {
            header: Header {
                federation_id: FEDERATION.to_string(),
                node_id: node.id.clone(),
                seq,
                prev_digest: prev,
                issued_at,
                kind: DocumentKind::PolicySummary,
                schema_version: 1,
                document: document.clone(),
                revision,
            },
            body: Body::Policy(PolicySummary {
                title: vec![LocalizedText {
                    language: "en".into(),
                    text: format!("SYNTHETIC rcpfed-bench log entry {f}"),
                }],
                summary: vec![LocalizedText {
                    language: "en".into(),
                    text: format!(
                        "Synthetic benchmark statement of node {}, seq {seq}; not a real policy.",
                        node.id
                    ),
                }],
                meeting: String::new(),
                meeting_date: String::new(),
                status: PolicyStatus::Draft,
                countries: Vec::new(),
                gcm_objectives: vec![(f % 23) as u32 + 1],
                sdg_targets: Vec::new(),
                references: Vec::new(),
            }),
        };
        let env = SignedEnvelope {
            payload_type: STATEMENT_PAYLOAD_TYPE.to_string(),
            payload: statement.encode(),
            signatures: vec![EnvelopeSignature {
                key_id: node.key_id.clone(),
                sig: vec![0; 64],
            }],
        };
        let leaf = env.leaf_hash();
        let st = StoredStatement {
            feed_index: f,
            node_id: node.id.clone(),
            seq,
            digest: env.digest(),
            payload_type: env.payload_type.clone(),
            kind: DocumentKind::PolicySummary.as_str().to_string(),
            document,
            revision,
            envelope: env.encode(),
            receipt: Vec::new(),
            accepted_at_ms: now_ms,
            decoded: rcpfed_store::DecodedStatement::default(),
        };
        Ok((st, leaf))
    }

    /// The highest seq of node `n` in a synthetic log of `size` entries (0: none yet).
    fn expected_seq(n: usize, k: usize, size: u64) -> u64 {
        let (n, k) = (n as u64, k as u64);
        if size <= n { 0 } else { (size - n - 1) / k + 1 }
    }

    struct Batch {
        statements: Vec<StoredStatement>,
        nodes: Vec<LogNode>,
        checkpoint: NewCheckpoint,
    }

    fn now_ms() -> i64 {
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Grows the log to `target` entries; returns (rows added, time) or None if already there.
    /// A producer thread builds and signs the next batch while this thread commits the last.
    fn grow(
        db: &Path,
        target: u64,
        base: u64,
        batch: usize,
        nodes: &[Node],
        hub_key: &SecretKey,
        origin: &str,
    ) -> Result<Option<(u64, Duration)>> {
        let store = SqliteHubStore::open(db)?;
        let have = store.last_feed_index()?;
        if have > target {
            bail!(
                "{} already holds {have} entries, more than {target}; use another --dir",
                db.display()
            );
        }
        if have == target {
            return Ok(None);
        }
        let (frontier, _) = load_frontier(&store)?;
        if frontier.size() != have {
            bail!(
                "{}: the log has {} leaves but the feed {have} statements",
                db.display(),
                frontier.size()
            );
        }
        // Each node's chain continues from its stored head (a resumed build).
        let stored_heads = store.chain_heads()?;
        let heads: Vec<Option<Digest>> = nodes
            .iter()
            .map(|n| {
                stored_heads
                    .iter()
                    .find(|h| h.node_id == n.id)
                    .map(|h| h.digest)
            })
            .collect();
        let start = Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
        let mut batches = BatchProducer {
            frontier,
            heads,
            base,
            nodes,
            hub_key,
            origin,
        };
        let batch = batch as u64;
        let done = std::thread::scope(|s| -> Result<u64> {
            let producer = s.spawn(move || -> Result<()> {
                let mut next = have + 1;
                while next <= target {
                    let end = (next + batch - 1).min(target);
                    if tx.send(batches.next_batch(next, end)?).is_err() {
                        break; // the committer stopped on an error
                    }
                    next = end + 1;
                }
                Ok(())
            });
            let committed = commit_batches(&store, rx, have, start);
            producer
                .join()
                .map_err(|_| anyhow!("the batch producer panicked"))??;
            committed
        })?;
        if done != target {
            bail!("the build stopped at {done} of {target} entries");
        }
        Ok(Some((target - have, start.elapsed())))
    }

    /// What the producer thread of `grow` carries from one batch to the next.
    struct BatchProducer<'a> {
        frontier: Frontier,
        heads: Vec<Option<Digest>>,
        base: u64,
        nodes: &'a [Node],
        hub_key: &'a SecretKey,
        origin: &'a str,
    }

    impl BatchProducer<'_> {
        /// The statements, log nodes and signed checkpoint of feed entries `next..=end`.
        fn next_batch(&mut self, next: u64, end: u64) -> Result<Batch> {
            let now = now_ms();
            let mut statements = Vec::with_capacity((end - next + 1) as usize);
            let mut log_nodes = Vec::with_capacity(2 * (end - next + 1) as usize);
            for f in next..=end {
                let slot = ((f - self.base - 1) % self.nodes.len() as u64) as usize;
                let (st, leaf) = synthetic(f, self.base, self.nodes, self.heads[slot], now)?;
                self.heads[slot] = Some(st.digest);
                statements.push(st);
                log_nodes.extend(self.frontier.append(leaf));
            }
            let cp = Checkpoint {
                origin: self.origin.to_string(),
                size: self.frontier.size(),
                root: self.frontier.root(),
                extensions: Vec::new(),
            };
            let note = sign_checkpoint(&cp, self.origin, self.hub_key)
                .map_err(|e| anyhow!("cannot sign checkpoint: {e}"))?;
            Ok(Batch {
                statements,
                nodes: log_nodes,
                checkpoint: NewCheckpoint {
                    size: cp.size,
                    root: cp.root,
                    note,
                    created_at_ms: now,
                },
            })
        }
    }

    /// Appends every batch received to the store, with a progress line every 15 s; returns the
    /// log size reached.
    fn commit_batches(
        store: &SqliteHubStore,
        rx: std::sync::mpsc::Receiver<Batch>,
        have: u64,
        start: Instant,
    ) -> Result<u64> {
        let mut done = have;
        let mut reported = Instant::now();
        for b in rx {
            store.append(&b.statements, &[], &[], &b.nodes, Some(&b.checkpoint))?;
            done = b.checkpoint.size;
            if reported.elapsed() > Duration::from_secs(15) {
                reported = Instant::now();
                let secs = start.elapsed().as_secs_f64();
                eprintln!(
                    "  … {done} entries, {:.0} rows/s so far",
                    (done - have) as f64 / secs
                );
            }
        }
        Ok(done)
    }

    /// Times, in this process, the store reads the hub makes at start-up
    /// (`SqliteHubStore::open`, then `rcpfed_hub::ingest::Ingest::start`: `last_feed_index`,
    /// `chain_heads`, `load_frontier`), and checks what they return.
    fn startup_steps(db: &Path, size: u64, base: u64, nodes: &[Node]) -> Result<String> {
        let t = Instant::now();
        let store = SqliteHubStore::open(db)?;
        let open = t.elapsed();
        let t = Instant::now();
        let last = store.last_feed_index()?;
        let last_t = t.elapsed();
        let t = Instant::now();
        let heads = store.chain_heads()?;
        let heads_t = t.elapsed();
        let t = Instant::now();
        let (frontier, cp) = load_frontier(&store)?;
        let frontier_t = t.elapsed();
        if last != size || frontier.size() != size || cp.map(|c| c.size) != Some(size) {
            bail!(
                "at {size}: feed {last}, log {} entries: not the size built",
                frontier.size()
            );
        }
        for (i, n) in nodes.iter().enumerate() {
            let want = expected_seq(i, nodes.len(), size - base);
            let got = heads
                .iter()
                .find(|h| h.node_id == n.id)
                .map(|h| h.seq)
                .unwrap_or(0);
            if got != want {
                bail!("chain head of {} is seq {got}, expected {want}", n.id);
            }
        }
        Ok(format!(
            "open {:.2} ms, last_feed_index {:.2} ms, chain_heads {:.2} ms ({} heads), load_frontier {:.2} ms",
            ms(open),
            ms(last_t),
            ms(heads_t),
            heads.len(),
            ms(frontier_t)
        ))
    }

    /// Times `samples` inclusion proofs of random leaves and `samples` consistency proofs
    /// from random old sizes to `size`, each read from a freshly opened store; then verifies
    /// every proof (untimed) against the stored checkpoint root.
    fn proofs(db: &Path, size: u64, samples: usize, rng: &mut Rng) -> Result<ProofStats> {
        let store = SqliteHubStore::open(db)?;
        let cp = store
            .latest_checkpoint()?
            .context("the log has no checkpoint")?;
        if cp.size != size {
            bail!("latest checkpoint is of size {}, not {size}", cp.size);
        }
        let src = Counting {
            inner: StoreSource(&store),
            reads: Cell::new(0),
        };

        let (mut wall, mut own) = (Vec::new(), Vec::new());
        let mut inclusion = Vec::with_capacity(samples);
        for _ in 0..samples {
            let i = rng.below(size);
            let (proof, w, o) = timed(|| merkle::inclusion_proof(&src, i, size))?;
            wall.push(w);
            own.push(o);
            inclusion.push((i, proof));
        }
        let inclusion_reads = src.reads.replace(0) as f64 / samples as f64;
        let (inclusion_wall, inclusion_own) = (stats(wall), stats(own));

        let (mut wall, mut own) = (Vec::new(), Vec::new());
        let mut consistency = Vec::with_capacity(samples);
        for _ in 0..samples {
            let old = 1 + rng.below(size);
            let (proof, w, o) = timed(|| merkle::consistency_proof(&src, old, size))?;
            wall.push(w);
            own.push(o);
            consistency.push((old, proof));
        }
        let consistency_reads = src.reads.get() as f64 / samples as f64;
        let (consistency_wall, consistency_own) = (stats(wall), stats(own));

        for (i, proof) in &inclusion {
            let st = store
                .statement_by_feed_index(i + 1)?
                .with_context(|| format!("statement {} is missing", i + 1))?;
            let leaf = leaf_of_envelope(&st.envelope)?;
            merkle::verify_inclusion(&leaf, *i, size, proof, &cp.root).map_err(|e| {
                anyhow!("inclusion proof of leaf {i} at size {size} does not verify: {e}")
            })?;
        }
        for (old, proof) in &consistency {
            let old_root = merkle::root(&StoreSource(&store), *old)?;
            merkle::verify_consistency(*old, size, &old_root, &cp.root, proof)
                .map_err(|e| anyhow!("consistency proof {old} → {size} does not verify: {e}"))?;
        }
        Ok(ProofStats {
            inclusion: inclusion_wall,
            inclusion_own,
            inclusion_reads,
            consistency: consistency_wall,
            consistency_own,
            consistency_reads,
        })
    }

    /// Nanoseconds this thread has spent runnable but waiting for a CPU (Linux schedstat).
    fn runqueue_wait() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    }

    /// Runs `f`; returns its result, its wall time, and its wall time minus the time this
    /// thread waited for a CPU meanwhile (other processes' share of a loaded machine; I/O
    /// waits stay in). Without schedstat both times are the wall time.
    fn timed<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<(T, Duration, Duration), E> {
        let before = runqueue_wait();
        let t = Instant::now();
        let out = f()?;
        let wall = t.elapsed();
        let waited = match (before, runqueue_wait()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => Duration::ZERO,
        };
        Ok((out, wall, wall.saturating_sub(waited)))
    }

    /// Spawns the real hub on `config` and returns the time from spawn until its ops port
    /// answers SERVING for the whole server; stops it with SIGTERM afterwards.
    async fn hub_startup(rcpfed: &Path, config: &Path, dir: &Path, tag: &str) -> Result<Duration> {
        let addr_file = dir.join(format!("hub-{tag}.addr.json"));
        let log = dir.join(format!("hub-{tag}.log"));
        let _ = std::fs::remove_file(&addr_file);
        let stderr = std::fs::File::create(&log)?;
        let mut cmd = pinned_command(0, rcpfed);
        cmd.arg("hub")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
            .arg("--addr-file")
            .arg(&addr_file)
            .env("RCPFED_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let serving = wait_serving(&mut child, &addr_file, start).await;
        stop(&mut child).await;
        let took = serving.with_context(|| format!("hub start-up; see {}", log.display()))?;
        let _ = std::fs::remove_file(&addr_file);
        let _ = std::fs::remove_file(&log);
        Ok(took)
    }

    /// Polls the ops port's health every [`POLL`] until it reports SERVING.
    ///
    /// Checks are fired every 5 ms without waiting for the previous answer (they multiplex on
    /// one HTTP/2 connection). Waiting instead would add a ~40 ms stall to about half of the
    /// start-ups: the ops port does not set TCP_NODELAY, so the server holds the rest of its
    /// first answer until the client's delayed ACK (Nagle), whereas the next request frame
    /// carries that ACK within 5 ms.
    async fn wait_serving(
        child: &mut tokio::process::Child,
        addr_file: &Path,
        start: Instant,
    ) -> Result<Duration> {
        const MAX_IN_FLIGHT: usize = 64;
        let mut client: Option<HealthClient<tonic::transport::Channel>> = None;
        let mut checks = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(status) = child.try_wait()? {
                        bail!("the hub exited with {status} before serving");
                    }
                    if start.elapsed() > STARTUP_LIMIT {
                        bail!("the hub was not serving after {STARTUP_LIMIT:?}");
                    }
                    if client.is_none()
                        && let Ok(text) = std::fs::read_to_string(addr_file)
                        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                        && let Some(ops) = v["ops"].as_str()
                        && let Ok(channel) =
                            tonic::transport::Endpoint::from_shared(format!("http://{ops}"))?
                                .connect()
                                .await
                    {
                        client = Some(HealthClient::new(channel));
                    }
                    if let Some(c) = &client
                        && checks.len() < MAX_IN_FLIGHT
                    {
                        let mut c = c.clone();
                        checks.spawn(async move {
                            c.check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .map(|r| r.into_inner().status)
                        });
                    }
                }
                Some(done) = checks.join_next(), if !checks.is_empty() => {
                    if let Ok(Ok(status)) = done
                        && status == ServingStatus::Serving as i32
                    {
                        return Ok(start.elapsed());
                    }
                }
            }
        }
    }

    /// SIGTERM (graceful: the store closes cleanly), then SIGKILL after 10 s.
    async fn stop(child: &mut tokio::process::Child) {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// This process's CPU affinity list (e.g. "0,1"), if `taskset` works here.
    fn current_affinity() -> Option<String> {
        let out = std::process::Command::new("taskset")
            .args(["-c", "-p", &std::process::id().to_string()])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let list = text.rsplit(':').next()?.trim().to_string();
        (!list.is_empty()).then_some(list)
    }

    /// Sets the affinity of every thread of this process.
    fn set_affinity(list: &str) {
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-c", "-p", list, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The 1, 5 and 15 minute load averages (the machine is shared).
    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    }

    fn db_bytes(db: &Path) -> u64 {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        len(db) + len(Path::new(&wal))
    }

    fn human_bytes(b: u64) -> String {
        let b = b as f64;
        if b >= 1e9 {
            format!("{:.2} GB", b / 1e9)
        } else {
            format!("{:.1} MB", b / 1e6)
        }
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    /// Start-up ratios to the empty database: (of the medians, of the minimums).
    fn ratio(m: &Measured) -> (f64, f64) {
        let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        (
            r(m.startup.0, m.startup_empty.0),
            r(m.startup.1, m.startup_empty.1),
        )
    }

    fn triple(s: &Stats) -> String {
        format!("{:.0} / {:.0} / {:.0}", s.median, s.p99, s.max)
    }

    fn print_row(m: &Measured) {
        let p = &m.proofs;
        println!(
            "  at {}: inclusion {} µs (median / p99 / max; {} without run-queue wait; {:.1} node reads), consistency {} µs ({} without run-queue wait; {:.1} node reads), hub start-up median {:.1} ms vs {:.1} ms empty (×{:.2}), min {:.1} vs {:.1} ms (×{:.2}), database {}",
            m.size,
            triple(&p.inclusion),
            triple(&p.inclusion_own),
            p.inclusion_reads,
            triple(&p.consistency),
            triple(&p.consistency_own),
            p.consistency_reads,
            ms(m.startup.0),
            ms(m.startup_empty.0),
            ratio(m).0,
            ms(m.startup.1),
            ms(m.startup_empty.1),
            ratio(m).1,
            human_bytes(m.db_bytes)
        );
    }

    fn print_table(rows: &[Measured]) {
        println!();
        println!(
            "| entries | build rows/s | inclusion µs median / p99 / max | same, minus run-queue wait | consistency µs median / p99 / max | same, minus run-queue wait | hub start-up ms, median (empty, ratio) | min (empty, ratio) | database |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for m in rows {
            let build = match m.build {
                Some((n, took)) => format!("{:.0}", n as f64 / took.as_secs_f64()),
                None => "(existing)".into(),
            };
            let p = &m.proofs;
            println!(
                "| {} | {build} | {} | {} | {} | {} | {:.1} ({:.1}, ×{:.2}) | {:.1} ({:.1}, ×{:.2}) | {} |",
                m.size,
                triple(&p.inclusion),
                triple(&p.inclusion_own),
                triple(&p.consistency),
                triple(&p.consistency_own),
                ms(m.startup.0),
                ms(m.startup_empty.0),
                ratio(m).0,
                ms(m.startup.1),
                ms(m.startup_empty.1),
                ratio(m).1,
                human_bytes(m.db_bytes)
            );
        }
        println!();
        println!("targets: proofs under 1000 µs at 10 M entries; start-up ratio ≈ 1 at every size");
        for m in rows {
            println!("start-up reads at {}: {}", m.size, m.steps);
        }
    }
}
