#!/usr/bin/env bash
# The fact-loop A/B (issue 6): a generated count-then-add task set on SmolLM2-135M, answered
# bare, always grounded, by the governed fact loop grounding by re-prefill, and by the governed
# loop grounding mid-stream. Prints the table; the JSON report goes to $1 (default
# fact_loop.json). Usage: bench/fact_loop/run.sh [OUT.json] [ITEMS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-fact_loop.json}"
items="${2:-200}"
seed="${3:-0}"
cargo build --release -p nmk >/dev/null
nmk=target/release/nmk
[ -n "${CARGO_TARGET_DIR:-}" ] && nmk="$CARGO_TARGET_DIR/release/nmk"
"$nmk" bench --fact-loop --fact-items "$items" --fact-seed "$seed" --json > "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["fact_loop"]
print(f"fact-loop A/B: {r['items']} items, seed {r['seed']}")
for arm, a in r["arms"].items():
    acc = a["accuracy"]
    lo, hi = acc.get("ci95", [0, 0])
    print(f"{arm:<20} acc {acc.get('p', 0):.3f} [{lo:.3f}, {hi:.3f}]  easy {a['easy'].get('p', 0):.3f}"
          f"  hard {a['hard'].get('p', 0):.3f}  gens {a['mean_generations']:.2f}"
          f"  tokens {a['mean_generated_tokens']:.1f}  prefill {a['mean_prefilled_positions']:.1f}")
PY
