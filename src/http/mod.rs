//! The client HTTP API, compatible with rqlite's: `/db/execute`, `/db/query`, `/db/request`,
//! and the cluster endpoints. A thin layer: it decodes requests into the service's one request
//! type and renders the answers.

pub mod admin;
pub mod authorize;
pub mod backup;
pub mod body;
mod metrics;
pub mod params;
pub mod render;
pub mod typed_values;
pub mod users;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::raft::types::{Statement, StatementBatch};
use crate::service::queue::WriteQueue;
use crate::service::{RequestKind, Service, ServiceError, ServiceRequest};
use params::{RequestOptions, parse_options};
use render::{RenderOptions, render_response, status_for};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The default database's service (cluster endpoints, users, backups).
    pub service: Arc<Service>,
    /// Databases by name (`db=`), and the statements that manage them.
    pub databases: Arc<crate::catalog::databases::Databases>,
    pub queue: Arc<WriteQueue>,
    pub started: Instant,
    pub alerts: Arc<crate::alerts::Alerts>,
    pub backups: Arc<crate::backup::agents::BackupAgents>,
    pub gate: Arc<crate::auth::gate::Gate>,
    /// The request body limit (the gate reads SQL bodies to see what they need).
    pub body_bytes_max: usize,
}

/// All client routes. `body_bytes_max` bounds every request body (HTTP 413 beyond it).
pub fn router(state: ApiState, body_bytes_max: usize) -> Router {
    Router::new()
        .route("/db/execute", post(execute))
        .route("/db/query", get(query).post(query))
        .route("/db/request", post(unified))
        .merge(admin::routes())
        .merge(backup::routes())
        .merge(crate::http::users::routes())
        .route("/metrics", get(metrics::scrape))
        .route("/alerts", get(firing_alerts))
        .route("/dashboard", get(dashboard))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::authorize::authorize,
        ))
        .layer(axum::middleware::from_fn(metrics::record_request))
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(state)
}

/// `GET /dashboard`: the self-contained dashboard page (it polls /status, /alerts, /metrics).
async fn dashboard() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        include_str!("dashboard/index.html"),
    )
        .into_response()
}

/// `GET /alerts`: the alerts firing on this node now.
async fn firing_alerts(State(state): State<ApiState>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({"node": state.service.node_id(), "firing": state.alerts.firing()}),
        true,
    )
}

/// A JSON response, pretty-printed when asked (indented by four spaces, as rqlite does).
pub fn json_response(status: StatusCode, body: &Value, pretty: bool) -> Response {
    let text = if pretty {
        pretty_json(body)
    } else {
        serde_json::to_string(body)
    };
    let text = text.unwrap_or_else(|e| format!("{{\"error\":\"cannot encode response: {e}\"}}"));
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

/// `body` indented by four spaces per level, as rqlite's `pretty` answers are.
pub fn pretty_json(body: &Value) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(body, &mut serializer)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// An error response: `{"error": "..."}` with the status for its kind; a redirect to the
/// leader when the client asked for redirects instead of forwarding.
pub fn error_response(error: &ServiceError, uri: &axum::http::Uri, pretty: bool) -> Response {
    if let ServiceError::NotLeader {
        leader_http_addr: Some(leader),
        ..
    } = error
    {
        let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let location = format!("{}{path_and_query}", crate::net::node_url(leader));
        if let Ok(location) = HeaderValue::from_str(&location) {
            let mut response = json_response(
                StatusCode::MOVED_PERMANENTLY,
                &json!({"error": error.to_string()}),
                pretty,
            );
            response.headers_mut().insert(header::LOCATION, location);
            return response;
        }
    }
    json_response(
        status_for(error),
        &json!({"error": error.to_string()}),
        pretty,
    )
}

fn bad_request(message: String, pretty: bool) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": message}), pretty)
}

/// What a `/db/*` handler receives, whatever the endpoint.
struct DbCall {
    uri: axum::http::Uri,
    raw_query: Option<String>,
    /// `Content-Type: text/plain`: the body is one raw SQL statement (as rqlite accepts).
    plain_text: bool,
    body: Bytes,
}

impl DbCall {
    fn new(
        uri: axum::http::Uri,
        raw_query: Option<String>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Self {
        let plain_text = is_plain_text(headers);
        Self {
            uri,
            raw_query,
            plain_text,
            body,
        }
    }
}

async fn execute(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        state,
        DbCall::new(uri, raw, &headers, body),
        RequestKind::Execute,
    )
    .await
}

async fn query(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        state,
        DbCall::new(uri, raw, &headers, body),
        RequestKind::Query,
    )
    .await
}

async fn unified(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(
        state,
        DbCall::new(uri, raw, &headers, body),
        RequestKind::Unified,
    )
    .await
}

