//! Fuzz target: shoal::fuzzing::pg_messages (see src/fuzzing.rs for what it drives).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::pg_messages(data));
