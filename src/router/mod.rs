//! The router of sharded databases: what runs a statement over a database's groups, and the
//! cross-group transactions that make writes to several of them atomic.

pub mod commit;
pub mod resolver;
