//! The `shoal` command: `serve` runs a node, `bench` loads Shoal (or a peer) with a workload.

use std::net::SocketAddr;

use shoal::net::addr::{ListenAddr, parse_listen_addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use shoal::node::{Node, NodeConfig};
use shoal::raft::group::RaftSettings;
use shoal::service::queue::QueueSettings;

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "A replicated SQL database: SQLite storage, Raft consensus, rqlite-compatible HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (with no arguments: a durable single-node database in ./shoal-data).
    Serve(Box<ServeArgs>),
    /// Load Shoal, PostgreSQL or etcd with a workload and print throughput and latency.
    Bench(shoal::bench::args::BenchArgs),
    /// An SQL shell over the HTTP API (interactive, or `-c SQL` / SQL on stdin for scripts).
    Shell(shoal::shell::ShellArgs),
    /// A local cluster of child processes with the shell opened on it; removed on exit.
    Demo(shoal::demo::DemoArgs),
    /// Cluster administration for scripts: status, nodes, join, remove, step-down, transfer.
    Cluster(shoal::admin::ClusterArgs),
    /// Backups: create, list, show, verify, prune, restore.
    Backup(shoal::backup::cli::BackupArgs),
    /// Restore a backup into a new data directory or a running cluster, optionally to a
    /// point in time.
    Restore(shoal::backup::cli::RestoreCommandArgs),
    /// Users: add, remove, passwd, grant, revoke, list.
    User(shoal::auth::cli::UserArgs),
    /// Development TLS certificates: a CA and node certificates.
    Cert(shoal::net::cert::CertArgs),
    /// After a quorum is lost for good: make this stopped node's data directory the seed of
    /// a new single-node cluster holding all its data (refused while a quorum is alive).
    Recover(shoal::recover::RecoverArgs),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented sample configuration file with every setting and its default.
    Example,
}

