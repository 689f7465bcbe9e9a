//! Workloads: concurrent clients issuing operations against the cluster while faults are
//! injected, recording a history each; and the checks run on those histories at the end.

pub mod append;
pub mod bank;
pub mod pgbank;
pub mod register;
pub mod set;
pub mod shardbank;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::client::{DbClient, Reply, Targets};

/// Most operations one workload records in a run (bounds memory in long soaks).
pub const HISTORY_CAPACITY: usize = 2_000_000;

/// What every workload client shares.
pub struct RunContext {
    pub client: DbClient,
    pub targets: Targets,
    /// PostgreSQL port of each node, by its HTTP URL (nodes added by faults have none).
    pub pg_ports: std::collections::BTreeMap<String, u16>,
    pub seed: u64,
    pub start: Instant,
    pub deadline: Instant,
}

impl RunContext {
    /// A random source for one client of one workload, fixed by the run's seed.
    pub fn rng(&self, workload: &str, client: usize) -> ChaCha8Rng {
        let salt = workload.bytes().fold(client as u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(b as u64)
        });
        ChaCha8Rng::seed_from_u64(self.seed ^ salt.rotate_left(17))
    }

    pub fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// The PostgreSQL port of the node at `url`, if known.
    pub fn pg_port(&self, url: &str) -> Option<u16> {
        self.pg_ports.get(url).copied()
    }

    /// A random node's URL.
    pub fn pick_node(&self, rng: &mut ChaCha8Rng) -> String {
        self.targets.pick(rng.random_range(0..64))
    }

    /// A short pause between a client's operations, so faults land between them too.
    pub async fn think(&self, rng: &mut ChaCha8Rng) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..4))).await;
    }
}

/// Runs `sql` at level=linearizable on any node until one answers (after faults healed);
/// returns the rows' values.
pub async fn final_read(context: &RunContext, sql: &str) -> Result<Vec<Value>, String> {
    final_read_at(context, "/db/query?level=linearizable", sql).await
}

/// [`final_read`] through `path` (another database, say).
pub async fn final_read_at(
    context: &RunContext,
    path: &str,
    sql: &str,
) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let mut choice = 0;
    while Instant::now() < deadline {
        let url = context.targets.pick(choice);
        choice += 1;
        match context.client.send(&url, path, &json!([sql])).await {
            Reply::Ok(results) => {
                return Ok(results[0]["values"].as_array().cloned().unwrap_or_default());
            }
            Reply::Fail(e) | Reply::Unknown(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("final read {sql:?} never succeeded: {last}"))
}

/// The integers of a one-column result.
pub fn integers(values: &[Value]) -> Vec<i64> {
    values.iter().filter_map(|row| row[0].as_i64()).collect()
}

/// Spawns `clients` tasks running `client(context, id)` and waits for all of them.
pub async fn run_clients<F, Fut>(context: &Arc<RunContext>, clients: usize, client: F)
where
    F: Fn(Arc<RunContext>, usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..clients)
        .map(|id| tokio::spawn(client(context.clone(), id)))
        .collect();
    for task in tasks {
        task.await.expect("workload client panicked");
    }
}
