"""slice_model(model, w): a plain standalone nn.Module with genuinely smaller layers for one width.

The module tree is copied and every switchable layer is replaced by ``layer.to_plain()`` (copies of that
width's weight slices and BN); blocks keep their generic forward. No masks, no width state, no classifier:
this is what the exporters see.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from swedge.nn.model import SeparateEmbedders, SwitchableEmbedder
from swedge.nn.slimmable import Switchable


class SlicedEmbedder(nn.Module):
    """The sub-model of one width: backbone -> GAP -> Linear -> BatchNorm1d -> D-dim embedding."""

    def __init__(self, backbone: nn.Module, neck: nn.Linear, neck_bn: nn.BatchNorm1d, width: float):
        super().__init__()
        self.backbone, self.neck, self.neck_bn = backbone, neck, neck_bn
        self.width = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-BN embedding, as SwitchableEmbedder.features."""
        return self.neck(self.backbone(x).mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck_bn(self.features(x))


def _replace_switchable(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, Switchable):
            setattr(module, name, child.to_plain())
        else:
            _replace_switchable(child)


def slice_model(model: SwitchableEmbedder | SeparateEmbedders, width: float) -> SlicedEmbedder:
    if width not in model.widths:
        raise ValueError(f"width {width} is not one of this checkpoint's widths {list(model.widths)}")
    if isinstance(model, SeparateEmbedders):
        return slice_model(model.member(width), width)
    with model.at_width(width):
        backbone = copy.deepcopy(model.backbone)
        _replace_switchable(backbone)
        sliced = SlicedEmbedder(backbone, model.neck.to_plain(), model.neck_bn.to_plain(), width)
    sliced.train(model.training)
    return sliced


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
