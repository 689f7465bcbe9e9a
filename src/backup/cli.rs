//! The backup settings of `shoal serve` (`--backup-*`) and the `shoal backup …` / `shoal
//! restore` commands. Commands talk to a node's HTTP API (`--node`), or, given `--target`,
//! work on the targets directly — so backups can be listed, verified and restored while no
//! node runs.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::backup::catalog::{self, CatalogEntry};
use crate::backup::fetch::locate;
use crate::backup::key::{KeySource, read_passphrase_file};
use crate::backup::restore::{place_seed, restore_image};
use crate::backup::schedule::parse_cron;
use crate::backup::target::{ConfiguredTarget, parse_target};
use crate::backup::{BackupConfig, BackupError};

/// The environment variable that may hold the backup passphrase (never a flag: command lines
/// are visible to every user of the machine).
pub const PASSPHRASE_ENV: &str = "SHOAL_BACKUP_PASSPHRASE";

/// Where backups go and how they are protected (shared by `serve` and the commands).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TargetArgs {
    /// Backup target(s), comma-separated: a directory, or
    /// `s3://bucket/prefix?endpoint=URL&region=R` (credentials from AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY); each may add `keep_last=N`, `keep_daily=N`, `keep_weekly=N`,
    /// `keep_monthly=N`.
    #[arg(
        long = "backup-target",
        env = "SHOAL_BACKUP_TARGET",
        value_delimiter = ',',
        global = true
    )]
    pub backup_target: Vec<String>,
    /// File holding the 32-byte backup encryption key (raw or 64 hex characters).
    #[arg(
        long,
        env = "SHOAL_BACKUP_KEY_FILE",
        conflicts_with = "backup_passphrase_file",
        global = true
    )]
    pub backup_key_file: Option<PathBuf>,
    /// File whose first line is the backup passphrase (Argon2id derives the key; the
    /// passphrase may also come from SHOAL_BACKUP_PASSPHRASE).
    #[arg(long, env = "SHOAL_BACKUP_PASSPHRASE_FILE", global = true)]
    pub backup_passphrase_file: Option<PathBuf>,
}

impl TargetArgs {
    pub fn targets(&self) -> Result<Vec<ConfiguredTarget>, String> {
        self.backup_target
            .iter()
            .filter(|spec| !spec.trim().is_empty())
            .map(|spec| parse_target(spec.trim()))
            .collect()
    }

    pub fn key_source(&self) -> Result<KeySource, String> {
        // An empty setting (as in the example configuration file) is no setting.
        let given = |path: &Option<PathBuf>| path.clone().filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = given(&self.backup_key_file) {
            return Ok(KeySource::KeyFile(path));
        }
        if let Some(path) = given(&self.backup_passphrase_file) {
            return Ok(KeySource::Passphrase(read_passphrase_file(&path)?));
        }
        match std::env::var(PASSPHRASE_ENV) {
            Ok(passphrase) if !passphrase.is_empty() => Ok(KeySource::Passphrase(passphrase)),
            _ => Ok(KeySource::None),
        }
    }
}

