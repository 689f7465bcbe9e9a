//! Consistent backups of sharded databases. A *cut* is one backup of each shard group, taken
//! while every group is fenced (`ShardStep::Fence`): a fence holds back the prepares of new
//! cross-shard transactions, and each group's copy is taken at or after its fence once no
//! transaction prepared before the fence is still held there. So every cross-shard
//! transaction is in all of the copies or in none — a restored database never shows a
//! transfer half done. Single-group writes go on throughout; cross-shard ones wait (their
//! coordinator starts them again) only while the copies are being taken.
//!
//! The cut's manifest is written last, beside the first group's backups (`cuts/<id>.json` in
//! `databases/<name>/` of each target): a cut without one was not completed. Restoring a cut
//! checks every group's backup first, then loads each group's image under a fence again, so
//! no cross-shard transaction lands on some restored groups and not on others.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::backup::agent::BackupAgent;
use crate::backup::agents::BackupAgents;
use crate::backup::catalog::prune_target;
use crate::backup::group_load::{GROUP_LOAD_TIMEOUT, load_into_group, post_image};
use crate::backup::manifest::{new_backup_id, valid_backup_id};
use crate::backup::restore::Restored;
use crate::backup::retention::{Candidate, to_prune};
use crate::backup::target::TargetError;
use crate::backup::{BackupError, now_ms, rfc3339_ms};
use crate::catalog::databases::Databases;
use crate::catalog::view::{DatabaseEntry, positional};
use crate::raft::types::GroupId;
use crate::service::WriteConcern;
use crate::types::shard::{ShardStep, StepOutcome, fence_index_of};
use crate::types::value::SqlValue;

/// The version of the cut manifest's format.
pub const CUT_FORMAT_VERSION: u32 = 1;

/// A fence lapses by itself this long after it was set (by the entries' clock), so a node
/// that dies while taking a cut cannot hold cross-shard transactions back for longer. A cut
/// whose copies take longer fails (its fences lapsed) and says so.
pub const FENCE_LIFETIME: Duration = Duration::from_secs(120);

/// How long setting or lifting one group's fence may take.
const FENCE_STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Most bytes a cut manifest may have when read back.
const CUT_MANIFEST_BYTES_MAX: u64 = 1024 * 1024;

/// What a cut holds: one backup per shard group, all taken under one fence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutManifest {
    pub format_version: u32,
    pub cut_id: String,
    pub database: String,
    pub created_at: String,
    /// How long the groups were fenced (cross-shard transactions held back), milliseconds.
    pub fenced_ms: u64,
    /// One per group, in shard order.
    pub members: Vec<CutMember>,
}

/// One group's backup in a cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutMember {
    pub shard: u32,
    pub group: GroupId,
    pub backup_id: String,
    /// The log index the group's copy holds; at or after `fenced_at`.
    pub log_index: u64,
    /// The log index of the group's fence.
    pub fenced_at: u64,
}

impl CutMember {
    /// The error of a restore that failed on this member's copy before changing anything.
    pub fn nothing_restored(&self, error: BackupError) -> BackupError {
        BackupError::Internal(format!(
            "shard {} (backup {}): {error}; nothing was restored",
            self.shard, self.backup_id
        ))
    }
}

/// What restoring a cut did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredCut {
    pub cut_id: String,
    pub database: String,
    /// Each group's restore, in shard order.
    pub groups: Vec<Restored>,
    /// The load entry's log index in each group.
    pub load_indexes: Vec<u64>,
}

/// The folder (database name) of shard `shard`'s backups: `name`, then `name#1`, `name#2`…
pub fn shard_folder(database: &str, shard: u32) -> String {
    match shard {
        0 => database.to_string(),
        shard => format!("{database}#{shard}"),
    }
}

fn manifest_key(cut_id: &str) -> String {
    format!("cuts/{cut_id}.json")
}

