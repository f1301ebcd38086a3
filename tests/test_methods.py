"""Every registered method trains end to end on tiny data, and each keeps its defining property."""

import pytest
import torch

from swedge.checkpoint import load_checkpoint
from swedge.methods import METHODS
from swedge.methods.base import NonFiniteLossError, StepContext
from swedge.nn.model import ModelConfig, build_model
from swedge.train_config import TrainConfig
from swedge.trainer import train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from swedge.data.synth import generate

    out = tmp_path_factory.mktemp("d") / "synth"
    generate(out, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    return out


def _cfg(data, out, method, **kw):
    base = dict(data=str(data), out=str(out), method=method, input_size=(32, 16), epochs=1, ids_per_batch=4,
                images_per_id=2, widths=(0.5, 1.0), embedding_dim=8, workers=0, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_and_loads(method, tiny_data, tmp_path):
    path = train(_cfg(tiny_data, tmp_path, method), progress=False)
    ck = load_checkpoint(path)
    assert ck.meta["method"]["name"] == method
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        for w in ck.widths:
            with ck.model.at_width(w):
                assert ck.model(x).shape == (2, 8)


def test_unknown_option_value_is_rejected():
    from swedge.errors import SwedgeError

    cls = METHODS.get("sfsc")
    with pytest.raises(SwedgeError, match="choose from"):
        cls(cls.parse_options(["projection=diagonal"]))


def test_bct_freezes_the_full_model_in_phase_two(tiny_data, tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tiny_data, tmp_path, "bct")
    method = METHODS.get("bct")(METHODS.get("bct").Options())
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 8, extra=method.model_extra()))
    model.train()
    before = {k: v.clone() for k, v in model.member(1.0).state_dict().items()}
    images, labels = torch.randn(8, 3, 32, 16), torch.arange(4).repeat_interleave(2)
    ctx = StepContext(0, 1, 0, (0.5,), 0, model.forward_train, lambda loss: loss.backward(), 1)
    method.train_step(model, images, labels, ctx)
    assert all(p.grad is None for p in model.member(1.0).parameters())
    assert any(p.grad is not None for p in model.member(0.5).parameters())
    for k, v in model.member(1.0).state_dict().items():
        assert torch.equal(v, before[k]), k
    assert method.phases((0.5, 1.0)) == [(1.0,), (0.5,)]
    del cfg


def _batch():
    return torch.randn(8, 3, 32, 16, generator=torch.Generator().manual_seed(1)), torch.arange(4).repeat_interleave(2)


def _step(method_name, model, **opts):
    cls = METHODS.get(method_name)
    method = cls(cls.parse_options([f"{k}={v}" for k, v in opts.items()]))
    images, labels = _batch()
    ctx = StepContext(0, 10, 0, tuple(sorted(model.widths, reverse=True)), 0, model.forward_train,
                      lambda loss: loss.backward())
    return method.train_step(model, images, labels, ctx)


def test_sfsc_logs_uncertainty_and_conflicts():
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet18", (0.25, 0.5, 1.0), 8, 4)).train()
    logs = _step("sfsc", model)
    assert {"uncertainty@0.25", "uncertainty@1.0", "conflict_share"} <= set(logs)
    assert 0 < logs["uncertainty@0.25"] <= 1 and 0 <= logs["conflict_share"] <= 1
    # merged gradient written back: shared params have grads, every width's private BN too
    bn = model.neck_bn.bn
    assert all(b.weight.grad is not None for b in bn)


def test_sfsc_sum_equals_summed_loss_gradient():
    """sfsc-sum's per-width backward accumulates exactly the gradient of the summed loss."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4)).eval()  # eval: BN stats fixed
    _step("sfsc-sum", model, triplet_weight=0)
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    images, labels = _batch()
    total = 0
    for w in (1.0, 0.5):
        model.set_width(w)
        total = total + torch.nn.functional.cross_entropy(model.forward_train(images)["logits"], labels,
                                                          label_smoothing=0.1)
    total.backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(p.grad, accumulated[n], atol=1e-6), n


def test_sfsc_without_its_mechanisms_is_sfsc_sum_up_to_the_merge():
    """uncertainty=false, projection=none: merge=sum gives sfsc-sum's gradient; the faithful merge=mean gives
    the shared parameters 1/n of it and leaves width-private BN summed."""
    grads = {}
    for label, method, opts in [("sum-method", "sfsc-sum", {}),
                                ("sum", "sfsc", dict(uncertainty=False, projection="none", merge="sum")),
                                ("mean", "sfsc", dict(uncertainty=False, projection="none", merge="mean"))]:
        torch.manual_seed(0)
        model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4)).eval()
        _step(method, model, **opts)
        grads[label] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    ref = grads["sum-method"]
    assert set(grads["sum"]) == set(ref) == set(grads["mean"])
    for n, g in ref.items():
        torch.testing.assert_close(grads["sum"][n], g, atol=1e-6, rtol=1e-5)
        private = ".bn." in n  # switchable BN: one width each
        torch.testing.assert_close(grads["mean"][n], g if private else g / 2, atol=1e-6, rtol=1e-5)


def test_nan_loss_names_width_and_step():
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4)).train()
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"at width 1.0, step 1"):
        _step("sfsc-sum", model)


def test_nan_during_training_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    cfg = _cfg(tiny_data, tmp_path, "sfsc-sum", epochs=2)
    path = train(cfg, progress=False)
    good = path.read_bytes()
    import swedge.methods.sfsc_sum as mod

    original = mod.SfscSum.width_loss

    def poisoned(self, out, labels):
        loss, parts = original(self, out, labels)
        return loss * float("nan"), parts

    monkeypatch.setattr(mod.SfscSum, "width_loss", poisoned)
    with pytest.raises(NonFiniteLossError):
        train(cfg, progress=False)
    assert path.read_bytes() == good
