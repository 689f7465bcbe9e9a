//! Backup and load endpoints. rqlite's `GET /db/backup` (a consistent SQLite image of what
//! this node applied, or `fmt=sql` for a SQL dump) and `POST /db/load` (a SQLite file replaces
//! the data through the log; SQL text runs as one transaction), and Shoal's backup API:
//! `POST /backup` (take one on this node), `GET /backup`, `GET /backup/{id}`,
//! `POST /backup/{id}/verify`, `POST /backup/prune`, `POST /backup/restore`.

use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use std::sync::Arc;

use crate::backup::BackupError;
use crate::backup::agent::BackupAgent;
use crate::backup::group_load::{PrepareError, prepared_load, receive_upload};
use crate::backup::restore::{RestorePoint, restore_point};
use crate::backup::{cut, cut_pitr};
use crate::db::load::SQLITE_HEADER;
use crate::http::{ApiState, json_response};
use crate::raft::types::{LOAD_COMPRESSED_BYTES_MAX, Statement, StatementBatch};
use crate::service::{RequestKind, Service, ServiceError, ServiceRequest};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/db/backup", get(db_backup))
        .route("/db/load", post(db_load))
        .route("/boot", post(boot))
        .route("/backup", get(list).post(create))
        .route("/backup/prune", post(prune))
        .route("/backup/restore", post(restore))
        .route("/backup/{id}", get(show))
        .route("/backup/{id}/verify", post(verify))
}

fn status_of(error: &BackupError) -> StatusCode {
    match error {
        BackupError::NotFound(_) => StatusCode::NOT_FOUND,
        BackupError::Config(_) => StatusCode::BAD_REQUEST,
        BackupError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        BackupError::Target(_) => StatusCode::BAD_GATEWAY,
        BackupError::Database(_) | BackupError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn backup_error(error: BackupError) -> Response {
    json_response(
        status_of(&error),
        &json!({"error": error.to_string()}),
        true,
    )
}

fn ok_json(value: serde_json::Value) -> Response {
    json_response(StatusCode::OK, &value, true)
}

fn error_json(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json_response(status, &json!({"error": message.to_string()}), true)
}

#[derive(Deserialize)]
struct BackupQuery {
    fmt: Option<String>,
    db: Option<String>,
}

/// `db=`: the database an endpoint acts on (the default one when absent).
#[derive(Deserialize, Default)]
struct DbQuery {
    db: Option<String>,
}

/// Database `name` as this node routes it; an unknown name is a 404 naming it.
async fn resolve(
    state: &ApiState,
    name: Option<&str>,
) -> Result<crate::catalog::handle::DatabaseHandle, Response> {
    state
        .databases
        .resolve_fresh(name)
        .await
        .map_err(|error| error_json(crate::http::render::status_for(&error), error))
}

/// The service of database `name`'s replica on this node; a clear error when it has none
/// here (an image is read or loaded where a replica runs).
async fn local_replica(
    state: &ApiState,
    name: Option<&str>,
) -> Result<(String, Arc<Service>), Response> {
    replica_here(&resolve(state, name).await?).map_err(|refusal| *refusal)
}

/// [`local_replica`] of a database already resolved (the refusal boxed: a response is large).
fn replica_here(
    database: &crate::catalog::handle::DatabaseHandle,
) -> Result<(String, Arc<Service>), Box<Response>> {
    if let Some(refusal) = sharded_refusal(database) {
        return Err(Box::new(refusal));
    }
    match database.local() {
        Some(service) => Ok((database.name.clone(), service.clone())),
        None => {
            let nodes: Vec<String> = database
                .remote_replicas()
                .iter()
                .map(|(id, _)| id.to_string())
                .collect();
            Err(Box::new(error_json(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "database {:?} has no replica on this node; send this to a node holding \
                     one (nodes {})",
                    database.name,
                    nodes.join(", ")
                ),
            )))
        }
    }
}

/// A sharded database's single-file image or load through one group would hold (or replace)
/// only that group's part of it: refused, naming why and what does the whole database.
fn sharded_refusal(database: &crate::catalog::handle::DatabaseHandle) -> Option<Response> {
    database.sharded().map(|entry| {
        error_json(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "database {:?} is sharded over {} groups: a single-file image or load of it \
                 would cover only one group's rows; back it up with POST /backup?db={} (one \
                 consistent cut across its groups) and restore that with POST \
                 /backup/restore?db={}&id=<cut id>",
                database.name,
                entry.groups.len(),
                database.name,
                database.name
            ),
        )
    })
}

