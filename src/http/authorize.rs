//! Authentication and authorization of HTTP requests (`--auth`): HTTP Basic credentials or a
//! bearer token checked against the replicated users (`auth::gate`), the route's rule from
//! `auth::access`, the grants the user holds in the database a request acts on, and every
//! login, denial and lockout written to the audit log (tracing target `audit`) — who, what,
//! from where; never a password.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::access::{Rule, SqlEndpoint, is_ddl, rule_for};
use crate::auth::gate::{
    AuthenticatedUser, Gate, VERIFICATION_WAIT, basic_credentials, with_caller_authorization,
};
use crate::auth::{Permission, User, Users, verify_password};
use crate::db::database::Database;
use crate::http::ApiState;
use crate::raft::types::Statement;

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::json!({"error": message}).to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"shoal\""),
        );
    }
    response
}

/// What a request presents to prove who sends it.
enum Presented {
    /// `Authorization: Basic base64(user:password)`.
    Password(String, String),
    /// `Authorization: Bearer <token>` (from `POST /auth/token`).
    Token(String),
}

impl Presented {
    /// The user it claims to be (for lockouts and the audit log).
    fn user(&self) -> String {
        match self {
            Presented::Password(user, _) => user.clone(),
            Presented::Token(token) => {
                crate::auth::token::claimed_user(token).unwrap_or_else(|| "?".into())
            }
        }
    }
}

fn presented(request: &Request) -> Option<Presented> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    if let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        return Some(Presented::Token(token.trim().to_string()));
    }
    let (name, password) = basic_credentials(value)?;
    Some(Presented::Password(name, password))
}

/// The middleware: every request passes the route's rule or is refused (401 without valid
/// credentials, 403 without the permission, 429 while locked out).
pub async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let gate = state.gate.clone();
    if !gate.enabled() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let method = request.method().as_str().to_string();
    let from = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".to_string(), |info| info.0.ip().to_string());
    let rule = rule_for(&method, &route);
    if rule == Rule::Open {
        return next.run(request).await;
    }
    let Some(credentials) = presented(&request) else {
        tracing::warn!(target: "audit", event = "login_failed", reason = "no credentials", %from, %method, %route);
        return refuse(
            StatusCode::UNAUTHORIZED,
            "authentication required (HTTP Basic or a bearer token)",
        );
    };
    let name = credentials.user();
    if gate.login_locked(&name, &from) {
        tracing::warn!(target: "audit", event = "login_locked_out", user = %crate::auth::shown(&name), %from, %route);
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins: locked out for a while",
        );
    }
    let users = match gate
        .users(&state.databases.users_store().group.database)
        .await
    {
        Ok(users) => users,
        Err(error) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("users unavailable: {error}"),
            );
        }
    };
    if users.is_empty() {
        // A new cluster creates its first admin moments after start: nothing can succeed yet,
        // and nothing should count as a failed login.
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "authentication is on and no user exists yet (a new cluster creates its first admin at start-up)",
        );
    }
    // A bounded number of verifications at once; the lockout is checked again once it is
    // this request's turn, so concurrent guesses cannot all slip past it.
    let Ok(Ok(turn)) = tokio::time::timeout(VERIFICATION_WAIT, gate.verifications.acquire()).await
    else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many logins at once: try again",
        );
    };
    if gate.login_locked(&name, &from) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins: locked out for a while",
        );
    }
    let checked = match users.get(&name) {
        Some(user) => proves(&gate, user, &credentials, &from)
            .await
            .map(|()| user.clone()),
        None => {
            // As long as checking a real user's password, so timing does not tell which
            // users exist.
            if let Presented::Password(_, password) = &credentials {
                spend_a_verification(password).await;
            }
            Err("wrong user name or password")
        }
    };
    let user = match checked {
        Ok(user) => user,
        Err(reason) => {
            if let Presented::Password(_, password) = &credentials
                && gate.arriving_from_auth_file(&name, password)
            {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "user {} of --auth-file is not in the cluster's users yet (the leader \
                         brings them in moments after start): retry shortly",
                        crate::auth::shown(&name)
                    ),
                );
            }
            let locked = gate.login_failed(&name, &from);
            tracing::warn!(target: "audit", event = "login_failed", user = %crate::auth::shown(&name), %from, %method, %route, reason, locked);
            return refuse(StatusCode::UNAUTHORIZED, reason);
        }
    };
    drop(turn);
    gate.login_succeeded(&name);
    let target = target_database(&state, rule, &route, request.uri().query()).await;
    let (needed, statements, request) =
        match needed_permissions(&state, rule, request, target.as_ref()).await {
            Ok(needed) => needed,
            Err(response) => return response,
        };
    // A request in one database sees the user with the grants it holds there — except a
    // statement managing databases (CREATE/DROP/ALTER DATABASE), which is cluster-wide.
    let manages_databases = statements
        .iter()
        .any(|s| crate::catalog::sql::parse(&s.sql).is_some());
    let user = match &target {
        Some(target) if !manages_databases => user.in_database(target.group),
        _ => user,
    };
    let database = target
        .as_ref()
        .and_then(|t| t.database.clone())
        .unwrap_or_else(|| state.service.group.database.clone());
    let database = &database;
    if let Some(refusal) =
        crate::auth::grants::sql_refusal(database, &user, &needed, &statements).await
    {
        let table = refusal.table.as_deref().unwrap_or_default();
        tracing::warn!(target: "audit", event = "permission_denied", user = %crate::auth::shown(&name), %from, %method, %route, permission = %refusal.permission, table);
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("{} for {method} {route}", refusal.describe(&name)),
        );
    }
    if needed.iter().any(|p| {
        matches!(
            p,
            Permission::Ddl
                | Permission::Admin
                | Permission::Restore
                | Permission::Backup
                | Permission::Join
                | Permission::JoinReplica
        )
    }) {
        tracing::info!(target: "audit", event = "allowed", user = %crate::auth::shown(&name), %from, %method, %route, permissions = ?needed);
    }
    let mut request = request;
    request.extensions_mut().insert(AuthenticatedUser {
        name: user.name.clone(),
        by_password: matches!(credentials, Presented::Password(..)),
    });
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    with_caller_authorization(authorization, next.run(request)).await
}

