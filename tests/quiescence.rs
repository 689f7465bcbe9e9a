//! Idle groups quiesce: once a database has had no writes for a while, its group's Raft timers
//! stop on every member and one liveness call per node pair stands in for the heartbeats of all
//! the groups between them. Writes and reads wake a group; a quiesced group still fails over
//! when its leader's node is killed; a node of the first peer-stream version keeps the groups
//! it belongs to awake and working.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, ClusterSpec, metric_value};

const SETTLE: Duration = Duration::from_secs(30);

/// Runs `statements` on `node` with `options` until they succeed; panics after [`SETTLE`].
async fn execute_ok(cluster: &Cluster, node: usize, options: &str, statements: Value) {
    cluster
        .execute_until_ok(node, options, statements, SETTLE)
        .await;
}

/// Waits until `node`'s replica of `database` holds `rows` rows in `t`.
async fn wait_for_count(cluster: &Cluster, node: usize, database: &str, rows: u64) {
    let deadline = Instant::now() + SETTLE;
    let options = format!("db={database}&level=none");
    loop {
        let count = cluster
            .query(node, "SELECT count(*) FROM t", &options)
            .await;
        if count.as_ref().ok() == Some(&json!([[rows]])) {
            return;
        }
        assert!(Instant::now() < deadline, "node {}: {count:?}", node + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The groups `node` runs, as `/status` reports them.
async fn groups(cluster: &Cluster, node: usize) -> Vec<Value> {
    let status = cluster.get_json(node, "/status").await.unwrap();
    status["groups"].as_array().unwrap().clone()
}

/// Waits until every group on every running node in `nodes` reports `quiesced == wanted`.
async fn wait_until_quiesced(cluster: &Cluster, nodes: &[usize], wanted: bool) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut pending = Vec::new();
        for &node in nodes {
            for group in groups(cluster, node).await {
                if group["quiesced"] != json!(wanted) {
                    pending.push(format!("node {} group {}", node + 1, group["group"]));
                }
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not quiesced={wanted} after {SETTLE:?}: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Frames all nodes in `nodes` wrote to peer streams so far.
async fn frames_sent(cluster: &Cluster, nodes: &[usize]) -> f64 {
    let mut total = 0.0;
    for &node in nodes {
        let scrape = cluster.get_json(node, "/metrics").await.unwrap();
        total += metric_value(scrape.as_str().unwrap(), "shoal_peer_frames_sent_total").unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_databases_quiesce_wake_on_use_and_fail_over_when_their_leader_dies() {
    let mut cluster = Cluster::start(ClusterSpec {
        voters: 3,
        fast_elections: true,
        ..Default::default()
    })
    .await;
    let all = [0, 1, 2];
    let names: Vec<String> = (0..10).map(|n| format!("idle{n}")).collect();
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"]),
    )
    .await;
    for name in &names {
        let create = format!("CREATE DATABASE {name} WITH (replicas = 3)");
        execute_ok(&cluster, 0, "", json!([create])).await;
        let options = format!("db={name}");
        execute_ok(
            &cluster,
            1,
            &options,
            json!([
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
                "INSERT INTO t(v) VALUES('first')"
            ]),
        )
        .await;
    }

    // Left alone, every group quiesces on every node: the ten databases, the default one and
    // the catalog.
    wait_until_quiesced(&cluster, &all, true).await;
    assert_eq!(groups(&cluster, 0).await.len(), 12);
    for node in all {
        cluster
            .wait_for_metric(node, "shoal_raft_groups_quiesced", |n| n == 12.0, SETTLE)
            .await;
    }
    // Messages no longer grow with the groups: one heartbeat round of twelve groups to two
    // followers each is 24 frames; every 40 ms that is 600 frames a second before the replies.
    // Quiesced, each node checks on each other node at most once per interval (and gets a
    // reply): at most 6 pairs × 25 calls × 2 frames, with room for one group waking.
    let before = frames_sent(&cluster, &all).await;
    let measured = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_second =
        (frames_sent(&cluster, &all).await - before) / measured.elapsed().as_secs_f64();
    println!("peer frames per second with 12 quiesced groups on 3 nodes: {per_second:.0}");
    assert!(
        per_second < 400.0,
        "{per_second:.0} peer frames/s: idle groups still heartbeat one by one"
    );

    // A quiesced follower is as fresh as an active one: a bounded-staleness read passes.
    let fresh = cluster
        .query(2, "SELECT v FROM t", "db=idle3&level=none&freshness=1s")
        .await
        .unwrap();
    assert_eq!(fresh, json!([["first"]]));

    // A write through any node wakes its group and reaches every replica.
    execute_ok(
        &cluster,
        2,
        "db=idle0",
        json!(["INSERT INTO t(v) VALUES('second')"]),
    )
    .await;
    for node in all {
        wait_for_count(&cluster, node, "idle0", 2).await;
    }
    // ...and a linearizable read through a quiesced leader is answered.
    let strong = cluster
        .query(0, "SELECT count(*) FROM t", "db=idle5&level=linearizable")
        .await
        .unwrap();
    assert_eq!(strong, json!([[1]]));

    // Everything quiesces again; then the node leading the most groups is killed. Every group
    // it led elects a leader among the survivors and takes a write.
    wait_until_quiesced(&cluster, &all, true).await;
    let mut led: Vec<Vec<u64>> = vec![Vec::new(); 3];
    for node in all {
        for group in groups(&cluster, node).await {
            if group["role"] == json!("leader") {
                led[node].push(group["group"].as_u64().unwrap());
            }
        }
    }
    let victim = (0..3).max_by_key(|&n| led[n].len()).unwrap();
    assert!(!led[victim].is_empty(), "leaders: {led:?}");
    let survivors: Vec<usize> = all.iter().copied().filter(|&n| n != victim).collect();
    cluster.kill(victim);
    let killed = Instant::now();
    let mut victims_databases = Vec::new();
    for group in groups(&cluster, survivors[0]).await {
        if led[victim].contains(&group["group"].as_u64().unwrap())
            && let Some(name) = group["database"].as_str()
        {
            victims_databases.push(name.to_string());
        }
    }
    for name in &victims_databases {
        execute_ok(
            &cluster,
            survivors[0],
            &format!("db={name}"),
            json!(["INSERT INTO t(v) VALUES('after the kill')"]),
        )
        .await;
    }
    println!(
        "{} quiesced groups led by the killed node took writes again {:?} after the kill",
        victims_databases.len(),
        killed.elapsed()
    );
    for node in &survivors {
        for group in groups(&cluster, *node).await {
            assert_ne!(
                group["leader"],
                json!(cluster.ids()[victim]),
                "node {}: group {} still follows the killed node",
                node + 1,
                group["group"]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_first_peer_stream_version_keeps_its_groups_awake_and_working() {
    let mut cluster = Cluster::start(ClusterSpec {
        voters: 3,
        ..Default::default()
    })
    .await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE DATABASE mixed WITH (replicas = 3)"]),
    )
    .await;
    execute_ok(
        &cluster,
        0,
        "db=mixed",
        json!(["CREATE TABLE t(id INTEGER PRIMARY KEY)"]),
    )
    .await;
    cluster.nodes[2].env.push((
        shoal::unsafe_faults::ENV_VAR.to_string(),
        "older-peer-stream".to_string(),
    ));
    cluster.restart(2).await;
    // Long past the idle spell after which groups quiesce: none does, since one member
    // cannot take part, and the groups keep replicating.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for node in 0..3 {
        for group in groups(&cluster, node).await {
            assert_eq!(
                group["quiesced"],
                json!(false),
                "node {}: group {} quiesced with a member of the first version",
                node + 1,
                group["group"]
            );
        }
    }
    for n in 0..5 {
        execute_ok(
            &cluster,
            2,
            "db=mixed",
            json!([["INSERT INTO t(id) VALUES(?)", n]]),
        )
        .await;
    }
    for node in 0..3 {
        wait_for_count(&cluster, node, "mixed", 5).await;
    }
    // Upgraded, the node takes part: the groups quiesce.
    cluster.nodes[2].env.clear();
    cluster.restart(2).await;
    wait_until_quiesced(&cluster, &[0, 1, 2], true).await;
}

/// The node leading a quiesced group is cut off from the others: they stop hearing its
/// liveness answers, wake, elect a leader among themselves and take writes; once the network
/// heals, the cut-off node follows the new leader and has every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiesced_leader_cut_off_by_a_partition_is_replaced() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        fast_elections: true,
        controlled_network: true,
        ..Default::default()
    })
    .await;
    execute_ok(
        &cluster,
        0,
        "",
        json!(["CREATE DATABASE cut WITH (replicas = 3)"]),
    )
    .await;
    execute_ok(
        &cluster,
        0,
        "db=cut",
        json!([
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
            "INSERT INTO t(v) VALUES('before')"
        ]),
    )
    .await;
    let all = [0, 1, 2];
    wait_until_quiesced(&cluster, &all, true).await;
    let group_of_cut = |groups: &[Value]| {
        groups
            .iter()
            .find(|g| g["database"] == json!("cut"))
            .cloned()
            .expect("the group of database cut")
    };
    let leader_id = group_of_cut(&groups(&cluster, 0).await)["leader"]
        .as_u64()
        .expect("a leader");
    let ids = cluster.ids();
    let leader = ids.iter().position(|&id| id == leader_id).unwrap();
    let other = (leader + 1) % 3;
    cluster.network().isolate(leader_id, &ids);
    let cut_at = Instant::now();
    execute_ok(
        &cluster,
        other,
        "db=cut",
        json!(["INSERT INTO t(v) VALUES('during')"]),
    )
    .await;
    println!(
        "a write was taken {:?} after the quiesced leader was cut off",
        cut_at.elapsed()
    );
    let new_leader = group_of_cut(&groups(&cluster, other).await)["leader"].clone();
    assert_ne!(new_leader, json!(leader_id), "the cut-off node still leads");
    cluster.network().heal();
    wait_for_count(&cluster, leader, "cut", 2).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let seen = group_of_cut(&groups(&cluster, leader).await);
        if seen["role"] == json!("follower") && seen["leader"] != json!(leader_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {} after the heal: {seen}",
            leader + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
