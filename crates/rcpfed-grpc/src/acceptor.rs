//! Server-side mutual TLS with certificate revocation, built on rustls directly (tonic's own TLS
//! configuration has no CRL hook).
//!
//! * [`load_server_config`] builds a rustls `ServerConfig` (ring provider, ALPN `h2`) that
//!   requires a client certificate chaining to the federation CA and, when a CRL file is
//!   configured, refuses certificates that CRL lists. The CRL is checked before use: it must
//!   parse, be issued by the CA and carry a valid CA signature.
//! * [`ReloadingTlsAcceptor`] holds the current configuration. A watcher task looks at the CA,
//!   certificate, key and CRL files every second (modification time, length, inode) and
//!   rebuilds the configuration when one changed, logging `CRL reloaded: N revoked
//!   certificates`. A file that does not load keeps the previous configuration and logs an
//!   error. Connections already open with a certificate the new CRL revokes are closed.
//! * [`mtls_incoming`] turns a listener into the connection stream for tonic's
//!   `serve_with_incoming_shutdown`: each connection gets the configuration current when it was
//!   accepted, handshakes run concurrently with a [`HANDSHAKE_TIMEOUT`], and the streams are
//!   `tokio_rustls::server::TlsStream`s, for which tonic provides `TlsConnectInfo`, so
//!   `Request::peer_certs()` keeps working.

use crate::tls::{TlsError, TlsFiles};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::collections::HashMap;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;

pub use crate::limits::{
    HANDSHAKE_TIMEOUT, MAX_CONNECTIONS_PER_IDENTITY, MAX_PENDING_HANDSHAKES,
    MAX_PENDING_HANDSHAKES_PER_ADDRESS,
};
use crate::limits::{IDLE_TIMEOUT, PREFACE_TIMEOUT};
/// How often the watcher looks at the TLS and CRL files.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

fn invalid(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        error: io::Error::new(io::ErrorKind::InvalidData, message.into()),
    }
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(error) => TlsError {
            path: path.to_path_buf(),
            error,
        },
        other => invalid(path, format!("not usable PEM: {other:?}")),
    }
}

/// A certificate serial number as unsigned big-endian bytes without leading zeros.
fn normalized_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw[start..].to_vec()
}

