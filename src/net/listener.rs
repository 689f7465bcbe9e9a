//! Admission to a listener: the address must be on the listener's allow-list, the listener
//! must be under its connection limit, and with TLS the handshake must finish within a
//! bounded time, in its own task (a client that never speaks cannot stall the accept loop),
//! under a budget of handshakes at once and per address (unauthenticated clients cannot hold
//! the slots of the listener's real connections). `serve_http` serves admitted connections
//! with hyper, closing one that takes longer than the idle timeout to send a request's
//! headers — also an idle keep-alive connection (a place cannot be held by saying nothing). Refusals are logged at a bounded rate. The
//! PostgreSQL endpoint uses `Admission` directly (pgwire negotiates TLS itself).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::net::AllowList;
use crate::net::tls::{Facing, TlsContext};

/// A TLS handshake taking longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once on one listener...
const HANDSHAKES_AT_ONCE: usize = 64;
/// ...and from one address.
const HANDSHAKES_PER_ADDRESS: u32 = 4;
/// How long a stopping server lets requests in flight finish.
const GRACEFUL_STOP: Duration = Duration::from_secs(2);
/// Admitted connections waiting for the server to take them.
const ADMITTED_QUEUE: usize = 128;
/// Refusals logged per listener per second; the rest are counted in one line.
const REFUSALS_LOGGED_PER_SECOND: u32 = 10;

/// Who may connect to one listener, and how many at once.
#[derive(Clone)]
pub struct Admission {
    /// The listener's name in logs ("HTTP", "Raft", "PostgreSQL").
    pub name: &'static str,
    allow: AllowList,
    permits: Arc<Semaphore>,
    connections_max: usize,
    refusals: Arc<RefusalLog>,
}

/// Rate limit of refusal log lines: a flood of refused connections must not flush the audit
/// log's real events out through rotation.
#[derive(Default)]
struct RefusalLog {
    /// (start of the current second, lines logged in it, lines suppressed in it).
    window: Mutex<Option<(Instant, u32, u64)>>,
}

impl RefusalLog {
    /// Runs `log` unless this second's budget is spent (then counts it); reports what the
    /// previous second suppressed.
    fn log(&self, listener: &'static str, log: impl FnOnce()) {
        let now = Instant::now();
        let Ok(mut window) = self.window.lock() else {
            return;
        };
        let (start, logged, suppressed) = window.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            if *suppressed > 0 {
                tracing::warn!(target: "audit", event = "connection_refused", listener, count = *suppressed, reason = "more refusals than logged");
            }
            (*start, *logged, *suppressed) = (now, 0, 0);
        }
        if *logged < REFUSALS_LOGGED_PER_SECOND {
            *logged += 1;
            log();
        } else {
            *suppressed += 1;
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed,
    TooMany,
}

impl Admission {
    pub fn new(name: &'static str, allow: AllowList, connections_max: usize) -> Admission {
        Admission {
            name,
            allow,
            permits: Arc::new(Semaphore::new(connections_max)),
            connections_max,
            refusals: Arc::default(),
        }
    }

    /// Whether `peer` may connect at all (the allow-list); refusals are audited.
    pub fn allowed(&self, peer: SocketAddr) -> bool {
        if self.allow.allows(peer.ip()) {
            return true;
        }
        self.refusals.log(self.name, || {
            tracing::warn!(target: "audit", event = "connection_refused", listener = self.name, from = %peer.ip(), reason = "not on the allow-list");
        });
        false
    }

    /// A place under the connection limit for `peer`, or `TooMany` (logged).
    pub fn place(&self, peer: SocketAddr) -> Result<OwnedSemaphorePermit, Refusal> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            self.refusals.log(self.name, || {
                tracing::warn!(listener = self.name, from = %peer, connections_max = self.connections_max, "connection refused: too many connections");
            });
            Refusal::TooMany
        })
    }

    /// Admits a connection from `peer` (the permit is its place under the limit) or says
    /// why not; refusals are logged, those by the allow-list to the audit log.
    pub fn admit(&self, peer: SocketAddr) -> Result<OwnedSemaphorePermit, Refusal> {
        if !self.allowed(peer) {
            return Err(Refusal::NotAllowed);
        }
        self.place(peer)
    }
}

