"""The training loop shared by every method: data, optimiser, schedule, logging, checkpoints.

The method (``swedge.methods``) only turns a batch into gradients; everything else lives here, so the loop
has no per-method branches.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from swedge.checkpoint import save_checkpoint
from swedge.errors import SwedgeError
from swedge.methods import METHODS
from swedge.methods.base import StepContext
from swedge.nn.model import ModelConfig, build_model
from swedge.nn.slimmable import DEFAULT_WIDTHS


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
    ids_per_batch: int = 8  # P of the PK sampler
    images_per_id: int = 4  # K of the PK sampler
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.3
    grad_clip: float = 10.0
    seed: int = 0
    workers: int = 2
    imagenet: bool = False
    device: str = "cpu"
    amp: str = "off"  # off | bf16 | fp16 (fp16 uses a gradient scaler)
    channels_last: bool = False
    log_every: int = 10


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to 1 % of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


def build_train_loader(cfg: TrainConfig):
    from torch.utils.data import DataLoader

    from swedge.data.dataset import ImageDataset
    from swedge.data.market import load_market, relabel
    from swedge.data.preprocess import Preprocess
    from swedge.data.sampler import PKSampler
    from swedge.data.transforms import build_transforms

    splits = load_market(cfg.data)
    labels, id_map = relabel(splits.train)
    preprocess = Preprocess(size=tuple(cfg.input_size))
    # Pad-and-crop shift scaled to the input (10 px at the usual 256x128; 5 px at 128x64).
    train_transform = build_transforms(preprocess, pad=max(2, preprocess.size[1] // 12))[0]
    dataset = ImageDataset(splits.train, train_transform, labels=labels)
    sampler = PKSampler(labels, cfg.ids_per_batch * cfg.images_per_id, cfg.images_per_id, seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.ids_per_batch * cfg.images_per_id, sampler=sampler,
                        num_workers=cfg.workers, drop_last=True, persistent_workers=cfg.workers > 0)
    return loader, sampler, len(id_map), preprocess


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train one switchable checkpoint; returns the path of ``OUT/model.safetensors``."""
    method_cls = METHODS.get(cfg.method)
    method = method_cls(method_cls.parse_options(cfg.method_options))
    _seed_everything(cfg.seed)
    loader, sampler, num_ids, preprocess = build_train_loader(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if len(loader) == 0:
        raise SwedgeError("the training split is smaller than one batch: lower --ids-per-batch/--images-per-id")
    config = ModelConfig(cfg.arch, tuple(cfg.widths), cfg.embedding_dim, num_ids, extra=method.model_extra())
    model = build_model(config)
    if cfg.imagenet:
        _load_imagenet(cfg, model)
    model.to(cfg.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    meta = dict(preprocess=preprocess.to_dict(), method=method.describe(), training=_jsonable(cfg))
    run = _Run(cfg, model, method, loader, sampler, out, meta)
    run.fit(progress)
    return run.ckpt_path


def _load_imagenet(cfg: TrainConfig, model) -> None:
    from swedge.nn.backbones.mobilenetv2 import load_imagenet

    if cfg.arch != "mobilenetv2":
        raise SwedgeError("--imagenet is available for --arch mobilenetv2 only")
    for member in getattr(model, "members", [model]):
        load_imagenet(member.backbone)


class _Run:
    """One training run: phases x epochs x steps, with autocast, logging and atomic checkpoints."""

    def __init__(self, cfg: TrainConfig, model, method, loader, sampler, out: Path, meta: dict):
        self.cfg, self.model, self.method, self.loader, self.sampler = cfg, model, method, loader, sampler
        self.ckpt_path, self.log_path, self.meta = out / "model.safetensors", out / "train_log.jsonl", meta
        self.phases = method.phases(tuple(cfg.widths))
        self.steps_per_phase = len(loader) * cfg.epochs
        self.total = self.steps_per_phase * len(self.phases)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.device_type = torch.device(cfg.device).type
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=cfg.amp == "fp16")

    def forward(self, images):
        with torch.autocast(self.device_type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return self.model.forward_train(images)

    def backward(self, loss):
        self.scaler.scale(loss).backward()

    def _optimizer(self):
        optimizer = torch.optim.Adam(self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        warmup = int(self.cfg.warmup_epochs * len(self.loader))
        total = self.steps_per_phase
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))

    def fit(self, progress: bool) -> None:
        from tqdm import tqdm

        cfg, model = self.cfg, self.model
        model.train()
        step, started = 0, time.time()
        bar = tqdm(total=self.total, desc=f"train {cfg.method}", unit="step", disable=not progress,
                   dynamic_ncols=True)
        with self.log_path.open("w") as log:
            for phase, widths in enumerate(self.phases):
                # Each phase (e.g. BCT's frozen full model, then the small ones) gets its own schedule.
                optimizer, scheduler = self._optimizer()
                for epoch in range(cfg.epochs):
                    self.sampler.set_epoch(phase * cfg.epochs + epoch)
                    for images, labels, _cams in self.loader:
                        images, labels = self._to_device(images), labels.to(cfg.device)
                        optimizer.zero_grad(set_to_none=True)
                        ctx = StepContext(step, self.total, epoch, widths, cfg.seed, self.forward, self.backward,
                                          phase)
                        logs = self.method.train_step(model, images, labels, ctx)
                        self.scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
                        self.scaler.step(optimizer)
                        self.scaler.update()
                        scheduler.step()
                        step += 1
                        bar.update()
                        bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k.startswith("loss@")})
                        if step % cfg.log_every == 0 or step == self.total:
                            record = {"step": step, "phase": phase, "epoch": epoch + 1,
                                      "lr": scheduler.get_last_lr()[0],
                                      "elapsed_s": round(time.time() - started, 2), **logs}
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                    # Atomic checkpoint after every epoch: a kill leaves the last completed epoch, never a
                    # half-written file.
                    save_checkpoint(self.ckpt_path, model, **self.meta,
                                    extra={"phase": phase, "epochs_done": epoch + 1, "steps_done": step})
        bar.close()

    def _to_device(self, images):
        images = images.to(self.cfg.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else images


def _jsonable(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["widths"] = list(cfg.widths)
    d["input_size"] = list(cfg.input_size)
    return d
