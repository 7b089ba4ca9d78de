//! The configuration in force, rebuilt when its files change (never to an older CRL), the
//! connections open under it (closed when their certificate is revoked, capped per identity),
//! and the health state that follows the CRL's freshness.

use super::RELOAD_INTERVAL;
use super::config::{
    LoadedServerConfig, ServerOptions, hex, invalid, load_server_config_with, normalized_serial,
    time_now,
};
use crate::limits::MAX_CONNECTIONS_PER_IDENTITY;
use crate::tls::{TlsError, TlsFiles};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What identifies a file version: (length, modification time, inode), or None if absent.
type FileStamp = Option<(u64, std::time::SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

/// One open connection, for closing it if its certificate is revoked later.
pub(super) struct TrackedConnection {
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

    /// What kind of server this acceptor is for.
    pub(super) fn options(&self) -> &ServerOptions {
        &self.shared.options
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
    pub(super) fn track(
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
                // File reads and certificate parsing: keep them off the async workers. The
                // outcome is logged where it happens (a failed reload keeps the configuration).
                if let Err(e) =
                    tokio::task::spawn_blocking(move || acceptor.reload_if_changed()).await
                {
                    // A panic while reloading keeps the configuration in force; say so.
                    tracing::error!(error = %e, "the TLS reload check failed; the certificates in force stay");
                }
            }
        })
    }
}

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
