//! A channel to one logical hub served by several processes (a leader and its standbys, each
//! at its own endpoint). Calls go to the current endpoint; it moves on to the next one when a
//! call fails in transport (refused or reset connection, handshake or connect timeout, dead
//! keepalive, call timeout) or is answered UNAVAILABLE with reason NOT_LEADER (a standby, or a
//! leader whose term is over). The call itself is not repeated here: its caller retries as it
//! does after any failure, and the retry goes to the next endpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::transport::Channel;

/// See the module documentation. Cheap to clone; clones share the current endpoint.
#[derive(Clone)]
pub struct FailoverChannel {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<(String, Channel)>,
    current: AtomicUsize,
}

impl std::fmt::Debug for FailoverChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverChannel")
            .field("current", &self.current_endpoint())
            .finish_non_exhaustive()
    }
}

impl FailoverChannel {
    /// A channel over `endpoints` (name, channel), tried in this order; None when empty.
    pub fn new(endpoints: Vec<(String, Channel)>) -> Option<Self> {
        if endpoints.is_empty() {
            return None;
        }
        Some(FailoverChannel {
            inner: Arc::new(Inner {
                endpoints,
                current: AtomicUsize::new(0),
            }),
        })
    }

    /// A channel to one endpoint only.
    pub fn single(name: &str, channel: Channel) -> Self {
        FailoverChannel {
            inner: Arc::new(Inner {
                endpoints: vec![(name.to_string(), channel)],
                current: AtomicUsize::new(0),
            }),
        }
    }

    /// The endpoint calls go to now.
    pub fn current_endpoint(&self) -> &str {
        let index = self.inner.current.load(Ordering::SeqCst);
        self.inner
            .endpoints
            .get(index)
            .map_or("", |(name, _)| name.as_str())
    }

    /// Moves from endpoint `from` to the next one, unless another call moved already.
    fn move_on(&self, from: usize, why: &str) {
        let count = self.inner.endpoints.len();
        if count < 2 {
            return;
        }
        let to = (from + 1) % count;
        if self
            .inner
            .current
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            tracing::warn!(
                from = %self.inner.endpoints[from].0,
                to = %self.inner.endpoints[to].0,
                why,
                "switching to the next hub endpoint"
            );
        }
    }
}

/// Whether a response's headers carry the NOT_LEADER refusal (an error answer's status travels
/// in the headers when nothing else is sent).
fn refused_not_leader(headers: &http::HeaderMap) -> bool {
    tonic::Status::from_header_map(headers).is_some_and(|s| crate::status::is_not_leader(&s))
}

impl tower::Service<http::Request<Body>> for FailoverChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per call, on the endpoint the call goes to.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let index = self.inner.current.load(Ordering::SeqCst) % self.inner.endpoints.len();
        let mut channel = self.inner.endpoints[index].1.clone();
        let this = self.clone();
        Box::pin(async move {
            let answer = async {
                std::future::poll_fn(|cx| tower::Service::poll_ready(&mut channel, cx)).await?;
                tower::Service::call(&mut channel, request).await
            }
            .await;
            match &answer {
                Err(e) => this.move_on(index, &format!("transport failure: {e}")),
                Ok(response) if refused_not_leader(response.headers()) => {
                    this.move_on(index, "the hub there is not the leader (NOT_LEADER)");
                }
                Ok(_) => {}
            }
            answer
        })
    }
}
