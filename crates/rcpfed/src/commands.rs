//! Subcommands other than the demo.

use crate::client;
use crate::config::{HubConfig, ListenOverrides, NodeConfig, TlsConfig};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1;
use rcpfed_store::{PgHubStore, SqliteHubStore, SqliteNodeStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Arguments of `rcpfed hub` and `rcpfed node`.
#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file (TOML), as written by `rcpfed pki init`.
    #[arg(long, env = "RCPFED_CONFIG")]
    pub config: PathBuf,
    /// mTLS gRPC listen address (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Plaintext ops listen address for health and /metrics.
    #[arg(long)]
    pub ops_listen: Option<SocketAddr>,
    /// Public read-only HTTP listen address (HTTPS unless http_tls = false): on the hub the
    /// log as C2SP tlog-tiles under /tlog/ (port 0 picks a free port).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Directory for the SQLite database.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The hub endpoint (nodes only), "https://host:port".
    #[arg(long)]
    pub hub_endpoint: Option<String>,
    /// The federation CA's CRL (PEM); overrides `crl_file` in the configuration.
    #[arg(long)]
    pub crl_file: Option<PathBuf>,
    /// Write the bound addresses here as JSON once listening (for scripts and tests).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
}

impl ServeArgs {
    fn overrides(&self) -> ListenOverrides {
        ListenOverrides {
            listen: self.listen,
            ops_listen: self.ops_listen,
            http_listen: self.http_listen,
            data_dir: self.data_dir.clone(),
            hub_endpoint: self.hub_endpoint.clone(),
            // Relative to the working directory, not to the configuration file.
            crl_file: self
                .crl_file
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        }
    }
}

/// The GFMD root keys: the trust anchor every registry version is verified from.
pub(crate) fn load_trust(path: &Path) -> Result<(rcpfed_core::registry::RootSet, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading root trust file {}", path.display()))?;
    let file = rcpfed_core::registry::RootTrustFile::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let root = file
        .to_root_set()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((root, file.federation_id))
}

/// A signed registry version (DSSE JSON, as `rcpfed registry` writes it).
pub(crate) fn load_registry_file(path: &Path) -> Result<rcpfed_core::envelope::SignedEnvelope> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading registry {}", path.display()))?;
    crate::registry_cmd::envelope_from_json(&text)
        .with_context(|| format!("registry {}", path.display()))
}

fn load_key(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    SecretKey::from_file_text(&text).with_context(|| format!("signing key {}", path.display()))
}

fn tls_files(tls: &TlsConfig) -> TlsFiles {
    TlsFiles {
        ca_cert: tls.ca_cert.clone(),
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    }
}

/// The public HTTP listener, bound, if configured.
async fn public_http(
    http: &crate::config::PublicHttpConfig,
    tls: &TlsConfig,
) -> Result<Option<rcpfed_grpc::public_http::HttpSettings>> {
    let Some(addr) = http.listen else {
        return Ok(None);
    };
    Ok(Some(rcpfed_grpc::public_http::HttpSettings {
        listener: bind(addr, "public HTTP").await?,
        tls: http.tls_files(tls),
        readers_only: http.access == crate::config::HttpAccess::Readers,
    }))
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

fn write_addr_file(
    path: &Path,
    grpc: SocketAddr,
    ops: SocketAddr,
    http: Option<SocketAddr>,
) -> Result<()> {
    let mut addrs = serde_json::json!({ "grpc": grpc.to_string(), "ops": ops.to_string() });
    if let Some(http) = http {
        addrs["http"] = serde_json::Value::String(http.to_string());
    }
    let text = addrs.to_string();
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received; shutting down");
        token.cancel();
    });
}

