//! Where replicas go: voters spread over zones (`--zone`; a node without one is a zone of its
//! own), each on the least loaded node of the zones holding the fewest of the group's voters,
//! then read replicas on the least loaded nodes left. Every node computes the same choice
//! (ties go to the lower id). The placement loop (`balance.rs`) uses the same rules to move
//! replicas later.

use std::collections::BTreeMap;

use crate::catalog::view::{Placement, Role};
use crate::raft::types::NodeId;

/// The zone of each node that has one.
pub type Zones = BTreeMap<NodeId, String>;

/// The zone `node` counts in: its label, or a zone of its own.
pub fn zone_of(zones: &Zones, node: NodeId) -> String {
    zones
        .get(&node)
        .cloned()
        .unwrap_or_else(|| format!("node-{node}"))
}

/// `replicas` voters and `read_replicas` read replicas on distinct nodes of `nodes`.
pub fn choose(
    nodes: &[NodeId],
    load: &BTreeMap<NodeId, usize>,
    zones: &Zones,
    replicas: usize,
    read_replicas: usize,
) -> Result<Vec<Placement>, String> {
    let wanted = replicas + read_replicas;
    if wanted > nodes.len() {
        return Err(format!(
            "{replicas} replicas and {read_replicas} read replicas need {wanted} nodes; the \
             cluster has {}",
            nodes.len()
        ));
    }
    let load_of = |node: &NodeId| load.get(node).copied().unwrap_or(0);
    let mut left: Vec<NodeId> = nodes.to_vec();
    let mut chosen: Vec<Placement> = Vec::with_capacity(wanted);
    let mut voters_in: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..replicas {
        let Some(position) = (0..left.len()).min_by_key(|&i| {
            let node = left[i];
            let zone_count = voters_in.get(&zone_of(zones, node)).copied().unwrap_or(0);
            (zone_count, load_of(&node), node)
        }) else {
            break;
        };
        let node = left.remove(position);
        *voters_in.entry(zone_of(zones, node)).or_default() += 1;
        chosen.push(Placement {
            node,
            role: Role::Voter,
            initial: true,
        });
    }
    left.sort_by_key(|node| (load_of(node), *node));
    chosen.extend(left.into_iter().take(read_replicas).map(|node| Placement {
        node,
        role: Role::Replica,
        initial: false,
    }));
    Ok(chosen)
}

/// Whether a group whose voters are `voters` keeps its majority when any one zone is lost
/// — or, where the nodes span fewer than three zones and that cannot be, whether no zone
/// holds more of them than it must.
pub fn survives_a_zone(voters: &[NodeId], zones: &Zones, zone_count: usize) -> bool {
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for node in voters {
        *per_zone.entry(zone_of(zones, *node)).or_default() += 1;
    }
    let most = per_zone.values().copied().max().unwrap_or(0);
    let majority = voters.len() / 2 + 1;
    if zone_count >= 3 {
        most < majority
    } else {
        most <= voters.len().div_ceil(zone_count.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_go_to_the_least_loaded_nodes() {
        let load = BTreeMap::from([(1, 4), (2, 1), (3, 1), (4, 0), (5, 2)]);
        let chosen = choose(&[1, 2, 3, 4, 5], &load, &Zones::new(), 3, 1).unwrap();
        let nodes: Vec<_> = chosen.iter().map(|p| (p.node, p.role)).collect();
        assert_eq!(
            nodes,
            vec![
                (4, Role::Voter),
                (2, Role::Voter),
                (3, Role::Voter),
                (5, Role::Replica)
            ]
        );
        assert!(chosen[..3].iter().all(|p| p.initial) && !chosen[3].initial);
    }

    #[test]
    fn twelve_databases_on_five_nodes_differ_by_at_most_one_replica() {
        let mut load = BTreeMap::new();
        for _ in 0..12 {
            for placement in choose(&[1, 2, 3, 4, 5], &load, &Zones::new(), 3, 0).unwrap() {
                *load.entry(placement.node).or_insert(0) += 1;
            }
        }
        let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
        assert!(max - min <= 1, "{load:?}");
    }

    #[test]
    fn voters_spread_over_zones_before_load() {
        let zones = Zones::from([
            (1, "a".to_string()),
            (2, "a".to_string()),
            (3, "b".to_string()),
            (4, "b".to_string()),
            (5, "c".to_string()),
            (6, "c".to_string()),
        ]);
        // Zone a is the least loaded, but one voter per zone keeps a majority when any
        // zone is lost.
        let load = BTreeMap::from([(1, 0), (2, 0), (3, 5), (4, 6), (5, 5), (6, 4)]);
        let chosen = choose(&[1, 2, 3, 4, 5, 6], &load, &zones, 3, 0).unwrap();
        let nodes: Vec<_> = chosen.iter().map(|p| p.node).collect();
        assert_eq!(nodes, vec![1, 6, 3]);
        assert!(survives_a_zone(&nodes, &zones, 3));
        assert!(!survives_a_zone(&[1, 2, 3], &zones, 3));
    }

    #[test]
    fn more_replicas_than_nodes_is_refused_with_the_counts() {
        let error = choose(&[1, 2], &BTreeMap::new(), &Zones::new(), 3, 0).unwrap_err();
        assert!(error.contains("need 3 nodes; the cluster has 2"), "{error}");
    }
}
