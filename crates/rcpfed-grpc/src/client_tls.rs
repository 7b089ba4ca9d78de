//! The client side of mutual TLS to a federation member whose identity we know (a node to its
//! hub; the CLI to the hub): the server certificate must chain to the federation CA, not be
//! revoked by the CRL (read again on every connection), name the host we dialled, and carry the
//! SPIFFE id we expect (`spiffe://<federation>/node/<hub id>` from the registry in force). A
//! CA-signed certificate of another member is refused, so a member cannot pose as the hub.
//!
//! tonic's own `ClientTlsConfig` checks only the host name, so channels are built on a rustls
//! `ClientConfig` of our own through a custom connector; tonic's connect timeout then covers the
//! TCP connect and the TLS handshake together (a blackholed peer cannot stall a dial forever).

use crate::tls::{TlsError, TlsFiles};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The SPIFFE id the server must present, decided at each dial (the registry in force may change
/// who the hub is). `None`: any member of the federation serving as a node or hub
/// (`spiffe://<federation>/node/…`), used only before the registry is known, while the node
/// fetches registry versions that it verifies from the root keys anyway.
pub type ExpectedServer = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Timeouts and keepalives of a client channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelTiming {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive ping interval (pings also while idle, so a dead link is noticed).
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
}

impl Default for ChannelTiming {
    fn default() -> Self {
        ChannelTiming {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: crate::limits::KEEPALIVE_INTERVAL,
            keepalive_timeout: crate::limits::KEEPALIVE_TIMEOUT,
        }
    }
}

/// Everything needed to dial a member with its identity checked.
#[derive(Clone)]
pub struct ServerIdentityCheck {
    /// Our TLS material and the CA.
    pub files: TlsFiles,
    /// The federation CA's CRL (PEM), read again on every dial. None: no revocation check.
    pub crl: Option<PathBuf>,
    /// The federation id (SPIFFE trust domain).
    pub federation_id: String,
    /// The SPIFFE id the server must present.
    pub expected: ExpectedServer,
}

fn invalid(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, message.into()),
    }
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(error) => TlsError {
            path: path.to_path_buf(),
            error,
        },
        other => invalid(path, other.to_string()),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The URI subject alternative names of a certificate.
fn uri_sans(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let sans = parsed
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    Ok(sans
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some((*uri).to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The server's certificate chains to the federation CA but does not carry the SPIFFE id we
/// expect: another member (a node) where the hub was expected. It travels inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))`, so a caller can tell it
/// from other handshake failures and say what to do.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityRefused {
    /// The SPIFFE ids the server presented (empty: none).
    pub presented: Vec<String>,
    /// The SPIFFE id expected; None when any `spiffe://<federation>/node/…` would do.
    pub expected: Option<String>,
    /// The federation id (SPIFFE trust domain) we dialled in.
    pub federation_id: String,
}

impl std::fmt::Display for IdentityRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let presented = if self.presented.is_empty() {
            "no SPIFFE id".to_string()
        } else {
            self.presented.join(", ")
        };
        match &self.expected {
            Some(expected) => write!(
                f,
                "the server presented {presented} but {expected} was expected: it is not the hub of the registry in force"
            ),
            None => write!(
                f,
                "the server presented {presented}, not a spiffe://{}/node/… identity",
                self.federation_id
            ),
        }
    }
}

// Debug as Display: rustls prints the inner error of `CertificateError::Other` with `{:?}`,
// and that is what lands in the logs.
impl std::fmt::Debug for IdentityRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for IdentityRefused {}

impl IdentityRefused {
    /// The refusal in an error's source chain (see [`error_chain`]), if that is what failed.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a IdentityRefused> {
        error_chain(error)
            .into_iter()
            .find_map(|e| match e.downcast_ref() {
                Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
                    other.0.downcast_ref::<IdentityRefused>()
                }
                _ => None,
            })
    }
}

