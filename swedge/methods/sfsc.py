"""`sfsc` (CVPR 2023) and its ablation ladder.

Per step, for each width (largest first): forward, loss, a separate backward, keep that width's gradient.
- Magnitude: the sub-widths' compatible loss is the evidential (uncertainty-based) loss on the shared
  classifier's logits, so confident widths get small gradients and uncertain ones larger (``uncertainty``).
- Direction: PCGrad across the widths' gradients removes conflicting components (``projection``), then the
  merge sums the projected gradients (``merge=sum``, PCGrad's Algorithm 1 and the authors' code; ``merge=mean``
  takes the mean for parameters every width uses and the sum for width-private ones, an option).
The full width uses plain CE by default (``full_width_loss``); ``evidential_logits=cosine`` applies the
evidential loss to scaled cosine logits (a variant measured in the study, not the paper's default).
``evidential_bias``: a learnable per-class bias added to the logits on the evidential path only (the shared
classifier is bias-free on a BNNeck with its shift frozen at 0, so in train mode every class has zero
batch-mean logit and softplus evidence >= ln 2 on average: K/S cannot leave ~0.5 without a bias). Off by default
(the paper has none); a model parameter (``evidential_bias`` in ModelConfig.extra), trained and checkpointed,
never part of the embedding or an export. ``neck_shift``: the other way the issue names, the BNNeck's shift
trained instead of frozen (``neck_shift`` in ModelConfig.extra): the logits W(x̂ + β_w) get a per-width,
per-class offset Wβ_w, for CE and evidence alike, and β_w moves each width's embedding (and so its cross-test).

The ablation ladder differs by ONE mechanism per rung: sfsc-sum (CE, no projection, sum) ->
sfsc-projection-only (+projection) / sfsc-uncertainty-only (+evidential loss) -> sfsc (both); sfsc-sum is
``sfsc`` with SFSC_SUM_OPTIONS (tests/test_methods.py checks both, bitwise).

Logged per width: loss, and the evidential reading of the logits the width's loss sees (a diagnostic for CE
widths too): ``ace@w``, ``alpha_y_over_s@w``, ``uncertainty@w`` (K/S); per step, the share of conflicting
gradient pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from swedge.errors import SwedgeError
from swedge.methods import METHODS
from swedge.methods.base import Method, StepContext, check_finite
from swedge.methods.evidential import EVIDENCE_KINDS, evidential_loss, evidential_reading, kl_annealing
from swedge.methods.losses import batch_hard_triplet, cross_entropy
from swedge.methods.projection import GRANULARITIES, MERGES, merge, project_conflicts


@METHODS.register("sfsc")
class Sfsc(Method):
    @dataclass
    class Options:
        uncertainty: bool = True  # evidential loss on the sub-widths (False: CE through the shared classifier)
        projection: str = "vector"  # vector | tensor | kernel | none
        merge: str = "sum"  # sum (every parameter summed; PCGrad) | mean (shared parameters; private ones summed)
        evidence_fn: str = "softplus"  # softplus | exp | relu
        kl_weight: float = 0.01
        kl_schedule: str = "linear"  # linear ramp over kl_ramp of training, or constant
        kl_ramp: float = 0.5
        evidential_logits: str = "linear"  # linear (shared classifier) | cosine (scaled cosine logits)
        logit_scale: float = 16.0  # only for cosine logits
        full_width_loss: str = "ce"  # ce | evidential
        evidential_bias: bool = False  # a learnable per-class bias on the evidential path only
        neck_shift: bool = False  # train the BNNeck's shift (part of the embedding) instead of freezing it at 0
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
        if o.evidential_bias and not o.uncertainty:
            raise SwedgeError(f"option evidential_bias=true of method '{self.name}' needs uncertainty=true "
                              "(the bias lives on the evidential path only)")

    def model_extra(self) -> dict:
        flags = {"evidential_bias": self.options.evidential_bias, "neck_shift": self.options.neck_shift}
        return {key: True for key, on in flags.items() if on}

    def _evidential_logits(self, model, out, width):
        """The logits the evidential loss (and the K/S reading) sees: the shared classifier's, or scaled cosine
        ones; plus the evidential bias where the model has one."""
        o = self.options
        logits = out["logits"]
        if o.evidential_logits == "cosine":
            weight = model.classifier_of(width).weight
            logits = o.logit_scale * F.linear(F.normalize(out["embedding"].float()), F.normalize(weight.float()))
        bias = getattr(model, "evidential_bias", None)
        return logits if bias is None else logits + bias

    def _compatible_loss(self, model, out, labels, width, evidential: bool, ctx: StepContext):
        o = self.options
        if not evidential:
            reading = evidential_reading(self._evidential_logits(model, out, width).detach(), labels,
                                         evidence_fn=o.evidence_fn, smoothing=o.label_smoothing)
            return cross_entropy(out["logits"], labels, o.label_smoothing), reading
        kl = kl_annealing(ctx.step, ctx.total_steps, weight=o.kl_weight, schedule=o.kl_schedule,
                          ramp_fraction=o.kl_ramp)
        res = evidential_loss(self._evidential_logits(model, out, width), labels, kl_weight=kl,
                              evidence_fn=o.evidence_fn, smoothing=o.label_smoothing)
        reading = {"ace": float(res.ace.detach()), "alpha_y_over_s": float(res.alpha_y_over_s),
                   "uncertainty": float(res.uncertainty)}
        return res.loss, reading

    def train_step(self, model, images, labels, ctx: StepContext) -> dict:
        o, full, logs = self.options, max(model.widths), {}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        grads = []
        for width in ctx.widths:
            model.set_width(width)
            out = ctx.forward(images)
            evidential = o.uncertainty and (width != full or o.full_width_loss == "evidential")
            loss, reading = self._compatible_loss(model, out, labels, width, evidential, ctx)
            if o.triplet_weight:
                loss = loss + o.triplet_weight * batch_hard_triplet(out["feat"], labels, o.triplet_margin)
            logs[f"loss@{width}"] = check_finite(loss, width, ctx)
            logs.update({f"{k}@{width}": v for k, v in reading.items()})
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


# sfsc-sum is sfsc with both mechanisms off (and sfsc's other defaults): the bottom rung of the ladder.
SFSC_SUM_OPTIONS = {"uncertainty": False, "projection": "none"}


@METHODS.register("sfsc-projection-only")
class SfscProjectionOnly(Sfsc):
    @dataclass
    class Options(Sfsc.Options):
        uncertainty: bool = False


@METHODS.register("sfsc-uncertainty-only")
class SfscUncertaintyOnly(Sfsc):
    @dataclass
    class Options(Sfsc.Options):
        projection: str = "none"
