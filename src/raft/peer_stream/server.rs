//! The receiving side of peer streams: the upgrade route on the Raft port, and the loop that
//! runs each arriving call against its group and feeds each append stream to openraft's
//! pipelined `Raft::stream_append`, whose results go back in order.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use openraft::raft::AppendEntriesRequest;
use tokio::sync::mpsc;

use crate::net::listener::{ConnectionEvents, next_reload};
use crate::raft::group::RaftGroup;
use crate::raft::peer_stream::frame::{
    self, Call, Frame, PROTOCOL, PROTOCOL_V1, PROTOCOL_V2, Reply,
};
use crate::raft::peer_stream::{OUTGOING_FRAMES_MAX, write_frames};
use crate::raft::server::Groups;
use crate::raft::types::{NodeId, TypeConfig};
use crate::raft::wire::TO_NODE_HEADER;

/// Append streams one connection may have open at once (one per group replicating to us).
const STREAMS_PER_CONNECTION_MAX: usize = 4096;
/// AppendEntries of one stream waiting for its group's pipeline.
const STREAM_QUEUE: usize = 64;

/// `POST /raft/v2/stream`: takes the connection over as a peer stream.
pub async fn accept(State(groups): State<Groups>, mut request: Request) -> Response {
    if crate::unsafe_faults::active() == Some(crate::unsafe_faults::UnsafeFault::OlderPeerTransport)
    {
        // As a node from before the peer stream answers: no such route.
        return StatusCode::NOT_FOUND.into_response();
    }
    let wanted = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    let older_only =
        crate::unsafe_faults::active() == Some(crate::unsafe_faults::UnsafeFault::OlderPeerStream);
    let version = match wanted.and_then(frame::version_of) {
        Some(version) if !older_only => version,
        Some(1) => 1,
        _ => {
            let known = if older_only {
                PROTOCOL_V1.to_string()
            } else {
                format!("{PROTOCOL}, {PROTOCOL_V2} or {PROTOCOL_V1}")
            };
            return (
                StatusCode::BAD_REQUEST,
                format!("a peer stream needs `Upgrade: {known}`, got {wanted:?}"),
            )
                .into_response();
        }
    };
    let this_node = groups.node_id();
    let meant_for = request
        .headers()
        .get(TO_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    if let Some(meant_for) = meant_for.filter(|&id| id != this_node) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this is node {this_node}, not node {meant_for}: the sender's address for node {meant_for} is stale"
            ),
        )
            .into_response();
    }
    let Some(events) = request.extensions().get::<ConnectionEvents>().cloned() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "this listener cannot hand connections over",
        )
            .into_response();
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                if let Err(error) = serve(TokioIo::new(upgraded), groups, events, version).await {
                    tracing::debug!(%error, "peer stream ended");
                }
            }
            Err(error) => tracing::debug!(%error, "peer stream upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        header::UPGRADE,
        HeaderValue::from_static(frame::token_of(version)),
    );
    response
}

