//! Users, roles and authentication, driven the way an operator and clients would: `shoal
//! user` against one node, checked on the others; every HTTP endpoint and PostgreSQL login
//! and statement with and without the credentials and permissions it needs.

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
    let deadline = Instant::now() + Duration::from_secs(20);
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
    // Both changes reach every node (a follower may apply the second a moment later).
    for node in [follower, other] {
        wait_for_users(&cluster, node, |u| {
            u.first().is_some_and(|u| {
                u["roles"] == json!(["reader", "writer"]) && u["permissions"] == json!([])
            })
        })
        .await;
    }
    let (ok, stdout, _) = shoal_user(&["--host", &host, "list"], None);
    assert!(
        ok && stdout.contains("ana") && stdout.contains("reader,writer"),
        "{stdout}"
    );

    // Statements cannot reach the hashes: they are not in the user's database at all.
    let (_, body) = cluster
        .post(leader, "/db/query", json!(["SELECT * FROM _shoal_users"]))
        .await;
    assert!(
        body["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no such table")),
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

/// One request as a client sends it.
struct Call {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    /// A user who has the permission it needs (`None`: not run with permission, it would
    /// change the cluster's membership or leadership).
    allowed: Option<&'static str>,
    /// A user who lacks it.
    lacking: &'static str,
}

