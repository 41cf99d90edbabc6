#!/usr/bin/env bash
# Runs the quickstart RUNS times (default 5) with OFFERS offers (default 10) and prints each
# run's timings and the medians. Usage: scripts/bench-quickstart.sh [RUNS] [OFFERS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
offers="${2:-10}"
cargo build --release --quiet -p quickstart
for _ in $(seq "$runs"); do
    ./target/release/quickstart --offers "$offers" --json
done | python3 -c '
import json, statistics, sys
rows = [json.loads(line) for line in sys.stdin]
keys = [("first", "time_to_first_ready_ms"), ("all", "time_to_all_ready_ms")]
for r in rows:
    p = r["payer"]
    print("first %6.1f ms  all %6.1f ms  payer fetch %5.1f ms  matches %s" % (
        r["time_to_first_ready_ms"], r["time_to_all_ready_ms"], p["fetch_ms"] or -1, p["matches"]))
print("median of %d: first %.1f ms, all %.1f ms, payer fetch %.1f ms" % (
    len(rows),
    statistics.median(r["time_to_first_ready_ms"] for r in rows),
    statistics.median(r["time_to_all_ready_ms"] for r in rows),
    statistics.median(r["payer"]["fetch_ms"] or -1 for r in rows)))
'
