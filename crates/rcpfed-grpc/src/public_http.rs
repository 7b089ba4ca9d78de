//! The public read-only HTTP listener (`http_listen`), on the hub and on nodes: HTTPS (or
//! plain HTTP behind a TLS-terminating proxy), HTTP/1.1 and HTTP/2, for the tools people
//! already use. Each part of the service mounts its own [`axum::Router`] under its own prefix
//! (the hub's log as tlog-tiles under `/tlog`); [`serve`] adds the answer for every other
//! path. Only published, signed data is served here, and nothing here can change state.
//!
//! Who may read is a setting ([`HttpAccess`]): anyone, or only holders of a federation
//! certificate whose member has the reader role (checked once per connection, right after the
//! TLS handshake, against the federation in force; others get 401/403 to every request).
//!
//! Anonymous clients are bounded before they cost anything: TLS handshakes share the gRPC
//! servers' caps (in total, per address, 5 s), open connections are capped in total and per
//! address, a connection silent after its handshake or between requests is closed, request
//! headers must arrive within [`HEADER_READ_TIMEOUT`] (slowloris), and at most
//! [`MAX_CONCURRENT_REQUESTS`] requests are answered at once.

use crate::acceptor::{ClientCertificate, ReloadingTlsAcceptor, RevocableTcp, ServerOptions};
use crate::shared::SharedFederation;
use crate::tls::{TlsError, TlsFiles};
use axum::response::{IntoResponse as _, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcpfed_core::members::Role;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

/// Requests answered at once on the public listener, counted until their answer's body is
/// dropped (sent, or its client gone); more get 503 at once rather than queue (each may hold an
/// entry bundle of up to 16 MiB while it is sent), so anonymous readers cannot take the hub's
/// memory or its store readers.
pub const MAX_CONCURRENT_REQUESTS: usize = 32;
/// Open connections on the public listener; one over it is closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Open connections from one source (an IPv4 address, or an IPv6 /64: one host or site can
/// use a whole /64); one over it is closed at once.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 16;
/// How long an HTTP/1.1 client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may say nothing after its handshake (or after it was accepted).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may go without sending a byte later (idle keep-alive).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 streams per connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// After shutdown starts, how long open requests get before their connections are closed.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// Who may read from the listener.
#[derive(Clone)]
pub enum HttpAccess {
    /// Anyone who can reach it (published, signed data only).
    Public,
    /// Holders of a federation certificate whose member has the reader role.
    Readers(SharedFederation),
}

/// How the listener speaks.
pub enum HttpTransport {
    /// Plain HTTP: only behind a proxy that terminates TLS, or on loopback.
    Plain,
    /// HTTPS with the given acceptor (see [`https_acceptor`]).
    Tls(ReloadingTlsAcceptor),
}

/// The listener and how it is served.
pub struct PublicHttp {
    /// Bound already (so its address can be reported before serving starts).
    pub listener: TcpListener,
    /// HTTPS or plain HTTP.
    pub transport: HttpTransport,
    /// Who may read.
    pub access: HttpAccess,
}

/// The listener as configured, before the federation in force is known.
pub struct HttpSettings {
    /// Bound already (so its address can be reported before serving starts).
    pub listener: TcpListener,
    /// The certificate and key to present, with the federation CA that client certificates
    /// are checked against; None: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Only members with the reader role may read (requires `tls`).
    pub readers_only: bool,
}

impl HttpSettings {
    /// The listener ready to serve, with `crl` for client certificates and `federation` (the
    /// one in force, followed as it changes) for the reader check.
    pub fn prepare(
        self,
        crl: Option<PathBuf>,
        federation: SharedFederation,
    ) -> Result<PublicHttp, TlsError> {
        let access = if self.readers_only {
            HttpAccess::Readers(federation)
        } else {
            HttpAccess::Public
        };
        let transport = match self.tls {
            Some(files) => HttpTransport::Tls(https_acceptor(files, crl, &access)?),
            None => HttpTransport::Plain,
        };
        Ok(PublicHttp {
            listener: self.listener,
            transport,
            access,
        })
    }

    /// "https" or "http", for the URLs printed at start-up.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Prepares the listener ([`Self::prepare`]) and serves `routes` on it in a task of its
    /// own until `shutdown`, after logging its URL and `served`.
    pub fn spawn(
        self,
        crl: Option<PathBuf>,
        federation: SharedFederation,
        routes: axum::Router,
        served: &'static str,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, TlsError> {
        let url = self
            .listener
            .local_addr()
            .map(|addr| format!("{}://{addr}/", self.scheme()))
            .unwrap_or_default();
        let readers_only = self.readers_only;
        let http = self.prepare(crl, federation)?;
        tracing::info!(%url, readers_only, "public HTTP listening: {served}");
        Ok(tokio::spawn(serve(http, routes, served, async move {
            shutdown.cancelled().await
        })))
    }
}

/// The TLS acceptor for the listener: `cert`/`key` (a publicly trusted pair, or the
/// process's own federation certificate), client certificates verified against the
/// federation CA and `crl` when presented, and required when `access` needs a reader.
pub fn https_acceptor(
    files: TlsFiles,
    crl: Option<PathBuf>,
    access: &HttpAccess,
) -> Result<ReloadingTlsAcceptor, TlsError> {
    let options = ServerOptions {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        client_certificate: match access {
            HttpAccess::Public => ClientCertificate::Optional,
            HttpAccess::Readers(_) => ClientCertificate::Required,
        },
        first_byte_timeout: FIRST_BYTE_TIMEOUT,
        idle_timeout: IDLE_TIMEOUT,
    };
    let acceptor = ReloadingTlsAcceptor::with_options(files, crl, options)?;
    acceptor.spawn_watcher();
    Ok(acceptor)
}

/// Serves `routes` on `http` until `shutdown` resolves; then open requests get
/// [`SHUTDOWN_DRAIN`] before their connections are closed. `served` names what is mounted,
/// for the 404 answer to any other path.
pub async fn serve(
    http: PublicHttp,
    routes: axum::Router,
    served: &'static str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = with_limits(routes, served);
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
    }
    let table = Arc::new(Mutex::new(ConnectionTable::default()));
    let mut connections = JoinSet::new();
    let PublicHttp {
        listener,
        transport,
        access,
    } = http;
    match transport {
        HttpTransport::Plain => loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "public HTTP: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = ConnectionSlot::take(&table, peer) else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let io = RevocableTcp::watched(tcp, peer, FIRST_BYTE_TIMEOUT, IDLE_TIMEOUT);
            let service = router.clone();
            connections.spawn(serve_connection(io, service, slot, stop.clone()));
        },
        HttpTransport::Tls(acceptor) => {
            let mut incoming = crate::acceptor::incoming_with(listener, acceptor);
            loop {
                let stream = tokio::select! {
                    () = stop.cancelled() => break,
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                    s = incoming.next() => match s {
                        Some(Ok(s)) => s,
                        Some(Err(_)) => continue,
                        None => break,
                    },
                };
                let (io, session) = stream.get_ref();
                let Ok(peer) = io.peer_addr() else {
                    continue;
                };
                let leaf = session
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                let Some(slot) = ConnectionSlot::take(&table, peer) else {
                    continue;
                };
                let service = match &access {
                    HttpAccess::Public => router.clone(),
                    HttpAccess::Readers(federation) => {
                        match crate::peer::admit(
                            leaf.as_deref(),
                            &federation.get(),
                            crate::peer::Access::Role(Role::Reader),
                        ) {
                            Ok(()) => router.clone(),
                            Err(status) => refused_router(&status),
                        }
                    }
                };
                connections.spawn(serve_connection(stream, service, slot, stop.clone()));
            }
        }
    }
    // Shutdown: every connection was told to finish within the drain and is closed after it.
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_DRAIN + Duration::from_secs(1), all_done)
        .await
        .is_err()
    {
        tracing::warn!("public HTTP: connections still open after the drain are left behind");
    }
    Ok(())
}

