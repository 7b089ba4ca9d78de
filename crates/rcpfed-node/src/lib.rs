//! A regional node: `rcpfed.v1.NodeService` over mutual TLS, the signing publisher, the outbox
//! that delivers to the hub, and the verified mirror of the federation feed.

pub mod mirror;
pub mod outbox;
pub mod publish;
mod service;
pub mod witness;

use rcpfed_core::keys::SecretKey;
use rcpfed_core::members::Federation;
use rcpfed_grpc::limits;
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1::node_service_server::NodeServiceServer;
use rcpfed_store::NodeStore;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

pub use service::Node;

/// Live state shown by `GetNodeStatus`.
#[derive(Default)]
pub struct NodeState {
    /// Whether the feed stream is connected.
    pub feed_connected: AtomicBool,
    last_error: Mutex<String>,
}

impl NodeState {
    pub(crate) fn set_error(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = error;
        }
    }

    pub(crate) fn clear_error(&self) {
        if let Ok(mut e) = self.last_error.lock() {
            e.clear();
        }
    }

    /// The last error in plain words.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Everything a node needs to run.
pub struct NodeSettings {
    /// The loaded member file.
    pub federation: Arc<Federation>,
    /// This node's member id.
    pub node_id: String,
    /// This node's statement signing key.
    pub signing_key: SecretKey,
    /// TLS material (client to the hub and server for operators).
    pub tls: TlsFiles,
    /// The hub's gRPC endpoint, "https://host:port".
    pub hub_endpoint: String,
    /// Listener for the node's mTLS gRPC port.
    pub grpc_listener: TcpListener,
    /// Listener for the plaintext ops port.
    pub ops_listener: TcpListener,
    /// How often the witness polls the hub's latest checkpoint.
    pub witness_interval: std::time::Duration,
    /// Opens the store.
    pub open_store:
        Box<dyn FnOnce() -> Result<Arc<dyn NodeStore>, rcpfed_store::StoreError> + Send>,
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Store failure.
    #[error("store: {0}")]
    Store(#[from] rcpfed_store::StoreError),
    /// TLS material.
    #[error("tls: {0}")]
    Tls(#[from] rcpfed_grpc::tls::TlsError),
    /// gRPC server.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Listener I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the node until `shutdown` is cancelled.
pub async fn run(settings: NodeSettings, shutdown: CancellationToken) -> Result<(), NodeError> {
    let NodeSettings {
        federation,
        node_id,
        signing_key,
        tls,
        hub_endpoint,
        grpc_listener,
        ops_listener,
        witness_interval,
        open_store,
    } = settings;
    let member = federation
        .member(&node_id)
        .ok_or_else(|| NodeError::Config(format!("node {node_id} is not in the member file")))?;
    if member.key(signing_key.key_id()).is_none() {
        return Err(NodeError::Config(format!(
            "signing key {} is not a key of {node_id} in the member file",
            signing_key.key_id()
        )));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health.set_not_serving::<NodeServiceServer<Node>>().await;
    let registry = prometheus_client::registry::Registry::default();
    let ops_shutdown = shutdown.clone();
    let ops = tokio::spawn(rcpfed_grpc::ops::serve_ops(
        ops_listener,
        health_service.clone(),
        Arc::new(registry),
        async move { ops_shutdown.cancelled().await },
    ));

    let store = tokio::task::spawn_blocking(open_store)
        .await
        .map_err(|e| NodeError::Config(format!("store opener panicked: {e}")))??;
    let channel = rcpfed_grpc::tls::lazy_channel(&hub_endpoint, &tls)
        .map_err(|e| NodeError::Config(format!("hub endpoint {hub_endpoint}: {e}")))?;
    let state = Arc::new(NodeState::default());
    let witness = Arc::new(
        witness::Witness::new(
            &federation,
            &node_id,
            signing_key.clone(),
            Arc::clone(&store),
            health.clone(),
        )
        .map_err(NodeError::Config)?,
    );
    witness.report_health().await;
    if witness.is_forked() {
        tracing::error!(
            "this node has recorded a fork of the hub's log: the witness role stays NOT_SERVING"
        );
    }
    let wakeup = Arc::new(tokio::sync::Notify::new());
    let publisher = publish::Publisher::new(
        Arc::clone(&federation),
        node_id.clone(),
        signing_key,
        Arc::clone(&store),
        Arc::clone(&wakeup),
    );
    let outbox_task = tokio::spawn(outbox::run(
        outbox::Outbox {
            federation: Arc::clone(&federation),
            node_id: node_id.clone(),
            store: Arc::clone(&store),
            wakeup: Arc::clone(&wakeup),
            state: Arc::clone(&state),
            witness: Arc::clone(&witness),
        },
        channel.clone(),
        shutdown.clone(),
    ));
    let mirror_task = tokio::spawn(mirror::run(
        Arc::clone(&federation),
        Arc::clone(&store),
        channel.clone(),
        Arc::clone(&state),
        Arc::clone(&witness),
        shutdown.clone(),
    ));
    let witness_task = tokio::spawn(witness::run(
        Arc::clone(&witness),
        channel,
        witness_interval,
        shutdown.clone(),
    ));
    let witness_rpc = service::WitnessRpc {
        federation: Arc::clone(&federation),
        witness: Arc::clone(&witness),
    };
    let node = Node {
        federation: Arc::clone(&federation),
        node_id: node_id.clone(),
        store,
        publisher,
        state,
    };
    let (reflection_v1, reflection_v1alpha) = rcpfed_grpc::reflection_services()?;
    let addr = grpc_listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
    health.set_service_status("", ServingStatus::Serving).await;
    health.set_serving::<NodeServiceServer<Node>>().await;
    tracing::info!(%addr, node = %node_id, hub = %hub_endpoint, "node serving (mTLS)");

    let health_on_shutdown = health.clone();
    let server_shutdown = shutdown.clone();
    let served = tonic::transport::Server::builder()
        .tls_config(tls.server_config()?)?
        .timeout(limits::REQUEST_TIMEOUT)
        .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(limits::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(limits::KEEPALIVE_TIMEOUT))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            rcpfed_proto::v1::witness_service_server::WitnessServiceServer::new(witness_rpc),
        )
        .add_service(
            NodeServiceServer::new(node)
                .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(limits::MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            server_shutdown.cancelled().await;
            health_on_shutdown
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health_on_shutdown
                .set_not_serving::<NodeServiceServer<Node>>()
                .await;
            tracing::info!("node shutting down");
        })
        .await;
    shutdown.cancel();
    let _ = outbox_task.await;
    let _ = mirror_task.await;
    let _ = witness_task.await;
    let _ = ops.await;
    served?;
    Ok(())
}
