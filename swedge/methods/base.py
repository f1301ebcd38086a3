"""What every training method shares: options parsing, the per-width loop contract, NaN guards."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from swedge.errors import SwedgeError


class NonFiniteLossError(SwedgeError):
    """A loss became NaN/Inf; the message names the width and the step."""


@dataclass
class StepContext:
    step: int  # 0-based global step
    total_steps: int
    epoch: int


class Method:
    """Base class. Subclasses set ``name``, an ``Options`` dataclass and implement ``train_step``."""

    name = "base"

    @dataclass
    class Options:
        pass

    def __init__(self, options: "Method.Options"):
        self.options = options

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


def check_finite(loss: torch.Tensor, width: float, ctx: StepContext) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss is {value} at width {width}, step {ctx.step + 1} (epoch {ctx.epoch + 1}); "
                                 "lower the learning rate or check the data. The last good checkpoint is kept.")
    return value


def options_help(method_cls: type[Method]) -> str:
    parts = [f"{f.name}={f.default}" for f in dataclasses.fields(method_cls.Options)]
    return ", ".join(parts) if parts else "(no options)"
