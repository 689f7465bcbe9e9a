//! The users API: `GET /users`, `POST /users`, `PUT /users/{name}/password`,
//! `POST /users/{name}/grant`, `POST /users/{name}/revoke`, `DELETE /users/{name}`. Changes go
//! through the log on the leader (a follower passes the request on); answers never carry a
//! password or a hash.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::grants::{self, TableGrants};
use crate::auth::{
    DATABASE_GRANTS_MAX, DATABASE_PERMISSIONS, DatabaseGrants, PasswordSecrets, Permission, User,
    UserChange, Users, check_name, check_roles,
};
use crate::http::{ApiState, json_response};
use crate::service::Service;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/auth/token", post(token))
        .route("/users", get(list).post(add))
        .route("/users/{name}", axum::routing::delete(remove))
        .route("/users/{name}/password", put(password))
        .route("/users/{name}/grant", post(grant))
        .route("/users/{name}/revoke", post(revoke))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json_response(status, &json!({"error": message.to_string()}), true)
}

/// A refusal on its way to becoming a response (small, unlike a `Response`).
struct Refusal(StatusCode, String);

impl Refusal {
    fn new(status: StatusCode, message: impl std::fmt::Display) -> Refusal {
        Refusal(status, message.to_string())
    }

    fn response(self) -> Response {
        error(self.0, self.1)
    }
}

async fn current_users(state: &ApiState) -> Result<Users, Refusal> {
    state
        .databases
        .users_store()
        .group
        .database
        .users()
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// Whether this node leads the group user changes go to (the catalog's, or the default
/// database's in a cluster whose users have not moved yet); otherwise the answer to send: the
/// request forwarded to that leader, or 503 while the users are moving.
async fn lead_or_forward(
    state: &ApiState,
    method: Method,
    path: &str,
    body: &[u8],
) -> Result<Arc<Service>, Box<Response>> {
    let users = match state.databases.users_service() {
        Ok(users) => users,
        Err(e) => return Err(Box::new(error(crate::http::render::status_for(&e), e))),
    };
    if users.group.raft.is_leader() {
        Ok(users)
    } else {
        Err(Box::new(forward(state, &users, method, path, body).await))
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    ttl: Option<String>,
}

/// `POST /auth/token[?ttl=30m]`: a bearer token for the authenticated caller (default 1 h, at
/// most 24 h), usable on every node until it expires or the password changes.
async fn token(
    State(state): State<ApiState>,
    caller: Option<axum::Extension<crate::auth::gate::AuthenticatedUser>>,
    axum::extract::Query(query): axum::extract::Query<TokenQuery>,
) -> Response {
    let Some(axum::Extension(caller)) = caller else {
        return error(
            StatusCode::BAD_REQUEST,
            "authentication is off on this node (serve --auth): there is nobody to issue a token to",
        );
    };
    if !caller.by_password {
        return error(
            StatusCode::FORBIDDEN,
            "tokens are issued for a password only (a token cannot renew itself)",
        );
    }
    let ttl = match query.ttl.as_deref().map(humantime::parse_duration) {
        None => crate::auth::token::TTL_DEFAULT,
        Some(Ok(ttl)) if ttl <= crate::auth::token::TTL_MAX && !ttl.is_zero() => ttl,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "ttl must be a duration such as 30m, at most 24h",
            );
        }
    };
    let users = match current_users(&state).await {
        Ok(users) => users,
        Err(refusal) => return refusal.response(),
    };
    let Some(user) = users.get(&caller.name) else {
        return error(StatusCode::UNAUTHORIZED, "the user no longer exists");
    };
    let expires_ms = crate::backup::now_ms() + ttl.as_millis() as i64;
    match crate::auth::token::issue(user, expires_ms) {
        Some(token) => {
            tracing::info!(target: "audit", event = "token_issued", user = %user.name, ttl_s = ttl.as_secs());
            json_response(
                StatusCode::OK,
                &json!({"token": token, "expires_at": crate::backup::rfc3339_ms(expires_ms)}),
                true,
            )
        }
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "could not sign a token"),
    }
}

