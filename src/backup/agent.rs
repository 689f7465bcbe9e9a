//! A database's backup agent on this node: takes backups of its group on request or on
//! schedule (the leader runs the schedules; with `--backup-from-replica` it asks a healthy
//! replica to take the image), verifies and prunes them, archives the log, and restores images
//! for `/db/load`. A node without a replica of the database gets an agent for its targets only
//! (listing, verifying, pruning, restoring images).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backup::catalog::{self, CatalogEntry};
use crate::backup::create::{Created, Origin, create_backup};
use crate::backup::fetch::locate;
use crate::backup::key::BackupKey;
use crate::backup::manifest::{Manifest, VerifyRecord};
use crate::backup::restore::{RestorePoint, Restored, restore_image};
use crate::backup::{BackupConfig, BackupError, archive, schedule};
use crate::service::Service;

/// The Raft-port endpoint through which the leader asks a replica to take a backup.
pub fn internal_router(agents: Arc<crate::backup::agents::BackupAgents>) -> axum::Router {
    axum::Router::new()
        .route(
            "/internal/v1/{group}/backup",
            axum::routing::post(backup_here),
        )
        .route(
            "/internal/v1/{group}/load",
            axum::routing::post(crate::backup::group_load::load_here),
        )
        .with_state(agents)
}

/// What a node asks of another's backup of a group.
#[derive(Debug, Default, serde::Deserialize)]
struct BackupHereQuery {
    /// For a consistent cut: the log index of the group's fence (see
    /// [`BackupAgent::create_for_cut`]).
    fenced_at: Option<u64>,
}

