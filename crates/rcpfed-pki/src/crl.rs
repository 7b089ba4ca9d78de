//! Certificate revocation: `{dir}/revoked.toml` (the list of revoked certificate serials, with
//! the member each belonged to, when and why) and `{dir}/crl.pem`, a CRL signed by the
//! federation CA that the hub and the nodes check client certificates against.
//!
//! [`crate::init`] writes an empty CRL (CRL number 1). [`revoke`] adds a certificate to the list
//! and re-issues the CRL with the next CRL number. Both files are replaced atomically (written
//! to a temporary file, synced, then renamed), so a server that reloads `crl.pem` never reads
//! half a file. These two files are the only files this crate ever replaces.

use crate::{PUBLIC_FILE_MODE, PkiError, PkiLayout, read_text};
use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// How long a CRL is valid (its nextUpdate). Re-issue it (any revocation does) before then.
pub const CRL_VALIDITY: Duration = Duration::days(30);

/// Why a certificate was revoked (the RFC 5280 reason codes an operator would use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The certificate's private key leaked or may have leaked.
    KeyCompromise,
    /// The member left the federation or changed its affiliation.
    AffiliationChanged,
    /// A new certificate replaces this one.
    Superseded,
    /// The member no longer operates this identity.
    CessationOfOperation,
}

