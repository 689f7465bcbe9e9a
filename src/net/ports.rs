//! Free loopback ports for nodes started as child processes (`shoal demo`, the tests).
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range, the same range
//! outgoing connections take their local ports from: between the moment it is released and
//! the moment the child binds it — or while a stopped node waits to be restarted on it —
//! any connection the machine opens may take it, and the node fails to bind. Ports handed
//! out here lie outside that range, are checked free on loopback, and are never handed out
//! twice by one process.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Lowest port handed out: clear of the well-known and commonly configured service ports.
const LOWEST: u16 = 10_000;
/// The kernel's ephemeral range when /proc does not say (Linux's default).
const DEFAULT_EPHEMERAL: (u16, u16) = (32_768, 60_999);
/// Candidates tried before giving up (every loop has a limit).
const ATTEMPTS: usize = 2_000;

/// Ports this process has handed out; a stopped node's ports stay reserved for its restart.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), inclusive.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    let low = parts.next()?.ok()?;
    let high = parts.next()?.ok()?;
    (low <= high).then_some((low, high))
}

/// The ports outside the ephemeral range this module chooses from, as inclusive ranges.
fn candidate_ranges((low, high): (u16, u16)) -> Vec<(u16, u16)> {
    let mut ranges = Vec::new();
    if low > LOWEST + 100 {
        ranges.push((LOWEST, low - 1));
    }
    if high < u16::MAX - 100 {
        ranges.push((high.max(LOWEST) + 1, u16::MAX));
    }
    ranges
}

/// A loopback port outside the ephemeral range that nothing listens on now and this process
/// has not handed out before.
pub fn unused_loopback_port() -> std::io::Result<u16> {
    let ranges = candidate_ranges(ephemeral_range());
    let sizes: Vec<usize> = ranges
        .iter()
        .map(|&(low, high)| usize::from(high - low) + 1)
        .collect();
    let total: usize = sizes.iter().sum();
    if total == 0 {
        // The ephemeral range covers every port: binding port 0 is all there is.
        return Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port());
    }
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // A random starting point keeps concurrent processes apart; stepping on from it finds a
    // free port quickly on a busy machine.
    let start = rand::random_range(0..total);
    for step in 0..ATTEMPTS.min(total) {
        let port = nth_candidate(&ranges, &sizes, (start + step) % total);
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port outside the ephemeral range after {ATTEMPTS} tries"),
    ))
}

fn nth_candidate(ranges: &[(u16, u16)], sizes: &[usize], mut index: usize) -> u16 {
    for (&(low, _), &size) in ranges.iter().zip(sizes) {
        if index < size {
            // index < size ≤ 65_536 - low, so the sum fits in a u16.
            return low + index as u16;
        }
        index -= size;
    }
    unreachable!("index is below the sum of the sizes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_lie_outside_the_ephemeral_range_and_are_never_handed_out_twice() {
        let (low, high) = ephemeral_range();
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let port = unused_loopback_port().unwrap();
            assert!(!(low..=high).contains(&port), "{port} in {low}..={high}");
            assert!(port >= LOWEST);
            assert!(seen.insert(port), "{port} handed out twice");
        }
    }

    #[test]
    fn the_range_is_read_as_the_kernel_writes_it() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32_768, 60_999)));
        assert_eq!(parse_range("61000 1000"), None);
        assert_eq!(parse_range(""), None);
        assert_eq!(
            candidate_ranges((32_768, 60_999)),
            vec![(10_000, 32_767), (61_000, 65_535)]
        );
        assert_eq!(candidate_ranges((1_024, 65_535)), vec![]);
    }
}
