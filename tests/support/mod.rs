//! Test support: real `shoal` processes on free loopback ports, HTTP helpers, and a
//! controllable network between them (see [`network`]). Every process is killed when the cluster is dropped,
//! also when a test fails.

#![allow(dead_code)]

pub mod network;
pub mod s3;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Runs a client script from tests/clients with `python3` and requires it to succeed and to
/// print `success_line` (stdout and stderr shown on failure).
pub async fn run_client_script(script: &str, args: &[String], success_line: &str) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    // Node scripts live beside their node_modules (tests/clients/node, `npm ci` there).
    let interpreter = if script.ends_with(".js") {
        "node"
    } else {
        "python3"
    };
    let output = tokio::process::Command::new(interpreter)
        .arg(&path)
        .args(args)
        .output()
        .await
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{script} failed (scripts/test.sh installs its client library):\n{text}"
    );
    assert!(text.contains(success_line), "{text}");
}

/// Ports for one node, handed out by [`free_port`].
pub struct ReservedPorts(Vec<u16>);

impl ReservedPorts {
    pub fn new(count: usize) -> ReservedPorts {
        ReservedPorts((0..count).map(|_| free_port()).collect())
    }

    pub fn port(&self, position: usize) -> u16 {
        self.0[position]
    }
}

/// A free loopback port outside the kernel's ephemeral range (so no outgoing connection can
/// take it before a node binds it, or while a stopped node waits to restart on it), never
/// handed out twice in this process.
/// Whether an `/db/execute` answer is a 200 whose every statement succeeded.
pub fn every_statement_succeeded(status: u16, body: &Value) -> bool {
    status == 200
        && body["results"]
            .as_array()
            .is_some_and(|results| results.iter().all(|r| r.get("error").is_none()))
}