/// Verifies `password` against a hash no password matches (made once per process).
async fn spend_a_verification(password: &str) {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let password = password.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        let hash = DECOY.get_or_init(|| {
            let mut random = [0u8; 24];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
            crate::auth::hash_password(&hex::encode(random)).unwrap_or_default()
        });
        verify_password(hash, &password)
    })
    .await;
}

/// Whether `credentials` prove to be `user` (its password, or a valid unexpired token of
/// it), or why not.
async fn proves(
    gate: &Gate,
    user: &User,
    credentials: &Presented,
    from: &str,
) -> Result<(), &'static str> {
    match credentials {
        Presented::Password(_, password) => {
            if gate.check_password(user, password, from).await {
                Ok(())
            } else {
                Err("wrong user name or password")
            }
        }
        Presented::Token(token) => {
            let one: Users = [(user.name.clone(), user.clone())].into();
            crate::auth::token::verify(token, &one, crate::backup::now_ms()).map(|_| ())
        }
    }
}

/// What the request needs, with an SQL request's statements (for users lacking read or write
/// cluster-wide, the tables they touch decide); SQL and join rules look at the body (put back
/// for the handler).
async fn needed_permissions(
    state: &ApiState,
    rule: Rule,
    request: Request,
    target: Option<&TargetDatabase>,
) -> Result<(Vec<Permission>, Vec<Statement>, Request), Response> {
    match rule {
        Rule::Open | Rule::Authenticated => Ok((Vec::new(), Vec::new(), request)),
        Rule::Needs(permission) => Ok((vec![permission], Vec::new(), request)),
        Rule::Unknown => Err(refuse(
            StatusCode::FORBIDDEN,
            "this endpoint has no permission rule: refused",
        )),
        Rule::Join => {
            let (request, body) = buffer(request, state.body_bytes_max).await?;
            let voter = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("voter").and_then(serde_json::Value::as_bool))
                .unwrap_or(true);
            let needed = if voter {
                Permission::Join
            } else {
                Permission::JoinReplica
            };
            Ok((vec![needed], Vec::new(), request))
        }
        Rule::Sql(endpoint) => {
            let query = request.uri().query().map(str::to_string);
            let plain_text = crate::http::is_plain_text(request.headers());
            let (request, body) = buffer(request, state.body_bytes_max).await?;
            let statements =
                crate::http::statements_for_authorization(query.as_deref(), plain_text, &body);
            let mut needed = vec![match endpoint {
                SqlEndpoint::Query => Permission::Read,
                SqlEndpoint::Execute => Permission::Write,
                SqlEndpoint::Request => {
                    let database = target
                        .and_then(|t| t.database.as_ref())
                        .unwrap_or(&state.service.group.database);
                    let read_only = database.all_read_only(&statements).await.unwrap_or(false);
                    if read_only {
                        Permission::Read
                    } else {
                        Permission::Write
                    }
                }
            }];
            if endpoint != SqlEndpoint::Query && statements.iter().any(|s| is_ddl(&s.sql)) {
                needed.push(Permission::Ddl);
            }
            Ok((needed, statements, request))
        }
    }
}

/// The database a request acts on, for its grants.
struct TargetDatabase {
    group: crate::raft::types::GroupId,
    /// Its replica on this node (to tell the tables statements touch), if there is one.
    database: Option<Arc<Database>>,
}

/// The database named by `db=` (the default one when absent) for routes that act on one
/// database — SQL, loads and backups; `None` for cluster-wide routes and unknown names (the
/// handler answers 404 for those).
async fn target_database(
    state: &ApiState,
    rule: Rule,
    route: &str,
    query: Option<&str>,
) -> Option<TargetDatabase> {
    let per_database = matches!(rule, Rule::Sql(_))
        || route == "/db/backup"
        || route == "/db/load"
        || route == "/backup"
        || route.starts_with("/backup/");
    if !per_database {
        return None;
    }
    let name = query.and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(key, _)| key == "db")
            .map(|(_, value)| value)
    });
    let resolved = state.databases.resolve_fresh(name.as_deref()).await.ok()?;
    Some(TargetDatabase {
        group: resolved.group,
        database: resolved
            .local()
            .map(|service| service.group.database.clone()),
    })
}

/// Reads the body (bounded) and returns the request with it put back.
async fn buffer(request: Request, limit: usize) -> Result<(Request, bytes::Bytes), Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
    Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}