/// `GET /users`: every user with roles and permissions (as this node has applied them).
async fn list(State(state): State<ApiState>) -> Response {
    match current_users(&state).await {
        Ok(users) => {
            let public: Vec<_> = users.values().map(|u| shown_user(&state, u)).collect();
            let kept_in = if state.databases.view().users_in_catalog {
                "catalog"
            } else {
                "default database"
            };
            json_response(
                StatusCode::OK,
                &json!({"users": public, "kept_in": kept_in}),
                true,
            )
        }
        Err(refusal) => refusal.response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    roles: BTreeSet<String>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    tables: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    databases: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Grants {
    #[serde(default)]
    roles: BTreeSet<String>,
    #[serde(default)]
    permissions: Vec<String>,
    /// Table → ["read", "write"].
    #[serde(default)]
    tables: BTreeMap<String, Vec<String>>,
    /// Database → ["read", "write", "ddl", "backup", "restore"].
    #[serde(default)]
    databases: BTreeMap<String, Vec<String>>,
}

/// Roles, permissions and grants as a request sent them.
struct SentGrants<'a> {
    roles: &'a BTreeSet<String>,
    permissions: &'a [String],
    tables: &'a BTreeMap<String, Vec<String>>,
    databases: &'a BTreeMap<String, Vec<String>>,
}

/// The same, checked: known roles and permissions, valid table names, existing databases.
struct CheckedGrants {
    permissions: BTreeSet<Permission>,
    tables: TableGrants,
    databases: DatabaseGrants,
}

impl SentGrants<'_> {
    async fn check(&self, state: &ApiState) -> Result<CheckedGrants, String> {
        check_roles(self.roles)?;
        Ok(CheckedGrants {
            permissions: parse_permissions(self.permissions)?,
            tables: parse_table_grants(self.tables)?,
            databases: parse_database_grants(state, self.databases).await?,
        })
    }
}

fn parse_permissions(names: &[String]) -> Result<BTreeSet<Permission>, String> {
    names.iter().map(|name| Permission::parse(name)).collect()
}

/// `{"orders": ["read", "write"]}` → checked grants with lower-case table names.
fn parse_table_grants(sent: &BTreeMap<String, Vec<String>>) -> Result<TableGrants, String> {
    let parsed = sent
        .iter()
        .map(|(table, names)| Ok((table.clone(), parse_permissions(names)?)))
        .collect::<Result<TableGrants, String>>()?;
    grants::normalize(&parsed)
}

/// `{"orders": ["read", "write"]}` → grants by the databases' groups. Each database must
/// exist (`#<group>` names one by its group, for revoking grants in a dropped database);
/// only [`DATABASE_PERMISSIONS`] can be granted in one database.
async fn parse_database_grants(
    state: &ApiState,
    sent: &BTreeMap<String, Vec<String>>,
) -> Result<DatabaseGrants, String> {
    if sent.len() > DATABASE_GRANTS_MAX {
        return Err(format!(
            "grants in {} databases: at most {DATABASE_GRANTS_MAX}",
            sent.len()
        ));
    }
    let mut parsed = DatabaseGrants::new();
    for (name, names) in sent {
        let permissions = parse_permissions(names)?;
        if permissions.is_empty() {
            return Err(format!("database {name:?}: no permission named"));
        }
        if let Some(other) = permissions
            .iter()
            .find(|p| !DATABASE_PERMISSIONS.contains(p))
        {
            return Err(format!(
                "database {name:?}: {other} cannot be granted in one database (one of {})",
                DATABASE_PERMISSIONS.map(Permission::name).join(", ")
            ));
        }
        let group = match name.strip_prefix('#').map(str::parse::<u64>) {
            Some(Ok(group)) => group,
            Some(Err(_)) => return Err(format!("{name:?} is not a database's group number")),
            None => {
                state
                    .databases
                    .resolve_fresh(Some(name))
                    .await
                    .map_err(|e| e.to_string())?
                    .group
            }
        };
        parsed.entry(group).or_default().extend(permissions);
    }
    Ok(parsed)
}

/// A user as the API shows it, each database grant under its database's name.
fn shown_user(state: &ApiState, user: &User) -> crate::auth::PublicUser {
    let mut public = user.public();
    let view = state.databases.view();
    public.databases = user
        .databases
        .iter()
        .map(|(group, permissions)| {
            let name = if *group == crate::raft::types::DEFAULT_DATA_GROUP {
                crate::catalog::view::DEFAULT_DATABASE.to_string()
            } else {
                view.by_group(*group)
                    .map_or_else(|| format!("#{group}"), |entry| entry.name.clone())
            };
            (name, permissions.clone())
        })
        .collect();
    public
}

