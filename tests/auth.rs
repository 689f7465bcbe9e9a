//! Users and roles in the replicated state, driven the way an operator would: `shoal user`
//! against one node, checked on the others. (Enforcing them on requests comes with the rest of
//! the security work.)

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, ClusterSpec};

/// Runs `shoal user …` with `password` on standard input; returns (success, stdout, stderr).
fn shoal_user(args: &[&str], password: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("user")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shoal user");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(format!("{}\n", password.unwrap_or_default()).as_bytes());
    }
    let output = child.wait_with_output().expect("shoal user");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// The users node `node` has applied, by name.
async fn users_on(cluster: &Cluster, node: usize) -> Vec<Value> {
    cluster.get_json(node, "/users").await.expect("GET /users")["users"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_for_users(
    cluster: &Cluster,
    node: usize,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let users = users_on(cluster, node).await;
        if check(&users) {
            return users;
        }
        assert!(
            Instant::now() < deadline,
            "node {} has users {users:?}",
            node + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// u10: a user added through a follower appears on every node with its roles, never with its
/// password or hash; passwd, grant, revoke and remove replicate the same way; bad input is
/// refused and changes nothing; statements cannot read the users table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u10_users_replicate_and_never_show_their_passwords() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        ..ClusterSpec::default()
    })
    .await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let through = cluster.url(follower);
    let (ok, _, stderr) = shoal_user(
        &[
            "--host",
            &through,
            "add",
            "ana",
            "--role",
            "reader",
            "--permission",
            "backup",
        ],
        Some("correct horse battery"),
    );
    assert!(ok, "{stderr}");
    let users = wait_for_users(&cluster, other, |u| u.len() == 1).await;
    assert_eq!(users[0]["name"], json!("ana"));
    assert_eq!(users[0]["roles"], json!(["reader"]));
    assert_eq!(users[0]["effective"], json!(["read", "backup", "status"]));
    let listed = serde_json::to_string(&users).expect("json");
    assert!(
        !listed.contains("argon2") && !listed.contains("correct horse"),
        "{listed}"
    );

    // Refused, naming what was wrong; nothing changes.
    for (args, password, expected) in [
        (vec!["add", "ana"], "another password", "exists"),
        (
            vec!["add", "bo", "--role", "root"],
            "long enough pw",
            "unknown role",
        ),
        (vec!["add", "bo"], "short", "shorter than 8"),
        (vec!["add", "../bo"], "long enough pw", "user name"),
        (
            vec!["grant", "ana", "--permission", "everything"],
            "",
            "unknown permission",
        ),
        (vec!["remove", "nobody"], "", "no user"),
    ] {
        let mut full = vec!["--host", through.as_str()];
        full.extend(args.iter().copied());
        let (ok, _, stderr) = shoal_user(&full, Some(password));
        assert!(!ok && stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(users_on(&cluster, leader).await.len(), 1);

    let host = cluster.url(other);
    assert!(shoal_user(&["--host", &host, "passwd", "ana"], Some("a new password")).0);
    assert!(shoal_user(&["--host", &host, "grant", "ana", "--role", "writer"], None).0);
    assert!(
        shoal_user(
            &["--host", &host, "revoke", "ana", "--permission", "backup"],
            None
        )
        .0
    );
    let users = wait_for_users(&cluster, follower, |u| {
        u.first()
            .is_some_and(|u| u["roles"] == json!(["reader", "writer"]))
    })
    .await;
    assert_eq!(users[0]["permissions"], json!([]));
    let (ok, stdout, _) = shoal_user(&["--host", &host, "list"], None);
    assert!(
        ok && stdout.contains("ana") && stdout.contains("reader,writer"),
        "{stdout}"
    );

    // Statements cannot read the hashes.
    let (_, body) = cluster
        .post(leader, "/db/query", json!(["SELECT * FROM _shoal_users"]))
        .await;
    assert!(
        body["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("internal")),
        "{body}"
    );

    assert!(shoal_user(&["--host", &host, "remove", "ana"], None).0);
    wait_for_users(&cluster, leader, |u| u.is_empty()).await;
    // No password reached a log line.
    for node in &cluster.nodes {
        let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
        assert!(
            !log.contains("correct horse") && !log.contains("a new password"),
            "a password in node {}'s log",
            node.id
        );
    }
}
