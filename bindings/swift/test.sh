#!/usr/bin/env bash
# Builds the library and the reference server, then runs the Swift package's XCTests: with
# `swift` from PATH where there is one (macOS), otherwise in a Debian trixie chroot with
# Debian's `swiftlang`, made on first use and cached (needs root, or sudo).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
cargo build --quiet --locked --features ffi --lib
cargo build --quiet --locked -p async-offers-server
server="$repo/target/debug/async-offers-server"
libs="$repo/target/debug"
# Data dirs named slow-disk get slow fsyncs (bindings/testing/slow_fsync.c); Linux only.
mkdir -p target/swift
gcc -shared -fPIC -O2 -o target/swift/slow_fsync.so bindings/testing/slow_fsync.c -ldl
# Then the app package in ios/: its XCFramework needs Xcode, but its manifest must still load.
run_tests='cd "$0/bindings/swift" && swift test --scratch-path "$0/target/swift" -Xlinker -L"$1" &&
    cd "$0/ios" && swift package dump-package --scratch-path "$0/target/swift-ios" > /dev/null'

if command -v swift > /dev/null; then
    ASYNC_OFFERS_SERVER="$server" LD_LIBRARY_PATH="$libs" DYLD_LIBRARY_PATH="$libs" \
        sh -c "$run_tests" "$repo" "$libs"
    exit
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
root="${ASYNC_OFFERS_CACHE:-$HOME/.cache/async-offers}/swift-trixie"
if [ ! -f "$root/.swift-ready" ]; then
    command -v debootstrap > /dev/null ||
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap > /dev/null
    $sudo rm -rf "$root"
    $sudo debootstrap --variant=minbase trixie "$root" http://deb.debian.org/debian > /dev/null
    $sudo cp /etc/resolv.conf "$root/etc/resolv.conf"
    $sudo chroot "$root" sh -c 'apt-get update -q > /dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            swiftlang libc6-dev libstdc++-14-dev libgcc-14-dev ca-certificates > /dev/null'
    $sudo touch "$root/.swift-ready"
fi

# The repository at the same path inside the chroot, and /proc; both undone on exit.
mounted=()
cleanup() {
    for path in "${mounted[@]}"; do $sudo umount "$path" || true; done
}
trap cleanup EXIT
if ! mountpoint -q "$root/proc"; then
    $sudo mount -t proc proc "$root/proc"
    mounted+=("$root/proc")
fi
$sudo mkdir -p "$root$repo"
if ! mountpoint -q "$root$repo"; then
    $sudo mount --bind "$repo" "$root$repo"
    mounted=("$root$repo" "${mounted[@]}")
fi
$sudo chroot "$root" env HOME=/root ASYNC_OFFERS_SERVER="$server" LD_LIBRARY_PATH="$libs" \
    LD_PRELOAD="$repo/target/swift/slow_fsync.so" \
    sh -c "$run_tests" "$repo" "$libs"
