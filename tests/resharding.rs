//! Resharding as operators use it: `ALTER DATABASE … SET (shards = N)` grows or shrinks a
//! sharded database online while clients keep writing and reading — every transfer whole,
//! every acknowledged row present exactly once, no reader at any consistency level seeing a
//! row twice or missing one — through the kill of the node leading the catalog (which runs
//! the moves); `CANCEL RESHARDING`; refusals that say why; and backups of a resharded
//! database restored, from a cut and to a moment, into groups that serve by its map.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, ClusterSpec, execute_ok};

const SETTLE: Duration = Duration::from_secs(30);
const ACCOUNTS: i64 = 64;

/// The first result of query `sql` on `shop` through `node` at read consistency `level`.
async fn query_at(cluster: &Cluster, node: usize, level: &str, sql: &str) -> Option<Value> {
    let (status, body) = cluster
        .post(
            node,
            &format!("/db/query?db=shop&level={level}&timeout=5s"),
            json!([sql]),
        )
        .await;
    (status == 200).then(|| body["results"][0].clone())
}

async fn values(cluster: &Cluster, node: usize, sql: &str) -> Value {
    let result = query_at(cluster, node, "strong", sql)
        .await
        .unwrap_or_else(|| panic!("{sql} failed on node {}", node + 1));
    assert!(result.get("error").is_none(), "{sql}: {result}");
    result["values"].clone()
}

/// `SHOW DATABASES`' row of `shop` through `node`: (shards, resharding steps left).
async fn shop_shards(cluster: &Cluster, node: usize) -> Option<(i64, i64)> {
    let (status, body) = cluster
        .post(node, "/db/query", json!(["SHOW DATABASES"]))
        .await;
    if status != 200 {
        return None;
    }
    let result = &body["results"][0];
    let columns = result["columns"].as_array()?;
    let at = |name: &str| columns.iter().position(|c| c == name);
    let (shards, steps) = (at("shards")?, at("resharding_steps")?);
    let row = result["values"]
        .as_array()?
        .iter()
        .find(|row| row[0] == "shop")?;
    Some((row[shards].as_i64()?, row[steps].as_i64()?))
}

