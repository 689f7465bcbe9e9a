//! AppendEntries pipelined over a peer stream: openraft's requests are sent as they come,
//! without waiting for earlier answers, and the peer's results come back in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use openraft::OptionalSend;
use openraft::base::BoxStream;
use openraft::errors::{NetworkError, RPCError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::mpsc;

use crate::raft::peer_stream::client::{Link, PeerAppendResult};
use crate::raft::types::{GroupId, TypeConfig};

/// One item of a pipelined stream's results.
pub type AppendResult = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Shortest time requests may wait unanswered before the stream counts as stuck: openraft's
/// per-request budget is a heartbeat interval, less than one fsync on a busy disk.
const STALL_MIN: Duration = Duration::from_millis(500);

/// Sends `input`'s requests over `link` as append stream of `group`; the returned stream
/// yields their results in order, and an error when the link breaks or stalls.
pub fn pipelined_appends<'s, S>(
    link: Arc<Link>,
    group: GroupId,
    mut input: S,
    option: &RPCOption,
) -> BoxStream<'s, AppendResult>
where
    S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>>
        + OptionalSend
        + Unpin
        + 'static,
{
    let (stream, results) = link.open_stream();
    let sent = Arc::new(AtomicU64::new(0));
    let sender = tokio::spawn({
        let (link, sent) = (link.clone(), sent.clone());
        async move {
            while let Some(request) = input.next().await {
                if link.append(stream, group, request).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Release);
            }
            link.finish_requests(stream);
        }
    });
    let state = Pipeline {
        link,
        stream,
        sender,
        sent,
        answered: 0,
        results,
        stall: option.soft_ttl().max(STALL_MIN),
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        |mut state| async move {
            let item = state.next_result().await?;
            Some((item, state))
        },
    ))
}

/// The receiving end of one pipelined stream; dropping it ends the stream on both sides.
struct Pipeline {
    link: Arc<Link>,
    stream: u64,
    sender: tokio::task::JoinHandle<()>,
    sent: Arc<AtomicU64>,
    answered: u64,
    results: mpsc::Receiver<PeerAppendResult>,
    stall: Duration,
    ended: bool,
}

impl Pipeline {
    async fn next_result(&mut self) -> Option<AppendResult> {
        if self.ended {
            return None;
        }
        loop {
            match tokio::time::timeout(self.stall, self.results.recv()).await {
                Ok(Some(Ok(result))) => {
                    self.answered += 1;
                    // openraft ends a stream at a refused append; so does the peer.
                    self.ended = result.is_err();
                    return Some(Ok(result));
                }
                Ok(Some(Err(message))) => {
                    self.ended = true;
                    return Some(Err(RPCError::Unreachable(Unreachable::from_string(
                        format!("append stream to node {}: {message}", self.link.target()),
                    ))));
                }
                Ok(None) => {
                    self.ended = true;
                    if self.answered < self.sent.load(Ordering::Acquire) {
                        return Some(Err(RPCError::Network(NetworkError::from_string(format!(
                            "the peer stream to node {} broke with appends unanswered",
                            self.link.target()
                        )))));
                    }
                    return None;
                }
                Err(_) if self.answered < self.sent.load(Ordering::Acquire) => {
                    self.ended = true;
                    let message = format!(
                        "node {} answered no append for {:?}",
                        self.link.target(),
                        self.stall
                    );
                    self.link.close(&message);
                    return Some(Err(RPCError::Network(NetworkError::from_string(message))));
                }
                Err(_) => {} // nothing outstanding: waiting for openraft's next request
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.sender.abort();
        self.link.end_stream(self.stream);
    }
}
