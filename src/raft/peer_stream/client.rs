//! The sending side of peer streams: one link per peer node, opened on first use, shared by
//! every group, reopened after it breaks, when the peer's address changes, or when this
//! node's TLS client is rebuilt. A peer that refuses the upgrade (an older node) is called
//! over per-request HTTP for a while, then asked again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header;
use tokio::sync::{mpsc, oneshot, watch};

use crate::net::node_client::NodeClient;
use crate::raft::peer_stream::frame::{
    self, Call, Frame, PROTOCOL, PROTOCOL_V1, PROTOCOL_V2, Reply,
};
use crate::raft::peer_stream::{OUTGOING_FRAMES_MAX, write_frames};
use crate::raft::types::{GroupId, NodeId, TypeConfig};
use crate::raft::wire::TO_NODE_HEADER;
use crate::unsafe_faults::UnsafeFault;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};

/// Longest wait for a peer to accept a peer stream (a down peer must fail fast: Raft retries).
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a peer that refused the upgrade is called over per-request HTTP before it is
/// asked again (it may have been upgraded meanwhile).
const FALLBACK_RETRY: Duration = Duration::from_secs(30);
/// Results of one append stream waiting to be read by its replication task.
const STREAM_RESULTS: usize = 256;

/// One result of an append stream as the peer sent it: `Err` when its group could not take
/// the stream.
pub type PeerAppendResult = Result<StreamAppendResult<TypeConfig>, String>;

/// Why a call over a link failed.
#[derive(Debug)]
pub enum LinkError {
    /// The peer could not be reached, or refused the work (its group does not run, it is
    /// another node): nothing reached its Raft state.
    Unreachable(String),
    /// The link broke, or no answer came in time: the peer may have seen the request.
    Broken(String),
}

/// How this node talks to one peer right now.
pub enum Route {
    Stream(Arc<Link>),
    /// The peer does not speak the peer stream: per-request HTTP.
    Http,
}

/// The links to every peer, shared by every group of this node.
pub struct PeerLinks {
    http: NodeClient,
    slots: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    link: Option<Arc<Link>>,
    /// Until when the peer is called over HTTP (it refused the upgrade).
    http_until: Option<Instant>,
}

impl PeerLinks {
    pub fn new(http: NodeClient) -> Arc<PeerLinks> {
        Arc::new(PeerLinks {
            http,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The node's client for other nodes' HTTP endpoints (snapshots, fallbacks).
    pub fn http(&self) -> &NodeClient {
        &self.http
    }

    /// How to reach node `target` at `raft_addr`, opening a link when there is none.
    pub async fn route(&self, target: NodeId, raft_addr: &str) -> Result<Route, LinkError> {
        if crate::unsafe_faults::active() == Some(UnsafeFault::OlderPeerTransport) {
            return Ok(Route::Http);
        }
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(target).or_default().clone()
        };
        let mut slot = slot.lock().await;
        let generation = self.http.generation();
        if let Some(link) = &slot.link {
            if link.is_usable(raft_addr, generation) {
                return Ok(Route::Stream(link.clone()));
            }
            link.close("replaced by a new link");
            slot.link = None;
        }
        if slot.http_until.is_some_and(|until| Instant::now() < until) {
            return Ok(Route::Http);
        }
        match Link::open_any_version(&self.http, target, raft_addr, generation).await {
            Ok(Some(link)) => {
                slot.http_until = None;
                slot.link = Some(link.clone());
                Ok(Route::Stream(link))
            }
            Ok(None) => {
                tracing::info!(
                    node = target,
                    "node does not speak {PROTOCOL}; calling it over HTTP"
                );
                slot.http_until = Some(Instant::now() + FALLBACK_RETRY);
                Ok(Route::Http)
            }
            Err(error) => Err(error),
        }
    }
}

impl Drop for PeerLinks {
    fn drop(&mut self) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for slot in slots.values() {
            if let Ok(slot) = slot.try_lock()
                && let Some(link) = &slot.link
            {
                link.close("the node stops");
            }
        }
    }
}

/// What asking a peer for a peer stream in one protocol version gave.
enum Opened {
    Link(Arc<Link>),
    /// The peer does not know the upgrade at all (404): a node from before the peer stream.
    NoUpgrade,
    /// The peer knows the upgrade but not this version's token (400): an older version.
    TokenRefused(String),
}

impl Opened {
    /// The link of the only version left to try (`None`: no peer stream at all).
    fn into_link(self, target: NodeId, raft_addr: &str) -> Result<Option<Arc<Link>>, LinkError> {
        match self {
            Opened::Link(link) => Ok(Some(link)),
            Opened::NoUpgrade => Ok(None),
            Opened::TokenRefused(refusal) => Err(LinkError::Unreachable(format!(
                "node {target} at {raft_addr} refused a peer stream: {refusal}"
            ))),
        }
    }
}

/// One open peer stream to a peer.
pub struct Link {
    target: NodeId,
    raft_addr: String,
    generation: u64,
    /// The protocol version the peer accepted (1 to 3).
    version: u8,
    outgoing: mpsc::Sender<Frame>,
    calls: Mutex<HashMap<u64, oneshot::Sender<Result<Reply, String>>>>,
    streams: Mutex<HashMap<u64, mpsc::Sender<PeerAppendResult>>>,
    next_id: AtomicU64,
    /// Set once, when the link closes: its reader and writer stop, dropping the connection.
    closed: watch::Sender<bool>,
}

impl Link {
    /// Opens a peer stream to `target` in the newest version it speaks; `None` when the peer
    /// does not know the upgrade at all.
    async fn open_any_version(
        http: &NodeClient,
        target: NodeId,
        raft_addr: &str,
        generation: u64,
    ) -> Result<Option<Arc<Link>>, LinkError> {
        if crate::unsafe_faults::active() == Some(UnsafeFault::OlderPeerStream) {
            return Link::open(http, target, raft_addr, generation, PROTOCOL_V1)
                .await?
                .into_link(target, raft_addr);
        }
        // An older node answers a token it does not know with 400: try the next older one.
        for token in [PROTOCOL, PROTOCOL_V2] {
            match Link::open(http, target, raft_addr, generation, token).await? {
                Opened::Link(link) => return Ok(Some(link)),
                Opened::NoUpgrade => return Ok(None),
                Opened::TokenRefused(_) => {
                    tracing::info!(
                        node = target,
                        "node does not speak {token}; trying an older version"
                    );
                }
            }
        }
        tracing::info!(
            node = target,
            "node speaks only {PROTOCOL_V1}: no quiescence, no cross-group transactions"
        );
        Link::open(http, target, raft_addr, generation, PROTOCOL_V1)
            .await?
            .into_link(target, raft_addr)
    }

