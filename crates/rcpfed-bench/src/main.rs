//! `rcpfed-bench`: benchmark programs that report ratios against baselines measured in the same
//! run on the same machine (machines here are shared and noisy; absolute numbers drift, ratios
//! hold better).
//!
//! `ingest`: hub ingest of signed ~2 KB statements from N concurrent node clients over mTLS,
//! durable before the receipt, compared with (a) a bare tonic service that only acks the same
//! payload over the same TLS and (b) the single-core `verify_strict` rate of the same statements.
//! The hub (or the bare server) is pinned to core 0 and the load generator to core 1 with
//! `taskset` when available. All data is synthetic and labelled so.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope, pae};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::{Federation, MemberStateFile};
use rcpfed_core::statement::{
    Body, DocumentKind, Header, LocalizedText, PolicyStatus, PolicySummary, Statement,
};
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::hub_service_server::{HubService, HubServiceServer};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

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
        /// In-flight requests per client. Must be 1: a node's chain is sequential.
        #[arg(long, default_value_t = 1)]
        inflight: usize,
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
        } => {
            if inflight != 1 {
                bail!(
                    "--inflight must be 1: statements of one node are chained and must arrive in order"
                );
            }
            rt.block_on(ingest(&rcpfed, clients, per_client, payload_bytes))
        }
        Cmd::BareServer { pki, addr_file } => rt.block_on(bare_server(&pki, &addr_file)),
    }
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

