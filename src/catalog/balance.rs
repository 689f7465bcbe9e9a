//! The placement loop, on the catalog's leader: keeps every created database's replicas on
//! live nodes and spread evenly, and its leaders spread evenly. Each round it asks every node
//! which groups it runs (and, on each group's leader, the group's membership), then does at
//! most one kind of change, and none while an earlier move is still under way:
//! 1. replicas on a node that is gone (no answer for `node_dead_after`), draining, or no longer
//!    in the cluster are placed on the least loaded live node instead;
//! 2. else one voter moves out of a zone holding so many of its group's voters that losing the
//!    zone would lose the group's majority (zones are `--zone` labels; an unlabelled node is a
//!    zone of its own);
//! 3. else one replica moves from the most to the least loaded node while they differ by more
//!    than one, where that keeps the zones safe;
//! 4. else one group's leadership moves from the node leading most to the node leading
//!    fewest while they differ by more than one.
//!
//! Placement changes are catalog writes; each group's leader then carries them out one step at
//! a time (`reconcile::follow_placement`). Both survive any node's crash: the placement is in
//! the catalog and the progress in the group's membership, so a restarted loop resumes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::catalog::CATALOG_GROUP;
use crate::catalog::databases::Databases;
use crate::catalog::placement::{Zones, survives_a_zone, zone_of};
use crate::catalog::view::{CatalogView, DatabaseEntry, Role, positional};
use crate::raft::types::{GroupId, NodeId, ShoalNode};
use crate::service::cluster::ClusterRequest;
use crate::service::registry::GroupReport;
use crate::types::value::SqlValue;

/// Groups re-placed off gone nodes in one round (each then moves on its own).
const REPLACEMENTS_PER_ROUND: usize = 16;
/// How long a leadership transfer may take before the next round.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// How the placement loop judges nodes, and this node's place.
#[derive(Debug, Clone)]
pub struct PlacementSettings {
    /// A node that has not answered for this long is gone: its replicas are placed elsewhere.
    pub node_dead_after: Duration,
    /// This node's zone (`--zone`), registered in the catalog.
    pub zone: Option<String>,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        PlacementSettings {
            node_dead_after: Duration::from_secs(30),
            zone: None,
        }
    }
}

/// The loop's memory between rounds: when each node last answered.
pub struct Balancer {
    settings: PlacementSettings,
    /// When this node started balancing: a node never heard from counts as heard then, so a
    /// new catalog leader gives every node the full grace period.
    since: Instant,
    last_answer: HashMap<NodeId, Instant>,
}

/// What one round did.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// A move is under way (a group's membership differs from its placement).
    Waiting,
    Replaced(usize),
    Moved {
        group: GroupId,
        from: NodeId,
        to: NodeId,
    },
    Transferred {
        group: GroupId,
        from: NodeId,
        to: NodeId,
    },
    Balanced,
}

impl Balancer {
    pub fn new(settings: PlacementSettings) -> Balancer {
        Balancer {
            settings,
            since: Instant::now(),
            last_answer: HashMap::new(),
        }
    }

