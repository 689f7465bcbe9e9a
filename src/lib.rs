//! Shoal: a replicated SQL database — SQLite for storage, Raft (openraft) for consensus, an
//! rqlite-compatible HTTP API in front.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod catalog;
pub mod config;
pub mod db;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod net;
pub mod node;
pub mod pgwire;
pub mod raft;
pub mod recover;
pub mod router;
pub mod service;
pub mod shard;
pub mod shell;
pub mod sqltext;
pub mod types;
pub mod unsafe_faults;
