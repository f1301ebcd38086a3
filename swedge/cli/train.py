"""`swedge train`: one switchable checkpoint from a Market-1501-style data folder."""

from __future__ import annotations

import argparse
import os

from swedge.cli.common import TRAINING_FIELDS, add_training_arguments

EXAMPLES = """\
examples:
  swedge train --data data/synth --out runs/r18
  swedge train --data data/orl --out runs/mb --arch mobilenetv2 --imagenet --epochs 10
  swedge train --data data/market --out runs/r50 --arch resnet50 --init resnet50_imagenet.pth
      # your own torchvision-format weights: python -c "import torch, torchvision; torch.save(
      #   torchvision.models.resnet50(weights='DEFAULT').state_dict(), 'resnet50_imagenet.pth')"
  swedge train --data data/synth --out runs/x --method sfsc-sum --opt triplet_weight=0 --widths 0.5,1.0
  swedge train --data data/market --out runs/bot --method sfsc --input-size 256x128 --epochs 120 \\
      --warmup-epochs 10 --schedule step --decay-epochs 40,70 --device cuda --amp bf16   # re-ID "bag of tricks"

  torchrun --standalone --nproc_per_node=4 -m swedge train --data data/market --out runs/ddp --device cuda

writes OUT/model.safetensors (all widths in one file; rewritten atomically after every epoch),
OUT/trainer_state.pt (for --resume), OUT/train_log.jsonl (per-step losses per width, the evidential reading
ace@w / alpha_y_over_s@w / uncertainty@w = K/S, the pre-clip grad_norm and whether the step was clipped
(clipped, clipped_steps of clip_steps since the previous record); on CPU also cpu_wait_share,
the time its threads waited for a core, with a warning when other jobs slow the run) and OUT/train_log.png.
Evaluate with: swedge eval OUT/model.safetensors --data DIR
Under torchrun every process takes its own PK batches: the global batch is processes x P x K. One process per
GPU uses NCCL; with more processes than GPUs they share the GPUs through gloo (to test the DDP path, not fast).
On a GPU the four widths' step is launch-bound at small batches: on an H100, ResNet-50 at 256x128, it cost
4x a full-width step with 64 images and 3x with 256 (benchmarks/gpu_h100/).
"""


def register(sub) -> None:
    from swedge.training.config import TrainConfig

    d = TrainConfig(data="", out="")
    p = sub.add_parser("train", help="train a width-switchable checkpoint", epilog=EXAMPLES + _methods_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train one checkpoint whose sub-models (widths) emit compatible features.")
    p.add_argument("--data", required=True, help="Market-1501-style folder (see `swedge data synth`)")
    p.add_argument("--out", required=True, help="run folder to write the checkpoint and logs into")
    p.add_argument("--method", default=d.method, help=f"training method (default {d.method}; list below)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="a method option (repeatable)")
    add_training_arguments(p, d)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--log-every", type=int, default=d.log_every, help="log every N steps (default %(default)s)")
    p.add_argument("--batch-shards", type=int, default=d.batch_shards, metavar="N",
                   help="each step's batch is N PK batches with batch-norm statistics per PK batch: one process "
                   "reproduces an N-process torchrun run (default %(default)s)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="stop after N steps, schedule unchanged "
                   "(benchmarks; default 0 = train all epochs)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last completed epoch")
    p.add_argument("--force", action="store_true", help="start afresh even if OUT already holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _methods_help() -> str:
    from swedge.methods import METHODS
    from swedge.methods.base import options_help

    lines = ["\nmethods and their options (--opt KEY=VALUE):"]
    lines += [f"  {name:22s} {options_help(METHODS.get(name))}" for name in METHODS]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    from swedge.api import train

    result = train(args.data, args.out, method=args.method, options=args.opt, resume=args.resume, force=args.force,
                   progress=not args.quiet, seed=args.seed, log_every=args.log_every, batch_shards=args.batch_shards,
                   max_steps=args.max_steps, **{k: getattr(args, k) for k in TRAINING_FIELDS})
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process speaks
        print(f"checkpoint: {result.checkpoint}\nnext: swedge eval {result.checkpoint} --data {args.data}")
    return 0
