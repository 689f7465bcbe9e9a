//! Sharded databases as clients use them: `CREATE DATABASE … WITH (shards = N)`, tables made
//! distributed or reference with `shoal_distribute` / `shoal_reference`, reads answered
//! exactly as one SQLite database would (one group when the key is pinned, scattered with
//! partial aggregates when each shard can answer its part, gathered otherwise), writes routed by key and committed atomically across groups, refusals that
//! say what and why, and `shoal_plan` telling which tier a statement takes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, ClusterSpec, execute_ok};

const SETTLE: Duration = Duration::from_secs(30);

async fn execute(cluster: &Cluster, node: usize, db: &str, statements: Value) -> Value {
    let (status, body) = cluster
        .post(node, &format!("/db/execute?db={db}"), statements.clone())
        .await;
    assert_eq!(status, 200, "{statements}: {body}");
    body
}

/// The first result of `sql` as a query (`values` or `error`).
async fn query(cluster: &Cluster, node: usize, db: &str, sql: &str) -> Value {
    let (status, body) = cluster
        .post(node, &format!("/db/query?db={db}"), json!([sql]))
        .await;
    assert_eq!(status, 200, "{sql}: {body}");
    body["results"][0].clone()
}

async fn values(cluster: &Cluster, node: usize, db: &str, sql: &str) -> Value {
    let result = query(cluster, node, db, sql).await;
    assert!(result.get("error").is_none(), "{sql}: {result}");
    result.get("values").cloned().unwrap_or(json!([]))
}

fn error_of(body: &Value, at: usize) -> String {
    body["results"][at]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("statement {at} did not fail: {body}"))
        .to_string()
}

async fn sharded_cluster() -> Cluster {
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        ..Default::default()
    })
    .await;
    create_shop(&cluster).await;
    cluster
}

