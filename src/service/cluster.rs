//! Cluster operations: joining and removing members, stepping down and transferring
//! leadership, and gathering every member's state for `/status` and `/nodes`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::raft::types::{NodeId, ShoalNode};
use crate::service::{Service, ServiceError};

/// Longest a membership change may take (a joining node may need a whole snapshot first).
pub const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a new leader after handing leadership over.
const TRANSFER_WAIT: Duration = Duration::from_secs(3);

/// A cluster operation; runs on the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterRequest {
    Join {
        id: NodeId,
        node: ShoalNode,
        voter: bool,
    },
    Remove {
        id: NodeId,
    },
    /// Hand leadership to `to`, or to the most up-to-date voter.
    StepDown {
        to: Option<NodeId>,
    },
    /// A member of this cluster (the node proved it: its data directory carries this
    /// cluster's id) asking to join, possibly from new addresses. Appended last: entries
    /// are encoded by position, so the earlier variants keep their encoding.
    Rejoin {
        id: NodeId,
        node: ShoalNode,
        voter: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterResponse {
    Joined {
        id: NodeId,
        voter: bool,
        already_member: bool,
    },
    Removed {
        id: NodeId,
    },
    LeaderChanged {
        from: NodeId,
        to: NodeId,
    },
}

/// One member's own view of itself, as reported to whoever builds `/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberState {
    pub id: NodeId,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub since_leader_contact_ms: Option<u64>,
    pub uptime_s: u64,
    pub log_entries: u64,
}

pub fn role_name(state: ServerState, is_voter: bool) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Follower if is_voter => "follower",
        ServerState::Follower | ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// One member as a probe found it.
#[derive(Debug, Clone)]
pub struct MemberProbe {
    pub node: ShoalNode,
    pub voter: bool,
    /// Its state, or why it could not be reached.
    pub state: Result<MemberState, String>,
    /// How long the probe took.
    pub took: Duration,
}

