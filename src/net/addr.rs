//! Listen addresses as operators write them: an IP address or a host name with a port
//! (`localhost:4001`, `node1.internal:4002`, `[::1]:4001`), resolved once at start, and the
//! default PostgreSQL port that moves up when another node on the host already holds it.

use std::net::{SocketAddr, ToSocketAddrs};

/// How many ports above the default PostgreSQL port a node tries before giving up.
pub const PG_DEFAULT_PORT_ATTEMPTS: u16 = 100;

/// A listen address: what the operator wrote and what it resolved to at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// As written (`localhost:4001`).
    pub given: String,
    /// The socket address bound.
    pub resolved: SocketAddr,
}

impl ListenAddr {
    /// What other nodes and clients are told, unless an advertised address is set: the host
    /// name as written (resolved by each of them), or the IP address.
    pub fn advertised(&self) -> String {
        if self.given.parse::<SocketAddr>().is_ok() {
            self.resolved.to_string()
        } else {
            self.given.clone()
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.given)
    }
}

/// Parses `host:port`, resolving a host name; an IPv4 address is preferred when the name has
/// both (as rqlite's Go listener does for `localhost`).
pub fn parse_listen_addr(text: &str) -> Result<ListenAddr, String> {
    let text = text.trim();
    if let Ok(resolved) = text.parse::<SocketAddr>() {
        return Ok(ListenAddr {
            given: text.to_string(),
            resolved,
        });
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "expected host:port (such as localhost:4001 or 10.0.0.5:4001), got {text:?}"
        ));
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host before the port"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{text:?}: the port {port:?} is not a number from 0 to 65535"))?;
    let candidates: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the host name in {text:?}: {e}"))?
        .collect();
    let resolved = candidates
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| candidates.first())
        .copied()
        .ok_or_else(|| format!("the host name in {text:?} resolves to no address"))?;
    Ok(ListenAddr {
        given: text.to_string(),
        resolved,
    })
}

/// Binds `addr`; when `attempts` > 1 and the port is taken, the next ports up to
/// `attempts` in all (several nodes started on one host with the default). Returns the error
/// of the first attempt when every one fails.
pub async fn bind_first_free(
    addr: SocketAddr,
    attempts: u16,
) -> std::io::Result<tokio::net::TcpListener> {
    let mut first_error = None;
    for offset in 0..attempts.max(1) {
        let Some(port) = addr.port().checked_add(offset) else {
            break;
        };
        let candidate = SocketAddr::new(addr.ip(), port);
        match tokio::net::TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                first_error.get_or_insert(error);
            }
            Err(error) => return Err(first_error.unwrap_or(error)),
        }
    }
    Err(first_error.unwrap_or_else(|| std::io::Error::other("no port left to try")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_and_host_names_are_accepted() {
        let ip = parse_listen_addr("127.0.0.1:4001").unwrap();
        assert_eq!(ip.resolved, "127.0.0.1:4001".parse().unwrap());
        assert_eq!(ip.advertised(), "127.0.0.1:4001");
        let name = parse_listen_addr("localhost:4001").unwrap();
        assert!(name.resolved.ip().is_loopback());
        assert_eq!(name.resolved.port(), 4001);
        assert!(
            name.resolved.is_ipv4(),
            "IPv4 first, as rqlite binds localhost"
        );
        assert_eq!(name.advertised(), "localhost:4001");
        let v6 = parse_listen_addr("[::1]:4001").unwrap();
        assert_eq!(v6.advertised(), "[::1]:4001");
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        assert!(
            parse_listen_addr("localhost")
                .unwrap_err()
                .contains("host:port")
        );
        assert!(parse_listen_addr(":4001").unwrap_err().contains("no host"));
        assert!(
            parse_listen_addr("localhost:99999")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            parse_listen_addr("no-such-host.invalid:4001")
                .unwrap_err()
                .contains("cannot resolve")
        );
    }

    #[tokio::test]
    async fn a_taken_default_port_moves_up_and_a_fixed_one_fails() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let moved = bind_first_free(addr, 20).await.unwrap();
        assert!(moved.local_addr().unwrap().port() > addr.port());
        let error = bind_first_free(addr, 1).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    }
}
