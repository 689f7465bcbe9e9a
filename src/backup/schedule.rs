//! Cron schedules (`"0 20 * * *"`: every day at 20:00 UTC; a sixth leading field gives
//! seconds). A scheduled job sleeps until its next time plus a random jitter, then runs if this
//! node leads the group at that moment — one run per occurrence, also across failovers.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

/// Parses a cron expression, naming the setting in errors.
pub fn parse_cron(setting: &str, expression: &str) -> Result<Cron, String> {
    Cron::from_str(expression).map_err(|e| format!("{setting} {expression:?}: {e}"))
}

/// The next time after `after` that `cron` names.
pub fn next_run(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

/// Runs `job` at every occurrence of `cron` (plus up to `jitter`) while `alive` says so and
/// `leading` holds at that moment. Each run completes before the next occurrence is computed,
/// so runs never overlap.
pub async fn run_schedule<J, F, L, A>(
    name: &'static str,
    cron: Cron,
    jitter: Duration,
    alive: A,
    leading: L,
    mut job: J,
) where
    J: FnMut() -> F,
    F: Future<Output = ()>,
    L: Fn() -> bool,
    A: Fn() -> bool,
{
    loop {
        let now: DateTime<Utc> = std::time::SystemTime::now().into();
        let Some(next) = next_run(&cron, now) else {
            tracing::warn!(
                schedule = name,
                "the schedule names no future time; it stops"
            );
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        let jitter_ms = jitter.as_millis() as u64;
        let extra = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::random::<u64>() % jitter_ms)
        };
        tokio::time::sleep(wait + extra).await;
        if !alive() {
            return;
        }
        if leading() {
            tracing::info!(schedule = name, "scheduled run starting");
            job().await;
        }
        // Never run twice for one occurrence, however fast the job was.
        let after: DateTime<Utc> = std::time::SystemTime::now().into();
        if after <= next {
            tokio::time::sleep(
                (next - after).to_std().unwrap_or_default() + Duration::from_millis(1),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_expressions_and_clear_errors() {
        let daily = parse_cron("backup_schedule", "0 20 * * *").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-21T19:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            next_run(&daily, at).unwrap().to_rfc3339(),
            "2026-11-21T20:00:00+00:00"
        );
        let every_two_seconds = parse_cron("backup_schedule", "*/2 * * * * *").unwrap();
        assert_eq!(
            next_run(&every_two_seconds, at).unwrap().to_rfc3339(),
            "2026-11-21T19:00:02+00:00"
        );
        let error = parse_cron("backup_schedule", "61 * * * *").unwrap_err();
        assert!(
            error.starts_with("backup_schedule \"61 * * * *\""),
            "{error}"
        );
    }
}
