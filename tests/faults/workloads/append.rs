//! Append workload: multi-statement transactions that append unique values to one or two lists
//! and then read a list, through `/db/request?transaction`. Checks, against the lists read at
//! the end:
//! - atomicity: a transaction's appends are all present or none; acknowledged ones all are,
//!   certainly failed ones none, and nothing else appears (no duplicates);
//! - every read is a prefix of the final list, and a transaction reads its own appends;
//! - real-time order (strict serializability): what a transaction appends lands after every
//!   append acknowledged before it began, and what it reads includes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use super::{RunContext, final_read};
use crate::client::Reply;
use crate::history::{History, Op, Outcome};

pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE lists(k INTEGER NOT NULL, v INTEGER NOT NULL)",
    "CREATE INDEX lists_by_key ON lists(k)",
];
const KEYS: i64 = 6;

/// One transaction: append `value` to each of `appends`, then read list `read`.
#[derive(Debug, Clone)]
pub struct Txn {
    pub appends: Vec<i64>,
    pub value: i64,
    pub read: i64,
}

pub struct Workload {
    pub history: History<Txn, Vec<i64>>,
}

impl Workload {
    pub fn new(context: &RunContext) -> Arc<Workload> {
        Arc::new(Workload {
            history: History::new(context.start, super::HISTORY_CAPACITY),
        })
    }

    pub async fn client(self: Arc<Self>, context: Arc<RunContext>, id: usize) {
        let mut rng = context.rng("append", id);
        for sequence in 0i64.. {
            if !context.running() {
                return;
            }
            let first = rng.random_range(0..KEYS);
            let mut appends = vec![first];
            if rng.random_bool(0.5) {
                appends.push((first + rng.random_range(1..KEYS)) % KEYS);
            }
            let txn = Txn {
                appends,
                value: ((id as i64) << 32) | sequence,
                read: rng.random_range(0..KEYS),
            };
            let mut statements: Vec<Value> = txn
                .appends
                .iter()
                .map(|k| json!(["INSERT INTO lists(k, v) VALUES(?, ?)", k, txn.value]))
                .collect();
            statements.push(json!([
                "SELECT v FROM lists WHERE k = ? ORDER BY rowid",
                txn.read
            ]));
            let url = context.pick_node(&mut rng);
            let invoked = self.history.now();
            let reply = context
                .client
                .send(&url, "/db/request?transaction", &Value::Array(statements))
                .await;
            let outcome = match reply {
                Reply::Ok(results) => Outcome::Ok(
                    results
                        .last()
                        .and_then(|r| r["values"].as_array())
                        .map(|rows| super::integers(rows))
                        .unwrap_or_default(),
                ),
                Reply::Fail(e) => Outcome::Fail(e),
                Reply::Unknown(e) => Outcome::Unknown(e),
            };
            if !self.history.record(id, txn, invoked, outcome) {
                return;
            }
            context.think(&mut rng).await;
        }
    }

    pub async fn check(&self, context: &RunContext) -> Result<String, String> {
        let rows = final_read(context, "SELECT k, v FROM lists ORDER BY rowid").await?;
        let mut lists: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for row in &rows {
            let (Some(k), Some(v)) = (row[0].as_i64(), row[1].as_i64()) else {
                return Err(format!("append: malformed row {row}"));
            };
            lists.entry(k).or_default().push(v);
        }
        let ops = self.history.ops();
        check_history(&ops, &lists)?;
        let (ok, fail, unknown) = self.history.tally();
        Ok(format!(
            "append: {} values in {} lists consistent with {ok} ok, {fail} failed, {unknown} unknown transactions",
            rows.len(),
            lists.len()
        ))
    }
}