/// `CREATE DATABASE shop WITH (shards = 4)`, then waits until every node serves it (a node
/// that joined a moment ago answers 503 until it has read the catalog).
async fn create_shop(cluster: &Cluster) {
    execute_ok(
        cluster,
        0,
        "",
        json!(["CREATE DATABASE shop WITH (shards = 4)"]),
    )
    .await;
    let deadline = Instant::now() + SETTLE;
    for node in 0..cluster.nodes.len() {
        loop {
            let (status, body) = cluster
                .post(node, "/db/query?db=shop", json!(["SELECT 1"]))
                .await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never served shop: {status} {body}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_and_reference_tables_answer_as_one_database_would() {
    let cluster = sharded_cluster().await;
    let shown = values(&cluster, 1, "", "SHOW DATABASES").await;
    let shop = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row[0] == "shop")
        .unwrap()
        .clone();
    assert_eq!(shop[6], 4, "SHOW DATABASES counts the shard groups: {shop}");
    // /status names each shard group's place and slots (every node holds all four here).
    let status = cluster.get_json(0, "/status").await.unwrap();
    let mut slots: Vec<(u64, u64, u64)> = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["database"] == "shop")
        .map(|g| {
            let shard = &g["shard"];
            assert_eq!(shard["of"], 4, "{g}");
            (
                shard["shard"].as_u64().unwrap(),
                shard["slots"][0].as_u64().unwrap(),
                shard["slots"][1].as_u64().unwrap(),
            )
        })
        .collect();
    slots.sort();
    assert_eq!(
        slots,
        vec![
            (0, 0, 4095),
            (1, 4096, 8191),
            (2, 8192, 12287),
            (3, 12288, 16383)
        ]
    );

    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE countries (code TEXT PRIMARY KEY, name TEXT)",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, country TEXT, amount REAL)",
            "SELECT shoal_reference('countries')",
            "SELECT shoal_distribute('orders', 'customer')",
        ]),
    )
    .await;
    execute_ok(
        &cluster,
        1,
        "shop",
        json!([
            "INSERT INTO countries VALUES ('fr', 'France'), ('jp', 'Japan')",
            "INSERT INTO orders (customer, country, amount) VALUES (1, 'fr', 10), (2, 'jp', 20.5), (3, 'fr', 5), (1, 'jp', 7), (40, 'fr', 1)",
        ]),
    )
    .await;

    // Rowids come from one sequence: unique across groups, in insertion order.
    assert_eq!(
        values(
            &cluster,
            2,
            "shop",
            "SELECT id, customer FROM orders ORDER BY id"
        )
        .await,
        json!([[1, 1], [2, 2], [3, 3], [4, 1], [5, 40]])
    );
    // Aggregates, joins with a reference table, grouping: as one SQLite database.
    assert_eq!(
        values(
            &cluster,
            0,
            "shop",
            "SELECT c.name, count(*), sum(o.amount), avg(o.amount) FROM orders o JOIN countries c \
             ON c.code = o.country GROUP BY c.name ORDER BY c.name"
        )
        .await,
        json!([["France", 3, 16.0, 16.0 / 3.0], ["Japan", 2, 27.5, 13.75]])
    );
    // A pinned key is answered by one group.
    assert_eq!(
        values(
            &cluster,
            1,
            "shop",
            "SELECT count(*), sum(amount) FROM orders WHERE customer = 1"
        )
        .await,
        json!([[2, 17.0]])
    );
    let plan = values(
        &cluster,
        0,
        "shop",
        "SELECT * FROM shoal_plan('SELECT * FROM orders WHERE customer = 1')",
    )
    .await;
    assert_eq!(plan[0][1], "single", "{plan}");
    assert_eq!(plan[0][2], 1, "{plan}");
    let plan = values(
        &cluster,
        0,
        "shop",
        "SELECT * FROM shoal_plan('SELECT count(*) FROM orders')",
    )
    .await;
    assert_eq!(plan[0][1], "scatter", "{plan}");
    assert_eq!(plan[0][2], 4, "{plan}");
    let plan = values(
        &cluster,
        0,
        "shop",
        "SELECT * FROM shoal_plan('SELECT group_concat(country) FROM orders')",
    )
    .await;
    assert_eq!(plan[0][1], "gather", "{plan}");

    // Writes to every group commit together; their counts add up.
    let updated = execute_ok(
        &cluster,
        2,
        "shop",
        json!(["UPDATE orders SET amount = amount * 2 WHERE amount < 10"]),
    )
    .await;
    assert_eq!(updated["results"][0]["rows_affected"], 3, "{updated}");
    let deleted = execute_ok(
        &cluster,
        0,
        "shop",
        json!(["DELETE FROM orders WHERE customer = 40"]),
    )
    .await;
    assert_eq!(deleted["results"][0]["rows_affected"], 1, "{deleted}");
    assert_eq!(
        values(
            &cluster,
            0,
            "shop",
            "SELECT sum(amount), count(*) FROM orders"
        )
        .await,
        json!([[54.5, 4]])
    );
    // INSERT … SELECT: the rows selected (gathered from every group) are routed by key.
    execute_ok(
        &cluster,
        1,
        "shop",
        json!([
            "CREATE TABLE big_orders (id INTEGER PRIMARY KEY, customer INTEGER, amount REAL)",
            "SELECT shoal_distribute('big_orders', 'customer')",
            "INSERT INTO big_orders SELECT id, customer, amount FROM orders WHERE amount >= 10",
        ]),
    )
    .await;
    assert_eq!(
        values(
            &cluster,
            2,
            "shop",
            "SELECT id, customer, amount FROM big_orders ORDER BY id"
        )
        .await,
        json!([[1, 1, 10.0], [2, 2, 20.5], [3, 3, 10.0], [4, 1, 14.0]])
    );
    // A reference table is the same in every group.
    execute_ok(
        &cluster,
        0,
        "shop",
        json!(["UPDATE countries SET name = 'Nippon' WHERE code = 'jp'"]),
    )
    .await;
    assert_eq!(
        values(
            &cluster,
            1,
            "shop",
            "SELECT DISTINCT c.name FROM orders o JOIN countries c ON c.code = o.country ORDER BY 1"
        )
        .await,
        json!([["France"], ["Nippon"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_row_leaves_every_group_unchanged_and_refusals_say_why() {
    let cluster = sharded_cluster().await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))",
            "SELECT shoal_distribute('accounts', 'id')",
            "INSERT INTO accounts VALUES (1, 100), (2, 100), (3, 100), (4, 100)",
        ]),
    )
    .await;
    // A UNIQUE index without the shard key could not be enforced across groups.
    let body = execute(
        &cluster,
        0,
        "shop",
        json!(["CREATE UNIQUE INDEX accounts_balance ON accounts (balance) WHERE balance > 0"]),
    )
    .await;
    let refusal = error_of(&body, 0);
    assert!(
        refusal.contains("UNIQUE (balance)") && refusal.contains("shard key"),
        "{refusal}"
    );
    execute_ok(
        &cluster,
        0,
        "shop",
        json!(["CREATE UNIQUE INDEX accounts_id ON accounts (id, balance)"]),
    )
    .await;
    // A transfer between groups that would overdraw: nothing applies anywhere.
    let (status, body) = cluster
        .post(
            1,
            "/db/execute?db=shop&transaction",
            json!([
                "UPDATE accounts SET balance = balance + 150 WHERE id = 1",
                "UPDATE accounts SET balance = balance - 150 WHERE id = 2",
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        error_of(&body, 1).contains("CHECK constraint failed"),
        "{body}"
    );
    assert_eq!(
        values(
            &cluster,
            0,
            "shop",
            "SELECT id, balance FROM accounts ORDER BY id"
        )
        .await,
        json!([[1, 100], [2, 100], [3, 100], [4, 100]])
    );
    // The same transfer within the limit applies on both groups.
    let (status, body) = cluster
        .post(
            2,
            "/db/execute?db=shop&transaction",
            json!([
                "UPDATE accounts SET balance = balance + 60 WHERE id = 1",
                "UPDATE accounts SET balance = balance - 60 WHERE id = 2",
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        values(
            &cluster,
            0,
            "shop",
            "SELECT sum(balance), min(balance), max(balance) FROM accounts"
        )
        .await,
        json!([[400, 40, 160]])
    );

    let body = execute(
        &cluster,
        0,
        "shop",
        json!([
            "UPDATE accounts SET id = 9 WHERE id = 1",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE)",
            "SELECT shoal_distribute('users', 'id')",
            "CREATE TABLE tags (id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT)",
            "SELECT shoal_distribute('tags', 'id')",
            "DELETE FROM accounts WHERE balance < (SELECT avg(balance) FROM accounts)",
        ]),
    )
    .await;
    assert!(error_of(&body, 0).contains("shard key"), "{body}");
    assert!(error_of(&body, 2).contains("UNIQUE (email)"), "{body}");
    assert!(error_of(&body, 4).contains("AUTOINCREMENT"), "{body}");
    assert!(error_of(&body, 5).contains("subquery"), "{body}");
    // Refused statements changed nothing.
    assert_eq!(
        values(&cluster, 0, "shop", "SELECT count(*) FROM accounts").await,
        json!([[4]])
    );
    // A single-file load through one group would cover only that group's rows: refused,
    // naming why and what backs up and restores the whole database, with nothing changed.
    let (status, body) = cluster.post(0, "/db/load?db=shop", json!([])).await;
    assert_eq!(status, 501, "{body}");
    let said = body.to_string();
    assert!(
        said.contains("sharded over 4 groups") && said.contains("/backup/restore?db=shop"),
        "{body}"
    );
    assert_eq!(
        values(&cluster, 1, "shop", "SELECT count(*) FROM accounts").await,
        json!([[4]])
    );
}

/// The sum of every balance and whether a write reaching every group goes through within
/// two seconds (it waits while any group still holds a prepared transaction).
async fn settled_sum(cluster: &Cluster, node: usize) -> Option<i64> {
    let (status, body) = cluster
        .post(
            node,
            "/db/execute?db=shop&timeout=2s",
            json!(["UPDATE accounts SET balance = balance WHERE balance >= 0"]),
        )
        .await;
    if status != 200 || body["results"][0].get("error").is_some() {
        return None;
    }
    let sum = query(cluster, node, "shop", "SELECT sum(balance) FROM accounts").await;
    sum["values"][0][0].as_i64()
}

async fn await_settled_sum(cluster: &Cluster, node: usize, expected: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let sum = settled_sum(cluster, node).await;
        if sum == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the groups did not settle on a total of {expected} (last {sum:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_midway_is_finished_the_same_way_on_every_group() {
    let mut cluster = Cluster::start(ClusterSpec {
        voters: 3,
        env: vec![(
            shoal::unsafe_faults::ENV_VAR.to_string(),
            "coordinator-stalls".to_string(),
        )],
        ..Default::default()
    })
    .await;
    create_shop(&cluster).await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            "SELECT shoal_distribute('accounts', 'id')",
            "INSERT INTO accounts VALUES (1, 100), (2, 100), (3, 100), (4, 100), (5, 100), (6, 100), (7, 100), (8, 100)",
        ]),
    )
    .await;
    let plan = values(
        &cluster,
        0,
        "shop",
        "SELECT * FROM shoal_plan('UPDATE accounts SET balance = balance + 1')",
    )
    .await;
    assert_eq!(plan[0][2], 4, "the update reaches every group: {plan}");

    // Killed after every group prepared, before any decision: every group aborts.
    let url = cluster.url(2);
    let stalled = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(format!("{url}/db/execute?db=shop"))
            .json(&json!([format!(
                "UPDATE accounts SET balance = balance + 1 -- {}",
                shoal::unsafe_faults::STALL_AFTER_PREPARE
            )]))
            .send()
            .await;
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(2);
    stalled.abort();
    await_settled_sum(&cluster, 0, 800, "killed before the decision").await;
    let resolved: f64 = {
        let mut total = 0.0;
        for node in 0..2 {
            let scrape = cluster.get_json(node, "/metrics").await.unwrap();
            total += support::metric_value(
                scrape.as_str().unwrap_or_default(),
                "shoal_shard_transactions_resolved_total",
            )
            .unwrap_or_default();
        }
        total
    };
    assert!(resolved >= 1.0, "the resolvers finished the transaction");
    cluster.restart(2).await;

    // Killed after its decision (the coordinator group committed): every group commits.
    let url = cluster.url(1);
    let stalled = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(format!("{url}/db/execute?db=shop"))
            .json(&json!([format!(
                "UPDATE accounts SET balance = balance + 1 -- {}",
                shoal::unsafe_faults::STALL_AFTER_DECISION
            )]))
            .send()
            .await;
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(1);
    stalled.abort();
    await_settled_sum(&cluster, 0, 808, "killed after the decision").await;
    await_settled_sum(&cluster, 2, 808, "seen through another node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_client_uses_a_sharded_database_with_prepared_statements() {
    let cluster = sharded_cluster().await;
    let config = format!(
        "host=127.0.0.1 port={} user=shoal dbname=shop connect_timeout=5",
        cluster.nodes[1].pg_port
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, label TEXT)",
        )
        .await
        .unwrap();
    client
        .simple_query("SELECT shoal_distribute('items', 'owner')")
        .await
        .unwrap();
    // Extended protocol, parameters bound: routed by the key's value.
    for (owner, label) in [(1i32, "a"), (2, "b"), (3, "c"), (1, "d")] {
        let inserted = client
            .execute(
                "INSERT INTO items (owner, label) VALUES ($1, $2)",
                &[&owner, &label],
            )
            .await
            .unwrap();
        assert_eq!(inserted, 1);
    }
    // Literal and bound values over HTTP land where the PostgreSQL client's rows did: each
    // owner's rows are found by a read pinned to its key, through another node.
    execute_ok(
        &cluster,
        0,
        "shop",
        json!(["INSERT INTO items (owner, label) VALUES (2, 'z')"]),
    )
    .await;
    execute_ok(
        &cluster,
        2,
        "shop",
        json!([["INSERT INTO items (owner, label) VALUES (?, ?)", 3, "y"]]),
    )
    .await;
    for (owner, labels) in [(2, json!([["b"], ["z"]])), (3, json!([["c"], ["y"]]))] {
        let sql = format!("SELECT label FROM items WHERE owner = {owner} ORDER BY label");
        assert_eq!(values(&cluster, 0, "shop", &sql).await, labels, "{sql}");
    }
    let rows = client
        .query(
            "SELECT label FROM items WHERE owner = $1 ORDER BY label",
            &[&1i32],
        )
        .await
        .unwrap();
    let labels: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(labels, ["a", "d"]);
    let total: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 6);
    let updated = client
        .execute(
            "UPDATE items SET label = upper(label) WHERE owner <> $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(updated, 4);
    // A rowid the statement gives moves the sequence past it, as SQLite's next rowid follows
    // the largest: the next row inserted through this node gets the one after.
    execute_ok(
        &cluster,
        1,
        "shop",
        json!([
            "INSERT INTO items (id, owner, label) VALUES (500, 1, 'given')",
            "INSERT INTO items (owner, label) VALUES (2, 'after')"
        ]),
    )
    .await;
    assert_eq!(
        values(
            &cluster,
            1,
            "shop",
            "SELECT id FROM items WHERE owner = 2 AND label = 'after'"
        )
        .await,
        json!([[501]])
    );
}

/// The same statements, on a database sharded four ways and on an ordinary one holding the
/// same rows: the scatter tier's partial aggregates, merged groups, HAVING, ordering and
/// limits answer exactly what one SQLite database answers — column names included — and
/// floating-point sums, which two-step summing could round differently, are gathered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_aggregates_and_merged_rows_answer_as_one_database_would() {
    let cluster = sharded_cluster().await;
    execute_ok(&cluster, 0, "", json!(["CREATE DATABASE plain"])).await;
    let schema = "CREATE TABLE items (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, \
                  qty INTEGER, price REAL, label TEXT)";
    execute_ok(&cluster, 0, "shop", json!([schema])).await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!(["SELECT shoal_distribute('items', 'customer')"]),
    )
    .await;
    execute_ok(&cluster, 0, "plain", json!([schema])).await;
    let rows: Vec<String> = (1..=240)
        .map(|i: i64| {
            let qty = if i % 11 == 0 {
                "NULL".to_string()
            } else {
                ((i * 37) % 101).to_string()
            };
            let label = if i % 5 == 0 {
                "NULL".to_string()
            } else {
                format!("'label {}'", (i * 13) % 17)
            };
            format!(
                "({i}, {}, {qty}, {}.{}, {label})",
                (i * 7) % 23,
                i % 9,
                (i * 3) % 10
            )
        })
        .collect();
    let insert = format!("INSERT INTO items VALUES {}", rows.join(", "));
    for db in ["shop", "plain"] {
        execute_ok(&cluster, 1, db, json!([insert.clone()])).await;
    }

    let scattered = [
        "SELECT count(*), count(qty), sum(qty), total(qty), avg(qty), min(qty), max(qty) FROM items",
        "SELECT count(*), sum(qty), avg(qty), min(label) FROM items WHERE qty < 0",
        "SELECT customer % 7 AS bucket, count(*), sum(qty) FROM items GROUP BY 1 ORDER BY bucket",
        "SELECT customer, count(*) AS n, max(label) FROM items GROUP BY customer \
         HAVING count(*) > 10 ORDER BY n DESC, customer LIMIT 5",
        "SELECT label, sum(qty) * 2 + 1, avg(qty) FROM items GROUP BY label ORDER BY 2 DESC, 1",
        "SELECT DISTINCT customer % 3 FROM items ORDER BY 1",
        "SELECT id, qty FROM items WHERE qty > 50 ORDER BY qty DESC, id LIMIT 7 OFFSET 3",
        "SELECT id, label FROM items WHERE qty % 10 = 3",
        "SELECT * FROM items WHERE customer IN (3, 4, 5) ORDER BY price, id",
        "SELECT upper(label), count(*) FROM items WHERE id > ?1 GROUP BY upper(label) ORDER BY 1",
    ];
    let gathered = [
        "SELECT count(DISTINCT customer), group_concat(id) FROM items WHERE id < 20",
        "SELECT sum(price), avg(price), total(price) FROM items",
        "SELECT customer, qty FROM items WHERE qty = (SELECT max(qty) FROM items) ORDER BY 1",
    ];
    for sql in scattered.iter().chain(gathered.iter()) {
        let request = if sql.contains("?1") {
            json!([[sql, 100]])
        } else {
            json!([sql])
        };
        let answer = |db: &'static str| {
            let request = request.clone();
            let cluster = &cluster;
            async move {
                let (status, body) = cluster
                    .post(2, &format!("/db/query?db={db}"), request)
                    .await;
                assert_eq!(status, 200, "{sql} on {db}: {body}");
                let result = body["results"][0].clone();
                assert!(result.get("error").is_none(), "{sql} on {db}: {result}");
                (result["columns"].clone(), result["values"].clone())
            }
        };
        assert_eq!(answer("shop").await, answer("plain").await, "{sql}");
    }
    for (sql, tier) in scattered
        .iter()
        .map(|sql| (sql, "scatter"))
        .chain(gathered.iter().map(|sql| (sql, "gather")))
    {
        if sql.contains("price") && tier == "gather" {
            continue; // planned as a scatter, gathered when the sums come back as REAL
        }
        let plan = values(
            &cluster,
            0,
            "shop",
            &format!(
                "SELECT tier, groups FROM shoal_plan('{}')",
                sql.replace('\'', "''")
            ),
        )
        .await;
        assert_eq!(plan[0][0], tier, "{sql}: {plan}");
        assert_eq!(plan[0][1], 4, "{sql}: {plan}");
    }
    // What each shard runs: the partial aggregates, grouped there; the merge redoes the rest.
    let plan = values(
        &cluster,
        0,
        "shop",
        "SELECT sql FROM shoal_plan('SELECT customer, avg(qty) FROM items GROUP BY customer')",
    )
    .await;
    assert_eq!(
        plan,
        json!([
            ["SELECT customer, sum(qty), count(qty) FROM items GROUP BY 1"],
            [
                "SELECT p0, (CASE WHEN sum(p2) > 0 THEN CAST(sum(p1) AS REAL) / sum(p2) END) \
                 FROM shoal_partials GROUP BY p0"
            ]
        ])
    );
    // Node 3 answered the statements above: its router counted them by tier.
    cluster
        .wait_for_metric(
            2,
            "shoal_router_scatter_total",
            |n| n >= scattered.len() as f64,
            Duration::from_secs(5),
        )
        .await;
}

