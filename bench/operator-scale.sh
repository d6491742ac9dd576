#!/usr/bin/env bash
# The operator at scale (DESIGN.md: 10,000 MarketplaceServices to steady state ≤ 30 s, operator
# RSS ≤ 150 MB, metric sample → replica patch p99 ≤ 1 s). Builds in release mode, starts the
# devcluster binary with --no-workloads (an API server only: no Pods, so Deployments never
# become ready and "steady state" means the children applied and the status written), then
# runs operator/examples/operator_scale.rs against it: the driver creates the services and
# measures; the operator runs in a process of its own, so its RSS is the controller's alone.
# Usage: bench/operator-scale.sh [--services 10000] [--namespaces 10] [--concurrency 32]
#                                [--poll-seconds 15] [--create-concurrency 64]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p devcluster --bin devcluster
cargo build -q --release -p marketplace-operator --example operator_scale
dir=$(mktemp -d)
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill -INT "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
target/release/devcluster --addr 127.0.0.1:0 --kubeconfig "$dir/kubeconfig" --no-workloads \
    >"$dir/devcluster.out" 2>"$dir/devcluster.err" &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^ready ' "$dir/devcluster.out" && break
    sleep 0.1
done
if ! grep -q '^ready ' "$dir/devcluster.out"; then
    echo "devcluster did not start:" >&2
    cat "$dir/devcluster.err" >&2
    exit 1
fi
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -h | awk '/^Mem:/ {print $2}') RAM, $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "API server: $(head -1 "$dir/devcluster.out" | cut -d' ' -f2) (devcluster binary, pid $server_pid, --no-workloads)"
# System-wide TCP counters: a burst of connections beyond the server's accept backlog shows up
# as listen-queue overflows and SYN retransmissions (1 s, 3 s, 7 s, … of client-side delay).
tcp_counter() {
    awk -v want="$1" '/^TcpExt:/ { if (!seen) { for (i = 2; i <= NF; i++) if ($i == want) col = i; seen = 1 } else print $col }' /proc/net/netstat
}
overflows=$(tcp_counter ListenOverflows)
retransmits=$(tcp_counter TCPSynRetrans)
status=0
target/release/examples/operator_scale --kubeconfig "$dir/kubeconfig" --server-pid "$server_pid" "$@" || status=$?
echo "TCP during the run (system-wide): $(($(tcp_counter ListenOverflows) - overflows)) listen-queue overflows, $(($(tcp_counter TCPSynRetrans) - retransmits)) SYN retransmissions"
exit "$status"