/// The backup agent for database `name`: the running one where its group runs here, else
/// one for its targets (listing, verifying, pruning).
async fn agent_for(state: &ApiState, name: Option<&str>) -> Result<Arc<BackupAgent>, Response> {
    let database = resolve(state, name).await?;
    Ok(state.backups.for_database(&database.name, database.group))
}

/// `GET /db/backup`: streams a consistent image of this node's database (as of the log index
/// in `X-Shoal-Log-Index`), or with `fmt=sql` a SQL dump of it.
async fn db_backup(State(state): State<ApiState>, Query(query): Query<BackupQuery>) -> Response {
    let sql = match query.fmt.as_deref() {
        None | Some("binary") => false,
        Some("sql") => true,
        Some(other) => {
            return error_json(
                StatusCode::BAD_REQUEST,
                format!("fmt={other:?} is not supported (binary or sql)"),
            );
        }
    };
    let (_, service) = match local_replica(&state, query.db.as_deref()).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let database = service.group.database.clone();
    let scratch = state.backups.scratch_dir();
    let produced = tokio::task::spawn_blocking(move || export(&database, &scratch, sql)).await;
    let (file, log_index) = match produced {
        Ok(Ok(done)) => done,
        Ok(Err(message)) => return error_json(StatusCode::INTERNAL_SERVER_ERROR, message),
        Err(error) => return error_json(StatusCode::INTERNAL_SERVER_ERROR, error),
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let content_type = if sql {
        "application/sql"
    } else {
        "application/octet-stream"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
            (
                header::HeaderName::from_static("x-shoal-log-index"),
                HeaderValue::from(log_index),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Writes the image (or its SQL dump) to an unlinked scratch file and returns it open.
fn export(
    database: &crate::db::database::Database,
    scratch: &Path,
    sql: bool,
) -> Result<(std::fs::File, u64), String> {
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let image = tempfile::Builder::new()
        .prefix("export-")
        .tempfile_in(scratch)
        .map_err(|e| e.to_string())?
        .into_temp_path();
    // The image leaves the cluster: the user's database alone, without Shoal's state and the
    // users' password hashes.
    let (state, _users) = database
        .export_user_image(&image)
        .map_err(|e| e.to_string())?;
    let log_index = state.last_applied.map_or(0, |l| l.index);
    if !sql {
        // Open, then let the path go: the file lives while the response streams it.
        let file = std::fs::File::open(&image).map_err(|e| e.to_string())?;
        return Ok((file, log_index));
    }
    let mut dump = tempfile::tempfile_in(scratch).map_err(|e| e.to_string())?;
    {
        let connection = rusqlite::Connection::open_with_flags(
            &image,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| e.to_string())?;
        let mut writer = std::io::BufWriter::new(&mut dump);
        crate::db::dump::dump_sql(&connection, &mut writer)?;
        std::io::Write::flush(&mut writer).map_err(|e| e.to_string())?;
    }
    use std::io::Seek;
    dump.rewind().map_err(|e| e.to_string())?;
    Ok((dump, log_index))
}

/// `POST /db/load`: a SQLite database file replaces all data (through the log, all or
/// nothing); SQL text (such as a dump) runs as one transaction. A follower passes the upload
/// to the leader.
async fn db_load(
    State(state): State<ApiState>,
    Query(query): Query<DbQuery>,
    body: Body,
) -> Response {
    let (name, service) = match local_replica(&state, query.db.as_deref()).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let scratch = state.backups.scratch_dir();
    let upload = match receive_upload(body, &scratch).await {
        Ok(upload) => upload,
        Err((status, message)) => return error_json(status, message),
    };
    load_file(&service, &name, &upload).await
}

/// rqlite's `POST /boot` (8.10): load a SQLite file into a single-node cluster, the way one
/// seeds a new node before others join. Shoal's load is fast enough through the log, so
/// `/boot` is `/db/load` restricted as rqlite restricts it: one member, a SQLite file.
async fn boot(State(state): State<ApiState>, body: Body) -> Response {
    let members = state
        .service
        .group
        .metrics()
        .membership_config
        .membership()
        .nodes()
        .count();
    if members != 1 {
        return error_json(
            StatusCode::BAD_REQUEST,
            format!(
                "/boot loads a single-node cluster and this one has {members} members; use \
                 /db/load, which replaces the data on every member"
            ),
        );
    }
    let scratch = state.backups.scratch_dir();
    let upload = match receive_upload(body, &scratch).await {
        Ok(upload) => upload,
        Err((status, message)) => return error_json(status, message),
    };
    let mut head = [0u8; 16];
    let is_image = {
        use std::io::Read;
        std::fs::File::open(&upload)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == SQLITE_HEADER
    };
    if !is_image {
        return error_json(
            StatusCode::BAD_REQUEST,
            "/boot takes a SQLite database file; load SQL text with /db/load",
        );
    }
    let database = crate::catalog::view::DEFAULT_DATABASE;
    load_file(&state.service, database, &upload).await
}

/// Loads the file at `path` (a SQLite image or SQL text) into `database` (whose replica here
/// is `service`).
async fn load_file(service: &Arc<Service>, database: &str, path: &Path) -> Response {
    if !service.group.raft.is_leader() {
        return forward_load(service, database, path).await;
    }
    let mut head = [0u8; 16];
    let is_image = {
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == SQLITE_HEADER
    };
    if !is_image {
        return load_sql(service, path).await;
    }
    let load = match prepared_load(service, path).await {
        Ok(load) => load,
        Err(PrepareError::Refused(refused)) => return error_json(StatusCode::BAD_REQUEST, refused),
        Err(PrepareError::Internal(error)) => {
            return error_json(StatusCode::INTERNAL_SERVER_ERROR, error);
        }
    };
    let image_bytes = load.image_bytes;
    match service.propose_load(load).await {
        Ok(index) => {
            tracing::info!(
                target: "audit",
                event = "database_loaded",
                database,
                image_bytes,
                log_index = index,
                "database replaced by a load"
            );
            ok_json(json!({"results": [{"loaded_bytes": image_bytes, "raft_index": index}]}))
        }
        Err(error) => error_json(crate::http::render::status_for(&error), error),
    }
}

async fn load_sql(service: &Service, path: &Path) -> Response {
    let length = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if length > LOAD_COMPRESSED_BYTES_MAX as u64 {
        return error_json(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a SQL load is at most {LOAD_COMPRESSED_BYTES_MAX} bytes (it runs as one \
                 transaction); load a SQLite file instead"
            ),
        );
    }
    let text = match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        _ => {
            return error_json(
                StatusCode::BAD_REQUEST,
                "the upload is neither a SQLite database file nor UTF-8 SQL text",
            );
        }
    };
    let statements: Vec<Statement> = crate::db::dump::load_statements(&text)
        .into_iter()
        .map(Statement::plain)
        .collect();
    if statements.is_empty() {
        return error_json(
            StatusCode::BAD_REQUEST,
            "the SQL upload holds no statements",
        );
    }
    let started = std::time::Instant::now();
    let request = ServiceRequest {
        kind: RequestKind::Execute,
        batches: vec![StatementBatch::new(statements, true)],
        read: Default::default(),
        write_concern: crate::service::request::WriteConcern::Majority,
        write_concern_timeout: std::time::Duration::from_secs(60),
        timeout: std::time::Duration::from_secs(600),
        forward_to_leader: true,
    };
    match service.handle(request).await {
        Ok(response) => {
            if let Some(failed) = response
                .results
                .iter()
                .position(|result| result.error.is_some())
            {
                let message = response.results[failed].error.clone().unwrap_or_default();
                return error_json(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "statement {} of the load failed, nothing was loaded: {message}",
                        failed + 1
                    ),
                );
            }
            // As rqlite answers a SQL load: one result per statement, as /db/execute would.
            let options = crate::http::render::RenderOptions {
                timings: false,
                associative: false,
                blob_array: false,
                raft_index: false,
            };
            ok_json(crate::http::render::render_response(
                &response,
                options,
                started.elapsed().as_secs_f64(),
            ))
        }
        Err(error) => error_json(crate::http::render::status_for(&error), error),
    }
}

/// Sends the upload to the leader's `/db/load?db=…`, relaying its answer.
async fn forward_load(service: &Service, database: &str, path: &Path) -> Response {
    let Some((_, leader)) = service.other_leader() else {
        return error_json(StatusCode::SERVICE_UNAVAILABLE, ServiceError::NoLeader);
    };
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) => return error_json(StatusCode::INTERNAL_SERVER_ERROR, error),
    };
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    // (Database names are letters, digits, `_` and `-`: nothing to escape in a URL.)
    let url = format!(
        "{}/db/load?db={database}",
        crate::net::node_url(&leader.http_addr)
    );
    let mut forwarded = service.peers.http().post(&url);
    if let Some(authorization) = crate::auth::gate::caller_authorization() {
        forwarded = forwarded.header(reqwest::header::AUTHORIZATION, authorization.as_bytes());
    }
    match forwarded
        .body(body)
        .timeout(std::time::Duration::from_secs(3600))
        .send()
        .await
    {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = response.text().await.unwrap_or_default();
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
        Err(error) => error_json(
            StatusCode::BAD_GATEWAY,
            format!("forwarding the load to the leader at {url}: {error}"),
        ),
    }
}

