#!/usr/bin/env bash
# Replays every shared trace through the default policy and the baselines (30 s start-up)
# and prints the figures: the full table per trace, then policy vs hpa vs oracle.
# Usage: bench/simulate.sh [TRACE_DIR] [OUT_DIR]   (run from the workspace root)
set -euo pipefail
traces=${1:-../shared/traces}
out=${2:-target/simulate-bench}
mkdir -p "$out"
cargo build -q --release -p marketplace-operator
bin=target/release/marketplace-operator
echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -sr)"
for t in "$traces"/*.csv; do
  n=$(basename "$t" .csv)
  start=$(date +%s.%N)
  "$bin" simulate --trace "$t" --startup-seconds 30 --json "$out/$n.json" --report "$out/$n.html" 2>/dev/null
  echo "(replayed in $(echo "$(date +%s.%N) - $start" | bc) s; report $out/$n.html)"
  echo
done
python3 - "$out"/*.json <<'PY'
import json, sys
print(f"{'trace':<28} {'uc/hpa':>7} {'cost/hpa':>9} {'cost/orc':>9} {'hpa/orc':>8} {'rs/burst/hpa':>13}  goals")
for path in sys.argv[1:]:
    d = json.load(open(path)); by = {p["name"]: p for p in d["policies"]}
    h, o, p = by["hpa"], by["oracle"], by["policy"]
    uc = p["under_capacity_seconds"] / max(h["under_capacity_seconds"], 1e-9)
    ch = p["replica_seconds"] / h["replica_seconds"]
    co = p["replica_seconds"] / o["replica_seconds"]
    rb = p["replica_seconds_per_burst"] / h["replica_seconds_per_burst"] if h["replica_seconds_per_burst"] else float("nan")
    ok = [("uc<=0.5", uc <= 0.5), ("cost<=hpa", ch <= 1.0), ("cost<=1.15orc", co <= 1.15)]
    print(f"{d['trace']['name']:<28} {uc:7.2f} {ch:9.3f} {co:9.3f} {h['replica_seconds']/o['replica_seconds']:8.3f} {rb:13.2f}  "
          + " ".join(f"{k}:{'ok' if v else 'MISS'}" for k, v in ok))
PY