impl RevocationReason {
    /// All reasons, for command-line help.
    pub const ALL: [RevocationReason; 5] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
    ];

    /// The kebab-case name ("key-compromise").
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
        }
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        }
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = RevocationReason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown revocation reason {s:?}; one of {}", all.join(", "))
            })
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One revoked certificate in `revoked.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert {
    /// The certificate serial number, lowercase hex without leading zero bytes.
    pub serial: String,
    /// The member the certificate was issued to ("" if revoked by serial only).
    #[serde(default)]
    pub member: String,
    /// When it was revoked (RFC 3339, UTC).
    pub revoked_at: String,
    /// Why.
    pub reason: RevocationReason,
}

/// `revoked.toml`: the CRL number of the current `crl.pem` and every revoked certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedFile {
    /// The CRL number of the last CRL written (increases by one with every CRL).
    pub crl_number: u64,
    /// Revoked certificates, oldest first.
    #[serde(default)]
    pub revoked: Vec<RevokedCert>,
}

/// What to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// The current certificate of a member (`members/{id}/tls.pem`).
    Member(String),
    /// A certificate serial number in hex (colons and a leading "0x" are ignored).
    Serial(String),
}

/// The result of [`revoke`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The CRL written (`{dir}/crl.pem`).
    pub crl: PathBuf,
    /// Its CRL number.
    pub crl_number: u64,
    /// The serial revoked (hex).
    pub serial: String,
    /// False if the serial was already revoked (the CRL is re-issued anyway).
    pub newly_revoked: bool,
    /// How many certificates the CRL lists.
    pub revoked_count: usize,
}

impl PkiLayout {
    /// `{dir}/crl.pem`: the CRL signed by the federation CA.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// `{dir}/revoked.toml`: the list the CRL is made from.
    pub fn revoked_file(&self) -> PathBuf {
        self.dir.join("revoked.toml")
    }
}

/// Lowercase hex of an unsigned big-endian integer, without leading zero bytes.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let trimmed = &raw[start..];
    if trimmed.is_empty() {
        return "00".to_owned();
    }
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_serial_hex(text: &str) -> Result<Vec<u8>, PkiError> {
    let cleaned: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let bad = || PkiError::InvalidPlan(format!("{text:?} is not a hexadecimal serial number"));
    if cleaned.is_empty() || cleaned.len() > 42 || !cleaned.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if cleaned.len() % 2 == 1 {
        format!("0{cleaned}")
    } else {
        cleaned
    };
    let bytes = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(bytes)
}

fn pem_contents(path: &Path, what: &str) -> Result<Vec<u8>, PkiError> {
    let text = read_text(path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map_err(|e| PkiError::Ca(format!("{} is not PEM ({what}): {e}", path.display())))?;
    Ok(pem.contents)
}

/// The serial number (hex) of the certificate in the PEM file `path`.
pub fn cert_serial(path: &Path) -> Result<String, PkiError> {
    let der = pem_contents(path, "certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
        PkiError::Certificate(format!("{} is not a certificate: {e}", path.display()))
    })?;
    Ok(serial_hex(cert.raw_serial()))
}

/// The CA as an rcgen issuer (its own subject name and key identifier, so the CRL's issuer and
/// authority key identifier match what the member certificates carry), after checking that
/// `ca.key` belongs to `ca.pem`.
fn load_issuer(layout: &PkiLayout) -> Result<(Issuer<'static, KeyPair>, KeyIdMethod), PkiError> {
    let ca_pem = read_text(&layout.ca_cert())?;
    let ca_der = pem_contents(&layout.ca_cert(), "CA certificate")?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| PkiError::Ca(format!("ca.pem is not a certificate: {e}")))?;
    let ca_key = KeyPair::from_pem(&read_text(&layout.ca_key())?)
        .map_err(|e| PkiError::Ca(format!("ca.key is not a usable private key: {e}")))?;
    if ca_key.public_key_raw() != ca.public_key().subject_public_key.data.as_ref() {
        return Err(PkiError::Ca("ca.key does not match ca.pem".to_owned()));
    }
    let key_id = ca
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(kid) => {
                Some(KeyIdMethod::PreSpecified(kid.0.to_vec()))
            }
            _ => None,
        })
        .unwrap_or(KeyIdMethod::Sha256);
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| PkiError::Ca(format!("ca.pem cannot issue: {e}")))?;
    Ok((issuer, key_id))
}

/// Reads `revoked.toml` (an absent file is an empty list with CRL number 0).
pub fn read_revoked(layout: &PkiLayout) -> Result<RevokedFile, PkiError> {
    let path = layout.revoked_file();
    if !path.exists() {
        return Ok(RevokedFile::default());
    }
    let text = read_text(&path)?;
    toml::from_str(&text).map_err(|e| PkiError::InvalidPlan(format!("{}: {e}", path.display())))
}

/// Replaces `path` atomically: temporary file in the same directory, fsync, rename.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PUBLIC_FILE_MODE)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Signs a CRL listing every certificate in `list` with CRL number `list.crl_number`, valid
/// for [`CRL_VALIDITY`], and writes it and `revoked.toml` (CRL first, then the list).
fn write_crl(layout: &PkiLayout, list: &RevokedFile) -> Result<PathBuf, PkiError> {
    let (issuer, key_identifier_method) = load_issuer(layout)?;
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::with_capacity(list.revoked.len());
    for entry in &list.revoked {
        let revocation_time = OffsetDateTime::parse(&entry.revoked_at, &Rfc3339).map_err(|e| {
            PkiError::InvalidPlan(format!(
                "revoked.toml: serial {} has an unreadable revoked_at {:?}: {e}",
                entry.serial, entry.revoked_at
            ))
        })?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&parse_serial_hex(&entry.serial)?),
            revocation_time,
            reason_code: Some(entry.reason.to_rcgen()),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from_slice(&list.crl_number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method,
    };
    let crl = params.signed_by(&issuer)?;
    let pem = crl.pem()?;
    let path = layout.crl();
    replace_file(&path, pem.as_bytes())?;
    let text = toml::to_string_pretty(list)
        .map_err(|e| PkiError::Certificate(format!("cannot write revoked.toml: {e}")))?;
    replace_file(
        &layout.revoked_file(),
        format!(
            "# Revoked TLS certificates of this federation; crl.pem is made from this list.\n# Change it only with `rcpfed pki revoke-cert`.\n{text}"
        )
        .as_bytes(),
    )?;
    Ok(path)
}

/// Writes the initial, empty CRL (CRL number 1) and `revoked.toml`; called by [`crate::init`].
pub(crate) fn write_initial_crl(layout: &PkiLayout) -> Result<PathBuf, PkiError> {
    for existing in [layout.crl(), layout.revoked_file()] {
        if existing.exists() {
            return Err(PkiError::AlreadyExists(existing));
        }
    }
    write_crl(
        layout,
        &RevokedFile {
            crl_number: 1,
            revoked: Vec::new(),
        },
    )
}

/// Revokes a certificate: adds it to `revoked.toml` and re-issues `crl.pem` with the next CRL
/// number, signed by the CA in `layout` (so this needs `ca.key`). Revoking a serial that is
/// already revoked changes nothing in the list but re-issues the CRL (which also refreshes its
/// nextUpdate). Servers configured with `crl.pem` pick the new CRL up within a second or two.
pub fn revoke(
    layout: &PkiLayout,
    target: &RevokeTarget,
    reason: RevocationReason,
) -> Result<Revocation, PkiError> {
    let (serial, member) = match target {
        RevokeTarget::Member(id) => {
            let path = layout.tls_cert(id);
            if !path.is_file() {
                return Err(PkiError::InvalidPlan(format!(
                    "member {id:?} has no certificate at {}",
                    path.display()
                )));
            }
            (cert_serial(&path)?, id.clone())
        }
        RevokeTarget::Serial(text) => (serial_hex(&parse_serial_hex(text)?), String::new()),
    };
    let mut list = read_revoked(layout)?;
    let newly_revoked = !list.revoked.iter().any(|r| r.serial == serial);
    if newly_revoked {
        let revoked_at = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
            .format(&Rfc3339)
            .map_err(|e| PkiError::Certificate(format!("cannot format the time: {e}")))?;
        list.revoked.push(RevokedCert {
            serial: serial.clone(),
            member,
            revoked_at,
            reason,
        });
    }
    list.crl_number += 1;
    let crl = write_crl(layout, &list)?;
    Ok(Revocation {
        crl,
        crl_number: list.crl_number,
        serial,
        newly_revoked,
        revoked_count: list.revoked.len(),
    })
}
