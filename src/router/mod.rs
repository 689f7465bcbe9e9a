//! The router of sharded databases, on every node: each statement sent to a sharded database
//! is planned (`plan`) — to one group when it touches only local or reference tables or pins
//! one shard key, scattered with partial aggregation (`scatter`, `merge`) when each shard can
//! answer its part, gathered (`gather`) when it reads distributed tables otherwise, split row
//! by row (`insert`) or sent to every group for writes — and writes that reach several
//! groups commit atomically (`commit`, two-phase through each group's log, finished by
//! `resolver` when a coordinator dies).

pub mod batch;
pub mod commit;
pub mod ddl;
pub mod functions;
pub mod gather;
pub mod guard;
pub mod insert;
pub mod interactive;
pub mod merge;
pub mod pinning;
pub mod plan;
pub mod reads;
pub mod resolver;
pub mod scatter;
pub mod schema;
pub mod scratches;
pub mod sequence;
pub mod tokens;
pub mod triggers;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::catalog::databases::{Databases, ShardedRequests};
use crate::catalog::handle::DatabaseHandle;
use crate::catalog::view::DatabaseEntry;
use crate::raft::types::{GroupId, Statement, StatementBatch, StatementResult};
use crate::service::{
    ReadConsistency, ReadLevel, RequestKind, ServiceError, ServiceRequest, ServiceResponse,
};
use crate::types::routed::{Rehearsed, RoutedTransaction};
use schema::Schema;

/// How long reading a database's schema for the router may take.
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on what a gather may bring into one node's memory.
#[derive(Debug, Clone, Copy)]
pub struct GatherLimits {
    pub rows: usize,
    pub bytes: usize,
}

impl Default for GatherLimits {
    fn default() -> Self {
        GatherLimits {
            rows: 1_000_000,
            bytes: 256 * 1024 * 1024,
        }
    }
}

/// The router of this node.
pub struct Router {
    databases: Arc<Databases>,
    /// Each sharded database's schema, by its first group.
    schemas: RwLock<HashMap<GroupId, Arc<Schema>>>,
    sequences: sequence::Sequences,
    /// Scratch copies kept ready for INSERTs into distributed tables.
    insert_scratches: scratches::ScratchPool,
    limits: GatherLimits,
}

impl Router {
    pub fn new(databases: Arc<Databases>, limits: GatherLimits) -> Arc<Router> {
        Arc::new(Router {
            databases,
            schemas: RwLock::new(HashMap::new()),
            sequences: sequence::Sequences::default(),
            insert_scratches: scratches::ScratchPool::default(),
            limits,
        })
    }

    pub fn databases(&self) -> &Arc<Databases> {
        &self.databases
    }

    /// Where requests to one group go.
    pub fn group(&self, group: GroupId) -> Result<DatabaseHandle, ServiceError> {
        self.databases.resolve_group(group)
    }

    /// The schema of `database` as of its catalog epoch (read from its first group when the
    /// one held is older, or when `reload`).
    pub async fn schema(
        &self,
        database: &DatabaseEntry,
        reload: bool,
    ) -> Result<Arc<Schema>, ServiceError> {
        if !reload
            && let Some(schema) = self.cached_schema(database.group)
            && schema.epoch >= database.schema_epoch
        {
            return Ok(schema);
        }
        let statements = self
            .group(database.group)?
            .schema(
                ReadConsistency {
                    level: ReadLevel::Weak,
                    ..Default::default()
                },
                SCHEMA_TIMEOUT,
            )
            .await?;
        let schema = Arc::new(
            Schema::build(database.schema_epoch, statements).map_err(ServiceError::Internal)?,
        );
        if let Ok(mut schemas) = self.schemas.write() {
            schemas.insert(database.group, schema.clone());
        }
        Ok(schema)
    }

    fn cached_schema(&self, group: GroupId) -> Option<Arc<Schema>> {
        self.schemas.read().ok()?.get(&group).cloned()
    }

    /// The plan of a request of one statement whose text was planned before, at the
    /// database's epoch, to one group: `Single`, or `Broadcast` to one group. Looks only at
    /// what is kept (schema, analysis, template); `None` sends the request down the general
    /// path (which plans it, and keeps the plan).
    fn planned_direct(
        &self,
        database: &DatabaseEntry,
        request: &ServiceRequest,
    ) -> Option<plan::Plan> {
        if !matches!(
            request.kind,
            RequestKind::Query | RequestKind::Execute | RequestKind::Unified
        ) {
            return None;
        }
        let [batch] = request.batches.as_slice() else {
            return None;
        };
        let [statement] = batch.statements.as_slice() else {
            return None;
        };
        if statement.sql.contains(';') || functions::mentions_shoal_function(&statement.sql) {
            return None;
        }
        let schema = self
            .cached_schema(database.group)
            .filter(|schema| schema.epoch >= database.schema_epoch)?;
        let analysis = schema.analyzed(&statement.sql)?;
        let template = analysis
            .template
            .get()
            .filter(|template| template.epoch() == database.schema_epoch)?;
        let plan = template.plan(&statement.params);
        match &plan {
            plan::Plan::Single { .. } => Some(plan),
            plan::Plan::Broadcast { groups } if groups.len() == 1 => Some(plan),
            _ => None,
        }
    }

