//! `rcpfed pki init`: the federation's PKI in one directory.
//!
//! [`init`] creates a federation CA (ECDSA P-256), one TLS key and certificate per member signed
//! by that CA, one Ed25519 statement-signing key per hub and node, and the member file
//! `federation.toml` that the hub and every node load. Layout (see [`PkiLayout`]):
//!
//! ```text
//! {dir}/ca.pem                      federation CA certificate (trust anchor for mTLS)
//! {dir}/ca.key                      federation CA private key (0600; keep offline)
//! {dir}/federation.toml             member file: ids, roles, SPIFFE ids, public signing keys, states
//! {dir}/crl.pem                     CRL signed by the CA (empty at first; see [`revoke`])
//! {dir}/revoked.toml                the revoked certificate serials the CRL is made from
//! {dir}/members/{id}/tls.pem        member TLS certificate
//! {dir}/members/{id}/tls.key        member TLS private key (0600)
//! {dir}/members/{id}/signing.key    member Ed25519 statement signing key (0600; hub and nodes only)
//! ```
//!
//! Every member certificate carries exactly one URI SAN: `spiffe://{federation}/node/{id}` for
//! the hub and the nodes, `spiffe://{federation}/operator/{name}` for operators. The hub and the
//! nodes also serve, so their certificates carry serverAuth and clientAuth and the DNS and IP
//! SANs of their own names ([`PkiPlan::member_hosts`]) plus the loopback names of
//! [`PkiPlan::server_hosts`] (for a federation on one machine); a name that is not loopback
//! may be in one member's certificate only, so no member's certificate answers for another's
//! name. Operator certificates are clientAuth only. Private key files are created with mode 0600 and never overwritten;
//! directories are created with mode 0700.
//!
//! Architecture invariant: this crate writes files only under the directory it is given, and
//! never overwrites an existing file, except `crl.pem` and `revoked.toml`, which [`revoke`]
//! replaces atomically.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rcpfed_core::keys::{KeyError, SecretKey};
use rcpfed_core::members::{
    Federation, FederationError, FederationFile, KeyFile, MemberFile, MemberStateFile, Role,
    is_valid_member_id,
};
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

mod crl;
pub use crl::{
    CRL_VALIDITY, Revocation, RevocationReason, RevokeTarget, RevokedCert, RevokedFile,
    cert_serial, read_revoked, revoke, serial_hex,
};

/// Mode of private key files.
const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of certificates and the member file.
const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of every directory this crate creates.
const DIR_MODE: u32 = 0o700;
/// Certificates are back-dated by this much to tolerate clock skew between machines.
const BACKDATE: Duration = Duration::hours(1);

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The target already holds a federation (or the file exists); nothing was overwritten.
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    AlreadyExists(PathBuf),
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The plan is not valid, in plain words.
    #[error("invalid pki plan: {0}")]
    InvalidPlan(String),
    /// Certificate or TLS key generation failed.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// The CA certificate or key on disk is unusable.
    #[error("federation CA is unusable: {0}")]
    Ca(String),
    /// Signing key generation failed.
    #[error("signing key generation failed: {0}")]
    SigningKey(#[from] KeyError),
    /// The generated member file did not load back (a bug, or an invalid plan slipped through).
    #[error("generated member file does not load: {0}")]
    Federation(#[from] FederationError),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Certificate(e.to_string())
    }
}

/// One member to create (the hub or a node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPlan {
    /// Member id, for example "colombo" (lowercase letters, digits and '-').
    pub id: String,
    /// Full name, for example "Colombo Process".
    pub name: String,
    /// "hub" for the hub; "RCP" or "IRF" for nodes.
    pub kind: String,
    /// Member states of a regional process, with dates where known.
    pub states: Vec<MemberStateFile>,
}

/// Everything [`init`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiPlan {
    /// Federation id: the SPIFFE trust domain, for example "rcp-federation".
    pub federation_id: String,
    /// The hub member; its kind must be "hub".
    pub hub: MemberPlan,
    /// The nodes (regional processes).
    pub nodes: Vec<MemberPlan>,
    /// Operator names; each becomes a member with the admin and reader roles.
    pub operators: Vec<String>,
    /// Loopback names (`localhost`, `*.localhost`, loopback IPs) put in the server certificate
    /// of every hub and node, for a federation on one machine. Anything else is refused: a
    /// name in every certificate would let any member answer for it.
    pub server_hosts: Vec<String>,
    /// Each member's own DNS names or IP addresses (member id → names), put in that member's
    /// server certificate only. A name may belong to one member.
    pub member_hosts: std::collections::BTreeMap<String, Vec<String>>,
    /// Validity of the CA and member certificates, in days.
    pub valid_days: u32,
}

