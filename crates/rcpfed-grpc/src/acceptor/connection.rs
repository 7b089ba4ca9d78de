//! Connections: the TCP stream that can be closed from outside, the silence watchdog, the
//! accept loop with its handshake limits (in all, per address, in time), and the bounded
//! shutdown drain.

use super::config::time_now;
use super::reloading::{ReloadingTlsAcceptor, StaleCrl, TrackedConnection};
use crate::limits::{
    HANDSHAKE_TIMEOUT, MAX_PENDING_HANDSHAKES, MAX_PENDING_HANDSHAKES_PER_ADDRESS, TCP_KEEPALIVE,
};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// stays silent, at the end of a shutdown drain): reads and writes fail once the close token
/// is cancelled, which makes the HTTP/2 server drop it.
pub struct RevocableTcp {
    inner: TcpStream,
    close: CancellationToken,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Bytes received so far, for the silence watchdog.
    received: Arc<AtomicU64>,
    /// Cancelled when this connection is dropped, which ends its watchdog.
    _gone: tokio_util::sync::DropGuard,
    _tracked: Option<Arc<TrackedConnection>>,
}

impl RevocableTcp {
    fn new(inner: TcpStream, gone: CancellationToken) -> Self {
        let close = CancellationToken::new();
        RevocableTcp {
            inner,
            closed: Box::pin(close.clone().cancelled_owned()),
            close,
            received: Arc::new(AtomicU64::new(0)),
            _gone: gone.drop_guard(),
            _tracked: None,
        }
    }

    /// A plain (no TLS) connection, closed when silent for the given limits (see
    /// [`watch_silence`]), and when `close_token()` is cancelled.
    pub fn watched(
        inner: TcpStream,
        peer: SocketAddr,
        first_byte_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        let gone = CancellationToken::new();
        let io = RevocableTcp::new(inner, gone.clone());
        tokio::spawn(watch_silence(
            peer,
            Arc::clone(&io.received),
            0,
            (first_byte_timeout, idle_timeout),
            io.close.clone(),
            gone,
        ));
        io
    }

    /// Cancelling this closes the connection.
    pub fn close_token(&self) -> CancellationToken {
        self.close.clone()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Ready(error) once closed from outside; otherwise registers the waker and is Pending.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.close.is_cancelled() || self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server closed the connection",
            ));
        }
        Poll::Pending
    }
}

impl AsyncRead for RevocableTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before);
        if got > 0 {
            this.received.fetch_add(got as u64, Ordering::Relaxed);
        }
        read
    }
}

/// Closes a connection that says nothing: no byte within `first` after its handshake (an
/// HTTP/2 client sends its preface at once, an HTTP/1.1 client its request), or none for
/// `idle` later (the server's keepalive pings are answered by any live client). Ends when the
/// connection is dropped.
async fn watch_silence(
    peer: SocketAddr,
    received: Arc<AtomicU64>,
    at_handshake: u64,
    (first_limit, idle): (Duration, Duration),
    close: CancellationToken,
    gone: CancellationToken,
) {
    // Counted from the end of the handshake, before the server sends its SETTINGS: an HTTP/2
    // client always answers those, so a live client is never taken for a silent one.
    let mut seen = at_handshake;
    let mut limit = first_limit;
    let mut first = true;
    loop {
        tokio::select! {
            _ = gone.cancelled() => return,
            _ = close.cancelled() => return,
            _ = tokio::time::sleep(limit) => {}
        }
        let now = received.load(Ordering::Relaxed);
        if now == seen {
            let what = if first {
                "sent nothing after its TLS handshake"
            } else {
                "went silent"
            };
            tracing::info!(%peer, silent_for = ?limit, "closing a connection that {what}");
            close.cancel();
            return;
        }
        seen = now;
        limit = idle;
        first = false;
    }
}

impl AsyncWrite for RevocableTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Socket options of every accepted connection: no Nagle delay (small gRPC frames), and TCP
/// keepalive, so that a peer that vanished without a FIN (power loss, a dropped NAT entry) is
/// found by the kernel too, not only by HTTP/2 pings (which an HTTP/1.1 client lacks).
fn tune_accepted(tcp: &TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    socket2::SockRef::from(tcp)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE))
}