/// Takes a cut of sharded database `database`: fences every group, backs each up under its
/// fence (here when it runs here, else on a node holding it, through `http`), lifts the
/// fences, and writes the manifest.
pub async fn take(
    databases: &Databases,
    agents: &BackupAgents,
    http: &reqwest::Client,
    database: &DatabaseEntry,
) -> Result<CutManifest, BackupError> {
    let config = agents.config().for_database(&database.name);
    if !config.enabled() {
        return Err(BackupError::Config(
            "no backup target is configured on this node (--backup-target)".into(),
        ));
    }
    if database.moves_pending > 0 {
        return Err(resharded(database));
    }
    let cut: u64 = rand::random();
    let started = Instant::now();
    let fences = fence_all(databases, &database.groups, cut).await;
    let fenced_at = match fences {
        Ok(indexes) => indexes,
        Err(error) => {
            unfence_all(databases, &database.groups, cut).await;
            return Err(error);
        }
    };
    let copies = join_all(database.groups.iter().zip(&fenced_at).enumerate().map(
        |(shard, (group, fence))| {
            let folder = shard_folder(&database.name, shard as u32);
            async move { back_up_group(databases, agents, http, &folder, *group, *fence).await }
        },
    ))
    .await;
    let lifted = unfence_all(databases, &database.groups, cut).await;
    let fenced_ms = started.elapsed().as_millis() as u64;
    let mut members = Vec::with_capacity(copies.len());
    for (shard, ((group, fence), copy)) in database
        .groups
        .iter()
        .zip(&fenced_at)
        .zip(copies)
        .enumerate()
    {
        let (backup_id, log_index) = copy?;
        members.push(CutMember {
            shard: shard as u32,
            group: *group,
            backup_id,
            log_index,
            fenced_at: *fence,
        });
    }
    if let Some((group, outcome)) = lifted
        .iter()
        .find(|(_, outcome)| !matches!(outcome, Ok(StepOutcome::Unfenced)))
    {
        return Err(BackupError::Internal(format!(
            "the cut's fence on group {group} could not be confirmed to have held until its \
             copy was taken ({}): the groups' backups were kept, but not as one consistent \
             cut; the copies took {fenced_ms} ms (a fence lapses after {FENCE_LIFETIME:?})",
            match outcome {
                Ok(outcome) => outcome.as_str().to_string(),
                Err(error) => error.to_string(),
            }
        )));
    }
    // Slots that moved while the copies were taken may be in two copies, or none.
    let now = databases
        .catch_up()
        .await
        .map_err(|e| BackupError::Internal(e.to_string()))?;
    if now
        .by_group(database.group)
        .is_none_or(|entry| entry.slots != database.slots || entry.moves_pending > 0)
    {
        return Err(resharded(database));
    }
    let created_ms = now_ms();
    let manifest = CutManifest {
        format_version: CUT_FORMAT_VERSION,
        cut_id: new_backup_id(created_ms),
        database: database.name.clone(),
        created_at: rfc3339_ms(created_ms),
        fenced_ms,
        members,
    };
    write_manifest(&config.targets, &manifest).await?;
    tracing::info!(target: "audit", event = "cut_created", database = %database.name, cut = %manifest.cut_id, groups = manifest.members.len(), fenced_ms, "consistent backup of a sharded database taken");
    Ok(manifest)
}

/// A cut refused because the database's slots move (or moved while it was taken).
fn resharded(database: &DatabaseEntry) -> BackupError {
    BackupError::Config(format!(
        "database {:?} is being resharded: a cut taken while slots move could hold a range in \
         two groups or none; take it once SHOW DATABASES shows no resharding step left",
        database.name
    ))
}

/// Every complete cut of `database` on its first target, oldest first.
pub async fn list(agents: &BackupAgents, database: &str) -> Result<Vec<CutManifest>, BackupError> {
    let config = agents.config().for_database(database);
    let Some(target) = config.targets.first() else {
        return Ok(Vec::new());
    };
    cuts_on(target.target.as_ref()).await
}

