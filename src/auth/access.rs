//! Which permission each HTTP endpoint needs. Deny by default: a route without a rule here is
//! refused to everyone when authentication is on.

use crate::auth::Permission;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Liveness and readiness probes: no data, no credentials (load balancers call them).
    Open,
    /// The permission, and for SQL endpoints whether the statements decide more.
    Needs(Permission),
    /// SQL: read for queries; write (and ddl for schema changes) otherwise — decided from the
    /// statements.
    Sql(SqlEndpoint),
    /// `/join`: join, or join-replica for a non-voter (decided from the body).
    Join,
    /// Valid credentials, whatever the permissions (`/auth/token`).
    Authenticated,
    /// No rule: refused.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlEndpoint {
    /// `/db/query`: reads only.
    Query,
    /// `/db/execute`: writes.
    Execute,
    /// `/db/request`: reads or writes, by statement.
    Request,
}

/// The rule for a request to the route `path` (as routed, e.g. `/backup/{id}`) with `method`.
pub fn rule_for(method: &str, path: &str) -> Rule {
    use Permission::*;
    match (method, path) {
        ("GET" | "HEAD", "/livez" | "/readyz") => Rule::Open,
        (_, "/db/query") => Rule::Sql(SqlEndpoint::Query),
        ("POST", "/db/execute") => Rule::Sql(SqlEndpoint::Execute),
        ("POST", "/db/request") => Rule::Sql(SqlEndpoint::Request),
        ("GET", "/status" | "/nodes" | "/metrics" | "/alerts" | "/dashboard" | "/leader") => {
            Rule::Needs(Status)
        }
        ("POST", "/join") => Rule::Join,
        ("POST" | "DELETE", "/remove") | ("POST", "/leader" | "/snapshot" | "/drain") => {
            Rule::Needs(Admin)
        }
        (_, path) if path == "/users" || path.starts_with("/users/") => Rule::Needs(Admin),
        ("GET", "/db/backup" | "/backup" | "/backup/{id}")
        | ("POST", "/backup" | "/backup/{id}/verify" | "/backup/prune") => Rule::Needs(Backup),
        ("POST", "/db/load" | "/boot" | "/backup/restore") => Rule::Needs(Restore),
        ("POST", "/auth/token") => Rule::Authenticated,
        _ => Rule::Unknown,
    }
}

/// The first keyword of a statement, skipping comments and whitespace, upper-cased.
pub fn first_keyword(sql: &str) -> String {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix(';') {
            // SQLite skips empty statements before the real one.
            rest = after.trim_start();
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Whether a statement changes the schema.
pub fn is_ddl(sql: &str) -> bool {
    matches!(
        first_keyword(sql).as_str(),
        "CREATE" | "DROP" | "ALTER" | "REINDEX" | "VACUUM" | "ANALYZE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_rule_and_unknown_ones_are_refused() {
        assert_eq!(rule_for("GET", "/livez"), Rule::Open);
        assert_eq!(rule_for("GET", "/status"), Rule::Needs(Permission::Status));
        assert_eq!(rule_for("POST", "/users"), Rule::Needs(Permission::Admin));
        assert_eq!(
            rule_for("DELETE", "/users/{name}"),
            Rule::Needs(Permission::Admin)
        );
        assert_eq!(
            rule_for("POST", "/db/load"),
            Rule::Needs(Permission::Restore)
        );
        assert_eq!(
            rule_for("GET", "/db/backup"),
            Rule::Needs(Permission::Backup)
        );
        assert_eq!(
            rule_for("POST", "/db/execute"),
            Rule::Sql(SqlEndpoint::Execute)
        );
        assert_eq!(rule_for("PATCH", "/status"), Rule::Unknown);
        assert_eq!(rule_for("GET", "/secret"), Rule::Unknown);
    }

    #[test]
    fn schema_changes_are_told_apart_past_comments() {
        assert!(is_ddl("  -- make it\n/* really */ create table t(x)"));
        assert!(is_ddl("DROP TABLE t"));
        assert!(is_ddl(" ; ;/*x*/; DROP TABLE t"));
        assert!(!is_ddl("INSERT INTO t VALUES(1)"));
        assert!(!is_ddl(
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"
        ));
    }
}