async fn run(state: ApiState, call: DbCall, kind: RequestKind) -> Response {
    let started = Instant::now();
    let options = match parse_options(call.raw_query.as_deref()) {
        Ok(options) => options,
        Err(message) => return bad_request(message, false),
    };
    let statements = match statements_of(&options, &call) {
        Ok(statements) => statements,
        Err(message) => return bad_request(message, options.pretty),
    };
    match database_statement(&statements, kind) {
        Ok(Some(statement)) => {
            let outcome = state.databases.run(statement).await.map(|result| {
                crate::service::ServiceResponse {
                    results: vec![result],
                    served_by: state.service.node_id(),
                    ..Default::default()
                }
            });
            return render(outcome, &options, &call.uri, started);
        }
        Ok(None) => {}
        Err(message) => return bad_request(message, options.pretty),
    }
    let batch = StatementBatch::new(statements, options.transaction);
    if options.queue {
        let default = crate::catalog::view::DEFAULT_DATABASE;
        if options
            .database
            .as_deref()
            .is_some_and(|name| name != default)
        {
            return bad_request(
                "queue=true writes to the default database only".into(),
                options.pretty,
            );
        }
        if kind != RequestKind::Execute {
            return bad_request(
                "queue is only supported on /db/execute".into(),
                options.pretty,
            );
        }
        return enqueue(&state, &call.uri, batch, &options).await;
    }
    let request = ServiceRequest {
        kind,
        batches: vec![batch],
        read: options.read,
        write_concern: options.write_concern,
        write_concern_timeout: options.write_concern_timeout,
        timeout: options.timeout,
        forward_to_leader: !options.redirect,
    };
    let outcome = state
        .databases
        .handle(options.database.as_deref(), request)
        .await;
    render(outcome, &options, &call.uri, started)
}

/// The database statement (`CREATE DATABASE` …) a request consists of, if it is one; an
/// error when one is mixed with other statements or sent where it cannot run.
fn database_statement(
    statements: &[Statement],
    kind: RequestKind,
) -> Result<Option<crate::catalog::sql::DatabaseStatement>, String> {
    use crate::catalog::sql::{DatabaseStatement, parse};
    let mut found = None;
    for statement in statements {
        if let Some(parsed) = parse(&statement.sql) {
            if statements.len() > 1 {
                return Err(format!(
                    "{:?} manages databases and must be sent alone, not with other statements",
                    statement.sql.trim()
                ));
            }
            found = Some(parsed?);
        }
    }
    match found {
        Some(statement)
            if kind == RequestKind::Query
                && !matches!(
                    statement,
                    DatabaseStatement::Show | DatabaseStatement::Balance { dry_run: true, .. }
                ) =>
        {
            Err("a statement that changes databases goes to /db/execute or /db/request".into())
        }
        found => Ok(found),
    }
}

/// The rqlite JSON answer for a request's outcome.
fn render(
    outcome: Result<crate::service::ServiceResponse, ServiceError>,
    options: &RequestOptions,
    uri: &axum::http::Uri,
    started: Instant,
) -> Response {
    match outcome {
        Ok(response) => {
            let render = RenderOptions {
                timings: options.timings,
                associative: options.associative,
                blob_array: options.blob_array,
                raft_index: options.raft_index,
            };
            json_response(
                StatusCode::OK,
                &render_response(&response, render, started.elapsed().as_secs_f64()),
                options.pretty,
            )
        }
        Err(error) => error_response(&error, uri, options.pretty),
    }
}

async fn enqueue(
    state: &ApiState,
    uri: &axum::http::Uri,
    batch: StatementBatch,
    options: &RequestOptions,
) -> Response {
    let (sequence, done) = match state.queue.enqueue(batch, options.wait) {
        Ok(queued) => queued,
        Err(error) => return error_response(&error, uri, options.pretty),
    };
    if let Some(done) = done {
        match tokio::time::timeout(options.timeout, done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => return error_response(&error, uri, options.pretty),
            Ok(Err(_)) => {
                return error_response(
                    &ServiceError::Internal("write queue dropped the request".into()),
                    uri,
                    options.pretty,
                );
            }
            Err(_) => {
                // rqlite answers 408 here; the write stays queued and may still be applied.
                let message = format!(
                    "queue wait timeout: queued write {sequence} not yet written; it may still be"
                );
                return json_response(
                    StatusCode::REQUEST_TIMEOUT,
                    &json!({"error": message}),
                    options.pretty,
                );
            }
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"results": [], "sequence_number": sequence}),
        options.pretty,
    )
}

/// The statements of a `/db/*` request, as the gate needs them to decide what the request
/// needs (unparseable input yields none; the handler then refuses it itself).
pub fn statements_for_authorization(
    raw_query: Option<&str>,
    plain_text: bool,
    body: &[u8],
) -> Vec<Statement> {
    let Ok(options) = parse_options(raw_query) else {
        return Vec::new();
    };
    let call = DbCall {
        uri: axum::http::Uri::from_static("/"),
        raw_query: raw_query.map(str::to_string),
        plain_text,
        body: Bytes::copy_from_slice(body),
    };
    statements_of(&options, &call).unwrap_or_default()
}

/// Statements come from `q=` on `/db/query`, a text/plain body (one statement) or a JSON
/// array. Empty statements are skipped, as rqlite does.
fn statements_of(options: &RequestOptions, call: &DbCall) -> Result<Vec<Statement>, String> {
    let statements = match &options.query {
        Some(sql) => vec![Statement::plain(sql.clone())],
        None if call.body.iter().all(u8::is_ascii_whitespace) => {
            return Err(
                "no statements: send a JSON array in the body, or q= for /db/query".to_string(),
            );
        }
        None if call.plain_text => {
            let sql = std::str::from_utf8(&call.body)
                .map_err(|_| "text/plain body is not UTF-8".to_string())?;
            vec![Statement::plain(sql)]
        }
        None => body::parse_statements(&call.body)?,
    };
    Ok(statements
        .into_iter()
        .filter(|s| !s.sql.trim().is_empty())
        .collect())
}

/// Whether the request body is plain text (`/db/request` then takes it as SQL).
pub fn is_plain_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain")
        })
}
