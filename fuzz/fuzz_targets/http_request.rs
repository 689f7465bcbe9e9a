//! Fuzz target: shoal::fuzzing::http_request (see src/fuzzing.rs for what it drives).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal::fuzzing::http_request(data));
