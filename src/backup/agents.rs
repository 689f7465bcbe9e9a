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

    /// An agent for one backup of `service`'s group into `folder`, running nothing in the
    /// background (no archiver, no schedule): for a group started here before
    /// [`BackupAgents::follow`] gave it its agent.
    pub fn for_one_backup(&self, folder: &str, service: Arc<Service>) -> Arc<BackupAgent> {
        let mut config = self.config.for_database(folder);
        config.schedule = None;
        config.verify_schedule = None;
        config.archive_log = false;
        BackupAgent::start(config, service)
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
    /// or whose database was renamed (its next backups go to the new name's folder). A
    /// sharded database's groups take no scheduled backups of their own: the node holding its
    /// first group runs the schedule, taking cuts of every group while it leads that group.
    fn sync(self: &Arc<Self>, databases: &Arc<Databases>) {
        let view = databases.view();
        let mut wanted: HashMap<GroupId, (String, Arc<Service>, bool)> = HashMap::new();
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
                wanted.insert(id, (name, service, entry.sharded()));
            }
        }
        let mut started_cut_schedules = Vec::new();
        {
            let mut agents = self.lock();
            agents.retain(|id, (name, _)| wanted.get(id).is_some_and(|(now, ..)| now == name));
            for (id, (name, service, sharded)) in wanted {
                agents.entry(id).or_insert_with(|| {
                    tracing::debug!(database = %name, group = id, "backup agent started");
                    let mut config = self.config.for_database(&name);
                    if sharded {
                        config.schedule = None;
                    }
                    let agent = BackupAgent::start(config, service);
                    if sharded && !name.contains('#') {
                        started_cut_schedules.push((id, Arc::downgrade(&agent)));
                    }
                    (name, agent)
                });
            }
        }
        if let Some(cron) = &self.config.schedule {
            for (group, agent) in started_cut_schedules {
                self.spawn_cut_schedule(cron.clone(), group, agent, databases.clone());
            }
        }
    }

    /// Takes a cut of the sharded database whose first group is `group` at every occurrence
    /// of `cron` while this node leads that group, then applies retention to its cuts and
    /// backups; ends with the group's agent here.
    fn spawn_cut_schedule(
        self: &Arc<Self>,
        cron: croner::Cron,
        group: GroupId,
        agent: std::sync::Weak<BackupAgent>,
        databases: Arc<Databases>,
    ) {
        let agents = Arc::downgrade(self);
        let jitter = self.config.jitter;
        tokio::spawn(async move {
            let alive = || agent.strong_count() > 0;
            let leading = || agent.upgrade().is_some_and(|agent| agent.leads());
            let run = || {
                let agents = agents.upgrade();
                let databases = databases.clone();
                async move {
                    let Some(agents) = agents else { return };
                    let Some(entry) = databases.view().by_group(group).cloned() else {
                        return;
                    };
                    let http = databases.peers(group).http();
                    match crate::backup::cut::take(&databases, &agents, &http, &entry).await {
                        Ok(cut) => {
                            tracing::info!(database = %entry.name, cut = %cut.cut_id, "scheduled cut taken")
                        }
                        Err(error) => {
                            tracing::error!(database = %entry.name, %error, "scheduled cut failed")
                        }
                    }
                    if let Err(error) = crate::backup::cut::prune(&agents, &entry).await {
                        tracing::warn!(database = %entry.name, %error, "pruning cuts failed");
                    }
                }
            };
            crate::backup::schedule::run_schedule("cut", cron, jitter, alive, leading, run).await;
        });
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
