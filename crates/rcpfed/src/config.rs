//! Configuration, layered: built-in defaults → TOML file → `RCPFED_*` environment → command-line
//! flags, then `validate()`. Relative paths in a file are relative to that file's directory.
//! Strict: an unknown key, section or environment variable stops the process ([`keys`]).

mod keys;

use anyhow::{Context as _, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// TLS material paths.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TlsConfig {
    /// Federation CA certificate.
    pub ca_cert: PathBuf,
    /// This member's certificate.
    pub cert: PathBuf,
    /// This member's private key.
    pub key: PathBuf,
}

/// Whether client certificates are checked against a CRL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Revocation {
    /// A CRL must be configured and load (the default).
    #[default]
    Required,
    /// No revocation check (only when said explicitly).
    Disabled,
}

/// What a server does while its CRL is past nextUpdate (`stale_crl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCrl {
    /// Refuse every new connection until a fresh CRL is installed (the default).
    #[default]
    Refuse,
    /// Keep serving with the stale CRL's revocations, health NOT_SERVING and an error logged.
    NotServing,
}

impl From<StaleCrl> for rcpfed_grpc::acceptor::StaleCrl {
    fn from(policy: StaleCrl) -> Self {
        match policy {
            StaleCrl::Refuse => Self::Refuse,
            StaleCrl::NotServing => Self::NotServing,
        }
    }
}

/// The CRL to use under `revocation`: an error when it is required and missing.
fn check_revocation(revocation: Revocation, crl_file: &Option<PathBuf>) -> Result<()> {
    match (revocation, crl_file) {
        (Revocation::Required, None) => bail!(
            "no CRL: revocation is required, but crl_file is empty and there is no crl.pem next \
             to the configuration file; point crl_file at the federation CA's CRL \
             (rcpfed pki init writes crl.pem), or set revocation = \"disabled\" to run \
             without revocation checks"
        ),
        (Revocation::Required, Some(p)) if !p.is_file() => {
            bail!("crl_file: {} is not a readable file", p.display())
        }
        (Revocation::Disabled, Some(p)) => bail!(
            "crl_file {} is set but revocation = \"disabled\"; remove one of the two",
            p.display()
        ),
        _ => Ok(()),
    }
}

/// Who may read from the public HTTP listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpAccess {
    /// Anyone who can reach it: published, signed data only (the default).
    #[default]
    Public,
    /// Only holders of a federation certificate whose member has the reader role.
    Readers,
}

/// The public read-only HTTP listener of a hub or a node (tlog-tiles, SDMX REST, dashboard):
/// the `http_*` settings of [`HubConfig`] and [`NodeConfig`] (kept as their own keys, so that
/// a value error names the key).
#[derive(Clone, Debug)]
pub struct PublicHttpConfig {
    /// `http_listen`.
    pub listen: Option<SocketAddr>,
    /// `http_access`.
    pub access: HttpAccess,
    /// `http_tls`.
    pub tls: bool,
    /// `http_tls_cert`.
    pub tls_cert: Option<PathBuf>,
    /// `http_tls_key`.
    pub tls_key: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

/// The `http_*` settings, documented once for hub and node.
macro_rules! public_http_fields {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        $vis struct $name {
            $($body)*
            /// Public read-only HTTP listen address. Unset (the default): not served.
            #[serde(default)]
            pub http_listen: Option<SocketAddr>,
            /// "public" (default) or "readers" (federation client certificate with the reader
            /// role; needs `http_tls`).
            #[serde(default)]
            pub http_access: HttpAccess,
            /// HTTPS (default). `false`: plain HTTP, only behind a proxy that terminates TLS or
            /// on loopback.
            #[serde(default = "default_true")]
            pub http_tls: bool,
            /// The certificate (PEM chain) HTTPS presents, e.g. one browsers trust; unset: this
            /// member's federation certificate (`tls.cert`). Set together with `http_tls_key`.
            #[serde(default)]
            pub http_tls_cert: Option<PathBuf>,
            /// The private key of `http_tls_cert`.
            #[serde(default)]
            pub http_tls_key: Option<PathBuf>,
        }

        impl $name {
            /// The public HTTP listener's settings.
            pub fn public_http(&self) -> PublicHttpConfig {
                PublicHttpConfig {
                    listen: self.http_listen,
                    access: self.http_access,
                    tls: self.http_tls,
                    tls_cert: self.http_tls_cert.clone(),
                    tls_key: self.http_tls_key.clone(),
                }
            }

            fn resolve_http_paths(&mut self, base: &Path) {
                for p in [&mut self.http_tls_cert, &mut self.http_tls_key]
                    .into_iter()
                    .flatten()
                {
                    resolve(base, p);
                }
            }
        }
    };
}

