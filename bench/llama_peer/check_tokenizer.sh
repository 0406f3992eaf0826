#!/usr/bin/env bash
# Re-check the tokenizer fixtures against the real llama.cpp.
#
# Regenerates crates/nmk-neural/tests/data/tokenizer/expected-<model>.json (SmolLM2, Qwen2.5) and
# expected-vocab-<name>.json (llama.cpp's vocab-only test GGUFs from the llama-cpp-python sdist)
# into a temporary directory with tokenize.py and diffs them against the committed fixtures. Exit 0 when equal,
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

VOCAB_DIR="$CACHE/llama-cpp-python-0.3.36-vocab"
VOCABS=(llama-bpe llama-spm qwen2 gpt-2 starcoder refact deepseek-coder falcon mpt command-r)
for v in "${VOCABS[@]}"; do
    FILES[vocab-$v]="$(basename "$VOCAB_DIR")/ggml-vocab-$v.gguf"
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The vocab-only GGUFs: extract them from the pinned sdist when the cache lacks them (the
# tokenizer_llama_vocabs test does the same).
if ! ls "$VOCAB_DIR"/ggml-vocab-*.gguf >/dev/null 2>&1 || [ "$(ls "$VOCAB_DIR"/ggml-vocab-*.gguf | wc -l)" -lt ${#VOCABS[@]} ]; then
    mkdir -p "$VOCAB_DIR"
    "$VENV/bin/python" - "$VOCAB_DIR" "${VOCABS[@]}" <<'PY'
import hashlib, io, os, sys, tarfile, urllib.request
url = "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz"
sha = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
data = urllib.request.urlopen(url).read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit("sdist SHA-256 mismatch")
out, names = sys.argv[1], {f"ggml-vocab-{v}.gguf" for v in sys.argv[2:]}
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
    for m in tar.getmembers():
        base = os.path.basename(m.name)
        if m.isfile() and base in names and "/models/" in m.name:
            with open(os.path.join(out, base), "wb") as f:
                f.write(tar.extractfile(m).read())
PY
fi

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
