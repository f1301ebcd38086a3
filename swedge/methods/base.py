"""What every training method shares: options parsing, the per-width loop contract, NaN guards."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Callable

import torch

from swedge.errors import SwedgeError


class NonFiniteLossError(SwedgeError):
    """A loss became NaN/Inf; the message names the width and the step."""


@dataclass
class StepContext:
    """What a method sees of the trainer for one step.

    ``forward``/``backward`` are the trainer's (autocast, DistributedDataParallel, gradient scaling live
    there); methods call them instead of ``model.forward_train`` / ``loss.backward`` so every method runs
    unchanged on CPU, one GPU or several.
    """

    step: int  # 0-based global step
    total_steps: int
    epoch: int
    widths: tuple[float, ...] = ()  # widths trained in this phase, largest first
    seed: int = 0
    forward: Callable | None = None  # images -> {"feat", "embedding", "logits"} at the model's active width
    backward: Callable | None = None  # loss -> None
    phase: int = 0
    extras: dict = field(default_factory=dict)

    def rng(self) -> random.Random:
        """Deterministic per (seed, step): identical on every rank and after a resume."""
        return random.Random(self.seed * 1_000_003 + self.step)


class Method:
    """Base class. Subclasses (their ``name`` comes from METHODS.register) set an ``Options`` dataclass and implement ``train_step``."""

    name = "base"  # set by METHODS.register

    @dataclass
    class Options:
        pass

    def __init__(self, options: "Method.Options"):
        self.options = options

    def model_extra(self) -> dict:
        """Structure this method needs in the model (ModelConfig.extra), e.g. private classifiers."""
        return {}

    def phases(self, widths: tuple[float, ...]) -> list[tuple[float, ...]]:
        """Widths trained in each training phase (largest first); one phase trains all widths together."""
        return [tuple(sorted(widths, reverse=True))]

    @classmethod
    def parse_options(cls, pairs: list[str] | None) -> "Method.Options":
        """Build Options from ``key=value`` strings, with a clear error for unknown keys or bad values."""
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        values = {}
        for pair in pairs or ():
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                known = ", ".join(fields) or "(none)"
                raise SwedgeError(f"method '{cls.name}' has no option '{pair}'; its options are: {known}")
            kind = type(fields[key].default)
            try:
                values[key] = (raw.lower() in ("1", "true", "yes")) if kind is bool else kind(raw)
            except ValueError:
                raise SwedgeError(f"option {key} of method '{cls.name}' needs a {kind.__name__}, got '{raw}'") \
                    from None
        return cls.Options(**values)

    def describe(self) -> dict:
        return {"name": self.name, "options": dataclasses.asdict(self.options)}

    def train_step(self, model, images: torch.Tensor, labels: torch.Tensor, ctx: StepContext) -> dict:
        """Accumulate gradients into ``.grad`` for one batch; return scalar logs (floats)."""
        raise NotImplementedError


def full_model_first(widths: tuple[float, ...]) -> list[tuple[float, ...]]:
    """Phases of the separately trained baselines: the full model alone, then the smaller ones against it."""
    small = tuple(sorted((w for w in widths if w != max(widths)), reverse=True))
    return [(max(widths),)] + ([small] if small else [])


def check_finite(loss: torch.Tensor, width: float, ctx: StepContext) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss is {value} at width {width}, step {ctx.step + 1} (epoch {ctx.epoch + 1}); "
                                 "lower the learning rate or check the data. The last good checkpoint is kept.")
    return value


def options_help(method_cls: type[Method]) -> str:
    parts = [f"{f.name}={f.default}" for f in dataclasses.fields(method_cls.Options)]
    return ", ".join(parts) if parts else "(no options)"
