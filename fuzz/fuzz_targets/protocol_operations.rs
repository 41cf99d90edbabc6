//! Server messages, contexts and app calls in any order (`async_offers::testing::fuzz::protocol_operations`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    async_offers::testing::fuzz::protocol_operations(data);
});
