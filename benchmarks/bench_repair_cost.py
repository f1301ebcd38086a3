"""What an int8 repair costs at run time: one artifact of a plain bundle and of its repaired twin (and the fp32 file
of the same width) timed side by side, interleaved call by call on one thread, so machine noise hits all alike.

    python benchmarks/bench_repair_cost.py PLAIN_BUNDLE REPAIRED_BUNDLE --id onnx-w1-int8 [--iters 300]
        [--json benchmarks/results/repair_cost.json]

Prints p50 / p90 latency (ms, batch 1) and size of each file, the ratios to the plain int8 file, and the host.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plain")
    ap.add_argument("repaired")
    ap.add_argument("--id", default="onnx-w1-int8", help="artifact id (an onnx int8 one)")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--json", default="benchmarks/results/repair_cost.json")
    args = ap.parse_args()

    from swedge.io import atomic_write_json
    from swedge.runtimes.host import describe, host_record
    from swedge.runtimes.manifest import read_manifest
    from swedge.runtimes.ort_runner import OrtRunner

    def entry(root: str, aid: str) -> dict:
        found = [a for a in read_manifest(Path(root)).artifacts if a.id == aid]
        if not found:
            raise SystemExit(f"{root} has no artifact {aid}")
        return {**found[0].to_dict(), "file": str(Path(root) / found[0].path)}

    fp32_id = args.id.replace("-int8", "-fp32")
    files = {"plain int8": entry(args.plain, args.id), "repaired int8": entry(args.repaired, args.id),
             "fp32": entry(args.repaired, fp32_id)}
    x = np.load(Path(args.repaired) / "probe" / "inputs.npy")[:1]
    runners = {k: OrtRunner(e["file"], threads=1).load() for k, e in files.items()}
    times: dict[str, list[float]] = {k: [] for k in files}
    for r in runners.values():
        for _ in range(20):
            r.embed(x)
    for _ in range(args.iters):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r.embed(x)
            times[k].append((time.perf_counter() - t0) * 1e3)
    rows = {k: {"p50_ms": round(float(np.percentile(v, 50)), 3), "p90_ms": round(float(np.percentile(v, 90)), 3),
                "bytes": int(files[k]["bytes"])} for k, v in times.items()}
    base = rows["plain int8"]
    for k, r in rows.items():
        r["p50_ratio"] = round(r["p50_ms"] / base["p50_ms"], 3)
        r["size_ratio"] = round(r["bytes"] / base["bytes"], 3)
        print(f"{k:14s} p50 {r['p50_ms']:.3f} ms  p90 {r['p90_ms']:.3f} ms  {r['bytes'] / 1e6:6.2f} MB  "
              f"x{r['p50_ratio']:.2f} time, x{r['size_ratio']:.2f} size vs plain int8")
    repair = files["repaired int8"].get("repair") or {}
    host = host_record()
    print(f"layers kept float: {len(repair.get('kept_float', []))}; host: {describe(host)}")
    atomic_write_json(Path(args.json), {"artifact": args.id, "batch": 1, "threads": 1, "iters": args.iters,
                                        "rows": rows, "kept_float": repair.get("kept_float", []),
                                        "before": repair.get("before"), "after": repair.get("after"), "host": host})
    print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
