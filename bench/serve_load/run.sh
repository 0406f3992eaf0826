#!/usr/bin/env bash
# nmk serve load test: 32 concurrent streaming clients for 60 s against SmolLM2 on loopback
# (crates/nmk/tests/serve_load.rs). Writes the summary to bench/serve_load/results/<UTC date>.json.
#
# Usage: bench/serve_load/run.sh
# Env:   NMK_LOAD_REPORT   report path (default: bench/serve_load/results/<UTC date-time>.json)
#        NMK_LOAD_SECONDS  run length (default 60, the acceptance figure)
set -euo pipefail
cd "$(dirname "$0")/../.."
export NMK_LOAD_REPORT="${NMK_LOAD_REPORT:-$PWD/bench/serve_load/results/$(date -u +%Y-%m-%dT%H%MZ).json}"
cargo test --release -p nmk --test serve_load -- --nocapture
echo "report: $NMK_LOAD_REPORT"
