"""What one training run is: its settings (``TrainConfig``), their checks, and the learning-rate schedule.

``check_config`` runs before anything is read or written, so a bad setting stops ``swedge train`` and
``swedge compare`` with a message naming the flag, instead of a traceback deep in torch (or, for a few of
them, a run that trains nothing and still writes a checkpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from swedge.errors import SwedgeError
from swedge.nn.slimmable import DEFAULT_WIDTHS

# TrainConfig fields added after runs were already recorded, with the value those runs used.
LATER_FIELDS = {"optimizer": "adam", "schedule": "cosine", "decay_epochs": [], "decay_rate": 0.1, "grad_clip": 10.0,
                "init": "", "init_sha256": ""}
# "adam": weight decay is L2 added to the gradient (the seed's recipe), so it is rescaled by Adam's
# normaliser and weighs more where a method's gradient is smaller (e.g. sfsc's mean over widths).
# "adamw": decoupled weight decay (Loshchilov & Hutter), independent of the gradient's scale.
OPTIMIZERS = ("adam", "adamw")
# After the linear warm-up. "cosine": down to 1 % of the base rate at the end. "step": times decay_rate at each
# of decay_epochs (the re-ID "bag of tricks" recipe: x0.1 at epochs 40 and 70 of 120).
SCHEDULES = ("cosine", "step")
AMP_MODES = ("off", "bf16", "fp16")


@dataclass
class TrainConfig:
    data: str
    out: str
    method: str = "sfsc-sum"
    method_options: list[str] = field(default_factory=list)
    arch: str = "resnet18"
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    embedding_dim: int = 256
    input_size: tuple[int, int] = (64, 32)  # small input: a few minutes per run on a 2-core CPU
    epochs: int = 6
    ids_per_batch: int = 8  # P of the PK sampler, per process
    images_per_id: int = 4  # K of the PK sampler
    lr: float = 3e-3
    weight_decay: float = 5e-4
    optimizer: str = "adam"  # see OPTIMIZERS
    warmup_epochs: float = 0.3
    schedule: str = "cosine"  # see SCHEDULES
    decay_epochs: tuple[float, ...] = ()  # step schedule; () = half and three quarters of the epochs
    decay_rate: float = 0.1
    grad_clip: float = 10.0  # max total gradient norm per step; 0 = no clipping (`--grad-clip off`)
    seed: int = 0
    workers: int = 2
    imagenet: bool = False
    init: str = ""  # a torchvision-format state dict to start the backbone from ("" = none; see swedge.nn.pretrained)
    device: str = "cpu"
    amp: str = "off"  # off | bf16 | fp16 (fp16 uses a gradient scaler)
    channels_last: bool = False
    log_every: int = 10
    # Each step's batch (per process) is this many PK batches, BN statistics per PK batch: one process with
    # batch_shards=N sees exactly the global batches of an N-process torchrun run.
    batch_shards: int = 1
    max_steps: int = 0  # stop after this many steps, schedule unchanged (benchmarks, smoke tests); 0 = off

    def milestones(self) -> tuple[float, ...]:
        """Epochs at which the step schedule decays the rate."""
        return tuple(self.decay_epochs) or (self.epochs / 2, self.epochs * 3 / 4)


def check_config(cfg: TrainConfig) -> None:
    """Every setting in its range, or a SwedgeError naming the flag and what would work."""
    from swedge.methods import METHODS

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise SwedgeError(message)

    method_cls = METHODS.get(cfg.method)  # an unknown name, option or option value: its own message
    method_cls(method_cls.parse_options(cfg.method_options))
    finite = (cfg.lr, cfg.weight_decay, cfg.warmup_epochs, cfg.decay_rate, cfg.grad_clip, *cfg.decay_epochs)
    need(all(math.isfinite(v) for v in finite), "learning-rate, weight-decay and schedule settings must be finite")
    need(cfg.epochs >= 1, f"--epochs must be >= 1, got {cfg.epochs}")
    need(cfg.ids_per_batch >= 2, f"--ids-per-batch (P) must be >= 2, got {cfg.ids_per_batch}: a PK batch of one "
         "identity trains nothing (batch norm subtracts what its images share, so the classifier sees no identity, "
         "and batch-hard triplet finds no negative)")
    need(cfg.images_per_id >= 1, f"--images-per-id (K) must be >= 1, got {cfg.images_per_id}")
    need(cfg.embedding_dim >= 1, f"--embedding-dim must be >= 1, got {cfg.embedding_dim}")
    need(cfg.lr > 0, f"--lr must be > 0, got {cfg.lr}")
    need(cfg.weight_decay >= 0, f"--weight-decay must be >= 0, got {cfg.weight_decay}")
    need(cfg.optimizer in OPTIMIZERS, f"unknown optimizer '{cfg.optimizer}': choose one of {', '.join(OPTIMIZERS)}")
    need(0 <= cfg.warmup_epochs <= cfg.epochs,
         f"--warmup-epochs must lie in [0, --epochs={cfg.epochs}], got {cfg.warmup_epochs}")
    need(cfg.schedule in SCHEDULES, f"unknown schedule '{cfg.schedule}': choose one of {', '.join(SCHEDULES)}")
    need(not cfg.decay_epochs or cfg.schedule == "step", "--decay-epochs belongs to --schedule step")
    need(all(0 < e < cfg.epochs for e in cfg.decay_epochs) and list(cfg.decay_epochs) == sorted(cfg.decay_epochs),
         f"--decay-epochs must be ascending epochs inside (0, --epochs={cfg.epochs}), got {list(cfg.decay_epochs)}")
    need(0 < cfg.decay_rate <= 1, f"--decay-rate must lie in (0, 1], got {cfg.decay_rate}")
    need(cfg.grad_clip >= 0, f"--grad-clip must be > 0, or 0 / off for no clipping, got {cfg.grad_clip}")
    need(cfg.workers >= 0, f"--workers must be >= 0 (0 loads data in the training process), got {cfg.workers}")
    need(cfg.amp in AMP_MODES, f"unknown --amp '{cfg.amp}': choose one of {', '.join(AMP_MODES)}")
    need(cfg.log_every >= 1, f"--log-every must be >= 1, got {cfg.log_every}")
    need(cfg.batch_shards >= 1, f"--batch-shards must be >= 1, got {cfg.batch_shards}")
    need(cfg.max_steps >= 0, f"--max-steps must be >= 0 (0 = train all epochs), got {cfg.max_steps}")
    check_device(cfg.device)
    need(not (cfg.init and cfg.imagenet), "--init FILE and --imagenet both choose the backbone's starting weights: "
         "give one")
    if cfg.imagenet:
        from swedge.nn.pretrained import pretrained_sources

        need("imagenet" in pretrained_sources(cfg.arch), f"--imagenet: no shipped ImageNet weights for --arch "
             f"{cfg.arch} (only mobilenetv2 has them); start from a torchvision-format state dict with --init FILE")
    if cfg.init:
        from swedge.nn.pretrained import check_init

        check_init(cfg.arch, cfg.widths, cfg.init)  # the file, its keys and shapes: before anything is written


def parse_grad_clip(text: str) -> float:
    """``--grad-clip``: a max norm > 0, or ``off`` / 0 (no clipping, stored as 0.0)."""
    if text.strip().lower() in ("off", "none", "0", "0.0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise SwedgeError(f"--grad-clip needs a number > 0 or 'off', got '{text}'") from None
    if not (value > 0 and math.isfinite(value)):
        raise SwedgeError(f"--grad-clip needs a number > 0 or 'off', got '{text}'")
    return value


def check_device(device: str) -> None:
    """``cpu`` or a CUDA device this machine has."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SwedgeError(f"unknown --device '{device}': use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    if dev.type != "cuda":
        raise SwedgeError(f"--device {device}: swedge trains on cpu or cuda[:N]")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise SwedgeError(f"--device {device}: no CUDA GPU is usable here (torch {torch.__version__}, {build}); "
                          "use --device cpu, or install a CUDA build of torch on a machine with a GPU")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SwedgeError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def lr_factor(step: int, total: int, warmup: int, milestones: tuple[int, ...] | None = None,
              rate: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to 1 % of the base rate (``milestones`` None), or times ``rate`` at
    each milestone step passed (the step schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    if milestones is not None:
        return rate ** sum(step >= m for m in milestones)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
