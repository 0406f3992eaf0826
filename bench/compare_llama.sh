#!/usr/bin/env bash
# Speed of nmk against llama.cpp on the same GGUF, prompt ids and thread count, in one script.
# Usage: bench/compare_llama.sh [MODEL] [THREADS]   (defaults: smollm2-135m-instruct, 1)
# Needs the peer: bench/llama_peer/setup.sh (run automatically if missing).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-smollm2-135m-instruct}"
THREADS="${2:-1}"
VENV="${NMK_LLAMA_VENV:-$REPO/.venv-llama}"
"$REPO/bench/llama_peer/setup.sh" >/dev/null
cd "$REPO"
cargo build --release -q -p nmk
NMK="${CARGO_TARGET_DIR:-$REPO/target}/release/nmk"
PATH_GGUF="$("$NMK" model pull "$MODEL" --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["path"])')"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# Alternate the two engines so slow phases of a noisy machine hit both.
"$NMK" bench --model "$MODEL" --thread-counts "$THREADS" --json > "$TMP/nmk.json"
"$VENV/bin/python" "$REPO/bench/llama_peer/decode_bench.py" "$PATH_GGUF" "$TMP/nmk.json" "$THREADS" > "$TMP/llama.json"
"$VENV/bin/python" - "$TMP/nmk.json" "$TMP/llama.json" <<'PY'
import json, sys
nmk = json.load(open(sys.argv[1])); peer = json.load(open(sys.argv[2]))
ours = nmk["results"][0]
print(f"model {nmk['model']}, {nmk['prompt_tokens']} prompt tokens, {nmk['gen_tokens']} decoded, threads {ours['threads']}, median of {nmk['runs']}")
for k, label in [("prefill_tokens_per_s", "prefill"), ("decode_tokens_per_s", "decode")]:
    print(f"{label:>8}: nmk {ours[k]:8.1f} tok/s   llama.cpp {peer[k]:8.1f} tok/s   ratio {ours[k] / peer[k]:.2f}x")
PY