/// Takes a backup of group `group` on this node; answers its report (JSON).
async fn backup_here(
    axum::extract::State(agents): axum::extract::State<Arc<crate::backup::agents::BackupAgents>>,
    axum::extract::Path(group): axum::extract::Path<crate::raft::types::GroupId>,
    axum::extract::Query(query): axum::extract::Query<BackupHereQuery>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let Some(agent) = agents.hosted(group) else {
        return (
            StatusCode::NOT_FOUND,
            format!("group {group} does not run on this node"),
        )
            .into_response();
    };
    let created = match query.fenced_at {
        Some(fence) => agent.create_for_cut(fence).await,
        None => agent.create().await,
    };
    match created {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// How long a backup for a cut may wait for a copy free of prepared transactions, and how
/// often it copies again meanwhile.
pub const CUT_IMAGE_WAIT: Duration = Duration::from_secs(30);
const CUT_IMAGE_RETRY: Duration = Duration::from_millis(25);

/// How long a replica may take to answer a scheduled backup request.
const REPLICA_BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// A backup's result as the API reports it.
#[derive(Debug, Serialize)]
pub struct CreatedReport {
    pub backup_id: String,
    pub log_index: u64,
    pub created_at: String,
    pub node_id: u64,
    pub taken_on: String,
    pub image_bytes: u64,
    pub stored_bytes: u64,
    pub chunks: usize,
    pub duration_ms: u64,
    pub targets: Vec<String>,
    pub failed_targets: Vec<String>,
}

impl CreatedReport {
    fn new(created: &Created, duration: Duration) -> Self {
        let manifest = &created.manifest;
        CreatedReport {
            backup_id: manifest.backup_id.clone(),
            log_index: manifest.log_index,
            created_at: manifest.created_at.clone(),
            node_id: manifest.node_id,
            taken_on: manifest.taken_on.clone(),
            image_bytes: manifest.image.bytes,
            stored_bytes: manifest.stored_bytes,
            chunks: manifest.chunks.len(),
            duration_ms: duration.as_millis() as u64,
            targets: created.written_to.clone(),
            failed_targets: created
                .failed
                .iter()
                .map(|(target, error)| format!("{target}: {error}"))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ScheduledJob {
    Backup,
    Verify,
}

pub struct BackupAgent {
    config: BackupConfig,
    /// The database's group on this node; `None` on a node without a replica of it.
    service: Option<Arc<Service>>,
    scratch_dir: PathBuf,
    /// Dropped with the agent: its log archiver stops (the group may run on under a new agent,
    /// after a rename).
    lifetime: Arc<()>,
    /// One backup, verification or restore at a time on a node: each reads or writes a whole
    /// image.
    exclusive: tokio::sync::Mutex<()>,
    verifying: Mutex<BTreeSet<String>>,
    /// The key, once derived for the cluster (a passphrase's derivation is deliberately slow).
    key: Mutex<Option<(String, Option<BackupKey>)>>,
}

impl BackupAgent {
    /// Creates the agent of a group running here and starts its schedules and log archiver
    /// (when configured).
    pub fn start(config: BackupConfig, service: Arc<Service>) -> Arc<BackupAgent> {
        let scratch_dir = service.group.dir.join("backup-scratch");
        // Leftovers of a backup or restore interrupted by a crash.
        let _ = std::fs::remove_dir_all(&scratch_dir);
        let group = Arc::downgrade(&service.group);
        let agent = Arc::new(BackupAgent {
            config: config.clone(),
            service: Some(service),
            scratch_dir,
            lifetime: Arc::new(()),
            exclusive: tokio::sync::Mutex::new(()),
            verifying: Mutex::new(BTreeSet::new()),
            key: Mutex::new(None),
        });
        if !config.enabled() {
            return agent;
        }
        if config.archive_log {
            tokio::spawn(archive::run_archiver(
                group,
                Arc::downgrade(&agent.lifetime),
                config.clone(),
            ));
        }
        if let Some(cron) = config.schedule.clone() {
            agent.spawn_schedule(ScheduledJob::Backup, cron);
        }
        if let Some(cron) = config.verify_schedule.clone() {
            agent.spawn_schedule(ScheduledJob::Verify, cron);
        }
        agent
    }

    fn spawn_schedule(self: &Arc<Self>, job: ScheduledJob, cron: croner::Cron) {
        let weak = Arc::downgrade(self);
        let jitter = self.config.jitter;
        tokio::spawn(async move {
            let alive = || weak.strong_count() > 0;
            let leading = || weak.upgrade().is_some_and(|agent| agent.leads());
            let run = || {
                let agent = weak.upgrade();
                async move {
                    match (agent, job) {
                        (Some(agent), ScheduledJob::Backup) => agent.scheduled_backup().await,
                        (Some(agent), ScheduledJob::Verify) => agent.scheduled_verify().await,
                        (None, _) => {}
                    }
                }
            };
            let name = match job {
                ScheduledJob::Backup => "backup",
                ScheduledJob::Verify => "verify",
            };
            schedule::run_schedule(name, cron, jitter, alive, leading, run).await;
        });
    }

    /// An agent for the targets of a database without a replica on this node: it lists,
    /// shows, verifies and prunes backups and restores images, but takes none.
    pub fn for_targets(config: BackupConfig, scratch_dir: PathBuf) -> Arc<BackupAgent> {
        Arc::new(BackupAgent {
            config,
            service: None,
            scratch_dir,
            lifetime: Arc::new(()),
            exclusive: tokio::sync::Mutex::new(()),
            verifying: Mutex::new(BTreeSet::new()),
            key: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// Whether this node leads the group this agent backs up (scheduled jobs run there).
    pub fn leads(&self) -> bool {
        self.service
            .as_ref()
            .is_some_and(|service| service.group.raft.is_leader())
    }

    /// The group's service when its replica runs on this node.
    pub fn group_service(&self) -> Option<Arc<Service>> {
        self.service.clone()
    }

    fn service(&self) -> Result<&Arc<Service>, BackupError> {
        self.service.as_ref().ok_or_else(|| {
            BackupError::Config(
                "the database has no replica on this node: a backup is taken by a node holding one"
                    .into(),
            )
        })
    }

    fn require_targets(&self) -> Result<(), BackupError> {
        if self.config.enabled() {
            Ok(())
        } else {
            Err(BackupError::Config(
                "no backup target is configured on this node (--backup-target)".into(),
            ))
        }
    }

    /// The backup key for this cluster (derived once).
    fn key(&self, cluster_id: &str) -> Result<Option<BackupKey>, BackupError> {
        let mut cached = self
            .key
            .lock()
            .map_err(|_| BackupError::Internal("key cache poisoned".into()))?;
        if let Some((id, key)) = cached.as_ref()
            && id == cluster_id
        {
            return Ok(key.clone());
        }
        let key = self
            .config
            .key
            .resolve(cluster_id)
            .map_err(BackupError::Config)?;
        *cached = Some((cluster_id.to_string(), key.clone()));
        Ok(key)
    }

    /// Takes a backup on this node now.
    pub async fn create(&self) -> Result<CreatedReport, BackupError> {
        self.create_image_at(None).await
    }

    /// Takes a backup for a consistent cut (`backup::cut`): its image is at or after log
    /// index `fenced_at` (the group's fence) and holds no prepared cross-shard transaction —
    /// one prepared before the fence finishes shortly, so the copy is taken again until it
    /// is so, for up to [`CUT_IMAGE_WAIT`].
    pub async fn create_for_cut(&self, fenced_at: u64) -> Result<CreatedReport, BackupError> {
        self.create_image_at(Some(fenced_at)).await
    }

    async fn create_image_at(&self, fenced_at: Option<u64>) -> Result<CreatedReport, BackupError> {
        self.require_targets()?;
        let _exclusive = self.exclusive.lock().await;
        let started = Instant::now();
        let group = &self.service()?.group;
        let cluster_id = group
            .database
            .applied_state()?
            .cluster_id
            .unwrap_or_default();
        let key = self.key(&cluster_id)?;
        let role = {
            let metrics = group.metrics();
            if metrics.current_leader == Some(group.node_id) {
                "leader"
            } else if metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == group.node_id)
            {
                "follower"
            } else {
                "learner"
            }
        };
        let metrics = crate::metrics::metrics();
        // The live database holds the user's data only (`db::state_file`); a backup is an
        // image, with the state and users inside it, so it is read from a consistent copy.
        // (Reading the live pages and storing the state as an object of its own would save
        // this copy; the backup format would change with it.)
        let staging = group.database.path().with_extension("backup-image");
        let waiting_until = Instant::now() + CUT_IMAGE_WAIT;
        loop {
            let database = group.database.clone();
            let image = staging.clone();
            let copied = tokio::task::spawn_blocking(move || {
                let state = database.export_image(&image)?;
                let prepared = crate::db::twopc::image_holds_prepared(&image)
                    .map_err(|e| crate::db::database::sqlite_error(&image, e))?;
                Ok::<_, crate::db::database::DbError>((state, prepared))
            })
            .await
            .map_err(|e| BackupError::Internal(format!("copying the database: {e}")))??;
            let Some(fence) = fenced_at else { break };
            let (state, prepared) = copied;
            let applied = state.last_applied.map_or(0, |id| id.index);
            if applied >= fence && !prepared {
                break;
            }
            if Instant::now() >= waiting_until {
                let _ = std::fs::remove_file(&staging);
                return Err(BackupError::Internal(format!(
                    "group {}: no copy at or after its fence (log index {fence}; applied \
                     {applied}) free of prepared cross-shard transactions within {:?}",
                    group.id, CUT_IMAGE_WAIT
                )));
            }
            tokio::time::sleep(CUT_IMAGE_RETRY).await;
        }
        let outcome = create_backup(
            staging.clone(),
            &self.config.targets,
            key,
            self.config.compression_level,
            self.config.max_bytes_per_s,
            Origin {
                node_id: group.node_id,
                role: role.to_string(),
                group: group.id,
            },
        )
        .await;
        for file in [
            staging.clone(),
            crate::db::state_file::sidecar(&staging, "-journal"),
        ] {
            let _ = std::fs::remove_file(file);
        }
        match &outcome {
            Ok(created) => {
                tracing::info!(target: "audit", event = "backup_created", backup = %created.manifest.backup_id, log_index = created.manifest.log_index, node = group.node_id);
                metrics.backups.inc();
                metrics
                    .backup_duration
                    .observe(started.elapsed().as_secs_f64());
                metrics
                    .backup_last_success
                    .set(crate::backup::now_ms() / 1000);
                metrics.backup_last_ok.set(1);
            }
            Err(error) => {
                tracing::error!(%error, "backup failed");
                metrics.backup_failures.inc();
                metrics.backup_last_ok.set(0);
            }
        }
        outcome.map(|created| CreatedReport::new(&created, started.elapsed()))
    }

    /// A scheduled backup: skipped when nothing was applied since the newest backup; taken on
    /// a healthy replica when so configured, else here.
    async fn scheduled_backup(self: Arc<Self>) {
        let Ok(service) = self.service() else { return };
        let applied = service.group.metrics().last_applied.map_or(0, |l| l.index);
        let cluster_id = service
            .group
            .database
            .applied_state()
            .ok()
            .and_then(|s| s.cluster_id)
            .unwrap_or_default();
        // Only this cluster's good backups count (a target may hold a restored cluster's
        // predecessor, whose log indexes mean nothing here).
        if let Some(first) = self.config.targets.first()
            && let Ok(backups) = catalog::list_backups(first).await
            && backups
                .iter()
                .rev()
                .find(|b| b.good() && b.cluster_id == cluster_id)
                .is_some_and(|newest| newest.log_index >= applied)
        {
            tracing::info!(
                applied,
                "scheduled backup skipped: nothing changed since the last one"
            );
            return;
        }
        if self.config.from_replica && self.backup_on_a_replica().await.is_some() {
            return;
        }
        if let Ok(report) = self.create().await {
            tracing::info!(backup = %report.backup_id, "scheduled backup taken");
        }
        for target in &self.config.targets {
            let verifying = self.verifying_now();
            if let Err(error) = catalog::prune_target(target, &verifying).await {
                tracing::warn!(target = target.target.name(), %error, "pruning failed");
            }
        }
    }

    /// Takes a backup on a replica when one answers (keeping the work off this node), else
    /// here; the report of whichever took it.
    pub async fn create_on_a_replica(&self) -> Result<serde_json::Value, BackupError> {
        self.require_targets()?;
        if let Some(report) = self.backup_on_a_replica().await {
            return Ok(report);
        }
        let report = self.create().await?;
        serde_json::to_value(report).map_err(|e| BackupError::Internal(e.to_string()))
    }

    /// Asks replicas (read-only learners first, then followers) in turn to take the backup;
    /// the report of the one that did.
    async fn backup_on_a_replica(&self) -> Option<serde_json::Value> {
        let service = self.service().ok()?;
        let group = &service.group;
        let metrics = group.metrics();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let mut replicas: Vec<(bool, u64, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != group.node_id)
            .map(|(id, node)| (voters.contains(id), *id, node.raft_addr.clone()))
            .collect();
        replicas.sort();
        let client = service.peers.http();
        for (_, id, raft_addr) in replicas {
            // Node to node, on the Raft port: no user's credentials are needed (with TLS,
            // only nodes of the cluster CA reach it).
            let url = format!(
                "{}/internal/v1/{}/backup",
                crate::net::raft_url(&raft_addr),
                group.id
            );
            match client
                .post(&url)
                .timeout(REPLICA_BACKUP_TIMEOUT)
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(replica = id, "backup taken on a replica");
                    return Some(response.json().await.unwrap_or_default());
                }
                Ok(response) => {
                    tracing::warn!(replica = id, status = %response.status(), "replica could not take the backup")
                }
                Err(error) => {
                    tracing::warn!(replica = id, %error, "replica unreachable for backup")
                }
            }
        }
        tracing::warn!("no replica took the backup; taking it here");
        None
    }

    fn verifying_now(&self) -> BTreeSet<String> {
        self.verifying.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// A scheduled verification: the newest backup on each target.
    async fn scheduled_verify(self: Arc<Self>) {
        for target in &self.config.targets {
            let newest = match catalog::list_backups(target).await {
                Ok(backups) => backups.last().map(|b| b.backup_id.clone()),
                Err(error) => {
                    tracing::error!(target = target.target.name(), %error, "cannot list backups to verify");
                    crate::metrics::metrics().record_backup_verification(false);
                    continue;
                }
            };
            if let Some(id) = newest
                && let Err(error) = self.verify_on(target, &id).await
            {
                // A manifest that cannot be read fails verification as surely as a bad chunk.
                tracing::error!(backup = %id, target = target.target.name(), %error, "backup verification FAILED");
                crate::metrics::metrics().record_backup_verification(false);
            }
        }
    }

    async fn verify_on(
        &self,
        target: &crate::backup::target::ConfiguredTarget,
        backup_id: &str,
    ) -> Result<VerifyRecord, BackupError> {
        let _exclusive = self.exclusive.lock().await;
        if let Ok(mut verifying) = self.verifying.lock() {
            verifying.insert(backup_id.to_string());
        }
        let outcome =
            catalog::verify_backup(target, backup_id, &self.config.key, &self.scratch_dir).await;
        if let Ok(mut verifying) = self.verifying.lock() {
            verifying.remove(backup_id);
        }
        outcome
    }

    /// Verifies `backup_id` on every target that holds it.
    pub async fn verify(&self, backup_id: &str) -> Result<Vec<VerifyRecord>, BackupError> {
        self.require_targets()?;
        let mut records = Vec::new();
        for target in &self.config.targets {
            match self.verify_on(target, backup_id).await {
                Ok(record) => records.push(record),
                Err(BackupError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        if records.is_empty() {
            return Err(BackupError::NotFound(backup_id.to_string()));
        }
        Ok(records)
    }

    /// Every complete backup on every target, oldest first.
    pub async fn list(&self) -> Result<Vec<CatalogEntry>, BackupError> {
        self.require_targets()?;
        let mut all = Vec::new();
        for target in &self.config.targets {
            all.extend(catalog::list_backups(target).await?);
        }
        all.sort_by(|a, b| {
            a.created_at_ms
                .cmp(&b.created_at_ms)
                .then(a.target.cmp(&b.target))
        });
        Ok(all)
    }

    /// The manifest of `backup_id` (from the first target holding it).
    pub async fn show(&self, backup_id: &str) -> Result<Manifest, BackupError> {
        self.require_targets()?;
        Ok(locate(&self.config.targets, backup_id).await?.1)
    }

    /// Applies every target's retention now; returns what was removed per target.
    pub async fn prune(&self) -> Result<Vec<(String, Vec<String>)>, BackupError> {
        self.require_targets()?;
        let mut removed = Vec::new();
        for target in &self.config.targets {
            let verifying = self.verifying_now();
            let ids = catalog::prune_target(target, &verifying).await?;
            if !ids.is_empty() {
                tracing::info!(target: "audit", event = "backups_pruned", target = target.target.name(), backups = ?ids);
            }
            removed.push((target.target.name().to_string(), ids));
        }
        Ok(removed)
    }

    /// Builds a restored image in the scratch directory for `/db/load`.
    pub async fn restore_image(
        &self,
        backup_id: Option<&str>,
        point: Option<RestorePoint>,
    ) -> Result<(tempfile::TempPath, Restored), BackupError> {
        self.require_targets()?;
        let _exclusive = self.exclusive.lock().await;
        std::fs::create_dir_all(&self.scratch_dir)
            .map_err(|e| BackupError::Internal(format!("{}: {e}", self.scratch_dir.display())))?;
        let image = tempfile::Builder::new()
            .prefix("restore-")
            .tempfile_in(&self.scratch_dir)
            .map_err(|e| BackupError::Internal(e.to_string()))?
            .into_temp_path();
        let restored = restore_image(
            &self.config.targets,
            &self.config.key,
            backup_id,
            point,
            &image,
            &|_| {},
        )
        .await?;
        Ok((image, restored))
    }

    /// Where uploads and images being loaded are staged.
    pub fn scratch_dir(&self) -> &std::path::Path {
        &self.scratch_dir
    }
}
