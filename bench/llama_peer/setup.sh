#!/usr/bin/env bash
# Create the llama.cpp peer venv: llama-cpp-python built from source with -march=native.
#
# Usage: bench/llama_peer/setup.sh
# Env:   NMK_LLAMA_VENV   venv directory (default: <repo>/.venv-llama)
#        NMK_LLAMA_PY     python interpreter used to create the venv (default: python3)
# Idempotent: exits early when `import llama_cpp` already works in the venv at the pinned version.
set -euo pipefail

VERSION="0.3.36"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${NMK_LLAMA_VENV:-$REPO/.venv-llama}"
PY="${NMK_LLAMA_PY:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.__version__ == '$VERSION' else 1)" 2>/dev/null; then
    echo "llama-cpp-python $VERSION already installed in $VENV"
    exit 0
fi

if ! command -v cmake >/dev/null 2>&1; then
    echo "cmake not found; installing it with apt-get" >&2
    if [ "$(id -u)" = "0" ]; then
        apt-get install -y cmake || { apt-get update && apt-get install -y cmake; }
    else
        sudo apt-get install -y cmake || { sudo apt-get update && sudo apt-get install -y cmake; }
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip >/dev/null
# From source (PyPI only has the sdist for this platform); native CPU features for a fair peer.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" \
    "$VENV/bin/python" -m pip install --no-binary llama-cpp-python "llama-cpp-python==$VERSION"
"$VENV/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__, 'installed in', '$VENV')"
