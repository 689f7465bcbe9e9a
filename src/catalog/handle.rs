//! One database's destination: the service of the replica on this node, or the nodes holding
//! one (voters first), and what endpoints ask of it — requests, statement shapes, its schema.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::databases::ShardedRequests;
use crate::catalog::view::DatabaseEntry;
use crate::raft::types::{GroupId, NodeId, Statement, StatementBatch, StatementResult};
use crate::service::peer::{PeerClient, group_not_there, never_reached_the_leader};
use crate::service::{
    ReadConsistency, RequestKind, Service, ServiceError, ServiceRequest, ServiceResponse,
    WriteConcern,
};
use crate::types::routed::{Rehearsed, RoutedTransaction};
use crate::types::shard::ShardStep;
use crate::types::value::SqlValue;

/// Where one database's requests go.
#[derive(Clone)]
pub struct DatabaseHandle {
    pub name: String,
    pub group: GroupId,
    pub(crate) target: Target,
}

#[derive(Clone)]
pub(crate) enum Target {
    /// A replica runs here: its service routes the request (forwarding to its leader).
    Local(Arc<Service>),
    /// No replica here: the request goes to a node holding one (voters first).
    Remote {
        peers: PeerClient,
        replicas: Vec<(NodeId, String)>,
    },
    /// A sharded database: requests go to its router; `first` is its first group (what
    /// describes statements and holds the schema every group shares).
    Sharded {
        router: Arc<dyn ShardedRequests>,
        database: Arc<DatabaseEntry>,
        first: Box<DatabaseHandle>,
    },
}

impl DatabaseHandle {
    /// The service of the replica on this node, if there is one.
    pub fn local(&self) -> Option<&Arc<Service>> {
        match &self.target {
            Target::Local(service) => Some(service),
            Target::Remote { .. } | Target::Sharded { .. } => None,
        }
    }

    /// The database's catalog entry when it is sharded.
    pub fn sharded(&self) -> Option<&Arc<DatabaseEntry>> {
        match &self.target {
            Target::Sharded { database, .. } => Some(database),
            _ => None,
        }
    }

    /// The nodes holding a replica (voters first) with their Raft addresses, when none runs
    /// here; empty when one does.
    pub fn remote_replicas(&self) -> &[(NodeId, String)] {
        match &self.target {
            Target::Local(_) => &[],
            Target::Remote { replicas, .. } => replicas,
            Target::Sharded { first, .. } => first.remote_replicas(),
        }
    }

    /// Runs `request` against this database.
    pub async fn handle(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        match &self.target {
            Target::Sharded {
                router, database, ..
            } => {
                if let Some((group, guarded)) = router.direct(database, &request) {
                    let mut response = group.handle_group(guarded).await?;
                    // Refused as routed by an older slot map: the general path routes again.
                    if crate::db::ownership::unguard(&mut response.results).is_ok() {
                        return Ok(response);
                    }
                }
                router.handle(database.clone(), request).await
            }
            _ => self.handle_group(request).await,
        }
    }

    /// Runs `request` against this group: here, or at a node holding a replica.
    async fn handle_group(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        let (peers, replicas) = match &self.target {
            Target::Local(service) => return service.handle(request).await,
            Target::Remote { peers, replicas } => (peers, replicas),
            Target::Sharded { .. } => {
                return Err(ServiceError::Internal(format!(
                    "database {:?} is sharded: a group of it was expected",
                    self.name
                )));
            }
        };
        let mut last = None;
        for (node, raft_addr) in replicas {
            match peers.forward(raft_addr, &request).await {
                Err(error) if group_not_there(&error) || never_reached_the_leader(&error) => {
                    tracing::debug!(database = %self.name, node, %error, "trying the next replica");
                    last = Some(error);
                }
                outcome => return outcome,
            }
        }
        Err(last.unwrap_or_else(|| {
            ServiceError::Unavailable(format!(
                "database {:?} has no replica this node knows the address of",
                self.name
            ))
        }))
    }
}