/// `shoal serve`'s backup settings.
#[derive(clap::Args, Clone, Debug)]
pub struct BackupFlags {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Cron schedule of backups, run by the leader (`0 20 * * *`: daily at 20:00 UTC; a
    /// sixth, leading field gives seconds).
    #[arg(long, env = "SHOAL_BACKUP_SCHEDULE")]
    pub backup_schedule: Option<String>,
    /// Cron schedule of verifications of the newest backup on each target.
    #[arg(long, env = "SHOAL_BACKUP_VERIFY_SCHEDULE")]
    pub backup_verify_schedule: Option<String>,
    /// Random delay of up to this much added to each scheduled run.
    #[arg(long, env = "SHOAL_BACKUP_JITTER", default_value = "30s", value_parser = humantime::parse_duration)]
    pub backup_jitter: Duration,
    /// Take scheduled backups on a replica (read replicas first) to keep load off the leader.
    #[arg(long, env = "SHOAL_BACKUP_FROM_REPLICA")]
    pub backup_from_replica: bool,
    /// Archive committed log entries to the targets continuously (point-in-time restore).
    #[arg(long, env = "SHOAL_BACKUP_ARCHIVE_LOG")]
    pub backup_archive_log: bool,
    /// How often archived entries are shipped (the most a restore can lose).
    #[arg(long, env = "SHOAL_BACKUP_ARCHIVE_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub backup_archive_interval: Duration,
    /// zstd level for backup chunks (1 is fast; 19 is small).
    #[arg(long, env = "SHOAL_BACKUP_COMPRESSION_LEVEL", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub backup_compression_level: i32,
    /// Read the image at most this fast, MB/s (0: no limit), to leave disk and CPU to writes.
    #[arg(long, env = "SHOAL_BACKUP_MAX_MB_PER_S", default_value_t = 0)]
    pub backup_max_mb_per_s: u64,
}

impl BackupFlags {
    pub fn to_config(&self) -> Result<BackupConfig, String> {
        let targets = self.target.targets()?;
        let given = |cron: &Option<String>| cron.clone().filter(|c| !c.trim().is_empty());
        let (schedule, verify_schedule) = (
            given(&self.backup_schedule),
            given(&self.backup_verify_schedule),
        );
        let needs_target =
            schedule.is_some() || verify_schedule.is_some() || self.backup_archive_log;
        if needs_target && targets.is_empty() {
            return Err("backup schedules and log archiving need a --backup-target".to_string());
        }
        Ok(BackupConfig {
            targets,
            key: self.target.key_source()?,
            schedule: schedule
                .as_deref()
                .map(|c| parse_cron("--backup-schedule", c))
                .transpose()?,
            verify_schedule: verify_schedule
                .as_deref()
                .map(|c| parse_cron("--backup-verify-schedule", c))
                .transpose()?,
            jitter: self.backup_jitter,
            from_replica: self.backup_from_replica,
            archive_log: self.backup_archive_log,
            archive_interval: self.backup_archive_interval,
            compression_level: self.backup_compression_level,
            max_bytes_per_s: (self.backup_max_mb_per_s > 0)
                .then(|| self.backup_max_mb_per_s.saturating_mul(1_000_000)),
        })
    }
}

/// `shoal backup …`
#[derive(clap::Args, Debug, Clone)]
pub struct BackupArgs {
    /// The node whose API to use (ignored when --backup-target names targets directly).
    #[arg(long, global = true, default_value = "http://127.0.0.1:4001")]
    pub node: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Authenticate as this user (password from SHOAL_PASSWORD) on a cluster running --auth.
    #[arg(long, global = true, env = "SHOAL_USER")]
    pub user: Option<String>,
    /// The database whose backups to act on (default: `shoal`, the default database); with
    /// --backup-target, its folder `databases/<name>/` of each target.
    #[arg(long, global = true)]
    pub database: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(subcommand)]
    pub operation: BackupOperation,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BackupOperation {
    /// Take a backup now, on the node given by --node (a follower keeps load off the leader).
    Create {
        /// Have a replica of the cluster take it (read replicas first; --node if none can).
        #[arg(long)]
        from_replica: bool,
    },
    /// List the complete backups, oldest first, with their last verification.
    List,
    /// Show a backup's manifest.
    Show { id: String },
    /// Download a backup, check every checksum, decrypt, open it with SQLite, run the
    /// integrity check and compare row counts; records the result beside the backup.
    Verify { id: String },
    /// Remove what each target's retention lets go.
    Prune,
    /// Restore a backup (see `shoal restore --help`).
    Restore(RestoreArgs),
}

/// `shoal restore` / `shoal backup restore`.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup to restore (default: the newest good one before the requested point).
    #[arg(long)]
    pub backup: Option<String>,
    /// Replay the archived log up to this moment (RFC 3339, e.g. 2026-11-21T20:15:03Z).
    #[arg(long, conflicts_with = "to_index")]
    pub to_time: Option<String>,
    /// Replay the archived log up to this log index.
    #[arg(long)]
    pub to_index: Option<u64>,
    /// Restore into this new data directory; `shoal serve --data-dir` then starts a new
    /// cluster from it.
    #[arg(
        long,
        required_unless_present = "into_cluster",
        conflicts_with = "into_cluster"
    )]
    pub data_dir: Option<PathBuf>,
    /// Restore into the running cluster at this URL, through its log (all or nothing).
    #[arg(long)]
    pub into_cluster: Option<String>,
}

