#!/usr/bin/env bash
# Builds ios/async_offersFFI.xcframework for ios/Package.swift: the Rust library (mobile profile,
# UniFFI surface) as a static library for iOS devices (arm64), the iOS simulator (arm64, x86_64)
# and macOS (arm64, x86_64), with the C header and module map the generated Swift imports.
# Needs macOS with Xcode; installs the Rust targets.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
rustup target add "${targets[@]}"
for target in "${targets[@]}"; do
    # Static for Apple only: the manifest's cdylib is what Android and the JVM load.
    cargo rustc --locked --profile mobile --features ffi,secp-lowmemory --lib --crate-type staticlib --target "$target"
done
library() { echo "target/$1/mobile/libasync_offers.a"; }

work="target/xcframework"
rm -rf "$work" ios/async_offersFFI.xcframework
mkdir -p "$work/headers/async_offersFFI" "$work/ios-simulator" "$work/macos"
# A folder named after the module keeps this module map apart from other XCFrameworks' in the
# app's shared header directory; clang looks for <name>/module.modulemap on `import <name>`.
cp bindings/swift/generated/async_offersFFI.h "$work/headers/async_offersFFI/"
cp bindings/swift/generated/async_offersFFI.modulemap "$work/headers/async_offersFFI/module.modulemap"
lipo -create "$(library aarch64-apple-ios-sim)" "$(library x86_64-apple-ios)" \
    -output "$work/ios-simulator/libasync_offers.a"
lipo -create "$(library aarch64-apple-darwin)" "$(library x86_64-apple-darwin)" \
    -output "$work/macos/libasync_offers.a"
xcodebuild -create-xcframework \
    -library "$(library aarch64-apple-ios)" -headers "$work/headers" \
    -library "$work/ios-simulator/libasync_offers.a" -headers "$work/headers" \
    -library "$work/macos/libasync_offers.a" -headers "$work/headers" \
    -output ios/async_offersFFI.xcframework
du -sh ios/async_offersFFI.xcframework/*/
