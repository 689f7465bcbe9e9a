//! The HTTP client a node calls other nodes with. With TLS it is rebuilt at every reload of
//! the node's TLS material, so pooled connections never outlive a revoked or replaced
//! certificate: a connection is only checked at its handshake, and a pool kept busy by
//! heartbeats never idles one out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::net::tls::TlsContext;

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle pooled connections kept per peer.
const POOL_IDLE_PER_PEER: usize = 64;
/// Time allowed to open a connection to a peer (a down peer must fail fast: Raft retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A cheap handle on the current client; clone freely.
#[derive(Clone)]
pub struct NodeClient {
    current: Arc<RwLock<reqwest::Client>>,
    /// Counts the rebuilds: long-lived connections opened with an older client (peer
    /// streams) are closed and reopened with the current one.
    generation: Arc<AtomicU64>,
}

impl NodeClient {
    /// A client sending `headers` on every call, presenting `tls`'s certificate when TLS is
    /// on (and rebuilt whenever it is reloaded).
    pub fn new(
        headers: reqwest::header::HeaderMap,
        tls: Option<&Arc<TlsContext>>,
    ) -> Result<NodeClient, String> {
        // Watched before the first build, so a reload in between is not missed.
        let reloads = tls.map(|context| context.reloads());
        let node_client = NodeClient {
            current: Arc::new(RwLock::new(build(&headers, tls)?)),
            generation: Arc::new(AtomicU64::new(0)),
        };
        if let (Some(context), Some(reloads)) = (tls, reloads) {
            spawn_rebuilder(
                Arc::downgrade(&node_client.current),
                node_client.generation.clone(),
                headers,
                context.clone(),
                reloads,
            );
        }
        Ok(node_client)
    }

    /// How many times the client was rebuilt (after TLS reloads).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The client as of now; hold it for one call, not longer (a reload replaces it).
    pub fn client(&self) -> reqwest::Client {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn build(
    headers: &reqwest::header::HeaderMap,
    tls: Option<&Arc<TlsContext>>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .default_headers(headers.clone())
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_IDLE_PER_PEER)
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(context) = tls {
        builder = builder.use_preconfigured_tls(context.client_config()?);
    }
    builder
        .build()
        .map_err(|e| format!("HTTP client for other nodes: {e}"))
}

/// Replaces the client after each reload of `context` until the client's last handle is
/// dropped or the context is. The old client's pool closes its connections once the calls
/// still using them are answered.
fn spawn_rebuilder(
    current: Weak<RwLock<reqwest::Client>>,
    generation: Arc<AtomicU64>,
    headers: reqwest::header::HeaderMap,
    context: Arc<TlsContext>,
    mut reloads: tokio::sync::watch::Receiver<u64>,
) {
    let context = Arc::downgrade(&context);
    tokio::spawn(async move {
        while reloads.changed().await.is_ok() {
            let (Some(current), Some(context)) = (current.upgrade(), context.upgrade()) else {
                return;
            };
            match build(&headers, Some(&context)) {
                Ok(client) => {
                    match current.write() {
                        Ok(mut slot) => *slot = client,
                        Err(poisoned) => *poisoned.into_inner() = client,
                    }
                    generation.fetch_add(1, Ordering::AcqRel);
                }
                Err(error) => {
                    tracing::error!(%error, "could not rebuild the client for other nodes after a TLS reload; keeping its open connections");
                }
            }
        }
    });
}
