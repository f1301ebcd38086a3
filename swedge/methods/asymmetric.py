"""Asymmetric metric learning (Budnik & Avrithis 2021): a small model's embeddings are pulled into the full
model's space by a triplet whose anchors come from the small model and positives/negatives from the full one.

`asymmetric-s`: inside one switchable run (full width first; its features detached for the sub-widths).
`asymmetric`: separately trained small models against a full model trained first and frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from swedge.methods import METHODS
from swedge.methods.base import Method, StepContext, check_finite, full_model_first
from swedge.methods.losses import batch_hard_triplet, cross_entropy


def asymmetric_triplet(anchor: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor,
                       margin: float) -> torch.Tensor:
    """Batch-hard triplet with anchors from one model and positives/negatives from another (fixed) one."""
    dist = torch.cdist(anchor, reference)
    same = labels[:, None] == labels[None, :]
    hardest_pos = (dist * same).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(hardest_neg)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean() if valid.any() else anchor.sum() * 0.0


class _Asymmetric(Method):
    @dataclass
    class Options:
        asymmetric_weight: float = 1.0
        label_smoothing: float = 0.1
        triplet_weight: float = 1.0
        triplet_margin: float = 0.3

    def reference_features(self, model, images, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def train_step(self, model, images, labels, ctx: StepContext) -> dict:
        o, full, logs = self.options, max(model.widths), {}
        reference = None
        for width in ctx.widths:
            model.set_width(width)
            out = ctx.forward(images)
            loss = cross_entropy(out["logits"], labels, o.label_smoothing)
            if o.triplet_weight:
                loss = loss + o.triplet_weight * batch_hard_triplet(out["feat"], labels, o.triplet_margin)
            if width == full:
                reference = out["feat"].detach()
            else:
                if reference is None:
                    reference = self.reference_features(model, images, ctx)
                asym = asymmetric_triplet(out["feat"].float(), reference.float(), labels, o.triplet_margin)
                logs[f"asymmetric@{width}"] = float(asym.detach())
                loss = loss + o.asymmetric_weight * asym
            logs[f"loss@{width}"] = check_finite(loss, width, ctx)
            ctx.backward(loss)
        return logs


@METHODS.register("asymmetric-s")
class AsymmetricS(_Asymmetric):
    name = "asymmetric-s"

    def model_extra(self) -> dict:
        return {"classifier": "per-width"}


@METHODS.register("asymmetric")
class Asymmetric(_Asymmetric):
    name = "asymmetric"

    def model_extra(self) -> dict:
        return {"members": "per-width"}

    def phases(self, widths):
        return full_model_first(widths)

    @torch.no_grad()
    def reference_features(self, model, images, ctx: StepContext) -> torch.Tensor:
        teacher = model.member(max(model.widths))
        teacher.eval()  # frozen: no BN statistics updates either
        return teacher.features(images)
