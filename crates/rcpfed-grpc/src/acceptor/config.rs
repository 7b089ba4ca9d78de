//! The TLS server configuration: our certificate and key, the client certificate verifier
//! (required or optional) against the federation CA, and the CRL, checked before use.

use crate::limits::{IDLE_TIMEOUT, PREFACE_TIMEOUT};
use crate::tls::{TlsError, TlsFiles};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;

pub(super) fn invalid(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        error: io::Error::new(io::ErrorKind::InvalidData, message.into()),
    }
}

pub(super) fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(error) => TlsError {
            path: path.to_path_buf(),
            error,
        },
        other => invalid(path, format!("not usable PEM: {other:?}")),
    }
}

/// A certificate serial number as unsigned big-endian bytes without leading zeros.
pub(super) fn normalized_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw[start..].to_vec()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a client must present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertificate {
    /// Required and verified (the gRPC servers; the HTTP listener in reader mode).
    Required,
    /// Verified when presented; a client without one is let in (the public HTTP listener).
    Optional,
}

/// What kind of server an acceptor is for.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// ALPN protocols offered, most preferred first.
    pub alpn: Vec<Vec<u8>>,
    /// Whether a client certificate is required.
    pub client_certificate: ClientCertificate,
    /// How long an established connection may say nothing after its handshake.
    pub first_byte_timeout: Duration,
    /// How long it may go without receiving a byte later on.
    pub idle_timeout: Duration,
}

