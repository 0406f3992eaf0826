#!/usr/bin/env bash
# The entry-trap head measurement (issue 6, item 8): `nmk train-head` on SmolLM2-135M at the
# full generated size, layers 3, 9, 15, 21, 27 tried, the best on held-back training templates
# kept; held-out (unseen templates) and adversarial accuracy of the head, the lexical router and head+kernel disposal, false-trap rates and the shuffled-label placebo.
# The JSON report goes to $1 (default entry_head.json); the head to $2 (default
# entry_head.head). Usage: bench/entry_head/run.sh [OUT.json] [HEAD] [PER_CLASS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-entry_head.json}"
head="${2:-entry_head.head}"
per_class="${3:-40}"
seed="${4:-0}"
cargo build --release -p nmk >/dev/null
nmk=target/release/nmk
[ -n "${CARGO_TARGET_DIR:-}" ] && nmk="$CARGO_TARGET_DIR/release/nmk"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
NMK_HOME="$home" "$nmk" train-head --json --layers 3,9,15,21,27 --per-class "$per_class" \
  --held-out-per-class 12 --seed "$seed" --out "$head" > "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"
print(f"entry-trap head on {r['model']}: layer {r['layer']}, {r['train_prompts']} training prompts, "
      f"{r['epochs']} epochs, seed {r['seed']}, train accuracy {pct(r['train_accuracy'])}")
for l in r["layers_tried"]:
    print(f"  layer {l['layer']:>2}: validation {pct(l['validation_accuracy'])}  held-out {pct(l['held_out_accuracy'])}")
for name in ["held_out", "adversarial"]:
    s = r[name]
    print(f"{name:<12} n {s['n']:>3}: head {pct(s['head_accuracy'])}  lexical {pct(s['lexical_accuracy'])}"
          f"  head+kernel {pct(s['disposal_accuracy'])}  false traps head {pct(s['head_false_trap_rate'])}"
          f" lexical {pct(s['lexical_false_trap_rate'])} head+kernel {pct(s['disposal_false_trap_rate'])}"
          f"  chance {pct(s['chance_majority'])} (uniform {pct(s['chance_uniform'])})")
    print(f"{'':<12}        variant 'none' vetoes the fallback: head+kernel {pct(s['disposal_none_veto_accuracy'])}"
          f"  false traps {pct(s['disposal_none_veto_false_trap_rate'])}")
p = r["placebo"]
print(f"placebo (shuffled labels): held-out {pct(p['held_out_accuracy'])}  adversarial {pct(p['adversarial_accuracy'])}")
print(f"features {r['features_s']:.0f} s, total {r['total_s']:.0f} s")
PY