fn hex(bytes: &[u8]) -> String {
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

fn time_now() -> i64 {
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

/// What identifies a file version: (length, modification time, inode), or None if absent.
type FileStamp = Option<(u64, std::time::SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

/// One open connection, for closing it if its certificate is revoked later.
struct TrackedConnection {
    serial: Vec<u8>,
    /// The certificate's SPIFFE id (its serial in hex if it has none): what the
    /// per-identity connection cap counts.
    identity: String,
    peer: SocketAddr,
    close: CancellationToken,
}

struct Shared {
    files: TlsFiles,
    options: ServerOptions,
    crl: Option<PathBuf>,
    current: RwLock<Arc<LoadedServerConfig>>,
    /// The file versions last looked at (loaded or refused).
    seen: Mutex<Vec<FileStamp>>,
    connections: Mutex<Connections>,
    /// What to do while the CRL is past its nextUpdate.
    stale_crl: Mutex<StaleCrl>,
}

/// What a server does while its CRL is past nextUpdate (a stale CRL may miss revocations).
/// Either way the state is explicit: health turns `NOT_SERVING` and an error is logged
/// ([`watch_crl_freshness`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StaleCrl {
    /// Refuse every new connection until a fresh CRL is installed (the default).
    #[default]
    Refuse,
    /// Keep accepting connections (with the stale CRL's revocations still applied), but
    /// report `NOT_SERVING` so that probes and operators see it.
    NotServing,
}

#[derive(Default)]
struct Connections {
    open: Vec<Weak<TrackedConnection>>,
    prune_at: usize,
}

/// The outcome of one look at the files.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// No file changed.
    Unchanged,
    /// The configuration was rebuilt; the CRL (if any) lists this many certificates, and this
    /// many open connections were closed because their certificate is now revoked.
    Reloaded {
        /// Certificates the CRL revokes.
        revoked: usize,
        /// Open connections closed.
        closed: usize,
    },
    /// A file changed but does not load; the previous configuration stays.
    Failed(String),
}

/// The current server TLS configuration, rebuilt when its files change.
#[derive(Clone)]
pub struct ReloadingTlsAcceptor {
    shared: Arc<Shared>,
}

impl ReloadingTlsAcceptor {
    /// Loads the gRPC server configuration (an error here is fatal: the server must not start
    /// without it).
    pub fn new(files: TlsFiles, crl: Option<PathBuf>) -> Result<Self, TlsError> {
        Self::with_options(files, crl, ServerOptions::grpc())
    }

    /// [`ReloadingTlsAcceptor::new`] for the kind of server `options` describes.
    pub fn with_options(
        files: TlsFiles,
        crl: Option<PathBuf>,
        options: ServerOptions,
    ) -> Result<Self, TlsError> {
        let seen = Self::stamps(&files, crl.as_deref());
        let loaded = load_server_config_with(&files, crl.as_deref(), &options)?;
        match &loaded.crl_file {
            Some(path) => tracing::info!(
                crl = %path.display(),
                "CRL loaded: {} revoked certificates",
                loaded.revoked.len()
            ),
            None => tracing::warn!(
                "revocation disabled by configuration: client certificates are not checked against a CRL"
            ),
        }
        Ok(ReloadingTlsAcceptor {
            shared: Arc::new(Shared {
                files,
                options,
                crl,
                current: RwLock::new(Arc::new(loaded)),
                seen: Mutex::new(seen),
                connections: Mutex::new(Connections::default()),
                stale_crl: Mutex::new(StaleCrl::default()),
            }),
        })
    }

    fn stamps(files: &TlsFiles, crl: Option<&Path>) -> Vec<FileStamp> {
        [
            Some(files.ca_cert.as_path()),
            Some(files.cert.as_path()),
            Some(files.key.as_path()),
            crl,
        ]
        .into_iter()
        .flatten()
        .map(stamp)
        .collect()
    }

    /// Sets what the server does while its CRL is past nextUpdate.
    pub fn set_stale_crl(&self, policy: StaleCrl) {
        if let Ok(mut p) = self.shared.stale_crl.lock() {
            *p = policy;
        }
    }

    /// What the server does while its CRL is past nextUpdate.
    pub fn stale_crl(&self) -> StaleCrl {
        self.shared.stale_crl.lock().map(|p| *p).unwrap_or_default()
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<LoadedServerConfig> {
        match self.shared.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Looks at the files once and rebuilds the configuration if one changed.
    pub fn reload_if_changed(&self) -> ReloadOutcome {
        let shared = &self.shared;
        let now = Self::stamps(&shared.files, shared.crl.as_deref());
        {
            let mut seen = match shared.seen.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if *seen == now {
                return ReloadOutcome::Unchanged;
            }
            *seen = now;
        }
        let loaded = load_server_config_with(&shared.files, shared.crl.as_deref(), &shared.options)
            .and_then(|loaded| {
                loaded
                    .may_replace(&self.current())
                    .map(|()| loaded)
                    .map_err(|why| {
                        invalid(shared.crl.as_deref().unwrap_or(&shared.files.ca_cert), why)
                    })
            });
        match loaded {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                match shared.current.write() {
                    Ok(mut g) => *g = Arc::clone(&loaded),
                    Err(p) => *p.into_inner() = Arc::clone(&loaded),
                }
                let closed = self.close_revoked(&loaded);
                match &loaded.crl_file {
                    Some(path) => tracing::info!(
                        crl = %path.display(),
                        closed_connections = closed,
                        "CRL reloaded: {} revoked certificates",
                        loaded.revoked.len()
                    ),
                    None => tracing::info!("TLS certificate and key reloaded"),
                }
                ReloadOutcome::Reloaded {
                    revoked: loaded.revoked.len(),
                    closed,
                }
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "TLS/CRL files changed but do not load: KEEPING THE PREVIOUS CONFIGURATION \
                     (and its CRL); fix the file to apply revocations"
                );
                ReloadOutcome::Failed(e.to_string())
            }
        }
    }

    /// Closes open connections whose certificate `loaded` revokes; returns how many.
    fn close_revoked(&self, loaded: &LoadedServerConfig) -> usize {
        let mut connections = match self.shared.connections.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut closed = 0;
        connections.open.retain(|weak| {
            let Some(conn) = weak.upgrade() else {
                return false;
            };
            if loaded.revoked.contains(&conn.serial) {
                tracing::warn!(
                    peer = %conn.peer,
                    serial = %hex(&conn.serial),
                    "closing a connection: its client certificate has been revoked"
                );
                conn.close.cancel();
                closed += 1;
                return false;
            }
            true
        });
        closed
    }

    /// Remembers an established connection; closes it at once if its certificate was revoked
    /// while it was handshaking, or if its identity already holds
    /// [`MAX_CONNECTIONS_PER_IDENTITY`] connections. Returns the handle that keeps it tracked.
    fn track(
        &self,
        leaf: &[u8],
        peer: SocketAddr,
        close: CancellationToken,
    ) -> Option<Arc<TrackedConnection>> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let serial = normalized_serial(cert.raw_serial());
        let identity = crate::peer::spiffe_id_of(leaf).unwrap_or_else(|_| hex(&serial));
        let conn = Arc::new(TrackedConnection {
            serial,
            identity,
            peer,
            close,
        });
        let over_cap = {
            let mut connections = match self.shared.connections.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if connections.open.len() >= connections.prune_at {
                connections.open.retain(|w| w.strong_count() > 0);
                connections.prune_at = (connections.open.len() * 2).max(64);
            }
            let same_identity = connections
                .open
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|c| c.identity == conn.identity && !c.close.is_cancelled())
                .count();
            if same_identity >= MAX_CONNECTIONS_PER_IDENTITY {
                true
            } else {
                connections.open.push(Arc::downgrade(&conn));
                false
            }
        };
        if over_cap {
            tracing::warn!(
                %peer,
                identity = %conn.identity,
                limit = MAX_CONNECTIONS_PER_IDENTITY,
                "closing a new connection: this identity already holds the most connections allowed"
            );
            conn.close.cancel();
        }
        if self.current().revoked.contains(&conn.serial) {
            conn.close.cancel();
        }
        Some(conn)
    }

    /// Closes every open connection (the end of a bounded shutdown drain); returns how many.
    pub fn close_all(&self) -> usize {
        let mut connections = match self.shared.connections.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut closed = 0;
        for conn in connections.open.drain(..).filter_map(|w| w.upgrade()) {
            if !conn.close.is_cancelled() {
                conn.close.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Runs the watcher: every [`RELOAD_INTERVAL`] until every clone of this acceptor is gone.
    pub fn spawn_watcher(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let Some(shared) = weak.upgrade() else {
                    break;
                };
                let acceptor = ReloadingTlsAcceptor { shared };
                // File reads and certificate parsing: keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || acceptor.reload_if_changed()).await;
            }
        })
    }
}