/// Pins this process to `cpu` if `taskset` exists; returns whether it did.
fn pin_self(cpu: usize) -> bool {
    std::process::Command::new("taskset")
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
    let has_taskset = std::process::Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    let mut cmd = if has_taskset {
        let mut c = tokio::process::Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(program);
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
    format!(
        "{batches:.0} group commits, {:.1} statements per commit, {:.2} ms per commit",
        statements / batches,
        seconds / batches * 1000.0
    )
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

/// Synthetic statements: one chain per client, each a ~`size`-byte policy summary.
fn make_chains(
    fed: &Federation,
    keys: &[SecretKey],
    per_client: usize,
    size: usize,
) -> Vec<Vec<v1::Envelope>> {
    let filler = "Synthetic benchmark text, not a real policy summary. ".repeat(size / 52 + 1);
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let id = member_id(i);
            let mut prev = None;
            (1..=per_client as u64)
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

/// Sends every chain over its own mTLS connection, one request in flight per chain.
async fn load(
    endpoint: &str,
    pki: &Path,
    chains: &[Vec<v1::Envelope>],
) -> Result<(usize, Duration)> {
    let mut clients = Vec::new();
    for i in 0..chains.len() {
        let tls = tls_of(pki, &member_id(i));
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
            .tls_config(tls.client_config("localhost")?)?
            .connect()
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        clients.push(HubServiceClient::new(channel));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut client, chain) in clients.into_iter().zip(chains.iter().cloned()) {
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for env in chain {
                let r = client
                    .submit_statement(v1::SubmitStatementRequest {
                        envelope: Some(env),
                    })
                    .await;
                match r {
                    Ok(_) => ok += 1,
                    Err(s) => {
                        return Err(anyhow::anyhow!(
                            "submit failed: {:?} {}",
                            s.code(),
                            s.message()
                        ));
                    }
                }
            }
            Ok(ok)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, start.elapsed()))
}

async fn ingest(rcpfed: &Path, clients: usize, per_client: usize, size: usize) -> Result<()> {
    if !rcpfed.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p rcpfed",
            rcpfed.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("rcpfed-bench-{}", std::process::id()));
    let pki = dir.join("fed");
    let plan = rcpfed_pki::PkiPlan {
        federation_id: "bench-federation".into(),
        hub: rcpfed_pki::MemberPlan {
            id: "gfmd".into(),
            name: "GFMD (benchmark)".into(),
            kind: "hub".into(),
            states: vec![],
        },
        nodes: (0..clients)
            .map(|i| rcpfed_pki::MemberPlan {
                id: member_id(i),
                name: format!("Synthetic process {i} (benchmark)"),
                kind: "RCP".into(),
                states: vec![MemberStateFile {
                    iso3: "IND".into(),
                    since: String::new(),
                    until: String::new(),
                }],
            })
            .collect(),
        operators: vec!["operator".into()],
        server_hosts: rcpfed_pki::default_server_hosts(),
        valid_days: 30,
    };
    rcpfed_pki::init(&pki, &plan)?;
    let fed = Federation::from_toml(&std::fs::read_to_string(pki.join("federation.toml"))?)?;
    let keys: Vec<SecretKey> = (0..clients)
        .map(|i| {
            Ok(SecretKey::from_file_text(&std::fs::read_to_string(
                pki.join("members").join(member_id(i)).join("signing.key"),
            )?)?)
        })
        .collect::<Result<_>>()?;
    let chains = make_chains(&fed, &keys, per_client, size);
    let total = clients * per_client;
    let payload_len = chains
        .first()
        .and_then(|c| c.first())
        .map(|e| e.payload.len())
        .unwrap_or(0);
    let pinned = pin_self(1);
    println!(
        "rcpfed-bench ingest: {clients} clients × {per_client} statements, payload {payload_len} bytes (synthetic), load pinned to core 1: {pinned}"
    );

    // (b) single-core verify_strict of the same statements, in this process.
    let start = Instant::now();
    let mut verified = 0usize;
    for chain in &chains {
        for env in chain {
            let (_, key) = fed.key_owner(&env.signatures[0].key_id).context("key")?;
            if key.verify_strict(
                &pae(&env.payload_type, &env.payload),
                &env.signatures[0].sig,
            ) {
                verified += 1;
            }
        }
    }
    let verify_rate = verified as f64 / start.elapsed().as_secs_f64();

    // (a) the bare ack service over the same TLS.
    let exe = std::env::current_exe()?;
    let bare_addr_file = dir.join("bare.addr.json");
    let mut bare = pinned_command(0, &exe);
    bare.arg("bare-server")
        .arg("--pki")
        .arg(&pki)
        .arg("--addr-file")
        .arg(&bare_addr_file);
    let mut bare = bare.spawn()?;
    let addr = wait_addr(&bare_addr_file, &mut bare).await?;
    let port = addr.rsplit(':').next().unwrap_or_default().to_string();
    let (n, took) = load(&format!("https://localhost:{port}"), &pki, &chains).await?;
    let bare_rate = n as f64 / took.as_secs_f64();
    bare.kill().await?;

    // The real hub, durable before each receipt.
    let hub_toml = "federation_file = \"fed/federation.toml\"\ndata_dir = \"data\"\nsigning_key = \"fed/members/gfmd/signing.key\"\n[tls]\nca_cert = \"fed/ca.pem\"\ncert = \"fed/members/gfmd/tls.pem\"\nkey = \"fed/members/gfmd/tls.key\"\n";
    std::fs::write(dir.join("hub.toml"), hub_toml)?;
    let hub_addr_file = dir.join("hub.addr.json");
    let mut hub = pinned_command(0, rcpfed);
    hub.arg("hub")
        .arg("--config")
        .arg(dir.join("hub.toml"))
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .arg("--addr-file")
        .arg(&hub_addr_file)
        .env("RCPFED_LOG", "warn");
    let mut hub = hub.spawn()?;
    let addr = wait_addr(&hub_addr_file, &mut hub).await?;
    let port = addr.rsplit(':').next().unwrap_or_default().to_string();
    let (n, took) = load(&format!("https://localhost:{port}"), &pki, &chains).await?;
    let hub_rate = n as f64 / took.as_secs_f64();
    let ops = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&hub_addr_file)?)?
        ["ops"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let commits = commit_metrics(&ops);
    hub.kill().await?;

    println!("verify_strict, 1 core, same statements : {verify_rate:>9.0} statements/s");
    println!("bare tonic ack over the same mTLS       : {bare_rate:>9.0} statements/s");
    println!(
        "rcpfed hub (verify, validate, chain,    : {hub_rate:>9.0} statements/s  ({total} durable)"
    );
    println!("            group commit, signed receipt)");
    println!("hub commits                             : {commits}");
    println!(
        "ratio hub / bare ack                    : {:>9.2}   (target ≥ 0.50)",
        hub_rate / bare_rate
    );
    println!(
        "ratio hub / single-core verify_strict   : {:>9.2}   (target ≥ 0.50)",
        hub_rate / verify_rate
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
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
