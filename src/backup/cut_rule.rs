//! Where each shard group's replay stops when a sharded database is restored to a moment, so
//! that every cross-shard transaction is restored whole or not at all.
//!
//! Each group's leader stamps its entries with its own clock, so replaying every group "to
//! the moment" by its own timestamps can keep a transaction's commit in one group and drop
//! it in another (the coordinator decided before the moment, a participant's commit entry
//! came after it, or the other way round). The rule: a transaction is in the restore when
//! its *decision* — the coordinator group's commit — is at or before the moment. Then:
//!
//! - a group whose replay reaches the moment holding a transaction prepared (it applies no
//!   other write until the decision) goes on to that transaction's commit when it is in the
//!   restore, and stops before its prepare otherwise (the held batch was never applied);
//! - a transaction one of whose participants cannot reach its commit (its prepare came after
//!   the moment by that group's clock) is left out after all, and every group that would
//!   apply its commit stops before that transaction's prepare — which can leave out more
//!   transactions in turn, until nothing changes.
//!
//! The replays start from one cut (`backup::cut`): its copies hold no prepared transaction
//! and every transaction before it whole, so only what each group's archive holds after its
//! copy matters. The entries' outcomes are observed by replaying them (a prepare refused by
//! SQLite holds nothing), so the rule reads what each group actually did.

use std::collections::{BTreeSet, HashMap};

use crate::raft::types::GroupId;
use crate::types::shard::Xid;

/// What one archived entry of a group did, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Anything else: ordinary writes, refused or busy prepares, fences, membership.
    Other,
    /// A prepare that took hold of the group.
    Held(Xid),
    /// The held transaction's end here: its batch applied (`committed`), or dropped. On the
    /// coordinator group a commit is the decision.
    Released { xid: Xid, committed: bool },
}

/// One archived entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub index: u64,
    /// The leader's clock when it was proposed (blank and membership entries have none).
    pub at_ms: Option<i64>,
    pub effect: Effect,
}

/// One group's archive after its base copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHistory {
    pub group: GroupId,
    /// The log index its base copy holds (a cut member: nothing prepared in it).
    pub base: u64,
    /// The entries after `base`, in order, as far as they were read.
    pub entries: Vec<Observed>,
    /// Whether `entries` reach as far past the moment as the restore looks (else the archive
    /// ended first: a decision not in them may still come).
    pub complete: bool,
}

/// Where each group's replay stops, and which transactions the restore keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stops {
    /// The last log index to apply, per group, in the histories' order.
    pub stops: Vec<u64>,
    /// Cross-shard transactions committed within the replays (each in all its groups).
    pub kept: BTreeSet<Xid>,
    /// Transactions decided committed by the moment that were left out (a participant's part
    /// came after the moment by its clock).
    pub left_out: BTreeSet<Xid>,
    /// How many groups stop elsewhere than at the moment by their own clock (carried on to a
    /// commit, or stopped before a prepare).
    pub off_the_moment: usize,
    /// Transactions held at the moment whose outcome the archive does not hold yet (in a
    /// group whose archive ends before the restore's look past the moment): a restore now
    /// could leave out one that was decided in time.
    pub undecided: BTreeSet<Xid>,
}

impl GroupHistory {
    /// The last index at or before the moment: entries up to the first one stamped after it.
    fn boundary(&self, moment_ms: i64) -> u64 {
        let mut last = self.base;
        for entry in &self.entries {
            if entry.at_ms.is_some_and(|at| at > moment_ms) {
                break;
            }
            last = entry.index;
        }
        last
    }

    /// The transaction held just after applying index `stop`, with the index of its prepare.
    fn held_at(&self, stop: u64) -> Option<(Xid, u64)> {
        let mut held = None;
        for entry in self.entries.iter().take_while(|e| e.index <= stop) {
            match entry.effect {
                Effect::Held(xid) => held = Some((xid, entry.index)),
                Effect::Released { xid, .. } if held.is_some_and(|(h, _)| h == xid) => held = None,
                _ => {}
            }
        }
        held
    }

    /// Where each transaction was first held here and where its batch was applied (its
    /// commit), looked up once instead of scanning the entries for every transaction.
    fn ends(&self) -> Ends {
        let mut ends = Ends::default();
        for entry in &self.entries {
            match entry.effect {
                Effect::Held(xid) => {
                    ends.held_from.entry(xid).or_insert(entry.index);
                }
                Effect::Released {
                    xid,
                    committed: true,
                } => {
                    ends.committed_at.entry(xid).or_insert(entry.index);
                }
                _ => {}
            }
        }
        ends
    }
}

/// One group's transactions: the index of the prepare by which it held each, and the index
/// at which each one's batch was applied.
#[derive(Default)]
struct Ends {
    held_from: HashMap<Xid, u64>,
    committed_at: HashMap<Xid, u64>,
}

