"""The training loop shared by every method: data, optimiser, schedule, logging, checkpoints, resume.

The method (``swedge.methods``) only turns a batch into gradients; everything else lives here, so the loop
has no per-method branches. Launched by ``torchrun``, every process runs this loop on its share of each
global batch (``swedge.training.distributed``); rank 0 alone writes files and shows progress.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from swedge.training import distributed
from swedge.checkpoint import save_checkpoint
from swedge.training.contention import ContentionWatch
from swedge.data.dataset import loader_batches
from swedge.errors import SwedgeError
from swedge.training.host_memory import retain_freed_memory
from swedge.io import atomic_write_bytes
from swedge.methods import METHODS
from swedge.methods.base import StepContext
from swedge.nn.model import ModelConfig, build_model
from swedge.training import RESULT_NEUTRAL
from swedge.training.config import LATER_FIELDS, TrainConfig, check_config, lr_factor

CKPT_FILE, LOG_FILE, STATE_FILE = "model.safetensors", "train_log.jsonl", "trainer_state.pt"
RUN_FILES = (CKPT_FILE, LOG_FILE, STATE_FILE)  # a folder holding any of them is a run (--force may replace it)
STATE_FORMAT = 1
# Train-log fields about the machine (how long, how contended), not about what was learned: they differ between
# otherwise identical runs.
MACHINE_LOG_FIELDS = ("elapsed_s", "cpu_wait_share", "peak_mem_gib")
# Settings a resumed run may change: they do not change the loss trajectory (max_steps only where it stops).
RESUMABLE_CHANGES = (*RESULT_NEUTRAL, "channels_last", "max_steps")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SeededItems(torch.utils.data.Dataset):
    """Items ``(index, epoch, draw)`` from ``StepBatches``: each image's augmentation is drawn from
    (seed, epoch, draw) rather than the loader's RNG streams, so it does not depend on the number of
    processes or workers, and a resumed run sees the same images as an uninterrupted one."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        index, epoch, draw = item
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG where it was (workers=0)
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, draw]).generate_state(1)[0]))
            return self.dataset[index]


def build_train_loader(cfg: TrainConfig, world: distributed.World = distributed.World()):
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
    dataset = SeededItems(ImageDataset(splits.train, train_transform, labels=labels), cfg.seed)
    pk = PKSampler(labels, cfg.ids_per_batch * cfg.images_per_id, cfg.images_per_id, seed=cfg.seed)
    batches = distributed.StepBatches(pk, world, cfg.batch_shards)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0,
                        pin_memory=torch.device(cfg.device).type == "cuda")  # lets .to(non_blocking) overlap
    return loader, batches, len(id_map), preprocess


def train(cfg: TrainConfig, progress: bool = True, *, resume: bool = False, overwrite: bool = True) -> Path:
    """Train one switchable checkpoint; returns the path of ``OUT/model.safetensors``.

    ``resume``: continue from the last completed epoch saved in OUT. ``overwrite``: start afresh in an OUT
    that already holds a run (library callers manage their folders; ``swedge train`` passes ``--force``).
    Under torchrun (WORLD_SIZE > 1) joins the process group and trains with DistributedDataParallel.
    """
    check_config(cfg)
    method_cls = METHODS.get(cfg.method)
    method = method_cls(method_cls.parse_options(cfg.method_options))
    out = Path(cfg.out)
    _check_out(out, resume, overwrite)
    world, device = distributed.init(cfg.device)
    _train(replace(cfg, device=device), method, world, progress, resume)  # cuda -> cuda:LOCAL_RANK
    # Only after _train returned: DDP, freed with its frame, talks to the process group as it goes. After
    # an error the group is left to the process's exit, so a failing rank never waits for the others.
    distributed.shutdown(world)
    if world.main:
        from swedge.report.train_plot import save_train_plot

        save_train_plot(out / LOG_FILE, out / "train_log.png", title=f"{cfg.method} ({cfg.arch})")
    return out / CKPT_FILE


