//! `ALTER DATABASE … SET (shards = N)` and `ALTER DATABASE … CANCEL RESHARDING`: the plan
//! that takes a sharded database's slot map to the even map over N groups — groups added
//! first join (they get the schema and the reference tables' rows), then slot ranges move in
//! chunks of [`MOVE_SLOTS`], then groups no longer needed leave — recorded in the catalog's
//! `slot_moves` table, which the mover (`catalog::mover`) works through one step at a time on
//! the catalog's leader. The statement returns once the plan is recorded; `SHOW DATABASES`
//! counts the steps left (docs/sharding.md).

use crate::catalog::databases::Databases;
use crate::catalog::placement;
use crate::catalog::slots::SlotMap;
use crate::catalog::view::{self, CatalogView, DatabaseEntry, positional};
use crate::raft::types::{GroupId, Statement, StatementResult};
use crate::service::ServiceError;
use crate::shard::slot::SLOTS;
use crate::types::value::SqlValue;

/// Slots one move takes at most: the rows of one move are copied in its critical section,
/// so a smaller range is a shorter pause (a range whose rows are too many is split further
/// by the mover).
pub const MOVE_SLOTS: u32 = 256;

/// Fewest groups a sharded database keeps.
pub const SHARDS_MIN: u32 = 2;

