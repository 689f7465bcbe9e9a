//! Register workload: reads (weak, linearizable or strong), writes and compare-and-sets
//! (`UPDATE … WHERE v = ?`) on a few integer registers at a time, each key checked for
//! linearizability on its own. Keys rotate every few hundred operations, or sooner after a few
//! writes with unknown outcomes, so each key's search stays small.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use serde_json::json;

use super::RunContext;
use crate::client::Reply;
use crate::history::{History, Outcome};
use crate::linearizability::{self, Call, Register, RegisterInput, RegisterOutput, Verdict};

pub const SCHEMA: &str = "CREATE TABLE registers(k INTEGER PRIMARY KEY, v INTEGER NOT NULL)";
/// Keys in use at once, and operations before moving on to fresh keys.
const KEYS_AT_ONCE: u64 = 3;
const OPERATIONS_PER_KEY_SET: u64 = 300;
/// Writes with unknown outcomes before moving on to fresh keys. Each may take effect at any
/// later time or never, so the search grows exponentially in their number per key; a fault
/// that leaves many requests in doubt (seed 103 once put 28 on one key) ends the key set.
const UNKNOWNS_PER_KEY_SET: u64 = 6;
/// Values are drawn from a small range so compare-and-set often succeeds.
const VALUES: i64 = 5;
/// Search steps allowed per key before the checker gives up.
const STEP_BUDGET: u64 = 20_000_000;

pub type RegisterHistory = History<(u64, RegisterInput), RegisterOutput>;

pub struct Workload {
    pub history: RegisterHistory,
    /// The key set in use, and what has happened on it so far.
    key_set: AtomicU64,
    operations_in_set: AtomicU64,
    unknowns_in_set: AtomicU64,
}

impl Workload {
    pub fn new(context: &RunContext) -> Arc<Workload> {
        Arc::new(Workload {
            history: History::new(context.start, super::HISTORY_CAPACITY),
            key_set: AtomicU64::new(0),
            operations_in_set: AtomicU64::new(0),
            unknowns_in_set: AtomicU64::new(0),
        })
    }

    pub async fn client(self: Arc<Self>, context: Arc<RunContext>, id: usize) {
        let mut rng = context.rng("register", id);
        while context.running() {
            let key_set = self.key_set.load(Ordering::SeqCst);
            if self.operations_in_set.fetch_add(1, Ordering::SeqCst) >= OPERATIONS_PER_KEY_SET {
                self.next_key_set(key_set);
            }
            let key = key_set * KEYS_AT_ONCE + rng.random_range(0..KEYS_AT_ONCE);
            let input = match rng.random_range(0..10) {
                0..4 => RegisterInput::Read,
                4..7 => RegisterInput::Write(rng.random_range(0..VALUES)),
                _ => RegisterInput::Cas {
                    expected: rng.random_range(0..VALUES),
                    new: rng.random_range(0..VALUES),
                },
            };
            let url = context.pick_node(&mut rng);
            let invoked = self.history.now();
            let (path, body) = match input {
                RegisterInput::Read => (
                    // `weak` reads on the leader under its lease (decided without RaftCore
                    // while the lease holds): as linearizable as the other two.
                    [
                        "/db/query?level=weak",
                        "/db/query?level=linearizable",
                        "/db/query?level=strong",
                    ][rng.random_range(0..3)],
                    json!([["SELECT v FROM registers WHERE k = ?", key]]),
                ),
                RegisterInput::Write(value) => (
                    "/db/execute",
                    json!([[
                        "INSERT INTO registers(k, v) VALUES(?, ?) \
                         ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                        key,
                        value
                    ]]),
                ),
                RegisterInput::Cas { expected, new } => (
                    "/db/execute",
                    json!([[
                        "UPDATE registers SET v = ? WHERE k = ? AND v = ?",
                        new,
                        key,
                        expected
                    ]]),
                ),
            };
            let reply = context.client.send(&url, path, &body).await;
            let outcome = match (reply, input) {
                (Reply::Ok(results), RegisterInput::Read) => {
                    let value = results[0]["values"][0][0].as_i64();
                    Outcome::Ok(RegisterOutput::Read(value))
                }
                (Reply::Ok(_), RegisterInput::Write(_)) => Outcome::Ok(RegisterOutput::Written),
                (Reply::Ok(results), RegisterInput::Cas { .. }) => {
                    let written = results[0]["rows_affected"].as_u64().unwrap_or(0) == 1;
                    Outcome::Ok(RegisterOutput::Cas(written))
                }
                // A read that did not answer had no effect.
                (Reply::Fail(e) | Reply::Unknown(e), RegisterInput::Read) => Outcome::Fail(e),
                (Reply::Fail(e), _) => Outcome::Fail(e),
                (Reply::Unknown(e), _) => Outcome::Unknown(e),
            };
            if matches!(outcome, Outcome::Unknown(_))
                && self.unknowns_in_set.fetch_add(1, Ordering::SeqCst) + 1 >= UNKNOWNS_PER_KEY_SET
            {
                self.next_key_set(key_set);
            }
            if !self.history.record(id, (key, input), invoked, outcome) {
                return;
            }
            context.think(&mut rng).await;
        }
    }

    /// Moves every client on to fresh keys, once per key set however many ask at once.
    fn next_key_set(&self, current: u64) {
        if self
            .key_set
            .compare_exchange(current, current + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.operations_in_set.store(0, Ordering::SeqCst);
            self.unknowns_in_set.store(0, Ordering::SeqCst);
        }
    }

