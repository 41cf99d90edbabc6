#!/usr/bin/env bash
# Builds libasync_offers.so (mobile profile, UniFFI surface) for arm64-v8a, armeabi-v7a and
# x86_64 into android/lib/src/main/jniLibs, checks every load segment is 16 KB aligned, and
# prints the sizes. Needs the Android NDK r27 or newer in ANDROID_NDK_HOME; installs the Rust
# targets and cargo-ndk. Then: cd android && gradle :lib:assembleRelease
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ANDROID_NDK_HOME:?point ANDROID_NDK_HOME at the Android NDK (r27 or newer)}"
# The API level the library links against: minSdk in android/lib/build.gradle.kts.
min_sdk=24
abis=(arm64-v8a:aarch64-linux-android armeabi-v7a:armv7-linux-androideabi x86_64:x86_64-linux-android)

rustup target add "${abis[@]#*:}"
command -v cargo-ndk > /dev/null || cargo install --locked cargo-ndk
# Android 15+ devices may use 16 KB pages; NDK r28 aligns that way by default, older NDKs
# need the flag. Only target crates get RUSTFLAGS here (cargo-ndk passes --target).
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-z,max-page-size=16384"
ndk_args=()
for abi in "${abis[@]}"; do ndk_args+=(-t "${abi%%:*}"); done
# `rustc --crate-type cdylib`, not `build`: cargo skips the profile's LTO for a package built as
# `lib` and `cdylib` at once (about 800 KB more, scripts/size-report.sh).
cargo ndk --platform "$min_sdk" "${ndk_args[@]}" rustc --locked --profile mobile \
    --features ffi,secp-lowmemory --lib --crate-type cdylib

# Every LOAD segment must be aligned to at least 16 KB (readelf prints the alignment in hex).
check_16k_aligned() {
    local align
    while read -r align; do
        if ((align < 16384)); then
            echo "$2: a load segment is aligned to $align, not 16 KB" >&2
            exit 1
        fi
    done < <("$1" -lW "$2" | awk '$1 == "LOAD" { print $NF }')
}

readelf="$(echo "$ANDROID_NDK_HOME"/toolchains/llvm/prebuilt/*/bin/llvm-readelf)"
for abi in "${abis[@]}"; do
    name="${abi%%:*}" triple="${abi#*:}"
    out="android/lib/src/main/jniLibs/$name"
    mkdir -p "$out"
    cp "target/$triple/mobile/libasync_offers.so" "$out/"
    check_16k_aligned "$readelf" "$out/libasync_offers.so"
    echo "$name $(wc -c < "$out/libasync_offers.so") bytes"
done
