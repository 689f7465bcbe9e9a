//! The services of the groups running on this node, by group id: what other nodes' forwarded
//! requests and cluster calls reach (`internal.rs`), and what the catalog hands the client
//! endpoints for a database placed here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::raft::types::{GroupId, NodeId};
use crate::service::Service;

/// One group replica on a node as that node sees it: whether it leads, and the membership in
/// effect (the leader's report is the group's membership). Encoded by position between
/// nodes: new fields go last, in a new type if they change meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReport {
    pub group: GroupId,
    pub leads: bool,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// A membership change is half done (joint configuration).
    pub joint: bool,
    /// The membership reported is committed (as far as this node knows): a leader's
    /// uncommitted membership could still be undone by the next leader.
    pub committed: bool,
}

/// One [`Service`] per group running here; kept in step with the Raft group registry by
/// whoever starts and stops groups (the catalog's reconciler).
#[derive(Default)]
pub struct Services {
    services: RwLock<HashMap<GroupId, Arc<Service>>>,
}

impl Services {
    pub fn new() -> Arc<Services> {
        Arc::new(Services::default())
    }

    pub fn get(&self, group: GroupId) -> Option<Arc<Service>> {
        self.read().get(&group).cloned()
    }

    pub fn insert(&self, service: Arc<Service>) {
        self.write().insert(service.group.id, service);
    }

    pub fn remove(&self, group: GroupId) -> Option<Arc<Service>> {
        self.write().remove(&group)
    }

    /// Every service, in group order.
    pub fn all(&self) -> Vec<Arc<Service>> {
        let mut services: Vec<_> = self.read().values().cloned().collect();
        services.sort_by_key(|service| service.group.id);
        services
    }

    /// A report of every group running here.
    pub fn reports(&self) -> Vec<GroupReport> {
        self.all()
            .iter()
            .map(|service| {
                let group = &service.group;
                let metrics = group.metrics();
                let membership = metrics.membership_config.membership();
                GroupReport {
                    group: group.id,
                    leads: group.leads(),
                    leader: metrics.current_leader,
                    voters: membership.voter_ids().collect(),
                    learners: membership.learner_ids().collect(),
                    joint: membership.get_joint_config().len() > 1,
                    committed: metrics.membership_config.log_id().as_ref().map(|l| l.index)
                        <= metrics.local_committed.map(|l| l.index),
                }
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, Arc<Service>>> {
        // Inserts and removes are single map calls: a poisoned lock still holds a whole map.
        self.services.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GroupId, Arc<Service>>> {
        self.services.write().unwrap_or_else(|e| e.into_inner())
    }
}
