"""`sfsc-sum`: the naive aggregation SFSC improves on. Every width's embedding goes through the one shared
classifier (CE, optionally + batch-hard triplet); the per-width gradients are summed.

Widths run largest first, each with its own forward and backward, so only one width's graph is alive at a
time (backward accumulates into .grad, which equals the gradient of the summed loss).

``sub_width_weight`` (default 1) multiplies the sub-widths' CE (never the full width's): a control for the
study, to tell whether the uncertainty loss of ``sfsc`` does more than down-weight the sub-widths. Logged per
width besides the losses: the evidential reading of the logits (``ace@w``, ``alpha_y_over_s@w``,
``uncertainty@w`` = K/S with softplus evidence), so every rung's K/S can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from swedge.methods import METHODS
from swedge.errors import SwedgeError
from swedge.methods.base import Method, StepContext, check_finite
from swedge.methods.evidential import evidential_reading
from swedge.methods.losses import batch_hard_triplet, cross_entropy


@METHODS.register("sfsc-sum")
class SfscSum(Method):
    @dataclass
    class Options:
        label_smoothing: float = 0.1
        triplet_weight: float = 1.0
        triplet_margin: float = 0.3
        sub_width_weight: float = 1.0  # multiplies the sub-widths' CE (not the full width's)

    def __init__(self, options):
        super().__init__(options)
        if not options.sub_width_weight >= 0:
            raise SwedgeError(f"option sub_width_weight of method '{self.name}' must be >= 0, "
                              f"got {options.sub_width_weight}")

    def width_loss(self, out: dict, labels, ce_weight: float = 1.0):
        o = self.options
        ce = cross_entropy(out["logits"], labels, o.label_smoothing)
        tri = batch_hard_triplet(out["feat"], labels, o.triplet_margin) if o.triplet_weight else ce * 0.0
        parts = {"ce": float(ce.detach()), "triplet": float(tri.detach()),
                 **evidential_reading(out["logits"].detach(), labels, smoothing=o.label_smoothing)}
        return (ce if ce_weight == 1.0 else ce_weight * ce) + o.triplet_weight * tri, parts

    def train_step(self, model, images, labels, ctx: StepContext) -> dict:
        logs, full = {}, max(model.widths)
        for width in ctx.widths:
            model.set_width(width)
            weight = 1.0 if width == full else self.options.sub_width_weight
            loss, parts = self.width_loss(ctx.forward(images), labels, weight)
            logs[f"loss@{width}"] = check_finite(loss, width, ctx)
            for k, v in parts.items():
                logs[f"{k}@{width}"] = v
            ctx.backward(loss)
        return logs