impl PublicHttpConfig {
    fn validate(&self) -> Result<()> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                bail!("http_tls_cert and http_tls_key go together: set both or neither")
            }
            (Some(cert), Some(key)) => {
                if !self.tls {
                    bail!("http_tls_cert is set but http_tls = false; remove one of the two");
                }
                for (what, p) in [("http_tls_cert", cert), ("http_tls_key", key)] {
                    if !p.is_file() {
                        bail!("{what}: {} is not a readable file", p.display());
                    }
                }
            }
            (None, None) => {}
        }
        if self.access == HttpAccess::Readers && !self.tls {
            bail!(
                "http_access = \"readers\" checks client certificates, which needs http_tls = true"
            );
        }
        Ok(())
    }

    /// The TLS files HTTPS uses (None for plain HTTP): the configured pair or the member's
    /// own, with the federation CA for client certificates.
    pub fn tls_files(&self, tls: &TlsConfig) -> Option<rcpfed_grpc::tls::TlsFiles> {
        if !self.tls {
            return None;
        }
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => (tls.cert.clone(), tls.key.clone()),
        };
        Some(rcpfed_grpc::tls::TlsFiles {
            ca_cert: tls.ca_cert.clone(),
            cert,
            key,
        })
    }
}

public_http_fields! {
/// `rcpfed hub` configuration (and the `http_*` settings; on the hub the public listener
/// serves the log as C2SP tlog-tiles under `/tlog/`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubConfig {
    /// The GFMD root keys and threshold (trust anchor of the registry).
    pub root_trust_file: PathBuf,
    /// Registry version 1, signed by the root keys (used when the log has no registry yet).
    pub registry_file: PathBuf,
    /// Directory for the hub's SQLite database (unused with `database_url`).
    pub data_dir: PathBuf,
    /// PostgreSQL connection URL for the hub's store (`postgres://user@host:port/dbname`; a
    /// schema other than `public` with `?options=-csearch_path%3Dname`). Unset: SQLite in
    /// `data_dir`. Environment: `RCPFED_HUB_DATABASE_URL`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// mTLS gRPC listen address.
    pub listen: SocketAddr,
    /// Plaintext ops (health, metrics) listen address.
    pub ops_listen: SocketAddr,
    /// The hub's statement/receipt signing key.
    pub signing_key: PathBuf,
    /// Witness cosignatures that make a checkpoint final.
    pub witness_quorum: u32,
    /// TLS files.
    pub tls: TlsConfig,
    /// The federation CA's CRL: client certificates it lists are refused, and the file is
    /// reloaded when it changes. Default: `crl.pem` next to this file. Required unless
    /// `revocation = "disabled"`.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// "required" (default): the server does not start without a CRL that loads.
    /// "disabled": no revocation check at all, said explicitly (tests and benchmarks only).
    #[serde(default)]
    pub revocation: Revocation,
    /// While the CRL is past its nextUpdate (health is NOT_SERVING either way): "refuse"
    /// (default) refuses every new connection; "not_serving" keeps accepting them.
    #[serde(default)]
    pub stale_crl: StaleCrl,
    /// The indicator catalogue (TOML) the hub issues; unset for the shipped one. A new
    /// catalogue version is logged at start-up when its content differs from the latest.
    #[serde(default)]
    pub catalogue: Option<PathBuf>,
    /// How often the hub looks for new content to regenerate the coherence report, in
    /// milliseconds.
    pub coherence_interval_ms: u64,
    /// Threads for signature checks, decoding and validation; 0: one per core.
    pub cpu_threads: usize,
    /// Statements of one member being checked at once; more are refused (RESOURCE_EXHAUSTED).
    pub max_submissions_in_flight: usize,
    /// Open feed subscriptions per member; more are refused (RESOURCE_EXHAUSTED).
    pub max_feed_subscriptions: usize,
    /// Longest gap between two messages of a SubmitSnapshot stream, in milliseconds.
    pub snapshot_chunk_idle_ms: u64,
    /// Lowest average rate of a snapshot's chunks, in bytes per second.
    pub snapshot_min_rate_bytes: u64,
    /// Quota on the hub's database file, in bytes; unset: none (the disk is the limit). When
    /// full, submissions are refused with UNAVAILABLE (STORE_FULL) and reads go on. Re-read
    /// from this file every few seconds, so raising it takes effect without a restart.
    #[serde(default)]
    pub max_db_bytes: Option<u64>,
    /// Run as one of several hub processes sharing the PostgreSQL database of `database_url`:
    /// the one holding the hub lease sequences and signs, the others serve reads, answer
    /// writes with NOT_LEADER and take over when the lease expires. Every process must have
    /// the same hub identity (certificate, signing key).
    #[serde(default)]
    pub standby: bool,
    /// With `standby`: how long the hub lease lasts unrenewed, in milliseconds (the leader
    /// renews it every third of this; a standby takes over at most this long after the leader
    /// stopped).
    pub lease_ms: u64,
    /// With `standby`: the gRPC endpoint ("https://host:port") this process advertises while it
    /// leads; standbys name it in their NOT_LEADER answers. Unset: none is named.
    #[serde(default)]
    pub advertise_endpoint: Option<String>,
}
}

