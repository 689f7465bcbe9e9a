//! Concurrent reads on the leader share one leadership confirmation, as etcd batches ReadIndex
//! requests: each confirmation is one round trip to RaftCore, where it queues behind writes,
//! so sixteen readers asking at once should cost one, not sixteen.
//!
//! Safety: a read is answered by a confirmation that *started after the read arrived* — never
//! by one already under way — so the read index it yields is at least the commit index at the
//! read's arrival, and the leadership (or lease) it proves holds at a moment after the read
//! arrived: exactly what each read asking on its own would get.

use std::sync::{Arc, Mutex};

use openraft::errors::{LinearizableReadError, RaftError};
use openraft::raft::linearizable_read::{Linearizer, LinearizerOption};
use tokio::sync::{Notify, watch};

use crate::raft::types::{Raft, TypeConfig};
use crate::service::ServiceError;

/// One confirmation's outcome, shared by every read that joined it.
type Outcome = Result<Linearizer<TypeConfig>, ServiceError>;

/// Confirmations of one kind (one [`LinearizerOption`]) for one group, at most one running.
pub struct SharedConfirmations {
    raft: Raft,
    option: LinearizerOption,
    state: Mutex<State>,
    /// Wakes the next round's driver when the running confirmation ends.
    finished: Notify,
}

#[derive(Default)]
struct State {
    running: bool,
    /// The round collecting reads that arrive before it starts.
    gathering: Option<watch::Sender<Option<Outcome>>>,
}

impl SharedConfirmations {
    pub fn new(raft: Raft, option: LinearizerOption) -> Arc<SharedConfirmations> {
        Arc::new(SharedConfirmations {
            raft,
            option,
            state: Mutex::new(State::default()),
            finished: Notify::new(),
        })
    }

    /// Confirms this node may serve a read that arrived now: the linearizer of a confirmation
    /// started after this call.
    pub async fn confirm(self: &Arc<Self>) -> Outcome {
        let mut outcome = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match &state.gathering {
                Some(round) => round.subscribe(),
                None => {
                    let (round, outcome) = watch::channel(None);
                    state.gathering = Some(round);
                    // A task of its own: a read that gives up (its timeout) must not strand
                    // the others that joined the round.
                    tokio::spawn(self.clone().drive_next_round());
                    outcome
                }
            }
        };
        let done = outcome.wait_for(|result| result.is_some()).await;
        match done {
            Ok(result) => result
                .clone()
                .unwrap_or_else(|| Err(ServiceError::Internal("no confirmation".into()))),
            Err(_) => Err(ServiceError::Internal(
                "the leadership confirmation stopped".into(),
            )),
        }
    }

    /// Waits for the running confirmation to end, then runs the gathered round.
    async fn drive_next_round(self: Arc<Self>) {
        let round = loop {
            let finished = self.finished.notified();
            let mut finished = std::pin::pin!(finished);
            finished.as_mut().enable();
            {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if !state.running {
                    state.running = true;
                    // Later reads gather into a new round: this one starts now.
                    break state.gathering.take();
                }
            }
            finished.await;
        };
        let outcome = self
            .raft
            .get_read_linearizer(self.option.clone())
            .await
            .map_err(|error| match error {
                RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => {
                    ServiceError::NoLeader
                }
                RaftError::APIError(LinearizableReadError::QuorumNotEnough(quorum)) => {
                    ServiceError::Unavailable(format!("leader cannot reach a quorum: {quorum}"))
                }
                RaftError::Fatal(fatal) => ServiceError::Unavailable(fatal.to_string()),
            });
        if let Some(round) = round {
            round.send_replace(Some(outcome));
        }
        self.state.lock().unwrap_or_else(|p| p.into_inner()).running = false;
        self.finished.notify_waiters();
    }
}