/// A TCP connection that can be closed from outside (when its certificate is revoked, when it
/// stays silent, at the end of a shutdown drain): reads and writes fail once the close token
/// is cancelled, which makes the HTTP/2 server drop it.
pub struct RevocableTcp {
    inner: TcpStream,
    close: CancellationToken,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Bytes received so far, for the silence watchdog.
    received: Arc<AtomicU64>,
    /// Cancelled when this connection is dropped, which ends its watchdog.
    _gone: tokio_util::sync::DropGuard,
    _tracked: Option<Arc<TrackedConnection>>,
}

impl RevocableTcp {
    fn new(inner: TcpStream, gone: CancellationToken) -> Self {
        let close = CancellationToken::new();
        RevocableTcp {
            inner,
            closed: Box::pin(close.clone().cancelled_owned()),
            close,
            received: Arc::new(AtomicU64::new(0)),
            _gone: gone.drop_guard(),
            _tracked: None,
        }
    }

    /// A plain (no TLS) connection, closed when silent for the given limits (see
    /// [`watch_silence`]), and when `close_token()` is cancelled.
    pub fn watched(
        inner: TcpStream,
        peer: SocketAddr,
        first_byte_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        let gone = CancellationToken::new();
        let io = RevocableTcp::new(inner, gone.clone());
        tokio::spawn(watch_silence(
            peer,
            Arc::clone(&io.received),
            0,
            (first_byte_timeout, idle_timeout),
            io.close.clone(),
            gone,
        ));
        io
    }

    /// Cancelling this closes the connection.
    pub fn close_token(&self) -> CancellationToken {
        self.close.clone()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Ready(error) once closed from outside; otherwise registers the waker and is Pending.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.close.is_cancelled() || self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server closed the connection",
            ));
        }
        Poll::Pending
    }
}

