//! Balancing a sharded database's slots: `ALTER DATABASE … BALANCE [BY ROWS|BYTES|WRITES]
//! [DRY RUN]` on demand, and on the catalog's leader by itself for databases that asked for it
//! (`ALTER DATABASE … SET (balance = rows|bytes|writes|off)`; off by default).
//!
//! Each bucket of [`BUCKET_SLOTS`] slots is weighed by its rows (each group counts its own,
//! `shoal_stored_slot` over the shard key), the bytes of their values (likewise), or the
//! writes routed to it in the last minute or two (every node's router counts them,
//! `shard::write_load`; a balancing sums what every node answers). The plan moves, from the
//! heaviest group to the lightest, the run of its buckets (in slot order) that brings both
//! closest to the mean, until every group is within a tolerance of it or a number of moves
//! is planned ([`TOLERANCE`] and [`MOVES_MAX`] on demand; a wider tolerance, fewer moves and a
//! least weight when automatic, so small or briefly skewed databases are left alone). A dry
//! run answers the moves as rows; otherwise they are recorded for the mover
//! (`catalog::mover`) like a resharding's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::catalog::databases::Databases;
use crate::catalog::mover::{table_shapes, weights};
use crate::catalog::reshard::{MOVE_SLOTS, PlannedStep, StepKind, sharded_entry};
use crate::catalog::slots::SlotMap;
use crate::catalog::sql::BalanceMeasure;
use crate::catalog::view::{CatalogView, DatabaseEntry, positional};
use crate::raft::types::{GroupId, RowSet, StatementResult};
use crate::service::ServiceError;
use crate::shard::slot::SLOTS;
pub use crate::shard::write_load::BUCKET_SLOTS;
use crate::shard::write_load::{self, BUCKETS};
use crate::types::value::SqlValue;

/// How far from the mean a group may be (a share of the mean) and still count as balanced.
pub const TOLERANCE: f64 = 0.10;
/// Most moves one balancing plans.
pub const MOVES_MAX: usize = 64;
/// How often the catalog's leader weighs the databases balanced automatically.
const AUTO_EVERY: Duration = Duration::from_secs(15);
/// The tolerance of automatic balancing: wider, so that it does not chase small differences.
const AUTO_TOLERANCE: f64 = 0.25;
/// Most moves one automatic round plans (the next round weighs again).
const AUTO_MOVES_MAX: usize = 8;

/// The least a database must weigh in all before automatic balancing moves its slots.
fn auto_least(by: BalanceMeasure) -> u64 {
    match by {
        BalanceMeasure::Rows => 1_000,
        BalanceMeasure::Bytes => 1024 * 1024,
        // Over the minute or two the counts cover.
        BalanceMeasure::Writes => 600,
    }
}

/// Weight per (group, bucket): rows, bytes or writes.
pub type Counts = BTreeMap<GroupId, BTreeMap<u32, u64>>;

/// The moves that bring `counts` (over `map`'s groups) within [`TOLERANCE`] of the mean,
/// with the weight each moves.
pub fn plan(map: &SlotMap, groups: &[GroupId], counts: &Counts) -> Vec<(PlannedStep, u64)> {
    plan_within(map, groups, counts, TOLERANCE, MOVES_MAX)
}

/// The moves that bring `counts` within `tolerance` of the mean, at most `moves_max`.
fn plan_within(
    map: &SlotMap,
    groups: &[GroupId],
    counts: &Counts,
    tolerance: f64,
    moves_max: usize,
) -> Vec<(PlannedStep, u64)> {
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
    while moves.len() < moves_max {
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
        if heavy - mean <= mean * tolerance && mean - light <= mean * tolerance {
            break;
        }
        let wanted = (heavy - mean).min(mean - light).max(1.0) as u64;
        // The heaviest group's buckets in slot order, taken until `wanted`, each move at
        // most MOVE_SLOTS slots of contiguous ranges.
        let Some((first, end, weight)) = run_to_move(&map, &counts, heaviest, wanted) else {
            break;
        };
        if weight == 0 {
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
            weight,
        ));
        map = map.with_move(first, end, lightest, 0);
        shift(&mut counts, heaviest, lightest, first, end);
    }
    moves
}

/// `counts` after the weight of slots `[first, end)` (whole buckets) moved from `from` to `to`.
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
/// within one of its ranges and at most [`MOVE_SLOTS`] slots, weighing about `wanted`.
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

