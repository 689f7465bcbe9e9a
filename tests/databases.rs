//! Many databases in one cluster, as clients use them: `CREATE DATABASE … WITH (replicas = N)`
//! over HTTP and PostgreSQL, `db=` on the HTTP API and the connection's database over
//! PostgreSQL, through every node (a node without a replica forwards), renames and drops,
//! placement spread over the nodes, a killed node, and a cluster from before the catalog.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, ClusterSpec};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

const SETTLE: Duration = Duration::from_secs(30);

fn voters(count: usize) -> ClusterSpec {
    ClusterSpec {
        voters: count,
        ..Default::default()
    }
}

/// POSTs statements to `/db/execute` with `options` (`db=…`); the status and body.
async fn execute(cluster: &Cluster, node: usize, options: &str, statements: Value) -> (u16, Value) {
    cluster
        .post(node, &format!("/db/execute?{options}"), statements)
        .await
}

/// Runs `statements` on `node` until they succeed (a new database's group may still be
/// electing, a killed node's groups re-electing); panics after [`SETTLE`].
async fn execute_ok(cluster: &Cluster, node: usize, options: &str, statements: Value) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (status, body) = execute(cluster, node, options, statements.clone()).await;
        if support::every_statement_succeeded(status, &body) {
            return body;
        }
        assert!(
            status == 503 && Instant::now() < deadline,
            "{statements} on node {} with {options}: {status} {body}",
            node + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rows of `sql` on `node` with `options`, retried while the answer is "unavailable".
async fn rows(cluster: &Cluster, node: usize, options: &str, sql: &str) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        match cluster.query(node, sql, options).await {
            Ok(values) => return values,
            Err(error) if error.starts_with("503") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("{sql} on node {} with {options}: {error}", node + 1),
        }
    }
}

/// `CREATE DATABASE name WITH (replicas = N)` through `node`, retried while unavailable.
async fn create_database(cluster: &Cluster, node: usize, name: &str, replicas: u32) {
    let sql = format!("CREATE DATABASE {name} WITH (replicas = {replicas})");
    execute_ok(cluster, node, "", json!([sql])).await;
}

/// `SHOW DATABASES` as node `node` answers it: name → (group, voters).
async fn show_databases(cluster: &Cluster, node: usize) -> BTreeMap<String, (u64, Vec<u64>)> {
    let values = rows(cluster, node, "", "SHOW DATABASES").await;
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let voters = row[4]
                .as_str()
                .unwrap()
                .split(',')
                .filter_map(|id| id.parse().ok())
                .collect();
            (
                row[0].as_str().unwrap().to_string(),
                (row[1].as_u64().unwrap(), voters),
            )
        })
        .collect()
}