/// Runs `statements` on database `db` through `node` until none fails (a new database's
/// groups may still be electing, its slots moving); its answer. Panics after 30 s.
pub async fn execute_ok(cluster: &Cluster, node: usize, db: &str, statements: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = cluster
            .post(node, &format!("/db/execute?db={db}"), statements.clone())
            .await;
        if every_statement_succeeded(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{statements} on node {}: {status} {body}",
            node + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn free_port() -> u16 {
    shoal::net::ports::unused_loopback_port().expect("free port")
}

pub struct TestNode {
    pub id: u64,
    pub http_port: u16,
    pub raft_port: u16,
    /// Where PostgreSQL clients connect.
    pub pg_port: u16,
    /// Raft address other nodes are told to use (a proxy in front of `raft_port`, if any).
    pub raft_advertise: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `https` when the node runs TLS.
    pub scheme: &'static str,
    child: Option<Child>,
}

impl TestNode {
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.http_port)
    }

    /// Where the node's stderr (its log) goes.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir
            .with_extension(format!("log.{}", std::process::id()))
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        // SAFETY: only async-signal-safe calls between fork and exec. A node whose file size
        // limit is lowered (a full disk, see `limit_file_size`) then sees EFBIG on writes
        // instead of being killed by SIGXFSZ.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let child = command
            .arg("serve")
            .args(&self.args)
            .env("SHOAL_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn shoal");
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("node is running")
    }

    /// Simulates a full disk: no file of the node may grow beyond `bytes` (writes past it fail
    /// with EFBIG); `None` lifts the limit.
    pub fn limit_file_size(&self, bytes: Option<u64>) {
        let limit = libc::rlimit {
            rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit on a child we own, with a valid rlimit and no old-value pointer.
        let result =
            unsafe { libc::prlimit(self.pid(), libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
        assert_eq!(result, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to a child process we own.
        unsafe { libc::kill(self.pid(), signal) };
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub http: reqwest::Client,
    network: Option<network::Network>,
    spec: ClusterSpec,
}

/// Options for starting a cluster.
#[derive(Default, Clone)]
pub struct ClusterSpec {
    pub voters: usize,
    pub replicas: usize,
    pub extra_args: Vec<String>,
    /// Route every node's Raft traffic through a [`network::Network`] the test controls.
    pub controlled_network: bool,
    /// Extra environment for every node (e.g. a deliberate fault).
    pub env: Vec<(String, String)>,
    /// Credentials the helpers send (for clusters running `--auth`).
    pub basic_auth: Option<(String, String)>,
    /// A directory made by `shoal cert dev`: node N runs TLS with nodeN.crt and the helpers
    /// trust its ca.crt.
    pub tls: Option<PathBuf>,
    /// Run the production election timing (heartbeat 40 ms, elections after 120–180 ms of
    /// silence past the 180 ms lease). Otherwise nodes use calmer timing (100 ms, 500–750 ms): on a shared 2-core
    /// machine a node descheduled for 300 ms would start elections nobody asked for, and most
    /// tests are about something other than leader changes. The fault suite keeps production
    /// timing.
    pub fast_elections: bool,
    /// `--zone` of each node, by position (nodes beyond the list have none).
    pub zones: Vec<String>,
}

/// Raft timing for clusters that are not testing election speed (see
/// [`ClusterSpec::fast_elections`]).
const CALM_ELECTION_ARGS: [&str; 4] = ["--heartbeat-ms", "100", "--election-timeout-ms", "500"];

/// Makes a CA and `nodes` node certificates in `dir` with `shoal cert dev`.
pub fn make_certificates(dir: &std::path::Path, nodes: u32) {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["cert", "dev", "--nodes", &nodes.to_string(), "--dir"])
        .arg(dir)
        .output()
        .expect("run shoal cert");
    assert!(
        output.status.success(),
        "shoal cert: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An HTTP client trusting the CA in `tls_dir` (when given).
pub fn https_client(tls_dir: Option<&std::path::Path>) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if let Some(dir) = tls_dir {
        let pem = std::fs::read(dir.join("ca.crt")).expect("ca.crt");
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"));
    }
    builder
}

/// An HTTP client that sends `basic_auth` with every request, when given.
fn client_with(
    basic_auth: Option<&(String, String)>,
    tls_dir: Option<&std::path::Path>,
) -> reqwest::Client {
    use base64::Engine;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some((user, password)) = basic_auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("Basic {token}")) {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }
    https_client(tls_dir)
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

impl Cluster {
    pub async fn start(spec: ClusterSpec) -> Cluster {
        let mut cluster = Cluster {
            dir: tempfile::tempdir().expect("temp dir"),
            nodes: Vec::new(),
            http: client_with(spec.basic_auth.as_ref(), spec.tls.as_deref()),
            network: spec.controlled_network.then(network::Network::new),
            spec: spec.clone(),
        };
        for position in 0..spec.voters + spec.replicas {
            cluster.add_node(position < spec.voters).await;
        }
        cluster
    }

    /// Starts one more node (joining through the running nodes unless it is the first) and
    /// waits until it is a healthy member; returns its position.
    pub async fn add_node(&mut self, voter: bool) -> usize {
        let position = self.nodes.len();
        let id = self.nodes.last().map_or(1, |n| n.id + 1);
        let reserved = ReservedPorts::new(3);
        let (http_port, raft_port, pg_port) =
            (reserved.port(0), reserved.port(1), reserved.port(2));
        let raft_advertise = match &mut self.network {
            Some(network) => format!("127.0.0.1:{}", network.add_node(id, raft_port).await),
            None => format!("127.0.0.1:{raft_port}"),
        };
        let data_dir = self.dir.path().join(format!("node{id}"));
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            id.to_string(),
            "--http-addr".into(),
            format!("127.0.0.1:{http_port}"),
            "--raft-addr".into(),
            format!("127.0.0.1:{raft_port}"),
            "--raft-advertise-addr".into(),
            raft_advertise.clone(),
            "--pg-addr".into(),
            format!("127.0.0.1:{pg_port}"),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        let running: Vec<String> = (0..position)
            .filter(|&p| self.is_running(p))
            .map(|p| self.url(p))
            .collect();
        if !running.is_empty() {
            args.push("--join".into());
            args.push(running.join(","));
        }
        if !voter {
            args.push("--non-voter".into());
        }
        if let Some(dir) = &self.spec.tls {
            for (flag, file) in [
                ("--tls-cert", format!("node{id}.crt")),
                ("--tls-key", format!("node{id}.key")),
                ("--tls-ca", "ca.crt".to_string()),
                ("--tls-crl", "ca.crl".to_string()),
            ] {
                args.push(flag.into());
                args.push(dir.join(file).display().to_string());
            }
        }
        if !self.spec.fast_elections {
            args.extend(CALM_ELECTION_ARGS.iter().map(|arg| arg.to_string()));
        }
        args.extend(self.spec.extra_args.iter().cloned());
        if let Some(zone) = self.spec.zones.get(position) {
            args.extend(["--zone".to_string(), zone.clone()]);
        }
        let mut node = TestNode {
            id,
            http_port,
            raft_port,
            pg_port,
            raft_advertise,
            data_dir,
            args,
            env: self.spec.env.clone(),
            scheme: if self.spec.tls.is_some() {
                "https"
            } else {
                "http"
            },
            child: None,
        };
        drop(reserved);
        node.spawn();
        self.nodes.push(node);
        self.wait_member(position, voter, Duration::from_secs(30))
            .await;
        position
    }

    /// The controlled network (the cluster must have been started with one).
    pub fn network(&self) -> &network::Network {
        self.network
            .as_ref()
            .expect("cluster started without controlled_network")
    }

    /// Ids of every node started so far.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    pub fn url(&self, node: usize) -> String {
        self.nodes[node].url()
    }

    /// Waits until `node` answers and is a healthy member with the expected vote (a joining
    /// voter is a learner until it has caught up and been promoted).
    async fn wait_member(&self, node: usize, voter: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let id = self.nodes[node].id;
        let observer = (0..self.nodes.len())
            .find(|&p| self.is_running(p))
            .expect("a running node");
        while Instant::now() < deadline {
            if let Ok(status) = self.get_json(observer, "/status").await {
                let listed = status["members"].as_array().is_some_and(|m| {
                    m.iter().any(|m| {
                        m["id"] == json!(id)
                            && m["health"] == json!(1)
                            && m["voter"] == json!(voter)
                    })
                });
                if listed && self.get_json(node, "/readyz").await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "node {id} did not join within {timeout:?}; logs in {}",
            self.dir.path().display()
        );
    }

    pub async fn get_json(&self, node: usize, path: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(format!("{}{path}", self.url(node)))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        serde_json::from_str(&text).or_else(|_| Ok(Value::String(text)))
    }

    /// POSTs `body` to `path` on `node`; returns the status and the JSON body.
    pub async fn post(&self, node: usize, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url(node)))
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} to node {}: {e}", node + 1));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Executes statements, asserting the request and every statement succeeded.
    pub async fn execute(&self, node: usize, statements: Value) -> Value {
        let (status, body) = self.post(node, "/db/execute", statements).await;
        assert_eq!(status, 200, "execute on node {}: {body}", node + 1);
        for result in body["results"].as_array().expect("results") {
            assert!(
                result.get("error").is_none(),
                "statement failed on node {}: {result}",
                node + 1
            );
        }
        body
    }

    /// Executes `statements` on `node` with query options `options` (`db=…`), retried while
    /// the answer is 503 (a new database's group may still be electing, a catalog being
    /// founded); panics on any other failure or after `timeout`.
    pub async fn execute_until_ok(
        &self,
        node: usize,
        options: &str,
        statements: Value,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self
                .post(node, &format!("/db/execute?{options}"), statements.clone())
                .await;
            if every_statement_succeeded(status, &body) {
                return;
            }
            assert!(
                status == 503 && Instant::now() < deadline,
                "{statements} on node {} with {options}: {status} {body}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Retries `statements` on `node` until a write is acknowledged; returns the time since
    /// `since` (e.g. since a leader was killed).
    pub async fn write_until_accepted(
        &self,
        node: usize,
        statements: Value,
        since: Instant,
        timeout: Duration,
    ) -> Duration {
        loop {
            let (status, body) = self.post(node, "/db/execute", statements.clone()).await;
            if status == 200 && body["results"][0].get("error").is_none() {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < timeout,
                "no write accepted on node {} within {timeout:?}: {status} {body}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `node` keeps fewer than `entries_below` log entries (snapshots and purges
    /// run in the background).
    pub async fn wait_for_log_compaction(
        &self,
        node: usize,
        entries_below: u64,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.get_json(node, "/status").await.expect("status");
            let kept = status["storage"]["log_entries"]
                .as_u64()
                .expect("log_entries");
            if kept < entries_below {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} still keeps {kept} log entries",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs one query with the given query-string options; returns the rows' values.
    pub async fn query(&self, node: usize, sql: &str, options: &str) -> Result<Value, String> {
        let (status, body) = self
            .post(node, &format!("/db/query?{options}"), json!([sql]))
            .await;
        if status != 200 {
            return Err(format!("{status}: {body}"));
        }
        let result = &body["results"][0];
        if let Some(error) = result.get("error") {
            return Err(error.to_string());
        }
        Ok(result.get("values").cloned().unwrap_or(json!([])))
    }

    /// Position of the current leader, as the first answering node sees it.
    pub async fn leader(&self, timeout: Duration) -> usize {
        match self.find_leader(timeout).await {
            Some(leader) => leader,
            None => panic!("no leader within {timeout:?}"),
        }
    }

    /// Like [`Cluster::leader`], but `None` when no running node names a running leader in
    /// time. A node that does not answer within a second is passed over.
    pub async fn find_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for position in 0..self.nodes.len() {
                if !self.is_running(position) {
                    continue;
                }
                let answer = self
                    .http
                    .get(format!("{}/leader", self.url(position)))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                let Ok(answer) = answer else { continue };
                let Ok(leader) = answer.json::<Value>().await else {
                    continue;
                };
                if let Some(id) = leader["leader"]["id"].as_u64() {
                    let found = self.nodes.iter().position(|n| n.id == id);
                    if let Some(found) = found.filter(|&f| self.is_running(f)) {
                        return Some(found);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Waits until every running node names the same running leader and `accept`s it (after
    /// a transfer or step-down, some nodes name the old leader for a moment); returns it.
    pub async fn wait_for_leader(
        &self,
        accept: impl Fn(usize) -> bool,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut named = std::collections::BTreeSet::new();
            for position in (0..self.nodes.len()).filter(|&p| self.is_running(p)) {
                let answer = self.get_json(position, "/leader").await;
                let id = answer
                    .ok()
                    .and_then(|leader| leader["leader"]["id"].as_u64());
                named.insert(id.and_then(|id| self.nodes.iter().position(|n| n.id == id)));
            }
            if let [Some(leader)] = named.iter().copied().collect::<Vec<_>>()[..]
                && self.is_running(leader)
                && accept(leader)
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "the running nodes never agreed on an acceptable leader (they name {named:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `node` serves `sql` at level=none with the expected values.
    pub async fn wait_for_values(
        &self,
        node: usize,
        sql: &str,
        expected: &Value,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        let mut last = Err(String::new());
        while Instant::now() < deadline {
            last = self.query(node, sql, "level=none").await;
            if last.as_ref() == Ok(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "node {} never returned {expected} for {sql:?}; last answer {last:?}",
            node + 1
        );
    }

    /// Waits until `node` lists `alert` as firing.
    pub async fn wait_for_alert(&self, node: usize, alert: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = self.get_json(node, "/alerts").await;
            let firing = alerts.as_ref().is_ok_and(|alerts| {
                alerts["firing"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|event| event["alert"] == json!(alert)))
            });
            if firing {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never fired {alert}: {alerts:?}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `node`'s `/metrics` until the sample `name` (with its labels, if any, as in
    /// `shoal_raft_role{role="leader"}`) satisfies `accept`; returns its value.
    pub async fn wait_for_metric(
        &self,
        node: usize,
        name: &str,
        accept: impl Fn(f64) -> bool,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let scrape = self.get_json(node, "/metrics").await;
            let value = scrape
                .as_ref()
                .ok()
                .and_then(|scrape| metric_value(scrape.as_str().unwrap_or_default(), name));
            if let Some(value) = value.filter(|value| accept(*value)) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: {name} never reached the expected value (last {value:?})",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self, node: usize) {
        self.kill(node);
        self.nodes[node].spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get_json(node, "/livez").await.is_err() {
            assert!(
                Instant::now() < deadline,
                "node {} did not restart",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The whole content of `table`, as node `node` holds it locally.
    pub async fn table_dump(&self, node: usize, table: &str) -> Value {
        self.try_table_dump(node, table).await.expect("dump")
    }

    /// `table_dump`, or the node's error (a table it does not hold yet).
    pub async fn try_table_dump(&self, node: usize, table: &str) -> Result<Value, String> {
        self.query(
            node,
            &format!("SELECT * FROM {table} ORDER BY rowid"),
            "level=none",
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The end of each node's log goes to the test's output, so a flake in CI can be
            // read from the CI log alone; data and whole logs are kept for a post-mortem.
            for node in &self.nodes {
                eprintln!("{}", log_tail(node.id, &node.log_path()));
            }
            if let Ok(spare) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, spare).keep();
                eprintln!("test failed: node data and logs kept in {}", kept.display());
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // SAFETY: resume a possibly stopped child so the kill takes effect at once.
                unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Lines of a node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// The last lines of node `id`'s log at `path`, headed by its name.
fn log_tail(id: u64, path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!(
        "--- node {id} log {} (last {} lines) ---\n{}",
        path.display(),
        tail.len(),
        tail.join("\n")
    )
}

/// The value of the sample `name` (labels included, if any) in a Prometheus text scrape.
pub fn metric_value(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}
