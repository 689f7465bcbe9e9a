//! SQLite: the state machine's storage. Applies committed entries deterministically, serves
//! reads from a pool of read-only connections, and exports/imports consistent images.

pub mod clock_vfs;
pub mod database;
pub mod determinism;
pub mod dump;
pub mod execute;
pub mod guard;
pub mod load;
pub mod ownership;
pub mod reader;
pub mod snapshot_store;
pub mod state_file;
pub mod state_machine;
pub mod twopc;
