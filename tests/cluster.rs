//! End-to-end behaviour of a replicated cluster: real `shoal` processes on loopback, killed

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
//! with SIGKILL, partitioned through a proxy, driven over the HTTP API like a client would.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, ClusterSpec, metric_value};

const SETTLE: Duration = Duration::from_secs(20);

/// `voters` nodes started with extra `serve` flags.
fn spec_with_flags(voters: usize, flags: &[&str]) -> ClusterSpec {
    ClusterSpec {
        voters,
        extra_args: flags.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    }
}

fn spec(voters: usize, replicas: usize) -> ClusterSpec {
    ClusterSpec {
        voters,
        replicas,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_writes_on_any_node_are_readable_on_every_node_and_replica() {
    let cluster = Cluster::start(spec(3, 1)).await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE fruit(id INTEGER PRIMARY KEY, name TEXT)"]),
        )
        .await;
    for node in 0..4 {
        cluster
            .execute(
                node,
                json!([[
                    "INSERT INTO fruit(name) VALUES(?)",
                    format!("from-{}", node + 1)
                ]]),
            )
            .await;
    }
    let expected = json!([[1, "from-1"], [2, "from-2"], [3, "from-3"], [4, "from-4"]]);
    for node in 0..4 {
        cluster
            .wait_for_values(
                node,
                "SELECT id, name FROM fruit ORDER BY id",
                &expected,
                SETTLE,
            )
            .await;
        // Every consistency level gives the same answer once replicated.
        for level in ["weak", "linearizable", "strong", "auto"] {
            let values = cluster
                .query(
                    node,
                    "SELECT id, name FROM fruit ORDER BY id",
                    &format!("level={level}"),
                )
                .await
                .unwrap();
            assert_eq!(values, expected, "level={level} on node {}", node + 1);
        }
    }
    // Health comes from a probe of each member (1 s to answer): a busy machine can miss one.
    let deadline = Instant::now() + SETTLE;
    let status = loop {
        let status = cluster.get_json(0, "/status").await.unwrap();
        let members = status["members"].as_array().unwrap();
        if members.iter().all(|m| m["health"] == json!(1)) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a member stays unhealthy: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 4);
    assert_eq!(
        members.iter().filter(|m| m["voter"] == json!(true)).count(),
        3
    );
    // rqlite clients find the leader under store.leader.
    let leader_id = status["node"]["leader"]["id"].as_u64().unwrap();
    assert_eq!(
        status["store"]["leader"]["node_id"],
        json!(leader_id.to_string()),
        "{status}"
    );
    let nodes = cluster.get_json(0, "/nodes?nonvoters").await.unwrap();
    assert_eq!(nodes.as_object().unwrap().len(), 4);
}

/// Followers keep pooled read connections whose cached schema can lag behind the replicated
/// one; after a table is dropped and recreated with other columns, every node must answer
/// level=none reads (including ones that only compile against the new schema) from the table
/// as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_followers_read_a_recreated_table_with_its_new_columns() {
    let cluster = Cluster::start(spec(3, 0)).await;
    let all = "/db/execute?w=all&wtimeout=20s";
    let (status, body) = cluster
        .post(
            0,
            all,
            json!([
                "CREATE TABLE t1(a, b, c)",
                "INSERT INTO t1 VALUES (1, 2, 3)"
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for node in 0..3 {
        // Warms each node's read connections with the three-column table.
        let values = cluster.query(node, "SELECT * FROM t1", "level=none").await;
        assert_eq!(values, Ok(json!([[1, 2, 3]])), "node {}", node + 1);
    }
    let (status, body) = cluster
        .post(
            0,
            all,
            json!([
                "DROP TABLE t1",
                "CREATE TABLE t1(x)",
                "INSERT INTO t1 VALUES (1)"
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for node in 0..3 {
        for (sql, expected) in [
            // These two fail to compile against the old schema; any statement that runs
            // would make SQLite notice the change, so they come first.
            ("SELECT 1 IN (SELECT * FROM t1)", json!([[1]])),
            ("SELECT 2 NOT IN t1", json!([[1]])),
            ("SELECT * FROM t1", json!([[1]])),
        ] {
            let values = cluster.query(node, sql, "level=none").await;
            assert_eq!(values, Ok(expected), "{sql} on node {}", node + 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_acknowledged_writes_survive_sigkill_of_the_leader() {
    let mut cluster = Cluster::start(spec(3, 0)).await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE ledger(id INTEGER PRIMARY KEY, n INTEGER)"]),
        )
        .await;
    let leader = cluster.leader(SETTLE).await;
    let mut acknowledged = Vec::new();
    for n in 0..50 {
        cluster
            .execute(leader, json!([["INSERT INTO ledger(n) VALUES(?)", n]]))
            .await;
        acknowledged.push(n);
    }
    cluster.kill(leader);
    let started = Instant::now();
    let survivor = (leader + 1) % 3;
    // Writes resume on a new leader.
    let took = cluster
        .write_until_accepted(
            survivor,
            json!([["INSERT INTO ledger(n) VALUES(?)", 1000]]),
            started,
            SETTLE,
        )
        .await;
    println!(
        "failover: first acknowledged write {} ms after SIGKILL",
        took.as_millis()
    );
    let new_leader = cluster.leader(SETTLE).await;
    assert_ne!(new_leader, leader);
    let values = cluster
        .query(
            new_leader,
            "SELECT n FROM ledger WHERE n < 1000 ORDER BY n",
            "level=linearizable",
        )
        .await
        .unwrap();
    let expected: Vec<Value> = acknowledged.iter().map(|n| json!([n])).collect();
    assert_eq!(values, json!(expected), "an acknowledged write was lost");
    // The old leader comes back and catches up.
    cluster.restart(leader).await;
    let all = cluster
        .query(
            new_leader,
            "SELECT count(*) FROM ledger",
            "level=linearizable",
        )
        .await
        .unwrap();
    cluster
        .wait_for_values(leader, "SELECT count(*) FROM ledger", &all, SETTLE)
        .await;
}

/// Concurrent writes share log entries on the leader, yet each request gets exactly its own
/// results and keeps its own all-or-nothing rule: a request whose transaction fails changes
/// nothing, whatever else was proposed beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t14_concurrent_writes_keep_their_own_results_and_atomicity() {
    let cluster = Cluster::start(spec(3, 0)).await;
    let leader = cluster.leader(SETTLE).await;
    cluster
        .execute(
            leader,
            json!(["CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER)"]),
        )
        .await;
    let requests = (0..48).map(|who| {
        let cluster = &cluster;
        async move {
            // Odd requests insert a row and then the same key again, in a transaction: the
            // second statement fails, so their first row must not remain either.
            let body = if who % 2 == 0 {
                json!([["INSERT INTO t(id, who) VALUES(?, ?)", 1000 + who, who]])
            } else {
                json!([
                    ["INSERT INTO t(id, who) VALUES(?, ?)", 1000 + who, who],
                    ["INSERT INTO t(id, who) VALUES(?, ?)", 1000 + who, who]
                ])
            };
            let path = if who % 2 == 0 {
                "/db/execute"
            } else {
                "/db/execute?transaction"
            };
            (who, cluster.post(leader, path, body).await)
        }
    });
    for (who, (status, body)) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200, "request {who}: {body}");
        let results = body["results"].as_array().expect("results");
        if who % 2 == 0 {
            assert_eq!(results.len(), 1, "request {who}: {body}");
            assert_eq!(
                results[0]["last_insert_id"],
                json!(1000 + who),
                "request {who}: {body}"
            );
        } else {
            assert!(
                results.iter().any(|r| r.get("error").is_some()),
                "request {who} should fail on its duplicate key: {body}"
            );
        }
    }
    let rows = cluster
        .query(leader, "SELECT who FROM t ORDER BY who", "level=strong")
        .await
        .unwrap();
    let expected: Vec<Value> = (0..48).filter(|w| w % 2 == 0).map(|w| json!([w])).collect();
    assert_eq!(
        rows,
        json!(expected),
        "failed transactions left rows behind"
    );
}

/// Raft traffic between nodes of this version goes over one peer stream per pair of nodes; a
/// node of an earlier version (which refuses the stream's upgrade and calls over per-request
/// HTTP) still replicates, votes and takes over as leader in a cluster with newer nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t16_a_node_of_the_earlier_transport_takes_part_over_per_request_http() {
    let mut cluster = Cluster::start(spec(3, 0)).await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER)"]),
        )
        .await;
    let links_open = |text: Value| {
        metric_value(text.as_str().unwrap_or_default(), "shoal_peer_links_open")
            .expect("shoal_peer_links_open in /metrics")
    };
    let leader = cluster.leader(SETTLE).await;
    assert_eq!(
        links_open(cluster.get_json(leader, "/metrics").await.unwrap()),
        2.0,
        "the leader streams to both followers"
    );
    // Node 2 comes back as a node of the earlier version.
    let older = (leader + 1) % 3;
    cluster.nodes[older].env.push((
        shoal::unsafe_faults::ENV_VAR.to_string(),
        "older-peer-transport".to_string(),
    ));
    cluster.restart(older).await;
    for n in 0..20 {
        cluster
            .execute(leader, json!([["INSERT INTO t(n) VALUES(?)", n]]))
            .await;
    }
    cluster
        .wait_for_values(older, "SELECT count(*) FROM t", &json!([[20]]), SETTLE)
        .await;
    assert_eq!(
        links_open(cluster.get_json(older, "/metrics").await.unwrap()),
        0.0,
        "the earlier version opens no peer stream"
    );
    // The newer leader dies: the earlier node and the other newer one elect a leader between
    // them and go on taking writes.
    cluster.kill(leader);
    let survivor = (0..3).find(|&p| p != leader && p != older).unwrap();
    cluster
        .write_until_accepted(
            older,
            json!([["INSERT INTO t(n) VALUES(?)", 100]]),
            Instant::now(),
            SETTLE,
        )
        .await;
    cluster.restart(leader).await;
    for node in [leader, older, survivor] {
        cluster
            .wait_for_values(node, "SELECT count(*) FROM t", &json!([[21]]), SETTLE)
            .await;
    }
}

/// A write that reaches a survivor while the election after a leader's death runs is held
/// until a leader is known, then runs there — on the survivor itself when it was elected,
/// or on the other one — instead of being refused because the old leader cannot be reached
/// or because the survivor still waits for a leader it has itself become.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_writes_sent_to_survivors_during_the_election_are_acknowledged() {
    let mut cluster = Cluster::start(spec(3, 0)).await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE ledger(id INTEGER PRIMARY KEY, n INTEGER)"]),
        )
        .await;
    for round in 0..3 {
        let leader = cluster.leader(SETTLE).await;
        cluster.kill(leader);
        let survivors: Vec<usize> = (0..3).filter(|&p| p != leader).collect();
        let writes = survivors.iter().map(|&survivor| {
            let n = round * 10 + survivor;
            let cluster = &cluster;
            async move {
                let reply = cluster
                    .post(
                        survivor,
                        "/db/execute",
                        json!([["INSERT INTO ledger(n) VALUES(?)", n]]),
                    )
                    .await;
                (survivor, n, reply)
            }
        });
        for (survivor, n, (status, body)) in futures_util::future::join_all(writes).await {
            assert_eq!(
                (status, body["results"][0].get("error")),
                (200, None),
                "round {round}: the write of {n} sent to node {} right after the leader's SIGKILL: {body}",
                survivor + 1
            );
        }
        cluster.restart(leader).await;
    }
    let new_leader = cluster.leader(SETTLE).await;
    let values = cluster
        .query(
            new_leader,
            "SELECT count(*) FROM ledger",
            "level=linearizable",
        )
        .await
        .unwrap();
    assert_eq!(values, json!([[6]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_whole_cluster_killed_and_restarted_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(spec(3, 0)).await;
    cluster
        .execute(0, json!(["CREATE TABLE kept(n INTEGER)"]))
        .await;
    for n in 0..40 {
        cluster
            .execute(n % 3, json!([["INSERT INTO kept VALUES(?)", n]]))
            .await;
    }
    for node in 0..3 {
        cluster.kill(node);
    }
    for node in 0..3 {
        cluster.restart(node).await;
    }
    let leader = cluster.leader(SETTLE).await;
    let count = cluster
        .query(
            leader,
            "SELECT count(*), sum(n) FROM kept",
            "level=linearizable",
        )
        .await
        .unwrap();
    assert_eq!(count, json!([[40, 780]]));
    cluster
        .execute(leader, json!(["INSERT INTO kept VALUES(40)"]))
        .await;
    for node in 0..3 {
        cluster
            .wait_for_values(node, "SELECT count(*) FROM kept", &json!([[41]]), SETTLE)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t25_graceful_shutdown_hands_leadership_over() {
    let mut cluster = Cluster::start(spec(3, 0)).await;
    cluster.execute(0, json!(["CREATE TABLE t(x)"])).await;
    let leader = cluster.leader(SETTLE).await;
    cluster.nodes[leader].signal(libc::SIGTERM);
    let started = Instant::now();
    let survivor = (leader + 1) % 3;
    let old_id = json!(cluster.nodes[leader].id);
    // The old leader may still answer while it hands over; wait for the survivor to see
    // another leader, then write through it.
    loop {
        if let Ok(answer) = cluster.get_json(survivor, "/leader").await
            && !answer["leader"]["id"].is_null()
            && answer["leader"]["id"] != old_id
        {
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "leadership was not handed over after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = cluster
        .write_until_accepted(
            survivor,
            json!(["INSERT INTO t VALUES(1)"]),
            started,
            SETTLE,
        )
        .await;
    println!(
        "graceful handover: new leader and first write {} ms after SIGTERM",
        took.as_millis()
    );
    cluster.kill(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_node_that_missed_compacted_entries_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(spec_with_flags(
        3,
        &["--snapshot-threshold", "20", "--log-keep", "5"],
    ))
    .await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT)"]),
        )
        .await;
    let leader = cluster.leader(SETTLE).await;
    let lagging = (leader + 1) % 3;
    cluster.kill(lagging);
    for n in 0..120 {
        cluster
            .execute(
                leader,
                json!([["INSERT INTO items(body) VALUES(?)", format!("item {n}")]]),
            )
            .await;
    }
    // The leader has compacted its log well past what the stopped node has.
    cluster.wait_for_log_compaction(leader, 60, SETTLE).await;
    cluster.restart(lagging).await;
    cluster
        .wait_for_values(
            lagging,
            "SELECT count(*), max(body) FROM items",
            &json!([[120, "item 99"]]),
            SETTLE,
        )
        .await;
    assert_eq!(
        cluster.table_dump(lagging, "items").await,
        cluster.table_dump(leader, "items").await
    );
}

/// With no memory for log entries, every entry a lagging follower needs is read back from
/// the leader's segment files, and restarts replay from them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t32_a_follower_catches_up_from_log_entries_read_back_from_disk() {
    let mut cluster = Cluster::start(spec_with_flags(3, &["--log-cache-bytes", "0"])).await;
    cluster
        .execute(
            0,
            json!(["CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT)"]),
        )
        .await;
    let leader = cluster.leader(SETTLE).await;
    let lagging = (leader + 1) % 3;
    cluster.kill(lagging);
    for n in 0..150 {
        cluster
            .execute(
                leader,
                json!([["INSERT INTO items(body) VALUES(?)", format!("item {n:03}")]]),
            )
            .await;
    }
    let status = cluster.get_json(leader, "/status").await.unwrap();
    assert!(
        status["storage"]["log_entries"].as_u64().unwrap() > 150,
        "the leader kept its log (no snapshot yet): {status}"
    );
    cluster.restart(lagging).await;
    let expected = json!([[150, "item 149"]]);
    cluster
        .wait_for_values(
            lagging,
            "SELECT count(*), max(body) FROM items",
            &expected,
            SETTLE,
        )
        .await;
    assert_eq!(
        cluster.table_dump(lagging, "items").await,
        cluster.table_dump(leader, "items").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t35_large_entries_trigger_compaction_before_the_entry_threshold() {
    let cluster = Cluster::start(spec_with_flags(
        1,
        &["--log-bytes-max", "200000", "--log-keep", "2"],
    ))
    .await;
    cluster
        .execute(0, json!(["CREATE TABLE blobs(b TEXT)"]))
        .await;
    let chunk = "x".repeat(20_000);
    for _ in 0..30 {
        cluster
            .execute(0, json!([["INSERT INTO blobs VALUES(?)", chunk]]))
            .await;
    }
    // 30 entries of 20 kB each exceed the 200 kB bound long before 8192 entries.
    cluster.wait_for_log_compaction(0, 20, SETTLE).await;
    assert_eq!(
        cluster
            .query(0, "SELECT count(*) FROM blobs", "")
            .await
            .unwrap(),
        json!([[30]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t37_a_full_disk_stops_a_node_cleanly_and_it_recovers_after_restart() {
    let mut cluster = Cluster::start(spec(3, 0)).await;
    cluster
        .execute(0, json!(["CREATE TABLE t(id INTEGER PRIMARY KEY)"]))
        .await;
    let leader = cluster.leader(SETTLE).await;
    let full = (leader + 1) % 3;
    // Let the node apply everything it already holds first, so that the first write the full
    // disk refuses is a log append (an apply that fails stops the node too, but says so in
    // other words).
    cluster
        .wait_for_values(full, "SELECT count(*) FROM t", &json!([[0]]), SETTLE)
        .await;
    // …including entries after the table (members joining, the catalog's founding settling).
    let deadline = Instant::now() + SETTLE;
    loop {
        let committed = cluster.get_json(leader, "/status").await.unwrap()["node"]["commit_index"]
            .as_u64()
            .unwrap_or(0);
        let applied = cluster.get_json(full, "/status").await.unwrap()["node"]["applied_index"]
            .as_u64()
            .unwrap_or(0);
        if applied >= committed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node applied {applied} of {committed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.nodes[full].limit_file_size(Some(0));
    // The other two still form a majority: every write is acknowledged.
    for id in 1..=50 {
        cluster
            .execute(leader, json!([["INSERT INTO t(id) VALUES(?)", id]]))
            .await;
    }
    // The node stopped rather than carry on with a log it could not write, and says so.
    let deadline = Instant::now() + SETTLE;
    let stopped = loop {
        let status = cluster.get_json(full, "/status").await.unwrap();
        if let Some(reason) = status["node"]["raft_stopped"].as_str() {
            break reason.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "node with a full disk still runs: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Whichever write the full disk refused first stopped it: the log append (usually), or the
    // apply of an entry whose append still fitted in space the log segment already had.
    assert!(
        stopped.contains("log append failed") || stopped.contains("disk I/O error"),
        "{stopped}"
    );
    let readyz = cluster.get_json(full, "/readyz").await.unwrap_err();
    assert!(
        readyz.starts_with("503") && readyz.contains("[-]raft: stopped"),
        "{readyz}"
    );
    // Space is back; the operator restarts the node and it catches up from its own log.
    cluster.nodes[full].limit_file_size(None);
    cluster.restart(full).await;
    let expected = json!([[50, 1275]]);
    cluster
        .wait_for_values(full, "SELECT count(*), sum(id) FROM t", &expected, SETTLE)
        .await;
    cluster
        .execute(full, json!([["INSERT INTO t(id) VALUES(51)"]]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_leader_transfer_step_down_and_removal() {
    let mut cluster = Cluster::start(spec(3, 0)).await;
    cluster.execute(0, json!(["CREATE TABLE t(x)"])).await;
    let leader = cluster.leader(SETTLE).await;
    let target = (leader + 2) % 3;
    let (status, body) = cluster
        .post(leader, "/leader", json!({"id": cluster.nodes[target].id}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["leader"], json!(cluster.nodes[target].id));
    cluster
        .wait_for_leader(|leader| leader == target, SETTLE)
        .await;
    // Step down without a target: someone else leads.
    let (status, body) = cluster.post(target, "/leader", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let after = cluster
        .wait_for_leader(|leader| leader != target, SETTLE)
        .await;
    cluster
        .execute(after, json!(["INSERT INTO t VALUES(1)"]))
        .await;
    // Transfer to a non-member is refused with a reason.
    let (status, body) = cluster.post(after, "/leader", json!({"id": 99})).await;
    assert_eq!(status, 400, "{body}");

    // Remove the two other nodes: the quorum shrinks to one, which keeps accepting writes
    // after they are killed.
    let others: Vec<usize> = (0..3).filter(|n| *n != after).collect();
    for &other in &others {
        let response = cluster
            .http
            .delete(format!("{}/remove", cluster.url(after)))
            .json(&json!({"id": cluster.nodes[other].id}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "{}",
            response.text().await.unwrap()
        );
    }
    for &other in &others {
        cluster.kill(other);
    }
    cluster
        .execute(after, json!(["INSERT INTO t VALUES(2)"]))
        .await;
    let values = cluster
        .query(after, "SELECT x FROM t ORDER BY x", "level=linearizable")
        .await
        .unwrap();
    assert_eq!(values, json!([[1], [2]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_read_consistency_and_write_concern() {
    // Node 4 is a read replica; the cluster's messages to it can be cut.
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        replicas: 1,
        controlled_network: true,
        ..Default::default()
    })
    .await;
    cluster
        .execute(
            0,
            json!([
                "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)",
                "INSERT INTO kv VALUES('a', 1)"
            ]),
        )
        .await;
    cluster
        .wait_for_values(3, "SELECT v FROM kv", &json!([[1]]), SETTLE)
        .await;
    cluster.network().cut(&[1, 2, 3], &[4]);
    let leader = cluster.leader(SETTLE).await;
    cluster
        .execute(leader, json!(["UPDATE kv SET v = 2"]))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // level=none on the cut-off replica is stale; linearizable never is.
    assert_eq!(
        cluster
            .query(3, "SELECT v FROM kv", "level=none")
            .await
            .unwrap(),
        json!([[1]])
    );
    assert_eq!(
        cluster
            .query(3, "SELECT v FROM kv", "level=linearizable")
            .await
            .unwrap(),
        json!([[2]])
    );
    assert_eq!(
        cluster
            .query(3, "SELECT v FROM kv", "level=strong")
            .await
            .unwrap(),
        json!([[2]])
    );
    // freshness refuses a read older than asked for, and says why.
    let stale = cluster
        .query(3, "SELECT v FROM kv", "level=none&freshness=200ms")
        .await
        .unwrap_err();
    assert!(
        stale.contains("503") && stale.contains("stale read"),
        "{stale}"
    );
    // w=all cannot be met while the replica is cut off: committed, but reported.
    let started = Instant::now();
    let (status, body) = cluster
        .post(
            leader,
            "/db/execute?w=all&wtimeout=3s",
            json!(["UPDATE kv SET v = 3"]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "returned before wtimeout"
    );
    let concern = &body["write_concern_error"];
    assert_eq!(concern["required"], json!(4), "{body}");
    assert_eq!(concern["applied_on"], json!(3), "{body}");
    assert_eq!(
        cluster
            .query(leader, "SELECT v FROM kv", "level=linearizable")
            .await
            .unwrap(),
        json!([[3]])
    );
    // w=3 is met by the three voters.
    let (status, body) = cluster
        .post(
            leader,
            "/db/execute?w=3&wtimeout=20s",
            json!(["UPDATE kv SET v = 4"]),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.get("write_concern_error").is_none(), "{body}");
    // An impossible concern is refused before anything is written.
    let (status, body) = cluster
        .post(leader, "/db/execute?w=9", json!(["UPDATE kv SET v = 5"]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        cluster
            .query(leader, "SELECT v FROM kv", "level=linearizable")
            .await
            .unwrap(),
        json!([[4]])
    );
    // Healed, the replica catches up and fresh reads are served again.
    cluster.network().heal();
    cluster
        .wait_for_values(3, "SELECT v FROM kv", &json!([[4]]), SETTLE)
        .await;
    assert_eq!(
        cluster
            .query(3, "SELECT v FROM kv", "level=none&freshness=2s")
            .await
            .unwrap(),
        json!([[4]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_random_and_now_give_identical_replicas_after_replay_and_snapshot() {
    let mut cluster = Cluster::start(spec_with_flags(
        3,
        &["--snapshot-threshold", "30", "--log-keep", "5"],
    ))
    .await;
    let leader = cluster.leader(SETTLE).await;
    cluster
        .execute(leader, json!([
            "CREATE TABLE events(id INTEGER PRIMARY KEY, r INTEGER DEFAULT (random()), at TEXT DEFAULT CURRENT_TIMESTAMP, note TEXT)",
            "CREATE TABLE audit(event INTEGER, at TEXT, tag BLOB)",
            "CREATE TRIGGER log_event AFTER INSERT ON events BEGIN INSERT INTO audit VALUES (new.id, strftime('%Y-%m-%d %H:%M:%f', 'now'), randomblob(8)); END",
        ]))
        .await;
    let snapshot_node = (leader + 1) % 3;
    cluster.kill(snapshot_node);
    for n in 0..40 {
        cluster
            .execute(leader, json!([
                ["INSERT INTO events(note) VALUES(?)", format!("n{n}")],
                "INSERT INTO events(note) VALUES (hex(randomblob(4)) || ' ' || datetime('now') || ' ' || julianday('now') || ' ' || unixepoch())",
                "UPDATE events SET r = random() WHERE id % 7 = 0",
            ]))
            .await;
    }
    cluster.restart(snapshot_node).await;
    let replay_node = (leader + 2) % 3;
    cluster.restart(replay_node).await;
    let reference = (
        cluster.table_dump(leader, "events").await,
        cluster.table_dump(leader, "audit").await,
    );
    assert_eq!(reference.0.as_array().unwrap().len(), 80);
    for node in [snapshot_node, replay_node] {
        let deadline = Instant::now() + SETTLE;
        loop {
            // A restarted node answers before its snapshot is installed ("no such table"):
            // that is "not yet", not a divergence.
            let dump = match (
                cluster.try_table_dump(node, "events").await,
                cluster.try_table_dump(node, "audit").await,
            ) {
                (Ok(events), Ok(audit)) => (events, audit),
                (events, audit) => {
                    assert!(
                        Instant::now() < deadline,
                        "node {} never served the tables: {events:?} {audit:?}",
                        node + 1
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if dump == reference {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} diverged:\n{:?}\nvs leader\n{:?}",
                node + 1,
                dump,
                reference
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_bad_input_gets_clear_errors_and_changes_nothing() {
    let cluster = Cluster::start(spec_with_flags(1, &["--http-max-body-bytes", "4096"])).await;
    cluster
        .execute(
            0,
            json!([
                "CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER CHECK (balance >= 0))",
                "INSERT INTO acct VALUES (1, 100), (2, 0)"
            ]),
        )
        .await;
    let raw = |body: &'static str, path: &'static str| {
        let http = cluster.http.clone();
        let url = format!("{}{path}", cluster.url(0));
        async move {
            let response = http.post(url).body(body).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, text) = raw("[\"SELECT 1\"", "/db/query").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not valid JSON"), "{text}");
    let (status, text) = raw("[\"SELECT 1\"]", "/db/query?levle=none").await;
    assert_eq!(status, 400);
    assert!(text.contains("levle"), "{text}");
    let big = Box::leak(format!("[\"SELECT '{}'\"]", "x".repeat(8192)).into_boxed_str());
    let (status, _) = raw(big, "/db/query").await;
    assert_eq!(status, 413);
    // Wrong parameter count: a per-statement error, nothing applied.
    let (status, body) = cluster
        .post(
            0,
            "/db/execute",
            json!([["INSERT INTO acct VALUES(?, ?)", 3]]),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("expects 2 parameters"),
        "{body}"
    );
    // A failing statement inside a transaction rolls the whole request back.
    let (status, body) = cluster
        .post(
            0,
            "/db/execute?transaction",
            json!([
                "UPDATE acct SET balance = balance + 50 WHERE id = 2",
                "UPDATE acct SET balance = balance - 150 WHERE id = 1",
            ]),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["results"][1]["error"]
            .as_str()
            .unwrap()
            .contains("CHECK"),
        "{body}"
    );
    let balances = cluster
        .query(0, "SELECT balance FROM acct ORDER BY id", "")
        .await
        .unwrap();
    assert_eq!(
        balances,
        json!([[100], [0]]),
        "transaction was partly applied"
    );
    // A statement that fails halfway changes nothing, even where SQLite itself would keep
    // the rows before the failure (INSERT OR REPLACE … SELECT inside a transaction), and the
    // statements around it in the same request still apply.
    let (status, body) = cluster
        .post(
            0,
            "/db/execute",
            json!([
                "CREATE TABLE src(v)",
                "INSERT INTO src VALUES (6), (17), ('not an integer')",
                "CREATE TABLE ids(id INTEGER PRIMARY KEY)",
                "INSERT OR REPLACE INTO ids(id) SELECT v FROM src",
                "INSERT INTO ids VALUES (1)",
                "DROP TABLE src; CREATE TABLE src(w); INSERT INTO src VALUES (1), (1/0), (2); INSERT INTO missing VALUES (1)",
            ]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["results"][3]["error"],
        json!("datatype mismatch"),
        "{body}"
    );
    assert!(
        body["results"][5]["error"]
            .as_str()
            .unwrap()
            .contains("no such table: missing"),
        "{body}"
    );
    assert_eq!(
        cluster.query(0, "SELECT id FROM ids", "").await.unwrap(),
        json!([[1]]),
        "a failed statement was partly applied"
    );
    assert_eq!(
        cluster
            .query(0, "SELECT count(*) FROM src", "")
            .await
            .unwrap(),
        json!([[3]]),
        "a failed script was partly applied"
    );
    // A write through /db/query is refused.
    let error = cluster.query(0, "DELETE FROM acct", "").await.unwrap_err();
    assert!(error.contains("readonly"), "{error}");
    assert_eq!(
        cluster
            .query(0, "SELECT count(*) FROM acct", "")
            .await
            .unwrap(),
        json!([[2]])
    );
    // Still alive and well.
    assert!(cluster.get_json(0, "/readyz").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t75_responses_are_shaped_like_rqlite() {
    let cluster = Cluster::start(spec(1, 0)).await;
    let (status, body) = cluster
        .post(0, "/db/execute", json!(["CREATE TABLE ev(id INTEGER PRIMARY KEY, at TIMESTAMP, day DATE, done BOOLEAN, data BLOB)", ""]))
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"results": [{}]})),
        "DDL answers {{}} and empty statements are skipped"
    );
    cluster
        .execute(
            0,
            json!([[
                "INSERT INTO ev(at, day, done, data) VALUES(?, ?, ?, ?)",
                "2024-01-02 03:04:05",
                "2024-01-02",
                1,
                [0, 255]
            ]]),
        )
        .await;
    let (_, body) = cluster
        .post(
            0,
            "/db/query",
            json!(["SELECT at, day, done, data FROM ev"]),
        )
        .await;
    assert_eq!(
        body["results"][0],
        json!({"columns": ["at", "day", "done", "data"], "types": ["timestamp", "date", "boolean", "blob"],
               "values": [["2024-01-02T03:04:05Z", "2024-01-02T00:00:00Z", true, "AP8="]]})
    );
    let (_, body) = cluster
        .post(0, "/db/query", json!(["SELECT * FROM ev WHERE id > 5"]))
        .await;
    assert!(
        body["results"][0].get("values").is_none(),
        "no rows: values is left out: {body}"
    );
    // A text/plain body is one raw statement.
    let response = cluster
        .http
        .post(format!("{}/db/execute", cluster.url(0)))
        .header("Content-Type", "text/plain")
        .body("INSERT INTO ev(done) VALUES(0)")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"results": [{"last_insert_id": 2, "rows_affected": 1}]})
    );
    let (status, body) = cluster
        .post(0, "/db/query?freshness_strict", json!(["SELECT 1"]))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_queued_writes_and_redirects() {
    let cluster = Cluster::start(spec(3, 0)).await;
    cluster
        .execute(0, json!(["CREATE TABLE q(n INTEGER)"]))
        .await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    for n in 0..20 {
        let (status, body) = cluster
            .post(
                follower,
                "/db/execute?queue",
                json!([["INSERT INTO q VALUES(?)", n]]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["sequence_number"].as_u64().is_some(), "{body}");
    }
    let (status, _) = cluster
        .post(
            follower,
            "/db/execute?queue&wait",
            json!([["INSERT INTO q VALUES(?)", 20]]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        cluster
            .query(leader, "SELECT count(*) FROM q", "level=linearizable")
            .await
            .unwrap(),
        json!([[21]])
    );
    // redirect: a follower answers 301 with the leader's address instead of forwarding.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/db/execute?redirect", cluster.url(follower)))
        .json(&json!(["INSERT INTO q VALUES(99)"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 301);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&cluster.url(leader)), "{location}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_pyrqlite_crud_session_runs_unchanged() {
    let cluster = Cluster::start(spec(3, 0)).await;
    let follower = (cluster.leader(SETTLE).await + 1) % 3;
    let args = [
        "--host".to_string(),
        "127.0.0.1".to_string(),
        "--port".to_string(),
        cluster.nodes[follower].http_port.to_string(),
    ];
    support::run_client_script("pyrqlite_crud.py", &args, "pyrqlite CRUD: ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_bench_smoke_prints_replicated_writes_per_second() {
    use shoal::bench::target::{SEED_ROWS, TABLE, TargetConfig, TargetKind};
    use shoal::bench::{BenchConfig, Stop, Workload};
    let cluster = Cluster::start(spec(3, 0)).await;
    let leader = cluster.leader(SETTLE).await;
    let config = |workload, stop| BenchConfig {
        target: TargetConfig {
            kind: TargetKind::Shoal,
            url: cluster.url(leader),
            consistency: Some("weak".into()),
            write_concern: Some("majority".into()),
            database: None,
        },
        workload,
        clients: 8,
        stop,
        keys: (1..=SEED_ROWS).collect(),
        progress: false,
    };
    let inserts = shoal::bench::run(config(
        Workload::Insert,
        Stop::After(Duration::from_secs(2)),
    ))
    .await
    .unwrap();
    println!("bench smoke: {}", inserts.human());
    assert!(inserts.operations > 0);
    assert_eq!(
        (inserts.errors, inserts.rows_written),
        (0, inserts.operations)
    );
    // A fixed number of operations runs exactly that many.
    let batches = shoal::bench::run(config(
        Workload::BatchInsert { rows: 10 },
        Stop::Operations(40),
    ))
    .await
    .unwrap();
    assert_eq!(
        (batches.operations, batches.rows_written, batches.errors),
        (40, 400, 0)
    );
    let mixed = shoal::bench::run(config(
        Workload::Mixed { read_ratio: 0.5 },
        Stop::Operations(200),
    ))
    .await
    .unwrap();
    assert_eq!((mixed.operations, mixed.errors), (200, 0));
    assert!(
        mixed.rows_written > 0 && mixed.rows_written < 200,
        "{mixed:?}"
    );
    let count = cluster
        .query(
            leader,
            &format!("SELECT count(*) FROM {TABLE}"),
            "level=linearizable",
        )
        .await
        .unwrap();
    assert_eq!(
        count[0][0].as_u64().unwrap(),
        SEED_ROWS + inserts.rows_written + batches.rows_written + mixed.rows_written,
        "every acknowledged insert is stored"
    );
    // Point updates change seed rows and add none.
    let updates = shoal::bench::run(config(Workload::PointUpdate, Stop::Operations(50)))
        .await
        .unwrap();
    assert_eq!((updates.operations, updates.errors), (50, 0));
    let seeds = cluster
        .query(
            leader,
            &format!("SELECT count(*), sum(value <> 'seed') FROM {TABLE} WHERE id <= {SEED_ROWS}"),
            "level=linearizable",
        )
        .await
        .unwrap();
    assert_eq!(seeds[0][0].as_u64().unwrap(), SEED_ROWS);
    let changed = seeds[0][1].as_u64().unwrap();
    assert!((1..=50).contains(&changed), "{changed} seed rows changed");
    // A run that cannot work says why before it starts: a write concern no cluster can meet.
    let mut impossible = config(Workload::Insert, Stop::Operations(3));
    impossible.target.write_concern = Some("9".into());
    let refused = shoal::bench::run(impossible).await.unwrap_err();
    assert!(refused.contains("w=9 can never be met"), "{refused}");
}

/// The value of the metric line starting with `name` (labels included) in a scrape.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_metrics_follow_load_and_a_paused_follower() {
    let cluster = Cluster::start(spec(3, 0)).await;
    cluster.execute(0, json!(["CREATE TABLE t(x)"])).await;
    let leader = cluster.leader(SETTLE).await;
    let paused = (leader + 1) % 3;
    let paused_id = cluster.nodes[paused].id;
    let scrape = |node: usize| {
        let url = format!("{}/metrics", cluster.url(node));
        let http = cluster.http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    for x in 0..20 {
        cluster
            .execute(leader, json!([["INSERT INTO t VALUES(?)", x]]))
            .await;
    }
    // A write commits on a majority: the third node may still be applying the last one.
    for node in 0..3 {
        cluster
            .wait_for_values(node, "SELECT count(*) FROM t", &json!([[20]]), SETTLE)
            .await;
    }
    let text = scrape(leader).await;
    assert!(
        text.contains("# TYPE shoal_raft_proposals counter"),
        "{text}"
    );
    assert!(
        metric_value(&text, "shoal_raft_proposals_total").unwrap() >= 20.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "shoal_raft_role{role=\"leader\"}"),
        Some(1.0)
    );
    assert!(metric_value(&text, "shoal_raft_term").unwrap() >= 1.0);
    assert!(
        metric_value(
            &text,
            "shoal_http_requests_total{endpoint=\"/db/execute\",method=\"POST\",status=\"2xx\"}"
        )
        .unwrap()
            >= 20.0,
        "{text}"
    );
    assert!(metric_value(&text, "shoal_process_resident_memory_bytes").unwrap() > 1e6);
    // Lag is measured from what each member reports it applied, a moment after its rows
    // became visible.
    let lag = format!("shoal_member_replication_lag_entries{{member=\"{paused_id}\"}}");
    cluster
        .wait_for_metric(leader, &lag, |lag| lag == 0.0, SETTLE)
        .await;

    cluster.nodes[paused].signal(libc::SIGSTOP);
    for x in 0..30 {
        cluster
            .execute(leader, json!([["INSERT INTO t VALUES(?)", x]]))
            .await;
    }
    cluster
        .wait_for_metric(leader, &lag, |lag| lag >= 30.0, SETTLE)
        .await;
    let up = format!("shoal_member_up{{member=\"{paused_id}\"}}");
    cluster
        .wait_for_metric(leader, &up, |up| up == 0.0, SETTLE)
        .await;

    cluster.nodes[paused].signal(libc::SIGCONT);
    let deadline = Instant::now() + SETTLE;
    loop {
        let text = scrape(leader).await;
        if metric_value(&text, &lag) == Some(0.0) && metric_value(&text, &up) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "lag never fell back: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_readyz_answers_for_load_balancers_with_lag_and_freshness_limits() {
    let cluster = Cluster::start(spec(3, 0)).await;
    let leader = cluster.leader(SETTLE).await;
    let follower = (leader + 1) % 3;
    let ready = |node: usize, query: &'static str| {
        let url = format!("{}/readyz{query}", cluster.url(node));
        let http = cluster.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // The leader's first entry of its term may still be on its way to the follower.
    let deadline = Instant::now() + SETTLE;
    let (status, text) = loop {
        let (status, text) = ready(follower, "?lag=0&freshness=5s&level=linearizable").await;
        if status == 200 || Instant::now() > deadline {
            break (status, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("[+]lag ok") && text.contains("[+]freshness ok"),
        "{text}"
    );
    // A follower cut off from the others (so no new leader can reach it either) is not
    // fresh any more.
    let others = [leader, (leader + 2) % 3];
    for node in others {
        cluster.nodes[node].signal(libc::SIGSTOP);
    }
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (status, text) = ready(follower, "?freshness=200ms&noleader").await;
    let (level_status, level_text) = ready(follower, "?level=linearizable&noleader").await;
    let (local_status, local_text) = ready(follower, "?level=none&noleader").await;
    for node in others {
        cluster.nodes[node].signal(libc::SIGCONT);
    }
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("[-]freshness"), "{text}");
    assert_eq!(level_status, 503, "{level_text}");
    assert!(level_text.contains("[-]level linearizable"), "{level_text}");
    assert_eq!(
        local_status, 200,
        "local reads need no leader: {local_text}"
    );
    let (status, text) = ready(follower, "?lag=many").await;
    assert_eq!(status, 503);
    assert!(text.contains("not a number"), "{text}");
}

/// An HTTP receiver on loopback collecting the JSON bodies POSTed to it.
async fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_losing_quorum_fires_the_no_leader_alert_and_regaining_it_resolves_it() {
    let (url, received) = webhook_receiver().await;
    let cluster = Cluster::start(spec_with_flags(
        3,
        &["--alert-webhook", &url, "--alert-no-leader-after", "1s"],
    ))
    .await;
    let leader = cluster.leader(SETTLE).await;
    let leader_id = cluster.nodes[leader].id;
    let peers: Vec<usize> = (0..3).filter(|n| *n != leader).collect();
    for peer in &peers {
        cluster.nodes[*peer].signal(libc::SIGSTOP);
    }
    let events_of = |state: &str| {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["alert"] == "no_leader" && e["state"] == state && e["node"] == leader_id)
            .cloned()
            .collect::<Vec<Value>>()
    };
    let deadline = Instant::now() + SETTLE;
    while events_of("firing").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no alert: {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let firing = events_of("firing").remove(0);
    assert_eq!(firing["severity"], "critical");
    assert!(firing["since"].as_f64().unwrap() > 1.7e9, "{firing}");
    // The catalog group lost its quorum with the same nodes, and says so in its own alert.
    loop {
        let listed = cluster.get_json(leader, "/alerts").await.unwrap();
        let names: Vec<&str> = listed["firing"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|event| event["alert"].as_str())
            .collect();
        if names.contains(&"no_leader") && names.contains(&"group_no_leader:catalog") {
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for peer in &peers {
        cluster.nodes[*peer].signal(libc::SIGCONT);
    }
    while events_of("resolved").is_empty() {
        assert!(
            Instant::now() < deadline,
            "never resolved: {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(events_of("firing").len(), 1, "fired once");
    let listed = cluster.get_json(leader, "/alerts").await.unwrap();
    assert_eq!(listed["firing"], json!([]), "{listed}");
}
