#!/usr/bin/env bash
# Prints the size in bytes of the shipped library (the `mobile` profile: stripped, with the
# UniFFI surface) for the host target, then the commands that build it for Android and iOS.
# Usage: scripts/size-report.sh [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked --profile mobile --features ffi,secp-lowmemory --lib
target_dir="${CARGO_TARGET_DIR:-target}"
library="$target_dir/mobile/libasync_offers.so"
[ -f "$library" ] || library="$target_dir/mobile/libasync_offers.dylib"
bytes="$(wc -c < "$library")"
target="$(rustc -vV | sed -n 's/^host: //p')"
if [ "${1:-}" = "--json" ]; then
    printf '{"target":"%s","profile":"mobile","library":"%s","stripped_bytes":%s}\n' \
        "$target" "$library" "$bytes"
    exit
fi
echo "$target  $library  $bytes bytes (stripped, mobile profile, UniFFI surface included)"
cat <<'TARGETS'
Android (needs the NDK and cargo-ndk): android/build-jnilibs.sh
  then: ls -l android/lib/src/main/jniLibs/*/libasync_offers.so
iOS and macOS (needs Xcode): ios/build-xcframework.sh
  then: ls -l target/aarch64-apple-ios/mobile/libasync_offers.a   (static: the app's linker strips it)
TARGETS
