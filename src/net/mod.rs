//! What reaches a node's listeners: TLS (`tls`), address allow-lists and connection limits
//! (`listener`), development certificates (`cert`, `shoal cert`), and free loopback ports for
//! local clusters (`ports`).

pub mod addr;
pub mod cert;
pub mod listener;
pub mod node_client;
pub mod ports;
pub mod tls;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use ipnet::IpNet;

use crate::net::tls::{TlsSettings, TlsVersion};

/// `serve` flags for the listeners: TLS, allow-lists, connection limits.
#[derive(clap::Args, Debug, Clone)]
pub struct NetFlags {
    /// This node's TLS certificate chain (PEM). With --tls-key and --tls-ca, HTTP,
    /// PostgreSQL and Raft traffic is TLS only, and the Raft port requires a certificate
    /// signed by the CA (`shoal cert dev` makes a development set). Reloaded when it changes.
    #[arg(long, env = "SHOAL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "SHOAL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA's certificate (PEM): node certificates must be signed by it.
    #[arg(long, env = "SHOAL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The CA's certificate revocation list (PEM, `shoal cert revoke` keeps one): revoked
    /// node certificates can no longer reach the Raft port or serve other nodes. Reloaded when
    /// it changes.
    #[arg(long, env = "SHOAL_TLS_CRL")]
    pub tls_crl: Option<PathBuf>,
    /// TLS between nodes only (the Raft port and this node's calls to others); the HTTP API and
    /// the PostgreSQL endpoint stay in the clear (rqlite's -node-cert without -http-cert).
    /// Needs the --tls-* files.
    #[arg(long, env = "SHOAL_TLS_NODES_ONLY")]
    pub tls_nodes_only: bool,
    /// Common names (comma-separated) a node certificate must carry for the Raft port to
    /// admit it, beyond being signed by the cluster CA (rqlite's -node-verify-common-name);
    /// empty: any certificate of the CA.
    #[arg(long, env = "SHOAL_TLS_NODE_NAMES", value_delimiter = ',')]
    pub tls_node_names: Vec<String>,
    /// Oldest TLS version accepted and spoken: 1.2 or 1.3.
    #[arg(long, env = "SHOAL_TLS_MIN_VERSION", default_value = "1.2", value_parser = TlsVersion::parse)]
    pub tls_min_version: TlsVersion,
    /// Addresses allowed to connect to the HTTP API (comma-separated CIDR ranges or
    /// addresses; empty: any).
    #[arg(long, env = "SHOAL_HTTP_ALLOW", default_value = "", value_parser = AllowList::parse)]
    pub http_allow: AllowList,
    /// Addresses allowed to connect to the Raft port (other nodes).
    #[arg(long, env = "SHOAL_RAFT_ALLOW", default_value = "", value_parser = AllowList::parse)]
    pub raft_allow: AllowList,
    /// Addresses allowed to connect to the PostgreSQL endpoint.
    #[arg(long, env = "SHOAL_PG_ALLOW", default_value = "", value_parser = AllowList::parse)]
    pub pg_allow: AllowList,
    /// HTTP connections open at once; more are closed on arrival.
    #[arg(long, env = "SHOAL_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,
    /// Raft-port connections open at once.
    #[arg(long, env = "SHOAL_RAFT_MAX_CONNECTIONS", default_value_t = 256)]
    pub raft_max_connections: usize,
    /// An HTTP or Raft connection that sends no request headers for this long (idle between
    /// requests, or slow to send them) is closed, giving its place back. Keep it above the
    /// clients' own idle timeouts (90 s for Go and reqwest), or they may reuse a connection
    /// the server is closing.
    #[arg(long, env = "SHOAL_CONNECTION_IDLE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub connection_idle_timeout: std::time::Duration,
}

impl NetFlags {
    /// The TLS settings: all three files, or none of them.
    pub fn tls(&self) -> Result<Option<TlsSettings>, String> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) if self.tls_crl.is_some() => {
                Err("--tls-crl needs TLS (--tls-cert, --tls-key and --tls-ca)".into())
            }
            (None, None, None) if !self.tls_node_names.is_empty() => {
                Err("--tls-node-names needs TLS (--tls-cert, --tls-key and --tls-ca)".into())
            }
            (None, None, None) if self.tls_nodes_only => {
                Err("--tls-nodes-only needs TLS (--tls-cert, --tls-key and --tls-ca)".into())
            }
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
                crl: self.tls_crl.clone(),
                min_version: self.tls_min_version,
                node_names: self
                    .tls_node_names
                    .iter()
                    .map(|name| name.trim().to_string())
                    .filter(|name| !name.is_empty())
                    .collect(),
            })),
            _ => Err("TLS needs all of --tls-cert, --tls-key and --tls-ca".into()),
        }
    }
}

