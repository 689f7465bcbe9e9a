//! `ALTER DATABASE … BALANCE [DRY RUN]`: moves slots from the groups of a sharded database
//! holding the most rows to those holding the fewest. Each group counts the rows of its
//! distributed tables per bucket of [`BUCKET_SLOTS`] slots (`shoal_stored_slot` over the
//! shard key); the plan moves, from the heaviest group to the lightest, the run of its buckets
//! (in slot order) that brings both closest to the mean, until every group is within
//! [`TOLERANCE`] of it or [`MOVES_MAX`] moves are planned. A dry run answers the moves as rows;
//! otherwise they are recorded for the mover (`catalog::mover`) like a resharding's. Row
//! counts stand for size (no per-slot byte or write measurements yet).

use std::collections::BTreeMap;

use crate::catalog::databases::Databases;
use crate::catalog::mover::{distributed, read_unguarded};
use crate::catalog::reshard::{MOVE_SLOTS, PlannedStep, StepKind, sharded_entry};
use crate::catalog::slots::SlotMap;
use crate::catalog::view::{CatalogView, DatabaseEntry};
use crate::raft::types::{GroupId, RowSet, Statement, StatementResult};
use crate::service::ServiceError;
use crate::types::value::SqlValue;

/// Slots per bucket rows are counted in (256 buckets).
pub const BUCKET_SLOTS: u32 = 64;
/// How far from the mean a group may be (a share of the mean) and still count as balanced.
pub const TOLERANCE: f64 = 0.10;
/// Most moves one balancing plans.
pub const MOVES_MAX: usize = 64;

/// Rows per (group, bucket), as each group counted its own.
pub type Counts = BTreeMap<GroupId, BTreeMap<u32, u64>>;

/// The moves that bring `counts` (over `map`'s groups) within [`TOLERANCE`] of the mean,
/// with the rows each moves.
pub fn plan(map: &SlotMap, groups: &[GroupId], counts: &Counts) -> Vec<(PlannedStep, u64)> {
    let mut map = map.clone();
    let mut counts = counts.clone();
    let total: u64 = counts.values().flat_map(|b| b.values()).sum();
    if groups.len() < 2 || total == 0 {
        return Vec::new();
    }
    let mean = total as f64 / groups.len() as f64;
    let load = |counts: &Counts, group: GroupId| -> u64 {
        counts.get(&group).map_or(0, |b| b.values().sum())
    };
    let mut moves = Vec::new();
    while moves.len() < MOVES_MAX {
        let heaviest = *groups
            .iter()
            .max_by_key(|g| load(&counts, **g))
            .unwrap_or(&groups[0]);
        let lightest = *groups
            .iter()
            .min_by_key(|g| load(&counts, **g))
            .unwrap_or(&groups[0]);
        let (heavy, light) = (
            load(&counts, heaviest) as f64,
            load(&counts, lightest) as f64,
        );
        if heavy - mean <= mean * TOLERANCE && mean - light <= mean * TOLERANCE {
            break;
        }
        let wanted = (heavy - mean).min(mean - light).max(1.0) as u64;
        // The heaviest group's buckets in slot order, taken until `wanted` rows, each move at
        // most MOVE_SLOTS slots of contiguous ranges.
        let Some((first, end, rows)) = run_to_move(&map, &counts, heaviest, wanted) else {
            break;
        };
        if rows == 0 {
            break;
        }
        moves.push((
            PlannedStep {
                kind: StepKind::Move,
                first,
                end,
                from: heaviest,
                to: lightest,
            },
            rows,
        ));
        map = map.with_move(first, end, lightest, 0);
        shift(&mut counts, heaviest, lightest, first, end);
    }
    moves
}

/// `counts` after the rows of slots `[first, end)` (whole buckets) moved from `from` to `to`.
fn shift(counts: &mut Counts, from: GroupId, to: GroupId, first: u32, end: u32) {
    for bucket in first / BUCKET_SLOTS..end.div_ceil(BUCKET_SLOTS) {
        let moved = counts
            .get_mut(&from)
            .and_then(|b| b.remove(&bucket))
            .unwrap_or(0);
        *counts.entry(to).or_default().entry(bucket).or_default() += moved;
    }
}

/// A run of slots `group` owns, starting at its first bucket holding rows, of whole buckets
/// within one of its ranges and at most [`MOVE_SLOTS`] slots, holding about `wanted` rows.
fn run_to_move(
    map: &SlotMap,
    counts: &Counts,
    group: GroupId,
    wanted: u64,
) -> Option<(u32, u32, u64)> {
    let buckets = counts.get(&group)?;
    for (first, end) in map.ranges_of(group) {
        let mut at = first;
        while at < end {
            let bucket = at / BUCKET_SLOTS;
            let rows = buckets.get(&bucket).copied().unwrap_or(0);
            if rows == 0 {
                at = ((bucket + 1) * BUCKET_SLOTS).min(end);
                continue;
            }
            let start = at;
            let mut taken = 0;
            while at < end && at - start < MOVE_SLOTS && taken < wanted {
                let bucket = at / BUCKET_SLOTS;
                taken += buckets.get(&bucket).copied().unwrap_or(0);
                at = ((bucket + 1) * BUCKET_SLOTS).min(end);
            }
            return Some((start, at.min(start + MOVE_SLOTS), taken));
        }
    }
    None
}

