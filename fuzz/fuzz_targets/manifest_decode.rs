//! The manifest parser: never panics; an accepted manifest round-trips canonically.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzz::manifest_decode(data));
