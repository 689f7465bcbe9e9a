//! Linearizability checking: is there one order of the operations, consistent with real time
//! (an operation that returned before another was invoked comes first), in which every result
//! is what a single copy of the object would have given? Wing & Gong's search with Lowe's
//! memoization of (linearized set, state), as in porcupine. An operation with an unknown outcome
//! may take effect at any point after its invocation, or never (its return is placed at +∞).
//!
//! Written here rather than taken from `stateright`: its `LinearizabilityTester` handles
//! pending operations but allows one in-flight operation per thread id, tries orderings
//! without memoization, and brings the whole model checker (tiny_http, dashmap, …) along; this
//! search is short and needs nothing but std.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

/// A sequential specification of the object under test.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    type Output: Debug;

    fn initial(&self) -> Self::State;

    /// The state after `input` is applied to `state`, if `output` (`None`: unknown) is a
    /// result that state could give.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history, as the checker sees it.
#[derive(Debug, Clone)]
pub struct Call<I, O> {
    pub input: I,
    /// `None` when the outcome is unknown.
    pub output: Option<O>,
    pub invoked: Duration,
    /// `None` when the outcome is unknown (the operation may take effect at any later time).
    pub returned: Option<Duration>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Linearizable,
    /// No order exists; `longest_prefix` is the longest run of operations (indices into the
    /// history) that could be ordered, `unplaceable` the operations pending when it got stuck.
    NotLinearizable {
        longest_prefix: Vec<usize>,
        unplaceable: Vec<usize>,
    },
    /// The search ran out of its step budget without an answer.
    GaveUp {
        steps: u64,
    },
}

const NIL: usize = usize::MAX;

/// The history as a doubly linked list of call and return events in time order, from which
/// linearized operations are lifted out and put back while backtracking.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For a call event, the index of its return event; `NIL` for return events.
    matching: Vec<usize>,
    op: Vec<usize>,
    head: usize,
}

impl Events {
    fn new<I, O>(calls: &[Call<I, O>]) -> Events {
        // (time, is_return, op): at equal times calls come first, the more permissive order.
        let mut order: Vec<(Duration, bool, usize)> = Vec::with_capacity(calls.len() * 2);
        for (op, call) in calls.iter().enumerate() {
            order.push((call.invoked, false, op));
            order.push((call.returned.unwrap_or(Duration::MAX), true, op));
        }
        order.sort();
        let count = order.len();
        let head = count;
        let mut events = Events {
            next: vec![NIL; count + 1],
            prev: vec![NIL; count + 1],
            matching: vec![NIL; count + 1],
            op: vec![NIL; count + 1],
            head,
        };
        let mut call_event = vec![NIL; calls.len()];
        let mut previous = head;
        for (event, &(_, is_return, op)) in order.iter().enumerate() {
            events.op[event] = op;
            if is_return {
                events.matching[call_event[op]] = event;
            } else {
                call_event[op] = event;
            }
            events.next[previous] = event;
            events.prev[event] = previous;
            previous = event;
        }
        events
    }

    fn is_call(&self, event: usize) -> bool {
        self.matching[event] != NIL
    }

    fn unlink(&mut self, event: usize) {
        let (prev, next) = (self.prev[event], self.next[event]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, event: usize) {
        let (prev, next) = (self.prev[event], self.next[event]);
        self.next[prev] = event;
        if next != NIL {
            self.prev[next] = event;
        }
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.matching[call]);
    }

    /// Puts back what [`Events::lift`] took out (in reverse order).
    fn unlift(&mut self, call: usize) {
        self.relink(self.matching[call]);
        self.relink(call);
    }

    /// Operations whose events are still in the list.
    fn pending_ops(&self) -> Vec<usize> {
        let mut ops = Vec::new();
        let mut event = self.next[self.head];
        while event != NIL {
            if self.is_call(event) {
                ops.push(self.op[event]);
            }
            event = self.next[event];
        }
        ops
    }
}