/// Whether `host` names this machine only (`localhost`, `*.localhost`, a loopback address),
/// so that sharing it between members' certificates lets no member answer for another.
pub fn is_loopback_host(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The default [`PkiPlan::server_hosts`]: `localhost` and `127.0.0.1`.
pub fn default_server_hosts() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

/// What kind of identity a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    /// The hub or a node: `spiffe://{fed}/node/{id}`, serverAuth and clientAuth, server SANs.
    Node,
    /// An operator: `spiffe://{fed}/operator/{name}`, clientAuth only.
    Operator,
}

/// The SPIFFE id of a member.
pub fn spiffe_id(federation_id: &str, kind: IdentityKind, id: &str) -> String {
    match kind {
        IdentityKind::Node => format!("spiffe://{federation_id}/node/{id}"),
        IdentityKind::Operator => format!("spiffe://{federation_id}/operator/{id}"),
    }
}

/// Where the files of a federation PKI directory live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiLayout {
    /// The PKI directory.
    pub dir: PathBuf,
}

impl PkiLayout {
    /// The layout of `dir` (nothing is checked or created).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PkiLayout { dir: dir.into() }
    }

    /// `{dir}/ca.pem`: the federation CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `{dir}/ca.key`: the federation CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// `{dir}/federation.toml`: the member file.
    pub fn federation_file(&self) -> PathBuf {
        self.dir.join("federation.toml")
    }

    /// `{dir}/members`: parent of the member directories.
    pub fn members_dir(&self) -> PathBuf {
        self.dir.join("members")
    }

    /// `{dir}/members/{id}`.
    pub fn member_dir(&self, id: &str) -> PathBuf {
        self.members_dir().join(id)
    }

    /// `{dir}/members/{id}/tls.pem`: the member's TLS certificate.
    pub fn tls_cert(&self, id: &str) -> PathBuf {
        self.member_dir(id).join("tls.pem")
    }

    /// `{dir}/members/{id}/tls.key`: the member's TLS private key.
    pub fn tls_key(&self, id: &str) -> PathBuf {
        self.member_dir(id).join("tls.key")
    }

    /// `{dir}/members/{id}/signing.key`: the member's Ed25519 statement signing key.
    pub fn signing_key(&self, id: &str) -> PathBuf {
        self.member_dir(id).join("signing.key")
    }
}

/// The common name of the federation CA.
pub fn ca_common_name(federation_id: &str) -> String {
    format!("rcpfed federation CA {federation_id}")
}

/// CA parameters. The issuer name, key usages and key-identifier method are what later
/// issuance needs, so this is also how [`issue_member_cert`] rebuilds the issuer.
fn ca_params(federation_id: &str, valid_days: u32) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_common_name(federation_id));
    dn.push(DnType::OrganizationName, "rcpfed");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(valid_days));
    params
}

fn server_san(host: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(PkiError::InvalidPlan(format!(
            "server host {host:?} is neither an IP address nor a DNS name"
        )));
    }
    let name = host
        .to_ascii_lowercase()
        .try_into()
        .map_err(|_| PkiError::InvalidPlan(format!("server host {host:?} is not ASCII")))?;
    Ok(SanType::DnsName(name))
}

/// Creates `path` (and missing parents) with mode 0700; an existing directory is kept.
fn create_dir(path: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Writes a new file with `mode`; refuses to replace an existing one.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::AlreadyExists(path.to_owned())
            } else {
                PkiError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
}

fn new_tls_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

