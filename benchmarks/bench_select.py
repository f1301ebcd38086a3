"""Per-device choice of a bundle's artifact (`swedge select` as a benchmark): what each device class of a profiles
file gets, measured on this host (or from device JSONs), with the time each phase took.

    python benchmarks/bench_select.py BUNDLE --profiles examples/profiles.toml [--bench [NAME=]FILE ...]
        [--verify [NAME=]FILE ...] [--iters N] [--json OUT]     (default OUT: benchmarks/results/select.json)

Prints the table `swedge select` prints and writes its JSON, plus the seconds spent checking the inputs,
measuring here and choosing. Exit 1 when some device has no artifact, 2 on bad input (as `swedge select`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "select.json"


def main(argv: list[str] | None = None) -> int:
    from swedge.errors import SwedgeError
    from swedge.io import atomic_write_json
    from swedge.runtimes.select import choose
    from swedge.runtimes.select_run import Selection, check_inputs, format_selection, measure_here

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--profiles", required=True)
    p.add_argument("--bench", action="append", default=[])
    p.add_argument("--verify", action="append", default=[])
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", default=str(OUT))
    args = p.parse_args(argv)
    seconds = {}
    try:
        t0 = time.perf_counter()
        bundle, sha, profiles, bench, verify = check_inputs(args.bundle, args.profiles, args.bench, args.verify)
        t1 = time.perf_counter()
        measure_here(bundle, profiles, bench, verify, iters=args.iters, warmup=args.warmup, progress=False)
        t2 = time.perf_counter()
        sel = Selection(bundle, sha, args.profiles, [choose(bundle, pr, bench[pr.name], verify[pr.name])
                                                     for pr in profiles])
        t3 = time.perf_counter()
    except SwedgeError as exc:
        print(f"bench_select: error: {exc}", file=sys.stderr)
        return 2
    seconds = {"check_inputs": round(t1 - t0, 3), "measure_here": round(t2 - t1, 3), "choose": round(t3 - t2, 3)}
    print(format_selection(sel))
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    atomic_write_json(args.json, {**sel.to_dict(), "seconds": seconds, "iters": args.iters})
    print(f"json: {args.json}")
    return 1 if sel.unmatched else 0


if __name__ == "__main__":
    sys.exit(main())
