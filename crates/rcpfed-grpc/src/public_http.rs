//! The public read-only HTTP listener (`http_listen`): plain HTTP/1.1 and HTTP/2 for the
//! tools people already use, which hold no federation certificate. Each part of the service
//! mounts its own [`axum::Router`] under its own prefix (the hub's log as tlog-tiles under
//! `/tlog`); [`serve`] adds the answer for every other path. Only published, signed data is
//! served here, and nothing here can change state: every route is `GET` (and `HEAD`).

use axum::response::{IntoResponse as _, Response};
use tokio::net::TcpListener;

/// Serves `routes` on `listener` until `shutdown` resolves. `served` names what is mounted,
/// for the 404 answer to any other path.
pub async fn serve(
    listener: TcpListener,
    routes: axum::Router,
    served: &'static str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = routes.fallback(move || async move { not_found(served) });
    // Without TCP_NODELAY a small answer can wait ~40 ms for delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn not_found(served: &str) -> Response {
    (
        http::StatusCode::NOT_FOUND,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("not found: this listener serves {served}\n"),
    )
        .into_response()
}
