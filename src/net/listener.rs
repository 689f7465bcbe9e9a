//! Admission to a listener: the address must be on the listener's allow-list, the listener
//! must be under its connection limit, and with TLS the handshake must finish within a
//! bounded time (in its own task, so a client that never speaks cannot stall the accept
//! loop). `Guarded` hands admitted connections to axum; the PostgreSQL endpoint uses
//! `Admission` directly (pgwire negotiates TLS itself).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::net::AllowList;
use crate::net::tls::{Facing, TlsContext};

/// A TLS handshake taking longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Admitted connections waiting for the server to take them.
const ADMITTED_QUEUE: usize = 128;

/// Who may connect to one listener, and how many at once.
#[derive(Clone)]
pub struct Admission {
    /// The listener's name in logs ("HTTP", "Raft", "PostgreSQL").
    pub name: &'static str,
    allow: AllowList,
    permits: Arc<Semaphore>,
    connections_max: usize,
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
        }
    }

    /// Admits a connection from `peer` (the permit is its place under the limit) or says
    /// why not; refusals are logged, those by the allow-list to the audit log.
    pub fn admit(&self, peer: SocketAddr) -> Result<OwnedSemaphorePermit, Refusal> {
        if !self.allow.allows(peer.ip()) {
            tracing::warn!(target: "audit", event = "connection_refused", listener = self.name, from = %peer.ip(), reason = "not on the allow-list");
            return Err(Refusal::NotAllowed);
        }
        self.permits.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(listener = self.name, from = %peer, connections_max = self.connections_max, "connection refused: too many connections");
            Refusal::TooMany
        })
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

impl axum::serve::Listener for Guarded {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        match self.admitted.recv().await {
            Some(admitted) => admitted,
            // The accept loop ended (it only does when the runtime shuts down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    admission: Admission,
    tls: Option<(Arc<TlsContext>, Facing)>,
    sender: mpsc::Sender<(Connection, SocketAddr)>,
) {
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
        let Ok(permit) = admission.admit(peer) else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let Some((context, facing)) = &tls else {
            let connection = Connection {
                stream: Stream::Plain(socket),
                _permit: permit,
            };
            if sender.send((connection, peer)).await.is_err() {
                return;
            }
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(context.server_config(*facing));
        let (sender, name, facing) = (sender.clone(), admission.name, *facing);
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(stream)) => {
                    let connection = Connection {
                        stream: Stream::Tls(Box::new(stream)),
                        _permit: permit,
                    };
                    let _ = sender.send((connection, peer)).await;
                }
                Ok(Err(error)) if facing == Facing::Nodes => {
                    tracing::warn!(target: "audit", event = "connection_refused", listener = name, from = %peer.ip(), reason = %format!("TLS: {error}"));
                }
                Ok(Err(error)) => {
                    tracing::info!(listener = name, from = %peer, %error, "TLS handshake failed");
                }
                Err(_) => tracing::info!(listener = name, from = %peer, "TLS handshake timed out"),
            }
        });
    }
}

/// An admitted connection; its place under the listener's limit is freed when it closes.
pub struct Connection {
    stream: Stream,
    _permit: OwnedSemaphorePermit,
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
