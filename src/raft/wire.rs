//! How node-to-node HTTP requests are encoded (forwarded client requests, snapshots, and Raft
//! RPCs to peers without the peer stream): postcard bodies, each carrying a CRC-32C in a
//! header that the receiver verifies. The peer stream frames its own messages (`peer_stream::frame`).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Header carrying the CRC-32C of the body.
pub const CHECKSUM_HEADER: &str = "x-shoal-crc32c";
/// Header carrying a snapshot's description (base64 of JSON) ahead of its streamed image.
pub const SNAPSHOT_HEADER: &str = "x-shoal-snapshot";
/// Header naming the node that sent a node-to-node request (for logs, and for the test
/// harness's network proxy, which partitions links per pair of nodes).
pub const FROM_NODE_HEADER: &str = "x-shoal-from-node";

/// Header naming the node a Raft RPC is meant for: a node that is not it refuses the RPC, so
/// a message sent to an address another node has since taken (a container restarted on a
/// reused IP) is never counted as the intended node's answer.
pub const TO_NODE_HEADER: &str = "x-shoal-to-node";
/// Largest node-to-node message body other than a snapshot stream.
pub const RPC_BODY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Encodes `value`, returning the body and its checksum.
pub fn encode<T: Serialize>(value: &T) -> Result<(Vec<u8>, u32), String> {
    let body = postcard::to_stdvec(value).map_err(|e| format!("encode message: {e}"))?;
    let checksum = crc32c::crc32c(&body);
    Ok((body, checksum))
}

/// Verifies `body` against the checksum header and decodes it.
pub fn decode<T: DeserializeOwned>(
    body: &[u8],
    checksum_header: Option<&str>,
) -> Result<T, String> {
    let expected: u32 = checksum_header
        .ok_or_else(|| format!("message has no {CHECKSUM_HEADER} header"))?
        .parse()
        .map_err(|_| format!("{CHECKSUM_HEADER} header is not a number"))?;
    let actual = crc32c::crc32c(body);
    if actual != expected {
        return Err(format!(
            "message checksum mismatch: header says {expected}, body hashes to {actual}"
        ));
    }
    postcard::from_bytes(body).map_err(|e| format!("decode message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_verifies_checksum() {
        let (body, checksum) = encode(&("hello", 42u64)).unwrap();
        let decoded: (String, u64) = decode(&body, Some(&checksum.to_string())).unwrap();
        assert_eq!(decoded, ("hello".to_string(), 42));
    }

    #[test]
    fn flipped_bit_is_rejected() {
        let (mut body, checksum) = encode(&("hello", 42u64)).unwrap();
        body[1] ^= 1;
        let error = decode::<(String, u64)>(&body, Some(&checksum.to_string())).unwrap_err();
        assert!(error.contains("checksum mismatch"));
    }

    #[test]
    fn missing_checksum_is_rejected() {
        let (body, _) = encode(&1u8).unwrap();
        assert!(
            decode::<u8>(&body, None)
                .unwrap_err()
                .contains("no x-shoal-crc32c")
        );
    }
}
