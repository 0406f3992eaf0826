#!/usr/bin/env bash
# The recurring-workload benchmark (issue 6): the same 1,000 requests (four task families a
# learned primitive can own, one control family no primitive owns) served through the kernel
# twice in a fresh nmk home — first with nothing learned (the model lane answers everything),
# then after `nmk learn` had Qwen2.5-Coder-0.5B write the four programs and the hold-out gate
# admitted them. Prints both tables and the before/after totals; the JSON reports go to $1
# (default bench-recurring/). Usage: bench/recurring/run.sh [OUT_DIR] [REQUESTS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-bench-recurring}"
requests="${2:-1000}"
seed="${3:-0}"
mkdir -p "$out"
cargo build --release -p nmk >/dev/null
nmk=target/release/nmk
[ -n "${CARGO_TARGET_DIR:-}" ] && nmk="$CARGO_TARGET_DIR/release/nmk"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
gaps=(examples/gaps/count_vowels.toml examples/gaps/is_palindrome.toml
      examples/gaps/reverse_words.toml examples/gaps/sum_of_digits.toml)

"$nmk" --home "$home" bench --recurring --requests "$requests" --recurring-seed "$seed" --json > "$out/before.json"
"$nmk" --home "$home" learn --escalate --json "${gaps[@]}" > "$out/learn.json" || true
"$nmk" --home "$home" bench --recurring --requests "$requests" --recurring-seed "$seed" --json > "$out/after.json"

python3 - "$out" <<'PY'
import json, sys, os
d = sys.argv[1]
learn = json.load(open(os.path.join(d, "learn.json")))
for phase in ("before", "after"):
    r = json.load(open(os.path.join(d, f"{phase}.json")))
    print(f"\n== {phase}: learned routes {r['learned_routes']}, ledger verified {r['ledger_verified']}")
    print(f"{'family':<20}{'n':>6}{'by prim':>9}{'accuracy [95% CI]':>24}{'gen tok':>9}{'p50 ms':>9}{'p90 ms':>9}")
    rows = list(r["families"].items()) + [("all", r["overall"])]
    for name, s in rows:
        a = s["accuracy"]; lo, hi = a.get("ci95", [0, 0])
        print(f"{name:<20}{s['requests']:>6}{s['answered_by_primitive']:>9}"
              f"{a.get('p', 0):>10.3f} [{lo:.3f}, {hi:.3f}]{s['generated_tokens']:>9}"
              f"{s['latency_ms']['median']:>9.1f}{s['latency_ms']['p90']:>9.1f}")
    print(f"primitive answers used {r['overall']['primitive_generated_tokens']} model tokens; wall {r['wall_s']:.0f} s")
PY
