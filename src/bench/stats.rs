//! Latency recording and the summary `shoal bench` prints: throughput and percentiles from an
//! HDR histogram, so memory stays fixed however long a run lasts.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to this bound (longer ones are clamped).
const LATENCY_MAX_MICROS: u64 = 120_000_000;

/// One client's (or the merged) record of successful operations' latencies.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder {
            // Three significant digits over 1 µs..120 s: a few hundred KiB per recorder.
            histogram: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl LatencyRecorder {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram
            .saturating_record(micros.clamp(1, LATENCY_MAX_MICROS));
    }

    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Both recorders share the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(percentile / 100.0) as f64 / 1e3
    }
}

/// What a run measured, as printed and as `--json` writes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub target: String,
    pub workload: String,
    pub clients: usize,
    pub operations: u64,
    pub errors: u64,
    /// Rows written by the successful operations (a batch insert writes several).
    pub rows_written: u64,
    pub elapsed_s: f64,
    pub operations_per_s: f64,
    pub rows_written_per_s: f64,
    pub latency_ms: LatencySummary,
    /// The first few distinct error messages, so a failing run says why.
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencySummary {
    pub fn from_recorder(recorder: &LatencyRecorder) -> LatencySummary {
        let h = &recorder.histogram;
        let empty = h.is_empty();
        LatencySummary {
            mean: if empty { 0.0 } else { h.mean() / 1e3 },
            p50: recorder.percentile_ms(50.0),
            p90: recorder.percentile_ms(90.0),
            p99: recorder.percentile_ms(99.0),
            max: if empty { 0.0 } else { h.max() as f64 / 1e3 },
        }
    }
}

/// Operations (or rows) per second over `elapsed`; zero for an empty interval.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        0.0
    } else {
        count as f64 / seconds
    }
}

impl Summary {
    /// One line for people.
    pub fn human(&self) -> String {
        let l = &self.latency_ms;
        let mut line = format!(
            "{} {} x{}: {:.0} ops/s ({} ok, {} errors in {:.1} s)",
            self.target,
            self.workload,
            self.clients,
            self.operations_per_s,
            self.operations,
            self.errors,
            self.elapsed_s
        );
        if self.rows_written != self.operations && self.rows_written > 0 {
            line.push_str(&format!(", {:.0} rows/s", self.rows_written_per_s));
        }
        line.push_str(&format!(
            "  latency ms: mean {:.2} p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            l.mean, l.p50, l.p90, l.p99, l.max
        ));
        for sample in &self.error_samples {
            line.push_str(&format!("\n  error: {sample}"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder_of(millis: impl IntoIterator<Item = u64>) -> LatencyRecorder {
        let mut recorder = LatencyRecorder::default();
        for ms in millis {
            recorder.record(Duration::from_millis(ms));
        }
        recorder
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_milliseconds() {
        let summary = LatencySummary::from_recorder(&recorder_of(1..=100));
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(summary.p50, 50.0), "{summary:?}");
        assert!(close(summary.p90, 90.0), "{summary:?}");
        assert!(close(summary.p99, 99.0), "{summary:?}");
        assert!(close(summary.max, 100.0), "{summary:?}");
        assert!(close(summary.mean, 50.5), "{summary:?}");
    }

    #[test]
    fn merged_recorders_count_every_operation() {
        let mut merged = recorder_of([1, 2, 3]);
        merged.merge(&recorder_of([100, 200]));
        assert_eq!(merged.count(), 5);
        let summary = LatencySummary::from_recorder(&merged);
        assert!((summary.max - 200.0).abs() < 0.5, "{summary:?}");
        assert!((summary.p50 - 3.0).abs() < 0.01, "{summary:?}");
    }

    #[test]
    fn an_empty_run_reports_zeros_not_garbage() {
        let summary = LatencySummary::from_recorder(&LatencyRecorder::default());
        assert_eq!(
            summary,
            LatencySummary {
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0
            }
        );
        assert_eq!(rate(10, Duration::ZERO), 0.0);
    }

    #[test]
    fn rate_is_count_over_seconds() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
    }

    #[test]
    fn latencies_beyond_the_range_are_clamped_not_lost() {
        let mut recorder = LatencyRecorder::default();
        recorder.record(Duration::from_secs(3600));
        recorder.record(Duration::ZERO);
        assert_eq!(recorder.count(), 2);
        let summary = LatencySummary::from_recorder(&recorder);
        assert!(summary.max >= 119_000.0, "{summary:?}");
    }
}
