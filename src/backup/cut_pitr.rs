//! Point-in-time restore of a sharded database: from one cut (`backup::cut`) taken before the
//! moment, each shard group's archived log is replayed — the stop of each replay chosen by
//! `cut_rule`, so every cross-shard transaction is restored in all its groups or in none —
//! and the images are loaded into the groups as a cut's are (under a fence, all or nothing
//! checked before any load).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::backup::agents::BackupAgents;
use crate::backup::archive::entry_time_ms;
use crate::backup::cut::{self, CutManifest, shard_folder};
use crate::backup::cut_rule::{self, Effect, GroupHistory, Observed};
use crate::backup::fetch::locate;
use crate::backup::restore::{
    Base, Reading, RestorePoint, Restored, archive_complete_at, fetch_base, read_archive,
    replay_base,
};
use crate::backup::{BackupConfig, BackupError, rfc3339_ms};
use crate::catalog::databases::Databases;
use crate::catalog::view::DatabaseEntry;
use crate::db::database::Database;
use crate::raft::types::Entry;
use crate::types::shard::{ShardStep, StepOutcome, Xid};
use openraft::EntryPayload;

/// How far past the moment each group's archive is read for the decisions of transactions
/// prepared before it. A coordinator decides within its transaction's timeout, and a
/// participant whose coordinator died asks for the decision after 3 s; a transaction still
/// undecided this long after the moment is left out.
const LOOKAHEAD: Duration = Duration::from_secs(60);

/// A cut made after the moment by at most this much (by the clock of the node that wrote its
/// manifest) is still looked into: its copies' own times decide.
const CUT_CLOCK_SLACK: Duration = Duration::from_secs(300);

/// One restore to a moment at a time on a node: each group's replay runs on a clock named
/// after the group (`Database::open_replay`), which two replays of it must not share.
static RESTORING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a point-in-time restore of a sharded database did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredToMoment {
    pub database: String,
    pub moment: String,
    /// The cut the replays started from.
    pub cut_id: String,
    /// Each group's restore (its base copy and replay), in shard order.
    pub groups: Vec<Restored>,
    /// Cross-shard transactions whose commits the replays applied.
    pub transactions_kept: usize,
    /// Transactions decided by the moment but left out (a participant's part is stamped
    /// after the moment by its leader's clock), as `<group>-<id>`.
    pub transactions_left_out: Vec<String>,
    /// Groups whose replay stopped elsewhere than at the moment by their own clock, to keep a
    /// transaction whole (carried on to its commit, or stopped before its prepare).
    pub groups_off_the_moment: usize,
    /// The load entry's log index in each group.
    pub load_indexes: Vec<u64>,
}

/// Restores sharded `database` to `moment_ms`, starting from cut `cut_id` (else the newest cut
/// whose copies all precede the moment). Every group's image is built and checked before any
/// group changes.
pub async fn restore_to_moment(
    databases: &Databases,
    agents: &BackupAgents,
    http: &reqwest::Client,
    database: &DatabaseEntry,
    cut_id: Option<&str>,
    moment_ms: i64,
) -> Result<RestoredToMoment, BackupError> {
    let _one_at_a_time = RESTORING.lock().await;
    let configs: Vec<BackupConfig> = (0..database.groups.len())
        .map(|shard| {
            agents
                .config()
                .for_database(&shard_folder(&database.name, shard as u32))
        })
        .collect();
    let cut = choose_cut(agents, &configs, database, cut_id, moment_ms).await?;
    if cut.members.len() != database.groups.len() {
        return Err(cut::member_count_mismatch(&cut, database));
    }
    let scratch_dir = agents.scratch_dir();
    let scratch = std::fs::create_dir_all(&scratch_dir)
        .and_then(|()| tempfile::tempdir_in(&scratch_dir))
        .map_err(|e| BackupError::Internal(format!("{}: {e}", scratch_dir.display())))?;
    let mut bases = Vec::with_capacity(cut.members.len());
    let mut histories = Vec::with_capacity(cut.members.len());
    for (member, config) in cut.members.iter().zip(&configs) {
        let image = scratch.path().join(format!("shard-{}.db", member.shard));
        let (base, restored) = fetch_base(
            &config.targets,
            &config.key,
            Some(&member.backup_id),
            Some(RestorePoint::Time(moment_ms)),
            &image,
            &|_| {},
        )
        .await
        .map_err(|error| member.nothing_restored(error))?;
        let history = observe(&base, &image, scratch.path(), moment_ms)
            .await
            .map_err(|error| member.nothing_restored(error))?;
        histories.push(history);
        bases.push((base, image, restored));
    }
    let plan = cut_rule::stops(&histories, moment_ms);
    if !plan.undecided.is_empty() {
        let named: Vec<String> = plan.undecided.iter().map(Xid::to_string).collect();
        return Err(BackupError::Config(format!(
            "cross-shard transactions in flight at {} ({}) are not decided in the archive \
             yet: the archive is not known complete after that moment; retry once the \
             archiver has shipped the entries that follow it (within seconds)",
            rfc3339_ms(moment_ms),
            named.join(", ")
        )));
    }
    for ((base, image, restored), stop) in bases.iter_mut().zip(&plan.stops) {
        replay_base(base, RestorePoint::Index(*stop), image, restored).await?;
    }
    let images: Vec<&Path> = bases.iter().map(|(_, image, _)| image.as_path()).collect();
    let load_indexes = cut::load_images(databases, agents, http, database, &images).await?;
    tracing::info!(target: "audit", event = "restored_to_moment", database = %database.name, cut = %cut.cut_id, moment = %rfc3339_ms(moment_ms), kept = plan.kept.len(), left_out = plan.left_out.len(), "sharded database restored to a moment");
    Ok(RestoredToMoment {
        database: database.name.clone(),
        moment: rfc3339_ms(moment_ms),
        cut_id: cut.cut_id,
        groups: bases.into_iter().map(|(_, _, restored)| restored).collect(),
        transactions_kept: plan.kept.len(),
        transactions_left_out: plan.left_out.iter().map(Xid::to_string).collect(),
        groups_off_the_moment: plan.off_the_moment,
        load_indexes,
    })
}