/// What a resharding step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A group added by resharding gets the schema and the reference tables' rows of
    /// `from` (the first group), and is routed from then on (owning no slot yet).
    Join,
    /// Slots `[first, end)` move from `from` to `to`.
    Move,
    /// Group `from`, owning no slot any more, is removed from the database.
    Leave,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Join => "join",
            StepKind::Move => "move",
            StepKind::Leave => "leave",
        }
    }

    pub fn parse(text: &str) -> Option<StepKind> {
        [StepKind::Join, StepKind::Move, StepKind::Leave]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedStep {
    pub kind: StepKind,
    pub first: u32,
    pub end: u32,
    pub from: GroupId,
    pub to: GroupId,
}

/// The steps that take `map` (over the `routed` groups, in shard order) to a map over the
/// first `shards` of `routed` followed by `added` (the groups resharding creates: as many as
/// `shards` exceeds `routed`) in which each group owns its even share of the slots (within
/// one), moving as few slots as can be: every group keeps its lowest slots up to its share,
/// and the slots over (all of a group's that leaves) go, in slot order, to the groups under
/// their share, in shard order.
pub fn plan(
    map: &SlotMap,
    routed: &[GroupId],
    added: &[GroupId],
    shards: usize,
) -> Vec<PlannedStep> {
    let members: Vec<GroupId> = routed.iter().chain(added).copied().take(shards).collect();
    let Some(&first_group) = routed.first() else {
        return Vec::new();
    };
    let mut steps: Vec<PlannedStep> = added
        .iter()
        .map(|group| PlannedStep {
            kind: StepKind::Join,
            first: 0,
            end: 0,
            from: first_group,
            to: *group,
        })
        .collect();
    let share = |at: usize| {
        let n = members.len() as u32;
        SLOTS / n + u32::from((at as u32) < SLOTS % n)
    };
    let owner: Vec<GroupId> = (0..SLOTS).map(|slot| map.group_of(slot)).collect();
    let mut target = owner.clone();
    let mut kept = vec![0u32; members.len()];
    let mut over = Vec::new();
    for (slot, group) in owner.iter().enumerate() {
        match members.iter().position(|m| m == group) {
            Some(at) if kept[at] < share(at) => kept[at] += 1,
            _ => over.push(slot),
        }
    }
    let mut over = over.into_iter();
    for (at, member) in members.iter().enumerate() {
        for slot in over.by_ref().take((share(at) - kept[at]) as usize) {
            target[slot] = *member;
        }
    }
    let mut slot = 0usize;
    while slot < owner.len() {
        let (from, to) = (owner[slot], target[slot]);
        let mut end = slot + 1;
        while end < owner.len()
            && owner[end] == from
            && target[end] == to
            && end - slot < MOVE_SLOTS as usize
        {
            end += 1;
        }
        if from != to {
            steps.push(PlannedStep {
                kind: StepKind::Move,
                first: slot as u32,
                end: end as u32,
                from,
                to,
            });
        }
        slot = end;
    }
    for group in routed.iter().skip(shards) {
        steps.push(PlannedStep {
            kind: StepKind::Leave,
            first: 0,
            end: 0,
            from: *group,
            to: *group,
        });
    }
    steps
}

/// Group ids standing for the groups a plan adds until the catalog hands out their ids
/// (`next_group` + k for the k-th).
const ADDED_BASE: GroupId = u64::MAX / 2;

/// The SQL value of group `group` in a statement selecting from `catalog_meta`'s
/// `next_group` row (`value`): a placeholder becomes its id there.
fn group_sql(group: GroupId) -> String {
    match group.checked_sub(ADDED_BASE) {
        Some(k) => format!("value + {k}"),
        None => group.to_string(),
    }
}

/// The catalog statements storing `map` as the slot map of the database whose first group is
/// `database`.
pub(crate) fn map_statements(database: GroupId, map: &SlotMap) -> Vec<Statement> {
    let database = SqlValue::Integer(database as i64);
    let mut statements = vec![positional(
        "DELETE FROM slot_ranges WHERE database_group = ?1",
        vec![database.clone()],
    )];
    for range in map.ranges() {
        statements.push(positional(
            "INSERT INTO slot_ranges (database_group, first_slot, end_slot, group_id)
             VALUES (?1, ?2, ?3, ?4)",
            vec![
                database.clone(),
                SqlValue::Integer(range.first as i64),
                SqlValue::Integer(range.end as i64),
                SqlValue::Integer(range.group as i64),
            ],
        ));
    }
    statements
}

/// The catalog statements recording `steps` for `entry`'s database (run inside one catalog
/// transaction whose `catalog_meta` has `next_group`, which placeholder groups stand for):
/// the map as it routes now is stored first — the even map over the routed groups would
/// change as groups join — and the catalog's layout raised to the one that stores maps.
pub(crate) fn recording(entry: &DatabaseEntry, steps: &[PlannedStep]) -> Vec<Statement> {
    let database = SqlValue::Integer(entry.group as i64);
    let mut statements = map_statements(entry.group, &entry.slots);
    for step in steps {
        statements.push(positional(
            &format!(
                "INSERT INTO slot_moves
                     (database_group, kind, first_slot, end_slot, from_group, to_group)
                 SELECT ?1, ?2, ?3, ?4, {}, {} FROM catalog_meta WHERE key = 'next_group'",
                group_sql(step.from),
                group_sql(step.to)
            ),
            vec![
                database.clone(),
                SqlValue::Text(step.kind.as_str().into()),
                SqlValue::Integer(step.first as i64),
                SqlValue::Integer(step.end as i64),
            ],
        ));
    }
    statements.push(positional(
        "UPDATE catalog_meta SET value = ?1 WHERE key = 'layout' AND value < ?1",
        vec![SqlValue::Integer(view::RESHARDED_LAYOUT)],
    ));
    statements
}

/// The catalog entry of sharded database `name`; an unsharded one is refused with `why`.
pub(crate) fn sharded_entry<'v>(
    view: &'v CatalogView,
    name: &str,
    why: &str,
) -> Result<&'v DatabaseEntry, ServiceError> {
    let entry = view
        .databases
        .get(name)
        .ok_or_else(|| ServiceError::UnknownDatabase(name.to_string()))?;
    if !entry.sharded() {
        return Err(ServiceError::BadRequest(format!(
            "database {name:?} is not sharded: {why}"
        )));
    }
    Ok(entry)
}

