"""A training step on a quiet and on a shared CPU, with OpenMP threads spinning (ACTIVE) or sleeping (PASSIVE).

Chooses swedge's default OMP_WAIT_POLICY (swedge/omp_policy.py). Four runs of ``bench_step.py`` (the demo's
recipe: ResNet-18, 64x32 input, sfsc-sum, batch 32, 2 threads), one after the other in this order:

    quiet  x {active, passive}      nothing else on the cores
    shared x {active, passive}      beside a second process training the same step (2 threads, spinning)

Each run reports the median step time of its timed steps (``bench_step.py --configs sfsc-sum --no-memory``).
Ratios are taken inside one run of this script, so the machine's state is the same for all four.

    python benchmarks/bench_contention.py [--json benchmarks/results/contention.json] [--repeats 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEP = HERE / "bench_step.py"
RECIPE = ["--configs", "sfsc-sum", "--no-memory", "--input", "64x32", "--batch", "32", "--threads", "2",
          "--steps", "2", "--warmup", "2", "--silent"]


def _step_run(policy: str, repeats: int, work: Path, name: str) -> dict:
    out = work / f"{name}.json"
    env = {**os.environ, "OMP_WAIT_POLICY": policy.upper()}
    cmd = [sys.executable, str(STEP), *RECIPE, "--repeats", str(repeats), "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    result = json.loads(out.read_text())["timing"]["sfsc-sum"]
    return {"policy": policy, "median_step_s": round(result["median_s"]["total"], 4), "steps": result["n"],
            "wall_s": round(time.perf_counter() - t0, 1)}


def _hog() -> subprocess.Popen:
    """Another training on the same cores: the same step in a loop, OpenMP spinning (torch's default)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    cmd = [sys.executable, str(STEP), *RECIPE, "--repeats", "100000", "--out", os.devnull]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=6, help="timed blocks per run (2 steps each)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "contention.json")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from swedge.runtimes.host import host_record

    rows = []
    with tempfile.TemporaryDirectory(prefix="swedge-contention-") as tmp:
        work = Path(tmp)
        for policy in ("active", "passive"):
            rows.append({"cpu": "quiet", **_step_run(policy, args.repeats, work, f"quiet-{policy}")})
        hog = _hog()
        try:
            time.sleep(20)  # let the other training reach its steps
            for policy in ("active", "passive"):
                rows.append({"cpu": "shared", **_step_run(policy, args.repeats, work, f"shared-{policy}")})
        finally:
            hog.terminate()
            hog.wait()
    by = {(r["cpu"], r["policy"]): r["median_step_s"] for r in rows}
    ratios = {cpu: round(by[(cpu, "active")] / by[(cpu, "passive")], 2) for cpu in ("quiet", "shared")}
    host = host_record()
    print(f"host: {host.get('cpu_model')}, {host.get('cpu_count')} cores, flags {' '.join(host.get('int8_flags', []))}")
    print("| CPU | OMP_WAIT_POLICY | median step (s) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['cpu']} | {r['policy']} | {r['median_step_s']:.3f} |")
    print(f"active / passive step time: quiet {ratios['quiet']}x, shared {ratios['shared']}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"host": host, "recipe": RECIPE, "rows": rows,
                                     "active_over_passive": ratios}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
