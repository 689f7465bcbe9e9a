//! A Shoal node: opens the data directory, starts the Raft group and the listeners, joins or
//! bootstraps the cluster, and shuts down gracefully (handing leadership over first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::net::AllowList;
use crate::net::listener::{Admission, Guarded};
use crate::net::tls::{Facing, TlsContext};
use crate::raft::group::{RaftGroup, RaftSettings};
use crate::raft::types::{DEFAULT_DATA_GROUP, NodeId, ShoalNode};
use crate::service::Service;
use crate::service::cluster::ClusterRequest;
use crate::service::queue::{QueueSettings, WriteQueue};

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    /// Addresses other nodes and clients use to reach this node (defaults: the bind addresses).
    pub http_advertise_addr: Option<String>,
    pub raft_advertise_addr: Option<String>,
    /// HTTP URLs of existing members to join through; empty bootstraps a new cluster.
    pub join: Vec<String>,
    pub non_voter: bool,
    pub raft: RaftSettings,
    pub queue: QueueSettings,
    pub http_body_bytes_max: usize,
    /// How long to keep trying to join before giving up.
    pub join_timeout: Duration,
    /// How the catalog's leader judges nodes when it places replicas.
    pub placement: crate::catalog::balance::PlacementSettings,
    /// Where PostgreSQL clients connect (`None`: no PostgreSQL endpoint).
    pub pg_addr: Option<SocketAddr>,
    /// Ports tried from `pg_addr` upwards while they are taken (1: that port or nothing).
    pub pg_port_attempts: u16,
    /// Leave the cluster (be removed from its membership) on a graceful stop.
    pub leave_on_shutdown: bool,
    /// PostgreSQL connections served at once.
    pub pg_connections_max: usize,
    /// Alert rules' thresholds and webhooks.
    pub alerts: crate::alerts::AlertSettings,
    /// Backup targets, key, schedules and log archiving.
    pub backup: crate::backup::BackupConfig,
    /// Authentication of client requests.
    pub auth: crate::auth::AuthSettings,
    /// TLS, allow-lists and connection limits of the listeners.
    pub net: crate::net::NetConfig,
}

/// Identity recorded in the data directory on first start.
#[derive(Debug, Serialize, Deserialize)]
struct NodeIdentity {
    node_id: NodeId,
}

