//! The shell's connection to Shoal: the HTTP API on one of several hosts, moving to the next
//! when one is unreachable (and saying so).

use std::time::Duration;

use serde_json::Value;

/// How long one request may take (a long query, a write waiting for its write concern).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    http: reqwest::blocking::Client,
    hosts: Vec<String>,
    current: usize,
}

/// What a request to Shoal ended with.
#[derive(Debug)]
pub enum Failure {
    /// No host answered.
    Unreachable(String),
    /// A host answered with an error status.
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(message) | Failure::Refused(message) => f.write_str(message),
        }
    }
}

impl Client {
    /// A client for `hosts`, sending `credentials` (HTTP Basic) when given.
    pub fn new(
        hosts: Vec<String>,
        credentials: Option<(String, String)>,
    ) -> Result<Client, String> {
        if hosts.is_empty() {
            return Err("no --host given".to_string());
        }
        let hosts = hosts
            .into_iter()
            .map(|host| {
                let host = host.trim().trim_end_matches('/').to_string();
                if host.contains("://") {
                    host
                } else {
                    format!("http://{host}")
                }
            })
            .collect();
        let mut http = reqwest::blocking::Client::builder()
            .default_headers(crate::auth::cli::authorization_header(credentials.as_ref()))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2));
        if let Some(tls) = crate::net::tls::client_config_from_env()? {
            http = http.use_preconfigured_tls(tls);
        }
        let http = http.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Client {
            http,
            hosts,
            current: 0,
        })
    }

    /// The host requests go to now.
    pub fn host(&self) -> &str {
        &self.hosts[self.current]
    }

    pub fn get(&mut self, path: &str) -> Result<Value, Failure> {
        self.send(|http, base| http.get(format!("{base}{path}")))
    }

    pub fn post(&mut self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.send(|http, base| http.post(format!("{base}{path}")).json(body))
    }

    /// Sends a request to the current host, and to the next ones while hosts are unreachable.
    fn send(
        &mut self,
        build: impl Fn(&reqwest::blocking::Client, &str) -> reqwest::blocking::RequestBuilder,
    ) -> Result<Value, Failure> {
        let mut last_error = String::new();
        for _ in 0..self.hosts.len() {
            let host = self.hosts[self.current].clone();
            match build(&self.http, &host).send() {
                Ok(response) => {
                    let status = response.status();
                    let body: Value = response
                        .json()
                        .map_err(|e| Failure::Refused(format!("{host}: unreadable reply: {e}")))?;
                    if status.is_success() {
                        return Ok(body);
                    }
                    let message = body["error"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| body.to_string());
                    return Err(Failure::Refused(format!("{status}: {message}")));
                }
                Err(error) if error.is_connect() => {
                    last_error = format!("{host} is unreachable ({error})");
                    self.current = (self.current + 1) % self.hosts.len();
                    if self.hosts.len() > 1 {
                        eprintln!("{last_error}; trying {}", self.hosts[self.current]);
                    }
                }
                Err(error) => return Err(Failure::Unreachable(format!("{host}: {error}"))),
            }
        }
        Err(Failure::Unreachable(format!(
            "no host answered: {last_error}"
        )))
    }
}