#[derive(Parser, Clone)]
#[command(name = "serve")]
struct ServeArgs {
    /// Read settings from this TOML file (`shoal config example` prints one); flags and
    /// SHOAL_… environment variables override it.
    #[arg(long, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id, unique in the cluster.
    #[arg(long, env = "SHOAL_NODE_ID", default_value_t = 1)]
    node_id: u64,
    /// Where the node keeps its log, database and snapshots.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "shoal-data")]
    data_dir: PathBuf,
    /// Client HTTP API listen address: an IP address or a host name, with a port
    /// (`localhost:4001`); a host name is advertised as written.
    #[arg(long, env = "SHOAL_HTTP_ADDR", default_value = "127.0.0.1:4001", value_parser = parse_listen_addr)]
    http_addr: ListenAddr,
    /// Raft (node-to-node) listen address: an IP address or a host name, with a port.
    #[arg(long, env = "SHOAL_RAFT_ADDR", default_value = "127.0.0.1:4002", value_parser = parse_listen_addr)]
    raft_addr: ListenAddr,
    /// HTTP address advertised to clients and other nodes, if not the listen address.
    #[arg(long, env = "SHOAL_HTTP_ADVERTISE_ADDR")]
    http_advertise_addr: Option<String>,
    /// Raft address advertised to other nodes, if not the listen address.
    #[arg(long, env = "SHOAL_RAFT_ADVERTISE_ADDR")]
    raft_advertise_addr: Option<String>,
    /// HTTP URL(s) of existing members to join through, comma-separated.
    #[arg(long, env = "SHOAL_JOIN", value_delimiter = ',')]
    join: Vec<String>,
    /// Join as a read replica (a non-voting Raft learner).
    #[arg(long, env = "SHOAL_NON_VOTER")]
    non_voter: bool,
    /// On a graceful stop (SIGTERM, SIGINT), leave the cluster: the leader removes this node
    /// from the membership (rqlite's -raft-cluster-remove-shutdown; for autoscaled replicas).
    #[arg(long, env = "SHOAL_LEAVE_ON_SHUTDOWN")]
    leave_on_shutdown: bool,
    /// Leader heartbeat interval, milliseconds.
    #[arg(long, env = "SHOAL_HEARTBEAT_MS", default_value_t = 40)]
    heartbeat_ms: u64,
    /// Minimum election timeout, milliseconds (the maximum is 1.5 times this).
    #[arg(long, env = "SHOAL_ELECTION_TIMEOUT_MS", default_value_t = 120)]
    election_timeout_ms: u64,
    /// Entries since the last snapshot before another is considered.
    #[arg(long, env = "SHOAL_SNAPSHOT_THRESHOLD", default_value_t = 8192)]
    snapshot_threshold: u64,
    /// Build a snapshot once the log since the last one reaches this fraction of the
    /// database's size (a snapshot copies the whole database).
    #[arg(long, env = "SHOAL_SNAPSHOT_LOG_RATIO", default_value_t = 0.5, value_parser = parse_ratio)]
    snapshot_log_ratio: f64,
    /// Entries kept in the log behind a snapshot.
    #[arg(long, env = "SHOAL_LOG_KEEP", default_value_t = 1024)]
    log_keep: u64,
    /// Build a snapshot whenever the unpurged log exceeds this many bytes on disk.
    #[arg(long, env = "SHOAL_LOG_BYTES_MAX", default_value_t = 1024 * 1024 * 1024)]
    log_bytes_max: u64,
    /// Bytes of the newest log entries kept in memory; older ones are read from disk.
    #[arg(long, env = "SHOAL_LOG_CACHE_BYTES", default_value_t = 16 * 1024 * 1024)]
    log_cache_bytes: usize,
    /// Largest accepted HTTP request body, bytes.
    #[arg(long, env = "SHOAL_HTTP_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    http_max_body_bytes: usize,
    /// Where PostgreSQL clients connect; `off` disables the PostgreSQL endpoint. Unset, the
    /// node takes 127.0.0.1:5433, or the next free port above it when other nodes on the host
    /// hold it (printed at start).
    #[arg(long, env = "SHOAL_PG_ADDR", value_parser = parse_optional_addr)]
    pg_addr: Option<OptionalAddr>,
    /// PostgreSQL connections served at once; more are refused with "too many clients".
    #[arg(long, env = "SHOAL_PG_MAX_CONNECTIONS", default_value_t = 100)]
    pg_max_connections: usize,
    /// Webhook URL(s) receiving alert events (HTTP POST, JSON), comma-separated.
    #[arg(long, env = "SHOAL_ALERT_WEBHOOK", value_delimiter = ',')]
    alert_webhook: Vec<String>,
    /// Alert when no leader is reachable for this long.
    #[arg(long, env = "SHOAL_ALERT_NO_LEADER_AFTER", default_value = "5s", value_parser = humantime::parse_duration)]
    alert_no_leader_after: Duration,
    /// Alert when a member is unreachable for this long.
    #[arg(long, env = "SHOAL_ALERT_MEMBER_UNREACHABLE_AFTER", default_value = "10s", value_parser = humantime::parse_duration)]
    alert_member_unreachable_after: Duration,
    /// Alert when a member is more than this many entries behind.
    #[arg(long, env = "SHOAL_ALERT_LAG_ENTRIES", default_value_t = 10_000)]
    alert_lag_entries: u64,
    /// Alert when the data directory's file system has less free space than this, percent.
    #[arg(long, env = "SHOAL_ALERT_DISK_FREE_PERCENT", default_value_t = 10.0)]
    alert_disk_free_percent: f64,
    /// Alert when more logins than this fail within a minute.
    #[arg(
        long,
        env = "SHOAL_ALERT_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 20
    )]
    alert_auth_failures_per_minute: u64,
    /// How long to keep trying to join, seconds.
    #[arg(long, env = "SHOAL_JOIN_TIMEOUT_S", default_value_t = 120)]
    join_timeout_s: u64,
    /// A node silent this long is gone: the catalog's leader places its replicas on other
    /// nodes, seconds.
    #[arg(long, env = "SHOAL_NODE_DEAD_AFTER_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    node_dead_after_s: u64,
    /// This node's zone (rack, availability zone): each database's voters are spread over
    /// zones so that losing one keeps every database's majority.
    #[arg(long, env = "SHOAL_ZONE")]
    zone: Option<String>,
    /// Log output format.
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    backup: shoal::backup::cli::BackupFlags,
    #[command(flatten)]
    net: shoal::net::NetFlags,
    /// Require credentials (HTTP Basic) and permissions on every client request (see
    /// `shoal user`); a new cluster then needs the first admin's password.
    #[arg(long, env = "SHOAL_AUTH")]
    auth: bool,
    /// rqlite's `-auth` file (a JSON array of users): turns --auth on, and the users it lists
    /// are created or set back to what it says whenever this node leads. Give every node
    /// the same file.
    #[arg(long, env = "SHOAL_AUTH_FILE")]
    auth_file: Option<PathBuf>,
    /// File holding the first admin's password (or SHOAL_ADMIN_PASSWORD), used when this node
    /// bootstraps a new cluster with --auth.
    #[arg(long, env = "SHOAL_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    /// Also write audit events (logins, denials, DDL, user and membership changes, backups,
    /// restores) to this file, one JSON object per line, rotated by size.
    #[arg(long, env = "SHOAL_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Size at which the audit log file is rotated, MiB.
    #[arg(long, env = "SHOAL_AUDIT_LOG_FILE_MB", default_value_t = 100)]
    audit_log_file_mb: u64,
    /// Rotated audit log files kept (FILE.1 … FILE.N).
    #[arg(long, env = "SHOAL_AUDIT_LOG_FILES", default_value_t = 10)]
    audit_log_files: u32,
    /// Log level: error, warn, info, debug or trace (SHOAL_LOG, a full tracing filter such as
    /// `info,openraft=debug`, overrides it).
    #[arg(long, env = "SHOAL_LOG_LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    if let Err(error) = run() {
        // One line: what failed and why (the causes joined), no backtrace noise.
        eprintln!("shoal: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    shoal::net::tls::install_default_provider();
    let cli = Cli::parse();
    // The shell is synchronous (line editing blocks): it runs without the async runtime.
    match cli.command {
        Some(Command::Shell(args)) => std::process::exit(shoal::shell::run(args)),
        Some(Command::Demo(args)) => std::process::exit(shoal::demo::run(args)),
        Some(Command::Cluster(args)) => std::process::exit(shoal::admin::run(args)),
        Some(Command::Backup(args)) => std::process::exit(shoal::backup::cli::run(args)),
        Some(Command::User(args)) => std::process::exit(shoal::auth::cli::run(args)),
        Some(Command::Cert(args)) => std::process::exit(shoal::net::cert::run(args)),
        Some(Command::Restore(args)) => {
            std::process::exit(shoal::backup::cli::run_restore_command(args))
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    match cli.command {
        None => runtime.block_on(serve(ServeArgs::parse_from(["shoal"]))),
        Some(Command::Serve(args)) => {
            let args = with_config_file(*args).unwrap_or_else(|error| {
                eprintln!("shoal: {error}");
                std::process::exit(2);
            });
            runtime.block_on(serve(args))
        }
        Some(Command::Bench(args)) => runtime.block_on(bench(args)),
        Some(Command::Recover(args)) => {
            std::process::exit(runtime.block_on(shoal::recover::run(args)))
        }
        Some(
            Command::Shell(_)
            | Command::Demo(_)
            | Command::Cluster(_)
            | Command::Backup(_)
            | Command::User(_)
            | Command::Cert(_)
            | Command::Restore(_),
        ) => Ok(()),
        Some(Command::Config(ConfigCommand::Example)) => {
            print!("{}", shoal::config::example(&ServeArgs::command()));
            Ok(())
        }
    }
}

/// `args` with the settings of `--config FILE` filled in where no flag or environment
/// variable gave them.
fn with_config_file(args: ServeArgs) -> anyhow::Result<ServeArgs> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let serve_at = raw.iter().position(|a| a == "serve").unwrap_or(raw.len());
    let serve_args: Vec<std::ffi::OsString> = std::iter::once("serve".into())
        .chain(raw.iter().skip(serve_at + 1).cloned())
        .collect();
    let layered = shoal::config::layer_file(&ServeArgs::command(), &serve_args, &path)?;
    ServeArgs::try_parse_from(layered).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))
}

