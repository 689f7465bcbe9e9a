//! The PostgreSQL endpoint as PostgreSQL clients use it: the real `psql`, psycopg (Python) and
//! tokio-postgres against a real 3-node cluster on loopback.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::Duration;

use support::{Cluster, ClusterSpec};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const SETTLE: Duration = Duration::from_secs(20);

fn three_voters() -> ClusterSpec {
    ClusterSpec {
        voters: 3,
        ..Default::default()
    }
}

/// A tokio-postgres session with node `node`.
async fn connect(cluster: &Cluster, node: usize) -> Client {
    let config = format!(
        "host=127.0.0.1 port={} user=shoal dbname=shoal connect_timeout=5",
        cluster.nodes[node].pg_port
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connect over the PostgreSQL protocol");
    tokio::spawn(connection);
    client
}

/// One more statement in `transaction`, then COMMIT: the first error of either.
async fn execute_then_commit(
    transaction: tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), tokio_postgres::Error> {
    transaction.execute(sql, params).await?;
    transaction.commit().await
}

/// Runs `psql` against node `node` with `args`; returns (success, stdout, stderr).
async fn psql(cluster: &Cluster, node: usize, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.nodes[node].pg_port.to_string(),
            "-U",
            "shoal",
            "-d",
            "shoal",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .await
        .expect("psql runs (install postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_psql_creates_inserts_and_queries_through_a_follower() {
    let cluster = Cluster::start(three_voters()).await;
    let follower = (cluster.leader(SETTLE).await + 1) % 3;
    let (ok, out, err) = psql(
        &cluster,
        follower,
        &[
            "-c",
            "CREATE TABLE fruit(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, photo BLOB)",
            "-c",
            "INSERT INTO fruit(name, price, photo) VALUES ('apple', 1.5, x'00ff'), ('pear', NULL, NULL)",
            "-c",
            "SELECT id, name, price, photo FROM fruit ORDER BY id",
        ],
    )
    .await;
    assert!(ok, "psql failed: {err}");
    assert!(out.contains("CREATE TABLE"), "{out}");
    assert!(out.contains("INSERT 0 2"), "{out}");
    assert!(out.contains("apple |   1.5 | \\x00ff"), "{out}");
    assert!(out.contains("(2 rows)"), "{out}");
    // The write went through the log: every node has it.
    for node in 0..3 {
        cluster
            .wait_for_values(
                node,
                "SELECT count(*) FROM fruit",
                &serde_json::json!([[2]]),
                SETTLE,
            )
            .await;
    }
    // Errors carry a SQLSTATE psql shows, and change nothing.
    let (ok, _, err) = psql(&cluster, follower, &["-c", "SELECT * FROM missing"]).await;
    assert!(!ok);
    assert!(
        err.contains("42P01") && err.contains("no such table"),
        "{err}"
    );
    let (ok, _, err) = psql(
        &cluster,
        follower,
        &["-c", "INSERT INTO fruit(id, name) VALUES (1, 'dup')"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("23505"), "{err}");
    // Several statements in one string are one implicit transaction: all or nothing.
    let (ok, _, err) = psql(
        &cluster,
        follower,
        &[
            "-c",
            "INSERT INTO fruit(name) VALUES ('fig'); INSERT INTO fruit(name) VALUES (NULL)",
        ],
    )
    .await;
    assert!(!ok && err.contains("23502"), "{err}");
    let (_, out, _) = psql(
        &cluster,
        follower,
        &["-At", "-c", "SELECT count(*) FROM fruit WHERE name = 'fig'"],
    )
    .await;
    assert_eq!(out.trim(), "0");
    // PostgreSQL spellings: `::` casts and SERIAL keys.
    let (ok, out, err) = psql(
        &cluster,
        follower,
        &[
            "-At",
            "-c",
            "CREATE TABLE tagged(id SERIAL PRIMARY KEY, label TEXT)",
            "-c",
            "INSERT INTO tagged(label) VALUES ('a'), ('b')",
            "-c",
            "SELECT max(id)::text || '/' || ('41'::int + 1) FROM tagged",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("2/42"), "{out}");
    // Session information psql and drivers ask for.
    let (ok, out, err) = psql(&cluster, follower, &["-At", "-c", "SELECT version()"]).await;
    assert!(ok && out.starts_with("PostgreSQL 16"), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p11_psql_speaks_postgresql_and_is_told_what_is_not_served() {
    let cluster = Cluster::start(three_voters()).await;
    let (ok, out, err) = psql(
        &cluster,
        1,
        &[
            "-At",
            "-c",
            "CREATE TABLE people(id SERIAL PRIMARY KEY, name VARCHAR(20), \
             joined TIMESTAMPTZ DEFAULT now())",
            "-c",
            "INSERT INTO people(name) VALUES ('Ada'), ('bob'), (E'Al\\'s')",
            "-c",
            "SELECT name FROM people WHERE name ILIKE 'a%' ORDER BY id",
            "-c",
            "SELECT substring(name FROM 1 FOR 2), position('d' IN name)::int, \
             greatest(id, NULL, 2) FROM people ORDER BY id LIMIT 1",
            "-c",
            "SELECT count(*) FROM people WHERE joined <= now() AND joined > '2000-01-01'",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["CREATE TABLE", "INSERT 0 3", "Ada", "Al's", "Ad|2|2", "3"],
        "{out}"
    );
    // psql's describing commands that read arrays and functions answer too.
    let (ok, out, err) = psql(
        &cluster,
        1,
        &[
            "-c",
            "\\d+ people",
            "-c",
            "\\di",
            "-c",
            "\\df",
            "-c",
            "SELECT now()",
        ],
    )
    .await;
    assert!(ok, "{err}");
    for expected in [
        "nextval('people_id_seq'::regclass)",
        "character varying(20)",
        "timestamp with time zone",
        "people_pkey",
        "List of functions",
        " now ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // A construct SQLite has no equivalent for: 0A000, naming it; nothing is written.
    let (ok, _, err) = psql(
        &cluster,
        0,
        &["-c", "UPDATE people SET name = 'x' WHERE name ~ '^A'"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("0A000") && err.contains("regular expression operator ~"),
        "{err}"
    );
    let (ok, out, err) = psql(
        &cluster,
        0,
        &["-At", "-c", "SELECT count(*) FROM people WHERE name = 'x'"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_psql_describes_tables_indexes_and_keys() {
    let cluster = Cluster::start(three_voters()).await;
    let (ok, _, err) = psql(
        &cluster,
        0,
        &[
            "-c",
            "CREATE TABLE parent(id INTEGER PRIMARY KEY, code TEXT UNIQUE)",
            "-c",
            "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id), \
             name VARCHAR(20) NOT NULL DEFAULT 'x')",
            "-c",
            "CREATE INDEX child_name ON child(name)",
            "-c",
            "CREATE VIEW named AS SELECT id, name FROM child",
        ],
    )
    .await;
    assert!(ok, "{err}");
    // Other nodes describe what they have applied: wait until they hold the new schema.
    for node in [1, 2] {
        cluster
            .wait_for_values(
                node,
                "SELECT count(*) FROM sqlite_master WHERE name IN ('parent', 'child', 'child_name', 'named')",
                &serde_json::json!([[4]]),
                SETTLE,
            )
            .await;
    }
    let (ok, out, err) = psql(&cluster, 1, &["-c", "\\dt"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("public | child  | table | shoal"), "{out}");
    assert!(out.contains("public | parent | table | shoal"), "{out}");
    assert!(out.contains("(2 rows)"), "{out}");
    let (ok, out, err) = psql(&cluster, 1, &["-c", "\\d child"]).await;
    assert!(ok, "{err}");
    for expected in [
        "Table \"public.child\"",
        // Types as PostgreSQL prints them; the rowid numbers rows as a serial column does.
        "id        | integer               |           | not null | nextval('child_id_seq'::regclass)",
        "name      | character varying(20) |           | not null | 'x'",
        "\"child_pkey\" PRIMARY KEY, btree (id)",
        "\"child_name\" btree (name)",
        "FOREIGN KEY (parent_id) REFERENCES parent(id)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let (ok, out, err) = psql(
        &cluster,
        2,
        &["-c", "\\d parent", "-c", "\\dv", "-c", "\\l"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Referenced by:"), "{out}");
    assert!(out.contains("public | named | view | shoal"), "{out}");
    assert!(out.contains("shoal | shoal | UTF8"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p20_prepared_statements_bind_parameters_and_return_binary_results() {
    let cluster = Cluster::start(three_voters()).await;
    let follower = (cluster.leader(SETTLE).await + 1) % 3;
    let client = connect(&cluster, follower).await;
    client
        .batch_execute(
            "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty BIGINT, price REAL, \
             data BLOB, done BOOLEAN)",
        )
        .await
        .unwrap();
    // The session reads its own DDL on the follower it is connected to.
    let insert = client
        .prepare_typed(
            "INSERT INTO item(name, qty, price, data, done) VALUES ($1, $2, $3, $4, $5)",
            &[
                tokio_postgres::types::Type::TEXT,
                tokio_postgres::types::Type::INT8,
                tokio_postgres::types::Type::FLOAT8,
                tokio_postgres::types::Type::BYTEA,
                tokio_postgres::types::Type::BOOL,
            ],
        )
        .await
        .unwrap();
    let inserted = client
        .execute(&insert, &[&"it's", &7i64, &2.5f64, &vec![1u8, 2, 3], &true])
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    client
        .execute(
            &insert,
            &[
                &None::<String>,
                &None::<i64>,
                &None::<f64>,
                &None::<Vec<u8>>,
                &None::<bool>,
            ],
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT id, name, qty, price, data, done FROM item WHERE qty = $1",
            &[&7i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    // INTEGER is PostgreSQL's integer (int4), BIGINT its bigint, as declared.
    assert_eq!(row.get::<_, i32>("id"), 1);
    assert_eq!(row.get::<_, String>("name"), "it's");
    assert_eq!(row.get::<_, f64>("price"), 2.5);
    assert_eq!(row.get::<_, Vec<u8>>("data"), vec![1, 2, 3]);
    assert!(row.get::<_, bool>("done"));
    let nulls = client
        .query_one("SELECT name, qty FROM item WHERE id = $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(nulls.get::<_, Option<String>>(0), None);
    assert_eq!(nulls.get::<_, Option<i64>>(1), None);
    // $N binds by position even when the text uses them out of order.
    let ordered = client
        .query_one("SELECT $2 || $1", &[&"a", &"b"])
        .await
        .unwrap();
    assert_eq!(ordered.get::<_, String>(0), "ba");
    // Constraint violations map to their SQLSTATE; nothing is written.
    let duplicate = client
        .execute("INSERT INTO item(id, name) VALUES ($1, $2)", &[&1i32, &"x"])
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let count = client
        .query_one("SELECT count(*) FROM item", &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 2, "count(*) is described as int8");
    // Arithmetic takes its operands' type, as PostgreSQL widens them (bigint + integer is a
    // bigint); text functions are text.
    let sum = client
        .query_one("SELECT qty + 1, upper(name) FROM item WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(sum.get::<_, i64>(0), 8);
    assert_eq!(sum.get::<_, String>(1), "IT'S");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p30_transactions_read_their_own_writes_and_commit_atomically() {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    let mut alice = connect(&cluster, follower).await;
    let bob = connect(&cluster, leader).await;
    alice
        .batch_execute("CREATE TABLE account(id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)")
        .await
        .unwrap();
    alice
        .batch_execute("INSERT INTO account VALUES (1, 100), (2, 0)")
        .await
        .unwrap();

    // A transfer: both updates or neither; the transaction sees its own first update.
    let transaction = alice.transaction().await.unwrap();
    transaction
        .execute(
            "UPDATE account SET balance = balance - 30 WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let inside = transaction
        .query_one("SELECT balance FROM account WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(inside.get::<_, i64>(0), 70);
    let outside = bob
        .query_one("SELECT balance FROM account WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(
        outside.get::<_, i64>(0),
        100,
        "uncommitted writes are invisible"
    );
    transaction
        .execute(
            "UPDATE account SET balance = balance + 30 WHERE id = 2",
            &[],
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let total = bob
        .query_one("SELECT sum(balance), min(balance) FROM account", &[])
        .await
        .unwrap();
    assert_eq!(total.get::<_, i64>(0), 100);
    assert_eq!(total.get::<_, i64>(1), 30);

    // ROLLBACK leaves nothing behind.
    let transaction = alice.transaction().await.unwrap();
    transaction
        .execute("DELETE FROM account", &[])
        .await
        .unwrap();
    transaction.rollback().await.unwrap();
    let rows = bob.query("SELECT id FROM account", &[]).await.unwrap();
    assert_eq!(rows.len(), 2);

    // An error fails the transaction: everything else is refused until it ends.
    let transaction = alice.transaction().await.unwrap();
    let error = transaction
        .execute("INSERT INTO account VALUES (1, 5)", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let refused = transaction
        .execute("INSERT INTO account VALUES (3, 5)", &[])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    transaction.rollback().await.unwrap();
    assert_eq!(
        bob.query("SELECT id FROM account", &[])
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p35_a_transaction_whose_reads_changed_fails_with_a_serialization_error() {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let mut alice = connect(&cluster, leader).await;
    let bob = connect(&cluster, (leader + 1) % 3).await;
    alice
        .batch_execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, n BIGINT); INSERT INTO counter VALUES (1, 0)")
        .await
        .unwrap();
    // Alice reads n, Bob changes it, Alice writes what she computed from her read: the lost
    // update PostgreSQL's SERIALIZABLE prevents is refused here too.
    let transaction = alice.transaction().await.unwrap();
    let seen = transaction
        .query_one("SELECT n FROM counter WHERE id = 1", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    bob.execute("UPDATE counter SET n = n + 10 WHERE id = 1", &[])
        .await
        .unwrap();
    let outcome = execute_then_commit(
        transaction,
        "UPDATE counter SET n = $1 WHERE id = 1",
        &[&(seen + 1)],
    )
    .await;
    let error = outcome.expect_err("a transaction built on a stale read must not commit");
    assert_eq!(
        error.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE),
        "{error:?}"
    );
    let n = bob
        .query_one("SELECT n FROM counter WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(
        n.get::<_, i64>(0),
        10,
        "Bob's update stands, Alice's did not apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p37_a_leadership_change_mid_transaction_rolls_it_back() {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    let mut client = connect(&cluster, follower).await;
    client
        .batch_execute("CREATE TABLE t(x INTEGER)")
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    transaction
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
    let target = (leader + 2) % 3;
    let (status, body) = cluster
        .post(
            leader,
            "/leader",
            serde_json::json!({"id": cluster.nodes[target].id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    cluster
        .wait_for_leader(|leader| leader == target, SETTLE)
        .await;
    let outcome = execute_then_commit(transaction, "INSERT INTO t VALUES (2)", &[]).await;
    let error = outcome.expect_err("a transaction must not span two leaders");
    assert_eq!(
        error.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE),
        "{error:?}"
    );
    assert!(format!("{error:?}").contains("leader changed"), "{error:?}");
    let rows = client.query("SELECT x FROM t", &[]).await.unwrap();
    assert!(rows.is_empty(), "nothing of the transaction was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p38_a_transaction_whose_leader_is_killed_fails_and_applies_nothing() {
    let mut cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    let mut client = connect(&cluster, follower).await;
    client
        .batch_execute("CREATE TABLE t(x INTEGER)")
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    transaction
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
    cluster.kill(leader); // SIGKILL
    let new_leader = cluster.leader(SETTLE).await;
    assert_ne!(new_leader, leader);
    let outcome = execute_then_commit(transaction, "INSERT INTO t VALUES (2)", &[]).await;
    let error = outcome.expect_err("a transaction must not survive its leader");
    assert_eq!(
        error.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE),
        "{error:?}"
    );
    let rows = client.query("SELECT x FROM t", &[]).await.unwrap();
    assert!(
        rows.is_empty(),
        "nothing of the transaction was applied: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p39_psycopg_transaction_fails_when_its_leader_is_killed() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/psycopg_leader_kill.py"
    );
    let mut child = tokio::process::Command::new("python3")
        .args([script, &cluster.nodes[follower].pg_port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(SETTLE, stdout.next_line()).await;
    assert!(
        matches!(&ready, Ok(Ok(Some(line))) if line == "READY"),
        "the script did not open its transaction: {ready:?}"
    );
    cluster.kill(leader); // SIGKILL, mid-transaction
    assert_ne!(cluster.leader(SETTLE).await, leader);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    while let Ok(Some(line)) = stdout.next_line().await {
        rest.push(line);
    }
    let output = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}\n{}",
        rest.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("psycopg leader kill: ok"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p40_session_settings_choose_consistency_and_write_concern() {
    let cluster = Cluster::start(three_voters()).await;
    let client = connect(&cluster, 0).await;
    client
        .batch_execute(
            "SET shoal.read_consistency = 'linearizable'; SET shoal.write_concern TO 'all'",
        )
        .await
        .unwrap();
    let shown = client
        .query_one("SHOW shoal.write_concern", &[])
        .await
        .unwrap();
    assert_eq!(shown.get::<_, String>(0), "all");
    client
        .batch_execute("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // w=all: every node has applied the insert once it is acknowledged.
    for node in 0..3 {
        let values = cluster
            .query(node, "SELECT count(*) FROM t", "level=none")
            .await
            .unwrap();
        assert_eq!(values, serde_json::json!([[1]]), "node {}", node + 1);
    }
    let error = client
        .batch_execute("SET shoal.read_consistency = 'eventual'")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    assert!(error.to_string().contains("eventual") || format!("{error:?}").contains("eventual"));
    let error = client
        .batch_execute("SET no_such_thing = 1")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_OBJECT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p45_a_cancel_request_stops_a_long_query() {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let client = connect(&cluster, leader).await;
    client
        .batch_execute("SET statement_timeout = '60s'")
        .await
        .unwrap();
    let token = client.cancel_token();
    // A cancel that arrives before the query started cancels nothing (as in PostgreSQL):
    // repeat it until the query has ended.
    let canceller = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = token.cancel_query(NoTls).await;
        }
    });
    let started = std::time::Instant::now();
    let error = client
        .query(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) \
             SELECT count(*) FROM n",
            &[],
        )
        .await
        .expect_err("an endless query must be cancelled");
    canceller.abort();
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancelled, not timed out: {:?}",
        started.elapsed()
    );
    // The session goes on.
    let one = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(one.get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p50_psycopg_session_runs_unchanged() {
    let cluster = Cluster::start(three_voters()).await;
    let follower = (cluster.leader(SETTLE).await + 1) % 3;
    // The session talks to a follower; its writes are checked on every node.
    let ports: Vec<String> = [follower, (follower + 1) % 3, (follower + 2) % 3]
        .iter()
        .map(|node| cluster.nodes[*node].pg_port.to_string())
        .collect();
    support::run_client_script("psycopg_session.py", &ports, "psycopg session: ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p55_sqlalchemy_core_creates_inserts_and_selects() {
    let cluster = Cluster::start(three_voters()).await;
    let follower = (cluster.leader(SETTLE).await + 1) % 3;
    let port = [cluster.nodes[follower].pg_port.to_string()];
    support::run_client_script("sqlalchemy_session.py", &port, "sqlalchemy session: ok").await;
}

/// p56: SQLAlchemy 2's ORM with psycopg 3, as an application uses it (tests/clients/
/// sqlalchemy_orm.py): models with integer, string, boolean, date, timestamp (naive and
/// zoned), numeric, float, JSON, UUID and enum columns; CRUD, eager loading, ILIKE, joins,
/// aggregates, pagination, integrity errors, `inspect()` reflection of every table — written
/// through a follower, every value and its Python type read back on the follower and the
/// leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p56_sqlalchemy_orm_session_reads_back_typed_values_on_every_node() {
    run_through_a_follower_and_the_leader("sqlalchemy_orm.py", "sqlalchemy orm: ok").await;
}

/// Runs a client script against a new 3-node cluster: its writes through a follower (the
/// first port), its reads checked there and on the leader.
async fn run_through_a_follower_and_the_leader(script: &str, success_line: &str) {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    let args = [
        cluster.nodes[follower].pg_port.to_string(),
        cluster.nodes[leader].pg_port.to_string(),
    ];
    support::run_client_script(script, &args, success_line).await;
}

/// p57: asyncpg (tests/clients/asyncpg_session.py) — the binary protocol for every parameter
/// and result, prepared statements, numeric/date/time/timestamptz/uuid/jsonb/bool/bigint values
/// read back with their Python types, ILIKE and case-sensitive LIKE, now(), a unique violation
/// by its class, a rolled-back transaction — written through a follower, read on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p57_asyncpg_reads_back_typed_values_over_the_binary_protocol() {
    run_through_a_follower_and_the_leader("asyncpg_session.py", "asyncpg session: ok").await;
}

/// p58: Knex over node-postgres (tests/clients/node/knex_session.js) — Knex's migrator runs
/// migrations that create tables with increments, timestamps, json, boolean, decimal, a unique
/// column, an index and a foreign key (added by ALTER TABLE, which Shoal makes by rebuilding the
/// table), then add a column and alter another; CRUD with `returning`, ILIKE, a join, group
/// by, pagination, a rolled-back transaction, unique/foreign-key/not-null violations by their
/// SQLSTATE, ON DELETE CASCADE, and the migrations rolled back — written through a follower,
/// read on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p58_knex_migrates_and_runs_crud_through_node_postgres() {
    run_through_a_follower_and_the_leader("node/knex_session.js", "knex session: ok").await;
}

/// p59: Alembic (tests/clients/alembic_migration.py) — autogenerate compared with a schema made
/// by create_all finds nothing to change (and finds an added and a widened column when the
/// models have them); a migration run by Alembic's command API adds a column and an index,
/// alters a column's type and nullability and adds a foreign key, then is downgraded — each
/// state checked by reflection through a follower and on the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p59_alembic_autogenerates_nothing_and_migrates_up_and_down() {
    run_through_a_follower_and_the_leader("alembic_migration.py", "alembic migration: ok").await;
}

/// p61: Django (tests/clients/django_session.py) — makemigrations and migrate with the
/// contenttypes and auth apps (their migrations alter tables other tables reference, through
/// deferred foreign keys), post-migrate permissions (bulk_create through UNNEST), the ORM's
/// create/get_or_create/bulk_create, filters, JSON keys, select_related/prefetch_related,
/// annotate/aggregate, F() updates, slicing, a rolled-back atomic block, IntegrityError, a
/// cascading delete and inspectdb — written through a follower, read on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p61_django_migrates_and_runs_its_orm() {
    run_through_a_follower_and_the_leader("django_session.py", "django session: ok").await;
}

/// p62: Sequelize 6 over node-postgres (tests/clients/node/sequelize_session.js) — sync({ force })
/// with its index and constraint reflection, associations, create/bulkCreate, iLike, include,
/// managed transactions committed and rolled back, a unique violation as Sequelize's error,
/// describeTable — written through a follower, read on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p62_sequelize_syncs_and_queries_through_node_postgres() {
    run_through_a_follower_and_the_leader("node/sequelize_session.js", "sequelize session: ok")
        .await;
}

/// p63: TypeORM 0.3 over node-postgres (tests/clients/node/typeorm_session.js) — synchronize
/// with dropSchema (TypeORM's schema reads through information_schema and pg_catalog with
/// quoted names, `::regclass` of built names, `= ANY (conkey)`), named PRIMARY KEY / UNIQUE
/// constraints, uuid defaults, repositories with version and update-date columns, the query
/// builder, a rolled-back transaction, 23505, the query runner's column changes, and a second
/// DataSource that finds nothing to synchronize — written through a follower, read on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p63_typeorm_synchronizes_and_finds_no_schema_drift() {
    run_through_a_follower_and_the_leader("node/typeorm_session.js", "typeorm session: ok").await;
}

/// p64: sequences — CREATE SEQUENCE with options; nextval from sessions on a follower and the
/// leader never hands out a value twice; currval/lastval are per session (55000 before any
/// nextval); a value taken in a rolled-back transaction is not given again (as in PostgreSQL);
/// nextval in INSERT … VALUES (simple and extended protocol), bigint results; setval with and
/// without is_called, out of bounds (22003) and the last value reached (2200H); setval of a
/// SERIAL column's sequence through pg_get_serial_sequence (Django's reset) changes nothing;
/// nextval per row refused (0A000); the catalogs list the sequence; DROP SEQUENCE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p64_sequences_hand_out_each_value_once_across_nodes() {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    let on_follower = connect(&cluster, follower).await;
    let on_leader = connect(&cluster, leader).await;
    on_follower
        .batch_execute(
            "CREATE SEQUENCE order_numbers START 100 INCREMENT BY 10 MAXVALUE 1000; \
             CREATE TABLE orders (id SERIAL PRIMARY KEY, number BIGINT NOT NULL, item TEXT)",
        )
        .await
        .unwrap();
    let error = on_follower
        .batch_execute("SELECT currval('order_numbers')")
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );

    async fn next(client: &Client) -> i64 {
        client
            .query_one("SELECT nextval('order_numbers')", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    }
    let mut taken = Vec::new();
    for _ in 0..5 {
        taken.push(next(&on_follower).await);
        taken.push(next(&on_leader).await);
    }
    let mut sorted = taken.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).map(|i| 100 + 10 * i).collect::<Vec<i64>>());
    // currval and lastval: what this session's nextval gave, not the other's.
    let row = on_follower
        .query_one("SELECT currval('order_numbers'), lastval()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), taken[8]);
    assert_eq!(row.get::<_, i64>(1), taken[8]);

    // A value taken in a transaction that rolls back is gone, as in PostgreSQL.
    on_leader.batch_execute("BEGIN").await.unwrap();
    let rolled_back = next(&on_leader).await;
    on_leader.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(next(&on_leader).await, rolled_back + 10);

    // nextval in INSERT … VALUES, simple and extended protocol.
    on_follower
        .batch_execute("INSERT INTO orders (number, item) VALUES (nextval('order_numbers'), 'a')")
        .await
        .unwrap();
    let inserted = on_follower
        .query_one(
            "INSERT INTO orders (number, item) VALUES (nextval('order_numbers'), $1) \
             RETURNING number",
            &[&"b"],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(inserted, rolled_back + 30);

    // setval: the next value follows it (is_called true) or is it (false).
    let set = on_follower
        .query_one("SELECT setval('order_numbers', 500)", &[])
        .await
        .unwrap();
    assert_eq!(set.get::<_, i64>(0), 500);
    assert_eq!(next(&on_leader).await, 510);
    on_follower
        .batch_execute("SELECT setval('order_numbers', 990, false)")
        .await
        .unwrap();
    assert_eq!(next(&on_leader).await, 990);
    assert_eq!(next(&on_leader).await, 1000);
    let error = on_leader
        .query_one("SELECT nextval('order_numbers')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED)
    );
    let error = on_leader
        .batch_execute("SELECT setval('order_numbers', 5000)")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE));

    // Django's sequence reset of a SERIAL column answers the largest id and changes nothing.
    let reset = on_follower
        .query_one(
            "SELECT setval(pg_get_serial_sequence('\"orders\"','id'), coalesce(max(\"id\"), 1), \
             max(\"id\") IS NOT null) FROM \"orders\"",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reset.get::<_, i64>(0), 2);
    let id = on_follower
        .query_one("INSERT INTO orders (number) VALUES (0) RETURNING id", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    assert_eq!(id, 3);
    let serial = on_leader
        .query_one("SELECT pg_get_serial_sequence('orders', 'id')", &[])
        .await
        .unwrap();
    assert_eq!(serial.get::<_, String>(0), "public.orders_id_seq");

    // nextval per row is refused by name, not run with one value for every row.
    let error = on_follower
        .batch_execute("UPDATE orders SET number = nextval('order_numbers')")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
    assert!(error.to_string().contains("nextval()") || format!("{error:?}").contains("nextval()"));

    let listed = on_leader
        .query(
            "SELECT c.relname, s.seqincrement, s.seqmax FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid WHERE c.relkind = 'S'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].get::<_, String>(0), "order_numbers");
    let tables = on_leader
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap();
    let tables: Vec<String> = tables.iter().map(|row| row.get(0)).collect();
    assert_eq!(tables, ["orders"]);

    on_leader
        .batch_execute("DROP SEQUENCE order_numbers")
        .await
        .unwrap();
    let error = on_leader
        .batch_execute("DROP SEQUENCE order_numbers")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE));
    on_leader
        .batch_execute("DROP SEQUENCE IF EXISTS order_numbers")
        .await
        .unwrap();
}

/// p65: a multi-row INSERT whose rows leave different columns to their defaults (TypeORM's and
/// Knex's batches of objects with different keys) runs as one statement: each row gets its
/// defaults, RETURNING rows come back in VALUES order, the count is the whole; a failing row
/// fails all of them; in a transaction block that rolls back nothing stays; the simple
/// protocol too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p65_rows_taking_different_defaults_insert_as_one_statement() {
    let cluster = Cluster::start(three_voters()).await;
    let follower = (cluster.leader(SETTLE).await + 1) % 3;
    let client = connect(&cluster, follower).await;
    client
        .batch_execute(
            "CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT NOT NULL DEFAULT 'unnamed', \
             qty INTEGER DEFAULT 1, tag TEXT UNIQUE)",
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "INSERT INTO items (name, qty) VALUES ($1, DEFAULT), (DEFAULT, $2), ($3, $4) \
             RETURNING id, name, qty",
            &[&"a", &5i32, &"c", &7i32],
        )
        .await
        .unwrap();
    let got: Vec<(i32, String, i32)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (1, "a".to_string(), 1),
            (2, "unnamed".to_string(), 5),
            (3, "c".to_string(), 7)
        ]
    );
    let inserted = client
        .execute("INSERT INTO items (name) VALUES (DEFAULT), (DEFAULT)", &[])
        .await
        .unwrap();
    assert_eq!(inserted, 2);
    // The simple protocol, and a row that fails: none of the statement's rows stay.
    client
        .batch_execute("INSERT INTO items (name, tag) VALUES ('x', 't1'), (DEFAULT, 't2')")
        .await
        .unwrap();
    let error = client
        .batch_execute("INSERT INTO items (name, tag) VALUES ('y', DEFAULT), (DEFAULT, 't1')")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION));
    async fn count(client: &Client) -> i64 {
        client
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    }
    assert_eq!(count(&client).await, 7);
    // In a transaction block that rolls back.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "INSERT INTO items (name, qty) VALUES ($1, DEFAULT), (DEFAULT, $2)",
            &[&"z", &9i32],
        )
        .await
        .unwrap();
    assert_eq!(count(&client).await, 9);
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&client).await, 7);
    let names: Vec<String> = client
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        names,
        ["a", "unnamed", "c", "unnamed", "unnamed", "x", "unnamed"]
    );
}

/// p66: arrays in comparisons — `= ANY($1)` / `<> ALL($1)` with an array bound in binary
/// (tokio-postgres), `> ANY`, `<= ALL`, `= ANY(ARRAY[…])` and `'{…}'::text[]` literals, an
/// empty array; a column named like json_each's own (`id`) is the table's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p66_arrays_compare_with_any_and_all() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        ..ClusterSpec::default()
    })
    .await;
    let client = connect(&cluster, 0).await;
    client
        .batch_execute(
            "CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT); \
             INSERT INTO pets VALUES (1, 'ada'), (2, 'bo'), (3, 'cy'), (4, NULL)",
        )
        .await
        .unwrap();
    async fn ids(
        client: &Client,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<i32> {
        client
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
    let wanted: Vec<i32> = vec![1, 3, 9];
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM pets WHERE id = ANY($1) ORDER BY id",
            &[&wanted]
        )
        .await,
        [1, 3]
    );
    let names: Vec<String> = vec!["bo".into(), "cy".into()];
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM pets WHERE name <> ALL($1) ORDER BY id",
            &[&names]
        )
        .await,
        [1]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM pets WHERE id > ANY($1) ORDER BY id",
            &[&wanted]
        )
        .await,
        [2, 3, 4]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM pets WHERE id <= ALL($1) ORDER BY id",
            &[&wanted]
        )
        .await,
        [1]
    );
    let none: Vec<i32> = Vec::new();
    assert_eq!(
        ids(&client, "SELECT id FROM pets WHERE id = ANY($1)", &[&none]).await,
        Vec::<i32>::new()
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM pets WHERE id = ANY(ARRAY[2, 4]) ORDER BY id",
            &[]
        )
        .await,
        [2, 4]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM pets WHERE name = ANY('{ada,\"cy\"}'::text[]) ORDER BY id",
            &[]
        )
        .await,
        [1, 3]
    );
}

/// p67: Peewee 4 over psycopg2 (tests/clients/peewee_session.py) — create_tables, create,
/// get_or_create, insert_many, joins, group by, contains/ILIKE, an expression update, a
/// rolled-back atomic(), IntegrityError, pagination, inlined bytea literals, Peewee's
/// introspection (get_indexes reads `FROM generate_subscripts(indkey, 1)`), a cascading
/// delete — written through a follower, read on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p67_peewee_creates_queries_and_introspects() {
    run_through_a_follower_and_the_leader("peewee_session.py", "peewee session: ok").await;
}

/// p68: TRUNCATE of several tables related by foreign keys empties them (referencing tables
/// first), CASCADE also the tables referencing them, ids start again from 1; a table still
/// referenced by rows outside the list fails the statement and nothing is emptied; TRUNCATE
/// in a transaction block that rolls back leaves the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p68_truncate_empties_tables_in_foreign_key_order() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        ..ClusterSpec::default()
    })
    .await;
    let client = connect(&cluster, 0).await;
    client
        .batch_execute(
            "CREATE TABLE authors (id SERIAL PRIMARY KEY, name TEXT); \
             CREATE TABLE books (id SERIAL PRIMARY KEY, author_id INTEGER REFERENCES authors(id)); \
             CREATE TABLE reviews (id SERIAL PRIMARY KEY, book_id INTEGER REFERENCES books(id)); \
             INSERT INTO authors (name) VALUES ('ada'), ('bo'); \
             INSERT INTO books (author_id) VALUES (1), (2); \
             INSERT INTO reviews (book_id) VALUES (1)",
        )
        .await
        .unwrap();
    async fn counts(client: &Client) -> Vec<i64> {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM authors), (SELECT count(*) FROM books), \
                 (SELECT count(*) FROM reviews)",
                &[],
            )
            .await
            .unwrap();
        (0..3).map(|i| row.get::<_, i64>(i)).collect()
    }
    // reviews still references books: PostgreSQL refuses, and so does Shoal; nothing changes.
    let error = client
        .batch_execute("TRUNCATE authors, books RESTART IDENTITY")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION));
    assert_eq!(counts(&client).await, [2, 2, 1]);
    client
        .batch_execute("BEGIN; TRUNCATE authors CASCADE")
        .await
        .unwrap();
    assert_eq!(counts(&client).await, [0, 0, 0]);
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(counts(&client).await, [2, 2, 1]);
    // Listed parent first: the referencing tables are emptied before it anyway.
    client
        .execute(
            "TRUNCATE TABLE authors, reviews, books RESTART IDENTITY",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(counts(&client).await, [0, 0, 0]);
    let id = client
        .query_one("INSERT INTO authors (name) VALUES ('cy') RETURNING id", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    assert_eq!(id, 1);
}

/// p69: server-side cursors — DECLARE … CURSOR [WITH HOLD] FOR a query with a parameter, FETCH
/// in steps and ALL (extended protocol, typed columns), CLOSE; a cursor declared without HOLD in
/// a transaction block is gone at its end; an unknown cursor is 34000; two cursors of one name
/// are 42P03.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p69_server_side_cursors_hand_out_rows_in_steps() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        ..ClusterSpec::default()
    })
    .await;
    let client = connect(&cluster, 0).await;
    client
        .batch_execute(
            "CREATE TABLE nums (n INTEGER PRIMARY KEY, word TEXT); \
             INSERT INTO nums VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')",
        )
        .await
        .unwrap();
    client
        .execute(
            "DECLARE walk NO SCROLL CURSOR WITH HOLD FOR SELECT n, word FROM nums WHERE n > $1 ORDER BY n",
            &[&1i32],
        )
        .await
        .unwrap();
    let first = client
        .query("FETCH FORWARD 2 FROM walk", &[])
        .await
        .unwrap();
    let first: Vec<(i32, String)> = first.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(first, [(2, "two".to_string()), (3, "three".to_string())]);
    let rest = client.query("FETCH ALL FROM walk", &[]).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(
        client
            .query("FETCH 5 FROM walk", &[])
            .await
            .unwrap()
            .is_empty()
    );
    let duplicate = client
        .batch_execute("DECLARE walk CURSOR FOR SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Some(&SqlState::DUPLICATE_CURSOR));
    client.batch_execute("CLOSE walk").await.unwrap();
    let gone = client.batch_execute("FETCH 1 FROM walk").await.unwrap_err();
    assert_eq!(gone.code(), Some(&SqlState::INVALID_CURSOR_NAME));
    // Without HOLD, the end of the transaction block closes it.
    client
        .batch_execute("BEGIN; DECLARE inner_walk CURSOR FOR SELECT n FROM nums")
        .await
        .unwrap();
    assert_eq!(
        client
            .query("FETCH 1 FROM inner_walk", &[])
            .await
            .unwrap()
            .len(),
        1
    );
    client.batch_execute("COMMIT").await.unwrap();
    let gone = client
        .batch_execute("FETCH 1 FROM inner_walk")
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some(&SqlState::INVALID_CURSOR_NAME));
}

