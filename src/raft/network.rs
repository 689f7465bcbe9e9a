//! The Raft client side: openraft's network traits over the peer stream (`peer_stream`), one
//! link per peer shared by all groups, with AppendEntries pipelined; over per-request HTTP to
//! peers that do not speak it, and for snapshots, which stream as HTTP requests of their own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, stream_append_sequential};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::raft::{TransferLeaderRequest, TransferLeaderResponse};
use openraft::{OptionalSend, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::db::snapshot_store::SnapshotFile;
use crate::raft::peer_stream::append::{AppendResult, pipelined_appends};
use crate::raft::peer_stream::client::{LinkError, PeerLinks, Route};
use crate::raft::peer_stream::frame::{Call, Reply};
use crate::raft::types::{GroupId, NodeId, ShoalNode, SnapshotMeta, TypeConfig, Vote};
use crate::raft::wire::{self, CHECKSUM_HEADER, SNAPSHOT_HEADER};
use crate::types::layout::{CommandLayout, with_layout};

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// What precedes a streamed snapshot image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub size_bytes: u64,
    pub sha256: String,
}

impl SnapshotHeader {
    pub fn to_header_value(&self) -> Result<String, String> {
        let json = serde_json::to_vec(self).map_err(|e| format!("encode snapshot header: {e}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(json))
    }

    pub fn from_header_value(value: &str) -> Result<SnapshotHeader, String> {
        let json = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| format!("snapshot header is not base64: {e}"))?;
        serde_json::from_slice(&json).map_err(|e| format!("snapshot header does not decode: {e}"))
    }
}

/// Each member's current Raft address, kept up to date from the group's membership: openraft
/// keeps a peer's connection across a membership change that only moves the peer to a new
/// address, so connections look the address up at every call.
pub type AddressBook = Arc<std::sync::RwLock<BTreeMap<NodeId, String>>>;

/// Creates connections to peers for one group.
#[derive(Clone)]
pub struct NetworkFactory {
    links: Arc<PeerLinks>,
    group: GroupId,
    addresses: AddressBook,
}

impl NetworkFactory {
    pub fn new(links: Arc<PeerLinks>, group: GroupId, addresses: AddressBook) -> Self {
        Self {
            links,
            group,
            addresses,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &ShoalNode) -> PeerConnection {
        PeerConnection {
            links: self.links.clone(),
            group: self.group,
            addresses: self.addresses.clone(),
            raft_addr_at_creation: node.raft_addr.clone(),
            target,
        }
    }
}

/// openraft's handle on one peer.
pub struct PeerConnection {
    links: Arc<PeerLinks>,
    group: GroupId,
    addresses: AddressBook,
    /// The address openraft gave when it made the connection; used until the address book
    /// knows the peer.
    raft_addr_at_creation: String,
    target: NodeId,
}

/// Why an RPC failed, before mapping to openraft's error types.
enum CallError {
    /// Could not reach the peer (connect refused, timeout): openraft backs off.
    Unreachable(String),
    /// Reached it, but the exchange failed.
    Network(String),
}

impl<E: std::error::Error> From<CallError> for RPCError<TypeConfig, E> {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Unreachable(message) => {
                RPCError::Unreachable(Unreachable::from_string(message))
            }
            CallError::Network(message) => RPCError::Network(NetworkError::from_string(message)),
        }
    }
}

impl From<LinkError> for CallError {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::Unreachable(message) => CallError::Unreachable(message),
            LinkError::Broken(message) => CallError::Network(message),
        }
    }
}

impl PeerConnection {
    /// The peer's current Raft address.
    fn raft_addr(&self) -> String {
        let current = self
            .addresses
            .read()
            .ok()
            .and_then(|book| book.get(&self.target).cloned());
        current.unwrap_or_else(|| self.raft_addr_at_creation.clone())
    }

    /// The peer's Raft URL for this group, at its current address.
    fn base_url(&self) -> String {
        format!(
            "{}/raft/v1/{}",
            crate::net::raft_url(&self.raft_addr()),
            self.group
        )
    }

    async fn route(&self) -> Result<Route, CallError> {
        Ok(self.links.route(self.target, &self.raft_addr()).await?)
    }

    /// Runs `call` over the peer stream, or over HTTP as `action` when the peer does not
    /// speak it.
    async fn exchange(
        &self,
        call: Call,
        action: &str,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        match self.route().await? {
            Route::Stream(link) => Ok(link.call(self.group, call, timeout).await?),
            Route::Http => match call {
                Call::Vote(request) | Call::PreVote(request) => {
                    Ok(Reply::Vote(self.call(action, &request, timeout).await?))
                }
                Call::TransferLeader(request) => Ok(Reply::TransferLeader(
                    self.call(action, &request, timeout).await?,
                )),
                Call::Append(request) => {
                    Ok(Reply::Append(self.call(action, &request, timeout).await?))
                }
                Call::Quiesce(_) | Call::Liveness(_) => Err(CallError::Network(format!(
                    "node {} speaks no peer stream, so it cannot quiesce",
                    self.target
                ))),
            },
        }
    }

