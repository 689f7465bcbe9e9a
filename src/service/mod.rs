//! The service: one entry point for every client API. Routes each request — reads locally,
//! under the leader's lease, with ReadIndex or through the log; writes through the log on the
//! leader (forwarding from followers) — and waits for the write concern.

pub mod cluster;
pub mod internal;
pub mod peer;
pub mod proposals;
pub mod queue;
pub mod read_confirm;
pub mod registry;
pub mod request;
pub mod steps;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::ReadPolicy;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::raft::linearizable_read::LinearizerOption;

use crate::db::database::DbError;
use crate::db::execute::StatementShape;
use crate::raft::group::RaftGroup;
use crate::raft::types::{Command, NodeId, StatementBatch, StatementResult, TypeConfig};
use crate::types::shard::GROUP_HELD_BY_PREPARED;

/// How long a request forwarded to the leader waits for one while leadership moves (an
/// election takes a few election timeouts at most).
const LEADER_WAIT: Duration = Duration::from_secs(2);
pub(crate) const LEADER_WAIT_STEP: Duration = Duration::from_millis(25);
/// How often a leader whose lease is not yet established tries a write again.
const LEASE_WAIT_STEP: Duration = Duration::from_millis(2);
/// How often a write waiting for a prepared cross-group transaction's decision looks again.
const HELD_POLL: Duration = Duration::from_millis(5);

/// What `Raft::client_write` fails with.
type ClientWriteFailure = RaftError<TypeConfig, ClientWriteError<TypeConfig>>;
use peer::PeerClient;
use proposals::Proposals;
use read_confirm::SharedConfirmations;
pub use request::*;

/// The service of one node (one data group today).
pub struct Service {
    pub group: Arc<RaftGroup>,
    pub peers: PeerClient,
    /// `level=weak` reads: the leader lease, shared by concurrent reads.
    lease_reads: Arc<SharedConfirmations>,
    /// `level=linearizable` reads: a quorum round (ReadIndex), shared by concurrent reads.
    read_index_reads: Arc<SharedConfirmations>,
    /// Writes waiting to be proposed together.
    proposals: Proposals,
}

