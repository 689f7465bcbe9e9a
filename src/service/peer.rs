//! Calls from this node's service to other nodes' internal endpoints (on their Raft port):
//! forwarding requests to the leader, asking members how far they have applied.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::net::node_client::NodeClient;
use crate::raft::types::{GroupId, NodeId};
use crate::raft::wire::{self, CHECKSUM_HEADER};
use crate::service::cluster::{ClusterRequest, ClusterResponse, MemberState};
use crate::service::{ServiceError, ServiceRequest, ServiceResponse};

/// How an error that never reached the other node begins: the request certainly did not run
/// there (see [`never_reached_the_leader`]).
const CANNOT_CONNECT: &str = "cannot connect to";

/// Whether `error` says a forwarded request never reached the node (so trying again cannot
/// run it twice).
pub fn never_reached_the_leader(error: &ServiceError) -> bool {
    match error {
        ServiceError::NoLeader | ServiceError::NotLeader { .. } => true,
        ServiceError::Unavailable(message) => message.starts_with(CANNOT_CONNECT),
        _ => false,
    }
}

/// Client for other nodes' internal endpoints.
#[derive(Clone)]
pub struct PeerClient {
    http: NodeClient,
    group: GroupId,
}

/// Time allowed to read a member's state for `/status` and `/nodes`.
pub const MEMBER_PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

impl PeerClient {
    pub fn new(http: NodeClient, group: GroupId) -> Self {
        Self { http, group }
    }

    /// The node's client for calls to other nodes (TLS-configured when TLS is on), as of
    /// now: hold it for one call.
    pub fn http(&self) -> reqwest::Client {
        self.http.client()
    }

    /// The writes the node at `raft_addr` routed per bucket of slots (`shard::write_load`) to
    /// the database whose first group is this client's group.
    pub async fn write_load(&self, raft_addr: &str) -> Result<Vec<u64>, ServiceError> {
        self.call(raft_addr, "write-load", &(), MEMBER_PROBE_TIMEOUT)
            .await
    }

    fn url(&self, raft_addr: &str, action: &str) -> String {
        format!(
            "{}/internal/v1/{}/{action}",
            crate::net::raft_url(raft_addr),
            self.group
        )
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        raft_addr: &str,
        action: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ServiceError> {
        let (body, checksum) = wire::encode(request).map_err(ServiceError::Internal)?;
        let response = self
            .http
            .client()
            .post(self.url(raft_addr, action))
            .header(CHECKSUM_HEADER, checksum.to_string())
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let cause = with_causes(&e);
                if e.is_connect() {
                    ServiceError::Unavailable(format!("{CANNOT_CONNECT} {raft_addr}: {cause}"))
                } else {
                    ServiceError::OutcomeUnknown(format!("no reply from {raft_addr}: {cause}"))
                }
            })?;
        let checksum = response
            .headers()
            .get(CHECKSUM_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ServiceError::Unavailable(format!("reply from {raft_addr}: {e}")))?;
        if !status.is_success() {
            return Err(ServiceError::Unavailable(format!(
                "{raft_addr} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        wire::decode(&bytes, checksum.as_deref()).map_err(ServiceError::Internal)
    }

    /// Runs `request` on the leader.
    pub async fn forward(
        &self,
        leader_raft_addr: &str,
        request: &ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        // The leader enforces the request's own timeout; allow a little more for the hop.
        let timeout = request.timeout + Duration::from_secs(1);
        match self
            .call::<_, Result<ServiceResponse, ServiceError>>(
                leader_raft_addr,
                "request",
                request,
                timeout,
            )
            .await
        {
            Ok(result) => result,
            // A read that lost its reply changed nothing: it is simply unavailable.
            Err(ServiceError::OutcomeUnknown(message)) if !request_may_have_run(request) => {
                Err(ServiceError::Unavailable(message))
            }
            Err(error) => Err(error),
        }
    }

    /// Applies a cross-group transaction step in this group on the node at `raft_addr`: on
    /// its leader, through it when `forward` (a replica that is not the leader), else only if
    /// it leads.
    pub async fn step(
        &self,
        raft_addr: &str,
        step: &crate::types::shard::ShardStep,
        forward: bool,
        concern: crate::service::WriteConcern,
        timeout: Duration,
    ) -> Result<Vec<crate::raft::types::StatementResult>, ServiceError> {
        self.call::<_, Result<Vec<crate::raft::types::StatementResult>, ServiceError>>(
            raft_addr,
            "step",
            &(step, forward, concern, timeout.as_millis() as u64),
            timeout + Duration::from_secs(1),
        )
        .await?
    }

    /// Runs a cluster operation on the leader.
    pub async fn cluster(
        &self,
        leader_raft_addr: &str,
        request: &ClusterRequest,
        timeout: Duration,
    ) -> Result<ClusterResponse, ServiceError> {
        self.call::<_, Result<ClusterResponse, ServiceError>>(
            leader_raft_addr,
            "cluster",
            request,
            timeout,
        )
        .await?
    }

    /// Whether the member's replica of this group is initialized: `None` when the member
    /// runs no such group or answered nothing useful.
    pub async fn initialized(&self, raft_addr: &str) -> Result<Option<bool>, ServiceError> {
        self.call(raft_addr, "initialized", &(), MEMBER_PROBE_TIMEOUT)
            .await
    }

    /// Every group running on the node at `raft_addr`.
    pub async fn group_reports(
        &self,
        raft_addr: &str,
    ) -> Result<Vec<crate::service::registry::GroupReport>, ServiceError> {
        self.call(raft_addr, "groups", &(), MEMBER_PROBE_TIMEOUT)
            .await
    }

    /// A member's own view of its state.
    pub async fn member_state(&self, raft_addr: &str) -> Result<MemberState, ServiceError> {
        self.call(raft_addr, "state", &(), MEMBER_PROBE_TIMEOUT)
            .await
    }

    /// Asks `members` to report once they have applied `index`; returns how many did within
    /// `timeout`, stopping early once `wanted` have.
    pub async fn count_applied(
        &self,
        members: &[(NodeId, String)],
        index: u64,
        wanted: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        // Each member is asked until it confirms or the deadline passes: one that is briefly
        // unreachable may still apply the write in time.
        let mut waits: FuturesUnordered<_> = members
            .iter()
            .map(|(_, addr)| async move {
                loop {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if remaining.is_zero() {
                        return false;
                    }
                    let request = (index, remaining.as_millis() as u64);
                    match self
                        .call::<_, bool>(
                            addr,
                            "await-applied",
                            &request,
                            remaining + Duration::from_millis(500),
                        )
                        .await
                    {
                        Ok(applied) => return applied,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100).min(remaining)).await
                        }
                    }
                }
            })
            .collect();
        let mut confirmed = 0;
        while confirmed < wanted {
            match tokio::time::timeout_at(deadline, waits.next()).await {
                Ok(Some(true)) => confirmed += 1,
                Ok(Some(false)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        confirmed
    }
}

/// Whether `error` says the node called does not run the group (404): the request did not
/// run there, and another replica (or a refreshed placement) should be tried.
pub fn group_not_there(error: &ServiceError) -> bool {
    matches!(error, ServiceError::Unavailable(message) if message.contains(" answered 404"))
}

/// A write forwarded to the leader may have been applied even if the reply was lost.
fn request_may_have_run(request: &ServiceRequest) -> bool {
    use crate::service::RequestKind;
    !matches!(
        request.kind,
        RequestKind::Query | RequestKind::Rehearse | RequestKind::Describe
    )
}

/// An error with its chain of causes (reqwest's own message hides a TLS refusal's reason).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
