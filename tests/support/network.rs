//! A controllable Raft network for tests: a TCP proxy in front of every node's Raft port. Each
//! connection is attributed to the node that opened it (nodes name themselves in the
//! `x-shoal-from-node` header of every request), so links can be cut or slowed per ordered pair
//! of nodes: partitions of any shape, a bridge, an isolated leader, a one-way link.
//!
//! Cutting a link drops its open connections at once and refuses new ones; healing lets new
//! connections through. Connections that name no node (a test's own client) are never cut.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest request head the proxy reads to find the sender (node requests are small).
const HEAD_BYTES_MAX: usize = 16 * 1024;
const SENDER_HEADER: &[u8] = b"x-shoal-from-node:";

/// Which links are cut and which are slowed; links are (from, to) node ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkRules {
    pub cut: BTreeSet<(u64, u64)>,
    pub delay: BTreeMap<(u64, u64), Duration>,
}

/// The proxies of one cluster and the rules they obey.
pub struct Network {
    rules: watch::Sender<LinkRules>,
    proxies: Vec<tokio::task::JoinHandle<()>>,
}

impl Network {
    pub fn new() -> Network {
        Network {
            rules: watch::channel(LinkRules::default()).0,
            proxies: Vec::new(),
        }
    }

    /// Starts a proxy for node `node_id` whose Raft server listens on `target_port`; returns
    /// the port other nodes must use to reach it.
    pub async fn add_node(&mut self, node_id: u64, target_port: u16) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy address").port();
        let rules = self.rules.subscribe();
        self.proxies.push(tokio::spawn(accept_loop(
            listener,
            node_id,
            target_port,
            rules,
        )));
        port
    }

    pub fn rules(&self) -> LinkRules {
        self.rules.borrow().clone()
    }

    /// Replaces every rule at once.
    pub fn set_rules(&self, rules: LinkRules) {
        self.rules.send_replace(rules);
    }

    /// Cuts the links from every node of `senders` to every node of `receivers` (one way).
    pub fn cut(&self, senders: &[u64], receivers: &[u64]) {
        self.rules.send_modify(|rules| {
            for &from in senders {
                for &to in receivers {
                    rules.cut.insert((from, to));
                }
            }
        });
    }

    /// Cuts every link between a node of `side_a` and a node of `side_b`, both ways.
    pub fn partition(&self, side_a: &[u64], side_b: &[u64]) {
        self.cut(side_a, side_b);
        self.cut(side_b, side_a);
    }

    /// Cuts `node` off from every node in `all`.
    pub fn isolate(&self, node: u64, all: &[u64]) {
        let others: Vec<u64> = all.iter().copied().filter(|&n| n != node).collect();
        self.partition(&[node], &others);
    }

    /// Delays every message on the links between `side_a` and `side_b`, both ways.
    pub fn slow(&self, side_a: &[u64], side_b: &[u64], delay: Duration) {
        self.rules.send_modify(|rules| {
            for &a in side_a {
                for &b in side_b {
                    rules.delay.insert((a, b), delay);
                    rules.delay.insert((b, a), delay);
                }
            }
        });
    }

    /// Restores every link to full speed.
    pub fn heal(&self) {
        self.rules.send_replace(LinkRules::default());
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for proxy in &self.proxies {
            proxy.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    node_id: u64,
    target_port: u16,
    rules: watch::Receiver<LinkRules>,
) {
    while let Ok((inbound, _)) = listener.accept().await {
        let rules = rules.clone();
        tokio::spawn(async move {
            let _ = relay(inbound, node_id, target_port, rules).await;
        });
    }
}

/// Relays one connection to `to`'s Raft server while its link is up.
async fn relay(
    mut inbound: TcpStream,
    to: u64,
    target_port: u16,
    mut rules: watch::Receiver<LinkRules>,
) -> std::io::Result<()> {
    let (head, from) = read_head(&mut inbound).await?;
    let link = from.map(|from| (from, to));
    let is_cut = |rules: &LinkRules| link.is_some_and(|link| rules.cut.contains(&link));
    if is_cut(&rules.borrow_and_update()) {
        return Ok(()); // dropped: the sender sees the connection close
    }
    let mut outbound = TcpStream::connect(("127.0.0.1", target_port)).await?;
    outbound.set_nodelay(true)?;
    inbound.set_nodelay(true)?;
    outbound.write_all(&head).await?;
    let (inbound_read, inbound_write) = inbound.split();
    let (outbound_read, outbound_write) = outbound.split();
    let delay_of = |link: Option<(u64, u64)>| {
        let rules = rules.clone();
        move || {
            link.and_then(|link| rules.borrow().delay.get(&link).copied())
                .unwrap_or_default()
        }
    };
    let (delay, reverse_delay) = (delay_of(link), delay_of(link.map(|(from, to)| (to, from))));
    tokio::select! {
        _ = pump(inbound_read, outbound_write, delay) => {}
        _ = pump(outbound_read, inbound_write, reverse_delay) => {}
        _ = rules.wait_for(|rules| is_cut(rules)) => {}
    }
    Ok(())
}

/// Reads the first request head (up to a blank line) and finds the sending node in it.
async fn read_head(inbound: &mut TcpStream) -> std::io::Result<(Vec<u8>, Option<u64>)> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_BYTES_MAX {
        let read = inbound.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let from = head
        .split(|&b| b == b'\n')
        .find_map(|line| {
            let lower = line.to_ascii_lowercase();
            lower
                .strip_prefix(SENDER_HEADER)
                .map(|value| String::from_utf8_lossy(value).trim().parse::<u64>().ok())
        })
        .flatten();
    Ok((head, from))
}

/// Copies `reader` to `writer`, holding each chunk for the link's current delay.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    mut writer: impl AsyncWrite + Unpin,
    delay: impl Fn() -> Duration,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            return writer.shutdown().await;
        }
        let pause = delay();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        writer.write_all(&buffer[..read]).await?;
    }
}
