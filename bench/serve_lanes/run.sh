#!/usr/bin/env bash
# Decode throughput of `nmk serve`: 8 concurrent requests with 1 lane against 8 lanes (lanes
# sharing each pass over the weights), medians of 3 alternating runs, the ratio in the same
# script, with 1 and with 2 matrix threads. Writes bench/serve_lanes/results/<UTC time>-threads<N>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p nmk
stamp="$(date -u +%Y-%m-%dT%H%MZ)"
for threads in 1 2; do
    out="bench/serve_lanes/results/$stamp-threads$threads.json"
    NMK_THREADS=$threads NMK_BIN=target/release/nmk python3 bench/serve_lanes/lanes.py "$out"
    echo "wrote $out"
done
