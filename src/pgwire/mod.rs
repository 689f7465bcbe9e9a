//! The PostgreSQL wire protocol endpoint: psql, psycopg, JDBC and other PostgreSQL clients
//! talk to Shoal on every node (default 127.0.0.1:5433). Built on the `pgwire` crate, which
//! does the message framing; Shoal supplies the handlers (`backend`), session settings
//! (`session`), interactive transactions (`transaction`), type mapping (`types`, `params`) and
//! error codes (`sqlstate`) and who may connect (`login`: trust, or SCRAM-SHA-256 with
//! `--auth`).

pub mod backend;
mod catalog;
pub mod cursors;
mod datetime;
mod dialect;
#[doc(hidden)]
pub mod fuzzing;
mod infer;
pub mod interval;
mod login;
mod numeric;
mod params;
mod privileges;
mod results;
mod schema_change;
mod sequences;
pub mod session;
mod split;
pub mod sqlstate;
pub mod transaction;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::gate::Gate;
use crate::catalog::databases::Databases;
use crate::net::listener::{Admission, Refusal};
use crate::net::tls::{Facing, TlsContext};
use crate::pgwire::backend::Backend;
use crate::pgwire::login::Login;

/// The handlers every connection uses (shared; per-session state lives in each connection).
struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Login>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Serves PostgreSQL clients on `listener` until `shutdown` is set, with at most
/// `connections_max` connections at once; clients beyond it are told so and disconnected.
pub async fn serve(
    listener: TcpListener,
    databases: Arc<Databases>,
    gate: Arc<Gate>,
    admission: Admission,
    tls: Option<Arc<TlsContext>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        startup: Arc::new(Login::new(
            gate.clone(),
            databases.clone(),
            connections.clone(),
            tls.is_some(),
        )),
        backend: Arc::new(Backend::new(databases, gate)),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!(%error, "PostgreSQL listener could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match admission.admit(peer) {
            Ok(permit) => permit,
            Err(Refusal::TooMany) => {
                tokio::spawn(refuse_too_many(socket));
                continue;
            }
            Err(Refusal::NotAllowed) => continue,
        };
        let acceptor = tls
            .as_ref()
            .map(|context| TlsAcceptor::from(context.server_config(Facing::Postgres)));
        let handlers = handlers.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = OpenConnection::counted();
            // pgwire 0.42's message decoders index past some malformed messages (a Bind whose
            // lengths disagree) and panic: that ends this connection only, said plainly.
            let served = std::panic::AssertUnwindSafe(pgwire::tokio::process_socket(
                socket, acceptor, handlers,
            ));
            match futures_util::FutureExt::catch_unwind(served).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "PostgreSQL connection ended with an error");
                }
                Err(_) => tracing::warn!(
                    %peer,
                    "PostgreSQL connection closed: the client sent a malformed message"
                ),
            }
        });
    }
}

/// Counts an open connection in `shoal_pg_connections_open` until dropped (also when the
/// connection's task unwinds).
struct OpenConnection;

impl OpenConnection {
    fn counted() -> OpenConnection {
        crate::metrics::metrics().pg_connections_open.inc();
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        crate::metrics::metrics().pg_connections_open.dec();
    }
}

/// Tells a client over the connection limit why it is turned away (FATAL 53300, as
/// PostgreSQL does) and closes the connection.
async fn refuse_too_many(mut socket: TcpStream) {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    message.extend_from_slice(&fields);
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(&message)).await;
}
