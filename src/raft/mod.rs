//! Consensus: openraft glue — the durable log store, the node-to-node transport, and the
//! per-group Raft instance. Knows nothing about HTTP clients or SQL beyond the command type.

pub mod group;
pub mod log_store;
pub mod network;
pub mod peer_stream;
pub mod quiesce;
pub mod registry;
pub mod server;
pub mod types;
pub mod wire;
