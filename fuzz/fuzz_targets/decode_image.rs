//! libFuzzer entry point; the check itself is [`hiedge_fuzz::decode_image`] (replayed by `make test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hiedge_fuzz::decode_image(data));
