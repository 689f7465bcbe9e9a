//! Recorded histories: every operation a workload client invoked, when, and how it ended —
//! `ok` with a result, `fail` (certainly had no effect) or `unknown` (may or may not have taken
//! effect, e.g. a timed-out write).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<R> {
    Ok(R),
    /// Certainly not applied (the request never reached a node, or was refused up front).
    Fail(String),
    /// Perhaps applied, perhaps not.
    Unknown(String),
}

/// One operation of one client.
#[derive(Debug, Clone)]
pub struct Op<I, R> {
    pub client: usize,
    pub input: I,
    /// Since the start of the run.
    pub invoked: Duration,
    pub completed: Duration,
    pub outcome: Outcome<R>,
}

/// A history shared by a workload's clients; refuses operations beyond `capacity`.
pub struct History<I, R> {
    start: Instant,
    capacity: usize,
    ops: Mutex<Vec<Op<I, R>>>,
}

impl<I: Clone, R: Clone> History<I, R> {
    pub fn new(start: Instant, capacity: usize) -> Self {
        History {
            start,
            capacity,
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Time since the run started (an operation's invocation time).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records a completed operation; false once the history is full (the client stops).
    pub fn record(&self, client: usize, input: I, invoked: Duration, outcome: Outcome<R>) -> bool {
        let completed = self.now();
        let mut ops = self.ops.lock().expect("history lock");
        if ops.len() >= self.capacity {
            return false;
        }
        ops.push(Op {
            client,
            input,
            invoked,
            completed,
            outcome,
        });
        true
    }

    pub fn ops(&self) -> Vec<Op<I, R>> {
        self.ops.lock().expect("history lock").clone()
    }

    /// (ok, fail, unknown) counts.
    pub fn tally(&self) -> (usize, usize, usize) {
        let ops = self.ops.lock().expect("history lock");
        ops.iter()
            .fold((0, 0, 0), |(ok, fail, unknown), op| match op.outcome {
                Outcome::Ok(_) => (ok + 1, fail, unknown),
                Outcome::Fail(_) => (ok, fail + 1, unknown),
                Outcome::Unknown(_) => (ok, fail, unknown + 1),
            })
    }
}
