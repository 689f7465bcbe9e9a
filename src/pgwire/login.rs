//! Who may open a PostgreSQL session. Without `--auth`, every client is accepted (trust, the
//! embedded default). With it, clients prove their password with SCRAM-SHA-256 against the
//! verifier stored beside the user's Argon2id hash; failures share the HTTP endpoint's
//! lockouts and audit events, and every refusal is one FATAL message that does not say
//! whether the user exists.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, StartupHandler};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rand::RngCore;

use crate::auth::gate::Gate;
use crate::auth::scram::{decoy_verifier, parse_verifier};
use crate::db::database::Database;
use crate::pgwire::sqlstate;

/// The startup handler of every connection.
pub struct Login {
    gate: Arc<Gate>,
    database: Arc<Database>,
    trust: Trust,
    scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    /// Refuse clients that did not negotiate TLS (the node runs TLS).
    tls_required: bool,
}

/// Accepts every client and registers it for cancel requests (no `--auth`).
struct Trust {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

impl Login {
    pub fn new(
        gate: Arc<Gate>,
        database: Arc<Database>,
        connections: Arc<ConnectionManager>,
        tls_required: bool,
    ) -> Login {
        let mut decoy_secret = [0u8; 32];
        rand::rng().fill_bytes(&mut decoy_secret);
        let source = Arc::new(Verifiers {
            gate: gate.clone(),
            database: database.clone(),
            decoy_secret,
        });
        let scram =
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(ScramAuth::new(source))
                .with_connection_manager(connections.clone());
        Login {
            gate,
            database,
            trust: Trust { connections },
            scram,
            tls_required,
        }
    }
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required
            && !client.is_secure()
            && matches!(message, PgWireFrontendMessage::Startup(_))
        {
            return Err(fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "this server requires TLS: connect with sslmode=require or verify-full",
            ));
        }
        if !self.gate.enabled() {
            return self.trust.on_startup(client, message).await;
        }
        let from = client.socket_addr().ip().to_string();
        let user = match &message {
            PgWireFrontendMessage::Startup(startup) => startup
                .parameters
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default(),
            _ => client
                .metadata()
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default(),
        };
        if matches!(message, PgWireFrontendMessage::Startup(_)) {
            if self.gate.login_locked(&user, &from) {
                tracing::warn!(target: "audit", event = "login_locked_out", user = %crate::auth::shown(&user), %from, route = "postgres");
                return Err(fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    "too many failed logins: locked out for a while",
                ));
            }
            let no_users = self
                .gate
                .users(&self.database)
                .await
                .map(|users| users.is_empty())
                .unwrap_or(true);
            if no_users {
                return Err(fatal(
                    sqlstate::CANNOT_CONNECT_NOW,
                    "authentication is on and no user exists yet (a new cluster creates its \
                     first admin at start-up)",
                ));
            }
        }
        match self.scram.on_startup(client, message).await {
            Ok(()) => {
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    self.gate.login_succeeded(&user);
                    tracing::info!(target: "audit", event = "login", user = %crate::auth::shown(&user), %from, route = "postgres");
                }
                Ok(())
            }
            Err(error) => {
                let locked = self.gate.login_failed(&user, &from);
                let reason = error.to_string();
                tracing::warn!(target: "audit", event = "login_failed", user = %crate::auth::shown(&user), %from, route = "postgres", %reason, locked);
                Err(fatal(
                    sqlstate::INVALID_PASSWORD,
                    &format!("password authentication failed for user \"{user}\""),
                ))
            }
        }
    }
}

/// A FATAL error: the client is told, then disconnected.
fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message.to_string(),
    )))
}

/// The SCRAM verifiers of the replicated users.
struct Verifiers {
    gate: Arc<Gate>,
    database: Arc<Database>,
    /// Keys the decoy verifiers of unknown users (random per process).
    decoy_secret: [u8; 32],
}

impl Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers").finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for Verifiers {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<pgwire::api::auth::Password> {
        // Only SCRAM is offered, which asks for `get_scram_secret`; no password is kept.
        Err(PgWireError::InvalidSASLState)
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let name = login.user().unwrap_or_default();
        let users = self
            .gate
            .users(&self.database)
            .await
            .map_err(|e| PgWireError::ApiError(e.into()))?;
        let secret = users
            .get(name)
            .and_then(|user| parse_verifier(&user.scram_verifier))
            .unwrap_or_else(|| decoy_verifier(&self.decoy_secret, name));
        Ok((secret, None))
    }
}
