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
from swedge.methods.against_full import AgainstFullWidth
from swedge.methods.base import StepContext, full_model_first


def asymmetric_triplet(anchor: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor,
                       margin: float) -> torch.Tensor:
    """Batch-hard triplet with anchors from one model and positives/negatives from another (fixed) one."""
    dist = torch.cdist(anchor, reference)
    same = labels[:, None] == labels[None, :]
    hardest_pos = (dist * same).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(hardest_neg)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean() if valid.any() else anchor.sum() * 0.0


class _Asymmetric(AgainstFullWidth):
    @dataclass
    class Options:
        asymmetric_weight: float = 1.0
        label_smoothing: float = 0.1
        triplet_weight: float = 1.0
        triplet_margin: float = 0.3

    term_name = "asymmetric"

    def term_weight(self) -> float:
        return self.options.asymmetric_weight

    def reference_features(self, model, images, state: dict) -> torch.Tensor:
        """Features of the full width for this batch (the -S variant gets them from its own full pass)."""
        return state["full"]["feat"]

    def term(self, model, images, out, labels, state, ctx: StepContext):
        reference = self.reference_features(model, images, state)
        return asymmetric_triplet(out["feat"].float(), reference.float(), labels, self.options.triplet_margin)


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
    def reference_features(self, model, images, state: dict) -> torch.Tensor:
        if "teacher" not in state:  # phase 2: the frozen full model, computed once per step
            teacher = model.member(max(model.widths))
            teacher.eval()  # frozen: no BN statistics updates either
            state["teacher"] = teacher.features(images)
        return state["teacher"]
