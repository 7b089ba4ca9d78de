//! The server start-up the hub and the node share: the plaintext ops port (health, metrics)
//! and the mTLS gRPC server with its layers (RPC metrics, admission, deadline), health,
//! reflection, CRL freshness watch and bounded drain at shutdown. Each process adds only its
//! own services and what it does when the server ends.

use crate::acceptor::{ReloadingTlsAcceptor, StaleCrl};
use crate::admission::{AdmissionLayer, MethodRule};
use crate::deadline::DeadlineLayer;
use crate::limits;
use crate::rpc_metrics::{RpcMetrics, RpcMetricsLayer};
use crate::shared::SharedFederation;
use crate::tls::TlsFiles;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

/// Why the gRPC server could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS material could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// I/O on the listener.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Marks the overall status (`""`) and each of `services` (full gRPC names) `NOT_SERVING`.
pub async fn mark_not_serving(health: &HealthReporter, services: &[&str]) {
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for service in services {
        health
            .set_service_status(*service, ServingStatus::NotServing)
            .await;
    }
}

/// Marks the overall status (`""`) and each of `services` `SERVING`.
async fn mark_serving(health: &HealthReporter, services: &[&str]) {
    health.set_service_status("", ServingStatus::Serving).await;
    for service in services {
        health
            .set_service_status(*service, ServingStatus::Serving)
            .await;
    }
}

/// Waits for a background server or task to end and logs how it failed: a panic, or the error
/// it returned (nothing else would report it once the process is stopping).
pub async fn log_failure<E: std::fmt::Display>(name: &str, task: JoinHandle<Result<(), E>>) {
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(task = name, error = %e, "failed"),
        Err(e) => tracing::error!(task = name, error = %e, "task failed"),
    }
}

/// The running ops port: health and `/metrics` in plaintext, for probes and scrapers.
pub struct OpsPort {
    /// The health every probe reads, on this port and on the gRPC port.
    pub health: HealthReporter,
    /// The per-RPC metrics the gRPC server's outermost layer records.
    pub rpc_metrics: RpcMetrics,
    task: JoinHandle<std::io::Result<()>>,
}

impl OpsPort {
    /// Starts the ops port on `listener` until `shutdown`, with `services` `NOT_SERVING` (the
    /// process serves nothing before its store is open). `register` adds the process's own
    /// metrics, before the RPC metrics and the build info.
    pub async fn start<M>(
        listener: TcpListener,
        services: &[&str],
        shutdown: CancellationToken,
        register: impl FnOnce(&mut Registry) -> M,
    ) -> std::io::Result<(Self, M)> {
        let (health, _) = tonic_health::server::health_reporter();
        // tonic-health starts "" as SERVING; nothing is served until the store is open.
        mark_not_serving(&health, services).await;
        let mut registry = Registry::default();
        let own = register(&mut registry);
        let rpc_metrics = RpcMetrics::register(&mut registry);
        crate::ops::register_build_info(&mut registry);
        let ops_addr = listener.local_addr()?;
        let task = tokio::spawn(crate::ops::serve_ops(
            listener,
            health.clone(),
            Arc::new(registry),
            async move { shutdown.cancelled().await },
        ));
        tracing::info!(%ops_addr, "ops port (health, /metrics) listening");
        let ops = OpsPort {
            health,
            rpc_metrics,
            task,
        };
        Ok((ops, own))
    }

    /// Waits until `stop_by` for the ops port to stop (its shutdown must have been
    /// cancelled); a failure of the port or a port still running then is logged.
    pub async fn stopped(self, stop_by: Instant) {
        match tokio::time::timeout_at(stop_by, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "ops server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "ops server task failed"),
            Err(_) => tracing::warn!("ops server did not stop in time"),
        }
    }
}

/// What the mTLS gRPC server of a process is made of, before its own services are added.
pub struct GrpcServer<'a> {
    /// The gRPC port.
    pub listener: TcpListener,
    /// The server's certificate, key and the federation CA.
    pub tls: &'a TlsFiles,
    /// The CRL to refuse revoked client certificates with (reloaded when it changes).
    pub crl_file: Option<&'a Path>,
    /// What the server does while the CRL is past its nextUpdate.
    pub stale_crl: StaleCrl,
    /// The health served on the gRPC port (the ops port's).
    pub health: HealthReporter,
    /// The per-RPC metrics (the ops port's).
    pub rpc_metrics: RpcMetrics,
    /// The federation whose members the admission layer knows.
    pub federation: SharedFederation,
    /// Who may call which method, and how large its messages may be.
    pub rules: &'static [MethodRule],
    /// The methods exempt from the request deadline (their handlers bound themselves).
    pub self_bounded: &'static [&'static str],
    /// The rcpfed services reflection lists.
    pub reflected: &'a [&'a str],
    /// The services marked `SERVING` once the server accepts connections.
    pub serving: &'a [&'a str],
}

