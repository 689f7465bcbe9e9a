//! Fault injection with checked histories: a real 3-voter cluster, clients running register,
//! bank, set and append workloads through the HTTP API (and a bank over a sharded database,
//! whose transfers span groups) while a seeded nemesis kills, pauses,
//! partitions, slows and reconfigures the nodes. Afterwards every history is checked
//! (linearizability per register, bank totals, set membership, append-list order and
//! atomicity) and every replica must hold identical data.
//!
//! CI runs the short fixed seeds below. A soak run (any seeds, any length):
//! `SHOAL_SOAK_SECONDS=600 SHOAL_SOAK_SEEDS=11,12,13 cargo test --test faults soak -- --ignored --nocapture`
//! (or `scripts/soak.sh SECONDS SEEDS`). Every failure prints its seed and the faults injected.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod client;
mod history;
mod linearizability;
mod nemesis;
#[path = "../support/mod.rs"]
mod support;
mod workloads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use client::{DbClient, Targets};
use nemesis::{ALL_FAULTS, FaultKind, Nemesis};
use support::{Cluster, ClusterSpec};
use workloads::RunContext;

/// Tables the workloads write, for the replica comparison.
const TABLES: [&str; 4] = ["registers", "bank", "set_elements", "lists"];

struct RunConfig {
    seed: u64,
    duration: Duration,
    faults: Vec<FaultKind>,
    /// Extra environment for every node (a deliberate fault).
    env: Vec<(String, String)>,
}

/// What a run found.
struct RunReport {
    seed: u64,
    summaries: Vec<String>,
    violations: Vec<String>,
    fault_log: Vec<String>,
    faults_injected: usize,
}

impl RunReport {
    fn describe(&self) -> String {
        format!(
            "seed {} — {} faults injected\nfaults:\n  {}\nchecks passed:\n  {}\nviolations:\n  {}",
            self.seed,
            self.faults_injected,
            self.fault_log.join("\n  "),
            self.summaries.join("\n  "),
            self.violations.join("\n  ")
        )
    }
}

async fn run(config: RunConfig) -> RunReport {
    let mut cluster = Cluster::start(ClusterSpec {
        voters: 3,
        controlled_network: true,
        fast_elections: true,
        env: config.env.clone(),
        ..Default::default()
    })
    .await;
    let mut schema = vec![
        json!(workloads::register::SCHEMA),
        json!(workloads::set::SCHEMA),
    ];
    schema.extend(workloads::bank::schema().into_iter().map(Value::from));
    schema.extend(workloads::append::SCHEMA.iter().map(|s| json!(s)));
    schema.extend(workloads::pgbank::schema().into_iter().map(Value::from));
    cluster.execute(0, Value::Array(schema)).await;

    let start = Instant::now();
    let targets = Targets::new((0..cluster.nodes.len()).map(|p| cluster.url(p)).collect());
    let context = Arc::new(RunContext {
        client: DbClient::new(),
        targets: targets.clone(),
        pg_ports: (0..cluster.nodes.len())
            .map(|p| (cluster.url(p), cluster.nodes[p].pg_port))
            .collect(),
        seed: config.seed,
        start,
        deadline: start + config.duration,
    });
    let register = workloads::register::Workload::new(&context);
    let bank = workloads::bank::Workload::new(&context);
    let set = workloads::set::Workload::new(&context);
    let append = workloads::append::Workload::new(&context);
    let pgbank = workloads::pgbank::Workload::new(&context);
    let clients = {
        let (context, register, bank, set, append, pgbank) = (
            context.clone(),
            register.clone(),
            bank.clone(),
            set.clone(),
            append.clone(),
            pgbank.clone(),
        );
        tokio::spawn(async move {
            tokio::join!(
                workloads::run_clients(&context, 4, |c, id| register.clone().client(c, id)),
                workloads::run_clients(&context, 2, |c, id| bank.clone().client(c, id)),
                workloads::run_clients(&context, 2, |c, id| set.clone().client(c, id)),
                workloads::run_clients(&context, 2, |c, id| append.clone().client(c, id)),
                workloads::run_clients(&context, 2, |c, id| pgbank.clone().client(c, id)),
            );
        })
    };
    let mut nemesis = Nemesis::new(config.seed, &config.faults, 3, start);
    nemesis.run(&mut cluster, &targets, context.deadline).await;
    clients.await.expect("workload clients");

    let mut summaries = Vec::new();
    let mut violations = Vec::new();
    let mut record = |result: Result<String, String>| match result {
        Ok(summary) => summaries.push(summary),
        Err(violation) => violations.push(violation),
    };
    record(register.check());
    record(bank.check(&context).await);
    record(set.check(&context).await);
    record(append.check(&context).await);
    record(pgbank.check(&context).await);
    record(replicas_identical(&cluster).await);
    RunReport {
        seed: config.seed,
        summaries,
        violations,
        fault_log: nemesis.log,
        faults_injected: nemesis.faults_injected,
    }
}