def _train(cfg: TrainConfig, method, world: distributed.World, progress: bool, resume: bool) -> None:
    out = Path(cfg.out)
    state_path = out / STATE_FILE
    _seed_everything(cfg.seed)
    loader, batches, num_ids, preprocess = build_train_loader(cfg, world)
    if len(loader) == 0:
        raise SwedgeError("the training split is smaller than one global batch: lower "
                          "--ids-per-batch/--images-per-id (or use fewer processes)")
    config = ModelConfig(cfg.arch, tuple(cfg.widths), cfg.embedding_dim, num_ids, extra=method.model_extra())
    model = build_model(config)
    init = {}
    if cfg.imagenet:
        _load_imagenet(cfg, model)
    if cfg.init:
        from swedge.nn.pretrained import load_init

        source = load_init(model, cfg.init)
        init = {"init_name": source.name, "init_sha256": source.sha256}  # the file's content, not only its path
    key = {**_resume_key(cfg, world, len(loader.dataset), num_ids), "init_sha256": init.get("init_sha256", "")}
    state = _load_state(state_path, key) if resume else None
    if state is not None:
        with _restoring(state_path):
            model.load_state_dict(state["model"])
    model.to(cfg.device)
    if torch.device(cfg.device).type == "cpu":
        retain_freed_memory()  # SFSC's per-width gradient sets otherwise page-fault back in every step
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            state_path.unlink(missing_ok=True)  # a stale state would let --resume mix two runs
    training = {**_jsonable(cfg), **init, "world_size": world.size}
    meta = dict(preprocess=preprocess.to_dict(), method=method.describe(), training=training)
    _Run(cfg, model, method, loader, batches, out, meta, world, key).fit(progress, state)


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out / STATE_FILE).is_file():
            raise SwedgeError(f"nothing to resume in {out}: it holds no {STATE_FILE} (written after each "
                              "completed epoch); start the run without --resume")
    elif not overwrite and ((out / CKPT_FILE).exists() or (out / STATE_FILE).exists()):
        raise SwedgeError(f"{out} already holds a training run: continue it with --resume, choose a new "
                          "--out folder, or replace it with --force")


def _resume_key(cfg: TrainConfig, world: distributed.World, images: int, ids: int) -> dict:
    """What must not change between a run and its resume (the loss trajectory depends on it)."""
    key = {k: v for k, v in _jsonable(cfg).items() if k not in RESUMABLE_CHANGES}
    key.update(data=str(Path(cfg.data).resolve()), train_images=images, train_ids=ids, world_size=world.size)
    return key


def _load_state(path: Path, key: dict) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles arbitrary objects
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # weights_only errors run for lines
        raise SwedgeError(f"cannot read {path} ({reason}): it is damaged; start a new run") from None
    if not isinstance(state, dict):
        raise SwedgeError(f"{path} holds a {type(state).__name__}, not a trainer state: it is damaged or not "
                          "swedge's; start a new run")
    if state.get("format") != STATE_FORMAT:
        raise SwedgeError(f"{path} has trainer-state format {state.get('format')!r}, this swedge reads "
                          f"{STATE_FORMAT}; start a new run")
    kinds = {"key": dict, "model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict,
             "phase": int, "epochs_done": int, "step": int, "elapsed_s": (int, float)}
    wrong = [k for k, kind in kinds.items() if not isinstance(state.get(k), kind)]
    if wrong:
        raise SwedgeError(f"{path} lacks or has the wrong type for {', '.join(wrong)}: it is damaged; start a new run")
    saved = {**LATER_FIELDS, **state["key"]}
    diff = [f"{k}: saved {saved.get(k)!r}, now {key.get(k)!r}" for k in sorted(set(saved) | set(key))
            if saved.get(k) != key.get(k)]
    if diff:
        raise SwedgeError("--resume needs the settings of the run in the folder; these differ: " + "; ".join(diff))
    return state


