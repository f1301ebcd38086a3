"""`swedge select`: which artifact of a bundle each device class gets, from device profiles and measurements."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  # measured here (this host stands in for the devices; the table says so)
  swedge select bundles/a --profiles examples/profiles.toml

  # measured on the devices: run there, copy the JSON back, bind it to a device (or let its runtime match)
  python -m swedge.runtimes bench  bundle --runtime onnxruntime --batch 1 --json bench-2core.json   # on the device
  python -m swedge.runtimes verify bundle --runtime onnxruntime --json verify-2core.json            # on the device
  swedge select bundles/a --profiles examples/profiles.toml \\
      --bench cpu-2core-1t=bench-2core.json --verify verify-2core.json --json select.json --out shipped/

  # then, per device, a bundle of its own that verifies by itself
  swedge verify shipped/cpu-2core-1t

The profiles file (TOML; see README "Device profiles"):
  [device.cpu-2core-1t]
  runtime = "onnxruntime"   # required
  threads = 1               # default 1
  batch = 1                 # default 1: the batch the latency budget is for
  latency_p90_ms = 2.0      # and/or latency_p50_ms
  memory_mb = 400           # peak resident memory of the process (MB = 10^6 bytes)
  size_mb = 20              # the artifact on disk
  min_map_cross = 40.0      # cross-test mAP (device queries vs the server gallery), points, at least
  max_map_drop = 10.0       # at most this many points below the server model's own self-test mAP

Rule, per device: of the artifacts that run on its runtime, meet every budget and pass the gate (verify passed
on that runtime, and the mAP bounds), the widest width; then fp32 > fp16 > int8; then the lower latency; then
the artifact id. Every rejected candidate is listed with its reasons ("too slow by 0.41 ms", "ΔmAP 2.10 over",
"size 1.20 MB over", "memory 30.0 MB over", "failed verify: ...").

A --bench / --verify file is used for the device it is bound to (NAME=FILE), or, unbound, for every device whose
runtime it holds (a bench whose --threads matches first). It must come from this bundle (the manifest sha256 it
records). Devices without one are measured on this host.

Exit code: 0 when every device has an artifact; 1 when some device has none (named on the last line); 2 on bad
input (a profile with an unknown key or an impossible budget, a result of another bundle, a runtime no artifact
of the bundle runs on, or one that does not run here when nothing was measured on the device) - then nothing
is written.
"""


def register(sub) -> None:
    p = sub.add_parser("select", help="pick the artifact each device class gets (latency / memory / size budgets "
                       "and the mAP gate), and write a sub-bundle per device",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="For each device profile, choose the widest artifact (then the best precision) "
                       "that meets the profile's budgets and passes the gate, from measurements on the device or, "
                       "failing those, on this host.")
    p.add_argument("bundle", help="bundle folder written by `swedge export`")
    p.add_argument("--profiles", required=True, help="TOML file of [device.NAME] profiles")
    p.add_argument("--bench", action="append", default=[], metavar="[NAME=]FILE",
                   help="a bench JSON from a device (`python -m swedge.runtimes bench --json`); repeatable")
    p.add_argument("--verify", action="append", default=[], metavar="[NAME=]FILE",
                   help="a verify JSON from a device (`python -m swedge.runtimes verify --json`); repeatable")
    p.add_argument("--json", default=None, help="write the choice, every candidate's figures and reasons here")
    p.add_argument("--out", default=None, help="folder for one sub-bundle per device with a choice (OUT/NAME)")
    p.add_argument("--force", action="store_true", help="replace sub-bundles already in --out")
    p.add_argument("--iters", type=int, default=30, help="timed calls when benchmarking here (default %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _check_outputs(args, names: list[str]) -> None:
    """--out/NAME may be written (or replaced with --force) and --json is not an input, before any work."""
    from pathlib import Path

    from swedge.exporters.bundle import is_bundle
    from swedge.outputs import check_not_an_input, check_replace
    from swedge.runtimes.manifest import MANIFEST, SCHEMA

    inputs = {"BUNDLE": Path(args.bundle), "--profiles": Path(args.profiles)}
    inputs.update({f"--bench {b}": Path(b.partition("=")[2] or b) for b in args.bench})
    inputs.update({f"--verify {v}": Path(v.partition("=")[2] or v) for v in args.verify})
    check_not_an_input(args.json, "--json", inputs)
    if args.out:
        for name in names:
            check_replace(Path(args.out) / name, what="a bundle", marker=f"no {MANIFEST} of schema {SCHEMA}",
                          is_ours=is_bundle, force=args.force, inputs={"BUNDLE": Path(args.bundle)})


def run(args) -> int:
    import sys
    from pathlib import Path

    from swedge.errors import SwedgeError
    from swedge.io import atomic_write_json
    from swedge.runtimes.select import choose
    from swedge.runtimes.select_run import Selection, check_inputs, format_selection, measure_here

    if args.iters < 1 or args.warmup < 0:
        raise SwedgeError(f"--iters must be >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}")
    bundle, sha, profiles, bench, verify = check_inputs(args.bundle, args.profiles, args.bench, args.verify)
    _check_outputs(args, [p.name for p in profiles])
    measure_here(bundle, profiles, bench, verify, iters=args.iters, warmup=args.warmup, progress=not args.quiet)
    sel = Selection(bundle, sha, str(args.profiles), [choose(bundle, p, bench[p.name], verify[p.name])
                                                      for p in profiles])
    print(format_selection(sel))
    if args.json:
        atomic_write_json(args.json, sel.to_dict())
        print(f"json: {args.json}")
    if args.out:
        from swedge.exporters.bundle import write_subset

        for ch in sel.choices:
            if ch.chosen is None:
                continue
            out = Path(args.out) / ch.profile.name
            write_subset(bundle, [ch.chosen["id"]], out, force=args.force,
                         extra={"device": {"name": ch.profile.name, "profile": ch.profile.to_dict(),
                                           "chosen": ch.chosen["id"], "measured": ch.to_dict()["measured"],
                                           "selected_from": {"bundle": str(bundle.root), "manifest_sha256": sha}}})
            print(f"sub-bundle: {out} ({ch.chosen['id']}; check it with `swedge verify {out}`)")
    if sel.unmatched:
        print(f"select: no artifact fits device(s) {', '.join(sel.unmatched)} (reasons above)", file=sys.stderr)
        return 1
    return 0
