//! Bank over shards: accounts in a database sharded four ways and distributed by id, so most
//! transfers move money between groups through two-phase commit; each transfer records itself
//! in a ledger table (distributed too) in the same transaction. Once the faults heal: the
//! total is the opening total, every acknowledged transfer is in the ledger, every account
//! holds its opening balance plus the ledger's transfers in and minus those out (a transfer
//! applied on one group and not another breaks that), and no group still holds a prepared
//! transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};

use super::RunContext;
use crate::client::Reply;
use crate::history::{History, Outcome};

pub const DATABASE: &str = "ledger";
pub const SHARDS: usize = 4;
pub const ACCOUNTS: i64 = 8;
pub const OPENING_BALANCE: i64 = 100;

/// What creates the database, on the default one.
pub fn create() -> Value {
    json!([format!(
        "CREATE DATABASE {DATABASE} WITH (shards = {SHARDS})"
    )])
}

/// The schema and opening balances, on the sharded database.
pub fn schema() -> Value {
    let mut statements = vec![
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)".to_string(),
        "SELECT shoal_distribute('accounts', 'id')".to_string(),
        "CREATE TABLE transfers (id INTEGER PRIMARY KEY, source INTEGER NOT NULL, \
         target INTEGER NOT NULL, amount INTEGER NOT NULL)"
            .to_string(),
        "SELECT shoal_distribute('transfers', 'id')".to_string(),
    ];
    let accounts: Vec<String> = (0..ACCOUNTS)
        .map(|id| format!("({id}, {OPENING_BALANCE})"))
        .collect();
    statements.push(format!(
        "INSERT INTO accounts VALUES {}",
        accounts.join(", ")
    ));
    json!(statements)
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: i64,
    pub from: i64,
    pub to: i64,
    pub amount: i64,
}

pub struct Workload {
    pub history: History<Transfer, ()>,
}

impl Workload {
    pub fn new(context: &RunContext) -> Arc<Workload> {
        Arc::new(Workload {
            history: History::new(context.start, super::HISTORY_CAPACITY),
        })
    }

    pub async fn client(self: Arc<Self>, context: Arc<RunContext>, client: usize) {
        let mut rng = context.rng("shardbank", client);
        let mut sequence = 0i64;
        while context.running() {
            sequence += 1;
            let from = rng.random_range(0..ACCOUNTS);
            let transfer = Transfer {
                id: (client as i64 + 1) * 1_000_000 + sequence,
                from,
                to: (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS,
                amount: rng.random_range(1..=5),
            };
            let body = json!([
                [
                    "UPDATE accounts SET balance = balance - ? WHERE id = ?",
                    transfer.amount,
                    transfer.from
                ],
                [
                    "UPDATE accounts SET balance = balance + ? WHERE id = ?",
                    transfer.amount,
                    transfer.to
                ],
                [
                    "INSERT INTO transfers VALUES (?, ?, ?, ?)",
                    transfer.id,
                    transfer.from,
                    transfer.to,
                    transfer.amount
                ]
            ]);
            let url = context.pick_node(&mut rng);
            let invoked = self.history.now();
            let path = format!("/db/execute?db={DATABASE}&transaction");
            let outcome = match context.client.send(&url, &path, &body).await {
                Reply::Ok(_) => Outcome::Ok(()),
                Reply::Fail(e) => Outcome::Fail(e),
                Reply::Unknown(e) => Outcome::Unknown(e),
            };
            if !self.history.record(client, transfer, invoked, outcome) {
                return;
            }
            context.think(&mut rng).await;
        }
    }

    /// The checks once the faults have healed.
    pub async fn check(&self, context: &RunContext) -> Result<String, String> {
        let (whole, recorded) = whole(context).await?;
        let mut acknowledged = 0;
        for op in self.history.ops() {
            if matches!(op.outcome, Outcome::Ok(())) {
                acknowledged += 1;
                if !recorded.contains(&op.input.id) {
                    return Err(format!(
                        "sharded bank: client {}'s transfer {:?}, acknowledged at {:?}, is not \
                         in the ledger",
                        op.client, op.input, op.invoked
                    ));
                }
            }
        }
        let (ok, fail, unknown) = self.history.tally();
        Ok(format!(
            "{whole}, all {acknowledged} acknowledged among them; {ok} ok, {fail} failed, \
             {unknown} unknown"
        ))
    }
}

/// The bank as it is now holds every account, the opening total, and balances that are the
/// opening ones moved by exactly the ledger's transfers (no transfer applied in part); the
/// ledger's transfer ids.
pub async fn whole(
    context: &RunContext,
) -> Result<(String, std::collections::BTreeSet<i64>), String> {
    let accounts = read(context, "SELECT id, balance FROM accounts ORDER BY id").await?;
    let ledger = read(
        context,
        "SELECT id, source, target, amount FROM transfers ORDER BY id",
    )
    .await?;
    let balances: BTreeMap<i64, i64> = accounts
        .iter()
        .filter_map(|row| Some((row[0].as_i64()?, row[1].as_i64()?)))
        .collect();
    let total: i64 = balances.values().sum();
    if balances.len() as i64 != ACCOUNTS || total != ACCOUNTS * OPENING_BALANCE {
        return Err(format!(
            "sharded bank: balances {balances:?} total {total}, expected {ACCOUNTS} \
             accounts totalling {}",
            ACCOUNTS * OPENING_BALANCE
        ));
    }
    let mut expected: BTreeMap<i64, i64> = (0..ACCOUNTS).map(|id| (id, OPENING_BALANCE)).collect();
    let mut recorded = std::collections::BTreeSet::new();
    for row in &ledger {
        let (Some(id), Some(from), Some(to), Some(amount)) = (
            row[0].as_i64(),
            row[1].as_i64(),
            row[2].as_i64(),
            row[3].as_i64(),
        ) else {
            return Err(format!("sharded bank: unreadable ledger row {row}"));
        };
        recorded.insert(id);
        *expected.entry(from).or_default() -= amount;
        *expected.entry(to).or_default() += amount;
    }
    if expected != balances {
        return Err(format!(
            "sharded bank: balances {balances:?} are not the opening balances moved by the \
             ledger's {} transfers ({expected:?}): a transfer was applied in part",
            ledger.len()
        ));
    }
    Ok((
        format!(
            "sharded bank: total {total} kept (created over {SHARDS} groups); {} transfers in the \
             ledger",
            ledger.len()
        ),
        recorded,
    ))
}

/// `sql` on the sharded database at level=linearizable, on any node until one answers.
async fn read(context: &RunContext, sql: &str) -> Result<Vec<Value>, String> {
    let path = format!("/db/query?db={DATABASE}&level=linearizable");
    super::final_read_at(context, &path, sql).await
}