/// Each routed group's weight per bucket, by `by`.
async fn weigh(
    databases: &Databases,
    entry: &DatabaseEntry,
    by: BalanceMeasure,
) -> Result<Counts, String> {
    if by == BalanceMeasure::Writes {
        return routed_writes(databases, entry).await;
    }
    // Every group holds the same tables: their columns are read from the first.
    let shapes = table_shapes(databases, entry, entry.group).await?;
    let bytes = by == BalanceMeasure::Bytes;
    let mut counts = Counts::new();
    for group in &entry.groups {
        let parts = weights(databases, *group, &shapes, BUCKET_SLOTS, 0..SLOTS, bytes).await?;
        counts.insert(
            *group,
            parts
                .into_iter()
                .map(|(bucket, (rows, size))| (bucket, if bytes { size } else { rows }))
                .collect(),
        );
    }
    Ok(counts)
}

/// The writes every node's router counted per bucket of `entry`'s slots, each bucket's
/// split between the groups owning its slots. Nodes that do not answer are left out (said
/// in the log); none answering is an error.
async fn routed_writes(databases: &Databases, entry: &DatabaseEntry) -> Result<Counts, String> {
    let me = databases.host().node_id();
    let peers = databases.peers(entry.group);
    let mut total = vec![0u64; BUCKETS];
    let mut failures = Vec::new();
    let nodes = databases.nodes();
    for (id, node) in &nodes {
        let counted = if *id == me {
            Ok(write_load::recent_of(entry.group))
        } else {
            peers
                .write_load(&node.raft_addr)
                .await
                .map_err(|e| e.to_string())
        };
        match counted {
            Ok(counted) if counted.len() == BUCKETS => {
                for (sum, writes) in total.iter_mut().zip(counted) {
                    *sum = sum.saturating_add(writes);
                }
            }
            Ok(counted) => failures.push(format!("node {id}: {} buckets", counted.len())),
            Err(error) => failures.push(format!("node {id}: {error}")),
        }
    }
    if !failures.is_empty() {
        if failures.len() == nodes.len() {
            return Err(format!("no node told its writes ({})", failures.join("; ")));
        }
        tracing::warn!(failures = %failures.join("; "), "balancing by writes without some nodes' counts");
    }
    Ok(split_by_owner(&entry.slots, &entry.groups, &total))
}

/// Weights per bucket (over all slots) as weights per (group, bucket), a bucket whose slots
/// several groups own split between them by the slots each owns.
fn split_by_owner(map: &SlotMap, groups: &[GroupId], per_bucket: &[u64]) -> Counts {
    let mut counts: Counts = groups.iter().map(|g| (*g, BTreeMap::new())).collect();
    for (bucket, weight) in per_bucket.iter().enumerate() {
        if *weight == 0 {
            continue;
        }
        let first = bucket as u32 * BUCKET_SLOTS;
        let mut owned: BTreeMap<GroupId, u64> = BTreeMap::new();
        for slot in first..first + BUCKET_SLOTS {
            *owned.entry(map.group_of(slot)).or_default() += 1;
        }
        for (group, slots) in owned {
            let share = weight * slots / u64::from(BUCKET_SLOTS);
            if share > 0 {
                *counts
                    .entry(group)
                    .or_default()
                    .entry(bucket as u32)
                    .or_default() += share;
            }
        }
    }
    counts
}

/// Runs automatic balancing rounds on the catalog's leader until shutdown.
pub async fn auto_balance_loop(databases: Arc<Databases>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(AUTO_EVERY) => {}
        }
        if databases.catalog().is_ok_and(|c| c.group.leads()) {
            auto_balance_round(&databases).await;
        }
    }
}

/// Weighs each database balanced automatically that no resharding is under way in, and
/// records the moves that bring it within [`AUTO_TOLERANCE`].
async fn auto_balance_round(databases: &Databases) {
    let view = databases.view();
    for entry in view.databases.values() {
        let Some(by) = entry.auto_balance else {
            continue;
        };
        if entry.groups.len() < 2 || entry.moves_pending > 0 || !view.slot_moves.is_empty() {
            continue;
        }
        let counts = match weigh(databases, entry, by).await {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(database = %entry.name, %error, "automatic balancing could not weigh the slots");
                continue;
            }
        };
        let total: u64 = counts.values().flat_map(|b| b.values()).sum();
        if total < auto_least(by) {
            continue;
        }
        let moves = plan_within(
            &entry.slots,
            &entry.groups,
            &counts,
            AUTO_TOLERANCE,
            AUTO_MOVES_MAX,
        );
        if moves.is_empty() {
            continue;
        }
        let steps: Vec<PlannedStep> = moves.iter().map(|(step, _)| *step).collect();
        match databases
            .write_catalog(crate::catalog::reshard::recording(entry, &steps))
            .await
        {
            Ok(_) => {
                let moved: u64 = moves.iter().map(|(_, weight)| weight).sum();
                tracing::info!(target: "audit", event = "database_balancing", database = %entry.name,
                    by = by.as_str(), moves = moves.len(), moved, automatic = true,
                    "slot balancing planned");
            }
            Err(error) => {
                let error = ServiceError::from(error);
                tracing::warn!(database = %entry.name, %error, "automatic balancing could not record its moves");
            }
        }
    }
}

