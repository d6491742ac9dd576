#!/usr/bin/env bash
# devcluster load benchmark: builds the server and the load generator in release mode and
# prints start-up time, create throughput, watch fan-out, list latency and server RSS.
# Usage: bench/devcluster.sh [--objects 10000] [--watchers 10] [--concurrency 32]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p devcluster --bin devcluster --example loadtest
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
target/release/examples/loadtest --server target/release/devcluster "$@"