/// A tokio-postgres session with `node`, connected to `database`.
async fn pg(
    cluster: &Cluster,
    node: usize,
    database: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let config = format!(
        "host=127.0.0.1 port={} user=shoal dbname={database} connect_timeout=5",
        cluster.nodes[node].pg_port
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_created_used_renamed_and_dropped_through_both_protocols() {
    let cluster = Cluster::start(voters(3)).await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE DATABASE orders WITH (replicas = 3)"]),
    )
    .await;
    execute_ok(
        &cluster,
        1,
        "db=orders",
        json!(["CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT)"]),
    )
    .await;
    execute_ok(
        &cluster,
        2,
        "db=orders",
        json!([["INSERT INTO item(name) VALUES (?)", "pear"]]),
    )
    .await;
    assert_eq!(
        rows(&cluster, 0, "db=orders&level=weak", "SELECT name FROM item").await,
        json!([["pear"]])
    );
    // Databases are apart: the default database has no such table.
    let (status, body) = execute(
        &cluster,
        0,
        "",
        json!(["INSERT INTO item(name) VALUES ('x')"]),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no such table"),
        "{body}"
    );

    // One replica: the two other nodes forward its requests, over both protocols.
    let client = pg(&cluster, 0, "postgres").await.unwrap();
    client
        .batch_execute("CREATE DATABASE small WITH (replicas = 1)")
        .await
        .unwrap();
    let databases = show_databases(&cluster, 1).await;
    let (_, small_voters) = &databases["small"];
    assert_eq!(small_voters.len(), 1, "{databases:?}");
    execute_ok(
        &cluster,
        0,
        "db=small",
        json!([
            "CREATE TABLE note(body TEXT)",
            "CREATE TABLE counter(id INTEGER PRIMARY KEY AUTOINCREMENT)"
        ]),
    )
    .await;
    for node in 0..3 {
        let client = pg(&cluster, node, "small").await.unwrap();
        client
            .execute(
                "INSERT INTO note VALUES ($1)",
                &[&format!("from node {}", node + 1)],
            )
            .await
            .unwrap();
        let current: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(current, "small");
        let count: i64 = client
            .query_one("SELECT count(*) FROM note", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, node as i64 + 1);
        // psql's \l: every database listed.
        let listed: Vec<String> = client
            .query("SELECT datname FROM pg_catalog.pg_database ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(listed, ["orders", "shoal", "small"]);
        // Table introspection (psql's \d, drivers) works on nodes without a replica too, with
        // SQLite's own sqlite_sequence in the schema.
        let tables: Vec<String> = client
            .query(
                "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relkind = 'r' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(tables, ["counter", "note"], "through node {}", node + 1);
    }
    for node in 0..3 {
        assert_eq!(
            rows(
                &cluster,
                node,
                "db=small&level=strong",
                "SELECT count(*) FROM note"
            )
            .await,
            json!([[3]])
        );
    }

    // Mistakes are refused, naming what is wrong, and change nothing.
    let refusals = [
        ("CREATE DATABASE orders", "already exists"),
        (
            "CREATE DATABASE big WITH (replicas = 4)",
            "need 4 nodes; the cluster has 3",
        ),
        ("DROP DATABASE shoal", "cannot be dropped"),
        ("ALTER DATABASE orders RENAME TO shoal", "keeps its name"),
        ("DROP DATABASE nothing", "does not exist"),
        (
            "CREATE DATABASE x WITH (colour = 1)",
            "unknown database option",
        ),
    ];
    for (sql, expected) in refusals {
        let (status, body) = execute(&cluster, 1, "", json!([sql])).await;
        assert!(status == 400 || status == 404, "{sql}: {status} {body}");
        assert!(body.to_string().contains(expected), "{sql}: {body}");
    }
    let (status, body) = execute(&cluster, 1, "", json!(["CREATE DATABASE y", "SELECT 1"])).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("must be sent alone"),
        "{body}"
    );
    let error = pg(&cluster, 2, "nowhere").await.expect_err("refused");
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_CATALOG_NAME),
        "{error}"
    );
    let error = client
        .batch_execute("CREATE DATABASE orders")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::DUPLICATE_DATABASE), "{error}");
    assert_eq!(
        show_databases(&cluster, 2).await.keys().collect::<Vec<_>>(),
        ["orders", "shoal", "small"]
    );

    // Renamed: the data goes with the name. A session opened before keeps its database's
    // group: once the name means another database, its statements are refused.
    let held = pg(&cluster, 1, "small").await.unwrap();
    held.query_one("SELECT count(*) FROM note", &[])
        .await
        .unwrap();
    execute_ok(
        &cluster,
        2,
        "",
        json!(["ALTER DATABASE small RENAME TO tiny"]),
    )
    .await;
    assert_eq!(
        rows(&cluster, 1, "db=tiny", "SELECT count(*) FROM note").await,
        json!([[3]])
    );
    let (status, body) = execute(
        &cluster,
        1,
        "db=small",
        json!(["INSERT INTO note VALUES ('x')"]),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE DATABASE small WITH (replicas = 1)"]),
    )
    .await;
    let error = held.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_CATALOG_NAME),
        "{error}"
    );
    execute_ok(&cluster, 0, "", json!(["DROP DATABASE small"])).await;

    // Dropped: gone from every node, its files removed where its replica was.
    let (group, holders) = show_databases(&cluster, 0).await["tiny"].clone();
    execute_ok(&cluster, 0, "", json!(["DROP DATABASE tiny"])).await;
    let (status, _) = execute(&cluster, 2, "db=tiny", json!(["SELECT 1"])).await;
    assert_eq!(status, 404);
    let holder = &cluster.nodes[holders[0] as usize - 1];
    let files = holder.data_dir.join("groups").join(group.to_string());
    let deadline = Instant::now() + SETTLE;
    while files.exists() {
        assert!(
            Instant::now() < deadline,
            "{} still exists",
            files.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new database never reuses a dropped one's group.
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE DATABASE tiny WITH (replicas = 1)"]),
    )
    .await;
    let (new_group, _) = show_databases(&cluster, 0).await["tiny"].clone();
    assert!(
        new_group > group,
        "group {new_group} after dropped group {group}"
    );
    assert_eq!(
        rows(&cluster, 2, "db=tiny", "SELECT count(*) FROM sqlite_schema").await,
        json!([[0]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_databases_on_five_nodes_are_spread_and_outlive_a_killed_node() {
    let mut cluster = Cluster::start(voters(5)).await;
    let names: Vec<String> = (1..=12).map(|n| format!("db{n:02}")).collect();
    for (n, name) in names.iter().enumerate() {
        create_database(&cluster, n % 5, name, 3).await;
        execute_ok(
            &cluster,
            (n + 1) % 5,
            &format!("db={name}"),
            json!(["CREATE TABLE t(node INTEGER, db TEXT)"]),
        )
        .await;
    }
    // Replicas per node differ by at most one.
    let databases = show_databases(&cluster, 3).await;
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    for name in &names {
        let (_, voters) = &databases[name];
        assert_eq!(voters.len(), 3, "{name}: {voters:?}");
        for node in voters {
            *per_node.entry(*node).or_default() += 1;
        }
    }
    let (min, max) = (
        per_node.values().min().unwrap(),
        per_node.values().max().unwrap(),
    );
    assert!(
        per_node.len() == 5 && max - min <= 1,
        "replicas per node: {per_node:?}"
    );
    // Leaders even out too (the catalog's leader moves leaderships).
    leaders_even_out(&cluster, 5, names.len()).await;

    // Every database written through every node (HTTP), read back through every node, and
    // through PostgreSQL on a node chosen per database.
    for name in &names {
        for node in 0..5 {
            execute_ok(
                &cluster,
                node,
                &format!("db={name}"),
                json!([["INSERT INTO t VALUES (?, ?)", node + 1, name]]),
            )
            .await;
        }
    }
    for (n, name) in names.iter().enumerate() {
        for node in 0..5 {
            assert_eq!(
                rows(
                    &cluster,
                    node,
                    &format!("db={name}&level=weak"),
                    "SELECT count(*), min(db), max(db) FROM t"
                )
                .await,
                json!([[5, name, name]]),
                "{name} through node {}",
                node + 1
            );
        }
        let client = pg(&cluster, n % 5, name).await.unwrap();
        let count: i64 = client
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, 5);
    }

    // SIGKILL a node: every database it held elects again where needed and takes writes;
    // nothing acknowledged is lost.
    cluster.kill(4);
    for name in &names {
        execute_ok(
            &cluster,
            0,
            &format!("db={name}"),
            json!([["INSERT INTO t VALUES (?, ?)", 0, name]]),
        )
        .await;
    }
    for (n, name) in names.iter().enumerate() {
        assert_eq!(
            rows(
                &cluster,
                n % 4,
                &format!("db={name}&level=strong"),
                "SELECT count(*) FROM t"
            )
            .await,
            json!([[6]]),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_from_before_the_catalog_keeps_its_data_and_gains_databases() {
    let mut cluster = Cluster::start(voters(3)).await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE TABLE kept(x)", "INSERT INTO kept VALUES (1)"]),
    )
    .await;
    // Every node stopped, and its catalog removed: the data directories are as a version
    // before the catalog left them (the default database's group is unchanged by it).
    for node in 0..3 {
        cluster.kill(node);
    }
    for node in 0..3 {
        std::fs::remove_dir_all(cluster.nodes[node].data_dir.join("groups/0")).unwrap();
    }
    for node in 0..3 {
        cluster.restart(node).await;
    }
    assert_eq!(
        rows(&cluster, 2, "level=strong", "SELECT x FROM kept").await,
        json!([[1]])
    );
    execute_ok(
        &cluster,
        1,
        "",
        json!(["CREATE DATABASE fresh WITH (replicas = 3)"]),
    )
    .await;
    execute_ok(
        &cluster,
        2,
        "db=fresh",
        json!(["CREATE TABLE t(x)", "INSERT INTO t VALUES (2)"]),
    )
    .await;
    assert_eq!(
        rows(&cluster, 0, "db=fresh&level=strong", "SELECT x FROM t").await,
        json!([[2]])
    );
    // One catalog, founded once: every node lists the same databases.
    for node in 0..3 {
        let databases = show_databases(&cluster, node).await;
        assert_eq!(
            databases.keys().collect::<Vec<_>>(),
            ["fresh", "shoal"],
            "node {}",
            node + 1
        );
    }
}

/// A node process started on a given data directory, killed when dropped.
struct FixtureNode {
    child: std::process::Child,
    http: String,
    log: std::path::PathBuf,
}

impl FixtureNode {
    fn start(data_dir: &std::path::Path) -> FixtureNode {
        let reserved = support::ReservedPorts::new(3);
        let (http, raft, pg) = (reserved.port(0), reserved.port(1), reserved.port(2));
        drop(reserved);
        let log = data_dir.with_extension("log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("serve")
            .args(["--node-id", "1"])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--raft-addr", &format!("127.0.0.1:{raft}")])
            .args(["--pg-addr", &format!("127.0.0.1:{pg}")])
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        FixtureNode {
            child,
            http: format!("http://127.0.0.1:{http}"),
            log,
        }
    }

    /// POSTs `sql` to `path` until the node answers 200; the body.
    async fn post_ok(&self, path: &str, sql: &str) -> Value {
        let deadline = Instant::now() + SETTLE;
        loop {
            let response = reqwest::Client::new()
                .post(format!("{}{path}", self.http))
                .json(&json!([sql]))
                .send()
                .await;
            if let Ok(response) = response
                && response.status() == 200
            {
                let body: Value = response.json().await.unwrap();
                if body["results"][0].get("error").is_none() {
                    return body;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{sql} never succeeded; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(mut self) {
        // SAFETY: SIGTERM to a child we own: a graceful stop.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for FixtureNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_written_before_the_catalog_starts_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data-dir-v0.2-c69c788.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let data_dir = dir.path().join("node1");
    assert!(!data_dir.join("groups/0").exists());
    let node = FixtureNode::start(&data_dir);
    let fruit = node
        .post_ok(
            "/db/query?level=strong",
            "SELECT name, price FROM fruit ORDER BY id",
        )
        .await;
    assert_eq!(
        fruit["results"][0]["values"],
        json!([["apple", 1.5], ["pear", 2.25], ["fig", null]])
    );
    node.post_ok("/db/execute", "CREATE DATABASE added WITH (replicas = 1)")
        .await;
    node.post_ok("/db/execute?db=added", "CREATE TABLE t(x)")
        .await;
    node.stop();
    // Restarted: the catalog it gained and both databases are there.
    let node = FixtureNode::start(&data_dir);
    let listed = node.post_ok("/db/query", "SHOW DATABASES").await;
    let names: Vec<&str> = listed["results"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["added", "shoal"]);
    let schema = node
        .post_ok(
            "/db/query?db=added&level=strong",
            "SELECT name FROM sqlite_schema",
        )
        .await;
    assert_eq!(schema["results"][0]["values"], json!([["t"]]));
    let count = node
        .post_ok("/db/query?level=strong", "SELECT count(*) FROM fruit")
        .await;
    assert_eq!(count["results"][0]["values"], json!([[3]]));
}

/// Nodes' `/status` groups: per node position, (group, leads, voters, learners).
async fn groups_on(cluster: &Cluster, node: usize) -> Vec<(u64, bool, Vec<u64>, Vec<u64>)> {
    let status = cluster.get_json(node, "/status").await.unwrap_or_default();
    let id = cluster.nodes[node].id;
    let ids = |value: &Value| -> Vec<u64> {
        value
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    status["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .map(|g| {
                    (
                        g["group"].as_u64().unwrap_or(0),
                        g["leader"].as_u64() == Some(id),
                        ids(&g["voters"]),
                        ids(&g["read_replicas"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `done` holds, checking every 200 ms; panics with `what` after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match done().await {
            Ok(()) => return,
            Err(state) if Instant::now() < deadline => {
                let _ = state;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(state) => panic!("{what} within {timeout:?}: {state}"),
        }
    }
}

/// Waits until the first `nodes` nodes lead the `groups` created databases' groups between
/// them, no node leading two more than another.
async fn leaders_even_out(cluster: &Cluster, nodes: usize, groups: usize) {
    eventually("leaders balanced", SETTLE * 2, || async {
        let mut leading = Vec::new();
        for node in 0..nodes {
            let led = groups_on(cluster, node).await;
            leading.push(led.iter().filter(|g| g.0 >= 2 && g.1).count());
        }
        let (min, max) = (leading.iter().min().unwrap(), leading.iter().max().unwrap());
        if leading.iter().sum::<usize>() == groups && max - min <= 1 {
            Ok(())
        } else {
            Err(format!("leaders per node {leading:?}"))
        }
    })
    .await;
}

/// Replicas per node id in the catalog's placement.
async fn placed_per_node(cluster: &Cluster, node: usize) -> BTreeMap<u64, usize> {
    let mut count = BTreeMap::new();
    for (name, (_, voters)) in show_databases(cluster, node).await {
        if name != "shoal" {
            for id in voters {
                *count.entry(id).or_default() += 1;
            }
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_move_onto_a_new_node_off_a_drained_one_and_off_a_dead_one_under_load() {
    let mut spec = voters(4);
    spec.extra_args = vec!["--node-dead-after-s".into(), "3".into()];
    let mut cluster = Cluster::start(spec).await;
    let names: Vec<String> = (1..=6).map(|n| format!("m{n}")).collect();
    for name in &names {
        create_database(&cluster, 0, name, 3).await;
        execute_ok(
            &cluster,
            0,
            &format!("db={name}"),
            json!(["CREATE TABLE t(k INTEGER PRIMARY KEY)"]),
        )
        .await;
    }
    // A write load on every database through node 1 (never stopped) the whole time; only
    // retryable refusals (503) are allowed, and every acknowledged write must be there.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, url, names, stop) = (
            cluster.http.clone(),
            cluster.url(0),
            names.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut acknowledged: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            let mut key = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                key += 1;
                let name = &names[key as usize % names.len()];
                let response = http
                    .post(format!("{url}/db/execute?db={name}"))
                    .json(&json!([["INSERT INTO t(k) VALUES (?)", key]]))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                let Ok(response) = response else { continue };
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or_default();
                if status == 200 && body["results"][0].get("error").is_none() {
                    acknowledged.entry(name.clone()).or_default().push(key);
                } else {
                    assert_eq!(
                        status, 503,
                        "a write to {name} failed without being retryable: {body}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acknowledged
        })
    };

    // A fifth node: replicas move onto it until no node holds two more than another, and
    // leaders even out too.
    cluster.add_node(true).await;
    let fifth = cluster.nodes[4].id;
    eventually(
        "replicas balanced onto the new node",
        SETTLE * 2,
        || async {
            let placed = placed_per_node(&cluster, 1).await;
            let (min, max) = (
                placed.values().min().copied().unwrap_or(0),
                placed.values().max().copied().unwrap_or(0),
            );
            let hosted = groups_on(&cluster, 4)
                .await
                .iter()
                .filter(|g| g.0 >= 2 && g.2.contains(&fifth))
                .count();
            if placed.len() == 5 && max - min <= 1 && hosted == placed[&fifth] {
                Ok(())
            } else {
                Err(format!(
                    "placed {placed:?}, node 5 votes in {hosted} groups"
                ))
            }
        },
    )
    .await;
    leaders_even_out(&cluster, 5, names.len()).await;

    // Drained: nothing stays on it, and its moved replicas' files go.
    let (status, body) = cluster.post(1, "/drain", json!({"id": fifth})).await;
    assert_eq!(status, 200, "{body}");
    eventually("node 5 drained", SETTLE * 2, || async {
        let placed = placed_per_node(&cluster, 2).await;
        let hosted: Vec<u64> = groups_on(&cluster, 4)
            .await
            .iter()
            .map(|g| g.0)
            .filter(|g| *g >= 2)
            .collect();
        if !placed.contains_key(&fifth) && hosted.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "placed {placed:?}; node 5 still runs groups {hosted:?}"
            ))
        }
    })
    .await;

    // SIGKILL node 4: after --node-dead-after-s its replicas are placed on the others.
    let fourth = cluster.nodes[3].id;
    cluster.kill(3);
    eventually("node 4's replicas re-placed", SETTLE * 2, || async {
        let placed = placed_per_node(&cluster, 1).await;
        let voters_ok = {
            let mut ok = true;
            for g in groups_on(&cluster, 0).await.iter().filter(|g| g.0 >= 2) {
                ok &= !g.2.contains(&fourth) && g.2.len() == 3;
            }
            ok
        };
        if !placed.contains_key(&fourth) && voters_ok {
            Ok(())
        } else {
            Err(format!("placed {placed:?}"))
        }
    })
    .await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.unwrap();
    for name in &names {
        let keys: Vec<i64> = rows(
            &cluster,
            1,
            &format!("db={name}&level=strong"),
            "SELECT k FROM t ORDER BY k",
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_i64().unwrap())
        .collect();
        let missing: Vec<&i64> = acknowledged
            .get(name)
            .into_iter()
            .flatten()
            .filter(|k| !keys.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "{name} lost acknowledged writes {missing:?}"
        );
        assert!(
            acknowledged.get(name).is_some_and(|k| k.len() > 3),
            "{name}: too few writes went through"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_completes_when_its_target_and_the_group_leader_are_killed_midway() {
    let mut cluster = Cluster::start(voters(4)).await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE DATABASE moving WITH (replicas = 3)"]),
    )
    .await;
    // Enough data that a new replica takes a moment to catch up.
    execute_ok(
        &cluster,
        0,
        "db=moving",
        json!([
            "CREATE TABLE t(k INTEGER PRIMARY KEY, body BLOB)",
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 4000) \
             INSERT INTO t SELECT x, randomblob(1000) FROM n"
        ]),
    )
    .await;
    let (group, placed) = show_databases(&cluster, 0).await["moving"].clone();
    let all: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let target = *all.iter().find(|id| !placed.contains(id)).unwrap();
    let drained = *placed.iter().find(|id| **id != 1).unwrap();
    let (status, body) = cluster.post(0, "/drain", json!({"id": drained})).await;
    assert_eq!(status, 200, "{body}");
    // The target dies once the move has begun (it runs a replica of the group), and comes
    // back.
    let target_position = all.iter().position(|id| *id == target).unwrap();
    eventually("the move began", SETTLE, || async {
        let hosted = groups_on(&cluster, target_position).await;
        if hosted.iter().any(|g| g.0 == group) {
            Ok(())
        } else {
            Err(format!("node {target} runs {hosted:?}"))
        }
    })
    .await;
    cluster.kill(target_position);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(target_position).await;
    // The group's leader dies too, and comes back.
    let leader = loop {
        let mut found = None;
        for node in 0..4 {
            if cluster.is_running(node)
                && groups_on(&cluster, node)
                    .await
                    .iter()
                    .any(|g| g.0 == group && g.1)
            {
                found = Some(node);
            }
        }
        if let Some(node) = found {
            break node;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(leader).await;
    // The move completes: the group's members are what the catalog places, never fewer than
    // three voters on the way, and nothing was lost.
    let observer = (0..4).find(|p| all[*p] != drained && *p != leader).unwrap();
    eventually("the move completed", SETTLE * 2, || async {
        let placed = show_databases(&cluster, observer).await["moving"].1.clone();
        let mut voters = None;
        for node in 0..4 {
            if let Some(g) = groups_on(&cluster, node)
                .await
                .into_iter()
                .find(|g| g.0 == group && g.1)
            {
                assert!(g.2.len() >= 3, "group {group} fell to voters {:?}", g.2);
                voters = Some(g.2);
            }
        }
        let mut sorted = placed.clone();
        sorted.sort_unstable();
        match voters {
            Some(mut voters) if !placed.contains(&drained) => {
                voters.sort_unstable();
                if voters == sorted {
                    Ok(())
                } else {
                    Err(format!("voters {voters:?}, placed {sorted:?}"))
                }
            }
            other => Err(format!("leader's voters {other:?}, placed {sorted:?}")),
        }
    })
    .await;
    assert_eq!(
        rows(
            &cluster,
            observer,
            "db=moving&level=strong",
            "SELECT count(*), sum(length(body)) FROM t"
        )
        .await,
        json!([[4000, 4_000_000]])
    );
    // The target's own replica (`none`: no leader involved) holds every row once it has
    // applied what it was sent — a moment after its promotion at most.
    eventually("the move target holds every row", SETTLE, || async {
        let counted = cluster
            .query(
                target_position,
                "SELECT count(*) FROM t",
                "db=moving&level=none",
            )
            .await;
        if counted.as_ref().ok() == Some(&json!([[4000]])) {
            Ok(())
        } else {
            Err(format!("{counted:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_spread_over_zones_so_losing_a_zone_keeps_every_database_writable() {
    let zones = ["a", "a", "b", "b", "c", "c"];
    let mut spec = voters(6);
    spec.zones = zones.iter().map(|z| z.to_string()).collect();
    let mut cluster = Cluster::start(spec).await;
    let zone_of = |id: u64| zones[id as usize - 1];
    // Every node registered its zone before databases are placed.
    eventually("zones registered", SETTLE, || async {
        let (code, body) = execute(
            &cluster,
            0,
            "",
            json!(["CREATE DATABASE probe WITH (replicas = 3)"]),
        )
        .await;
        if code != 200 {
            return Err(format!("{code} {body}"));
        }
        let voters = show_databases(&cluster, 0).await["probe"].1.clone();
        execute_ok(&cluster, 0, "", json!(["DROP DATABASE probe"])).await;
        let spread: std::collections::BTreeSet<&str> =
            voters.iter().map(|id| zone_of(*id)).collect();
        if spread.len() == 3 {
            Ok(())
        } else {
            Err(format!("probe placed on {voters:?}"))
        }
    })
    .await;
    let names: Vec<String> = (1..=4).map(|n| format!("z{n}")).collect();
    for name in &names {
        create_database(&cluster, 0, name, 3).await;
        execute_ok(
            &cluster,
            2,
            &format!("db={name}"),
            json!(["CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"]),
        )
        .await;
    }
    let databases = show_databases(&cluster, 0).await;
    for name in &names {
        let voters = &databases[name].1;
        let spread: std::collections::BTreeSet<&str> =
            voters.iter().map(|id| zone_of(*id)).collect();
        assert_eq!(
            spread.len(),
            3,
            "{name} voters {voters:?} are not one per zone"
        );
    }
    // Zone a lost (both its nodes SIGKILLed): every database still has a majority.
    cluster.kill(0);
    cluster.kill(1);
    for name in &names {
        execute_ok(
            &cluster,
            2,
            &format!("db={name}"),
            json!(["INSERT INTO t VALUES (2)"]),
        )
        .await;
        assert_eq!(
            rows(
                &cluster,
                4,
                &format!("db={name}&level=strong"),
                "SELECT count(*) FROM t"
            )
            .await,
            json!([[2]])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_a_leader_fires_its_own_alert_and_resolves_it() {
    let mut spec = voters(3);
    spec.extra_args = vec!["--alert-no-leader-after".into(), "1s".into()];
    let mut cluster = Cluster::start(spec).await;
    create_database(&cluster, 0, "watched", 3).await;
    execute_ok(&cluster, 0, "db=watched", json!(["CREATE TABLE t(x)"])).await;
    let firing = |alerts: &Value| -> Vec<String> {
        alerts["firing"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["alert"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        !firing(&cluster.get_json(0, "/alerts").await.unwrap())
            .contains(&"group_no_leader:watched".to_string()),
        "nothing fires while the database has its leader"
    );
    cluster.kill(1);
    cluster.kill(2);
    cluster
        .wait_for_alert(0, "group_no_leader:watched", SETTLE)
        .await;
    cluster.restart(1).await;
    cluster.restart(2).await;
    execute_ok(
        &cluster,
        0,
        "db=watched",
        json!(["INSERT INTO t VALUES (1)"]),
    )
    .await;
    eventually("the alert resolved", SETTLE, || async {
        let alerts = cluster.get_json(0, "/alerts").await?;
        if firing(&alerts)
            .iter()
            .any(|a| a.starts_with("group_no_leader:"))
        {
            Err(format!("{alerts}"))
        } else {
            Ok(())
        }
    })
    .await;
}
