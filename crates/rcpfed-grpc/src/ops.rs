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

/// Registers `rcpfed_build_info{version}` (always 1), so dashboards can tell versions apart,
/// and the process metrics ([`ProcessCollector`]).
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
    registry.register_collector(Box::new(ProcessCollector));
}

/// The standard process metrics of Prometheus clients, read from `/proc/self` at each scrape:
/// `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`,
/// `process_start_time_seconds`. Registered with [`register_build_info`]. Where `/proc` is
/// missing (not Linux) they are left out.
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self` says: RSS bytes, CPU seconds, open descriptors, start time (Unix s).
fn read_process() -> Option<(i64, f64, i64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime, stime are fields 14, 15 and starttime 22 of the whole line (1-based); here the
    // first field after ')' is field 3.
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    let hz = 100.0; // USER_HZ, 100 on every Linux the project targets
    let cpu = (ticks(14)? + ticks(15)?) / hz;
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse::<i64>()
        .ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    let start = boot + ticks(22)? / hz;
    Some((rss_pages * 4096, cpu, fds, start))
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Some((rss, cpu, fds, start)) = read_process() else {
            return Ok(());
        };
        let rss = ConstGauge::new(rss);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            rss.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(cpu);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let fds = ConstGauge::new(fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            fds.metric_type(),
        )?)?;
        let start = ConstGauge::new(start);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_and_process_metrics_are_exported() {
        let mut registry = Registry::default();
        register_build_info(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("rcpfed_build_info{version="), "{text}");
        for name in [
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "no {name}in\n{text}");
        }
        let (rss, _, fds, start) = read_process().expect("/proc/self");
        assert!(rss > 1024 * 1024 && fds > 0, "rss {rss}, fds {fds}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "start {start}"
        );
    }
}