impl Service {
    /// This node's state, as [`MemberState`].
    pub fn own_state(&self, started: std::time::Instant) -> MemberState {
        let m = self.group.metrics();
        let is_voter = self.group.raft.voter_ids().any(|id| id == self.node_id());
        MemberState {
            id: self.node_id(),
            state: role_name(m.state, is_voter).to_string(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            since_leader_contact_ms: self
                .group
                .since_leader_contact()
                .map(|d| d.as_millis() as u64),
            uptime_s: started.elapsed().as_secs(),
            log_entries: self.group.log.entry_count(),
        }
    }

    /// Every member's state (asked over the network), keyed by id; `None` for members that
    /// did not answer in time.
    pub async fn member_states(
        &self,
        started: std::time::Instant,
    ) -> BTreeMap<NodeId, (ShoalNode, bool, Option<MemberState>)> {
        self.member_probes(started)
            .await
            .into_iter()
            .map(|(id, probe)| (id, (probe.node, probe.voter, probe.state.ok())))
            .collect()
    }

    /// Every member, probed at once: its state, or why it could not be reached, and how long
    /// the probe took (rqlite's `/nodes` reports both).
    pub async fn member_probes(
        &self,
        started: std::time::Instant,
    ) -> BTreeMap<NodeId, MemberProbe> {
        let metrics = self.group.metrics();
        let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let probes = metrics.membership_config.nodes().map(|(id, node)| {
            let (id, node, voter) = (*id, node.clone(), voters.contains(id));
            async move {
                let probe_started = std::time::Instant::now();
                let state = if id == self.node_id() {
                    Ok(self.own_state(started))
                } else {
                    self.peers
                        .member_state(&node.raft_addr)
                        .await
                        .map_err(|error| error.to_string())
                };
                let probe = MemberProbe {
                    node,
                    voter,
                    state,
                    took: probe_started.elapsed(),
                };
                (id, probe)
            }
        });
        join_all(probes).await.into_iter().collect()
    }

    /// Runs a cluster operation here if this node leads, otherwise on the leader.
    pub async fn cluster(&self, request: ClusterRequest) -> Result<ClusterResponse, ServiceError> {
        if self.group.raft.is_leader() {
            return self.cluster_on_leader(request).await;
        }
        let metrics = self.group.metrics();
        let leader = metrics
            .current_leader
            .and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .cloned()
            })
            .ok_or(ServiceError::NoLeader)?;
        self.peers
            .cluster(
                &leader.raft_addr,
                &request,
                MEMBERSHIP_CHANGE_TIMEOUT + Duration::from_secs(5),
            )
            .await
    }

    /// Runs a cluster operation, which must happen on the leader.
    pub async fn cluster_on_leader(
        &self,
        request: ClusterRequest,
    ) -> Result<ClusterResponse, ServiceError> {
        if !self.group.raft.is_leader() {
            return Err(ServiceError::NoLeader);
        }
        match request {
            ClusterRequest::Join { id, node, voter } => self.join(id, node, voter, false).await,
            ClusterRequest::Rejoin { id, node, voter } => self.join(id, node, voter, true).await,
            ClusterRequest::Remove { id } => self.remove(id).await,
            ClusterRequest::StepDown { to } => self.step_down(to).await,
        }
    }

    /// Adds node `id` (or confirms it). A member's addresses are replaced only when
    /// `member_of_this_cluster` (its data directory carries this cluster's id): a new node
    /// that merely reuses a member's id must not take over its place and its log progress.
    async fn join(
        &self,
        id: NodeId,
        node: ShoalNode,
        voter: bool,
        member_of_this_cluster: bool,
    ) -> Result<ClusterResponse, ServiceError> {
        self.group.wake_for_write().await;
        let metrics = self.group.metrics();
        let membership = metrics.membership_config.membership();
        let existing = membership.get_node(&id).cloned();
        let is_voter = membership.voter_ids().any(|v| v == id);
        if let Some(existing) = &existing {
            if existing.raft_addr != node.raft_addr || existing.http_addr != node.http_addr {
                if !member_of_this_cluster {
                    return Err(ServiceError::BadRequest(format!(
                        "node id {id} is already a member at {}; remove it first or pick \
                         another id",
                        existing.raft_addr
                    )));
                }
                self.readdress(id, existing, node.clone()).await?;
            }
            if is_voter || !voter {
                return Ok(ClusterResponse::Joined {
                    id,
                    voter: is_voter,
                    already_member: true,
                });
            }
        }
        let change = |what: &'static str| {
            move |e: String| ServiceError::Unavailable(format!("{what} node {id} failed: {e}"))
        };
        let node_addr = node.raft_addr.clone();
        if existing.is_none() {
            // The leader must reach the new node's Raft port (with TLS: it must present a
            // certificate of the cluster CA) before it becomes a member at all.
            if let Err(error) = self.peers.member_state(&node.raft_addr).await {
                return Err(ServiceError::Unavailable(format!(
                    "node {id}'s Raft address {} is not reachable from the leader ({error}); \
                     with TLS, its certificate must be signed by the cluster CA",
                    node.raft_addr
                )));
            }
            // Blocking: returns once the learner has caught up, so promoting it next cannot
            // stall the cluster on an unreachable node.
            tokio::time::timeout(
                MEMBERSHIP_CHANGE_TIMEOUT,
                self.group.raft.add_learner(id, node, true),
            )
            .await
            .map_err(|_| {
                ServiceError::Timeout(format!(
                    "node {id} did not catch up within {MEMBERSHIP_CHANGE_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| change("adding")(e.to_string()))?;
        }
        if voter {
            tokio::time::timeout(
                MEMBERSHIP_CHANGE_TIMEOUT,
                self.group.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
            )
            .await
            .map_err(|_| ServiceError::Timeout(format!("promoting node {id} to voter did not finish within {MEMBERSHIP_CHANGE_TIMEOUT:?}")))?
            .map_err(|e| change("promoting")(e.to_string()))?;
        }
        tracing::info!(target: "audit", event = "member_joined", id, voter, addr = %node_addr, "node joined");
        Ok(ClusterResponse::Joined {
            id,
            voter,
            already_member: false,
        })
    }

    /// A member that comes back on new addresses (a container restarted on another IP) is
    /// re-registered, as rqlite does, through a membership change like any other — once the
    /// node at the new Raft address says it is that member, so a mistyped id cannot take over
    /// another node's place.
    async fn readdress(
        &self,
        id: NodeId,
        existing: &ShoalNode,
        node: ShoalNode,
    ) -> Result<(), ServiceError> {
        let reached = self
            .peers
            .member_state(&node.raft_addr)
            .await
            .map_err(|error| {
                ServiceError::Unavailable(format!(
                    "node {id} asks to move from {} to {}, which the leader cannot reach ({error})",
                    existing.raft_addr, node.raft_addr
                ))
            })?;
        if reached.id != id {
            return Err(ServiceError::BadRequest(format!(
                "node id {id} is already a member at {}; the node at {} is node {}, not {id}: \
                 remove {id} first or pick another id",
                existing.raft_addr, node.raft_addr, reached.id
            )));
        }
        let (old_raft, old_http) = (existing.raft_addr.clone(), existing.http_addr.clone());
        let (new_raft, new_http) = (node.raft_addr.clone(), node.http_addr.clone());
        tokio::time::timeout(
            MEMBERSHIP_CHANGE_TIMEOUT,
            self.group
                .raft
                .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), false),
        )
        .await
        .map_err(|_| {
            ServiceError::Timeout(format!(
                "changing node {id}'s addresses did not finish within {MEMBERSHIP_CHANGE_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| {
            ServiceError::Unavailable(format!("changing node {id}'s addresses failed: {e}"))
        })?;
        tracing::info!(
            target: "audit",
            event = "member_readdressed",
            id,
            from_raft = %old_raft,
            to_raft = %new_raft,
            from_http = %old_http,
            to_http = %new_http,
            "member re-registered at new addresses"
        );
        Ok(())
    }

    async fn remove(&self, id: NodeId) -> Result<ClusterResponse, ServiceError> {
        self.group.wake_for_write().await;
        let metrics = self.group.metrics();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(ServiceError::BadRequest(format!(
                "node {id} is not a member of the cluster"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(ServiceError::BadRequest(format!(
                    "node {id} is the only voter; a cluster needs at least one"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        tokio::time::timeout(
            MEMBERSHIP_CHANGE_TIMEOUT,
            self.group.raft.change_membership(change, false),
        )
        .await
        .map_err(|_| {
            ServiceError::Timeout(format!(
                "removing node {id} did not finish within {MEMBERSHIP_CHANGE_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| ServiceError::Unavailable(format!("removing node {id} failed: {e}")))?;
        tracing::info!(target: "audit", event = "member_removed", id, "node removed");
        Ok(ClusterResponse::Removed { id })
    }

    /// Hands leadership over. Only to a voter that has everything this leader has, so the
    /// transfer cannot stall; if no leader emerges in time, this node calls an election so the
    /// cluster is never left leaderless.
    async fn step_down(&self, to: Option<NodeId>) -> Result<ClusterResponse, ServiceError> {
        let metrics = self.group.metrics();
        let me = self.node_id();
        let last_log = metrics.last_log_index;
        let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let matched = |id: &NodeId| -> Option<u64> {
            metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|l| l.index)
        };
        let target = match to {
            Some(id) if id == me => {
                return Err(ServiceError::BadRequest(format!(
                    "node {id} is already the leader"
                )));
            }
            Some(id) if !voters.contains(&id) => {
                return Err(ServiceError::BadRequest(format!(
                    "node {id} is not a voter and cannot lead"
                )));
            }
            Some(id) => id,
            None => voters
                .iter()
                .filter(|id| **id != me)
                .max_by_key(|id| matched(id))
                .copied()
                .ok_or_else(|| {
                    ServiceError::BadRequest("no other voter to hand leadership to".into())
                })?,
        };
        // Give a briefly lagging target a moment to catch up before refusing.
        let caught_up = self
            .group
            .raft
            .wait(Some(Duration::from_secs(2)))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&target).cloned().flatten())
                        .map(|l| l.index)
                        >= last_log
                },
                "transfer target caught up",
            )
            .await
            .is_ok();
        if !caught_up {
            return Err(ServiceError::Unavailable(format!(
                "node {target} is not caught up with the leader; not transferring"
            )));
        }
        self.group
            .raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let settled = self
            .group
            .raft
            .wait(Some(TRANSFER_WAIT))
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != Some(me),
                "new leader",
            )
            .await;
        match settled {
            Ok(m) => {
                let to = m.current_leader.unwrap_or(target);
                tracing::info!(target: "audit", event = "leader_transferred", from = me, to, "leadership transferred");
                Ok(ClusterResponse::LeaderChanged { from: me, to })
            }
            Err(_) => {
                tracing::warn!(target, "no new leader after transfer; calling an election");
                let _ = self.group.raft.trigger().elect(true).await;
                Err(ServiceError::Unavailable(format!(
                    "node {target} did not take over within {TRANSFER_WAIT:?}"
                )))
            }
        }
    }
}

/// Seconds since the Unix epoch, for status timestamps.
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