/// Issues and writes one member's TLS key and certificate.
fn write_member_cert(
    layout: &PkiLayout,
    issuer: &Issuer<'_, KeyPair>,
    federation_id: &str,
    id: &str,
    kind: IdentityKind,
    server_hosts: &[String],
    not_after: OffsetDateTime,
) -> Result<String, PkiError> {
    let spiffe = spiffe_id(federation_id, kind, id);
    let uri = spiffe
        .clone()
        .try_into()
        .map_err(|_| PkiError::InvalidPlan(format!("{spiffe:?} is not an ASCII URI")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id);
    dn.push(DnType::OrganizationName, format!("rcpfed {federation_id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.not_before = OffsetDateTime::now_utc() - BACKDATE;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.subject_alt_names = vec![SanType::URI(uri)];
    match kind {
        IdentityKind::Node => {
            for host in server_hosts {
                params.subject_alt_names.push(server_san(host)?);
            }
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        }
        IdentityKind::Operator => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    let key = new_tls_key()?;
    let cert = params.signed_by(&key, issuer)?;
    create_dir(&layout.member_dir(id))?;
    write_new(
        &layout.tls_key(id),
        key.serialize_pem().as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    write_new(
        &layout.tls_cert(id),
        cert.pem().as_bytes(),
        PUBLIC_FILE_MODE,
    )?;
    Ok(spiffe)
}

/// Generates and writes a member's Ed25519 signing key; returns its public entry.
fn write_signing_key(layout: &PkiLayout, id: &str) -> Result<KeyFile, PkiError> {
    let key = SecretKey::generate()?;
    write_new(
        &layout.signing_key(id),
        key.to_file_text().as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    Ok(KeyFile {
        key_id: key.key_id().to_owned(),
        public_key: key.verify_key().to_base64(),
    })
}

fn check_plan(plan: &PkiPlan) -> Result<(), PkiError> {
    let invalid = |m: String| Err(PkiError::InvalidPlan(m));
    if !is_valid_member_id(&plan.federation_id) {
        return invalid(format!(
            "federation id {:?} must be lowercase letters, digits and '-', starting with a letter",
            plan.federation_id
        ));
    }
    if plan.valid_days == 0 {
        return invalid("valid_days must be at least 1".to_owned());
    }
    if plan.hub.kind != "hub" {
        return invalid(format!(
            "the hub {} must have kind \"hub\", not {:?}",
            plan.hub.id, plan.hub.kind
        ));
    }
    for node in &plan.nodes {
        if node.kind == "hub" || node.kind == "operator" {
            return invalid(format!(
                "node {} has kind {:?}; nodes are regional processes (for example \"RCP\" or \"IRF\")",
                node.id, node.kind
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let ids = std::iter::once(&plan.hub.id)
        .chain(plan.nodes.iter().map(|n| &n.id))
        .chain(plan.operators.iter());
    for id in ids {
        if !is_valid_member_id(id) {
            return invalid(format!(
                "member id {id:?} must be lowercase letters, digits and '-', starting with a letter"
            ));
        }
        if !seen.insert(id.as_str()) {
            return invalid(format!("member id {id:?} is used twice"));
        }
    }
    for host in &plan.server_hosts {
        server_san(host)?;
        if !is_loopback_host(host) {
            return invalid(format!(
                "{host:?} would go in every member's certificate, so any member could answer \
                 for it; give it to one member (for example --member-host gfmd={host})"
            ));
        }
    }
    let mut owner_of: std::collections::BTreeMap<String, &str> = Default::default();
    for (id, hosts) in &plan.member_hosts {
        if plan.hub.id != *id && !plan.nodes.iter().any(|n| n.id == *id) {
            return invalid(format!(
                "host names are given for {id:?}, which is not the hub or a node of this plan"
            ));
        }
        for host in hosts {
            server_san(host)?;
            let key = host.trim_end_matches('.').to_ascii_lowercase();
            if let Some(other) = owner_of.insert(key, id)
                && other != id
            {
                return invalid(format!(
                    "{host:?} is given to both {other:?} and {id:?}; a name may belong to one member"
                ));
            }
        }
    }
    Ok(())
}

/// Creates a new federation PKI in `dir` (created if missing) following `plan`, and returns its
/// layout. Refuses with [`PkiError::AlreadyExists`] if `dir` already holds a `federation.toml`
/// or a CA key; never overwrites a file. The member file is written last, after it has been
/// checked by loading it back with [`Federation::from_toml`].
pub fn init(dir: &Path, plan: &PkiPlan) -> Result<PkiLayout, PkiError> {
    let layout = PkiLayout::new(dir);
    for existing in [layout.federation_file(), layout.ca_key()] {
        if existing.exists() {
            return Err(PkiError::AlreadyExists(existing));
        }
    }
    check_plan(plan)?;
    create_dir(&layout.dir)?;
    create_dir(&layout.members_dir())?;

    let ca_key = new_tls_key()?;
    let params = ca_params(&plan.federation_id, plan.valid_days);
    let not_after = params.not_after;
    let ca_cert = params.self_signed(&ca_key)?;
    write_new(
        &layout.ca_key(),
        ca_key.serialize_pem().as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    write_new(
        &layout.ca_cert(),
        ca_cert.pem().as_bytes(),
        PUBLIC_FILE_MODE,
    )?;
    let issuer = Issuer::new(params, ca_key);
    crl::write_initial_crl(&layout)?;

    let mut members = Vec::new();
    let regional = std::iter::once((&plan.hub, vec![Role::Reader])).chain(
        plan.nodes
            .iter()
            .map(|n| (n, vec![Role::Publisher, Role::Reader, Role::Witness])),
    );
    for (member, roles) in regional {
        let own = plan.member_hosts.get(&member.id).into_iter().flatten();
        let hosts: Vec<String> = plan.server_hosts.iter().chain(own).cloned().collect();
        let spiffe = write_member_cert(
            &layout,
            &issuer,
            &plan.federation_id,
            &member.id,
            IdentityKind::Node,
            &hosts,
            not_after,
        )?;
        let key = write_signing_key(&layout, &member.id)?;
        members.push(MemberFile {
            id: member.id.clone(),
            name: member.name.clone(),
            kind: member.kind.clone(),
            roles,
            spiffe_id: spiffe,
            keys: vec![key],
            states: member.states.clone(),
        });
    }
    for name in &plan.operators {
        let spiffe = write_member_cert(
            &layout,
            &issuer,
            &plan.federation_id,
            name,
            IdentityKind::Operator,
            &[],
            not_after,
        )?;
        members.push(MemberFile {
            id: name.clone(),
            name: name.clone(),
            kind: "operator".to_owned(),
            roles: vec![Role::Admin, Role::Reader],
            spiffe_id: spiffe,
            keys: Vec::new(),
            states: Vec::new(),
        });
    }

    let file = FederationFile {
        federation_id: plan.federation_id.clone(),
        hub_id: plan.hub.id.clone(),
        members,
    };
    let text = toml::to_string_pretty(&file)
        .map_err(|e| PkiError::Certificate(format!("cannot write the member file: {e}")))?;
    Federation::from_toml(&text)?;
    write_new(&layout.federation_file(), text.as_bytes(), PUBLIC_FILE_MODE)?;
    Ok(layout)
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Issues a TLS key and certificate for a member added after [`init`], signed by the CA in
/// `layout` (which must be the CA of `federation_id`), and returns the member's SPIFFE id.
/// Writes `members/{id}/tls.pem` and `tls.key`, refusing to overwrite them; the certificate
/// never outlives the CA. Adding the member to `federation.toml` is the caller's business.
pub fn issue_member_cert(
    layout: &PkiLayout,
    federation_id: &str,
    id: &str,
    kind: IdentityKind,
    server_hosts: &[String],
    valid_days: u32,
) -> Result<String, PkiError> {
    if !is_valid_member_id(id) {
        return Err(PkiError::InvalidPlan(format!(
            "member id {id:?} must be lowercase letters, digits and '-', starting with a letter"
        )));
    }
    for host in server_hosts {
        server_san(host)?;
    }
    let ca_pem = read_text(&layout.ca_cert())?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|e| PkiError::Ca(format!("ca.pem is not PEM: {e}")))?;
    let ca = pem
        .parse_x509()
        .map_err(|e| PkiError::Ca(format!("ca.pem is not a certificate: {e}")))?;
    let expected_cn = ca_common_name(federation_id);
    let cn_matches = ca
        .subject()
        .iter_common_name()
        .any(|cn| cn.as_str().ok() == Some(expected_cn.as_str()));
    if !cn_matches {
        return Err(PkiError::Ca(format!(
            "ca.pem is not the CA of federation {federation_id:?}"
        )));
    }
    let ca_not_after = OffsetDateTime::from_unix_timestamp(ca.validity().not_after.timestamp())
        .map_err(|e| PkiError::Ca(format!("ca.pem has an unusable expiry: {e}")))?;
    let ca_key = KeyPair::from_pem(&read_text(&layout.ca_key())?)
        .map_err(|e| PkiError::Ca(format!("ca.key is not a usable private key: {e}")))?;
    if ca_key.public_key_raw() != ca.public_key().subject_public_key.data.as_ref() {
        return Err(PkiError::Ca("ca.key does not match ca.pem".to_owned()));
    }
    let wanted = OffsetDateTime::now_utc() + Duration::days(i64::from(valid_days.max(1)));
    let issuer = Issuer::new(ca_params(federation_id, 1), ca_key);
    write_member_cert(
        layout,
        &issuer,
        federation_id,
        id,
        kind,
        server_hosts,
        wanted.min(ca_not_after),
    )
}

#[cfg(test)]
mod tests;
