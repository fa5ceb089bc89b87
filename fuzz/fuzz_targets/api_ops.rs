//! Random sequences of API operations with garbage arguments, checked against a model:
//! no panic, the documented error for bad input, exactly-once after every drain.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tributary_fuzz::api_ops(data);
});
