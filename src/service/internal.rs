//! Internal endpoints on the Raft port that other nodes' services call: run a forwarded
//! request, run a cluster operation, report this member's state, wait for an index to apply,
//! tell the writes its router counted per bucket of slots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::server::Rejection;
use crate::raft::types::GroupId;
use crate::raft::wire::{self, CHECKSUM_HEADER};
use crate::service::ServiceRequest;
use crate::service::cluster::ClusterRequest;
use crate::service::registry::Services;

/// Longest a member waits in `await-applied` before answering "not yet".
const AWAIT_APPLIED_MAX: Duration = Duration::from_secs(60);
/// Longest a forwarded cross-group transaction step waits for the group's leader.
const STEP_TIMEOUT_MAX: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Internal {
    services: Arc<Services>,
    started: Instant,
}

pub fn router(services: Arc<Services>, started: Instant, body_bytes_max: usize) -> Router {
    Router::new()
        .route("/internal/v1/{group}/request", post(request))
        .route("/internal/v1/{group}/cluster", post(cluster))
        .route("/internal/v1/{group}/state", post(state))
        .route("/internal/v1/{group}/await-applied", post(await_applied))
        .route("/internal/v1/{group}/initialized", post(initialized))
        .route("/internal/v1/{group}/groups", post(groups))
        .route("/internal/v1/{group}/step", post(step))
        .route("/internal/v1/{group}/write-load", post(write_load))
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(Internal { services, started })
}

fn reply<T: Serialize>(value: &T) -> Response {
    match wire::encode(value) {
        Ok((body, checksum)) => ([(CHECKSUM_HEADER, checksum.to_string())], body).into_response(),
        Err(message) => (StatusCode::INTERNAL_SERVER_ERROR, message).into_response(),
    }
}

/// The service of `group` and the decoded call, or why the call is refused.
fn decode<T: DeserializeOwned>(
    internal: &Internal,
    group: GroupId,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Arc<crate::service::Service>, T), Rejection> {
    let service = internal.services.get(group).ok_or_else(|| {
        Rejection(
            StatusCode::NOT_FOUND,
            format!("group {group} does not run on this node"),
        )
    })?;
    let checksum = headers.get(CHECKSUM_HEADER).and_then(|v| v.to_str().ok());
    let call = wire::decode(body, checksum)
        .map_err(|message| Rejection(StatusCode::BAD_REQUEST, message))?;
    Ok((service, call))
}

async fn request(
    State(internal): State<Internal>,
    Path(group): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<ServiceRequest>(&internal, group, &headers, &body) {
        Ok((service, request)) => reply(&service.handle(request).await),
        Err(rejection) => rejection.into_response(),
    }
}

/// A cross-group transaction step from a coordinator (`PeerClient::step`).
async fn step(
    State(internal): State<Internal>,
    Path(group): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    type Call = (
        crate::types::shard::ShardStep,
        bool,
        crate::service::WriteConcern,
        u64,
    );
    match decode::<Call>(&internal, group, &headers, &body) {
        Ok((service, (step, forward, concern, timeout_ms))) => {
            let timeout = Duration::from_millis(timeout_ms).min(STEP_TIMEOUT_MAX);
            let outcome = if forward {
                service.apply_step(&step, concern, timeout).await
            } else {
                service.apply_step_here(&step, concern, timeout).await
            };
            reply(&outcome)
        }
        Err(rejection) => rejection.into_response(),
    }
}

async fn cluster(
    State(internal): State<Internal>,
    Path(group): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<ClusterRequest>(&internal, group, &headers, &body) {
        Ok((service, request)) => reply(&service.cluster_on_leader(request).await),
        Err(rejection) => rejection.into_response(),
    }
}

/// The writes this node's router counted per bucket of slots for the database whose first
/// group is `group` (`shard::write_load`); the database need not have a replica here.
async fn write_load(Path(group): Path<GroupId>) -> Response {
    reply(&crate::shard::write_load::recent_of(group))
}

async fn state(
    State(internal): State<Internal>,
    Path(group): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<()>(&internal, group, &headers, &body) {
        Ok((service, ())) => reply(&service.own_state(internal.started)),
        Err(rejection) => rejection.into_response(),
    }
}

async fn await_applied(
    State(internal): State<Internal>,
    Path(group): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<(u64, u64)>(&internal, group, &headers, &body) {
        Ok((service, (index, wait_ms))) => {
            let wait = Duration::from_millis(wait_ms).min(AWAIT_APPLIED_MAX);
            let applied = service
                .group
                .raft
                .wait(Some(wait))
                .applied_index_at_least(Some(index), "write concern")
                .await;
            reply(&applied.is_ok())
        }
        Err(rejection) => rejection.into_response(),
    }
}

/// Whether this node's replica of the group holds a membership (it was initialized or has
/// received a leader's log): asked before founding the catalog group on an upgraded cluster.
async fn initialized(
    State(internal): State<Internal>,
    Path(group): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<()>(&internal, group, &headers, &body) {
        Ok((service, ())) => reply(&service.group.raft.is_initialized().await.ok()),
        Err(rejection) => rejection.into_response(),
    }
}

/// Every group running on this node (asked through the catalog group, which every node runs):
/// what the catalog leader balances replicas and leaders with.
async fn groups(
    State(internal): State<Internal>,
    Path(group): Path<GroupId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<()>(&internal, group, &headers, &body) {
        Ok((_, ())) => reply(&internal.services.reports()),
        Err(rejection) => rejection.into_response(),
    }
}
