//! Sharding: how rows are spread over a database's shard groups — the slot of a shard key
//! (`slot`), on which the router and the slot map build — and the writes routed per bucket of
//! slots (`write_load`), by which slots are balanced.

pub mod slot;
pub mod write_load;