/// Two account ids of `shop.accounts` owned by different groups (the router scatters a read
/// of both).
async fn ids_in_two_groups(cluster: &Cluster) -> (i64, i64) {
    for other in 2..=8 {
        let sql = format!(
            "SELECT tier FROM shoal_plan('SELECT * FROM accounts WHERE id IN (1, {other})') \
             WHERE step = 1"
        );
        if values(cluster, 0, "shop", &sql).await == json!([["scatter"]]) {
            return (1, other);
        }
    }
    panic!("accounts 1 to 8 all live in one group of four");
}

async fn balance_over_http(cluster: &Cluster, node: usize, id: i32) -> i64 {
    let sql = format!("SELECT balance FROM accounts WHERE id = {id}");
    values(cluster, node, "shop", &sql).await[0][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no balance for account {id}"))
}

async fn pg_client(cluster: &Cluster, node: usize) -> tokio_postgres::Client {
    let config = format!(
        "host=127.0.0.1 port={} user=shoal dbname=shop connect_timeout=5",
        cluster.nodes[node].pg_port
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|code| code.code().to_string())
        .unwrap_or_else(|| panic!("no SQLSTATE in {error}"))
}

/// BEGIN … COMMIT over the PostgreSQL protocol on a sharded database: statements reach the
/// groups owning their rows, the transaction reads its own writes in every group (pinned
/// reads, scattered aggregates, new rows with router-allocated rowids), nothing is visible
/// to others before COMMIT, COMMIT applies every group's part or none, ROLLBACK leaves
/// nothing, and a transaction whose reads another one changed fails with 40001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_transactions_span_groups_and_commit_whole_or_not_at_all() {
    let cluster = sharded_cluster().await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)",
            "CREATE TABLE moves (id INTEGER PRIMARY KEY, account INTEGER NOT NULL, amount BIGINT)",
        ]),
    )
    .await;
    for call in [
        "SELECT shoal_distribute('accounts', 'id')",
        "SELECT shoal_distribute('moves', 'account')",
    ] {
        execute_ok(&cluster, 0, "shop", json!([call])).await;
    }
    let rows: Vec<String> = (1..=8).map(|id| format!("({id}, 100)")).collect();
    let insert = format!(
        "INSERT INTO accounts (id, balance) VALUES {}",
        rows.join(", ")
    );
    execute_ok(&cluster, 0, "shop", json!([insert])).await;
    let (from, to) = ids_in_two_groups(&cluster).await;
    // INTEGER columns are PostgreSQL's integer (int4) over the wire.
    let (from, to) = (
        i32::try_from(from).expect("small id"),
        i32::try_from(to).expect("small id"),
    );
    let client = pg_client(&cluster, 1).await;
    let balance = "SELECT balance FROM accounts WHERE id = $1";

    // A transfer between two groups, with a ledger row in a third table.
    client.batch_execute("BEGIN").await.unwrap();
    for (id, amount) in [(from, -30i64), (to, 30)] {
        // (The amount is written in: a parameter's type is not inferred from arithmetic.)
        let update = format!("UPDATE accounts SET balance = balance + {amount} WHERE id = $1");
        let changed = client.execute(update.as_str(), &[&id]).await.unwrap();
        assert_eq!(changed, 1);
        client
            .execute(
                "INSERT INTO moves (account, amount) VALUES ($1, $2)",
                &[&id, &amount],
            )
            .await
            .unwrap();
    }
    let own: i64 = client.query_one(balance, &[&from]).await.unwrap().get(0);
    assert_eq!(own, 70, "the transaction reads its own write");
    let total: i64 = client
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total, 800,
        "a scattered read sees the writes in both groups"
    );
    let moves: i64 = client
        .query_one("SELECT count(*) FROM moves", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(moves, 2);
    assert_eq!(
        balance_over_http(&cluster, 0, from).await,
        100,
        "nothing is visible before COMMIT"
    );
    client.batch_execute("COMMIT").await.unwrap();
    for node in [0, 2] {
        assert_eq!(balance_over_http(&cluster, node, from).await, 70);
        assert_eq!(balance_over_http(&cluster, node, to).await, 130);
    }
    assert_eq!(
        values(
            &cluster,
            0,
            "shop",
            "SELECT account, amount FROM moves ORDER BY amount"
        )
        .await,
        json!([[from, -30], [to, 30]])
    );

    // ROLLBACK leaves every group as it was.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute("UPDATE accounts SET balance = 0", &[])
        .await
        .unwrap();
    client
        .execute("INSERT INTO moves (account, amount) VALUES (1, 0)", &[])
        .await
        .unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        values(
            &cluster,
            0,
            "shop",
            "SELECT sum(balance), (SELECT count(*) FROM moves) FROM accounts"
        )
        .await,
        json!([[800, 2]])
    );

    // Another writer changes what the transaction read in one group while it writes in
    // another: COMMIT fails with a serialization failure, and nothing of it is applied.
    client.batch_execute("BEGIN").await.unwrap();
    let seen: i64 = client.query_one(balance, &[&from]).await.unwrap().get(0);
    assert_eq!(seen, 70);
    execute_ok(
        &cluster,
        2,
        "shop",
        json!([format!("UPDATE accounts SET balance = 0 WHERE id = {from}")]),
    )
    .await;
    let update = format!("UPDATE accounts SET balance = balance + {seen} WHERE id = $1");
    client.execute(update.as_str(), &[&to]).await.unwrap();
    let refused = client.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&refused), "40001", "{refused}");
    assert_eq!(balance_over_http(&cluster, 0, to).await, 130);

    // A failing statement fails the transaction until ROLLBACK, as in PostgreSQL; schema
    // changes and savepoints are refused inside one, naming why.
    client.batch_execute("BEGIN").await.unwrap();
    let duplicate = client
        .execute("INSERT INTO accounts (id, balance) VALUES ($1, 1)", &[&to])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&duplicate), "23505", "{duplicate}");
    let ignored = client.query_one(balance, &[&to]).await.unwrap_err();
    assert_eq!(sqlstate(&ignored), "25P02", "{ignored}");
    client.batch_execute("ROLLBACK").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let savepoint = client.batch_execute("SAVEPOINT a").await.unwrap_err();
    assert_eq!(sqlstate(&savepoint), "0A000", "{savepoint}");
    client.batch_execute("ROLLBACK").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let ddl = client
        .batch_execute("CREATE TABLE later (id INTEGER PRIMARY KEY)")
        .await
        .unwrap_err();
    let message = ddl.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("schema change")),
        "{message:?}"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        values(&cluster, 0, "shop", "SELECT sum(balance) FROM accounts").await,
        json!([[730]])
    );
}

