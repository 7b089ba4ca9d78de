//! The plaintext ops port: `grpc.health.v1.Health` for probes (Kubernetes gRPC probes are
//! plaintext), reflection for the health service only, Prometheus `/metrics`, and the same
//! health state over plain HTTP for probes that speak only HTTP (`/livez`, `/readyz`). Any
//! other path is 404. No federation data is served here.

use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health as _, HealthServer};
use tonic_health::server::{HealthReporter, HealthService};

/// Registers `rcpfed_build_info{version}` (always 1), so dashboards can tell versions apart.
pub fn register_build_info(registry: &mut Registry) {
    #[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
    struct Build {
        version: String,
    }
    let info = prometheus_client::metrics::family::Family::<
        Build,
        prometheus_client::metrics::gauge::Gauge,
    >::default();
    info.get_or_create(&Build {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
    .set(1);
    registry.register("rcpfed_build_info", "The running rcpfed version", info);
}

/// The overall health ("" entry) as the gRPC health service reports it.
async fn overall(health: &HealthService) -> ServingStatus {
    let request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    match health.check(request).await {
        Ok(answer) => {
            ServingStatus::try_from(answer.into_inner().status).unwrap_or(ServingStatus::Unknown)
        }
        Err(_) => ServingStatus::Unknown,
    }
}

/// `/readyz`: 200 `SERVING` when the process serves, else 503 with the state.
async fn ready(health: Arc<HealthService>) -> Response {
    let status = overall(&health).await;
    let code = if status == ServingStatus::Serving {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", status.as_str_name())).into_response()
}

/// Anything else: a gRPC caller gets UNIMPLEMENTED, anyone else 404 with what is served here.
async fn not_found(request: http::Request<axum::body::Body>) -> Response {
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented(
            "the ops port serves only grpc.health.v1.Health and reflection",
        )
        .into_http::<()>()
        .into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    (
        http::StatusCode::NOT_FOUND,
        "not found: this ops port serves /metrics, /livez, /readyz and grpc.health.v1.Health\n",
    )
        .into_response()
}

/// Serves health and metrics on `listener` until `shutdown` resolves.
pub async fn serve_ops(
    listener: TcpListener,
    health: HealthReporter,
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
    let health_http = Arc::new(HealthService::from_health_reporter(health.clone()));
    let router = Routes::new(HealthServer::new(HealthService::from_health_reporter(
        health,
    )))
    .add_service(reflection_v1alpha)
    .add_service(reflection_v1)
    .into_axum_router()
    .route("/metrics", get(metrics))
    .route("/livez", get(|| async { "alive\n" }))
    .route("/readyz", get(move || ready(Arc::clone(&health_http))))
    .fallback(not_found);
    // Without TCP_NODELAY a probe's first answer can wait ~40 ms for delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