/// Searches for a linearization of `calls`, giving up after `step_budget` steps.
pub fn check<M: Model>(
    model: &M,
    calls: &[Call<M::Input, M::Output>],
    step_budget: u64,
) -> Verdict {
    let mut events = Events::new(calls);
    let mut state = model.initial();
    let mut linearized = vec![0u64; calls.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut placed: Vec<(usize, M::State)> = Vec::new();
    let mut longest_prefix: Vec<usize> = Vec::new();
    let mut unplaceable: Vec<usize> = Vec::new();
    let mut entry = events.next[events.head];
    let mut steps = 0u64;
    while events.next[events.head] != NIL {
        steps += 1;
        if steps > step_budget {
            return Verdict::GaveUp { steps };
        }
        if events.is_call(entry) {
            let op = events.op[entry];
            let call = &calls[op];
            if let Some(next_state) = model.step(&state, &call.input, call.output.as_ref()) {
                let mut next_linearized = linearized.clone();
                next_linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((next_linearized.clone(), next_state.clone())) {
                    placed.push((entry, std::mem::replace(&mut state, next_state)));
                    linearized = next_linearized;
                    events.lift(entry);
                    if placed.len() > longest_prefix.len() {
                        longest_prefix = placed.iter().map(|(e, _)| events.op[*e]).collect();
                        unplaceable = events.pending_ops();
                    }
                    entry = events.next[events.head];
                    continue;
                }
            }
            entry = events.next[entry];
        } else {
            // A return reached while its call is unplaced: undo the last placement.
            let Some((call_event, previous_state)) = placed.pop() else {
                return Verdict::NotLinearizable {
                    longest_prefix,
                    unplaceable: if unplaceable.is_empty() {
                        events.pending_ops()
                    } else {
                        unplaceable
                    },
                };
            };
            let op = events.op[call_event];
            linearized[op / 64] &= !(1 << (op % 64));
            state = previous_state;
            events.unlift(call_event);
            entry = events.next[call_event];
        }
    }
    Verdict::Linearizable
}

/// A register per key holding an integer or nothing, with read, write and compare-and-set.
pub struct Register;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterInput {
    Read,
    Write(i64),
    Cas { expected: i64, new: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutput {
    Read(Option<i64>),
    Written,
    /// Whether the compare-and-set found the expected value (and so wrote).
    Cas(bool),
}

impl Model for Register {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn initial(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Option<i64>> {
        match (input, output) {
            (RegisterInput::Read, Some(RegisterOutput::Read(seen))) => {
                (seen == state).then_some(*state)
            }
            (RegisterInput::Read, _) => Some(*state),
            (RegisterInput::Write(value), _) => Some(Some(*value)),
            (RegisterInput::Cas { expected, new }, Some(RegisterOutput::Cas(true))) => {
                (*state == Some(*expected)).then_some(Some(*new))
            }
            (RegisterInput::Cas { expected, .. }, Some(RegisterOutput::Cas(false))) => {
                (*state != Some(*expected)).then_some(*state)
            }
            (RegisterInput::Cas { expected, new }, _) => Some(if *state == Some(*expected) {
                Some(*new)
            } else {
                *state
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegisterInput::*;
    use RegisterOutput as Out;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    /// An operation invoked at `from` ms that returned `output` at `to` ms.
    fn op(input: RegisterInput, output: Out, from: u64, to: u64) -> Call<RegisterInput, Out> {
        Call {
            input,
            output: Some(output),
            invoked: ms(from),
            returned: Some(ms(to)),
        }
    }

    /// An operation invoked at `from` ms whose outcome never became known.
    fn unknown(input: RegisterInput, from: u64) -> Call<RegisterInput, Out> {
        Call {
            input,
            output: None,
            invoked: ms(from),
            returned: None,
        }
    }

    fn verdict(history: &[Call<RegisterInput, Out>]) -> Verdict {
        check(&Register, history, 1_000_000)
    }

    #[test]
    fn sequential_history_with_matching_results_is_linearizable() {
        let history = [
            op(Read, Out::Read(None), 0, 1),
            op(Write(1), Out::Written, 2, 3),
            op(Read, Out::Read(Some(1)), 4, 5),
            op(
                Cas {
                    expected: 1,
                    new: 2,
                },
                Out::Cas(true),
                6,
                7,
            ),
            op(
                Cas {
                    expected: 1,
                    new: 3,
                },
                Out::Cas(false),
                8,
                9,
            ),
            op(Read, Out::Read(Some(2)), 10, 11),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_an_acknowledged_write_is_caught() {
        let history = [
            op(Write(1), Out::Written, 0, 1),
            op(Write(2), Out::Written, 2, 3),
            op(Read, Out::Read(Some(1)), 4, 5),
        ];
        let Verdict::NotLinearizable {
            longest_prefix,
            unplaceable,
        } = verdict(&history)
        else {
            panic!("stale read accepted");
        };
        assert_eq!(longest_prefix, vec![0, 1]);
        assert_eq!(unplaceable, vec![2]);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [None, Some(1)] {
            let history = [
                op(Write(1), Out::Written, 0, 10),
                op(Read, Out::Read(seen), 2, 4),
            ];
            assert_eq!(
                verdict(&history),
                Verdict::Linearizable,
                "read saw {seen:?}"
            );
        }
    }

    #[test]
    fn reads_may_not_go_back_in_time_during_a_write() {
        // Both reads overlap the write, but the second starts after the first has seen 1.
        let history = [
            op(Write(1), Out::Written, 0, 10),
            op(Read, Out::Read(Some(1)), 1, 2),
            op(Read, Out::Read(None), 3, 4),
        ];
        assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn a_write_with_unknown_outcome_may_or_may_not_take_effect() {
        let observed = [
            unknown(Write(7), 0),
            op(Read, Out::Read(None), 1, 2),
            op(Read, Out::Read(Some(7)), 3, 4),
        ];
        assert_eq!(verdict(&observed), Verdict::Linearizable);
        let never_observed = [unknown(Write(7), 0), op(Read, Out::Read(None), 5, 6)];
        assert_eq!(verdict(&never_observed), Verdict::Linearizable);
        // But it cannot take effect before it was invoked.
        let too_early = [op(Read, Out::Read(Some(7)), 0, 1), unknown(Write(7), 2)];
        assert!(matches!(
            verdict(&too_early),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let history = [
            op(Write(1), Out::Written, 0, 1),
            op(Write(2), Out::Written, 2, 3), // acknowledged, then lost
            op(Read, Out::Read(Some(1)), 10, 11),
            op(Read, Out::Read(Some(1)), 12, 13),
        ];
        assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn compare_and_set_succeeds_only_on_the_expected_value() {
        let wrong_success = [
            op(Write(1), Out::Written, 0, 1),
            op(
                Cas {
                    expected: 2,
                    new: 3,
                },
                Out::Cas(true),
                2,
                3,
            ),
        ];
        assert!(matches!(
            verdict(&wrong_success),
            Verdict::NotLinearizable { .. }
        ));
        let wrong_failure = [
            op(Write(2), Out::Written, 0, 1),
            op(
                Cas {
                    expected: 2,
                    new: 3,
                },
                Out::Cas(false),
                2,
                3,
            ),
        ];
        assert!(matches!(
            verdict(&wrong_failure),
            Verdict::NotLinearizable { .. }
        ));
        // An unknown CAS that found its value explains a later read of the new value.
        let unknown_cas = [
            op(Write(2), Out::Written, 0, 1),
            unknown(
                Cas {
                    expected: 2,
                    new: 3,
                },
                2,
            ),
            op(Read, Out::Read(Some(3)), 4, 5),
        ];
        assert_eq!(verdict(&unknown_cas), Verdict::Linearizable);
    }

    #[test]
    fn many_concurrent_operations_are_searched_within_budget() {
        // 12 clients each write their own value concurrently, then every read sees the last.
        let mut history: Vec<_> = (0..12)
            .map(|c| op(Write(c), Out::Written, c as u64, 100))
            .collect();
        history.push(op(Read, Out::Read(Some(5)), 101, 102));
        history.push(op(Read, Out::Read(Some(5)), 103, 104));
        assert_eq!(verdict(&history), Verdict::Linearizable);
        history.push(op(Read, Out::Read(Some(6)), 105, 106));
        assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
    }
}
