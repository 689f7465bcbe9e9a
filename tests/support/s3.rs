//! A real S3-compatible server on loopback for backup tests: moto's server (PyPI `moto[server]`,
//! installed by scripts/test.sh), started per test on a free port, with one bucket, and killed
//! when dropped. Not a mock: Shoal talks to it through object_store's S3 client over HTTP.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: Child,
}

/// Credentials moto accepts; passed to nodes and commands as the standard AWS variables.
pub const ACCESS_KEY: &str = "shoal-test";
pub const SECRET_KEY: &str = "shoal-test-secret";

impl S3Server {
    pub async fn start() -> S3Server {
        let port = super::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (scripts/test.sh installs moto[server])");
        let server = S3Server {
            port,
            bucket: "shoal-backups".into(),
            child,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = client
                .put(format!("{}/{}", server.endpoint(), server.bucket))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if created.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "moto server did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `--backup-target` for this server under `prefix`.
    pub fn target(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}?endpoint={}", self.bucket, self.endpoint())
    }

    /// Environment giving a node or command the server's credentials.
    pub fn env() -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
