//! What a PostgreSQL session's user may run (with `--auth`): reads need `read`, anything
//! SQLite does not call read-only needs `write`, schema changes also `ddl`, or table grants
//! covering the tables touched — the same rules as the HTTP API's, checked on every statement against the users as replicated now (a
//! revoked permission holds from the next statement). A refusal is SQLSTATE 42501 and is
//! audited.

use std::sync::Arc;

use pgwire::error::ErrorInfo;

use crate::auth::access::is_ddl;
use crate::auth::gate::Gate;
use crate::auth::grants;
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

    /// The first of `needed` the session's user lacks, as replicated now.
    async fn missing(
        &self,
        session: &Session,
        needed: &[Permission],
    ) -> Result<Option<Permission>, Box<ErrorInfo>> {
        self.gate
            .missing_permission(&self.database, &session.user, needed)
            .await
            .map_err(|e| {
                error_info(
                    sqlstate::CANNOT_CONNECT_NOW,
                    format!("users unavailable: {e}"),
                )
            })
    }

    /// Refuses unless the session's user holds every one of `needed`.
    pub async fn require(
        &self,
        session: &Session,
        needed: &[Permission],
    ) -> Result<(), Box<ErrorInfo>> {
        if !self.gate.enabled() || needed.is_empty() {
            return Ok(());
        }
        match self.missing(session, needed).await? {
            None => {
                if needed.contains(&Permission::Ddl) {
                    tracing::info!(target: "audit", event = "allowed", user = %crate::auth::shown(&session.user), route = "postgres", permissions = ?needed);
                }
                Ok(())
            }
            Some(permission) => {
                tracing::warn!(target: "audit", event = "permission_denied", user = %crate::auth::shown(&session.user), route = "postgres", %permission);
                Err(error_info(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!(
                        "permission denied: user \"{}\" lacks the {permission} permission",
                        session.user
                    ),
                ))
            }
        }
    }

    /// Refuses unless the session's user holds at least one of `any` (`read` and `write` are
    /// held by a user with grants on some table, too).
    pub async fn require_one_of(
        &self,
        session: &Session,
        any: &[Permission],
    ) -> Result<(), Box<ErrorInfo>> {
        if !self.gate.enabled() {
            return Ok(());
        }
        if any
            .iter()
            .any(|p| matches!(p, Permission::Read | Permission::Write))
            && self
                .session_user(session)
                .await?
                .is_some_and(|user| !user.tables.is_empty())
        {
            return Ok(());
        }
        for permission in any {
            if self.missing(session, &[*permission]).await?.is_none() {
                return Ok(());
            }
        }
        // None held: refused (and audited) as lacking the first.
        self.require(session, &any[..any.len().min(1)]).await
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
        let Some(user) = self.session_user(session).await? else {
            // Removed since it logged in: it holds nothing.
            return self.require(session, needed).await;
        };
        match grants::sql_refusal(&self.database, &user, needed, statements).await {
            None => {
                if needed.contains(&Permission::Ddl) {
                    tracing::info!(target: "audit", event = "allowed", user = %crate::auth::shown(&session.user), route = "postgres", permissions = ?needed);
                }
                Ok(())
            }
            Some(refusal) => {
                let table = refusal.table.as_deref().unwrap_or_default();
                tracing::warn!(target: "audit", event = "permission_denied", user = %crate::auth::shown(&session.user), route = "postgres", permission = %refusal.permission, table);
                Err(error_info(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!("permission denied: {}", refusal.describe(&session.user)),
                ))
            }
        }
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
