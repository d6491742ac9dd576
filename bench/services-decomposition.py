#!/usr/bin/env python3
"""The capacity model of bench/services-decomposition.sh, from its measurements TSV.

Every deployment is scaled by one rule: replicas = max(MIN_REPLICAS, ceil(cores needed /
(TARGET_UTILIZATION × CPU_REQUEST))), where cores needed = Σ_kind load[kind] × C[kind], C
measured (CPU seconds one external request of a kind costs that process). A replica's
memory request is its measured peak RSS × 1.25, rounded up to 16 MiB. Capacity reserved
over a window = Σ replicas × window × request.
"""
import csv
import math
import sys

CPU_REQUEST = 0.5          # cores per replica, every deployment
TARGET_UTILIZATION = 0.7   # the MarketplaceService default target
MIN_REPLICAS = 2           # one replica is no availability
SALE_SECONDS = 30 * 60
BASE = {"get_user": 200, "get_item": 150, "get_order": 100, "create_order": 20}
# The sale: order creation ×15 and order reads ×10; users and catalogue reads stay at base.
SALE = {"get_user": 200, "get_item": 150, "get_order": 1000, "create_order": 300}


def main(path, scales=(1, 10, 100)):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    cost, rss = {}, {}
    for r in rows:
        key = (r["shape"], r["process"])
        cost.setdefault(key, {})[r["kind"]] = float(r["cpu_ms_per_req"]) / 1000
        rss[key] = max(rss.get(key, 0.0), float(r["peak_rss_mib"]))

    def mem_request(key):
        return math.ceil(rss[key] * 1.25 / 16) * 16

    def plan(shape, load):
        out = {}
        for (s, proc), c in cost.items():
            if s != shape:
                continue
            cores = sum(load[k] * c.get(k, 0.0) for k in load)
            n = max(MIN_REPLICAS, math.ceil(cores / (TARGET_UTILIZATION * CPU_REQUEST)))
            out[proc] = (cores, n, mem_request((s, proc)))
        return out

    print(f"model: CPU request {CPU_REQUEST} core/replica, target utilization {TARGET_UTILIZATION}, "
          f"min {MIN_REPLICAS} replicas, sale {SALE_SECONDS // 60} min")
    print(f"base load {BASE}\nsale load {SALE} (both scaled below)\n")
    print("CPU ms per external request, by process (measured):")
    kinds = list(BASE)
    print("  " + "process".ljust(22) + "".join(k.rjust(14) for k in kinds) + "peak RSS MiB".rjust(14))
    for (shape, proc), c in sorted(cost.items()):
        print("  " + f"{shape}/{proc}".ljust(22) + "".join(f"{1000 * c.get(k, 0):14.3f}" for k in kinds)
              + f"{rss[(shape, proc)]:14.1f}")
    for scale in scales:
        base = {k: v * scale for k, v in BASE.items()}
        sale = {k: v * scale for k, v in SALE.items()}
        print(f"\n=== loads × {scale} ===")
        totals = {}
        for shape in ("decomposed", "monolith"):
            for phase, load in (("base", base), ("sale", sale)):
                p = plan(shape, load)
                replicas = sum(n for _, n, _ in p.values())
                core_s = sum(n * CPU_REQUEST * SALE_SECONDS for _, n, _ in p.values())
                gib_s = sum(n * m / 1024 * SALE_SECONDS for _, n, m in p.values())
                busy = sum(c for c, _, _ in p.values())
                totals[(shape, phase)] = (core_s, gib_s)
                detail = ", ".join(f"{proc} {n}×{m} MiB" for proc, (_, n, m) in sorted(p.items()))
                print(f"{shape} {phase}: {busy:.2f} cores busy, {replicas} replicas ({detail}); "
                      f"{core_s:,.0f} core-s, {gib_s:,.0f} GiB-s")
        for label, i in (("CPU", 0), ("memory", 1)):
            d_sale = totals[("decomposed", "sale")][i]
            m_sale = totals[("monolith", "sale")][i]
            d_inc = d_sale - totals[("decomposed", "base")][i]
            m_inc = m_sale - totals[("monolith", "base")][i]
            inc = f"{100 * (d_inc / m_inc - 1):+.1f}%" if m_inc else "n/a"
            print(f"{label}: reserved during the sale, decomposed vs monolith {d_sale:,.0f} vs {m_sale:,.0f} "
                  f"({100 * (d_sale / m_sale - 1):+.1f}%); added for the sale {d_inc:,.0f} vs {m_inc:,.0f} ({inc})")


if __name__ == "__main__":
    main(sys.argv[1])