    /// One round (this node leads the catalog).
    pub async fn round(
        &mut self,
        databases: &Databases,
        view: &CatalogView,
    ) -> Result<Round, String> {
        let nodes = databases.nodes();
        let reports = self.gather(databases, &nodes).await;
        let now = Instant::now();
        let live: BTreeSet<NodeId> = nodes
            .keys()
            .copied()
            .filter(|id| {
                let heard = self.last_answer.get(id).copied().unwrap_or(self.since);
                now.duration_since(heard) < self.settings.node_dead_after
            })
            .collect();
        let active: BTreeSet<NodeId> = live.difference(&view.draining).copied().collect();
        let memberships: BTreeMap<GroupId, &GroupReport> = reports
            .values()
            .flatten()
            .flatten()
            .filter(|report| report.leads)
            .map(|report| (report.group, report))
            .collect();
        let placed: Vec<&DatabaseEntry> =
            view.groups.values().filter(|d| !d.everywhere()).collect();
        let moving = placed.iter().any(|entry| {
            memberships
                .get(&entry.group)
                .is_some_and(|m| !matches_placement(m, entry))
        });
        let mut load: BTreeMap<NodeId, usize> = active.iter().map(|id| (*id, 0)).collect();
        for placement in placed.iter().flat_map(|d| &d.placements) {
            if let Some(count) = load.get_mut(&placement.node) {
                *count += 1;
            }
        }
        // 1. Off nodes that are gone or draining — even while other moves are under way, as one
        //    of them may be stuck on such a node.
        let zone_count = active
            .iter()
            .map(|node| zone_of(&view.zones, *node))
            .collect::<BTreeSet<_>>()
            .len();
        let mut replaced = 0;
        for entry in &placed {
            if replaced >= REPLACEMENTS_PER_ROUND {
                break;
            }
            // Targets chosen for this group in this round: two replicas never land together.
            let mut entry = (*entry).clone();
            let mut moves = Vec::new();
            let gone: Vec<NodeId> = entry
                .placements
                .iter()
                .map(|p| p.node)
                .filter(|node| !active.contains(node))
                .collect();
            for from in gone {
                let Some(to) = best_target(&load, &entry, from, &view.zones, zone_count) else {
                    continue;
                };
                *load.entry(to).or_default() += 1;
                if let Some(placement) = entry.placements.iter_mut().find(|p| p.node == from) {
                    placement.node = to;
                }
                moves.push((entry.group, from, to));
            }
            if !moves.is_empty() {
                replaced += moves.len();
                // One transaction per group: a stale view fails one group, not the round.
                if let Err(message) = write_moves(databases, &moves).await {
                    tracing::warn!(group = entry.group, %message, "re-placing replicas");
                }
            }
        }
        if replaced > 0 {
            return Ok(Round::Replaced(replaced));
        }
        if moving {
            return Ok(Round::Waiting);
        }
        // 2. Voters that a zone's loss would leave without a majority (zones added since).
        for entry in &placed {
            let voters = voters_of(entry);
            if survives_a_zone(&voters, &view.zones, zone_count) {
                continue;
            }
            let mut per_zone: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
            for node in &voters {
                per_zone
                    .entry(zone_of(&view.zones, *node))
                    .or_default()
                    .push(*node);
            }
            let Some(crowded) = per_zone.values().max_by_key(|nodes| nodes.len()) else {
                continue;
            };
            let from = crowded[crowded.len() - 1];
            if let Some(to) = best_target(&load, entry, from, &view.zones, zone_count)
                && survives_a_zone(&swapped(&voters, from, to), &view.zones, zone_count)
            {
                write_moves(databases, &[(entry.group, from, to)]).await?;
                return Ok(Round::Moved {
                    group: entry.group,
                    from,
                    to,
                });
            }
        }
        // 3. Even out replicas, never against the zones.
        if let (Some((&fullest, &most)), Some((&emptiest, &fewest))) = (
            load.iter()
                .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id))),
            load.iter().min_by_key(|(id, n)| (**n, **id)),
        ) && most > fewest + 1
            && let Some(entry) = placed.iter().find(|entry| {
                entry.placed_on(fullest).is_some()
                    && entry.placed_on(emptiest).is_none()
                    && survives_a_zone(
                        &swapped(&voters_of(entry), fullest, emptiest),
                        &view.zones,
                        zone_count,
                    )
            })
        {
            write_moves(databases, &[(entry.group, fullest, emptiest)]).await?;
            return Ok(Round::Moved {
                group: entry.group,
                from: fullest,
                to: emptiest,
            });
        }
        // 4. Even out leaders.
        let mut leading: BTreeMap<NodeId, Vec<&GroupReport>> =
            active.iter().map(|id| (*id, Vec::new())).collect();
        for (node, node_reports) in &reports {
            if let (Some(list), Some(node_reports)) = (leading.get_mut(node), node_reports) {
                list.extend(
                    node_reports
                        .iter()
                        .filter(|r| r.leads && placed.iter().any(|entry| entry.group == r.group)),
                );
            }
        }
        if let Some((from, to, report)) = leadership_move(&leading)
            && let Some(node) = nodes.get(&from)
        {
            let group = report.group;
            let outcome = tokio::time::timeout(
                TRANSFER_TIMEOUT,
                databases.peers(group).cluster(
                    &node.raft_addr,
                    &ClusterRequest::StepDown { to: Some(to) },
                    TRANSFER_TIMEOUT,
                ),
            )
            .await;
            match outcome {
                Ok(Ok(_)) => {
                    tracing::info!(
                        group,
                        from,
                        to,
                        "moved a group's leadership to even out leaders"
                    );
                    return Ok(Round::Transferred { group, from, to });
                }
                Ok(Err(error)) => {
                    return Err(format!("moving group {group}'s leadership: {error}"));
                }
                Err(_) => return Err(format!("moving group {group}'s leadership timed out")),
            }
        }
        Ok(Round::Balanced)
    }

    /// Every node's group reports, asked at once; `None` for nodes that did not answer.
    async fn gather(
        &mut self,
        databases: &Databases,
        nodes: &BTreeMap<NodeId, ShoalNode>,
    ) -> BTreeMap<NodeId, Option<Vec<GroupReport>>> {
        let peers = databases.peers(CATALOG_GROUP);
        let asks = nodes.iter().map(|(id, node)| {
            let peers = peers.clone();
            async move { (*id, peers.group_reports(&node.raft_addr).await.ok()) }
        });
        let answers: BTreeMap<NodeId, Option<Vec<GroupReport>>> =
            join_all(asks).await.into_iter().collect();
        let now = Instant::now();
        for (id, answer) in &answers {
            if answer.is_some() {
                self.last_answer.insert(*id, now);
            }
        }
        answers
    }
}

