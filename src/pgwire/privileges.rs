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
use crate::db::database::Database;
use crate::pgwire::session::Session;
use crate::pgwire::sqlstate::{self, error_info};
use crate::raft::types::Statement;

pub struct Privileges {
    gate: Arc<Gate>,
    database: Arc<Database>,
}

impl Privileges {
    pub fn new(gate: Arc<Gate>, database: Arc<Database>) -> Privileges {
        Privileges { gate, database }
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
        let user = self.session_user(session).await?;
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
        let read_only = self.database.all_read_only(&plain).await.unwrap_or(false);
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
        let refusal = match self.session_user(session).await? {
            Some(user) => grants::sql_refusal(&self.database, &user, needed, statements).await,
            // Removed since it logged in: it holds nothing.
            None => Some(SqlRefusal::cluster_wide(needed[0])),
        };
        conclude(session, needed, refusal)
    }

    /// The session's user as replicated now (`None` once removed).
    async fn session_user(&self, session: &Session) -> Result<Option<User>, Box<ErrorInfo>> {
        self.gate
            .user(&self.database, &session.user)
            .await
            .map_err(|e| {
                error_info(
                    sqlstate::CANNOT_CONNECT_NOW,
                    format!("users unavailable: {e}"),
                )
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
