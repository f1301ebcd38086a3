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
from swedge.methods.against_full import AgainstFullWidth
from swedge.methods.base import StepContext, full_model_first
from swedge.methods.losses import cross_entropy


class _InfluenceLoss(AgainstFullWidth):
    @dataclass
    class Options:
        influence_weight: float = 1.0
        label_smoothing: float = 0.1
        triplet_weight: float = 1.0
        triplet_margin: float = 0.3

    term_name = "influence"

    def term_weight(self) -> float:
        return self.options.influence_weight

    def term(self, model, images, out, labels, state, ctx: StepContext):
        frozen = model.classifier_of(max(model.widths)).weight.detach()  # stop-gradient: old classifier stays
        return cross_entropy(F.linear(out["embedding"], frozen), labels, self.options.label_smoothing)


@METHODS.register("bct-s")
class BctS(_InfluenceLoss):
    def model_extra(self) -> dict:
        return {"classifier": "per-width"}


@METHODS.register("bct")
class Bct(_InfluenceLoss):
    def model_extra(self) -> dict:
        return {"members": "per-width"}

    def phases(self, widths):
        return full_model_first(widths)
