"""`swedge bench`: latency of every artifact on its runtimes at batch 1 and 32, against torch eager."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  swedge bench bundles/demo
  swedge bench bundles/demo --runtime onnxruntime,openvino --batches 1 --iters 100 --json bench.json

Reports p50 / p90 of the runtime's own inference call after warm-up, and the speed-up over the torch eager
sub-model of the same width (the checkpoint recorded in the manifest, checked by sha256). Every runtime gets
the same --threads (default 1): on a small shared machine more threads make eager torch erratic. Absolute
numbers move with machine load; compare within one run. The output names the host (CPU model and the ISA
flags that pick int8 kernels) beside the figures, and --json records it.
"""


def register(sub) -> None:
    p = sub.add_parser("bench", help="latency p50/p90 per artifact and runtime (batch 1 and 32) vs torch eager",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Benchmark every artifact of a bundle on every runtime that runs here.")
    p.add_argument("bundle", help="bundle folder written by `swedge export`")
    p.add_argument("--batches", default="1,32", help="batch sizes, comma-separated (default %(default)s)")
    p.add_argument("--iters", type=int, default=30, help="timed calls per batch size (default %(default)s)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="threads for every runtime (default %(default)s)")
    p.add_argument("--runtime", default=None, help="only these runtimes, comma-separated")
    p.add_argument("--formats", default=None, help="only these formats, comma-separated")
    p.add_argument("--checkpoint", default=None, help="the checkpoint for the torch baseline (default: manifest's)")
    p.add_argument("--no-torch", action="store_true", help="skip the torch eager baseline")
    p.add_argument("--json", default=None, help="write the timings as JSON here")
    p.add_argument("--png", default=None, help="latency plot (default: beside --json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from swedge.errors import SwedgeError
    from swedge.io import atomic_write_json
    from swedge.runtimes.bench import bench_bundle, bench_record, format_timings, host_line, save_plot
    from swedge.runtimes.host import host_record
    from swedge.runtimes.verify_cli import check_names

    split = (lambda s: [t.strip() for t in s.split(",") if t.strip()] if s else None)
    try:
        batches = [int(b) for b in split(args.batches)]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise SwedgeError(f"--batches must be positive integers like 1,32, got '{args.batches}'")
    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        raise SwedgeError(f"--iters and --threads must be >= 1 and --warmup >= 0, got {args.iters}, {args.threads} "
                          f"and {args.warmup}")
    check_names(split(args.runtime), split(args.formats))
    timings = bench_bundle(args.bundle, batches=batches, warmup=args.warmup, iters=args.iters, threads=args.threads,
                           runtimes=split(args.runtime), formats=split(args.formats), torch_baseline=not args.no_torch,
                           checkpoint=args.checkpoint)
    host = host_record()
    print(format_timings(timings))
    print(host_line(host))
    if args.json:
        atomic_write_json(args.json, bench_record(args.bundle, timings, threads=args.threads, host=host,
                                                      warmup=args.warmup, iters=args.iters))
    png = args.png or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if png:
        print(f"plot: {save_plot(timings, png, batch=min(batches), host=host) or 'left out (matplotlib missing)'}")
    return 0