/// One connection: HTTP/1.1 or HTTP/2 as the client chose (ALPN, or the preface on plain
/// HTTP), with the header-read timeout and the HTTP/2 limits. At `stop`, in-flight requests
/// get [`SHUTDOWN_DRAIN`]; then the connection is dropped.
async fn serve_connection<I>(
    io: I,
    service: axum::Router,
    slot: ConnectionSlot,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        // No server pings: a client's answer to them would count as traffic, and an idle
        // HTTP/2 connection would never reach IDLE_TIMEOUT. A dead peer is found by the
        // silence watchdog and TCP keepalive instead.
        .keep_alive_interval(None);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN, connection).await;
        }
    }
    drop(slot);
}

/// Open connections, in total and per source ([`source_of`]).
#[derive(Default)]
struct ConnectionTable {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The source a connection is counted under: an IPv4 address (also when mapped into IPv6),
/// or the /64 of an IPv6 address.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// One open connection, counted in the table until dropped.
struct ConnectionSlot {
    table: Arc<Mutex<ConnectionTable>>,
    ip: IpAddr,
}

impl ConnectionSlot {
    /// A slot for a new connection from `peer`, or None (logged) when a cap is reached.
    fn take(table: &Arc<Mutex<ConnectionTable>>, peer: SocketAddr) -> Option<ConnectionSlot> {
        let mut t = match table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let source = source_of(peer.ip());
        let from_address = t.per_address.get(&source).copied().unwrap_or(0);
        if t.total >= MAX_CONNECTIONS || from_address >= MAX_CONNECTIONS_PER_ADDRESS {
            tracing::info!(
                %peer,
                open = t.total,
                from_address,
                "public HTTP: closing a new connection; too many are open (in all or from this address)"
            );
            return None;
        }
        t.total += 1;
        *t.per_address.entry(source).or_insert(0) += 1;
        Some(ConnectionSlot {
            table: Arc::clone(table),
            ip: source,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut t = match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        t.total = t.total.saturating_sub(1);
        if let Some(count) = t.per_address.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                t.per_address.remove(&self.ip);
            }
        }
    }
}

/// `routes` with the answer for unknown paths and the limit on requests answered at once.
fn with_limits(routes: axum::Router, served: &'static str) -> axum::Router {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
    routes
        .fallback(move || async move { not_found(served) })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let slots = Arc::clone(&slots);
                async move {
                    match slots.try_acquire_owned() {
                        // Held by the answer's body: an answer built whole stays counted while
                        // a client that reads nothing holds it.
                        Ok(slot) => next
                            .run(request)
                            .await
                            .map(|body| axum::body::Body::new(HeldBody { body, _slot: slot })),
                        Err(_) => busy(),
                    }
                }
            },
        ))
}