/// Errors that stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {dir}: {message}")]
    DataDir { dir: PathBuf, message: String },
    #[error("cannot listen on {what} address {addr} (setting {setting}): {error}")]
    Bind {
        what: &'static str,
        /// The setting that chose the address (`http_addr`, …).
        setting: &'static str,
        addr: SocketAddr,
        /// Not `source`: the message already says it, and error chains would say it twice.
        error: std::io::Error,
    },
    #[error(transparent)]
    Group(#[from] crate::raft::group::GroupError),
    #[error("could not join the cluster through {join}: {message}")]
    Join { join: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// A started node.
pub struct Node {
    /// The default database's service.
    pub service: Arc<Service>,
    /// Every database by name, and this node's group replicas.
    pub databases: Arc<crate::catalog::databases::Databases>,
    pub config: NodeConfig,
    /// Where the PostgreSQL endpoint listens (the port may be above the one configured).
    pg_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    _lock: std::fs::File,
}

impl Node {
    /// Starts the node and returns once it serves (joining may continue in the background
    /// only until `join_timeout`; errors are returned).
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let started = Instant::now();
        let lock = prepare_data_dir(&config)?;
        let sender = reqwest::header::HeaderMap::from_iter([(
            reqwest::header::HeaderName::from_static(crate::raft::wire::FROM_NODE_HEADER),
            reqwest::header::HeaderValue::from(config.node_id),
        )]);
        let tls = match &config.net.tls {
            Some(settings) => {
                let context = TlsContext::load(settings.clone())
                    .map_err(|e| NodeError::Other(format!("TLS: {e}")))?;
                let nodes_only = config.net.tls_nodes_only;
                crate::net::use_https_between_nodes(nodes_only);
                // Join credentials must not cross the network in the clear (unless the
                // operator chose clear HTTP with --tls-nodes-only).
                if let Some(plain) = config
                    .join
                    .iter()
                    .find(|url| !nodes_only && url.contains("://") && !url.starts_with("https://"))
                {
                    return Err(NodeError::Other(format!(
                        "--join {plain}: this node runs TLS; join through https:// URLs"
                    )));
                }
                Some(context)
            }
            None => {
                if config.auth.enabled {
                    tracing::warn!(
                        "--auth without TLS: passwords cross the network in the clear and the Raft \
                         port trusts whoever connects; bind it to a private network (--raft-allow) \
                         or turn TLS on (--tls-cert, --tls-key, --tls-ca)"
                    );
                }
                None
            }
        };
        // Listeners first: a node that cannot serve stops before touching its database.
        let http_listener =
            TcpListener::bind(config.http_addr)
                .await
                .map_err(|error| NodeError::Bind {
                    what: "HTTP",
                    setting: "http_addr",
                    addr: config.http_addr,
                    error,
                })?;
        let raft_listener =
            TcpListener::bind(config.raft_addr)
                .await
                .map_err(|error| NodeError::Bind {
                    what: "Raft",
                    setting: "raft_addr",
                    addr: config.raft_addr,
                    error,
                })?;
        let pg_listener = match config.pg_addr {
            Some(addr) => Some(
                crate::net::addr::bind_first_free(addr, config.pg_port_attempts)
                    .await
                    .map_err(|error| NodeError::Bind {
                        what: "PostgreSQL",
                        setting: "pg_addr",
                        addr,
                        error,
                    })?,
            ),
            None => None,
        };
        let pg_addr = pg_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let http = crate::net::node_client::NodeClient::new(sender, tls.as_ref())
            .map_err(NodeError::Other)?;
        let links = crate::raft::peer_stream::client::PeerLinks::new(http.clone());
        let host = crate::catalog::host::GroupHost::new(
            config.data_dir.clone(),
            config.node_id,
            config.raft.clone(),
            links,
            http.clone(),
        );
        let service = host.start(DEFAULT_DATA_GROUP).await?;
        seed_restored_cluster(&config, &service.group).await?;
        // The catalog runs on every node (a data directory from before it gains one here).
        host.start(crate::catalog::CATALOG_GROUP).await?;
        for group in host.groups_on_disk() {
            if group > DEFAULT_DATA_GROUP
                && let Err(error) = host.start(group).await
            {
                tracing::error!(group, %error, "cannot start a group replica found on disk");
            }
        }
        let databases = crate::catalog::databases::Databases::new(
            host.clone(),
            service.clone(),
            http.clone(),
            config.placement.clone(),
        );
        let queue = WriteQueue::start(service.clone(), config.queue.clone());

        let backups =
            crate::backup::agents::BackupAgents::start(config.backup.clone(), service.clone());
        backups.follow(databases.clone());
        let raft_router = crate::raft::server::router(host.groups.clone())
            .merge(crate::service::internal::router(
                host.services.clone(),
                started,
                config.http_body_bytes_max + 1024 * 1024,
            ))
            .merge(crate::backup::agent::internal_router(backups.clone()));
        let alerts =
            crate::alerts::Alerts::start(service.clone(), databases.clone(), config.alerts.clone());
        let gate = crate::auth::gate::Gate::new(config.auth.enabled, &config.auth.file_users);
        let api_state = crate::http::ApiState {
            service: service.clone(),
            databases: databases.clone(),
            queue,
            started,
            alerts,
            backups,
            gate: gate.clone(),
            body_bytes_max: config.http_body_bytes_max,
        };
        let api_router = crate::http::router(api_state, config.http_body_bytes_max);

        let (shutdown, _) = watch::channel(false);
        let net = &config.net;
        // With --tls-nodes-only, clients (HTTP, PostgreSQL) connect in the clear.
        let client_tls = tls.clone().filter(|_| !net.tls_nodes_only);
        let guard = |listener, name, allow: &AllowList, max, facing| {
            let context = match facing {
                Facing::Clients | Facing::Postgres => client_tls.clone(),
                Facing::Nodes => tls.clone(),
            };
            let admission = Admission::new(name, allow.clone(), max);
            Guarded::start(listener, admission, context.map(|c| (c, facing)))
                .map_err(|e| NodeError::Other(format!("{name} listener: {e}")))
        };
        let http_listener = guard(
            http_listener,
            "HTTP",
            &net.http_allow,
            net.http_connections_max,
            Facing::Clients,
        )?;
        let raft_listener = guard(
            raft_listener,
            "Raft",
            &net.raft_allow,
            net.raft_connections_max,
            Facing::Nodes,
        )?;
        let mut servers = vec![
            serve(
                http_listener,
                api_router,
                net.idle_timeout,
                shutdown.subscribe(),
            ),
            serve(
                raft_listener,
                raft_router,
                net.idle_timeout,
                shutdown.subscribe(),
            ),
        ];
        if let Some(listener) = pg_listener {
            servers.push(tokio::spawn(crate::pgwire::serve(
                listener,
                databases.clone(),
                gate,
                Admission::new(
                    "PostgreSQL",
                    net.pg_allow.clone(),
                    config.pg_connections_max,
                ),
                client_tls.clone(),
                shutdown.subscribe(),
            )));
        }
        if let Some(context) = &tls {
            servers.push(context.spawn_reloader(shutdown.subscribe()));
        }
        if !config.auth.file_users.is_empty() {
            crate::auth::file_users::spawn_keeper(
                databases.clone(),
                config.auth.file_users.clone(),
            );
        }
        servers.push(crate::catalog::reconcile::spawn(
            databases.clone(),
            shutdown.subscribe(),
        ));
        databases.set_sharded_requests(crate::router::Router::new(
            databases.clone(),
            crate::router::GatherLimits::default(),
        ));
        servers.push(crate::router::resolver::spawn(
            databases.clone(),
            shutdown.subscribe(),
        ));
        let node = Node {
            service,
            databases,
            config,
            pg_addr,
            shutdown,
            servers,
            _lock: lock,
        };
        node.bootstrap_or_join().await?;
        Ok(node)
    }

    /// Where the PostgreSQL endpoint listens, if it runs.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg_addr
    }

    pub fn advertised(&self) -> ShoalNode {
        advertised(&self.config)
    }

    async fn bootstrap_or_join(&self) -> Result<(), NodeError> {
        let raft = &self.service.group.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Other(e.to_string()))?;
        if initialized {
            if self.config.join.is_empty() {
                return Ok(());
            }
            return self.rejoin().await;
        }
        if self.config.join.is_empty() {
            if self.config.auth.enabled && self.config.auth.file_users.is_empty() {
                let Some(password) = &self.config.auth.admin_password else {
                    return Err(NodeError::Other(
                        "--auth on a new cluster needs the first admin's password \
                         (SHOAL_ADMIN_PASSWORD or --admin-password-file); there is no default"
                            .into(),
                    ));
                };
                crate::auth::check_password(password)
                    .map_err(|e| NodeError::Other(format!("the first admin's password: {e}")))?;
            }
            let members =
                std::collections::BTreeMap::from([(self.config.node_id, self.advertised())]);
            raft.initialize(members)
                .await
                .map_err(|e| NodeError::Other(format!("bootstrap: {e}")))?;
            // The first command gives the new cluster its id (backups are labelled with it).
            let group = self.service.group.clone();
            let service = self.service.clone();
            let admin_password = self.config.auth.admin_password.clone();
            tokio::spawn(async move {
                if let Err(error) = propose_first_command(&group, Duration::from_secs(30)).await {
                    tracing::warn!(%error, "could not propose the cluster's first command");
                    return;
                }
                if let Some(password) = admin_password
                    && let Err(error) = create_first_admin(&service, password).await
                {
                    tracing::error!(%error, "could not create the first admin");
                }
            });
            return Ok(());
        }
        self.join().await
    }

    /// Asks the cluster (through any listed member) to add this node, retrying until the
    /// join timeout: members may still be starting.
    /// A node that is already a member and was started with `--join`, as rqlite users start
    /// every node: asks the cluster to confirm it, so a data directory of another cluster is
    /// refused, and a member that comes back on new addresses is re-registered (it cannot
    /// take part until it is). When the cluster does not answer (it may be restarting as a
    /// whole), a node at its recorded addresses starts anyway.
    async fn rejoin(&self) -> Result<(), NodeError> {
        let node = self.advertised();
        let recorded = self
            .service
            .group
            .metrics()
            .membership_config
            .membership()
            .get_node(&self.config.node_id)
            .cloned();
        let Some(recorded) = recorded else {
            // Removed (or left on shutdown): joining again is the operator's decision.
            tracing::warn!(
                "this node is no longer a member of its cluster (removed, or it left): --join \
                 is not used; start it on an empty data directory to join again"
            );
            return Ok(());
        };
        let moved = recorded != node;
        let cluster_id = {
            let database = self.service.group.database.clone();
            tokio::task::spawn_blocking(move || database.applied_state())
                .await
                .map_err(|e| NodeError::Other(e.to_string()))?
                .map_err(|e| NodeError::Other(e.to_string()))?
                .cluster_id
        };
        if moved {
            tracing::info!(
                from = ?recorded,
                to = ?node,
                "this member's addresses changed; asking the cluster to re-register it"
            );
            return self.join_with(cluster_id, self.config.join_timeout).await;
        }
        match self.join_with(cluster_id, REJOIN_CHECK_TIMEOUT).await {
            Err(NodeError::Join { message, .. }) if !message.starts_with("400") => {
                tracing::warn!(%message, "could not confirm membership through --join; starting from the data directory");
                Ok(())
            }
            outcome => outcome,
        }
    }

    async fn join(&self) -> Result<(), NodeError> {
        self.join_with(None, self.config.join_timeout).await
    }

    /// Asks the `--join` targets to add this node (or confirm it), until `timeout`; a 400
    /// answer ends the attempts at once.
    async fn join_with(
        &self,
        cluster_id: Option<String>,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let client = self.service.peers.http();
        let node = self.advertised();
        let mut body = serde_json::json!({
            "id": self.config.node_id,
            "addr": node.raft_addr,
            "http_addr": node.http_addr,
            "voter": !self.config.non_voter,
        });
        if let (Some(cluster_id), Some(fields)) = (cluster_id, body.as_object_mut()) {
            fields.insert("cluster_id".into(), serde_json::Value::String(cluster_id));
        }
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no attempt made");
        while Instant::now() < deadline {
            for target in &self.config.join {
                let url = format!("{}/join", join_base_url(target));
                let mut request = client.post(&url);
                if let Some((user, password)) = &self.config.auth.join_credentials {
                    request = request.basic_auth(user, Some(password));
                }
                // Never past the deadline: a start waits at most `timeout` for the cluster.
                let remaining = deadline
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_secs(1), JOIN_REQUEST_TIMEOUT);
                match request.json(&body).timeout(remaining).send().await {
                    Ok(response) if response.status().is_success() => {
                        tracing::info!(through = %target, "joined the cluster");
                        return Ok(());
                    }
                    Ok(response) => {
                        let status = response.status();
                        last_error =
                            format!("{status}: {}", response.text().await.unwrap_or_default());
                        if status == reqwest::StatusCode::BAD_REQUEST {
                            return Err(NodeError::Join {
                                join: target.clone(),
                                message: last_error,
                            });
                        }
                        if status == reqwest::StatusCode::NOT_FOUND {
                            return Err(NodeError::Join {
                                join: target.clone(),
                                message: format!(
                                    "{status}: {target} is not a node's HTTP API address (a Raft \
                                     address, as rqlite 8 takes?); Shoal joins through the HTTP \
                                     API: give a member's --http-addr"
                                ),
                            });
                        }
                    }
                    Err(error) => last_error = crate::service::peer::with_causes(&error),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(NodeError::Join {
            join: self.config.join.join(","),
            message: last_error,
        })
    }

    /// Asks the leader (this node has handed leadership over already) to remove this node
    /// from the cluster; waits at most `LEAVE_TIMEOUT`, and a failure only stops the leaving.
    async fn leave(&self) {
        let id = self.config.node_id;
        let request = ClusterRequest::Remove { id };
        let deadline = Instant::now() + LEAVE_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.service.cluster(request.clone())).await {
                Ok(Ok(_)) => {
                    tracing::info!(target: "audit", event = "member_left", id, "left the cluster on shutdown");
                    return;
                }
                // Leadership is moving (this node may have just handed it over): ask again.
                Ok(Err(
                    crate::service::ServiceError::NoLeader
                    | crate::service::ServiceError::NotLeader { .. }
                    | crate::service::ServiceError::Unavailable(_),
                )) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not leave the cluster on shutdown");
                    return;
                }
                Err(_) => {
                    tracing::warn!("leaving the cluster on shutdown timed out");
                    return;
                }
            }
        }
    }

    /// Graceful stop: a leader hands leadership to an up-to-date voter first, so writes
    /// continue without waiting for an election timeout.
    pub async fn shutdown(self) {
        let handovers =
            self.databases
                .host()
                .services
                .all()
                .into_iter()
                .map(|service| async move {
                    if !service.group.raft.is_leader()
                        || service.group.raft.voter_ids().count() <= 1
                    {
                        return;
                    }
                    let group = service.group.id;
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        service.cluster_on_leader(ClusterRequest::StepDown { to: None }),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {
                            tracing::info!(group, "handed leadership over before shutting down")
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(group, %error, "could not hand leadership over")
                        }
                        Err(_) => tracing::warn!(group, "handing leadership over timed out"),
                    }
                });
        futures_util::future::join_all(handovers).await;
        if self.config.leave_on_shutdown {
            self.leave().await;
        }
        let _ = self.shutdown.send(true);
        // Raft stops before each database closes: the clean-shutdown marker lets the next
        // start trust the database instead of rebuilding it.
        self.databases.host().stop_all().await;
        for server in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
    }
}

