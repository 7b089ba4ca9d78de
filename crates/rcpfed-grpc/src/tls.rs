//! Mutual TLS with the federation CA. Every channel is authenticated both ways; the server
//! refuses a client without a certificate signed by the federation CA. This module holds the
//! member's TLS files and tonic's own TLS configs; servers use [`crate::acceptor`] (rustls with
//! a CRL, reloaded without restart), which reads the files named here.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Where a member's TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The federation CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This member's certificate (PEM).
    pub cert: PathBuf,
    /// This member's private key (PEM).
    pub key: PathBuf,
}

/// A TLS file could not be read. The reason is part of the message and not a separate
/// `source`, so a chain printed with `{:#}` names it once.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {error}")]
pub struct TlsError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: std::io::Error,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError {
        path: path.to_path_buf(),
        error,
    })
}

impl TlsFiles {
    /// Server side with tonic's own TLS: present our certificate, require a client certificate
    /// from the CA. It cannot check a CRL; the hub and the nodes use
    /// [`crate::acceptor::mtls_incoming`] instead.
    pub fn server_config(&self) -> Result<ServerTlsConfig, TlsError> {
        Ok(ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
            .client_ca_root(Certificate::from_pem(read(&self.ca_cert)?))
            .client_auth_optional(false))
    }

    /// Client side with tonic's own TLS: trust only the federation CA, present our certificate,
    /// expect the server to be `server_name` (a DNS name or IP in its certificate). It cannot
    /// check the server's SPIFFE id or a CRL; a node's channel to its hub, and the CLI's when
    /// it knows the hub, use [`crate::client_tls`] instead.
    pub fn client_config(&self, server_name: &str) -> Result<ClientTlsConfig, TlsError> {
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca_cert)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
            .domain_name(server_name))
    }
}
