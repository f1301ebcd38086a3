"""sfsc's evidential head: the label-smoothed ACE in closed form, and the evidential bias (a real, trained,
checkpointed model parameter on the evidential path only, never in the embedding)."""

import pytest
import torch

from swedge.checkpoint import load_checkpoint
from swedge.methods import METHODS
from swedge.methods.base import StepContext
from swedge.methods.evidential import dirichlet_ace, evidential_loss
from swedge.nn.model import ModelConfig, build_model
from swedge.training.config import TrainConfig
from swedge.training.trainer import train


def test_smoothed_ace_is_the_expected_smoothed_cross_entropy_monte_carlo():
    torch.manual_seed(0)
    alpha = torch.tensor([[3.0, 1.5, 0.7, 2.2], [0.9, 4.0, 1.1, 1.3]], dtype=torch.float64)
    labels, eps, k = torch.tensor([0, 2]), 0.1, 4
    got = dirichlet_ace(alpha, labels, eps)
    p = torch.distributions.Dirichlet(alpha).sample((400_000,)).clamp_min(1e-300)  # (N, B, K)
    y = torch.nn.functional.one_hot(labels, k).double() * (1 - eps) + eps / k
    mc = -(y * p.log()).sum(-1).mean(0)
    torch.testing.assert_close(got, mc, rtol=5e-3, atol=5e-3)
    # and with no smoothing it is psi(S) - psi(alpha_y), the onehot case
    onehot = torch.digamma(alpha.sum(1)) - torch.digamma(alpha[torch.arange(2), labels])
    torch.testing.assert_close(dirichlet_ace(alpha, labels, 0.0), onehot)
    assert not torch.allclose(got, onehot)  # smoothing changes it


def test_evidential_loss_uses_the_smoothing_and_reports_alpha_y_over_s():
    logits, labels = torch.randn(6, 5, generator=torch.Generator().manual_seed(2)) * 3, torch.arange(6) % 5
    plain = evidential_loss(logits, labels, kl_weight=0.0)
    smooth = evidential_loss(logits, labels, kl_weight=0.0, smoothing=0.1)
    alpha = torch.nn.functional.softplus(logits) + 1
    assert float(smooth.ace) == pytest.approx(float(dirichlet_ace(alpha, labels, 0.1).mean()), rel=1e-6)
    assert float(plain.ace) != pytest.approx(float(smooth.ace), rel=1e-4)
    expected = (alpha[torch.arange(6), labels] / alpha.sum(1)).mean()
    assert float(smooth.alpha_y_over_s) == pytest.approx(float(expected), rel=1e-6)


def _method(*opts):
    cls = METHODS.get("sfsc")
    return cls(cls.parse_options(list(opts)))


def test_evidential_bias_needs_the_evidential_loss():
    from swedge.errors import SwedgeError

    with pytest.raises(SwedgeError, match="evidential_bias"):
        _method("evidential_bias=true", "uncertainty=false")
    assert _method().model_extra() == {}  # off by default: the paper's head


def test_evidential_bias_moves_only_the_evidential_loss_and_gets_its_gradient():
    method = _method("evidential_bias=true", "projection=none", "triplet_weight=0")
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4, extra=method.model_extra())).eval()
    assert "evidential_bias" in dict(model.named_parameters())
    images, labels = torch.randn(8, 3, 32, 16, generator=torch.Generator().manual_seed(1)), torch.arange(4).repeat(2)
    with torch.no_grad():
        emb = model(images)
        model.evidential_bias.fill_(3.0)  # much evidence for every class: K/S far below 0.5
        assert torch.equal(model(images), emb)  # never part of the embedding
    ctx = StepContext(0, 10, 0, (1.0, 0.5), 0, model.forward_train, lambda loss: loss.backward())
    logs = method.train_step(model, images, labels, ctx)
    assert model.evidential_bias.grad is not None and bool(model.evidential_bias.grad.abs().sum() > 0)
    assert logs["uncertainty@0.5"] < 0.3  # softplus(3) + 1 ~ 4 per class: K/S ~ 1/4
    model.set_width(0.5)
    z = model.forward_train(images)["logits"] + 3.0
    expected = evidential_loss(z, labels, kl_weight=0.0, smoothing=0.1)
    assert logs["loss@0.5"] == pytest.approx(float(expected.loss), rel=1e-5)
    assert logs["ace@0.5"] == pytest.approx(float(expected.ace), rel=1e-5)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from swedge.data.synth import generate

    out = tmp_path_factory.mktemp("d") / "synth"
    generate(out, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    return out


def test_evidential_bias_is_trained_and_checkpointed_but_not_exported(tiny_data, tmp_path):
    cfg = TrainConfig(data=str(tiny_data), out=str(tmp_path), method="sfsc", method_options=["evidential_bias=true"],
                      input_size=(32, 16), epochs=1, ids_per_batch=4, images_per_id=2, widths=(0.5, 1.0),
                      embedding_dim=8, workers=0, max_steps=2)
    ck = load_checkpoint(train(cfg, progress=False))
    bias = dict(ck.model.named_parameters())["evidential_bias"]
    assert ck.meta["model"]["extra"] == {"evidential_bias": True}
    assert bool(bias.abs().sum() > 0)  # the optimiser moved it from its zero init
    from swedge.nn.slicing import slice_model

    for w in ck.widths:  # what every exporter sees: no evidential bias among its parameters
        sliced = slice_model(ck.model, w)
        assert not any("evidential" in name for name, _ in sliced.named_parameters())


def test_neck_shift_is_frozen_by_default_and_trained_into_the_embedding_when_asked(tiny_data, tmp_path):
    """The other route to logits below zero batch mean: the BNNeck's shift, trained; unlike the evidential bias it
    is part of the embedding, so every width's sliced (exported) module carries it."""
    assert not any(bn.bias.requires_grad for bn in build_model(ModelConfig(num_classes=5)).neck_bn.bn)
    cfg = TrainConfig(data=str(tiny_data), out=str(tmp_path), method="sfsc", method_options=["neck_shift=true"],
                      input_size=(32, 16), epochs=1, ids_per_batch=4, images_per_id=2, widths=(0.5, 1.0),
                      embedding_dim=8, workers=0, max_steps=2)
    ck = load_checkpoint(train(cfg, progress=False))
    assert ck.meta["model"]["extra"] == {"neck_shift": True}
    from swedge.nn.slicing import slice_model

    for i, w in enumerate(ck.widths):
        shift = ck.model.neck_bn.bn[i].bias
        assert shift.requires_grad and bool(shift.abs().sum() > 0)  # the optimiser moved it from 0
        torch.testing.assert_close(slice_model(ck.model, w).neck_bn.bias, shift.detach())
