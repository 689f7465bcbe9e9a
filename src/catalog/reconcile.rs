//! Keeps this node in step with the catalog (see [`spawn`] for the two loops doing it):
//! - founds the catalog group on a cluster that has none yet (a new cluster, or a data
//!   directory of a version before the catalog), on the default group's leader;
//! - on the catalog's leader: creates the catalog's tables, and keeps the catalog's
//!   membership following the cluster's (every node a member, up to five voters);
//! - starts the replicas placed on this node (the group's first voters initialize it) and
//!   removes the replicas of dropped databases, and of groups that moved off this node;
//! - on each group's leader: changes the group's membership toward its placement, one step
//!   at a time — add a learner, promote it once caught up, demote, remove — so a group never
//!   has fewer voters than placed while a replica moves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use crate::catalog::CATALOG_GROUP;
use crate::catalog::balance::{Balancer, Round};
use crate::catalog::databases::Databases;
use crate::catalog::view::{self, CatalogView, Role};
use crate::raft::group::RaftGroup;
use crate::raft::types::{GroupId, NodeId, ShoalNode, StatementBatch};
use crate::service::{ReadConsistency, RequestKind, ServiceRequest, WriteConcern};

/// How often the node compares itself with the catalog.
const TICK: Duration = Duration::from_millis(200);
/// How often the catalog's leader runs a placement round.
const BALANCE_EVERY: Duration = Duration::from_secs(1);
/// Most voters the catalog group has; other nodes follow it as read replicas.
pub const CATALOG_VOTERS_MAX: usize = 5;
/// A learner is promoted once it is at most this many entries behind the leader.
const CAUGHT_UP_ENTRIES: u64 = 64;
/// Longest one membership change may take before the next tick tries again.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the reconciler until `shutdown` is set, as two loops so that slow network work never
/// delays the local reaction to a catalog change:
/// - hosting: every [`TICK`] and at once when this node's catalog replica applies a change —
///   founds the catalog where due, starts the replicas placed here and stops dropped ones (a
///   dropped database's replica stops serving within moments of the drop);
/// - membership: every [`TICK`] — on the catalog's leader the catalog's tables and membership,
///   the zone registration, removal of replicas that moved away, each led group's membership
///   moved toward its placement, and a placement round every [`BALANCE_EVERY`].
/// - the mover (`catalog::mover`) and automatic slot balancing (`catalog::slot_balance`), on
///   the catalog's leader.
pub fn spawn(
    databases: Arc<Databases>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let hosting = tokio::spawn(hosting_loop(databases.clone(), shutdown.clone()));
    let mover = tokio::spawn(crate::catalog::mover::mover_loop(
        databases.clone(),
        shutdown.clone(),
    ));
    let balancer = tokio::spawn(crate::catalog::slot_balance::auto_balance_loop(
        databases.clone(),
        shutdown.clone(),
    ));
    let membership = tokio::spawn(membership_loop(databases, shutdown));
    tokio::spawn(async move {
        let _ = tokio::join!(hosting, membership, mover, balancer);
    })
}

async fn hosting_loop(databases: Arc<Databases>, mut shutdown: watch::Receiver<bool>) {
    let Ok(catalog) = databases.catalog() else {
        tracing::error!("the catalog group does not run: databases cannot be managed");
        return;
    };
    let mut catalog_metrics = catalog.group.raft.metrics();
    loop {
        let seen = catalog.group.metrics().last_applied;
        let catalog_changed = async {
            loop {
                if catalog_metrics.changed().await.is_err() {
                    // The catalog's Raft stopped (shutdown): only the tick remains.
                    std::future::pending::<()>().await;
                }
                if catalog_metrics.borrow_watched().last_applied != seen {
                    return;
                }
            }
        };
        let stopping = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::select! {
            () = stopping => return,
            _ = tokio::time::sleep(TICK) => {}
            _ = catalog_changed => {}
        }
        if let Err(message) = host_step(&databases).await {
            tracing::debug!(%message, "hosting the placed replicas");
        }
    }
}