#[derive(Deserialize)]
struct CreateQuery {
    #[serde(default)]
    from_replica: bool,
    db: Option<String>,
}

/// `POST /backup[?db=name]`: takes a backup of the database on this node now (a follower or
/// read replica keeps the work off the leader); `?from_replica=true` has a replica take it
/// (this node if none can). A node without a replica of the database has one that holds it
/// take the backup.
async fn create(State(state): State<ApiState>, Query(query): Query<CreateQuery>) -> Response {
    let database = match resolve(&state, query.db.as_deref()).await {
        Ok(database) => database,
        Err(response) => return response,
    };
    if let Some(entry) = database.sharded() {
        let http = state.service.peers.http();
        return match cut::take(&state.databases, &state.backups, &http, entry).await {
            Ok(manifest) => ok_json(json!({ "cut": manifest })),
            Err(error) => backup_error(error),
        };
    }
    if database.local().is_none() {
        return create_elsewhere(&state, &database).await;
    }
    let agent = state.backups.for_database(&database.name, database.group);
    if query.from_replica {
        return match agent.create_on_a_replica().await {
            Ok(report) => ok_json(report),
            Err(error) => backup_error(error),
        };
    }
    match agent.create().await {
        Ok(report) => ok_json(json!(report)),
        Err(error) => backup_error(error),
    }
}

