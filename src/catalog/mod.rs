//! The cluster catalog and the groups it places: which databases exist, the Raft group each
//! lives in, which nodes hold each group, and this node's share of them. The catalog is a
//! Raft group of its own (group 0) whose SQLite database holds its tables; every node runs a
//! replica (a voter on up to five nodes, a read replica elsewhere) and reads it locally.
//!
//! Layers: endpoints (`http`, `pgwire`) resolve a database name here (`databases`); the
//! request then runs on the group's service (`service`), over its Raft group (`raft`) and
//! SQLite state machine (`db`). `host` starts and stops this node's group replicas,
//! `reconcile` keeps them in step with the catalog, `placement` chooses nodes.

pub mod balance;
pub mod databases;
pub mod handle;
pub mod host;
pub mod mover;
pub mod placement;
pub mod reconcile;
pub mod reshard;
pub mod slot_balance;
pub mod slots;
pub mod sql;
pub mod statements;
pub mod users;
pub mod view;

/// The catalog's own Raft group (defined with the other reserved group ids).
pub use crate::raft::types::CATALOG_GROUP;
