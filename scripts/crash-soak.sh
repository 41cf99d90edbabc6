#!/usr/bin/env bash
# Crash soak: the command-line client SIGKILLed at random moments while filling and handing out
# offers against the reference server, restarted on the same data dir, its invariants checked
# after every round (examples/crash_soak.rs). Prints one JSON line; exits 1 on any violation.
# Usage: scripts/crash-soak.sh [--iterations N] [--seed S] [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
soak_args=()
for arg in "$@"; do
    if [ "$arg" = "--release" ]; then profile=release; else soak_args+=("$arg"); fi
done
build=(cargo build --quiet --locked -p async-offers -p async-offers-server
    --features async-offers/cli --bin async-offers --bin async-offers-server --example crash_soak)
if [ "$profile" = release ]; then build+=(--release); fi
"${build[@]}"
exec "target/$profile/examples/crash_soak" "${soak_args[@]}"
