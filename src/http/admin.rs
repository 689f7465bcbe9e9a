//! Cluster endpoints: `/status` (shaped like MongoDB's `rs.status()`), `/nodes`, `/readyz`,
//! `/livez`, `/join`, `/remove`, `/leader`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{ApiState, error_response, json_response};
use crate::raft::types::{NodeId, ShoalNode};
use crate::service::ServiceError;
use crate::service::cluster::{ClusterRequest, ClusterResponse, MemberState, unix_seconds};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/status", get(status))
        .route("/nodes", get(nodes))
        .route("/readyz", get(readyz))
        .route("/livez", get(livez))
        .route("/join", post(join))
        .route("/remove", delete(remove).post(remove))
        .route("/leader", get(leader).post(step_down))
        .route("/snapshot", post(snapshot))
        .route("/drain", post(drain))
}

fn flags(raw: Option<&str>) -> Vec<(String, String)> {
    raw.and_then(|r| serde_urlencoded::from_str(r).ok())
        .unwrap_or_default()
}

fn has_flag(raw: Option<&str>, name: &str) -> bool {
    flags(raw).iter().any(|(k, v)| k == name && v != "false")
}

async fn status(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> Response {
    let service = &state.service;
    let me = service.own_state(state.started);
    let epoch = service.group.leader_epoch();
    let members = service.member_states(state.started).await;
    let newest_applied = members
        .values()
        .filter_map(|(_, _, s)| s.as_ref().and_then(|s| s.applied_index))
        .max();
    let leader_node = me
        .leader
        .and_then(|id| members.get(&id).map(|(node, _, _)| node.clone()));
    let member_list: Vec<Value> = members
        .iter()
        .map(|(id, (node, voter, state))| {
            member_json(*id, node, *voter, state.as_ref(), newest_applied)
        })
        .collect();
    let db_size_bytes = service.group.database.file_bytes();
    let body = json!({
        "node": {
            "id": me.id,
            "role": me.state,
            "term": me.term,
            "leader": me.leader.map(|id| json!({
                "id": id,
                "http_addr": leader_node.as_ref().map(|n| n.http_addr.clone()),
                "raft_addr": leader_node.as_ref().map(|n| n.raft_addr.clone()),
            })),
            "leader_since": unix_seconds(epoch.since),
            "last_log_index": me.last_log_index,
            "commit_index": me.committed_index,
            "applied_index": me.applied_index,
            "last_leader_contact_ms": me.since_leader_contact_ms,
            "uptime_s": me.uptime_s,
            "raft_stopped": service.group.stopped(),
        },
        "members": member_list,
        "storage": {
            "group": service.group.id,
            "db_path": service.group.database.path().display().to_string(),
            "db_size_bytes": db_size_bytes,
            "log_entries": me.log_entries,
            "log_disk_bytes": service.group.log.disk_bytes(),
            "log_memory_bytes": service.group.log.memory_bytes(),
            "snapshot_index": service.group.metrics().snapshot.map(|l| l.index),
        },
        "groups": groups_json(&state.databases),
        "version": env!("CARGO_PKG_VERSION"),
        "time": unix_seconds(SystemTime::now()),
        // The keys rqlite clients read from rqlite's own /status (gorqlite finds the leader here).
        "store": rqlite_store_section(&me, leader_node.as_ref(), &members),
        "build": {"version": env!("CARGO_PKG_VERSION")},
    });
    json_response(StatusCode::OK, &body, has_flag(raw.as_deref(), "pretty"))
}

/// The group replicas on this node: which database each serves, this node's role, the
/// leader and term, how far it applied, and on a leader each member's lag in entries.
fn groups_json(databases: &crate::catalog::databases::Databases) -> Value {
    let view = databases.view();
    databases
        .host()
        .services
        .all()
        .iter()
        .map(|service| {
            let group = &service.group;
            let metrics = group.metrics();
            let membership = metrics.membership_config.membership();
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            let replicas: Vec<NodeId> = membership.learner_ids().collect();
            let entry = (group.id != crate::catalog::CATALOG_GROUP)
                .then(|| view.by_group(group.id))
                .flatten();
            let database = entry.map_or(Value::Null, |entry| json!(entry.name));
            // A sharded database's group: its shard and the slots it owns.
            let shard = entry
                .filter(|entry| entry.sharded())
                .map_or(Value::Null, |entry| {
                    let slots: Vec<Value> = entry
                        .slots
                        .ranges_of(entry.group)
                        .into_iter()
                        .map(|(first, end)| json!([first, end - 1]))
                        .collect();
                    json!({
                        "shard": entry.shard,
                        "of": entry.groups.len(),
                        "slots": slots.first().cloned().unwrap_or(Value::Null),
                        "slot_ranges": slots,
                        "owner_version": entry.slots.owner_version(entry.group),
                    })
                });
            let last = metrics.last_log_index.unwrap_or(0);
            let lag: serde_json::Map<String, Value> = metrics
                .replication
                .iter()
                .flatten()
                .map(|(id, matched)| {
                    let behind = last.saturating_sub(matched.as_ref().map_or(0, |m| m.index));
                    (id.to_string(), json!(behind))
                })
                .collect();
            let is_voter = voters.contains(&group.node_id);
            json!({
                "group": group.id,
                "catalog": group.id == crate::catalog::CATALOG_GROUP,
                "database": database,
                "shard": shard,
                "role": crate::service::cluster::role_name(metrics.state, is_voter),
                "term": metrics.current_term,
                "leader": metrics.current_leader,
                "voters": voters,
                "read_replicas": replicas,
                "applied_index": metrics.last_applied.map(|l| l.index),
                "commit_index": metrics.local_committed.map(|l| l.index),
                "lag_entries": if lag.is_empty() { Value::Null } else { Value::Object(lag) },
                // Idle: Raft timers stopped, liveness checked per node pair (raft::quiesce).
                "quiesced": group.is_quiesced(),
                // A cross-group transaction prepared here and not yet decided (router::commit).
                "holds_prepared": group.database.holds_prepared(),
            })
        })
        .collect()
}

fn rqlite_store_section(
    me: &MemberState,
    leader: Option<&ShoalNode>,
    members: &BTreeMap<NodeId, (ShoalNode, bool, Option<MemberState>)>,
) -> Value {
    let own_addr = members
        .get(&me.id)
        .map(|(node, _, _)| node.raft_addr.clone());
    let voters = members.values().filter(|(_, voter, _)| *voter).count();
    let raft_state = match me.state.as_str() {
        "leader" => "Leader",
        "candidate" => "Candidate",
        "shutdown" => "Shutdown",
        _ => "Follower",
    };
    json!({
        "node_id": me.id.to_string(),
        "addr": own_addr,
        "ready": me.leader.is_some(),
        "leader": {
            "node_id": me.leader.map(|id| id.to_string()).unwrap_or_default(),
            "addr": leader.map(|n| n.raft_addr.clone()).unwrap_or_default(),
        },
        "raft": {
            "state": raft_state,
            "term": me.term,
            "commit_index": me.committed_index.unwrap_or(0),
            "applied_index": me.applied_index.unwrap_or(0),
            "last_log_index": me.last_log_index.unwrap_or(0),
            "num_peers": voters.saturating_sub(1),
            "voter": members.get(&me.id).is_some_and(|(_, voter, _)| *voter),
        },
        "nodes": members.iter().map(|(id, (node, voter, _))| json!({"id": id.to_string(), "addr": node.raft_addr, "suffrage": if *voter { "Voter" } else { "Nonvoter" }})).collect::<Vec<_>>(),
    })
}

fn member_json(
    id: NodeId,
    node: &ShoalNode,
    voter: bool,
    state: Option<&MemberState>,
    newest_applied: Option<u64>,
) -> Value {
    let applied = state.and_then(|s| s.applied_index);
    json!({
        "id": id,
        "http_addr": node.http_addr,
        "raft_addr": node.raft_addr,
        "voter": voter,
        "health": if state.is_some() { 1 } else { 0 },
        "role": state.map(|s| s.state.clone()).unwrap_or_else(|| "unreachable".into()),
        "term": state.map(|s| s.term),
        "applied_index": applied,
        "lag_entries": match (newest_applied, applied) { (Some(n), Some(a)) => Some(n.saturating_sub(a)), (Some(n), None) => Some(n), _ => None },
        "lag_ms": state.and_then(|s| s.since_leader_contact_ms),
        "last_contact_ms": state.and_then(|s| s.since_leader_contact_ms),
        "uptime_s": state.map(|s| s.uptime_s),
    })
}

/// rqlite's `POST /snapshot[?trailing_logs=N]`: build a snapshot on this node now, then keep
/// only `N` log entries behind it. 200 once the snapshot is built.
async fn snapshot(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> Response {
    let pairs = flags(raw.as_deref());
    let trailing_logs = match pairs.iter().find(|(key, _)| key == "trailing_logs") {
        None => None,
        Some((_, value)) => match value.parse::<u64>() {
            Ok(count) => Some(count),
            Err(_) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("trailing_logs must be a whole number, got {value:?}")}),
                    false,
                );
            }
        },
    };
    match state
        .service
        .group
        .snapshot_now(trailing_logs, Duration::from_secs(120))
        .await
    {
        Ok(index) => json_response(
            StatusCode::OK,
            &json!({"snapshot_index": index}),
            has_flag(raw.as_deref(), "pretty"),
        ),
        Err(error) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": error}),
            false,
        ),
    }
}

