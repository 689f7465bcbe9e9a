//! rqlite drop-in behaviour as a new user meets it: SQLite's introspection pragmas answer as in
//! plain SQLite on every node, Shoal's own state stays out of the user's database through every
//! door, a downloaded backup round-trips through `sqlite3 .dump` and `/db/load`, and a node
//! killed at any moment comes back with every acknowledged write exactly once.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, ClusterSpec};

const SETTLE: Duration = Duration::from_secs(20);

fn voters(count: usize) -> ClusterSpec {
    ClusterSpec {
        voters: count,
        ..Default::default()
    }
}

/// A schema that exercises what the introspection pragmas report: defaults, NOT NULL, a
/// composite and a WITHOUT ROWID primary key, a generated column, foreign keys with actions,
/// unique, partial and expression indexes, a view, a trigger, and a dangling foreign key.
const SCHEMA: &[&str] = &[
    "CREATE TABLE author(id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT 'anon', born DATE, \
     score REAL DEFAULT 1.5, UNIQUE(name, born))",
    "CREATE TABLE book(isbn TEXT, edition INTEGER, author_id INTEGER REFERENCES author(id) \
     ON DELETE CASCADE, title TEXT COLLATE NOCASE, pages INTEGER CHECK (pages > 0), \
     words INTEGER GENERATED ALWAYS AS (pages * 300) VIRTUAL, PRIMARY KEY(isbn, edition))",
    "CREATE TABLE tag(name TEXT PRIMARY KEY, book_isbn TEXT, book_edition INTEGER, \
     FOREIGN KEY(book_isbn, book_edition) REFERENCES book(isbn, edition)) WITHOUT ROWID",
    "CREATE TABLE orphan(id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES missing(id))",
    "CREATE INDEX book_title ON book(title DESC, pages)",
    "CREATE UNIQUE INDEX book_long ON book(pages) WHERE pages > 500",
    "CREATE INDEX author_lower ON author(lower(name))",
    "CREATE VIEW long_books AS SELECT title FROM book WHERE pages > 500",
    "CREATE TRIGGER author_named AFTER INSERT ON author BEGIN SELECT 1; END",
    "INSERT INTO author(id, name, born) VALUES (1, 'Ann', '1970-01-02'), (2, 'Bo', NULL)",
    "INSERT INTO book(isbn, edition, author_id, title, pages) VALUES ('x1', 1, 1, 'Alpha', 100), \
     ('x2', 1, 2, 'Beta', 700)",
    "PRAGMA user_version = 7",
];

/// Pragmas that describe the database (its schema and contents): every form of each must give
/// exactly plain SQLite's rows.
fn describing_pragmas() -> Vec<String> {
    let mut statements = Vec::new();
    for (pragma, argument) in [
        ("table_info", "author"),
        ("table_info", "book"),
        ("table_xinfo", "book"),
        ("table_info", "long_books"),
        ("index_info", "book_title"),
        ("index_xinfo", "book_title"),
        ("index_info", "author_lower"),
        ("index_list", "author"),
        ("index_list", "book"),
        ("index_list", "tag"),
        ("foreign_key_list", "book"),
        ("foreign_key_list", "tag"),
        ("foreign_key_check", "orphan"),
        ("integrity_check", "book"),
        ("quick_check", "author"),
        ("table_list", "book"),
    ] {
        statements.push(format!("PRAGMA {pragma}({argument})"));
        statements.push(format!("PRAGMA {pragma}('{argument}')"));
        statements.push(format!("PRAGMA main.{pragma}({argument})"));
        statements.push(format!("SELECT * FROM pragma_{pragma}('{argument}')"));
        if pragma != "table_list" {
            // The second argument of a pragma function is the schema (table_list takes none).
            statements.push(format!(
                "SELECT * FROM pragma_{pragma}('{argument}', 'main')"
            ));
        }
    }
    for pragma in [
        "table_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
        "user_version",
        "application_id",
        "schema_version",
        "encoding",
        "auto_vacuum",
        "collation_list",
        // Connection settings that change what statements mean: as in plain SQLite.
        "foreign_keys",
        "recursive_triggers",
        "reverse_unordered_selects",
        "automatic_index",
        "legacy_alter_table",
        "defer_foreign_keys",
        "ignore_check_constraints",
        "page_size",
    ] {
        statements.push(format!("PRAGMA {pragma}"));
        statements.push(format!("PRAGMA main.{pragma}"));
    }
    statements.push("PRAGMA integrity_check(5)".into());
    statements.push("PRAGMA main.quick_check(3)".into());
    statements.push("SELECT name, type FROM pragma_table_list ORDER BY name".into());
    statements.push(
        "SELECT m.name, p.name, p.type, p.pk FROM sqlite_schema AS m \
         JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table' ORDER BY 1, p.cid"
            .into(),
    );
    statements
}

