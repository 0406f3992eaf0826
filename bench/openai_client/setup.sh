#!/usr/bin/env bash
# Create the venv holding the official `openai` Python client, used by the `nmk serve`
# acceptance test (crates/nmk/tests/serve_openai.rs) to talk to the server as a real client would.
#
# Usage: bench/openai_client/setup.sh
# Env:   NMK_OPENAI_VENV  venv directory (default: <repo>/.venv-openai)
#        NMK_OPENAI_PY    python interpreter used to create the venv (default: python3)
# Idempotent: exits early when `import openai` already works in the venv at the pinned version.
set -euo pipefail

VERSION="3.57.0"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${NMK_OPENAI_VENV:-$REPO/.venv-openai}"
PY="${NMK_OPENAI_PY:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import openai, sys; sys.exit(0 if openai.__version__ == '$VERSION' else 1)" 2>/dev/null; then
    echo "openai $VERSION already installed in $VENV"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "openai==$VERSION"
"$VENV/bin/python" -c "import openai; print('openai', openai.__version__, 'installed in', '$VENV')"