/// The layers every call passes, outermost first: RPC metrics, admission, deadline.
type ServerLayers = Stack<DeadlineLayer, Stack<AdmissionLayer, Stack<RpcMetricsLayer, Identity>>>;

/// The gRPC server accepting connections, before its services are served.
pub struct Listening {
    addr: SocketAddr,
    incoming: crate::acceptor::MtlsIncoming,
    acceptor: ReloadingTlsAcceptor,
    crl_watch: JoinHandle<()>,
    builder: tonic::transport::Server<ServerLayers>,
    base_routes: tonic::service::Routes,
    phase: CancellationToken,
}

impl GrpcServer<'_> {
    /// Loads the TLS material, marks the services `SERVING` and starts the CRL freshness watch;
    /// the server stops accepting when `phase` ends.
    pub async fn listen(self, phase: CancellationToken) -> Result<Listening, ServerError> {
        let (reflection_v1, reflection_v1alpha) = crate::reflection_services(self.reflected)?;
        let addr = self.listener.local_addr()?;
        // mTLS on rustls with the CRL, reloaded when it changes (tonic's TLS has no CRL hook).
        let (incoming, acceptor) =
            crate::acceptor::mtls_incoming_with_acceptor(self.listener, self.tls, self.crl_file)?;
        acceptor.set_stale_crl(self.stale_crl);
        mark_serving(&self.health, self.serving).await;
        // Started after the start-up SERVING, which would otherwise hide a stale CRL.
        let crl_watch = crate::acceptor::watch_crl_freshness(
            acceptor.clone(),
            self.health.clone(),
            phase.clone(),
        );
        let builder = tonic::transport::Server::builder()
            // Outermost, so every answer is counted, refusals by the layers below included.
            .layer(RpcMetricsLayer::new(self.rpc_metrics))
            // Who may call what, and how large each message may be, before any body is read.
            .layer(AdmissionLayer::new(self.federation, self.rules))
            .layer(DeadlineLayer {
                timeout: limits::REQUEST_TIMEOUT,
                self_bounded: self.self_bounded,
            })
            .max_concurrent_streams(limits::MAX_CONCURRENT_STREAMS)
            .http2_keepalive_interval(Some(limits::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(limits::KEEPALIVE_TIMEOUT));
        // No `tcp_keepalive`: tonic ignores it for a server fed its own connections (the mTLS
        // acceptor's); dead peers are found by the HTTP/2 keepalive and the idle bound.
        let base_routes =
            tonic::service::Routes::new(tonic_health::pb::health_server::HealthServer::new(
                tonic_health::server::HealthService::from_health_reporter(self.health),
            ))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        Ok(Listening {
            addr,
            incoming,
            acceptor,
            crl_watch,
            builder,
            base_routes,
            phase,
        })
    }
}

impl Listening {
    /// The address the gRPC port listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves health, reflection and `add_services`'s services until the phase ends, then
    /// runs `on_shutdown` and drains (bounded: silent or stuck peers cannot keep the process
    /// from stopping).
    pub async fn serve(
        self,
        add_services: impl FnOnce(tonic::service::Routes) -> tonic::service::Routes,
        on_shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Listening {
            incoming,
            acceptor,
            crl_watch,
            mut builder,
            base_routes,
            phase,
            ..
        } = self;
        let server_shutdown = phase.clone();
        let serve = builder
            .add_routes(add_services(base_routes))
            .serve_with_incoming_shutdown(incoming, async move {
                server_shutdown.cancelled().await;
                on_shutdown.await;
            });
        // None: the server was left behind after the drain (already logged).
        let served = crate::acceptor::serve_with_bounded_drain(serve, phase.clone(), acceptor)
            .await
            .unwrap_or(Ok(()));
        phase.cancel();
        if let Err(e) = crl_watch.await {
            tracing::error!(error = %e, "CRL freshness watch failed");
        }
        served?;
        Ok(())
    }
}