/// Refuses a change that would leave `user` with more table grants than a user may hold.
fn check_table_grant_count(user: &User) -> Result<(), Refusal> {
    if user.tables.len() > grants::TABLE_GRANTS_MAX {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "user {:?} would hold grants on {} tables: at most {}",
                user.name,
                user.tables.len(),
                grants::TABLE_GRANTS_MAX
            ),
        ));
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

/// Runs `change` through the log, on the leader (passing the original request on when this
/// node does not lead).
async fn propose(
    state: &ApiState,
    method: Method,
    path: &str,
    body: &[u8],
    change: impl FnOnce(&Users) -> Result<UserChange, Refusal>,
) -> Response {
    let group = match lead_or_forward(state, method, path, body).await {
        Ok(group) => group,
        Err(answer) => return *answer,
    };
    let users = match group.group.database.users().await {
        Ok(users) => users,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let change = match change(&users) {
        Ok(change) => change,
        Err(refusal) => return refusal.response(),
    };
    if leaves_no_admin(&users, &change) {
        return error(
            StatusCode::CONFLICT,
            "refused: this would leave no user with the admin permission (nobody could manage \
             users any more); grant admin to another user first",
        );
    }
    let name = change.user_name().to_string();
    let removed = matches!(change, UserChange::Remove(_));
    match group.propose_user_change(change).await {
        Ok(index) => {
            tracing::info!(target: "audit", event = "user_changed", user = %name, removed, "user changed");
            json_response(
                StatusCode::OK,
                &json!({"user": name, "removed": removed, "raft_index": index}),
                true,
            )
        }
        Err(e) => error(crate::http::render::status_for(&e), e),
    }
}

/// Whether applying `change` to `users` would leave users but none holding `admin`.
fn leaves_no_admin(users: &Users, change: &UserChange) -> bool {
    let mut after = users.clone();
    match change.put_user() {
        Some(user) => {
            after.insert(user.name.clone(), user);
        }
        None => {
            after.remove(change.user_name());
        }
    }
    let is_admin = |user: &User| user.effective_permissions().contains(&Permission::Admin);
    users.values().any(is_admin) && !after.values().any(is_admin)
}

/// How long a node that passed a user change on waits to apply it itself before answering.
const FORWARDED_CHANGE_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn forward(
    state: &ApiState,
    users: &Service,
    method: Method,
    path: &str,
    body: &[u8],
) -> Response {
    let Some((_, leader)) = users.other_leader() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no leader");
    };
    let url = format!("{}{path}", crate::net::node_url(&leader.http_addr));
    let method =
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut forwarded = state
        .service
        .peers
        .http()
        .request(method, &url)
        .header("content-type", "application/json");
    if let Some(authorization) = crate::auth::gate::caller_authorization() {
        forwarded = forwarded.header(reqwest::header::AUTHORIZATION, authorization.as_bytes());
    }
    match forwarded
        .body(body.to_vec())
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
    {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            // The change is applied here too before the caller hears of it, so the next
            // `shoal user list` through this node shows it.
            if let Some(index) = body["raft_index"].as_u64().filter(|_| status.is_success()) {
                users.wait_applied(index, FORWARDED_CHANGE_APPLY_WAIT).await;
            }
            json_response(status, &body, true)
        }
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("forwarding to the leader: {e}"),
        ),
    }
}

fn not_found(name: &str) -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, format!("no user {name:?}"))
}

/// `POST /users` `{"name", "password", "roles": [...], "permissions": [...]}`.
async fn add(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let new: NewUser = match decode(&body) {
        Ok(new) => new,
        Err(refusal) => return refusal.response(),
    };
    let sent = SentGrants {
        roles: &new.roles,
        permissions: &new.permissions,
        tables: &new.tables,
        databases: &new.databases,
    };
    let checked = match check_name(&new.name) {
        Ok(()) => sent.check(&state).await,
        Err(message) => Err(message),
    };
    let CheckedGrants {
        permissions,
        tables,
        databases,
    } = match checked {
        Ok(checked) => checked,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if let Err(answer) = lead_or_forward(&state, Method::POST, "/users", &body).await {
        return *answer;
    }
    let password = new.password.clone();
    let secrets =
        match tokio::task::spawn_blocking(move || PasswordSecrets::derive(&password)).await {
            Ok(Ok(secrets)) => secrets,
            Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    propose(&state, Method::POST, "/users", &body, |users| {
        if users.contains_key(&new.name) {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                format!(
                    "user {:?} exists (change it with password, grant or revoke)",
                    new.name
                ),
            ));
        }
        Ok(UserChange::Put(User {
            name: new.name.clone(),
            password_hash: secrets.hash.clone(),
            scram_verifier: secrets.scram_verifier.clone(),
            roles: new.roles.clone(),
            permissions,
            tables,
            databases,
        }))
    })
    .await
}

