//! libFuzzer entry point; the check itself is [`hiedge_fuzz::policy_decide`] (replayed by `make test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hiedge_fuzz::policy_decide(data));
