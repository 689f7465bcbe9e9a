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
use pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_DATABASE, METADATA_USER, PgWireConnectionState,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rand::RngCore;

use crate::auth::gate::Gate;
use crate::auth::scram::{decoy_verifier, parse_verifier};
use crate::catalog::databases::Databases;
use crate::pgwire::sqlstate;

/// The startup handler of every connection.
/// The metadata key under which login records the database a connection uses (the name the
/// client gave, or the default database for the names clients send by default).
pub const SESSION_DATABASE: &str = "shoal.database";

/// Names clients send when the user named no database (libpq's default is the user name;
/// tools connect to `postgres` or `template1`): they mean the default database, unless a
/// database of that name exists.
const DEFAULT_DATABASE_ALIASES: &[&str] = &["postgres", "template0", "template1"];

pub struct Login {
    gate: Arc<Gate>,
    databases: Arc<Databases>,
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
        databases: Arc<Databases>,
        connections: Arc<ConnectionManager>,
        tls_required: bool,
    ) -> Login {
        let mut decoy_secret = [0u8; 32];
        rand::rng().fill_bytes(&mut decoy_secret);
        let source = Arc::new(Verifiers {
            gate: gate.clone(),
            databases: databases.clone(),
            decoy_secret,
        });
        let scram =
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(ScramAuth::new(source))
                .with_connection_manager(connections.clone());
        Login {
            gate,
            databases,
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
        let connecting_to = match &message {
            PgWireFrontendMessage::Startup(startup) => {
                let resolved = connection_database(
                    &self.databases,
                    startup
                        .parameters
                        .get(METADATA_DATABASE)
                        .map(String::as_str),
                    startup
                        .parameters
                        .get(METADATA_USER)
                        .map_or("", String::as_str),
                )
                .await;
                match resolved {
                    Ok(name) => Some(name),
                    // With --auth, who has not logged in yet learns nothing about which
                    // databases exist: the session's statements are refused (3D000) instead.
                    Err(name) if self.gate.enabled() => Some(name),
                    Err(name) => {
                        return Err(fatal(
                            sqlstate::INVALID_CATALOG_NAME,
                            &format!("database \"{name}\" does not exist"),
                        ));
                    }
                }
            }
            _ => None,
        };
        if let Some(name) = connecting_to {
            client
                .metadata_mut()
                .insert(SESSION_DATABASE.to_string(), name);
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
                .users(&self.databases.users_store().group.database)
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
        if let PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body)) =
            &message
            && !client.metadata().contains_key(SASL_STARTED)
        {
            // pgwire decodes the initial response without bounds checks (a short or
            // mis-sized message panics the connection's task): check its layout first.
            if !is_sasl_initial_response(body) {
                tracing::warn!(target: "audit", event = "login_failed", user = %crate::auth::shown(&user), %from, route = "postgres", reason = "malformed SASL initial response");
                return Err(fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "malformed SASL initial response",
                ));
            }
            client
                .metadata_mut()
                .insert(SASL_STARTED.to_string(), String::new());
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
                // Only a wrong proof is a guess; protocol garbage costs the sender nothing and
                // must not lock a user out.
                let guessed = matches!(error, PgWireError::InvalidPassword(_));
                let locked = guessed && self.gate.login_failed(&user, &from);
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

/// Connection metadata key set once the SASL exchange has begun.
const SASL_STARTED: &str = "shoal.sasl_started";

/// Whether `body` is a well-formed SASLInitialResponse: a mechanism name ending in NUL, then
/// a signed 32-bit length that is -1 or exactly the bytes that follow.
pub(crate) fn is_sasl_initial_response(body: &[u8]) -> bool {
    let Some(nul) = body.iter().position(|b| *b == 0) else {
        return false;
    };
    let rest = &body[nul + 1..];
    let Some(length) = rest.get(..4) else {
        return false;
    };
    let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    length == -1 || usize::try_from(length).is_ok_and(|length| length == rest.len() - 4)
}

/// A FATAL error: the client is told, then disconnected.
/// The database a connection asking for `requested` uses, or the unknown name it asked for.
async fn connection_database(
    databases: &Databases,
    requested: Option<&str>,
    user: &str,
) -> Result<String, String> {
    let default = crate::catalog::view::DEFAULT_DATABASE;
    let Some(requested) = requested.filter(|name| !name.is_empty()) else {
        return Ok(default.to_string());
    };
    if requested == default {
        return Ok(requested.to_string());
    }
    let mut view = databases.view();
    if view.databases.contains_key(requested) {
        return Ok(requested.to_string());
    }
    if DEFAULT_DATABASE_ALIASES.contains(&requested) || requested == user {
        return Ok(default.to_string());
    }
    // Perhaps created through another node a moment ago. When the catalog cannot be asked,
    // the session starts and its statements are refused until the name resolves.
    match databases.catch_up().await {
        Ok(fresh) => view = fresh,
        Err(_) => return Ok(requested.to_string()),
    }
    if view.databases.contains_key(requested) || !view.ready {
        // Not listed while the catalog is not read yet: the session's statements are refused
        // until it lists the name.
        return Ok(requested.to_string());
    }
    Err(requested.to_string())
}

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
    databases: Arc<Databases>,
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
            .users(&self.databases.users_store().group.database)
            .await
            .map_err(|e| PgWireError::ApiError(e.into()))?;
        let secret = match users.get(name) {
            Some(user) => parse_verifier(&user.scram_verifier).unwrap_or_else(|| {
                tracing::warn!(user = %crate::auth::shown(name), "PostgreSQL login of a user without a SCRAM verifier (its password was set before they were kept): set a new password");
                decoy_verifier(&self.decoy_secret, name)
            }),
            None => decoy_verifier(&self.decoy_secret, name),
        };
        Ok((secret, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_responses_are_checked_before_pgwire_decodes_them() {
        let mut good = b"SCRAM-SHA-256\0".to_vec();
        good.extend(5i32.to_be_bytes());
        good.extend(b"n,,n=");
        assert!(is_sasl_initial_response(&good));
        let mut no_data = b"SCRAM-SHA-256\0".to_vec();
        no_data.extend((-1i32).to_be_bytes());
        assert!(is_sasl_initial_response(&no_data));
        for bad in [
            &b"password\0"[..],
            b"SCRAM-SHA-256",
            b"SCRAM-SHA-256\0\0\0",
            b"SCRAM-SHA-256\0\0\0\0\x09abc",
            b"SCRAM-SHA-256\0\xff\xff\xff\xfeabc",
        ] {
            assert!(!is_sasl_initial_response(bad), "{bad:?}");
        }
    }
}