/// `shoal restore` (the same as `shoal backup restore`).
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreCommandArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The database to restore (default: `shoal`, the default database). Into a data
    /// directory, it becomes that new cluster's default database.
    #[arg(long)]
    pub database: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub restore: RestoreArgs,
}

/// Runs `shoal restore`; returns the exit status.
pub fn run_restore_command(args: RestoreCommandArgs) -> i32 {
    run(BackupArgs {
        node: String::new(),
        user: std::env::var("SHOAL_USER").ok(),
        json: args.json,
        database: args.database,
        target: args.target,
        operation: BackupOperation::Restore(args.restore),
    })
}

/// Runs `shoal backup …`; returns the exit status.
pub fn run(args: BackupArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shoal: cannot start the async runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(execute(&args)) {
        Ok(output) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output).unwrap_or_default()
                );
            } else {
                println!("{}", human(&args.operation, &output));
            }
            0
        }
        Err(error) => {
            eprintln!("shoal: {error}");
            1
        }
    }
}

async fn execute(args: &BackupArgs) -> Result<Value, String> {
    let database = args
        .database
        .as_deref()
        .unwrap_or(crate::catalog::view::DEFAULT_DATABASE);
    crate::catalog::sql::check_name(database).map_err(|e| format!("--database: {e}"))?;
    let targets = crate::backup::targets_of_database(&args.target.targets()?, database);
    let direct = !targets.is_empty();
    let key = args.target.key_source()?;
    let node = args.node.trim_end_matches('/');
    // `db=` on every call to a node (names are letters, digits, `_` and `-`).
    let db = |query_start: char| format!("{query_start}db={database}");
    let client = api_client(args.user.as_deref())?;
    let scratch = std::env::temp_dir();
    match &args.operation {
        BackupOperation::Restore(restore) => {
            run_restore(restore, database, &targets, &key, &client).await
        }
        BackupOperation::Create { from_replica } => {
            let spinner = spinner("taking the backup");
            let query = if *from_replica {
                format!("?from_replica=true{}", db('&'))
            } else {
                db('?')
            };
            let result = call_node(&client, "POST", &format!("{node}/backup{query}")).await;
            spinner.finish_and_clear();
            result
        }
        BackupOperation::List if direct => {
            let mut all: Vec<CatalogEntry> = Vec::new();
            for target in &targets {
                all.extend(catalog::list_backups(target).await.map_err(text)?);
            }
            all.sort_by_key(|entry| entry.created_at_ms);
            Ok(json!({"backups": all}))
        }
        BackupOperation::List => {
            call_node(&client, "GET", &format!("{node}/backup{}", db('?'))).await
        }
        BackupOperation::Show { id } if direct => {
            let (_, manifest) = locate(&targets, id).await.map_err(text)?;
            Ok(json!(manifest))
        }
        BackupOperation::Show { id } => {
            call_node(&client, "GET", &format!("{node}/backup/{id}{}", db('?'))).await
        }
        BackupOperation::Verify { id } if direct => {
            let mut records = Vec::new();
            for target in &targets {
                match catalog::verify_backup(target, id, &key, &scratch).await {
                    Ok(record) => records.push(record),
                    Err(BackupError::NotFound(_)) => {}
                    Err(error) => return Err(error.to_string()),
                }
            }
            if records.is_empty() {
                return Err(BackupError::NotFound(id.clone()).to_string());
            }
            let failed: Vec<String> = records.iter().filter_map(|r| r.error.clone()).collect();
            if !failed.is_empty() {
                return Err(format!(
                    "backup {id} failed verification: {}",
                    failed.join("; ")
                ));
            }
            Ok(json!({"verifications": records}))
        }
        BackupOperation::Verify { id } => {
            let url = format!("{node}/backup/{id}/verify{}", db('?'));
            call_node(&client, "POST", &url).await
        }
        BackupOperation::Prune if direct => {
            let mut pruned = Vec::new();
            for target in &targets {
                let removed = catalog::prune_target(target, &Default::default())
                    .await
                    .map_err(text)?;
                pruned.push(json!({"target": target.target.name(), "removed": removed}));
            }
            Ok(json!({"pruned": pruned}))
        }
        BackupOperation::Prune => {
            call_node(&client, "POST", &format!("{node}/backup/prune{}", db('?'))).await
        }
    }
}

fn text(error: BackupError) -> String {
    error.to_string()
}