/// The checks, on a history and the final lists.
pub fn check_history(
    ops: &[Op<Txn, Vec<i64>>],
    lists: &BTreeMap<i64, Vec<i64>>,
) -> Result<(), String> {
    // Where each (list, value) ended up.
    let mut position: HashMap<(i64, i64), usize> = HashMap::new();
    for (&k, values) in lists {
        for (at, &v) in values.iter().enumerate() {
            if position.insert((k, v), at).is_some() {
                return Err(format!("append: value {v} appears twice in list {k}"));
            }
        }
    }
    let by_value: HashMap<i64, &Op<Txn, Vec<i64>>> =
        ops.iter().map(|op| (op.input.value, op)).collect();
    for &(k, v) in position.keys() {
        match by_value.get(&v) {
            Some(op) if op.input.appends.contains(&k) => {
                if let Outcome::Fail(why) = &op.outcome {
                    return Err(format!(
                        "append: value {v} is in list {k} but its transaction failed ({why})"
                    ));
                }
            }
            _ => return Err(format!("append: list {k} holds {v}, never appended to it")),
        }
    }
    for op in ops {
        let txn = &op.input;
        let present = txn
            .appends
            .iter()
            .filter(|k| position.contains_key(&(**k, txn.value)))
            .count();
        let acknowledged = matches!(op.outcome, Outcome::Ok(_));
        if present != 0 && present != txn.appends.len() || acknowledged && present == 0 {
            return Err(format!(
                "append: transaction {txn:?} ({:?}) has {present} of its {} appends in the final lists",
                op.outcome,
                txn.appends.len()
            ));
        }
        if let Outcome::Ok(read) = &op.outcome {
            let list = lists.get(&txn.read).map(Vec::as_slice).unwrap_or_default();
            if !list.starts_with(read) {
                return Err(format!(
                    "append: transaction {txn:?} read {read:?} from list {}, not a prefix of its final {list:?}",
                    txn.read
                ));
            }
            if txn.appends.contains(&txn.read) && read.last() != Some(&txn.value) {
                return Err(format!(
                    "append: transaction {txn:?} did not read its own append: {read:?}"
                ));
            }
        }
    }
    check_real_time_order(ops, &position)
}

/// For each list: acknowledged appends sorted by completion, with the furthest position any
/// of the first n reached, so "everything acknowledged before time t" is one binary search.
struct AcknowledgedBefore {
    completed: Vec<Duration>,
    furthest: Vec<usize>,
}

impl AcknowledgedBefore {
    /// The furthest position of an append acknowledged before `time`, if any.
    fn furthest_before(&self, time: Duration) -> Option<usize> {
        let count = self.completed.partition_point(|&c| c < time);
        count.checked_sub(1).map(|last| self.furthest[last])
    }
}