/// The base URL of a `--join` target: a URL as given, or `host:port` (rqlite's form) with the
/// scheme nodes use between them.
fn join_base_url(target: &str) -> String {
    let target = target.trim().trim_end_matches('/');
    if target.contains("://") {
        target.to_string()
    } else {
        crate::net::node_url(target)
    }
}

/// How long a node leaving the cluster on shutdown waits for the leader to remove it.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest one join request may take (adding a learner waits until it caught up).
const JOIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(70);

/// How long a member started with `--join` tries to have the cluster confirm it before it
/// starts from its data directory anyway.
const REJOIN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until this node leads, then commits an empty command (it fixes the cluster id).
async fn propose_first_command(group: &RaftGroup, timeout: Duration) -> Result<(), NodeError> {
    group
        .raft
        .wait(Some(timeout))
        .current_leader(group.node_id, "bootstrap")
        .await
        .map_err(|e| NodeError::Other(format!("waiting for leadership: {e}")))?;
    group
        .raft
        .client_write(crate::raft::types::Command {
            timestamp_ms: crate::backup::now_ms(),
            batches: Vec::new(),
            load: None,
            users: None,
            shard: None,
        })
        .await
        .map_err(|e| NodeError::Other(format!("first command: {e}")))?;
    Ok(())
}