impl HubConfig {
    /// How this hub shares its database with standbys; None when it runs alone.
    pub fn standby(&self) -> Option<rcpfed_hub::Standby> {
        self.standby.then(|| rcpfed_hub::Standby {
            lease: std::time::Duration::from_millis(self.lease_ms),
            advertise: self.advertise_endpoint.clone().unwrap_or_default(),
        })
    }

    /// The per-member quotas these settings ask for.
    pub fn quotas(&self) -> rcpfed_hub::quotas::Quotas {
        rcpfed_hub::quotas::Quotas {
            cpu_threads: self.cpu_threads,
            submissions_in_flight: self.max_submissions_in_flight,
            feed_subscriptions: self.max_feed_subscriptions,
            snapshot_chunk_idle: std::time::Duration::from_millis(self.snapshot_chunk_idle_ms),
            snapshot_min_rate: self.snapshot_min_rate_bytes,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            root_trust_file: "root-trust.toml".into(),
            registry_file: "registry/registry.v1.json".into(),
            data_dir: "data/hub".into(),
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9051)),
            http_listen: None,
            http_access: HttpAccess::Public,
            http_tls: true,
            http_tls_cert: None,
            http_tls_key: None,
            signing_key: "members/gfmd/signing.key".into(),
            witness_quorum: 2,
            tls: TlsConfig::default(),
            crl_file: None,
            revocation: Revocation::Required,
            stale_crl: StaleCrl::Refuse,
            catalogue: None,
            coherence_interval_ms: 2000,
            cpu_threads: 0,
            max_submissions_in_flight: rcpfed_hub::quotas::DEFAULT_SUBMISSIONS_IN_FLIGHT,
            max_feed_subscriptions: rcpfed_hub::quotas::DEFAULT_FEED_SUBSCRIPTIONS,
            snapshot_chunk_idle_ms: u64::try_from(
                rcpfed_hub::quotas::DEFAULT_SNAPSHOT_CHUNK_IDLE.as_millis(),
            )
            .unwrap_or(u64::MAX),
            snapshot_min_rate_bytes: rcpfed_hub::quotas::DEFAULT_SNAPSHOT_MIN_RATE,
            max_db_bytes: None,
            standby: false,
            lease_ms: 3000,
            advertise_endpoint: None,
        }
    }
}

