"""Uncertainty-based compatible loss: evidential deep learning (Sensoy et al. 2018) in TMC's form (Han et al. 2021).

Logits z give evidence e = f(z) >= 0 and a Dirichlet Dir(p | alpha), alpha = e + 1, S = sum(alpha).
- ACE  = E_{p~Dir(alpha)}[-log p_y] = psi(S) - psi(alpha_y)   (closed form; psi = digamma); with label
  smoothing eps the target is y = (1 - eps) onehot + eps / K and ACE = E[-sum_k y_k log p_k]
  = psi(S) - sum_k y_k psi(alpha_k) (the same closed form, linear in y)
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


def smoothed_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B, K) targets y = (1 - eps) onehot + eps / K (torch's ``label_smoothing`` convention)."""
    y = torch.full((labels.shape[0], num_classes), smoothing / num_classes, device=labels.device)
    return y.scatter_add_(1, labels[:, None], torch.full_like(y[:, :1], 1.0 - smoothing))


def dirichlet_ace(alpha: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample psi(S) - sum_k y_k psi(alpha_k), the integral of CE with targets y (label-smoothed by
    ``smoothing``) against Dir(p | alpha); with smoothing 0 it is psi(S) - psi(alpha_y)."""
    if smoothing == 0.0:
        alpha_y = alpha.gather(1, labels[:, None]).squeeze(1)
        return torch.digamma(alpha.sum(1)) - torch.digamma(alpha_y)
    y = smoothed_targets(labels, alpha.shape[1], smoothing).to(alpha.dtype)
    return torch.digamma(alpha.sum(1)) - (y * torch.digamma(alpha)).sum(1)


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
    alpha_y_over_s: torch.Tensor  # mean alpha_y / S (the expected probability of the target), detached


def evidential_loss(logits: torch.Tensor, labels: torch.Tensor, *, kl_weight: float,
                    evidence_fn: str = "softplus", logit_scale: float = 1.0,
                    smoothing: float = 0.0) -> EvidentialOutput:
    """Evidential loss on (B, K) logits and (B,) class indices; ``logit_scale`` multiplies the logits first
    (e.g. the scale s of cosine logits, which otherwise lie in [-1, 1] and carry almost no evidence);
    ``smoothing``: the ACE's targets are label-smoothed like cross-entropy's (the KL term keeps the label)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"need (B, K) logits and (B,) labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    # digamma/lgamma in half precision lose the small differences ACE is made of: always float32, no autocast.
    with torch.autocast(device_type=logits.device.type, enabled=False):
        alpha = evidence(logits.float() * logit_scale, evidence_fn) + 1.0
        ace = dirichlet_ace(alpha, labels, smoothing)
        kl = dirichlet_kl_uniform(alpha, labels)
        loss = (ace + kl_weight * kl).mean()
        stats = dirichlet_stats(alpha.detach(), labels)
    return EvidentialOutput(loss=loss, ace=ace.mean(), kl=kl.mean(), uncertainty=stats["uncertainty"],
                            alpha_y_over_s=stats["alpha_y_over_s"])


def dirichlet_stats(alpha: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Batch means of K / S (uncertainty) and alpha_y / S, detached."""
    with torch.no_grad():
        s = alpha.sum(1)
        alpha_y = alpha.gather(1, labels[:, None]).squeeze(1)
        return {"uncertainty": (alpha.shape[1] / s).mean(), "alpha_y_over_s": (alpha_y / s).mean()}


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


def evidential_reading(logits: torch.Tensor, labels: torch.Tensor, *, evidence_fn: str = "softplus",
                       smoothing: float = 0.0) -> dict[str, float]:
    """The evidential reading of any logits, as train-log floats (a diagnostic, no gradient): mean ACE,
    alpha_y / S and K / S. Logged for CE widths too, so every width's K/S can be compared."""
    with torch.no_grad(), torch.autocast(device_type=logits.device.type, enabled=False):
        alpha = evidence(logits.float(), evidence_fn) + 1.0
        stats = dirichlet_stats(alpha, labels)
        return {"ace": float(dirichlet_ace(alpha, labels, smoothing).mean()),
                "alpha_y_over_s": float(stats["alpha_y_over_s"]), "uncertainty": float(stats["uncertainty"])}
