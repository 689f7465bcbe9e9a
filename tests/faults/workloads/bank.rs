//! Bank workload: transfers between accounts, each a two-statement transaction, and reads of
//! every balance at every consistency level on any node. Money is neither made nor lost: every
//! read, even a stale one from a replica, must see the same total (transactions are atomic on
//! every replica).

use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};

use super::{RunContext, final_read};
use crate::client::Reply;
use crate::history::{History, Outcome};

pub const ACCOUNTS: i64 = 5;
pub const OPENING_BALANCE: i64 = 100;
const READ_ALL: &str = "SELECT id, balance FROM bank ORDER BY id";

pub fn schema() -> Vec<String> {
    let mut statements =
        vec!["CREATE TABLE bank(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)".to_string()];
    statements.extend(
        (0..ACCOUNTS).map(|id| format!("INSERT INTO bank VALUES({id}, {OPENING_BALANCE})")),
    );
    statements
}

#[derive(Debug, Clone)]
pub enum BankOp {
    Transfer { from: i64, to: i64, amount: i64 },
    Read { level: &'static str },
}

pub struct Workload {
    pub history: History<BankOp, Vec<(i64, i64)>>,
}

impl Workload {
    pub fn new(context: &RunContext) -> Arc<Workload> {
        Arc::new(Workload {
            history: History::new(context.start, super::HISTORY_CAPACITY),
        })
    }

    pub async fn client(self: Arc<Self>, context: Arc<RunContext>, id: usize) {
        let mut rng = context.rng("bank", id);
        while context.running() {
            let op = if rng.random_bool(0.5) {
                let from = rng.random_range(0..ACCOUNTS);
                let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                BankOp::Transfer {
                    from,
                    to,
                    amount: rng.random_range(1..=5),
                }
            } else {
                let levels = ["none", "weak", "linearizable", "strong"];
                BankOp::Read {
                    level: levels[rng.random_range(0..levels.len())],
                }
            };
            let url = context.pick_node(&mut rng);
            let invoked = self.history.now();
            let outcome = match &op {
                BankOp::Transfer { from, to, amount } => {
                    let body = json!([
                        [
                            "UPDATE bank SET balance = balance - ? WHERE id = ?",
                            amount,
                            from
                        ],
                        [
                            "UPDATE bank SET balance = balance + ? WHERE id = ?",
                            amount,
                            to
                        ]
                    ]);
                    match context
                        .client
                        .send(&url, "/db/execute?transaction", &body)
                        .await
                    {
                        Reply::Ok(_) => Outcome::Ok(Vec::new()),
                        Reply::Fail(e) => Outcome::Fail(e),
                        Reply::Unknown(e) => Outcome::Unknown(e),
                    }
                }
                BankOp::Read { level } => {
                    let path = format!("/db/query?level={level}");
                    match context.client.send(&url, &path, &json!([READ_ALL])).await {
                        Reply::Ok(results) => Outcome::Ok(balances(&results[0]["values"])),
                        Reply::Fail(e) | Reply::Unknown(e) => Outcome::Fail(e),
                    }
                }
            };
            if !self.history.record(id, op, invoked, outcome) {
                return;
            }
            context.think(&mut rng).await;
        }
    }

    /// Every read saw every account and the opening total; so does a final read.
    pub async fn check(&self, context: &RunContext) -> Result<String, String> {
        let expected_total = ACCOUNTS * OPENING_BALANCE;
        let mut reads = 0;
        for op in self.history.ops() {
            if let (BankOp::Read { level }, Outcome::Ok(balances)) = (&op.input, &op.outcome) {
                reads += 1;
                let total: i64 = balances.iter().map(|(_, b)| b).sum();
                if balances.len() as i64 != ACCOUNTS || total != expected_total {
                    return Err(format!(
                        "bank: client {}'s read at level={level} at {:?} saw {balances:?}: {} accounts totalling {total}, expected {ACCOUNTS} totalling {expected_total}",
                        op.client,
                        op.invoked,
                        balances.len()
                    ));
                }
            }
        }
        let last = balances(&Value::Array(final_read(context, READ_ALL).await?));
        let total: i64 = last.iter().map(|(_, b)| b).sum();
        if total != expected_total {
            return Err(format!(
                "bank: final balances {last:?} total {total}, expected {expected_total}"
            ));
        }
        let (ok, fail, unknown) = self.history.tally();
        Ok(format!(
            "bank: total {total} kept through {reads} reads; {ok} ok, {fail} failed, {unknown} unknown"
        ))
    }
}

fn balances(values: &Value) -> Vec<(i64, i64)> {
    values
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| Some((row[0].as_i64()?, row[1].as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}
