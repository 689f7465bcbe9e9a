//! The `shoal` command as an operator meets it: configuration files, their precedence under
//! environment variables and flags, and start-up errors that name what is wrong.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::free_port;

fn shoal() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    // Settings come from each test alone, not from the environment it runs in.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SHOAL_")) {
        command.env_remove(key);
    }
    command
}

/// Runs `shoal` to completion (it is expected to exit by itself), at most 30 s.
fn run_to_exit(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shoal did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A node started from `command`, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` and waits until it answers /readyz on `http_port`.
fn start(mut command: Command, http_port: u16) -> Running {
    let mut running = Running(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = format!("http://127.0.0.1:{http_port}/readyz");
        if http_probe::is_ok(&probe).unwrap_or(false) {
            return running;
        }
        assert!(
            running.0.try_wait().unwrap().is_none(),
            "shoal exited instead of serving on {http_port}"
        );
        assert!(Instant::now() < deadline, "no answer on port {http_port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Minimal blocking HTTP GET (std only): whether the status is 200.
mod http_probe {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub fn is_ok(url: &str) -> std::io::Result<bool> {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"))
    }
}

fn serve_command(dir: &std::path::Path, args: &[String]) -> Command {
    let mut command = shoal();
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args);
    command
}

#[test]
fn c10_the_example_configuration_uncommented_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let example = run_to_exit({
        let mut c = shoal();
        c.args(["config", "example"]);
        c
    });
    assert!(example.status.success());
    let text = String::from_utf8(example.stdout).unwrap();
    let uncommented: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| line.contains(" = "))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(uncommented.contains("heartbeat_ms = 40"), "{uncommented}");
    let file = dir.path().join("shoal.toml");
    std::fs::write(&file, uncommented).unwrap();
    // Flags win over the file: the node listens on free ports, not the defaults.
    let (http, raft) = (free_port(), free_port());
    let args = vec![
        "--config".into(),
        file.display().to_string(),
        "--http-addr".into(),
        format!("127.0.0.1:{http}"),
        "--raft-addr".into(),
        format!("127.0.0.1:{raft}"),
        "--pg-addr".into(),
        "off".into(),
    ];
    let _node = start(serve_command(dir.path(), &args), http);
}

#[test]
fn c20_flags_beat_environment_variables_which_beat_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag) = (free_port(), free_port(), free_port());
    let file = dir.path().join("shoal.toml");
    std::fs::write(
        &file,
        format!(
            "http_addr = \"127.0.0.1:{from_file}\"\nraft_addr = \"127.0.0.1:{}\"\npg_addr = \"off\"\n",
            free_port()
        ),
    )
    .unwrap();
    let config = vec!["--config".to_string(), file.display().to_string()];
    {
        let _node = start(serve_command(dir.path(), &config), from_file);
    }
    {
        let mut command = serve_command(dir.path(), &config);
        command.env("SHOAL_HTTP_ADDR", format!("127.0.0.1:{from_env}"));
        let _node = start(command, from_env);
    }
    let mut with_flag = config.clone();
    with_flag.extend(["--http-addr".to_string(), format!("127.0.0.1:{from_flag}")]);
    let mut command = serve_command(dir.path(), &with_flag);
    command.env("SHOAL_HTTP_ADDR", format!("127.0.0.1:{from_env}"));
    let _node = start(command, from_flag);
}

/// Runs `serve` with `config` as its file and returns its one-line complaint.
fn refused_config(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, config).unwrap();
    let output = run_to_exit(serve_command(
        dir.path(),
        &["--config".into(), file.display().to_string()],
    ));
    assert!(!output.status.success(), "a bad file must stop start-up");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("bad.toml"), "names the file: {stderr}");
    stderr
}

#[test]
fn c30_a_bad_configuration_file_names_the_key() {
    let stderr = refused_config("heartbeat_ms = 50\nhearbeat_ms = 60\n");
    assert!(stderr.contains("unknown setting `hearbeat_ms`"), "{stderr}");
    assert!(stderr.contains("did you mean `heartbeat_ms`"), "{stderr}");
    let stderr = refused_config("election_timeout_ms = \"soon\"\n");
    assert!(stderr.contains("`election_timeout_ms`"), "{stderr}");
    assert!(stderr.contains("soon"), "{stderr}");
    let stderr = refused_config("non_voter = 3\n");
    assert!(
        stderr.contains("`non_voter`: expected true or false"),
        "{stderr}"
    );
    let stderr = refused_config("http_addr = [\n");
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn c40_a_port_in_use_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = run_to_exit(serve_command(
        dir.path(),
        &[
            "--http-addr".into(),
            format!("127.0.0.1:{port}"),
            "--raft-addr".into(),
            format!("127.0.0.1:{}", free_port()),
            "--pg-addr".into(),
            "off".into(),
        ],
    ));
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.trim().lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("http_addr") && last.contains(&port.to_string()) && last.contains("in use"),
        "{stderr}"
    );
}