/// `rcpfed hub`.
pub async fn run_hub(args: ServeArgs) -> Result<ExitCode> {
    if args.hub_endpoint.is_some() {
        bail!("--hub-endpoint is a node's setting (the hub it delivers to); the hub has none");
    }
    let config = HubConfig::load(&args.config, &args.overrides())?;
    let (trust, federation_id) = load_trust(&config.root_trust_file)?;
    let initial_registry = load_registry_file(&config.registry_file)?;
    let signing_key = load_key(&config.signing_key)?;
    let grpc_listener = bind(config.listen, "gRPC").await?;
    let ops_listener = bind(config.ops_listen, "ops").await?;
    let http = public_http(&config.public_http(), &config.tls).await?;
    if let Some(path) = &args.addr_file {
        write_addr_file(
            path,
            grpc_listener.local_addr()?,
            ops_listener.local_addr()?,
            http.as_ref().map(|h| h.listener.local_addr()).transpose()?,
        )?;
    }
    let database_url = config.database_url.clone();
    // The SQLite file is the data directory's: one process at a time (PostgreSQL serialises
    // writers itself).
    let _data_dir_lock = match database_url {
        None => Some(crate::data_dir::lock_data_dir(&config.data_dir, "hub")?),
        Some(_) => None,
    };
    let db = crate::data_dir::hub_db(&config.data_dir);
    let max_db_bytes = config.max_db_bytes;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    rcpfed_hub::run(
        rcpfed_hub::HubSettings {
            trust,
            federation_id,
            initial_registry,
            signing_key,
            tls: tls_files(&config.tls),
            crl_file: config.crl_file.clone(),
            stale_crl: config.stale_crl.into(),
            grpc_listener,
            ops_listener,
            http,
            witness_quorum: config.witness_quorum,
            catalogue_toml: config.catalogue_toml()?,
            coherence_interval: std::time::Duration::from_millis(config.coherence_interval_ms),
            quotas: config.quotas(),
            open_store: Box::new(move || {
                if let Some(url) = &database_url {
                    tracing::info!(database = %redact_password(url), "hub store on PostgreSQL");
                    let store = Arc::new(PgHubStore::open(url)?);
                    return Ok(store as Arc<dyn rcpfed_hub::HubBackend>);
                }
                let store = Arc::new(SqliteHubStore::open(&db)?);
                let (file, overrides) = (args.config.clone(), args.overrides());
                let weak = Arc::downgrade(&store);
                watch_db_quota(
                    max_db_bytes,
                    move || Ok(HubConfig::load(&file, &overrides)?.max_db_bytes),
                    move |bytes| weak.upgrade().map(|s| s.set_max_db_bytes(bytes)),
                )?;
                Ok(store as Arc<dyn rcpfed_hub::HubBackend>)
            }),
            standby: config.standby(),
            staging_dir: config.data_dir.join("snapshot-staging"),
        },
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// A connection URL fit for a log line: a password in it is replaced by `***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// How often `max_db_bytes` is re-read from the configuration file.
const DB_QUOTA_RELOAD: std::time::Duration = std::time::Duration::from_secs(2);

/// Applies the `max_db_bytes` quota now, then re-reads it every [`DB_QUOTA_RELOAD`] so an
/// operator raising it (or lifting it) lets a full store take writes again without a restart.
/// The watcher ends when the store is dropped (`apply` answers None).
fn watch_db_quota(
    initial: Option<u64>,
    read: impl Fn() -> Result<Option<u64>> + Send + 'static,
    apply: impl Fn(Option<u64>) -> Option<Result<u64, rcpfed_store::StoreError>> + Send + 'static,
) -> Result<(), rcpfed_store::StoreError> {
    let mut current = initial;
    if let Some(Err(e)) = apply(current) {
        return Err(e);
    }
    std::thread::Builder::new()
        .name("rcpfed-db-quota".into())
        .spawn(move || {
            loop {
                std::thread::sleep(DB_QUOTA_RELOAD);
                // An unreadable file keeps the quota in force; the next read may succeed.
                let Ok(wanted) = read() else { continue };
                if wanted == current {
                    continue;
                }
                match apply(wanted) {
                    None => return,
                    Some(Ok(bytes)) => {
                        tracing::info!(max_db_bytes = ?wanted, in_effect = bytes, "database quota changed");
                        current = wanted;
                    }
                    Some(Err(e)) => tracing::error!(error = %e, "cannot change the database quota"),
                }
            }
        })
        .map_err(|e| {
            rcpfed_store::StoreError::Corrupt(format!("cannot start the quota watcher: {e}"))
        })?;
    Ok(())
}

/// `rcpfed node`.
pub async fn run_node(args: ServeArgs) -> Result<ExitCode> {
    let config = NodeConfig::load(&args.config, &args.overrides())?;
    let (trust, federation_id) = load_trust(&config.root_trust_file)?;
    let initial_registry = match &config.registry_file {
        Some(path) => Some(load_registry_file(path)?),
        None => None,
    };
    let signing_key = load_key(&config.signing_key)?;
    let grpc_listener = bind(config.listen, "gRPC").await?;
    let ops_listener = bind(config.ops_listen, "ops").await?;
    let http = public_http(&config.public_http(), &config.tls).await?;
    if let Some(path) = &args.addr_file {
        write_addr_file(
            path,
            grpc_listener.local_addr()?,
            ops_listener.local_addr()?,
            http.as_ref().map(|h| h.listener.local_addr()).transpose()?,
        )?;
    }
    let _data_dir_lock = crate::data_dir::lock_data_dir(&config.data_dir, "node")?;
    let db = crate::data_dir::node_db(&config.data_dir);
    let max_db_bytes = config.max_db_bytes;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    rcpfed_node::run(
        rcpfed_node::NodeSettings {
            trust,
            federation_id,
            initial_registry,
            registry_cache: config.data_dir.join("registry-trusted.bin"),
            restore_marker: Some(crate::data_dir::restore_marker(&config.data_dir)),
            node_id: config.node_id.clone(),
            signing_key,
            tls: tls_files(&config.tls),
            crl_file: config.crl_file.clone(),
            stale_crl: config.stale_crl.into(),
            hub_endpoints: config.hub_endpoints(),
            hub_link: config.hub_link(),
            grpc_listener,
            ops_listener,
            http,
            witness_interval: std::time::Duration::from_millis(config.witness_interval_ms),
            open_store: Box::new(move || {
                let store = Arc::new(SqliteNodeStore::open(&db)?);
                let (file, overrides) = (args.config.clone(), args.overrides());
                let weak = Arc::downgrade(&store);
                watch_db_quota(
                    max_db_bytes,
                    move || Ok(NodeConfig::load(&file, &overrides)?.max_db_bytes),
                    move |bytes| weak.upgrade().map(|s| s.set_max_db_bytes(bytes)),
                )?;
                Ok(store as Arc<dyn rcpfed_node::NodeStorage>)
            }),
        },
        shutdown,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// `rcpfed pki …`.
#[derive(Subcommand)]
pub enum PkiCommand {
    /// Create a federation CA, the hub's and nodes' certificates and signing keys, an operator
    /// identity, the member file, and a configuration file for the hub and each node.
    Init(PkiInitArgs),
    /// Revoke a member's TLS certificate: add it to revoked.toml and re-issue crl.pem (signed
    /// by the CA, so run this where ca.key is). Running hubs and nodes whose crl_file is that
    /// file refuse the certificate within seconds, without a restart.
    RevokeCert(PkiRevokeArgs),
}

/// Arguments of `rcpfed pki revoke-cert`.
#[derive(Args)]
pub struct PkiRevokeArgs {
    /// The PKI directory (ca.pem, ca.key, crl.pem, members/).
    #[arg(long)]
    pub dir: PathBuf,
    /// Revoke this member's current certificate (members/<id>/tls.pem).
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    pub member: Option<String>,
    /// Revoke the certificate with this serial number (hex).
    #[arg(long)]
    pub serial: Option<String>,
    /// Why: unspecified, key-compromise, affiliation-changed, superseded or
    /// cessation-of-operation.
    #[arg(long, default_value = "unspecified")]
    pub reason: rcpfed_pki::RevocationReason,
}

/// Arguments of `rcpfed pki init`.
#[derive(Args)]
pub struct PkiInitArgs {
    /// Directory to create the PKI in (must not already hold one).
    #[arg(long)]
    pub dir: PathBuf,
    /// Federation id (the SPIFFE trust domain).
    #[arg(long, default_value = "rcp-federation")]
    pub federation: String,
    /// Regional processes to create nodes for (ids from the bundled rcps.csv).
    #[arg(long, value_delimiter = ',', default_values_t = ["colombo".to_string(), "abu-dhabi".to_string(), "midwa".to_string()])]
    pub nodes: Vec<String>,
    /// Operator identities (admin role).
    #[arg(long, value_delimiter = ',', default_values_t = ["operator".to_string()])]
    pub operators: Vec<String>,
    /// Loopback names put in every hub and node certificate, for a federation on one machine
    /// (`localhost`, `*.localhost`, loopback IPs; anything else is refused: give real names
    /// to one member each with --member-host).
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    pub hosts: Vec<String>,
    /// A member's own host name or IP, as ID=NAME (repeatable), for example
    /// `--member-host gfmd=hub.gfmd.example --member-host colombo=rcpfed.colombo.example`:
    /// it goes in that member's certificate only.
    #[arg(long = "member-host", value_parser = parse_member_host)]
    pub member_hosts: Vec<(String, String)>,
    /// The hub's endpoint written into node configurations.
    #[arg(long, default_value = "https://localhost:50051")]
    pub hub_endpoint: String,
    /// Also create this many SYNTHETIC nodes (synthetic-00, synthetic-01, …; member state IND)
    /// for load tests and benchmarks. Their names say they are synthetic.
    #[arg(long, default_value_t = 0)]
    pub synthetic_nodes: usize,
}

/// Ports written into generated configurations: the hub on 50051/9051, nodes from 50061/9061.
const HUB_PORT: u16 = 50051;
const HUB_OPS_PORT: u16 = 9051;
const NODE_PORT: u16 = 50061;
const NODE_OPS_PORT: u16 = 9061;

/// `ID=NAME` of `--member-host`.
fn parse_member_host(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((id, host)) if !id.is_empty() && !host.is_empty() => {
            Ok((id.to_string(), host.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not ID=NAME (for example gfmd=hub.gfmd.example)"
        )),
    }
}

/// Id of the i-th synthetic node.
pub fn synthetic_id(i: usize) -> String {
    format!("synthetic-{i:02}")
}

/// Creates the PKI and configuration files. Returns the member file.
pub fn pki_init(args: &PkiInitArgs) -> Result<Federation> {
    let plan_for = |id: &str| -> Result<rcpfed_pki::MemberPlan> {
        let (name, kind, states) = rcpfed_import::sample::member_plan(id)
            .with_context(|| format!("{id} is not a process in the bundled rcps.csv"))?;
        Ok(rcpfed_pki::MemberPlan {
            id: id.to_string(),
            name,
            kind,
            states,
        })
    };
    let hub = rcpfed_pki::MemberPlan {
        id: "gfmd".into(),
        name: "Global Forum on Migration and Development".into(),
        kind: "hub".into(),
        states: Vec::new(),
    };
    let plan = rcpfed_pki::PkiPlan {
        federation_id: args.federation.clone(),
        hub,
        nodes: args
            .nodes
            .iter()
            .filter(|id| !id.is_empty())
            .map(|id| plan_for(id))
            .chain((0..args.synthetic_nodes).map(|i| {
                Ok(rcpfed_pki::MemberPlan {
                    id: synthetic_id(i),
                    name: format!("Synthetic load-test process {i} (synthetic, not a real RCP)"),
                    kind: "RCP".into(),
                    states: vec![rcpfed_core::members::MemberStateFile {
                        iso3: "IND".into(),
                        since: String::new(),
                        until: String::new(),
                    }],
                })
            }))
            .collect::<Result<_>>()?,
        operators: args.operators.clone(),
        server_hosts: args.hosts.clone(),
        member_hosts: args.member_hosts.iter().fold(
            std::collections::BTreeMap::<String, Vec<String>>::new(),
            |mut map, (id, host)| {
                map.entry(id.clone()).or_default().push(host.clone());
                map
            },
        ),
        valid_days: 825,
    };
    let layout = rcpfed_pki::init(&args.dir, &plan)?;
    let tls_for = |id: &str| {
        format!(
            "crl_file = \"crl.pem\"\n\n[tls]\nca_cert = \"ca.pem\"\ncert = \"members/{id}/tls.pem\"\nkey = \"members/{id}/tls.key\"\n"
        )
    };
    let hub_toml = format!(
        "# rcpfed hub configuration (paths are relative to this file)\nroot_trust_file = \"root-trust.toml\"\nregistry_file = \"registry/registry.v1.json\"\ndata_dir = \"data/gfmd\"\nlisten = \"127.0.0.1:{HUB_PORT}\"\nops_listen = \"127.0.0.1:{HUB_OPS_PORT}\"\nsigning_key = \"members/gfmd/signing.key\"\n\n{}",
        tls_for("gfmd")
    );
    write_new(&args.dir.join("hub.toml"), &hub_toml)?;
    let all_nodes: Vec<String> = args
        .nodes
        .iter()
        .filter(|id| !id.is_empty())
        .cloned()
        .chain((0..args.synthetic_nodes).map(synthetic_id))
        .collect();
    for (i, id) in all_nodes.iter().enumerate() {
        let offset = u16::try_from(i).unwrap_or(0);
        let node_toml = format!(
            "# rcpfed node configuration (paths are relative to this file)\nnode_id = \"{id}\"\nhub_endpoint = \"{}\"\nroot_trust_file = \"root-trust.toml\"\nregistry_file = \"registry/registry.v1.json\"\ndata_dir = \"data/{id}\"\nlisten = \"127.0.0.1:{}\"\nops_listen = \"127.0.0.1:{}\"\nsigning_key = \"members/{id}/signing.key\"\n\n{}",
            args.hub_endpoint,
            NODE_PORT + offset,
            NODE_OPS_PORT + offset,
            tls_for(id)
        );
        write_new(&args.dir.join(format!("{id}.toml")), &node_toml)?;
    }
    let text = std::fs::read_to_string(layout.federation_file())?;
    let file: rcpfed_core::members::FederationFile =
        toml::from_str(&text).context("reading the member file pki init wrote")?;
    // The GFMD root keys (3, threshold 2) and registry version 1 signed by two of them: from
    // here on the threshold-signed registry, not the member file, is what hub and nodes trust.
    let (root, signers) = crate::registry_cmd::create_root_keys(&args.dir, &args.federation, 3, 2)?;
    crate::registry_cmd::create_first_version(&args.dir, &file, &root, &signers[..2], 365)?;
    Ok(Federation::from_toml(&text)?)
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// `rcpfed pki`.
pub fn pki(command: PkiCommand) -> Result<ExitCode> {
    match command {
        PkiCommand::RevokeCert(args) => pki_revoke(&args),
        PkiCommand::Init(args) => {
            let federation = pki_init(&args)?;
            println!(
                "created federation {} in {}",
                federation.federation_id,
                args.dir.display()
            );
            for m in federation.members() {
                let keys: Vec<&str> = m.keys.iter().map(|k| k.key_id.as_str()).collect();
                println!(
                    "  {:<10} {:<8} {:<48} {}",
                    m.id,
                    m.kind,
                    m.spiffe_id,
                    keys.join(" ")
                );
            }
            println!("hub config: {}", args.dir.join("hub.toml").display());
            for id in &args.nodes {
                println!(
                    "node config: {}",
                    args.dir.join(format!("{id}.toml")).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `rcpfed pki revoke-cert`.
fn pki_revoke(args: &PkiRevokeArgs) -> Result<ExitCode> {
    let target = match (&args.member, &args.serial) {
        (Some(member), _) => rcpfed_pki::RevokeTarget::Member(member.clone()),
        (None, Some(serial)) => rcpfed_pki::RevokeTarget::Serial(serial.clone()),
        (None, None) => bail!("--member <id> or --serial <hex> is required"),
    };
    let layout = rcpfed_pki::PkiLayout::new(&args.dir);
    let r = rcpfed_pki::revoke(&layout, &target, args.reason)?;
    let who = args
        .member
        .as_deref()
        .map(|m| format!(" of {m}"))
        .unwrap_or_default();
    if r.newly_revoked {
        println!(
            "revoked certificate {}{who} (reason {})",
            r.serial, args.reason
        );
    } else {
        println!("certificate {}{who} was already revoked", r.serial);
    }
    println!(
        "wrote {} (CRL number {}, {} revoked certificates); servers using it reload it within seconds",
        r.crl.display(),
        r.crl_number,
        r.revoked_count
    );
    Ok(ExitCode::SUCCESS)
}

/// `rcpfed keygen`.
pub fn keygen(out: &Path) -> Result<ExitCode> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = SecretKey::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    f.write_all(key.to_file_text().as_bytes())?;
    println!("key_id = \"{}\"", key.key_id());
    println!("public_key = \"{}\"", key.verify_key().to_base64());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rcpfed publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// What to publish.
    #[command(subcommand)]
    pub what: PublishWhat,
    /// The node's endpoint.
    #[arg(
        long,
        global = true,
        env = "RCPFED_NODE_ENDPOINT",
        default_value = "https://localhost:50061"
    )]
    pub node: String,
    /// PKI directory (from `rcpfed pki init`) holding ca.pem and members/<identity>/tls.*.
    #[arg(long, global = true, env = "RCPFED_PKI_DIR")]
    pub pki: Option<PathBuf>,
    /// Identity to call the node as (needs the admin role).
    #[arg(
        long,
        global = true,
        env = "RCPFED_IDENTITY",
        default_value = "operator"
    )]
    pub identity: String,
    /// Validate and report, but sign and publish nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Seconds to wait for the hub's receipt after signing; then the statement is reported as
    /// delivered, or as queued (the node keeps retrying). 0: do not wait.
    #[arg(long, global = true, default_value_t = 10)]
    pub wait_delivery: u64,
}

/// What `rcpfed publish` publishes.
#[derive(Subcommand)]
pub enum PublishWhat {
    /// A policy summary (TOML, see data/sample/README.md).
    Policy {
        /// The file.
        file: PathBuf,
    },
    /// Indicator observations: the project's CSV or an SDMX-CSV 2.0 data message, one
    /// snapshot per indicator. More than 10,000 observations are streamed from the file
    /// (NodeService.PublishSnapshot; one indicator per file), with a progress bar.
    Indicators {
        /// The CSV file.
        file: PathBuf,
        /// Document name under regions/<node>/indicators/<indicator>/ (default: file stem).
        #[arg(long)]
        name: Option<String>,
        /// Stream even a small snapshot (NodeService.PublishSnapshot).
        #[arg(long)]
        stream: bool,
    },
}

/// Builds the documents a publish command sends (whole files, read into memory: the demo's
/// and small files; `rcpfed publish` streams large indicator files instead).
pub fn documents_for(what: &PublishWhat, node_id: &str) -> Result<Vec<v1::PublishDocumentRequest>> {
    match what {
        PublishWhat::Policy { file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let doc = rcpfed_import::parse_policy_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            Ok(vec![v1::PublishDocumentRequest {
                document: doc.document,
                body: Some(v1::publish_document_request::Body::PolicySummary(
                    doc.summary,
                )),
                ..Default::default()
            }])
        }
        PublishWhat::Indicators { file, name, .. } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = crate::publish::document_name(file, name.as_deref());
            let docs = rcpfed_import::parse_any_indicator_csv(&text, node_id, &name)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            Ok(docs
                .into_iter()
                .map(|d| v1::PublishDocumentRequest {
                    document: d.document,
                    body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
                        d.snapshot,
                    )),
                    ..Default::default()
                })
                .collect())
        }
    }
}

/// `rcpfed publish`.
pub async fn publish(args: PublishArgs) -> Result<ExitCode> {
    let Some(pki) = &args.pki else {
        bail!(
            "--pki <dir> (or RCPFED_PKI_DIR) is required: the directory written by rcpfed pki init"
        );
    };
    let tls = client::identity_files(pki, &args.identity)?;
    let channel = client::node_channel(&args.node, "--node", &tls).await?;
    let mut node = client::node_service(channel.clone());
    let node_id = crate::publish::node_id_of(&mut node).await?;
    if let PublishWhat::Indicators { file, name, stream } = &args.what {
        let options = crate::publish::Options {
            dry_run: args.dry_run,
            stream: *stream,
            wait_delivery: std::time::Duration::from_secs(args.wait_delivery),
            rows_left_out: false,
        };
        // Blank optional dimensions are filled with the node's catalogue in force, as the
        // node itself does before signing.
        let catalogue = crate::publish::node_catalogue(channel).await;
        let ok = crate::publish::publish_indicators(
            &mut node,
            &node_id,
            file,
            name.as_deref(),
            &options,
            catalogue.as_ref(),
        )
        .await?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut failed = false;
    for mut doc in documents_for(&args.what, &node_id)? {
        doc.validate_only = args.dry_run;
        let name = doc.document.clone();
        match node.publish_document(doc).await {
            Ok(r) => {
                let r = r.into_inner();
                if args.dry_run {
                    println!("valid: {} (would be revision {})", r.document, r.revision);
                } else {
                    println!(
                        "signed: {} revision {} as {}#{} digest {}",
                        r.document,
                        r.revision,
                        node_id,
                        r.seq,
                        hex::encode(&r.digest)
                    );
                    let wait = std::time::Duration::from_secs(args.wait_delivery);
                    if !crate::delivery::report(&mut node, &node_id, r.seq, wait).await? {
                        failed = true;
                    }
                }
            }
            Err(s) => {
                failed = true;
                eprintln!("refused: {name}: {}", client::describe_status(&s));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