/// Applies retention to sharded `database`'s backups: first to its cuts, on each target of
/// its first group's folder (a cut is kept or let go whole; its manifest is removed), then to
/// each group's backups, keeping every backup a remaining cut names (a cut never loses a
/// member to its group's own retention). What each target let go; cuts as `cut <id>`.
pub async fn prune(
    agents: &BackupAgents,
    database: &DatabaseEntry,
) -> Result<Vec<(String, Vec<String>)>, BackupError> {
    let mut removed = Vec::new();
    let mut named_by_cuts = std::collections::BTreeSet::new();
    for target in &agents.config().for_database(&database.name).targets {
        let cuts = cuts_on(target.target.as_ref()).await?;
        let candidates: Vec<Candidate> = cuts
            .iter()
            .map(|cut| Candidate {
                backup_id: cut.cut_id.clone(),
                created_at_ms: chrono::DateTime::parse_from_rfc3339(&cut.created_at)
                    .map_or(0, |at| at.timestamp_millis()),
                good: true,
                verifying: false,
            })
            .collect();
        let gone: std::collections::BTreeSet<String> = to_prune(&target.retention, &candidates)
            .into_iter()
            .collect();
        let mut let_go = Vec::new();
        for cut in cuts {
            if gone.contains(&cut.cut_id) {
                target.target.delete(&manifest_key(&cut.cut_id)).await?;
                let_go.push(format!("cut {}", cut.cut_id));
            } else {
                named_by_cuts.extend(cut.members.into_iter().map(|member| member.backup_id));
            }
        }
        removed.push((target.target.name().to_string(), let_go));
    }
    for shard in 0..database.groups.len() {
        let config = agents
            .config()
            .for_database(&shard_folder(&database.name, shard as u32));
        for target in &config.targets {
            let ids = prune_target(target, &named_by_cuts).await?;
            removed.push((target.target.name().to_string(), ids));
        }
    }
    removed.retain(|(_, ids)| !ids.is_empty());
    if !removed.is_empty() {
        tracing::info!(target: "audit", event = "backups_pruned", database = %database.name, removed = ?removed, "pruned a sharded database's cuts and backups");
    }
    Ok(removed)
}