/// A listener whose connections passed admission (and the TLS handshake, with TLS).
pub struct Guarded {
    admitted: mpsc::Receiver<(Connection, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Guarded {
    /// Starts accepting on `listener`; with `tls`, connections are TLS facing the given side.
    pub fn start(
        listener: TcpListener,
        admission: Admission,
        tls: Option<(Arc<TlsContext>, Facing)>,
    ) -> io::Result<Guarded> {
        let local = listener.local_addr()?;
        let (sender, admitted) = mpsc::channel(ADMITTED_QUEUE);
        let accepting = tokio::spawn(accept_loop(listener, admission, tls, sender));
        Ok(Guarded {
            admitted,
            local,
            accepting,
        })
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The accept loop owns the socket: stopping it closes the port.
        self.accepting.abort();
    }
}

impl Guarded {
    /// The next admitted connection (`None` once the accept loop has ended).
    async fn accept(&mut self) -> Option<(Connection, SocketAddr)> {
        self.admitted.recv().await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// What a connection taken over by an HTTP upgrade (a peer stream) must watch itself, since
/// hyper no longer does: certificate reloads (close, so the peer reconnects and is checked
/// against the new ones), the node's shutdown, and the idle limit.
#[derive(Clone)]
pub struct ConnectionEvents {
    pub reloads: Option<watch::Receiver<u64>>,
    pub shutdown: watch::Receiver<bool>,
    pub idle_timeout: Duration,
}

/// Resolves at the next reload of the certificates a connection was admitted under; never for
/// a connection without TLS (nor when the TLS context is dropped without a reload, which is no
/// reason to close).
pub async fn next_reload(reloads: &mut Option<watch::Receiver<u64>>) {
    let changed = match reloads.as_mut() {
        Some(reloads) => reloads.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// Serves `router` over HTTP/1.1 on the admitted connections until `shutdown`, then lets
/// requests in flight finish for a moment. Handlers see the peer as `ConnectInfo`. A
/// connection that sends no request headers for `idle_timeout` is closed.
/// Handlers also see the connection's [`ConnectionEvents`], for upgrades.
pub async fn serve_http(
    mut listener: Guarded,
    router: axum::Router,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let Some((connection, peer)) = accepted else {
            break;
        };
        let router = router.clone();
        let events = ConnectionEvents {
            reloads: connection.reloads.clone(),
            shutdown: shutdown.clone(),
            idle_timeout,
        };
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request.extensions_mut().insert(events.clone());
                router.clone().oneshot(request)
            },
        );
        let mut reloads = connection.reloads.clone();
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle_timeout)
            .serve_connection(TokioIo::new(connection), service)
            .with_upgrades();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut served = std::pin::pin!(served);
            let reloaded = next_reload(&mut reloads);
            let outcome = tokio::select! {
                outcome = served.as_mut() => outcome,
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                    served.as_mut().graceful_shutdown();
                    tokio::time::timeout(GRACEFUL_STOP, served.as_mut()).await.unwrap_or(Ok(()))
                }
                () = reloaded => {
                    // Certificates changed: finish the request in flight, then close; the
                    // peer reconnects and is checked against the new ones.
                    served.as_mut().graceful_shutdown();
                    served.as_mut().await
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(from = %peer, %error, "HTTP connection ended with an error");
            }
        });
    }
}