async fn membership_loop(databases: Arc<Databases>, mut shutdown: watch::Receiver<bool>) {
    let mut balancer: Option<Balancer> = None;
    let mut last_balance = Instant::now();
    let mut users_seen = None;
    loop {
        let stopping = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::select! {
            () = stopping => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if let Err(message) = membership_step(&databases).await {
            tracing::debug!(%message, "moving memberships toward the catalog");
        }
        if let Err(message) =
            crate::catalog::users::move_into_catalog(&databases, &mut users_seen).await
        {
            tracing::warn!(%message, "moving the users into the catalog");
        }
        if last_balance.elapsed() >= BALANCE_EVERY {
            last_balance = Instant::now();
            balance(&databases, &mut balancer).await;
        }
    }
}

/// A placement round when this node leads the catalog (the balancer's memory starts afresh
/// whenever leadership comes back here).
async fn balance(databases: &Databases, balancer: &mut Option<Balancer>) {
    let leads = databases.catalog().is_ok_and(|c| c.group.leads());
    if !leads {
        *balancer = None;
        return;
    }
    let view = databases.view();
    if !view.ready {
        return;
    }
    let balancer =
        balancer.get_or_insert_with(|| Balancer::new(databases.placement_settings().clone()));
    match balancer.round(databases, &view).await {
        Ok(Round::Balanced | Round::Waiting) => {}
        Ok(round) => tracing::debug!(?round, "placement round"),
        Err(message) => tracing::warn!(%message, "placement round"),
    }
}

/// Founds the catalog where due, then starts the replicas placed here and stops dropped ones.
async fn host_step(databases: &Databases) -> Result<(), String> {
    let catalog = databases.catalog().map_err(|e| e.to_string())?;
    let initialized = catalog
        .group
        .raft
        .is_initialized()
        .await
        .map_err(|e| e.to_string())?;
    if !initialized {
        return found_catalog(databases).await;
    }
    let view = databases.refresh().await.map_err(|e| e.to_string())?;
    if view.ready {
        host_placed_groups(databases, &view).await;
    }
    Ok(())
}

/// The catalog's own tables and membership (on its leader), this node's zone, replicas that
/// moved away, and one membership step of every group this node leads.
async fn membership_step(databases: &Databases) -> Result<(), String> {
    let catalog = databases.catalog().map_err(|e| e.to_string())?;
    let view = databases.refresh().await.map_err(|e| e.to_string())?;
    if catalog.group.leads() {
        // (Again once the catalog predates the sharding tables: the statements are idempotent.)
        if !view.ready || !view.has_shard_tables || !view.has_reshard_tables {
            return write_layout(&catalog).await;
        }
        follow_cluster(databases, &catalog.group).await?;
    }
    if !view.ready {
        return Ok(());
    }
    if let Some(zone) = &databases.placement_settings().zone
        && view.zones.get(&databases.host().node_id()) != Some(zone)
    {
        databases
            .register_zone(zone)
            .await
            .map_err(|e| format!("registering this node's zone: {e}"))?;
    }
    remove_moved_replicas(databases, &view).await;
    let nodes = databases.nodes();
    for group in databases.host().groups.all() {
        if group.id <= crate::raft::types::DEFAULT_DATA_GROUP || !group.leads() {
            continue;
        }
        if let Some(entry) = view.by_group(group.id) {
            let placed = entry.placements.iter().map(|p| (p.node, p.role)).collect();
            if let Err(message) = follow_placement(&group, &placed, &nodes).await {
                tracing::debug!(group = group.id, %message, "moving toward the placement");
            }
        }
    }
    Ok(())
}

/// Founds the catalog group on the default group's leader when no member has one: its voters
/// are the default group's (up to five), and the others follow once the catalog leader adds
/// them. A member that cannot be asked, or already has a catalog, stops the founding: two
/// catalogs must never be founded.
async fn found_catalog(databases: &Databases) -> Result<(), String> {
    let default = &databases.default_service().group;
    if !default.leads() {
        return Ok(());
    }
    let metrics = default.metrics();
    let membership = metrics.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Ok(());
    }
    let me = default.node_id;
    let peers = databases.peers(CATALOG_GROUP);
    for (id, node) in membership.nodes() {
        if *id == me {
            continue;
        }
        match peers.initialized(&node.raft_addr).await {
            Ok(Some(false)) => {}
            Ok(Some(true)) => return Ok(()),
            Ok(None) | Err(_) => {
                return Err(format!(
                    "not founding the catalog: member {id} could not say whether it has one"
                ));
            }
        }
    }
    let founders: BTreeMap<NodeId, ShoalNode> = membership
        .voter_ids()
        .take(CATALOG_VOTERS_MAX)
        .filter_map(|id| Some((id, membership.get_node(&id)?.clone())))
        .collect();
    let catalog = databases.catalog().map_err(|e| e.to_string())?;
    catalog
        .group
        .raft
        .initialize(founders.clone())
        .await
        .map_err(|e| format!("founding the catalog: {e}"))?;
    tracing::info!(voters = ?founders.keys().collect::<Vec<_>>(), "founded the cluster catalog");
    Ok(())
}