/// The leadership move that evens out leaders most: from the node leading most to the node
/// leading fewest that is a voter of one of its groups — trying the next-busiest and
/// next-idlest nodes when the extremes share no group (the busiest node's groups may have no
/// voter on the idlest node) — as long as they differ by more than one.
fn leadership_move<'a>(
    leading: &BTreeMap<NodeId, Vec<&'a GroupReport>>,
) -> Option<(NodeId, NodeId, &'a GroupReport)> {
    let mut by_load: Vec<(&NodeId, &Vec<&GroupReport>)> = leading.iter().collect();
    // Busiest first (ties to the lower id); the idlest are walked from the other end.
    by_load.sort_by_key(|(id, led)| (std::cmp::Reverse(led.len()), **id));
    for (from, led) in &by_load {
        for (to, fewer) in by_load.iter().rev() {
            if led.len() <= fewer.len() + 1 {
                break; // the rest lead at least as many: no move from `from` evens anything
            }
            if let Some(report) = led.iter().find(|r| r.voters.contains(to)) {
                return Some((**from, **to, report));
            }
        }
    }
    None
}

/// Whether the group's membership (its leader's report) is what the catalog places.
fn matches_placement(report: &GroupReport, entry: &DatabaseEntry) -> bool {
    let placed = |role: Role| -> BTreeSet<NodeId> {
        entry
            .placements
            .iter()
            .filter(|p| p.role == role)
            .map(|p| p.node)
            .collect()
    };
    !report.joint
        && report.voters.iter().copied().collect::<BTreeSet<_>>() == placed(Role::Voter)
        && report.learners.iter().copied().collect::<BTreeSet<_>>() == placed(Role::Replica)
}

/// Where `from`'s replica of `entry` should go: a node holding none of the group's replicas,
/// keeping the group's voters safe from a zone's loss where possible, then the least loaded
/// (ties to the lower id).
fn best_target(
    load: &BTreeMap<NodeId, usize>,
    entry: &DatabaseEntry,
    from: NodeId,
    zones: &Zones,
    zone_count: usize,
) -> Option<NodeId> {
    let voters = voters_of(entry);
    let moves_a_voter = voters.contains(&from);
    load.iter()
        .filter(|(id, _)| entry.placed_on(**id).is_none())
        .min_by_key(|(id, n)| {
            let unsafe_for_zones =
                moves_a_voter && !survives_a_zone(&swapped(&voters, from, **id), zones, zone_count);
            (unsafe_for_zones, **n, **id)
        })
        .map(|(id, _)| *id)
}

