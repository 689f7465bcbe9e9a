//! The shared types as the Raft layer names them (`crate::types`), and the openraft instance
//! type with Shoal's state machine.

pub use crate::types::*;

pub type Raft = openraft::Raft<TypeConfig, crate::db::state_machine::StateMachine>;
