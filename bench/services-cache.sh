#!/usr/bin/env bash
# Cache benchmark for the domain services (issue 15): users and orders reads with Redis
# cache-aside against the same services with no cache (REDIS_URL unset), on this machine's
# PostgreSQL and Redis. Each mode is stepped through open-loop arrival rates (loadgen,
# Poisson arrivals, latency from intended send time); a mode's capacity is the highest rate
# whose p99 stays within the SLO with < 0.1% errors. Database work per request is read from
# PostgreSQL itself (pg_stat_database: transactions on the services' databases; every read
# here is one autocommit statement) and from the services' cache_loads_total.
#
# Usage: bench/services-cache.sh [SLO_MS] [RATES...]
#   SLO_MS defaults to 10; RATES to "500 1000 1500 2000 3000 4000 5000 6000 8000 10000".
# Environment: STEP_SECONDS (10), WARMUP_SECONDS (3), N_USERS (1000), N_ORDERS (1000),
#   PGURL (postgres://postgres@127.0.0.1:5432), REDIS_URL (redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."

slo_ms=${1:-10}
shift || true
rates=${*:-"500 1000 1500 2000 3000 4000 5000 6000 8000 10000"}
step=${STEP_SECONDS:-10}
warmup=${WARMUP_SECONDS:-3}
n_users=${N_USERS:-1000}
n_orders=${N_ORDERS:-1000}
pg=${PGURL:-postgres://postgres@127.0.0.1:5432}
redis=${REDIS_URL:-redis://127.0.0.1:6379}
out=target/services-bench
mkdir -p "$out"

cargo build -q --release -p users -p orders -p inventory -p payments -p loadgen
bin=target/release

pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

psql_q() { psql "$pg/$1" -qAtc "$2"; }
for db in users orders inventory payments; do
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS bench_$db WITH (FORCE)" -c "CREATE DATABASE bench_$db" >/dev/null
done

wait_ready() {
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "service on :$1 did not become ready" >&2; return 1
}

# start NAME PORT [REDIS]: one service in the background, logs in $out.
start() {
  local name=$1 port=$2 cache=${3:-}
  env -u REDIS_URL PORT="$port" DATABASE_URL="$pg/bench_$name" ${cache:+REDIS_URL=$cache} \
    CACHE_KEY_PREFIX="bench:$name:$(date +%s%N):" RUST_LOG=warn \
    INVENTORY_URL=http://127.0.0.1:18411 PAYMENTS_URL=http://127.0.0.1:18412 \
    "$bin/$name" >"$out/$name.log" 2>&1 &
  pids+=($!)
  wait_ready "$port"
}

start inventory 18411
start payments 18412
start users 18413
start orders 18414

# Seed straight into PostgreSQL: the benchmark is about reads.
psql_q bench_users "INSERT INTO users (email, name) SELECT 'u' || g || '@bench.test', 'User ' || g FROM generate_series(1, $n_users) g"
psql_q bench_orders "INSERT INTO orders (user_id, item_id, quantity, amount_minor, currency, status, step)
  SELECT 1 + g % $n_users, 1, 1, 100, 'EUR', 'confirmed', 'done' FROM generate_series(1, $n_orders) g"

xacts() { psql_q postgres "SELECT COALESCE(SUM(xact_commit + xact_rollback), 0) FROM pg_stat_database WHERE datname IN ('bench_users', 'bench_orders')"; }
loads() { # cache_loads_total summed over users and orders
  local n=0
  for port in 18413 18414; do
    v=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^cache_loads_total/ {print $2}')
    n=$(python3 -c "print(int(float('${v:-0}')) + $n)")
  done
  echo "$n"
}

results="$out/cache-results.tsv"
printf 'mode\trate\tachieved\tp50_ms\tp99_ms\terrors\tdb_xacts_per_req\tloads_per_req\n' >"$results"

restart_readers() { # restart users and orders with or without Redis
  local cache=$1
  for i in 2 3; do kill "${pids[$i]}" 2>/dev/null || true; done
  wait "${pids[2]}" "${pids[3]}" 2>/dev/null || true
  pids=("${pids[0]}" "${pids[1]}")
  start users 18413 "$cache"
  start orders 18414 "$cache"
}

for mode in cached uncached; do
  if [ "$mode" = cached ]; then restart_readers "$redis"; else restart_readers ""; fi
  for rate in $rates; do
    x0=$(xacts); l0=$(loads)
    "$bin/loadgen" --rate "$rate" --duration "$((step + warmup))" --warmup "$warmup" \
      --users-url http://127.0.0.1:18413 --orders-url http://127.0.0.1:18414 \
      --inventory-url http://127.0.0.1:18411 --payments-url http://127.0.0.1:18412 \
      --mix get_user=50,get_order=50 --seed-users 0 --seed-items 0 --seed-orders 0 \
      --user-ids "1-$n_users" --order-ids "1-$n_orders" --timeout 2 \
      --json "$out/$mode-$rate.json" >"$out/$mode-$rate.txt"
    x1=$(xacts); l1=$(loads)
    python3 - "$out/$mode-$rate.json" "$mode" "$rate" "$((x1 - x0))" "$((l1 - l0))" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["total"]
sent = t["sent"] + r["dropped"]
# Requests in the warm-up window also reached the database: divide by all of them.
all_requests = sent * (r["duration_s"] / (r["duration_s"] - r["warmup_s"]))
errors = (t["client_errors"] + t["server_errors"] + t["transport_errors"] + r["dropped"]) / max(sent, 1)
print(f'{sys.argv[2]}\t{sys.argv[3]}\t{r["achieved_rps"]:.0f}\t{t["p50_ms"]:.2f}\t{t["p99_ms"]:.2f}\t{errors:.4f}\t'
      f'{int(sys.argv[4]) / max(all_requests, 1):.3f}\t{int(sys.argv[5]) / max(all_requests, 1):.3f}')
PY
    tail -n 1 "$results"
    p99=$(tail -n 1 "$results" | cut -f5); err=$(tail -n 1 "$results" | cut -f6)
    # Past the SLO: higher rates only queue more.
    python3 -c "import sys; sys.exit(0 if $p99 <= $slo_ms * 3 and $err < 0.05 else 1)" || break
  done
done

python3 - "$results" "$slo_ms" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
slo = float(sys.argv[2])
def capacity(mode):
    ok = [r for r in rows if r["mode"] == mode and float(r["p99_ms"]) <= slo and float(r["errors"]) < 0.001]
    return max(ok, key=lambda r: float(r["rate"])) if ok else None
c, u = capacity("cached"), capacity("uncached")
print(f"SLO p99 <= {slo} ms")
for name, r in (("cached", c), ("uncached", u)):
    if r:
        print(f"{name}: {r['rate']} req/s offered, {r['achieved']} achieved, p99 {r['p99_ms']} ms, "
              f"{r['db_xacts_per_req']} db transactions/request, {r['loads_per_req']} cache loads/request")
    else:
        print(f"{name}: no rate met the SLO")
if c and u:
    print(f"throughput at p99 <= {slo} ms: {float(c['achieved']) / float(u['achieved']):.2f} x uncached")
    qu, qc = float(u["db_xacts_per_req"]), float(c["db_xacts_per_req"])
    if qu > 0:
        print(f"database transactions per request: {qc:.3f} vs {qu:.3f} ({100 * (1 - qc / qu):.1f}% fewer)")
PY
