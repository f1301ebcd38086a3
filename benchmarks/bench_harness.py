"""The verify harness's cost: time on top of the runtimes' own inference, and memory as the probe grows.

1. Overhead: for every ONNX artifact of BUNDLE, pure onnxruntime inference over the probe (the runner's
   ``_infer`` on each batch, nothing else) against ``verify_bundle`` restricted to the same artifacts.
   Reported three ways: the embedding path alone (streaming, checks, conversion), per artifact (embedding
   + fidelity + self/cross mAP), and the whole run (adds sha256 checks, model loading, the torch references'
   scores and the compatibility matrix, whose cost grows with artifacts², not with inference).
2. Memory: the probe tiled 1x and 10x (labels and reference features tiled to match, hashes updated) and
   verified in a fresh process each; peak RSS compared.

    python benchmarks/bench_harness.py [BUNDLE]        (default runs/demo/bundle; run `make demo` first)
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "harness.json"


def pure_inference(bundle: Path, batch: int = 64) -> float:
    from swedge.runtimes import runner_class
    from swedge.runtimes.manifest import read_manifest

    b = read_manifest(bundle)
    inputs = np.load(bundle / b.manifest.probe.inputs, mmap_mode="r")
    total = 0.0
    for a in b.artifacts:
        if a.format != "onnx" or a.status != "ok":
            continue
        runner = runner_class("onnxruntime")(bundle / a.path, a).load()
        runner._infer(np.ascontiguousarray(inputs[:batch]))  # warm-up, as verify's first batch is not special
        t0 = time.perf_counter()
        for i in range(0, len(inputs), batch):
            runner._infer(np.ascontiguousarray(inputs[i:i + batch]))
        total += time.perf_counter() - t0
    return total


def harness(bundle: Path) -> tuple[float, float, float, float]:
    from swedge.runtimes.verify import verify_bundle

    t0 = time.perf_counter()
    report = verify_bundle(bundle, formats=["onnx"], runtimes=["onnxruntime"], progress=False)
    wall = time.perf_counter() - t0
    assert report.rows and all(r.status != "fail" or "mAP" in r.reason for r in report.rows), report.errors
    return (wall, sum(r.harness_s for r in report.rows), sum(r.harness_s + r.scoring_s for r in report.rows),
            sum(r.inference_s for r in report.rows))


def tiled_copy(bundle: Path, dest: Path, times: int) -> Path:
    from swedge.runtimes.manifest import file_sha256

    shutil.copytree(bundle, dest, ignore=shutil.ignore_patterns("openvino", "tflite", "coreml", "tensorrt"))
    m = json.loads((dest / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["format"] == "onnx"]
    p = m["probe"]
    inputs = np.load(dest / p["inputs"])
    np.save(dest / p["inputs"], np.concatenate([inputs] * times))
    with np.load(dest / p["labels"]) as z:
        labels = {k: np.concatenate([z[k]] * times) for k in z.files}
    np.savez(dest / p["labels"], **labels)
    p.update(inputs_sha256=file_sha256(dest / p["inputs"]), labels_sha256=file_sha256(dest / p["labels"]),
             count=len(labels["pids"]))
    for r in m["references"].values():
        np.save(dest / r["path"], np.concatenate([np.load(dest / r["path"])] * times))
        r["sha256"] = file_sha256(dest / r["path"])
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def peak_rss_mb(bundle: Path) -> float:
    code = ("import resource, sys; from swedge.runtimes.__main__ import main; "
            f"rc = main(['verify', {str(bundle)!r}, '--runtime', 'onnxruntime', '--quiet']); "
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False).stdout
    return int(out.split("RSS")[-1]) / 1024


def main() -> None:
    bundle = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "runs" / "demo" / "bundle")
    if not (bundle / "manifest.json").exists():
        sys.exit(f"{bundle} is not a bundle: run `make demo` first or pass a bundle path")
    # interleaved repeats, best of each: this machine's load moves single runs by 20 % and more
    runs = [(pure_inference(bundle), harness(bundle)) for _ in range(3)]
    pure = min(r[0] for r in runs)
    wall, embed_path, rows_path, inside = (min(r[1][i] for r in runs) for i in range(4))
    with tempfile.TemporaryDirectory() as tmp:
        one = tiled_copy(bundle, Path(tmp) / "x1", 1)
        ten = tiled_copy(bundle, Path(tmp) / "x10", 10)
        rows = int(json.loads((one / "manifest.json").read_text())["probe"]["count"])
        rss1, rss10 = peak_rss_mb(one), peak_rss_mb(ten)
        input_mb = (one / "probe" / "inputs.npy").stat().st_size / 1e6
    result = {
        "bundle": str(bundle), "probe_rows": rows,
        "pure_onnxruntime_inference_s": round(pure, 3),
        "verify_wall_s": round(wall, 3),
        "verify_embedding_path_s": round(embed_path, 3),
        "inference_inside_verify_s": round(inside, 3),
        "overhead_whole_verify_pct": round(100 * (wall / pure - 1), 1),
        "overhead_embedding_path_pct": round(100 * (embed_path / pure - 1), 1),
        "overhead_per_artifact_pct": round(100 * (rows_path / pure - 1), 1),  # embedding + fidelity + mAP
        "probe_input_mb_x1": round(input_mb, 1),
        "peak_rss_mb_x1": round(rss1, 1), "peak_rss_mb_x10": round(rss10, 1),
        "rss_ratio_x10_over_x1": round(rss10 / rss1, 3),
        "peak_self_rss_mb_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    for k, v in result.items():
        print(f"{k:34s} {v}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"json: {OUT}")


if __name__ == "__main__":
    main()