/// The rows `sql` (one parameter) returns for `param`, read through node 1.
async fn values_with(cluster: &Cluster, sql: &str, param: i64) -> Value {
    let (status, body) = cluster
        .post(0, "/db/query?db=shop", json!([[sql, param]]))
        .await;
    assert_eq!(status, 200, "{sql} ({param}): {body}");
    let result = &body["results"][0];
    assert!(result.get("error").is_none(), "{sql} ({param}): {result}");
    result.get("values").cloned().unwrap_or(json!([]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_sent_again_goes_to_the_group_of_each_calls_key_and_follows_kind_changes() {
    let cluster = sharded_cluster().await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
            "SELECT shoal_distribute('notes', 'id')",
            "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT)"
        ]),
    )
    .await;
    let rows: Vec<Value> = (1..=24)
        .map(|id| {
            json!([
                "INSERT INTO notes (id, body) VALUES (?, ?)",
                id,
                format!("note {id}")
            ])
        })
        .collect();
    execute_ok(&cluster, 0, "shop", Value::Array(rows)).await;

    // One text, planned once, many keys: each call reads and writes its key's group, which
    // holds only its share of the rows (a call sent to the wrong group would find none).
    let read = "SELECT body FROM notes WHERE id = ?";
    for round in 0..2 {
        for id in 1..=24i64 {
            let expected = if round == 0 {
                format!("note {id}")
            } else {
                format!("edited {id}")
            };
            assert_eq!(values_with(&cluster, read, id).await, json!([[expected]]));
        }
        if round == 0 {
            for id in 1..=24i64 {
                let body = execute(
                    &cluster,
                    0,
                    "shop",
                    json!([[
                        "UPDATE notes SET body = ? WHERE id = ?",
                        format!("edited {id}"),
                        id
                    ]]),
                )
                .await;
                assert_eq!(
                    body["results"][0]["rows_affected"], 1,
                    "update {id}: {body}"
                );
            }
        }
    }
    assert_eq!(values_with(&cluster, read, 999).await, json!([]));

    // A statement planned while its table was local is planned again once the table is
    // distributed (the catalog's epoch moved): its keys then go to their own groups.
    let count = "SELECT count(*) FROM tags WHERE id = ?";
    assert_eq!(values_with(&cluster, count, 1).await, json!([[0]]));
    execute_ok(
        &cluster,
        0,
        "shop",
        json!(["SELECT shoal_distribute('tags', 'id')"]),
    )
    .await;
    let rows: Vec<Value> = (1..=24)
        .map(|id| {
            json!([
                "INSERT INTO tags (id, name) VALUES (?, ?)",
                id,
                format!("tag {id}")
            ])
        })
        .collect();
    execute_ok(&cluster, 0, "shop", Value::Array(rows)).await;
    for id in 1..=24i64 {
        assert_eq!(
            values_with(&cluster, count, id).await,
            json!([[1]]),
            "tag {id}"
        );
    }
}