/// Creates the user `admin` (role admin) on a new cluster that has no users yet.
async fn create_first_admin(service: &Service, password: String) -> Result<(), String> {
    let users = service
        .group
        .database
        .users()
        .await
        .map_err(|e| e.to_string())?;
    if !users.is_empty() {
        return Ok(());
    }
    let secrets =
        tokio::task::spawn_blocking(move || crate::auth::PasswordSecrets::derive(&password))
            .await
            .map_err(|e| e.to_string())??;
    let admin = crate::auth::User {
        name: "admin".into(),
        password_hash: secrets.hash,
        scram_verifier: secrets.scram_verifier,
        roles: ["admin".to_string()].into(),
        permissions: Default::default(),
        tables: Default::default(),
        databases: Default::default(),
    };
    service
        .propose_user_change(crate::auth::UserChange::Put(admin))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(target: "audit", event = "user_created", user = "admin", "first admin created");
    Ok(())
}

/// A data directory made by `shoal restore --data-dir` holds a seed image (already loaded by
/// the group). Before any listener opens, the node bootstraps a one-node cluster, snapshots
/// the seeded database and purges the log, so every node that later joins receives the data
/// as a snapshot and nothing can replicate onto an empty database.
async fn seed_restored_cluster(config: &NodeConfig, group: &RaftGroup) -> Result<(), NodeError> {
    let seed = group.dir.join(crate::backup::restore::SEED_FILE);
    if !seed.exists() {
        return Ok(());
    }
    let fail = |message: String| {
        NodeError::Other(format!("starting from the restored database: {message}"))
    };
    let raft = &group.raft;
    if !raft
        .is_initialized()
        .await
        .map_err(|e| fail(e.to_string()))?
    {
        if !config.join.is_empty() {
            return Err(fail(
                "a restored data directory starts a new cluster; start it without --join and                  join the other nodes to it"
                    .into(),
            ));
        }
        let members = std::collections::BTreeMap::from([(config.node_id, advertised(config))]);
        raft.initialize(members)
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    propose_first_command(group, Duration::from_secs(30)).await?;
    let applied = group.metrics().last_applied.map_or(0, |l| l.index);
    raft.trigger()
        .snapshot()
        .await
        .map_err(|e| fail(e.to_string()))?;
    raft.wait(Some(Duration::from_secs(600)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied),
            "restored database snapshotted",
        )
        .await
        .map_err(|e| fail(format!("snapshot: {e}")))?;
    raft.trigger()
        .purge_log(applied)
        .await
        .map_err(|e| fail(e.to_string()))?;
    raft.wait(Some(Duration::from_secs(60)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= applied),
            "log purged",
        )
        .await
        .map_err(|e| fail(format!("purge: {e}")))?;
    std::fs::remove_file(&seed).map_err(|e| fail(format!("{}: {e}", seed.display())))?;
    tracing::info!(
        log_index = applied,
        "new cluster started from the restored database"
    );
    Ok(())
}

fn advertised(config: &NodeConfig) -> ShoalNode {
    ShoalNode {
        raft_addr: config
            .raft_advertise_addr
            .clone()
            .unwrap_or_else(|| config.raft_addr.to_string()),
        http_addr: config
            .http_advertise_addr
            .clone()
            .unwrap_or_else(|| config.http_addr.to_string()),
    }
}

fn serve(
    listener: Guarded,
    router: axum::Router,
    idle_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(crate::net::listener::serve_http(
        listener,
        router,
        idle_timeout,
        shutdown,
    ))
}

/// Creates the data directory, takes its lock (one process per directory) and checks the node
/// id matches the one it was created with.
fn prepare_data_dir(config: &NodeConfig) -> Result<std::fs::File, NodeError> {
    let dir = &config.data_dir;
    let fail = |message: String| NodeError::DataDir {
        dir: dir.clone(),
        message,
    };
    let lock = lock_data_dir(dir)?;
    match recorded_node_id(dir)? {
        Some(node_id) if node_id != config.node_id => {
            return Err(fail(format!(
                "it belongs to node {node_id}, but this node was started with --node-id {}",
                config.node_id
            )));
        }
        Some(_) => {}
        None => {
            let identity = serde_json::to_vec(&NodeIdentity {
                node_id: config.node_id,
            })
            .map_err(|e| fail(e.to_string()))?;
            std::fs::write(dir.join("node.json"), identity)
                .map_err(|e| fail(format!("node.json: {e}")))?;
        }
    }
    Ok(lock)
}

/// Creates `dir` if needed and takes its lock: one process per data directory (held while the
/// returned file is open).
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, NodeError> {
    let fail = |message: String| NodeError::DataDir {
        dir: dir.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(|e| fail(format!("LOCK: {e}")))?;
    // flock: no crate in the usual set wraps it more simply; released when the file closes.
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid, owned file descriptor.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(fail("another shoal process is using it".into()));
    }
    Ok(lock)
}

/// The node id `dir` belongs to (its `node.json`), if any.
pub fn recorded_node_id(dir: &Path) -> Result<Option<NodeId>, NodeError> {
    let fail = |message: String| NodeError::DataDir {
        dir: dir.to_path_buf(),
        message,
    };
    match std::fs::read(dir.join("node.json")) {
        Ok(bytes) => {
            let identity: NodeIdentity =
                serde_json::from_slice(&bytes).map_err(|e| fail(format!("node.json: {e}")))?;
            Ok(Some(identity.node_id))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(fail(format!("node.json: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_targets_take_urls_or_rqlite_host_port() {
        assert_eq!(join_base_url("http://n1:4001/"), "http://n1:4001");
        assert_eq!(join_base_url("https://n1:4001"), "https://n1:4001");
        assert_eq!(join_base_url("localhost:4001"), "http://localhost:4001");
    }
}