impl Databases {
    /// `ALTER DATABASE name SET (shards = N)`: records the plan (new groups placed and
    /// hosted, not routed until they join).
    pub(crate) async fn reshard(
        &self,
        view: &CatalogView,
        name: &str,
        shards: u32,
    ) -> Result<StatementResult, ServiceError> {
        let entry = sharded_entry(
            view,
            name,
            "only a database created WITH (shards = N) can be resharded",
        )?;
        if shards < SHARDS_MIN {
            return Err(ServiceError::BadRequest(format!(
                "a sharded database keeps at least {SHARDS_MIN} shards; {name:?} cannot go to \
                 {shards}"
            )));
        }
        if entry.moves_pending > 0 || !entry.joining.is_empty() {
            return Err(ServiceError::BadRequest(format!(
                "database {name:?} is being resharded already ({} steps left): wait for it, \
                 or stop it with ALTER DATABASE {name} CANCEL RESHARDING",
                entry.moves_pending
            )));
        }
        let routed = entry.groups.clone();
        if shards as usize == routed.len() {
            return Ok(StatementResult::default());
        }
        let added_count = (shards as usize).saturating_sub(routed.len());
        let added: Vec<GroupId> = (0..added_count as u64).map(|k| ADDED_BASE + k).collect();
        // The new groups are placed as CREATE DATABASE places shards.
        let nodes: Vec<_> = self
            .nodes()
            .into_keys()
            .filter(|node| !view.draining.contains(node))
            .collect();
        let voters = entry
            .placements
            .iter()
            .filter(|p| p.role == view::Role::Voter)
            .count()
            .max(1);
        let mut load = view.load_per_node();
        let database = SqlValue::Integer(entry.group as i64);
        let mut statements: Vec<Statement> = Vec::new();
        let first_new_shard = routed.len() + entry.joining.len();
        for k in 0..added_count {
            let chosen = placement::choose(
                &nodes,
                &load,
                &view.zones,
                voters,
                entry.read_replicas as usize,
            )
            .map_err(ServiceError::BadRequest)?;
            for placement in &chosen {
                *load.entry(placement.node).or_default() += 1;
            }
            let id = group_sql(ADDED_BASE + k as u64);
            statements.push(positional(
                &format!(
                    "INSERT INTO shard_groups (database_group, shard, group_id)
                     SELECT ?1, ?2, {id} FROM catalog_meta WHERE key = 'next_group'"
                ),
                vec![
                    database.clone(),
                    SqlValue::Integer((first_new_shard + k) as i64),
                ],
            ));
            statements.push(positional(
                &format!(
                    "INSERT INTO joining_groups (group_id, database_group)
                     SELECT {id}, ?1 FROM catalog_meta WHERE key = 'next_group'"
                ),
                vec![database.clone()],
            ));
            for placement in chosen {
                statements.push(positional(
                    &format!(
                        "INSERT INTO placements (group_id, node_id, role, initial)
                         SELECT {id}, ?1, ?2, ?3 FROM catalog_meta WHERE key = 'next_group'"
                    ),
                    vec![
                        SqlValue::Integer(placement.node as i64),
                        SqlValue::Text(placement.role.as_str().into()),
                        SqlValue::Integer(placement.initial as i64),
                    ],
                ));
            }
        }
        let steps = plan(&entry.slots, &routed, &added, shards as usize);
        statements.extend(recording(entry, &steps));
        statements.push(positional(
            "UPDATE catalog_meta SET value = value + ?1 WHERE key = 'next_group'",
            vec![SqlValue::Integer(added_count as i64)],
        ));
        self.write_catalog(statements).await?;
        tracing::info!(target: "audit", event = "database_resharding", database = %name,
            from = routed.len(), to = shards, steps = steps.len(), "resharding planned");
        let _ = self.refresh().await;
        Ok(StatementResult {
            rows_affected: steps.len() as u64,
            ..Default::default()
        })
    }