fn init_logging(format: LogFormat, level: &str, audit: Option<shoal::audit::RotatingFile>) {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // openraft is chatty at info; its warnings and errors are what an operator needs.
    let default = if level == "info" {
        "info,openraft=warn".to_string()
    } else {
        level.to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours for a terminal only, not for log files.
        .with_ansi(std::io::stderr().is_terminal())
        // When stderr cannot be written (a log file on a full disk), the default reports the
        // failure with eprintln!, which panics in whatever task was logging: lose the line
        // instead of wedging the node.
        .log_internal_errors(false);
    let log = match format {
        LogFormat::Text => log.boxed(),
        LogFormat::Json => log.json().boxed(),
    };
    let audit = audit.map(|file| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::sync::Mutex::new(file))
            .log_internal_errors(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("audit", tracing::Level::TRACE),
            )
    });
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(audit)
        .init();
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let audit = match &args.audit_log {
        Some(path) => Some(
            shoal::audit::RotatingFile::open(shoal::audit::AuditSettings {
                path: path.clone(),
                file_bytes_max: args.audit_log_file_mb.saturating_mul(1024 * 1024),
                rotated_files: args.audit_log_files,
            })
            .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    init_logging(args.log_format, &args.log_level, audit);
    if args.election_timeout_ms <= args.heartbeat_ms * 2 {
        anyhow::bail!(
            "--election-timeout-ms ({}) must exceed twice --heartbeat-ms ({})",
            args.election_timeout_ms,
            args.heartbeat_ms
        );
    }
    let config = NodeConfig {
        node_id: args.node_id,
        data_dir: args.data_dir.clone(),
        http_addr: args.http_addr.resolved,
        raft_addr: args.raft_addr.resolved,
        http_advertise_addr: Some(
            args.http_advertise_addr
                .clone()
                .unwrap_or_else(|| args.http_addr.advertised()),
        ),
        raft_advertise_addr: Some(
            args.raft_advertise_addr
                .clone()
                .unwrap_or_else(|| args.raft_addr.advertised()),
        ),
        join: args.join.clone(),
        non_voter: args.non_voter,
        leave_on_shutdown: args.leave_on_shutdown,
        raft: RaftSettings {
            heartbeat_interval_ms: args.heartbeat_ms,
            election_timeout_min_ms: args.election_timeout_ms,
            election_timeout_max_ms: RaftSettings::election_timeout_max_for(
                args.election_timeout_ms,
            ),
            snapshot_threshold_entries: args.snapshot_threshold,
            log_keep_entries: args.log_keep,
            snapshot_log_ratio: args.snapshot_log_ratio,
            log_bytes_max: args.log_bytes_max,
            log_cache_bytes: args.log_cache_bytes,
            hold_log_for_archive: args.backup.backup_archive_log,
            ..RaftSettings::default()
        },
        queue: QueueSettings::default(),
        http_body_bytes_max: args.http_max_body_bytes,
        join_timeout: Duration::from_secs(args.join_timeout_s),
        placement: shoal::catalog::balance::PlacementSettings {
            node_dead_after: Duration::from_secs(args.node_dead_after_s),
            zone: args.zone.clone(),
        },
        pg_addr: match args.pg_addr {
            Some(OptionalAddr(addr)) => addr,
            None => Some(SocketAddr::from(([127, 0, 0, 1], PG_DEFAULT_PORT))),
        },
        pg_port_attempts: match args.pg_addr {
            Some(_) => 1,
            None => shoal::net::addr::PG_DEFAULT_PORT_ATTEMPTS,
        },
        pg_connections_max: args.pg_max_connections.max(1),
        alerts: shoal::alerts::AlertSettings {
            webhooks: args.alert_webhook.clone(),
            no_leader_after: args.alert_no_leader_after,
            member_unreachable_after: args.alert_member_unreachable_after,
            lag_entries_max: args.alert_lag_entries,
            disk_free_percent_min: args.alert_disk_free_percent,
            auth_failures_per_minute_max: args.alert_auth_failures_per_minute,
            data_dir: args.data_dir.clone(),
        },
        backup: args.backup.to_config().map_err(anyhow::Error::msg)?,
        net: args.net.to_config().map_err(anyhow::Error::msg)?,
        auth: shoal::auth::AuthSettings {
            enabled: args.auth || args.auth_file.is_some(),
            file_users: match &args.auth_file {
                Some(path) => {
                    let (users, notes) =
                        shoal::auth::file_users::load(path).map_err(anyhow::Error::msg)?;
                    for note in notes {
                        tracing::warn!(file = %path.display(), "{note}");
                    }
                    users
                }
                None => Vec::new(),
            },
            admin_password: admin_password(&args).map_err(anyhow::Error::msg)?,
            join_credentials: std::env::var("SHOAL_JOIN_USER")
                .ok()
                .filter(|user| !user.is_empty())
                .map(|user| {
                    (
                        user,
                        std::env::var("SHOAL_JOIN_PASSWORD").unwrap_or_default(),
                    )
                }),
        },
    };
    let node = Node::start(config).await.context("shoal could not start")?;
    let advertised = node.advertised();
    tracing::info!(
        node_id = args.node_id,
        http = %advertised.http_addr,
        raft = %advertised.raft_addr,
        postgres = %node.pg_addr().map_or("off".to_string(), |a| a.to_string()),
        data_dir = %args.data_dir.display(),
        role = if args.non_voter { "read replica" } else { "voter" },
        "shoal node serving"
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// The first admin's password: from --admin-password-file, else SHOAL_ADMIN_PASSWORD (never
/// a flag: command lines are visible to every user of the machine).
fn admin_password(args: &ServeArgs) -> Result<Option<String>, String> {
    if let Some(path) = args
        .admin_password_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        return shoal::backup::key::read_passphrase_file(path).map(Some);
    }
    Ok(std::env::var("SHOAL_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty()))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut interrupt)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn bench(args: shoal::bench::args::BenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    let config = args.into_config().map_err(anyhow::Error::msg)?;
    let summary = shoal::bench::run(config)
        .await
        .map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{}", summary.human());
    }
    Ok(())
}

/// A positive, finite fraction such as `0.5`.
fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if ratio.is_finite() && ratio > 0.0 => Ok(ratio),
        _ => Err(format!(
            "expected a positive number such as 0.5, got {text:?}"
        )),
    }
}

/// A listen address, or none (`off`).
#[derive(Debug, Clone, Copy)]
struct OptionalAddr(Option<std::net::SocketAddr>);

fn parse_optional_addr(text: &str) -> Result<OptionalAddr, String> {
    if text.eq_ignore_ascii_case("off") || text.is_empty() {
        return Ok(OptionalAddr(None));
    }
    parse_listen_addr(text)
        .map(|addr| OptionalAddr(Some(addr.resolved)))
        .map_err(|e| format!("{e}, or off"))
}

/// The PostgreSQL port a node tries first when --pg-addr is not set.
const PG_DEFAULT_PORT: u16 = 5433;