/// Creates the catalog's tables (idempotent statements, so racing leaders agree).
async fn write_layout(catalog: &crate::service::Service) -> Result<(), String> {
    let request = ServiceRequest {
        kind: RequestKind::Execute,
        batches: vec![StatementBatch::new(
            view::layout_statements(crate::service::unix_now_ms()),
            true,
        )],
        read: ReadConsistency::default(),
        write_concern: WriteConcern::Majority,
        write_concern_timeout: CHANGE_TIMEOUT,
        timeout: CHANGE_TIMEOUT,
        forward_to_leader: false,
    };
    let response = catalog.handle(request).await.map_err(|e| e.to_string())?;
    match response.results.iter().find_map(|r| r.error.clone()) {
        Some(message) => Err(format!("creating the catalog's tables: {message}")),
        None => Ok(()),
    }
}

/// The catalog's membership follows the cluster's (the default group's): every member of
/// the cluster a member of the catalog, voters up to [`CATALOG_VOTERS_MAX`].
async fn follow_cluster(databases: &Databases, catalog: &RaftGroup) -> Result<(), String> {
    let cluster = databases.default_service().group.metrics();
    let cluster = cluster.membership_config.membership();
    let wanted: BTreeMap<NodeId, ShoalNode> = cluster
        .nodes()
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    let cluster_voters: BTreeSet<NodeId> = cluster.voter_ids().collect();
    let voters_wanted = cluster_voters.len().clamp(1, CATALOG_VOTERS_MAX);
    let placed = wanted
        .keys()
        .map(|id| (*id, Role::Replica))
        .collect::<BTreeMap<_, _>>();
    // Voters: the current ones still in the cluster, then cluster voters in id order.
    let current: BTreeSet<NodeId> = catalog.raft.voter_ids().collect();
    let mut voters: Vec<NodeId> = current
        .iter()
        .copied()
        .filter(|id| cluster_voters.contains(id))
        .collect();
    for id in &cluster_voters {
        if voters.len() >= voters_wanted {
            break;
        }
        if !voters.contains(id) {
            voters.push(*id);
        }
    }
    voters.truncate(voters_wanted);
    let mut placed = placed;
    for id in voters {
        placed.insert(id, Role::Voter);
    }
    follow_placement(catalog, &placed, &wanted).await
}

/// Starts the replicas placed on this node (initializing a new group on its first voters)
/// and removes those of dropped databases.
async fn host_placed_groups(databases: &Databases, view: &CatalogView) {
    let host = databases.host();
    let me = host.node_id();
    for entry in view.groups.values() {
        if entry.everywhere() || host.service(entry.group).is_some() {
            continue;
        }
        let Some(placement) = entry.placed_on(me) else {
            continue;
        };
        let service = match host.start(entry.group).await {
            Ok(service) => service,
            Err(error) => {
                tracing::warn!(database = %entry.name, group = entry.group, %error, "cannot start a placed replica");
                continue;
            }
        };
        tracing::info!(database = %entry.name, group = entry.group, role = placement.role.as_str(), "hosting a replica");
        if placement.initial && !service.group.raft.is_initialized().await.unwrap_or(true) {
            initialize_group(databases, &service.group, entry.group, view).await;
        }
    }
    let on_disk = host.groups_on_disk();
    for &group in &view.dropped {
        if host.service(group).is_some() || on_disk.contains(&group) {
            host.stop(group, true).await;
        }
    }
}

/// Removes the replicas of groups that moved off this node: not placed here, and — as the
/// group's leader reports it — no longer a member in a committed membership, so a replica is
/// never deleted while it still counts toward the group's quorum or could count again. The
/// placement is read afresh right before the deletion.
async fn remove_moved_replicas(databases: &Databases, view: &CatalogView) {
    let host = databases.host();
    let me = host.node_id();
    let nodes = databases.nodes();
    for group in host.groups.all() {
        let Some(entry) = view.by_group(group.id) else {
            continue;
        };
        if entry.everywhere() || entry.placed_on(me).is_some() || group.leads() {
            continue;
        }
        let mut removed = false;
        for placement in &entry.placements {
            let Some(node) = nodes.get(&placement.node) else {
                continue;
            };
            let Ok(reports) = databases
                .peers(CATALOG_GROUP)
                .group_reports(&node.raft_addr)
                .await
            else {
                continue;
            };
            if let Some(report) = reports.iter().find(|r| r.group == group.id && r.leads) {
                removed = report.committed
                    && !report.joint
                    && !report.voters.contains(&me)
                    && !report.learners.contains(&me);
                break;
            }
        }
        let still_unplaced = databases.refresh().await.is_ok_and(|fresh| {
            fresh
                .by_group(group.id)
                .is_some_and(|entry| entry.placed_on(me).is_none())
        });
        if removed && still_unplaced {
            tracing::info!(database = %entry.name, group = group.id, "removing a replica that moved to another node");
            host.stop(group.id, true).await;
        }
    }
}

