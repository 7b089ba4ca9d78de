//! Per-RPC metrics for hub and node servers: requests by method and gRPC status code, and a
//! latency histogram by method (from the request's arrival to the end of the response, so a
//! stream's entry measures the stream's life). Outermost layer, so refusals by admission and
//! the deadline layer are counted too.

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

/// Latency buckets in seconds: 1 ms to about 1 min.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

/// The metrics; cheap to clone.
#[derive(Clone)]
pub struct RpcMetrics {
    calls: Family<CallLabels, Counter>,
    seconds: Family<MethodLabel, Histogram>,
}

impl RpcMetrics {
    /// Creates the metrics and registers them as `rcpfed_rpc_requests` and
    /// `rcpfed_rpc_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = RpcMetrics {
            calls: Family::default(),
            seconds: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
        };
        registry.register(
            "rcpfed_rpc_requests",
            "gRPC requests served, by method and status code",
            m.calls.clone(),
        );
        registry.register(
            "rcpfed_rpc_duration_seconds",
            "Time from a request's arrival to the end of its response, by method",
            m.seconds.clone(),
        );
        m
    }

    fn record(&self, method: &str, code: tonic::Code, started: Instant) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_string(),
                code: code_name(code).to_string(),
            })
            .inc();
        self.seconds
            .get_or_create(&MethodLabel {
                method: method.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The method label: the gRPC path for the services served here, one word for anything else,
/// so a caller cannot make up label values.
fn method_label(path: &str) -> String {
    let known = ["/rcpfed.v1.", "/grpc.health.v1.", "/grpc.reflection."];
    if known.iter().any(|p| path.starts_with(p)) && path.len() <= 128 {
        path.to_string()
    } else {
        "other".to_string()
    }
}

/// The status code's name as gRPC documents it (`OK`, `INVALID_ARGUMENT`, …).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
}

/// The layer (see the module documentation).
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        RpcMetricsLayer {
            metrics: Arc::new(metrics),
        }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetered<S>;

    fn layer(&self, inner: S) -> RpcMetered<S> {
        RpcMetered {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// See [`RpcMetricsLayer`].
#[derive(Clone)]
pub struct RpcMetered<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for RpcMetered<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.uri().path());
        let metrics = Arc::clone(&self.metrics);
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            // A trailers-only answer (most refusals) has its status in the headers.
            if let Some(code) = status_in(response.headers()) {
                metrics.record(&method, code, started);
                return Ok(response);
            }
            Ok(response.map(|body| {
                tonic::body::Body::new(MeteredBody {
                    inner: body,
                    pending: Some(Pending {
                        metrics,
                        method,
                        started,
                    }),
                })
            }))
        })
    }
}

/// What is recorded once the response ends.
struct Pending {
    metrics: Arc<RpcMetrics>,
    method: String,
    started: Instant,
}

impl Pending {
    fn record(self, code: tonic::Code) {
        self.metrics.record(&self.method, code, self.started);
    }
}

/// A response body that records the call when its trailers (with `grpc-status`) go by, or as
/// `CANCELLED` when it is dropped before its end (the client went away).
struct MeteredBody {
    inner: tonic::body::Body,
    pending: Option<Pending>,
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.record(tonic::Code::Cancelled);
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in)
                    && let Some(pending) = this.pending.take()
                {
                    pending.record(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(pending) = this.pending.take() {
                    pending.record(status.code());
                }
            }
            Poll::Ready(None) => {
                // Ended without a status: count it as such rather than lose it.
                if let Some(pending) = this.pending.take() {
                    pending.record(tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn method_labels_are_bounded_to_the_served_services() {
        assert_eq!(
            method_label("/rcpfed.v1.HubService/GetCheckpoint"),
            "/rcpfed.v1.HubService/GetCheckpoint"
        );
        assert_eq!(method_label("/made.up/Anything"), "other");
        assert_eq!(
            method_label(&format!("/rcpfed.v1.{}", "x".repeat(500))),
            "other"
        );
    }

    #[test]
    fn a_call_is_counted_by_method_and_code_with_its_latency() {
        let mut registry = Registry::default();
        let metrics = RpcMetrics::register(&mut registry);
        metrics.record(
            "/rcpfed.v1.HubService/GetCheckpoint",
            tonic::Code::NotFound,
            Instant::now(),
        );
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                r#"rcpfed_rpc_requests_total{method="/rcpfed.v1.HubService/GetCheckpoint",code="NOT_FOUND"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("rcpfed_rpc_duration_seconds_bucket"),
            "{text}"
        );
    }
}
