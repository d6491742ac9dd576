#!/usr/bin/env python3
"""A hindsight bound on the NASA cost goal (issue 4).

A policy that sizes each minute at a quantile p of the next minute's load *given the previous
minute's load and the hour of day*, with the quantiles taken from the whole trace (hindsight:
no causal policy knows them), is charged 60 s per replica-minute and 45 s under capacity for
each minute whose load exceeds its replicas' saturation capacity (a replica added after the
spike is seen serves at best ~45 s later: scrape, poll, 30 s start-up). Sweeping p traces the
cost of reaching a given under-capacity. Figures are ratios to the HPA's under-capacity and the
oracle's replica-seconds from `simulate` (bench/RESULTS.md), same model (peak needs 40 replicas
at 70%).

Usage: python3 bench/feasibility.py   (from the workspace root)
"""
import collections
import csv
import math

# (trace, HPA under-capacity s, oracle replica-s) from `simulate --startup-seconds 30`.
CASES = {
    "nasa 1995-07": ("traces/nasa_http_1995-07_60s.csv", 21765, 13080300),
    "nasa 1995-08": ("traces/nasa_http_1995-08_60s.csv", 40035, 21025680),
}

for name, (path, hpa_uc, oracle_rs) in CASES.items():
    with open(path) as f:
        load = [float(row[1]) for row in list(csv.reader(f))[1:]]
    target = max(load) / 40
    capacity = target / 0.7

    def key(m):
        return (min(int(load[m - 1] / capacity * 2), 200), (m // 60) % 24)

    buckets = collections.defaultdict(list)
    for m in range(1, len(load)):
        buckets[key(m)].append(load[m] / capacity)
    for b in buckets.values():
        b.sort()
    print(name)
    for p in (0.97, 0.975, 0.98, 0.985, 0.99):
        cost = under = 0
        for m in range(1, len(load)):
            b = buckets[key(m)]
            replicas = max(1, math.ceil(b[min(len(b) - 1, int(p * len(b)))] - 1e-9))
            cost += replicas * 60
            under += 45 if load[m] > replicas * capacity else 0
        print(f"  p={p}: under-capacity {under / hpa_uc:.2f} x hpa, cost {cost / oracle_rs:.3f} x oracle")
