"""Int8 repair on one checkpoint: export int8 with and without ``--int8-repair``, verify both, print and write JSON.

    python benchmarks/bench_int8_repair.py CKPT --data DATA [--formats onnx,tensorrt,openvino] [--widths 0.75,1.0]
        [--json benchmarks/int8/repair_mobilenetv2.json]

Per artifact: the gate's figures before repair (from the export's own check), the layers kept float, and the
figures `swedge verify` measures on the repaired bundle; the host (CPU model, int8 ISA flags) beside them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True, help="Market-1501 folder: calibration = its train split, probe = test")
    ap.add_argument("--formats", default="onnx,tensorrt,openvino")
    ap.add_argument("--widths", default="0.75,1.0")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from swedge.exporters.bundle import ExportPlan, export_bundle
    from swedge.runtimes.host import describe, host_record
    from swedge.runtimes.verify import verify_bundle

    with tempfile.TemporaryDirectory(prefix="swedge-repair-bench-") as tmp:
        out = Path(tmp) / "bundle"
        t0 = time.perf_counter()
        manifest = export_bundle(ExportPlan(checkpoint=Path(args.checkpoint), out=out,
                                            formats=args.formats.split(","),
                                            widths=[float(w) for w in args.widths.split(",")], precisions=["int8"],
                                            calib=Path(args.data), int8_repair=True), progress=True)
        export_s = time.perf_counter() - t0
        report = verify_bundle(out, progress=False)
    rows = []
    for a in manifest.artifacts:
        r = a.repair
        ran = [x for x in report.rows if x.id == a.id]
        v = next((x for x in ran if x.status != "skipped"), ran[0] if ran else None)  # TRT-ready ONNX: its QDQ row
        rows.append({"id": a.id, "before": r and r.before, "repaired": r and r.repaired,
                     "kept_float": list(r and r.kept_float or []), "tries": [t["kept"] for t in (r and r.tries or [])],
                     "verify": None if v is None else {"runtime": v.runtime, "status": v.status, "reason": v.reason,
                                                       "cosine_mean": v.cosine_mean, "delta_map_self": v.delta_map_self,
                                                       "delta_map": v.delta_map}})
    host = host_record()
    print(f"host: {describe(host)}")
    print(f"{'artifact':22} {'before self/cross':>18} {'kept':>5} {'after (verify) self/cross':>26}  status")
    for row in rows:
        b, v = row["before"] or {}, row["verify"] or {}
        before = f"{b.get('delta_map_self', float('nan')):+.2f} / {b.get('delta_map', float('nan')):+.2f}"
        after = (f"{v['delta_map_self']:+.2f} / {v['delta_map']:+.2f}" if v.get("delta_map") is not None else "-")
        print(f"{row['id']:22} {before:>18} {len(row['kept_float']):>5} {after:>26}  {v.get('status')} "
              f"{v.get('reason', '')}")
    print(f"export with repair: {export_s:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"host": host, "checkpoint": args.checkpoint, "export_seconds": export_s,
                                               "artifacts": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
