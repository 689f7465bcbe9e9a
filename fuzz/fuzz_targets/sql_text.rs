//! Fuzz target: shoal::fuzzing::sql_text (see src/fuzzing.rs for what it drives).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::sql_text(data));
