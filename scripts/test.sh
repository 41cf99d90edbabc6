#!/usr/bin/env bash
# The project's one test command: formatting, lints, every test of the workspace, a short crash
# soak, then the Kotlin and Swift binding tests (installing their toolchains on first use, cached in
# ~/.cache/async-offers or $ASYNC_OFFERS_CACHE).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo test --workspace --locked
# The command line killed at random moments and restarted: nothing lost, nothing handed out twice.
scripts/crash-soak.sh --iterations 20
# The Kotlin SDK on the JVM, against the reference server run as its own process.
bindings/kotlin/test.sh
# The Swift SDK with XCTest, the same way (in a Debian trixie chroot where `swift` is absent).
bindings/swift/test.sh
