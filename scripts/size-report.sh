#!/usr/bin/env bash
# Prints the size in bytes of the shipped library (the `mobile` profile: stripped, with the
# UniFFI surface) for the host target, a line per crate whose code and data cost more than
# 100 KB in it, then the commands that build it for Android and iOS.
# Usage: scripts/size-report.sh [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
# Built as a cdylib alone, as android/build-jnilibs.sh and ios/build-xcframework.sh do: cargo
# skips the profile's LTO for a package built as `lib` and `cdylib` at once, and that library
# is about 800 KB larger.
build() {
    cargo rustc --quiet --locked --profile mobile --features ffi,secp-lowmemory --lib \
        --crate-type cdylib "$@"
}
library="$target_dir/mobile/libasync_offers.so"
[ "$(uname)" = Darwin ] && library="$target_dir/mobile/libasync_offers.dylib"

per_crate=""
# With GNU binutils (which Rust's linking on Linux needs anyway), one build with its symbols
# kept: each symbol's bytes go to the crate its (demangled) name starts with, an estimate, as
# generic code lands under the crate that defines it, wherever it is used; and `strip
# --strip-all` of a copy gives the shipped bytes, as the profile's own strip does (the linker's
# --strip-all). Two builds, stripped and not, would each redo the crate's LTO on every run.
# Elsewhere only the total is printed, of the profile's stripped build.
if nm --version 2>/dev/null | grep -q "GNU nm" && strip --version 2>/dev/null | grep -q "GNU strip"; then
    build -- -C strip=none
    stripped="$target_dir/mobile/size-report/$(basename "$library")"
    mkdir -p "$(dirname "$stripped")"
    strip --strip-all -o "$stripped" "$library"
    per_crate="$(nm --print-size --radix=d --defined-only -C "$library" | awk '
    NF >= 4 {
        size = $2 + 0; name = $4
        for (i = 5; i <= NF; i++) name = name " " $i
        sub(/^(<|&|mut |dyn |\(|\[)+/, "", name)
        crate = name; sub(/::.*/, "", crate)
        # `<T as Trait>::f`, `<[u8; 32] as Trait>::f`: the crate of the trait.
        if (crate ~ / as /) sub(/.* as /, "", crate)
        sub(/<.*/, "", crate)
        if (name ~ /^rustsecp256k1_/) crate = "secp256k1-sys (C)"
        else if (name ~ /^(uniffi_|ffi_|UNIFFI_META_)async_offers/ || crate == "uniffi_core")
            crate = "uniffi (uniffi_core and the generated scaffolding)"
        else if (name !~ /::/) crate = "[other symbols]"
        # The standard library and the crates it is built from.
        else if (crate ~ /^(core|alloc|std|gimli|addr2line|miniz_oxide|rustc_demangle|std_detect|object|panic_unwind|adler2?)$/)
            crate = "std"
        bytes[crate] += size; total += size
    }
    END {
        for (crate in bytes)
            if (bytes[crate] > 100000) printf "%d\t%s\n", bytes[crate], crate
            else rest += bytes[crate]
        printf "%d\t%s\n", rest, "[crates under 100 KB each]"
        printf "%d\t%s\n", total, "[all symbols]"
    }' | sort -rn)"
    library="$stripped"
else
    build
fi
bytes="$(wc -c < "$library")"
target="$(rustc -vV | sed -n 's/^host: //p')"
if [ "${1:-}" = "--json" ]; then
    crates="$(echo "$per_crate" | awk -F '\t' '{ printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $2, $1 }')"
    printf '{"target":"%s","profile":"mobile","library":"%s","stripped_bytes":%s,"symbol_bytes_by_crate":{%s}}\n' \
        "$target" "$library" "$bytes" "$crates"
    exit
fi
echo "$target  $library  $bytes bytes (stripped, mobile profile, UniFFI surface included)"
if [ -n "$per_crate" ]; then
    echo "Code and data by crate (symbol sizes, unstripped build; the rest is unwind tables,"
    echo "relocations and headers):"
    echo "$per_crate" | awk -F '\t' '{ printf "  %9d bytes  %s\n", $1, $2 }'
else
    echo "(code and data by crate: needs GNU nm)"
fi
cat <<'TARGETS'
Android (needs the NDK and cargo-ndk): android/build-jnilibs.sh
  then: ls -l android/lib/src/main/jniLibs/*/libasync_offers.so
iOS and macOS (needs Xcode): ios/build-xcframework.sh
  then: ls -l target/aarch64-apple-ios/mobile/libasync_offers.a   (static: the app's linker strips it)
TARGETS
