//! `shoal bench`: a load generator. Concurrent clients (one connection each) run a workload —
//! single-row INSERTs, point SELECTs, a mix, or multi-row INSERTs — against Shoal's HTTP API, a
//! PostgreSQL-protocol server or etcd, for a time or a number of operations, and report
//! throughput and latency percentiles. The same workload against each system is what
//! `bench/compare.sh` puts side by side.

pub mod args;
pub mod stats;
pub mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use stats::{LatencyRecorder, LatencySummary, Summary, rate};
use target::{Client, TargetConfig};

/// Distinct error messages kept for the summary.
const ERROR_SAMPLES_MAX: usize = 5;

/// What each operation does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    /// One single-row INSERT per operation.
    Insert,
    /// One SELECT by primary key per operation.
    PointSelect,
    /// One UPDATE of a row by primary key per operation.
    PointUpdate,
    /// Point SELECTs with probability `read_ratio`, single-row INSERTs otherwise.
    Mixed { read_ratio: f64 },
    /// One INSERT of `rows` rows per operation.
    BatchInsert { rows: usize },
}

impl Workload {
    pub fn name(&self) -> String {
        match self {
            Workload::Insert => "insert".into(),
            Workload::PointSelect => "point-select".into(),
            Workload::PointUpdate => "point-update".into(),
            Workload::Mixed { read_ratio } => format!("mixed({:.0}% reads)", read_ratio * 100.0),
            Workload::BatchInsert { rows } => format!("batch-insert({rows} rows)"),
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    After(Duration),
    /// After this many operations in total, over all clients.
    Operations(u64),
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: TargetConfig,
    pub workload: Workload,
    pub clients: usize,
    pub stop: Stop,
    /// The seed rows' ids point operations draw from (all of 1..=SEED_ROWS unless
    /// `--keys-of-shard` narrows them).
    pub keys: Vec<u64>,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// Everything the clients share while running.
struct Shared {
    config: BenchConfig,
    started: Instant,
    issued: AtomicU64,
    completed: AtomicU64,
    rows_written: AtomicU64,
    errors: AtomicU64,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    /// Counters at zero, the clock started now.
    fn new(config: BenchConfig) -> Shared {
        Shared {
            config,
            started: Instant::now(),
            issued: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
        }
    }

    /// Claims the next operation, or `None` when the run is over.
    fn next_operation(&self) -> Option<u64> {
        match self.config.stop {
            Stop::After(duration) => (self.started.elapsed() < duration)
                .then(|| self.issued.fetch_add(1, Ordering::Relaxed)),
            Stop::Operations(total) => {
                let sequence = self.issued.fetch_add(1, Ordering::Relaxed);
                (sequence < total).then_some(sequence)
            }
        }
    }

    async fn record_error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.error_samples.lock().await;
        if samples.len() < ERROR_SAMPLES_MAX && !samples.contains(&error) {
            samples.push(error);
        }
    }
}

/// Connects every client, prepares the table, runs the workload and summarises it.
pub async fn run(config: BenchConfig) -> Result<Summary, String> {
    let clients = config.clients.max(1);
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Client::connect(&config.target).await?);
    }
    if let Some(first) = connections.first_mut() {
        first.prepare().await?;
    }
    let shared = Arc::new(Shared::new(config.clone()));
    let progress = config.progress.then(|| progress::start(shared.clone()));
    let mut workers = Vec::with_capacity(clients);
    for (worker, client) in connections.into_iter().enumerate() {
        workers.push(tokio::spawn(drive(worker, client, shared.clone())));
    }
    let mut latencies = LatencyRecorder::default();
    for worker in workers {
        let recorded = worker
            .await
            .map_err(|e| format!("benchmark client failed: {e}"))?;
        latencies.merge(&recorded);
    }
    let elapsed = shared.started.elapsed();
    if let Some(progress) = progress {
        progress.finish().await;
    }
    let operations = latencies.count();
    let rows_written = shared.rows_written.load(Ordering::Relaxed);
    let error_samples = shared.error_samples.lock().await.clone();
    Ok(Summary {
        target: config.target.kind.name().to_string(),
        workload: config.workload.name(),
        clients,
        operations,
        errors: shared.errors.load(Ordering::Relaxed),
        rows_written,
        elapsed_s: elapsed.as_secs_f64(),
        operations_per_s: rate(operations, elapsed),
        rows_written_per_s: rate(rows_written, elapsed),
        latency_ms: LatencySummary::from_recorder(&latencies),
        error_samples,
    })
}