public_http_fields! {
/// `rcpfed node` configuration (and the `http_*` settings; a node's public listener answers
/// from its verified mirror).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's member id.
    pub node_id: String,
    /// The hub's endpoint, "https://host:port".
    pub hub_endpoint: String,
    /// The endpoints of a hub with standbys (one logical hub): calls go to the first and move
    /// to the next on a connection failure or a NOT_LEADER answer. When set, it replaces
    /// `hub_endpoint`. Environment: `RCPFED_NODE_HUB_ENDPOINTS='["https://a:1", "https://b:2"]'`.
    #[serde(default)]
    pub hub_endpoints: Vec<String>,
    /// The GFMD root keys and threshold (trust anchor of the registry).
    pub root_trust_file: PathBuf,
    /// A registry version 1 file; optional: without it the node fetches every version from the
    /// hub and verifies them from the root keys.
    pub registry_file: Option<PathBuf>,
    /// Directory for the node's SQLite database.
    pub data_dir: PathBuf,
    /// mTLS gRPC listen address.
    pub listen: SocketAddr,
    /// Plaintext ops listen address.
    pub ops_listen: SocketAddr,
    /// Statement signing key (also cosigns log checkpoints as a witness).
    pub signing_key: PathBuf,
    /// How often the witness polls the hub's latest checkpoint, in milliseconds.
    pub witness_interval_ms: u64,
    /// TLS files.
    pub tls: TlsConfig,
    /// The federation CA's CRL: client certificates it lists are refused, and the file is
    /// reloaded when it changes. Default: `crl.pem` next to this file. Required unless
    /// `revocation = "disabled"`.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// Dialling the hub (TCP connect and TLS handshake together) gives up after this long, in
    /// milliseconds, and is retried.
    pub hub_connect_timeout_ms: u64,
    /// Every unary call to the hub, and the opening of every stream, gives up after this long,
    /// in milliseconds (a large snapshot upload gets its own, longer bound).
    pub hub_call_timeout_ms: u64,
    /// HTTP/2 keepalive ping interval on the channel to the hub, in milliseconds (also while
    /// idle, so a link that silently drops packets is noticed and redialled).
    pub hub_keepalive_interval_ms: u64,
    /// How long a keepalive ping may stay unanswered before the connection is dropped, in ms.
    pub hub_keepalive_timeout_ms: u64,
    /// "required" (default): the server does not start without a CRL that loads.
    /// "disabled": no revocation check at all, said explicitly (tests and benchmarks only).
    #[serde(default)]
    pub revocation: Revocation,
    /// While the CRL is past its nextUpdate (health is NOT_SERVING either way): "refuse"
    /// (default) refuses every new connection; "not_serving" keeps accepting them.
    #[serde(default)]
    pub stale_crl: StaleCrl,
    /// Quota on the node's database file, in bytes; unset: none (the disk is the limit). When
    /// full, PublishDocument is refused with UNAVAILABLE (STORE_FULL) and the mirror retries.
    /// Re-read from this file every few seconds, so raising it takes effect without a restart.
    #[serde(default)]
    pub max_db_bytes: Option<u64>,
}
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: String::new(),
            hub_endpoint: "https://localhost:50051".into(),
            hub_endpoints: Vec::new(),
            root_trust_file: "root-trust.toml".into(),
            registry_file: None,
            data_dir: "data/node".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9061)),
            http_listen: None,
            http_access: HttpAccess::Public,
            http_tls: true,
            http_tls_cert: None,
            http_tls_key: None,
            signing_key: "signing.key".into(),
            witness_interval_ms: 1000,
            tls: TlsConfig::default(),
            crl_file: None,
            hub_connect_timeout_ms: 5_000,
            hub_call_timeout_ms: 30_000,
            hub_keepalive_interval_ms: 20_000,
            hub_keepalive_timeout_ms: 10_000,
            revocation: Revocation::Required,
            stale_crl: StaleCrl::Refuse,
            max_db_bytes: None,
        }
    }
}

impl NodeConfig {
    /// The hub endpoints to use, in order: `hub_endpoints` when set, else `hub_endpoint`.
    pub fn hub_endpoints(&self) -> Vec<String> {
        if self.hub_endpoints.is_empty() {
            vec![self.hub_endpoint.clone()]
        } else {
            self.hub_endpoints.clone()
        }
    }