@contextlib.contextmanager
def _restoring(path: Path):
    """Restoring the parts of a trainer state: what torch and numpy raise for parts that do not fit (a damaged
    or edited file that passed _load_state's checks) becomes one line naming the file."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SwedgeError(f"{path} does not fit this run ({reason}): it is damaged; start a new run") from None


def _rng_state(device: str) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _load_imagenet(cfg: TrainConfig, model) -> None:
    """The backbone's registered ``imagenet`` pretrained source into every member (check_config has checked that
    the arch has one)."""
    from swedge.nn.pretrained import backbones_of, load_source

    for backbone in backbones_of(model):
        load_source(backbone, cfg.arch, "imagenet")


class _Run:
    """One training run: phases x epochs x steps, with autocast, logging, atomic checkpoints and resume."""

    def __init__(self, cfg: TrainConfig, model, method, loader, batches, out: Path, meta: dict,
                 world: distributed.World, key: dict):
        self.cfg, self.model, self.method, self.loader, self.batches = cfg, model, method, loader, batches
        self.world, self.key, self.meta = world, key, meta
        self.ckpt_path, self.log_path, self.state_path = out / CKPT_FILE, out / LOG_FILE, out / STATE_FILE
        self.net = distributed.wrap(model, world, cfg.device, cfg.batch_shards)
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
            out = self.net(images)  # through DDP when distributed: the backward that follows all-reduces
        # Autocast covers the network; the methods' losses run on float32 outside it (full-precision losses,
        # and some of their ops, e.g. cdist on the CPU, have no bf16 kernel).
        return {k: v.float() for k, v in out.items()}

    def backward(self, loss):
        self.scaler.scale(loss).backward()

    def _optimizer(self):
        make = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[self.cfg.optimizer]
        optimizer = make(self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        per_epoch, total = len(self.loader), self.steps_per_phase
        warmup = int(self.cfg.warmup_epochs * per_epoch)
        milestones = tuple(int(e * per_epoch) for e in self.cfg.milestones()) if self.cfg.schedule == "step" else None
        rate = self.cfg.decay_rate
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                            lambda s: lr_factor(s, total, warmup, milestones, rate))

    def fit(self, progress: bool, state: dict | None = None) -> None:
        """Train from the start, or from ``state`` (the end of a completed epoch)."""
        from tqdm import tqdm

        cfg, model = self.cfg, self.model
        model.train()
        phase0, epoch0, step = 0, 0, 0
        started = time.time()
        if state is not None:
            phase0, epoch0, step = state["phase"], state["epochs_done"], state["step"]
            started -= state["elapsed_s"]
            if epoch0 == cfg.epochs:  # that phase was complete: the next one starts with a fresh optimiser
                phase0, epoch0 = phase0 + 1, 0
            with _restoring(self.state_path):
                self.scaler.load_state_dict(state["scaler"])
                _set_rng_state(state["rng"], cfg.device)
        bar = tqdm(total=self.total, initial=step, desc=f"train {cfg.method}", unit="step", dynamic_ncols=True,
                   disable=not (progress and self.world.main))
        log = self._open_log(step) if self.world.main else None
        clip = GradClip(cfg.grad_clip)
        watch = ContentionWatch() if self.device_type == "cpu" and self.world.main else None
        try:
            for phase in range(phase0, len(self.phases)):
                widths = self.phases[phase]
                # Each phase (e.g. BCT's frozen full model, then the small ones) gets its own schedule.
                optimizer, scheduler = self._optimizer()
                first = epoch0 if phase == phase0 else 0
                if state is not None and phase == state["phase"]:
                    with _restoring(self.state_path):
                        optimizer.load_state_dict(state["optimizer"])
                        scheduler.load_state_dict(state["scheduler"])
                for epoch in range(first, cfg.epochs):
                    self.batches.set_epoch(phase * cfg.epochs + epoch)
                    for images, labels, _cams in loader_batches(self.loader):
                        images, labels = self._to_device(images), labels.to(cfg.device)
                        optimizer.zero_grad(set_to_none=True)
                        ctx = StepContext(step, self.total, epoch, widths, cfg.seed, self.forward, self.backward,
                                          phase)
                        logs = self.method.train_step(model, images, labels, ctx)
                        self.scaler.unscale_(optimizer)
                        clip.step(self.params)
                        self.scaler.step(optimizer)
                        self.scaler.update()
                        scheduler.step()
                        step += 1
                        bar.update()
                        bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k.startswith("loss@")})
                        if step % cfg.log_every == 0 or step == self.total or step == cfg.max_steps:
                            logs = distributed.mean_over_ranks(logs, self.world, cfg.device)
                            record = {"step": step, "phase": phase, "epoch": epoch + 1,
                                      "lr": scheduler.get_last_lr()[0],
                                      "elapsed_s": round(time.time() - started, 2), **logs, **clip.read()}
                            if self.device_type == "cuda":
                                peak = torch.cuda.max_memory_allocated(cfg.device)
                                record["peak_mem_gib"] = round(peak / 2**30, 3)
                            if watch is not None and (wait := watch.sample()) is not None:
                                record["cpu_wait_share"] = round(wait, 3)
                                if (advice := watch.advice(wait)) is not None:
                                    bar.write(advice, file=sys.stderr)
                            if log is not None:
                                log.write(json.dumps(record) + "\n")
                                log.flush()
                        if step == cfg.max_steps:
                            self._save(phase, epoch, step)  # the weights only: a resume restarts that epoch
                            return
                    # After every epoch, atomically: a kill leaves the last completed epoch, never a
                    # half-written file, and --resume continues from it.
                    self._save(phase, epoch + 1, step, optimizer, scheduler, time.time() - started)
        finally:
            bar.close()
            if log is not None:
                log.close()

    def _open_log(self, step: int):
        """The log for appending: on resume, keep the records up to the resumed step (a killed epoch's
        later records would repeat)."""
        if step == 0 or not self.log_path.is_file():
            return self.log_path.open("w")
        lines = self.log_path.read_text().splitlines()
        kept = [line for line in lines if (at := _step_of(line)) is not None and at <= step]
        atomic_write_bytes(self.log_path, "".join(line + "\n" for line in kept).encode())
        return self.log_path.open("a")

    def _save(self, phase: int, epochs_done: int, step: int, optimizer=None, scheduler=None,
              elapsed: float = 0.0) -> None:
        if not self.world.main:
            return
        # "complete" marks the run's last save (all phases' epochs, or --max-steps reached): loading the
        # checkpoint of a killed run warns.
        complete = step == self.cfg.max_steps or (phase == len(self.phases) - 1 and epochs_done == self.cfg.epochs)
        save_checkpoint(self.ckpt_path, self.model, **self.meta,
                        extra={"phase": phase, "epochs_done": epochs_done, "steps_done": step, "complete": complete})
        if optimizer is None:
            return
        # The model's weights travel in the state too, so one atomic file is a consistent resume point
        # whenever a kill lands.
        state = {"format": STATE_FORMAT, "key": self.key, "phase": phase, "epochs_done": epochs_done,
                 "step": step, "elapsed_s": elapsed, "model": self.model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": _rng_state(self.cfg.device)}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.state_path, buffer.getvalue())

    def _to_device(self, images):
        images = images.to(self.cfg.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else images


class GradClip:
    """Clips each step's total gradient norm to ``max_norm`` (0 = never) and counts, on the device (no host
    sync per step), the steps that were clipped. ``read()`` at each log record: the pre-clip total norm of
    the last step (``grad_norm``), whether it was clipped (``clipped``, 0/1) and how many of the steps since
    the previous record were (``clipped_steps`` of ``clip_steps``)."""

    def __init__(self, max_norm: float):
        self.max_norm = max_norm
        self.count, self.steps, self.norm = None, 0, None

    def step(self, params) -> None:
        # inf: the norm without clipping (the factor min(1, inf / norm) = 1 leaves every gradient bitwise as is)
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm or float("inf"))
        clipped = (norm > self.max_norm) if self.max_norm else torch.zeros((), dtype=torch.bool, device=norm.device)
        self.count = clipped.int() if self.count is None else self.count + clipped.int()
        self.norm, self.last, self.steps = norm, clipped, self.steps + 1

    def read(self) -> dict:
        if self.norm is None:
            return {}
        out = {"grad_norm": round(float(self.norm), 6), "clipped": int(self.last),
               "clipped_steps": int(self.count), "clip_steps": self.steps}
        self.count, self.steps = None, 0
        return out


def _step_of(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None  # blank, or cut short by the kill


def _jsonable(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["widths"] = list(cfg.widths)
    d["input_size"] = list(cfg.input_size)
    d["decay_epochs"] = list(cfg.decay_epochs)
    return d