/// Each routed group's rows per bucket, counted by the group.
async fn count_rows(databases: &Databases, entry: &DatabaseEntry) -> Result<Counts, String> {
    let tables: Vec<(String, String)> = distributed(entry)
        .map(|(table, key)| (table.clone(), key))
        .collect();
    let mut counts = Counts::new();
    for group in &entry.groups {
        let buckets = counts.entry(*group).or_default();
        if tables.is_empty() {
            continue;
        }
        let statements = tables
            .iter()
            .map(|(table, key)| {
                Statement::plain(format!(
                    "SELECT shoal_stored_slot({key}) / {BUCKET_SLOTS}, count(*) FROM \"{}\" \
                     GROUP BY 1",
                    table.replace('"', "\"\"")
                ))
            })
            .collect();
        for result in read_unguarded(databases, *group, statements).await? {
            for row in result.rows.iter().flat_map(|r: &RowSet| &r.values) {
                if let [SqlValue::Integer(bucket), SqlValue::Integer(rows)] = row.as_slice() {
                    *buckets.entry(*bucket as u32).or_default() += *rows as u64;
                }
            }
        }
    }
    Ok(counts)
}

impl Databases {
    /// `ALTER DATABASE name BALANCE [DRY RUN]`.
    pub(crate) async fn balance_slots(
        &self,
        view: &CatalogView,
        name: &str,
        dry_run: bool,
    ) -> Result<StatementResult, ServiceError> {
        let entry = sharded_entry(view, name, "it has no slots to balance")?;
        if entry.moves_pending > 0 {
            return Err(ServiceError::BadRequest(format!(
                "database {name:?} is being resharded ({} steps left): balance it afterwards",
                entry.moves_pending
            )));
        }
        let counts = count_rows(self, entry)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("counting {name:?}'s rows: {e}")))?;
        let moves = plan(&entry.slots, &entry.groups, &counts);
        let rows = |moves: &[(PlannedStep, u64)]| {
            moves
                .iter()
                .map(|(step, rows)| {
                    vec![
                        SqlValue::Integer(step.from as i64),
                        SqlValue::Integer(step.to as i64),
                        SqlValue::Integer(step.first as i64),
                        SqlValue::Integer(step.end as i64 - 1),
                        SqlValue::Integer(*rows as i64),
                    ]
                })
                .collect::<Vec<_>>()
        };
        let answer = StatementResult {
            rows: Some(RowSet {
                columns: ["from_group", "to_group", "first_slot", "last_slot", "rows"]
                    .map(String::from)
                    .to_vec(),
                types: ["integer"; 5].map(String::from).to_vec(),
                values: rows(&moves),
            }),
            rows_affected: if dry_run { 0 } else { moves.len() as u64 },
            ..Default::default()
        };
        if dry_run || moves.is_empty() {
            return Ok(answer);
        }
        let steps: Vec<PlannedStep> = moves.iter().map(|(step, _)| *step).collect();
        self.write_catalog(crate::catalog::reshard::recording(entry, &steps))
            .await?;
        let moved: u64 = moves.iter().map(|(_, rows)| rows).sum();
        tracing::info!(target: "audit", event = "database_balancing", database = %name,
            moves = moves.len(), rows = moved, "slot balancing planned");
        let _ = self.refresh().await;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` rows in each bucket of `buckets`.
    fn filled(buckets: impl IntoIterator<Item = u32>, rows: u64) -> BTreeMap<u32, u64> {
        buckets.into_iter().map(|b| (b, rows)).collect()
    }

    #[test]
    fn rows_piled_in_one_group_are_spread_to_within_the_tolerance() {
        let map = SlotMap::even(&[2, 3]);
        // Group 2 owns buckets 0..128, group 3 128..256; group 2 holds ten times the rows.
        let counts: Counts = [(2, filled(0..128, 100)), (3, filled(128..256, 10))].into();
        let moves = plan(&map, &[2, 3], &counts);
        assert!(!moves.is_empty());
        let (mut after, mut moved_map) = (counts.clone(), map.clone());
        for (step, rows) in &moves {
            assert_eq!((step.from, step.to), (2, 3));
            assert!(step.end - step.first <= MOVE_SLOTS);
            assert_eq!(
                moved_map.group_of(step.first),
                2,
                "it moves what group 2 owns"
            );
            let before: u64 = after[&2].values().sum();
            shift(&mut after, 2, 3, step.first, step.end);
            assert_eq!(before - after[&2].values().sum::<u64>(), *rows);
            moved_map = moved_map.with_move(step.first, step.end, step.to, 1);
        }
        let load = |g| after[&g].values().sum::<u64>() as f64;
        let mean = (load(2) + load(3)) / 2.0;
        // Within the tolerance, give or take one move's whole buckets.
        let slack = mean * TOLERANCE + (MOVE_SLOTS / BUCKET_SLOTS) as f64 * 100.0;
        assert!(
            (load(2) - mean).abs() <= slack,
            "{} vs {}",
            load(2),
            load(3)
        );
    }

    #[test]
    fn a_balanced_database_plans_nothing() {
        let map = SlotMap::even(&[2, 3, 4]);
        let counts: Counts = [
            (2, filled(0..85, 10)),
            (3, filled(85..170, 10)),
            (4, filled(170..256, 10)),
        ]
        .into();
        assert!(plan(&map, &[2, 3, 4], &counts).is_empty());
        assert!(plan(&map, &[2, 3, 4], &Counts::new()).is_empty());
    }
}