impl AsyncRead for RevocableTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before);
        if got > 0 {
            this.received.fetch_add(got as u64, Ordering::Relaxed);
        }
        read
    }
}

/// Closes a connection that says nothing: no byte within `first` after its handshake (an
/// HTTP/2 client sends its preface at once, an HTTP/1.1 client its request), or none for
/// `idle` later (the server's keepalive pings are answered by any live client). Ends when the
/// connection is dropped.
async fn watch_silence(
    peer: SocketAddr,
    received: Arc<AtomicU64>,
    at_handshake: u64,
    (first_limit, idle): (Duration, Duration),
    close: CancellationToken,
    gone: CancellationToken,
) {
    // Counted from the end of the handshake, before the server sends its SETTINGS: an HTTP/2
    // client always answers those, so a live client is never taken for a silent one.
    let mut seen = at_handshake;
    let mut limit = first_limit;
    let mut first = true;
    loop {
        tokio::select! {
            _ = gone.cancelled() => return,
            _ = close.cancelled() => return,
            _ = tokio::time::sleep(limit) => {}
        }
        let now = received.load(Ordering::Relaxed);
        if now == seen {
            let what = if first {
                "sent nothing after its TLS handshake"
            } else {
                "went silent"
            };
            tracing::info!(%peer, silent_for = ?limit, "closing a connection that {what}");
            close.cancel();
            return;
        }
        seen = now;
        limit = idle;
        first = false;
    }
}

impl AsyncWrite for RevocableTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Same connection info as a plain `TcpStream`, so tonic's `TlsStream` impl yields
/// `TlsConnectInfo<TcpConnectInfo>`, which is what `Request::peer_certs()` reads.
impl Connected for RevocableTcp {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The connection stream [`mtls_incoming`] returns.
pub type MtlsIncoming = ReceiverStream<Result<TlsStream<RevocableTcp>, io::Error>>;

fn log_handshake_failure(peer: SocketAddr, error: &io::Error) {
    let revoked = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
            )
        });
    if revoked {
        tracing::warn!(%peer, "TLS handshake refused: the client certificate is revoked");
    } else {
        tracing::info!(%peer, %error, "TLS handshake failed");
    }
}

