//! The end-to-end harness: a federation of real `rcpfed` processes in a temporary directory.
//!
//! [`Cluster::start`] runs `rcpfed pki init`, starts the hub and the requested nodes on ports the
//! OS picks, and waits for their address files. Every process is killed (SIGKILL) when the
//! cluster is dropped, so a failing test leaves nothing running. Restarts reuse the same ports.

use rcpfed_core::Digest;
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_core::statement::{
    Body, DocumentKind, Header, IndicatorSnapshot, LocalizedText, Observation, ObservationAction,
    PolicyStatus, PolicySummary, Statement,
};
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use rcpfed_proto::v1::witness_service_client::WitnessServiceClient;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tonic::Status;
use tonic::transport::Channel;

/// The `rcpfed` binary under test: `RCPFED_BIN` if set, else `rcpfed` in the target directory
/// this test executable was built into (target/<profile>/deps/e2e-… → target/<profile>/rcpfed).
/// `cargo test --workspace` builds it first; so does `cargo build -p rcpfed`.
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    if let Some(bin) = std::env::var_os("RCPFED_BIN") {
        return bin.to_string_lossy().into_owned();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let bin = profile_dir.join("rcpfed");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p rcpfed` (cargo test --workspace does), \
         or set RCPFED_BIN",
        bin.display()
    );
    bin.to_string_lossy().into_owned()
});
/// How long `assert_eventually!` waits by default.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// The three regional nodes `rcpfed pki init` creates here.
pub const ALL_NODES: [&str; 3] = ["colombo", "abu-dhabi", "midwa"];
/// Client-side message limit: larger than the server's, so the server's limits are what we test.
const CLIENT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Installs rustls's ring provider for this test process (once; later calls are no-ops).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Polls `$cond` (which may contain `.await`) every 50 ms until it is true; on timeout panics
/// with the message and the cluster's logs.
#[macro_export]
macro_rules! assert_eventually {
    ($cluster:expr, $timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        let deadline = ::std::time::Instant::now() + timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() > deadline {
                panic!(
                    "not true within {:?}: {}\n{}",
                    timeout,
                    format!($($msg)+),
                    $cluster.logs()
                );
            }
            ::tokio::time::sleep(::std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// A child process, killed with SIGKILL when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (the graceful-shutdown signal).
    fn sigterm(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits up to `timeout` for the process to exit.
    async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A public HTTPS listener (hub or node) as an outside client reaches it: the federation CA
/// trusted, the server named `localhost` (as its certificate says), and optionally a member's
/// client certificate.
#[derive(Clone, Debug)]
pub struct PublicHttp {
    /// The listener's address.
    pub addr: SocketAddr,
    /// The federation CA (PEM).
    pub ca: PathBuf,
    /// The client certificate and key to present (PEM), if any.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl PublicHttp {
    /// The base URL, ending in `/`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }

    /// The same listener, presenting `member`'s certificate from the PKI directory `fed`.
    pub fn as_member(&self, fed: &Path, member: &str) -> PublicHttp {
        let dir = fed.join("members").join(member);
        PublicHttp {
            client: Some((dir.join("tls.pem"), dir.join("tls.key"))),
            ..self.clone()
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request with `Connection: close`) over HTTPS and
    /// returns everything the server sent back before closing.
    pub fn exchange(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Read as _;
        let mut tls = self.open()?;
        tls.write_all(request)?;
        let mut answer = Vec::new();
        match tls.read_to_end(&mut answer) {
            Ok(_) => Ok(answer),
            // A close without close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {
                Ok(answer)
            }
            Err(e) => Err(e),
        }
    }

    /// A TLS connection to the listener (HTTP/1.1 by ALPN), with a 10 s read timeout.
    pub fn open(
        &self,
    ) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
        use rustls_pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(&self.ca)
            .map_err(std::io::Error::other)?
        {
            roots
                .add(cert.map_err(std::io::Error::other)?)
                .map_err(std::io::Error::other)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots);
        let mut config = match &self.client {
            Some((cert, key)) => {
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)
                    .map_err(std::io::Error::other)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(std::io::Error::other)?;
                let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
                    .map_err(std::io::Error::other)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(std::io::Error::other)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name =
            rustls_pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        let session = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
            .map_err(std::io::Error::other)?;
        let tcp = std::net::TcpStream::connect(self.addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(rustls::StreamOwned::new(session, tcp))
    }
}

/// A hub or node process and the addresses it listens on.
struct Server {
    role: &'static str,
    name: String,
    proc: Option<Proc>,
    grpc: SocketAddr,
    ops: SocketAddr,
    /// The public HTTP listener, when the process runs one (`http_listen`).
    http: Option<SocketAddr>,
}

/// A running federation.
pub struct Cluster {
    fed: PathBuf,
    root: PathBuf,
    hub: Server,
    /// A second hub process on the same database (see [`Cluster::start_with_standby`]).
    standby: Option<Server>,
    nodes: BTreeMap<String, Server>,
    /// Extra environment variables for every process started (see [`Cluster::start_with_env`]).
    env: Vec<(String, String)>,
    /// The hub's PostgreSQL schema when it stores there (see [`HubDatabase`]); dropped after
    /// the processes.
    pg: Option<PgSchema>,
    // Last, so the processes die before the directory goes.
    _tmp: tempfile::TempDir,
}

/// Where a test federation's hub keeps its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubDatabase {
    /// SQLite in the hub's data_dir, unless `RCPFED_E2E_HUB_POSTGRES=1` asks for PostgreSQL (so
    /// any scenario can be run on PostgreSQL: `RCPFED_E2E_HUB_POSTGRES=1 cargo test -p
    /// rcpfed-e2e -- exchange::`).
    Default,
    /// A fresh schema on the server at `RCPFED_TEST_POSTGRES_URL` (scripts/pg-test-cluster.sh),
    /// given to the hub as `RCPFED_HUB_DATABASE_URL`.
    Postgres,
}

/// The test PostgreSQL server's URL, or None when it may be skipped (after saying so): it must
/// be there when `RCPFED_REQUIRE_POSTGRES=1`.
pub fn postgres_server() -> Option<String> {
    match std::env::var("RCPFED_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("RCPFED_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "RCPFED_REQUIRE_POSTGRES=1 but RCPFED_TEST_POSTGRES_URL is not set; start a \
                 server with `eval \"$(scripts/pg-test-cluster.sh start)\"`"
            );
            eprintln!("skipped: RCPFED_TEST_POSTGRES_URL is not set (no PostgreSQL server)");
            None
        }
    }
}