    fn unexpected(&self, reply: Reply, wanted: &str) -> CallError {
        CallError::Network(format!(
            "node {} answered {wanted} with {reply:?}",
            self.target
        ))
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        // Only a node older than the peer stream is called over HTTP: it reads command
        // layout 1 (an entry it cannot hold fails to encode, naming why).
        let (body, checksum) =
            with_layout(CommandLayout::V1, || wire::encode(request)).map_err(CallError::Network)?;
        let response = self
            .links
            .http()
            .client()
            .post(format!("{}/{action}", self.base_url()))
            .header(wire::TO_NODE_HEADER, self.target.to_string())
            .header(CHECKSUM_HEADER, checksum.to_string())
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| self.describe(action, e))?;
        read_reply(response, action, self.target).await
    }

    fn describe(&self, action: &str, error: reqwest::Error) -> CallError {
        let message = format!("{action} to node {} failed: {error}", self.target);
        if error.is_connect() || error.is_timeout() {
            CallError::Unreachable(message)
        } else {
            CallError::Network(message)
        }
    }
}

async fn read_reply<Resp: DeserializeOwned>(
    response: reqwest::Response,
    action: &str,
    target: NodeId,
) -> Result<Resp, CallError> {
    let status = response.status();
    let checksum = response
        .headers()
        .get(CHECKSUM_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CallError::Network(format!("{action} reply from node {target}: {e}")))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        // A peer whose Raft group is not running yet (starting, or removed) cannot take part.
        return Err(CallError::Unreachable(format!(
            "{action} refused by node {target} ({status}): {text}"
        )));
    }
    wire::decode(&bytes, checksum.as_deref())
        .map_err(|e| CallError::Network(format!("{action} reply from node {target}: {e}")))
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .exchange(Call::Append(request), "append", option.hard_ttl())
            .await?
        {
            Reply::Append(response) => Ok(response),
            other => Err(self.unexpected(other, "append").into()),
        }
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, AppendResult>, RPCError<TypeConfig>>>
    where
        S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        Box::pin(async move {
            // The first request first: openraft's request stream waits out its backoff after
            // errors before yielding, so a peer that is down is not redialled in a busy loop.
            let mut input = input;
            let Some(first) = input.next().await else {
                return Ok(Box::pin(futures_util::stream::empty()) as BoxStream<'s, AppendResult>);
            };
            let input = futures_util::stream::iter([first]).chain(input);
            match self.route().await? {
                Route::Stream(link) => Ok(pipelined_appends(link, self.group, input, &option)),
                Route::Http => stream_append_sequential(self, input, option).await,
            }
        })
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .exchange(Call::Vote(request), "vote", option.hard_ttl())
            .await?
        {
            Reply::Vote(response) => Ok(response),
            other => Err(self.unexpected(other, "vote").into()),
        }
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .exchange(Call::PreVote(request), "pre-vote", option.hard_ttl())
            .await?
        {
            Reply::Vote(response) => Ok(response),
            other => Err(self.unexpected(other, "pre-vote").into()),
        }
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .exchange(
                Call::TransferLeader(request),
                "transfer-leader",
                option.hard_ttl(),
            )
            .await?
        {
            Reply::TransferLeader(response) => Ok(response),
            other => Err(self.unexpected(other, "transfer-leader").into()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta.clone(),
            size_bytes: snapshot.snapshot.size_bytes,
            sha256: snapshot.snapshot.sha256.clone(),
        };
        let header = header
            .to_header_value()
            .map_err(|e| StreamingError::Network(NetworkError::from_string(e)))?;
        // The image streams from disk in chunks; it is never held whole in memory.
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            snapshot.snapshot.file,
            256 * 1024,
        ));
        let send = self
            .links
            .http()
            .client()
            .post(format!("{}/snapshot", self.base_url()))
            .header(wire::TO_NODE_HEADER, self.target.to_string())
            .header(SNAPSHOT_HEADER, header)
            .body(body)
            .send();
        let response = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            response = send => response,
        };
        let response = response.map_err(|e| match self.describe("snapshot", e) {
            CallError::Unreachable(m) => StreamingError::Unreachable(Unreachable::from_string(m)),
            CallError::Network(m) => StreamingError::Network(NetworkError::from_string(m)),
        })?;
        read_reply(response, "snapshot", self.target)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(m) => {
                    StreamingError::Unreachable(Unreachable::from_string(m))
                }
                CallError::Network(m) => StreamingError::Network(NetworkError::from_string(m)),
            })
    }
}