/// `PUT /users/{name}/password` `{"password"}`.
async fn password(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let new: NewPassword = match decode(&body) {
        Ok(new) => new,
        Err(refusal) => return refusal.response(),
    };
    let path = format!("/users/{name}/password");
    if let Err(answer) = lead_or_forward(&state, Method::PUT, &path, &body).await {
        return *answer;
    }
    let secrets =
        match tokio::task::spawn_blocking(move || PasswordSecrets::derive(&new.password)).await {
            Ok(Ok(secrets)) => secrets,
            Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    propose(&state, Method::PUT, &path, &body, |users| {
        let mut user = users.get(&name).cloned().ok_or_else(|| not_found(&name))?;
        user.password_hash = secrets.hash.clone();
        user.scram_verifier = secrets.scram_verifier.clone();
        Ok(UserChange::Put(user))
    })
    .await
}

async fn change_grants(
    state: ApiState,
    name: String,
    body: axum::body::Bytes,
    granting: bool,
) -> Response {
    let grants: Grants = match decode(&body) {
        Ok(grants) => grants,
        Err(refusal) => return refusal.response(),
    };
    let sent = SentGrants {
        roles: &grants.roles,
        permissions: &grants.permissions,
        tables: &grants.tables,
        databases: &grants.databases,
    };
    let CheckedGrants {
        permissions,
        tables,
        databases,
    } = match sent.check(&state).await {
        Ok(checked) => checked,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let path = format!(
        "/users/{name}/{}",
        if granting { "grant" } else { "revoke" }
    );
    propose(&state, Method::POST, &path, &body, |users| {
        let mut user = users.get(&name).cloned().ok_or_else(|| not_found(&name))?;
        if granting {
            user.roles.extend(grants.roles.iter().cloned());
            user.permissions.extend(permissions.iter().copied());
            for (table, held) in &tables {
                user.tables
                    .entry(table.clone())
                    .or_default()
                    .extend(held.iter().copied());
            }
            for (group, held) in &databases {
                user.databases
                    .entry(*group)
                    .or_default()
                    .extend(held.iter().copied());
            }
            check_table_grant_count(&user)?;
            if user.databases.len() > DATABASE_GRANTS_MAX {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("user {name:?} would hold grants in more than {DATABASE_GRANTS_MAX} databases"),
                ));
            }
        } else {
            user.roles.retain(|role| !grants.roles.contains(role));
            user.permissions.retain(|p| !permissions.contains(p));
            for (table, revoked) in &tables {
                if let Some(held) = user.tables.get_mut(table) {
                    held.retain(|p| !revoked.contains(p));
                }
            }
            user.tables.retain(|_, held| !held.is_empty());
            for (group, revoked) in &databases {
                if let Some(held) = user.databases.get_mut(group) {
                    held.retain(|p| !revoked.contains(p));
                }
            }
            user.databases.retain(|_, held| !held.is_empty());
        }
        Ok(UserChange::Put(user))
    })
    .await
}

/// `POST /users/{name}/grant` `{"roles": [...], "permissions": [...], "tables": {"t": ["read"]},
/// "databases": {"orders": ["read", "write"]}}`.
async fn grant(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    change_grants(state, name, body, true).await
}

/// `POST /users/{name}/revoke` `{"roles": [...], "permissions": [...], "tables": {"t": ["write"]},
/// "databases": {"orders": ["write"]}}`.
async fn revoke(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    change_grants(state, name, body, false).await
}

/// `DELETE /users/{name}`.
async fn remove(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    let path = format!("/users/{name}");
    propose(&state, Method::DELETE, &path, b"", |users| {
        if !users.contains_key(&name) {
            return Err(not_found(&name));
        }
        Ok(UserChange::Remove(name.clone()))
    })
    .await
}
