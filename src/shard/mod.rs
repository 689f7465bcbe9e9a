//! Sharding: how rows are spread over a database's shard groups. Today: the slot of a shard
//! key (`slot`); the router and the slot map build on it.

pub mod slot;
