"""The loop shared by the BCT and asymmetric baselines: every width trains its own classifier (CE, optionally
+ batch-hard triplet) and each smaller width adds one compatibility term against the full width."""

from __future__ import annotations

import torch

from swedge.methods.base import Method, StepContext, check_finite
from swedge.methods.losses import batch_hard_triplet, cross_entropy


class AgainstFullWidth(Method):
    term_name = "compat"  # log key of the compatibility term

    def term(self, model, images, out: dict, labels, state: dict, ctx: StepContext) -> torch.Tensor:
        """The compatibility loss of a smaller width (weight applied by the caller)."""
        raise NotImplementedError

    def term_weight(self) -> float:
        raise NotImplementedError

    def train_step(self, model, images, labels, ctx: StepContext) -> dict:
        o, full, logs, state = self.options, max(model.widths), {}, {}
        for width in ctx.widths:
            model.set_width(width)
            out = ctx.forward(images)
            loss = cross_entropy(out["logits"], labels, o.label_smoothing)
            if o.triplet_weight:
                loss = loss + o.triplet_weight * batch_hard_triplet(out["feat"], labels, o.triplet_margin)
            if width == full:
                state["full"] = {k: v.detach() for k, v in out.items()}  # the full width runs first
            else:
                term = self.term(model, images, out, labels, state, ctx)
                logs[f"{self.term_name}@{width}"] = float(term.detach())
                loss = loss + self.term_weight() * term
            logs[f"loss@{width}"] = check_finite(loss, width, ctx)
            ctx.backward(loss)
        return logs