/// p60: a malformed message (a Bind whose parameter length runs past the message, which the
/// protocol library cannot decode) ends only that client's connection; others are served
/// and the node stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p60_a_malformed_message_ends_only_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        ..ClusterSpec::default()
    })
    .await;
    let healthy = connect(&cluster, 0).await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", cluster.nodes[0].pg_port))
        .await
        .expect("connect");
    let mut startup = 196608u32.to_be_bytes().to_vec();
    startup.extend(b"user\0shoal\0database\0shoal\0\0");
    let mut message = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend(startup);
    socket.write_all(&message).await.expect("startup");
    let mut reply = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut reply)).await;
    // Bind: portal "", statement "", no format codes, one parameter claiming 9,000 bytes.
    let mut body = b"\0\0".to_vec();
    body.extend(0u16.to_be_bytes());
    body.extend(1u16.to_be_bytes());
    body.extend(9000i32.to_be_bytes());
    let mut bind = vec![b'B'];
    bind.extend(((body.len() + 4) as u32).to_be_bytes());
    bind.extend(body);
    socket.write_all(&bind).await.expect("bind");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the connection was not closed"
    );
    let one = healthy
        .query_one("SELECT 1", &[])
        .await
        .expect("others are served");
    assert_eq!(one.get::<_, i32>(0), 1);
    connect(&cluster, 0)
        .await
        .simple_query("SELECT 1")
        .await
        .expect("new ones too");
    let log = std::fs::read_to_string(cluster.nodes[0].log_path()).expect("log");
    assert!(log.contains("malformed message"), "the closing is logged");
}
