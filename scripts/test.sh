#!/usr/bin/env bash
# The project's one test command: formatting, lints, every test of the workspace, a short crash
# soak, then the Kotlin and Swift binding tests (installing their toolchains on first use, cached in
# ~/.cache/async-offers or $ASYNC_OFFERS_CACHE). Its last line counts the tests that ran.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
broken=()
# Runs a step, its output shown and kept in $logs/NAME; a failure is noted and the rest still run.
step() {
    local name="$1"
    shift
    if ! "$@" 2>&1 | tee "$logs/$name"; then broken+=("$name"); fi
}
step rust cargo test --workspace --locked --no-fail-fast
# The command line killed at random moments and restarted: nothing lost, nothing handed out twice.
step soak scripts/crash-soak.sh --iterations 20
# The Kotlin SDK on the JVM, against the reference server run as its own process.
step kotlin bindings/kotlin/test.sh
# The Swift SDK with XCTest, the same way (in a Debian trixie chroot where `swift` is absent).
step swift bindings/swift/test.sh

# Passed and failed tests of each suite, from its own summary lines.
rust=$(grep -ho 'test result: [A-Za-z]*\. [0-9]* passed; [0-9]* failed' "$logs/rust" |
    awk '{ p += $4; f += $6 } END { print p + 0, f + 0 }')
kotlin=$(grep -ho -e 'OK ([0-9]* tests\?)' -e 'Tests run: [0-9]*, *Failures: [0-9]*' "$logs/kotlin" |
    tail -n 1 | sed -E 's/OK \(([0-9]+) tests?\)/\1 0/; s/Tests run: ([0-9]+), *Failures: ([0-9]+)/\1 \2/' |
    awk '{ print $1 - $2, $2 }')
swift=$(grep -ho 'Executed [0-9]* tests\?, with [0-9]* failures\?' "$logs/swift" | tail -n 1 |
    awk '{ print $2 - $5, $5 }')
read -r rust_passed rust_failed <<< "${rust:-0 0}"
read -r kotlin_passed kotlin_failed <<< "${kotlin:-0 0}"
read -r swift_passed swift_failed <<< "${swift:-0 0}"
passed=$((rust_passed + kotlin_passed + swift_passed))
failed=$((rust_failed + kotlin_failed + swift_failed))
soak=$(grep -o '"violations":[0-9]*' "$logs/soak" | tail -n 1 | tr -dc '0-9')
detail="Rust $rust_passed, Kotlin $kotlin_passed, Swift $swift_passed; crash soak: ${soak:-?} violations"
if [ ${#broken[@]} -gt 0 ]; then
    echo "$passed passed, $failed failed ($detail); failed: ${broken[*]}"
    exit 1
fi
echo "$passed passed, $failed failed ($detail)"