/// Accepts connections on `listener` and completes the TLS handshake of each with the
/// acceptor's current configuration, concurrently and within [`HANDSHAKE_TIMEOUT`]; yields the
/// established streams. Accepting stops when the returned stream is dropped.
pub fn incoming_with(listener: TcpListener, acceptor: ReloadingTlsAcceptor) -> MtlsIncoming {
    let (tx, rx) = mpsc::channel(128);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let per_address = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = tx.closed() => break,
                p = Arc::clone(&pending).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // One address may not take every handshake slot: over its share, the connection
            // is closed at once (dropped) and the slot goes to the next caller.
            let Some(address_slot) = AddressSlot::take(&per_address, peer.ip()) else {
                tracing::info!(
                    %peer,
                    limit = MAX_PENDING_HANDSHAKES_PER_ADDRESS,
                    "closing a connection: too many TLS handshakes in progress from this address"
                );
                continue;
            };
            if let Some(next_update) = acceptor.current().stale_since(time_now())
                && acceptor.stale_crl() == StaleCrl::Refuse
            {
                tracing::error!(
                    %peer,
                    next_update,
                    "refusing a connection: the CRL in force is past its nextUpdate; install a \
                     fresh CRL (rcpfed pki revoke-cert re-signs it)"
                );
                continue;
            }
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let config = Arc::clone(&acceptor.current().config);
                let tls = tokio_rustls::TlsAcceptor::from(config);
                let gone = CancellationToken::new();
                let handshake = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    tls.accept(RevocableTcp::new(tcp, gone.clone())),
                )
                .await;
                drop(permit);
                drop(address_slot);
                let mut stream = match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        log_handshake_failure(peer, &e);
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let (io, session) = stream.get_mut();
                if let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) {
                    io._tracked = acceptor.track(leaf.as_ref(), peer, io.close.clone());
                }
                let options = &acceptor.shared.options;
                tokio::spawn(watch_silence(
                    peer,
                    Arc::clone(&io.received),
                    io.received.load(Ordering::Relaxed),
                    (options.first_byte_timeout, options.idle_timeout),
                    io.close.clone(),
                    gone,
                ));
                let _ = tx.send(Ok(stream)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// One handshake in progress from one address, counted in the per-address table until dropped.
struct AddressSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    fn take(table: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<AddressSlot> {
        let mut map = match table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let count = map.entry(ip).or_insert(0);
        if *count >= MAX_PENDING_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Runs the gRPC server future `serve` until it ends. Once `shutdown` is cancelled, open calls
/// get [`crate::limits::SHUTDOWN_DRAIN`] to finish; then every connection is closed (silent
/// or stuck peers cannot hold the process), and after one more second the server is left
/// behind. Returns None when it had to be left behind.
pub async fn serve_with_bounded_drain<F: Future>(
    serve: F,
    shutdown: CancellationToken,
    acceptor: ReloadingTlsAcceptor,
) -> Option<F::Output> {
    tokio::pin!(serve);
    tokio::select! {
        out = &mut serve => return Some(out),
        _ = shutdown.cancelled() => {}
    }
    if let Ok(out) = tokio::time::timeout(crate::limits::SHUTDOWN_DRAIN, &mut serve).await {
        return Some(out);
    }
    let closed = acceptor.close_all();
    tracing::warn!(
        closed,
        drain = ?crate::limits::SHUTDOWN_DRAIN,
        "shutdown: connections still open after the drain are closed"
    );
    match tokio::time::timeout(Duration::from_secs(1), &mut serve).await {
        Ok(out) => Some(out),
        Err(_) => {
            tracing::warn!("shutdown: the gRPC server did not stop; leaving it behind");
            None
        }
    }
}

/// How often [`watch_crl_freshness`] looks at the CRL's nextUpdate.
const CRL_FRESHNESS_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the overall health status (`""`) in step with the CRL: `NOT_SERVING` (and an error
/// logged, again every 10 minutes) while the CRL in force is past nextUpdate, `SERVING` again
/// once a fresh one is installed. Stops at `shutdown` (whose own `NOT_SERVING` it never undoes).
pub fn watch_crl_freshness(
    acceptor: ReloadingTlsAcceptor,
    health: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use tonic_health::ServingStatus;
    tokio::spawn(async move {
        let mut stale_logged_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CRL_FRESHNESS_INTERVAL) => {}
            }
            let stale = acceptor.current().stale_since(time_now());
            match (stale, stale_logged_at) {
                (Some(next_update), last) => {
                    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(600)) {
                        let refusing = acceptor.stale_crl() == StaleCrl::Refuse;
                        tracing::error!(
                            next_update,
                            refusing_connections = refusing,
                            "the CRL in force is past its nextUpdate: health is NOT_SERVING \
                             until a fresh CRL is installed (rcpfed pki revoke-cert re-signs it)"
                        );
                        stale_logged_at = Some(tokio::time::Instant::now());
                    }
                    if last.is_none() && !shutdown.is_cancelled() {
                        health
                            .set_service_status("", ServingStatus::NotServing)
                            .await;
                    }
                }
                (None, Some(_)) => {
                    tracing::info!("a fresh CRL is in force: health is SERVING again");
                    stale_logged_at = None;
                    if !shutdown.is_cancelled() {
                        health.set_service_status("", ServingStatus::Serving).await;
                    }
                }
                (None, None) => {}
            }
        }
    })
}

/// Server-side mutual TLS for tonic with revocation: loads the configuration (failing if it
/// does not load), starts the watcher that reloads it when the files change, and returns the
/// connection stream to pass to `serve_with_incoming_shutdown` (without `.tls_config`).
pub fn mtls_incoming(
    listener: TcpListener,
    files: &TlsFiles,
    crl: Option<&Path>,
) -> Result<MtlsIncoming, TlsError> {
    mtls_incoming_with_acceptor(listener, files, crl).map(|(incoming, _)| incoming)
}

/// [`mtls_incoming`], also returning the acceptor (for [`serve_with_bounded_drain`]).
pub fn mtls_incoming_with_acceptor(
    listener: TcpListener,
    files: &TlsFiles,
    crl: Option<&Path>,
) -> Result<(MtlsIncoming, ReloadingTlsAcceptor), TlsError> {
    let acceptor = ReloadingTlsAcceptor::new(files.clone(), crl.map(Path::to_path_buf))?;
    acceptor.spawn_watcher();
    Ok((incoming_with(listener, acceptor.clone()), acceptor))
}
