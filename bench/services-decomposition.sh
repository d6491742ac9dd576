#!/usr/bin/env bash
# Decomposition benchmark for the domain services (issue 15): how much capacity a flash
# sale reserves when users, inventory, payments and orders scale each to its own load,
# against marketplace-monolith scaled as one unit.
#
# 1. Measure. Each shape (the four services; the monolith) runs in release on this machine's
#    PostgreSQL and Redis. For each request kind alone (get_user, get_item, get_order,
#    create_order) loadgen sends an open-loop rate; every process's CPU time (/proc utime +
#    stime) over the run divided by the requests sent gives C[process][kind], the CPU
#    seconds that one external request of that kind costs that process (peer calls
#    included: a create_order costs orders, inventory and payments). Peak RSS gives each
#    process's memory.
# 2. Model (bench/services-decomposition.py): a base load and a flash sale on orders
#    (creates and reads) with users' and the catalogue's reads at base; each deployment
#    runs ceil(load × C / (target utilization × CPU request)) replicas (at least
#    MIN_REPLICAS), the same rule for both shapes, so each replica stays at the same CPU
#    utilization and, by assumption, the same p99. Capacity reserved per sale =
#    replica-seconds × each replica's request (CPU and memory).
#
# Usage: bench/services-decomposition.sh   (RATE=300 STEP_SECONDS=15 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${RATE:-300}
secs=${STEP_SECONDS:-15}
pg=${PGURL:-postgres://postgres@127.0.0.1:5432}
redis=${REDIS_URL:-redis://127.0.0.1:6379}
out=target/services-bench
mkdir -p "$out"
cargo build -q --release -p users -p orders -p inventory -p payments -p marketplace-monolith -p loadgen
bin=target/release
tck=$(getconf CLK_TCK)

pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for db in users orders inventory payments mono; do
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS bench_d_$db WITH (FORCE)" -c "CREATE DATABASE bench_d_$db" >/dev/null
done
wait_ready() {
  for _ in $(seq 150); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "service on :$1 did not become ready" >&2; return 1
}
declare -A port=([inventory]=18421 [payments]=18422 [users]=18423 [orders]=18424 [monolith]=18425)
declare -A pid
start() { # NAME BINARY DB
  PORT=${port[$1]} DATABASE_URL="$pg/$3" REDIS_URL="$redis" CACHE_KEY_PREFIX="benchd:$1:$(date +%s%N):" \
    RUST_LOG=warn INVENTORY_URL="http://127.0.0.1:${port[inventory]}" PAYMENTS_URL="http://127.0.0.1:${port[payments]}" \
    "$bin/$2" >"$out/decomp-$1.log" 2>&1 &
  pid[$1]=$!; pids+=($!)
  wait_ready "${port[$1]}"
}
start inventory inventory bench_d_inventory
start payments payments bench_d_payments
start users users bench_d_users
start orders orders bench_d_orders
start monolith marketplace-monolith bench_d_mono

n_users=1000; n_items=100; n_orders=1000
seed() { # DB USERS_TABLE ITEMS_TABLE ORDERS_TABLE
  psql "$pg/$1" -qc "INSERT INTO $2 (email, name) SELECT 'u' || g || '@bench.test', 'User ' || g FROM generate_series(1, $n_users) g" \
    -c "INSERT INTO $3 (sku, name, price_minor, currency, stock) SELECT 'S' || g, 'Item ' || g, 100 + g, 'EUR', 1000000000 FROM generate_series(1, $n_items) g" \
    -c "INSERT INTO $4 (user_id, item_id, quantity, amount_minor, currency, status, step) SELECT 1 + g % $n_users, 1 + g % $n_items, 1, 100, 'EUR', 'confirmed', 'done' FROM generate_series(1, $n_orders) g" >/dev/null
}
psql "$pg/bench_d_users" -qc "INSERT INTO users (email, name) SELECT 'u' || g || '@bench.test', 'User ' || g FROM generate_series(1, $n_users) g"
psql "$pg/bench_d_inventory" -qc "INSERT INTO items (sku, name, price_minor, currency, stock) SELECT 'S' || g, 'Item ' || g, 100 + g, 'EUR', 1000000000 FROM generate_series(1, $n_items) g"
psql "$pg/bench_d_orders" -qc "INSERT INTO orders (user_id, item_id, quantity, amount_minor, currency, status, step) SELECT 1 + g % $n_users, 1 + g % $n_items, 1, 100, 'EUR', 'confirmed', 'done' FROM generate_series(1, $n_orders) g"
seed bench_d_mono users.users inventory.items orders.orders

cpu() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
rss_mib() { awk '/VmHWM/ {print $2 / 1024}' "/proc/$1/status"; }

measurements="$out/decomposition-measurements.tsv"
printf 'shape\tkind\tprocess\trequests\tcpu_s\tcpu_ms_per_req\tpeak_rss_mib\tp99_ms\n' >"$measurements"
for shape in decomposed monolith; do
  if [ $shape = decomposed ]; then procs="users inventory payments orders"; u=${port[users]}; i=${port[inventory]}; p=${port[payments]}; o=${port[orders]}
  else procs="monolith"; u=${port[monolith]}; i=$u; p=$u; o=$u; fi
  for kind in get_user get_item get_order create_order; do
    declare -A before=()
    for proc in $procs; do before[$proc]=$(cpu "${pid[$proc]}"); done
    "$bin/loadgen" --rate "$rate" --duration "$secs" --mix "$kind=1" \
      --users-url "http://127.0.0.1:$u" --inventory-url "http://127.0.0.1:$i" \
      --payments-url "http://127.0.0.1:$p" --orders-url "http://127.0.0.1:$o" \
      --seed-users 0 --seed-items 0 --seed-orders 0 \
      --user-ids "1-$n_users" --item-ids "1-$n_items" --order-ids "1-$n_orders" \
      --json "$out/decomp-$shape-$kind.json" >"$out/decomp-$shape-$kind.txt"
    sent=$(python3 -c "import json; r = json.load(open('$out/decomp-$shape-$kind.json')); print(r['total']['sent'])")
    p99=$(python3 -c "import json; r = json.load(open('$out/decomp-$shape-$kind.json')); print(r['total']['p99_ms'])")
    for proc in $procs; do
      after=$(cpu "${pid[$proc]}")
      python3 -c "
b, a, n = ${before[$proc]}, $after, $sent
print(f'$shape\t$kind\t$proc\t{n}\t{a - b:.2f}\t{1000 * (a - b) / max(n, 1):.4f}\t$(rss_mib "${pid[$proc]}")\t$p99')" >>"$measurements"
    done
    unset before
  done
done
column -t -s $'\t' "$measurements"
python3 bench/services-decomposition.py "$measurements"