/// Where each group's replay stops for a restore to `moment_ms` (see the module's rule).
pub fn stops(histories: &[GroupHistory], moment_ms: i64) -> Stops {
    let boundaries: Vec<u64> = histories.iter().map(|h| h.boundary(moment_ms)).collect();
    let ends: Vec<Ends> = histories.iter().map(GroupHistory::ends).collect();
    // Decided committed by the moment: the coordinator's commit within its boundary.
    let decided: BTreeSet<Xid> = histories
        .iter()
        .zip(&boundaries)
        .flat_map(|(history, boundary)| {
            history
                .entries
                .iter()
                .filter_map(move |entry| match entry.effect {
                    Effect::Released {
                        xid,
                        committed: true,
                    } if xid.coordinator == history.group && entry.index <= *boundary => Some(xid),
                    _ => None,
                })
        })
        .collect();
    let mut kept = decided.clone();
    let mut caps: Vec<u64> = vec![u64::MAX; histories.len()];
    loop {
        let stops: Vec<u64> = histories
            .iter()
            .zip(&ends)
            .zip(boundaries.iter().zip(&caps))
            .map(|((history, ends), (boundary, cap))| {
                let stop = (*boundary).min(*cap);
                match history.held_at(stop) {
                    Some((xid, prepared)) => match ends.committed_at.get(&xid) {
                        Some(&commit) if kept.contains(&xid) && commit <= *cap => commit,
                        _ => prepared - 1,
                    },
                    None => stop,
                }
            })
            .collect();
        let mut changed = false;
        // A kept transaction must be committed within the stop of every group that held it.
        for xid in kept.clone() {
            let whole = ends.iter().zip(&stops).all(|(ends, stop)| {
                !ends.held_from.contains_key(&xid)
                    || ends.committed_at.get(&xid).is_some_and(|at| at <= stop)
            });
            if !whole {
                kept.remove(&xid);
                changed = true;
            }
        }
        // A group must not apply the commit of a transaction left out: it stops before the
        // transaction's prepare.
        for (((history, ends), stop), cap) in
            histories.iter().zip(&ends).zip(&stops).zip(caps.iter_mut())
        {
            for entry in history.entries.iter().take_while(|e| e.index <= *stop) {
                if let Effect::Released {
                    xid,
                    committed: true,
                } = entry.effect
                    && !kept.contains(&xid)
                    && let Some(&prepared) = ends.held_from.get(&xid)
                    && prepared - 1 < *cap
                {
                    *cap = prepared - 1;
                    changed = true;
                }
            }
        }
        if !changed {
            let left_out = decided.difference(&kept).copied().collect();
            let off_the_moment = stops
                .iter()
                .zip(&boundaries)
                .filter(|(stop, boundary)| stop != boundary)
                .count();
            return Stops {
                stops,
                kept,
                left_out,
                off_the_moment,
                undecided: undecided(histories, &boundaries),
            };
        }
    }
}