/// Every complete cut on `target` (a folder's `cuts/`), oldest first.
async fn cuts_on(
    target: &dyn crate::backup::target::BackupTarget,
) -> Result<Vec<CutManifest>, BackupError> {
    let mut cuts = Vec::new();
    for object in target.list("cuts/").await? {
        let Some(id) = object
            .key
            .strip_prefix("cuts/")
            .and_then(|name| name.strip_suffix(".json"))
        else {
            continue;
        };
        match read_manifest(target, id).await {
            Ok(manifest) => cuts.push(manifest),
            // Removed between the listing and the read (pruned meanwhile): not there.
            Err(BackupError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    cuts.sort_by(|a, b| a.cut_id.cmp(&b.cut_id));
    Ok(cuts)
}

/// Restores cut `cut_id` into sharded database `database`: every group's image is downloaded
/// and checked first (nothing changes if one fails), then the groups are fenced, each loads
/// its image through its log, the fences are lifted, and the schema epoch moves so every
/// router reads the restored schema.
pub async fn restore(
    databases: &Databases,
    agents: &BackupAgents,
    http: &reqwest::Client,
    database: &DatabaseEntry,
    cut_id: &str,
) -> Result<RestoredCut, BackupError> {
    let manifest = find(agents, &database.name, cut_id).await?;
    if manifest.members.len() != database.groups.len() {
        return Err(member_count_mismatch(&manifest, database));
    }
    // Every image first: a missing or damaged backup stops the restore before any change.
    let mut images = Vec::with_capacity(manifest.members.len());
    for member in &manifest.members {
        let agent = BackupAgent::for_targets(
            agents
                .config()
                .for_database(&shard_folder(&database.name, member.shard)),
            agents.scratch_dir(),
        );
        let (image, restored) = agent
            .restore_image(Some(&member.backup_id), None)
            .await
            .map_err(|error| member.nothing_restored(error))?;
        images.push((image, restored));
    }
    let paths: Vec<&std::path::Path> = images.iter().map(|(image, _)| &**image).collect();
    let load_indexes = load_images(databases, agents, http, database, &paths)
        .await
        .map_err(|error| BackupError::Internal(format!("restoring cut {cut_id}: {error}")))?;
    tracing::info!(target: "audit", event = "cut_restored", database = %database.name, cut = cut_id, "sharded database restored from a cut");
    Ok(RestoredCut {
        cut_id: manifest.cut_id,
        database: database.name.clone(),
        groups: images.into_iter().map(|(_, restored)| restored).collect(),
        load_indexes,
    })
}

/// Loads `images` (one per group, in shard order, each checked) into `database`'s groups under
/// a fence, so no cross-shard transaction lands on some loaded groups and not on others; then
/// moves the schema epoch so every router reads the restored schema. Each group's load
/// entry's log index.
pub async fn load_images(
    databases: &Databases,
    agents: &BackupAgents,
    http: &reqwest::Client,
    database: &DatabaseEntry,
    images: &[&std::path::Path],
) -> Result<Vec<u64>, BackupError> {
    let fence: u64 = rand::random();
    if let Err(error) = fence_all(databases, &database.groups, fence).await {
        unfence_all(databases, &database.groups, fence).await;
        return Err(error);
    }
    let loads = join_all(
        database
            .groups
            .iter()
            .zip(images)
            .map(|(group, image)| load_group(databases, agents, http, *group, image)),
    )
    .await;
    unfence_all(databases, &database.groups, fence).await;
    let mut load_indexes = Vec::with_capacity(loads.len());
    let mut failures = Vec::new();
    for (shard, load) in loads.into_iter().enumerate() {
        match load {
            Ok(index) => load_indexes.push(index),
            Err(error) => failures.push(format!("shard {shard}: {error}")),
        }
    }
    // The schema may differ from the one the routers hold: the epoch moves on either way.
    bump_schema_epoch(databases, database.group).await?;
    if !failures.is_empty() {
        return Err(BackupError::Internal(format!(
            "{} of {} groups were not loaded ({}); the others hold the restored data — \
             restore again",
            failures.len(),
            database.groups.len(),
            failures.join("; ")
        )));
    }
    Ok(load_indexes)
}

/// The error for a cut restored into a database of another shard count.
pub fn member_count_mismatch(cut: &CutManifest, database: &DatabaseEntry) -> BackupError {
    BackupError::Invalid {
        object: manifest_key(&cut.cut_id),
        check: format!(
            "the cut holds {} shard groups and database {:?} has {}: a cut restores into a \
             database of as many shards",
            cut.members.len(),
            database.name,
            database.groups.len()
        ),
    }
}

/// Cut `cut_id` of `database`, from the first of its targets holding it.
pub async fn find(
    agents: &BackupAgents,
    database: &str,
    cut_id: &str,
) -> Result<CutManifest, BackupError> {
    find_manifest(&agents.config().for_database(database).targets, cut_id).await
}

/// Sets fence `cut` on every group; each fence's log index, in order.
async fn fence_all(
    databases: &Databases,
    groups: &[GroupId],
    cut: u64,
) -> Result<Vec<u64>, BackupError> {
    let until_ms = now_ms() + FENCE_LIFETIME.as_millis() as i64;
    let step = ShardStep::Fence { cut, until_ms };
    let fenced = join_all(groups.iter().map(|group| {
        let step = &step;
        async move {
            let results = databases
                .resolve_group(*group)?
                .apply_step(step, WriteConcern::Majority, FENCE_STEP_TIMEOUT)
                .await?;
            let outcome = results.first().and_then(StepOutcome::of);
            match (outcome, fence_index_of(&results)) {
                (Some(StepOutcome::Fenced), Some(index)) => Ok(index),
                _ => Err(crate::service::ServiceError::Unavailable(format!(
                    "group {group} did not take the fence (it answered {})",
                    outcome.map_or("nothing", StepOutcome::as_str)
                ))),
            }
        }
    }))
    .await;
    fenced
        .into_iter()
        .zip(groups)
        .map(|(outcome, group)| {
            outcome.map_err(|error| {
                BackupError::Internal(format!("fencing group {group} for a cut: {error}"))
            })
        })
        .collect()
}

/// Lifts fence `cut` from every group (each retried until its timeout); what each answered.
async fn unfence_all(
    databases: &Databases,
    groups: &[GroupId],
    cut: u64,
) -> Vec<(GroupId, Result<StepOutcome, crate::service::ServiceError>)> {
    let step = ShardStep::Unfence { cut };
    let lifted = join_all(groups.iter().map(|group| {
        let step = &step;
        async move {
            let deadline = Instant::now() + FENCE_STEP_TIMEOUT;
            loop {
                let attempt = async {
                    let results = databases
                        .resolve_group(*group)?
                        .apply_step(step, WriteConcern::Majority, FENCE_STEP_TIMEOUT)
                        .await?;
                    results.first().and_then(StepOutcome::of).ok_or_else(|| {
                        crate::service::ServiceError::Internal(format!(
                            "group {group} answered the unfence without an outcome"
                        ))
                    })
                };
                match attempt.await {
                    Err(error) if Instant::now() < deadline => {
                        tracing::debug!(group, %error, "retrying an unfence");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    outcome => return (*group, outcome),
                }
            }
        }
    }))
    .await;
    for (group, outcome) in &lifted {
        if let Err(error) = outcome {
            tracing::warn!(group, %error, "a cut's fence was not lifted; it lapses by itself");
        }
    }
    lifted
}

/// Backs up `group` (whose backups go to `folder`) under its fence (log index
/// `fenced_at`): here when it runs here, else on a node holding it. The backup's id and log
/// index.
async fn back_up_group(
    databases: &Databases,
    agents: &BackupAgents,
    http: &reqwest::Client,
    folder: &str,
    group: GroupId,
    fenced_at: u64,
) -> Result<(String, u64), BackupError> {
    let here = agents
        .hosted(group)
        .filter(|agent| agent.group_service().is_some())
        // A group started here a moment ago, before the agents caught up with it.
        .or_else(|| {
            let service = databases.host().services.get(group)?;
            Some(agents.for_one_backup(folder, service))
        });
    if let Some(agent) = here {
        let report = agent.create_for_cut(fenced_at).await?;
        return Ok((report.backup_id, report.log_index));
    }
    on_a_replica(
        databases,
        group,
        "took its backup for the cut",
        |raft_url| async move {
            let url = format!("{raft_url}/internal/v1/{group}/backup?fenced_at={fenced_at}");
            let response = http
                .post(&url)
                .timeout(GROUP_LOAD_TIMEOUT)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let text = response.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {text}"));
            }
            let report: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("unreadable report: {e}"))?;
            match (report["backup_id"].as_str(), report["log_index"].as_u64()) {
                (Some(id), Some(index)) => Ok((id.to_string(), index)),
                _ => Err(format!("a report without its backup id: {text}")),
            }
        },
    )
    .await
}

/// The first of the nodes holding `group` (tried in turn) whose `call` with its Raft URL
/// succeeds; why none did, naming each node, otherwise (`did` says what none did).
async fn on_a_replica<T, Call, Answer>(
    databases: &Databases,
    group: GroupId,
    did: &str,
    call: Call,
) -> Result<T, BackupError>
where
    Call: Fn(String) -> Answer,
    Answer: std::future::Future<Output = Result<T, String>>,
{
    let handle = databases
        .resolve_group(group)
        .map_err(|e| BackupError::Internal(e.to_string()))?;
    let mut failures = Vec::new();
    for (node, raft_addr) in handle.remote_replicas() {
        match call(crate::net::raft_url(raft_addr)).await {
            Ok(answer) => return Ok(answer),
            Err(error) => failures.push(format!("node {node}: {error}")),
        }
    }
    if failures.is_empty() {
        return Err(BackupError::Internal(format!(
            "no node holding group {group} is known to this node yet; retry shortly"
        )));
    }
    Err(BackupError::Internal(format!(
        "no node holding group {group} {did} ({})",
        failures.join("; ")
    )))
}

/// Loads `image` into `group`: here when it runs here, else through a node holding it.
async fn load_group(
    databases: &Databases,
    agents: &BackupAgents,
    http: &reqwest::Client,
    group: GroupId,
    image: &std::path::Path,
) -> Result<u64, BackupError> {
    let here = agents
        .hosted(group)
        .and_then(|agent| agent.group_service())
        .or_else(|| databases.host().services.get(group));
    if let Some(service) = here {
        return load_into_group(&service, image).await;
    }
    on_a_replica(
        databases,
        group,
        "loaded its image",
        |raft_url| async move {
            post_image(http, &format!("{raft_url}/internal/v1/{group}/load"), image).await
        },
    )
    .await
}

async fn bump_schema_epoch(databases: &Databases, first_group: GroupId) -> Result<(), BackupError> {
    let failed = |e: crate::service::ServiceError| {
        BackupError::Internal(format!("moving the database's schema epoch: {e}"))
    };
    databases
        .write_catalog(vec![positional(
            "UPDATE database_options SET schema_epoch = schema_epoch + 1 WHERE database_group = ?1",
            vec![SqlValue::Integer(first_group as i64)],
        )])
        .await
        .map_err(|e| failed(e.into()))?;
    databases.refresh().await.map_err(failed)?;
    Ok(())
}

/// Writes the manifest to every target; fails only when no target took it.
async fn write_manifest(
    targets: &[crate::backup::target::ConfiguredTarget],
    manifest: &CutManifest,
) -> Result<(), BackupError> {
    let bytes = Bytes::from(
        serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Internal(e.to_string()))?,
    );
    let key = manifest_key(&manifest.cut_id);
    let mut failures = Vec::new();
    for target in targets {
        if let Err(error) = target.target.put(&key, bytes.clone()).await {
            failures.push(error.to_string());
        }
    }
    if failures.len() == targets.len() {
        return Err(BackupError::Internal(format!(
            "the cut's manifest was written to no target: {}",
            failures.join("; ")
        )));
    }
    for failure in failures {
        tracing::warn!(cut = %manifest.cut_id, %failure, "a target did not take the cut's manifest");
    }
    Ok(())
}

/// The manifest of cut `cut_id` from the first target holding it.
async fn find_manifest(
    targets: &[crate::backup::target::ConfiguredTarget],
    cut_id: &str,
) -> Result<CutManifest, BackupError> {
    for target in targets {
        match read_manifest(target.target.as_ref(), cut_id).await {
            Err(BackupError::NotFound(_)) => continue,
            outcome => return outcome,
        }
    }
    Err(BackupError::NotFound(format!("cut {cut_id}")))
}

async fn read_manifest(
    target: &dyn crate::backup::target::BackupTarget,
    cut_id: &str,
) -> Result<CutManifest, BackupError> {
    if !valid_backup_id(cut_id) {
        return Err(BackupError::Config(format!("{cut_id:?} is not a cut id")));
    }
    let key = manifest_key(cut_id);
    let bytes = match target.get(&key, CUT_MANIFEST_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(TargetError::NotFound { .. }) => {
            return Err(BackupError::NotFound(format!("cut {cut_id}")));
        }
        Err(error) => return Err(error.into()),
    };
    let manifest: CutManifest =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::Invalid {
            object: key.clone(),
            check: format!("not a cut manifest: {e}"),
        })?;
    if manifest.format_version != CUT_FORMAT_VERSION {
        return Err(BackupError::Invalid {
            object: key,
            check: format!(
                "format version {} is not supported (this build reads {CUT_FORMAT_VERSION})",
                manifest.format_version
            ),
        });
    }
    Ok(manifest)
}
