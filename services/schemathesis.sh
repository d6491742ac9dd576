#!/usr/bin/env bash
# Property-based API tests (schemathesis, PyPI) against each domain service's own OpenAPI
# document: generated requests, valid and invalid, must never get a 5xx, and every response
# must match the document (status, content type, schema). Runs the debug binaries on the
# machine's PostgreSQL and Redis, each service on a fresh database.
# Usage: services/schemathesis.sh [MAX_EXAMPLES]   (default 50 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."
max_examples=${1:-50}
pg=${PGURL:-postgres://postgres@127.0.0.1:5432}
redis=${REDIS_URL:-redis://127.0.0.1:6379}

command -v st >/dev/null || python3 -m pip install -q schemathesis
cargo build -q -p users -p inventory -p payments -p orders

scratch=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT

port=18600
declare -A ports
for s in inventory payments users orders; do
  port=$((port + 1)); ports[$s]=$port
  db="st_$s"
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
  PORT=$port DATABASE_URL="$pg/$db" REDIS_URL="$redis" CACHE_KEY_PREFIX="st:$s:$$:" RUST_LOG=warn \
    INVENTORY_URL="http://127.0.0.1:${ports[inventory]}" PAYMENTS_URL="http://127.0.0.1:${ports[payments]:-1}" \
    target/debug/$s >"$scratch/$s.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done

status=0
for s in users inventory payments orders; do
  echo "==> schemathesis: $s"
  # From the scratch directory: schemathesis keeps its example database in the cwd.
  (cd "$scratch" && st run "http://127.0.0.1:${ports[$s]}/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$max_examples" --seed 1) || { status=1; tail -n 20 "$scratch/$s.log"; }
done
exit $status