impl DatabaseHandle {
    /// Runs `statement` inside the open interactive transaction `transaction` of this
    /// sharded database (`ShardedRequests::rehearse`).
    pub async fn rehearse_routed(
        &self,
        transaction: &mut RoutedTransaction,
        statement: Statement,
        request: ServiceRequest,
    ) -> Result<Rehearsed, ServiceError> {
        match &self.target {
            Target::Sharded {
                router, database, ..
            } => {
                router
                    .rehearse(database.clone(), transaction, statement, request)
                    .await
            }
            _ => Err(not_sharded(&self.name)),
        }
    }

    /// Commits the interactive transaction `transaction` of this sharded database.
    pub async fn commit_routed(
        &self,
        transaction: RoutedTransaction,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        match &self.target {
            Target::Sharded {
                router, database, ..
            } => router.commit(database.clone(), transaction, request).await,
            _ => Err(not_sharded(&self.name)),
        }
    }

    /// Applies a cross-group transaction step in this group, on its leader: through the
    /// replica here, or a node holding one.
    pub async fn apply_step(
        &self,
        step: &ShardStep,
        concern: WriteConcern,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, ServiceError> {
        let (peers, replicas) = match &self.target {
            Target::Local(service) => return service.apply_step(step, concern, timeout).await,
            Target::Remote { peers, replicas } => (peers, replicas),
            Target::Sharded { first, .. } => {
                return Box::pin(first.apply_step(step, concern, timeout)).await;
            }
        };
        let mut last = None;
        for (node, raft_addr) in replicas {
            match peers.step(raft_addr, step, true, concern, timeout).await {
                Err(error) if group_not_there(&error) || never_reached_the_leader(&error) => {
                    tracing::debug!(group = self.group, node, %error, "trying the next replica");
                    last = Some(error);
                }
                outcome => return outcome,
            }
        }
        Err(last.unwrap_or_else(|| {
            ServiceError::Unavailable(format!(
                "group {} has no replica this node knows the address of",
                self.group
            ))
        }))
    }

    /// The shape of `sql` (parameters, result columns) for a client preparing it: compiled
    /// by the local replica's service when there is one, else by the group's leader.
    pub async fn describe(
        &self,
        sql: String,
        transaction: Option<StatementBatch>,
        timeout: Duration,
    ) -> Result<Result<crate::db::execute::StatementShape, String>, ServiceError> {
        if let Target::Local(service) = &self.target {
            return service.describe(sql, transaction, timeout).await;
        }
        // Every group of a sharded database has the same schema: its first one describes.
        if let Target::Sharded { first, .. } = &self.target {
            return Box::pin(first.describe(sql, transaction, timeout)).await;
        }
        let request = ServiceRequest::describe(sql, transaction, timeout);
        self.handle(request).await?.shape.ok_or_else(|| {
            ServiceError::Internal("the leader did not describe the statement".into())
        })
    }

    /// The statements that create the database's schema (its `sqlite_schema` in creation
    /// order), read from a replica at `read` consistency: for endpoints that rebuild the
    /// schema where no replica runs (PostgreSQL catalog queries).
    pub async fn schema(
        &self,
        read: ReadConsistency,
        timeout: Duration,
    ) -> Result<Vec<String>, ServiceError> {
        let request = ServiceRequest {
            kind: RequestKind::Query,
            batches: vec![StatementBatch::new(
                vec![Statement::plain(
                    // SQLite's own tables (sqlite_sequence, sqlite_stat1) cannot be created by
                    // statements: they are made by the statements that need them.
                    "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
                )],
                false,
            )],
            read,
            write_concern: WriteConcern::Majority,
            write_concern_timeout: timeout,
            timeout,
            forward_to_leader: true,
        };
        let response = self.handle(request).await?;
        let result = response.results.into_iter().next().unwrap_or_default();
        if let Some(message) = result.error {
            return Err(ServiceError::Internal(format!(
                "reading the schema: {message}"
            )));
        }
        Ok(result
            .rows
            .map(|rows| rows.values)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|row| match row.into_iter().next() {
                Some(SqlValue::Text(sql)) => Some(sql),
                _ => None,
            })
            .collect())
    }
}

fn not_sharded(name: &str) -> ServiceError {
    ServiceError::Internal(format!(
        "database {name:?} is not sharded: its transactions are not routed"
    ))
}
