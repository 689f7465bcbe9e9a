//! `shoal demo`: a local cluster of child processes on free loopback ports, with the shell
//! opened on it. `.kill N` and `.start N` stop and start a node to watch failover. Everything
//! (processes, temporary directory) is removed on exit — also when the demo is killed: the
//! nodes die with their parent (PR_SET_PDEATHSIG) and a watcher removes the directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::shell::{Extension, ShellArgs, render::Mode};

/// Longest wait for the cluster to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a new leader after `.kill` of the leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each node's log shown when the cluster does not form.
const LOG_TAIL_LINES: usize = 25;
/// Voters and replicas one demo may start.
const NODES_MAX: usize = 9;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Voting members.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Read replicas (non-voting members).
    #[arg(long, default_value_t = 0)]
    pub replicas: usize,
    /// Keep the cluster's data in DIR after exit instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// One node of the demo cluster.
struct DemoNode {
    id: u64,
    http_port: u16,
    pg_port: u16,
    args: Vec<String>,
    log: PathBuf,
    voter: bool,
    child: Option<Child>,
}

impl DemoNode {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn start(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(&self.args)
            .env("SHOAL_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it makes the node die with the demo, even when
        // the demo itself is killed with SIGKILL.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(command.spawn()?);
        Ok(())
    }

    fn kill(&mut self) -> bool {
        match self.child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }
}

struct Demo {
    nodes: Vec<DemoNode>,
    http: reqwest::blocking::Client,
}

impl Demo {
    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|node| self.leader_named_by(node))
    }

    /// The leader `node` names (`None`: none known, or no answer).
    fn leader_named_by(&self, node: &DemoNode) -> Option<u64> {
        let reply: Value = self
            .http
            .get(format!("{}/leader", node.url()))
            .send()
            .ok()?
            .json()
            .ok()?;
        reply["leader"]["id"].as_u64()
    }

    /// The leader every running node names, once they all name the same one: a failover is
    /// over for the user when any node they ask gives the same answer.
    fn agreed_leader(&self) -> Option<u64> {
        let mut named = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|node| self.leader_named_by(node));
        let first = named.next()??;
        named.all(|id| id == Some(first)).then_some(first)
    }

    /// Waits until every node is a healthy member and every voter votes; on failure the
    /// error carries the end of each node's log (the logs go with the demo's directory).
    fn wait_formed(&mut self) -> Result<(), String> {
        self.wait_formed_or_stopped()
            .map_err(|problem| format!("{problem}\n{}", self.log_tails()))
    }

    fn wait_formed_or_stopped(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        let first = self.nodes[0].url();
        while Instant::now() < deadline {
            for node in &mut self.nodes {
                if let Some(child) = &mut node.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!(
                        "node {} stopped while starting ({status})",
                        node.id
                    ));
                }
            }
            let status: Option<Value> = self
                .http
                .get(format!("{first}/status"))
                .send()
                .ok()
                .and_then(|r| r.json().ok());
            let members = status
                .as_ref()
                .and_then(|s| s["members"].as_array())
                .cloned()
                .unwrap_or_default();
            let healthy = members.iter().filter(|m| m["health"] == 1).count();
            // A joining voter is a learner until it has caught up: the demo is formed once
            // every voter votes (killing the leader before that could leave no quorum).
            let voters = members.iter().filter(|m| m["voter"] == true).count();
            let voters_wanted = self.nodes.iter().filter(|n| n.voter).count();
            if healthy == self.nodes.len() && voters == voters_wanted {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the cluster did not form within {} s",
            FORM_TIMEOUT.as_secs()
        ))
    }

    /// The last lines of every node's log, for an error message.
    fn log_tails(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            text.push_str(&format!(
                "--- node {} log ({}, last {} lines) ---\n{}\n",
                node.id,
                node.log.display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        text
    }
}

impl Extension for Demo {
    fn handle(&mut self, name: &str, args: &[&str]) -> Option<Result<String, String>> {
        let id = match (name, args) {
            ("kill" | "start", [id]) => match id.parse::<u64>() {
                Ok(id) => id,
                Err(_) => return Some(Err(format!("node id expected, got {id:?}"))),
            },
            _ => return None,
        };
        let leader_before = self.leader();
        let Some(node) = self.nodes.iter_mut().find(|n| n.id == id) else {
            return Some(Err(format!("no node {id} in this demo")));
        };
        Some(match name {
            "kill" => {
                if !node.kill() {
                    return Some(Err(format!("node {id} is not running")));
                }
                if leader_before != Some(id) {
                    return Some(Ok(format!("node {id} killed (SIGKILL)\n")));
                }
                let killed_at = Instant::now();
                loop {
                    match self.agreed_leader() {
                        Some(new) if new != id => {
                            break Ok(format!(
                                "node {id} (the leader) killed; node {new} leads after {} ms\n",
                                killed_at.elapsed().as_millis()
                            ));
                        }
                        _ if killed_at.elapsed() > ELECTION_TIMEOUT => {
                            break Ok(format!(
                                "node {id} (the leader) killed; no new leader within {} s\n",
                                ELECTION_TIMEOUT.as_secs()
                            ));
                        }
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
            _ => {
                if node.child.is_some() {
                    return Some(Err(format!("node {id} is already running")));
                }
                node.start()
                    .map(|()| format!("node {id} started; it catches up from the others\n"))
                    .map_err(|e| format!("starting node {id}: {e}"))
            }
        })
    }

    fn help(&self) -> String {
        ".kill N                stop node N with SIGKILL (watch a new leader being elected)\n\
         .start N               start node N again\n"
            .to_string()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// Removes `dir` once process `pid` is gone, however it ended (a `sh` loop: a killed demo
/// cannot clean up after itself).
fn spawn_directory_watcher(pid: u32, dir: &Path) -> std::io::Result<()> {
    Command::new("sh")
        .arg("-c")
        .arg("while kill -0 \"$0\" 2>/dev/null; do sleep 0.5; done; rm -rf \"$1\"")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(|_| ())
}

/// Runs the demo; returns the process exit status.
pub fn run(args: DemoArgs) -> i32 {
    match start_and_run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("shoal demo: {message}");
            1
        }
    }
}

fn start_and_run(args: DemoArgs) -> Result<i32, String> {
    let total = args.nodes + args.replicas;
    if args.nodes == 0 || total > NODES_MAX {
        return Err(format!(
            "--nodes must be at least 1 and nodes plus replicas at most {NODES_MAX}"
        ));
    }
    let temporary = match &args.keep {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("shoal-demo-")
                .tempdir()
                .map_err(|e| format!("temporary directory: {e}"))?,
        ),
    };
    let dir = match (&args.keep, &temporary) {
        (Some(dir), _) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            dir.clone()
        }
        (None, Some(temporary)) => temporary.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory exists without --keep"),
    };
    if temporary.is_some() {
        spawn_directory_watcher(std::process::id(), &dir)
            .map_err(|e| format!("starting the clean-up watcher: {e}"))?;
    }
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut demo = Demo {
        nodes: Vec::new(),
        http,
    };
    let port = || {
        crate::net::ports::unused_loopback_port().map_err(|e| format!("finding a free port: {e}"))
    };
    let mut first_url = String::new();
    for position in 0..total {
        let id = position as u64 + 1;
        let (http_port, raft_port, pg_port) = (port()?, port()?, port()?);
        let mut node_args: Vec<String> = [
            "serve",
            "--node-id",
            &id.to_string(),
            "--data-dir",
            &dir.join(format!("node{id}")).display().to_string(),
            "--http-addr",
            &format!("127.0.0.1:{http_port}"),
            "--raft-addr",
            &format!("127.0.0.1:{raft_port}"),
            "--pg-addr",
            &format!("127.0.0.1:{pg_port}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if position > 0 {
            node_args.extend(["--join".to_string(), first_url.clone()]);
        }
        let voter = position < args.nodes;
        if !voter {
            node_args.push("--non-voter".to_string());
        }
        let mut node = DemoNode {
            id,
            http_port,
            pg_port,
            args: node_args,
            log: dir.join(format!("node{id}.log")),
            voter,
            child: None,
        };
        node.start()
            .map_err(|e| format!("starting node {id}: {e}"))?;
        if position == 0 {
            first_url = node.url();
        }
        demo.nodes.push(node);
    }
    demo.wait_formed()?;
    println!(
        "Shoal demo: {} voter{}{}, data in {}{}",
        args.nodes,
        if args.nodes == 1 { "" } else { "s" },
        match args.replicas {
            0 => String::new(),
            1 => ", 1 read replica".to_string(),
            n => format!(", {n} read replicas"),
        },
        dir.display(),
        if temporary.is_some() {
            " (removed on exit)"
        } else {
            " (kept)"
        }
    );
    for node in &demo.nodes {
        println!(
            "  node {}  {}  psql -h 127.0.0.1 -p {} -U shoal shoal  {}  log {}",
            node.id,
            node.url(),
            node.pg_port,
            if node.voter { "voter" } else { "read replica" },
            node.log.display()
        );
    }
    println!(".kill N / .start N stop and start a node; .status shows the cluster.");
    let shell = ShellArgs {
        host: demo.nodes.iter().map(DemoNode::url).collect(),
        command: Vec::new(),
        consistency: "weak".to_string(),
        database: None,
        write_concern: "majority".to_string(),
        mode: Mode::Table,
        bail: false,
        user: None,
    };
    let code = crate::shell::run_with(shell, Some(Box::new(demo)));
    // The demo (and its nodes) were dropped with the shell; the directory goes now.
    drop(temporary);
    Ok(code)
}
