#!/usr/bin/env bash
# Generates the Kotlin and Swift sources from the library built with the `ffi` feature, into
# bindings/kotlin/generated and bindings/swift/generated. Usage: bindings/generate.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bindings}"
cargo build --quiet --locked --features ffi --lib
library="target/debug/libasync_offers.so"
[ -f "$library" ] || library="target/debug/libasync_offers.dylib"
# Library mode reads the names from uniffi.toml; it must run in the crate's directory.
cargo run --quiet --locked --features bindgen --bin uniffi-bindgen -- generate \
    --library "$library" --language kotlin --out-dir "$out/kotlin/generated" --no-format
cargo run --quiet --locked --features bindgen --bin uniffi-bindgen -- generate \
    --library "$library" --language swift --out-dir "$out/swift/generated" --no-format