/// Every first voter of a new group initializes it with the same membership (openraft allows
/// that: identical initial memberships agree), so the group starts as soon as any two of
/// them run.
async fn initialize_group(
    databases: &Databases,
    group: &RaftGroup,
    id: GroupId,
    view: &CatalogView,
) {
    let Some(entry) = view.by_group(id) else {
        return;
    };
    let nodes = databases.nodes();
    let members: Option<BTreeMap<NodeId, ShoalNode>> = entry
        .placements
        .iter()
        .filter(|p| p.initial)
        .map(|p| Some((p.node, nodes.get(&p.node)?.clone())))
        .collect();
    let Some(members) = members else {
        tracing::warn!(
            group = id,
            "a first voter's address is unknown here; not initializing yet"
        );
        return;
    };
    if let Err(error) = group.raft.initialize(members).await {
        tracing::debug!(group = id, %error, "initializing a new group");
    }
}

/// One step of `group`'s membership (this node leads it) toward `placed`: add a missing
/// replica as a learner; else promote a placed voter that caught up; else, once every placed
/// voter votes, demote voters not placed as voters; else remove members not placed at all.
/// Addresses follow `nodes`.
async fn follow_placement(
    group: &RaftGroup,
    placed: &BTreeMap<NodeId, Role>,
    nodes: &BTreeMap<NodeId, ShoalNode>,
) -> Result<(), String> {
    let metrics = group.metrics();
    let membership = metrics.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Ok(());
    }
    let members: BTreeMap<NodeId, ShoalNode> = membership
        .nodes()
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let raft = &group.raft;
    let change = |what: String| move |e: String| format!("{what}: {e}");
    for (id, _) in placed.iter().filter(|(id, _)| !members.contains_key(id)) {
        let Some(node) = nodes.get(id) else { continue };
        return timed(group, raft.add_learner(*id, node.clone(), false))
            .await
            .map(|_| ())
            .map_err(change(format!("adding node {id} as a learner")));
    }
    let moved: BTreeMap<NodeId, ShoalNode> = members
        .iter()
        .filter_map(|(id, old)| {
            let new = nodes.get(id)?;
            (new != old).then(|| (*id, new.clone()))
        })
        .collect();
    if !moved.is_empty() {
        return timed(
            group,
            raft.change_membership(ChangeMembers::SetNodes(moved), false),
        )
        .await
        .map(|_| ())
        .map_err(change("updating addresses".into()));
    }
    let placed_voters: BTreeSet<NodeId> = placed
        .iter()
        .filter(|(_, role)| **role == Role::Voter)
        .map(|(id, _)| *id)
        .collect();
    let matched = metrics.replication.clone().unwrap_or_default();
    let last = metrics.last_log_index.unwrap_or(0);
    let caught_up = |id: &NodeId| {
        matched
            .get(id)
            .and_then(|m| m.as_ref())
            .is_some_and(|m| m.index + CAUGHT_UP_ENTRIES >= last)
    };
    let promotable: BTreeSet<NodeId> = placed_voters
        .iter()
        .filter(|id| !voters.contains(id) && caught_up(id))
        .copied()
        .collect();
    if !promotable.is_empty() {
        return timed(
            group,
            raft.change_membership(ChangeMembers::AddVoterIds(promotable), false),
        )
        .await
        .map(|_| ())
        .map_err(change("promoting caught-up learners".into()));
    }
    if !placed_voters.is_subset(&voters) {
        return Ok(());
    }
    let demoted: BTreeSet<NodeId> = voters.difference(&placed_voters).copied().collect();
    if !demoted.is_empty() {
        return timed(
            group,
            raft.change_membership(ChangeMembers::RemoveVoters(demoted), true),
        )
        .await
        .map(|_| ())
        .map_err(change("demoting voters no longer placed as voters".into()));
    }
    let removed: BTreeSet<NodeId> = members
        .keys()
        .filter(|id| !placed.contains_key(id))
        .copied()
        .collect();
    if !removed.is_empty() {
        return timed(
            group,
            raft.change_membership(ChangeMembers::RemoveNodes(removed), false),
        )
        .await
        .map(|_| ())
        .map_err(change("removing replicas no longer placed".into()));
    }
    Ok(())
}

async fn timed<T, E: std::fmt::Display>(
    group: &RaftGroup,
    change: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    // A quiesced group's leader takes no membership change until a quorum answers it again.
    group.wake_for_write().await;
    match tokio::time::timeout(CHANGE_TIMEOUT, change).await {
        Ok(outcome) => outcome.map_err(|e| e.to_string()),
        Err(_) => Err(format!("did not finish within {CHANGE_TIMEOUT:?}")),
    }
}