/// Serves one peer stream until the peer closes it, it breaks, the node stops, the
/// certificates are reloaded, or nothing arrives for the idle limit.
async fn serve<S>(
    io: S,
    groups: Groups,
    mut events: ConnectionEvents,
    version: u8,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let (outgoing, frames) = mpsc::channel(OUTGOING_FRAMES_MAX);
    let layout = frame::layout_of(version);
    let writing = tokio::spawn(write_frames(frames, writer, layout));
    let mut streams: HashMap<u64, mpsc::Sender<AppendEntriesRequest<TypeConfig>>> = HashMap::new();
    let mut buffer = Vec::new();
    let mut reloads = events.reloads.take();
    let mut reloaded = std::pin::pin!(next_reload(&mut reloads));
    let outcome = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(events.idle_timeout, frame::read_frame(&mut reader, &mut buffer, layout)) => next,
            () = &mut reloaded => break Ok(()),
            _ = events.shutdown.wait_for(|stop| *stop) => break Ok(()),
        };
        let frame = match next {
            Err(_) => break Err(format!("idle for {:?}", events.idle_timeout)),
            Ok(Err(error)) => break Err(error),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(frame))) => frame,
        };
        match frame {
            Frame::Call {
                id,
                call: Call::Liveness(asked),
                ..
            } => {
                let answer = crate::raft::quiesce::answer_liveness(&groups, &asked);
                let reply = Frame::Reply {
                    id,
                    reply: Ok(Reply::Liveness(answer)),
                };
                if outgoing.send(reply).await.is_err() {
                    break Err("the writer stopped".into());
                }
            }
            Frame::Call { id, group, call } => {
                let found = find(&groups, group);
                let outgoing = outgoing.clone();
                tokio::spawn(async move {
                    let reply = match found {
                        Ok(group) => run_call(&group, call).await,
                        Err(message) => Err(message),
                    };
                    let _ = outgoing.send(Frame::Reply { id, reply }).await;
                });
            }
            Frame::Append {
                stream,
                group,
                request,
            } => {
                if !streams.contains_key(&stream) {
                    if streams.len() >= STREAMS_PER_CONNECTION_MAX {
                        streams.retain(|_, queue| !queue.is_closed());
                    }
                    let opened = if streams.len() >= STREAMS_PER_CONNECTION_MAX {
                        Err(format!(
                            "{STREAMS_PER_CONNECTION_MAX} append streams are open on this connection"
                        ))
                    } else {
                        find(&groups, group)
                            .map(|group| open_stream(group, stream, outgoing.clone()))
                    };
                    match opened {
                        Ok(queue) => {
                            streams.insert(stream, queue);
                        }
                        Err(message) => {
                            let refused = Frame::Appended {
                                stream,
                                result: Err(message),
                            };
                            if outgoing.send(refused).await.is_err() {
                                break Err("the writer stopped".into());
                            }
                            continue;
                        }
                    }
                }
                let delivered = match streams.get(&stream) {
                    Some(queue) => queue.send(request).await.is_ok(),
                    None => false,
                };
                if !delivered {
                    // The group ended the stream (an error it already reported); later
                    // requests of it are dropped until the sender opens a new one.
                    streams.remove(&stream);
                }
            }
            Frame::EndStream { stream } => {
                streams.remove(&stream);
            }
            Frame::Reply { .. } | Frame::Appended { .. } => {
                break Err("the peer sent a reply on its own stream".into());
            }
        }
    };
    drop(streams);
    drop(outgoing);
    let _ = writing.await;
    outcome
}

fn find(groups: &Groups, id: u64) -> Result<Arc<RaftGroup>, String> {
    groups
        .get(id)
        .ok_or_else(|| format!("group {id} does not run on this node"))
}

async fn run_call(group: &RaftGroup, call: Call) -> Result<Reply, String> {
    match call {
        Call::Vote(request) => group
            .raft
            .vote(request)
            .await
            .map(Reply::Vote)
            .map_err(|e| e.to_string()),
        Call::PreVote(request) => group
            .raft
            .pre_vote(request)
            .await
            .map(Reply::Vote)
            .map_err(|e| e.to_string()),
        Call::TransferLeader(request) => {
            // The leader hands over: this member has to be awake to campaign and then lead.
            group.wake("leadership is handed to this node");
            group
                .raft
                .handle_transfer_leader(request)
                .await
                .map(Reply::TransferLeader)
                .map_err(|e| e.to_string())
        }
        Call::Append(request) => group.receive_append(request).await.map(Reply::Append),
        Call::Quiesce(request) => Ok(Reply::Quiesce(group.quiesce_as_follower(&request))),
        Call::Liveness(_) => Err("a liveness call is answered by the peer stream itself".into()),
    }
}

/// Starts append stream `stream` on `group`: requests go into the returned queue, results
/// come back as `Appended` frames in order until the group ends the stream.
fn open_stream(
    group: Arc<RaftGroup>,
    stream: u64,
    outgoing: mpsc::Sender<Frame>,
) -> mpsc::Sender<AppendEntriesRequest<TypeConfig>> {
    let (queue, requests) = mpsc::channel(STREAM_QUEUE);
    let input = futures_util::stream::unfold(requests, |mut requests| async move {
        requests.recv().await.map(|request| (request, requests))
    });
    tokio::spawn(async move {
        let results = group.raft.stream_append(input);
        let mut results = std::pin::pin!(results);
        while let Some(result) = results.next().await {
            let (result, last) = match result {
                Ok(Ok(matched)) => {
                    group.note_leader_contact();
                    (Ok(Ok(matched)), false)
                }
                Ok(Err(refused)) => (Ok(Err(refused)), true),
                Err(fatal) => (Err(fatal.to_string()), true),
            };
            if outgoing
                .send(Frame::Appended { stream, result })
                .await
                .is_err()
            {
                return;
            }
            if last {
                break;
            }
        }
        // Every result of the stream was sent.
        let _ = outgoing.send(Frame::EndStream { stream }).await;
    });
    queue
}