async fn run_restore(
    args: &RestoreArgs,
    database: &str,
    targets: &[ConfiguredTarget],
    key: &KeySource,
    client: &reqwest::Client,
) -> Result<Value, String> {
    let point = crate::backup::restore::restore_point(args.to_time.as_deref(), args.to_index)?;
    if targets.is_empty() {
        // The cluster restores from its own targets.
        let Some(cluster) = &args.into_cluster else {
            return Err("restoring into a data directory needs --backup-target".into());
        };
        let mut url = format!("{}/backup/restore?", cluster.trim_end_matches('/'));
        let mut query = vec![("db", database.to_string())];
        if let Some(id) = &args.backup {
            query.push(("id", id.clone()));
        }
        if let Some(time) = &args.to_time {
            query.push(("to_time", time.clone()));
        }
        if let Some(index) = args.to_index {
            query.push(("to_index", index.to_string()));
        }
        url.push_str(&serde_urlencoded::to_string(&query).map_err(|e| e.to_string())?);
        let spinner = spinner("restoring");
        let result = call_node(client, "POST", &url).await;
        spinner.finish_and_clear();
        return result;
    }
    // A sharded database's folder holds its cuts: its groups restore together, into its
    // running cluster only.
    for target in targets {
        if !target
            .target
            .list("cuts/")
            .await
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            return Err(format!(
                "database {database:?} is sharded (its backups on {} hold cuts): restore it \
                 into its running cluster with --into-cluster <node URL> and without \
                 --backup-target; a sharded database is not restored into data directories",
                target.target.name()
            ));
        }
    }
    let scratch_parent = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            dir.clone()
        }
        None => std::env::temp_dir(),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(&scratch_parent)
        .map_err(|e| format!("{}: {e}", scratch_parent.display()))?;
    let image = scratch.path().join("image.db");
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} downloading {bytes} ({bytes_per_sec}) {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = |bytes: u64| bar.inc(bytes);
    let restored = restore_image(
        targets,
        key,
        args.backup.as_deref(),
        point,
        &image,
        &progress,
    )
    .await
    .map_err(text)?;
    bar.finish_and_clear();
    let mut report = json!({"restored": restored});
    if let Some(dir) = &args.data_dir {
        let seed = place_seed(&image, dir, crate::raft::types::DEFAULT_DATA_GROUP).map_err(text)?;
        report["seed"] = json!(seed.display().to_string());
        report["next"] = json!(format!(
            "start the new cluster: shoal serve --data-dir {}",
            dir.display()
        ));
    } else if let Some(cluster) = &args.into_cluster {
        let url = format!("{}/db/load", cluster.trim_end_matches('/'));
        let loaded = upload(client, &image, &url).await?;
        report["loaded"] = loaded;
    }
    Ok(report)
}

/// POSTs the file at `path` to `url` with a progress bar.
async fn upload(
    client: &reqwest::Client,
    path: &std::path::Path,
    url: &str,
) -> Result<Value, String> {
    let length = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "uploading {bytes}/{total_bytes} ({bytes_per_sec}) {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let counted = bar.clone();
    let stream =
        futures_util::StreamExt::inspect(tokio_util::io::ReaderStream::new(file), move |chunk| {
            if let Ok(chunk) = chunk {
                counted.inc(chunk.len() as u64);
            }
        });
    let response = client
        .post(url)
        .body(reqwest::Body::wrap_stream(stream))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    bar.finish_and_clear();
    answer(url, response).await
}

