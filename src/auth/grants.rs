//! Per-table grants: `read` or `write` on named tables, for users who lack the cluster-wide
//! permission. Which tables a statement touches is SQLite's own account of it (the authorizer
//! reports every table read or written while the statement compiles, through views and
//! triggers too), so no SQL is parsed here.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::auth::{Permission, User};
use crate::db::database::Database;
use crate::db::guard::TableAccess;
use crate::raft::types::Statement;

pub use crate::types::users::TableGrants;

/// Tables one user may hold grants on, at most (the user record stays small).
pub const TABLE_GRANTS_MAX: usize = 1000;

/// SQLite's schema tables: describing the schema is not reading anybody's rows.
const SCHEMA_TABLES: [&str; 3] = ["sqlite_master", "sqlite_schema", "sqlite_temp_master"];

/// Checks grants as a client sent them and returns them with lower-case table names.
pub fn normalize(grants: &TableGrants) -> Result<TableGrants, String> {
    if grants.len() > TABLE_GRANTS_MAX {
        return Err(format!(
            "{} table grants: at most {TABLE_GRANTS_MAX} per user",
            grants.len()
        ));
    }
    let mut normalized = TableGrants::new();
    for (table, permissions) in grants {
        let valid_name = !table.is_empty()
            && table.len() <= 128
            && !table.chars().any(|c| c.is_control() || c == '"');
        if !valid_name {
            return Err(format!(
                "table name {table:?} must be 1 to 128 characters, without quotes or control characters"
            ));
        }
        if let Some(other) = permissions
            .iter()
            .find(|p| !matches!(p, Permission::Read | Permission::Write))
        {
            return Err(format!(
                "table {table:?}: {other} cannot be granted on a table (read or write only)"
            ));
        }
        if permissions.is_empty() {
            return Err(format!(
                "table {table:?}: no permission named (read, write)"
            ));
        }
        normalized
            .entry(table.to_ascii_lowercase())
            .or_default()
            .extend(permissions.iter().copied());
    }
    Ok(normalized)
}

/// Why a user may not run some statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlRefusal {
    pub permission: Permission,
    /// The table it lacks `permission` on, when tables were looked at.
    pub table: Option<String>,
    /// The statements' tables were needed but could not be told (one does not compile here).
    pub tables_unknown: bool,
}

impl SqlRefusal {
    /// Lacking `permission` cluster-wide, no table involved.
    pub fn cluster_wide(permission: Permission) -> SqlRefusal {
        SqlRefusal {
            permission,
            table: None,
            tables_unknown: false,
        }
    }

    /// A sentence naming the user, the permission and the table.
    pub fn describe(&self, user: &str) -> String {
        let mut sentence = format!("user {user:?} lacks the {} permission", self.permission);
        if let Some(table) = &self.table {
            sentence.push_str(&format!(" on table {table:?}"));
        }
        if self.tables_unknown {
            sentence.push_str(
                " (its table grants cannot be checked: a statement does not compile on this node, \
                 e.g. it names a table the same request creates)",
            );
        }
        sentence
    }
}

/// Whether `user` may run `statements`, which need `needed` cluster-wide. A user holding
/// both `read` and `write` cluster-wide needs nothing more. Otherwise the tables the
/// statements touch decide, whatever the endpoint asked for (a write reads through RETURNING,
/// a WHERE clause or INSERT … SELECT): each table read needs `read`, each written `write`,
/// cluster-wide or granted on it; a statement that changes something but no table (PRAGMA
/// user_version = …) needs `write` cluster-wide. Other permissions (`ddl`) have no table form.
pub async fn sql_refusal(
    database: &Arc<Database>,
    user: &User,
    needed: &[Permission],
    statements: &[Statement],
) -> Option<SqlRefusal> {
    let granted = user.effective_permissions();
    let row_permission = |p: &Permission| matches!(p, Permission::Read | Permission::Write);
    if let Some(&cluster_only) = needed
        .iter()
        .find(|p| !row_permission(p) && !granted.contains(p))
    {
        return Some(SqlRefusal::cluster_wide(cluster_only));
    }
    if granted.contains(&Permission::Read) && granted.contains(&Permission::Write) {
        return None;
    }
    let missing = needed.iter().copied().find(|p| !granted.contains(p));
    if statements.is_empty() || (missing.is_some() && user.tables.is_empty()) {
        // No grant could stand in for what is missing.
        return missing.map(SqlRefusal::cluster_wide);
    }
    let Ok(Some((access, read_only))) = database.table_access(statements).await else {
        // What the statements touch is unknown: only both cluster-wide permissions will do.
        let lacking = [Permission::Read, Permission::Write]
            .into_iter()
            .find(|p| !granted.contains(p))
            .unwrap_or(Permission::Read);
        return Some(SqlRefusal {
            permission: missing.unwrap_or(lacking),
            table: None,
            tables_unknown: true,
        });
    };
    if let Some(refusal) = refused_table(&granted, &user.tables, &access) {
        return Some(refusal);
    }
    if !read_only && access.written.is_empty() && !granted.contains(&Permission::Write) {
        return Some(SqlRefusal::cluster_wide(Permission::Write));
    }
    None
}

