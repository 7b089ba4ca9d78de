//! The public read-only HTTP listener (`http_listen`): plain HTTP/1.1 and HTTP/2 for the
//! tools people already use, which hold no federation certificate. Each part of the service
//! mounts its own [`axum::Router`] under its own prefix (the hub's log as tlog-tiles under
//! `/tlog`); [`serve`] adds the answer for every other path. Only published, signed data is
//! served here, and nothing here can change state: every route is `GET` (and `HEAD`).

use axum::response::{IntoResponse as _, Response};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Requests answered at once on the public listener; more get 503 at once rather than queue
/// (each may hold an entry bundle of up to 16 MiB while it is sent), so anonymous readers
/// cannot take the hub's memory or its store readers.
pub const MAX_CONCURRENT_REQUESTS: usize = 32;

/// Serves `routes` on `listener` until `shutdown` resolves. `served` names what is mounted,
/// for the 404 answer to any other path.
pub async fn serve(
    listener: TcpListener,
    routes: axum::Router,
    served: &'static str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
    let router = routes
        .fallback(move || async move { not_found(served) })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let slots = Arc::clone(&slots);
                async move {
                    match slots.try_acquire_owned() {
                        // Held until the answer is built (a body streamed later is not counted).
                        Ok(_slot) => next.run(request).await,
                        Err(_) => busy(),
                    }
                }
            },
        ));
    // Without TCP_NODELAY a small answer can wait ~40 ms for delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn busy() -> Response {
    (
        http::StatusCode::SERVICE_UNAVAILABLE,
        [
            (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (http::header::RETRY_AFTER, "1"),
        ],
        format!(
            "busy: {MAX_CONCURRENT_REQUESTS} requests are being answered; try again in a second\n"
        ),
    )
        .into_response()
}

fn not_found(served: &str) -> Response {
    (
        http::StatusCode::NOT_FOUND,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("not found: this listener serves {served}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Sends one HTTP/1.1 GET and returns the status line.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_beyond_the_limit_are_answered_busy_at_once() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let entered = Arc::new(tokio::sync::Semaphore::new(0));
        let routes = {
            let (release, entered) = (Arc::clone(&release), Arc::clone(&entered));
            axum::Router::new().route(
                "/slow",
                axum::routing::get(move || {
                    let (release, entered) = (Arc::clone(&release), Arc::clone(&entered));
                    async move {
                        entered.add_permits(1);
                        release.acquire().await.expect("open").forget();
                        "done"
                    }
                }),
            )
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, routes, "/slow", std::future::pending()));
        let held: Vec<_> = (0..MAX_CONCURRENT_REQUESTS)
            .map(|_| tokio::spawn(get(addr, "/slow")))
            .collect();
        // Every slot is taken by a request waiting in the handler.
        let all_in = entered
            .acquire_many(u32::try_from(MAX_CONCURRENT_REQUESTS).unwrap())
            .await
            .unwrap();
        all_in.forget();
        let extra = tokio::time::timeout(std::time::Duration::from_secs(5), get(addr, "/slow"))
            .await
            .expect("the request over the limit is answered at once, not queued");
        assert_eq!(extra, "HTTP/1.1 503 Service Unavailable");
        release.add_permits(MAX_CONCURRENT_REQUESTS);
        for h in held {
            assert_eq!(h.await.unwrap(), "HTTP/1.1 200 OK");
        }
        // Slots are given back.
        assert_eq!(get(addr, "/elsewhere").await, "HTTP/1.1 404 Not Found");
    }
}