impl Databases {
    /// `ALTER DATABASE name BALANCE [BY …] [DRY RUN]`.
    pub(crate) async fn balance_slots(
        &self,
        view: &CatalogView,
        name: &str,
        by: BalanceMeasure,
        dry_run: bool,
    ) -> Result<StatementResult, ServiceError> {
        let entry = sharded_entry(view, name, "it has no slots to balance")?;
        if entry.moves_pending > 0 {
            return Err(ServiceError::BadRequest(format!(
                "database {name:?} is being resharded ({} steps left): balance it afterwards",
                entry.moves_pending
            )));
        }
        let counts = weigh(self, entry, by).await.map_err(|e| {
            ServiceError::Unavailable(format!("weighing {name:?}'s slots by {}: {e}", by.as_str()))
        })?;
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
                columns: [
                    "from_group",
                    "to_group",
                    "first_slot",
                    "last_slot",
                    by.as_str(),
                ]
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
        let moved: u64 = moves.iter().map(|(_, weight)| weight).sum();
        tracing::info!(target: "audit", event = "database_balancing", database = %name,
            by = by.as_str(), moves = moves.len(), moved, automatic = false,
            "slot balancing planned");
        let _ = self.refresh().await;
        Ok(answer)
    }

    /// `ALTER DATABASE name SET (balance = …)`: automatic balancing on (by a measure) or off.
    pub(crate) async fn set_auto_balance(
        &self,
        view: &CatalogView,
        name: &str,
        by: Option<BalanceMeasure>,
    ) -> Result<StatementResult, ServiceError> {
        let entry = sharded_entry(view, name, "it has no slots to balance")?;
        let database = SqlValue::Integer(entry.group as i64);
        let statement = match by {
            Some(by) => positional(
                "INSERT OR REPLACE INTO balance_settings (database_group, measure) VALUES (?1, ?2)",
                vec![database, SqlValue::Text(by.as_str().into())],
            ),
            None => positional(
                "DELETE FROM balance_settings WHERE database_group = ?1",
                vec![database],
            ),
        };
        self.write_catalog(vec![statement]).await?;
        tracing::info!(target: "audit", event = "database_auto_balance", database = %name,
            by = by.map_or("off", BalanceMeasure::as_str), "automatic slot balancing set");
        let _ = self.refresh().await;
        Ok(StatementResult {
            rows_affected: 1,
            ..Default::default()
        })
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

    #[test]
    fn writes_to_a_bucket_two_groups_share_are_split_by_the_slots_each_owns() {
        // Group 3 took slots 0..32 of bucket 0 from group 2.
        let map = SlotMap::even(&[2, 3]).with_move(0, 32, 3, 1);
        let mut per_bucket = vec![0; BUCKETS];
        per_bucket[0] = 64;
        per_bucket[BUCKETS - 1] = 10;
        let counts = split_by_owner(&map, &[2, 3], &per_bucket);
        assert_eq!(counts[&2].get(&0), Some(&32));
        assert_eq!(counts[&3].get(&0), Some(&32));
        assert_eq!(counts[&3].get(&(BUCKETS as u32 - 1)), Some(&10));
        assert_eq!(counts[&2].len(), 1, "nothing else counted for group 2");
    }

    #[test]
    fn automatic_balancing_leaves_what_is_within_its_wider_tolerance() {
        let map = SlotMap::even(&[2, 3]);
        // 20 % off the mean: balanced on demand, left alone automatically.
        let counts: Counts = [(2, filled(0..128, 6)), (3, filled(128..256, 4))].into();
        assert!(!plan(&map, &[2, 3], &counts).is_empty());
        assert!(plan_within(&map, &[2, 3], &counts, AUTO_TOLERANCE, AUTO_MOVES_MAX).is_empty());
        // Far off: at most AUTO_MOVES_MAX moves a round.
        let skewed: Counts = [(2, filled(0..128, 100)), (3, filled(128..256, 1))].into();
        let moves = plan_within(&map, &[2, 3], &skewed, AUTO_TOLERANCE, AUTO_MOVES_MAX);
        assert!(!moves.is_empty() && moves.len() <= AUTO_MOVES_MAX);
    }
}
