//! The per-request deadline of the hub's and the nodes' gRPC servers.
//!
//! Every RPC is cut at [`crate::limits::REQUEST_TIMEOUT`] (a stuck client cannot hold a
//! handler), except the large-snapshot streams (`HubService.SubmitSnapshot`,
//! `NodeService.PublishSnapshot`): a large snapshot legitimately takes longer than any fixed
//! bound to upload, check and store, so those handlers bound themselves instead (an idle limit
//! between messages and an overall limit, see [`SNAPSHOT_IDLE_TIMEOUT`] and
//! [`SNAPSHOT_TIMEOUT`]). tonic's own `Server::timeout` applies to every method alike, hence
//! this layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Longest wait for the next message of a `SubmitSnapshot` stream.
pub const SNAPSHOT_IDLE_TIMEOUT: Duration = crate::limits::REQUEST_TIMEOUT;

/// Longest a `SubmitSnapshot` call may take to deliver its envelope and chunks.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The hub's methods that bound themselves.
pub const HUB_SELF_BOUNDED: &[&str] = &["/rcpfed.v1.HubService/SubmitSnapshot"];

/// The node's methods that bound themselves.
pub const NODE_SELF_BOUNDED: &[&str] = &["/rcpfed.v1.NodeService/PublishSnapshot"];

/// Applies the deadline to every request but the self-bounded ones.
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    /// The deadline.
    pub timeout: Duration,
    /// Request paths exempt from it (their handlers bound themselves).
    pub self_bounded: &'static [&'static str],
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            timeout: self.timeout,
            self_bounded: self.self_bounded,
        }
    }
}

/// See [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
    self_bounded: &'static [&'static str],
}

impl<S, B> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let bounded = !self.self_bounded.contains(&request.uri().path());
        let timeout = self.timeout;
        // The client's own deadline, when shorter, bounds the store work too (see `call_deadline`).
        let store_budget = client_timeout(request.headers()).map_or(timeout, |t| t.min(timeout));
        let call = self.inner.call(request);
        Box::pin(async move {
            if !bounded {
                return call.await;
            }
            let call = CALL_DEADLINE.scope(tokio::time::Instant::now() + store_budget, call);
            match tokio::time::timeout(timeout, call).await {
                Ok(answer) => answer,
                // What tonic's own timeout answers, so clients see no change.
                Err(_) => Ok(tonic::Status::cancelled("Timeout expired").into_http()),
            }
        })
    }
}

tokio::task_local! {
    pub(crate) static CALL_DEADLINE: tokio::time::Instant;
}

/// When the current call's deadline passes (the server's, or the client's `grpc-timeout` when
/// shorter), for work that must stop then: store reads are interrupted at it. None outside a
/// deadline-bound call.
pub fn call_deadline() -> Option<tokio::time::Instant> {
    CALL_DEADLINE.try_with(|d| *d).ok()
}

/// The client's `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, Service as _};

    /// Answers OK after `delay`.
    #[derive(Clone)]
    struct Slow(Duration);

    impl tower::Service<http::Request<()>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    /// Answers OK and records the call deadline it ran under.
    #[derive(Clone)]
    struct Observe(std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

    impl tower::Service<http::Request<()>> for Observe {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let seen = self.0.clone();
            Box::pin(async move {
                if let Ok(mut slot) = seen.lock() {
                    *slot = call_deadline();
                }
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    #[tokio::test]
    async fn the_call_deadline_is_the_clients_when_shorter() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mut service = DeadlineLayer {
            timeout: Duration::from_secs(30),
            self_bounded: HUB_SELF_BOUNDED,
        }
        .layer(Observe(seen.clone()));
        let call = |timeout: Option<&str>| {
            let mut request =
                http::Request::builder().uri("http://hub/rcpfed.v1.HubService/ListStatements");
            if let Some(t) = timeout {
                request = request.header("grpc-timeout", t);
            }
            request.body(()).unwrap_or_default()
        };
        let deadline = |seen: &std::sync::Mutex<Option<tokio::time::Instant>>| {
            seen.lock().ok().and_then(|s| *s)
        };
        let start = tokio::time::Instant::now();
        let _ = service.call(call(Some("200m"))).await;
        let short = deadline(&seen).map(|d| d - start);
        assert!(
            // 200 ms from when the layer saw the call, well short of the server's 30 s.
            short.is_some_and(|d| d >= Duration::from_millis(200) && d < Duration::from_secs(5)),
            "{short:?}"
        );
        let _ = service.call(call(Some("5H"))).await;
        let long = deadline(&seen).map(|d| d - start);
        assert!(
            long.is_some_and(|d| d <= Duration::from_secs(31)),
            "{long:?}"
        );
        assert_eq!(client_timeout(call(Some("123456789S")).headers()), None);
        assert_eq!(client_timeout(call(Some("7x")).headers()), None);
        assert_eq!(call_deadline(), None, "none outside a call");
    }

    fn grpc_status(response: &http::Response<tonic::body::Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn every_call_but_submit_snapshot_is_cut_at_the_deadline() {
        let mut service = DeadlineLayer {
            timeout: Duration::from_millis(50),
            self_bounded: HUB_SELF_BOUNDED,
        }
        .layer(Slow(Duration::from_millis(300)));
        let call = |path: &str| {
            http::Request::builder()
                .uri(format!("http://hub{path}"))
                .body(())
                .unwrap_or_default()
        };
        let cut = service
            .call(call("/rcpfed.v1.HubService/SubmitStatement"))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(grpc_status(&cut), Some("1"), "CANCELLED, as tonic answers");
        let long = service
            .call(call("/rcpfed.v1.HubService/SubmitSnapshot"))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(grpc_status(&long), None, "the handler's own answer");
    }
}