/// Waits until `shop` has `shards` groups and no resharding step left.
async fn await_resharded(cluster: &Cluster, node: usize, shards: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let seen = shop_shards(cluster, node).await;
        if seen == Some((shards, 0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shop did not reach {shards} shards (last seen {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A 3-node cluster with `shop` over `shards` groups: `accounts` (64 of 100, distributed by
/// id), `events` (distributed by id, empty) and `currencies` (a reference table of 3 rows).
async fn bank(shards: u32) -> Cluster {
    bank_on(
        ClusterSpec {
            voters: 3,
            ..Default::default()
        },
        shards,
    )
    .await
}

/// [`bank`] on a cluster started as `spec` says.
async fn bank_on(spec: ClusterSpec, shards: u32) -> Cluster {
    let cluster = Cluster::start(spec).await;
    execute_ok(
        &cluster,
        0,
        "",
        json!([format!("CREATE DATABASE shop WITH (shards = {shards})")]),
    )
    .await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            "SELECT shoal_distribute('accounts', 'id')",
            "CREATE TABLE events (id INTEGER PRIMARY KEY, note TEXT NOT NULL)",
            "SELECT shoal_distribute('events', 'id')",
            "CREATE TABLE currencies (code TEXT PRIMARY KEY, name TEXT NOT NULL)",
            "SELECT shoal_reference('currencies')",
            "CREATE INDEX accounts_by_balance ON accounts (balance)",
        ]),
    )
    .await;
    let mut rows: Vec<Value> = (1..=ACCOUNTS)
        .map(|id| json!(["INSERT INTO accounts (id, balance) VALUES (?, 100)", id]))
        .collect();
    rows.push(json!(
        "INSERT INTO currencies VALUES ('EUR', 'euro'), ('USD', 'dollar'), ('JPY', 'yen')"
    ));
    execute_ok(&cluster, 0, "shop", Value::Array(rows)).await;
    cluster
}

/// Whether a transfer of `amount` from `from` to `to` through `node` was acknowledged.
async fn transfer(cluster: &Cluster, node: usize, from: i64, to: i64, amount: i64) -> bool {
    let (status, body) = cluster
        .post(
            node,
            "/db/execute?db=shop&transaction&timeout=10s",
            json!([
                [
                    "UPDATE accounts SET balance = balance - ? WHERE id = ?",
                    amount,
                    from
                ],
                [
                    "UPDATE accounts SET balance = balance + ? WHERE id = ?",
                    amount,
                    to
                ]
            ]),
        )
        .await;
    support::every_statement_succeeded(status, &body)
}

/// What the workers did while the database was resharded.
#[derive(Default)]
struct Seen {
    transfers: u32,
    /// Events whose insert was acknowledged, and those whose outcome is unknown.
    acknowledged: BTreeSet<i64>,
    unknown: BTreeSet<i64>,
    /// Reads answered, and what any of them saw wrong.
    reads: u32,
    wrong: Vec<String>,
}

/// Transfer, insert and read workers over `nodes`, until stopped.
struct Workload {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Seen>>,
}

impl Workload {
    fn start(cluster: &Arc<Cluster>, nodes: &[usize]) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let nodes: Vec<usize> = nodes.to_vec();
        for worker in 0..2i64 {
            let (cluster, stop, nodes) = (cluster.clone(), stop.clone(), nodes.clone());
            workers.push(tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut step = worker;
                while !stop.load(Ordering::Relaxed) {
                    let from = step % ACCOUNTS + 1;
                    let to = (step * 7 + 3) % ACCOUNTS + 1;
                    let node = nodes[step as usize % nodes.len()];
                    step += 1;
                    if from != to && transfer(&cluster, node, from, to, 1).await {
                        seen.transfers += 1;
                    }
                }
                seen
            }));
        }
        let (cluster_, stop_, nodes_) = (cluster.clone(), stop.clone(), nodes.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut id = 0i64;
            while !stop_.load(Ordering::Relaxed) {
                id += 1;
                let node = nodes_[id as usize % nodes_.len()];
                let (status, body) = cluster_
                    .post(
                        node,
                        "/db/execute?db=shop&timeout=10s",
                        json!([["INSERT INTO events (id, note) VALUES (?, 'e')", id]]),
                    )
                    .await;
                if status == 200 && body["results"][0].get("error").is_none() {
                    seen.acknowledged.insert(id);
                } else {
                    seen.unknown.insert(id);
                }
            }
            seen
        }));
        let (cluster, stop_, nodes) = (cluster.clone(), stop.clone(), nodes.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let levels = ["none", "weak", "linearizable", "strong"];
            let mut turn = 0usize;
            while !stop_.load(Ordering::Relaxed) {
                turn += 1;
                let level = levels[turn % levels.len()];
                let node = nodes[turn % nodes.len()];
                let sql = "SELECT count(*), count(DISTINCT id), \
                           (SELECT count(*) FROM accounts JOIN currencies ON code = 'EUR') \
                           FROM accounts";
                let Some(result) = query_at(&cluster, node, level, sql).await else {
                    continue;
                };
                if result.get("error").is_some() {
                    continue;
                }
                seen.reads += 1;
                let row = &result["values"][0];
                if row != &json!([ACCOUNTS, ACCOUNTS, ACCOUNTS]) {
                    seen.wrong
                        .push(format!("{level} read through node {}: {row}", node + 1));
                }
            }
            seen
        }));
        Workload { stop, workers }
    }

    async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Seen::default();
        for worker in self.workers {
            let seen = worker.await.unwrap();
            all.transfers += seen.transfers;
            all.acknowledged.extend(seen.acknowledged);
            all.unknown.extend(seen.unknown);
            all.reads += seen.reads;
            all.wrong.extend(seen.wrong);
        }
        all
    }
}

