"""`swedge demo`: embedded data -> short training -> export -> verify -> bench -> summary (README command one)."""

from __future__ import annotations

import argparse

from swedge.cli.export import parse_list

EXAMPLES = """\
examples:
  swedge demo                                   # everything, about 10 minutes on a 2-core CPU
  swedge demo --checkpoint runs/demo/train/model.safetensors   # reuse a trained checkpoint
  swedge demo --formats onnx,tflite --precisions fp32,int8 --epochs 2

writes OUT/train/ (checkpoint + training log), OUT/eval.json, OUT/bundle/ (the export), OUT/verify/
(report.html, report.md, verify.json, verify.xml, compatibility.png), OUT/bench.json + bench.png, and
OUT/summary.md. Exit code 0 when every stage ran: the demo shows what verify finds (some int8 artifacts may
miss the 1-point mAP threshold; the report says which and by how much). `swedge verify` is the gate: it exits 1
on any failure.
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
    p.add_argument("--method", default=None, help="training method (default: swedge train's)")
    p.add_argument("--formats", type=parse_list, default=None, help="export formats (default all)")
    p.add_argument("--precisions", type=parse_list, default=None, help="default fp32,fp16,int8")
    p.add_argument("--bench-iters", type=int, default=20, help="timed calls per model and batch size")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from swedge.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=Path(args.out), data=Path(args.data), epochs=args.epochs, method=args.method,
                     checkpoint=Path(args.checkpoint) if args.checkpoint else None, bench_iters=args.bench_iters,
                     progress=not args.quiet)
    if args.formats:
        cfg.formats = args.formats
    if args.precisions:
        cfg.precisions = args.precisions
    run_demo(cfg)
    return 0