/// The cut named, or the newest whose every copy precedes the moment.
async fn choose_cut(
    agents: &BackupAgents,
    configs: &[BackupConfig],
    database: &DatabaseEntry,
    cut_id: Option<&str>,
    moment_ms: i64,
) -> Result<CutManifest, BackupError> {
    if let Some(id) = cut_id {
        return cut::find(agents, &database.name, id).await;
    }
    let latest_created = moment_ms + CUT_CLOCK_SLACK.as_millis() as i64;
    let mut cuts = cut::list(agents, &database.name).await?;
    cuts.retain(|cut| {
        chrono::DateTime::parse_from_rfc3339(&cut.created_at)
            .is_ok_and(|at| at.timestamp_millis() <= latest_created)
    });
    for cut in cuts.into_iter().rev() {
        if precedes(&cut, configs, moment_ms).await? {
            return Ok(cut);
        }
    }
    // "backup cut of database "shop" taken before … not found on any target": a restore to
    // a moment starts from a cut (`POST /backup?db=shop` takes one).
    Err(BackupError::NotFound(format!(
        "cut of database {:?} taken before {}",
        database.name,
        rfc3339_ms(moment_ms)
    )))
}

/// Whether every copy of `cut` holds nothing stamped after the moment.
async fn precedes(
    cut: &CutManifest,
    configs: &[BackupConfig],
    moment_ms: i64,
) -> Result<bool, BackupError> {
    for member in &cut.members {
        let Some(config) = configs.get(member.shard as usize) else {
            return Ok(false);
        };
        let (_, manifest) = locate(&config.targets, &member.backup_id).await?;
        if manifest.last_command_ms > moment_ms {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What each archived entry after the base did, up to [`LOOKAHEAD`] past the moment: the
/// entries are applied to a copy of the base image (a prepare's outcome depends on the
/// data), which is removed afterwards. Fails when no entry after the moment was archived and
/// the archive is not known complete up to it.
async fn observe(
    base: &Base<'_>,
    image: &Path,
    scratch: &Path,
    moment_ms: i64,
) -> Result<GroupHistory, BackupError> {
    let copy_dir = tempfile::tempdir_in(scratch)
        .map_err(|e| BackupError::Internal(format!("a scratch directory: {e}")))?;
    let copy: PathBuf = copy_dir.path().join("observed.db");
    std::fs::copy(image, &copy)
        .map_err(|e| BackupError::Internal(format!("copying {}: {e}", image.display())))?;
    let group = base.manifest.group;
    let database = Database::open_replay(&copy, group)?;
    let until_ms = moment_ms + LOOKAHEAD.as_millis() as i64;
    let mut entries = Vec::new();
    let mut holding: Option<Xid> = None;
    let mut past_moment = false;
    let mut past_lookahead = false;
    read_archive(base, |archived| {
        let offered = archived.len();
        let within: Vec<Entry> = archived
            .into_iter()
            .take_while(|entry| entry_time_ms(entry).is_none_or(|at| at <= until_ms))
            .collect();
        past_lookahead = within.len() < offered;
        let responses = tokio::task::block_in_place(|| database.apply(&within))?;
        for (entry, response) in within.iter().zip(responses) {
            let at_ms = entry_time_ms(entry);
            past_moment |= at_ms.is_some_and(|at| at > moment_ms);
            let outcome = response
                .batches
                .first()
                .and_then(|results| results.first())
                .and_then(StepOutcome::of);
            entries.push(Observed {
                index: openraft::entry::RaftEntry::index(entry),
                at_ms,
                effect: effect_of(entry, outcome, &mut holding),
            });
        }
        Ok(if past_lookahead {
            Reading::Enough
        } else {
            Reading::More
        })
    })
    .await?;
    drop(database);
    // (An entry past the look's end is past the moment too.)
    if !past_moment && !past_lookahead {
        archive_complete_at(base, moment_ms).await?;
    }
    // An idle group's archive holds nothing after the moment: it is complete when the
    // archiver says it shipped everything up to the look's end.
    let complete = past_lookahead || archive_complete_at(base, until_ms).await.is_ok();
    Ok(GroupHistory {
        group,
        base: base.manifest.log_index,
        entries,
        complete,
    })
}

/// What an applied entry did to the group's cross-shard state, given the step's outcome and
/// the transaction the group held before it (updated).
fn effect_of(entry: &Entry, outcome: Option<StepOutcome>, holding: &mut Option<Xid>) -> Effect {
    let EntryPayload::Normal(command) = &entry.payload else {
        return Effect::Other;
    };
    let Some(step) = &command.shard else {
        return Effect::Other;
    };
    let Some(xid) = step.xid() else {
        return Effect::Other;
    };
    match (step, outcome) {
        (ShardStep::Prepare { .. }, Some(StepOutcome::Prepared)) if *holding != Some(xid) => {
            *holding = Some(xid);
            Effect::Held(xid)
        }
        (
            ShardStep::Commit { .. } | ShardStep::Abort { .. },
            Some(outcome @ (StepOutcome::Committed | StepOutcome::Aborted)),
        ) if *holding == Some(xid) => {
            *holding = None;
            Effect::Released {
                xid,
                committed: outcome == StepOutcome::Committed,
            }
        }
        _ => Effect::Other,
    }
}
