"""Benchmark swedge.metrics.evaluate at Market-1501 size against the per-query reference.

Features are random +-1 vectors (all norms equal), so cosine similarities take only a few dozen values per
row: many exact ties, the hard case for the tie rule. Pids follow Market: 751 identities, 6 cameras,
gallery pid 0 = distractors. Writes benchmarks/results/metrics.json.

    PYTHONPATH=. python benchmarks/bench_metrics.py [--queries 3368 --gallery 15913 --dim 256 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from swedge.metrics import evaluate, evaluate_reference  # noqa: E402
from swedge.metrics.retrieval import l2_normalize  # noqa: E402


def make_data(nq, ng, dim, seed, n_ids=751, n_cams=6):
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array([-1.0, 1.0], np.float32), (nq, dim))
    g = rng.choice(np.array([-1.0, 1.0], np.float32), (ng, dim))
    q_pids = rng.integers(1, n_ids + 1, nq)
    g_pids = rng.integers(0, n_ids + 1, ng)  # 0 = distractor
    return q, g, q_pids, g_pids, rng.integers(0, n_cams, nq), rng.integers(0, n_cams, ng)


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=3368)
    ap.add_argument("--gallery", type=int, default=15913)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-queries", type=int, default=200, help="queries the slow reference runs on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "metrics.json"))
    args = ap.parse_args(argv)

    data = make_data(args.queries, args.gallery, args.dim, args.seed)
    q, g = data[0], data[1]
    qn, gn = l2_normalize(q), l2_normalize(g)
    t_matmul, sim = timed(lambda: qn[:256] @ gn.T)
    distinct = int(np.median([len(np.unique(row)) for row in sim[:50]]))
    t_matmul = min(timed(lambda: qn @ gn.T)[0] for _ in range(2))  # full matrix, for context only

    times = []
    for _ in range(args.repeats):
        t, res = timed(evaluate, *data)
        times.append(t)

    n = min(args.ref_queries, args.queries)
    sub = (q[:n], g, data[2][:n], data[3], data[4][:n], data[5])
    t_ref, ref = timed(evaluate_reference, *sub, return_per_query=True)
    t_fast_sub, fast = timed(evaluate, *sub, return_per_query=True)
    valid = ~np.isnan(ref.ap_per_query)
    same_skips = bool(np.array_equal(valid, ~np.isnan(fast.ap_per_query)))
    ap_diff = float(np.max(np.abs(fast.ap_per_query[valid] - ref.ap_per_query[valid]), initial=0.0))
    map_diff = abs(fast.map - ref.map)
    cmc_diff = float(np.max(np.abs(fast.cmc - ref.cmc)))
    ok = same_skips and max(ap_diff, map_diff, cmc_diff) <= 1e-6

    result = {
        "shape": {"queries": args.queries, "gallery": args.gallery, "dim": args.dim},
        "distinct_similarities_per_row_median": distinct,
        "evaluate_s": {"best": min(times), "median": statistics.median(times), "all": times},
        "matmul_full_s": t_matmul,
        "reference": {"queries": n, "seconds": t_ref, "extrapolated_s": t_ref * args.queries / n,
                      "fast_same_subset_s": t_fast_sub},
        "max_abs_diff": {"map": map_diff, "ap_per_query": ap_diff, "cmc": cmc_diff},
        "equal_to_reference": ok,
        "scores": {"map": res.map, "rank1": res.rank1, "num_valid_queries": res.num_valid_queries},
        "env": {"numpy": np.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                "machine": platform.machine(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)

    print(f"{args.queries} queries x {args.gallery} gallery, dim {args.dim}; "
          f"median {distinct} distinct similarities per row (ties)")
    rows = [
        ("evaluate, best of %d" % args.repeats, f"{min(times):.3f} s"),
        ("evaluate, median", f"{statistics.median(times):.3f} s"),
        ("similarity matmul alone", f"{t_matmul:.3f} s"),
        (f"reference, {n} queries", f"{t_ref:.3f} s"),
        ("reference, extrapolated", f"{t_ref * args.queries / n:.2f} s"),
        ("max |diff| mAP / AP / CMC", f"{map_diff:.1e} / {ap_diff:.1e} / {cmc_diff:.1e}"),
        ("equal to reference (1e-6)", "yes" if ok else "NO"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
