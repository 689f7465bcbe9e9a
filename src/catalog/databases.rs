//! Databases by name: what a client's `db=` (HTTP) or connection database (PostgreSQL)
//! resolves to — a group running on this node, or the nodes that hold it — and the database
//! statements (`CREATE`/`DROP`/`ALTER DATABASE`, `SHOW DATABASES`) turned into catalog writes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::catalog::host::GroupHost;
use crate::catalog::sql::DatabaseStatement;
use crate::catalog::view::{self, CatalogView, DEFAULT_DATABASE, Role, positional};
use crate::catalog::{CATALOG_GROUP, placement};
use crate::db::value::SqlValue;
use crate::net::node_client::NodeClient;
use crate::raft::types::{
    DEFAULT_DATA_GROUP, GroupId, NodeId, RowSet, ShoalNode, Statement, StatementBatch,
    StatementResult,
};
use crate::service::peer::{PeerClient, group_not_there, never_reached_the_leader};
use crate::service::{
    ReadConsistency, ReadLevel, RequestKind, Service, ServiceError, ServiceRequest,
    ServiceResponse, WriteConcern,
};

/// Voters of a database created without `replicas` (fewer on a smaller cluster).
pub const DEFAULT_REPLICAS: usize = 3;
/// How long a database statement waits for the catalog and for a created database's group to
/// elect its leader.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a node waits to apply what the catalog leader committed before it answers from
/// its own view anyway.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// The columns of `SHOW DATABASES`.
pub const SHOW_COLUMNS: &[&str] = &[
    "name",
    "group",
    "replicas",
    "read_replicas",
    "voters",
    "read_replicas_on",
];

/// The databases of the cluster as this node sees them.
pub struct Databases {
    host: Arc<GroupHost>,
    placement: crate::catalog::balance::PlacementSettings,
    default: Arc<Service>,
    http: NodeClient,
    view: RwLock<Arc<CatalogView>>,
}

/// Where one database's requests go.
#[derive(Clone)]
pub struct DatabaseHandle {
    pub name: String,
    pub group: GroupId,
    target: Target,
}

#[derive(Clone)]
enum Target {
    /// A replica runs here: its service routes the request (forwarding to its leader).
    Local(Arc<Service>),
    /// No replica here: the request goes to a node holding one (voters first).
    Remote {
        peers: PeerClient,
        replicas: Vec<(NodeId, String)>,
    },
}

impl DatabaseHandle {
    /// The service of the replica on this node, if there is one.
    pub fn local(&self) -> Option<&Arc<Service>> {
        match &self.target {
            Target::Local(service) => Some(service),
            Target::Remote { .. } => None,
        }
    }

