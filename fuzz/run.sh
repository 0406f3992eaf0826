#!/usr/bin/env bash
# Fuzz the GGUF reader for SECONDS seconds (default 60) with cargo-fuzz (libFuzzer).
#
# There is no nightly toolchain here: cargo-fuzz needs nightly-only rustc flags
# (-Zsanitizer=address, sancov), which stable rustc accepts with RUSTC_BOOTSTRAP=1.
# Usage: fuzz/run.sh [SECONDS] [extra libFuzzer args...]
set -euo pipefail
secs="${1:-60}"
shift || true
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

corpus="$here/corpus/gguf_reader"
mkdir -p "$corpus"
cp -n "$here"/seeds/gguf_reader/* "$corpus"/ 2>/dev/null || true

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
cd "$root"
exec cargo fuzz run --fuzz-dir "$here" gguf_reader "$corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 "$@"
