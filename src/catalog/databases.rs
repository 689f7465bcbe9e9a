//! Databases by name: what a client's `db=` (HTTP) or connection database (PostgreSQL)
//! resolves to — a group running on this node, or the nodes that hold it — kept true by
//! catching up with the catalog's leader when a name or a route turns out stale.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::catalog::CATALOG_GROUP;
use crate::catalog::handle::{DatabaseHandle, Target};
use crate::catalog::host::GroupHost;
use crate::catalog::view::{self, CatalogView, DEFAULT_DATABASE, Role};
use crate::net::node_client::NodeClient;
use crate::raft::types::{DEFAULT_DATA_GROUP, GroupId, NodeId, ShoalNode};
use crate::service::peer::{PeerClient, group_not_there};
use crate::service::{Service, ServiceError, ServiceRequest, ServiceResponse};
use crate::types::Statement;
use crate::types::routed::{Rehearsed, RoutedTransaction};

/// Longest a node waits to apply what the catalog leader committed before it answers from
/// its own view anyway.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// The databases of the cluster as this node sees them.
pub struct Databases {
    host: Arc<GroupHost>,
    placement: crate::catalog::balance::PlacementSettings,
    default: Arc<Service>,
    http: NodeClient,
    view: RwLock<Arc<CatalogView>>,
    /// What runs the requests of sharded databases (the router, set once at start-up; the
    /// catalog cannot name it: the router sits above it).
    sharded: std::sync::OnceLock<Arc<dyn ShardedRequests>>,
}

/// Runs a request of a sharded database over its groups (implemented by `router::Router`).
#[async_trait::async_trait]
pub trait ShardedRequests: Send + Sync {
    /// The group that runs `request` and the request to send it — guarded by the owner
    /// version the slot map expects there (`db::ownership`) — when it is one statement the
    /// router planned before, at this epoch, to one group (a pinned key, or local tables
    /// only); `None` otherwise. Spares such statements the general path (and its future).
    fn direct(
        &self,
        database: &crate::catalog::view::DatabaseEntry,
        request: &ServiceRequest,
    ) -> Option<(DatabaseHandle, ServiceRequest)>;