fn voters_of(entry: &DatabaseEntry) -> Vec<NodeId> {
    entry
        .placements
        .iter()
        .filter(|p| p.role == Role::Voter)
        .map(|p| p.node)
        .collect()
}

/// `voters` with `from` replaced by `to` (unchanged when `from` is not among them).
fn swapped(voters: &[NodeId], from: NodeId, to: NodeId) -> Vec<NodeId> {
    voters
        .iter()
        .map(|node| if *node == from { to } else { *node })
        .collect()
}

/// Re-places replicas: `(group, from, to)` each, in one catalog transaction (all or none: a
/// stale view fails on the placement key and is retried next round).
async fn write_moves(
    databases: &Databases,
    moves: &[(GroupId, NodeId, NodeId)],
) -> Result<(), String> {
    let statements = moves
        .iter()
        .map(|(group, from, to)| {
            positional(
                "UPDATE placements SET node_id = ?3, initial = 0 WHERE group_id = ?1 AND node_id = ?2",
                vec![
                    SqlValue::Integer(*group as i64),
                    SqlValue::Integer(*from as i64),
                    SqlValue::Integer(*to as i64),
                ],
            )
        })
        .collect();
    databases.write_catalog(statements).await.map_err(|e| {
        format!(
            "re-placing replicas: {}",
            crate::service::ServiceError::from(e)
        )
    })?;
    for (group, from, to) in moves {
        tracing::info!(target: "audit", event = "replica_moved", group, from, to, "replica placed on another node");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led(group: GroupId, voters: &[NodeId]) -> GroupReport {
        GroupReport {
            group,
            leads: true,
            leader: voters.first().copied(),
            voters: voters.to_vec(),
            learners: Vec::new(),
            joint: false,
            committed: true,
        }
    }

    #[test]
    fn leadership_moves_to_the_idlest_node_that_votes_in_one_of_the_busiest_groups() {
        let reports = [
            led(2, &[1, 2, 3]),
            led(3, &[2, 3, 5]),
            led(4, &[2, 3, 5]),
            led(5, &[3, 2, 5]),
            led(6, &[3, 2, 5]),
            led(7, &[5, 2, 3]),
            led(8, &[5, 2, 3]),
            led(9, &[4, 2, 3]),
            led(10, &[4, 3, 5]),
            led(11, &[4, 2, 5]),
            led(12, &[4, 5, 3]),
        ];
        let by_node = |node: NodeId, groups: &[usize]| {
            (
                node,
                groups.iter().map(|&i| &reports[i]).collect::<Vec<_>>(),
            )
        };
        // Node 4 leads four groups, none with a voter on node 1, the idlest (one group): the
        // move goes to the next idlest that votes in one of them (each leads two).
        let leading: BTreeMap<NodeId, Vec<&GroupReport>> = [
            by_node(1, &[0]),
            by_node(2, &[1, 2]),
            by_node(3, &[3, 4]),
            by_node(4, &[7, 8, 9, 10]),
            by_node(5, &[5, 6]),
        ]
        .into_iter()
        .collect();
        let (from, to, report) = leadership_move(&leading).expect("a move");
        assert_eq!(from, 4);
        assert_ne!(to, 1, "node 1 votes in none of node 4's groups");
        assert!(report.voters.contains(&to) && report.leader == Some(4));
        // Balanced to within one: no move.
        let even: BTreeMap<NodeId, Vec<&GroupReport>> =
            [by_node(1, &[0]), by_node(2, &[1, 2]), by_node(3, &[3])]
                .into_iter()
                .collect();
        assert!(leadership_move(&even).is_none());
    }
}
