"""The switchable embedding model: slimmable backbone -> GAP -> slimmable Linear(C·w -> D) -> switchable BN1d.

Every width emits a D-dimensional embedding in one space (retrieval uses it L2-normalised); one bias-free
classifier Linear(D -> num_ids), shared by all widths, is used for training only and never exported.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from swedge.nn.backbones import BACKBONES
from swedge.nn.slimmable import (DEFAULT_WIDTHS, SlimmableLinear, SwitchableBatchNorm1d, active_width,
                                 check_widths, set_width)


@dataclass
class ModelConfig:
    arch: str = "resnet18"
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    embedding_dim: int = 256
    num_classes: int = 1
    extra: dict = field(default_factory=dict)  # method-specific structure (e.g. private classifiers)

    def __post_init__(self):
        self.widths = check_widths(self.widths)
        if self.arch not in BACKBONES:
            BACKBONES.get(self.arch)  # raises with the list of known archs and a suggestion
        if self.embedding_dim < 1 or self.num_classes < 1:
            raise ValueError("embedding_dim and num_classes must be positive")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(arch=d["arch"], widths=tuple(d["widths"]), embedding_dim=int(d["embedding_dim"]),
                   num_classes=int(d["num_classes"]), extra=dict(d.get("extra", {})))


class SwitchableEmbedder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        ws = config.widths
        self.backbone = BACKBONES.get(config.arch)(ws)
        self.neck = SlimmableLinear(self.backbone.out_channels, config.embedding_dim, ws)
        self.neck_bn = SwitchableBatchNorm1d(config.embedding_dim, ws, slim=False)
        nn.init.zeros_(self.neck.bias)
        for bn in self.neck_bn.bn:  # BNNeck: no shift, so the classifier sees a centred embedding
            bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(config.embedding_dim, config.num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    @property
    def widths(self) -> tuple[float, ...]:
        return self.config.widths

    def set_width(self, width: float) -> None:
        set_width(self, width)

    @property
    def width(self) -> float:
        return active_width(self)

    @contextlib.contextmanager
    def at_width(self, width: float):
        """Temporarily switch to ``width`` (restores the previous width afterwards)."""
        previous = self.width
        self.set_width(width)
        try:
            yield self
        finally:
            self.set_width(previous)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-BN embedding (used by triplet losses)."""
        # mean over H, W rather than flatten: keeps the batch dimension dynamic in every exporter.
        return self.neck(self.backbone(x).mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding at the active width (what gets exported and searched)."""
        return self.neck_bn(self.features(x))

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.features(x)
        emb = self.neck_bn(feat)
        return {"feat": feat, "embedding": emb, "logits": self.classifier(emb)}


def build_model(config: ModelConfig) -> SwitchableEmbedder:
    return SwitchableEmbedder(config)