    /// Runs `request` against this database.
    pub async fn handle(&self, request: ServiceRequest) -> Result<ServiceResponse, ServiceError> {
        let (peers, replicas) = match &self.target {
            Target::Local(service) => return service.handle(request).await,
            Target::Remote { peers, replicas } => (peers, replicas),
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
        let mut batch = transaction.unwrap_or_else(|| StatementBatch::new(Vec::new(), true));
        batch.statements.push(Statement::plain(sql));
        let request = ServiceRequest {
            kind: RequestKind::Describe,
            batches: vec![batch],
            read: ReadConsistency::default(),
            write_concern: WriteConcern::Majority,
            write_concern_timeout: timeout,
            timeout,
            forward_to_leader: true,
        };
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
                    "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid",
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

impl Databases {
    pub fn new(
        host: Arc<GroupHost>,
        default: Arc<Service>,
        http: NodeClient,
        placement: crate::catalog::balance::PlacementSettings,
    ) -> Arc<Databases> {
        Arc::new(Databases {
            host,
            placement,
            default,
            http,
            view: RwLock::new(Arc::new(CatalogView::default())),
        })
    }

    /// The default database's service (every node holds it).
    pub fn default_service(&self) -> &Arc<Service> {
        &self.default
    }

    pub fn host(&self) -> &Arc<GroupHost> {
        &self.host
    }

    pub fn placement_settings(&self) -> &crate::catalog::balance::PlacementSettings {
        &self.placement
    }

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

    /// Replicas placed on node `id` (what a drain still has to move).
    pub fn placed_on(&self, id: NodeId) -> usize {
        self.view()
            .databases
            .values()
            .filter(|entry| entry.placed_on(id).is_some())
            .count()
    }

    /// The client for calls to other nodes about `group`.
    pub fn peers(&self, group: GroupId) -> PeerClient {
        PeerClient::new(self.http.clone(), group)
    }

    /// The catalog as last read on this node.
    pub fn view(&self) -> Arc<CatalogView> {
        self.view.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// Reads the catalog from this node's replica again (after it applied a change).
    pub async fn refresh(&self) -> Result<Arc<CatalogView>, ServiceError> {
        let catalog = self.catalog()?;
        let applied = catalog.group.metrics().last_applied.map_or(0, |l| l.index);
        let current = self.view();
        if current.ready && current.applied == applied {
            return Ok(current);
        }
        let read = catalog
            .group
            .database
            .inspect(move |connection| view::read(connection, applied))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(ServiceError::Unavailable)?;
        let read = Arc::new(read);
        if let Ok(mut view) = self.view.write() {
            *view = read.clone();
        }
        Ok(read)
    }

    /// The catalog group's service on this node.
    pub fn catalog(&self) -> Result<Arc<Service>, ServiceError> {
        self.host.service(CATALOG_GROUP).ok_or_else(|| {
            ServiceError::Unavailable("the catalog group does not run on this node".into())
        })
    }

    /// Every node of the cluster and its addresses, as the catalog group's membership holds
    /// them (every node is a voter or read replica of the catalog).
    pub fn nodes(&self) -> BTreeMap<NodeId, ShoalNode> {
        let source = self.catalog().ok();
        let group = source.as_ref().map_or(&self.default.group, |s| &s.group);
        let metrics = group.metrics();
        let mut nodes: BTreeMap<NodeId, ShoalNode> = metrics
            .membership_config
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        // A node that joined the default group before the catalog added it.
        for (id, node) in self.default.group.metrics().membership_config.nodes() {
            nodes.entry(*id).or_insert_with(|| node.clone());
        }
        nodes
    }

    /// Brings this node's view of the catalog up to what the catalog's leader had committed
    /// when asked (a node's own replica may lag a moment behind a change made elsewhere).
    pub async fn catch_up(&self) -> Result<Arc<CatalogView>, ServiceError> {
        let catalog = self.catalog()?;
        if !catalog.group.leads() {
            let metrics = catalog.group.metrics();
            let leader = metrics.current_leader.and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .cloned()
            });
            if let Some(leader) = leader
                && let Ok(state) = self
                    .peers(CATALOG_GROUP)
                    .member_state(&leader.raft_addr)
                    .await
                && let Some(index) = state.committed_index
            {
                catalog.wait_applied(index, CATCH_UP_TIMEOUT).await;
            }
        }
        self.refresh().await
    }

    /// [`Databases::resolve`], catching up with the catalog first when the name is unknown
    /// here (it may have been created through another node a moment ago).
    pub async fn resolve_fresh(&self, name: Option<&str>) -> Result<DatabaseHandle, ServiceError> {
        match self.resolve(name) {
            Err(ServiceError::UnknownDatabase(_)) => {
                self.catch_up().await?;
                self.resolve(name)
            }
            resolved => resolved,
        }
    }

    /// Runs `request` in database `name`. A request routed on a stale view (no node runs the
    /// group it names any more: the database was dropped or moved) is routed again once this
    /// node caught up with the catalog, never served by the wrong group.
    pub async fn handle(
        &self,
        name: Option<&str>,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError> {
        let database = self.resolve_fresh(name).await?;
        if database.local().is_some() {
            return database.handle(request).await;
        }
        match database.handle(request.clone()).await {
            Err(error) if group_not_there(&error) => {
                self.catch_up().await?;
                let again = self.resolve(name)?;
                if again.group == database.group && again.local().is_none() {
                    return Err(error);
                }
                again.handle(request).await
            }
            outcome => outcome,
        }
    }

    /// Where the requests of database `name` go (the default database when `None`).
    pub fn resolve(&self, name: Option<&str>) -> Result<DatabaseHandle, ServiceError> {
        let name = name.unwrap_or(DEFAULT_DATABASE);
        if name == DEFAULT_DATABASE {
            return Ok(DatabaseHandle {
                name: name.to_string(),
                group: DEFAULT_DATA_GROUP,
                target: Target::Local(self.default.clone()),
            });
        }
        let view = self.view();
        let Some(entry) = view.databases.get(name) else {
            if !view.ready {
                return Err(ServiceError::Unavailable(
                    "this node has not read the cluster catalog yet; retry shortly".into(),
                ));
            }
            return Err(ServiceError::UnknownDatabase(name.to_string()));
        };
        if let Some(service) = self.host.service(entry.group) {
            return Ok(DatabaseHandle {
                name: name.to_string(),
                group: entry.group,
                target: Target::Local(service),
            });
        }
        let nodes = self.nodes();
        let mut placements = entry.placements.clone();
        placements.sort_by_key(|p| (p.role != Role::Voter, p.node));
        let replicas = placements
            .iter()
            .filter_map(|p| Some((p.node, nodes.get(&p.node)?.raft_addr.clone())))
            .collect();
        Ok(DatabaseHandle {
            name: name.to_string(),
            group: entry.group,
            target: Target::Remote {
                peers: self.peers(entry.group),
                replicas,
            },
        })
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
            } => {
                self.create(&view, name, if_not_exists, replicas, read_replicas)
                    .await
            }
            DatabaseStatement::Drop { name, if_exists } => self.drop(name, if_exists).await,
            DatabaseStatement::Rename { from, to } => self.rename(from, to).await,
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
                ]
            })
            .collect();
        let types = ["text", "integer", "integer", "integer", "text", "text"];
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
        replicas: Option<u32>,
        read_replicas: u32,
    ) -> Result<StatementResult, ServiceError> {
        if view.databases.contains_key(&name) {
            return if if_not_exists {
                Ok(StatementResult::default())
            } else {
                Err(already_exists(&name))
            };
        }
        let nodes: Vec<NodeId> = self.nodes().into_keys().collect();
        let replicas = replicas.map_or(DEFAULT_REPLICAS.min(nodes.len()), |r| r as usize);
        let chosen = placement::choose(
            &nodes,
            &view.load_per_node(),
            replicas,
            read_replicas as usize,
        )
        .map_err(ServiceError::BadRequest)?;
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
        statements.push(Statement::plain(
            "UPDATE catalog_meta SET value = value + 1 WHERE key = 'next_group'",
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
        tracing::info!(target: "audit", event = "database_created", database = %name, replicas, read_replicas, nodes = %nodes.join(","), "database created");
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
        let statements = vec![
            positional(
                "INSERT INTO dropped_groups (group_id, name, dropped_ms)
                 SELECT group_id, name, ?2 FROM databases WHERE name = ?1",
                vec![
                    name_value.clone(),
                    SqlValue::Integer(crate::service::unix_now_ms()),
                ],
            ),
            positional(
                "DELETE FROM placements WHERE group_id = (SELECT group_id FROM databases WHERE name = ?1)",
                vec![name_value.clone()],
            ),
            positional("DELETE FROM databases WHERE name = ?1", vec![name_value]),
        ];
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