/// Moves `amount` from account `from` to account `to` in one transaction (both balances, so
/// the groups holding them commit it together).
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

/// Four workers moving 1 between the 16 accounts (mostly of different groups) through the
/// first two nodes, until stopped.
struct Transfers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<u32>>,
}

impl Transfers {
    fn start(cluster: &std::sync::Arc<Cluster>) -> Transfers {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..4i64 {
            let cluster = cluster.clone();
            let stop = stop.clone();
            workers.push(tokio::spawn(async move {
                let mut done = 0u32;
                let mut step = worker;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let from = step % 16 + 1;
                    let to = (step * 7 + 3) % 16 + 1;
                    step += 1;
                    if from != to && transfer(&cluster, (worker % 2) as usize, from, to, 1).await {
                        done += 1;
                    }
                }
                done
            }));
        }
        Transfers { stop, workers }
    }

    /// Stops the workers; how many transfers went through.
    async fn stop(self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut done = 0;
        for worker in self.workers {
            done += worker.await.unwrap();
        }
        done
    }
}

/// A 3-node cluster backing up into `backups` of `work` (with the target's `options`, and
/// the nodes' further backup flags `flags`), with sharded database `shop` holding 16
/// accounts of 100 each.
async fn bank_with_backups(
    work: &std::path::Path,
    options: &str,
    flags: &[&str],
) -> std::sync::Arc<Cluster> {
    let mut extra_args = vec![format!(
        "--backup-target={}{options}",
        work.join("backups").display()
    )];
    extra_args.extend(flags.iter().map(|flag| flag.to_string()));
    let cluster = std::sync::Arc::new(
        Cluster::start(ClusterSpec {
            voters: 3,
            extra_args,
            ..Default::default()
        })
        .await,
    );
    create_shop(&cluster).await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            "SELECT shoal_distribute('accounts', 'id')"
        ]),
    )
    .await;
    let accounts: Vec<Value> = (1..=16)
        .map(|id| json!(["INSERT INTO accounts (id, balance) VALUES (?, 100)", id]))
        .collect();
    execute_ok(&cluster, 0, "shop", Value::Array(accounts)).await;
    await_settled_sum(&cluster, 0, 1600, "opening").await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_taken_during_transfers_restores_every_group_to_one_moment() {
    let work = tempfile::tempdir().unwrap();
    let cluster = bank_with_backups(work.path(), "", &[]).await;

    // Transfers between accounts of different groups run from two nodes while the cut is
    // taken through a third.
    let transfers = Transfers::start(&cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = cluster.post(2, "/backup?db=shop", json!([])).await;
    assert_eq!(status, 200, "{body}");
    let cut = body["cut"].clone();
    let cut_id = cut["cut_id"].as_str().unwrap().to_string();
    let members = cut["members"].as_array().unwrap();
    assert_eq!(members.len(), 4, "{cut}");
    for member in members {
        assert!(
            member["log_index"].as_u64() >= member["fenced_at"].as_u64(),
            "{member}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let transfers = transfers.stop().await;
    assert!(
        transfers > 10,
        "only {transfers} transfers went through around the cut"
    );
    println!(
        "{transfers} transfers around a cut fenced for {} ms",
        cut["fenced_ms"]
    );
    await_settled_sum(&cluster, 0, 1600, "after the transfers").await;

    // Listed, among the database's backups.
    let listing = cluster.get_json(1, "/backup?db=shop").await.unwrap();
    assert!(
        listing["cuts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["cut_id"] == cut_id.as_str()),
        "{listing}"
    );

    // The data moves on: money leaves the bank, an account closes.
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "UPDATE accounts SET balance = 0 WHERE id = 3",
            "DELETE FROM accounts WHERE id = 5"
        ]),
    )
    .await;
    assert_ne!(settled_sum(&cluster, 0).await, Some(1600));

    // A cut that does not exist restores nothing and says so.
    let (status, body) = restore_shop(&cluster, 1, "id=20200101T000000000Z-00000000").await;
    assert_ne!(status, 200, "{body}");
    assert!(body.to_string().contains("not found"), "{body}");
    assert_eq!(
        values(&cluster, 1, "shop", "SELECT count(*) FROM accounts").await,
        json!([[15]])
    );

    // Restored: every group as of the cut, the total the bank opened with, on every node.
    let (status, body) = restore_shop(&cluster, 1, &format!("id={cut_id}")).await;
    assert_eq!(status, 200, "{body}");
    for node in 0..3 {
        await_settled_sum(&cluster, node, 1600, "restored").await;
    }
    assert_eq!(
        values(&cluster, 2, "shop", "SELECT count(*) FROM accounts").await,
        json!([[16]])
    );
    // Cross-group transfers go on after the restore (its fences were lifted).
    assert!(transfer(&cluster, 0, 1, 2, 5).await);
    await_settled_sum(&cluster, 2, 1600, "a transfer after the restore").await;

    // The command line takes and lists cuts too, saying what each holds.
    let node = cluster.url(0);
    let shoal = |args: Vec<String>| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(&args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let backup = |verb: &str| {
        vec![
            "backup".to_string(),
            "--node".into(),
            node.clone(),
            "--database".into(),
            "shop".into(),
            verb.into(),
        ]
    };
    let created = tokio::task::spawn_blocking({
        let args = backup("create");
        move || shoal(args)
    })
    .await
    .unwrap();
    assert!(
        created.starts_with("cut ") && created.contains("shard 3: backup"),
        "{created}"
    );
    let listed = tokio::task::spawn_blocking({
        let args = backup("list");
        move || shoal(args)
    })
    .await
    .unwrap();
    assert!(listed.contains(&cut_id), "{listed}");

    // A log index names no point of a sharded database: refused, naming what to do.
    let (status, body) = restore_shop(&cluster, 0, "to_index=5").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("to_time"), "{body}");
}

/// `POST /backup/restore?db=shop&<query>` through `node`.
async fn restore_shop(cluster: &Cluster, node: usize, query: &str) -> (u16, Value) {
    cluster
        .post(node, &format!("/backup/restore?db=shop&{query}"), json!([]))
        .await
}

/// The labels of the `marks` rows, in id order.
async fn marks(cluster: &Cluster, node: usize) -> Value {
    values(cluster, node, "shop", "SELECT label FROM marks ORDER BY id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_database_restored_to_a_moment_keeps_every_transfer_whole() {
    let work = tempfile::tempdir().unwrap();
    let cluster = bank_with_backups(work.path(), "", &["--backup-archive-log"]).await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE marks (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
            "SELECT shoal_distribute('marks', 'id')"
        ]),
    )
    .await;
    // Restores to a moment start from a cut before it.
    let (status, body) = cluster.post(2, "/backup?db=shop", json!([])).await;
    assert_eq!(status, 200, "{body}");
    let cut_id = body["cut"]["cut_id"].as_str().unwrap().to_string();

    // Transfers run before, across and after the moment; rows marked "before" are written
    // (to every group) before it, rows marked "after" after it.
    let transfers = Transfers::start(&cluster);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // Moments every 20 ms while transfers run: some fall between a transfer's decision and
    // a participant's commit.
    let mut during = Vec::new();
    for _ in 0..40 {
        during.push(now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: Vec<Value> = (1..=8)
        .map(|id| json!(["INSERT INTO marks (id, label) VALUES (?, 'before')", id]))
        .collect();
    execute_ok(&cluster, 2, "shop", Value::Array(before)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let moment = now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after: Vec<Value> = (101..=108)
        .map(|id| json!(["INSERT INTO marks (id, label) VALUES (?, 'after')", id]))
        .collect();
    execute_ok(&cluster, 2, "shop", Value::Array(after)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let done = transfers.stop().await;
    assert!(done > 10, "only {done} transfers went through");
    await_settled_sum(&cluster, 0, 1600, "after the transfers").await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!(["UPDATE accounts SET balance = 0 WHERE id = 3"]),
    )
    .await;

    // The archives reach past the moment within a few seconds; until then the restore says
    // so and changes nothing.
    let deadline = Instant::now() + SETTLE;
    let restored = loop {
        let (status, body) = restore_shop(&cluster, 1, &format!("to_time={moment}")).await;
        if status == 200 {
            break body["restored"].clone();
        }
        assert!(
            body.to_string().contains("known complete") && Instant::now() < deadline,
            "{status} {body}"
        );
        assert_eq!(marks(&cluster, 1).await.as_array().unwrap().len(), 16);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("{done} transfers; restored to {moment}: {restored}");
    assert_eq!(
        restored["groups"].as_array().unwrap().len(),
        4,
        "{restored}"
    );
    assert!(
        restored["transactions_kept"].as_u64().unwrap() > 0,
        "{restored}"
    );
    for node in 0..3 {
        await_settled_sum(&cluster, node, 1600, "restored to the moment").await;
        assert_eq!(
            marks(&cluster, node).await,
            json!([
                ["before"],
                ["before"],
                ["before"],
                ["before"],
                ["before"],
                ["before"],
                ["before"],
                ["before"]
            ]),
            "node {}",
            node + 1
        );
    }
    // The command line restores to a moment too, saying what it kept.
    let output = tokio::task::spawn_blocking({
        let node = cluster.url(2);
        let moment = moment.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
                .args(["backup", "--node", &node, "--database", "shop", "restore"])
                .args(["--into-cluster", &node, "--to-time", &moment])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        printed.starts_with(&format!("database shop restored to {moment} from cut")),
        "{printed}"
    );
    await_settled_sum(&cluster, 2, 1600, "restored again from the command line").await;
    // Not into a data directory: its groups restore together, into the running cluster.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["restore", "--database", "shop", "--backup-target"])
        .arg(work.path().join("backups"))
        .arg("--data-dir")
        .arg(work.path().join("restored"))
        .output()
        .unwrap();
    let complaint = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && complaint.contains("is sharded"),
        "{output:?}"
    );
    assert!(!work.path().join("restored").join("groups").exists());

    // A moment at which some group's own clock would split a transfer (its decision before
    // the moment, a participant's commit after it, or the other way round) restores it whole.
    let mut split = None;
    for moment in &during {
        let (status, body) = restore_shop(&cluster, 0, &format!("to_time={moment}")).await;
        assert_eq!(status, 200, "{body}");
        if body["restored"]["groups_off_the_moment"].as_u64() > Some(0) {
            split = Some((moment, body["restored"].clone()));
            break;
        }
    }
    let (split_at, restored) = split.expect("no moment fell inside a transfer");
    println!("restored to {split_at}, inside a transfer: {restored}");
    for node in 0..3 {
        await_settled_sum(&cluster, node, 1600, "restored inside a transfer").await;
    }

    // The cut to start from may be named; one taken after the moment cannot serve.
    let (status, body) = restore_shop(&cluster, 2, &format!("id={cut_id}&to_time={moment}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restored"]["cut_id"], json!(cut_id), "{body}");
    assert_eq!(marks(&cluster, 2).await.as_array().unwrap().len(), 8);
    let (status, body) = restore_shop(
        &cluster,
        2,
        &format!("id={cut_id}&to_time=2020-01-01T00:00:00Z"),
    )
    .await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body.to_string().contains("after the requested point"),
        "{body}"
    );

    // A moment before every cut has nothing to start from.
    let (status, body) = restore_shop(&cluster, 0, "to_time=2020-01-01T00:00:00Z").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.to_string().contains("cut of database"), "{body}");
    await_settled_sum(&cluster, 0, 1600, "after a refused restore").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_write_that_misses_its_write_concern_says_so() {
    let mut cluster = sharded_cluster().await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!([
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
            "SELECT shoal_distribute('notes', 'id')",
            "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT)"
        ]),
    )
    .await;
    cluster.kill(2);
    // Each reaches one group, by the router's general path (a routed INSERT, a write to a
    // local table) and, sent again, by its direct one (a pinned UPDATE), or every group (a
    // schema change): committed by the two nodes left, applied on fewer members than `w=all`
    // asks, and reported.
    let writes = [
        json!(["CREATE TABLE IF NOT EXISTS extra (id INTEGER PRIMARY KEY)"]),
        json!([["INSERT INTO notes (id, body) VALUES (?, 'a')", 7]]),
        json!([[
            "INSERT INTO settings (name, value) VALUES (?, 'on')",
            "mode"
        ]]),
        json!([["UPDATE notes SET body = ? WHERE id = 7", "b"]]),
        json!([["UPDATE notes SET body = ? WHERE id = 7", "c"]]),
    ];
    for write in writes {
        let deadline = Instant::now() + SETTLE;
        let body = loop {
            let (status, body) = cluster
                .post(0, "/db/execute?db=shop&w=all&wtimeout=1s", write.clone())
                .await;
            if status == 200 && body["results"][0].get("error").is_none() {
                break body;
            }
            // The groups node 3 led elect new leaders first.
            assert!(Instant::now() < deadline, "{write}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let concern = &body["write_concern_error"];
        assert_eq!(concern["required"], json!(3), "{write}: {body}");
        assert_eq!(concern["applied_on"], json!(2), "{write}: {body}");
    }
    assert_eq!(
        values(&cluster, 0, "shop", "SELECT body FROM notes WHERE id = 7").await,
        json!([["c"]])
    );
    // A transaction across two groups commits through both logs; its steps' misses too.
    let mut other = None;
    for id in 8..64 {
        let sql = format!(
            "SELECT tier FROM shoal_plan('SELECT * FROM notes WHERE id IN (7, {id})') \
             WHERE step = 1"
        );
        if values(&cluster, 0, "shop", &sql).await == json!([["scatter"]]) {
            other = Some(id);
            break;
        }
    }
    let other = other.expect("a note id in another group than 7's");
    let (status, body) = cluster
        .post(
            0,
            "/db/execute?db=shop&transaction&w=all&wtimeout=1s",
            json!([
                ["UPDATE notes SET body = 'd' WHERE id = ?", 7],
                ["INSERT INTO notes (id, body) VALUES (?, 'e')", other]
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("error").is_none()),
        "{body}"
    );
    assert_eq!(body["write_concern_error"]["required"], json!(3), "{body}");
    assert_eq!(
        body["write_concern_error"]["applied_on"],
        json!(2),
        "{body}"
    );
    assert_eq!(
        values(&cluster, 0, "shop", "SELECT count(*) FROM notes").await,
        json!([[2]])
    );
}

/// The ids of the backups in `folder` of the test's backup directory.
fn backups_in(work: &std::path::Path, folder: &str) -> Vec<String> {
    let dir = work
        .join("backups")
        .join("databases")
        .join(folder)
        .join("backups");
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with("20"))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_of_a_sharded_database_are_cuts_kept_whole_by_retention() {
    let work = tempfile::tempdir().unwrap();
    let cluster = bank_with_backups(
        work.path(),
        "?keep_last=2",
        &["--backup-schedule=*/2 * * * * *", "--backup-jitter=0s"],
    )
    .await;
    // Cuts every two seconds while transfers run; retention keeps the newest two.
    let transfers = Transfers::start(&cluster);
    let deadline = Instant::now() + SETTLE;
    let mut first_seen = None;
    let cuts = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let listing = cluster.get_json(0, "/backup?db=shop").await.unwrap();
        let cuts = listing["cuts"].as_array().cloned().unwrap_or_default();
        if first_seen.is_none() {
            first_seen = cuts.first().map(|cut| cut["cut_id"].clone());
        }
        let pruned = first_seen
            .as_ref()
            .is_some_and(|first| cuts.iter().all(|cut| &cut["cut_id"] != first));
        if cuts.len() == 2 && pruned {
            break cuts;
        }
        if Instant::now() > deadline {
            // The workers hold the cluster: stopped first, so its logs are kept.
            transfers.stop().await;
            panic!("retention did not keep the newest two of three cuts or more: {listing}");
        }
    };
    let done = transfers.stop().await;
    assert!(done > 0);
    // Every group keeps each member of every cut kept, and little else (a cut being taken
    // or pruned meanwhile: one more). Looked at between two equal listings, as cuts go on.
    let folders: Vec<String> = (0..4u32)
        .map(|shard| match shard {
            0 => "shop".to_string(),
            shard => format!("shop#{shard}"),
        })
        .collect();
    let mut cuts = cuts;
    loop {
        let held: Vec<Vec<String>> = folders
            .iter()
            .map(|folder| backups_in(work.path(), folder))
            .collect();
        let listing = cluster.get_json(0, "/backup?db=shop").await.unwrap();
        let now = listing["cuts"].as_array().cloned().unwrap_or_default();
        if now != cuts {
            cuts = now;
            continue;
        }
        for (shard, (folder, held)) in folders.iter().zip(&held).enumerate() {
            for cut in &cuts {
                let member = cut["members"][shard]["backup_id"].as_str().unwrap();
                assert!(
                    held.iter().any(|id| id == member),
                    "{folder}: {held:?} lacks {member}"
                );
            }
            assert!(held.len() <= 3, "{folder} kept {held:?}");
        }
        break;
    }
    await_settled_sum(&cluster, 0, 1600, "after the transfers").await;
    execute_ok(
        &cluster,
        0,
        "shop",
        json!(["UPDATE accounts SET balance = 0 WHERE id = 3"]),
    )
    .await;
    // The newest kept cut restores the bank whole.
    let newest = cuts[1]["cut_id"].as_str().unwrap();
    let (status, body) = restore_shop(&cluster, 0, &format!("id={newest}")).await;
    assert_eq!(status, 200, "{body}");
    await_settled_sum(&cluster, 1, 1600, "restored from a scheduled cut").await;
}
