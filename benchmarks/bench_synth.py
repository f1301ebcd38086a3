"""Time `swedge data synth` end to end (drawing + JPEG writing + atomic rename) and record images/s.

    python benchmarks/bench_synth.py                 # default set (~4,600 images, 128x64), 3 runs
    python benchmarks/bench_synth.py --size 256x128 --runs 1

Writes benchmarks/results/synth.json. Target: >= 500 images/s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import PIL  # noqa: E402

from swedge.data.synth import GENERATOR_VERSION, generate  # noqa: E402

TARGET = 500.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="128x64", help="HxW (default: %(default)s)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "synth.json"))
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    rates, images = [], 0
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        for i in range(args.runs):
            t0 = time.perf_counter()
            summary = generate(Path(tmp) / f"run{i}", size=size, progress=False)
            seconds = time.perf_counter() - t0
            images = summary["images"]
            rates.append(images / seconds)
            print(f"run {i + 1}/{args.runs}: {images} images in {seconds:.2f} s = {rates[-1]:.0f} images/s")

    result = {
        "benchmark": "synth", "generator_version": GENERATOR_VERSION, "size": list(size), "images": images,
        "runs": args.runs, "images_per_s_median": round(statistics.median(rates), 1),
        "images_per_s_best": round(max(rates), 1), "images_per_s_all": [round(r, 1) for r in rates],
        "target_images_per_s": TARGET, "meets_target": statistics.median(rates) >= TARGET,
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__,
        "machine": platform.machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"median {result['images_per_s_median']:.0f} images/s (best {result['images_per_s_best']:.0f}, "
          f"target {TARGET:.0f}) -> {args.json}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
