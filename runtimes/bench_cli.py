"""The device's `python -m swedge.runtimes bench`: latency and peak memory per artifact with numpy + one runtime
(no torch), written as the same JSON as `swedge bench` (:func:`swedge.runtimes.bench.bench_record`), to copy back
from the device and hand to `swedge select --bench`."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  python -m swedge.runtimes bench bundle --runtime litert --json bench-phone.json
  python -m swedge.runtimes bench bundle --runtime onnxruntime --batch 1 --threads 1 --json bench-2core.json
  swedge select bundle --profiles profiles.toml --bench phone=bench-phone.json   # back on the server

Reports p50 / p90 of the runtime's own inference call after warm-up at each --batch size, and the peak resident
memory of this process while each artifact was loaded and run (Linux: per artifact; elsewhere the process's
peak so far, an upper bound; the JSON names the method). The JSON records this host (CPU model, the ISA flags
that pick int8 kernels, OS / arch, runtime versions) and the sha256 of the bundle's manifest, so `swedge select`
refuses a result from another bundle. No torch baseline: torch is not needed (nor imported) here.
"""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle folder written by `swedge export` (or a `swedge select --out` sub-bundle)")
    p.add_argument("--runtime", type=_csv, default=None,
                   help="only these runtimes, comma-separated (default: every runtime of every artifact; those "
                   "not installed are listed as skipped)")
    p.add_argument("--formats", type=_csv, default=None, help="only these formats, comma-separated")
    p.add_argument("--batch", "--batches", dest="batches", default="1,32",
                   help="batch sizes, comma-separated (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="threads for the runtime (default %(default)s)")
    p.add_argument("--iters", type=int, default=30, help="timed calls per batch size (default %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default %(default)s)")
    p.add_argument("--json", default=None, help="write the result here (the file to copy back)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_batches(text: str) -> list[int]:
    from swedge.errors import SwedgeError

    try:
        batches = [int(b) for b in _csv(text or "")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise SwedgeError(f"--batch must be positive integers like 1,32, got '{text}'")
    return batches


def run(args) -> int:
    from swedge.errors import SwedgeError
    from swedge.io import atomic_write_json
    from swedge.runtimes.bench import bench_bundle, bench_record, format_timings, host_line
    from swedge.runtimes.host import host_record
    from swedge.runtimes.verify_cli import check_names

    batches = parse_batches(args.batches)
    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        raise SwedgeError(f"--iters and --threads must be >= 1 and --warmup >= 0, got {args.iters}, {args.threads} "
                          f"and {args.warmup}")
    check_names(args.runtime, args.formats)
    if args.json:
        from swedge.outputs import check_writable

        check_writable(args.json, "--json", folder=False)
    timings = bench_bundle(args.bundle, batches=batches, warmup=args.warmup, iters=args.iters, threads=args.threads,
                           runtimes=args.runtime, formats=args.formats, torch_baseline=False,
                           progress=not args.quiet)
    host = host_record()
    record = bench_record(args.bundle, timings, threads=args.threads, host=host, warmup=args.warmup,
                          iters=args.iters, command="python -m swedge.runtimes bench")
    print(format_timings(timings))
    print(host_line(host))
    print(f"peak memory: {record['peak_rss_mb']} MB ({record['memory_method']})")
    if args.json:
        atomic_write_json(args.json, record)
        print(f"json: {args.json}")
    if not any(t.status == "ok" for t in timings):
        print("bench: nothing ran here (see the status column)")
        return 1
    return 0