/// Once healed, every running member converges on the same content (SHA-256 of every table).
async fn replicas_identical(cluster: &Cluster) -> Result<String, String> {
    let running: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&p| cluster.is_running(p))
        .collect();
    let leader = cluster.leader(Duration::from_secs(30)).await;
    // A strong read goes through the log: everything acknowledged before it is committed.
    cluster
        .query(leader, "SELECT 1", "level=strong")
        .await
        .map_err(|e| format!("replicas: strong read on the leader failed: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut digests = Vec::new();
        for &node in &running {
            let mut hasher = Sha256::new();
            for table in TABLES {
                let dump = cluster
                    .query(
                        node,
                        &format!("SELECT * FROM {table} ORDER BY rowid"),
                        "level=none",
                    )
                    .await
                    .unwrap_or_else(Value::String);
                hasher.update(dump.to_string().as_bytes());
            }
            digests.push(hex::encode(hasher.finalize()));
        }
        if digests.windows(2).all(|w| w[0] == w[1]) {
            return Ok(format!(
                "replicas: {} nodes hold identical data (sha256 {})",
                running.len(),
                &digests[0][..16]
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "replicas differ 30 s after healing: {:?}",
                running
                    .iter()
                    .map(|&p| cluster.nodes[p].id)
                    .zip(digests)
                    .collect::<Vec<_>>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_and_require_no_violation(seed: u64, duration: Duration) {
    let report = run(RunConfig {
        seed,
        duration,
        faults: ALL_FAULTS.to_vec(),
        env: Vec::new(),
    })
    .await;
    println!("{}", report.describe());
    assert!(
        report.violations.is_empty(),
        "consistency violated — replay with seed {}:\n{}",
        report.seed,
        report.describe()
    );
    assert!(report.faults_injected > 0, "no fault was injected");
}

/// CI's short randomized runs: a fixed seed each.
const CI_RUN: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_seed_1_keeps_every_invariant_under_faults() {
    run_and_require_no_violation(1, CI_RUN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_seed_2_keeps_every_invariant_under_faults() {
    run_and_require_no_violation(2, CI_RUN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_seed_3_keeps_every_invariant_under_faults() {
    run_and_require_no_violation(3, CI_RUN).await;
}

/// The bank over a database sharded four ways: transfers between groups commit through
/// two-phase commit while nodes are killed, paused and partitioned, leaders isolated, and
/// consistent backups (cuts) are taken through any node. Once healed, the money is all
/// there, every acknowledged transfer applied whole, and no group holds a prepared
/// transaction (the resolver finished what coordinators left); then the newest cut, and a
/// moment between cuts, restore a bank whose balances are the ledger's, every transfer whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_sharded_bank_commits_across_groups_atomically_under_faults() {
    let seed = 4;
    let backups = tempfile::tempdir().expect("a backup directory");
    let mut cluster = Cluster::start(ClusterSpec {
        voters: 3,
        controlled_network: true,
        fast_elections: true,
        extra_args: vec![
            format!("--backup-target={}", backups.path().display()),
            "--backup-archive-log".into(),
        ],
        ..Default::default()
    })
    .await;
    let settle = Duration::from_secs(30);
    cluster
        .execute_until_ok(0, "", workloads::shardbank::create(), settle)
        .await;
    cluster
        .execute_until_ok(0, "db=ledger", workloads::shardbank::schema(), settle)
        .await;
    let start = Instant::now();
    let targets = Targets::new((0..cluster.nodes.len()).map(|p| cluster.url(p)).collect());
    let context = Arc::new(RunContext {
        client: DbClient::new(),
        targets: targets.clone(),
        pg_ports: Default::default(),
        seed,
        start,
        deadline: start + CI_RUN,
    });
    let bank = workloads::shardbank::Workload::new(&context);
    let clients = {
        let (context, bank) = (context.clone(), bank.clone());
        tokio::spawn(async move {
            workloads::run_clients(&context, 3, |c, id| bank.clone().client(c, id)).await;
        })
    };
    let faults = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::IsolateLeader,
    ];
    let cuts = tokio::spawn(take_cuts(
        (0..cluster.nodes.len()).map(|p| cluster.url(p)).collect(),
        context.deadline,
    ));
    let mut nemesis = Nemesis::new(seed, &faults, 3, start);
    nemesis.run(&mut cluster, &targets, context.deadline).await;
    clients.await.expect("workload clients");
    let cuts = cuts.await.expect("the cut taker");
    let mut violations = Vec::new();
    let mut summaries = Vec::new();
    for result in [
        bank.check(&context).await,
        none_prepared(&cluster, "ledger").await,
        restores_keep_the_bank_whole(&cluster, &context, &cuts).await,
    ] {
        match result {
            Ok(summary) => summaries.push(summary),
            Err(violation) => violations.push(violation),
        }
    }
    let report = RunReport {
        seed,
        summaries,
        violations,
        fault_log: nemesis.log,
        faults_injected: nemesis.faults_injected,
    };
    println!("{}", report.describe());
    assert!(report.violations.is_empty(), "{}", report.describe());
    assert!(report.faults_injected > 0, "no fault was injected");
}

/// Resharding under faults: the sharded bank and a set in the same database while
/// `ALTER DATABASE … SET (shards = 8)` grows it from 4 groups and the nemesis kills and
/// pauses nodes (each leading some of the groups moves run between, and one the catalog,
/// whose leader runs the moves). Once healed the resharding finishes, the bank is whole and
/// every acknowledged insert is present exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_resharding_keeps_the_bank_and_the_set_whole_under_kills() {
    let seed = 5;
    let mut cluster = Cluster::start(ClusterSpec {
        voters: 3,
        controlled_network: true,
        fast_elections: true,
        ..Default::default()
    })
    .await;
    let settle = Duration::from_secs(30);
    let db = workloads::shardbank::DATABASE;
    cluster
        .execute_until_ok(0, "", workloads::shardbank::create(), settle)
        .await;
    let mut schema = workloads::shardbank::schema();
    if let Some(statements) = schema.as_array_mut() {
        statements.push(json!(workloads::set::SCHEMA));
        statements.push(json!("SELECT shoal_distribute('set_elements', 'v')"));
    }
    cluster
        .execute_until_ok(0, &format!("db={db}"), schema, settle)
        .await;
    let start = Instant::now();
    let urls: Vec<String> = (0..cluster.nodes.len()).map(|p| cluster.url(p)).collect();
    let targets = Targets::new(urls.clone());
    let context = Arc::new(RunContext {
        client: DbClient::new(),
        targets: targets.clone(),
        pg_ports: Default::default(),
        seed,
        start,
        deadline: start + CI_RUN,
    });
    let bank = workloads::shardbank::Workload::new(&context);
    let set = workloads::set::Workload::in_database(&context, Some(db));
    let clients = {
        let (context, bank, set) = (context.clone(), bank.clone(), set.clone());
        tokio::spawn(async move {
            tokio::join!(
                workloads::run_clients(&context, 3, |c, id| bank.clone().client(c, id)),
                workloads::run_clients(&context, 2, |c, id| set.clone().client(c, id)),
            );
        })
    };
    let alter = tokio::spawn(reshard_ledger(urls.clone(), 8, start + CI_RUN));
    let mut nemesis = Nemesis::new(
        seed,
        &[FaultKind::Kill, FaultKind::Pause, FaultKind::IsolateLeader],
        3,
        start,
    );
    nemesis.run(&mut cluster, &targets, context.deadline).await;
    clients.await.expect("workload clients");
    let altered = alter.await.expect("the ALTER client");
    let mut violations = Vec::new();
    let mut summaries = vec![format!("ALTER DATABASE accepted after {altered:?}")];
    for result in [
        resharding_finished(&urls, 8).await,
        bank.check(&context).await,
        set.check(&context).await,
        none_prepared(&cluster, db).await,
    ] {
        match result {
            Ok(summary) => summaries.push(summary),
            Err(violation) => violations.push(violation),
        }
    }
    let report = RunReport {
        seed,
        summaries,
        violations,
        fault_log: nemesis.log,
        faults_injected: nemesis.faults_injected,
    };
    println!("{}", report.describe());
    assert!(report.violations.is_empty(), "{}", report.describe());
    assert!(report.faults_injected > 0, "no fault was injected");
}

/// Sends `ALTER DATABASE ledger SET (shards = N)` a second into the run, through the nodes in
/// turn until one accepts it; how long after the start that was.
async fn reshard_ledger(urls: Vec<String>, shards: u32, deadline: Instant) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    let statement = json!([format!("ALTER DATABASE ledger SET (shards = {shards})")]);
    for url in urls.iter().cycle() {
        if Instant::now() > deadline {
            return None;
        }
        let answer = http
            .post(format!("{url}/db/execute?timeout=10s"))
            .json(&statement)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        if let Ok(answer) = answer
            && answer.status().is_success()
            && let Ok(body) = answer.json::<Value>().await
            && body["results"][0].get("error").is_none()
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Whether `ledger` reached `shards` groups with no resharding step left within two minutes
/// of the faults healing.
async fn resharding_finished(urls: &[String], shards: i64) -> Result<String, String> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let healed = Instant::now();
    let mut last = Value::Null;
    for url in urls.iter().cycle() {
        let answer = http
            .post(format!("{url}/db/query"))
            .json(&json!(["SHOW DATABASES"]))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(answer) = answer
            && let Ok(body) = answer.json::<Value>().await
        {
            let result = &body["results"][0];
            let columns = result["columns"].as_array().cloned().unwrap_or_default();
            let at = |name: &str| columns.iter().position(|c| c == name);
            if let (Some(shards_at), Some(steps_at)) = (at("shards"), at("resharding_steps"))
                && let Some(row) = result["values"]
                    .as_array()
                    .and_then(|rows| rows.iter().find(|row| row[0] == "ledger"))
            {
                last = row.clone();
                if row[shards_at] == shards && row[steps_at] == 0 {
                    return Ok(format!(
                        "resharding: ledger on {shards} groups, done {} ms after healing",
                        healed.elapsed().as_millis()
                    ));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "resharding did not finish within 120 s of healing: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err("no node to ask".into())
}

/// The cuts a client took of the sharded bank while the faults ran, and the moments
/// between them.
struct CutsTaken {
    ids: Vec<String>,
    /// A moment after each cut taken (before the next attempt).
    moments: Vec<String>,
    attempts: usize,
}

/// Takes a cut of the sharded bank through the nodes in turn, every two seconds until
/// `deadline`; a node that is down or paused, or a group without a leader, fails the
/// attempt (counted).
async fn take_cuts(urls: Vec<String>, deadline: Instant) -> CutsTaken {
    let http = reqwest::Client::new();
    let mut taken = CutsTaken {
        ids: Vec::new(),
        moments: Vec::new(),
        attempts: 0,
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    while Instant::now() + Duration::from_secs(2) < deadline {
        let url = format!(
            "{}/backup?db={}",
            urls[taken.attempts % urls.len()],
            workloads::shardbank::DATABASE
        );
        taken.attempts += 1;
        let answer = http
            .post(&url)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        if let Ok(response) = answer
            && response.status().is_success()
            && let Ok(body) = response.json::<Value>().await
            && let Some(id) = body["cut"]["cut_id"].as_str()
        {
            taken.ids.push(id.to_string());
            tokio::time::sleep(Duration::from_millis(700)).await;
            taken
                .moments
                .push(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    taken
}

/// Restores the newest cut, then the moment after the first, each into the healed cluster,
/// and checks the bank whole after each.
async fn restores_keep_the_bank_whole(
    cluster: &Cluster,
    context: &RunContext,
    cuts: &CutsTaken,
) -> Result<String, String> {
    let (Some(newest), Some(moment)) = (cuts.ids.last(), cuts.moments.first()) else {
        return Err(format!(
            "no cut of the sharded bank was taken in {} attempts under faults",
            cuts.attempts
        ));
    };
    let database = workloads::shardbank::DATABASE;
    let mut restored = Vec::new();
    for (what, query) in [
        (format!("cut {newest}"), format!("id={newest}")),
        (format!("the moment {moment}"), format!("to_time={moment}")),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = cluster
                .post(
                    0,
                    &format!("/backup/restore?db={database}&{query}"),
                    json!([]),
                )
                .await;
            if status == 200 {
                break;
            }
            // The archives catch up with the healed cluster within seconds; a group whose
            // load found no leader yet (a node just restarted) asks to restore again.
            let text = body.to_string();
            let again = text.contains("known complete") || text.contains("restore again");
            if !again || Instant::now() > deadline {
                return Err(format!("restoring {what}: {status} {body}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (whole, _) = workloads::shardbank::whole(context)
            .await
            .map_err(|violation| format!("restored to {what}: {violation}"))?;
        restored.push(format!("{what}: {whole}"));
    }
    Ok(format!(
        "restores: {} cuts taken in {} attempts under faults; {}",
        cuts.ids.len(),
        cuts.attempts,
        restored.join("; ")
    ))
}

/// Within 30 s of healing, no group of `database` on any running node holds a prepared
/// transaction.
async fn none_prepared(cluster: &Cluster, database: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut holding = Vec::new();
        let mut groups = 0;
        for node in (0..cluster.nodes.len()).filter(|&p| cluster.is_running(p)) {
            let status = cluster.get_json(node, "/status").await?;
            for group in status["groups"].as_array().into_iter().flatten() {
                if group["database"] == database {
                    groups += 1;
                    if group["holds_prepared"] != false {
                        holding.push(format!("node {} group {}", node + 1, group["group"]));
                    }
                }
            }
        }
        if holding.is_empty() && groups > 0 {
            return Ok(format!(
                "two-phase commit: no prepared transaction left in {groups} group replicas"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "prepared transactions left unresolved 30 s after healing: {holding:?}                  ({groups} group replicas seen)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The checkers can fail: a build that acknowledges writes before they commit, whose leader
/// is cut off from its followers, loses acknowledged writes — and is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkers_catch_a_build_that_acknowledges_writes_before_commit() {
    let report = run(RunConfig {
        seed: 7,
        duration: Duration::from_secs(10),
        faults: vec![FaultKind::IsolateLeader],
        env: vec![(
            shoal::unsafe_faults::ENV_VAR.to_string(),
            "ack-before-commit".to_string(),
        )],
    })
    .await;
    println!("{}", report.describe());
    assert!(
        !report.violations.is_empty(),
        "the checkers accepted a build that acknowledges uncommitted writes:\n{}",
        report.describe()
    );
}

/// Soak: `SHOAL_SOAK_SECONDS` per seed (default 600), seeds from `SHOAL_SOAK_SEEDS`
/// (comma-separated, default 101,102,103).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak run: minutes per seed; run with --ignored"]
async fn soak() {
    let seconds: u64 = std::env::var("SHOAL_SOAK_SECONDS")
        .map(|s| {
            s.parse()
                .expect("SHOAL_SOAK_SECONDS is a number of seconds")
        })
        .unwrap_or(600);
    let seeds: Vec<u64> = std::env::var("SHOAL_SOAK_SEEDS")
        .unwrap_or_else(|_| "101,102,103".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SHOAL_SOAK_SEEDS lists numbers"))
        .collect();
    for seed in seeds {
        run_and_require_no_violation(seed, Duration::from_secs(seconds)).await;
    }
}
