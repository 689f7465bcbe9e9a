//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz; `scripts/fuzz.sh` runs them):
//! each takes arbitrary bytes and drives the decoders that bytes from the network or the disk
//! reach, the way a request or a message would. Not an API; a panic here is a bug.

use bytes::BytesMut;

use crate::raft::types::{Command, TypeConfig};

/// The HTTP API's decoding: query-string options, JSON statement arrays (and the plain-text
/// body of `/db/request`), credentials in `Authorization`, and the route rules.
pub fn http_request(data: &[u8]) {
    let (flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let (query, body) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let _ = crate::http::params::parse_options(Some(&query));
    let _ = crate::http::body::parse_statements(body);
    let statements = crate::http::statements_for_authorization(Some(&query), flags & 1 == 1, body);
    for statement in &statements {
        let _ = crate::auth::access::is_ddl(&statement.sql);
    }
    let header = String::from_utf8_lossy(body);
    let _ = crate::auth::gate::basic_credentials(&header);
    let _ = crate::auth::token::claimed_user(&header);
    let users = crate::auth::Users::new();
    let _ = crate::auth::token::verify(&header, &users, 0);
    const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
    let _ = crate::auth::access::rule_for(METHODS[usize::from(flags >> 6)], &query);
}

/// Statement text as both endpoints read it: splitting, completeness, the PostgreSQL
/// rewrites (parameters, casts, catalog queries), statements the endpoint answers itself,
/// and DDL detection. Each split statement must be a piece of the input.
pub fn sql_text(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::sqltext::is_complete(sql);
    let range = sql.as_ptr() as usize..sql.as_ptr() as usize + sql.len() + 1;
    let session = crate::pgwire::session::Session::for_user("fuzz".into(), "shoal".into());
    for statement in crate::sqltext::split_statements(sql) {
        assert!(
            range.contains(&(statement.as_ptr() as usize)),
            "a split statement is not part of the input"
        );
        crate::pgwire::fuzzing::rewrite(statement);
        let _ = crate::pgwire::session::recognize(statement, &session);
        let _ = crate::auth::access::is_ddl(statement);
    }
}

/// PostgreSQL frontend messages as pgwire decodes them at each stage of a connection, and
/// parameter values as Shoal decodes them (text and binary, for every type it maps).
pub fn pg_messages(data: &[u8]) {
    use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
    let (flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut context = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    context.awaiting_frontend_ssl = flags & 1 == 1;
    context.awaiting_frontend_startup = flags & 2 == 2;
    let mut buffer = BytesMut::from(rest);
    // Bounded: each decoded message consumes input; stop at the first error or need for more.
    for _ in 0..1024 {
        // pgwire 0.42's decoders of Bind (and a few others) read past a malformed message
        // and panic; the endpoint contains such a panic to the one connection (see
        // `pgwire::serve`), so here it ends the input instead of counting as a crash.
        let Some(decoded) = contained(|| PgWireFrontendMessage::decode(&mut buffer, &context))
        else {
            break;
        };
        match decoded {
            Ok(Some(PgWireFrontendMessage::PasswordMessageFamily(
                pgwire::messages::startup::PasswordMessageFamily::Raw(body),
            ))) => crate::pgwire::fuzzing::password_message(body),
            Ok(Some(_)) => {
                context.awaiting_frontend_ssl = false;
                context.awaiting_frontend_startup = false;
            }
            Ok(None) | Err(_) => break,
        }
    }
    crate::pgwire::fuzzing::decode_parameters(rest, flags >> 2);
}

/// Runs `decode` with a panic caught and not reported (libFuzzer's hook would abort).
fn contained<T>(decode: impl FnOnce() -> T) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).ok();
    std::panic::set_hook(hook);
    outcome
}

/// Node-to-node messages and what nodes read back from disk: Raft RPCs and internal
/// requests (postcard behind a CRC; the CRC is made to match so decoding is reached), the
/// snapshot header, log records, backup objects and manifests.
pub fn raft_rpc(data: &[u8]) {
    use openraft::raft::{AppendEntriesRequest, VoteRequest};
    let checksum = crc32c::crc32c(data).to_string();
    let decode = |_: &str| Some(checksum.as_str());
    let _ = crate::raft::wire::decode::<AppendEntriesRequest<TypeConfig>>(data, decode(""));
    let _ = crate::raft::wire::decode::<VoteRequest<TypeConfig>>(data, decode(""));
    let _ = crate::raft::wire::decode::<crate::service::ServiceRequest>(data, decode(""));
    let _ = crate::raft::wire::decode::<crate::service::cluster::ClusterRequest>(data, decode(""));
    let _ = crate::raft::wire::decode::<Command>(data, decode(""));
    let _ = crate::raft::wire::decode::<Command>(data, Some("0"));
    let text = String::from_utf8_lossy(data);
    let _ = crate::raft::network::SnapshotHeader::from_header_value(&text);
    crate::raft::log_store::fuzzing::decode_record(data);
    for kind in [
        crate::backup::codec::ObjectKind::ImageChunk,
        crate::backup::codec::ObjectKind::LogSegment,
        crate::backup::codec::ObjectKind::LogSegmentV2,
    ] {
        let _ = crate::backup::codec::decode("fuzz/object", data, kind, None, b"fuzz", 1 << 20);
    }
    let _ = crate::backup::manifest::Manifest::decode("fuzz/manifest", data);
}