/// Pragmas that report the connection or the file (journal mode, page counts, compile
/// options): they must answer, though the values are the node's own.
const REPORTING_PRAGMAS: &[&str] = &[
    "PRAGMA compile_options",
    "PRAGMA database_list",
    "PRAGMA data_version",
    "PRAGMA function_list",
    "PRAGMA module_list",
    "PRAGMA pragma_list",
    "PRAGMA page_count",
    "PRAGMA freelist_count",
    "PRAGMA journal_mode",
    "PRAGMA cache_size",
    "PRAGMA busy_timeout",
    "PRAGMA secure_delete",
    "PRAGMA synchronous",
    "PRAGMA temp_store",
    "PRAGMA max_page_count",
    "PRAGMA analysis_limit",
    "PRAGMA cache_spill",
    "PRAGMA cell_size_check",
    "PRAGMA checkpoint_fullfsync",
    "PRAGMA fullfsync",
    "PRAGMA hard_heap_limit",
    "PRAGMA journal_size_limit",
    "PRAGMA locking_mode",
    "PRAGMA mmap_size",
    "PRAGMA query_only",
    "PRAGMA read_uncommitted",
    "PRAGMA soft_heap_limit",
    "PRAGMA threads",
    "PRAGMA trusted_schema",
    "PRAGMA wal_autocheckpoint",
    "PRAGMA main.freelist_count",
    "SELECT * FROM pragma_compile_options",
    "SELECT * FROM pragma_function_list",
];