    /// Opens a peer stream to `target` asking for protocol `token`.
    async fn open(
        http: &NodeClient,
        target: NodeId,
        raft_addr: &str,
        generation: u64,
        token: &'static str,
    ) -> Result<Opened, LinkError> {
        let url = format!("{}/raft/v2/stream", crate::net::raft_url(raft_addr));
        let request = http
            .client()
            .post(url)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, token)
            .header(TO_NODE_HEADER, target.to_string())
            .send();
        let response = match tokio::time::timeout(OPEN_TIMEOUT, request).await {
            Err(_) => {
                return Err(LinkError::Unreachable(format!(
                    "node {target} at {raft_addr} did not accept a peer stream within {OPEN_TIMEOUT:?}"
                )));
            }
            Ok(Err(error)) => {
                return Err(LinkError::Unreachable(format!(
                    "cannot open a peer stream to node {target} at {raft_addr}: {error}"
                )));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Opened::NoUpgrade);
        }
        if status == reqwest::StatusCode::BAD_REQUEST {
            let text = response.text().await.unwrap_or_default();
            return Ok(Opened::TokenRefused(format!("{token} ({status}): {text}")));
        }
        if status != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let text = response.text().await.unwrap_or_default();
            return Err(LinkError::Unreachable(format!(
                "node {target} at {raft_addr} refused a peer stream ({status}): {text}"
            )));
        }
        let version = frame::version_of(token).unwrap_or(1);
        let upgraded = response.upgrade().await.map_err(|e| {
            LinkError::Unreachable(format!("peer stream to node {target} at {raft_addr}: {e}"))
        })?;
        let (reader, writer) = tokio::io::split(upgraded);
        let (outgoing, frames) = mpsc::channel(OUTGOING_FRAMES_MAX);
        let link = Arc::new(Link {
            target,
            raft_addr: raft_addr.to_string(),
            generation,
            version,
            outgoing,
            calls: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: watch::channel(false).0,
        });
        tokio::spawn({
            let link = link.clone();
            let mut closed = link.closed.subscribe();
            async move {
                tokio::select! {
                    written = write_frames(frames, writer, frame::layout_of(version)) => {
                        if let Err(error) = written {
                            link.close(&error);
                        }
                    }
                    _ = closed.wait_for(|closed| *closed) => {}
                }
            }
        });
        tokio::spawn(read_replies(link.clone(), reader));
        let metrics = crate::metrics::metrics();
        metrics.peer_links_opened.inc();
        metrics.peer_links_open.inc();
        Ok(Opened::Link(link))
    }

    fn is_usable(&self, raft_addr: &str, generation: u64) -> bool {
        !self.is_closed() && self.raft_addr == raft_addr && self.generation == generation
    }

    /// Closes the link: waiting calls and streams fail, the next call opens a new one.
    pub fn close(&self, why: &str) {
        if !self.closed.send_replace(true) {
            tracing::debug!(node = self.target, why, "peer stream closed");
            crate::metrics::metrics().peer_links_open.dec();
            self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
            self.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn send(&self, frame: Frame) -> Result<(), LinkError> {
        if self.is_closed() {
            return Err(LinkError::Unreachable(format!(
                "the peer stream to node {} is closed",
                self.target
            )));
        }
        self.outgoing.send(frame).await.map_err(|_| {
            LinkError::Unreachable(format!("the peer stream to node {} is closed", self.target))
        })
    }

    /// Sends `call` for `group` and waits up to `timeout` for its reply. A call without a
    /// reply in time closes the link (the peer or the path to it is stuck).
    pub async fn call(
        &self,
        group: GroupId,
        call: Call,
        timeout: Duration,
    ) -> Result<Reply, LinkError> {
        let id = self.next_id();
        let name = call.name();
        let (reply_to, reply) = oneshot::channel();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, reply_to);
        if let Err(error) = self.send(Frame::Call { id, group, call }).await {
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(error);
        }
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(refused))) => Err(LinkError::Unreachable(format!(
                "{name} refused by node {}: {refused}",
                self.target
            ))),
            Ok(Err(_)) => Err(LinkError::Broken(format!(
                "the peer stream to node {} broke before {name} was answered",
                self.target
            ))),
            Err(_) => {
                self.calls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                self.close(&format!("no answer to {name} within {timeout:?}"));
                Err(LinkError::Broken(format!(
                    "node {} did not answer {name} within {timeout:?}",
                    self.target
                )))
            }
        }
    }

    /// Opens append stream for `group`: its id and the receiver of its results, in order.
    pub fn open_stream(&self) -> (u64, mpsc::Receiver<PeerAppendResult>) {
        let id = self.next_id();
        let (results_to, results) = mpsc::channel(STREAM_RESULTS);
        if !self.is_closed() {
            self.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, results_to);
        }
        (id, results)
    }

    /// Sends the next AppendEntries of `stream`.
    pub async fn append(
        &self,
        stream: u64,
        group: GroupId,
        request: AppendEntriesRequest<TypeConfig>,
    ) -> Result<(), LinkError> {
        self.send(Frame::Append {
            stream,
            group,
            request,
        })
        .await
    }

    /// Tells the peer `stream` has no more requests; their results still come back.
    pub fn finish_requests(&self, stream: u64) {
        // Best effort: a full queue or a closed link ends the stream on the peer anyway.
        let _ = self.outgoing.try_send(Frame::EndStream { stream });
    }

    /// Ends `stream`: no more requests, its results are no longer read.
    pub fn end_stream(&self, stream: u64) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&stream);
        // Best effort: a full queue or a closed link ends the stream on the peer anyway.
        let _ = self.outgoing.try_send(Frame::EndStream { stream });
    }

    pub fn target(&self) -> NodeId {
        self.target
    }

    /// Whether the peer takes part in quiescence (protocol version 2 or later).
    pub fn quiesces(&self) -> bool {
        self.version >= 2
    }
}

