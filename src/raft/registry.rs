//! The Raft groups running on this node, by id: added and removed while the node runs (the
//! catalog places groups on nodes), read by every Raft-port route and peer stream.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::raft::group::RaftGroup;
use crate::raft::types::{GroupId, NodeId};

/// The groups this node runs. Lookups take a read lock for a map access only; the groups
/// themselves are shared `Arc`s, so a removed group finishes the calls already holding it.
pub struct GroupRegistry {
    node_id: NodeId,
    groups: RwLock<HashMap<GroupId, Arc<RaftGroup>>>,
}

impl GroupRegistry {
    pub fn new(node_id: NodeId) -> Arc<GroupRegistry> {
        Arc::new(GroupRegistry {
            node_id,
            groups: RwLock::new(HashMap::new()),
        })
    }

    /// The node these groups run on.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn get(&self, id: GroupId) -> Option<Arc<RaftGroup>> {
        self.read().get(&id).cloned()
    }

    /// Adds (or replaces) a group.
    pub fn insert(&self, group: Arc<RaftGroup>) {
        self.write().insert(group.id, group);
    }

    /// Removes a group from routing; calls already holding it finish on it.
    pub fn remove(&self, id: GroupId) -> Option<Arc<RaftGroup>> {
        self.write().remove(&id)
    }

    /// Every group, in id order.
    pub fn all(&self) -> Vec<Arc<RaftGroup>> {
        let mut groups: Vec<_> = self.read().values().cloned().collect();
        groups.sort_by_key(|group| group.id);
        groups
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, Arc<RaftGroup>>> {
        // A panic while holding this lock leaves the map itself consistent (inserts and
        // removes are single calls), so a poisoned lock is still safe to use.
        self.groups.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GroupId, Arc<RaftGroup>>> {
        self.groups.write().unwrap_or_else(|e| e.into_inner())
    }
}
