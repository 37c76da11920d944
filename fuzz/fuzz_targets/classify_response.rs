//! libFuzzer entry point; the check itself is [`hiedge_fuzz::classify_response`] (replayed by `make test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hiedge_fuzz::classify_response(data));