/// The transactions held at some group's moment that the group's archive, read as far as it
/// goes, does not show ending, while it may still (it ends before the restore's look past the
/// moment). A group that ended one shows its fate, whatever its coordinator's archive holds
/// (a coordinator whose own prepare never reached its log logs nothing of it).
fn undecided(histories: &[GroupHistory], boundaries: &[u64]) -> BTreeSet<Xid> {
    histories
        .iter()
        .zip(boundaries)
        .filter(|(history, _)| !history.complete)
        .filter_map(|(history, boundary)| {
            let (xid, _) = history.held_at(*boundary)?;
            let ended = history.entries.iter().any(
                |entry| matches!(entry.effect, Effect::Released { xid: ended, .. } if ended == xid),
            );
            (!ended).then_some(xid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOMENT: i64 = 1_000;

    fn xid(coordinator: GroupId, id: u64) -> Xid {
        Xid { coordinator, id }
    }

    /// A group's history from `(at_ms, effect)` pairs, indexes from `base + 1`.
    fn history(group: GroupId, base: u64, entries: &[(i64, Effect)]) -> GroupHistory {
        GroupHistory {
            group,
            base,
            entries: entries
                .iter()
                .enumerate()
                .map(|(i, (at, effect))| Observed {
                    index: base + 1 + i as u64,
                    at_ms: Some(*at),
                    effect: *effect,
                })
                .collect(),
            complete: true,
        }
    }

    fn held(x: Xid) -> Effect {
        Effect::Held(x)
    }

    fn commit(x: Xid) -> Effect {
        Effect::Released {
            xid: x,
            committed: true,
        }
    }

    const WRITE: Effect = Effect::Other;

    #[test]
    fn without_cross_shard_transactions_each_group_stops_at_the_moment() {
        let a = history(10, 5, &[(900, WRITE), (1_000, WRITE), (1_001, WRITE)]);
        let b = history(11, 0, &[(1_200, WRITE)]);
        let plan = stops(&[a, b], MOMENT);
        assert_eq!(plan.stops, vec![7, 0]);
        assert!(plan.kept.is_empty() && plan.left_out.is_empty());
        assert_eq!(plan.off_the_moment, 0);
    }

    #[test]
    fn a_participant_holding_a_transaction_decided_in_time_goes_on_to_its_commit() {
        let x = xid(10, 1);
        // The coordinator decided at 990; the participant's commit is stamped 1 050.
        let coordinator = history(10, 0, &[(950, held(x)), (990, commit(x)), (1_100, WRITE)]);
        let participant = history(11, 0, &[(960, held(x)), (1_050, commit(x)), (1_060, WRITE)]);
        let plan = stops(&[coordinator, participant], MOMENT);
        assert_eq!(plan.stops, vec![2, 2]);
        assert_eq!(plan.kept, BTreeSet::from([x]));
        assert_eq!(plan.off_the_moment, 1);
    }

    #[test]
    fn a_transaction_decided_after_the_moment_is_in_no_group() {
        let x = xid(10, 1);
        // The participant's clock runs ahead: its commit is stamped before the moment, the
        // coordinator's decision after it.
        let coordinator = history(10, 0, &[(900, WRITE), (980, held(x)), (1_020, commit(x))]);
        let participant = history(11, 0, &[(950, held(x)), (990, commit(x)), (995, WRITE)]);
        let plan = stops(&[coordinator, participant], MOMENT);
        assert_eq!(plan.stops, vec![1, 0], "both stop before the prepare");
        assert!(plan.kept.is_empty() && plan.left_out.is_empty());
    }

    #[test]
    fn a_participant_prepared_after_the_moment_leaves_the_transaction_out_everywhere() {
        let x = xid(10, 1);
        let y = xid(10, 2);
        // The participant's clock runs ahead: it prepared x after the moment by its clock,
        // though the coordinator decided before it. The coordinator's later transaction y
        // (with a third group) is left out with it: the coordinator stops before x.
        let coordinator = history(
            10,
            0,
            &[
                (900, held(x)),
                (930, commit(x)),
                (940, held(y)),
                (960, commit(y)),
            ],
        );
        let participant = history(11, 0, &[(1_010, held(x)), (1_020, commit(x))]);
        let third = history(12, 0, &[(945, held(y)), (970, commit(y)), (975, WRITE)]);
        let plan = stops(&[coordinator, participant, third], MOMENT);
        assert_eq!(plan.stops, vec![0, 0, 0]);
        assert!(plan.kept.is_empty());
        assert_eq!(plan.left_out, BTreeSet::from([x, y]));
    }

    #[test]
    fn a_group_holding_an_undecided_transaction_stops_before_its_prepare() {
        let x = xid(10, 1);
        // Decided (aborted) well after; the archive was read no further than the prepare.
        let coordinator = history(10, 3, &[(990, WRITE), (995, held(x))]);
        let participant = history(11, 3, &[(996, held(x))]);
        let plan = stops(&[coordinator, participant], MOMENT);
        assert_eq!(plan.stops, vec![4, 3]);
    }

    #[test]
    fn a_transaction_held_at_the_moment_is_undecided_until_its_archive_holds_the_outcome() {
        let x = xid(10, 1);
        let coordinator = history(10, 0, &[(990, held(x)), (1_005, commit(x))]);
        let mut participant = history(11, 0, &[(995, held(x))]);
        participant.complete = false;
        let plan = stops(&[coordinator.clone(), participant.clone()], MOMENT);
        assert_eq!(
            plan.undecided,
            BTreeSet::from([x]),
            "the participant's archive ends"
        );
        // Decided after the moment, and known everywhere: nothing is undecided.
        participant.entries.push(Observed {
            index: 2,
            at_ms: Some(1_010),
            effect: commit(x),
        });
        let plan = stops(&[coordinator, participant], MOMENT);
        assert!(plan.undecided.is_empty());
        assert_eq!(plan.stops, vec![0, 0]);
    }

    #[test]
    fn a_transaction_its_holder_ended_is_decided_whatever_its_coordinators_archive_holds() {
        let x = xid(10, 1);
        // The coordinator's own prepare never reached its log: it logs nothing of x, and its
        // archive ends early.
        let mut coordinator = history(10, 0, &[(990, WRITE), (1_005, WRITE)]);
        coordinator.complete = false;
        let participant = history(
            11,
            0,
            &[
                (995, held(x)),
                (
                    1_006,
                    Effect::Released {
                        xid: x,
                        committed: false,
                    },
                ),
            ],
        );
        let plan = stops(&[coordinator, participant], MOMENT);
        assert!(plan.undecided.is_empty(), "{:?}", plan.undecided);
        assert_eq!(plan.stops, vec![1, 0]);
    }

    #[test]
    fn transactions_that_stay_whole_are_kept_beside_ones_left_out() {
        let x = xid(10, 1);
        let y = xid(11, 2);
        let a = history(10, 0, &[(900, held(x)), (910, commit(x)), (1_500, WRITE)]);
        let b = history(
            11,
            0,
            &[
                (905, held(x)),
                (915, commit(x)),
                (990, held(y)),
                (1_005, commit(y)),
            ],
        );
        let c = history(12, 0, &[(1_001, held(y)), (1_002, commit(y))]);
        let plan = stops(&[a, b, c], MOMENT);
        // y was decided after the moment (its coordinator b stamped its commit 1 005).
        assert_eq!(plan.stops, vec![2, 2, 0]);
        assert_eq!(plan.kept, BTreeSet::from([x]));
        assert!(plan.left_out.is_empty());
    }
}
