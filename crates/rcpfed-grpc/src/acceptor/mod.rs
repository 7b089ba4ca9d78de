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
//!
//! Split by responsibility: [`config`] (what a configuration is), [`reloading`] (the one in
//! force, its reloads, its connections, CRL freshness), [`connection`] (accepting, watching and
//! closing connections).

mod config;
mod connection;
mod reloading;

pub use config::{
    ClientCertificate, LoadedServerConfig, ServerOptions, load_server_config,
    load_server_config_with,
};
pub use connection::{MtlsIncoming, RevocableTcp, incoming_with, serve_with_bounded_drain};
pub use reloading::{ReloadOutcome, ReloadingTlsAcceptor, StaleCrl, watch_crl_freshness};

use crate::tls::{TlsError, TlsFiles};
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;

pub use crate::limits::{
    HANDSHAKE_TIMEOUT, MAX_CONNECTIONS_PER_IDENTITY, MAX_PENDING_HANDSHAKES,
    MAX_PENDING_HANDSHAKES_PER_ADDRESS,
};
/// How often the watcher looks at the TLS and CRL files.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

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
