//! The database statements — `CREATE DATABASE`, `DROP DATABASE`, `ALTER DATABASE … RENAME
//! TO`, `SHOW DATABASES` — and draining a node, as transactions on the catalog.

use std::time::{Duration, Instant};

use crate::catalog::databases::Databases;
use crate::catalog::placement;
use crate::catalog::sql::DatabaseStatement;
use crate::catalog::view::{self, CatalogView, DEFAULT_DATABASE, Role, positional};
use crate::raft::types::{NodeId, RowSet, Statement, StatementBatch, StatementResult};
use crate::service::{
    ReadConsistency, ReadLevel, RequestKind, ServiceError, ServiceRequest, WriteConcern,
};
use crate::types::value::SqlValue;

/// Voters of a database created without `replicas` (fewer on a smaller cluster).
pub const DEFAULT_REPLICAS: usize = 3;
/// How long a database statement waits for the catalog and for a created database's group to
/// elect its leader.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The columns of `SHOW DATABASES`.
pub const SHOW_COLUMNS: &[&str] = &[
    "name",
    "group",
    "replicas",
    "read_replicas",
    "voters",
    "read_replicas_on",
    "shards",
    "resharding_steps",
    "balance",
];

/// What `CREATE DATABASE` asks for besides the name.
struct Shape {
    replicas: Option<u32>,
    read_replicas: u32,
    shards: u32,
    distribute_all: bool,
}

impl Databases {
    /// Marks node `id` as draining: the placement loop moves its replicas to other nodes;
    /// once `SHOW DATABASES` places nothing on it, it can be removed.
    pub async fn drain(&self, id: NodeId) -> Result<(), ServiceError> {
        if !self.nodes().contains_key(&id) {
            return Err(ServiceError::BadRequest(format!(
                "node {id} is not a member of the cluster"
            )));
        }
        self.write_catalog(vec![positional(
            "INSERT OR REPLACE INTO node_states (node_id, state) VALUES (?1, 'draining')",
            vec![SqlValue::Integer(id as i64)],
        )])
        .await?;
        tracing::info!(target: "audit", event = "node_draining", id, "node draining: its replicas move elsewhere");
        Ok(())
    }

    /// Records this node's `--zone` in the catalog (placement spreads voters over zones).
    pub async fn register_zone(&self, zone: &str) -> Result<(), ServiceError> {
        let me = self.host().node_id();
        self.write_catalog(vec![positional(
            "INSERT OR REPLACE INTO node_zones (node_id, zone) VALUES (?1, ?2)",
            vec![
                SqlValue::Integer(me as i64),
                SqlValue::Text(zone.to_string()),
            ],
        )])
        .await?;
        tracing::info!(zone, "registered this node's zone in the catalog");
        Ok(())
    }

    /// Replicas placed on node `id` (what a drain still has to move).
    pub fn placed_on(&self, id: NodeId) -> usize {
        self.view()
            .groups
            .values()
            .filter(|entry| entry.placed_on(id).is_some())
            .count()
    }

    /// Runs a database statement; its one result is what the client sees.
    pub async fn run(&self, statement: DatabaseStatement) -> Result<StatementResult, ServiceError> {
        let view = self.catch_up().await?;
        if !view.ready {
            return Err(ServiceError::Unavailable(
                "the cluster catalog is not ready yet (its first leader is still being elected); \
                 retry shortly"
                    .into(),
            ));
        }
        match statement {
            DatabaseStatement::Show => Ok(self.show(&view)),
            DatabaseStatement::Create {
                name,
                if_not_exists,
                replicas,
                read_replicas,
                shards,
                distribute_all,
            } => {
                let shape = Shape {
                    replicas,
                    read_replicas,
                    shards,
                    distribute_all,
                };
                self.create(&view, name, if_not_exists, shape).await
            }
            DatabaseStatement::Drop { name, if_exists } => self.drop(name, if_exists).await,
            DatabaseStatement::Rename { from, to } => self.rename(from, to).await,
            DatabaseStatement::Reshard { name, shards } => self.reshard(&view, &name, shards).await,
            DatabaseStatement::CancelResharding { name } => {
                self.cancel_resharding(&view, &name).await
            }
            DatabaseStatement::Balance { name, by, dry_run } => {
                self.balance_slots(&view, &name, by, dry_run).await
            }
            DatabaseStatement::SetAutoBalance { name, by } => {
                self.set_auto_balance(&view, &name, by).await
            }
        }
    }

