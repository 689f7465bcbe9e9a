//! The services of the groups running on this node, by group id: what other nodes' forwarded
//! requests and cluster calls reach (`internal.rs`), and what the catalog hands the client
//! endpoints for a database placed here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::raft::types::GroupId;
use crate::service::Service;

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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<GroupId, Arc<Service>>> {
        // Inserts and removes are single map calls: a poisoned lock still holds a whole map.
        self.services.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<GroupId, Arc<Service>>> {
        self.services.write().unwrap_or_else(|e| e.into_inner())
    }
}
