"""`sfsc` (CVPR 2023) and its ablation ladder.

Per step, for each width (largest first): forward, loss, a separate backward, keep that width's gradient.
- Magnitude: the sub-widths' compatible loss is the evidential (uncertainty-based) loss on the shared
  classifier's logits, so confident widths get small gradients and uncertain ones larger (``uncertainty``).
- Direction: PCGrad across the widths' gradients removes conflicting components (``projection``), then the
  merge takes the mean for parameters every width uses and the sum for width-private ones (switchable BN).
The full width uses plain CE by default (``full_width_loss``); ``evidential_logits=cosine`` applies the
evidential loss to scaled cosine logits (a variant measured in the study, not the paper's default).

Logged per width: loss, uncertainty K/S (of the evidential parametrisation, a diagnostic for CE widths too)
and, per step, the share of conflicting gradient pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from swedge.errors import SwedgeError
from swedge.methods import METHODS
from swedge.methods.base import Method, StepContext, check_finite
from swedge.methods.evidential import EVIDENCE_KINDS, evidence, evidential_loss, kl_annealing
from swedge.methods.losses import batch_hard_triplet, cross_entropy
from swedge.methods.projection import GRANULARITIES, MERGES, merge, project_conflicts


@METHODS.register("sfsc")
class Sfsc(Method):
    name = "sfsc"

    @dataclass
    class Options:
        uncertainty: bool = True  # evidential loss on the sub-widths (False: CE through the shared classifier)
        projection: str = "vector"  # vector | tensor | kernel | none
        merge: str = "mean"  # mean (shared parameters; width-private ones summed) | sum (every parameter summed)
        evidence_fn: str = "softplus"  # softplus | exp | relu
        kl_weight: float = 0.01
        kl_schedule: str = "linear"  # linear ramp over kl_ramp of training, or constant
        kl_ramp: float = 0.5
        evidential_logits: str = "linear"  # linear (shared classifier) | cosine (scaled cosine logits)
        logit_scale: float = 16.0  # only for cosine logits
        full_width_loss: str = "ce"  # ce | evidential
        label_smoothing: float = 0.1
        triplet_weight: float = 1.0
        triplet_margin: float = 0.3

    def __init__(self, options):
        super().__init__(options)
        o = options
        checks = {"projection": (o.projection, GRANULARITIES + ("none",)), "merge": (o.merge, MERGES),
                  "evidence_fn": (o.evidence_fn, EVIDENCE_KINDS),
                  "kl_schedule": (o.kl_schedule, ("linear", "constant")),
                  "evidential_logits": (o.evidential_logits, ("linear", "cosine")),
                  "full_width_loss": (o.full_width_loss, ("ce", "evidential"))}
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise SwedgeError(f"option {key}={value!r} of method '{self.name}': choose from {', '.join(allowed)}")

    def _compatible_loss(self, model, out, labels, width, evidential: bool, ctx: StepContext):
        o = self.options
        logits = out["logits"]
        if not evidential:
            return cross_entropy(logits, labels, o.label_smoothing), _uncertainty(logits, o.evidence_fn)
        if o.evidential_logits == "cosine":
            weight = model.classifier_of(width).weight
            logits = o.logit_scale * F.linear(F.normalize(out["embedding"].float()), F.normalize(weight.float()))
        kl = kl_annealing(ctx.step, ctx.total_steps, weight=o.kl_weight, schedule=o.kl_schedule,
                          ramp_fraction=o.kl_ramp)
        res = evidential_loss(logits, labels, kl_weight=kl, evidence_fn=o.evidence_fn)
        return res.loss, float(res.uncertainty)

    def train_step(self, model, images, labels, ctx: StepContext) -> dict:
        o, full, logs = self.options, max(model.widths), {}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        grads = []
        for width in ctx.widths:
            model.set_width(width)
            out = ctx.forward(images)
            evidential = o.uncertainty and (width != full or o.full_width_loss == "evidential")
            loss, u = self._compatible_loss(model, out, labels, width, evidential, ctx)
            if o.triplet_weight:
                loss = loss + o.triplet_weight * batch_hard_triplet(out["feat"], labels, o.triplet_margin)
            logs[f"loss@{width}"] = check_finite(loss, width, ctx)
            logs[f"uncertainty@{width}"] = u
            for _, p in named:
                p.grad = None
            ctx.backward(loss)
            grads.append({n: p.grad for n, p in named if p.grad is not None})
        # Thousands of small ops: one thread is faster than two, and far faster when another process holds a
        # core (measured in benchmarks/bench_step.py).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if o.projection != "none" and len(grads) > 1:
                result = project_conflicts(grads, granularity=o.projection, generator=ctx.rng())
                merged = result.merged(o.merge)
                logs["conflict_share"] = result.conflict_fraction
            else:
                merged = merge(grads, shared_rule=o.merge)
        finally:
            torch.set_num_threads(threads)
        for n, p in named:
            p.grad = merged.get(n)
        return logs


def _uncertainty(logits: torch.Tensor, kind: str) -> float:
    """Mean K/S of the evidential reading of any logits (diagnostic for widths trained with CE)."""
    with torch.no_grad():
        alpha = evidence(logits.float(), kind) + 1
        return float((logits.shape[1] / alpha.sum(1)).mean())


@METHODS.register("sfsc-projection-only")
class SfscProjectionOnly(Sfsc):
    name = "sfsc-projection-only"

    @dataclass
    class Options(Sfsc.Options):
        uncertainty: bool = False


@METHODS.register("sfsc-uncertainty-only")
class SfscUncertaintyOnly(Sfsc):
    name = "sfsc-uncertainty-only"

    @dataclass
    class Options(Sfsc.Options):
        projection: str = "none"