/// Has a node holding a replica of `database` take the backup (node to node, on the Raft
/// port); its report, or why none could.
async fn create_elsewhere(
    state: &ApiState,
    database: &crate::catalog::handle::DatabaseHandle,
) -> Response {
    if !state.backups.config().enabled() {
        return backup_error(BackupError::Config(
            "no backup target is configured on this node (--backup-target)".into(),
        ));
    }
    let client = state.service.peers.http();
    let mut failures = Vec::new();
    for (node, raft_addr) in database.remote_replicas() {
        let url = format!(
            "{}/internal/v1/{}/backup",
            crate::net::raft_url(raft_addr),
            database.group
        );
        match client
            .post(&url)
            .timeout(std::time::Duration::from_secs(3600))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                return ok_json(response.json().await.unwrap_or_default());
            }
            Ok(response) => failures.push(format!("node {node}: {}", response.status())),
            Err(error) => failures.push(format!("node {node}: {error}")),
        }
    }
    error_json(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no node holding database {:?} took the backup ({})",
            database.name,
            failures.join("; ")
        ),
    )
}

/// `GET /backup[?db=name]`: every complete backup of the database on every target.
async fn list(State(state): State<ApiState>, Query(query): Query<DbQuery>) -> Response {
    let database = match resolve(&state, query.db.as_deref()).await {
        Ok(database) => database,
        Err(response) => return response,
    };
    let agent = state.backups.for_database(&database.name, database.group);
    let backups = match agent.list().await {
        Ok(backups) => backups,
        Err(error) => return backup_error(error),
    };
    if database.sharded().is_none() {
        return ok_json(json!({"backups": backups}));
    }
    // A sharded database: its consistent cuts, and its first group's own backups.
    match cut::list(&state.backups, &database.name).await {
        Ok(cuts) => ok_json(json!({"cuts": cuts, "backups": backups})),
        Err(error) => backup_error(error),
    }
}

/// `GET /backup/{id}[?db=name]`: the backup's manifest.
async fn show(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<DbQuery>,
) -> Response {
    let agent = match agent_for(&state, query.db.as_deref()).await {
        Ok(agent) => agent,
        Err(response) => return response,
    };
    match agent.show(&id).await {
        Ok(manifest) => ok_json(json!(manifest)),
        Err(error) => backup_error(error),
    }
}