/// `connection`'s answer to `sql` as rqlite's JSON presents values.
fn plain_sqlite_rows(connection: &rusqlite::Connection, sql: &str) -> Value {
    let mut statement = connection.prepare(sql).unwrap();
    let columns = statement.column_count();
    let rows: Vec<Value> = statement
        .query_map([], |row| {
            Ok(Value::Array(
                (0..columns)
                    .map(|i| match row.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => Value::Null,
                        rusqlite::types::ValueRef::Integer(v) => json!(v),
                        rusqlite::types::ValueRef::Real(v) => json!(v),
                        rusqlite::types::ValueRef::Text(v) => {
                            json!(String::from_utf8_lossy(v))
                        }
                        rusqlite::types::ValueRef::Blob(_) => panic!("no pragma answers a blob"),
                    })
                    .collect(),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    Value::Array(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_read_only_pragmas_answer_as_plain_sqlite_on_every_node_at_every_level() {
    let cluster = Cluster::start(voters(3)).await;
    let (status, body) = cluster
        .post(0, "/db/execute?transaction", json!(SCHEMA))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("error"), "{body}");
    let plain = rusqlite::Connection::open_in_memory().unwrap();
    for statement in SCHEMA {
        plain.execute_batch(statement).unwrap();
    }
    let describing = describing_pragmas();
    let expected: Vec<Value> = describing
        .iter()
        .map(|sql| plain_sqlite_rows(&plain, sql))
        .collect();
    cluster
        .wait_for_values(2, "SELECT count(*) FROM book", &json!([[2]]), SETTLE)
        .await;
    for node in 0..3 {
        for level in ["none", "weak", "strong", "linearizable"] {
            let (status, body) = cluster
                .post(node, &format!("/db/query?level={level}"), json!(describing))
                .await;
            assert_eq!(status, 200, "node {} level {level}: {body}", node + 1);
            for (position, sql) in describing.iter().enumerate() {
                let result = &body["results"][position];
                assert_eq!(
                    result.get("error"),
                    None,
                    "node {} level {level}: {sql}",
                    node + 1
                );
                assert_eq!(
                    result.get("values").cloned().unwrap_or(json!([])),
                    expected[position],
                    "node {} level {level}: {sql} answers as in plain SQLite",
                    node + 1
                );
            }
            let (status, body) = cluster
                .post(
                    node,
                    &format!("/db/query?level={level}"),
                    json!(REPORTING_PRAGMAS),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            for (position, sql) in REPORTING_PRAGMAS.iter().enumerate() {
                assert_eq!(
                    body["results"][position].get("error"),
                    None,
                    "node {} level {level}: {sql}",
                    node + 1
                );
            }
        }
    }
    // Pragmas that change one connection's settings stay refused, with a sentence.
    for sql in [
        "PRAGMA foreign_keys = OFF",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA wal_checkpoint(TRUNCATE)",
    ] {
        let (_, body) = cluster.post(1, "/db/execute", json!([sql])).await;
        let error = body["results"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains("is not allowed"), "{sql}: {body}");
    }
    // The replicated ones replicate.
    cluster
        .execute(1, json!(["PRAGMA application_id = 99"]))
        .await;
    cluster
        .wait_for_values(2, "PRAGMA application_id", &json!([[99]]), SETTLE)
        .await;
}

/// Every name the user's database shows through SQL.
async fn schema_names(cluster: &Cluster, node: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for sql in [
        "SELECT name FROM sqlite_master",
        "SELECT name FROM sqlite_schema",
        "SELECT tbl_name FROM main.sqlite_master",
        "SELECT name FROM pragma_table_list",
    ] {
        for row in cluster
            .query(node, sql, "level=none")
            .await
            .unwrap()
            .as_array()
            .unwrap()
        {
            names.insert(row[0].as_str().unwrap().to_string());
        }
    }
    let (_, body) = cluster
        .post(node, "/db/query?level=none", json!(["PRAGMA table_list"]))
        .await;
    for row in body["results"][0]["values"].as_array().unwrap() {
        names.insert(row[1].as_str().unwrap().to_string());
    }
    names
}

fn assert_only_user_objects(door: &str, text: &str) {
    assert!(
        !text.to_ascii_lowercase().contains("_shoal"),
        "{door} shows Shoal's internal state: {text}"
    );
}

async fn download(cluster: &Cluster, node: usize, path: &str) -> Vec<u8> {
    let response = cluster
        .http
        .get(format!("{}{path}", cluster.url(node)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.bytes().await.unwrap().to_vec()
}

fn run(program: &str, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r20_shoal_state_is_invisible_through_every_door() {
    let cluster = Cluster::start(voters(3)).await;
    cluster
        .execute(
            0,
            json!([
                "CREATE TABLE fruit(id INTEGER PRIMARY KEY, name TEXT)",
                "CREATE INDEX fruit_name ON fruit(name)",
                "INSERT INTO fruit(name) VALUES ('apple'), ('pear')"
            ]),
        )
        .await;
    cluster
        .wait_for_values(2, "SELECT count(*) FROM fruit", &json!([[2]]), SETTLE)
        .await;
    for node in 0..3 {
        let names = schema_names(&cluster, node).await;
        let expected: BTreeSet<String> =
            ["fruit", "fruit_name", "sqlite_schema", "sqlite_temp_schema"]
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(
            names,
            expected,
            "node {}: the schema holds the user's objects only",
            node + 1
        );
    }
    // A client's "drop every table" teardown works.
    let tables = cluster
        .query(0, "SELECT name FROM sqlite_master WHERE type = 'table'", "")
        .await
        .unwrap();
    let drops: Vec<String> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|row| format!("DROP TABLE {}", row[0].as_str().unwrap()))
        .collect();
    let (status, body) = cluster.post(0, "/db/execute", json!(drops)).await;
    assert_eq!(status, 200);
    assert!(!body.to_string().contains("error"), "{body}");
    cluster
        .execute(
            0,
            json!([
                "CREATE TABLE fruit(id INTEGER PRIMARY KEY, name TEXT)",
                "INSERT INTO fruit(name) VALUES ('fig')"
            ]),
        )
        .await;
    cluster
        .wait_for_values(1, "SELECT name FROM fruit", &json!([["fig"]]), SETTLE)
        .await;

    // Names of Shoal's own tables cannot be taken, not even by a rename (SQLite's authorizer
    // never sees a rename's new name), and nothing changes.
    for sql in [
        "ALTER TABLE fruit RENAME TO _shoal_users",
        "CREATE TABLE _shoal_raft_state(key TEXT, value TEXT)",
        "CREATE VIEW _shoal_view AS SELECT 1",
        "CREATE INDEX _shoal_index ON fruit(name)",
    ] {
        let (_, body) = cluster.post(0, "/db/execute", json!([sql])).await;
        let error = body["results"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains("reserved") || error.contains("internal to Shoal"),
            "{sql}: {body}"
        );
    }
    let (_, body) = cluster
        .post(
            0,
            "/db/execute?transaction",
            json!([
                "CREATE TABLE staging(x)",
                "ALTER TABLE staging RENAME TO _shoal_users"
            ]),
        )
        .await;
    assert!(body.to_string().contains("reserved"), "{body}");
    assert_eq!(
        cluster
            .query(
                0,
                "SELECT name FROM sqlite_master ORDER BY name",
                "level=strong"
            )
            .await
            .unwrap(),
        json!([["fruit"]]),
        "the refused statements changed nothing"
    );

    // The shell's .tables, .schema and .dump.
    let host = cluster.url(1);
    for command in [".tables", ".schema", ".dump"] {
        let out = run(
            env!("CARGO_BIN_EXE_shoal"),
            &["shell", "--host", &host, "-c", command],
            "",
        );
        assert!(out.contains("fruit"), "{command}: {out}");
        assert_only_user_objects(command, &out);
    }
    // psql's \dt.
    let pg_port = cluster.nodes[2].pg_port.to_string();
    let out = run(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &pg_port,
            "-U",
            "shoal",
            "-d",
            "shoal",
            "-X",
            "-c",
            "\\dt",
        ],
        "",
    );
    assert!(out.contains("fruit"), "\\dt: {out}");
    assert_only_user_objects("psql \\dt", &out);
    // Both /db/backup formats.
    let dump = String::from_utf8(download(&cluster, 0, "/db/backup?fmt=sql").await).unwrap();
    assert!(dump.contains("fruit"), "{dump}");
    assert_only_user_objects("/db/backup?fmt=sql", &dump);
    let image = download(&cluster, 2, "/db/backup").await;
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("backup.sqlite");
    std::fs::write(&file, &image).unwrap();
    let downloaded = rusqlite::Connection::open(&file).unwrap();
    let names: Vec<String> = downloaded
        .prepare("SELECT name FROM sqlite_master ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        names,
        ["fruit"],
        "the downloaded database holds the user's objects only"
    );
    let journal: String = downloaded
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        journal, "delete",
        "a downloaded file opens without its -wal"
    );
    // Not even in free pages: the password hashes and the Raft state never left the cluster.
    assert!(
        !image.windows(6).any(|w| w == b"_shoal"),
        "the downloaded file carries Shoal's state somewhere in its pages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r30_backup_dump_and_load_round_trip_binary_and_sql() {
    let cluster = Cluster::start(voters(3)).await;
    cluster
        .execute(
            0,
            json!([
                "CREATE TABLE note(id INTEGER PRIMARY KEY, body TEXT, weight REAL, raw BLOB)",
                "INSERT INTO note(body, weight, raw) VALUES ('it''s', 1.25, x'00ff'), (NULL, -2, NULL)",
                "CREATE VIEW heavy AS SELECT body FROM note WHERE weight > 1"
            ]),
        )
        .await;
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("backup.sqlite");
    std::fs::write(&file, download(&cluster, 1, "/db/backup").await).unwrap();
    // download → sqlite3 .dump → POST /db/load, the everyday round trip.
    let dump = run("sqlite3", &[file.to_str().unwrap(), ".dump"], "");
    // As with rqlite, a dump runs as statements: into a database without its tables.
    cluster
        .execute(0, json!(["DROP VIEW heavy", "DROP TABLE note"]))
        .await;
    let response = cluster
        .http
        .post(format!("{}/db/load", cluster.url(0)))
        .header("Content-Type", "application/octet-stream")
        .body(dump)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("error"), "{body}");
    for node in 0..3 {
        cluster
            .wait_for_values(
                node,
                "SELECT count(*), sum(weight) FROM note",
                &json!([[2, -0.75]]),
                SETTLE,
            )
            .await;
    }
    assert_eq!(
        cluster
            .query(2, "SELECT * FROM heavy", "level=none")
            .await
            .unwrap(),
        json!([["it's"]])
    );
    // The binary file loads back as well.
    cluster.execute(0, json!(["DELETE FROM note"])).await;
    let response = cluster
        .http
        .post(format!("{}/db/load", cluster.url(2)))
        .header("Content-Type", "application/octet-stream")
        .body(std::fs::read(&file).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    for node in 0..3 {
        cluster
            .wait_for_values(node, "SELECT count(*) FROM note", &json!([[2]]), SETTLE)
            .await;
        let names = schema_names(&cluster, node).await;
        assert!(
            names.iter().all(|name| !name.contains("shoal")),
            "{names:?}"
        );
    }
    // The cluster's state survived the load: it still takes writes.
    cluster
        .execute(
            1,
            json!(["INSERT INTO note(body) VALUES ('after the load')"]),
        )
        .await;
    cluster
        .wait_for_values(0, "SELECT count(*) FROM note", &json!([[3]]), SETTLE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r40_a_node_killed_at_any_moment_keeps_every_acknowledged_write_exactly_once() {
    let mut cluster = Cluster::start(voters(1)).await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE event(seq INTEGER NOT NULL, note TEXT)"]),
        )
        .await;
    let mut acknowledged = Vec::new();
    let mut next = 0u64;
    for round in 0..6u64 {
        // Writes race the kill: the node dies while entries are being applied.
        let writes_ms = 150 + 90 * round;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(writes_ms) {
            next += 1;
            let (status, body) = cluster
                .post(
                    0,
                    "/db/execute",
                    json!([
                        format!("INSERT INTO event VALUES ({next}, 'first')"),
                        format!("INSERT INTO event VALUES ({next}, 'second')")
                    ]),
                )
                .await;
            if status == 200 && !body.to_string().contains("error") {
                acknowledged.push(next);
            }
        }
        let racing = {
            let http = cluster.http.clone();
            let url = format!("{}/db/execute", cluster.url(0));
            let first = next + 1;
            tokio::spawn(async move {
                for seq in first..first + 200 {
                    let _ = http
                        .post(&url)
                        .json(&json!([
                            format!("INSERT INTO event VALUES ({seq}, 'first')"),
                            format!("INSERT INTO event VALUES ({seq}, 'second')")
                        ]))
                        .send()
                        .await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20 + 7 * round)).await;
        cluster.restart(0).await; // SIGKILL, then start again
        racing.abort();
        next += 200;
        cluster.leader(Duration::from_secs(30)).await;
        // A restarted node may still be settling its leadership: retry as a client would.
        let deadline = Instant::now() + SETTLE;
        let rows = loop {
            match cluster
                .query(
                    0,
                    "SELECT seq, count(*) FROM event GROUP BY seq HAVING count(*) != 2 \
                     OR sum(note = 'first') != 1",
                    "level=strong",
                )
                .await
            {
                Ok(rows) => break rows,
                Err(error) if error.starts_with("503") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("round {round}: {error}"),
            }
        };
        assert_eq!(
            rows,
            json!([]),
            "round {round}: an entry was applied twice or in part"
        );
        let present: BTreeSet<u64> = cluster
            .query(0, "SELECT DISTINCT seq FROM event", "level=strong")
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[0].as_u64().unwrap())
            .collect();
        let lost: Vec<u64> = acknowledged
            .iter()
            .copied()
            .filter(|seq| !present.contains(seq))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged writes lost: {lost:?}"
        );
        let log = std::fs::read_to_string(cluster.nodes[0].log_path()).unwrap_or_default();
        assert!(
            log.contains("did not stop cleanly"),
            "a killed node rebuilds its database instead of trusting it"
        );
    }
    assert!(
        acknowledged.len() > 20,
        "the test wrote too little: {}",
        acknowledged.len()
    );
}

/// A `shoal serve` started with nothing but rqlite's launch flags; killed when dropped.
struct PlainNode {
    child: std::process::Child,
    http: String,
    log: std::path::PathBuf,
}

impl Drop for PlainNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_plain(
    dir: &std::path::Path,
    id: u64,
    http_port: u16,
    raft_port: u16,
    join: Option<&str>,
) -> PlainNode {
    let log = dir.join(format!("node{id}.log"));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .arg("serve")
        .args(["--node-id", &id.to_string()])
        .args(["--http-addr", &format!("localhost:{http_port}")])
        .args(["--raft-addr", &format!("localhost:{raft_port}")])
        .args([
            "--data-dir",
            &dir.join(format!("node{id}")).display().to_string(),
        ]);
    if let Some(join) = join {
        command.args(["--join", join]);
    }
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    PlainNode {
        child,
        http: format!("http://localhost:{http_port}"),
        log,
    }
}

/// The PostgreSQL address a node printed at start.
async fn printed_pg_addr(node: &PlainNode) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        if let Some(line) = log.lines().find(|line| line.contains("shoal node serving")) {
            let start = line
                .find("postgres=")
                .expect("the start line names the PostgreSQL address")
                + 9;
            return line[start..].split_whitespace().next().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the node never said it serves: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r50_three_nodes_on_one_host_start_the_rqlite_way_and_each_serves_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| (support::free_port(), support::free_port()))
        .collect();
    let first = start_plain(dir.path(), 1, ports[0].0, ports[0].1, None);
    let mut nodes = vec![first];
    printed_pg_addr(&nodes[0]).await;
    for (position, (http_port, raft_port)) in ports.iter().enumerate().skip(1) {
        // A URL, or rqlite's host:port form.
        let join = if position == 1 {
            nodes[0].http.clone()
        } else {
            format!("localhost:{}", ports[0].0)
        };
        nodes.push(start_plain(
            dir.path(),
            position as u64 + 1,
            *http_port,
            *raft_port,
            Some(&join),
        ));
        printed_pg_addr(&nodes[position]).await;
    }
    let http = reqwest::Client::new();
    let (status, body) = {
        let response = http
            .post(format!("{}/db/execute", nodes[0].http))
            .json(&json!(["CREATE TABLE t(x)", "INSERT INTO t VALUES (42)"]))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(status, 200, "{body}");
    let mut pg_addrs = BTreeSet::new();
    for node in &nodes {
        let pg_addr = printed_pg_addr(node).await;
        let (host, port) = pg_addr.rsplit_once(':').unwrap();
        assert!(
            pg_addrs.insert(pg_addr.clone()),
            "two nodes print the same PostgreSQL address"
        );
        // psql reaches every node where it said it listens.
        let deadline = Instant::now() + SETTLE;
        loop {
            let output = std::process::Command::new("psql")
                .args([
                    "-h",
                    host,
                    "-p",
                    port,
                    "-U",
                    "shoal",
                    "-d",
                    "shoal",
                    "-X",
                    "-A",
                    "-t",
                    "-c",
                    "SELECT x FROM t",
                ])
                .env("PGCONNECT_TIMEOUT", "5")
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if out == "42" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "psql on {pg_addr}: {out} {}",
                String::from_utf8_lossy(&output.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A Raft address (what rqlite 8 takes) is refused with a sentence, not retried forever.
    let mut wrong = start_plain(
        dir.path(),
        9,
        support::free_port(),
        support::free_port(),
        Some(&format!("localhost:{}", ports[0].1)),
    );
    let deadline = Instant::now() + SETTLE;
    while wrong.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "a join through a Raft address was not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&wrong.log).unwrap();
    assert!(log.contains("not a node's HTTP API address"), "{log}");
    // The host names are what the cluster advertises.
    let members: Value = http
        .get(format!("{}/nodes?ver=2", nodes[2].http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for member in members["nodes"].as_array().unwrap() {
        assert!(
            member["addr"].as_str().unwrap().starts_with("localhost:"),
            "{members}"
        );
        assert!(
            member["api_addr"]
                .as_str()
                .unwrap()
                .starts_with("http://localhost:"),
            "{members}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r55_a_taken_address_is_named_once_and_a_set_pg_addr_is_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("serve")
        .args([
            "--http-addr",
            &format!("localhost:{}", support::free_port()),
        ])
        .args([
            "--raft-addr",
            &format!("localhost:{}", support::free_port()),
        ])
        .args(["--pg-addr", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", &dir.path().join("n").display().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("PostgreSQL address 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["serve", "--http-addr", "localhost", "--data-dir"])
        .arg(dir.path().join("m"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("host:port"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r60_rqlite_answers_pretty_nodes_probes_sql_loads_and_snapshots() {
    let mut cluster = Cluster::start(voters(3)).await;
    // pretty indents by four spaces.
    let text = cluster
        .http
        .get(format!("{}/db/query?pretty&q=SELECT%201", cluster.url(0)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\n    \"results\": ["), "{text}");
    // /nodes says how long each probe took, and why a node is unreachable.
    cluster.kill(2);
    let nodes = cluster.get_json(0, "/nodes").await.unwrap();
    assert!(nodes["1"]["time"].as_f64().is_some(), "{nodes}");
    assert_eq!(nodes["3"]["reachable"], json!(false), "{nodes}");
    assert!(
        nodes["3"]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{nodes}"
    );
    assert!(nodes["1"].get("error").is_none(), "{nodes}");
    cluster.restart(2).await;
    // A SQL load answers per statement, as /db/execute does.
    let response = cluster
        .http
        .post(format!("{}/db/load", cluster.url(1)))
        .body("CREATE TABLE loaded(x);\nINSERT INTO loaded VALUES (1);\nINSERT INTO loaded VALUES (2);\n")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{body}");
    assert_eq!(results[2]["rows_affected"], json!(1), "{body}");
    assert_eq!(results[2]["last_insert_id"], json!(2), "{body}");
    // POST /snapshot builds one now and keeps trailing_logs entries behind it.
    let leader = cluster.leader(SETTLE).await;
    for n in 0..50 {
        cluster
            .execute(leader, json!([format!("INSERT INTO loaded VALUES ({n})")]))
            .await;
    }
    let (status, body) = cluster
        .post(leader, "/snapshot?trailing_logs=5", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let index = body["snapshot_index"].as_u64().unwrap();
    let status_now = cluster.get_json(leader, "/status").await.unwrap();
    let applied = status_now["store"]["raft"]["applied_index"]
        .as_u64()
        .unwrap();
    assert!(index >= 50 && index <= applied, "{body} {status_now}");
    assert!(status_now["storage"]["snapshot_index"].as_u64().unwrap() >= index);
    // The log behind the snapshot is purged down to the trailing entries asked for.
    let deadline = Instant::now() + SETTLE;
    loop {
        let status_now = cluster.get_json(leader, "/status").await.unwrap();
        let entries = status_now["storage"]["log_entries"].as_u64().unwrap();
        if entries <= 5 + (applied - index) + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log kept {entries} entries: {status_now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = cluster
        .post(leader, "/snapshot?trailing_logs=many", json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r70_a_data_directory_of_the_earlier_layout_is_migrated_on_start() {
    let mut cluster = Cluster::start(voters(1)).await;
    cluster
        .execute(
            0,
            json!([
                "CREATE TABLE kept(n INTEGER)",
                "INSERT INTO kept VALUES (1), (2)"
            ]),
        )
        .await;
    // A clean stop, then the layout every earlier version wrote: the state tables inside the
    // user's database, no companion file.
    cluster.nodes[0].signal(libc::SIGTERM);
    let deadline = Instant::now() + SETTLE;
    while cluster.get_json(0, "/livez").await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the node did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let group = cluster.nodes[0].data_dir.join("groups").join("1");
    let state_file = group.join("db.sqlite-shoal");
    {
        let data = rusqlite::Connection::open(group.join("db.sqlite")).unwrap();
        data.execute_batch(&format!(
            "ATTACH '{}' AS state;
             CREATE TABLE _shoal_raft_state(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE _shoal_users(name TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO _shoal_raft_state SELECT * FROM state._shoal_raft_state WHERE key != 'clean_shutdown';
             INSERT INTO _shoal_users SELECT * FROM state._shoal_users;
             DETACH state;",
            state_file.display()
        ))
        .unwrap();
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", state_file.display()));
    }
    cluster.restart(0).await;
    cluster.leader(SETTLE).await;
    let log = std::fs::read_to_string(cluster.nodes[0].log_path()).unwrap_or_default();
    assert!(
        log.contains("moving Shoal's state out of the user's database"),
        "{log}"
    );
    assert!(
        !log.contains("did not stop cleanly"),
        "a migrated directory is trusted, not rebuilt"
    );
    cluster
        .wait_for_values(0, "SELECT count(*) FROM kept", &json!([[2]]), SETTLE)
        .await;
    let names = schema_names(&cluster, 0).await;
    assert!(
        names.iter().all(|name| !name.contains("shoal")),
        "{names:?}"
    );
    cluster
        .execute(0, json!(["INSERT INTO kept VALUES (3)"]))
        .await;
    cluster
        .wait_for_values(0, "SELECT sum(n) FROM kept", &json!([[6]]), SETTLE)
        .await;
    assert!(state_file.exists(), "the state moved into its own file");
}

/// Replaces the value after `flag` in `args`.
fn set_flag(args: &mut [String], flag: &str, value: String) {
    let at = args
        .iter()
        .position(|arg| arg == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    args[at + 1] = value;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r80_a_member_restarted_on_new_addresses_is_re_registered_and_catches_up() {
    let mut cluster = Cluster::start(voters(3)).await;
    cluster
        .execute(0, json!(["CREATE TABLE before_move(x)"]))
        .await;
    cluster.kill(2);
    let reserved = support::ReservedPorts::new(3);
    let (http_port, raft_port, pg_port) = (reserved.port(0), reserved.port(1), reserved.port(2));
    drop(reserved);
    {
        let node = &mut cluster.nodes[2];
        node.http_port = http_port;
        node.raft_port = raft_port;
        node.pg_port = pg_port;
        node.raft_advertise = format!("127.0.0.1:{raft_port}");
        set_flag(
            &mut node.args,
            "--http-addr",
            format!("127.0.0.1:{http_port}"),
        );
        set_flag(
            &mut node.args,
            "--raft-addr",
            format!("127.0.0.1:{raft_port}"),
        );
        set_flag(
            &mut node.args,
            "--raft-advertise-addr",
            format!("127.0.0.1:{raft_port}"),
        );
        set_flag(&mut node.args, "--pg-addr", format!("127.0.0.1:{pg_port}"));
    }
    cluster.restart(2).await;
    // The leader now knows node 3 by its new addresses, and reaches it there.
    let deadline = Instant::now() + SETTLE;
    loop {
        let nodes = cluster.get_json(0, "/nodes").await.unwrap();
        if nodes["3"]["addr"] == json!(format!("127.0.0.1:{raft_port}"))
            && nodes["3"]["reachable"] == json!(true)
            && nodes["3"]["api_addr"] == json!(format!("http://127.0.0.1:{http_port}"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 was not re-registered: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster
        .execute(
            0,
            json!([
                "CREATE TABLE after_move(x)",
                "INSERT INTO after_move VALUES (1)"
            ]),
        )
        .await;
    cluster
        .wait_for_values(2, "SELECT count(*) FROM after_move", &json!([[1]]), SETTLE)
        .await;
    // A different node claiming node 3's id from yet another address is refused.
    let (status, body) = cluster
        .post(
            0,
            "/join",
            json!({"id": 3, "addr": format!("127.0.0.1:{}", support::free_port()), "http_addr": "127.0.0.1:1"}),
        )
        .await;
    assert!(status == 400 || status == 503, "{status} {body}");
    let nodes = cluster.get_json(0, "/nodes").await.unwrap();
    assert_eq!(
        nodes["3"]["addr"],
        json!(format!("127.0.0.1:{raft_port}")),
        "{nodes}"
    );
    // A Raft RPC meant for another node (an address since taken by this one) is refused.
    let misdirected = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{raft_port}/raft/v1/1/vote"))
        .header("x-shoal-to-node", "2")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(misdirected.status().as_u16(), 421);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r85_joining_with_a_data_directory_of_another_cluster_is_refused() {
    let cluster = Cluster::start(voters(2)).await;
    let mut other = Cluster::start(voters(1)).await;
    other.execute(0, json!(["CREATE TABLE mine(x)"])).await;
    other.kill(0);
    let mut args = other.nodes[0].args.clone();
    args.push("--join".into());
    args.push(cluster.url(0));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("serve")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + SETTLE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node of another cluster was not refused");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("belongs to another cluster"), "{stderr}");
    let nodes = cluster.get_json(0, "/nodes").await.unwrap();
    assert_eq!(nodes.as_object().unwrap().len(), 2, "{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r90_a_node_started_to_leave_on_shutdown_leaves_the_cluster_on_sigterm() {
    let spec = ClusterSpec {
        voters: 3,
        replicas: 1,
        extra_args: vec!["--leave-on-shutdown".into()],
        ..Default::default()
    };
    let cluster = Cluster::start(spec).await;
    for (node, remaining) in [(3usize, 3usize), (0, 2)] {
        cluster.nodes[node].signal(libc::SIGTERM);
        let survivor = if node == 0 { 1 } else { 0 };
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Ok(nodes) = cluster.get_json(survivor, "/nodes?nonvoters").await
                && nodes.as_object().is_some_and(|members| {
                    members.len() == remaining
                        && !members.contains_key(&cluster.nodes[node].id.to_string())
                })
            {
                break;
            }
            assert!(Instant::now() < deadline, "node {} did not leave", node + 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The two that stayed form the whole cluster and still take writes.
    cluster
        .execute(1, json!(["CREATE TABLE after_leaving(x)"]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r95_boot_loads_a_sqlite_file_into_a_single_node_only() {
    let single = Cluster::start(voters(1)).await;
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("seed.sqlite");
    {
        let seed = rusqlite::Connection::open(&file).unwrap();
        seed.execute_batch("CREATE TABLE seeded(x); INSERT INTO seeded VALUES (1), (2), (3);")
            .unwrap();
    }
    let post = |cluster: &Cluster, body: Vec<u8>| {
        let request = cluster
            .http
            .post(format!("{}/boot", cluster.url(0)))
            .header("Content-Type", "application/octet-stream")
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, body) = post(&single, std::fs::read(&file).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        single
            .query(0, "SELECT sum(x) FROM seeded", "level=strong")
            .await
            .unwrap(),
        json!([[6]])
    );
    let (status, body) = post(&single, b"CREATE TABLE t(x);".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let three = Cluster::start(voters(3)).await;
    let (status, body) = post(&three, std::fs::read(&file).unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("single-node"), "{body}");
}

fn recover(data_dir: &std::path::Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["recover", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r99_after_losing_the_quorum_one_survivor_recovers_all_its_data() {
    let mut cluster = Cluster::start(voters(3)).await;
    cluster
        .execute(0, json!(["CREATE TABLE precious(n INTEGER)"]))
        .await;
    for n in 0..20 {
        cluster
            .execute(n % 3, json!([["INSERT INTO precious VALUES (?)", n]]))
            .await;
    }
    cluster
        .wait_for_values(2, "SELECT count(*) FROM precious", &json!([[20]]), SETTLE)
        .await;
    let survivor_dir = cluster.nodes[2].data_dir.clone();
    let (ok, out) = recover(&survivor_dir);
    assert!(
        !ok && out.contains("another shoal process"),
        "a running node is not recovered: {out}"
    );
    cluster.kill(2);
    let (ok, out) = recover(&survivor_dir);
    assert!(
        !ok && out.contains("a quorum of the cluster is alive"),
        "{out}"
    );
    assert!(
        survivor_dir.join("groups/1/log").exists(),
        "a refused recovery changes nothing"
    );
    cluster.kill(0);
    cluster.kill(1);
    let (ok, out) = recover(&survivor_dir);
    assert!(ok, "{out}");
    assert!(out.contains("single-node cluster"), "{out}");
    // The recovered node starts a new cluster of one, holding everything it had.
    let args = &mut cluster.nodes[2].args;
    if let Some(at) = args.iter().position(|arg| arg == "--join") {
        args.drain(at..at + 2);
    }
    cluster.restart(2).await;
    cluster.leader(SETTLE).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        match cluster
            .query(2, "SELECT count(*), sum(n) FROM precious", "level=strong")
            .await
        {
            Ok(rows) => {
                assert_eq!(rows, json!([[20, 190]]));
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster
        .execute(2, json!(["INSERT INTO precious VALUES (20)"]))
        .await;
    let nodes = cluster.get_json(2, "/nodes").await.unwrap();
    assert_eq!(nodes.as_object().unwrap().len(), 1, "{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r97_an_rqlite_auth_file_given_at_start_is_the_users_of_the_cluster() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("auth.json");
    std::fs::write(
        &file,
        r#"[{"username": "fiona", "password": "fiona's long password", "perms": ["all"]},
            {"username": "bob", "password": "bob's long password", "perms": ["query"]}]"#,
    )
    .unwrap();
    let spec = ClusterSpec {
        voters: 3,
        extra_args: vec!["--auth-file".into(), file.display().to_string()],
        env: vec![
            ("SHOAL_JOIN_USER".into(), "fiona".into()),
            ("SHOAL_JOIN_PASSWORD".into(), "fiona's long password".into()),
        ],
        basic_auth: Some(("fiona".into(), "fiona's long password".into())),
        ..Default::default()
    };
    let cluster = Cluster::start(spec).await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE guarded(x)", "INSERT INTO guarded VALUES (1)"]),
        )
        .await;
    let plain = reqwest::Client::new();
    let call = |user: Option<(&str, &str)>, path: &str, body: Value| {
        let mut request = plain.post(format!("{}{path}", cluster.url(1))).json(&body);
        if let Some((name, password)) = user {
            request = request.basic_auth(name, Some(password));
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let bob = Some(("bob", "bob's long password"));
    // Right after start a node may still answer 503 ("retry shortly") while the users move
    // into the cluster catalog; a client retries, as rqlite's clients do on 503.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let first = loop {
        let status = call(
            bob,
            "/db/query?level=strong",
            json!(["SELECT * FROM guarded"]),
        )
        .await;
        if status != 503 || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(first, 200);
    assert_eq!(
        call(
            bob,
            "/db/execute",
            json!(["INSERT INTO guarded VALUES (2)"])
        )
        .await,
        403
    );
    assert_eq!(
        call(
            Some(("bob", "wrong password")),
            "/db/query",
            json!(["SELECT 1"])
        )
        .await,
        401
    );
    assert_eq!(call(None, "/db/query", json!(["SELECT 1"])).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r75_a_data_directory_written_by_the_previous_version_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data-dir-v0.1-cf9e447.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let reserved = support::ReservedPorts::new(3);
    let (http_port, raft_port, pg_port) = (reserved.port(0), reserved.port(1), reserved.port(2));
    drop(reserved);
    let log = dir.path().join("node1.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("serve")
        .args(["--node-id", "1", "--auth"])
        .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
        .args(["--raft-addr", &format!("127.0.0.1:{raft_port}")])
        .args(["--pg-addr", &format!("127.0.0.1:{pg_port}")])
        .arg("--data-dir")
        .arg(dir.path().join("node1"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let node = PlainNode {
        child,
        http: format!("http://127.0.0.1:{http_port}"),
        log: log.clone(),
    };
    let http = reqwest::Client::new();
    let query = |user: &'static str, password: &'static str, sql: &'static str| {
        let request = http
            .post(format!("{}/db/query?level=strong", node.http))
            .basic_auth(user, Some(password))
            .json(&json!([sql]));
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("{status}: {body}"));
            }
            Ok(body["results"][0]["values"].clone())
        }
    };
    // The reader created by the old version logs in with its password, and the data is there.
    let deadline = Instant::now() + SETTLE;
    let rows = loop {
        match query(
            "reader",
            "reader fixture password",
            "SELECT name, price FROM fruit ORDER BY id",
        )
        .await
        {
            Ok(rows) => break rows,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "{error}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(rows, json!([["apple", 1.5], ["pear", 2.25], ["fig", null]]));
    let names = query(
        "reader",
        "reader fixture password",
        "SELECT name FROM sqlite_master ORDER BY name",
    )
    .await
    .unwrap();
    assert_eq!(names, json!([["fruit"], ["fruit_name"]]));
    let written = http
        .post(format!("{}/db/execute", node.http))
        .basic_auth("admin", Some("fixture admin password"))
        .json(&json!(["INSERT INTO fruit(name) VALUES ('kiwi')"]))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("moving Shoal's state out of the user's database"),
        "{text}"
    );
    assert!(dir.path().join("node1/groups/1/db.sqlite-shoal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r68_a_queued_write_that_finds_no_leader_lands_once_there_is_one() {
    let mut cluster = Cluster::start(voters(3)).await;
    cluster.execute(0, json!(["CREATE TABLE queued(x)"])).await;
    let leader = cluster.leader(SETTLE).await;
    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster
        .wait_for_values(
            survivor,
            "SELECT count(*) FROM queued",
            &json!([[0]]),
            SETTLE,
        )
        .await;
    cluster.kill(leader);
    cluster.kill(other);
    // No quorum: the write is queued (rqlite acknowledges it with a sequence number) and
    // tried again until a leader is back, as rqlite does.
    let (status, body) = cluster
        .post(
            survivor,
            "/db/execute?queue",
            json!(["INSERT INTO queued VALUES (1)"]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["sequence_number"].as_u64().is_some(), "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(leader).await;
    cluster.restart(other).await;
    cluster
        .wait_for_values(
            survivor,
            "SELECT count(*) FROM queued",
            &json!([[1]]),
            Duration::from_secs(60),
        )
        .await;
}
