#!/usr/bin/env bash
# Re-check the tokenizer fixtures against the real llama.cpp.
#
# Regenerates crates/nmk-neural/tests/data/tokenizer/expected-<model>.json into a temporary
# directory with tokenize.py and diffs them against the committed fixtures. Exit 0 when equal,
# 1 when llama.cpp now disagrees with a fixture (the diff is printed), 2 when the peer is missing.
#
# Usage: bench/llama_peer/check_tokenizer.sh [--update]
#   --update   write the regenerated fixtures over the committed ones instead of diffing
# Env:   NMK_LLAMA_VENV  the peer venv (default <repo>/.venv-llama; make it with setup.sh)
#        NMK_MODEL_CACHE where the GGUFs are (default ~/.cache/nmk/models, as nmk uses)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${NMK_LLAMA_VENV:-$REPO/.venv-llama}"
DATA="$REPO/crates/nmk-neural/tests/data/tokenizer"
CACHE="${NMK_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nmk/models}"
UPDATE=0
[ "${1:-}" = "--update" ] && UPDATE=1

if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "llama.cpp peer not installed in $VENV (run bench/llama_peer/setup.sh)" >&2
    exit 2
fi

# model name (as in nmk's registry) -> file name in the cache
declare -A FILES=(
    [smollm2-135m-instruct]="SmolLM2-135M-Instruct.Q4_1.gguf"
    [qwen2.5-coder-0.5b-instruct]="Qwen2.5-Coder-0.5B-Instruct.gguf"
)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
status=0
for name in "${!FILES[@]}"; do
    gguf="$CACHE/${FILES[$name]}"
    if ! [ -f "$gguf" ]; then
        echo "missing $gguf (run the tokenizer tests once, or nmk's model fetch, to download it)" >&2
        exit 2
    fi
    out="$TMP/expected-$name.json"
    "$VENV/bin/python" "$REPO/bench/llama_peer/tokenize.py" "$gguf" "$DATA/corpus.jsonl" --out "$out"
    if [ "$UPDATE" = 1 ]; then
        cp "$out" "$DATA/expected-$name.json"
        echo "updated $DATA/expected-$name.json"
    elif diff -u "$DATA/expected-$name.json" "$out"; then
        echo "ok: llama.cpp agrees with expected-$name.json"
    else
        echo "MISMATCH: llama.cpp disagrees with expected-$name.json" >&2
        status=1
    fi
done
exit $status
