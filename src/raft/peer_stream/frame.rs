//! The peer stream's wire format: length-prefixed, CRC-32C-checked frames, each carrying one
//! postcard-encoded [`Frame`] tagged with its group, so every group of a node shares one
//! connection to each peer.
//!
//! Layout of one frame: `len: u32 LE | crc32c(payload): u32 LE | payload (len bytes)`. The
//! protocol's version is the HTTP upgrade token ([`PROTOCOL`]); a change to [`Frame`] that an
//! older node could not decode takes a new token, and nodes fall back to the older one.
//!
//! Versions: `shoal-peer/1` carries votes, leader transfers and appends; `shoal-peer/2` adds
//! the quiescence calls ([`Call::Quiesce`], [`Call::Liveness`]), appended at the end of their
//! enums so that every frame of version 1 encodes exactly as before; `shoal-peer/3` carries
//! log entries in command layout 2 (`types::layout`: cross-group transaction steps), versions
//! 1 and 2 in layout 1.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::raft::types::{GroupId, TypeConfig};
use crate::raft::wire::RPC_BODY_BYTES_MAX;
use crate::types::layout::{CommandLayout, with_layout};

/// The HTTP upgrade token naming this version of the protocol.
pub const PROTOCOL: &str = "shoal-peer/3";
/// The token of the second version (command layout 1), spoken to and accepted from nodes
/// that know no newer one.
pub const PROTOCOL_V2: &str = "shoal-peer/2";
/// The token of the first version (no quiescence either).
pub const PROTOCOL_V1: &str = "shoal-peer/1";

/// The protocol version an upgrade token names, if this node speaks it.
pub fn version_of(token: &str) -> Option<u8> {
    [(PROTOCOL, 3), (PROTOCOL_V2, 2), (PROTOCOL_V1, 1)]
        .into_iter()
        .find(|(known, _)| token.eq_ignore_ascii_case(known))
        .map(|(_, version)| version)
}

/// The upgrade token of protocol `version`.
pub fn token_of(version: u8) -> &'static str {
    match version {
        3.. => PROTOCOL,
        2 => PROTOCOL_V2,
        _ => PROTOCOL_V1,
    }
}

/// The command layout log entries travel in under protocol `version`.
pub fn layout_of(version: u8) -> CommandLayout {
    if version >= 3 {
        CommandLayout::V2
    } else {
        CommandLayout::V1
    }
}
/// Bytes before each payload: its length and its checksum.
const HEADER_BYTES: usize = 8;

/// One message on a peer stream. Calls and replies pair up by `id`; an append stream's
/// requests and results by `stream`, in order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Frame {
    /// A request expecting one reply.
    Call { id: u64, group: GroupId, call: Call },
    /// The answer to the call `id`; `Err` carries why the receiver could not run it.
    Reply {
        id: u64,
        reply: Result<Reply, String>,
    },
    /// The next AppendEntries of pipelined stream `stream` for `group`.
    Append {
        stream: u64,
        group: GroupId,
        request: AppendEntriesRequest<TypeConfig>,
    },
    /// The result of the next AppendEntries of `stream`, in the order they were sent; `Err`
    /// ends the stream (the receiver's group stopped, or does not run here).
    Appended {
        stream: u64,
        result: Result<StreamAppendResult<TypeConfig>, String>,
    },
    /// The sender has no more requests for `stream` (or stopped reading its results).
    EndStream { stream: u64 },
}

/// The single-reply requests.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Call {
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    Append(AppendEntriesRequest<TypeConfig>),
    /// (Version 2.) The group's leader asks a member to stop its Raft timers: the group is
    /// idle, and everything up to `index` is replicated, committed and applied everywhere.
    Quiesce(QuiesceRequest),
    /// (Version 2.) One call per node pair standing in for the heartbeats of every quiesced
    /// group the sender follows the receiver in, whatever group the frame names.
    Liveness(LivenessRequest),
}

/// A quiesced follower's periodic check that its leaders are alive and still quiesced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LivenessRequest {
    pub from: crate::raft::types::NodeId,
    /// `(group, term)`: the groups the sender follows the receiver in, quiesced in that term.
    pub groups: Vec<(GroupId, u64)>,
}

/// A leader's request that a member quiesce.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuiesceRequest {
    pub term: u64,
    pub leader: crate::raft::types::NodeId,
    /// The last log index, replicated and applied on every member.
    pub index: Option<u64>,
}