/// Same connection info as a plain `TcpStream`, so tonic's `TlsStream` impl yields
/// `TlsConnectInfo<TcpConnectInfo>`, which is what `Request::peer_certs()` reads.
impl Connected for RevocableTcp {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The connection stream [`mtls_incoming`] returns.
pub type MtlsIncoming = ReceiverStream<Result<TlsStream<RevocableTcp>, io::Error>>;

fn log_handshake_failure(peer: SocketAddr, error: &io::Error) {
    let revoked = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
            )
        });
    if revoked {
        tracing::warn!(%peer, "TLS handshake refused: the client certificate is revoked");
    } else {
        tracing::info!(%peer, %error, "TLS handshake failed");
    }
}

/// Accepts connections on `listener` and completes the TLS handshake of each with the
/// acceptor's current configuration, concurrently and within [`HANDSHAKE_TIMEOUT`]; yields the
/// established streams. Accepting stops when the returned stream is dropped.
pub fn incoming_with(listener: TcpListener, acceptor: ReloadingTlsAcceptor) -> MtlsIncoming {
    let (tx, rx) = mpsc::channel(128);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let per_address = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = tx.closed() => break,
                p = Arc::clone(&pending).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // One address may not take every handshake slot: over its share, the connection
            // is closed at once (dropped) and the slot goes to the next caller.
            let Some(address_slot) = AddressSlot::take(&per_address, peer.ip()) else {
                tracing::info!(
                    %peer,
                    limit = MAX_PENDING_HANDSHAKES_PER_ADDRESS,
                    "closing a connection: too many TLS handshakes in progress from this address"
                );
                continue;
            };
            if let Some(next_update) = acceptor.current().stale_since(time_now())
                && acceptor.stale_crl() == StaleCrl::Refuse
            {
                tracing::error!(
                    %peer,
                    next_update,
                    "refusing a connection: the CRL in force is past its nextUpdate; install a \
                     fresh CRL (rcpfed pki revoke-cert re-signs it)"
                );
                continue;
            }
            if let Err(e) = tune_accepted(&tcp) {
                tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY or TCP keepalive");
            }
            let tx = tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let config = Arc::clone(&acceptor.current().config);
                let tls = tokio_rustls::TlsAcceptor::from(config);
                let gone = CancellationToken::new();
                let handshake = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    tls.accept(RevocableTcp::new(tcp, gone.clone())),
                )
                .await;
                drop(permit);
                drop(address_slot);
                let mut stream = match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        log_handshake_failure(peer, &e);
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let (io, session) = stream.get_mut();
                if let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) {
                    io._tracked = acceptor.track(leaf.as_ref(), peer, io.close.clone());
                }
                let options = acceptor.options();
                tokio::spawn(watch_silence(
                    peer,
                    Arc::clone(&io.received),
                    io.received.load(Ordering::Relaxed),
                    (options.first_byte_timeout, options.idle_timeout),
                    io.close.clone(),
                    gone,
                ));
                let _ = tx.send(Ok(stream)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// One handshake in progress from one address, counted in the per-address table until dropped.
struct AddressSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    fn take(table: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<AddressSlot> {
        let mut map = match table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let count = map.entry(ip).or_insert(0);
        if *count >= MAX_PENDING_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Runs the gRPC server future `serve` until it ends. Once `shutdown` is cancelled, open calls
/// get [`crate::limits::SHUTDOWN_DRAIN`] to finish; then every connection is closed (silent
/// or stuck peers cannot hold the process), and after one more second the server is left
/// behind. Returns None when it had to be left behind.
pub async fn serve_with_bounded_drain<F: Future>(
    serve: F,
    shutdown: CancellationToken,
    acceptor: ReloadingTlsAcceptor,
) -> Option<F::Output> {
    tokio::pin!(serve);
    tokio::select! {
        out = &mut serve => return Some(out),
        _ = shutdown.cancelled() => {}
    }
    if let Ok(out) = tokio::time::timeout(crate::limits::SHUTDOWN_DRAIN, &mut serve).await {
        return Some(out);
    }
    let closed = acceptor.close_all();
    tracing::warn!(
        closed,
        drain = ?crate::limits::SHUTDOWN_DRAIN,
        "shutdown: connections still open after the drain are closed"
    );
    match tokio::time::timeout(Duration::from_secs(1), &mut serve).await {
        Ok(out) => Some(out),
        Err(_) => {
            tracing::warn!("shutdown: the gRPC server did not stop; leaving it behind");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_and_tcp_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        tune_accepted(&accepted).expect("socket options");
        let socket = socket2::SockRef::from(&accepted);
        assert!(accepted.nodelay().expect("TCP_NODELAY"));
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
    }
}
