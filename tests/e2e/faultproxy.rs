//! A fault-injecting TCP proxy for the partition tests: sits between a node and the hub and,
//! on command, passes, drops, delays, resets, blackholes, half-opens or trickles byte by byte
//! the traffic. A mode change applies at once to the connections already open and to new ones.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways.
    Pass,
    /// Close every connection (FIN), and accept then close new ones at once.
    Drop,
    /// Forward with this much latency each way: every read is delivered this long after it
    /// arrived, in order, without holding back the reads behind it (a long link, not a slow one).
    Delay(Duration),
    /// Abort every connection with a TCP reset, new ones too.
    Reset,
    /// Accept, and silently discard everything in both directions (packets lost).
    Blackhole,
    /// The hub side is gone but the node's side stays open and silent (a half-open link).
    HalfOpen,
    /// Forward one byte per write.
    ByteByByte,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, starting in `mode`.
    pub async fn start(upstream: SocketAddr, mode: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let (tx, rx) = watch::channel(mode);
        let rx = Arc::new(rx);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(client, upstream, (*rx).clone()));
            }
        });
        FaultProxy {
            addr,
            mode: tx,
            task,
        }
    }

    /// The endpoint a node dials: `https://localhost:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Switches the fault, for open connections too.
    pub fn set(&self, mode: Fault) {
        eprintln!("fault proxy: {mode:?}");
        self.mode.send_replace(mode);
    }
}

#[allow(deprecated)] // with a zero linger the close does not block: it sends a reset at once
fn reset(stream: TcpStream) {
    // SO_LINGER 0: closing sends RST instead of FIN.
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Bytes read from one side and waiting to be written to the other, with when each is due.
type DelayLine = VecDeque<(Instant, Vec<u8>, Fault)>;

/// Queues a read for the other side: due after the fault's latency, never before a read that
/// arrived earlier (order is kept when the fault changes).
fn enqueue(line: &mut DelayLine, bytes: &[u8], mode: Fault) {
    let latency = match mode {
        Fault::Delay(d) => d,
        _ => Duration::ZERO,
    };
    let due = line
        .back()
        .map_or(Instant::now() + latency, |(last, _, _)| {
            (*last).max(Instant::now() + latency)
        });
    line.push_back((due, bytes.to_vec(), mode));
}

/// Resolves when the first queued read is due (never if nothing is queued).
async fn next_due(line: &DelayLine) {
    match line.front() {
        Some((due, _, _)) => tokio::time::sleep_until(*due).await,
        None => std::future::pending().await,
    }
}

async fn forward(to: &mut TcpStream, bytes: &[u8], mode: Fault) -> std::io::Result<()> {
    match mode {
        Fault::Pass | Fault::Delay(_) => to.write_all(bytes).await,
        Fault::ByteByByte => {
            for b in bytes {
                to.write_all(std::slice::from_ref(b)).await?;
                to.flush().await?;
            }
            Ok(())
        }
        // Discarded.
        Fault::Blackhole | Fault::HalfOpen | Fault::Drop | Fault::Reset => Ok(()),
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Fault>) {
    let _ = client.set_nodelay(true);
    let initial = *mode.borrow_and_update();
    match initial {
        Fault::Drop => return,
        Fault::Reset => return reset(client),
        _ => {}
    }
    // Blackholed or half-open from the start: never reach the hub.
    let mut server = if matches!(initial, Fault::Blackhole | Fault::HalfOpen) {
        None
    } else {
        match TcpStream::connect(upstream).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                Some(s)
            }
            Err(_) => return,
        }
    };
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    let mut to_server = DelayLine::new();
    let mut to_client = DelayLine::new();
    loop {
        let current = *mode.borrow();
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = *mode.borrow_and_update();
                match next {
                    Fault::Drop => return,
                    Fault::Reset => {
                        if let Some(s) = server.take() {
                            reset(s);
                        }
                        return reset(client);
                    }
                    Fault::HalfOpen | Fault::Blackhole => {
                        if next == Fault::HalfOpen {
                            // The hub side goes away; the node's side is left open and silent.
                            server = None;
                        }
                        // What was in flight is lost.
                        to_server.clear();
                        to_client.clear();
                    }
                    _ => {}
                }
            }
            read = client.read(&mut up) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if server.is_some() {
                    enqueue(&mut to_server, &up[..n], current);
                }
            }
            () = next_due(&to_server) => {
                if let Some((_, bytes, at_read)) = to_server.pop_front()
                    && let Some(s) = server.as_mut()
                    && forward(s, &bytes, at_read).await.is_err()
                {
                    return;
                }
            }
            () = next_due(&to_client) => {
                if let Some((_, bytes, at_read)) = to_client.pop_front()
                    && forward(&mut client, &bytes, at_read).await.is_err()
                {
                    return;
                }
            }
            read = async {
                match server.as_mut() {
                    Some(s) => s.read(&mut down).await,
                    None => std::future::pending().await,
                }
            } => {
                match read {
                    Ok(0) | Err(_) => {
                        if matches!(current, Fault::Blackhole | Fault::HalfOpen) {
                            // The node must not learn of it: stay silent.
                            server = None;
                            continue;
                        }
                        return;
                    }
                    Ok(n) => enqueue(&mut to_client, &down[..n], current),
                }
            }
        }
    }
}
