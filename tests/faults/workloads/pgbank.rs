//! Bank over the PostgreSQL protocol: each transfer is an interactive transaction that reads
//! both balances and writes back the values it computed from them (read-modify-write across
//! round trips). A transaction that committed although another changed what it read (a lost
//! update) would change the total, so every read, on any node, must see the opening total.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

use super::{RunContext, final_read};
use crate::history::{History, Outcome};

pub const ACCOUNTS: i64 = 4;
pub const OPENING_BALANCE: i64 = 1_000;
const READ_ALL: &str = "SELECT id, balance FROM pgbank ORDER BY id";
/// Longest a transfer or read may take before the client gives up on its connection (a
/// paused or partitioned node).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

pub fn schema() -> Vec<String> {
    let mut statements =
        vec!["CREATE TABLE pgbank(id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)".to_string()];
    statements.extend(
        (0..ACCOUNTS).map(|id| format!("INSERT INTO pgbank VALUES({id}, {OPENING_BALANCE})")),
    );
    statements
}

#[derive(Debug, Clone)]
pub enum PgBankOp {
    Transfer { from: i64, to: i64, amount: i64 },
    Read,
}

pub struct Workload {
    pub history: History<PgBankOp, Vec<(i64, i64)>>,
}

/// Why an operation ended without success, and whether it may have taken effect.
enum Failure {
    /// Certainly not applied (refused, rolled back, failed before COMMIT).
    Definite(String),
    /// COMMIT was sent and its answer lost or ambiguous.
    Maybe(String),
}

impl Workload {
    pub fn new(context: &RunContext) -> Arc<Workload> {
        Arc::new(Workload {
            history: History::new(context.start, super::HISTORY_CAPACITY),
        })
    }

    pub async fn client(self: Arc<Self>, context: Arc<RunContext>, id: usize) {
        let mut rng = context.rng("pgbank", id);
        let mut connection: Option<Client> = None;
        while context.running() {
            let op = if rng.random_bool(0.6) {
                let from = rng.random_range(0..ACCOUNTS);
                PgBankOp::Transfer {
                    from,
                    to: (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS,
                    amount: rng.random_range(1..=20),
                }
            } else {
                PgBankOp::Read
            };
            let invoked = self.history.now();
            let outcome = match connection.take() {
                Some(client) => {
                    let attempt = tokio::time::timeout(OPERATION_TIMEOUT, run(&client, &op)).await;
                    match attempt {
                        Ok(Ok(balances)) => {
                            connection = Some(client);
                            Outcome::Ok(balances)
                        }
                        Ok(Err(Failure::Definite(e))) => {
                            // Keep a healthy connection; drop one the server closed.
                            if !client.is_closed() {
                                connection = Some(client);
                            }
                            Outcome::Fail(e)
                        }
                        Ok(Err(Failure::Maybe(e))) => Outcome::Unknown(e),
                        Err(_) => match op {
                            PgBankOp::Read => Outcome::Fail("read timed out".into()),
                            PgBankOp::Transfer { .. } => Outcome::Unknown("timed out".into()),
                        },
                    }
                }
                None => {
                    connection = connect(&context, &mut rng).await;
                    Outcome::Fail("no connection yet".into())
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
            if let (PgBankOp::Read, Outcome::Ok(balances)) = (&op.input, &op.outcome) {
                reads += 1;
                let total: i64 = balances.iter().map(|(_, b)| b).sum();
                if balances.len() as i64 != ACCOUNTS || total != expected_total {
                    return Err(format!(
                        "pgbank: client {}'s read at {:?} saw {balances:?}: total {total}, expected {expected_total}",
                        op.client, op.invoked
                    ));
                }
            }
        }
        let last: Vec<(i64, i64)> = final_read(context, READ_ALL)
            .await?
            .iter()
            .filter_map(|row: &Value| Some((row[0].as_i64()?, row[1].as_i64()?)))
            .collect();
        let total: i64 = last.iter().map(|(_, b)| b).sum();
        if total != expected_total {
            return Err(format!(
                "pgbank: final balances {last:?} total {total}, expected {expected_total} (a lost update)"
            ));
        }
        let (ok, fail, unknown) = self.history.tally();
        Ok(format!(
            "pgbank (PostgreSQL transactions): total {total} kept through {reads} reads; {ok} ok, {fail} failed, {unknown} unknown"
        ))
    }
}

/// A session with a random node that still has a PostgreSQL port.
async fn connect(context: &RunContext, rng: &mut rand_chacha::ChaCha8Rng) -> Option<Client> {
    let url = context.pick_node(rng);
    let port = context.pg_port(&url)?;
    let config = format!("host=127.0.0.1 port={port} user=shoal dbname=shoal connect_timeout=2");
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(&config, NoTls),
    )
    .await
    .ok()?
    .ok()?;
    tokio::spawn(connection);
    Some(client)
}

async fn run(client: &Client, op: &PgBankOp) -> Result<Vec<(i64, i64)>, Failure> {
    let definite = |e: tokio_postgres::Error| Failure::Definite(e.to_string());
    match op {
        PgBankOp::Read => {
            let rows = client.query(READ_ALL, &[]).await.map_err(definite)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        }
        PgBankOp::Transfer { from, to, amount } => {
            client.batch_execute("BEGIN").await.map_err(definite)?;
            let balance = |id: i64| async move {
                client
                    .query_one("SELECT balance FROM pgbank WHERE id = $1", &[&id])
                    .await
                    .map(|row| row.get::<_, i64>(0))
            };
            let steps = async {
                let from_balance = balance(*from).await?;
                let to_balance = balance(*to).await?;
                let set = "UPDATE pgbank SET balance = $1 WHERE id = $2";
                client
                    .execute(set, &[&(from_balance - amount), from])
                    .await?;
                client.execute(set, &[&(to_balance + amount), to]).await?;
                Ok::<_, tokio_postgres::Error>(())
            };
            if let Err(error) = steps.await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(definite(error));
            }
            match client.batch_execute("COMMIT").await {
                Ok(()) => Ok(Vec::new()),
                // A serialization failure, a constraint: refused, nothing applied.
                Err(error)
                    if error.code().is_some_and(|c| {
                        let code = c.code();
                        code == "40001" || code.starts_with("23") || code.starts_with("42")
                    }) =>
                {
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(definite(error))
                }
                Err(error) => Err(Failure::Maybe(error.to_string())),
            }
        }
    }
}
