//! Loading an image into one group through its leader, from any node: a sharded database's
//! restore sends each group's image to a node holding the group, which proposes it when it
//! leads and otherwise passes it to the leader's `/internal/v1/{group}/load` (node to node, on
//! the Raft port). Also the bounded streaming of a request body into a scratch file that
//! every upload (`/db/load`, `/boot`, these loads) goes through.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use futures_util::StreamExt;

use crate::backup::BackupError;
use crate::db::load::{LoadRefused, prepare_image};
use crate::service::Service;
use crate::types::ImageLoad;

/// Most bytes one upload may hold (a SQLite file is compressed before it enters the log,
/// where `LOAD_COMPRESSED_BYTES_MAX` applies).
pub const UPLOAD_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// How long one group's load may take, end to end.
pub const GROUP_LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why an image could not be made ready for a group's log.
#[derive(Debug)]
pub enum PrepareError {
    /// The image itself is refused (not SQLite, damaged, too large): said to the client.
    Refused(LoadRefused),
    Internal(String),
}

/// `image` checked, converted to the group's page size and compressed for a load entry.
pub async fn prepared_load(service: &Service, image: &Path) -> Result<ImageLoad, PrepareError> {
    let page_size: u64 = service
        .group
        .database
        .inspect(|connection| connection.query_row("PRAGMA page_size", [], |row| row.get(0)))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(4096);
    let owned = image.to_path_buf();
    tokio::task::spawn_blocking(move || prepare_image(&owned, page_size))
        .await
        .map_err(|e| PrepareError::Internal(format!("preparing the image: {e}")))?
        .map_err(PrepareError::Refused)
}

/// Loads the SQLite image at `image` into `service`'s group through the log (all or nothing
/// on every replica); the load entry's index.
pub async fn load_into_group(service: &Arc<Service>, image: &Path) -> Result<u64, BackupError> {
    let group = service.group.id;
    if !service.group.raft.is_leader() {
        let (_, leader) = service.other_leader().ok_or_else(|| {
            BackupError::Internal(format!("group {group} has no leader to load the image"))
        })?;
        let url = format!(
            "{}/internal/v1/{group}/load",
            crate::net::raft_url(&leader.raft_addr)
        );
        return post_image(&service.peers.http(), &url, image)
            .await
            .map_err(|error| BackupError::Internal(format!("group {group}'s leader: {error}")));
    }
    let load = prepared_load(service, image)
        .await
        .map_err(|error| match error {
            PrepareError::Refused(refused) => BackupError::Invalid {
                object: image.display().to_string(),
                check: refused.to_string(),
            },
            PrepareError::Internal(message) => BackupError::Internal(message),
        })?;
    service
        .propose_load(load)
        .await
        .map_err(|error| BackupError::Internal(format!("group {group}: {error}")))
}

/// Sends the image at `image` to a node's `/internal/v1/{group}/load` (`url`); the load
/// entry's index there.
pub async fn post_image(http: &reqwest::Client, url: &str, image: &Path) -> Result<u64, String> {
    let file = tokio::fs::File::open(image)
        .await
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let response = http
        .post(url)
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::new(file),
        ))
        .timeout(GROUP_LOAD_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("sending the image to {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{url} refused the image ({status}): {text}"));
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|reply| reply["log_index"].as_u64())
        .ok_or_else(|| format!("{url} answered {text:?}"))
}

/// `POST /internal/v1/{group}/load`: loads the image in the body into group `group`, which
/// runs on this node.
pub async fn load_here(
    axum::extract::State(agents): axum::extract::State<Arc<crate::backup::agents::BackupAgents>>,
    axum::extract::Path(group): axum::extract::Path<crate::raft::types::GroupId>,
    body: Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(service) = agents.hosted(group).and_then(|agent| agent.group_service()) else {
        return (
            StatusCode::NOT_FOUND,
            format!("group {group} does not run on this node"),
        )
            .into_response();
    };
    let image = match receive_upload(body, &agents.scratch_dir()).await {
        Ok(image) => image,
        Err((status, message)) => return (status, message).into_response(),
    };
    match load_into_group(&service, &image).await {
        Ok(index) => axum::Json(serde_json::json!({ "log_index": index })).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// Streams a request body into a scratch file in `scratch`, refusing more than
/// [`UPLOAD_BYTES_MAX`] and an empty body.
pub async fn receive_upload(
    body: Body,
    scratch: &Path,
) -> Result<tempfile::TempPath, (StatusCode, String)> {
    use tokio::io::AsyncWriteExt;
    let internal = |e: &dyn std::fmt::Display| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    std::fs::create_dir_all(scratch).map_err(|e| internal(&e))?;
    let path = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(scratch)
        .map_err(|e| internal(&e))?
        .into_temp_path();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| internal(&e))?;
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| (StatusCode::BAD_REQUEST, format!("reading the upload: {e}")))?;
        received += chunk.len() as u64;
        if received > UPLOAD_BYTES_MAX {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload exceeds {UPLOAD_BYTES_MAX} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(|e| internal(&e))?;
    }
    file.flush().await.map_err(|e| internal(&e))?;
    if received == 0 {
        return Err((StatusCode::BAD_REQUEST, "the upload is empty".into()));
    }
    Ok(path)
}
