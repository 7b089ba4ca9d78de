//! The plaintext ops port: `grpc.health.v1.Health` for probes (Kubernetes gRPC probes are
//! plaintext), reflection for the health service only, and Prometheus `/metrics`. No federation
//! data is served here.

use axum::response::IntoResponse as _;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::service::Routes;

/// Serves health and metrics on `listener` until `shutdown` resolves.
pub async fn serve_ops(
    listener: TcpListener,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = move || {
        let registry = Arc::clone(&registry);
        async move {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &registry) {
                Ok(()) => (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response(),
                Err(_) => (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "metrics encoding failed",
                )
                    .into_response(),
            }
        }
    };
    // Reflection describes only the health service here, so grpcurl works on this port
    // without the rcpfed API being exposed in plaintext.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(std::io::Error::other)?;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(std::io::Error::other)?;
    let router = Routes::new(health)
        .add_service(reflection_v1alpha)
        .add_service(reflection_v1)
        .into_axum_router()
        .route("/metrics", get(metrics));
    // Without TCP_NODELAY a probe's first answer can wait ~40 ms for delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
