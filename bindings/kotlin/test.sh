#!/usr/bin/env bash
# Builds the library and the reference server, compiles the generated Kotlin, the idiomatic
# layer and the JUnit tests, and runs them on the JVM. Installs what it needs when absent:
# kotlinc from the npm package `kotlin-compiler` (cached), JNA and JUnit from Debian.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${ASYNC_OFFERS_CACHE:-$HOME/.cache/async-offers}"
kotlin_version="2.4.20"

if command -v kotlinc > /dev/null; then
    kotlinc=kotlinc
    kotlin_lib="$(dirname "$(readlink -f "$(command -v kotlinc)")")/../lib"
else
    kotlin_home="$cache/kotlin-$kotlin_version/node_modules/kotlin-compiler"
    if [ ! -x "$kotlin_home/bin/kotlinc" ]; then
        mkdir -p "$cache/kotlin-$kotlin_version"
        npm install --prefix "$cache/kotlin-$kotlin_version" --no-audit --no-fund --loglevel=error \
            "kotlin-compiler@$kotlin_version" > /dev/null
        chmod +x "$kotlin_home"/bin/*
    fi
    kotlinc="$kotlin_home/bin/kotlinc"
    kotlin_lib="$kotlin_home/lib"
fi
if [ ! -f /usr/share/java/jna.jar ] || [ ! -f /usr/share/java/junit4.jar ]; then
    sudo_if_needed=""
    [ "$(id -u)" = 0 ] || sudo_if_needed="sudo"
    $sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libjna-java junit4 > /dev/null
fi

cargo build --quiet --locked --features ffi --lib
cargo build --quiet --locked -p async-offers-server
classes="target/kotlin/classes"
rm -rf "$classes"
mkdir -p "$classes"
classpath="/usr/share/java/jna.jar:/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar:$kotlin_lib/kotlinx-coroutines-core-jvm.jar:$kotlin_lib/kotlin-stdlib.jar"
"$kotlinc" -nowarn -cp "$classpath" -d "$classes" \
    bindings/kotlin/generated bindings/kotlin/src bindings/kotlin/test 2>&1 | grep -v '^$' || true
# Data dirs named slow-disk get slow fsyncs (bindings/testing/slow_fsync.c).
gcc -shared -fPIC -O2 -o target/kotlin/slow_fsync.so bindings/testing/slow_fsync.c -ldl
LD_PRELOAD="$PWD/target/kotlin/slow_fsync.so" java -cp "$classes:$classpath" \
    -Djna.library.path=target/debug \
    -Dasync_offers.server=target/debug/async-offers-server \
    org.junit.runner.JUnitCore org.asyncoffers.AsyncOffersTest
