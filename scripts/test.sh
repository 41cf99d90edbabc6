#!/usr/bin/env bash
# The project's one test command: formatting, lints, every test of the workspace, then the
# Kotlin binding tests (installing their toolchain on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo test --workspace --locked
# The Kotlin SDK on the JVM, against the reference server run as its own process.
bindings/kotlin/test.sh
