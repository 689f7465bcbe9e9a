//! `shoal shell` driven the way scripts and people drive it: SQL on stdin and `-c`, dot
//! commands, errors, and moving to the next host when one is down; against a real cluster.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Cluster, ClusterSpec, free_port};

const SETTLE: Duration = Duration::from_secs(20);

/// Runs `shoal shell` with `args`, feeding `input` on stdin; returns (exit code, stdout, stderr).
fn shell(args: &[String], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("shell")
        .args(args)
        .env_remove("SHOAL_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn three_voters() -> ClusterSpec {
    ClusterSpec {
        voters: 3,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_a_session_creates_inserts_selects_and_browses_the_schema() {
    let cluster = Cluster::start(three_voters()).await;
    let host = vec!["--host".to_string(), cluster.url(1)];
    let script = "\
CREATE TABLE fruit(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                   price REAL);
INSERT INTO fruit(name, price) VALUES ('apple', 1.5), ('pear', NULL);
SELECT id, name, price FROM fruit ORDER BY id;
.tables
.schema fruit
.mode csv
SELECT name FROM fruit WHERE price IS NULL;
.mode line
SELECT count(*) AS n FROM fruit;
";
    let (code, out, err) = tokio::task::spawn_blocking(move || shell(&host, script))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(" id | name  | price\n----+-------+-------\n  1 | apple |   1.5\n  2 | pear  |\n(2 rows)\n"),
        "{out}"
    );
    assert!(out.contains("\nfruit\n"), "{out}");
    assert!(
        out.contains("CREATE TABLE fruit(id INTEGER PRIMARY KEY"),
        "{out}"
    );
    assert!(out.contains("name\npear\n"), "{out}");
    assert!(out.contains("n = 2"), "{out}");
    // The insert went through the log: every node has it.
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s20_bad_sql_is_shown_and_fails_the_script() {
    let cluster = Cluster::start(three_voters()).await;
    let host = cluster.url(0);
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        shell(
            &[
                "--host".into(),
                host,
                "-c".into(),
                "SELEC 1".into(),
                "-c".into(),
                "SELECT 41 + 1 AS answer".into(),
            ],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "an error makes the exit status 1");
    assert!(err.contains("Error: near \"SELEC\": syntax error"), "{err}");
    assert!(out.contains("42"), "later statements still run: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s30_the_next_host_is_used_when_the_first_is_down() {
    let cluster = Cluster::start(three_voters()).await;
    let hosts = format!("http://127.0.0.1:{},{}", free_port(), cluster.url(2));
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        shell(
            &[
                "--host".into(),
                hosts,
                "-c".into(),
                "SELECT 'up' AS state".into(),
            ],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("is unreachable") && err.contains("trying"),
        "{err}"
    );
    assert!(out.contains("up"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s40_cluster_commands_show_and_move_leadership() {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let host = vec!["--host".to_string(), cluster.url((leader + 1) % 3)];
    let (code, out, err) =
        tokio::task::spawn_blocking(move || shell(&host, ".status\n.nodes\n.stepdown\n.dump\n"))
            .await
            .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.matches("| ok").count(),
        3,
        "three healthy members: {out}"
    );
    assert!(out.contains("(3 rows)"), "{out}");
    assert!(
        out.contains("BEGIN TRANSACTION;") && out.contains("COMMIT;"),
        "{out}"
    );
    // Stepdown moved leadership.
    cluster
        .wait_for_leader(|new_leader| new_leader != leader, SETTLE)
        .await;
}

/// Runs `shoal cluster …`; returns (exit code, stdout, stderr).
fn cluster_command(args: &[String]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("cluster")
        .args(args)
        .env_remove("SHOAL_HOST")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s50_cluster_commands_for_scripts() {
    let cluster = Cluster::start(three_voters()).await;
    let leader = cluster.leader(SETTLE).await;
    let target = (leader + 1) % 3;
    let host = cluster.url((leader + 2) % 3);
    let target_id = cluster.nodes[target].id;
    let run = move |args: Vec<String>| {
        let mut all = vec!["--host".to_string(), host.clone()];
        all.extend(args);
        cluster_command(&all)
    };
    let (code, out, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(vec!["status".into()])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(3 rows)"), "{out}");
    let (code, out, _) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(vec!["nodes".into(), "--json".into()])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let nodes: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(nodes.as_object().unwrap().len(), 3, "{out}");
    let (code, out, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(vec!["transfer".into(), target_id.to_string()])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("node {target_id} leads"));
    cluster
        .wait_for_leader(|leader| leader == target, SETTLE)
        .await;
    let (code, _, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(vec!["transfer".into(), "99".into()])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "a transfer to a non-member fails");
    assert!(err.contains("99"), "{err}");
}
