"""Int8 candidate settings for the ONNX / TRT-ready exports, measured on every onnxruntime CPU path.

For one checkpoint, per width and per candidate (activation type and symmetry, 8- or 7-bit weights, range
method): the int8 QDQ file is run four ways and compared with the torch sub-model on the probe set
(per-row cosine mean / min, self and cross mAP drop in points):

- ``host``: onnxruntime's int8 kernels on this CPU (the flags are printed: VNNI here or not);
- ``qdq-ref``: onnxruntime with graph optimizations off (Q/DQ as written, float convolutions);
- ``exact``: numpy emulation with int32 accumulation (VNNI, AMX, ARM dot-product, TensorRT);
- ``vpmaddubsw``: numpy emulation of x86 without VNNI (AVX2, AVX-512F/BW): pairs of u8 x s8 products
  saturated to int16. An upper bound, not a measurement: on ResNet-18's 8-bit weights it saturates more than
  onnxruntime's real AVX2 kernels do (see calibration/int8_paths.py; the real ones run under qemu-user in
  tests/test_int8_paths.py).

``saturation-free`` says whether the file's weights make the last path provably equal to the exact one.

    python benchmarks/bench_int8.py CKPT --data DATA [--widths 0.25,1.0] [--json OUT]
    python benchmarks/bench_int8.py --markdown OUT.json     # the table of a finished run, as Markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# activations (type, symmetric) x weights (w8: plain 8-bit, w7: reduce_range, ps: pair-safe 8-bit), x method;
# plus U8U8 (asymmetric uint8 weights: onnxruntime's U8U8 kernels widen to 16 bits before multiplying, exact on
# every path, so the emulated paths run them as the QDQ reference does)
ACTIVATIONS = {"s8sym": ("int8", True), "s8asym": ("int8", False), "u8asym": ("uint8", False)}
WEIGHTS = {"w8": {}, "w7": {"reduce_range": True}, "ps": {"pair_safe_weights": True}, "u8": {"weight_type": "uint8"}}
SHAPES = {**{f"{a}-{w}": (a, w) for a in ACTIVATIONS for w in ("w8", "w7", "ps")}, "u8u8": ("u8asym", "u8")}
METHODS = ("minmax", "percentile", "entropy")


def isa_flags() -> list[str]:
    try:
        words = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    keep = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
    return sorted({w for w in words if w in keep})


def _scores(feats, ref, server_ref, labels, ref_scores):
    from swedge.metrics.fidelity import row_cosine
    from swedge.metrics.retrieval import evaluate

    pids, camids, q = labels["pids"], labels["camids"], labels["is_query"].astype(bool)
    cos = row_cosine(feats, ref)
    own = evaluate(feats[q], feats[~q], pids[q], pids[~q], camids[q], camids[~q]).map * 100
    cross = evaluate(feats[q], server_ref[~q], pids[q], pids[~q], camids[q], camids[~q]).map * 100
    return {"cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5),
            "d_self": round(own - ref_scores[0], 2), "d_cross": round(cross - ref_scores[1], 2)}


def markdown(path: Path) -> str:
    d = json.loads(path.read_text())
    cell = lambda r, k: (f"{r[k]['cos_mean']:.4f} / {r[k]['cos_min']:.4f}, "  # noqa: E731
                         f"{r[k]['d_self']:+.2f} / {r[k]['d_cross']:+.2f}")
    lines = [f"CPU flags: {' '.join(d['cpu_flags'])}; onnxruntime {d['onnxruntime']}; cells: mean / min cosine, "
             "ΔmAP self / cross (points)", "",
             "| w | setting | saturation-free | this CPU | exact (VNNI, AMX, ARM, TensorRT) | VPMADDUBSW (AVX2) |",
             "|---|---|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['width']:g} | {r['setting']} | {'yes' if r['saturation_free'] else 'no'} | "
                     f"{cell(r, 'host')} | {cell(r, 'exact')} | {cell(r, 'vpmaddubsw')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--markdown"]:
        print(markdown(Path(argv[1])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help="Market-layout data: calibration from its train "
                   "split, probe from its query/gallery split")
    p.add_argument("--widths", default="0.25,1.0")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--calib-size", type=int, default=128)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "int8_paths.json")
    args = p.parse_args(argv)

    import onnxruntime as ort

    from swedge.calibration import int8_paths
    from swedge.calibration.dataset import build_calibration_set
    from swedge.calibration.ort_qdq import quantize_onnx_qdq
    from swedge.data.preprocess import Preprocess
    from swedge.exporters.bundle import ExportPlan, export_bundle
    from swedge.metrics.retrieval import evaluate
    from swedge.runtimes.ort_runner import OrtQdqReferenceRunner, OrtRunner

    widths = [float(w) for w in args.widths.split(",")]
    flags = isa_flags()
    print(f"CPU flags: {' '.join(flags) or '(unknown)'}; onnxruntime {ort.__version__}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="swedge-int8-") as work:
        bundle = Path(work) / "bundle"
        export_bundle(ExportPlan(checkpoint=args.checkpoint, out=bundle, formats=["onnx"], widths=widths,
                                 precisions=["fp32"], probe=args.data), progress=False)
        manifest = json.loads((bundle / "manifest.json").read_text())
        preprocess = Preprocess.from_dict(manifest["preprocess"])
        calib = build_calibration_set(args.data / "bounding_box_train", preprocess, size=args.calib_size,
                                      progress=False)
        probe = np.load(bundle / manifest["probe"]["inputs"])
        labels = dict(np.load(bundle / manifest["probe"]["labels"]))
        q = labels["is_query"].astype(bool)
        server = np.load(bundle / manifest["references"]["1"]["path"])
        for w in widths:
            key = f"{w:g}"
            ref = np.load(bundle / manifest["references"][key]["path"])
            ref_scores = [100 * evaluate(a[q], b[~q], labels["pids"][q], labels["pids"][~q], labels["camids"][q],
                                         labels["camids"][~q]).map for a, b in ((ref, ref), (ref, server))]
            fp32 = bundle / "onnx" / f"w{key}-fp32.onnx"
            for method in args.methods.split(","):
                for shape in args.shapes.split(","):
                    act_name, weights = SHAPES[shape]
                    act, sym = ACTIVATIONS[act_name]
                    dst = Path(work) / f"w{key}-{shape}-{method}.onnx"
                    t0 = time.perf_counter()
                    quantize_onnx_qdq(fp32, dst, calib, method=method, symmetric_activations=sym,
                                      activation_type=act, float_ops=("Gemm",), **WEIGHTS[weights])
                    paths = {"host": OrtRunner(dst).embed(probe), "qdq-ref": OrtQdqReferenceRunner(dst).embed(probe)}
                    for path in int8_paths.PATHS:
                        paths[path] = int8_paths.run(dst, probe, path)
                    row = {"width": w, "setting": f"{shape}-{method}",
                           "saturation_free": int8_paths.saturation_bound(dst)["saturation_free"],
                           "seconds": round(time.perf_counter() - t0, 1),
                           **{k: _scores(v, ref, server, labels, ref_scores) for k, v in paths.items()}}
                    rows.append(row)
                    cells = "  ".join(f"{k} {v['cos_mean']:.4f}/{v['cos_min']:.4f} {v['d_self']:+.2f}/"
                                      f"{v['d_cross']:+.2f}" for k, v in row.items() if isinstance(v, dict))
                    print(f"w={w:g} {row['setting']:22s} sat-free={'yes' if row['saturation_free'] else 'no '} "
                          f"{cells}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "cpu_flags": flags,
                                     "onnxruntime": ort.__version__, "columns": "cos mean/min, dmAP self/cross",
                                     "rows": rows}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
