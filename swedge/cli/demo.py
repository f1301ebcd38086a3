"""`swedge demo`: embedded data -> short training -> export -> verify -> bench -> summary (README command one)."""

from __future__ import annotations

import argparse

from swedge.cli.export import parse_list
from swedge.demo import DEMO_METHOD, DEMO_OPTIONS
from swedge.exporters.formats import FORMATS

EXAMPLES = """\
examples:
  swedge demo                                   # everything, about 10 minutes on a 2-core CPU
  swedge demo --checkpoint runs/demo/train/model.safetensors   # reuse a trained checkpoint
  swedge demo --formats onnx,tflite --precisions fp32,int8 --epochs 2

writes OUT/train/ (checkpoint + training log), OUT/eval.json, OUT/bundle/ (the export), OUT/verify/
(report.html, report.md, verify.json, verify.xml, compatibility.png), OUT/bench.json + bench.png, and
OUT/summary.md.

exit code: 0 when every stage ran, `swedge verify` passed every artifact and the checkpoint meets the
compatibility criterion M[w][1.0] > M[w][w]; 1 when the demo ran to the end but either of them failed (its last
line says which; the verify report says which artifact and by how much); 2 on bad settings (nothing runs).
"""


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole product on the embedded data (train, export, verify, bench)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Generate the embedded re-ID data if absent, train a short switchable checkpoint, "
                       "export every format this machine can produce, verify and benchmark the bundle.")
    p.add_argument("--out", default="runs/demo", help="run folder (default %(default)s; replaced stage by stage)")
    p.add_argument("--data", default="data/synth", help="data folder; generated if absent (default %(default)s)")
    p.add_argument("--checkpoint", default=None, help="skip training and use this checkpoint")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: swedge train's)")
    p.add_argument("--method", default=None, help="training method (default: the demo's recipe, "
                   "%s with %s)" % (DEMO_METHOD, " ".join(DEMO_OPTIONS)))
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option (repeatable); added to the demo's recipe unless --method is given")
    p.add_argument("--seed", type=int, default=0, help="training seed (default %(default)s)")
    p.add_argument("--formats", type=parse_list, default=None,
                   help=f"export formats, comma-separated, from {','.join(FORMATS)} (default all)")
    p.add_argument("--precisions", type=parse_list, default=None, help="default fp32,fp16,int8")
    p.add_argument("--no-int8-repair", action="store_true",
                   help="export int8 files as calibrated, without re-exporting one that misses the gate with its "
                   "most sensitive layers float (see `swedge export --int8-repair`)")
    p.add_argument("--bench-iters", type=int, default=20, help="timed calls per model and batch size")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from swedge.demo import DemoConfig, run_demo, verdict_line

    cfg = DemoConfig(out=Path(args.out), data=Path(args.data), epochs=args.epochs, method=args.method,
                     method_options=args.opt, seed=args.seed,
                     checkpoint=Path(args.checkpoint) if args.checkpoint else None, bench_iters=args.bench_iters,
                     int8_repair=not args.no_int8_repair, progress=not args.quiet)
    if args.formats:
        cfg.formats = args.formats
    if args.precisions:
        cfg.precisions = args.precisions
    from swedge.outputs import exclusive

    _check_demo_folder(cfg.out)
    with exclusive(cfg.out, "swedge demo"):
        result = run_demo(cfg)
    print(f"\ndemo: {verdict_line(result['gate'])}")
    return 0 if result["gate"]["passed"] else 1


DEMO_MARKERS = ("summary.json", "train", "bundle", "eval.json")  # what a demo run folder holds


def _check_demo_folder(out) -> None:
    """The demo replaces its own stages' outputs in --out: refuse a folder that is not a demo run."""
    from swedge.errors import SwedgeError

    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in DEMO_MARKERS):
        raise SwedgeError(f"--out {out} already exists and is not a demo run folder (it holds none of "
                          f"{', '.join(DEMO_MARKERS)}): choose another --out, or empty it yourself")