/// The node whose `/status` says it leads the catalog group.
async fn catalog_leader(cluster: &Cluster) -> usize {
    fn find(value: &Value) -> Option<u64> {
        match value {
            Value::Object(map) if map.get("catalog") == Some(&json!(true)) => {
                map.get("leader")?.as_u64()
            }
            Value::Object(map) => map.values().find_map(find),
            Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        for node in 0..cluster.nodes.len() {
            if let Ok(status) = cluster.get_json(node, "/status").await
                && let Some(id) = find(&status)
                && let Some(at) = cluster.nodes.iter().position(|n| n.id == id)
            {
                return at;
            }
        }
        assert!(Instant::now() < deadline, "no catalog leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The slot ranges each group of `shop` owns, as `/status` of `node` reports them.
async fn owned_ranges(cluster: &Cluster, node: usize) -> Vec<(u64, Value)> {
    let status = cluster.get_json(node, "/status").await.unwrap();
    let mut found = Vec::new();
    fn walk(value: &Value, found: &mut Vec<(u64, Value)>) {
        match value {
            Value::Object(map) if map.get("database") == Some(&json!("shop")) => {
                if let Some(group) = map.get("group").and_then(Value::as_u64) {
                    found.push((group, map["shard"]["slot_ranges"].clone()));
                }
            }
            Value::Object(map) => map.values().for_each(|v| walk(v, found)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(&status, &mut found);
    found.sort_by_key(|(group, _)| *group);
    found
}

/// The pauses of the moves, from the nodes' logs ("slots moved … pause_ms=N").
fn pauses_logged(cluster: &Cluster) -> Vec<u64> {
    let mut pauses = Vec::new();
    for node in &cluster.nodes {
        let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("slots moved")) {
            if let Some(ms) = line
                .split("pause_ms=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
            {
                pauses.push(ms);
            }
        }
    }
    pauses.sort_unstable();
    pauses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_from_four_to_eight_shards_under_load_and_a_killed_catalog_leader_keeps_every_row_once()
 {
    let cluster = Arc::new(bank(4).await);
    let killed = catalog_leader(&cluster).await;
    let living: Vec<usize> = (0..3).filter(|n| *n != killed).collect();
    let workload = Workload::start(&cluster, &living);
    tokio::time::sleep(Duration::from_millis(500)).await;

    execute_ok(
        &cluster,
        living[0],
        "",
        json!(["ALTER DATABASE shop SET (shards = 8)"]),
    )
    .await;
    // Some steps done, then the node running them dies: the next catalog leader resumes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = shop_shards(&cluster, living[0]).await;
        if let Some((_, steps)) = seen
            && steps <= 30
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no resharding progress: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.nodes[killed].signal(libc::SIGKILL);
    await_resharded(&cluster, living[0], 8, Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = workload.stop().await;

    assert!(
        seen.wrong.is_empty(),
        "reads saw rows twice or missed: {:?}",
        seen.wrong
    );
    assert!(
        seen.reads > 0 && seen.transfers > 0,
        "the workload ran: {} reads",
        seen.reads
    );
    let node = living[0];
    let total = values(
        &cluster,
        node,
        "SELECT sum(balance), count(*), count(DISTINCT id) FROM accounts",
    )
    .await;
    assert_eq!(
        total,
        json!([[ACCOUNTS * 100, ACCOUNTS, ACCOUNTS]]),
        "every transfer whole"
    );
    let events = values(&cluster, node, "SELECT id FROM events ORDER BY id").await;
    let present: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_i64().unwrap())
        .collect();
    let distinct: BTreeSet<i64> = present.iter().copied().collect();
    assert_eq!(distinct.len(), present.len(), "no event twice");
    let lost: Vec<_> = seen.acknowledged.difference(&distinct).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
    assert!(
        distinct
            .iter()
            .all(|id| seen.acknowledged.contains(id) || seen.unknown.contains(id)),
        "an event nobody wrote"
    );
    // Every one of the eight groups owns slots, and holds the reference table and the schema.
    let ranges = owned_ranges(&cluster, node).await;
    let owning = ranges
        .iter()
        .filter(|(_, r)| r.as_array().is_some_and(|r| !r.is_empty()))
        .count();
    assert_eq!(owning, 8, "{ranges:?}");
    let joined = values(
        &cluster,
        node,
        "SELECT count(*) FROM accounts JOIN currencies ON code = 'USD' WHERE balance >= 0",
    )
    .await;
    assert_eq!(joined, json!([[ACCOUNTS]]));
    let pauses = pauses_logged(&cluster);
    eprintln!(
        "resharding 4→8: {} transfers, {} events, {} reads during it; {} moves, pause ms \
         p50 {:?} p99 {:?} max {:?}",
        seen.transfers,
        seen.acknowledged.len(),
        seen.reads,
        pauses.len(),
        pauses.get(pauses.len() / 2),
        pauses.get(pauses.len() * 99 / 100),
        pauses.last()
    );

    // The killed node comes back and answers from the resharded map.
    let mut cluster = Arc::try_unwrap(cluster).ok().unwrap();
    cluster.restart(killed).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(result) = query_at(
            &cluster,
            killed,
            "none",
            "SELECT count(*), sum(balance) FROM accounts",
        )
        .await
            && result["values"] == json!([[ACCOUNTS, ACCOUNTS * 100]])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node never answered whole"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_moves_every_row_to_the_groups_that_stay_and_refusals_say_why() {
    let cluster = bank(4).await;
    // Refusals name what is wrong and change nothing.
    execute_ok(&cluster, 0, "", json!(["CREATE DATABASE plain"])).await;
    for (statement, expected) in [
        ("ALTER DATABASE plain SET (shards = 3)", "not sharded"),
        ("ALTER DATABASE shop SET (shards = 1)", "at least 2 shards"),
        ("ALTER DATABASE nowhere SET (shards = 3)", "does not exist"),
    ] {
        let (_, body) = cluster.post(0, "/db/execute", json!([statement])).await;
        let text = body.to_string();
        assert!(text.contains(expected), "{statement}: {text}");
    }
    assert_eq!(shop_shards(&cluster, 0).await, Some((4, 0)));

    execute_ok(
        &cluster,
        1,
        "",
        json!(["ALTER DATABASE shop SET (shards = 2)"]),
    )
    .await;
    let (_, body) = cluster
        .post(
            0,
            "/db/execute",
            json!(["ALTER DATABASE shop SET (shards = 5)"]),
        )
        .await;
    let text = body.to_string();
    assert!(text.contains("being resharded already"), "{text}");
    await_resharded(&cluster, 0, 2, Duration::from_secs(120)).await;
    let total = values(
        &cluster,
        2,
        "SELECT sum(balance), count(*), count(DISTINCT id) FROM accounts",
    )
    .await;
    assert_eq!(total, json!([[ACCOUNTS * 100, ACCOUNTS, ACCOUNTS]]));
    let ranges = owned_ranges(&cluster, 0).await;
    let owning: Vec<u64> = ranges
        .iter()
        .filter(|(_, r)| r.as_array().is_some_and(|r| !r.is_empty()))
        .map(|(g, _)| *g)
        .collect();
    assert_eq!(owning.len(), 2, "{ranges:?}");
    // Writes and pinned reads keep working on the two groups left.
    execute_ok(
        &cluster,
        1,
        "shop",
        json!([["UPDATE accounts SET balance = balance + 1 WHERE id = ?", 7]]),
    )
    .await;
    let one = values(&cluster, 0, "SELECT balance FROM accounts WHERE id = 7").await;
    assert_eq!(one, json!([[101]]));

    // A resharding started and cancelled leaves the database whole wherever it stopped.
    execute_ok(
        &cluster,
        0,
        "",
        json!(["ALTER DATABASE shop SET (shards = 6)"]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["ALTER DATABASE shop CANCEL RESHARDING"]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while shop_shards(&cluster, 0)
        .await
        .is_none_or(|(_, steps)| steps > 0)
    {
        assert!(
            Instant::now() < deadline,
            "the step under way never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = values(&cluster, 2, "SELECT sum(balance), count(*) FROM accounts").await;
    assert_eq!(total, json!([[ACCOUNTS * 100 + 1, ACCOUNTS]]));
}

/// A 3-node cluster with `shop` over 2 groups holding `items` (distributed by id), empty.
async fn items_shop() -> Cluster {
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        ..Default::default()
    })
    .await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE DATABASE shop WITH (shards = 2)"]),
    )
    .await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            "SELECT shoal_distribute('items', 'id')",
        ]),
    )
    .await;
    cluster
}

/// Inserts an item of value `v` for each of `ids`, in batches of 500.
async fn insert_items(cluster: &Cluster, ids: &[i64], v: &str) {
    for chunk in ids.chunks(500) {
        let inserts: Vec<Value> = chunk
            .iter()
            .map(|id| json!(["INSERT INTO items (id, v) VALUES (?, ?)", id, v]))
            .collect();
        execute_ok(cluster, 0, "shop", Value::Array(inserts)).await;
    }
}

/// `count` integer keys from `from` on whose slot lies in `[first, end)`.
fn keys_in_slots(first: u32, end: u32, count: usize, from: i64) -> Vec<i64> {
    use shoal::types::value::SqlValue;
    (from..)
        .filter(|id| {
            shoal::shard::slot::slot_of_stored(&SqlValue::Integer(*id))
                .is_ok_and(|slot| (first..end).contains(&slot))
        })
        .take(count)
        .collect()
}

/// The moves `ALTER DATABASE shop BALANCE DRY RUN` answers through `node`: (from, to, rows).
async fn balance_dry_run(cluster: &Cluster, node: usize) -> Vec<(i64, i64, i64)> {
    balance_dry_run_by(cluster, node, "rows").await
}

/// The moves `ALTER DATABASE shop BALANCE BY <by> DRY RUN` answers through `node`: (from,
/// to, weight).
async fn balance_dry_run_by(cluster: &Cluster, node: usize, by: &str) -> Vec<(i64, i64, i64)> {
    let (status, body) = cluster
        .post(
            node,
            "/db/query",
            json!([format!("ALTER DATABASE shop BALANCE BY {by} DRY RUN")]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["results"][0];
    assert!(result.get("error").is_none(), "{result}");
    assert_eq!(
        result["columns"],
        json!(["from_group", "to_group", "first_slot", "last_slot", by])
    );
    // (rqlite's JSON leaves `values` out of an empty result.)
    result["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|row| {
            (
                row[0].as_i64().unwrap(),
                row[1].as_i64().unwrap(),
                row[4].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancing_moves_rows_from_the_fullest_group_and_a_dry_run_only_tells() {
    let cluster = items_shop().await;
    // Nine in ten rows in the first group's slots (the lower half).
    let half = shoal::shard::slot::SLOTS / 2;
    let mut ids = keys_in_slots(0, half, 900, 1);
    ids.extend(keys_in_slots(half, shoal::shard::slot::SLOTS, 100, 1));
    insert_items(&cluster, &ids, "x").await;
    let before = owned_ranges(&cluster, 0).await;

    let planned = balance_dry_run(&cluster, 1).await;
    assert!(!planned.is_empty(), "a skewed database gets a plan");
    let first_group = before[0].0 as i64;
    assert!(
        planned
            .iter()
            .all(|(from, to, _)| *from == first_group && *to != first_group)
    );
    let rows: i64 = planned.iter().map(|(_, _, rows)| rows).sum();
    assert!(
        (300..=500).contains(&rows),
        "about 400 rows move: {planned:?}"
    );
    // The dry run changed nothing.
    assert_eq!(shop_shards(&cluster, 0).await, Some((2, 0)));
    assert_eq!(owned_ranges(&cluster, 0).await, before);

    let (status, body) = cluster
        .post(2, "/db/execute", json!(["ALTER DATABASE shop BALANCE"]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["rows_affected"], json!(planned.len()));
    await_resharded(&cluster, 0, 2, Duration::from_secs(60)).await;
    assert!(
        balance_dry_run(&cluster, 0).await.is_empty(),
        "balanced: nothing more to move"
    );
    assert_ne!(owned_ranges(&cluster, 0).await, before, "slots moved");
    let total = values(
        &cluster,
        1,
        "SELECT count(*), count(DISTINCT id) FROM items",
    )
    .await;
    assert_eq!(total, json!([[1000, 1000]]));
    // A pinned read finds a moved row where it went.
    let moved = keys_in_slots(0, half, 1, 1)[0];
    let one = values(
        &cluster,
        2,
        &format!("SELECT v FROM items WHERE id = {moved}"),
    )
    .await;
    assert_eq!(one, json!([["x"]]));
}

/// Restores `shop` (`query`: `id=<cut>` or `to_time=<moment>`) through node 1; a restore to a
/// moment the archives do not reach yet is asked again, as its error says.
async fn restore_shop(cluster: &Cluster, query: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = cluster
            .post(0, &format!("/backup/restore?db=shop&{query}"), json!([]))
            .await;
        if status == 200 {
            return;
        }
        assert!(
            body.to_string().contains("known complete") && Instant::now() < deadline,
            "restoring {query}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The balances of accounts 1 to 6 and the total, read strongly through node 2.
async fn some_balances(cluster: &Cluster) -> (Value, Value) {
    (
        values(
            cluster,
            1,
            "SELECT balance FROM accounts WHERE id <= 6 ORDER BY id",
        )
        .await,
        values(cluster, 1, "SELECT sum(balance) FROM accounts").await,
    )
}

/// A cut of a database that was resharded restores — as taken, and to a moment after it —
/// into groups that go on serving routed requests: each group's slots-owner version travels
/// in its backup and through the replay of its archived log, so the restored groups answer
/// the map the catalog holds (a group restored at another version would refuse every
/// request as routed by a moved map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharded_database_restores_from_a_cut_and_to_a_moment_and_serves_by_its_map() {
    let backups = tempfile::tempdir().unwrap();
    let cluster = bank_on(
        ClusterSpec {
            voters: 3,
            extra_args: vec![
                format!("--backup-target={}", backups.path().display()),
                "--backup-archive-log".into(),
            ],
            ..Default::default()
        },
        2,
    )
    .await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["ALTER DATABASE shop SET (shards = 3)"]),
    )
    .await;
    await_resharded(&cluster, 0, 3, Duration::from_secs(120)).await;
    assert!(transfer(&cluster, 0, 1, 2, 10).await);
    let (status, body) = cluster.post(0, "/backup?db=shop", json!([])).await;
    assert_eq!(status, 200, "{body}");
    let cut = body["cut"]["cut_id"].as_str().unwrap().to_string();
    assert!(transfer(&cluster, 1, 5, 6, 7).await, "after the cut");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moment = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(transfer(&cluster, 2, 3, 4, 5).await, "after the moment");

    restore_shop(&cluster, &format!("id={cut}")).await;
    assert_eq!(
        some_balances(&cluster).await,
        (
            json!([[90], [110], [100], [100], [100], [100]]),
            json!([[ACCOUNTS * 100]])
        )
    );
    assert!(
        transfer(&cluster, 1, 1, 6, 1).await,
        "writes after the cut's restore"
    );

    restore_shop(&cluster, &format!("to_time={moment}")).await;
    assert_eq!(
        some_balances(&cluster).await,
        (
            json!([[90], [110], [100], [100], [93], [107]]),
            json!([[ACCOUNTS * 100]])
        )
    );
    assert!(
        transfer(&cluster, 2, 2, 3, 1).await,
        "writes after the moment's restore"
    );
    let one = values(&cluster, 0, "SELECT balance FROM accounts WHERE id = 3").await;
    assert_eq!(one, json!([[101]]));
}

/// `SHOW DATABASES`' `balance` column for `shop` through node 1.
async fn shop_balance_setting(cluster: &Cluster) -> String {
    let (status, body) = cluster
        .post(0, "/db/query", json!(["SHOW DATABASES"]))
        .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["results"][0];
    let at = result["columns"]
        .as_array()
        .and_then(|columns| columns.iter().position(|c| c == "balance"))
        .expect("a balance column");
    let row = result["values"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row[0] == "shop").cloned())
        .expect("shop is listed");
    row[at].as_str().unwrap().to_string()
}

/// Rows of `ids` in the slots each group owns, as `/status` of node 1 reports its ranges.
async fn rows_per_group(cluster: &Cluster, ids: &[i64]) -> Vec<(u64, usize)> {
    let ranges = owned_ranges(cluster, 0).await;
    ranges
        .iter()
        .map(|(group, owned)| {
            let owned: Vec<(u32, u32)> = owned
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|range| Some((range[0].as_u64()? as u32, range[1].as_u64()? as u32)))
                .collect();
            let rows = ids
                .iter()
                .filter(|id| {
                    let slot = shoal::shard::slot::slot_of_stored(
                        &shoal::types::value::SqlValue::Integer(**id),
                    )
                    .unwrap();
                    owned
                        .iter()
                        .any(|(first, last)| (*first..=*last).contains(&slot))
                })
                .count();
            (*group, rows)
        })
        .collect()
}

/// Balancing by writes: every node's router counts the writes it routes per bucket of slots,
/// and `BALANCE BY WRITES` sums them — a database whose rows are spread evenly but whose
/// clients write one group's slots is balanced by moving those slots, which by rows would
/// need nothing; every row stays where a pinned read finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancing_by_writes_moves_the_slots_clients_write_most() {
    let cluster = Arc::new(items_shop().await);
    let ids: Vec<i64> = (1..=2_000).collect();
    insert_items(&cluster, &ids, "x").await;
    assert!(
        balance_dry_run(&cluster, 0).await.is_empty(),
        "rows are spread evenly"
    );
    // Clients on every node update 40 items in the first quarter of the slots (the first
    // group's), 900 times in all.
    let hot = keys_in_slots(0, shoal::shard::slot::SLOTS / 4, 40, 1);
    let writers: Vec<_> = (0..3)
        .map(|node| {
            let (cluster, hot) = (cluster.clone(), hot.clone());
            tokio::spawn(async move {
                for round in 0..300 {
                    let id = hot[(round * 7 + node) % hot.len()];
                    execute_ok(
                        &cluster,
                        node,
                        "shop",
                        json!([["UPDATE items SET v = 'hot' WHERE id = ?", id]]),
                    )
                    .await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let ranges = owned_ranges(&cluster, 0).await;
    let first_group = ranges[0].0 as i64;
    let planned = balance_dry_run_by(&cluster, 1, "writes").await;
    assert!(!planned.is_empty(), "the written group's slots move");
    assert!(
        planned
            .iter()
            .all(|(from, to, _)| *from == first_group && *to != first_group),
        "{planned:?}"
    );
    let moved: i64 = planned.iter().map(|(_, _, writes)| writes).sum();
    assert!(
        moved >= 300,
        "about half the extra writes move: {planned:?}"
    );
    assert!(balance_dry_run_by(&cluster, 2, "rows").await.is_empty());

    let (status, body) = cluster
        .post(
            2,
            "/db/execute",
            json!(["ALTER DATABASE shop BALANCE BY WRITES"]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    await_resharded(&cluster, 0, 2, Duration::from_secs(60)).await;
    assert_ne!(owned_ranges(&cluster, 0).await, ranges, "slots moved");
    let total = values(
        &cluster,
        1,
        "SELECT count(*), count(DISTINCT id), sum(v = 'hot') FROM items",
    )
    .await;
    assert_eq!(total, json!([[2000, 2000, 40]]));
    let one = values(
        &cluster,
        2,
        &format!("SELECT v FROM items WHERE id = {}", hot[0]),
    )
    .await;
    assert_eq!(one, json!([["hot"]]));
}

/// Automatic balancing is off until asked for: a skewed database stays as it is over a
/// balancing period; `SET (balance = rows)` has the catalog's leader move slots by itself
/// until the groups hold about as many rows; `SET (balance = off)` stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_balancing_is_off_until_asked_for_and_then_balances_by_itself() {
    let cluster = items_shop().await;
    let half = shoal::shard::slot::SLOTS / 2;
    let mut ids = keys_in_slots(0, half, 1_800, 1);
    ids.extend(keys_in_slots(half, shoal::shard::slot::SLOTS, 200, 1));
    insert_items(&cluster, &ids, "x").await;
    assert_eq!(shop_balance_setting(&cluster).await, "off");
    let before = owned_ranges(&cluster, 0).await;
    // Longer than a balancing period (15 s): nothing moves by itself.
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(owned_ranges(&cluster, 0).await, before);
    assert_eq!(shop_shards(&cluster, 0).await, Some((2, 0)));

    execute_ok(
        &cluster,
        1,
        "",
        json!(["ALTER DATABASE shop SET (balance = rows)"]),
    )
    .await;
    assert_eq!(shop_balance_setting(&cluster).await, "rows");
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let per_group = rows_per_group(&cluster, &ids).await;
        let settled = shop_shards(&cluster, 0).await == Some((2, 0));
        // Within automatic balancing's tolerance (25 % of the mean of 1,000).
        if settled
            && per_group
                .iter()
                .all(|(_, rows)| rows.abs_diff(1_000) <= 250)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not balanced by itself: {per_group:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let total = values(
        &cluster,
        2,
        "SELECT count(*), count(DISTINCT id) FROM items",
    )
    .await;
    assert_eq!(total, json!([[2000, 2000]]));
    execute_ok(
        &cluster,
        0,
        "",
        json!(["ALTER DATABASE shop SET (balance = off)"]),
    )
    .await;
    assert_eq!(shop_balance_setting(&cluster).await, "off");
}

/// Balancing by bytes weighs the rows' values: a group holding few large rows is the heavy
/// one by bytes and the light one by rows, and each measure plans the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancing_by_bytes_weighs_values_where_by_rows_counts_them() {
    let cluster = items_shop().await;
    let half = shoal::shard::slot::SLOTS / 2;
    // The first group: 100 rows of 4 KiB; the second: 900 rows of a few bytes.
    insert_items(&cluster, &keys_in_slots(0, half, 100, 1), &"b".repeat(4096)).await;
    insert_items(
        &cluster,
        &keys_in_slots(half, shoal::shard::slot::SLOTS, 900, 1),
        "s",
    )
    .await;
    let first_group = owned_ranges(&cluster, 0).await[0].0 as i64;
    let by_rows = balance_dry_run_by(&cluster, 0, "rows").await;
    assert!(
        !by_rows.is_empty() && by_rows.iter().all(|(from, _, _)| *from != first_group),
        "by rows the second group is heavy: {by_rows:?}"
    );
    let by_bytes = balance_dry_run_by(&cluster, 1, "bytes").await;
    assert!(
        !by_bytes.is_empty() && by_bytes.iter().all(|(from, _, _)| *from == first_group),
        "by bytes the first group is heavy: {by_bytes:?}"
    );
    let bytes: i64 = by_bytes.iter().map(|(_, _, bytes)| bytes).sum();
    assert!(
        (100_000..=300_000).contains(&bytes),
        "about 45 rows of 4 KiB move: {by_bytes:?}"
    );
}

/// A move is sized before its critical section: a range holding more rows than one pause
/// should copy is split into several moves, each pausing for its own part, and every row
/// arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_holding_more_rows_than_one_pause_copies_moves_in_parts() {
    let cluster = items_shop().await;
    // 5,000 rows in the first 256 slots (the first group's), none elsewhere.
    let ids = keys_in_slots(0, 256, 5_000, 1);
    insert_items(&cluster, &ids, "x").await;
    let planned = balance_dry_run(&cluster, 0).await;
    let planned_rows: i64 = planned.iter().map(|(_, _, rows)| rows).sum();
    assert!(
        planned_rows > 2_048,
        "more than one pause's rows: {planned:?}"
    );
    execute_ok(&cluster, 1, "", json!(["ALTER DATABASE shop BALANCE"])).await;
    await_resharded(&cluster, 0, 2, Duration::from_secs(60)).await;
    let moves_made = pauses_logged(&cluster).len();
    assert!(
        moves_made > planned.len(),
        "{} planned moves ran as {moves_made}",
        planned.len()
    );
    let total = values(
        &cluster,
        2,
        "SELECT count(*), count(DISTINCT id) FROM items",
    )
    .await;
    assert_eq!(total, json!([[5000, 5000]]));
    let per_group = rows_per_group(&cluster, &ids).await;
    assert!(
        per_group.iter().all(|(_, rows)| *rows > 1_000),
        "{per_group:?}"
    );
}
