"""BCT's influence loss (Shen et al. 2020): a new model's embedding also goes through the old (here: full
width's) classifier, frozen, so it lands in the old embedding space.

`bct-s`: inside one switchable run, each sub-width trains its own classifier plus CE through the full width's
classifier with that classifier's gradient stopped. `bct`: separately trained models; the full model is
trained first (phase 1) and frozen, then each smaller model (phase 2) with its own CE plus the influence loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from swedge.methods import METHODS
from swedge.methods.base import Method, StepContext, check_finite, full_model_first
from swedge.methods.losses import batch_hard_triplet, cross_entropy


class _InfluenceLoss(Method):
    @dataclass
    class Options:
        influence_weight: float = 1.0
        label_smoothing: float = 0.1
        triplet_weight: float = 1.0
        triplet_margin: float = 0.3

    def train_step(self, model, images, labels, ctx: StepContext) -> dict:
        o, full, logs = self.options, max(model.widths), {}
        frozen = model.classifier_of(full).weight.detach()  # stop-gradient: the old classifier stays put
        for width in ctx.widths:
            model.set_width(width)
            out = ctx.forward(images)
            loss = cross_entropy(out["logits"], labels, o.label_smoothing)
            if o.triplet_weight:
                loss = loss + o.triplet_weight * batch_hard_triplet(out["feat"], labels, o.triplet_margin)
            if width != full:
                influence = cross_entropy(F.linear(out["embedding"], frozen), labels, o.label_smoothing)
                logs[f"influence@{width}"] = float(influence.detach())
                loss = loss + o.influence_weight * influence
            logs[f"loss@{width}"] = check_finite(loss, width, ctx)
            ctx.backward(loss)
        return logs


@METHODS.register("bct-s")
class BctS(_InfluenceLoss):
    name = "bct-s"

    def model_extra(self) -> dict:
        return {"classifier": "per-width"}


@METHODS.register("bct")
class Bct(_InfluenceLoss):
    name = "bct"

    def model_extra(self) -> dict:
        return {"members": "per-width"}

    def phases(self, widths):
        return full_model_first(widths)
