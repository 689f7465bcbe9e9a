//! `shoal demo`: a local cluster to try failover with, that leaves nothing behind — after a
//! normal exit and after the demo process is killed.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo(tmp: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args(["demo", "--nodes", "3"])
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Processes whose command line mentions `path` (the demo's nodes name their data dirs).
fn processes_using(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&needle) && !cmdline.contains("while kill -0"))
        .collect()
}

/// Waits until nothing of the demo is left under `tmp`: no directory, no process.
fn assert_nothing_left(tmp: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries: Vec<_> = std::fs::read_dir(tmp).unwrap().flatten().collect();
        let processes = processes_using(tmp);
        if entries.is_empty() && processes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {entries:?} {processes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn d10_killing_the_leader_from_the_demo_shell_elects_another_and_exit_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = demo(tmp.path()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b".status\n.kill 1\n.status\n.quit\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8(output.stdout).unwrap();
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{out}\n{err}");
    assert!(out.contains("Shoal demo: 3 voters"), "{out}");
    assert!(
        out.contains("leader: node 1 at"),
        "node 1 leads first: {out}"
    );
    let killed = out
        .lines()
        .find(|l| l.starts_with("node 1 (the leader) killed; node "))
        .unwrap_or_else(|| panic!("no failover reported: {out}"));
    let new_leader: u64 = killed
        .trim_start_matches("node 1 (the leader) killed; node ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_leader, 1);
    assert!(
        out.contains(&format!("leader: node {new_leader} at")),
        ".status shows the new leader: {out}"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn d20_a_killed_demo_leaves_no_nodes_and_no_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = demo(tmp.path()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !line.starts_with("Shoal demo:") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the demo ended early"
        );
        assert!(Instant::now() < deadline, "the demo did not start");
    }
    assert!(!processes_using(tmp.path()).is_empty(), "the nodes run");
    // SAFETY: sending SIGKILL to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_nothing_left(tmp.path());
}
