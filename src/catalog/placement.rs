//! Where a new database's replicas go: the nodes holding the fewest replicas, voters first.
//! (Moving replicas of existing groups — joins, losses, drains, balancing — comes with the
//! placement loop; at creation the choice is all there is.)

use std::collections::BTreeMap;

use crate::catalog::view::{Placement, Role};
use crate::raft::types::NodeId;

/// `replicas` voters and `read_replicas` read replicas on distinct nodes of `nodes`, each on
/// the least loaded node left (ties to the lower id, so every node computes the same).
pub fn choose(
    nodes: &[NodeId],
    load: &BTreeMap<NodeId, usize>,
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
    let mut ranked: Vec<NodeId> = nodes.to_vec();
    ranked.sort_by_key(|node| (load.get(node).copied().unwrap_or(0), *node));
    Ok(ranked
        .into_iter()
        .take(wanted)
        .enumerate()
        .map(|(rank, node)| Placement {
            node,
            role: if rank < replicas {
                Role::Voter
            } else {
                Role::Replica
            },
            initial: rank < replicas,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_go_to_the_least_loaded_nodes() {
        let load = BTreeMap::from([(1, 4), (2, 1), (3, 1), (4, 0), (5, 2)]);
        let chosen = choose(&[1, 2, 3, 4, 5], &load, 3, 1).unwrap();
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
            for placement in choose(&[1, 2, 3, 4, 5], &load, 3, 0).unwrap() {
                *load.entry(placement.node).or_insert(0) += 1;
            }
        }
        let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
        assert!(max - min <= 1, "{load:?}");
    }

    #[test]
    fn more_replicas_than_nodes_is_refused_with_the_counts() {
        let error = choose(&[1, 2], &BTreeMap::new(), 3, 0).unwrap_err();
        assert!(error.contains("need 3 nodes; the cluster has 2"), "{error}");
    }
}
