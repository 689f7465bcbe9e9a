//! Every database's backup agent on this node: one per group replica it runs (so each
//! database's leader runs its schedules and archives its log, and scheduled backups cover every
//! database), kept in step with the groups the node hosts and the databases' names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backup::BackupConfig;
use crate::backup::agent::BackupAgent;
use crate::catalog::databases::Databases;
use crate::raft::types::{CATALOG_GROUP, DEFAULT_DATA_GROUP, GroupId};
use crate::service::Service;

/// How often the agents are matched against the groups running here.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

pub struct BackupAgents {
    config: BackupConfig,
    /// The default database's agent, started with the node.
    default: Arc<BackupAgent>,
    /// The other databases' agents, by group, with the name they back up under.
    others: Mutex<HashMap<GroupId, (String, Arc<BackupAgent>)>>,
}

impl BackupAgents {
    /// Starts the default database's agent; [`BackupAgents::follow`] adds the others.
    pub fn start(config: BackupConfig, default_service: Arc<Service>) -> Arc<BackupAgents> {
        Arc::new(BackupAgents {
            default: BackupAgent::start(config.clone(), default_service),
            config,
            others: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// The default database's agent.
    pub fn default_agent(&self) -> &Arc<BackupAgent> {
        &self.default
    }

    /// The agent of group `group` when it runs on this node.
    pub fn hosted(&self, group: GroupId) -> Option<Arc<BackupAgent>> {
        if group == DEFAULT_DATA_GROUP {
            return Some(self.default.clone());
        }
        self.lock().get(&group).map(|(_, agent)| agent.clone())
    }

    /// The agent for database `name` (group `group`): the running one when the group runs
    /// here, else one for its targets only.
    pub fn for_database(&self, name: &str, group: GroupId) -> Arc<BackupAgent> {
        if let Some(agent) = self.hosted(group) {
            return agent;
        }
        BackupAgent::for_targets(
            self.config.for_database(name),
            self.default.scratch_dir().to_path_buf(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, (String, Arc<BackupAgent>)>> {
        self.others.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts agents for databases whose groups run here and stops those whose group stopped
    /// or whose database was renamed (its next backups go to the new name's folder).
    fn sync(&self, databases: &Databases) {
        let view = databases.view();
        let mut wanted: HashMap<GroupId, (String, Arc<Service>)> = HashMap::new();
        for service in databases.host().services.all() {
            let id = service.group.id;
            if id == CATALOG_GROUP || id == DEFAULT_DATA_GROUP {
                continue;
            }
            if let Some(entry) = view.by_group(id) {
                // A sharded database's other groups each keep their own folder,
                // `databases/<name>#<shard>/` (`#` is in no database name).
                let name = match entry.shard {
                    0 => entry.name.clone(),
                    shard => format!("{}#{shard}", entry.name),
                };
                wanted.insert(id, (name, service));
            }
        }
        let mut agents = self.lock();
        agents.retain(|id, (name, _)| wanted.get(id).is_some_and(|(now, _)| now == name));
        for (id, (name, service)) in wanted {
            agents.entry(id).or_insert_with(|| {
                tracing::debug!(database = %name, group = id, "backup agent started");
                let agent = BackupAgent::start(self.config.for_database(&name), service);
                (name, agent)
            });
        }
    }

    /// Keeps the agents in step with the groups this node runs until the node stops.
    pub fn follow(self: &Arc<Self>, databases: Arc<Databases>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(agents) = weak.upgrade() else { return };
                agents.sync(&databases);
                drop(agents);
                tokio::time::sleep(SYNC_INTERVAL).await;
            }
        });
    }

    /// Where uploads are staged.
    pub fn scratch_dir(&self) -> PathBuf {
        self.default.scratch_dir().to_path_buf()
    }
}
