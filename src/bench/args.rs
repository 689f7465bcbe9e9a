//! `shoal bench`'s command line and its validation into a [`BenchConfig`]: every mistake is
//! refused with a message naming the option, before anything connects.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::target::{SEED_ROWS, TargetConfig, TargetKind};
use super::{BenchConfig, Stop, Workload};
use crate::catalog::slots::SlotMap;
use crate::shard::slot::slot_of_stored;
use crate::types::value::SqlValue;

/// Most clients one run may start (each is a connection).
pub const CLIENTS_MAX: usize = 4_096;
/// Most rows one batch-insert operation may write (etcd refuses transactions over 128).
pub const BATCH_ROWS_MAX: usize = 10_000;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to load: Shoal's HTTP API, a PostgreSQL-protocol server, or etcd.
    #[arg(long, value_enum, default_value_t = TargetArg::Shoal)]
    pub target: TargetArg,
    /// Where: http://HOST:PORT for shoal and etcd, postgres://USER@HOST:PORT/DB for postgres.
    #[arg(long, default_value = "http://127.0.0.1:4001")]
    pub host: String,
    #[arg(long, value_enum, default_value_t = WorkloadArg::Insert)]
    pub workload: WorkloadArg,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to run, e.g. 10s or 1m (the default when --requests is not given: 10s).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Run this many operations in total instead of for a time.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Share of point SELECTs in the mixed workload, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Rows per INSERT in the batch-insert workload.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Read consistency (shoal: none|weak|linearizable|strong|auto; etcd: none|linearizable).
    #[arg(long)]
    pub consistency: Option<String>,
    /// Write concern (shoal only: majority, all, or a number of nodes).
    #[arg(long)]
    pub write_concern: Option<String>,
    /// The database to run in (shoal only; the default database when absent). For
    /// PostgreSQL targets the database is the URL's path.
    #[arg(long)]
    pub database: Option<String>,
    /// Point operations use only the seed rows shard K of N holds (`K/N`, from 0): the keys a
    /// database of N shards keeps in one group, so its router's cost on single-group
    /// statements is measured against an unsharded database under the same load.
    #[arg(long, value_name = "K/N")]
    pub keys_of_shard: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Most shards `--keys-of-shard` may name.
const KEY_SHARDS_MAX: u64 = 64;

