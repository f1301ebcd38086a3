"""Width-switchable layers (Slimmable Networks, Yu et al. 2019).

A layer at width w uses the first ``width_channels(C, w)`` channels of its full weight, so every width shares
the leading channels; BatchNorm is private per width ("switchable BN"). Every layer checks that its input has
the channel count of its active width: a width switch that missed a layer (a known trap in slimmable code)
fails loudly at the first mismatching layer instead of silently running a mixed-width network.

``to_plain()`` on each layer returns an ordinary torch layer holding copies of that width's slices; slicing a
whole model is built on it (``swedge.nn.slicing``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)


def width_channels(channels: int, width: float) -> int:
    """Channels a layer of ``channels`` full channels keeps at width ``width`` (at least 1)."""
    return max(1, math.ceil(round(width * channels, 6)))


def check_widths(widths: Sequence[float]) -> tuple[float, ...]:
    """Validate a width list: sorted ascending, unique, in (0, 1], largest exactly 1.0."""
    ws = tuple(float(w) for w in widths)
    if not ws:
        raise ValueError("widths must not be empty")
    if any(not 0 < w <= 1 for w in ws):
        raise ValueError(f"every width must lie in (0, 1], got {list(ws)}")
    if list(ws) != sorted(set(ws)):
        raise ValueError(f"widths must be unique and sorted ascending, got {list(ws)}")
    if ws[-1] != 1.0:
        raise ValueError(f"the largest width must be 1.0 (the full/server model), got {list(ws)}")
    return ws


class Switchable(nn.Module):
    """Base of every width-aware layer: holds the width list and the active width index."""

    def __init__(self, widths: Sequence[float]):
        super().__init__()
        self.widths = check_widths(widths)
        self.width_index = len(self.widths) - 1

    def set_width(self, width: float) -> None:
        if width not in self.widths:
            raise ValueError(f"width {width} is not one of this model's widths {list(self.widths)}")
        self.width_index = self.widths.index(width)

    @property
    def width(self) -> float:
        return self.widths[self.width_index]

    def _check_input(self, x: torch.Tensor, expected: int) -> None:
        if x.shape[1] != expected:
            raise RuntimeError(
                f"{type(self).__name__} at width {self.width} expects {expected} input channels, got "
                f"{x.shape[1]}: the width switch did not reach every layer (use set_width on the whole model)"
            )

    def to_plain(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError


class SlimmableConv2d(Switchable):
    """Conv2d whose input/output channels shrink with the width. ``depthwise`` keeps groups == channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        widths: Sequence[float],
        stride: int = 1,
        padding: int = 0,
        depthwise: bool = False,
        slim_in: bool = True,
        slim_out: bool = True,
        bias: bool = False,
    ):
        super().__init__(widths)
        if depthwise and in_channels != out_channels:
            raise ValueError("a depthwise conv needs in_channels == out_channels")
        self.stride, self.padding, self.depthwise = stride, padding, depthwise
        self.in_list = [width_channels(in_channels, w) if slim_in else in_channels for w in self.widths]
        self.out_list = [width_channels(out_channels, w) if slim_out else out_channels for w in self.widths]
        shape = (out_channels, 1 if depthwise else in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def _slices(self):
        i = self.width_index
        cin, cout = self.in_list[i], self.out_list[i]
        weight = self.weight[:cout] if self.depthwise else self.weight[:cout, :cin]
        bias = None if self.bias is None else self.bias[:cout]
        return cin, cout, weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin, cout, weight, bias = self._slices()
        self._check_input(x, cin)
        return F.conv2d(x, weight, bias, self.stride, self.padding, 1, cout if self.depthwise else 1)

    def to_plain(self) -> nn.Conv2d:
        cin, cout, weight, bias = self._slices()
        conv = nn.Conv2d(cin, cout, weight.shape[-1], self.stride, self.padding,
                         groups=cout if self.depthwise else 1, bias=bias is not None)
        with torch.no_grad():
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv


class SlimmableLinear(Switchable):
    """Linear layer whose input (and optionally output) shrinks with the width."""

    def __init__(self, in_features: int, out_features: int, widths: Sequence[float],
                 slim_in: bool = True, slim_out: bool = False, bias: bool = True):
        super().__init__(widths)
        self.in_list = [width_channels(in_features, w) if slim_in else in_features for w in self.widths]
        self.out_list = [width_channels(out_features, w) if slim_out else out_features for w in self.widths]
        full = nn.Linear(in_features, out_features, bias=bias)  # borrow torch's default init
        self.weight, self.bias = full.weight, full.bias

    def _slices(self):
        i = self.width_index
        cin, cout = self.in_list[i], self.out_list[i]
        return cin, cout, self.weight[:cout, :cin], None if self.bias is None else self.bias[:cout]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin, _, weight, bias = self._slices()
        self._check_input(x, cin)
        return F.linear(x, weight, bias)

    def to_plain(self) -> nn.Linear:
        cin, cout, weight, bias = self._slices()
        lin = nn.Linear(cin, cout, bias=bias is not None)
        with torch.no_grad():
            lin.weight.copy_(weight)
            if bias is not None:
                lin.bias.copy_(bias)
        return lin


class _SwitchableBatchNorm(Switchable):
    """One private BatchNorm per width; the active width's BN normalises the input."""

    bn_class: type[nn.modules.batchnorm._BatchNorm]

    def __init__(self, num_features: int, widths: Sequence[float], slim: bool = True):
        super().__init__(widths)
        self.features_list = [width_channels(num_features, w) if slim else num_features for w in self.widths]
        self.bn = nn.ModuleList(self.bn_class(c) for c in self.features_list)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, self.features_list[self.width_index])
        return self.bn[self.width_index](x)

    def to_plain(self) -> nn.Module:
        src = self.bn[self.width_index]
        bn = self.bn_class(src.num_features, eps=src.eps, momentum=src.momentum)
        bn.load_state_dict(src.state_dict())
        return bn


class SwitchableBatchNorm2d(_SwitchableBatchNorm):
    bn_class = nn.BatchNorm2d


class SwitchableBatchNorm1d(_SwitchableBatchNorm):
    bn_class = nn.BatchNorm1d


def switchable_modules(model: nn.Module) -> list[Switchable]:
    return [m for m in model.modules() if isinstance(m, Switchable)]


def set_width(model: nn.Module, width: float) -> None:
    """Switch every width-aware layer of ``model`` to ``width`` and verify that all of them took it."""
    layers = switchable_modules(model)
    if not layers:
        raise ValueError("model has no switchable layers")
    for m in layers:
        m.set_width(width)
    if active_width(model) != width:  # pragma: no cover - guards against a layer overriding set_width
        raise RuntimeError(f"width switch to {width} did not take effect on every layer")


def active_width(model: nn.Module) -> float:
    """The width every switchable layer is at; raises if the layers disagree (a half-applied switch)."""
    found = {m.width for m in switchable_modules(model)}
    if len(found) != 1:
        raise RuntimeError(f"switchable layers are at different widths {sorted(found)}: call set_width(model, w)")
    return found.pop()
