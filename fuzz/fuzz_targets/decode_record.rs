//! Stored offer records as read back at start (`async_offers::testing::fuzz::decode_record`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| async_offers::testing::fuzz::decode_record(data));
