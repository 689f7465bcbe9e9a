//! `GET /metrics` (Prometheus text format) and the middleware that counts and times every
//! HTTP request by route, method and status class.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::ApiState;
use openraft::async_runtime::WatchReceiver;

use crate::metrics::{GroupLabels, HttpLabels, MemberLabels, RoleLabels, metrics};

const ROLES: &[&str] = &["leader", "follower", "candidate", "learner", "shutdown"];

/// Counts and times a request under its route (`/db/query`, not the raw path).
pub async fn record_request(request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |path| route_label(path.as_str()));
    // Only the standard methods get their own series: a client can send any method name.
    let method = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
    let class = usize::from(response.status().as_u16() / 100);
    let labels = HttpLabels {
        endpoint,
        method,
        status: CLASSES.get(class).copied().unwrap_or("other"),
    };
    let metrics = metrics();
    metrics.http_requests.get_or_create(&labels).inc();
    metrics
        .http_request_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Routes interned for labels: a request costs a lookup, not three string allocations.
/// Matched paths come from the router's fixed set of routes, so the set is bounded; a path
/// beyond [`ROUTES_MAX`] is labelled `other`.
fn route_label(path: &str) -> &'static str {
    static ROUTES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    const ROUTES_MAX: usize = 256;
    let mut routes = ROUTES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = routes.iter().find(|known| **known == path) {
        return known;
    }
    if routes.len() >= ROUTES_MAX {
        return "other";
    }
    let interned: &'static str = Box::leak(path.to_string().into_boxed_str());
    routes.push(interned);
    interned
}

/// Sets the scrape-time gauges from Raft's and the storage's state, then encodes everything.
/// The `shoal_group_*` gauges, one series per group replica on this node.
fn record_groups(databases: &crate::catalog::databases::Databases) {
    let m = metrics();
    let families = [
        &m.group_leader,
        &m.group_term,
        &m.group_applied_index,
        &m.group_commit_index,
        &m.group_members,
        &m.group_database_size,
    ];
    // Groups stopped since the last scrape leave no series behind.
    for family in families {
        family.clear();
    }
    let view = databases.view();
    for service in databases.host().services.all() {
        let group = &service.group;
        let database = if group.id == crate::catalog::CATALOG_GROUP {
            "catalog".to_string()
        } else {
            view.by_group(group.id)
                .map_or_else(|| format!("group-{}", group.id), |entry| entry.name.clone())
        };
        let labels = GroupLabels {
            group: group.id.to_string(),
            database,
        };
        let raft = group.raft.metrics();
        let raft = raft.borrow_watched();
        m.group_leader
            .get_or_create(&labels)
            .set(i64::from(group.leads()));
        m.group_term
            .get_or_create(&labels)
            .set(raft.current_term as i64);
        m.group_applied_index
            .get_or_create(&labels)
            .set(raft.last_applied.map_or(0, |l| l.index as i64));
        m.group_commit_index
            .get_or_create(&labels)
            .set(raft.local_committed.map_or(0, |l| l.index as i64));
        m.group_members
            .get_or_create(&labels)
            .set(raft.membership_config.nodes().count() as i64);
        m.group_database_size
            .get_or_create(&labels)
            .set(group.database.file_bytes() as i64);
    }
}

pub async fn scrape(State(state): State<ApiState>) -> Response {
    let service = &state.service;
    let group = &service.group;
    let m = metrics();
    let raft = group.metrics();
    m.raft_term.set(raft.current_term as i64);
    m.raft_leader_id
        .set(raft.current_leader.map_or(0, |id| id as i64));
    let me = service.own_state(state.started);
    for role in ROLES {
        m.raft_role
            .get_or_create(&RoleLabels { role })
            .set(i64::from(me.state == *role));
    }
    m.raft_commit_index
        .set(raft.local_committed.map_or(0, |l| l.index as i64));
    m.raft_applied_index
        .set(raft.last_applied.map_or(0, |l| l.index as i64));
    m.raft_last_log_index
        .set(raft.last_log_index.map_or(0, |i| i as i64));
    m.raft_snapshot_index
        .set(raft.snapshot.map_or(0, |l| l.index as i64));
    let members = service.member_states(state.started).await;
    let newest_applied = members
        .values()
        .filter_map(|(_, _, s)| s.as_ref().and_then(|s| s.applied_index))
        .max()
        .unwrap_or(0);
    for (id, (_, _, member)) in &members {
        let labels = MemberLabels {
            member: id.to_string(),
        };
        m.member_up
            .get_or_create(&labels)
            .set(i64::from(member.is_some()));
        let applied = member.as_ref().and_then(|s| s.applied_index).unwrap_or(0);
        m.member_lag_entries
            .get_or_create(&labels)
            .set(newest_applied.saturating_sub(applied) as i64);
        let contact_ms = member
            .as_ref()
            .and_then(|s| s.since_leader_contact_ms)
            .unwrap_or(0);
        m.member_lag_seconds
            .get_or_create(&labels)
            .set(contact_ms as f64 / 1000.0);
    }
    m.database_size.set(group.database.file_bytes() as i64);
    let wal = format!("{}-wal", group.database.path().display());
    m.wal_size
        .set(std::fs::metadata(wal).map_or(0, |f| f.len() as i64));
    m.log_size.set(group.log.disk_bytes() as i64);
    m.log_entries.set(group.log.entry_count() as i64);
    record_groups(&state.databases);
    m.sample_process();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        m.encode(),
    )
        .into_response()
}