/// An error and its causes, outermost first. An `io::Error` wrapping another error (as
/// tokio-rustls wraps a `rustls::Error`) is followed into what it wraps, which
/// `io::Error::source` skips.
pub fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(error);
    // Bounded: a source chain is short, and a cyclic one must not hang the caller.
    while let Some(e) = next.take() {
        chain.push(e);
        if chain.len() >= 32 {
            break;
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    chain
}

fn refuse(error: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(error))))
}

/// WebPKI (chain to the CA, validity, serverAuth, host name, CRL) plus the SPIFFE id.
#[derive(Debug)]
struct SpiffeServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    expected: Option<String>,
    federation_id: String,
}

impl SpiffeServerVerifier {
    fn check_identity(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let ids = uri_sans(end_entity).map_err(|e| refuse(std::io::Error::other(e)))?;
        let accepted = match &self.expected {
            Some(expected) => ids.iter().any(|id| id == expected),
            None => {
                let prefix = format!("spiffe://{}/node/", self.federation_id);
                ids.iter().any(|id| id.starts_with(&prefix))
            }
        };
        if accepted {
            return Ok(());
        }
        Err(refuse(IdentityRefused {
            presented: ids,
            expected: self.expected.clone(),
            federation_id: self.federation_id.clone(),
        }))
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.check_identity(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Chain to the federation CA, validity, serverAuth, host name and (when given) the CRL.
fn webpki_verifier(
    files: &TlsFiles,
    crl: Option<&Path>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let ca = certs(&files.ca_cert)?;
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert)
            .map_err(|e| invalid(&files.ca_cert, format!("not a usable CA certificate: {e}")))?;
    }
    let mut builder =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    if let Some(crl) = crl {
        let crls = CertificateRevocationListDer::pem_file_iter(crl)
            .map_err(|e| pem_error(crl, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(crl, e))?;
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    builder.build().map_err(|e| {
        invalid(
            crl.unwrap_or(&files.ca_cert),
            format!("cannot build the server certificate verifier: {e}"),
        )
    })
}

/// A client configuration presenting our certificate, checking the server with `verifier`.
/// ALPN `h2`.
fn with_client_auth(
    files: &TlsFiles,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, TlsError> {
    let chain = certs(&files.cert)?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| pem_error(&files.key, e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.cert, format!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| invalid(&files.key, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl ServerIdentityCheck {
    /// A rustls client configuration for one dial: our certificate, the CA, the CRL as it is on
    /// disk now, and the SPIFFE id expected now. ALPN `h2`, ring provider.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = webpki_verifier(&self.files, self.crl.as_deref(), &provider)?;
        let verifier = SpiffeServerVerifier {
            webpki,
            expected: (self.expected)(),
            federation_id: self.federation_id.clone(),
        };
        with_client_auth(&self.files, provider, Arc::new(verifier))
    }
}

/// The client configuration of tonic's own TLS ([`TlsFiles::client_config`]) as a rustls
/// configuration: the server must chain to the CA and name the host; no SPIFFE id, no CRL.
pub fn webpki_client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = webpki_verifier(files, None, &provider)?;
    with_client_auth(files, provider, webpki)
}

/// Whether a server takes us once the TLS handshake is over: dials `host:port`, runs the
/// handshake with `config`, and waits (at most `wait`) for the server's first bytes (an HTTP/2
/// server sends its SETTINGS at once). A TLS 1.3 server judges our certificate only after our
/// side of the handshake is done, so its refusal (a TLS alert such as `CertificateRevoked`)
/// shows up here, as the error of that first read, while a gRPC call on the same connection
/// may only see "connection closed". For wording a failure, not for talking to the server.
pub async fn first_answer(
    host: &str,
    port: u16,
    config: rustls::ClientConfig,
    wait: Duration,
) -> Result<(), BoxError> {
    use tokio::io::AsyncReadExt as _;
    let server_name = ServerName::try_from(host.to_string())?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await?;
        let mut first = [0u8; 16];
        match tls.read(&mut first).await? {
            0 => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection right after the TLS handshake",
            )),
            _ => Ok(()),
        }
    };
    match tokio::time::timeout(wait, attempt).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(format!(
            "the server sent nothing within {} ms of the TLS handshake",
            wait.as_millis()
        )
        .into()),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials `host:port` over TCP and runs the TLS handshake with [`ServerIdentityCheck`]. A refused
/// server is logged with the reason, so an operator sees why the node does not talk to it
/// (unless the caller reports the error itself: [`connect_checked`]).
#[derive(Clone)]
pub struct CheckedConnector {
    check: Arc<ServerIdentityCheck>,
    host: String,
    port: u16,
    log_failures: bool,
}

impl tower::Service<http::Uri> for CheckedConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let config = this.check.client_config().map_err(|e| {
                if this.log_failures {
                    tracing::error!(error = %e, "cannot build the TLS client configuration");
                }
                e
            })?;
            let server_name = ServerName::try_from(this.host.clone())?;
            let tcp = tokio::net::TcpStream::connect((this.host.as_str(), this.port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(server_name, tcp)
                .await
                .map_err(|e| {
                    if !this.log_failures {
                        return e;
                    }
                    if e.get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
                    {
                        tracing::error!(
                            server = %format!("{}:{}", this.host, this.port),
                            error = %e,
                            "SERVER IDENTITY REFUSED: not talking to this server"
                        );
                    } else {
                        tracing::debug!(error = %e, "TLS handshake failed");
                    }
                    e
                })?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// The endpoint and connector of a channel to `endpoint` ("https://host:port") whose server
/// must pass `check`.
fn checked_endpoint(
    endpoint: &str,
    check: ServerIdentityCheck,
    timing: ChannelTiming,
    log_failures: bool,
) -> Result<(tonic::transport::Endpoint, CheckedConnector), BoxError> {
    let uri: http::Uri = endpoint.parse()?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{endpoint:?} must start with https:// (mTLS is required)").into());
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{endpoint:?} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    // The connector does TLS itself; tonic would insist on its own TLS for an https URI.
    let plain: http::Uri = format!("http://{}:{port}", uri.host().unwrap_or_default()).parse()?;
    let connector = CheckedConnector {
        check: Arc::new(check),
        host,
        port,
        log_failures,
    };
    let endpoint = tonic::transport::Endpoint::from(plain)
        .connect_timeout(timing.connect_timeout)
        .http2_keep_alive_interval(timing.keepalive_interval)
        .keep_alive_timeout(timing.keepalive_timeout)
        .keep_alive_while_idle(true);
    Ok((endpoint, connector))
}

/// A lazily connected channel to `endpoint` ("https://host:port") whose server must pass
/// `check`, with the connect timeout covering TCP and TLS and HTTP/2 keepalive pings (also while
/// idle) so that a silent peer is noticed and redialled. A refused server is logged at every
/// dial (the node's link to its hub).
pub fn checked_channel(
    endpoint: &str,
    check: ServerIdentityCheck,
    timing: ChannelTiming,
) -> Result<tonic::transport::Channel, BoxError> {
    let (endpoint, connector) = checked_endpoint(endpoint, check, timing, true)?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Like [`checked_channel`], but dials now and returns the failure instead of logging it: for
/// a command that reports the error to the person who ran it (the CLI). A refused identity is
/// an [`IdentityRefused`] inside the error's source chain.
pub async fn connect_checked(
    endpoint: &str,
    check: ServerIdentityCheck,
    timing: ChannelTiming,
) -> Result<tonic::transport::Channel, BoxError> {
    let (endpoint, connector) = checked_endpoint(endpoint, check, timing, false)?;
    Ok(endpoint.connect_with_connector(connector).await?)
}