/// What a node's listeners admit.
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    pub tls: Option<TlsSettings>,
    /// TLS on the Raft port and between nodes only; clients connect in the clear.
    pub tls_nodes_only: bool,
    pub http_allow: AllowList,
    pub raft_allow: AllowList,
    pub pg_allow: AllowList,
    pub http_connections_max: usize,
    pub raft_connections_max: usize,
    pub idle_timeout: std::time::Duration,
}

impl NetFlags {
    pub fn to_config(&self) -> Result<NetConfig, String> {
        Ok(NetConfig {
            tls: self.tls()?,
            tls_nodes_only: self.tls_nodes_only,
            http_allow: self.http_allow.clone(),
            raft_allow: self.raft_allow.clone(),
            pg_allow: self.pg_allow.clone(),
            http_connections_max: self.http_max_connections.max(1),
            raft_connections_max: self.raft_max_connections.max(1),
            idle_timeout: self
                .connection_idle_timeout
                .max(std::time::Duration::from_secs(1)),
        })
    }
}

/// URL scheme of this process's calls to other nodes' HTTP APIs: every node of a cluster
/// runs TLS or none does (a node started with TLS sets it once, before it calls anyone).
static SCHEME: OnceLock<&'static str> = OnceLock::new();

/// URL scheme of this process's calls to other nodes' Raft ports (TLS there also with
/// `--tls-nodes-only`).
static RAFT_SCHEME: OnceLock<&'static str> = OnceLock::new();

/// Makes this process call other nodes over `https`: their HTTP APIs unless `nodes_only`,
/// their Raft ports always.
pub fn use_https_between_nodes(nodes_only: bool) {
    if !nodes_only {
        let _ = SCHEME.set("https");
    }
    let _ = RAFT_SCHEME.set("https");
}

/// `http` or `https`: the scheme of URLs to other nodes' HTTP APIs.
pub fn scheme() -> &'static str {
    SCHEME.get().copied().unwrap_or("http")
}

/// `scheme://addr` for another node's Raft port at `addr` (host:port).
pub fn raft_url(addr: &str) -> String {
    format!("{}://{addr}", RAFT_SCHEME.get().copied().unwrap_or("http"))
}

/// `scheme://addr`: the base URL of another node's listener at `addr` (host:port).
pub fn node_url(addr: &str) -> String {
    format!("{}://{addr}", scheme())
}

/// Addresses allowed to connect to one listener; empty allows every address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// Parses comma-separated CIDR ranges or single addresses (`10.0.0.0/8,127.0.0.1`).
    pub fn parse(text: &str) -> Result<AllowList, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let range = match part.parse::<IpNet>() {
                Ok(range) => range,
                Err(_) => part
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("{part:?} is neither a CIDR range nor an IP address"))?,
            };
            ranges.push(range);
        }
        Ok(AllowList(ranges))
    }

    pub fn allows(&self, address: IpAddr) -> bool {
        let address = match address {
            // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.is_empty() || self.0.iter().any(|range| range.contains(&address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_take_ranges_and_single_addresses() {
        let list = AllowList::parse("10.0.0.0/8, 127.0.0.1,::1").unwrap();
        assert!(list.allows("10.1.2.3".parse().unwrap()));
        assert!(list.allows("127.0.0.1".parse().unwrap()));
        assert!(list.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(list.allows("::1".parse().unwrap()));
        assert!(!list.allows("127.0.0.2".parse().unwrap()));
        assert!(!list.allows("192.168.1.1".parse().unwrap()));
        assert!(
            AllowList::parse("")
                .unwrap()
                .allows("8.8.8.8".parse().unwrap())
        );
        let error = AllowList::parse("10.0.0.0/33").unwrap_err();
        assert!(error.contains("10.0.0.0/33"), "{error}");
        assert!(AllowList::parse("localhost").is_err());
    }
}
