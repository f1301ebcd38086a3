"""A training step on a quiet and on a shared CPU, under each OpenMP wait policy: libgomp's default (unset: spin
~300k iterations, then sleep), ACTIVE (spin), PASSIVE (sleep at once), and a short spin (GOMP_SPINCOUNT=10000).

Chooses swedge's default OMP_WAIT_POLICY (swedge/omp_policy.py). Four runs of ``bench_step.py`` (the demo's
recipe: ResNet-18, 64x32 input, sfsc-sum, batch 32, 2 threads), one after the other in this order:

    quiet  x policies      nothing else on the cores
    shared x policies      beside a second process training the same step (2 threads, libgomp's default)

Each run reports the median step time of its timed steps (``bench_step.py --configs sfsc-sum --no-memory``).
Ratios are taken inside one run of this script, so the machine's state is the same for all of them.

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


# policy name -> the environment it means (variables mapped to None are removed)
POLICIES = {"unset": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None},
            "active": {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None},
            "passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
            "short-spin": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"}}


def _env(policy: str) -> dict:
    env = dict(os.environ)
    for key, value in POLICIES[policy].items():
        env.pop(key, None)
        if value is not None:
            env[key] = value
    return env


def _step_run(policy: str, repeats: int, work: Path, name: str) -> dict:
    out = work / f"{name}.json"
    env = _env(policy)
    cmd = [sys.executable, str(STEP), *RECIPE, "--repeats", str(repeats), "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    result = json.loads(out.read_text())["timing"]["sfsc-sum"]
    return {"policy": policy, "median_step_s": round(result["median_s"]["total"], 4), "steps": result["n"],
            "wall_s": round(time.perf_counter() - t0, 1)}


def _hog() -> subprocess.Popen:
    """Another training on the same cores: the same step in a loop, with libgomp's default policy."""
    env = _env("unset")
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
        for policy in POLICIES:
            rows.append({"cpu": "quiet", **_step_run(policy, args.repeats, work, f"quiet-{policy}")})
        hog = _hog()
        try:
            time.sleep(20)  # let the other training reach its steps
            for policy in POLICIES:
                rows.append({"cpu": "shared", **_step_run(policy, args.repeats, work, f"shared-{policy}")})
        finally:
            hog.terminate()
            hog.wait()
    by = {(r["cpu"], r["policy"]): r["median_step_s"] for r in rows}
    ratios = {cpu: {p: round(by[(cpu, p)] / by[(cpu, "passive")], 2) for p in POLICIES} for cpu in ("quiet", "shared")}
    host = host_record()
    print(f"host: {host.get('cpu_model')}, {host.get('cpu_count')} cores, flags {' '.join(host.get('int8_flags', []))}")
    print("| CPU | OMP_WAIT_POLICY | median step (s) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['cpu']} | {r['policy']} | {r['median_step_s']:.3f} |")
    for cpu, r in ratios.items():
        print(f"{cpu}: step time / passive's: " + ", ".join(f"{p} {v}x" for p, v in r.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"host": host, "recipe": RECIPE, "rows": rows,
                                     "over_passive": ratios}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