impl Service {
    pub fn new(group: Arc<RaftGroup>, http: crate::net::node_client::NodeClient) -> Arc<Service> {
        Arc::new(Service {
            peers: PeerClient::new(http, group.id),
            lease_reads: SharedConfirmations::new(
                group.raft.clone(),
                LinearizerOption::new(None, true),
            ),
            read_index_reads: SharedConfirmations::new(
                group.raft.clone(),
                ReadPolicy::ReadIndex.into(),
            ),
            proposals: Proposals::new(group.raft.clone()),
            group,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.group.node_id
    }

    /// Handles one request end to end.
    pub async fn handle(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        if request.batches.iter().all(|b| b.statements.is_empty()) {
            return Ok(ServiceResponse {
                served_by: self.node_id(),
                ..Default::default()
            });
        }
        let deadline = request.timeout;
        let may_write = !matches!(
            request.kind,
            RequestKind::Query | RequestKind::Rehearse | RequestKind::Describe
        );
        match tokio::time::timeout(deadline, self.route(request)).await {
            Ok(result) => result,
            // A write that timed out may still commit: say so, so the client checks before retrying.
            Err(_) if may_write => Err(ServiceError::OutcomeUnknown(format!(
                "the request did not complete within {deadline:?}; a write in it may still be applied"
            ))),
            Err(_) => Err(ServiceError::Timeout(format!(
                "request did not complete within {deadline:?}"
            ))),
        }
    }

    async fn route(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        let reads_only = match request.kind {
            RequestKind::Rehearse | RequestKind::Describe => {
                return self.rehearse(request).await;
            }
            RequestKind::Execute => false,
            RequestKind::Query => true,
            RequestKind::Unified => {
                let statements: Vec<_> = request
                    .batches
                    .iter()
                    .flat_map(|b| b.statements.clone())
                    .collect();
                self.group
                    .database
                    .all_read_only(&statements)
                    .await
                    .map_err(|e| ServiceError::Internal(e.to_string()))?
            }
        };
        if reads_only {
            self.read(request).await
        } else {
            self.write(request).await
        }
    }

    /// Runs an interactive transaction's statements on the leader and rolls them back
    /// (`Rehearse`), or compiles a statement after them (`Describe`).
    async fn rehearse(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        if !self.group.raft.is_leader() {
            return self.send_to_leader(request).await;
        }
        let term = self.group.metrics().current_term;
        let describe = request.kind == RequestKind::Describe;
        let [mut batch] = <[StatementBatch; 1]>::try_from(request.batches).map_err(|batches| {
            ServiceError::BadRequest(format!(
                "a transaction rehearsal takes one batch, not {}",
                batches.len()
            ))
        })?;
        let database = self.group.database.clone();
        let (results, shape) = tokio::task::spawn_blocking(move || {
            if describe {
                let described = batch
                    .statements
                    .pop()
                    .ok_or_else(|| DbError::Internal("nothing to describe".to_string()))?;
                let shape = database.describe_after(&batch, &described.sql)?;
                Ok((Vec::new(), Some(shape)))
            } else {
                database.rehearse(&batch).map(|results| (results, None))
            }
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("rehearsal task failed: {e}")))?
        .map_err(|e: DbError| ServiceError::Internal(e.to_string()))?;
        Ok(ServiceResponse {
            results,
            served_by: self.node_id(),
            term: Some(term),
            shape,
            ..Default::default()
        })
    }

    /// The shape of `sql` (parameters, result columns) for a client preparing it: compiled on
    /// this node, or on the leader when `transaction` (the statements of an open transaction)
    /// is given or the statement does not compile here (this node may not have applied the
    /// table it names yet).
    pub async fn describe(
        &self,
        sql: String,
        transaction: Option<StatementBatch>,
        timeout: Duration,
    ) -> Result<Result<StatementShape, String>, ServiceError> {
        if transaction.is_none() {
            let local = self
                .group
                .database
                .describe(sql.clone())
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            if local.is_ok() || self.group.raft.is_leader() {
                return Ok(local);
            }
        }
        let request = ServiceRequest::describe(sql, transaction, timeout);
        self.handle(request).await?.shape.ok_or_else(|| {
            ServiceError::Internal("the leader did not describe the statement".into())
        })
    }

    /// Waits (at most `timeout`) until this node has applied the entry at `index`, so a
    /// session reads its own writes on a follower too.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) {
        let _ = self
            .group
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "session reads its own writes")
            .await;
    }

    fn is_voter(&self) -> bool {
        self.group.votes()
    }

    async fn read(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        let level = request.read.level.resolve(self.is_voter());
        match level {
            ReadLevel::None | ReadLevel::Auto => self.check_freshness(&request.read)?,
            ReadLevel::Weak | ReadLevel::Linearizable | ReadLevel::Strong
                if !self.group.raft.is_leader() =>
            {
                return self.send_to_leader(request).await;
            }
            ReadLevel::Weak if self.group.lease_covers_now() => self.group.note_leader_read(),
            ReadLevel::Weak => self.confirm_leadership(&self.lease_reads, &request).await?,
            ReadLevel::Linearizable => {
                self.confirm_leadership(&self.read_index_reads, &request)
                    .await?
            }
            ReadLevel::Strong => {
                // A blank entry through the log: once it is applied, everything committed
                // before the read arrived is applied too.
                self.group.wake_for_write().await;
                self.group
                    .raft
                    .write_blank()
                    .await
                    .map_err(|e| self.write_error(e))?;
            }
        }
        let statements = request
            .batches
            .into_iter()
            .flat_map(|b| b.statements)
            .collect();
        let results = self
            .group
            .database
            .query(statements, request.timeout)
            .await
            .map_err(|e| match e {
                crate::db::database::DbError::Timeout(after) => {
                    ServiceError::Timeout(format!("query ran longer than {after:?}"))
                }
                other => ServiceError::Internal(other.to_string()),
            })?;
        Ok(ServiceResponse {
            results,
            served_by: self.node_id(),
            ..Default::default()
        })
    }

