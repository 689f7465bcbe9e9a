//! The Raft server side: HTTP routes on the Raft port that hand peers' messages to the right
//! group's openraft instance, verifying every body's checksum first — the peer stream's
//! upgrade (`peer_stream::server`), and per-request routes for snapshots and older nodes.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::db::snapshot_store::SnapshotFile;
use crate::raft::group::RaftGroup;
use crate::raft::network::SnapshotHeader;
use crate::raft::types::{GroupId, TypeConfig};
use crate::raft::wire::{self, CHECKSUM_HEADER, RPC_BODY_BYTES_MAX, SNAPSHOT_HEADER};
use crate::types::layout::{CommandLayout, with_layout};

/// The groups this node runs, by id.
pub type Groups = Arc<crate::raft::registry::GroupRegistry>;

/// Routes for Raft traffic between nodes.
pub fn router(groups: Groups) -> Router {
    Router::new()
        .route("/raft/v1/{group}/append", post(append))
        .route("/raft/v1/{group}/vote", post(vote))
        .route("/raft/v1/{group}/pre-vote", post(pre_vote))
        .route("/raft/v1/{group}/transfer-leader", post(transfer_leader))
        .route(
            "/raft/v2/stream",
            post(crate::raft::peer_stream::server::accept),
        )
        .layer(DefaultBodyLimit::max(RPC_BODY_BYTES_MAX))
        .route(
            "/raft/v1/{group}/snapshot",
            post(snapshot).layer(DefaultBodyLimit::disable()),
        )
        .with_state(groups)
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// A refused RPC: the status and why.
pub struct Rejection(pub StatusCode, pub String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        failure(self.0, self.1)
    }
}

fn find(groups: &Groups, id: GroupId) -> Result<Arc<RaftGroup>, Rejection> {
    groups.get(id).ok_or_else(|| {
        Rejection(
            StatusCode::NOT_FOUND,
            format!("group {id} does not run on this node"),
        )
    })
}

/// A refusal when the RPC names another node as its recipient (an RPC without the header,
/// from a node of an earlier version, is taken as meant for this one).
fn misdirected(group: &RaftGroup, headers: &HeaderMap) -> Option<Rejection> {
    let meant_for = headers
        .get(wire::TO_NODE_HEADER)?
        .to_str()
        .ok()?
        .parse::<crate::raft::types::NodeId>()
        .ok()?;
    (meant_for != group.node_id).then(|| {
        Rejection(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this is node {}, not node {meant_for}: the sender's address for node {meant_for} is stale",
                group.node_id
            ),
        )
    })
}

fn reply<T: Serialize>(value: &T) -> Response {
    match wire::encode(value) {
        Ok((body, checksum)) => ([(CHECKSUM_HEADER, checksum.to_string())], body).into_response(),
        Err(message) => failure(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// Decodes a checksummed RPC for group `id`, runs `call` on it and encodes the answer.
async fn rpc<Req, Resp, Fut>(
    groups: &Groups,
    id: GroupId,
    headers: &HeaderMap,
    body: &Bytes,
    call: impl FnOnce(Arc<RaftGroup>, Req) -> Fut,
) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: std::future::Future<Output = Result<Resp, String>>,
{
    let group = match find(groups, id) {
        Ok(group) => group,
        Err(rejection) => return rejection.into_response(),
    };
    if let Some(rejection) = misdirected(&group, headers) {
        return rejection.into_response();
    }
    let checksum = headers.get(CHECKSUM_HEADER).and_then(|v| v.to_str().ok());
    // Raft RPCs come over HTTP only from nodes older than the peer stream: their entries are
    // in command layout 1.
    let decoded = with_layout(CommandLayout::V1, || wire::decode(body, checksum));
    let request = match decoded {
        Ok(request) => request,
        Err(message) => return failure(StatusCode::BAD_REQUEST, message),
    };
    match call(group, request).await {
        Ok(response) => reply(&response),
        Err(message) => failure(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

async fn append(
    State(groups): State<Groups>,
    Path(id): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rpc(&groups, id, &headers, &body, |group, request| async move {
        group.receive_append(request).await
    })
    .await
}

async fn vote(
    State(groups): State<Groups>,
    Path(id): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rpc(&groups, id, &headers, &body, |group, request| async move {
        group.raft.vote(request).await.map_err(|e| e.to_string())
    })
    .await
}

async fn pre_vote(
    State(groups): State<Groups>,
    Path(id): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rpc(&groups, id, &headers, &body, |group, request| async move {
        group
            .raft
            .pre_vote(request)
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

async fn transfer_leader(
    State(groups): State<Groups>,
    Path(id): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    rpc(&groups, id, &headers, &body, |group, request| async move {
        group
            .raft
            .handle_transfer_leader(request)
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

/// Receives a streamed snapshot image into a file, checking its size and SHA-256 against the
/// header before openraft may install it.
async fn snapshot(
    State(groups): State<Groups>,
    Path(id): Path<GroupId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let group = match find(&groups, id) {
        Ok(group) => group,
        Err(rejection) => return rejection.into_response(),
    };
    if let Some(rejection) = misdirected(&group, &headers) {
        return rejection.into_response();
    }
    let header = match headers
        .get(SNAPSHOT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(SnapshotHeader::from_header_value)
    {
        Some(Ok(header)) => header,
        Some(Err(message)) => return failure(StatusCode::BAD_REQUEST, message),
        None => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("snapshot has no {SNAPSHOT_HEADER} header"),
            );
        }
    };
    let path = group.snapshots.incoming_path();
    let received = receive_image(body, &path, &header).await;
    if let Err(message) = received {
        let _ = tokio::fs::remove_file(&path).await;
        tracing::warn!(group = id, %message, "rejected snapshot");
        return failure(StatusCode::BAD_REQUEST, message);
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) => {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reopen received snapshot: {error}"),
            );
        }
    };
    let snapshot = openraft::type_config::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
        meta: header.meta,
        snapshot: SnapshotFile {
            file,
            path: path.clone(),
            size_bytes: header.size_bytes,
            sha256: header.sha256,
        },
    };
    let result = group
        .raft
        .install_full_snapshot(header.vote, snapshot)
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    match result {
        Ok(response) => {
            group.note_leader_contact();
            reply(&response)
        }
        Err(error) => failure(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
    }
}

async fn receive_image(
    body: Body,
    path: &std::path::Path,
    header: &SnapshotHeader,
) -> Result<(), String> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| format!("snapshot stream broke after {received} bytes: {e}"))?;
        received += chunk.len() as u64;
        if received > header.size_bytes {
            return Err(format!(
                "snapshot stream is longer than the announced {} bytes",
                header.size_bytes
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if received != header.size_bytes {
        return Err(format!(
            "snapshot stream ended after {received} of {} bytes",
            header.size_bytes
        ));
    }
    let digest = hex::encode(hasher.finalize());
    if digest != header.sha256 {
        return Err(format!(
            "snapshot SHA-256 mismatch: announced {}, received {digest}",
            header.sha256
        ));
    }
    file.sync_all()
        .await
        .map_err(|e| format!("fsync {}: {e}", path.display()))?;
    Ok(())
}
