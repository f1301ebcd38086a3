"""`swedge bench`: latency of every artifact on its runtimes at batch 1 and 32, against torch eager."""

from __future__ import annotations

import argparse

from swedge.api import BENCH_BATCHES, BENCH_ITERS, BENCH_THREADS, BENCH_WARMUP

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
    p.add_argument("--batches", default=",".join(map(str, BENCH_BATCHES)), help="batch sizes, comma-separated (default %(default)s)")
    p.add_argument("--iters", type=int, default=BENCH_ITERS, help="timed calls per batch size (default %(default)s)")
    p.add_argument("--warmup", type=int, default=BENCH_WARMUP)
    p.add_argument("--threads", type=int, default=BENCH_THREADS, help="threads for every runtime (default %(default)s)")
    p.add_argument("--runtime", default=None, help="only these runtimes, comma-separated")
    p.add_argument("--formats", default=None, help="only these formats, comma-separated")
    p.add_argument("--checkpoint", default=None, help="the checkpoint for the torch baseline (default: manifest's)")
    p.add_argument("--no-torch", action="store_true", help="skip the torch eager baseline")
    p.add_argument("--json", default=None, help="write the timings as JSON here")
    p.add_argument("--png", default=None, help="latency plot (default: beside --json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from swedge.api import bench

    report = bench(args.bundle, batches=args.batches, iters=args.iters, warmup=args.warmup, threads=args.threads,
                   runtimes=args.runtime, formats=args.formats, checkpoint=args.checkpoint,
                   torch_baseline=not args.no_torch, json=args.json, png=args.png)
    print(report.table())
    print(report.host_line())
    if report.plot or report.plot_missing:
        print(f"plot: {report.plot or report.plot_missing}")
    return 0
