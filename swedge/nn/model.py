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


# ModelConfig.extra's enumerated structure: one shared classifier or one per width; one switchable net or
# (members="per-width") a separate one per width.
CLASSIFIER_KINDS = ("shared", "per-width")
MEMBER_KINDS = ("per-width",)
# extra["evidential_bias"] = True: a learnable per-class bias for the evidential loss (sfsc's
# ``evidential_bias``); used by that loss only, never by forward() (the embedding) nor by an export.
EVIDENTIAL_BIAS_KINDS = (True, False)
# extra["neck_shift"] = True: the BNNeck's shift is trained (sfsc's ``neck_shift``) instead of frozen at 0, so the
# shared classifier's logits can leave zero batch mean; unlike the evidential bias it is part of the embedding.
NECK_SHIFT_KINDS = (True, False)


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


class _WidthSwitch:
    """``at_width`` for any model with ``width`` / ``set_width``."""

    @contextlib.contextmanager
    def at_width(self, width: float):
        """Temporarily switch to ``width`` (restores the previous width afterwards)."""
        previous = self.width
        self.set_width(width)
        try:
            yield self
        finally:
            self.set_width(previous)


class SwitchableEmbedder(_WidthSwitch, nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        ws = config.widths
        self.backbone = BACKBONES.get(config.arch)(ws)
        self.neck = SlimmableLinear(self.backbone.out_channels, config.embedding_dim, ws)
        self.neck_bn = SwitchableBatchNorm1d(config.embedding_dim, ws, slim=False)
        nn.init.zeros_(self.neck.bias)
        if config.extra.get("neck_shift", False) not in NECK_SHIFT_KINDS:
            raise ValueError(f"neck_shift must be true or false, got {config.extra['neck_shift']!r}")
        if not config.extra.get("neck_shift"):
            for bn in self.neck_bn.bn:  # BNNeck: no shift, so the classifier sees a centred embedding
                bn.bias.requires_grad_(False)
        # One classifier shared by every width (what makes the widths compatible), or a private one per width
        # (the `unified`/-S baselines): config.extra["classifier"] = "shared" | "per-width".
        kind = config.extra.get("classifier", "shared")
        if kind not in CLASSIFIER_KINDS:
            raise ValueError(f"unknown classifier kind {kind!r}: use 'shared' or 'per-width'")
        count = 1 if kind == "shared" else len(ws)
        heads = [nn.Linear(config.embedding_dim, config.num_classes, bias=False) for _ in range(count)]
        for head in heads:
            nn.init.normal_(head.weight, std=0.001)
        if kind == "shared":
            self.classifier = heads[0]
        else:
            self.classifiers = nn.ModuleList(heads)
        if config.extra.get("evidential_bias", False) not in EVIDENTIAL_BIAS_KINDS:
            raise ValueError(f"evidential_bias must be true or false, got {config.extra['evidential_bias']!r}")
        if config.extra.get("evidential_bias"):
            self.evidential_bias = nn.Parameter(torch.zeros(config.num_classes))

    @property
    def widths(self) -> tuple[float, ...]:
        return self.config.widths

    def set_width(self, width: float) -> None:
        set_width(self, width)

    @property
    def width(self) -> float:
        return active_width(self)


    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-BN embedding (used by triplet losses)."""
        # mean over H, W rather than flatten: keeps the batch dimension dynamic in every exporter.
        return self.neck(self.backbone(x).mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding at the active width (what gets exported and searched)."""
        return self.neck_bn(self.features(x))

    def classifier_of(self, width: float) -> nn.Linear:
        """The classifier that width ``width`` trains through."""
        if hasattr(self, "classifier"):
            return self.classifier
        return self.classifiers[self.widths.index(width)]

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.features(x)
        emb = self.neck_bn(feat)
        return {"feat": feat, "embedding": emb, "logits": self.classifier_of(self.width)(emb)}


class SeparateEmbedders(_WidthSwitch, nn.Module):
    """One separately trained model per width (the `independent`, `bct`, `asymmetric` baselines), behind the
    same interface as SwitchableEmbedder: switching the width switches the member model.

    Member i is a switchable net with a private classifier that is only ever run at width i, so its
    sub-model at that width is exactly a separately trained model of that size.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        member = ModelConfig(config.arch, config.widths, config.embedding_dim, config.num_classes)
        self.members = nn.ModuleList(SwitchableEmbedder(member) for _ in config.widths)
        self._index = len(config.widths) - 1

    @property
    def widths(self) -> tuple[float, ...]:
        return self.config.widths

    def member(self, width: float) -> SwitchableEmbedder:
        return self.members[self.widths.index(width)]

    def set_width(self, width: float) -> None:
        self.member(width).set_width(width)
        self._index = self.widths.index(width)

    @property
    def width(self) -> float:
        return self.widths[self._index]


    def classifier_of(self, width: float) -> nn.Linear:
        return self.member(width).classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.members[self._index](x)

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.members[self._index].forward_train(x)


def build_model(config: ModelConfig) -> nn.Module:
    if config.extra.get("members") == "per-width":
        return SeparateEmbedders(config)
    return SwitchableEmbedder(config)
