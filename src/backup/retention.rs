//! Which backups a target keeps: the newest N, plus the newest of each of the last N days,
//! ISO weeks and months. Pruning never removes the newest good backup or one being verified.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// How many backups a target keeps (0 = that rule keeps none). All zero keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

impl RetentionPolicy {
    pub fn keeps_everything(&self) -> bool {
        *self == RetentionPolicy::default()
    }
}

/// What pruning knows about one backup.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub backup_id: String,
    pub created_at_ms: i64,
    /// Not known to be bad: verified successfully, or not verified yet.
    pub good: bool,
    /// A verification is running now.
    pub verifying: bool,
}

/// The ids of the backups `policy` lets go, oldest first.
pub fn to_prune(policy: &RetentionPolicy, backups: &[Candidate]) -> Vec<String> {
    if policy.keeps_everything() {
        return Vec::new();
    }
    let mut newest_first: Vec<&Candidate> = backups.iter().collect();
    newest_first.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then(b.backup_id.cmp(&a.backup_id))
    });
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    for backup in newest_first.iter().take(policy.keep_last as usize) {
        keep.insert(&backup.backup_id);
    }
    let day = |t: DateTime<Utc>| (t.year(), t.ordinal());
    let week = |t: DateTime<Utc>| {
        let week = t.iso_week();
        (week.year(), week.week())
    };
    let month = |t: DateTime<Utc>| (t.year(), t.month());
    for (count, bucket) in [
        (
            policy.keep_daily,
            &day as &dyn Fn(DateTime<Utc>) -> (i32, u32),
        ),
        (policy.keep_weekly, &week),
        (policy.keep_monthly, &month),
    ] {
        let mut seen = BTreeSet::new();
        for backup in &newest_first {
            if seen.len() >= count as usize {
                break;
            }
            let created = DateTime::from_timestamp_millis(backup.created_at_ms).unwrap_or_default();
            // The newest (good, if any) backup of each bucket represents it.
            if backup.good && seen.insert(bucket(created)) {
                keep.insert(&backup.backup_id);
            }
        }
    }
    // The newest good backup always stays, whatever the rules say.
    if let Some(newest_good) = newest_first.iter().find(|b| b.good) {
        keep.insert(&newest_good.backup_id);
    }
    let mut prune: Vec<String> = newest_first
        .iter()
        .filter(|b| !b.verifying && !keep.contains(b.backup_id.as_str()))
        .map(|b| b.backup_id.clone())
        .collect();
    prune.reverse();
    prune
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    /// 2026-11-02 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_793_577_600_000;

    fn backup(id: &str, at: i64) -> Candidate {
        Candidate {
            backup_id: id.into(),
            created_at_ms: at,
            good: true,
            verifying: false,
        }
    }

    #[test]
    fn keep_last_keeps_the_newest_and_prunes_oldest_first() {
        let backups: Vec<_> = (0..5)
            .map(|i| backup(&format!("b{i}"), MONDAY + i * HOUR))
            .collect();
        let policy = RetentionPolicy {
            keep_last: 2,
            ..Default::default()
        };
        assert_eq!(to_prune(&policy, &backups), ["b0", "b1", "b2"]);
    }

    #[test]
    fn daily_weekly_and_monthly_buckets_keep_the_newest_of_each() {
        // Four backups a day for 21 days.
        let backups: Vec<_> = (0..84)
            .map(|i| backup(&format!("b{i:02}"), MONDAY + i * 6 * HOUR))
            .collect();
        let policy = RetentionPolicy {
            keep_daily: 3,
            keep_weekly: 2,
            keep_monthly: 0,
            keep_last: 0,
        };
        let pruned = to_prune(&policy, &backups);
        let kept: Vec<&str> = backups
            .iter()
            .map(|b| b.backup_id.as_str())
            .filter(|id| !pruned.iter().any(|p| p == id))
            .collect();
        // The last of each of the last three days (b83, b79, b75) and the last of the previous
        // ISO week (Sunday of week two: day 13, b55); the newest week's is b83 already.
        assert_eq!(kept, ["b55", "b75", "b79", "b83"]);
    }

    #[test]
    fn the_newest_good_backup_and_verifying_ones_are_never_pruned() {
        let mut backups: Vec<_> = (0..4)
            .map(|i| backup(&format!("b{i}"), MONDAY + i * DAY))
            .collect();
        backups[3].good = false; // the newest failed its verification
        backups[0].verifying = true;
        let policy = RetentionPolicy {
            keep_last: 1,
            ..Default::default()
        };
        // keep_last keeps b3 (bad); b2 stays as the newest good; b0 is being verified.
        assert_eq!(to_prune(&policy, &backups), ["b1"]);
    }

    #[test]
    fn no_rules_keep_everything() {
        let backups = vec![backup("a", MONDAY), backup("b", MONDAY + DAY)];
        assert!(to_prune(&RetentionPolicy::default(), &backups).is_empty());
    }
}
