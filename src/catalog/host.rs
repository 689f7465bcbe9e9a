//! The group replicas this node hosts: starting one (its storage under
//! `<data-dir>/groups/<id>/`, its Raft instance, its service), stopping one, and removing a
//! dropped group's files. Keeps the Raft registry (what peers reach) and the service registry
//! (what requests reach) in step.

use std::path::PathBuf;
use std::sync::Arc;

use crate::net::node_client::NodeClient;
use crate::raft::group::{GroupError, RaftGroup, RaftSettings};
use crate::raft::peer_stream::client::PeerLinks;
use crate::raft::registry::GroupRegistry;
use crate::raft::types::{GroupId, NodeId};
use crate::service::Service;
use crate::service::registry::Services;

/// Most groups one node hosts; beyond it a placement is refused here (and said so) rather
/// than exhausting memory or file descriptors.
pub const GROUPS_PER_NODE_MAX: usize = 2048;

/// Starts and stops this node's group replicas.
pub struct GroupHost {
    data_dir: PathBuf,
    node_id: NodeId,
    settings: RaftSettings,
    links: Arc<PeerLinks>,
    http: NodeClient,
    pub groups: Arc<GroupRegistry>,
    pub services: Arc<Services>,
    /// One start or stop at a time: a group is never started twice or stopped mid-start.
    changing: tokio::sync::Mutex<()>,
    /// Set by [`GroupHost::stop_all`] (node shutdown): no group starts after it.
    closed: std::sync::atomic::AtomicBool,
}

impl GroupHost {
    pub fn new(
        data_dir: PathBuf,
        node_id: NodeId,
        settings: RaftSettings,
        links: Arc<PeerLinks>,
        http: NodeClient,
    ) -> Arc<GroupHost> {
        let groups = GroupRegistry::new(node_id);
        crate::raft::quiesce::spawn(&groups, links.clone(), &settings);
        Arc::new(GroupHost {
            data_dir,
            node_id,
            settings,
            links,
            http,
            groups,
            services: Services::new(),
            changing: tokio::sync::Mutex::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The service of group `id` if it runs here.
    pub fn service(&self, id: GroupId) -> Option<Arc<Service>> {
        self.services.get(id)
    }

    /// Starts group `id` (its storage is created if new); the running one if it already runs.
    pub async fn start(&self, id: GroupId) -> Result<Arc<Service>, GroupError> {
        let _changing = self.changing.lock().await;
        if let Some(service) = self.services.get(id) {
            return Ok(service);
        }
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(GroupError::Start {
                group: id,
                message: "the node is shutting down".into(),
            });
        }
        if self.groups.all().len() >= GROUPS_PER_NODE_MAX {
            return Err(GroupError::Start {
                group: id,
                message: format!("this node already hosts {GROUPS_PER_NODE_MAX} groups, its limit"),
            });
        }
        let group = RaftGroup::start(
            &self.data_dir,
            id,
            self.node_id,
            &self.settings,
            self.links.clone(),
        )
        .await?;
        let service = Service::new(group.clone(), self.http.clone());
        self.groups.insert(group);
        self.services.insert(service.clone());
        Ok(service)
    }

    /// Stops group `id` here: Raft first, then the database (closed cleanly, so a later start
    /// trusts it); with `delete`, its directory is removed too (a dropped database's group).
    pub async fn stop(&self, id: GroupId, delete: bool) {
        let _changing = self.changing.lock().await;
        self.services.remove(id);
        let Some(group) = self.groups.remove(id) else {
            if delete {
                remove_dir(&self.group_dir(id));
            }
            return;
        };
        stop_group(&group).await;
        if delete {
            remove_dir(&group.dir);
            tracing::info!(group = id, "removed the replica of a dropped database");
        }
    }

    /// Stops every group (node shutdown).
    pub async fn stop_all(&self) {
        let _changing = self.changing.lock().await;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        for group in self.groups.all() {
            self.services.remove(group.id);
            self.groups.remove(group.id);
            stop_group(&group).await;
        }
    }

    /// The groups with a directory under `<data-dir>/groups/`, in id order.
    pub fn groups_on_disk(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = std::fs::read_dir(self.data_dir.join("groups"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    fn group_dir(&self, id: GroupId) -> PathBuf {
        self.data_dir.join("groups").join(id.to_string())
    }
}

async fn stop_group(group: &Arc<RaftGroup>) {
    // Out of quiescence first, so the node's count of quiesced groups stays true.
    group.wake("the replica stops");
    if let Err(error) = group.raft.shutdown().await {
        tracing::warn!(group = group.id, %error, "Raft shutdown");
    }
    // Only after Raft stopped applying: the clean-shutdown marker lets the next start trust
    // the database instead of rebuilding it.
    let database = group.database.clone();
    match tokio::task::spawn_blocking(move || database.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(group = group.id, %error, "closing the database"),
        Err(error) => tracing::warn!(group = group.id, %error, "closing the database"),
    }
}

fn remove_dir(dir: &std::path::Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "could not remove a dropped group's files")
        }
    }
}
