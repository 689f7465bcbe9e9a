//! The peer stream: one persistent binary connection from this node to each peer, shared by
//! every Raft group, carrying checksummed frames (`frame`) — votes and other calls matched to
//! their replies, and AppendEntries pipelined through openraft's `stream_append`.
//!
//! It begins as an HTTP/1.1 upgrade on the Raft port (`POST /raft/v2/stream`,
//! `Upgrade: shoal-peer/3`, older versions still spoken), so TLS, the Raft allow-list, connection limits and certificate
//! reloads apply to it exactly as to the Raft port's other requests, and the test network's
//! proxy attributes it to its sender by the request head. A peer that does not know the
//! upgrade (an older node) is called over per-request HTTP instead (`client`). Snapshots stay
//! HTTP requests of their own, streamed in chunks beside the peer stream.

pub mod append;
pub mod client;
pub mod frame;
pub mod server;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use frame::Frame;

/// Frames waiting to be written on one connection; senders wait when it is full.
pub const OUTGOING_FRAMES_MAX: usize = 1024;
/// Bytes gathered into one socket write when several frames are waiting.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;

/// Writes the frames arriving on `frames` to `writer` until the channel closes or a write
/// fails: every frame waiting at the time goes out in one write, so a burst costs one system
/// call, not one per frame.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut frames: mpsc::Receiver<Frame>,
    mut writer: W,
    layout: crate::types::layout::CommandLayout,
) -> Result<(), String> {
    let mut buffer = Vec::with_capacity(64 * 1024);
    let sent = &crate::metrics::metrics().peer_frames_sent;
    while let Some(frame) = frames.recv().await {
        buffer.clear();
        frame::encode_into(&frame, &mut buffer, layout)?;
        let mut count = 1;
        while buffer.len() < WRITE_BATCH_BYTES {
            match frames.try_recv() {
                Ok(frame) => frame::encode_into(&frame, &mut buffer, layout)?,
                Err(_) => break,
            }
            count += 1;
        }
        sent.inc_by(count);
        writer
            .write_all(&buffer)
            .await
            .map_err(|e| format!("write to peer: {e}"))?;
        writer
            .flush()
            .await
            .map_err(|e| format!("flush to peer: {e}"))?;
        if buffer.capacity() > 4 * WRITE_BATCH_BYTES {
            // A snapshot-sized burst does not pin its buffer for the connection's life.
            buffer = Vec::with_capacity(64 * 1024);
        }
    }
    let _ = writer.shutdown().await;
    Ok(())
}
