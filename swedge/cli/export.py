"""`swedge export`: one checkpoint -> per-width artifacts for every format and precision, in one bundle."""

from __future__ import annotations

import argparse

from swedge.api import CALIB_SIZE, MAX_BATCH, PROBE_SIZE
from swedge.cli.common import parse_widths
from swedge.exporters.formats import FORMATS, PRECISIONS

EXAMPLES = """\
examples:
  swedge export runs/demo/model.safetensors --calib data/synth --out bundles/demo
  swedge export runs/demo/model.safetensors --formats onnx,tflite --widths 0.25,1.0 \\
      --precisions fp32,int8 --calib data/synth --out bundles/phone
  swedge export CKPT --formats onnx --precisions fp32 --probe data/synth --out bundles/onnx --force

The bundle holds manifest.json (every artifact's format, width, precision, sha256, size, tools,
calibration set hash and algorithm), the artifacts, a probe set (preprocessed query + gallery images of
--probe, default the test split of --calib) and the torch sub-model's reference features for every width.
Check it with `swedge verify BUNDLE`. Combinations this machine cannot produce are listed as skipped, with the
reason (e.g. the TensorRT engine needs TensorRT and an NVIDIA GPU; its TRT-ready ONNX is still exported).

precisions: fp32; fp16 (weights, and compute where the runtime does it); int8 = post-training static
quantization calibrated on --calib (Core ML: int8 weights only, activations stay float).
"""


def parse_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give at least one name, comma-separated")
    return items


def register(sub) -> None:
    titles = " / ".join(f.title for f in FORMATS.values())
    p = sub.add_parser("export", help=f"export a checkpoint to per-width {titles} artifacts (one bundle)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Slice a switchable checkpoint into standalone width-specific models and export "
                       "each to the requested formats and precisions, with calibration and a probe set.")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by `swedge train`")
    p.add_argument("--out", required=True, help="bundle folder to create (refused if it exists, unless --force)")
    p.add_argument("--formats", type=parse_list, default=None,
                   help=f"comma-separated, from {','.join(FORMATS)} (default: all)")
    p.add_argument("--widths", type=parse_widths, default=None, help="subset of the checkpoint's widths (default all)")
    p.add_argument("--precisions", type=parse_list, default=None,
                   help=f"comma-separated from {','.join(PRECISIONS)} (default fp32,fp16, plus int8 when --calib "
                   "is given)")
    p.add_argument("--calib", default=None, help="calibration images: Market-1501 folder (its train split), "
                   "any image folder, or a preprocessed (N,3,H,W) .npy")
    p.add_argument("--calib-size", type=int, default=CALIB_SIZE, help="images in the calibration set (default %(default)s)")
    p.add_argument("--probe", default=None, help="Market-1501 folder whose test split becomes the probe set "
                   "(default: --calib)")
    p.add_argument("--probe-size", type=int, default=PROBE_SIZE, help="max probe images, whole identities kept "
                   "(default %(default)s)")
    p.add_argument("--int8-repair", action="store_true",
                   help="when an int8 artifact misses the gate on the probe (what `swedge verify` checks), re-export "
                   "it with its most sensitive layers in float (ranked on held-out calibration images), fewest first "
                   "(1, 2, 4, ...), until it passes; ONNX, TRT-ready ONNX and OpenVINO. The kept layers and the "
                   "ΔmAP before / after are in the manifest and the summary")
    p.add_argument("--max-batch", type=int, default=MAX_BATCH, help="largest batch of the dynamic batch dimension")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out (only a swedge "
                   "bundle, and never one holding an input of this export)")
    p.add_argument("--json", default=None, help="also write the export summary as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from swedge.api import export
    from swedge.exporters.summary import format_summary

    bundle = export(args.checkpoint, args.out, formats=args.formats, widths=args.widths or None,
                    precisions=args.precisions, calib=args.calib, calib_size=args.calib_size, probe=args.probe,
                    probe_size=args.probe_size, max_batch=args.max_batch, force=args.force,
                    int8_repair=args.int8_repair, json=args.json, progress=not args.quiet)
    print(format_summary(bundle.manifest))
    counts = {s: sum(a.status == s for a in bundle.artifacts) for s in ("ok", "skipped", "failed")}
    print(f"\nbundle: {args.out}  ({counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed)"
          f"  next: swedge verify {args.out}")
    return 1 if counts["failed"] else 0
