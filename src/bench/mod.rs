//! `shoal bench`: a small load generator over the HTTP API — concurrent clients running
//! single-row INSERTs or point SELECTs for a fixed time, reporting throughput and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Insert,
    PointSelect,
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub host: String,
    pub clients: usize,
    pub duration: Duration,
    pub workload: Workload,
    /// Query-string options added to every request (e.g. `level=none`).
    pub options: String,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub operations: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
}

impl BenchReport {
    pub fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the workload and returns the summary.
pub async fn run(config: BenchConfig) -> Result<BenchReport, String> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())?;
    let base = config.host.trim_end_matches('/').to_string();
    let setup = client
        .post(format!("{base}/db/execute"))
        .json(&json!([
            "CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, value TEXT)",
            "INSERT OR IGNORE INTO bench(id, value) VALUES (1, 'seed')"
        ]))
        .send()
        .await
        .map_err(|e| format!("setup failed: {e}"))?;
    if !setup.status().is_success() {
        return Err(format!(
            "setup failed: {}",
            setup.text().await.unwrap_or_default()
        ));
    }
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + config.duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..config.clients.max(1) {
        let (client, base, errors, options) = (
            client.clone(),
            base.clone(),
            errors.clone(),
            config.options.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                sequence += 1;
                let began = Instant::now();
                let request =
                    match config.workload {
                        Workload::Insert => client
                            .post(format!("{base}/db/execute?{options}"))
                            .json(&json!([[
                                "INSERT INTO bench(value) VALUES (?)",
                                format!("w{worker}-{sequence}")
                            ]])),
                        Workload::PointSelect => client
                            .post(format!("{base}/db/query?{options}"))
                            .json(&json!([["SELECT value FROM bench WHERE id = ?", 1]])),
                    };
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(began.elapsed());
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(BenchReport {
        operations: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latency_p50: percentile(0.50),
        latency_p99: percentile(0.99),
        latency_max: latencies.last().copied().unwrap_or_default(),
    })
}
