//! What a PostgreSQL session's user may run (with `--auth`): reads need `read`, anything
//! SQLite does not call read-only needs `write`, schema changes also `ddl`, or table grants
//! covering the tables touched — the same rules as the HTTP API's, checked on every statement against the users as replicated now (a
//! revoked permission holds from the next statement). A refusal is SQLSTATE 42501 and is
//! audited.

use std::sync::Arc;

use pgwire::error::ErrorInfo;

use crate::auth::access::is_ddl;
use crate::auth::gate::Gate;
use crate::auth::grants::{self, SqlRefusal};
use crate::auth::{Permission, User};
use crate::catalog::databases::Databases;
use crate::db::database::Database;
use crate::pgwire::session::Session;
use crate::pgwire::sqlstate::{self, error_info};
use crate::raft::types::Statement;

pub struct Privileges {
    gate: Arc<Gate>,
    databases: Arc<Databases>,
}

impl Privileges {
    pub fn new(gate: Arc<Gate>, databases: Arc<Databases>) -> Privileges {
        Privileges { gate, databases }
    }

    /// The session's database's replica on this node, where the tables statements touch are
    /// told; the default database's when it has none here (statements that do not compile
    /// there then need `read` and `write` outright).
    fn tables_database(&self, session: &Session) -> Arc<Database> {
        self.databases
            .resolve(Some(&session.database))
            .ok()
            .and_then(|database| database.local().map(|s| s.group.database.clone()))
            .unwrap_or_else(|| self.databases.default_service().group.database.clone())
    }

    /// Refuses unless the session's user holds `permission` cluster-wide (managing databases:
    /// grants in one database do not count).
    pub async fn require_cluster_wide(
        &self,
        session: &Session,
        permission: Permission,
    ) -> Result<(), Box<ErrorInfo>> {
        if !self.gate.enabled() {
            return Ok(());
        }
        let held = self
            .session_user(session, false)
            .await?
            .is_some_and(|user| user.effective_permissions().contains(&permission));
        let refusal = (!held).then(|| SqlRefusal::cluster_wide(permission));
        conclude(session, &[permission], refusal)
    }

    /// Refuses unless the session's user holds at least one of `any` (`read` and `write` are
    /// held by a user with grants on some table, too).
    pub async fn require_one_of(
        &self,
        session: &Session,
        any: &[Permission],
    ) -> Result<(), Box<ErrorInfo>> {
        let Some(&first) = any.first() else {
            return Ok(());
        };
        if !self.gate.enabled() {
            return Ok(());
        }
        let user = self.session_user(session, true).await?;
        let holds_some_table = user.as_ref().is_some_and(|user| !user.tables.is_empty());
        let granted = user
            .map(|user| user.effective_permissions())
            .unwrap_or_default();
        let held = any.iter().any(|p| {
            granted.contains(p)
                || (holds_some_table && matches!(p, Permission::Read | Permission::Write))
        });
        // None held: refused (and audited) as lacking the first.
        let refusal = (!held).then(|| SqlRefusal::cluster_wide(first));
        conclude(session, &[first], refusal)
    }

    /// Refuses unless the user may run `statements` (SQLite's text): `read` when SQLite
    /// says every one is read-only, else `write`; `ddl` too for a schema change.
    pub async fn require_for(
        &self,
        session: &Session,
        statements: &[String],
    ) -> Result<(), Box<ErrorInfo>> {
        if !self.gate.enabled() || statements.is_empty() {
            return Ok(());
        }
        let plain: Vec<Statement> = statements
            .iter()
            .map(|s| Statement::plain(s.clone()))
            .collect();
        // A statement SQLite cannot compile (yet) is treated as a write: never less than it
        // may turn out to need.
        let tables = self.tables_database(session);
        let read_only = tables.all_read_only(&plain).await.unwrap_or(false);
        let needed = needed(read_only, statements.iter().any(|s| is_ddl(s)));
        self.require_with_tables(session, &needed, &plain).await
    }

    /// Refuses unless the session's user holds `needed` cluster-wide, or its table grants
    /// cover every table `statements` read and write (for `read` and `write`).
    pub async fn require_with_tables(
        &self,
        session: &Session,
        needed: &[Permission],
        statements: &[Statement],
    ) -> Result<(), Box<ErrorInfo>> {
        if !self.gate.enabled() || needed.is_empty() {
            return Ok(());
        }
        let tables = self.tables_database(session);
        let refusal = match self.session_user(session, true).await? {
            Some(user) => grants::sql_refusal(&tables, &user, needed, statements).await,
            // Removed since it logged in: it holds nothing.
            None => Some(SqlRefusal::cluster_wide(needed[0])),
        };
        conclude(session, needed, refusal)
    }

    /// The session's user as replicated now (`None` once removed); `in_database`: with the
    /// grants it holds in the session's database.
    async fn session_user(
        &self,
        session: &Session,
        in_database: bool,
    ) -> Result<Option<User>, Box<ErrorInfo>> {
        let user = self
            .gate
            .user(&self.databases.users_store().group.database, &session.user)
            .await
            .map_err(|e| {
                error_info(
                    sqlstate::CANNOT_CONNECT_NOW,
                    format!("users unavailable: {e}"),
                )
            })?;
        if !in_database {
            return Ok(user);
        }
        let group = session.database_group.get().copied().or_else(|| {
            self.databases
                .resolve(Some(&session.database))
                .ok()
                .map(|database| database.group)
        });
        Ok(match (user, group) {
            (Some(user), Some(group)) => Some(user.in_database(group)),
            (user, _) => user,
        })
    }
}

/// Audits the decision on a statement needing `needed` and turns a refusal into 42501.
fn conclude(
    session: &Session,
    needed: &[Permission],
    refusal: Option<SqlRefusal>,
) -> Result<(), Box<ErrorInfo>> {
    let user = crate::auth::shown(&session.user);
    match refusal {
        None => {
            if needed.contains(&Permission::Ddl) {
                tracing::info!(target: "audit", event = "allowed", %user, route = "postgres", permissions = ?needed);
            }
            Ok(())
        }
        Some(refusal) => {
            let table = refusal.table.as_deref().unwrap_or_default();
            tracing::warn!(target: "audit", event = "permission_denied", %user, route = "postgres", permission = %refusal.permission, table);
            Err(error_info(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("permission denied: {}", refusal.describe(&session.user)),
            ))
        }
    }
}

/// The permissions a statement needs, given whether it only reads and changes the schema.
pub fn needed(read_only: bool, ddl: bool) -> Vec<Permission> {
    let mut needed = vec![if read_only {
        Permission::Read
    } else {
        Permission::Write
    }];
    if ddl {
        needed.push(Permission::Ddl);
    }
    needed
}
