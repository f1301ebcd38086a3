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
    from tqdm import tqdm

    method_cls = METHODS.get(cfg.method)
    method = method_cls(method_cls.parse_options(cfg.method_options))
    _seed_everything(cfg.seed)
    loader, sampler, num_ids, preprocess = build_train_loader(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise SwedgeError("the training split is smaller than one batch: lower --ids-per-batch/--images-per-id")
    model = build_model(ModelConfig(cfg.arch, tuple(cfg.widths), cfg.embedding_dim, num_ids)).to(cfg.device)
    if cfg.imagenet:
        from swedge.nn.backbones.mobilenetv2 import load_imagenet

        if cfg.arch != "mobilenetv2":
            raise SwedgeError("--imagenet is available for --arch mobilenetv2 only")
        load_imagenet(model.backbone)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    ckpt_path = out / "model.safetensors"
    log_path = out / "train_log.jsonl"
    meta = dict(preprocess=preprocess.to_dict(), method=method.describe(), training=_jsonable(cfg))

    model.train()
    step, started = 0, time.time()
    bar = tqdm(total=total, desc=f"train {cfg.method}", unit="step", disable=not progress, dynamic_ncols=True)
    with log_path.open("w") as log:
        for epoch in range(cfg.epochs):
            sampler.set_epoch(epoch)
            for images, labels, _cams in loader:
                images, labels = images.to(cfg.device), labels.to(cfg.device)
                optimizer.zero_grad(set_to_none=True)
                logs = method.train_step(model, images, labels, StepContext(step, total, epoch))
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                bar.update()
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k.startswith("loss@")})
                if step % cfg.log_every == 0 or step == total:
                    record = {"step": step, "epoch": epoch + 1, "lr": scheduler.get_last_lr()[0],
                              "elapsed_s": round(time.time() - started, 2), **logs}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
            # Periodic atomic checkpoint: a kill leaves the last completed epoch's weights, never a half file.
            save_checkpoint(ckpt_path, model, **meta, extra={"epochs_done": epoch + 1})
    bar.close()
    return ckpt_path


def _jsonable(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["widths"] = list(cfg.widths)
    d["input_size"] = list(cfg.input_size)
    return d