/// Their answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Reply {
    Vote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    Append(AppendEntriesResponse<TypeConfig>),
    /// Whether the member quiesced.
    Quiesce(bool),
    /// The groups the receiver still leads, quiesced, in the term named.
    Liveness(Vec<GroupId>),
}

impl Call {
    /// Its name in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Vote(_) => "vote",
            Call::PreVote(_) => "pre-vote",
            Call::TransferLeader(_) => "transfer-leader",
            Call::Append(_) => "append",
            Call::Quiesce(_) => "quiesce",
            Call::Liveness(_) => "liveness",
        }
    }
}

/// Appends `frame`, encoded (its entries in `layout`) and framed, to `out`. On an error
/// `out` is left empty (the link it was for is closed).
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>, layout: CommandLayout) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    *out = with_layout(layout, || postcard::to_extend(frame, std::mem::take(out)))
        .map_err(|e| format!("encode peer frame in command {layout:?}: {e}"))?;
    let payload_len = out.len() - start - HEADER_BYTES;
    if payload_len > RPC_BODY_BYTES_MAX {
        return Err(format!(
            "peer frame of {payload_len} bytes exceeds the {RPC_BODY_BYTES_MAX}-byte limit"
        ));
    }
    let checksum = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// Reads the next frame (its entries in `layout`); `Ok(None)` at a clean end of stream
/// (between frames). `buffer` is reused from call to call.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    layout: CommandLayout,
) -> Result<Option<Frame>, String> {
    let mut header = [0u8; HEADER_BYTES];
    match reader.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(format!("read peer frame: {error}")),
    }
    reader
        .read_exact(&mut header[1..])
        .await
        .map_err(|e| format!("read peer frame header: {e}"))?;
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let expected = u32::from_le_bytes([c0, c1, c2, c3]);
    if len > RPC_BODY_BYTES_MAX {
        return Err(format!(
            "peer frame announces {len} bytes, over the {RPC_BODY_BYTES_MAX}-byte limit"
        ));
    }
    buffer.clear();
    buffer.resize(len, 0);
    reader
        .read_exact(buffer)
        .await
        .map_err(|e| format!("read peer frame of {len} bytes: {e}"))?;
    let actual = crc32c::crc32c(buffer);
    if actual != expected {
        return Err(format!(
            "peer frame checksum mismatch: header says {expected}, payload hashes to {actual}"
        ));
    }
    with_layout(layout, || postcard::from_bytes(buffer))
        .map(Some)
        .map_err(|e| format!("decode peer frame: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame::EndStream { stream: 7 }
    }

    #[tokio::test]
    async fn frames_round_trip_back_to_back() {
        let mut bytes = Vec::new();
        encode_into(&sample(), &mut bytes, CommandLayout::CURRENT).unwrap();
        encode_into(
            &Frame::Reply {
                id: 3,
                reply: Err("group 9 does not run on this node".into()),
            },
            &mut bytes,
            CommandLayout::CURRENT,
        )
        .unwrap();
        let mut reader = bytes.as_slice();
        let mut buffer = Vec::new();
        assert!(matches!(
            read_frame(&mut reader, &mut buffer, CommandLayout::CURRENT).await,
            Ok(Some(Frame::EndStream { stream: 7 }))
        ));
        match read_frame(&mut reader, &mut buffer, CommandLayout::CURRENT).await {
            Ok(Some(Frame::Reply {
                id: 3,
                reply: Err(message),
            })) => {
                assert!(message.contains("group 9"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_frame(&mut reader, &mut buffer, CommandLayout::CURRENT).await,
            Ok(None)
        ));
    }

    #[tokio::test]
    async fn a_flipped_bit_or_a_cut_frame_is_an_error_not_a_message() {
        let mut bytes = Vec::new();
        encode_into(&sample(), &mut bytes, CommandLayout::CURRENT).unwrap();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let error = read_frame(
            &mut flipped.as_slice(),
            &mut Vec::new(),
            CommandLayout::CURRENT,
        )
        .await
        .unwrap_err();
        assert!(error.contains("checksum mismatch"), "{error}");
        let cut = &bytes[..bytes.len() - 1];
        assert!(
            read_frame(&mut &cut[..], &mut Vec::new(), CommandLayout::CURRENT)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading() {
        let mut bytes = ((RPC_BODY_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        let error = read_frame(
            &mut bytes.as_slice(),
            &mut Vec::new(),
            CommandLayout::CURRENT,
        )
        .await
        .unwrap_err();
        assert!(error.contains("limit"), "{error}");
    }
}
