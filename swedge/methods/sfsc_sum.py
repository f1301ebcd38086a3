"""`sfsc-sum`: the naive aggregation SFSC improves on. Every width's embedding goes through the one shared
classifier (CE, optionally + batch-hard triplet); the per-width gradients are summed.

Widths run largest first, each with its own forward and backward, so only one width's graph is alive at a
time (backward accumulates into .grad, which equals the gradient of the summed loss).
"""

from __future__ import annotations

from dataclasses import dataclass

from swedge.methods import METHODS
from swedge.methods.base import Method, StepContext, check_finite
from swedge.methods.losses import batch_hard_triplet, cross_entropy


@METHODS.register("sfsc-sum")
class SfscSum(Method):
    name = "sfsc-sum"

    @dataclass
    class Options:
        label_smoothing: float = 0.1
        triplet_weight: float = 1.0
        triplet_margin: float = 0.3

    def width_loss(self, out: dict, labels):
        o = self.options
        ce = cross_entropy(out["logits"], labels, o.label_smoothing)
        tri = batch_hard_triplet(out["feat"], labels, o.triplet_margin) if o.triplet_weight else ce * 0.0
        return ce + o.triplet_weight * tri, {"ce": float(ce.detach()), "triplet": float(tri.detach())}

    def train_step(self, model, images, labels, ctx: StepContext) -> dict:
        logs = {}
        for width in ctx.widths:
            model.set_width(width)
            loss, parts = self.width_loss(ctx.forward(images), labels)
            logs[f"loss@{width}"] = check_finite(loss, width, ctx)
            for k, v in parts.items():
                logs[f"{k}@{width}"] = v
            ctx.backward(loss)
        return logs
