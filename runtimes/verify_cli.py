"""Arguments and entry point shared by `swedge verify` and the torch-free `python -m swedge.runtimes verify`."""

from __future__ import annotations

import argparse

from swedge.runtimes.thresholds import DEFAULT as _DEFAULT
from swedge.runtimes.thresholds import WEAK_FLAG

EXAMPLES = """\
examples:
  swedge verify bundles/demo
  swedge verify bundles/demo --json verify.json --junit verify.xml --report reports/demo
  swedge verify bundles/new --baseline bundles/old        # new queries against the old server gallery
  python -m swedge.runtimes verify bundle --runtime litert  # on a device: numpy + one runtime, no torch

Each artifact's sha256 is checked before it runs. Per artifact and runtime: per-row cosine against the torch
sub-model of its width, top-k neighbour agreement, self-test and cross-test mAP on the bundle's probe set
(cross = artifact queries searched in the server model's gallery: the device/cloud deployment), and ΔmAP.
Thresholds (override with --thresholds FILE.json): {thresholds}.
Exit code 0 only when every artifact that ran passed; runtimes that cannot run on
this machine at all (TensorRT without an NVIDIA GPU, Core ML predict off macOS) are listed as skipped.
The result records this host (CPU model, the ISA flags that pick int8 kernels, runtime versions) and says
when it differs from the export host recorded in the manifest: int8 kernels differ by CPU.
""".format(thresholds=(
    f"fp32 min cosine >= {_DEFAULT.fp32_cosine_min} and max error <= {_DEFAULT.fp32_max_rel_error:g} of the "
    f"row's norm, fp16 min cosine >= {_DEFAULT.fp16_cosine_min}, int8 mean cosine >= {_DEFAULT.int8_cosine_mean}, "
    f"mAP drop <= {_DEFAULT.max_map_drop:g} point"))


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle folder written by `swedge export`")
    p.add_argument("--runtime", type=_csv, default=None,
                   help="only these runtimes, comma-separated (onnxruntime, openvino, litert, coreml, coreml-mil, tensorrt)")
    p.add_argument("--formats", type=_csv, default=None, help="only these formats, comma-separated")
    p.add_argument("--baseline", default=None, help="an older bundle (same --probe): check new queries against its gallery")
    p.add_argument("--thresholds", default=None, help="JSON file overriding thresholds (see swedge.runtimes.thresholds)")
    p.add_argument(WEAK_FLAG, action="store_true",
                   help="accept a --thresholds file whose values disable a check (e.g. a cosine minimum <= 0); the "
                   "report names them")
    p.add_argument("--json", default=None, help="write the full result as JSON here")
    p.add_argument("--junit", default=None, help="write JUnit XML here (one test case per artifact and runtime)")
    p.add_argument("--report", default=None, help="folder for report.md, report.html and the heat-map")
    p.add_argument("--batch", type=int, default=64, help="probe rows per inference call (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="threads per runtime (default: the runtime's own)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def check_names(runtimes: list[str] | None, formats: list[str] | None) -> None:
    """--runtime / --formats name known runtimes and formats (a typo would otherwise select nothing)."""
    import difflib

    from swedge.errors import SwedgeError
    from swedge.exporters.formats import FORMATS, runner_modules

    for kind, names, known in (("runtime", runtimes, runner_modules()), ("format", formats, FORMATS)):
        unknown = [n for n in names or [] if n not in known]
        if unknown:
            hints = [f"'{u}'" + (f" (did you mean '{c[0]}'?)" if (c := difflib.get_close_matches(u, known, 1)) else "")
                     for u in unknown]
            raise SwedgeError(f"unknown {kind} {', '.join(hints)}; choose from {', '.join(known)}")


def run(args) -> int:
    from swedge.api import verify

    report = verify(args.bundle, runtimes=args.runtime, formats=args.formats, thresholds=args.thresholds,
                    allow_weak_thresholds=args.allow_weak_thresholds, baseline=args.baseline, batch=args.batch,
                    threads=args.threads, json=args.json, junit=args.junit, report=args.report,
                    progress=not args.quiet)
    print(report.table())
    if "report" in report.outputs:
        print(f"report: {report.outputs['report']} (+ report.html)")
    return 0 if report.passed else 1