    fn show(&self, view: &CatalogView) -> StatementResult {
        let list = |entry: &view::DatabaseEntry, role: Role| {
            let nodes: Vec<String> = entry
                .placements
                .iter()
                .filter(|p| p.role == role)
                .map(|p| p.node.to_string())
                .collect();
            SqlValue::Text(nodes.join(","))
        };
        let values = view
            .databases
            .values()
            .map(|entry| {
                vec![
                    SqlValue::Text(entry.name.clone()),
                    SqlValue::Integer(entry.group as i64),
                    SqlValue::Integer(entry.replicas as i64),
                    SqlValue::Integer(entry.read_replicas as i64),
                    if entry.everywhere() {
                        SqlValue::Text("all".into())
                    } else {
                        list(entry, Role::Voter)
                    },
                    list(entry, Role::Replica),
                    SqlValue::Integer(entry.groups.len() as i64),
                    SqlValue::Integer(entry.moves_pending as i64),
                    SqlValue::Text(entry.auto_balance.map_or("off", |by| by.as_str()).into()),
                ]
            })
            .collect();
        let types = [
            "text", "integer", "integer", "integer", "text", "text", "integer", "integer", "text",
        ];
        StatementResult {
            rows: Some(RowSet {
                columns: SHOW_COLUMNS.iter().map(|c| c.to_string()).collect(),
                types: types.iter().map(|t| t.to_string()).collect(),
                values,
            }),
            ..Default::default()
        }
    }

    async fn create(
        &self,
        view: &CatalogView,
        name: String,
        if_not_exists: bool,
        shape: Shape,
    ) -> Result<StatementResult, ServiceError> {
        let Shape {
            replicas,
            read_replicas,
            shards,
            distribute_all,
        } = shape;
        if view.databases.contains_key(&name) {
            return if if_not_exists {
                Ok(StatementResult::default())
            } else {
                Err(already_exists(&name))
            };
        }
        // Draining nodes take no new replicas.
        let nodes: Vec<NodeId> = self
            .nodes()
            .into_keys()
            .filter(|node| !view.draining.contains(node))
            .collect();
        let replicas = replicas.map_or(DEFAULT_REPLICAS.min(nodes.len()), |r| r as usize);
        // Each shard group is placed like a database of its own, the load counting the
        // groups placed before it, so the shards' replicas (and leaders) spread.
        let mut load = view.load_per_node();
        let mut chosen_per_shard = Vec::with_capacity(shards as usize);
        for _ in 0..shards {
            let chosen =
                placement::choose(&nodes, &load, &view.zones, replicas, read_replicas as usize)
                    .map_err(ServiceError::BadRequest)?;
            for placement in &chosen {
                *load.entry(placement.node).or_default() += 1;
            }
            chosen_per_shard.push(chosen);
        }
        let chosen = chosen_per_shard.first().cloned().unwrap_or_default();
        let name_value = SqlValue::Text(name.clone());
        let mut statements = vec![positional(
            "INSERT INTO databases (name, group_id, replicas, read_replicas, created_ms)
             SELECT ?1, value, ?2, ?3, ?4 FROM catalog_meta WHERE key = 'next_group'",
            vec![
                name_value.clone(),
                SqlValue::Integer(replicas as i64),
                SqlValue::Integer(read_replicas as i64),
                SqlValue::Integer(crate::service::unix_now_ms()),
            ],
        )];
        for placement in &chosen {
            statements.push(positional(
                "INSERT INTO placements (group_id, node_id, role, initial)
                 SELECT group_id, ?2, ?3, ?4 FROM databases WHERE name = ?1",
                vec![
                    name_value.clone(),
                    SqlValue::Integer(placement.node as i64),
                    SqlValue::Text(placement.role.as_str().into()),
                    SqlValue::Integer(placement.initial as i64),
                ],
            ));
        }
        for (shard, chosen) in chosen_per_shard.iter().enumerate().skip(1) {
            let shard_value = SqlValue::Integer(shard as i64);
            statements.push(positional(
                "INSERT INTO shard_groups (database_group, shard, group_id)
                 SELECT group_id, ?2, group_id + ?2 FROM databases WHERE name = ?1",
                vec![name_value.clone(), shard_value.clone()],
            ));
            for placement in chosen {
                statements.push(positional(
                    "INSERT INTO placements (group_id, node_id, role, initial)
                     SELECT group_id + ?2, ?3, ?4, ?5 FROM databases WHERE name = ?1",
                    vec![
                        name_value.clone(),
                        shard_value.clone(),
                        SqlValue::Integer(placement.node as i64),
                        SqlValue::Text(placement.role.as_str().into()),
                        SqlValue::Integer(placement.initial as i64),
                    ],
                ));
            }
        }
        if shards > 1 {
            statements.push(positional(
                "INSERT INTO database_options (database_group, distribute_all)
                 SELECT group_id, ?2 FROM databases WHERE name = ?1",
                vec![name_value.clone(), SqlValue::Integer(distribute_all as i64)],
            ));
            statements.push(positional(
                "UPDATE catalog_meta SET value = ?1 WHERE key = 'layout' AND value < ?1",
                vec![SqlValue::Integer(view::SHARDED_LAYOUT)],
            ));
        }
        statements.push(positional(
            "UPDATE catalog_meta SET value = value + ?1 WHERE key = 'next_group'",
            vec![SqlValue::Integer(shards as i64)],
        ));
        let outcome = self.write_catalog(statements).await;
        match outcome {
            Err(CatalogWriteError::Statement(message)) if message.contains("UNIQUE") => {
                return if if_not_exists {
                    Ok(StatementResult::default())
                } else {
                    Err(already_exists(&name))
                };
            }
            Err(error) => return Err(error.into()),
            Ok(_) => {}
        }
        let nodes: Vec<String> = chosen.iter().map(|p| p.node.to_string()).collect();
        tracing::info!(target: "audit", event = "database_created", database = %name, replicas, read_replicas, shards, nodes = %nodes.join(","), "database created");
        self.await_usable(&name).await;
        Ok(StatementResult::default())
    }