/// rqlite's `/nodes`: voters by default, read replicas too with `nonvoters`; `ver=2` for a list.
async fn nodes(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> Response {
    let pairs = flags(raw.as_deref());
    let include_non_voters = pairs.iter().any(|(k, _)| k == "nonvoters");
    let list_form = pairs.iter().any(|(k, v)| k == "ver" && v == "2");
    let members = state.service.member_probes(state.started).await;
    let leader = state.service.group.metrics().current_leader;
    let mut by_id = serde_json::Map::new();
    let mut list = Vec::new();
    for (id, probe) in members {
        if !probe.voter && !include_non_voters {
            continue;
        }
        let mut entry = json!({
            "id": id.to_string(),
            "api_addr": crate::net::node_url(&probe.node.http_addr),
            "addr": probe.node.raft_addr,
            "voter": probe.voter,
            "reachable": probe.state.is_ok(),
            "leader": leader == Some(id),
            "time": probe.took.as_secs_f64(),
            "time_s": format!("{:?}", probe.took),
        });
        if let (Err(error), Some(fields)) = (&probe.state, entry.as_object_mut()) {
            fields.insert("error".into(), json!(error));
        }
        list.push(entry.clone());
        by_id.insert(id.to_string(), entry);
    }
    let body = if list_form {
        json!({"nodes": list})
    } else {
        Value::Object(by_id)
    };
    json_response(StatusCode::OK, &body, has_flag(raw.as_deref(), "pretty"))
}

/// Ready when this node knows a leader (unless `noleader`) and its database answers.
async fn readyz(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> Response {
    let check_leader = !has_flag(raw.as_deref(), "noleader");
    let metrics = state.service.group.metrics();
    let mut lines = vec!["[+]node ok".to_string()];
    let mut ready = true;
    if let Some(reason) = state.service.group.stopped() {
        lines.push(format!("[-]raft: stopped ({reason}); restart the node"));
        ready = false;
    }
    if check_leader {
        if metrics.current_leader.is_some() {
            lines.push("[+]leader ok".into());
        } else {
            lines.push("[-]leader: no leader".into());
            ready = false;
        }
    }
    let query_flags = flags(raw.as_deref());
    let value = |name: &str| {
        query_flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    // `level=L`: reads at that consistency can be served through this node now: `none` needs
    // only the local database; the others need a leader that can reach a quorum.
    if let Some(text) = value("level") {
        match crate::service::request::ReadLevel::parse(&text) {
            Ok(crate::service::request::ReadLevel::None) => {
                lines.push("[+]level none ok (local reads)".into());
            }
            Ok(_) => {
                let quiet = state.service.group.leader_quiet();
                if metrics.current_leader.is_some() && quiet <= Duration::from_secs(1) {
                    lines.push(format!("[+]level {text} ok"));
                } else {
                    lines.push(format!(
                        "[-]level {text}: no leader with a quorum reachable"
                    ));
                    ready = false;
                }
            }
            Err(error) => {
                lines.push(format!("[-]level: {error}"));
                ready = false;
            }
        }
    }
    // `lag=N`: applied within N entries of the commit index this node knows.
    if let Some(text) = value("lag") {
        match text.parse::<u64>() {
            Ok(max) => {
                let committed = metrics.local_committed.map_or(0, |l| l.index);
                let applied = metrics.last_applied.map_or(0, |l| l.index);
                let behind = committed.saturating_sub(applied);
                if behind <= max {
                    lines.push(format!("[+]lag ok ({behind} entries)"));
                } else {
                    lines.push(format!("[-]lag: {behind} entries behind, more than {max}"));
                    ready = false;
                }
            }
            Err(_) => {
                lines.push(format!("[-]lag: {text:?} is not a number of entries"));
                ready = false;
            }
        }
    }
    // `freshness=DURATION`: heard from the leader within DURATION (as reads at level=none).
    if let Some(text) = value("freshness") {
        match humantime::parse_duration(&text) {
            Ok(max) => match state.service.group.since_leader_contact() {
                Some(age) if age <= max => {
                    lines.push(format!("[+]freshness ok ({} ms)", age.as_millis()));
                }
                Some(age) => {
                    lines.push(format!(
                        "[-]freshness: last heard from the leader {} ms ago, more than {text}",
                        age.as_millis()
                    ));
                    ready = false;
                }
                None => {
                    lines.push("[-]freshness: no contact with a leader yet".into());
                    ready = false;
                }
            },
            Err(error) => {
                lines.push(format!("[-]freshness: {text:?}: {error}"));
                ready = false;
            }
        }
    }
    let store_ok = state
        .service
        .group
        .database
        .query(
            vec![crate::raft::types::Statement::plain("SELECT 1")],
            Duration::from_secs(2),
        )
        .await
        .is_ok();
    lines.push(if store_ok {
        "[+]store ok".into()
    } else {
        "[-]store: database does not answer".into()
    });
    ready &= store_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, lines.join("\n") + "\n").into_response()
}

async fn livez() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// Node ids arrive as numbers or, from rqlite tooling, as strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum NodeIdField {
    Number(NodeId),
    Text(String),
}

impl NodeIdField {
    fn id(&self) -> Result<NodeId, ServiceError> {
        match self {
            NodeIdField::Number(id) => Ok(*id),
            NodeIdField::Text(text) => text.parse().map_err(|_| {
                ServiceError::BadRequest(format!("node id {text:?} is not a positive integer"))
            }),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    id: NodeIdField,
    /// The joining node's Raft address.
    addr: String,
    /// The joining node's HTTP API address.
    http_addr: Option<String>,
    #[serde(default = "default_true")]
    voter: bool,
    /// The cluster the joining node's data directory belongs to, when it has one: a node
    /// of another cluster is refused (rqlite refuses to start such a node).
    #[serde(default)]
    cluster_id: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    id: NodeIdField,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StepDownBody {
    id: Option<NodeIdField>,
}

fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    example: &str,
) -> Result<T, ServiceError> {
    serde_json::from_slice(body)
        .map_err(|e| ServiceError::BadRequest(format!("invalid body ({e}); expected {example}")))
}

async fn join(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let outcome = async {
        let body: JoinBody = parse_body(
            &body,
            r#"{"id": 2, "addr": "host:4002", "http_addr": "host:4001", "voter": true}"#,
        )?;
        let node = ShoalNode {
            raft_addr: body.addr,
            http_addr: body.http_addr.unwrap_or_default(),
        };
        let id = body.id.id()?;
        let mut member_of_this_cluster = false;
        if let Some(theirs) = &body.cluster_id {
            let database = state.service.group.database.clone();
            // Fails closed: a cluster id that cannot be read (the database is being replaced
            // or closed) decides nothing.
            let ours = tokio::task::spawn_blocking(move || database.applied_state())
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?
                .map_err(|e| ServiceError::Unavailable(format!("reading the cluster id: {e}")))?
                .cluster_id;
            match ours {
                Some(ours) if &ours != theirs => {
                    return Err(ServiceError::BadRequest(format!(
                        "node {id}'s data directory belongs to another cluster ({theirs}); this \
                         cluster is {ours}. Start it on an empty data directory to join, or \
                         without --join to run its own cluster"
                    )));
                }
                Some(_) => member_of_this_cluster = true,
                None => {}
            }
        }
        let request = if member_of_this_cluster {
            ClusterRequest::Rejoin {
                id,
                node,
                voter: body.voter,
            }
        } else {
            ClusterRequest::Join {
                id,
                node,
                voter: body.voter,
            }
        };
        state.service.cluster(request).await
    }
    .await;
    cluster_reply(outcome, &uri)
}

async fn remove(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let outcome = async {
        let body: RemoveBody = parse_body(&body, r#"{"id": 2}"#)?;
        state
            .service
            .cluster(ClusterRequest::Remove { id: body.id.id()? })
            .await
    }
    .await;
    cluster_reply(outcome, &uri)
}

/// `POST /drain {"id": N}`: moves every replica off node N (`shoal cluster drain N`); the
/// answer says how many replicas are still placed there (0: it can be removed).
async fn drain(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let outcome = async {
        let body: RemoveBody = parse_body(&body, r#"{"id": 2}"#)?;
        let id = body.id.id()?;
        state.databases.drain(id).await?;
        Ok::<_, ServiceError>((id, state.databases.placed_on(id)))
    }
    .await;
    match outcome {
        Ok((id, remaining)) => json_response(
            StatusCode::OK,
            &json!({"draining": id, "replicas_placed": remaining}),
            false,
        ),
        Err(error) => error_response(&error, &uri, false),
    }
}

async fn step_down(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let outcome = async {
        let body: StepDownBody = if body.iter().all(u8::is_ascii_whitespace) {
            StepDownBody::default()
        } else {
            parse_body(&body, r#"{} or {"id": 2}"#)?
        };
        let to = body.id.map(|id| id.id()).transpose()?;
        state.service.cluster(ClusterRequest::StepDown { to }).await
    }
    .await;
    cluster_reply(outcome, &uri)
}

fn cluster_reply(
    outcome: Result<ClusterResponse, ServiceError>,
    uri: &axum::http::Uri,
) -> Response {
    match outcome {
        Ok(ClusterResponse::Joined {
            id,
            voter,
            already_member,
        }) => json_response(
            StatusCode::OK,
            &json!({"joined": id, "voter": voter, "already_member": already_member}),
            false,
        ),
        Ok(ClusterResponse::Removed { id }) => {
            json_response(StatusCode::OK, &json!({"removed": id}), false)
        }
        Ok(ClusterResponse::LeaderChanged { from, to }) => json_response(
            StatusCode::OK,
            &json!({"previous_leader": from, "leader": to}),
            false,
        ),
        Err(error) => error_response(&error, uri, false),
    }
}

async fn leader(State(state): State<ApiState>) -> Response {
    let metrics = state.service.group.metrics();
    let nodes: BTreeMap<NodeId, ShoalNode> = metrics
        .membership_config
        .nodes()
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    let epoch = state.service.group.leader_epoch();
    let body = match metrics.current_leader {
        Some(id) => json!({
            "leader": {
                "id": id,
                "http_addr": nodes.get(&id).map(|n| n.http_addr.clone()),
                "raft_addr": nodes.get(&id).map(|n| n.raft_addr.clone()),
            },
            "term": metrics.current_term,
            "since": unix_seconds(epoch.since),
        }),
        None => {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": ServiceError::NoLeader.to_string()}),
                false,
            );
        }
    };
    json_response(StatusCode::OK, &body, false)
}