fn check_real_time_order(
    ops: &[Op<Txn, Vec<i64>>],
    position: &HashMap<(i64, i64), usize>,
) -> Result<(), String> {
    let mut acknowledged: BTreeMap<i64, Vec<(Duration, usize)>> = BTreeMap::new();
    for op in ops.iter().filter(|op| matches!(op.outcome, Outcome::Ok(_))) {
        for &k in &op.input.appends {
            if let Some(&at) = position.get(&(k, op.input.value)) {
                acknowledged.entry(k).or_default().push((op.completed, at));
            }
        }
    }
    let index: BTreeMap<i64, AcknowledgedBefore> = acknowledged
        .into_iter()
        .map(|(k, mut appends)| {
            appends.sort();
            let furthest = appends
                .iter()
                .scan(0, |max, &(_, at)| {
                    *max = (*max).max(at);
                    Some(*max)
                })
                .collect();
            let completed = appends.iter().map(|&(c, _)| c).collect();
            (
                k,
                AcknowledgedBefore {
                    completed,
                    furthest,
                },
            )
        })
        .collect();
    for op in ops {
        let txn = &op.input;
        for &k in &txn.appends {
            let (Some(&at), Some(before)) = (position.get(&(k, txn.value)), index.get(&k)) else {
                continue;
            };
            if let Some(furthest) = before.furthest_before(op.invoked)
                && furthest >= at
            {
                return Err(format!(
                    "append: transaction {txn:?} began at {:?}, after an append to list {k} was acknowledged, yet its append landed before it (position {at} <= {furthest})",
                    op.invoked
                ));
            }
        }
        if let (Outcome::Ok(read), Some(before)) = (&op.outcome, index.get(&txn.read))
            && let Some(furthest) = before.furthest_before(op.invoked)
            && read.len() <= furthest
        {
            return Err(format!(
                "append: transaction {txn:?} began at {:?} and read {} values of list {}, missing an append acknowledged before it began (position {furthest})",
                op.invoked,
                read.len(),
                txn.read
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn txn(
        appends: &[i64],
        value: i64,
        read: i64,
        span: (u64, u64),
        outcome: Outcome<Vec<i64>>,
    ) -> Op<Txn, Vec<i64>> {
        Op {
            client: 0,
            input: Txn {
                appends: appends.to_vec(),
                value,
                read,
            },
            invoked: ms(span.0),
            completed: ms(span.1),
            outcome,
        }
    }

    fn lists(entries: &[(i64, &[i64])]) -> BTreeMap<i64, Vec<i64>> {
        entries.iter().map(|(k, v)| (*k, v.to_vec())).collect()
    }

    #[test]
    fn consistent_history_passes() {
        let ops = [
            txn(&[0, 1], 10, 0, (0, 5), Outcome::Ok(vec![10])),
            txn(&[0], 11, 1, (6, 9), Outcome::Ok(vec![10])),
            txn(&[1], 12, 0, (7, 20), Outcome::Unknown("timeout".into())),
            txn(&[2], 13, 2, (8, 9), Outcome::Fail("no leader".into())),
        ];
        let final_lists = lists(&[(0, &[10, 11]), (1, &[10, 12])]);
        check_history(&ops, &final_lists).unwrap();
    }

    #[test]
    fn a_lost_acknowledged_append_is_caught() {
        let ops = [txn(&[0], 10, 0, (0, 5), Outcome::Ok(vec![10]))];
        let error = check_history(&ops, &lists(&[])).unwrap_err();
        assert!(error.contains("0 of its 1 appends"), "{error}");
    }

    #[test]
    fn a_half_applied_transaction_is_caught() {
        let ops = [txn(
            &[0, 1],
            10,
            0,
            (0, 5),
            Outcome::Unknown("timeout".into()),
        )];
        let error = check_history(&ops, &lists(&[(0, &[10])])).unwrap_err();
        assert!(error.contains("1 of its 2 appends"), "{error}");
    }

    #[test]
    fn a_failed_transaction_that_took_effect_is_caught() {
        let ops = [txn(&[0], 10, 0, (0, 5), Outcome::Fail("no leader".into()))];
        let error = check_history(&ops, &lists(&[(0, &[10])])).unwrap_err();
        assert!(error.contains("failed"), "{error}");
    }

    #[test]
    fn a_read_that_is_not_a_prefix_is_caught() {
        let ops = [
            txn(&[0], 10, 1, (0, 5), Outcome::Ok(vec![])),
            txn(&[1], 11, 0, (0, 5), Outcome::Ok(vec![99])),
        ];
        let error = check_history(&ops, &lists(&[(0, &[10]), (1, &[11])])).unwrap_err();
        assert!(error.contains("not a prefix"), "{error}");
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_append_is_caught() {
        let ops = [
            txn(&[0], 10, 0, (0, 5), Outcome::Ok(vec![10])),
            // Began after the first was acknowledged, yet read list 0 empty.
            txn(&[1], 11, 0, (6, 9), Outcome::Ok(vec![])),
        ];
        let error = check_history(&ops, &lists(&[(0, &[10]), (1, &[11])])).unwrap_err();
        assert!(error.contains("missing an append"), "{error}");
    }

    #[test]
    fn appends_out_of_real_time_order_are_caught() {
        let ops = [
            txn(&[0], 10, 1, (0, 5), Outcome::Ok(vec![])),
            txn(&[0], 11, 1, (6, 9), Outcome::Ok(vec![])),
        ];
        let error = check_history(&ops, &lists(&[(0, &[11, 10])])).unwrap_err();
        assert!(error.contains("landed before it"), "{error}");
    }
}