/// A schema made for one federation's hub, dropped with it.
pub struct PgSchema {
    server: String,
    name: String,
    /// The URL the hub stores through (its search_path is the schema).
    pub url: String,
}

static NEXT_PG_SCHEMA: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Runs `f` on a thread of its own: the synchronous PostgreSQL client runs a runtime of its
/// own, which must not be started from a thread driving the test's async runtime.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl PgSchema {
    /// A new, empty schema on `server`.
    pub fn create(server: &str) -> PgSchema {
        let n = NEXT_PG_SCHEMA.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("rcpfed_e2e_{}_{n}", std::process::id());
        off_runtime(|| {
            let mut admin =
                postgres::Client::connect(server, postgres::NoTls).unwrap_or_else(|e| {
                    panic!("connecting to the test PostgreSQL server {server}: {e}")
                });
            admin
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
                ))
                .expect("creating a schema");
        });
        let sep = if server.contains('?') { '&' } else { '?' };
        PgSchema {
            server: server.to_string(),
            url: format!("{server}{sep}options=-csearch_path%3D{name}"),
            name,
        }
    }

    /// Runs `f` with a client on the schema (on a thread of its own, see [`off_runtime`]), to
    /// look at or tamper with what the hub stored.
    pub fn with_client<T: Send>(&self, f: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
        off_runtime(|| {
            let mut client = postgres::Client::connect(&self.url, postgres::NoTls)
                .expect("connecting to the schema");
            f(&mut client)
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        off_runtime(|| {
            if let Ok(mut admin) = postgres::Client::connect(&self.server, postgres::NoTls) {
                let _ =
                    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
            }
        });
    }
}

/// What the hub stores, for "the store did not change" assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Every accepted statement, in feed order, as (name, digest).
    pub statements: Vec<(String, Vec<u8>)>,
    /// Number of equivocation evidence entries.
    pub equivocations: usize,
}