/// The seed ids point operations draw from: every one, or those whose slot shard `K` of `N`
/// owns when `spec` is `K/N`.
fn keys_of_shard(spec: Option<&str>) -> Result<Vec<u64>, String> {
    let all = 1..=SEED_ROWS;
    let Some(spec) = spec else {
        return Ok(all.collect());
    };
    let bad = || format!("--keys-of-shard takes K/N (shard K of N, from 0), not {spec:?}");
    let (shard, shards) = spec.split_once('/').ok_or_else(bad)?;
    let shard: u64 = shard.trim().parse().map_err(|_| bad())?;
    let shards: u64 = shards.trim().parse().map_err(|_| bad())?;
    if shards == 0 || shards > KEY_SHARDS_MAX || shard >= shards {
        return Err(format!(
            "--keys-of-shard {spec}: N must be between 1 and {KEY_SHARDS_MAX} and K below N"
        ));
    }
    let groups: Vec<u64> = (0..shards).collect();
    let map = SlotMap::even(&groups);
    let keys: Vec<u64> = all
        .filter(|id| {
            i64::try_from(*id)
                .ok()
                .and_then(|id| slot_of_stored(&SqlValue::Integer(id)).ok())
                .is_some_and(|slot| map.group_of(slot) == shard)
        })
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "--keys-of-shard {spec}: no seed row (ids 1..={SEED_ROWS}) falls in that shard"
        ));
    }
    Ok(keys)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TargetArg {
    Shoal,
    Postgres,
    Etcd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WorkloadArg {
    Insert,
    PointSelect,
    PointUpdate,
    Mixed,
    BatchInsert,
}

impl BenchArgs {
    /// Checks the options against each other and the target.
    pub fn into_config(self) -> Result<BenchConfig, String> {
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return Err(format!(
                "--clients must be between 1 and {CLIENTS_MAX}, not {}",
                self.clients
            ));
        }
        let stop = match (self.duration, self.requests) {
            (_, Some(0)) => return Err("--requests must be at least 1".into()),
            (_, Some(requests)) => Stop::Operations(requests),
            (Some(duration), None) if duration.is_zero() => {
                return Err("--duration must be longer than zero".into());
            }
            (Some(duration), None) => Stop::After(duration),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        let workload = match self.workload {
            WorkloadArg::Insert => Workload::Insert,
            WorkloadArg::PointSelect => Workload::PointSelect,
            WorkloadArg::PointUpdate => Workload::PointUpdate,
            WorkloadArg::Mixed => {
                if !(0.0..=1.0).contains(&self.read_ratio) {
                    return Err(format!(
                        "--read-ratio must be between 0.0 and 1.0, not {}",
                        self.read_ratio
                    ));
                }
                Workload::Mixed {
                    read_ratio: self.read_ratio,
                }
            }
            WorkloadArg::BatchInsert => {
                let limit = match self.target {
                    TargetArg::Etcd => 128,
                    _ => BATCH_ROWS_MAX,
                };
                if self.batch_size == 0 || self.batch_size > limit {
                    return Err(format!(
                        "--batch-size must be between 1 and {limit} for this target, not {}",
                        self.batch_size
                    ));
                }
                Workload::BatchInsert {
                    rows: self.batch_size,
                }
            }
        };
        let kind = match self.target {
            TargetArg::Shoal => TargetKind::Shoal,
            TargetArg::Postgres => TargetKind::Postgres,
            TargetArg::Etcd => TargetKind::Etcd,
        };
        let url_ok = match kind {
            TargetKind::Postgres => {
                self.host.starts_with("postgres://") || self.host.starts_with("postgresql://")
            }
            TargetKind::Shoal | TargetKind::Etcd => {
                self.host.starts_with("http://") || self.host.starts_with("https://")
            }
        };
        if !url_ok {
            let expected = match kind {
                TargetKind::Postgres => "postgres://USER@HOST:PORT/DB",
                _ => "http://HOST:PORT",
            };
            return Err(format!(
                "--host {} does not fit --target {}: expected {expected}",
                self.host,
                kind.name()
            ));
        }
        if let Some(level) = &self.consistency {
            let allowed: &[&str] = match kind {
                TargetKind::Shoal => &["none", "weak", "linearizable", "strong", "auto"],
                TargetKind::Etcd => &["none", "linearizable"],
                TargetKind::Postgres => &[],
            };
            if !allowed.contains(&level.as_str()) {
                return Err(if allowed.is_empty() {
                    "--consistency does not apply to --target postgres: point --host at the \
                     primary or at a standby instead"
                        .to_string()
                } else {
                    format!(
                        "--consistency {level} is not one of {} for --target {}",
                        allowed.join(", "),
                        kind.name()
                    )
                });
            }
        }
        if let Some(w) = &self.write_concern {
            if kind != TargetKind::Shoal {
                return Err(format!(
                    "--write-concern applies to --target shoal only, not {}",
                    kind.name()
                ));
            }
            if !(w == "majority" || w == "all" || w.parse::<u32>().is_ok_and(|n| n > 0)) {
                return Err(format!(
                    "--write-concern must be majority, all or a number of nodes, not {w}"
                ));
            }
        }
        if self.database.is_some() && kind != TargetKind::Shoal {
            return Err(format!(
                "--database applies to --target shoal only, not {}: name the database in the \
                 --host URL instead",
                kind.name()
            ));
        }
        Ok(BenchConfig {
            target: TargetConfig {
                kind,
                url: self.host,
                consistency: self.consistency,
                write_concern: self.write_concern,
                database: self.database,
            },
            workload,
            clients: self.clients,
            stop,
            keys: keys_of_shard(self.keys_of_shard.as_deref())?,
            progress: !self.no_progress && !self.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.bench.into_config()
    }

    #[test]
    fn defaults_are_ten_seconds_of_inserts_on_a_local_node() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(config.workload, Workload::Insert);
        assert_eq!(config.clients, 16);
        assert_eq!(config.target.kind, TargetKind::Shoal);
        assert!(config.progress);
    }

    #[test]
    fn keys_of_one_shard_are_the_seed_ids_its_slots_hold() {
        let every = parse(&[]).unwrap().keys;
        assert_eq!(every.len() as u64, SEED_ROWS);
        let shards: Vec<Vec<u64>> = (0..4)
            .map(|k| parse(&["--keys-of-shard", &format!("{k}/4")]).unwrap().keys)
            .collect();
        // The four shards split the seed ids between them, each getting some.
        let mut joined: Vec<u64> = shards.concat();
        joined.sort_unstable();
        assert_eq!(joined, every);
        assert!(shards.iter().all(|keys| !keys.is_empty()));
        let map = SlotMap::even(&[0, 1, 2, 3]);
        for id in &shards[2] {
            let slot = slot_of_stored(&SqlValue::Integer(*id as i64)).unwrap();
            assert_eq!(map.group_of(slot), 2);
        }
        for bad in ["4/4", "1/0", "x/4", "2", "0/65"] {
            let error = parse(&["--keys-of-shard", bad]).unwrap_err();
            assert!(error.contains("--keys-of-shard"), "{bad}: {error}");
        }
    }

    #[test]
    fn duration_and_requests_choose_when_to_stop() {
        assert_eq!(
            parse(&["--duration", "1m 30s"]).unwrap().stop,
            Stop::After(Duration::from_secs(90))
        );
        assert_eq!(
            parse(&["--requests", "5000"]).unwrap().stop,
            Stop::Operations(5000)
        );
        let both = parse(&["--duration", "5s", "--requests", "10"]).unwrap_err();
        assert!(
            both.contains("--duration") && both.contains("--requests"),
            "{both}"
        );
        assert!(
            parse(&["--requests", "0"])
                .unwrap_err()
                .contains("--requests")
        );
        assert!(
            parse(&["--duration", "0s"])
                .unwrap_err()
                .contains("--duration")
        );
        assert!(
            parse(&["--duration", "soon"])
                .unwrap_err()
                .contains("--duration")
        );
    }

    #[test]
    fn workloads_take_their_parameters() {
        assert_eq!(
            parse(&["--workload", "mixed", "--read-ratio", "0.5"])
                .unwrap()
                .workload,
            Workload::Mixed { read_ratio: 0.5 }
        );
        assert_eq!(
            parse(&["--workload", "batch-insert", "--batch-size", "50"])
                .unwrap()
                .workload,
            Workload::BatchInsert { rows: 50 }
        );
        let ratio = parse(&["--workload", "mixed", "--read-ratio", "1.5"]).unwrap_err();
        assert!(ratio.contains("--read-ratio"), "{ratio}");
        let batch = parse(&["--workload", "batch-insert", "--batch-size", "0"]).unwrap_err();
        assert!(batch.contains("--batch-size"), "{batch}");
        let etcd = parse(&[
            "--target",
            "etcd",
            "--host",
            "http://127.0.0.1:2379",
            "--workload",
            "batch-insert",
            "--batch-size",
            "200",
        ])
        .unwrap_err();
        assert!(etcd.contains("between 1 and 128"), "{etcd}");
    }

    #[test]
    fn clients_are_bounded() {
        assert!(
            parse(&["--clients", "0"])
                .unwrap_err()
                .contains("--clients")
        );
        assert!(
            parse(&["--clients", "100000"])
                .unwrap_err()
                .contains("--clients")
        );
        assert_eq!(parse(&["--clients", "64"]).unwrap().clients, 64);
    }

    #[test]
    fn options_must_fit_the_target() {
        let url = parse(&["--target", "postgres"]).unwrap_err();
        assert!(url.contains("postgres://"), "{url}");
        let pg = [
            "--target",
            "postgres",
            "--host",
            "postgres://postgres@127.0.0.1:15432/postgres",
        ];
        assert!(parse(&pg).is_ok());
        let level = parse(&[&pg[..], &["--consistency", "none"]].concat()).unwrap_err();
        assert!(level.contains("--consistency"), "{level}");
        let w = parse(&[&pg[..], &["--write-concern", "all"]].concat()).unwrap_err();
        assert!(w.contains("--write-concern"), "{w}");
        let bad_level = parse(&["--consistency", "eventual"]).unwrap_err();
        assert!(
            bad_level.contains("eventual") && bad_level.contains("linearizable"),
            "{bad_level}"
        );
        assert!(
            parse(&["--write-concern", "most"])
                .unwrap_err()
                .contains("most")
        );
        let shoal = parse(&["--consistency", "none", "--write-concern", "all"]).unwrap();
        assert_eq!(shoal.target.consistency.as_deref(), Some("none"));
        assert_eq!(shoal.target.write_concern.as_deref(), Some("all"));
    }

    #[test]
    fn json_output_has_no_progress_bar() {
        assert!(!parse(&["--json"]).unwrap().progress);
        assert!(!parse(&["--no-progress"]).unwrap().progress);
    }
}