/// One client's loop: claim an operation, run it, record its latency or its error.
async fn drive(worker: usize, mut client: Client, shared: Arc<Shared>) -> LatencyRecorder {
    let mut latencies = LatencyRecorder::default();
    let mut rng = SmallRng::seed_from_u64(worker as u64);
    while let Some(sequence) = shared.next_operation() {
        let tag = format!("c{worker}-{sequence}");
        let began = Instant::now();
        let keys = &shared.config.keys;
        let select = |rng: &mut SmallRng| keys[rng.random_range(0..keys.len())];
        let (outcome, rows) = match shared.config.workload {
            Workload::Insert => (client.insert(&tag, 1).await, 1),
            Workload::BatchInsert { rows } => (client.insert(&tag, rows).await, rows as u64),
            Workload::PointSelect => (client.point_select(select(&mut rng)).await, 0),
            Workload::PointUpdate => (client.point_update(select(&mut rng), &tag).await, 1),
            Workload::Mixed { read_ratio } => {
                if rng.random_bool(read_ratio) {
                    (client.point_select(select(&mut rng)).await, 0)
                } else {
                    (client.insert(&tag, 1).await, 1)
                }
            }
        };
        match outcome {
            Ok(()) => {
                latencies.record(began.elapsed());
                shared.completed.fetch_add(1, Ordering::Relaxed);
                shared.rows_written.fetch_add(rows, Ordering::Relaxed);
            }
            Err(error) => shared.record_error(error).await,
        }
    }
    latencies
}

/// The progress bar: a ticker that redraws from the shared counters.
mod progress {
    use super::*;
    use indicatif::{ProgressBar, ProgressStyle};

    pub struct Progress {
        bar: ProgressBar,
        ticker: tokio::task::JoinHandle<()>,
    }

    impl Progress {
        pub async fn finish(self) {
            self.ticker.abort();
            let _ = self.ticker.await;
            self.bar.finish_and_clear();
        }
    }

    pub fn start(shared: Arc<Shared>) -> Progress {
        let (length, unit) = match shared.config.stop {
            Stop::After(duration) => (duration.as_millis() as u64, "time"),
            Stop::Operations(total) => (total, "operations"),
        };
        let bar = ProgressBar::new(length);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {percent:>3}% of the {prefix}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(unit);
        let drawn = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            loop {
                interval.tick().await;
                let elapsed = shared.started.elapsed();
                let completed = shared.completed.load(Ordering::Relaxed);
                let position = match shared.config.stop {
                    Stop::After(_) => elapsed.as_millis() as u64,
                    Stop::Operations(_) => completed,
                };
                drawn.set_position(position);
                drawn.set_message(format!(
                    "{completed} ok, {} errors, {:.0} ops/s",
                    shared.errors.load(Ordering::Relaxed),
                    rate(completed, elapsed)
                ));
            }
        });
        Progress { bar, ticker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::target::TargetKind;

    fn shared(stop: Stop) -> Shared {
        Shared::new(BenchConfig {
            target: TargetConfig {
                kind: TargetKind::Shoal,
                url: "http://127.0.0.1:1".into(),
                consistency: None,
                write_concern: None,
                database: None,
            },
            workload: Workload::Insert,
            clients: 1,
            stop,
            keys: vec![1],
            progress: false,
        })
    }

    #[test]
    fn a_fixed_count_hands_out_exactly_that_many_operations() {
        let shared = shared(Stop::Operations(3));
        let handed: Vec<u64> = std::iter::from_fn(|| shared.next_operation()).collect();
        assert_eq!(handed, [0, 1, 2]);
        assert_eq!(shared.next_operation(), None);
    }

    #[test]
    fn a_run_for_a_time_ends_when_the_time_is_up() {
        let shared = shared(Stop::After(Duration::ZERO));
        assert_eq!(shared.next_operation(), None);
    }

    #[tokio::test]
    async fn errors_are_all_counted_but_only_a_few_distinct_ones_kept() {
        let shared = shared(Stop::Operations(1));
        for attempt in 0..20 {
            shared
                .record_error(format!("failure {}", attempt % 8))
                .await;
        }
        assert_eq!(shared.errors.load(Ordering::Relaxed), 20);
        let samples = shared.error_samples.lock().await.clone();
        assert_eq!(samples.len(), ERROR_SAMPLES_MAX);
        assert_eq!(samples[0], "failure 0");
    }

    #[tokio::test]
    async fn an_unreachable_target_is_an_error_not_an_empty_report() {
        let mut config = shared(Stop::Operations(1)).config;
        config.target.url = "http://127.0.0.1:9".into();
        let error = run(config).await.unwrap_err();
        assert!(error.contains("request failed"), "{error}");
    }
}
