#!/usr/bin/env bash
# Escalation on the real Qwen2.5-Coder-0.5B (issue 6) with its risk–coverage: every gap file
# under examples/gaps (the five examples, the harder and wider sets, the unsound one) climbs
# the ladder (greedy → k diverse samples → repairs → research, off here → abstain) in a fresh
# nmk home. Each program the ladder admitted is then judged again on 2,000 FRESH instances
# (seed + 1000, a seed the ladder never saw) through `nmk gate`: an answer that fails there is
# a wrong answer the ladder let through (risk). Coverage = answered / sound gaps.
# Usage: bench/escalation/run.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-bench-escalation}"
mkdir -p "$out/programs"
cargo build --release -p nmk >/dev/null
nmk=target/release/nmk
[ -n "${CARGO_TARGET_DIR:-}" ] && nmk="$CARGO_TARGET_DIR/release/nmk"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
mapfile -t gaps < <(ls examples/gaps/*.toml examples/gaps/harder/*.toml examples/gaps/wider/*.toml examples/gaps/bad/*.toml)

"$nmk" --home "$home" learn --escalate --json "${gaps[@]}" > "$out/learn.json" || true

python3 - "$out" "$nmk" "$home" <<'PY'
import json, os, subprocess, sys, tomllib
d, nmk, home = sys.argv[1:4]
learn = json.load(open(os.path.join(d, "learn.json")))
rows, per_tier = [], {}
answered = wrong = abstained = unsound = 0
for r in learn["results"]:
    gap = r["gap"]
    seed = tomllib.load(open(gap, "rb")).get("seed", 0)
    if r.get("unsound"):
        unsound += 1
        rows.append((r["entry"], "unsound gap stopped", "-", r["tokens"]))
        continue
    if not r["solved"]:
        abstained += 1
        rows.append((r["entry"], "abstained", "-", r["tokens"]))
        continue
    answered += 1
    per_tier[r["tier"]] = per_tier.get(r["tier"], 0) + 1
    prog = os.path.join(d, "programs", r["entry"] + ".py")
    open(prog, "w").write(r["code"])
    fresh = subprocess.run([nmk, "--home", home, "gate", gap, prog, "--seed", str(seed + 1000),
                            "--n", "2000", "--json"], capture_output=True, text=True)
    ok = fresh.returncode == 0 and json.loads(fresh.stdout).get("admitted") is True
    if not ok:
        wrong += 1
    rows.append((r["entry"], f"tier {r['tier']}", "pass" if ok else "FAIL", r["tokens"]))
sound = answered + abstained
print(f"{'gap':<20}{'ladder':<22}{'fresh 2000':<12}{'tokens':>8}")
for row in rows:
    print(f"{row[0]:<20}{row[1]:<22}{row[2]:<12}{row[3]:>8}")
print("solved per rung:", {f"tier {k}": v for k, v in sorted(per_tier.items())})
cov = answered / sound if sound else 0.0
risk = wrong / answered if answered else 0.0
print(f"sound gaps {sound}: answered {answered} (coverage {cov:.3f}), abstained {abstained}; "
      f"wrong on fresh instances {wrong} (risk {risk:.3f}); unsound gaps stopped {unsound}")
json.dump({"rows": rows, "per_tier": per_tier, "answered": answered, "abstained": abstained,
           "wrong": wrong, "unsound": unsound, "coverage": cov, "risk": risk},
          open(os.path.join(d, "risk_coverage.json"), "w"), indent=1)
PY
