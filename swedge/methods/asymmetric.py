"""Asymmetric metric learning (Budnik & Avrithis 2021): a small model's embeddings are pulled into the full
model's space by a triplet whose anchors come from the small model and positives/negatives from the full one.

`asymmetric-s`: inside one switchable run (full width first; its embedding detached for the sub-widths).
`asymmetric`: separately trained small models against a full model trained first and frozen (eval mode).

The triplet runs on the EVALUATED embedding: the post-BN (BNNeck) embedding ``out["embedding"]`` (what
``model(x)`` returns and ``swedge eval`` searches), L2-normalised, with cosine distance 1 - cos, i.e. exactly
the geometry retrieval ranks by. (It once ran on the pre-BN ``feat`` with Euclidean distance, a space no test
searches.) The margin ``asymmetric_margin`` is on 1 - cos, which lies in [0, 2]: 0.2 by default, a tenth of that
range. For unit vectors ||a - b||^2 = 2 (1 - cos), so near the distances a re-ID embedding puts positives and
negatives at (Euclidean ~1) the usual 0.3 Euclidean margin is roughly 0.3 on 1 - cos; 0.2 asks a little less of a
small model that only has to land in the full model's space, and stays far from the trivial 0 and the 0.5+
margins that no small width satisfies (margins of 0.1-0.3 are the sensible range; an option).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from swedge.methods import METHODS
from swedge.methods.against_full import AgainstFullWidth
from swedge.methods.base import StepContext, full_model_first


ASYMMETRIC_MARGIN = 0.2  # on 1 - cos (see the module doc)


def asymmetric_triplet(anchor: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor,
                       margin: float) -> torch.Tensor:
    """Batch-hard triplet with anchors from one model and positives/negatives from another (fixed) one, on
    L2-normalised embeddings with cosine distance 1 - cos (the retrieval geometry)."""
    dist = 1.0 - F.normalize(anchor, dim=1) @ F.normalize(reference, dim=1).T
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
        asymmetric_margin: float = ASYMMETRIC_MARGIN  # on 1 - cos of the evaluated embeddings

    term_name = "asymmetric"

    def term_weight(self) -> float:
        return self.options.asymmetric_weight

    def reference_features(self, model, images, state: dict) -> torch.Tensor:
        """The full width's evaluated embedding for this batch (the -S variant: from its own full pass,
        detached)."""
        return state["full"]["embedding"]

    def term(self, model, images, out, labels, state, ctx: StepContext):
        reference = self.reference_features(model, images, state)
        return asymmetric_triplet(out["embedding"].float(), reference.float(), labels,
                                  self.options.asymmetric_margin)


@METHODS.register("asymmetric-s")
class AsymmetricS(_Asymmetric):
    def model_extra(self) -> dict:
        return {"classifier": "per-width"}


@METHODS.register("asymmetric")
class Asymmetric(_Asymmetric):
    def model_extra(self) -> dict:
        return {"members": "per-width"}

    def phases(self, widths):
        return full_model_first(widths)

    @torch.no_grad()
    def reference_features(self, model, images, state: dict) -> torch.Tensor:
        if "teacher" not in state:  # phase 2: the frozen full model, computed once per step
            teacher = model.member(max(model.widths))
            teacher.eval()  # frozen: no BN statistics updates either
            state["teacher"] = teacher(images)  # forward(): the embedding that gets exported and searched
        return state["teacher"]
