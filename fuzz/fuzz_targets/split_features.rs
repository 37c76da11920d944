//! libFuzzer entry point; the check itself is [`hiedge_fuzz::split_features`] (replayed by `make test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hiedge_fuzz::split_features(data));
