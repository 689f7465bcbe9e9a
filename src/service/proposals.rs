//! Proposal batching on the leader: writes that arrive while earlier proposals are in flight go
//! into one log entry together — with zero linger, whatever is waiting when a slot frees; a
//! write that finds a free slot and nobody waiting is proposed at once, as before — so
//! many concurrent clients cost one append, one responder and one apply call per entry instead
//! of one per request. Each request keeps its own statement batches in the entry, so its
//! results and its all-or-nothing rule are exactly those it would have had alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::errors::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, oneshot};

use crate::raft::types::{Command, Raft, StatementBatch, StatementResult};
use crate::service::ClientWriteFailure;

/// Entries proposed and not yet applied at once. openraft already writes every waiting entry
/// in one append; with 4 slots 16 clients lost 14 % (less pipelining) while 64 gained 7 %,
/// with 16 both were unchanged (docs/benchmarks.md): batching starts only past 16 concurrent
/// writes.
const IN_FLIGHT_MAX: usize = 16;
/// Requests and statement batches one entry gathers at most.
const REQUESTS_PER_ENTRY_MAX: usize = 256;
const BATCHES_PER_ENTRY_MAX: usize = 4096;

/// A request's part of an applied entry.
pub struct Proposed {
    pub index: u64,
    /// One result per statement of the request, in order.
    pub results: Vec<StatementResult>,
}

struct Waiting {
    /// Tells a caller's own request from others' in an entry it drained.
    id: u64,
    batches: Vec<StatementBatch>,
    reply: oneshot::Sender<Result<Proposed, ClientWriteFailure>>,
}

/// The leader's proposal queue for one group. There is no batching task: a caller that finds
/// a free slot proposes everything waiting, itself — inline when its request is alone (no
/// hand-off at all, as before batching), in a task of its own when it carries others'
/// requests (a caller that gives up must not take their entry down with it).
pub struct Proposals {
    raft: Raft,
    waiting: Mutex<VecDeque<Waiting>>,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

impl Proposals {
    pub fn new(raft: Raft) -> Proposals {
        Proposals {
            raft,
            waiting: Mutex::new(VecDeque::new()),
            slots: Arc::new(Semaphore::new(IN_FLIGHT_MAX)),
            next_id: AtomicU64::new(0),
        }
    }

    /// Proposes `batches` (this node must lead), in an entry shared with whatever other
    /// requests are waiting, and returns this request's results once the entry is applied here.
    /// Waiting requests are bounded by the requests the node admits at once (connection limits
    /// and request timeouts): each caller waits on its own request.
    pub async fn propose(
        &self,
        batches: Vec<StatementBatch>,
    ) -> Result<Proposed, ClientWriteFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        self.lock().push_back(Waiting { id, batches, reply });
        loop {
            let slot = tokio::select! {
                biased;
                result = &mut answer => return result.unwrap_or_else(|_| Err(stopped())),
                slot = self.slots.clone().acquire_owned() => slot,
            };
            let Ok(slot) = slot else {
                return Err(stopped());
            };
            let entry = self.gather();
            match entry.as_slice() {
                // Someone else took this request into their entry.
                [] => {
                    drop(slot);
                    return answer.await.unwrap_or_else(|_| Err(stopped()));
                }
                [alone] if alone.id == id => {
                    propose_entry(&self.raft, entry).await;
                    drop(slot);
                    return answer.await.unwrap_or_else(|_| Err(stopped()));
                }
                _ => {
                    let raft = self.raft.clone();
                    tokio::spawn(async move {
                        propose_entry(&raft, entry).await;
                        drop(slot);
                    });
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the waiting requests, oldest first, up to the entry limits.
    fn gather(&self) -> Vec<Waiting> {
        let mut waiting = self.lock();
        let mut entry = Vec::new();
        let mut batches = 0;
        while entry.len() < REQUESTS_PER_ENTRY_MAX && batches < BATCHES_PER_ENTRY_MAX {
            let Some(next) = waiting.pop_front() else {
                break;
            };
            batches += next.batches.len();
            entry.push(next);
        }
        entry
    }
}

/// What a caller gets when its request can no longer be proposed here.
fn stopped() -> ClientWriteFailure {
    RaftError::APIError(ClientWriteError::ForwardToLeader(
        openraft::errors::ForwardToLeader::empty(),
    ))
}

async fn propose_entry(raft: &Raft, mut entry: Vec<Waiting>) {
    let shares: Vec<usize> = entry.iter().map(|w| w.batches.len()).collect();
    let command = Command {
        timestamp_ms: crate::service::unix_now_ms(),
        batches: entry
            .iter_mut()
            .flat_map(|w| std::mem::take(&mut w.batches))
            .collect(),
        load: None,
        users: None,
        shard: None,
    };
    match raft.client_write(command).await {
        Ok(written) => {
            let index = written.log_id.index;
            let mut results = written.data.batches.into_iter();
            for (waiting, share) in entry.into_iter().zip(shares) {
                let results = results.by_ref().take(share).flatten().collect();
                let _ = waiting.reply.send(Ok(Proposed { index, results }));
            }
        }
        Err(error) => {
            for waiting in entry {
                let _ = waiting.reply.send(Err(error.clone()));
            }
        }
    }
}