    async fn handle(
        &self,
        database: Arc<crate::catalog::view::DatabaseEntry>,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError>;

    /// Runs `statement` inside the open interactive `transaction` (rehearsed in the groups
    /// it touches with the transaction's earlier statements there, then rolled back);
    /// `request` carries the session's options.
    async fn rehearse(
        &self,
        database: Arc<crate::catalog::view::DatabaseEntry>,
        transaction: &mut RoutedTransaction,
        statement: Statement,
        request: ServiceRequest,
    ) -> Result<Rehearsed, ServiceError>;

    /// Commits `transaction` in every group it touched, only as its client saw it.
    async fn commit(
        &self,
        database: Arc<crate::catalog::view::DatabaseEntry>,
        transaction: RoutedTransaction,
        request: ServiceRequest,
    ) -> Result<ServiceResponse, ServiceError>;
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
            sharded: std::sync::OnceLock::new(),
        })
    }

    /// Installs what runs sharded databases' requests (once; later calls change nothing).
    pub fn set_sharded_requests(&self, router: Arc<dyn ShardedRequests>) {
        let _ = self.sharded.set(router);
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
        let applied = catalog.group.applied_index().unwrap_or(0);
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
            // Concurrent refreshes may finish out of order: the view never goes back.
            if !view.ready || view.applied <= read.applied {
                *view = read.clone();
            }
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
        let mut nodes = self
            .catalog()
            .map_or_else(|_| BTreeMap::new(), |catalog| catalog.group.members());
        // A node that joined the default group before the catalog added it.
        for (id, node) in self.default.group.members() {
            nodes.entry(id).or_insert(node);
        }
        nodes
    }

    /// Waits until this node's replica of `service`'s group has applied what the group's
    /// leader had committed when asked (nothing to wait for on the leader itself).
    pub(crate) async fn catch_up_replica(&self, service: &Service) -> Result<(), String> {
        if service.group.leads() {
            return Ok(());
        }
        let metrics = service.group.metrics();
        let leader = metrics
            .current_leader
            .and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .cloned()
            })
            .ok_or("no leader known")?;
        let state = self
            .peers(service.group.id)
            .member_state(&leader.raft_addr)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(index) = state.committed_index {
            service.wait_applied(index, CATCH_UP_TIMEOUT).await;
            let applied = service.group.applied_index().unwrap_or(0);
            if applied < index {
                return Err(format!(
                    "applied {applied} of the leader's {index} within {CATCH_UP_TIMEOUT:?}"
                ));
            }
        }
        Ok(())
    }

    /// Where the users are kept, for reading them: the catalog's replica here once the users
    /// moved into the catalog, the default database's before (`catalog::users`).
    pub fn users_store(&self) -> Arc<Service> {
        if self.view().users_in_catalog
            && let Ok(catalog) = self.catalog()
        {
            return catalog;
        }
        self.default.clone()
    }

    /// The group user changes go to: the catalog once the users moved there, the default
    /// database's group in a cluster without a catalog yet; unavailable while they are moving
    /// (a change made meanwhile could be left behind).
    pub fn users_service(&self) -> Result<Arc<Service>, ServiceError> {
        let view = self.view();
        if view.users_in_catalog {
            return self.catalog();
        }
        if view.ready {
            return Err(ServiceError::Unavailable(
                "the users are moving into the cluster catalog; retry in a moment".into(),
            ));
        }
        Ok(self.default.clone())
    }

    /// Brings this node's view of the catalog up to what the catalog's leader had committed
    /// when asked (a node's own replica may lag a moment behind a change made elsewhere).
    pub async fn catch_up(&self) -> Result<Arc<CatalogView>, ServiceError> {
        let catalog = self.catalog()?;
        self.catch_up_replica(&catalog).await.map_err(|why| {
            ServiceError::Unavailable(format!(
                "cannot catch up with the cluster catalog ({why}); retry shortly"
            ))
        })?;
        self.refresh().await
    }

    /// [`Databases::resolve`], catching up with the catalog first when the name is unknown
    /// here (it may have been created through another node a moment ago).
    pub async fn resolve_fresh(&self, name: Option<&str>) -> Result<DatabaseHandle, ServiceError> {
        // This node's replica applied a catalog change the view has not read yet (a rename,
        // a drop): read it first, so a name never resolves to a group it no longer names.
        let catalog_applied = self.catalog().ok().and_then(|c| c.group.applied_index());
        if name.is_some_and(|n| n != DEFAULT_DATABASE)
            && catalog_applied > Some(self.view().applied)
        {
            self.refresh().await?;
        }
        match self.resolve(name) {
            // Unknown here, or this node has not read the catalog yet: catch up first.
            Err(ServiceError::UnknownDatabase(_)) => {
                self.catch_up().await?;
                self.resolve(name)
            }
            Err(ServiceError::Unavailable(_)) if !self.view().ready => {
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
        let handle = self.handle_of_entry(entry);
        if entry.sharded() {
            let router = self.sharded.get().cloned().ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "database {name:?} is sharded and this node's router is not running"
                ))
            })?;
            return Ok(DatabaseHandle {
                name: handle.name.clone(),
                group: handle.group,
                target: Target::Sharded {
                    router,
                    database: Arc::clone(entry),
                    first: Box::new(handle),
                },
            });
        }
        Ok(handle)
    }

    /// Where the requests of one group of a database go (a shard group, say).
    pub fn resolve_group(&self, group: GroupId) -> Result<DatabaseHandle, ServiceError> {
        if group == DEFAULT_DATA_GROUP {
            return self.resolve(None);
        }
        let view = self.view();
        let entry = view.by_group(group).ok_or_else(|| {
            ServiceError::Unavailable(format!(
                "group {group} is not in this node's view of the catalog (dropped, or created \
                 a moment ago); retry shortly"
            ))
        })?;
        Ok(self.handle_of_entry(entry))
    }

    fn handle_of_entry(&self, entry: &crate::catalog::view::DatabaseEntry) -> DatabaseHandle {
        let name = entry.name.as_str();
        // A replica here serves only while it is placed here (one that moved away is about to
        // be removed).
        if entry.placed_on(self.host.node_id()).is_some()
            && let Some(service) = self.host.service(entry.group)
        {
            return DatabaseHandle {
                name: name.to_string(),
                group: entry.group,
                target: Target::Local(service),
            };
        }
        let nodes = self.nodes();
        let mut placements = entry.placements.clone();
        placements.sort_by_key(|p| (p.role != Role::Voter, p.node));
        let replicas = placements
            .iter()
            .filter_map(|p| Some((p.node, nodes.get(&p.node)?.raft_addr.clone())))
            .collect();
        DatabaseHandle {
            name: name.to_string(),
            group: entry.group,
            target: Target::Remote {
                peers: self.peers(entry.group),
                replicas,
            },
        }
    }
}