/// An HTTP client sending the caller's credentials (`--user` with SHOAL_PASSWORD), if any.
fn api_client(user: Option<&str>) -> Result<reqwest::Client, String> {
    let credentials = crate::auth::cli::credentials(user);
    let mut builder = reqwest::Client::builder()
        .default_headers(crate::auth::cli::authorization_header(credentials.as_ref()));
    if let Some(tls) = crate::net::tls::client_config_from_env()? {
        builder = builder.use_preconfigured_tls(tls);
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

async fn call_node(client: &reqwest::Client, method: &str, url: &str) -> Result<Value, String> {
    let request = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let response = request
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    answer(url, response).await
}

async fn answer(url: &str, response: reqwest::Response) -> Result<Value, String> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: unreadable answer: {e}"))?;
    if status.is_success() {
        return Ok(body);
    }
    let message = body
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            body.get("verifications")
                .and_then(Value::as_array)
                .map(|records| {
                    records
                        .iter()
                        .filter_map(|r| r.get("error").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
        })
        .unwrap_or_else(|| body.to_string());
    Err(format!("{status}: {message}"))
}

fn spinner(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A few lines for people (the JSON has everything).
fn human(operation: &BackupOperation, output: &Value) -> String {
    let field = |value: &Value, name: &str| -> String {
        match value.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(other) => other.to_string(),
        }
    };
    match operation {
        BackupOperation::List => {
            let mut lines = vec![format!(
                "{:<32} {:<25} {:>10} {:>12} {:<9} {}",
                "BACKUP", "CREATED", "LOG INDEX", "BYTES", "VERIFIED", "TARGET"
            )];
            for backup in output["backups"].as_array().into_iter().flatten() {
                let verified = match backup.get("last_verification") {
                    Some(Value::Object(record)) => {
                        if record.get("ok") == Some(&Value::Bool(true)) {
                            "ok"
                        } else {
                            "FAILED"
                        }
                    }
                    _ => "-",
                };
                lines.push(format!(
                    "{:<32} {:<25} {:>10} {:>12} {:<9} {}",
                    field(backup, "backup_id"),
                    field(backup, "created_at"),
                    field(backup, "log_index"),
                    field(backup, "image_bytes"),
                    verified,
                    field(backup, "target"),
                ));
            }
            if let Some(cuts) = output["cuts"].as_array() {
                // A sharded database: its consistent cuts, one backup per shard group each.
                lines.push(String::new());
                lines.push(format!(
                    "{:<32} {:<25} {:>7} {}",
                    "CUT", "CREATED", "GROUPS", "BACKUPS"
                ));
                for cut in cuts {
                    let members = cut["members"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                    let backups: Vec<String> =
                        members.iter().map(|m| field(m, "backup_id")).collect();
                    lines.push(format!(
                        "{:<32} {:<25} {:>7} {}",
                        field(cut, "cut_id"),
                        field(cut, "created_at"),
                        members.len(),
                        backups.join(" ")
                    ));
                }
            }
            lines.join("\n")
        }
        BackupOperation::Create { .. } if output.get("cut").is_some() => {
            let cut = &output["cut"];
            let members = cut["members"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let mut lines = vec![format!(
                "cut {} of database {}: {} shard groups, cross-shard transactions held back for {} ms",
                field(cut, "cut_id"),
                field(cut, "database"),
                members.len(),
                field(cut, "fenced_ms")
            )];
            for member in members {
                lines.push(format!(
                    "  shard {}: backup {} at log index {} (fenced at {})",
                    field(member, "shard"),
                    field(member, "backup_id"),
                    field(member, "log_index"),
                    field(member, "fenced_at")
                ));
            }
            lines.join("\n")
        }
        BackupOperation::Create { .. } => format!(
            "backup {} taken on node {} ({}) at log index {}: {} bytes of image, {} stored, in {} ms, on {}",
            field(output, "backup_id"),
            field(output, "node_id"),
            field(output, "taken_on"),
            field(output, "log_index"),
            field(output, "image_bytes"),
            field(output, "stored_bytes"),
            field(output, "duration_ms"),
            output["targets"]
                .as_array()
                .map(|t| t
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
        ),
        BackupOperation::Verify { id } => format!("backup {id} verified: every check passed"),
        BackupOperation::Restore(_) if output["restored"].get("cut_id").is_some() => {
            let restored = &output["restored"];
            let groups = restored["groups"].as_array().map_or(0, Vec::len);
            match restored.get("moment") {
                Some(moment) => format!(
                    "database {} restored to {} from cut {}: {groups} shard groups replayed, \
                     {} cross-shard transactions kept whole, {} left out",
                    field(restored, "database"),
                    moment.as_str().unwrap_or("-"),
                    field(restored, "cut_id"),
                    field(restored, "transactions_kept"),
                    restored["transactions_left_out"]
                        .as_array()
                        .map_or(0, Vec::len),
                ),
                None => format!(
                    "database {} restored from cut {}: {groups} shard groups",
                    field(restored, "database"),
                    field(restored, "cut_id"),
                ),
            }
        }
        _ => serde_json::to_string_pretty(output).unwrap_or_default(),
    }
}
