//! A workload client's view of the cluster: sends a request to one node's HTTP API and sorts
//! the answer into ok, certainly-failed, or unknown — the distinction the checkers rely on.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;

/// How long a node may take over one request (`timeout=`); the client waits a little longer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What a request came to.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 with every statement succeeding: the `results` array.
    Ok(Vec<Value>),
    /// Certainly not applied: the connection was refused, the request was rejected before it
    /// reached the log (no leader, bad request), or a statement failed (workload requests are
    /// single statements or transactions, so nothing of them was applied).
    Fail(String),
    /// Perhaps applied: the connection broke or timed out after sending, or the node said so.
    Unknown(String),
}

/// HTTP API addresses of every node a workload may talk to (grows when the nemesis adds one).
#[derive(Clone, Default)]
pub struct Targets(Arc<RwLock<Vec<String>>>);

impl Targets {
    pub fn new(urls: Vec<String>) -> Targets {
        Targets(Arc::new(RwLock::new(urls)))
    }

    pub fn add(&self, url: String) {
        self.0.write().expect("targets lock").push(url);
    }

    pub fn remove(&self, url: &str) {
        self.0.write().expect("targets lock").retain(|u| u != url);
    }

    /// The `choice`-th target, wrapping around.
    pub fn pick(&self, choice: usize) -> String {
        let urls = self.0.read().expect("targets lock");
        urls[choice % urls.len()].clone()
    }
}

#[derive(Clone)]
pub struct DbClient {
    http: reqwest::Client,
}

impl DbClient {
    pub fn new() -> DbClient {
        DbClient {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT + Duration::from_secs(1))
                .connect_timeout(Duration::from_millis(500))
                .pool_max_idle_per_host(4)
                .build()
                .expect("HTTP client"),
        }
    }

    /// POSTs statements to `path` (with its query string) on the node at `url`.
    pub async fn send(&self, url: &str, path: &str, statements: &Value) -> Reply {
        let separator = if path.contains('?') { '&' } else { '?' };
        let response = self
            .http
            .post(format!(
                "{url}{path}{separator}timeout={}ms",
                REQUEST_TIMEOUT.as_millis()
            ))
            .json(statements)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Reply::Fail(format!("connect: {e}")),
            Err(e) => return Reply::Unknown(format!("send: {e}")),
        };
        let status = response.status().as_u16();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(e) => return Reply::Unknown(format!("HTTP {status}, unreadable body: {e}")),
        };
        let error = body["error"].as_str().unwrap_or_default().to_string();
        match status {
            200 => {
                let results = body["results"].as_array().cloned().unwrap_or_default();
                match results.iter().find_map(|r| r["error"].as_str()) {
                    Some(statement_error) => Reply::Fail(format!("statement: {statement_error}")),
                    None => Reply::Ok(results),
                }
            }
            // Refused before anything was proposed.
            301 | 400 | 404 | 413 => Reply::Fail(format!("HTTP {status}: {error}")),
            503 if error.starts_with("no leader") => Reply::Fail(error),
            _ => Reply::Unknown(format!("HTTP {status}: {error}")),
        }
    }
}