/// `POST /backup/{id}/verify[?db=name]`: downloads and checks the backup on every target
/// holding it.
async fn verify(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<DbQuery>,
) -> Response {
    let agent = match agent_for(&state, query.db.as_deref()).await {
        Ok(agent) => agent,
        Err(response) => return response,
    };
    match agent.verify(&id).await {
        Ok(records) => {
            let status = if records.iter().all(|r| r.ok) {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            json_response(status, &json!({"verifications": records}), true)
        }
        Err(error) => backup_error(error),
    }
}

/// `POST /backup/prune[?db=name]`: applies each target's retention to the database's backups
/// now (to a sharded database's cuts, keeping the backups they name).
async fn prune(State(state): State<ApiState>, Query(query): Query<DbQuery>) -> Response {
    let database = match resolve(&state, query.db.as_deref()).await {
        Ok(database) => database,
        Err(response) => return response,
    };
    let pruned = match database.sharded() {
        // Its cuts first, then each group's backups that no remaining cut names.
        Some(entry) => cut::prune(&state.backups, entry).await,
        None => {
            state
                .backups
                .for_database(&database.name, database.group)
                .prune()
                .await
        }
    };
    match pruned {
        Ok(removed) => {
            let removed: Vec<_> = removed
                .into_iter()
                .map(|(target, ids)| json!({"target": target, "removed": ids}))
                .collect();
            ok_json(json!({"pruned": removed}))
        }
        Err(error) => backup_error(error),
    }
}

#[derive(Deserialize)]
struct RestoreQuery {
    id: Option<String>,
    to_time: Option<String>,
    to_index: Option<u64>,
    db: Option<String>,
}

/// `POST /backup/restore?id=…&to_time=…|to_index=…[&db=name]`: rebuilds the database's image
/// from its backup (and archived log) and loads it into the database through its log, all or
/// nothing; on a node holding a replica of it.
async fn restore(State(state): State<ApiState>, Query(query): Query<RestoreQuery>) -> Response {
    let point = match restore_point(query.to_time.as_deref(), query.to_index) {
        Ok(point) => point,
        Err(message) => return error_json(StatusCode::BAD_REQUEST, message),
    };
    let database = match resolve(&state, query.db.as_deref()).await {
        Ok(database) => database,
        Err(response) => return response,
    };
    if let Some(entry) = database.sharded() {
        return restore_sharded(&state, entry, query.id.as_deref(), point).await;
    }
    let (name, service) = match replica_here(&database) {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let agent = state.backups.for_database(&name, service.group.id);
    let (image, restored) = match agent.restore_image(query.id.as_deref(), point).await {
        Ok(done) => done,
        Err(error) => return backup_error(error),
    };
    let response = load_file(&service, &name, &image).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    tracing::info!(target: "audit", event = "restored", database = %name, backup = %restored.backup_id, log_index = restored.log_index, "restored into the cluster");
    ok_json(json!({"restored": restored}))
}

/// Restores a sharded database from one of its cuts (`id`, else the newest), or to a moment
/// from a cut before it (`id`, else the newest such).
async fn restore_sharded(
    state: &ApiState,
    entry: &crate::catalog::view::DatabaseEntry,
    id: Option<&str>,
    point: Option<RestorePoint>,
) -> Response {
    let http = state.service.peers.http();
    match point {
        None => {}
        Some(RestorePoint::Index(_)) => {
            return error_json(
                StatusCode::BAD_REQUEST,
                format!(
                    "database {:?} is sharded: each of its groups has a log of its own, so a \
                     log index names no point of the whole database; restore to a moment \
                     (to_time) or a cut (id)",
                    entry.name
                ),
            );
        }
        Some(RestorePoint::Time(moment_ms)) => {
            return match cut_pitr::restore_to_moment(
                &state.databases,
                &state.backups,
                &http,
                entry,
                id,
                moment_ms,
            )
            .await
            {
                Ok(restored) => ok_json(json!({ "restored": restored })),
                Err(error) => backup_error(error),
            };
        }
    }
    let cut_id = match id {
        Some(id) => id.to_string(),
        None => match cut::list(&state.backups, &entry.name).await {
            Ok(cuts) => match cuts.last() {
                Some(newest) => newest.cut_id.clone(),
                None => {
                    return backup_error(BackupError::NotFound(format!(
                        "a cut of database {:?}",
                        entry.name
                    )));
                }
            },
            Err(error) => return backup_error(error),
        },
    };
    match cut::restore(&state.databases, &state.backups, &http, entry, &cut_id).await {
        Ok(restored) => ok_json(json!({ "restored": restored })),
        Err(error) => backup_error(error),
    }
}
