import math

import pytest
import torch
from torch.distributions import Dirichlet, kl_divergence

from swedge.methods.evidential import (
    EVIDENCE_KINDS,
    dirichlet_ace,
    dirichlet_kl_uniform,
    evidence,
    evidential_loss,
    kl_annealing,
)


@pytest.mark.parametrize("alpha", [[1.0, 1.0, 1.0, 1.0, 1.0], [1.2, 3.0, 1.0, 7.5, 2.0], [25.0, 1.1, 1.3, 1.0, 4.0]])
@pytest.mark.parametrize("y", [0, 3])
def test_ace_equals_monte_carlo_expected_ce(alpha, y):
    torch.manual_seed(0)
    a = torch.tensor(alpha, dtype=torch.float64)
    samples = Dirichlet(a).sample((200_000,))
    ce = -samples[:, y].log()
    mc, se = ce.mean().item(), ce.std().item() / math.sqrt(len(ce))
    closed = dirichlet_ace(a[None], torch.tensor([y])).item()
    assert abs(closed - mc) < 5 * se + 1e-6, (closed, mc, se)


def test_kl_matches_torch_distributions():
    torch.manual_seed(1)
    alpha = torch.rand(6, 7, dtype=torch.float64) * 20 + 1
    labels = torch.randint(0, 7, (6,))
    tilde = alpha.scatter(1, labels[:, None], 1.0)
    ref = kl_divergence(Dirichlet(tilde), Dirichlet(torch.ones_like(tilde)))
    torch.testing.assert_close(dirichlet_kl_uniform(alpha, labels), ref)
    # Only the target's evidence: alpha~ = 1 everywhere and the KL vanishes.
    onehot = torch.ones(2, 7, dtype=torch.float64).scatter(1, torch.tensor([[2], [5]]), 9.0)
    assert dirichlet_kl_uniform(onehot, torch.tensor([2, 5])).abs().max() < 1e-12


def test_ace_gradient_is_trigamma_difference():
    alpha = torch.tensor([[1.5, 4.0, 2.0, 9.0], [3.0, 1.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([3, 0])
    dirichlet_ace(alpha, labels).sum().backward()
    a, s = alpha.detach(), alpha.detach().sum(1, keepdim=True)
    expected = torch.polygamma(1, s).expand_as(a).clone()  # d/dalpha_j = psi'(S), j != y
    rows = torch.arange(2)
    expected[rows, labels] -= torch.polygamma(1, a[rows, labels])  # d/dalpha_y = psi'(S) - psi'(alpha_y)
    torch.testing.assert_close(alpha.grad, expected)


def _logit_grad_norms(logits, labels, kl_weight=0.0):
    logits = logits.clone().requires_grad_(True)
    per_sample = logits.shape[0] * evidential_loss(logits, labels, kl_weight=kl_weight).loss  # undo the mean
    per_sample.backward()
    return logits.grad.norm(dim=1)


@pytest.mark.parametrize("kl_weight", [0.0, 0.01])
def test_confident_samples_get_smaller_gradients(kl_weight):
    torch.manual_seed(2)
    k, b = 20, 32
    labels = torch.randint(0, k, (b,))
    base = torch.randn(b, k) + 6.0 * torch.nn.functional.one_hot(labels, k)
    # One sample at increasing confidence: the logit gradient norm falls monotonically.
    margins = [0.0, 2.0, 4.0, 8.0, 16.0]
    single = torch.stack([torch.nn.functional.one_hot(labels[0], k) * m for m in margins]).float()
    norms = _logit_grad_norms(single, labels[:1].expand(len(margins)), kl_weight)
    assert torch.all(norms[1:] < norms[:-1]), norms
    # A "small width" (the same logits, less confident) gets a larger gradient than a "large width".
    small = _logit_grad_norms(0.3 * base, labels, kl_weight)
    large = _logit_grad_norms(base, labels, kl_weight)
    assert small.norm() > 2 * large.norm()
    assert (small > large).float().mean() > 0.9


def test_uncertainty_range():
    k = 9
    zeros = evidential_loss(torch.full((4, k), -1e4), torch.arange(4), kl_weight=0.0, evidence_fn="relu")
    assert zeros.uncertainty.item() == pytest.approx(1.0)
    out = evidential_loss(torch.randn(64, k) * 5, torch.randint(0, k, (64,)), kl_weight=0.1)
    assert 0.0 < out.uncertainty.item() <= 1.0
    assert not out.uncertainty.requires_grad


@pytest.mark.parametrize("kind", EVIDENCE_KINDS)
def test_evidence_functions_finite_for_large_logits(kind):
    z = torch.tensor([[-1e4, -50.0, 0.0, 50.0, 1e4]], requires_grad=True)
    e = evidence(z, kind)
    assert torch.all(e >= 0) and torch.all(torch.isfinite(e))
    out = evidential_loss(z.expand(3, 5), torch.tensor([0, 2, 4]), kl_weight=1.0, evidence_fn=kind)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.kl) and torch.all(torch.isfinite(z.grad))
    with pytest.raises(ValueError, match="softplus"):
        evidence(z, "sigmoid")


def test_logit_scale_and_half_precision_input():
    torch.manual_seed(3)
    z, y = torch.randn(8, 11), torch.randint(0, 11, (8,))
    scaled = evidential_loss(z, y, kl_weight=0.05, logit_scale=16.0)
    ref = evidential_loss(16.0 * z, y, kl_weight=0.05)
    torch.testing.assert_close(scaled.loss, ref.loss)
    half = evidential_loss(z.bfloat16(), y, kl_weight=0.05)
    assert half.loss.dtype == torch.float32
    torch.testing.assert_close(half.loss, evidential_loss(z.bfloat16().float(), y, kl_weight=0.05).loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = evidential_loss(z, y, kl_weight=0.05)
    assert auto.loss.dtype == torch.float32
    torch.testing.assert_close(auto.loss, evidential_loss(z, y, kl_weight=0.05).loss)


def test_total_loss_is_ace_plus_weighted_kl():
    torch.manual_seed(4)
    z, y = torch.randn(5, 6) * 3, torch.randint(0, 6, (5,))
    out = evidential_loss(z, y, kl_weight=0.3)
    torch.testing.assert_close(out.loss, out.ace + 0.3 * out.kl)
    # At zero evidence: ACE = psi(K) - psi(1), KL = 0.
    flat = evidential_loss(torch.full((2, 6), -1e4), torch.tensor([0, 1]), kl_weight=1.0, evidence_fn="relu")
    expected = (torch.digamma(torch.tensor(6.0)) - torch.digamma(torch.tensor(1.0))).item()
    assert flat.ace.item() == pytest.approx(expected, abs=1e-5) and flat.kl.item() == pytest.approx(0.0, abs=1e-5)


def test_kl_annealing_schedules():
    assert kl_annealing(0, 100, weight=0.5) == 0.0
    assert kl_annealing(25, 100, weight=0.5) == pytest.approx(0.125)
    assert kl_annealing(100, 100, weight=0.5) == 0.5
    assert kl_annealing(500, 100, weight=0.5) == 0.5
    assert kl_annealing(10, 100, weight=0.5, ramp_fraction=0.2) == pytest.approx(0.25)
    assert kl_annealing(30, 100, weight=0.5, ramp_fraction=0.2) == 0.5
    assert kl_annealing(0, 100, weight=5e-4, schedule="constant") == 5e-4
    assert kl_annealing(0, 100, weight=0.5, ramp_fraction=0.0) == 0.5
    with pytest.raises(ValueError, match="linear"):
        kl_annealing(0, 10, weight=1.0, schedule="cosine")