    /// Forgets the schema held for `database` (after a schema change through this node).
    pub fn forget_schema(&self, database: GroupId) {
        if let Ok(mut schemas) = self.schemas.write() {
            schemas.remove(&database);
        }
    }

    /// Sends `request` (one batch) to `group` of `database`, guarded by the owner version its
    /// slot map expects there (`guard`): the guard's result taken out, a refusal returned as
    /// the "slot map moved" error.
    pub async fn send(
        &self,
        database: &DatabaseEntry,
        group: GroupId,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        self.send_at(group, database.slots.owner_version(group), request)
            .await
    }

    /// [`Router::send`] guarded by owner version `version`.
    pub async fn send_at(
        &self,
        group: GroupId,
        version: u64,
        mut request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        let [batch] = request.batches.as_mut_slice() else {
            return Err(ServiceError::Internal(
                "the router sends a group one batch at a time".into(),
            ));
        };
        batch.statements = guard::guarded(std::mem::take(&mut batch.statements), version);
        let mut response = self.group(group)?.handle(request).await?;
        guard::unguard(&mut response.results)?;
        Ok(response)
    }

    /// The catalog entry of the database whose first group is `group`, as this node sees it
    /// now (after a change to its table kinds).
    pub fn fresh_entry(&self, group: GroupId) -> Option<DatabaseEntry> {
        self.databases.view().by_group(group).cloned()
    }
}

#[async_trait::async_trait]
impl ShardedRequests for Router {
    fn direct(
        &self,
        database: &DatabaseEntry,
        request: &ServiceRequest,
    ) -> Option<(DatabaseHandle, ServiceRequest)> {
        let plan = self.planned_direct(database, request)?;
        let (group, kind, transaction) = match &plan {
            plan::Plan::Single { group, write: true } => (*group, RequestKind::Execute, false),
            plan::Plan::Single {
                group,
                write: false,
            } => (*group, RequestKind::Query, false),
            plan::Plan::Broadcast { groups } => match groups.as_slice() {
                [group] => (*group, RequestKind::Execute, true),
                _ => return None,
            },
            _ => return None,
        };
        let handle = self.group(group).ok()?;
        batch::count(&plan, database);
        if transaction {
            // As `batch::write_groups` counts a write to one group.
            crate::metrics::metrics().router_groups_touched.inc();
        }
        let mut request = request.clone();
        request.kind = kind;
        request.forward_to_leader = true;
        let batch = request.batches.first_mut()?;
        batch.transaction = transaction;
        batch.statements = guard::guarded(
            std::mem::take(&mut batch.statements),
            database.slots.owner_version(group),
        );
        Some((handle, request))
    }

    async fn handle(
        &self,
        database: Arc<DatabaseEntry>,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        match request.kind {
            RequestKind::Describe => return self.group(database.group)?.handle(request).await,
            RequestKind::Rehearse => {
                return Err(ServiceError::BadRequest(format!(
                    "database {:?} is sharded: an interactive transaction's statements are \
                     routed one by one (DatabaseHandle::rehearse_routed), not rehearsed whole",
                    database.name
                )));
            }
            _ => {}
        }
        let mut results = Vec::new();
        let misses = batch::ConcernMisses::default();
        for batch in &request.batches {
            results.extend(batch::run(self, &database, &request, batch, &misses).await?);
        }
        Ok(ServiceResponse {
            results,
            served_by: self.databases.host().node_id(),
            write_concern_error: misses.into_first(),
            ..Default::default()
        })
    }

    async fn rehearse(
        &self,
        database: Arc<DatabaseEntry>,
        transaction: &mut RoutedTransaction,
        statement: Statement,
        request: ServiceRequest,
    ) -> Result<Rehearsed, ServiceError> {
        interactive::rehearse(self, &database, transaction, statement, &request).await
    }

    async fn commit(
        &self,
        _database: Arc<DatabaseEntry>,
        transaction: RoutedTransaction,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        interactive::commit(self, transaction, &request).await
    }
}

/// A request to one group on behalf of `request`, running `statements` (as one transaction
/// when `transaction`). Always forwarded to the group's leader when it must run there: the
/// client cannot be redirected to a group.
pub fn group_request(
    request: &ServiceRequest,
    kind: RequestKind,
    statements: Vec<Statement>,
    transaction: bool,
) -> ServiceRequest {
    ServiceRequest {
        kind,
        batches: vec![StatementBatch::new(statements, transaction)],
        read: request.read,
        write_concern: request.write_concern,
        write_concern_timeout: request.write_concern_timeout,
        timeout: request.timeout,
        forward_to_leader: true,
    }
}

/// The results of `response`, or a failed result when it has none.
pub fn results_of(response: ServiceResponse, expected: usize) -> Vec<StatementResult> {
    let mut results = response.results;
    results.resize_with(expected.max(results.len()), || {
        StatementResult::failed("the group returned no result for the statement")
    });
    results
}