impl ServerOptions {
    /// The gRPC servers: HTTP/2 only, mutual TLS.
    pub fn grpc() -> Self {
        ServerOptions {
            alpn: vec![b"h2".to_vec()],
            client_certificate: ClientCertificate::Required,
            first_byte_timeout: PREFACE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// A server configuration and what its CRL revokes.
pub struct LoadedServerConfig {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// The CRL file in force, if any.
    pub crl_file: Option<PathBuf>,
    /// Normalized serial numbers of the certificates the CRL revokes.
    pub revoked: HashSet<Vec<u8>>,
    /// The CRL Number of the CRL in force (the highest, if the file holds several).
    pub crl_number: Option<BigUint>,
    /// The earliest nextUpdate of the CRLs in force (Unix seconds).
    pub next_update: Option<i64>,
}

impl LoadedServerConfig {
    /// Whether the certificate with this (raw) serial number is revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revoked.contains(&normalized_serial(serial))
    }

    /// The nextUpdate that has passed at `now` (Unix seconds), if the CRL in force is stale.
    /// While it is, the server refuses every new connection: a stale CRL may miss revocations.
    pub fn stale_since(&self, now: i64) -> Option<i64> {
        self.next_update.filter(|next| *next < now)
    }

    /// Whether `self` may replace `previous`: revocation never goes backwards, so the CRL
    /// Number must grow (or stay, for the very same list of revoked certificates).
    pub fn may_replace(&self, previous: &LoadedServerConfig) -> Result<(), String> {
        match (&previous.crl_number, &self.crl_number) {
            (Some(old), Some(new)) if new < old => Err(format!(
                "the CRL's number {new} is lower than that of the CRL in force ({old}): an older CRL cannot replace a newer one"
            )),
            (Some(old), Some(new)) if new == old && self.revoked != previous.revoked => {
                Err(format!(
                    "the CRL's number {new} is that of the CRL in force but it lists other certificates; a new CRL needs a higher number"
                ))
            }
            (Some(_), None) => Err("the new configuration has no CRL, but one is in force".into()),
            _ => Ok(()),
        }
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(invalid(path, "contains no certificate"));
    }
    Ok(certs)
}

/// Reads and checks the CRLs in `path` against the CA certificates: each must parse, name a
/// CA as issuer and be signed by it. Returns the CRLs and the revoked serials.
/// What [`load_crls`] found.
struct LoadedCrls {
    ders: Vec<CertificateRevocationListDer<'static>>,
    revoked: HashSet<Vec<u8>>,
    number: Option<BigUint>,
    next_update: Option<i64>,
}

fn load_crls(path: &Path, ca_certs: &[CertificateDer<'static>]) -> Result<LoadedCrls, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if crls.is_empty() {
        return Err(invalid(
            path,
            "contains no CRL (no \"X509 CRL\" PEM section)",
        ));
    }
    let cas = ca_certs
        .iter()
        .map(|der| {
            x509_parser::parse_x509_certificate(der.as_ref())
                .map(|(_, c)| c)
                .map_err(|e| invalid(path, format!("the CA certificate does not parse: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut revoked = HashSet::new();
    let mut number: Option<BigUint> = None;
    let mut next_update: Option<i64> = None;
    let now = time_now();
    for der in &crls {
        let (_, crl) = CertificateRevocationList::from_der(der.as_ref())
            .map_err(|e| invalid(path, format!("not a valid CRL: {e}")))?;
        let ca = cas
            .iter()
            .find(|ca| ca.subject().as_raw() == crl.issuer().as_raw())
            .ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "the CRL is issued by {}, which is not the federation CA",
                        crl.issuer()
                    ),
                )
            })?;
        crl.verify_signature(ca.public_key()).map_err(|e| {
            invalid(
                path,
                format!("the CRL signature does not verify with the CA key: {e}"),
            )
        })?;
        // Without a CRL Number an older CRL could not be told from a newer one.
        let this_number = crl.crl_number().cloned().ok_or_else(|| {
            invalid(
                path,
                "the CRL has no CRL Number extension; without it revocation could go backwards \
                 (rcpfed pki revoke-cert issues numbered CRLs)",
            )
        })?;
        number = Some(number.map_or(this_number.clone(), |n| n.max(this_number)));
        if let Some(next) = crl.next_update() {
            let next = next.timestamp();
            next_update = Some(next_update.map_or(next, |n| n.min(next)));
            if next < now {
                tracing::error!(
                    crl = %path.display(),
                    next_update = next,
                    "the CRL is past its nextUpdate: NEW CONNECTIONS ARE REFUSED until a fresh \
                     CRL is installed (rcpfed pki revoke-cert re-signs it)"
                );
            }
        }
        for entry in crl.iter_revoked_certificates() {
            revoked.insert(normalized_serial(entry.raw_serial()));
        }
    }
    Ok(LoadedCrls {
        ders: crls,
        revoked,
        number,
        next_update,
    })
}

pub(super) fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Builds the gRPC server configuration: our certificate and key, a client certificate
/// required and verified against the CA, revocation checked against `crl` (if given), ALPN
/// `h2`, the ring crypto provider.
pub fn load_server_config(
    files: &TlsFiles,
    crl: Option<&Path>,
) -> Result<LoadedServerConfig, TlsError> {
    load_server_config_with(files, crl, &ServerOptions::grpc())
}

/// [`load_server_config`] for the kind of server `options` describes.
pub fn load_server_config_with(
    files: &TlsFiles,
    crl: Option<&Path>,
    options: &ServerOptions,
) -> Result<LoadedServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_certs = load_certs(&files.ca_cert)?;
    let mut roots = RootCertStore::empty();
    for cert in &ca_certs {
        roots
            .add(cert.clone())
            .map_err(|e| invalid(&files.ca_cert, format!("not a usable CA certificate: {e}")))?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    let mut revoked = HashSet::new();
    let mut crl_number = None;
    let mut next_update = None;
    if let Some(crl_path) = crl {
        let loaded = load_crls(crl_path, &ca_certs)?;
        revoked = loaded.revoked;
        crl_number = loaded.number;
        next_update = loaded.next_update;
        builder = builder
            .with_crls(loaded.ders)
            .only_check_end_entity_revocation();
    }
    if options.client_certificate == ClientCertificate::Optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(|e| {
        invalid(
            crl.unwrap_or(&files.ca_cert),
            format!("cannot build the client certificate verifier: {e}"),
        )
    })?;
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_error(&files.key, e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.cert, format!("TLS protocol versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| invalid(&files.key, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = options.alpn.clone();
    Ok(LoadedServerConfig {
        config: Arc::new(config),
        crl_file: crl.map(Path::to_path_buf),
        revoked,
        crl_number,
        next_update,
    })
}