    /// Waits (up to [`STATEMENT_TIMEOUT`]) until a created database answers a leader read, so
    /// the client's next statement finds it ready. A database that is slow to elect is still
    /// created: its requests then wait for its leader like any other.
    async fn await_usable(&self, name: &str) {
        let deadline = Instant::now() + STATEMENT_TIMEOUT;
        while Instant::now() < deadline {
            let _ = self.refresh().await;
            if let Ok(handle) = self.resolve(Some(name)) {
                let probe = ServiceRequest {
                    kind: RequestKind::Query,
                    batches: vec![StatementBatch::new(
                        vec![Statement::plain("SELECT 1")],
                        false,
                    )],
                    read: ReadConsistency {
                        level: ReadLevel::Weak,
                        ..Default::default()
                    },
                    write_concern: WriteConcern::Majority,
                    write_concern_timeout: Duration::from_secs(1),
                    timeout: Duration::from_secs(2),
                    forward_to_leader: true,
                };
                if handle.handle(probe).await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(database = %name, "the new database has not elected a leader yet");
    }

    async fn drop(&self, name: String, if_exists: bool) -> Result<StatementResult, ServiceError> {
        if name == DEFAULT_DATABASE {
            return Err(ServiceError::BadRequest(format!(
                "the default database {DEFAULT_DATABASE:?} cannot be dropped"
            )));
        }
        let name_value = SqlValue::Text(name.clone());
        let first = "(SELECT group_id FROM databases WHERE name = ?1)";
        let mut statements = vec![
            positional(
                "INSERT INTO dropped_groups (group_id, name, dropped_ms)
                 SELECT group_id, name, ?2 FROM databases WHERE name = ?1",
                vec![
                    name_value.clone(),
                    SqlValue::Integer(crate::service::unix_now_ms()),
                ],
            ),
            positional(
                &format!("DELETE FROM placements WHERE group_id = {first}"),
                vec![name_value.clone()],
            ),
        ];
        // Its shard groups and sharding records (absent in a catalog that predates them).
        if self.view().has_shard_tables {
            statements.push(positional(
                &format!(
                    "INSERT INTO dropped_groups (group_id, name, dropped_ms)
                     SELECT group_id, ?1 || '#' || shard, ?2 FROM shard_groups
                     WHERE database_group = {first}"
                ),
                vec![
                    name_value.clone(),
                    SqlValue::Integer(crate::service::unix_now_ms()),
                ],
            ));
            statements.push(positional(
                &format!(
                    "DELETE FROM placements WHERE group_id IN
                     (SELECT group_id FROM shard_groups WHERE database_group = {first})"
                ),
                vec![name_value.clone()],
            ));
            for table in [
                "shard_groups",
                "database_options",
                "table_kinds",
                "table_sequences",
            ] {
                statements.push(positional(
                    &format!("DELETE FROM {table} WHERE database_group = {first}"),
                    vec![name_value.clone()],
                ));
            }
        }
        statements.push(positional(
            "DELETE FROM databases WHERE name = ?1",
            vec![name_value],
        ));
        let results = self.write_catalog(statements).await?;
        if results.last().is_none_or(|r| r.rows_affected == 0) && !if_exists {
            return Err(ServiceError::UnknownDatabase(name));
        }
        tracing::info!(target: "audit", event = "database_dropped", database = %name, "database dropped");
        let _ = self.refresh().await;
        Ok(StatementResult::default())
    }

    async fn rename(&self, from: String, to: String) -> Result<StatementResult, ServiceError> {
        if from == DEFAULT_DATABASE || to == DEFAULT_DATABASE {
            return Err(ServiceError::BadRequest(format!(
                "the default database {DEFAULT_DATABASE:?} keeps its name: clients that name no \
                 database use it"
            )));
        }
        let statements = vec![positional(
            "UPDATE databases SET name = ?2 WHERE name = ?1",
            vec![SqlValue::Text(from.clone()), SqlValue::Text(to.clone())],
        )];
        let results = match self.write_catalog(statements).await {
            Err(CatalogWriteError::Statement(message)) if message.contains("UNIQUE") => {
                return Err(already_exists(&to));
            }
            outcome => outcome?,
        };
        if results.first().is_none_or(|r| r.rows_affected == 0) {
            return Err(ServiceError::UnknownDatabase(from));
        }
        tracing::info!(target: "audit", event = "database_renamed", from = %from, to = %to, "database renamed");
        let _ = self.refresh().await;
        Ok(StatementResult::default())
    }

    /// Commits `statements` to the catalog as one transaction and waits until this node's
    /// replica applied them (so this node's next resolution sees the change).
    pub(crate) async fn write_catalog(
        &self,
        statements: Vec<Statement>,
    ) -> Result<Vec<StatementResult>, CatalogWriteError> {
        let catalog = self.catalog()?;
        let request = ServiceRequest {
            kind: RequestKind::Execute,
            batches: vec![StatementBatch::new(statements, true)],
            read: ReadConsistency::default(),
            write_concern: WriteConcern::Majority,
            write_concern_timeout: STATEMENT_TIMEOUT,
            timeout: STATEMENT_TIMEOUT,
            forward_to_leader: true,
        };
        let response = catalog.handle(request).await?;
        if let Some(message) = response.results.iter().find_map(|r| r.error.clone()) {
            return Err(CatalogWriteError::Statement(message));
        }
        if let Some(index) = response.raft_index {
            catalog.wait_applied(index, STATEMENT_TIMEOUT).await;
        }
        Ok(response.results)
    }
}

fn already_exists(name: &str) -> ServiceError {
    ServiceError::BadRequest(format!("database {name:?} already exists"))
}

/// Why a catalog write did not happen.
pub(crate) enum CatalogWriteError {
    Service(ServiceError),
    /// A statement failed (a name taken meanwhile): nothing of the transaction was applied.
    Statement(String),
}

impl From<ServiceError> for CatalogWriteError {
    fn from(error: ServiceError) -> Self {
        CatalogWriteError::Service(error)
    }
}

impl From<CatalogWriteError> for ServiceError {
    fn from(error: CatalogWriteError) -> Self {
        match error {
            CatalogWriteError::Service(error) => error,
            CatalogWriteError::Statement(message) => {
                ServiceError::Internal(format!("the catalog refused the change: {message}"))
            }
        }
    }
}
