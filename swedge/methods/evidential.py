"""Uncertainty-based compatible loss: evidential deep learning (Sensoy et al. 2018) in TMC's form (Han et al. 2021).

Logits z give evidence e = f(z) >= 0 and a Dirichlet Dir(p | alpha), alpha = e + 1, S = sum(alpha).
- ACE  = E_{p~Dir(alpha)}[-log p_y] = psi(S) - psi(alpha_y)   (closed form; psi = digamma)
- KL   = KL(Dir(alpha~) || Dir(1)), alpha~ = y + (1 - y) * alpha  (the target's evidence removed)
- loss = mean over the batch of ACE + kl_weight * KL;  uncertainty u = K / S in (0, 1].
dACE/dalpha_y = psi'(S) - psi'(alpha_y) and dACE/dalpha_j = psi'(S) (j != y) both shrink like 1/alpha, so
confident widths get small gradients and uncertain ones large: the "dynamic priority" of SFSC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EVIDENCE_KINDS = ("softplus", "exp", "relu")
EXP_CLAMP = 10.0  # EDL's exp_evidence clamps to [-10, 10]: e^10 ~ 2.2e4 keeps S, lgamma(S) finite in float32


def evidence(logits: torch.Tensor, kind: str = "softplus") -> torch.Tensor:
    """Non-negative evidence from logits: softplus(z), exp(clamp(z, -10, 10)) or relu(z)."""
    if kind == "softplus":
        return F.softplus(logits)
    if kind == "exp":
        return torch.exp(logits.clamp(-EXP_CLAMP, EXP_CLAMP))
    if kind == "relu":
        return F.relu(logits)
    raise ValueError(f"unknown evidence kind {kind!r}; choose one of {', '.join(EVIDENCE_KINDS)}")


def dirichlet_ace(alpha: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample psi(S) - psi(alpha_y), the integral of CE against Dir(p | alpha)."""
    alpha_y = alpha.gather(1, labels[:, None]).squeeze(1)
    return torch.digamma(alpha.sum(1)) - torch.digamma(alpha_y)


def dirichlet_kl_uniform(alpha: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(Dir(alpha~) || Dir(1)) with alpha~ = alpha except alpha~_y = 1."""
    a = alpha.scatter(1, labels[:, None], 1.0)
    s = a.sum(1)
    k = alpha.shape[1]
    return (torch.lgamma(s) - math.lgamma(k) - torch.lgamma(a).sum(1)
            + ((a - 1) * (torch.digamma(a) - torch.digamma(s)[:, None])).sum(1))


@dataclass
class EvidentialOutput:
    loss: torch.Tensor  # scalar to backpropagate: mean(ACE + kl_weight * KL)
    ace: torch.Tensor  # mean ACE (still attached to the graph)
    kl: torch.Tensor  # mean KL (still attached to the graph)
    uncertainty: torch.Tensor  # mean K / S, detached


def evidential_loss(logits: torch.Tensor, labels: torch.Tensor, *, kl_weight: float,
                    evidence_fn: str = "softplus", logit_scale: float = 1.0) -> EvidentialOutput:
    """Evidential loss on (B, K) logits and (B,) class indices; ``logit_scale`` multiplies the logits first
    (e.g. the scale s of cosine logits, which otherwise lie in [-1, 1] and carry almost no evidence)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"need (B, K) logits and (B,) labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    # digamma/lgamma in half precision lose the small differences ACE is made of: always float32, no autocast.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        alpha = evidence(logits.float() * logit_scale, evidence_fn) + 1.0
        ace = dirichlet_ace(alpha, labels)
        kl = dirichlet_kl_uniform(alpha, labels)
        loss = (ace + kl_weight * kl).mean()
        uncertainty = (alpha.shape[1] / alpha.sum(1)).mean().detach()
    return EvidentialOutput(loss=loss, ace=ace.mean(), kl=kl.mean(), uncertainty=uncertainty)


def kl_annealing(step: int, total_steps: int, *, weight: float, schedule: str = "linear",
                 ramp_fraction: float = 1.0) -> float:
    """KL weight at ``step`` (0-based).

    - "linear": weight * min(1, step / ramp), ramp = ramp_fraction * total_steps (TMC/EDL's min(1, t/T) with
      T = ramp; 0 at the first step, the full weight from step ``ramp`` on; ramp <= 0 means no ramp).
    - "constant": weight at every step (PrunNet's effective 5e-4).
    """
    if schedule == "constant":
        return float(weight)
    if schedule != "linear":
        raise ValueError(f"unknown KL schedule {schedule!r}; choose 'linear' or 'constant'")
    ramp = ramp_fraction * total_steps
    if ramp <= 0:
        return float(weight)
    return float(weight) * min(1.0, max(0, step) / ramp)