/// Hands each reply to its caller and each append result to its stream, until the link
/// breaks or is closed.
async fn read_replies<R: tokio::io::AsyncRead + Unpin>(link: Arc<Link>, mut reader: R) {
    let mut buffer = Vec::new();
    let layout = frame::layout_of(link.version);
    let mut closed = link.closed.subscribe();
    let why = loop {
        let next = tokio::select! {
            next = frame::read_frame(&mut reader, &mut buffer, layout) => next,
            _ = closed.wait_for(|closed| *closed) => break "closed".to_string(),
        };
        match next {
            Ok(None) => break "the peer closed it".to_string(),
            Err(error) => break error,
            Ok(Some(Frame::Reply { id, reply })) => {
                let waiting = link
                    .calls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(reply);
                }
            }
            Ok(Some(Frame::Appended { stream, result })) => {
                let results = link
                    .streams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&stream)
                    .cloned();
                if let Some(results) = results
                    && results.send(result).await.is_err()
                {
                    link.streams
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&stream);
                }
            }
            Ok(Some(Frame::EndStream { stream })) => {
                // The peer sent every result of `stream`.
                link.streams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&stream);
            }
            Ok(Some(Frame::Call { .. } | Frame::Append { .. })) => {
                // (Not printed: an Append may carry megabytes of entries.)
                break "the peer sent a request on this node's own stream".to_string();
            }
        }
    };
    link.close(&why);
}