async fn send(
    cluster: &Cluster,
    node: usize,
    call: &Call,
    credentials: Option<(&str, &str)>,
) -> (u16, String) {
    let url = format!("{}{}", cluster.url(node), call.path);
    // A client of its own: the cluster's helpers send the admin's credentials by default.
    let client = reqwest::Client::new();
    let mut request = match call.method {
        "GET" => client.get(&url),
        "DELETE" => client.delete(&url),
        _ => client.post(&url),
    };
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", call.method, call.path));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

const ADMIN_PASSWORD: &str = "admin password 1";
const PASSWORD: &str = "user password 1";

/// u20: with --auth, every endpoint × {no credentials, wrong password, a user lacking the
/// permission, a user holding it}: 401, 401, 403, success; a refused write changes nothing;
/// health probes stay open; repeated failures lock the user out and are audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u20_every_endpoint_needs_credentials_and_its_permission() {
    let work = tempfile::tempdir().expect("dir");
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        extra_args: vec![
            "--auth".into(),
            format!("--backup-target={}", work.path().join("backups").display()),
            // The five guesses below fire the alert on their own, however long the matrix
            // before them took on a busy machine.
            "--alert-auth-failures-per-minute=4".into(),
        ],
        env: vec![("SHOAL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into())],
        basic_auth: Some(("admin".into(), ADMIN_PASSWORD.into())),
        ..ClusterSpec::default()
    })
    .await;
    // The first admin exists once the new cluster's first entries are applied.
    let admin = Some(("admin", ADMIN_PASSWORD));
    let deadline = Instant::now() + Duration::from_secs(15);
    let create = |name: &'static str, roles: Vec<&'static str>, permissions: Vec<&'static str>| {
        Call {
            method: "POST",
            path: "/users",
            body: Some(
                json!({"name": name, "password": PASSWORD, "roles": roles, "permissions": permissions}),
            ),
            allowed: Some("admin"),
            lacking: "",
        }
    };
    loop {
        let (status, body) = send(
            &cluster,
            0,
            &create("reader1", vec!["reader"], vec![]),
            admin,
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "admin never usable: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for call in [
        create("writer1", vec!["writer"], vec![]),
        create("dml", vec![], vec!["read", "write"]),
        create("ops", vec!["operator"], vec![]),
        create("nobody", vec![], vec![]),
        create("spare0", vec!["admin"], vec![]),
        create("spare1", vec!["admin"], vec![]),
        create("spare2", vec!["admin"], vec![]),
        create("spare3", vec!["admin"], vec![]),
        create("spare4", vec!["admin"], vec![]),
        create("victim", vec!["reader"], vec![]),
    ] {
        let (status, body) = send(&cluster, 0, &call, admin).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = send(
        &cluster,
        0,
        &Call {
            method: "POST",
            path: "/db/execute",
            body: Some(json!(["CREATE TABLE t(x)"])),
            allowed: None,
            lacking: "",
        },
        admin,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let calls = [
        Call {
            method: "GET",
            path: "/status",
            body: None,
            allowed: Some("reader1"),
            lacking: "nobody",
        },
        Call {
            method: "GET",
            path: "/nodes",
            body: None,
            allowed: Some("reader1"),
            lacking: "nobody",
        },
        Call {
            method: "GET",
            path: "/metrics",
            body: None,
            allowed: Some("ops"),
            lacking: "dml",
        },
        Call {
            method: "GET",
            path: "/alerts",
            body: None,
            allowed: Some("reader1"),
            lacking: "nobody",
        },
        Call {
            method: "GET",
            path: "/leader",
            body: None,
            allowed: Some("reader1"),
            lacking: "nobody",
        },
        Call {
            method: "GET",
            path: "/dashboard",
            body: None,
            allowed: Some("reader1"),
            lacking: "nobody",
        },
        Call {
            method: "POST",
            path: "/db/query",
            body: Some(json!(["SELECT count(*) FROM t"])),
            allowed: Some("reader1"),
            lacking: "ops",
        },
        Call {
            method: "POST",
            path: "/db/execute",
            body: Some(json!(["INSERT INTO t VALUES(1)"])),
            allowed: Some("dml"),
            lacking: "reader1",
        },
        Call {
            method: "POST",
            path: "/db/execute",
            body: Some(json!(["CREATE TABLE u(x)"])),
            allowed: Some("writer1"),
            lacking: "dml",
        },
        Call {
            method: "POST",
            path: "/db/request",
            body: Some(json!(["SELECT 1"])),
            allowed: Some("reader1"),
            lacking: "nobody",
        },
        Call {
            method: "POST",
            path: "/db/request",
            body: Some(json!(["INSERT INTO t VALUES(2)"])),
            allowed: Some("dml"),
            lacking: "reader1",
        },
        Call {
            method: "GET",
            path: "/users",
            body: None,
            allowed: Some("admin"),
            lacking: "writer1",
        },
        Call {
            method: "GET",
            path: "/backup",
            body: None,
            allowed: Some("ops"),
            lacking: "writer1",
        },
        Call {
            method: "POST",
            path: "/backup",
            body: None,
            allowed: Some("ops"),
            lacking: "writer1",
        },
        Call {
            method: "POST",
            path: "/backup/prune",
            body: None,
            allowed: Some("ops"),
            lacking: "reader1",
        },
        Call {
            method: "GET",
            path: "/db/backup",
            body: None,
            allowed: Some("ops"),
            lacking: "writer1",
        },
        Call {
            method: "POST",
            path: "/db/load",
            body: Some(json!("CREATE TABLE loaded(x)")),
            allowed: Some("ops"),
            lacking: "writer1",
        },
        Call {
            method: "POST",
            path: "/leader",
            body: None,
            allowed: None,
            lacking: "ops",
        },
        Call {
            method: "POST",
            path: "/remove",
            body: Some(json!({"id": 9})),
            allowed: None,
            lacking: "ops",
        },
        Call {
            method: "POST",
            path: "/join",
            body: Some(json!({"id": 9, "addr": "127.0.0.1:1"})),
            allowed: None,
            lacking: "reader1",
        },
    ];
    let rows = || async {
        cluster
            .query(0, "SELECT count(*) FROM t", "level=none")
            .await
            .expect("count")
    };
    for (n, call) in calls.iter().enumerate() {
        let before = rows().await;
        let spare = format!("spare{}", n % 5);
        let (status, body) = send(&cluster, 0, call, None).await;
        assert_eq!(
            status, 401,
            "{} {} without credentials: {body}",
            call.method, call.path
        );
        let (status, body) = send(&cluster, 0, call, Some((&spare, "not the password"))).await;
        assert_eq!(
            status, 401,
            "{} {} with a wrong password: {body}",
            call.method, call.path
        );
        let (status, body) = send(&cluster, 0, call, Some((call.lacking, PASSWORD))).await;
        assert_eq!(
            status, 403,
            "{} {} as {}: {body}",
            call.method, call.path, call.lacking
        );
        assert!(body.contains("lacks the"), "{body}");
        assert_eq!(
            rows().await,
            before,
            "a refused {} {} changed data",
            call.method,
            call.path
        );
        if let Some(user) = call.allowed {
            let password = if user == "admin" {
                ADMIN_PASSWORD
            } else {
                PASSWORD
            };
            let (status, body) = send(&cluster, 0, call, Some((user, password))).await;
            assert!(
                status != 401 && status != 403 && status < 500,
                "{} {} as {user}: {status} {body}",
                call.method,
                call.path
            );
        }
    }
    // Loopholes stay shut: empty statements before DDL; a token minting tokens; the users'
    // hashes leaving in /db/backup; an uploaded image bringing its own users.
    let sneaky = Call {
        method: "POST",
        path: "/db/execute",
        body: Some(json!([" ; ;/* x */; DROP TABLE t"])),
        allowed: None,
        lacking: "",
    };
    assert_eq!(
        send(&cluster, 0, &sneaky, Some(("dml", PASSWORD))).await.0,
        403
    );
    let image = reqwest::Client::new()
        .get(format!("{}/db/backup", cluster.url(0)))
        .basic_auth("ops", Some(PASSWORD))
        .send()
        .await
        .expect("backup")
        .bytes()
        .await
        .expect("image");
    let exported = work.path().join("exported.db");
    std::fs::write(&exported, &image).expect("write");
    {
        let connection = rusqlite::Connection::open(&exported).expect("open");
        let tables: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE '%shoal%'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(
            tables, 0,
            "the exported image carries no users and no Shoal state"
        );
        // A file planting a users table in the layout earlier versions used gains nothing.
        connection
            .execute_batch(
                "CREATE TABLE _shoal_users(name TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID; \
                 INSERT INTO _shoal_users VALUES('eve', '{\"name\":\"eve\",\"password_hash\":\"x\",\"roles\":[\"admin\"],\"permissions\":[]}')",
            )
            .expect("plant a user");
    }
    let loaded = reqwest::Client::new()
        .post(format!("{}/db/load", cluster.url(0)))
        .basic_auth("ops", Some(PASSWORD))
        .body(std::fs::read(&exported).expect("read"))
        .send()
        .await
        .expect("load");
    assert_eq!(loaded.status().as_u16(), 200);
    let users = users_on(&cluster, 0).await;
    assert!(users.iter().all(|u| u["name"] != json!("eve")), "{users:?}");
    assert!(
        users.iter().any(|u| u["name"] == json!("reader1")),
        "{users:?}"
    );
    // Health probes need nothing.
    for path in ["/livez", "/readyz"] {
        let call = Call {
            method: "GET",
            path,
            body: None,
            allowed: None,
            lacking: "",
        };
        assert_eq!(send(&cluster, 0, &call, None).await.0, 200, "{path}");
    }
    // Guessing: five wrong passwords lock the user out, even with the right one after.
    let status_call = Call {
        method: "GET",
        path: "/status",
        body: None,
        allowed: None,
        lacking: "",
    };
    for _ in 0..5 {
        assert_eq!(
            send(&cluster, 0, &status_call, Some(("victim", "guess")))
                .await
                .0,
            401
        );
    }
    assert_eq!(
        send(&cluster, 0, &status_call, Some(("victim", PASSWORD)))
            .await
            .0,
        429
    );
    // Other users are not affected.
    assert_eq!(
        send(&cluster, 0, &status_call, Some(("reader1", PASSWORD)))
            .await
            .0,
        200
    );
    // More failed logins within a minute than allowed: the auth_failures alert fires.
    cluster
        .wait_for_alert(0, "auth_failures", Duration::from_secs(10))
        .await;
    let log = std::fs::read_to_string(cluster.nodes[0].log_path()).unwrap_or_default();
    for event in [
        "login_failed",
        "permission_denied",
        "login_locked_out",
        "user_created",
    ] {
        assert!(log.contains(event), "no {event} in the audit log");
    }
    for secret in [PASSWORD, ADMIN_PASSWORD, "not the password"] {
        assert!(!log.contains(secret), "a password in the log");
    }
}

/// u30: with --auth, nodes join with the credentials in SHOAL_JOIN_USER / SHOAL_JOIN_PASSWORD
/// (a user with `join`), and users work on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u30_nodes_join_an_authenticated_cluster_with_join_credentials() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        extra_args: vec!["--auth".into()],
        env: vec![
            ("SHOAL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("SHOAL_JOIN_USER".into(), "admin".into()),
            ("SHOAL_JOIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ],
        basic_auth: Some(("admin".into(), ADMIN_PASSWORD.into())),
        ..ClusterSpec::default()
    })
    .await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster
        .execute(
            leader,
            json!(["CREATE TABLE t(x)", "INSERT INTO t VALUES(1)"]),
        )
        .await;
    for node in 0..3 {
        cluster
            .wait_for_values(
                node,
                "SELECT count(*) FROM t",
                &json!([[1]]),
                Duration::from_secs(10),
            )
            .await;
    }
    // The shell and `shoal cluster` authenticate with --user and SHOAL_PASSWORD.
    let url = cluster.url((leader + 1) % 3);
    let run = |args: &[&str], password: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(args)
            .env_remove("SHOAL_PASSWORD")
            .env_remove("SHOAL_USER");
        if let Some(password) = password {
            command.env("SHOAL_PASSWORD", password);
        }
        let output = command.output().expect("run shoal");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, text) = run(
        &[
            "shell",
            "--host",
            &url,
            "--user",
            "admin",
            "-c",
            "SELECT count(*) FROM t",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert!(ok && text.contains('1'), "{text}");
    let (ok, text) = run(
        &["shell", "--host", &url, "-c", "SELECT count(*) FROM t"],
        None,
    );
    assert!(!ok && text.contains("401"), "{text}");
    let (ok, text) = run(
        &[
            "cluster", "--host", &url, "--user", "admin", "status", "--json",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert!(ok && text.contains("leader"), "{text}");
    // The last admin can be neither removed nor stripped of admin.
    for (method, path, body) in [
        ("DELETE", "/users/admin", None),
        (
            "POST",
            "/users/admin/revoke",
            Some(json!({"roles": ["admin"]})),
        ),
    ] {
        let mut request = match method {
            "DELETE" => reqwest::Client::new().delete(format!("{url}{path}")),
            _ => reqwest::Client::new().post(format!("{url}{path}")),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .expect("users");
        assert_eq!(response.status().as_u16(), 409, "{method} {path}");
    }
    // Without credentials, a follower refuses too.
    let response = reqwest::Client::new()
        .get(format!("{}/status", cluster.url((leader + 1) % 3)))
        .send()
        .await
        .expect("status");
    assert_eq!(response.status().as_u16(), 401);
}

/// u40: bearer tokens: issued to valid credentials, accepted by every node until they expire,
/// refused when forged or once the password changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u40_bearer_tokens_expire_and_die_with_the_password() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        extra_args: vec!["--auth".into()],
        env: vec![
            ("SHOAL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("SHOAL_JOIN_USER".into(), "admin".into()),
            ("SHOAL_JOIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ],
        basic_auth: Some(("admin".into(), ADMIN_PASSWORD.into())),
        ..ClusterSpec::default()
    })
    .await;
    let client = reqwest::Client::new();
    let token_for = |ttl: &'static str| {
        let client = client.clone();
        let url = format!("{}/auth/token?ttl={ttl}", cluster.url(0));
        async move {
            let answer: Value = client
                .post(url)
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("json");
            answer["token"].as_str().expect("a token").to_string()
        }
    };
    let status_with = |node: usize, token: String| {
        let client = client.clone();
        let url = format!("{}/status", cluster.url(node));
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("status")
                .status()
                .as_u16()
        }
    };
    let token = token_for("10m").await;
    for node in 0..3 {
        assert_eq!(
            status_with(node, token.clone()).await,
            200,
            "node {}",
            node + 1
        );
    }
    // A token cannot mint another (expiry would mean nothing).
    let renewed = client
        .post(format!("{}/auth/token", cluster.url(1)))
        .bearer_auth(&token)
        .send()
        .await
        .expect("token");
    assert_eq!(renewed.status().as_u16(), 403);
    // One hex digit of the signature changed (to another digit: a forged token must differ).
    let last = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    assert_ne!(forged, token);
    assert_eq!(status_with(1, forged).await, 401);
    // A short token works, then expires.
    let short = token_for("5s").await;
    assert_eq!(status_with(2, short.clone()).await, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_with(2, short.clone()).await != 401 {
        assert!(Instant::now() < deadline, "the 5 s token never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A new password revokes every earlier token, on every node.
    let changed = client
        .put(format!("{}/users/admin/password", cluster.url(0)))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"password": "a changed password"}))
        .send()
        .await
        .expect("passwd");
    assert_eq!(changed.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_with(2, token.clone()).await != 401 {
        assert!(Instant::now() < deadline, "the old token still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tokio-postgres session as `user` with `password` on node 0, or the connection error.
async fn pg_login(
    cluster: &Cluster,
    user: &str,
    password: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    pg_login_to(cluster, "shoal", user, password).await
}

async fn pg_login_to(
    cluster: &Cluster,
    database: &str,
    user: &str,
    password: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(cluster.nodes[0].pg_port)
        .user(user)
        .dbname(database)
        .connect_timeout(Duration::from_secs(5));
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Sends a startup message for `user` and then a password message with `body` over a raw
/// socket; returns what the server answered (as lossy text).
async fn raw_pg_login(port: u16, user: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut startup = 196608u32.to_be_bytes().to_vec();
    startup.extend(format!("user\0{user}\0database\0shoal\0\0").as_bytes());
    let mut message = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend(startup);
    message.push(b'p');
    message.extend(((body.len() + 4) as u32).to_be_bytes());
    message.extend(body);
    socket.write_all(&message).await.expect("send");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).to_string()
}

/// The SQLSTATE and message of a failed PostgreSQL call.
fn pg_error<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>) -> (String, String) {
    let error = result.expect_err("the call should fail");
    match error.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => (String::new(), error.to_string()),
    }
}

/// u50: with `--auth`, PostgreSQL clients log in with SCRAM-SHA-256 (tokio-postgres and
/// libpq's psql), and each statement needs the permission its HTTP twin needs: missing,
/// wrong and unknown logins get the same FATAL 28P01, a lacking permission 42501, refused
/// statements change nothing, a grant holds from the next statement of an open session, and
/// repeated failures lock the user out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u50_postgres_clients_log_in_with_scram_and_need_permissions() {
    let audit_dir = tempfile::tempdir().expect("dir");
    let audit_log = audit_dir.path().join("audit.log");
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        extra_args: vec![
            "--auth".into(),
            "--audit-log".into(),
            audit_log.display().to_string(),
        ],
        env: vec![("SHOAL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into())],
        basic_auth: Some(("admin".into(), ADMIN_PASSWORD.into())),
        ..ClusterSpec::default()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let admin = loop {
        match pg_login(&cluster, "admin", Some(ADMIN_PASSWORD)).await {
            Ok(client) => break client,
            Err(error) => assert!(Instant::now() < deadline, "admin never usable: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (name, roles, permissions) in [
        ("reader1", vec!["reader"], vec![]),
        ("dml", vec![], vec!["read", "write"]),
        ("nobody", vec![], vec![]),
        ("victim", vec!["reader"], vec![]),
    ] {
        let (status, body) = cluster
            .post(
                0,
                "/users",
                json!({"name": name, "password": PASSWORD, "roles": roles, "permissions": permissions}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    admin
        .batch_execute("CREATE TABLE t(x BIGINT); INSERT INTO t VALUES (1)")
        .await
        .expect("admin holds ddl and write");

    // Logins that fail all look alike and end the connection.
    let refused = "password authentication failed for user";
    for (user, password) in [("admin", "wrong password"), ("ghost", PASSWORD)] {
        let (code, message) = pg_error(pg_login(&cluster, user, Some(password)).await);
        assert_eq!(code, "28P01", "{user}: {message}");
        assert!(message.contains(refused), "{user}: {message}");
    }
    // Before logging in, nobody learns which databases exist: a wrong password fails alike
    // for a database that does not exist, and a logged-in user is told at the first statement.
    let (code, message) =
        pg_error(pg_login_to(&cluster, "nosuchdb", "admin", Some("wrong password")).await);
    assert_eq!(code, "28P01", "{message}");
    let lost = pg_login_to(&cluster, "nosuchdb", "admin", Some(ADMIN_PASSWORD))
        .await
        .expect("login");
    let error = lost
        .simple_query("SELECT 1")
        .await
        .expect_err("no such database");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME),
        "{error}"
    );
    // Without a password the server's SCRAM request cannot be answered.
    assert!(pg_login(&cluster, "admin", None).await.is_err());

    // Each statement needs its permission; refusals change nothing.
    let nobody = pg_login(&cluster, "nobody", Some(PASSWORD))
        .await
        .expect("login");
    let reader = pg_login(&cluster, "reader1", Some(PASSWORD))
        .await
        .expect("login");
    let dml = pg_login(&cluster, "dml", Some(PASSWORD))
        .await
        .expect("login");
    for (client, sql, lacking) in [
        (&nobody, "SELECT x FROM t", "read"),
        (&nobody, "SELECT relname FROM pg_catalog.pg_class", "read"),
        (&reader, "INSERT INTO t VALUES (2)", "write"),
        (&reader, "SELECT 1; DELETE FROM t", "write"),
        (&dml, "CREATE TABLE u(y)", "ddl"),
        (&dml, "DROP TABLE t", "ddl"),
    ] {
        let (code, message) = pg_error(client.simple_query(sql).await);
        assert_eq!(code, "42501", "{sql}: {message}");
        assert!(
            message.contains(&format!("lacks the {lacking} permission")),
            "{sql}: {message}"
        );
    }
    // The extended protocol (prepared statements with parameters) is checked the same way.
    let (code, message) = pg_error(reader.execute("INSERT INTO t VALUES ($1)", &[&5i64]).await);
    assert_eq!(code, "42501", "{message}");
    let rows = reader
        .query("SELECT count(*) FROM t WHERE x > $1", &[&0i64])
        .await
        .expect("read");
    assert_eq!(
        rows[0].get::<_, i64>(0),
        1,
        "refused statements changed nothing"
    );
    dml.execute("INSERT INTO t VALUES ($1)", &[&2i64])
        .await
        .expect("dml writes");
    // A grant holds from the next statement of an already open session.
    let (status, body) = cluster
        .post(0, "/users/reader1/grant", json!({"permissions": ["write"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(error) = reader.simple_query("INSERT INTO t VALUES (3)").await {
        assert!(Instant::now() < deadline, "grant never held: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // libpq (psql) logs in with SCRAM too, and is refused without the password.
    let psql = |password: &str| {
        std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.nodes[0].pg_port.to_string(),
            ])
            .args(["-U", "reader1", "-d", "shoal", "-X", "-A", "-t", "-w"])
            .args(["-c", "SELECT count(*) FROM t"])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("run psql")
    };
    let output = psql(PASSWORD);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
    let output = psql("not the password");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(refused),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A malformed SASL message is refused as a protocol violation, does not take the node's
    // endpoint down and counts as no guess.
    for _ in 0..6 {
        let reply = raw_pg_login(cluster.nodes[0].pg_port, "reader1", b"password\0").await;
        assert!(
            reply.contains("08P01") && reply.contains("malformed"),
            "{reply}"
        );
    }
    let again = pg_login(&cluster, "reader1", Some(PASSWORD)).await;
    assert!(
        again.is_ok(),
        "garbage locked the user out: {:?}",
        again.err()
    );

    // Guessing locks the user out, even for the right password, for a while.
    for _ in 0..5 {
        let _ = pg_login(&cluster, "victim", Some("guess guess")).await;
    }
    let (code, message) = pg_error(pg_login(&cluster, "victim", Some(PASSWORD)).await);
    assert_eq!(code, "28000", "{message}");
    assert!(message.contains("locked out"), "{message}");
    let log = std::fs::read_to_string(cluster.nodes[0].log_path()).expect("node log");
    assert!(
        log.lines()
            .any(|line| line.contains("login_locked_out") && line.contains("postgres")),
        "the lockout was audited"
    );
    assert!(!log.contains(PASSWORD), "a password reached the log");

    // The audit file holds one JSON object per event: who, what, from where, when.
    let audit = std::fs::read_to_string(&audit_log).expect("audit log");
    assert!(!audit.contains(PASSWORD) && !audit.contains(ADMIN_PASSWORD));
    let events: Vec<Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let has = |event: &str, check: &dyn Fn(&Value) -> bool| {
        events.iter().any(|e| {
            e["fields"]["event"] == event && check(&e["fields"]) && e["timestamp"].is_string()
        })
    };
    assert!(
        has("login", &|f| f["user"] == "reader1"
            && f["route"] == "postgres"),
        "{audit}"
    );
    assert!(
        has("login_failed", &|f| f["user"] == "ghost"
            && f["from"] == "127.0.0.1"),
        "{audit}"
    );
    assert!(
        has("login_locked_out", &|f| f["user"] == "victim"),
        "{audit}"
    );
    assert!(
        has("permission_denied", &|f| f["permission"] == "ddl"),
        "{audit}"
    );
    assert!(
        has("allowed", &|f| f["route"] == "postgres"),
        "DDL is audited: {audit}"
    );
    assert!(
        has("user_changed", &|f| f["user"].as_str().is_some()),
        "{audit}"
    );
}

/// u60: an rqlite `-auth` file becomes Shoal users (`shoal user import-rqlite`); a file with
/// one bad entry, or naming a user that exists, imports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u60_rqlite_auth_files_import_whole_or_not_at_all() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        ..ClusterSpec::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let host = cluster.url(0);
    let bad = write(
        "bad.json",
        r#"[{"username": "bob", "password": "secret one", "perms": ["all"]},
            {"username": "eve", "password": "secret two", "perms": ["fly"]}]"#,
    );
    let (ok, _, stderr) = shoal_user(&["--host", &host, "import-rqlite", &bad], None);
    assert!(
        !ok && stderr.contains("entry 2") && stderr.contains("fly"),
        "{stderr}"
    );
    assert!(
        users_on(&cluster, 0).await.is_empty(),
        "a bad file imported users"
    );

    let good = write(
        "auth.json",
        r#"[{"username": "bob", "password": "secret one", "perms": ["all"]},
            {"username": "mary", "password": "secret two", "perms": ["query", "backup", "join"]},
            {"username": "*", "perms": ["status", "ready"]}]"#,
    );
    let (ok, stdout, stderr) =
        shoal_user(&["--host", &host, "--json", "import-rqlite", &good], None);
    assert!(ok, "{stderr}");
    let output: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(output["imported"], json!(["bob", "mary"]));
    assert!(
        stderr.contains("skipped"),
        "the * entry is reported: {stderr}"
    );
    let users = users_on(&cluster, 0).await;
    let mary = users.iter().find(|u| u["name"] == "mary").expect("mary");
    assert_eq!(mary["permissions"], json!(["read", "backup", "join"]));
    let bob = users.iter().find(|u| u["name"] == "bob").expect("bob");
    assert_eq!(bob["roles"], json!(["admin"]));
    // Importing again would duplicate users: refused, nothing changes.
    let (ok, _, stderr) = shoal_user(&["--host", &host, "import-rqlite", &good], None);
    assert!(!ok && stderr.contains("exist already"), "{stderr}");
    assert_eq!(users_on(&cluster, 0).await.len(), 2);
}

/// Runs `shoal user …` against `host` as the admin; `password` is a new user's. Returns
/// (success, stdout and stderr).
fn shoal_user_as_admin(host: &str, args: &[&str], password: Option<&str>) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["user", "--host", host, "--user", "admin"])
        .args(args)
        .env("SHOAL_PASSWORD", ADMIN_PASSWORD)
        .env("SHOAL_NEW_PASSWORD", password.unwrap_or_default())
        .output()
        .expect("run shoal user");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// u70: per-table grants: a user without cluster-wide read or write reads and writes exactly
/// the tables granted to it — over HTTP and PostgreSQL, through joins, views and
/// INSERT … SELECT — and nothing else; grants are managed with `shoal user` and hold from the
/// next statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u70_table_grants_open_exactly_the_tables_granted() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        extra_args: vec!["--auth".into()],
        env: vec![("SHOAL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into())],
        basic_auth: Some(("admin".into(), ADMIN_PASSWORD.into())),
        ..ClusterSpec::default()
    })
    .await;
    let host = cluster.url(0);
    let admin_cli =
        |args: &[&str], password: Option<&str>| shoal_user_as_admin(&host, args, password);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = cluster
            .post(
                0,
                "/db/execute",
                json!([
                    "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT)",
                    "CREATE TABLE secrets(id INTEGER PRIMARY KEY, code TEXT)",
                    "CREATE VIEW leaked AS SELECT code FROM secrets",
                    "INSERT INTO orders(item) VALUES ('tea')",
                    "INSERT INTO secrets(code) VALUES ('s3cr3t')"
                ]),
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the admin never got in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, text) = admin_cli(&["add", "clerk", "--table", "Orders=read"], Some(PASSWORD));
    assert!(ok, "{text}");
    let sql = |path: &'static str, statements: Value| Call {
        method: "POST",
        path,
        body: Some(statements),
        allowed: None,
        lacking: "",
    };
    let cluster_ref = &cluster;
    let as_clerk =
        |call: Call| async move { send(cluster_ref, 0, &call, Some(("clerk", PASSWORD))).await };

    let (status, body) = as_clerk(sql("/db/query", json!(["SELECT item FROM orders"]))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tea"), "{body}");
    // A view needs read on itself and on what it reads (named in that order here).
    for (refused, table) in [
        ("SELECT code FROM secrets", "secrets"),
        ("SELECT * FROM leaked", "leaked"),
        ("SELECT item, code FROM orders, secrets", "secrets"),
        (
            "SELECT item FROM orders WHERE id IN (SELECT id FROM secrets)",
            "secrets",
        ),
    ] {
        let (status, body) = as_clerk(sql("/db/query", json!([refused]))).await;
        assert_eq!(status, 403, "{refused}: {body}");
        assert!(
            body.contains(&format!("read permission on table \\\"{table}\\\"")),
            "{refused}: {body}"
        );
    }
    let (status, body) = as_clerk(sql(
        "/db/execute",
        json!(["INSERT INTO orders(item) VALUES ('jam')"]),
    ))
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("write permission on table"), "{body}");

    let (ok, text) = admin_cli(&["grant", "clerk", "--table", "orders=write"], None);
    assert!(ok, "{text}");
    let (ok, text) = admin_cli(&["list"], None);
    assert!(ok && text.contains("tables: orders=read,write"), "{text}");
    let (status, body) = as_clerk(sql(
        "/db/execute",
        json!(["INSERT INTO orders(item) VALUES ('jam')"]),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    for (refused, permission) in [
        ("INSERT INTO secrets(code) VALUES ('mine')", "write"),
        ("INSERT INTO orders(item) SELECT code FROM secrets", "read"),
        ("UPDATE secrets SET code = 'x'", "write"),
    ] {
        let (status, body) = as_clerk(sql("/db/execute", json!([refused]))).await;
        assert_eq!(status, 403, "{refused}: {body}");
        assert!(
            body.contains(&format!("{permission} permission on table \\\"secrets\\\"")),
            "{refused}: {body}"
        );
    }
    // A change that touches no table still changes the database: write is needed.
    let (status, body) = as_clerk(sql("/db/execute", json!(["PRAGMA user_version = 7"]))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("lacks the write permission"), "{body}");
    // A user holding write cluster-wide but read only on orders cannot read other tables
    // through a write: RETURNING, INSERT … SELECT and a WHERE clause read too.
    let (ok, text) = admin_cli(
        &[
            "add",
            "scribe",
            "--permission",
            "write",
            "--table",
            "orders=read",
        ],
        Some(PASSWORD),
    );
    assert!(ok, "{text}");
    let as_scribe = |statements: Value| async move {
        send(
            cluster_ref,
            0,
            &sql("/db/execute", statements),
            Some(("scribe", PASSWORD)),
        )
        .await
    };
    for refused in [
        "UPDATE secrets SET code = code RETURNING code",
        "INSERT INTO orders(item) SELECT code FROM secrets",
        "DELETE FROM secrets WHERE code LIKE 's%'",
    ] {
        let (status, body) = as_scribe(json!([refused])).await;
        assert_eq!(status, 403, "{refused}: {body}");
        assert!(
            body.contains("read permission on table \\\"secrets\\\""),
            "{refused}: {body}"
        );
    }
    let (status, body) = as_scribe(json!(["INSERT INTO secrets(code) VALUES ('blind')"])).await;
    assert_eq!(status, 200, "a blind write needs no read: {body}");
    // Schema changes have no table form: ddl is needed.
    let (status, body) = as_clerk(sql("/db/execute", json!(["CREATE TABLE mine(x)"]))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ddl"), "{body}");
    // Refused statements changed nothing.
    assert_eq!(
        cluster
            .query(0, "SELECT count(*) FROM orders", "level=strong")
            .await
            .expect("count"),
        json!([[2]])
    );
    assert_eq!(
        cluster
            .query(0, "SELECT code FROM secrets ORDER BY id", "level=strong")
            .await
            .expect("secrets"),
        json!([["s3cr3t"], ["blind"]])
    );

    // PostgreSQL: the same rules, simple and extended protocol.
    let clerk = pg_login(&cluster, "clerk", Some(PASSWORD))
        .await
        .expect("clerk logs in");
    let rows = clerk
        .query("SELECT item FROM orders WHERE id = $1", &[&1i32])
        .await
        .expect("granted table");
    assert_eq!(rows.len(), 1);
    let error = clerk
        .simple_query("SELECT code FROM secrets")
        .await
        .expect_err("not granted");
    let db_error = error.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "42501", "{db_error:?}");
    assert!(db_error.message().contains("secrets"), "{db_error:?}");
    clerk
        .execute("INSERT INTO orders(item) VALUES ($1)", &[&"pg"])
        .await
        .expect("granted write");

    // Revoked: refused from the next statement, in the open session too.
    let (ok, text) = admin_cli(&["revoke", "clerk", "--table", "orders=write"], None);
    assert!(ok, "{text}");
    let error = clerk
        .execute("INSERT INTO orders(item) VALUES ($1)", &[&"late"])
        .await
        .expect_err("revoked");
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("42501"),
        "{error:?}"
    );
    // Bad grants are refused, naming what is wrong.
    for (args, expected) in [
        (
            vec!["grant", "clerk", "--table", "orders=ddl"],
            "read or write only",
        ),
        (vec!["grant", "clerk", "--table", "orders"], "TABLE=read"),
        (
            vec!["grant", "clerk", "--table", "orders=everything"],
            "unknown permission",
        ),
    ] {
        let (ok, text) = admin_cli(&args, None);
        assert!(!ok && text.contains(expected), "{args:?}: {text}");
    }
}

/// u80: grants in one database. A user granted `read` in `orders` reads it — over HTTP with
/// `db=orders` and over PostgreSQL connected to it — and nothing else: not another database,
/// not the default one, no writes until `write` is granted there. `ddl` in a database changes
/// its schema but does not manage databases (cluster-wide). The grants follow a rename and do
/// not carry over to a dropped database's name reused later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u80_database_grants_open_exactly_the_database_granted() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        extra_args: vec!["--auth".into()],
        env: vec![("SHOAL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into())],
        basic_auth: Some(("admin".into(), ADMIN_PASSWORD.into())),
        ..ClusterSpec::default()
    })
    .await;
    let host = cluster.url(0);
    let admin_cli =
        |args: &[&str], password: Option<&str>| shoal_user_as_admin(&host, args, password);
    // As the admin: the default database and two others, each with a table and a row.
    let admin_run = |path: String, statements: Value| {
        let cluster = &cluster;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (status, body) = cluster.post(0, &path, statements.clone()).await;
                let failed = body["results"]
                    .as_array()
                    .is_none_or(|r| r.iter().any(|r| r.get("error").is_some()));
                if status == 200 && !failed {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{path} {statements}: {status} {body}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    admin_run(
        "/db/execute".into(),
        json!(["CREATE TABLE t(v TEXT)", "INSERT INTO t VALUES ('default')"]),
    )
    .await;
    for name in ["orders", "hr"] {
        admin_run(
            "/db/execute".into(),
            json!([format!("CREATE DATABASE {name} WITH (replicas = 1)")]),
        )
        .await;
        admin_run(
            format!("/db/execute?db={name}"),
            json!([
                "CREATE TABLE t(v TEXT)",
                format!("INSERT INTO t VALUES ('{name}')")
            ]),
        )
        .await;
    }
    let (ok, text) = admin_cli(
        &["add", "clerk", "--database", "orders=read"],
        Some(PASSWORD),
    );
    assert!(ok, "{text}");
    let (ok, text) = admin_cli(
        &["add", "ghost", "--database", "nosuch=read"],
        Some(PASSWORD),
    );
    assert!(
        !ok && text.contains("nosuch"),
        "an unknown database is named: {text}"
    );
    let (ok, text) = admin_cli(&["grant", "clerk", "--database", "orders=admin"], None);
    assert!(
        !ok && text.contains("cannot be granted in one database"),
        "{text}"
    );

    let as_clerk = |path: String, statements: Value| {
        let url = format!("{}{path}", cluster.url(0));
        async move {
            let response = reqwest::Client::new()
                .post(&url)
                .basic_auth("clerk", Some(PASSWORD))
                .json(&statements)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };
    let (status, body) = as_clerk("/db/query?db=orders".into(), json!(["SELECT v FROM t"])).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("orders"), "{body}");
    for refused in ["/db/query?db=hr", "/db/query"] {
        let (status, body) = as_clerk(refused.into(), json!(["SELECT v FROM t"])).await;
        assert_eq!(status, 403, "{refused}: {body}");
        assert!(body.contains("read permission"), "{refused}: {body}");
    }
    let insert = json!(["INSERT INTO t VALUES ('clerk')"]);
    let (status, body) = as_clerk("/db/execute?db=orders".into(), insert.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("write permission"), "{body}");

    // Over PostgreSQL: the same, by the database the session connected to.
    let orders = pg_login_to(&cluster, "orders", "clerk", Some(PASSWORD))
        .await
        .expect("clerk logs in to orders");
    let rows = orders
        .query("SELECT v FROM t", &[])
        .await
        .expect("read orders");
    assert_eq!(rows[0].get::<_, String>(0), "orders");
    let (code, message) = pg_error(orders.execute("INSERT INTO t VALUES ('pg')", &[]).await);
    assert_eq!(code, "42501", "{message}");
    let hr = pg_login_to(&cluster, "hr", "clerk", Some(PASSWORD))
        .await
        .expect("clerk logs in to hr");
    let (code, message) = pg_error(hr.query("SELECT v FROM t", &[]).await);
    assert_eq!(code, "42501", "{message}");

    // write and ddl in orders: writes and schema changes there, but no database management.
    let (ok, text) = admin_cli(&["grant", "clerk", "--database", "orders=write,ddl"], None);
    assert!(ok, "{text}");
    let (ok, text) = admin_cli(&["list"], None);
    assert!(
        ok && text.contains("databases: orders=read,write,ddl"),
        "{text}"
    );
    let (status, body) = as_clerk("/db/execute?db=orders".into(), insert.clone()).await;
    assert_eq!(status, 200, "{body}");
    orders
        .execute("INSERT INTO t VALUES ('pg')", &[])
        .await
        .expect("a grant holds from the next statement");
    let (status, body) = as_clerk(
        "/db/execute?db=orders".into(),
        json!(["CREATE TABLE more(x)"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_clerk(
        "/db/execute?db=orders".into(),
        json!(["CREATE DATABASE mine"]),
    )
    .await;
    assert_eq!(status, 403, "managing databases is cluster-wide: {body}");
    let (code, message) = pg_error(orders.execute("CREATE DATABASE mine", &[]).await);
    assert_eq!(code, "42501", "{message}");

    // Renamed, the database keeps its grants; dropped and its name reused, the new one has
    // none.
    admin_run(
        "/db/execute".into(),
        json!(["ALTER DATABASE orders RENAME TO sales"]),
    )
    .await;
    let (status, body) = as_clerk(
        "/db/query?db=sales".into(),
        json!(["SELECT count(*) FROM t"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (ok, text) = admin_cli(&["list"], None);
    assert!(ok && text.contains("databases: sales="), "{text}");
    admin_run("/db/execute".into(), json!(["DROP DATABASE sales"])).await;
    admin_run(
        "/db/execute".into(),
        json!(["CREATE DATABASE sales WITH (replicas = 1)"]),
    )
    .await;
    admin_run(
        "/db/execute?db=sales".into(),
        json!(["CREATE TABLE t(v TEXT)"]),
    )
    .await;
    let (status, body) = as_clerk("/db/query?db=sales".into(), json!(["SELECT v FROM t"])).await;
    assert_eq!(status, 403, "a new database of an old name: {body}");
}

/// u90: the users move from the default database into the cluster catalog: the first admin a
/// new cluster creates (in the default database, before the catalog exists) is copied there,
/// `GET /users` says where they are kept, and from then on changes go to the catalog — a user
/// added through any node logs in everywhere, a removed one stays removed (the copy never
/// brings it back), and they survive a restart of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u90_users_move_into_the_catalog_and_stay_changed_there() {
    let mut cluster = Cluster::start(ClusterSpec {
        voters: 3,
        extra_args: vec!["--auth".into()],
        env: vec![
            ("SHOAL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("SHOAL_JOIN_USER".into(), "admin".into()),
            ("SHOAL_JOIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ],
        basic_auth: Some(("admin".into(), ADMIN_PASSWORD.into())),
        ..ClusterSpec::default()
    })
    .await;
    let kept_in = |cluster: &Cluster, node: usize| {
        let url = format!("{}/users", cluster.url(node));
        async move {
            let response = reqwest::Client::new()
                .get(&url)
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .send()
                .await
                .ok()?;
            let body: Value = response.json().await.ok()?;
            body["kept_in"].as_str().map(str::to_string)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in 0..3 {
        while kept_in(&cluster, node).await.as_deref() != Some("catalog") {
            assert!(
                Instant::now() < deadline,
                "node {}: the users never moved into the catalog",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // (The nodes keep their addresses across restarts.)
    let urls: Vec<String> = (0..3).map(|node| cluster.url(node)).collect();
    let add = |node: usize, name: &'static str| {
        let url = format!("{}/users", urls[node]);
        async move {
            reqwest::Client::new()
                .post(&url)
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .json(&json!({"name": name, "password": PASSWORD, "roles": ["reader"]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(add(1, "reader2").await, 200);
    assert_eq!(add(2, "gone").await, 200);
    let logs_in = |node: usize, name: &'static str| {
        let url = format!("{}/db/query", urls[node]);
        async move {
            reqwest::Client::new()
                .post(&url)
                .basic_auth(name, Some(PASSWORD))
                .json(&json!(["SELECT 1"]))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    for node in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while logs_in(node, "reader2").await != 200 {
            assert!(
                Instant::now() < deadline,
                "reader2 cannot log in on node {}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let removed = reqwest::Client::new()
        .delete(format!("{}/users/gone", urls[0]))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("DELETE /users/gone")
        .status();
    assert_eq!(removed, 200);
    // Several rounds of the catalog leader's copy later, it is still gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in 0..3 {
        assert_eq!(logs_in(node, "gone").await, 401, "node {}", node + 1);
        let names: Vec<String> = users_on(&cluster, node)
            .await
            .iter()
            .filter_map(|u| u["name"].as_str().map(str::to_string))
            .collect();
        assert!(!names.contains(&"gone".to_string()), "{names:?}");
    }
    for node in 0..3 {
        cluster.restart(node).await;
    }
    for node in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while logs_in(node, "reader2").await != 200 {
            assert!(
                Instant::now() < deadline,
                "reader2 cannot log in on node {} after the restart",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(kept_in(&cluster, node).await.as_deref(), Some("catalog"));
    }
}
