//! Fuzz target: shoal::fuzzing::raft_rpc (see src/fuzzing.rs for what it drives).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::raft_rpc(data));
