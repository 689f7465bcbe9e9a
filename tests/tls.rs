//! TLS end to end on real processes: a three-node cluster with certificates from `shoal cert
//! dev` serves HTTPS and PostgreSQL over TLS, refuses plaintext and (with
//! `--tls-min-version 1.3`) TLS 1.2, refuses Raft connections without a certificate of the
//! cluster CA, keeps a node with a foreign certificate out, and picks up a renewed
//! certificate without a restart. Allow-lists and connection limits refuse what they should.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Cluster, ClusterSpec, free_port, https_client, make_certificates};

const SETTLE: Duration = Duration::from_secs(20);

/// A client presenting `cert`/`key` from `dir` and trusting `ca_dir`'s CA.
fn client_with_identity(ca_dir: &Path, dir: &Path, name: &str) -> reqwest::Client {
    let mut pem = std::fs::read(dir.join(format!("{name}.crt"))).expect("certificate");
    pem.extend(std::fs::read(dir.join(format!("{name}.key"))).expect("key"));
    https_client(Some(ca_dir))
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client")
}

/// The DER of the certificate the server at `url` presents on a new connection.
async fn served_certificate(ca_dir: &Path, url: &str) -> Vec<u8> {
    let client = https_client(Some(ca_dir))
        .tls_info(true)
        .build()
        .expect("client");
    let response = client.get(url).send().await.expect("HTTPS request");
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

fn certificate_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path)
        .expect("PEM certificate")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_tls_everywhere_with_node_certificates_from_the_cluster_ca() {
    let certs = tempfile::tempdir().expect("dir");
    make_certificates(certs.path(), 3);
    let foreign = tempfile::tempdir().expect("dir");
    make_certificates(foreign.path(), 1);
    let cluster = Cluster::start(ClusterSpec {
        voters: 3,
        tls: Some(certs.path().to_path_buf()),
        extra_args: vec!["--tls-min-version".into(), "1.3".into()],
        ..ClusterSpec::default()
    })
    .await;
    let leader = cluster.leader(SETTLE).await;
    cluster
        .execute(
            leader,
            json!(["CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"]),
        )
        .await;
    for node in 0..3 {
        cluster
            .wait_for_values(node, "SELECT count(*) FROM t", &json!([[1]]), SETTLE)
            .await;
    }
    let node = &cluster.nodes[0];

    // Plaintext HTTP to the HTTPS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/status", node.http_port))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext was answered: {plain:?}");
    // TLS 1.2 is refused with --tls-min-version 1.3; TLS 1.3 is served.
    let url = format!("{}/readyz", node.url());
    let tls12 = https_client(Some(certs.path()))
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .expect("client")
        .get(&url)
        .send()
        .await;
    assert!(tls12.is_err(), "TLS 1.2 was accepted");
    let tls13 = https_client(Some(certs.path()))
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .build()
        .expect("client")
        .get(&url)
        .send()
        .await
        .expect("TLS 1.3 is served");
    assert!(tls13.status().is_success());

    // PostgreSQL: plaintext refused with a FATAL that says why; libpq with verify-full works.
    let plain_pg = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=shoal dbname=shoal",
            node.pg_port
        ),
        tokio_postgres::NoTls,
    )
    .await;
    let error = plain_pg.err().expect("plaintext PostgreSQL refused");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("requires TLS")),
        "{error:?}"
    );
    let psql = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=shoal dbname=shoal sslmode=verify-full sslrootcert={}",
            node.pg_port,
            certs.path().join("ca.crt").display()
        ))
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM t"])
        .output()
        .expect("run psql");
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "1");

    // The Raft port takes only clients with a certificate of the cluster CA.
    let raft_url = format!("https://127.0.0.1:{}/internal/v1/1/state", node.raft_port);
    let anonymous = https_client(Some(certs.path()))
        .build()
        .expect("client")
        .post(&raft_url)
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "Raft port answered without a client certificate"
    );
    let outsider = client_with_identity(certs.path(), foreign.path(), "node1")
        .post(&raft_url)
        .send()
        .await;
    assert!(
        outsider.is_err(),
        "Raft port answered a foreign certificate"
    );
    let member = client_with_identity(certs.path(), certs.path(), "node2")
        .post(&raft_url)
        .send()
        .await
        .expect("a cluster certificate is admitted");
    assert_ne!(member.status().as_u16(), 0);
    let log = std::fs::read_to_string(node.log_path()).expect("log");
    assert!(
        log.contains("connection_refused") && log.contains("Raft"),
        "refusals are audited"
    );

    // A node of another CA cannot join (a node whose certificate does not match its own CA
    // does not even start).
    let term_before =
        cluster.get_json(leader, "/status").await.expect("status")["store"]["raft"]["term"].clone();
    let outsider_dir = cluster.dir.path().join("outsider");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("serve")
        .args(["--node-id", "9", "--join-timeout-s", "5"])
        .arg("--data-dir")
        .arg(&outsider_dir)
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--raft-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(["--pg-addr", "off", "--join", &cluster.url(leader)])
        .arg("--tls-cert")
        .arg(foreign.path().join("node1.crt"))
        .arg("--tls-key")
        .arg(foreign.path().join("node1.key"))
        .arg("--tls-ca")
        .arg(foreign.path().join("ca.crt"))
        .output()
        .await
        .expect("run the outsider");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the outsider joined: {stderr}");
    assert!(
        stderr.contains("could not join") && stderr.contains("certificate"),
        "{stderr}"
    );
    let nodes = cluster.get_json(leader, "/nodes").await.expect("nodes");
    assert_eq!(
        nodes.as_object().map(|n| n.len()),
        Some(3),
        "membership changed: {nodes}"
    );
    let term_after =
        cluster.get_json(leader, "/status").await.expect("status")["store"]["raft"]["term"].clone();
    assert_eq!(
        term_before, term_after,
        "the outsider disturbed the cluster"
    );

    // A renewed certificate is served by new connections without a restart.
    let renewed = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "cert",
            "node",
            "--name",
            "renewed",
            "--host",
            "127.0.0.1",
            "--dir",
        ])
        .arg(certs.path())
        .output()
        .expect("shoal cert node");
    assert!(renewed.status.success());
    let new_der = certificate_der(&certs.path().join("renewed.crt"));
    let old_der = served_certificate(certs.path(), &url).await;
    assert_ne!(old_der, new_der);
    let replace = |dir: &Path, name: &str| {
        for (from, to) in [
            (format!("{name}.key"), "node1.key"),
            (format!("{name}.crt"), "node1.crt"),
        ] {
            let staged = certs.path().join(format!("{to}.new"));
            std::fs::copy(dir.join(from), &staged).expect("stage");
            std::fs::rename(&staged, certs.path().join(to)).expect("replace");
        }
    };
    // A "renewal" the cluster CA did not sign is refused and the working one kept.
    let original = tempfile::tempdir().expect("dir");
    for file in ["node1.crt", "node1.key"] {
        std::fs::copy(certs.path().join(file), original.path().join(file)).expect("keep");
    }
    replace(foreign.path(), "node1");
    // The node notices within a check interval (5 s), says why it refuses the files, and
    // serves on with the old ones.
    let deadline = Instant::now() + SETTLE;
    while !std::fs::read_to_string(node.log_path())
        .expect("log")
        .contains("keeping the previous ones")
    {
        assert!(
            Instant::now() < deadline,
            "the bad renewal was not reported"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(served_certificate(certs.path(), &url).await, old_der);
    replace(original.path(), "node1");
    replace(certs.path(), "renewed");
    let deadline = Instant::now() + SETTLE;
    while served_certificate(certs.path(), &url).await != new_der {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The node still talks to the others with it.
    cluster
        .execute(leader, json!(["INSERT INTO t VALUES (2)"]))
        .await;
    for node in 0..3 {
        cluster
            .wait_for_values(node, "SELECT count(*) FROM t", &json!([[2]]), SETTLE)
            .await;
    }

    // A revoked node certificate is shut out of the Raft port once the others reload the
    // revocation list; the cluster goes on with the other two.
    let victim = (leader + 1) % 3;
    let victim_name = format!("node{}", cluster.nodes[victim].id);
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["cert", "revoke", "--name", &victim_name, "--dir"])
        .arg(certs.path())
        .output()
        .expect("shoal cert revoke");
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let survivor = (leader + 2) % 3;
    let raft_state_url = |node: usize| {
        format!(
            "https://127.0.0.1:{}/internal/v1/1/state",
            cluster.nodes[node].raft_port
        )
    };
    let leader_raft = raft_state_url(leader);
    // Both other nodes re-read the list within a check interval (5 s) of the change; each then
    // refuses the revoked certificate on its Raft port, drops connections made under the old
    // list (its own pooled ones to the victim included) and checks reconnecting peers
    // against the new one.
    for node in [leader, survivor] {
        let deadline = Instant::now() + SETTLE;
        while client_with_identity(certs.path(), certs.path(), &victim_name)
            .post(raft_state_url(node))
            .send()
            .await
            .is_ok()
        {
            assert!(
                Instant::now() < deadline,
                "node {}: the revoked certificate is still admitted",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let survivor_name = format!("node{}", cluster.nodes[survivor].id);
    client_with_identity(certs.path(), certs.path(), &survivor_name)
        .post(&leader_raft)
        .send()
        .await
        .expect("an unrevoked certificate is still admitted");
    cluster
        .execute(leader, json!(["INSERT INTO t VALUES (3)"]))
        .await;
    cluster
        .wait_for_values(survivor, "SELECT count(*) FROM t", &json!([[3]]), SETTLE)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut_off = cluster
        .query(victim, "SELECT count(*) FROM t", "level=none")
        .await
        .expect("the revoked node still answers locally");
    assert_eq!(cut_off, json!([[2]]), "the revoked node got the write");
}

/// s20: an allow-list keeps other addresses out of each listener; a connection limit closes
/// connections over it; connections that say nothing are closed, freeing their places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s20_allow_lists_and_connection_limits() {
    let cluster = Cluster::start(ClusterSpec {
        voters: 1,
        extra_args: vec![
            "--pg-allow".into(),
            "10.0.0.0/8".into(),
            "--http-max-connections".into(),
            "4".into(),
            "--connection-idle-timeout".into(),
            "5s".into(),
        ],
        ..ClusterSpec::default()
    })
    .await;
    let node = &cluster.nodes[0];
    let pg = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=shoal dbname=shoal connect_timeout=5",
            node.pg_port
        ),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(pg.is_err(), "an address off the allow-list connected");
    let log = std::fs::read_to_string(node.log_path()).expect("log");
    assert!(log.contains("not on the allow-list"), "refusal audited");

    // Four idle connections fill the HTTP listener; the fifth is closed unanswered.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", node.http_port))
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let over = reqwest::Client::new()
        .get(format!("{}/status", node.url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(over.is_err(), "a connection over the limit was served");
    // Saying nothing does not keep a place: the server closes a connection that sends no
    // request headers within the idle timeout, and the listener serves again.
    let deadline = Instant::now() + SETTLE;
    loop {
        let fresh = reqwest::Client::new()
            .get(format!("{}/readyz", node.url()))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if fresh.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the listener never recovered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for mut socket in held {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection was left open: {read:?}"
        );
    }
}

/// `serve` flags for TLS between nodes only, every node with node1's certificate from `certs`.
fn tls_between_nodes_only(certs: &Path) -> Vec<String> {
    let file = |name: &str| certs.join(name).display().to_string();
    vec![
        "--tls-cert".into(),
        file("node1.crt"),
        "--tls-key".into(),
        file("node1.key"),
        "--tls-ca".into(),
        file("ca.crt"),
        "--tls-nodes-only".into(),
    ]
}

/// s30: `--tls-nodes-only` (rqlite's -node-cert without -http-cert): nodes talk TLS with
/// certificates of the cluster CA, clients use plain HTTP and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s30_tls_between_nodes_only_leaves_clients_in_the_clear() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_certificates(certs.path(), 1);
    let spec = ClusterSpec {
        voters: 3,
        extra_args: tls_between_nodes_only(certs.path()),
        ..Default::default()
    };
    let cluster = Cluster::start(spec).await;
    // Plain HTTP writes on a follower reach every node through the TLS-only Raft ports.
    cluster
        .execute(
            1,
            json!(["CREATE TABLE plain(x)", "INSERT INTO plain VALUES (1)"]),
        )
        .await;
    for node in 0..3 {
        cluster
            .wait_for_values(node, "SELECT count(*) FROM plain", &json!([[1]]), SETTLE)
            .await;
    }
    // psql connects without TLS.
    let output = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.nodes[2].pg_port.to_string(),
        ])
        .args([
            "-U",
            "shoal",
            "-d",
            "shoal",
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT x FROM plain",
        ])
        .env("PGSSLMODE", "disable")
        .output()
        .expect("psql runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "1",
        "{output:?}"
    );
    // The Raft port still admits only TLS with a certificate of the cluster CA.
    let raft = format!("127.0.0.1:{}", cluster.nodes[0].raft_port);
    let plain = reqwest::Client::new()
        .post(format!("http://{raft}/internal/v1/1/state"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP reached the Raft port: {plain:?}"
    );
    let anonymous = https_client(Some(certs.path()))
        .build()
        .expect("client")
        .post(format!("https://{raft}/internal/v1/1/state"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate reached the Raft port"
    );
}

/// s40: `--tls-node-names` admits to the Raft port only node certificates with one of the
/// given common names, even when another certificate of the same CA is presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s40_the_raft_port_admits_only_the_named_node_certificates() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_certificates(certs.path(), 2);
    let mut extra_args = tls_between_nodes_only(certs.path());
    extra_args.extend(["--tls-node-names".into(), "node1".into()]);
    let spec = ClusterSpec {
        voters: 2,
        extra_args,
        ..Default::default()
    };
    let cluster = Cluster::start(spec).await;
    cluster.execute(1, json!(["CREATE TABLE named(x)"])).await;
    let raft = format!(
        "https://127.0.0.1:{}/internal/v1/1/state",
        cluster.nodes[0].raft_port
    );
    let named = client_with_identity(certs.path(), certs.path(), "node1")
        .post(&raft)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        named.is_ok(),
        "the named certificate was refused: {named:?}"
    );
    let other = client_with_identity(certs.path(), certs.path(), "node2")
        .post(&raft)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        other.is_err(),
        "a certificate of the CA with another name reached the Raft port"
    );
    let log = std::fs::read_to_string(cluster.nodes[0].log_path()).unwrap_or_default();
    assert!(
        log.contains("is not one of --tls-node-names"),
        "the refusal is audited"
    );
}
