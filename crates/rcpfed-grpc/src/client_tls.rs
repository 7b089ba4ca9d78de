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
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, message.into()),
    }
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError {
            path: path.to_path_buf(),
            source,
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

fn refuse(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        std::io::Error::other(message),
    ))))
}

/// WebPKI (chain to the CA, validity, serverAuth, host name, CRL) plus the SPIFFE id.
#[derive(Debug)]
struct SpiffeServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    expected: Option<String>,
    federation_id: String,
}

impl SpiffeServerVerifier {
    fn check_identity(&self, end_entity: &CertificateDer<'_>) -> Result<(), String> {
        let ids = uri_sans(end_entity)?;
        match &self.expected {
            Some(expected) if ids.iter().any(|id| id == expected) => Ok(()),
            Some(expected) => Err(format!(
                "the server presented {} but {expected} was expected: it is not the hub of the registry in force",
                if ids.is_empty() {
                    "no SPIFFE id".to_string()
                } else {
                    ids.join(", ")
                }
            )),
            None => {
                let prefix = format!("spiffe://{}/node/", self.federation_id);
                if ids.iter().any(|id| id.starts_with(&prefix)) {
                    Ok(())
                } else {
                    Err(format!(
                        "the server presented {ids:?}, not a {prefix}… identity"
                    ))
                }
            }
        }
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
        self.check_identity(end_entity).map_err(refuse)?;
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

impl ServerIdentityCheck {
    /// A rustls client configuration for one dial: our certificate, the CA, the CRL as it is on
    /// disk now, and the SPIFFE id expected now. ALPN `h2`, ring provider.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = certs(&self.files.ca_cert)?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(|e| {
                invalid(
                    &self.files.ca_cert,
                    format!("not a usable CA certificate: {e}"),
                )
            })?;
        }
        let mut builder =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
        if let Some(crl) = &self.crl {
            let crls = CertificateRevocationListDer::pem_file_iter(crl)
                .map_err(|e| pem_error(crl, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(crl, e))?;
            builder = builder.with_crls(crls).only_check_end_entity_revocation();
        }
        let webpki = builder.build().map_err(|e| {
            invalid(
                self.crl.as_deref().unwrap_or(&self.files.ca_cert),
                format!("cannot build the server certificate verifier: {e}"),
            )
        })?;
        let verifier = SpiffeServerVerifier {
            webpki,
            expected: (self.expected)(),
            federation_id: self.federation_id.clone(),
        };
        let chain = certs(&self.files.cert)?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.files.key)
            .map_err(|e| pem_error(&self.files.key, e))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&self.files.cert, format!("TLS protocol versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                invalid(
                    &self.files.key,
                    format!("certificate and key do not fit: {e}"),
                )
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials `host:port` over TCP and runs the TLS handshake with [`ServerIdentityCheck`]. A refused
/// server is logged with the reason, so an operator sees why the node does not talk to it.
#[derive(Clone)]
pub struct CheckedConnector {
    check: Arc<ServerIdentityCheck>,
    host: String,
    port: u16,
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
                tracing::error!(error = %e, "cannot build the TLS client configuration");
                e
            })?;
            let server_name = ServerName::try_from(this.host.clone())?;
            let tcp = tokio::net::TcpStream::connect((this.host.as_str(), this.port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(server_name, tcp)
                .await
                .map_err(|e| {
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

/// A lazily connected channel to `endpoint` ("https://host:port") whose server must pass
/// `check`, with the connect timeout covering TCP and TLS and HTTP/2 keepalive pings (also while
/// idle) so that a silent peer is noticed and redialled.
pub fn checked_channel(
    endpoint: &str,
    check: ServerIdentityCheck,
    timing: ChannelTiming,
) -> Result<tonic::transport::Channel, BoxError> {
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
    };
    Ok(tonic::transport::Endpoint::from(plain)
        .connect_timeout(timing.connect_timeout)
        .http2_keep_alive_interval(timing.keepalive_interval)
        .keep_alive_timeout(timing.keepalive_timeout)
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector))
}