    /// The timeouts and keepalives of the node's link to the hub.
    pub fn hub_link(&self) -> rcpfed_node::HubLink {
        use std::time::Duration;
        rcpfed_node::HubLink {
            connect_timeout: Duration::from_millis(self.hub_connect_timeout_ms),
            call_timeout: Duration::from_millis(self.hub_call_timeout_ms),
            keepalive_interval: Duration::from_millis(self.hub_keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(self.hub_keepalive_timeout_ms),
        }
    }
}

/// Overrides from the command line; only set fields override.
#[derive(Debug, Default, Serialize)]
pub struct ListenOverrides {
    /// --listen
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// --ops-listen
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_listen: Option<SocketAddr>,
    /// --http-listen
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    /// --data-dir
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// --crl-file
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl_file: Option<PathBuf>,
    /// --hub-endpoint (node only)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_endpoint: Option<String>,
}

/// Variables with the hub's prefix that are not hub settings: `RCPFED_HUB_ENDPOINT` is the
/// `--hub`/`--endpoint` of the client commands (query, report, export, registry). As keys
/// after the prefix, lowercase.
const HUB_ENV_NOT_SETTINGS: &[&str] = &["endpoint"];
/// Variables with the node's prefix that are not node settings: `RCPFED_NODE_ENDPOINT` is the
/// `--node` of `rcpfed publish`.
const NODE_ENV_NOT_SETTINGS: &[&str] = &["endpoint"];

fn layered<T: Serialize + for<'de> Deserialize<'de> + Default>(
    file: &Path,
    env_prefix: &str,
    env_not_settings: &[&str],
    overrides: &ListenOverrides,
) -> Result<T> {
    if !file.exists() {
        bail!(
            "configuration file {} does not exist (rcpfed pki init writes one)",
            file.display()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the configuration file {}", file.display()))?;
    let table: toml::Table = text.parse().map_err(|e| {
        anyhow::anyhow!(
            "configuration file {} is not valid TOML: {e}",
            file.display()
        )
    })?;
    let schema = keys::Schema::of(&T::default()).map_err(|e| anyhow::anyhow!(e))?;
    let mut problems = keys::file_problems(&table, &schema, &file.display().to_string());
    problems.extend(keys::env_problems(
        std::env::vars_os(),
        env_prefix,
        env_not_settings,
        &schema,
    ));
    match problems.as_slice() {
        [] => {}
        [one] => bail!("{one}"),
        many => bail!(
            "{} problems in the configuration:\n  - {}",
            many.len(),
            many.join("\n  - ")
        ),
    }
    Figment::new()
        .merge(Serialized::defaults(T::default()))
        .merge(Toml::file(file))
        .merge(
            Env::prefixed(env_prefix)
                .split("__")
                .ignore(env_not_settings),
        )
        .merge(Serialized::defaults(overrides))
        .extract()
        .map_err(|e| anyhow::anyhow!(keys::describe_extract_error(e, env_prefix)))
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// The CRL path: as configured (relative to the configuration file; "" means none), else
/// `crl.pem` next to the configuration file if it exists. Whether none is acceptable is
/// decided by `revocation` ([`check_revocation`]).
fn resolve_crl(base: &Path, configured: Option<PathBuf>) -> Option<PathBuf> {
    match configured {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(mut p) => {
            resolve(base, &mut p);
            Some(p)
        }
        None => Some(base.join("crl.pem")).filter(|p| p.is_file()),
    }
}

/// Paths that have no default must be set: an empty one would otherwise be read as the
/// configuration file's directory.
fn require_set(file: &Path, settings: &[(&str, &Path)]) -> Result<()> {
    let unset: Vec<&str> = settings
        .iter()
        .filter(|(_, path)| path.as_os_str().is_empty())
        .map(|(key, _)| *key)
        .collect();
    if unset.is_empty() {
        return Ok(());
    }
    let hint = if unset.iter().any(|k| k.starts_with("tls.")) {
        " (the [tls] section names the federation CA certificate, this member's certificate \
         and its key: ca_cert, cert, key; rcpfed pki init writes them)"
    } else {
        ""
    };
    bail!("not set in {}: {}{hint}", file.display(), unset.join(", "))
}

fn base_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl HubConfig {
    /// Loads and validates.
    pub fn load(file: &Path, overrides: &ListenOverrides) -> Result<Self> {
        let mut c: HubConfig = layered(file, "RCPFED_HUB_", HUB_ENV_NOT_SETTINGS, overrides)?;
        require_set(
            file,
            &[
                ("root_trust_file", &c.root_trust_file),
                ("registry_file", &c.registry_file),
                ("data_dir", &c.data_dir),
                ("signing_key", &c.signing_key),
                ("tls.ca_cert", &c.tls.ca_cert),
                ("tls.cert", &c.tls.cert),
                ("tls.key", &c.tls.key),
            ],
        )?;
        let base = base_dir(file);
        for p in [
            &mut c.root_trust_file,
            &mut c.registry_file,
            &mut c.data_dir,
            &mut c.signing_key,
            &mut c.tls.ca_cert,
            &mut c.tls.cert,
            &mut c.tls.key,
        ] {
            resolve(&base, p);
        }
        c.crl_file = match (c.revocation, c.crl_file.take()) {
            // Disabled on purpose: no default crl.pem is picked up either.
            (Revocation::Disabled, None) => None,
            (_, configured) => resolve_crl(&base, configured),
        };
        if let Some(p) = &mut c.catalogue {
            resolve(&base, p);
        }
        c.resolve_http_paths(&base);
        c.validate()?;
        Ok(c)
    }

    /// The configured catalogue's text, checked to parse so that a bad file stops the hub
    /// with its name; None for the shipped catalogue.
    pub fn catalogue_toml(&self) -> Result<Option<String>> {
        let Some(path) = &self.catalogue else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("catalogue: cannot read {}", path.display()))?;
        if let Err(e) = rcpfed_core::catalogue::Catalogue::from_toml(&text) {
            let mut message = format!("catalogue {}: {e}", path.display());
            for v in e.violations.iter().take(20) {
                message.push_str(&format!(
                    "\n  {}: {} ({})",
                    v.field, v.description, v.reason
                ));
            }
            bail!(message);
        }
        Ok(Some(text))
    }

    fn validate(&self) -> Result<()> {
        self.public_http().validate()?;
        if self.coherence_interval_ms < 50 {
            bail!(
                "coherence_interval_ms must be at least 50, got {}",
                self.coherence_interval_ms
            );
        }
        if self.max_submissions_in_flight == 0 || self.max_feed_subscriptions == 0 {
            bail!(
                "max_submissions_in_flight and max_feed_subscriptions must be at least 1, got {} and {}",
                self.max_submissions_in_flight,
                self.max_feed_subscriptions
            );
        }
        if self.snapshot_chunk_idle_ms < 100 || self.snapshot_min_rate_bytes == 0 {
            bail!(
                "snapshot_chunk_idle_ms must be at least 100 and snapshot_min_rate_bytes at least 1, got {} and {}",
                self.snapshot_chunk_idle_ms,
                self.snapshot_min_rate_bytes
            );
        }
        if let Some(p) = &self.catalogue
            && !p.is_file()
        {
            bail!("catalogue: {} is not a readable file", p.display());
        }
        if let Some(url) = &self.database_url {
            if !rcpfed_store::is_postgres_url(url) {
                bail!(
                    "database_url must be a PostgreSQL URL (postgres://user@host:port/dbname), \
                     got one starting {:?}; leave it unset to use SQLite in data_dir",
                    url.split("://").next().unwrap_or_default()
                );
            }
            if self.max_db_bytes.is_some() {
                bail!(
                    "max_db_bytes caps the SQLite file and does not apply with database_url; \
                     use PostgreSQL's own limits (a tablespace on its own volume, monitoring)"
                );
            }
        }
        if self.standby && self.database_url.is_none() {
            bail!(
                "standby = true needs database_url: the hub and its standbys share one \
                 PostgreSQL database (a SQLite file cannot be shared)"
            );
        }
        if self.lease_ms < 300 {
            bail!(
                "lease_ms must be at least 300 (the leader renews every third of it), got {}",
                self.lease_ms
            );
        }
        if let Some(endpoint) = &self.advertise_endpoint
            && !endpoint.starts_with("https://")
        {
            bail!("advertise_endpoint must start with https://, got {endpoint:?}");
        }
        for (what, p) in [
            ("root_trust_file", &self.root_trust_file),
            ("registry_file", &self.registry_file),
            ("signing_key", &self.signing_key),
            ("tls.ca_cert", &self.tls.ca_cert),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if !p.is_file() {
                bail!("{what}: {} is not a readable file", p.display());
            }
        }
        check_revocation(self.revocation, &self.crl_file)
    }
}

impl NodeConfig {
    /// Loads and validates.
    pub fn load(file: &Path, overrides: &ListenOverrides) -> Result<Self> {
        let mut c: NodeConfig = layered(file, "RCPFED_NODE_", NODE_ENV_NOT_SETTINGS, overrides)?;
        require_set(
            file,
            &[
                ("root_trust_file", &c.root_trust_file),
                ("data_dir", &c.data_dir),
                ("signing_key", &c.signing_key),
                ("tls.ca_cert", &c.tls.ca_cert),
                ("tls.cert", &c.tls.cert),
                ("tls.key", &c.tls.key),
            ],
        )?;
        let base = base_dir(file);
        if let Some(p) = &mut c.registry_file {
            resolve(&base, p);
        }
        for p in [
            &mut c.root_trust_file,
            &mut c.data_dir,
            &mut c.signing_key,
            &mut c.tls.ca_cert,
            &mut c.tls.cert,
            &mut c.tls.key,
        ] {
            resolve(&base, p);
        }
        c.crl_file = match (c.revocation, c.crl_file.take()) {
            // Disabled on purpose: no default crl.pem is picked up either.
            (Revocation::Disabled, None) => None,
            (_, configured) => resolve_crl(&base, configured),
        };
        c.resolve_http_paths(&base);
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        self.public_http().validate()?;
        if !rcpfed_core::members::is_valid_member_id(&self.node_id) {
            bail!(
                "node_id {:?} must be lowercase letters, digits and '-'",
                self.node_id
            );
        }
        for (key, value) in [
            ("hub_connect_timeout_ms", self.hub_connect_timeout_ms),
            ("hub_call_timeout_ms", self.hub_call_timeout_ms),
            ("hub_keepalive_interval_ms", self.hub_keepalive_interval_ms),
            ("hub_keepalive_timeout_ms", self.hub_keepalive_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&value) {
                bail!("{key} must be between 100 and 3600000 milliseconds, got {value}");
            }
        }
        if self.witness_interval_ms < 50 {
            bail!(
                "witness_interval_ms must be at least 50, got {}",
                self.witness_interval_ms
            );
        }
        if !self.hub_endpoint.starts_with("https://") {
            bail!(
                "hub_endpoint {:?} must start with https:// (mTLS is required)",
                self.hub_endpoint
            );
        }
        if let Some(bad) = self
            .hub_endpoints
            .iter()
            .find(|e| !e.starts_with("https://"))
        {
            bail!("hub_endpoints: {bad:?} must start with https:// (mTLS is required)");
        }
        for (what, p) in [
            ("root_trust_file", &self.root_trust_file),
            ("signing_key", &self.signing_key),
            ("tls.ca_cert", &self.tls.ca_cert),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if !p.is_file() {
                bail!("{what}: {} is not a readable file", p.display());
            }
        }
        check_revocation(self.revocation, &self.crl_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        stale_crl: StaleCrl,
    }

    #[test]
    fn stale_crl_reads_both_words_and_defaults_to_refuse() {
        let read = |text: &str| toml::from_str::<Only>(text).map(|o| o.stale_crl);
        assert_eq!(read("").ok(), Some(StaleCrl::Refuse));
        assert_eq!(read("stale_crl = \"refuse\"").ok(), Some(StaleCrl::Refuse));
        assert_eq!(
            read("stale_crl = \"not_serving\"").ok(),
            Some(StaleCrl::NotServing)
        );
        assert!(read("stale_crl = \"ignore\"").is_err());
        assert_eq!(
            rcpfed_grpc::acceptor::StaleCrl::from(StaleCrl::NotServing),
            rcpfed_grpc::acceptor::StaleCrl::NotServing
        );
    }

    /// A configuration file with `text` in a fresh directory.
    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, text).expect("writing the configuration");
        (dir, file)
    }

    fn hub_error(text: &str) -> String {
        let (_dir, file) = config_file(text);
        match HubConfig::load(&file, &ListenOverrides::default()) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    const TLS: &str = "[tls]\nca_cert = \"ca.pem\"\ncert = \"tls.pem\"\nkey = \"tls.key\"\n";

    #[test]
    fn the_public_http_listener_is_off_unless_set() {
        let load = |text: &str, overrides: &ListenOverrides| {
            let (dir, file) = config_file(&format!("revocation = \"disabled\"\n{text}{TLS}"));
            // The files the defaults name must exist; their content is not read here.
            for name in [
                "root-trust.toml",
                "registry/registry.v1.json",
                "members/gfmd/signing.key",
                "ca.pem",
                "tls.pem",
                "tls.key",
            ] {
                let path = dir.path().join(name);
                std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
                std::fs::write(path, "").expect("touch");
            }
            HubConfig::load(&file, overrides)
                .unwrap_or_else(|e| panic!("{text:?}: {e:#}"))
                .http_listen
        };
        let none = ListenOverrides::default();
        assert_eq!(load("", &none), None);
        let file_addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        assert_eq!(
            load("http_listen = \"127.0.0.1:8080\"\n", &none),
            Some(file_addr)
        );
        let flag = ListenOverrides {
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..ListenOverrides::default()
        };
        assert_eq!(
            load("http_listen = \"127.0.0.1:8080\"\n", &flag),
            flag.http_listen
        );
        let error = hub_error(&format!("http_listn = \"127.0.0.1:8080\"\n{TLS}"));
        assert!(error.contains("did you mean http_listen?"), "{error}");
    }

    #[test]
    fn public_http_settings_that_cannot_work_are_refused() {
        for (text, expected) in [
            (
                "http_access = \"readers\"\nhttp_tls = false\n",
                "needs http_tls = true",
            ),
            ("http_tls_cert = \"web.pem\"\n", "set both or neither"),
            ("http_access = \"everyone\"\n", "http_access"),
            ("http_listen = \"nowhere\"\n", "http_listen"),
            ("http_tls = \"yes\"\n", "http_tls"),
        ] {
            let error = hub_error(&format!("{text}{TLS}"));
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_hub_refuses_an_unknown_key_with_the_closest() {
        let error = hub_error(&format!("listn = \"0.0.0.0:50051\"\n{TLS}"));
        assert!(
            error.starts_with("unknown key listn in ") && error.ends_with("(did you mean listen?)"),
            "{error}"
        );
    }

    #[test]
    fn a_hub_refuses_an_unknown_section_instead_of_missing_tls_files() {
        let error = hub_error("[tsl]\nca_cert = \"ca.pem\"\n");
        assert!(
            error.starts_with("unknown section [tsl] in ") && error.contains("did you mean [tls]?"),
            "{error}"
        );
        assert!(!error.contains("ca_cert:"), "{error}");
    }

    #[test]
    fn several_problems_are_listed_together() {
        let error = hub_error(&format!("listn = 1\nops_lisen = 2\n{TLS}crt = 3\n"));
        assert!(
            error.starts_with("3 problems in the configuration:"),
            "{error}"
        );
        for part in [
            "did you mean listen?",
            "did you mean ops_listen?",
            "did you mean tls.cert?",
        ] {
            assert!(error.contains(part), "{part}: {error}");
        }
    }

    #[test]
    fn a_bad_value_names_the_real_key_and_the_file() {
        let error = hub_error(&format!("ops_listen = \"nowhere\"\n{TLS}"));
        assert!(error.starts_with("ops_listen: "), "{error}");
        assert!(error.contains("config.toml"), "{error}");
        assert!(!error.contains("default."), "{error}");
        let error = hub_error("witness_quorum = \"two\"\n[tls]\ncert = 5\n");
        assert!(
            error.starts_with("tls.cert: ") || error.starts_with("witness_quorum: "),
            "{error}"
        );
        assert!(!error.contains("default."), "{error}");
    }

    #[test]
    fn a_standby_needs_a_shared_database_a_sane_lease_and_an_https_endpoint() {
        let error = hub_error(&format!("standby = true\n{TLS}"));
        assert!(
            error.starts_with("standby = true needs database_url"),
            "{error}"
        );
        let error = hub_error(&format!(
            "database_url = \"postgres://hub@db/rcpfed\"\nstandby = true\nlease_ms = 100\n{TLS}"
        ));
        assert!(
            error.starts_with("lease_ms must be at least 300"),
            "{error}"
        );
        let error = hub_error(&format!(
            "database_url = \"postgres://hub@db/rcpfed\"\nstandby = true\n\
             advertise_endpoint = \"hub-a:50051\"\n{TLS}"
        ));
        assert!(
            error.starts_with("advertise_endpoint must start with https://"),
            "{error}"
        );
    }

    #[test]
    fn a_node_takes_several_hub_endpoints_all_over_https() {
        let (_dir, file) = config_file(&format!(
            "node_id = \"colombo\"\nhub_endpoints = [\"https://a:1\", \"http://b:2\"]\n{TLS}"
        ));
        let error = NodeConfig::load(&file, &ListenOverrides::default())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            error.starts_with("hub_endpoints: \"http://b:2\" must start with https://"),
            "{error}"
        );
        let mut config = NodeConfig::default();
        assert_eq!(config.hub_endpoints(), vec![config.hub_endpoint.clone()]);
        config.hub_endpoints = vec!["https://a:1".into(), "https://b:2".into()];
        assert_eq!(config.hub_endpoints(), ["https://a:1", "https://b:2"]);
    }

    #[test]
    fn database_url_must_be_postgres_and_excludes_the_sqlite_quota() {
        let error = hub_error(&format!("database_url = \"mysql://db/hub\"\n{TLS}"));
        assert!(
            error.starts_with("database_url must be a PostgreSQL URL")
                && error.contains("\"mysql\""),
            "{error}"
        );
        let error = hub_error(&format!(
            "database_url = \"postgres://hub@db/rcpfed\"\nmax_db_bytes = 1000000\n{TLS}"
        ));
        assert!(
            error.starts_with("max_db_bytes caps the SQLite file"),
            "{error}"
        );
    }

    #[test]
    fn unset_tls_paths_are_named() {
        let error = hub_error("listen = \"127.0.0.1:1\"\n");
        assert!(
            error.starts_with("not set in ") && error.contains("tls.ca_cert, tls.cert, tls.key"),
            "{error}"
        );
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let error = hub_error("listen = \n");
        assert!(
            error.starts_with("configuration file ") && error.contains("is not valid TOML"),
            "{error}"
        );
    }

    #[test]
    fn a_node_refuses_an_unknown_key_with_the_closest() {
        let (_dir, file) = config_file(&format!(
            "node_id = \"colombo\"\nhub_endpont = \"https://hub:50051\"\n{TLS}"
        ));
        let error = NodeConfig::load(&file, &ListenOverrides::default())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            error.starts_with("unknown key hub_endpont in ")
                && error.ends_with("(did you mean hub_endpoint?)"),
            "{error}"
        );
    }

    #[test]
    fn the_variables_of_other_commands_are_not_settings() {
        let hub = keys::Schema::of(&HubConfig::default()).expect("hub schema");
        let node = keys::Schema::of(&NodeConfig::default()).expect("node schema");
        for key in HUB_ENV_NOT_SETTINGS {
            assert!(!hub.is_leaf(key) && !hub.is_section(key), "{key}");
        }
        for key in NODE_ENV_NOT_SETTINGS {
            assert!(!node.is_leaf(key) && !node.is_section(key), "{key}");
        }
    }
}