/// The first table in `access` neither `granted` cluster-wide nor by `tables` covers. Writes
/// to SQLite's schema tables (schema changes) need `write` cluster-wide.
pub fn refused_table(
    granted: &BTreeSet<Permission>,
    tables: &TableGrants,
    access: &TableAccess,
) -> Option<SqlRefusal> {
    let is_schema = |table: &str| SCHEMA_TABLES.contains(&table);
    let allowed = |permission: Permission, table: &str| {
        granted.contains(&permission)
            || (!is_schema(table)
                && tables
                    .get(table)
                    .is_some_and(|held| held.contains(&permission)))
    };
    let reads = access
        .read
        .iter()
        .filter(|table| !is_schema(table))
        .map(|table| (Permission::Read, table));
    let writes = access
        .written
        .iter()
        .map(|table| (Permission::Write, table));
    reads
        .chain(writes)
        .find(|(permission, table)| !allowed(*permission, table))
        .map(|(permission, table)| SqlRefusal {
            permission,
            table: (!is_schema(table)).then(|| table.clone()),
            tables_unknown: false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(read: &[&str], written: &[&str]) -> TableAccess {
        TableAccess {
            read: read.iter().map(|t| t.to_string()).collect(),
            written: written.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn grants(entries: &[(&str, &[Permission])]) -> TableGrants {
        entries
            .iter()
            .map(|(table, held)| (table.to_string(), held.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn every_table_touched_must_be_covered() {
        let tables = grants(&[
            ("orders", &[Permission::Read, Permission::Write]),
            ("items", &[Permission::Read]),
        ]);
        let none = BTreeSet::new();
        assert_eq!(
            refused_table(&none, &tables, &access(&["orders", "items"], &[])),
            None
        );
        assert_eq!(
            refused_table(&none, &tables, &access(&["orders"], &["orders"])),
            None
        );
        assert_eq!(
            refused_table(&none, &tables, &access(&["items"], &["items"])),
            Some(SqlRefusal {
                permission: Permission::Write,
                table: Some("items".into()),
                tables_unknown: false,
            })
        );
        assert_eq!(
            refused_table(&none, &tables, &access(&["secrets"], &["orders"])),
            Some(SqlRefusal {
                permission: Permission::Read,
                table: Some("secrets".into()),
                tables_unknown: false,
            })
        );
        // Reading the schema is not reading rows; changing it needs write cluster-wide.
        assert_eq!(
            refused_table(&none, &tables, &access(&["sqlite_master"], &[])),
            None
        );
        let schema_grant = grants(&[("sqlite_master", &[Permission::Write])]);
        assert_eq!(
            refused_table(&none, &schema_grant, &access(&[], &["sqlite_master"])),
            Some(SqlRefusal::cluster_wide(Permission::Write))
        );
    }

    #[test]
    fn a_cluster_wide_permission_covers_every_table() {
        let tables = grants(&[("orders", &[Permission::Write])]);
        let read = BTreeSet::from([Permission::Read]);
        assert_eq!(
            refused_table(&read, &tables, &access(&["secrets", "orders"], &["orders"])),
            None
        );
        assert!(refused_table(&read, &tables, &access(&[], &["secrets"])).is_some());
    }

    #[test]
    fn grants_are_checked_and_lower_cased() {
        let sent = grants(&[("Orders", &[Permission::Read])]);
        assert_eq!(
            normalize(&sent).unwrap(),
            grants(&[("orders", &[Permission::Read])])
        );
        let ddl = grants(&[("orders", &[Permission::Ddl])]);
        assert!(normalize(&ddl).unwrap_err().contains("read or write only"));
        let empty = grants(&[("orders", &[])]);
        assert!(normalize(&empty).unwrap_err().contains("no permission"));
        let quoted = grants(&[("a\"b", &[Permission::Read])]);
        assert!(normalize(&quoted).unwrap_err().contains("table name"));
    }
}
