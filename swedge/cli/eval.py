"""`swedge eval`: the cross-model retrieval matrix of a checkpoint (query width x gallery width)."""

from __future__ import annotations

import argparse

from swedge.cli.common import parse_widths

EXAMPLES = """\
examples:
  swedge eval runs/r18/model.safetensors --data data/synth
  swedge eval runs/r18/model.safetensors --data data/synth --json runs/r18/eval.json --widths 0.25,1.0

M[q][g] = mAP with queries embedded at width q and the gallery at width g (Market-1501 protocol). The
compatibility criterion (BCT) asks M[w][1.0] > M[w][w] for every w < 1: a small device model's queries find
more in the server's gallery than in a gallery of its own.
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="cross-model mAP / Rank-1 matrix of a checkpoint", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Evaluate every (query width, gallery width) pair on a Market-style test split.")
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by `swedge train`")
    p.add_argument("--data", required=True, help="Market-1501-style folder with query/ and bounding_box_test/")
    p.add_argument("--widths", type=parse_widths, default=None, help="subset of the checkpoint's widths")
    p.add_argument("--json", default=None, help="write the matrices as JSON here")
    p.add_argument("--png", default=None, help="heat-map PNG path (default: beside --json, else none)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from swedge.checkpoint import load_checkpoint
    from swedge.errors import SwedgeError
    from swedge.evaluate import evaluate_checkpoint
    from swedge.io import atomic_write_json
    from swedge.report.heatmap import save_heatmap
    from swedge.training.config import check_device

    if args.batch_size < 1 or args.workers < 0:
        raise SwedgeError(f"--batch-size must be >= 1 and --workers >= 0, got {args.batch_size} and {args.workers}")
    check_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, widths=args.widths)
    matrix = evaluate_checkpoint(ckpt, args.data, widths=args.widths, batch_size=args.batch_size,
                                 workers=args.workers, device=args.device)
    print(matrix.format_table("map"))
    print()
    print(matrix.format_table("rank1"))
    if args.json:
        atomic_write_json(args.json, {"checkpoint": str(args.checkpoint), "checkpoint_sha256": ckpt.file_sha256,
                                      "data": str(args.data), **matrix.to_dict()})
        print(f"json: {args.json}")
    png = args.png or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if png:
        name = Path(args.checkpoint)
        save_heatmap(matrix.map, matrix.widths, png, title=f"cross-model mAP: {name.parent.name}/{name.name}")
        print(f"heat-map: {png}")
    return 0