/// Runs `rcpfed pki init --dir <dir>` for all three nodes.
pub fn pki_init(dir: &Path) {
    let out = Command::new(BIN.as_str())
        .args(["pki", "init", "--dir"])
        .arg(dir)
        .args(["--nodes", &ALL_NODES.join(",")])
        .output()
        .expect("running rcpfed pki init");
    assert!(
        out.status.success(),
        "rcpfed pki init failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `rcpfed <role> --config <fed>/<name>.toml` and waits for its address file. Retries a
/// few times if the (fixed) port is momentarily taken.
#[allow(clippy::too_many_arguments)]
async fn spawn(
    fed: &Path,
    root: &Path,
    role: &'static str,
    name: &str,
    listen: &str,
    ops_listen: &str,
    extra: &[String],
    env: &[(String, String)],
) -> Server {
    let mut last_failure = String::new();
    for _attempt in 0..5 {
        let addr_file = root.join(format!("{name}.addr.json"));
        let _ = std::fs::remove_file(&addr_file);
        let log_path = root.join(format!("{name}.log"));
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("opening log");
        let _ = writeln!(log, "===== starting {role} {name} on {listen} =====");
        let config = if role == "hub" {
            fed.join("hub.toml")
        } else {
            fed.join(format!("{name}.toml"))
        };
        let child = Command::new(BIN.as_str())
            .arg(role)
            .arg("--config")
            .arg(&config)
            .args(["--listen", listen, "--ops-listen", ops_listen])
            .arg("--addr-file")
            .arg(&addr_file)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RCPFED_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting rcpfed");
        let mut proc = Proc { child };
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("addr file JSON");
                let grpc = v["grpc"]
                    .as_str()
                    .expect("grpc")
                    .parse()
                    .expect("grpc addr");
                let ops = v["ops"].as_str().expect("ops").parse().expect("ops addr");
                let http = v["http"].as_str().map(|a| a.parse().expect("http addr"));
                return Server {
                    role,
                    name: name.to_string(),
                    proc: Some(proc),
                    grpc,
                    ops,
                    http,
                };
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                last_failure = format!(
                    "{role} {name} exited with {status} before listening:\n{}",
                    tail(&log_path, 30)
                );
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!(
                    "{role} {name} did not write its address file within 20 s:\n{}",
                    tail(&log_path, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("{last_failure}");
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Connects over mutual TLS to `https://localhost:<port>`.
pub async fn connect(port: u16, tls: &TlsFiles) -> Result<Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("endpoint")
        .tls_config(tls.client_config("localhost").expect("tls files"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
}

impl Cluster {
    /// A new federation (PKI for all three nodes) with the hub and `nodes` running.
    pub async fn start(nodes: &[&str]) -> Cluster {
        Cluster::start_with_env(nodes, &[]).await
    }

    /// Like [`Cluster::start`], with extra environment variables for every hub and node
    /// process, now and on restarts (e.g. `RCPFED_NODE_WITNESS_INTERVAL_MS`). The hub's
    /// coherence interval is [`QUIET_COHERENCE`] unless `env` sets
    /// `RCPFED_HUB_COHERENCE_INTERVAL_MS` (e.g. [`FAST_COHERENCE`]).
    ///
    /// Returns once the hub and every node serve the hub's indicator catalogue, so the feed
    /// holds the [`HUB_PRELUDE`] and nodes may publish indicator snapshots.
    pub async fn start_with_env(nodes: &[&str], env: &[(&str, &str)]) -> Cluster {
        Cluster::start_on(HubDatabase::Default, nodes, env, false).await
    }

    /// Like [`Cluster::start_with_env`], with the hub's store on `database`. With
    /// [`HubDatabase::Postgres`] and no test server, None (the test is skipped) unless
    /// `RCPFED_REQUIRE_POSTGRES=1`, which makes it fail.
    pub async fn start_on_postgres(nodes: &[&str], env: &[(&str, &str)]) -> Option<Cluster> {
        postgres_server()?;
        Some(Cluster::start_on(HubDatabase::Postgres, nodes, env, false).await)
    }

    /// Like [`Cluster::start_on_postgres`], with two hub processes on the hub's schema (`hub`,
    /// which takes the lease first, and `hub-b`, its standby; `env` must turn `standby` on) and
    /// every node configured with both endpoints (`hub_endpoints`).
    pub async fn start_with_standby(nodes: &[&str], env: &[(&str, &str)]) -> Option<Cluster> {
        postgres_server()?;
        Some(Cluster::start_on(HubDatabase::Postgres, nodes, env, true).await)
    }

    async fn start_on(
        database: HubDatabase,
        nodes: &[&str],
        env: &[(&str, &str)],
        with_standby: bool,
    ) -> Cluster {
        install_crypto();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let on_postgres = database == HubDatabase::Postgres
            || std::env::var("RCPFED_E2E_HUB_POSTGRES").as_deref() == Ok("1");
        let pg = match on_postgres.then(postgres_server) {
            Some(Some(server)) => Some(PgSchema::create(&server)),
            Some(None) => panic!("the hub is to store on PostgreSQL, but there is no server"),
            None => None,
        };
        if let Some(pg) = &pg {
            env.push(("RCPFED_HUB_DATABASE_URL".into(), pg.url.clone()));
        }
        if !env.iter().any(|(k, _)| k == QUIET_COHERENCE.0) {
            env.push((QUIET_COHERENCE.0.into(), QUIET_COHERENCE.1.into()));
        }
        let tmp = tempfile::Builder::new()
            .prefix("rcpfed-e2e-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().to_path_buf();
        let fed = root.join("fed");
        pki_init(&fed);
        let hub = spawn(
            &fed,
            &root,
            "hub",
            "hub",
            "127.0.0.1:0",
            "127.0.0.1:0",
            &[],
            &env,
        )
        .await;
        let mut cluster = Cluster {
            fed,
            root,
            hub,
            standby: None,
            nodes: BTreeMap::new(),
            env,
            pg,
            _tmp: tmp,
        };
        if with_standby {
            // The first hub leads once it has logged the prelude; the second stands by.
            cluster.wait_for_catalogue("hub").await;
            let standby = spawn(
                &cluster.fed,
                &cluster.root,
                "hub",
                "hub-b",
                "127.0.0.1:0",
                "127.0.0.1:0",
                &[],
                &cluster.env,
            )
            .await;
            let endpoints = format!(
                "[\"https://localhost:{}\", \"https://localhost:{}\"]",
                cluster.hub.grpc.port(),
                standby.grpc.port()
            );
            cluster
                .env
                .push(("RCPFED_NODE_HUB_ENDPOINTS".into(), endpoints));
            cluster.standby = Some(standby);
        }
        for node in nodes {
            let server = spawn(
                &cluster.fed,
                &cluster.root,
                "node",
                node,
                "127.0.0.1:0",
                "127.0.0.1:0",
                &cluster.node_args(),
                &cluster.env,
            )
            .await;
            cluster.nodes.insert(node.to_string(), server);
        }
        cluster.wait_for_catalogue("hub").await;
        for node in nodes {
            cluster.wait_for_catalogue(node).await;
        }
        cluster
    }

    /// Waits until `at` ("hub" or a node) serves the hub's indicator catalogue (for a node: it
    /// has reached the node through the feed); panics with the logs after [`TIMEOUT`].
    pub async fn wait_for_catalogue(&self, at: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let last = match self.catalogue_at(at).await {
                Ok(_) => return,
                Err(s) => describe(&s),
            };
            assert!(
                Instant::now() < deadline,
                "{at} serves no indicator catalogue within {TIMEOUT:?}: {last}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn node_args(&self) -> Vec<String> {
        vec![
            "--hub-endpoint".into(),
            format!("https://localhost:{}", self.hub.grpc.port()),
        ]
    }

    /// The PKI directory (`ca.pem`, `members/…`, `federation.toml`, configurations).
    pub fn fed_dir(&self) -> &Path {
        &self.fed
    }

    /// The temporary directory holding everything (logs, PKI, data).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The hub's mTLS gRPC address.
    pub fn hub_addr(&self) -> SocketAddr {
        self.hub.grpc
    }

    /// The hub's public HTTPS listener (started with `RCPFED_HUB_HTTP_LISTEN`).
    pub fn hub_http(&self) -> PublicHttp {
        PublicHttp {
            addr: self
                .hub
                .http
                .expect("the hub runs no public HTTP listener (set RCPFED_HUB_HTTP_LISTEN)"),
            ca: self.fed.join("ca.pem"),
            client: None,
        }
    }

    /// `node`'s public HTTPS listener (started with `RCPFED_NODE_HTTP_LISTEN`).
    pub fn node_http(&self, node: &str) -> PublicHttp {
        PublicHttp {
            addr: self
                .nodes
                .get(node)
                .and_then(|n| n.http)
                .expect("the node runs no public HTTP listener (set RCPFED_NODE_HTTP_LISTEN)"),
            ca: self.fed.join("ca.pem"),
            client: None,
        }
    }

    /// The hub's plaintext ops address.
    pub fn hub_ops(&self) -> SocketAddr {
        self.hub.ops
    }

    /// A node's plaintext ops address (health and metrics).
    pub fn node_ops(&self, node: &str) -> SocketAddr {
        self.server(node).ops
    }

    /// The hub's PostgreSQL schema, when it stores there.
    pub fn hub_postgres(&self) -> Option<&PgSchema> {
        self.pg.as_ref()
    }

    /// The hub's SQLite database (`<fed>/data/gfmd/hub.sqlite`, from `hub.toml`'s data_dir).
    pub fn hub_db(&self) -> PathBuf {
        self.fed.join("data").join("gfmd").join("hub.sqlite")
    }

    /// A WitnessService client for `node`, authenticated as `identity`.
    pub async fn witness_client(
        &self,
        node: &str,
        identity: &str,
    ) -> WitnessServiceClient<Channel> {
        let channel = connect(self.node_addr(node).port(), &self.tls(identity))
            .await
            .unwrap_or_else(|e| panic!("connecting to node {node} as {identity}: {e:?}"));
        WitnessServiceClient::new(channel)
    }

    /// A node's witness status (as the operator).
    pub async fn witness_status(&self, node: &str) -> v1::GetWitnessStatusResponse {
        self.witness_client(node, "operator")
            .await
            .get_witness_status(v1::GetWitnessStatusRequest {})
            .await
            .unwrap_or_else(|s| panic!("GetWitnessStatus on {node}: {s:?}"))
            .into_inner()
    }

    /// A node's mTLS gRPC address.
    pub fn node_addr(&self, node: &str) -> SocketAddr {
        self.server(node).grpc
    }

    fn server(&self, node: &str) -> &Server {
        self.nodes
            .get(node)
            .unwrap_or_else(|| panic!("node {node} was not started"))
    }

    fn server_mut(&mut self, node: &str) -> &mut Server {
        self.nodes
            .get_mut(node)
            .unwrap_or_else(|| panic!("node {node} was not started"))
    }

    /// The TLS files of `identity` ("operator", "colombo", …) in the PKI directory.
    pub fn tls(&self, identity: &str) -> TlsFiles {
        let dir = self.fed.join("members").join(identity);
        TlsFiles {
            ca_cert: self.fed.join("ca.pem"),
            cert: dir.join("tls.pem"),
            key: dir.join("tls.key"),
        }
    }

    /// A HubService client authenticated as `identity`.
    pub async fn hub_client(&self, identity: &str) -> HubServiceClient<Channel> {
        let channel = connect(self.hub.grpc.port(), &self.tls(identity))
            .await
            .unwrap_or_else(|e| panic!("connecting to the hub as {identity}: {e:?}"));
        HubServiceClient::new(channel)
            .max_decoding_message_size(CLIENT_MAX_MESSAGE)
            .max_encoding_message_size(CLIENT_MAX_MESSAGE)
    }

    /// The size of the hub's latest checkpoint (asked as an operator).
    pub async fn hub_checkpoint_size(&self) -> u64 {
        let latest = self
            .hub_client("operator")
            .await
            .get_checkpoint(rcpfed_proto::v1::GetCheckpointRequest::default())
            .await
            .unwrap_or_else(|s| panic!("GetCheckpoint: {s:?}"))
            .into_inner();
        latest.tree_size
    }

    /// A NodeService client for `node`, authenticated as `identity`.
    pub async fn node_client(&self, node: &str, identity: &str) -> NodeServiceClient<Channel> {
        let channel = connect(self.node_addr(node).port(), &self.tls(identity))
            .await
            .unwrap_or_else(|e| panic!("connecting to node {node} as {identity}: {e:?}"));
        NodeServiceClient::new(channel)
            .max_decoding_message_size(CLIENT_MAX_MESSAGE)
            .max_encoding_message_size(CLIENT_MAX_MESSAGE)
    }

    /// A member's statement signing key.
    pub fn signing_key(&self, member: &str) -> SecretKey {
        let path = self.fed.join("members").join(member).join("signing.key");
        let text = std::fs::read_to_string(&path).expect("signing key");
        SecretKey::from_file_text(&text).expect("signing key text")
    }

    /// The member file.
    pub fn federation(&self) -> Federation {
        let text = std::fs::read_to_string(self.fed.join("federation.toml")).expect("member file");
        Federation::from_toml(&text).expect("member file parses")
    }

    // ----- process control -------------------------------------------------------------------

    /// SIGTERM to the hub, then wait for it to exit; returns its exit status.
    pub async fn stop_hub(&mut self) -> ExitStatus {
        stop(&mut self.hub).await
    }

    /// SIGTERM to the hub without waiting.
    pub fn term_hub(&self) {
        if let Some(p) = &self.hub.proc {
            p.sigterm();
        }
    }

    /// Waits for the hub to exit (after [`Self::term_hub`]).
    pub async fn wait_hub_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let proc = self.hub.proc.as_mut()?;
        let status = proc.wait(timeout).await;
        if status.is_some() {
            self.hub.proc = None;
        }
        status
    }

    /// The standby hub's gRPC and ops addresses (see [`Cluster::start_with_standby`]).
    pub fn standby_addrs(&self) -> (SocketAddr, SocketAddr) {
        let standby = self.standby.as_ref().expect("no standby hub was started");
        (standby.grpc, standby.ops)
    }

    /// The hub process's id (to stop and continue it).
    pub fn hub_pid(&self) -> u32 {
        self.hub
            .proc
            .as_ref()
            .expect("the hub is not running")
            .pid()
    }

    /// Makes the standby hub "the hub" of every helper (after the first one died or stepped
    /// down), and the first one the standby.
    pub fn swap_hubs(&mut self) {
        let standby = self.standby.take().expect("no standby hub was started");
        self.standby = Some(std::mem::replace(&mut self.hub, standby));
    }

    /// Starts the standby hub process again (after it was killed), on the ports it had.
    pub async fn restart_standby(&mut self) {
        let standby = self.standby.as_ref().expect("no standby hub was started");
        assert!(standby.proc.is_none(), "the standby hub is still running");
        let (name, grpc, ops) = (
            standby.name.clone(),
            standby.grpc.to_string(),
            standby.ops.to_string(),
        );
        let server = spawn(
            &self.fed,
            &self.root,
            "hub",
            &name,
            &grpc,
            &ops,
            &[],
            &self.env,
        )
        .await;
        self.standby = Some(server);
    }

    /// SIGKILL to the hub.
    pub async fn kill_hub(&mut self) {
        self.hub.proc = None;
    }

    /// Starts the hub again on the ports it had.
    pub async fn start_hub(&mut self) {
        assert!(self.hub.proc.is_none(), "the hub is still running");
        self.hub = spawn(
            &self.fed,
            &self.root,
            "hub",
            "hub",
            &self.hub.grpc.to_string(),
            &self.hub.ops.to_string(),
            &[],
            &self.env,
        )
        .await;
    }

    /// SIGTERM to a node, then wait for it to exit.
    pub async fn stop_node(&mut self, node: &str) -> ExitStatus {
        stop(self.server_mut(node)).await
    }

    /// SIGKILL to a node.
    pub async fn kill_node(&mut self, node: &str) {
        self.server_mut(node).proc = None;
    }

    /// Starts a stopped node again on the ports it had.
    pub async fn restart_node(&mut self, node: &str) {
        let args = self.node_args();
        let (grpc, ops) = {
            let s = self.server(node);
            assert!(s.proc.is_none(), "node {node} is still running");
            (s.grpc.to_string(), s.ops.to_string())
        };
        let server = spawn(
            &self.fed, &self.root, "node", node, &grpc, &ops, &args, &self.env,
        )
        .await;
        self.nodes.insert(node.to_string(), server);
    }

    /// The last lines of every process log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for s in std::iter::once(&self.hub)
            .chain(self.standby.as_ref())
            .chain(self.nodes.values())
        {
            out.push_str(&format!(
                "----- {} {} log (last 40 lines) -----\n{}\n",
                s.role,
                s.name,
                tail(&self.root.join(format!("{}.log", s.name)), 40)
            ));
        }
        out
    }

    // ----- reading state ---------------------------------------------------------------------

    /// Every statement the hub lists with `filter`, all pages, using `page_size`.
    pub async fn hub_statements_paged(
        &self,
        filter: v1::ListStatementsRequest,
        page_size: i32,
    ) -> Vec<v1::StatementRecord> {
        let mut client = self.hub_client("operator").await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_statements(v1::ListStatementsRequest {
                    page_size,
                    page_token: token.clone(),
                    ..filter.clone()
                })
                .await
                .unwrap_or_else(|s| panic!("ListStatements: {s:?}\n{}", self.logs()))
                .into_inner();
            out.extend(page.statements);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }

    /// Every statement the hub has accepted, in feed order.
    pub async fn hub_statements(&self) -> Vec<v1::StatementRecord> {
        self.hub_statements_paged(v1::ListStatementsRequest::default(), 100)
            .await
    }

    /// Every statement of `node` the hub has accepted, in feed order.
    pub async fn hub_statements_of(&self, node: &str) -> Vec<v1::StatementRecord> {
        self.hub_statements_paged(
            v1::ListStatementsRequest {
                node_id: node.into(),
                ..Default::default()
            },
            100,
        )
        .await
    }

    /// All equivocation evidence (as the operator).
    pub async fn equivocations(&self) -> Vec<v1::Equivocation> {
        let mut client = self.hub_client("operator").await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_equivocations(v1::ListEquivocationsRequest {
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("ListEquivocations: {s:?}"))
                .into_inner();
            out.extend(page.equivocations);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }

    /// The hub's statements (name, digest) and equivocation count.
    pub async fn hub_snapshot(&self) -> Snapshot {
        Snapshot {
            statements: self
                .hub_statements()
                .await
                .into_iter()
                .map(|r| (r.name, r.digest))
                .collect(),
            equivocations: self.equivocations().await.len(),
        }
    }

    /// A node's status (as the operator).
    pub async fn node_status(&self, node: &str) -> v1::GetNodeStatusResponse {
        self.node_client(node, "operator")
            .await
            .get_node_status(v1::GetNodeStatusRequest {})
            .await
            .unwrap_or_else(|s| panic!("GetNodeStatus on {node}: {s:?}"))
            .into_inner()
    }

    /// Every statement in a node's mirror, in feed order (small pages, to exercise paging).
    pub async fn mirror(&self, node: &str) -> Vec<v1::StatementRecord> {
        let mut client = self.node_client(node, "operator").await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_mirrored_statements(v1::ListMirroredStatementsRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("ListMirroredStatements on {node}: {s:?}"))
                .into_inner();
            out.extend(page.statements);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }

    /// A node's outbox, newest first.
    pub async fn outbox(&self, node: &str) -> Vec<v1::OutboxEntry> {
        let mut client = self.node_client(node, "operator").await;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_outbox(v1::ListOutboxRequest {
                    page_size: 100,
                    page_token: token.clone(),
                })
                .await
                .unwrap_or_else(|s| panic!("ListOutbox on {node}: {s:?}"))
                .into_inner();
            out.extend(page.entries);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }

    /// Whether `node` has exactly `n` delivered statements and nothing pending or rejected.
    pub async fn delivered(&self, node: &str, n: u64) -> bool {
        let s = self.node_status(node).await;
        assert_eq!(
            s.outbox_rejected,
            0,
            "{node}: the hub refused a statement: {}\n{}",
            s.last_error,
            self.logs()
        );
        s.outbox_delivered == n && s.outbox_pending == 0
    }

    /// Whether every node in `nodes` mirrors exactly what the hub lists (names, digests, feed
    /// indexes, order).
    pub async fn mirrors_match_hub(&self, nodes: &[&str]) -> bool {
        let hub = keyed(&self.hub_statements().await);
        for node in nodes {
            if keyed(&self.mirror(node).await) != hub {
                return false;
            }
        }
        true
    }

    /// Publishes a valid policy summary on `node` as the operator.
    pub async fn publish_policy(&self, node: &str, title: &str) -> v1::PublishDocumentResponse {
        self.node_client(node, "operator")
            .await
            .publish_document(publish_request(node, title))
            .await
            .unwrap_or_else(|s| {
                panic!(
                    "PublishDocument on {node}: {}\n{}",
                    describe(&s),
                    self.logs()
                )
            })
            .into_inner()
    }
}

async fn stop(server: &mut Server) -> ExitStatus {
    let mut proc = server
        .proc
        .take()
        .unwrap_or_else(|| panic!("{} is not running", server.name));
    proc.sigterm();
    match proc.wait(Duration::from_secs(15)).await {
        Some(status) => status,
        None => panic!(
            "{} {} did not exit within 15 s of SIGTERM",
            server.role, server.name
        ),
    }
}

/// (name, digest, feed_index) of each record, for order-sensitive comparison.
pub fn keyed(records: &[v1::StatementRecord]) -> Vec<(String, Vec<u8>, u64)> {
    records
        .iter()
        .map(|r| (r.name.clone(), r.digest.clone(), r.feed_index))
        .collect()
}

/// A lowercase document-name segment from a title.
pub fn slug(title: &str) -> String {
    title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// A valid policy summary: title in English, adopted, India, GCM objective 6.
pub fn policy_summary(title: &str) -> v1::PolicySummary {
    v1::PolicySummary {
        title: vec![v1::LocalizedText {
            language: "en".into(),
            text: title.into(),
        }],
        status: v1::PolicyStatus::Adopted as i32,
        countries: vec!["IND".into()],
        gcm_objectives: vec![6],
        ..Default::default()
    }
}

/// A PublishDocument request for a valid policy summary.
pub fn publish_request(node: &str, title: &str) -> v1::PublishDocumentRequest {
    v1::PublishDocumentRequest {
        document: format!("regions/{node}/policies/{}", slug(title)),
        body: Some(v1::publish_document_request::Body::PolicySummary(
            policy_summary(title),
        )),
        ..Default::default()
    }
}

/// One REMIT_INFLOW observation.
pub fn observation(ref_area: &str, time_period: &str, value: f64) -> Observation {
    Observation {
        action: ObservationAction::Append,
        ref_area: ref_area.into(),
        time_period: time_period.into(),
        dimensions: Vec::new(),
        obs_value: Some(value),
        obs_status: "A".into(),
        unit_measure: "current USD".into(),
        unit_mult: 6,
        conf_status: String::new(),
        footnote: String::new(),
        source: "World Bank/KNOMAD".into(),
    }
}

/// `member`'s undated member states (members throughout every period).
pub fn undated_states(c: &Cluster, member: &str) -> Vec<String> {
    c.federation()
        .members()
        .find(|m| m.id == member)
        .expect("member")
        .states
        .iter()
        .filter(|s| s.since.is_none() && s.until.is_none())
        .map(|s| s.iso3.clone())
        .collect()
}

/// Every ISO 3166-1 alpha-3 code, for many distinct keys per area.
pub fn every_alpha3() -> Vec<String> {
    let letters: Vec<char> = ('A'..='Z').collect();
    let mut codes = Vec::new();
    for a in &letters {
        for b in &letters {
            for d in &letters {
                let code: String = [*a, *b, *d].iter().collect();
                if rcpfed_core::iso3166::is_alpha3(&code) {
                    codes.push(code);
                }
            }
        }
    }
    codes
}

/// Generated MIG_STOCK observations, synthetic and labelled so: distinct valid keys, years ×
/// areas × origins × SEX × AGE in that order, each an APPEND in persons with status A.
pub struct MigStock {
    /// TIME_PERIODs, the outermost loop.
    pub years: Vec<String>,
    /// REF_AREAs.
    pub areas: Vec<String>,
    /// COUNTERPART_AREAs.
    pub origins: Vec<String>,
    /// The OBS_VALUE of the observation at each index.
    pub value: fn(usize) -> f64,
    /// The footnote of every observation.
    pub footnote: String,
    /// The source of every observation.
    pub source: String,
}

impl MigStock {
    /// Over `areas` in 2020 with ten origins, each valued by its index, no footnote.
    pub fn new(areas: Vec<String>) -> Self {
        let origins = [
            "AFG", "BGD", "CHN", "DEU", "EGY", "FRA", "GHA", "IND", "JPN", "KEN",
        ];
        MigStock {
            years: vec!["2020".into()],
            areas,
            origins: origins.iter().map(|o| o.to_string()).collect(),
            value: |index| index as f64,
            footnote: String::new(),
            source: "SYNTHETIC e2e test data - not real".into(),
        }
    }

    /// The first `n` observations; panics when there are fewer distinct keys.
    pub fn take(&self, n: usize) -> Vec<Observation> {
        let keys = self.years.iter().flat_map(|year| {
            self.areas.iter().flat_map(move |area| {
                self.origins.iter().flat_map(move |origin| {
                    ["_T", "F", "M"].into_iter().flat_map(move |sex| {
                        ["_T", "Y_LT15", "Y15T64", "Y_GE65"]
                            .into_iter()
                            .map(move |age| (year, area, origin, sex, age))
                    })
                })
            })
        });
        let out: Vec<Observation> = keys
            .take(n)
            .enumerate()
            .map(|(index, (year, area, origin, sex, age))| Observation {
                action: ObservationAction::Append,
                ref_area: area.clone(),
                time_period: year.clone(),
                dimensions: vec![
                    ("AGE".into(), age.into()),
                    ("COUNTERPART_AREA".into(), origin.clone()),
                    ("SEX".into(), sex.into()),
                ],
                obs_value: Some((self.value)(index)),
                obs_status: "A".into(),
                unit_measure: "persons".into(),
                unit_mult: 0,
                conf_status: String::new(),
                footnote: self.footnote.clone(),
                source: self.source.clone(),
            })
            .collect();
        assert_eq!(out.len(), n, "only {} distinct keys, {n} wanted", out.len());
        out
    }
}

/// The status in plain words with its reason and field violations.
pub fn describe(status: &Status) -> String {
    format!(
        "{:?}: {} [reason {:?}] {:?}",
        status.code(),
        status.message(),
        reason(status),
        field_violations(status)
    )
}

/// The `google.rpc.ErrorInfo` reason of a status ("" if none).
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    let Some(info) = details.error_info() else {
        return String::new();
    };
    // Every rcpfed error names its domain; a reason from anywhere else would be a bug.
    assert_eq!(info.domain, "rcpfed.v1", "ErrorInfo domain of {status:?}");
    info.reason.clone()
}

/// The `google.rpc.BadRequest` field violations of a status as (field, description).
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that `result` is an error with `code` and ErrorInfo `reason`; returns the status.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: tonic::Code,
    expected_reason: &str,
) -> Status {
    match result {
        Ok(v) => panic!("expected {code:?} {expected_reason}, but the call succeeded: {v:?}"),
        Err(s) => {
            assert_eq!(
                (s.code(), reason(&s).as_str()),
                (code, expected_reason),
                "unexpected refusal: {}",
                describe(&s)
            );
            s
        }
    }
}

/// Acts as a node directly against the hub: its TLS identity and signing key from the PKI
/// directory, statements built and signed here, sent with HubService.SubmitStatement.
pub struct RawNode {
    /// The hub client (mTLS as this node).
    pub client: HubServiceClient<Channel>,
    /// The node's signing key.
    pub key: SecretKey,
    /// Federation id.
    pub federation_id: String,
    /// Node id.
    pub node_id: String,
    /// Seq of the last accepted statement (0 if none).
    pub seq: u64,
    /// Digest of the last accepted statement.
    pub head: Option<Digest>,
}

impl RawNode {
    /// Connects as `node_id`, starting from the hub's current head for that node.
    pub async fn connect(cluster: &Cluster, node_id: &str) -> RawNode {
        let last = cluster.hub_statements_of(node_id).await.pop();
        RawNode {
            client: cluster.hub_client(node_id).await,
            key: cluster.signing_key(node_id),
            federation_id: cluster.federation().federation_id,
            node_id: node_id.into(),
            seq: last.as_ref().map(|r| r.seq).unwrap_or(0),
            head: last.map(|r| Digest::from_slice(&r.digest).expect("32-byte digest")),
        }
    }

    /// A correct header for the next statement.
    pub fn header(&self, kind: DocumentKind) -> Header {
        let document = match kind {
            DocumentKind::PolicySummary => format!("regions/{}/policies/x", self.node_id),
            DocumentKind::IndicatorSnapshot => {
                format!("regions/{}/indicators/remit-inflow", self.node_id)
            }
        };
        Header {
            federation_id: self.federation_id.clone(),
            node_id: self.node_id.clone(),
            seq: self.seq + 1,
            prev_digest: self.head,
            issued_at: time::OffsetDateTime::now_utc(),
            kind,
            schema_version: 1,
            document,
            revision: 1,
        }
    }

    /// The next statement: a valid policy summary titled `title`.
    pub fn policy(&self, title: &str) -> Statement {
        Statement {
            header: self.header(DocumentKind::PolicySummary),
            body: Body::Policy(PolicySummary {
                title: vec![LocalizedText {
                    language: "en".into(),
                    text: title.into(),
                }],
                summary: Vec::new(),
                meeting: String::new(),
                meeting_date: String::new(),
                status: PolicyStatus::Adopted,
                countries: vec!["IND".into()],
                gcm_objectives: vec![6],
                sdg_targets: Vec::new(),
                references: Vec::new(),
            }),
        }
    }

    /// The next statement: a REMIT_INFLOW snapshot with the given observations.
    pub fn indicators(&self, observations: Vec<Observation>) -> Statement {
        Statement {
            header: self.header(DocumentKind::IndicatorSnapshot),
            body: Body::Indicators(IndicatorSnapshot {
                indicator: "REMIT_INFLOW".into(),
                observations,
                chunks: None,
            }),
        }
    }

    /// Signs a statement with this node's key.
    pub fn sign(&self, statement: &Statement) -> SignedEnvelope {
        SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, statement.encode(), &self.key)
    }

    /// Sends an envelope as is.
    pub async fn submit(
        &mut self,
        envelope: v1::Envelope,
    ) -> Result<v1::SubmitStatementResponse, Status> {
        self.client
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(envelope),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Signs and sends `statement`; panics unless it is newly accepted; advances the head.
    pub async fn accept(
        &mut self,
        statement: &Statement,
    ) -> (SignedEnvelope, v1::SubmitStatementResponse) {
        let env = self.sign(statement);
        let response = self
            .submit(env.to_proto())
            .await
            .unwrap_or_else(|s| panic!("statement refused: {}", describe(&s)));
        assert!(
            !response.duplicate,
            "a new statement was answered as duplicate"
        );
        self.seq = statement.header.seq;
        self.head = Some(env.digest());
        (env, response)
    }
}

/// Runs `rcpfed pki revoke-cert --dir <fed> --member <member>`; panics unless it succeeds;
/// returns its standard output.
pub fn revoke_cert(fed: &Path, member: &str) -> String {
    let out = Command::new(BIN.as_str())
        .args(["pki", "revoke-cert", "--dir"])
        .arg(fed)
        .args(["--member", member, "--reason", "key-compromise"])
        .output()
        .expect("running rcpfed pki revoke-cert");
    assert!(
        out.status.success(),
        "rcpfed pki revoke-cert failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The hub's member id. Registry versions are the hub's own statements: version 1 is the first
/// entry of every new hub's feed and log (`nodes/gfmd/statements/1`, feed index 1, leaf 0).
pub const HUB_ID: &str = "gfmd";

/// Whether `record` is a registry version (the hub's own statement), not a node's statement.
pub fn is_registry(record: &v1::StatementRecord) -> bool {
    record.node_id == HUB_ID
        && record
            .envelope
            .as_ref()
            .is_some_and(|e| e.payload_type == rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE)
}

/// Whether `record` is a hub-issued document: a registry version (node id `gfmd`) or, since
/// issue 5, a catalogue version or coherence report (node ids `gfmd/catalogue`,
/// `gfmd/coherence`).
pub fn is_hub_document(record: &v1::StatementRecord) -> bool {
    is_registry(record)
        || record
            .node_id
            .strip_prefix(HUB_ID)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The node statements among `records` (hub-issued documents left out: registry versions,
/// catalogue versions, coherence reports), in the same order.
pub fn node_statements(records: &[v1::StatementRecord]) -> Vec<&v1::StatementRecord> {
    records.iter().filter(|r| !is_hub_document(r)).collect()
}

/// The hub-issued entries every new hub's feed and log start with, before any node statement:
/// registry version 1 (feed index 1, leaf 0) and indicator catalogue version 1 (feed index
/// [`CATALOGUE_V1_FEED_INDEX`], chain `gfmd/catalogue`, seq 1). Coherence reports come later
/// and only when a test asks for them (see [`QUIET_COHERENCE`]).
pub const HUB_PRELUDE: u64 = 2;

/// Feed index of indicator catalogue version 1 in a new hub's feed: right after registry
/// version 1.
pub const CATALOGUE_V1_FEED_INDEX: u64 = 2;

/// The hub's coherence interval in the tests unless a test sets another (e.g.
/// [`FAST_COHERENCE`]): an hour, so no coherence report enters the feed during a test that does
/// not ask for one and feed sizes stay what the test publishes plus [`HUB_PRELUDE`].
pub const QUIET_COHERENCE: (&str, &str) = ("RCPFED_HUB_COHERENCE_INTERVAL_MS", "3600000");

/// Whether `record` is an indicator catalogue version (chain `gfmd/catalogue`).
pub fn is_catalogue(record: &v1::StatementRecord) -> bool {
    record.node_id == rcpfed_store::catalogue_chain(HUB_ID)
        && record
            .envelope
            .as_ref()
            .is_some_and(|e| e.payload_type == rcpfed_core::catalogue::CATALOGUE_PAYLOAD_TYPE)
}

/// Asserts `record` is indicator catalogue version 1 as a new hub logs it: chain
/// `gfmd/catalogue`, seq 1, feed index [`CATALOGUE_V1_FEED_INDEX`], the catalogue payload type,
/// signed by the hub member's key for this federation.
#[track_caller]
pub fn assert_catalogue_v1(c: &Cluster, record: &v1::StatementRecord) {
    assert!(is_catalogue(record), "not a catalogue version: {record:?}");
    let chain = rcpfed_store::catalogue_chain(HUB_ID);
    assert_eq!(record.name, format!("nodes/{chain}/statements/1"));
    assert_eq!((record.node_id.as_str(), record.seq), (chain.as_str(), 1));
    assert_eq!(record.feed_index, CATALOGUE_V1_FEED_INDEX);
    let env = SignedEnvelope::from_proto(record.envelope.clone().expect("envelope"));
    assert_eq!(
        env.digest().0.to_vec(),
        record.digest,
        "digest of the payload"
    );
    let federation = c.federation();
    let hub_keys = federation.hub().expect("hub member").keys.clone();
    let catalogue =
        rcpfed_core::catalogue::verify_catalogue(&env, &hub_keys, &federation.federation_id, None)
            .unwrap_or_else(|e| {
                panic!("catalogue version 1 does not verify with the hub's keys: {e}")
            });
    assert_eq!(catalogue.version, 1);
}

// ----- registry and authorization tests (registry.rs, authz.rs) ------------------------------

impl Cluster {
    /// Starts `node`, which was not started with the cluster, from its configuration as it now
    /// is in `<fed>/<node>.toml`, with `extra_env` added to the cluster's environment, on ports
    /// the OS picks.
    pub async fn start_node_with_env(&mut self, node: &str, extra_env: &[(&str, &str)]) {
        assert!(
            !self.nodes.contains_key(node),
            "node {node} was already started; use restart_node"
        );
        let mut env = self.env.clone();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let server = spawn(
            &self.fed,
            &self.root,
            "node",
            node,
            "127.0.0.1:0",
            "127.0.0.1:0",
            &self.node_args(),
            &env,
        )
        .await;
        self.nodes.insert(node.to_string(), server);
    }

    /// The hub's endpoint as the CLI takes it, `https://localhost:<port>`.
    pub fn hub_endpoint(&self) -> String {
        format!("https://localhost:{}", self.hub.grpc.port())
    }

    /// The command line that starts `node` against this hub, for tests that run a node process
    /// themselves: `rcpfed node --config <fed>/<node>.toml --listen … --hub-endpoint …`.
    pub fn node_command(&self, node: &str) -> Command {
        let mut cmd = Command::new(BIN.as_str());
        cmd.arg("node")
            .arg("--config")
            .arg(self.fed.join(format!("{node}.toml")))
            .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
            .args(self.node_args())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RCPFED_LOG", "info")
            .stdin(Stdio::null());
        cmd
    }
}

/// Runs `rcpfed <args>` to completion; returns (exit code, stdout, stderr).
pub fn run_rcpfed(args: &[&str]) -> (i32, String, String) {
    run_rcpfed_env(args, &[])
}

/// [`run_rcpfed`] with `env` added to the environment.
pub fn run_rcpfed_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN.as_str())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RCPFED_HUB_ENDPOINT")
        .env_remove("RCPFED_PKI_DIR")
        .env_remove("RCPFED_IDENTITY")
        .output()
        .expect("running rcpfed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ----- indicator tests (indicators.rs) -------------------------------------------------------

/// The environment of the indicator tests: the hub looks for new content to report on every
/// 200 ms (the hub's default is 2 s; the harness's, [`QUIET_COHERENCE`], an hour).
pub const FAST_COHERENCE: (&str, &str) = ("RCPFED_HUB_COHERENCE_INTERVAL_MS", "200");

impl Cluster {
    /// Sets (or replaces) an environment variable for every hub and node process started from
    /// now on, e.g. `RCPFED_HUB_CATALOGUE` before [`Cluster::start_hub`].
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// An IndicatorService client as the operator: the hub's when `at` is "hub", otherwise
    /// node `at`'s (the same service over its mirror).
    pub async fn indicators(
        &self,
        at: &str,
    ) -> rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient<Channel> {
        let port = if at == "hub" {
            self.hub.grpc.port()
        } else {
            self.node_addr(at).port()
        };
        let channel = connect(port, &self.tls("operator"))
            .await
            .unwrap_or_else(|e| panic!("connecting to {at}'s IndicatorService: {e:?}"));
        rcpfed_proto::v1::indicator_service_client::IndicatorServiceClient::new(channel)
            .max_decoding_message_size(CLIENT_MAX_MESSAGE)
            .max_encoding_message_size(CLIENT_MAX_MESSAGE)
    }

    /// Every record `query` selects at `at` ("hub" or a node), all pages of `page_size`;
    /// also the number of pages read.
    pub async fn query_observations(
        &self,
        at: &str,
        query: &v1::ObservationQuery,
        page_size: i32,
    ) -> Result<(Vec<v1::ObservationRecord>, usize), Status> {
        let mut client = self.indicators(at).await;
        let mut out = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = client
                .query_observations(v1::QueryObservationsRequest {
                    query: Some(query.clone()),
                    page_size,
                    page_token: token.clone(),
                })
                .await?
                .into_inner();
            pages += 1;
            out.extend(page.observations);
            if page.next_page_token.is_empty() {
                return Ok((out, pages));
            }
            token = page.next_page_token;
        }
    }

    /// The latest catalogue at `at` ("hub" or a node), or the refusal.
    pub async fn catalogue_at(&self, at: &str) -> Result<v1::GetCatalogueResponse, Status> {
        self.indicators(at)
            .await
            .get_catalogue(v1::GetCatalogueRequest { version: 0 })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The latest coherence report at `at` ("hub" or a node), or the refusal.
    pub async fn coherence_report_at(
        &self,
        at: &str,
    ) -> Result<v1::GetCoherenceReportResponse, Status> {
        self.indicators(at)
            .await
            .get_coherence_report(v1::GetCoherenceReportRequest { number: 0 })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// [`run_rcpfed`] on a blocking thread, so that a long CLI run does not hold a runtime worker.
pub async fn run_rcpfed_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_rcpfed(&args)
    })
    .await
    .expect("rcpfed CLI thread")
}

/// A minimal HTTP/1.1 GET; returns the whole response.
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect ops");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

// ----- partition and hub-identity tests (partitions.rs, hostile_identity.rs) ------------------

impl Cluster {
    /// Starts `node`, which was not started with the cluster, dialling `hub_endpoint` (a fault
    /// proxy, an impostor) instead of the hub, with `extra_env` added to the cluster's
    /// environment. Returns once its address file is written (before it reaches any hub).
    pub async fn start_node_towards(
        &mut self,
        node: &str,
        hub_endpoint: &str,
        extra_env: &[(&str, &str)],
    ) {
        assert!(
            !self.nodes.contains_key(node),
            "node {node} already started"
        );
        let mut env = self.env.clone();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let args = vec!["--hub-endpoint".to_string(), hub_endpoint.to_string()];
        let server = spawn(
            &self.fed,
            &self.root,
            "node",
            node,
            "127.0.0.1:0",
            "127.0.0.1:0",
            &args,
            &env,
        )
        .await;
        self.nodes.insert(node.to_string(), server);
    }

    /// SIGTERM to `node` (if `term`), then waits up to `timeout` for it to exit. `None` if it
    /// is still running (it is killed when the cluster is dropped).
    pub async fn node_exit(
        &mut self,
        node: &str,
        term: bool,
        timeout: Duration,
    ) -> Option<ExitStatus> {
        let server = self.server_mut(node);
        let proc = server.proc.as_mut()?;
        if term {
            proc.sigterm();
        }
        let status = proc.wait(timeout).await;
        if status.is_some() {
            server.proc = None;
        }
        status
    }
}

/// The venv Python the tests' scripts run with: $RCPFED_PYTHON (scripts/test.sh sets it), else
/// .tools/venv. Never skipped: without it the test fails, naming the packages (`needs`) it
/// would have used.
pub fn venv_python(needs: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("RCPFED_PYTHON") {
        return PathBuf::from(path);
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python");
    assert!(
        installed.is_file(),
        "no Python with {needs}: set RCPFED_PYTHON or run scripts/install-tools.sh (it installs them into .tools/venv)"
    );
    installed
}