    /// Checks every key's history for linearizability; returns a summary or the violation.
    pub fn check(&self) -> Result<String, String> {
        let mut by_key: BTreeMap<u64, Vec<Call<RegisterInput, RegisterOutput>>> = BTreeMap::new();
        for op in self.history.ops() {
            let (key, input) = op.input;
            let call = match op.outcome {
                Outcome::Ok(output) => Call {
                    input,
                    output: Some(output),
                    invoked: op.invoked,
                    returned: Some(op.completed),
                },
                Outcome::Unknown(_) => Call {
                    input,
                    output: None,
                    invoked: op.invoked,
                    returned: None,
                },
                Outcome::Fail(_) => continue,
            };
            by_key.entry(key).or_default().push(call);
        }
        for (key, calls) in &by_key {
            match check_key(calls) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable {
                    longest_prefix,
                    unplaceable,
                } => {
                    let show = |ops: &[usize]| -> Vec<String> {
                        ops.iter()
                            .map(|&i| {
                                let c = &calls[i];
                                format!(
                                    "#{i} {:?} -> {:?} [{:?}..{:?}]",
                                    c.input, c.output, c.invoked, c.returned
                                )
                            })
                            .collect()
                    };
                    let tail = longest_prefix.len().saturating_sub(8);
                    return Err(format!(
                        "register {key} is not linearizable.\n  last operations that could be ordered:\n    {}\n  operations none of which could come next:\n    {}",
                        show(&longest_prefix[tail..]).join("\n    "),
                        show(&unplaceable[..unplaceable.len().min(12)]).join("\n    ")
                    ));
                }
                Verdict::GaveUp { steps } => {
                    let history: Vec<String> = calls
                        .iter()
                        .take(200)
                        .map(|c| {
                            format!(
                                "{:?} -> {:?} [{:?}..{:?}]",
                                c.input, c.output, c.invoked, c.returned
                            )
                        })
                        .collect();
                    return Err(format!(
                        "register {key}: linearizability search gave up after {steps} steps ({} operations):\n    {}",
                        calls.len(),
                        history.join("\n    ")
                    ));
                }
            }
        }
        let (ok, fail, unknown) = self.history.tally();
        Ok(format!(
            "register: {} keys linearizable; {ok} ok, {fail} failed, {unknown} unknown",
            by_key.len()
        ))
    }
}

/// One key's verdict. First without the unknown writes whose value nobody ever saw: an unknown
/// write may never have happened, so a linearization without them is one of the whole history.
/// Only when that fails is the full search (exponential in unknown operations) run.
fn check_key(calls: &[Call<RegisterInput, RegisterOutput>]) -> Verdict {
    let observed = observed_values(calls);
    let unseen_unknown_write = |call: &&Call<RegisterInput, RegisterOutput>| {
        call.output.is_none()
            && match call.input {
                RegisterInput::Write(value) | RegisterInput::Cas { new: value, .. } => {
                    !observed.contains(&value)
                }
                RegisterInput::Read => false,
            }
    };
    let reduced: Vec<_> = calls
        .iter()
        .filter(|call| !unseen_unknown_write(call))
        .cloned()
        .collect();
    if reduced.len() < calls.len()
        && linearizability::check(&Register, &reduced, STEP_BUDGET) == Verdict::Linearizable
    {
        return Verdict::Linearizable;
    }
    linearizability::check(&Register, calls, STEP_BUDGET)
}

/// Values some successful operation saw in the register: read, or found by a compare-and-set.
fn observed_values(calls: &[Call<RegisterInput, RegisterOutput>]) -> HashSet<i64> {
    calls
        .iter()
        .filter_map(|call| match (call.input, call.output) {
            (_, Some(RegisterOutput::Read(Some(value)))) => Some(value),
            (RegisterInput::Cas { expected, .. }, Some(RegisterOutput::Cas(true))) => {
                Some(expected)
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn call(
        input: RegisterInput,
        output: Option<RegisterOutput>,
        from: u64,
        to: Option<u64>,
    ) -> Call<RegisterInput, RegisterOutput> {
        Call {
            input,
            output,
            invoked: Duration::from_millis(from),
            returned: to.map(Duration::from_millis),
        }
    }

    /// Many writes that timed out and were never seen would make the full search explode; the
    /// key is still judged, and a real stale read among them is still caught.
    #[test]
    fn unseen_unknown_writes_do_not_exhaust_the_search() {
        let mut calls: Vec<_> = (0..60)
            .map(|i| call(RegisterInput::Write(1000 + i), None, i as u64, None))
            .collect();
        calls.push(call(
            RegisterInput::Write(1),
            Some(RegisterOutput::Written),
            100,
            Some(101),
        ));
        calls.push(call(
            RegisterInput::Read,
            Some(RegisterOutput::Read(Some(1))),
            102,
            Some(103),
        ));
        assert_eq!(check_key(&calls), Verdict::Linearizable);

        // A stale read after a newer acknowledged write is still a violation.
        calls.drain(3..60);
        calls.push(call(
            RegisterInput::Write(2),
            Some(RegisterOutput::Written),
            104,
            Some(105),
        ));
        calls.push(call(
            RegisterInput::Read,
            Some(RegisterOutput::Read(Some(1))),
            106,
            Some(107),
        ));
        assert!(
            matches!(check_key(&calls), Verdict::NotLinearizable { .. }),
            "{:?}",
            check_key(&calls)
        );
    }
}
