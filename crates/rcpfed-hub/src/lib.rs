//! The GFMD hub: `rcpfed.v1.HubService` over mutual TLS, the ingest sequencer with group commit,
//! and the federation feed.
//!
//! Start-up order matters: the ops port (health NOT_SERVING) comes up first, then the store
//! opens and the ingest sequencer loads the chain heads, then the gRPC port starts and health
//! turns SERVING. On shutdown health turns NOT_SERVING first, then feed streams end and the
//! server drains.

pub mod ingest;
pub mod log;
pub mod metrics;
pub mod registry;
mod service;

use rcpfed_core::keys::SecretKey;
use rcpfed_grpc::limits;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1::hub_service_server::HubServiceServer;
use rcpfed_store::HubStore;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

pub use service::Hub;

/// Everything the hub needs to run.
pub struct HubSettings {
    /// The GFMD root keys and threshold: the trust anchor of the registry.
    pub trust: rcpfed_core::registry::RootSet,
    /// The federation id the root keys are for.
    pub federation_id: String,
    /// Registry version 1, used when the log holds no registry yet.
    pub initial_registry: rcpfed_core::envelope::SignedEnvelope,
    /// The hub's statement/receipt signing key.
    pub signing_key: SecretKey,
    /// TLS material.
    pub tls: TlsFiles,
    /// The federation CA's CRL (PEM). Client certificates it lists are refused; the file is
    /// watched and reloaded without a restart. None: no revocation check.
    pub crl_file: Option<std::path::PathBuf>,
    /// Listener for the mTLS gRPC port.
    pub grpc_listener: TcpListener,
    /// Listener for the plaintext ops port (health, metrics).
    pub ops_listener: TcpListener,
    /// Witness cosignatures that make a checkpoint final.
    pub witness_quorum: u32,
    /// Opens the store; called after the ops port is up so health can say NOT_SERVING meanwhile.
    pub open_store: Box<dyn FnOnce() -> Result<Arc<dyn HubStore>, rcpfed_store::StoreError> + Send>,
}

/// Why the hub stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] rcpfed_store::StoreError),
    /// TLS material could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] rcpfed_grpc::tls::TlsError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The signing key is not the hub's key in the member file.
    #[error("configuration: {0}")]
    Config(String),
    /// I/O on a listener.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the hub until `shutdown` is cancelled.
pub async fn run(settings: HubSettings, shutdown: CancellationToken) -> Result<(), HubError> {
    let HubSettings {
        trust,
        federation_id,
        initial_registry,
        signing_key,
        tls,
        crl_file,
        grpc_listener,
        ops_listener,
        witness_quorum,
        open_store,
    } = settings;
    if witness_quorum == 0 {
        return Err(HubError::Config(
            "witness_quorum must be at least 1: a checkpoint nobody cosigned is not final".into(),
        ));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    // tonic-health starts "" as SERVING; we are not serving until the store is open.
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health.set_not_serving::<HubServiceServer<Hub>>().await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::HubMetrics::register(&mut registry);
    let ops_addr = ops_listener.local_addr()?;
    let ops_shutdown = shutdown.clone();
    let ops = tokio::spawn(rcpfed_grpc::ops::serve_ops(
        ops_listener,
        health_service.clone(),
        Arc::new(registry),
        async move { ops_shutdown.cancelled().await },
    ));
    tracing::info!(%ops_addr, "ops port (health, /metrics) listening");

    let store = tokio::task::spawn_blocking(open_store)
        .await
        .map_err(|e| HubError::Config(format!("store opener panicked: {e}")))??;
    // The registry in force: versions in the log verified from the root keys, or version 1.
    let loaded = {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || {
            registry::load(store.as_ref(), &trust, &federation_id, &initial_registry)
        })
        .await
        .map_err(|e| HubError::Config(format!("registry loader panicked: {e}")))?
        .map_err(HubError::Config)?
    };
    let federation = Arc::new(
        loaded
            .state
            .registry
            .to_federation()
            .map_err(|e| HubError::Config(e.to_string()))?,
    );
    tracing::info!(version = loaded.state.registry.version, "registry in force");
    let hub_member = federation
        .hub()
        .ok_or_else(|| HubError::Config("the member file names no hub".into()))?;
    // Witnesses verify checkpoints with the hub member's first key (logkeys::log_verifier), so
    // that is the only key the hub may sign with.
    if hub_member.keys.first().map(|k| k.key_id.as_str()) != Some(signing_key.key_id()) {
        return Err(HubError::Config(format!(
            "signing key {} is not the first key of hub member {} in the member file; witnesses would refuse every checkpoint",
            signing_key.key_id(),
            hub_member.id
        )));
    }

    let ingest = ingest::Ingest::start(
        Arc::clone(&store),
        ingest::ReceiptSigner {
            federation_id: federation.federation_id.clone(),
            hub_id: hub_member.id.clone(),
            key: signing_key,
        },
        metrics,
    )?;
    if loaded.needs_logging {
        // A new hub: registry version 1 becomes the first entry of the log and the feed.
        match ingest
            .submit(registry::as_statement(&loaded.state, None))
            .await
        {
            Ok(_) => tracing::info!("registry version 1 logged"),
            Err(e) => {
                return Err(HubError::Config(format!(
                    "cannot log registry version 1: {e}"
                )));
            }
        }
    }
    let hub = Hub {
        federation: rcpfed_grpc::shared::SharedFederation::new((*federation).clone()),
        store,
        ingest,
        shutdown: shutdown.clone(),
        quorum: witness_quorum,
        registry: Arc::new(tokio::sync::Mutex::new(loaded.state)),
    };
    let (reflection_v1, reflection_v1alpha) = rcpfed_grpc::reflection_services()?;
    let grpc_addr: SocketAddr = grpc_listener.local_addr()?;
    // mTLS on rustls with the CRL, reloaded when it changes (tonic's TLS has no CRL hook).
    let incoming = rcpfed_grpc::tls::mtls_incoming(grpc_listener, &tls, crl_file.as_deref())?;

    health.set_service_status("", ServingStatus::Serving).await;
    health.set_serving::<HubServiceServer<Hub>>().await;
    tracing::info!(%grpc_addr, federation = %federation.federation_id, "hub serving (mTLS)");

    let health_on_shutdown = health.clone();
    let server_shutdown = shutdown.clone();
    let served = tonic::transport::Server::builder()
        .timeout(limits::REQUEST_TIMEOUT)
        .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(limits::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(limits::KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(limits::TCP_KEEPALIVE))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            HubServiceServer::new(hub)
                .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(limits::MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            server_shutdown.cancelled().await;
            // Probes must see NOT_SERVING as soon as shutdown starts.
            health_on_shutdown
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health_on_shutdown
                .set_not_serving::<HubServiceServer<Hub>>()
                .await;
            tracing::info!("hub shutting down");
        })
        .await;
    shutdown.cancel();
    let _ = ops.await;
    served?;
    Ok(())
}