async fn accept_loop(
    listener: TcpListener,
    admission: Admission,
    tls: Option<(Arc<TlsContext>, Facing)>,
    sender: mpsc::Sender<(Connection, SocketAddr)>,
) {
    let handshakes = Arc::new(Handshakes::default());
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!(listener = admission.name, %error, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !admission.allowed(peer) {
            continue;
        }
        let _ = socket.set_nodelay(true);
        let Some((context, facing)) = &tls else {
            let Ok(permit) = admission.place(peer) else {
                continue;
            };
            let connection = Connection {
                stream: Stream::Plain(socket),
                _permit: permit,
                reloads: None,
            };
            if sender.send((connection, peer)).await.is_err() {
                return;
            }
            continue;
        };
        // The listener's place is taken only once the handshake succeeded: a client that
        // cannot finish one holds a handshake slot for at most HANDSHAKE_TIMEOUT.
        let Some(slot) = handshakes.begin(peer.ip()) else {
            admission.refusals.log(admission.name, || {
                tracing::warn!(target: "audit", event = "connection_refused", listener = admission.name, from = %peer.ip(), reason = "too many TLS handshakes at once");
            });
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(context.server_config(*facing));
        let reloads = context.reloads();
        let (sender, admission, facing) = (sender.clone(), admission.clone(), *facing);
        let context = context.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await;
            drop(slot);
            let name = admission.name;
            match handshake {
                Ok(Ok(stream)) => {
                    if facing == Facing::Nodes {
                        let certificate = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|der| der.as_ref().to_vec());
                        if let Err(reason) = context.admits_node_certificate(certificate.as_deref()) {
                            admission.refusals.log(name, || {
                                tracing::warn!(target: "audit", event = "connection_refused", listener = name, from = %peer.ip(), %reason);
                            });
                            return;
                        }
                    }
                    let Ok(permit) = admission.place(peer) else {
                        return;
                    };
                    let connection = Connection {
                        stream: Stream::Tls(Box::new(stream)),
                        _permit: permit,
                        reloads: Some(reloads),
                    };
                    let _ = sender.send((connection, peer)).await;
                }
                Ok(Err(error)) if facing == Facing::Nodes => admission.refusals.log(name, || {
                    tracing::warn!(target: "audit", event = "connection_refused", listener = name, from = %peer.ip(), reason = %format!("TLS: {error}"));
                }),
                Ok(Err(error)) => admission.refusals.log(name, || {
                    tracing::info!(listener = name, from = %peer, %error, "TLS handshake failed");
                }),
                Err(_) => admission.refusals.log(name, || {
                    tracing::info!(listener = name, from = %peer, "TLS handshake timed out");
                }),
            }
        });
    }
}

/// TLS handshakes in progress, in all and by address.
#[derive(Default)]
struct Handshakes {
    by_address: Mutex<HashMap<IpAddr, u32>>,
}

impl Handshakes {
    /// A slot for a handshake from `address`, within both budgets.
    fn begin(self: &Arc<Self>, address: IpAddr) -> Option<HandshakeSlot> {
        let mut by_address = self.by_address.lock().ok()?;
        let total: u32 = by_address.values().sum();
        let mine = by_address.entry(address).or_insert(0);
        if total as usize >= HANDSHAKES_AT_ONCE || *mine >= HANDSHAKES_PER_ADDRESS {
            if *mine == 0 {
                by_address.remove(&address);
            }
            return None;
        }
        *mine += 1;
        Some(HandshakeSlot {
            handshakes: self.clone(),
            address,
        })
    }
}

/// One handshake's place in the budget, given back when dropped.
struct HandshakeSlot {
    handshakes: Arc<Handshakes>,
    address: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        if let Ok(mut by_address) = self.handshakes.by_address.lock()
            && let Some(count) = by_address.get_mut(&self.address)
        {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// An admitted connection; its place under the listener's limit is freed when it closes.
pub struct Connection {
    stream: Stream,
    _permit: OwnedSemaphorePermit,
    /// For a TLS connection: changes when the certificates are reloaded.
    reloads: Option<watch::Receiver<u64>>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_budgeted_in_all_and_per_address() {
        let handshakes = Arc::new(Handshakes::default());
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let mine: Vec<_> = (0..HANDSHAKES_PER_ADDRESS)
            .map(|_| {
                handshakes
                    .begin(one)
                    .expect("within the per-address budget")
            })
            .collect();
        assert!(handshakes.begin(one).is_none(), "a fifth from one address");
        drop(mine);
        assert!(
            handshakes.begin(one).is_some(),
            "slots come back when dropped"
        );
        let others: Vec<_> = (0..HANDSHAKES_AT_ONCE as u32)
            .filter_map(|i| {
                handshakes.begin(IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]))
            })
            .collect();
        assert_eq!(others.len(), HANDSHAKES_AT_ONCE, "every address gets one");
        assert!(
            handshakes.begin("10.9.9.9".parse().unwrap()).is_none(),
            "over the total"
        );
        drop(others);
        assert!(
            handshakes.by_address.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }
}