    /// `ALTER DATABASE name CANCEL RESHARDING`: drops the steps not started (the one under
    /// way finishes) and the added groups that never joined. The database stays whole: each
    /// step moves its slots completely or not at all.
    pub(crate) async fn cancel_resharding(
        &self,
        view: &CatalogView,
        name: &str,
    ) -> Result<StatementResult, ServiceError> {
        let entry = view
            .databases
            .get(name)
            .ok_or_else(|| ServiceError::UnknownDatabase(name.to_string()))?;
        let database = SqlValue::Integer(entry.group as i64);
        let never_joined = "SELECT to_group FROM slot_moves
             WHERE database_group = ?1 AND kind = 'join' AND version IS NULL";
        let statements = vec![
            positional(
                &format!(
                    "INSERT INTO dropped_groups (group_id, name, dropped_ms)
                     SELECT group_id, ?2 || '#' || shard, ?3 FROM shard_groups
                     WHERE group_id IN ({never_joined})"
                ),
                vec![
                    database.clone(),
                    SqlValue::Text(name.to_string()),
                    SqlValue::Integer(crate::service::unix_now_ms()),
                ],
            ),
            positional(
                &format!("DELETE FROM placements WHERE group_id IN ({never_joined})"),
                vec![database.clone()],
            ),
            positional(
                &format!("DELETE FROM shard_groups WHERE group_id IN ({never_joined})"),
                vec![database.clone()],
            ),
            positional(
                &format!("DELETE FROM joining_groups WHERE group_id IN ({never_joined})"),
                vec![database.clone()],
            ),
            positional(
                "DELETE FROM slot_moves WHERE database_group = ?1 AND version IS NULL",
                vec![database],
            ),
        ];
        let results = self.write_catalog(statements).await?;
        let dropped = results.last().map_or(0, |r| r.rows_affected);
        tracing::info!(target: "audit", event = "database_resharding_cancelled",
            database = %name, steps_dropped = dropped, "resharding cancelled");
        let _ = self.refresh().await;
        Ok(StatementResult {
            rows_affected: dropped,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map after applying `steps` in order.
    fn after(map: &SlotMap, steps: &[PlannedStep]) -> SlotMap {
        let mut map = map.clone();
        for (version, step) in steps.iter().enumerate() {
            if step.kind == StepKind::Move {
                assert_eq!(
                    map.group_of(step.first),
                    step.from,
                    "{step:?} moves what it holds"
                );
                assert!(step.end - step.first <= MOVE_SLOTS);
                map = map.with_move(step.first, step.end, step.to, version as u64 + 1);
            }
        }
        map
    }

    #[test]
    fn growing_joins_the_new_groups_then_moves_only_their_shares() {
        let map = SlotMap::even(&[2, 3, 4, 5]);
        let steps = plan(&map, &[2, 3, 4, 5], &[10, 11, 12, 13], 8);
        let joins: Vec<_> = steps
            .iter()
            .take_while(|s| s.kind == StepKind::Join)
            .collect();
        assert_eq!(joins.len(), 4);
        assert!(joins.iter().all(|s| s.from == 2));
        let moved: u32 = steps
            .iter()
            .filter(|s| s.kind == StepKind::Move)
            .map(|s| s.end - s.first)
            .sum();
        assert_eq!(moved, SLOTS / 2, "only the new groups' shares move");
        let end = after(&map, &steps);
        for group in [2, 3, 4, 5, 10, 11, 12, 13] {
            assert_eq!(end.slots_of(group), SLOTS / 8, "group {group}");
        }
        assert!(!steps.iter().any(|s| s.kind == StepKind::Leave));
    }

    #[test]
    fn an_uneven_growth_gives_every_group_its_share_within_one_slot() {
        let map = SlotMap::even(&[2, 3]);
        let steps = plan(&map, &[2, 3], &[7, 8, 9], 5);
        let end = after(&map, &steps);
        let shares: Vec<u32> = [2, 3, 7, 8, 9].iter().map(|g| end.slots_of(*g)).collect();
        assert_eq!(shares.iter().sum::<u32>(), SLOTS);
        assert!(
            shares.iter().all(|s| s.abs_diff(SLOTS / 5) <= 1),
            "{shares:?}"
        );
    }

    #[test]
    fn shrinking_moves_the_last_groups_slots_away_then_they_leave() {
        let map = SlotMap::even(&[2, 3, 4, 5, 6]);
        let steps = plan(&map, &[2, 3, 4, 5, 6], &[], 2);
        let end = after(&map, &steps);
        assert_eq!(end.slots_of(2) + end.slots_of(3), SLOTS);
        let leaving: Vec<GroupId> = steps
            .iter()
            .filter(|s| s.kind == StepKind::Leave)
            .map(|s| s.from)
            .collect();
        assert_eq!(leaving, vec![4, 5, 6]);
        let last_move = steps
            .iter()
            .rposition(|s| s.kind == StepKind::Move)
            .unwrap();
        let first_leave = steps
            .iter()
            .position(|s| s.kind == StepKind::Leave)
            .unwrap();
        assert!(last_move < first_leave, "groups leave once emptied");
    }

    #[test]
    fn a_placeholder_group_is_the_next_group_id_in_sql() {
        assert_eq!(group_sql(ADDED_BASE + 2), "value + 2");
        assert_eq!(group_sql(17), "17");
    }
}
