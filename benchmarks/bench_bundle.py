"""Figures of a bundle: export time and size per artifact (size against w²), and latency targets.

- Export: seconds and MB per artifact from the manifest; each width's size over the full width's, next to w².
- Latency (``swedge.runtimes.bench``, every runtime at the same thread count, batch 1 and 32): for every width,
  the best runtime's speed-up over torch eager (target >= 2x at batch 1), and on that runtime the time of
  width 0.25 over width 1.0 (target <= 0.15; the FLOP ratio is 0.0625).

    python benchmarks/bench_bundle.py [BUNDLE] [--threads N] [--iters N]   (default runs/demo/bundle)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bundle.json"


def export_figures(manifest: dict) -> list[dict]:
    ok = [a for a in manifest["artifacts"] if a["status"] == "ok"]
    full = {(a["format"], a["precision"]): a["bytes"] for a in ok if a["width"] == max(x["width"] for x in ok)}
    rows = []
    for a in ok:
        ref = full.get((a["format"], a["precision"]))
        rows.append({"format": a["format"], "width": a["width"], "precision": a["precision"],
                     "mb": round(a["bytes"] / 1e6, 2), "seconds": a["export_seconds"],
                     "size_over_full": round(a["bytes"] / ref, 3) if ref else None,
                     "w_squared": round(a["width"] ** 2, 4),
                     "parity_cosine_min": (a.get("parity") or {}).get("cosine_min")})
    return rows


def latency_figures(timings) -> dict:
    p50 = {(t.format, t.runtime, t.precision, t.width, t.batch): t.p50_ms for t in timings if t.p50_ms}
    widths = sorted({k[3] for k in p50})
    out = {}
    for batch in sorted({k[4] for k in p50}):
        torch = {w: p50.get(("torch", "torch", "fp32", w, batch)) for w in widths}
        per_width = {}
        for w in widths:
            cands = [(v, k) for k, v in p50.items() if k[3] == w and k[4] == batch and k[1] != "torch"]
            if cands and torch[w]:
                v, k = min(cands)
                per_width[f"{w:g}"] = {"best": f"{k[0]}/{k[1]} {k[2]}", "p50_ms": round(v, 3),
                                       "torch_p50_ms": round(torch[w], 3), "speedup": round(torch[w] / v, 2)}
        # width scaling on each (format, runtime, precision): t(w_min) / t(w_max)
        scaling = {}
        by_model = defaultdict(dict)
        for (f, r, p, w, b), v in p50.items():
            if b == batch:
                by_model[f"{f}/{r} {p}"][w] = v
        for name, d in by_model.items():
            if min(widths) in d and max(widths) in d:
                scaling[name] = round(d[min(widths)] / d[max(widths)], 3)
        out[f"batch{batch}"] = {"best_per_width": per_width, "small_over_full": scaling}
    return out


def main() -> None:
    from swedge.runtimes.bench import bench_bundle

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", default=str(ROOT / "runs" / "demo" / "bundle"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    bundle = Path(args.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    exports = export_figures(manifest)
    print(f"{'format':9s} {'w':>5s} {'prec':5s} {'MB':>7s} {'s':>6s} {'size/full':>9s} {'w^2':>6s}")
    for r in exports:
        print(f"{r['format']:9s} {r['width']:5g} {r['precision']:5s} {r['mb']:7.2f} {r['seconds']:6.1f} "
              f"{r['size_over_full'] or 0:9.3f} {r['w_squared']:6.4f}")
    timings = bench_bundle(bundle, batches=(1, 32), iters=args.iters, warmup=10, threads=args.threads,
                           progress=True)
    lat = latency_figures(timings)
    print(json.dumps(lat, indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"bundle": str(bundle), "threads": args.threads, "exports": exports, "latency": lat,
                               "timings": [t.to_dict() for t in timings]}, indent=2) + "\n")
    print(f"json: {OUT}")


if __name__ == "__main__":
    main()
