//! Configuration, layered: built-in defaults → TOML file → `RCPFED_*` environment → command-line
//! flags, then `validate()`. Relative paths in a file are relative to that file's directory.

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

/// `rcpfed hub` configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubConfig {
    /// The GFMD root keys and threshold (trust anchor of the registry).
    pub root_trust_file: PathBuf,
    /// Registry version 1, signed by the root keys (used when the log has no registry yet).
    pub registry_file: PathBuf,
    /// Directory for the hub's SQLite database.
    pub data_dir: PathBuf,
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
    /// reloaded when it changes. Default: `crl.pem` next to this file if it exists; "" turns
    /// revocation checking off.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// The indicator catalogue (TOML) the hub issues; unset for the shipped one. A new
    /// catalogue version is logged at start-up when its content differs from the latest.
    #[serde(default)]
    pub catalogue: Option<PathBuf>,
    /// How often the hub looks for new content to regenerate the coherence report, in
    /// milliseconds.
    pub coherence_interval_ms: u64,
    /// Quota on the hub's database file, in bytes; unset: none (the disk is the limit). When
    /// full, submissions are refused with UNAVAILABLE (STORE_FULL) and reads go on. Re-read
    /// from this file every few seconds, so raising it takes effect without a restart.
    #[serde(default)]
    pub max_db_bytes: Option<u64>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            root_trust_file: "root-trust.toml".into(),
            registry_file: "registry/registry.v1.json".into(),
            data_dir: "data/hub".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9051)),
            signing_key: "members/gfmd/signing.key".into(),
            witness_quorum: 2,
            tls: TlsConfig::default(),
            crl_file: None,
            catalogue: None,
            coherence_interval_ms: 2000,
            max_db_bytes: None,
        }
    }
}

/// `rcpfed node` configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's member id.
    pub node_id: String,
    /// The hub's endpoint, "https://host:port".
    pub hub_endpoint: String,
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
    /// reloaded when it changes. Default: `crl.pem` next to this file if it exists; "" turns
    /// revocation checking off.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// Quota on the node's database file, in bytes; unset: none (the disk is the limit). When
    /// full, PublishDocument is refused with UNAVAILABLE (STORE_FULL) and the mirror retries.
    /// Re-read from this file every few seconds, so raising it takes effect without a restart.
    #[serde(default)]
    pub max_db_bytes: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: String::new(),
            hub_endpoint: "https://localhost:50051".into(),
            root_trust_file: "root-trust.toml".into(),
            registry_file: None,
            data_dir: "data/node".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9061)),
            signing_key: "signing.key".into(),
            witness_interval_ms: 1000,
            tls: TlsConfig::default(),
            crl_file: None,
            max_db_bytes: None,
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

fn layered<T: Serialize + for<'de> Deserialize<'de> + Default>(
    file: &Path,
    env_prefix: &str,
    overrides: &ListenOverrides,
) -> Result<T> {
    if !file.exists() {
        bail!(
            "configuration file {} does not exist (rcpfed pki init writes one)",
            file.display()
        );
    }
    Figment::new()
        .merge(Serialized::defaults(T::default()))
        .merge(Toml::file(file))
        .merge(Env::prefixed(env_prefix).split("__"))
        .merge(Serialized::defaults(overrides))
        .extract()
        .with_context(|| format!("reading configuration {}", file.display()))
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// The CRL path: as configured (relative to the configuration file; "" means none), else
/// `crl.pem` next to the configuration file if it exists.
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

fn base_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl HubConfig {
    /// Loads and validates.
    pub fn load(file: &Path, overrides: &ListenOverrides) -> Result<Self> {
        let mut c: HubConfig = layered(file, "RCPFED_HUB_", overrides)?;
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
        c.crl_file = resolve_crl(&base, c.crl_file.take());
        if let Some(p) = &mut c.catalogue {
            resolve(&base, p);
        }
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
        if self.coherence_interval_ms < 50 {
            bail!(
                "coherence_interval_ms must be at least 50, got {}",
                self.coherence_interval_ms
            );
        }
        if let Some(p) = &self.catalogue
            && !p.is_file()
        {
            bail!("catalogue: {} is not a readable file", p.display());
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
        if let Some(p) = &self.crl_file
            && !p.is_file()
        {
            bail!("crl_file: {} is not a readable file", p.display());
        }
        Ok(())
    }
}

impl NodeConfig {
    /// Loads and validates.
    pub fn load(file: &Path, overrides: &ListenOverrides) -> Result<Self> {
        let mut c: NodeConfig = layered(file, "RCPFED_NODE_", overrides)?;
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
        c.crl_file = resolve_crl(&base, c.crl_file.take());
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        if !rcpfed_core::members::is_valid_member_id(&self.node_id) {
            bail!(
                "node_id {:?} must be lowercase letters, digits and '-'",
                self.node_id
            );
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
        if let Some(p) = &self.crl_file
            && !p.is_file()
        {
            bail!("crl_file: {} is not a readable file", p.display());
        }
        Ok(())
    }
}
