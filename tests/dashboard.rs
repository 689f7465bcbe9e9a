//! The dashboard in a real browser: Debian's chromium, headless, loads `/dashboard` from a live
//! cluster under a small load, and the rendered page must show every member and drawn charts.
//! A screenshot is saved to target/dashboard.png.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{Cluster, ClusterSpec};

const SETTLE: Duration = Duration::from_secs(20);

/// Runs headless chromium on `url` with `mode` (`--dump-dom` or `--screenshot=…`), letting the
/// page's scripts run for several refreshes of virtual time.
fn chromium(url: &str, mode: &str) -> String {
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,860",
            "--virtual-time-budget=9000",
            mode,
            url,
        ])
        .output()
        .expect("chromium runs (install Debian's chromium; scripts/test.sh does)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Waits until `node`'s /status lists `count` groups (a new database's groups start a moment
/// after it is created).
async fn wait_for_groups(cluster: &Cluster, node: usize, count: usize) {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let status = cluster.get_json(node, "/status").await;
        let listed = status
            .as_ref()
            .ok()
            .and_then(|s| s["groups"].as_array().map(Vec::len));
        if listed == Some(count) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {} lists {listed:?} groups, not {count}",
            node + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b10_the_dashboard_shows_members_and_charts_in_a_browser() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        ..Default::default()
    })
    .await;
    let leader = cluster.leader(SETTLE).await;
    cluster.execute(leader, json!(["CREATE TABLE t(x)"])).await;
    // A sharded database: its two groups show their place and slots. (The catalog answers
    // 503 "retry shortly" until its first leader is elected.)
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let (status, body) = cluster
            .post(
                leader,
                "/db/execute",
                json!(["CREATE DATABASE shop WITH (shards = 2)"]),
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(
            status == 503 && std::time::Instant::now() < deadline,
            "{status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_groups(&cluster, leader, 4).await;
    // A small load, so the charts have something to draw.
    let url = cluster.url(leader);
    let http = cluster.http.clone();
    let load = tokio::spawn(async move {
        for x in 0..2_000 {
            let _ = http
                .post(format!("{url}/db/execute"))
                .json(&json!([["INSERT INTO t VALUES(?)", x]]))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = format!("{}/dashboard", cluster.url(leader));
    let dom = {
        let page = page.clone();
        tokio::task::spawn_blocking(move || chromium(&page, "--dump-dom"))
            .await
            .unwrap()
    };
    assert_eq!(dom.matches("class=\"member\"").count(), 3, "{dom}");
    // The groups view: the catalog, the default database's group and shop's two shard groups.
    assert_eq!(dom.matches("class=\"group\"").count(), 4, "{dom}");
    assert!(dom.contains("<td>(catalog)</td>"), "{dom}");
    assert!(
        dom.contains("<td class=\"shard\">0/2 (0–8191)</td>")
            && dom.contains("<td class=\"shard\">1/2 (8192–16383)</td>"),
        "each shard group shows its place and slots: {dom}"
    );
    assert!(
        dom.contains("(leader) · term"),
        "the summary line renders: {dom}"
    );
    let series = dom.matches("class=\"series\"").count();
    assert!(series >= 3, "charts drew their lines ({series}): {dom}");
    assert!(dom.contains("points=\""), "{dom}");
    let screenshot = concat!(env!("CARGO_MANIFEST_DIR"), "/target/dashboard.png");
    let _ = std::fs::remove_file(screenshot);
    tokio::task::spawn_blocking(move || chromium(&page, &format!("--screenshot={screenshot}")))
        .await
        .unwrap();
    assert!(std::fs::metadata(screenshot).unwrap().len() > 10_000);
    load.abort();
}