    fn check_freshness(&self, read: &ReadConsistency) -> Result<(), ServiceError> {
        let Some(freshness) = read.freshness else {
            return Ok(());
        };
        match self.group.since_leader_contact() {
            Some(age) if age <= freshness => {}
            Some(age) => {
                return Err(ServiceError::StaleRead(format!(
                    "this node last heard from the leader {} ms ago, more than freshness={} ms",
                    age.as_millis(),
                    freshness.as_millis()
                )));
            }
            None => {
                return Err(ServiceError::StaleRead(
                    "this node has not heard from a leader since it started".into(),
                ));
            }
        }
        if read.freshness_strict {
            let metrics = self.group.metrics();
            let committed = metrics.local_committed.map(|l| l.index);
            let applied = metrics.last_applied.map(|l| l.index);
            if applied < committed {
                return Err(ServiceError::StaleRead(format!(
                    "freshness_strict: applied index {applied:?} is behind committed index {committed:?}"
                )));
            }
        }
        Ok(())
    }

    /// Confirms this node may serve `request` as a leader read: a confirmation shared with
    /// the reads that arrived with it (`read_confirm`), then the wait until this node has
    /// applied up to its read index.
    async fn confirm_leadership(
        &self,
        confirmations: &Arc<SharedConfirmations>,
        request: &ServiceRequest,
    ) -> Result<(), ServiceError> {
        // A quiesced leader has no fresh quorum acknowledgement: reads resume its heartbeats,
        // so the next ones are served under its lease again (and keep it from quiescing).
        self.group.note_leader_read();
        let linearizer = confirmations.confirm().await?;
        match linearizer
            .try_await_ready(&self.group.raft, Some(request.timeout))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ServiceError::Timeout(
                "waiting for this node to apply up to the read index".into(),
            )),
            Err(fatal) => Err(ServiceError::Unavailable(fatal.to_string())),
        }
    }

    /// Runs a write. While the group holds a prepared cross-group transaction, writes wait
    /// for its decision; one that reached the log meanwhile was refused whole (nothing of it
    /// applied) and is proposed again, until the request's time is up.
    async fn write(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        let deadline = Instant::now() + request.timeout;
        loop {
            self.wait_while_holding(deadline).await;
            let response = self.write_once(request.clone()).await?;
            let refused = response
                .results
                .iter()
                .any(|r| r.error.as_deref() == Some(GROUP_HELD_BY_PREPARED));
            if !refused || Instant::now() >= deadline {
                return Ok(response);
            }
        }
    }

    /// Waits (until `deadline`) while this replica holds a prepared cross-group transaction.
    async fn wait_while_holding(&self, deadline: Instant) {
        while self.group.database.holds_prepared() && Instant::now() < deadline {
            tokio::time::sleep(HELD_POLL).await;
        }
    }

    async fn write_once(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        if !self.group.raft.is_leader() {
            return self.send_to_leader(request).await;
        }
        let members = self.group.member_count();
        let required = request
            .write_concern
            .members_required(members)
            .map_err(ServiceError::BadRequest)?;
        if crate::unsafe_faults::active()
            == Some(crate::unsafe_faults::UnsafeFault::AckBeforeCommit)
        {
            return Ok(self.acknowledge_before_commit(Command {
                timestamp_ms: unix_now_ms(),
                batches: request.batches.clone(),
                load: None,
                users: None,
                shard: None,
            }));
        }
        self.group.wake_for_write().await;
        let proposed = std::time::Instant::now();
        let metrics = crate::metrics::metrics();
        metrics.proposals.inc();
        let lease_deadline = proposed + LEADER_WAIT.min(request.timeout);
        let outcome = loop {
            let outcome = self.proposals.propose(request.batches.clone()).await;
            match outcome {
                // A leader just elected takes writes once a quorum has acknowledged it (its
                // lease), a moment after the election: the request waits here rather than
                // for another leader.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
                    if self.group.raft.is_leader() && Instant::now() < lease_deadline =>
                {
                    // (Quiesced again since the check above: wake, so heartbeats renew it.)
                    self.group.wake_for_write().await;
                    tokio::time::sleep(LEASE_WAIT_STEP).await;
                }
                outcome => break outcome,
            }
        };
        match &outcome {
            Ok(_) => metrics
                .proposal_duration
                .observe(proposed.elapsed().as_secs_f64()),
            Err(_) => {
                metrics.proposal_failures.inc();
            }
        }
        let written = match outcome {
            Ok(written) => written,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                return self.send_to_leader(request).await;
            }
            Err(error) => return Err(self.write_error(error)),
        };
        let (index, results) = (written.index, written.results);
        let write_concern_error = match required {
            Some(required) if required > 1 => {
                self.await_write_concern(index, required, request.write_concern_timeout)
                    .await
            }
            _ => None,
        };
        Ok(ServiceResponse {
            results,
            raft_index: Some(index),
            write_concern_error,
            served_by: self.node_id(),
            ..Default::default()
        })
    }

    /// The deliberately broken write path of [`UnsafeFault::AckBeforeCommit`]: proposes the
    /// command in the background and claims success at once.
    ///
    /// [`UnsafeFault::AckBeforeCommit`]: crate::unsafe_faults::UnsafeFault::AckBeforeCommit
    fn acknowledge_before_commit(&self, command: Command) -> ServiceResponse {
        let claimed = StatementResult {
            rows_affected: 1,
            ..Default::default()
        };
        let results = vec![claimed; command.batches.iter().map(|b| b.statements.len()).sum()];
        let raft = self.group.raft.clone();
        tokio::spawn(async move {
            let _ = raft.client_write(command).await;
        });
        ServiceResponse {
            results,
            served_by: self.node_id(),
            ..Default::default()
        }
    }

    fn write_error(&self, error: ClientWriteFailure) -> ServiceError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ServiceError::NoLeader,
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => ServiceError::OutcomeUnknown(
                "leadership changed while the write was being committed; it may or may not be applied".into(),
            ),
            RaftError::APIError(other) => ServiceError::Internal(other.to_string()),
            RaftError::Fatal(fatal) => ServiceError::Unavailable(format!("Raft stopped on this node: {fatal}")),
        }
    }

    /// Waits until `required` members (this leader included) have applied `index`.
    pub(crate) async fn await_write_concern(
        &self,
        index: u64,
        required: usize,
        timeout: Duration,
    ) -> Option<crate::service::WriteConcernError> {
        let metrics = self.group.metrics();
        let others: Vec<(NodeId, String)> = metrics
            .membership_config
            .nodes()
            .filter(|(id, _)| **id != self.node_id())
            .map(|(id, node)| (*id, node.raft_addr.clone()))
            .collect();
        let applied_on = 1 + self
            .peers
            .count_applied(&others, index, required - 1, timeout)
            .await;
        if applied_on >= required {
            return None;
        }
        Some(WriteConcernError {
            message: format!(
                "write committed at index {index} but applied on only {applied_on} of the {required} members required within wtimeout={}ms",
                timeout.as_millis()
            ),
            committed_index: index,
            applied_on,
            required,
        })
    }

    /// Passes the request to the leader. While leadership moves (no leader known yet, the one
    /// this node knew cannot be reached or says it no longer leads — none of which ran the
    /// request) it waits for the next leader, up to `LEADER_WAIT` within the request's timeout,
    /// and goes on the moment one is known: to it, or here when this node was elected.
    async fn send_to_leader(
        &self,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        let deadline = Instant::now() + LEADER_WAIT.min(request.timeout);
        // When this node's view on arrival says it leads, the view is stale (Raft refused the
        // request as not leading): only a later election of this node runs the request here,
        // so each nested `route` needs a leadership gained meanwhile.
        let led_on_arrival = self.group.raft.is_leader();
        loop {
            if self.group.raft.is_leader() && !led_on_arrival {
                // Elected while the request waited: it runs here (boxed: `route` comes back
                // here if leadership moves on again).
                return Box::pin(self.route(request)).await;
            }
            let leader_tried = self.group.current_leader();
            match self.send_to_known_leader(request.clone()).await {
                Err(error) if peer::never_reached_the_leader(&error) => {
                    if matches!(error, ServiceError::NotLeader { .. }) || Instant::now() >= deadline
                    {
                        return Err(error);
                    }
                    // On as soon as this node knows another leader (or none any more), or
                    // after a step to try an unreachable one again.
                    let step =
                        LEADER_WAIT_STEP.min(deadline.saturating_duration_since(Instant::now()));
                    let _ = self
                        .group
                        .raft
                        .wait(Some(step))
                        .metrics(|m| m.current_leader != leader_tried, "a leader change")
                        .await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn send_to_known_leader(
        &self,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        let metrics = self.group.metrics();
        let Some(leader_id) = metrics.current_leader.filter(|id| *id != self.node_id()) else {
            return Err(ServiceError::NoLeader);
        };
        let leader = metrics
            .membership_config
            .membership()
            .get_node(&leader_id)
            .cloned();
        let Some(leader) = leader else {
            return Err(ServiceError::NoLeader);
        };
        if !request.forward_to_leader {
            return Err(ServiceError::NotLeader {
                leader_id: Some(leader_id),
                leader_http_addr: Some(leader.http_addr),
            });
        }
        let mut forwarded = request;
        // One hop only: the leader answers itself or reports that it no longer leads.
        forwarded.forward_to_leader = false;
        match self.peers.forward(&leader.raft_addr, &forwarded).await {
            Err(ServiceError::NotLeader { .. }) => Err(ServiceError::NoLeader),
            other => other,
        }
    }
}

impl Service {
    /// The current leader's id and addresses, when one is known and it is not this node.
    pub fn other_leader(&self) -> Option<(NodeId, crate::raft::types::ShoalNode)> {
        let metrics = self.group.metrics();
        let leader_id = metrics.current_leader.filter(|id| *id != self.node_id())?;
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader_id)
            .cloned()?;
        Some((leader_id, node))
    }

    /// Replaces the group's data with `load`'s image through the log (this node must lead).
    /// Returns the entry's index once this node applied it. A group holding a prepared
    /// cross-shard transaction applies no load (it was checked against the data a load would
    /// replace): the load waits for its decision, up to [`LOAD_WAITS_FOR_PREPARED`].
    pub async fn propose_load(
        &self,
        load: crate::raft::types::ImageLoad,
    ) -> Result<u64, ServiceError> {
        let deadline = Instant::now() + LOAD_WAITS_FOR_PREPARED;
        while self.group.database.holds_prepared() {
            if Instant::now() >= deadline {
                return Err(ServiceError::Unavailable(format!(
                    "{GROUP_HELD_BY_PREPARED} (the load waited {LOAD_WAITS_FOR_PREPARED:?})"
                )));
            }
            tokio::time::sleep(LEADER_WAIT_STEP).await;
        }
        let (index, applied) = self
            .propose(Command {
                load: Some(load),
                ..Command::at(unix_now_ms())
            })
            .await?;
        // (A transaction prepared between the look and the entry leaves the load unapplied.)
        let failed = applied
            .batches
            .first()
            .and_then(|results| results.first())
            .and_then(|result| result.error.clone());
        match failed {
            None => Ok(index),
            Some(error) if error == GROUP_HELD_BY_PREPARED => Err(ServiceError::Unavailable(error)),
            Some(error) => Err(ServiceError::Internal(error)),
        }
    }

    /// Adds, changes or removes a user through the log (this node must lead); returns the
    /// entry's index once this node applied it.
    pub async fn propose_user_change(
        &self,
        change: crate::types::users::UserChange,
    ) -> Result<u64, ServiceError> {
        self.propose(Command {
            users: Some(change),
            ..Command::at(unix_now_ms())
        })
        .await
        .map(|(index, _)| index)
    }

    /// Proposes `command` on this node (it must lead); its index and what applying it gave,
    /// once this node applied it.
    async fn propose(
        &self,
        command: Command,
    ) -> Result<(u64, crate::raft::types::CommandResponse), ServiceError> {
        self.group.wake_for_write().await;
        let written = self
            .group
            .raft
            .client_write(command)
            .await
            .map_err(|error| self.write_error(error))?;
        Ok((written.log_id.index, written.data))
    }
}

/// How long a load waits for a prepared cross-shard transaction to be decided.
pub const LOAD_WAITS_FOR_PREPARED: Duration = Duration::from_secs(30);

/// The leader's wall clock, stamped on each write: "now" for every replica applying it.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
