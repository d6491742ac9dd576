#!/usr/bin/env bash
# CacheTier prefix flush (DESIGN.md: a prefix flush of 1,000,000 keys among 2,000,000: time, and
# Redis's p99 command latency during it, against a naive KEYS + DEL). Starts a private
# redis-server (no persistence) so the machine's Redis is left alone, then runs
# operator/examples/cache_flush.rs, which measures both ways on the same data with a PING
# probe every millisecond on a connection of its own.
# Usage: bench/cache-flush.sh [--keys 1000000] [--port 6390] [--batch 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
port=6390
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[$i]}" == "--port" ]] && port=${args[$((i + 1))]}
done
cargo build -q --release -p marketplace-operator --example cache_flush
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -h | awk '/^Mem:/ {print $2}') RAM; $(redis-server --version | cut -d' ' -f3); $(date -u +%Y-%m-%dT%H:%MZ)"
target/release/examples/cache_flush --port "$port" "$@"