/// An answer's body holding its request slot until it is dropped.
struct HeldBody {
    body: axum::body::Body,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What a connection whose certificate may not read is answered, whatever it asks: 401
/// without a usable certificate, 403 for a non-member or a member without the reader role.
fn refused_router(status: &tonic::Status) -> axum::Router {
    let code = if status.code() == tonic::Code::Unauthenticated {
        http::StatusCode::UNAUTHORIZED
    } else {
        http::StatusCode::FORBIDDEN
    };
    let body = format!(
        "this listener serves members with the reader role only: {}\n",
        status.message()
    );
    axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                code,
                [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                body,
            )
                .into_response()
        }
    })
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

    fn plain(listener: TcpListener) -> PublicHttp {
        PublicHttp {
            listener,
            transport: HttpTransport::Plain,
            access: HttpAccess::Public,
        }
    }

    /// Sends one HTTP/1.1 GET and returns the status line.
    async fn get(addr: SocketAddr, path: &str) -> String {
        get_from(1, addr, path).await
    }

    /// [`get`] from the source address 127.0.0.`source` (all of 127/8 is loopback).
    async fn get_from(source: u8, addr: SocketAddr, path: &str) -> String {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, source], 0)))
            .unwrap();
        let mut tcp = socket.connect(addr).await.unwrap();
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
        // This test is about the request limit: the requests come from 4 source addresses, so
        // that none reaches the per-address connection cap.
        const SOURCES: usize = 4;
        const { assert!(MAX_CONCURRENT_REQUESTS < MAX_CONNECTIONS_PER_ADDRESS * SOURCES) };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            plain(listener),
            routes,
            "/slow",
            std::future::pending(),
        ));
        let held: Vec<_> = (0..MAX_CONCURRENT_REQUESTS)
            .map(|i| {
                let source = u8::try_from(1 + i % SOURCES).unwrap();
                tokio::spawn(get_from(source, addr, "/slow"))
            })
            .collect();
        // Every slot is taken by a request waiting in the handler.
        let all_in = entered
            .acquire_many(u32::try_from(MAX_CONCURRENT_REQUESTS).unwrap())
            .await
            .unwrap();
        all_in.forget();
        let extra = tokio::time::timeout(Duration::from_secs(5), get_from(5, addr, "/slow"))
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

    /// Sends one HTTP/1.1 GET from 127.0.0.`source` and returns the status line, with the
    /// connection (the rest of the answer unread).
    async fn status_only(
        source: u8,
        addr: SocketAddr,
        path: &str,
    ) -> (String, tokio::net::TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, source], 0)))
            .unwrap();
        let mut tcp = socket.connect(addr).await.unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            line.push(byte[0]);
        }
        (String::from_utf8_lossy(&line).trim_end().to_string(), tcp)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_being_sent_keeps_its_request_slot() {
        // An answer whose body never ends: its client holds it as one that reads nothing would.
        let routes = axum::Router::new().route(
            "/endless",
            axum::routing::get(|| async {
                axum::body::Body::from_stream(tokio_stream::pending::<
                    Result<bytes::Bytes, std::io::Error>,
                >())
            }),
        );
        const SOURCES: usize = 4;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            plain(listener),
            routes,
            "/endless",
            std::future::pending(),
        ));
        let mut held = Vec::new();
        for i in 0..MAX_CONCURRENT_REQUESTS {
            let source = u8::try_from(1 + i % SOURCES).unwrap();
            let (status, tcp) = status_only(source, addr, "/endless").await;
            assert_eq!(status, "HTTP/1.1 200 OK");
            held.push(tcp);
        }
        // The answers were built long ago, but they are still being sent: no slot is free.
        let (status, _tcp) = status_only(5, addr, "/endless").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        // A client gone gives its slot back.
        drop(held.pop());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, tcp) = status_only(5, addr, "/endless").await;
            if status == "HTTP/1.1 200 OK" {
                held.push(tcp);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn connections_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(source_of(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_cannot_hold_more_than_its_share_of_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(
            plain(listener),
            routes,
            "/ok",
            std::future::pending(),
        ));
        // Idle connections that never send a byte (slowloris).
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_ADDRESS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The next one from the same address is closed at once, without an answer.
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        extra
            .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer))
            .await
            .expect("closed at once");
        assert!(read.is_err() || answer.is_empty(), "{answer:?}");
        // Another address is still served meanwhile.
        assert_eq!(get_from(2, addr, "/ok").await, "HTTP/1.1 200 OK");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(get(addr, "/ok").await, "HTTP/1.1 200 OK");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_sends_headers_slowly_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(
            plain(listener),
            routes,
            "/ok",
            std::future::pending(),
        ));
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = tokio::time::Instant::now();
        tcp.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
        // One header byte every second: never silent, never done.
        let closed = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tcp.write_all(b"X").await.is_err() {
                break started.elapsed();
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(10), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
                Ok(Ok(_)) => break started.elapsed(),
                Err(_) => {}
            }
            assert!(
                started.elapsed() < HEADER_READ_TIMEOUT + Duration::from_secs(10),
                "still open after {:?}",
                started.elapsed()
            );
        };
        assert!(
            closed >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
            "{closed:?}"
        );
    }
}
