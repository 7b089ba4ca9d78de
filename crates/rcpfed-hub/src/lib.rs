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
mod service;

use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
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
    /// The loaded member file.
    pub federation: Arc<Federation>,
    /// The hub's statement/receipt signing key.
    pub signing_key: SecretKey,
    /// TLS material.
    pub tls: TlsFiles,
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
        federation,
        signing_key,
        tls,
        grpc_listener,
        ops_listener,
        witness_quorum,
        open_store,
    } = settings;
    let hub_member = federation
        .hub()
        .ok_or_else(|| HubError::Config("the member file names no hub".into()))?;
    if hub_member.key(signing_key.key_id()).is_none() {
        return Err(HubError::Config(format!(
            "signing key {} is not a key of hub member {} in the member file",
            signing_key.key_id(),
            hub_member.id
        )));
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
    let ingest = ingest::Ingest::start(
        Arc::clone(&store),
        ingest::ReceiptSigner {
            federation_id: federation.federation_id.clone(),
            hub_id: hub_member.id.clone(),
            key: signing_key,
        },
        metrics,
    )?;
    let hub = Hub {
        federation: Arc::clone(&federation),
        store,
        ingest,
        shutdown: shutdown.clone(),
        quorum: witness_quorum,
    };
    let (reflection_v1, reflection_v1alpha) = rcpfed_grpc::reflection_services()?;
    let grpc_addr: SocketAddr = grpc_listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);

    health.set_service_status("", ServingStatus::Serving).await;
    health.set_serving::<HubServiceServer<Hub>>().await;
    tracing::info!(%grpc_addr, federation = %federation.federation_id, "hub serving (mTLS)");

    let health_on_shutdown = health.clone();
    let server_shutdown = shutdown.clone();
    let served = tonic::transport::Server::builder()
        .tls_config(tls.server_config()?)?
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
