"""Every registered method trains end to end on tiny data, and each keeps its defining property."""

import pytest
import torch

from swedge.checkpoint import load_checkpoint
from swedge.methods import METHODS
from swedge.methods.asymmetric import ASYMMETRIC_MARGIN, asymmetric_triplet
from swedge.methods.base import NonFiniteLossError, StepContext
from swedge.nn.model import ModelConfig, build_model
from swedge.training.config import TrainConfig
from swedge.training.trainer import train


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
    """uncertainty=false, projection=none: merge=sum (the default, PCGrad's Algorithm 1) gives sfsc-sum's gradient; the option merge=mean gives
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

    def poisoned(self, out, labels, *args):
        loss, parts = original(self, out, labels, *args)
        return loss * float("nan"), parts

    monkeypatch.setattr(mod.SfscSum, "width_loss", poisoned)
    with pytest.raises(NonFiniteLossError):
        train(cfg, progress=False)
    assert path.read_bytes() == good


# ------------------------------------------------------------------------------------ defining properties
# Each method below is checked for what makes it that method, on a 2-width tiny ResNet in eval mode (fixed BN
# statistics, so repeated passes give identical gradients), with the triplet switched off where the property is
# about the classifier path. Reference values are computed here from the formulas, not with the method's code.


def _model(extra=None, seed=0):
    """Classifiers re-drawn at std 20 (the random net's embeddings have norms ~0.1): at their 0.001 init every
    logit is ~0 and every CE ~log 4, whichever classifier it goes through, so a test could not tell them apart."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4, extra=extra or {})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "classifier" in name:
                p.normal_(0.0, 20.0)
    return model


def _method(name, **opts):
    cls = METHODS.get(name)
    return cls(cls.parse_options([f"{k}={v}" for k, v in opts.items()]))


def _run(method, model, widths, backward=None, step=0):
    """One train_step over ``widths``; returns (logs, {name: grad})."""
    images, labels = _batch()
    model.zero_grad(set_to_none=True)
    ctx = StepContext(step, 10, 0, widths, 0, model.forward_train, backward or (lambda loss: loss.backward()))
    logs = method.train_step(model, images, labels, ctx)
    return logs, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _grads_of(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _add(a, b):
    return {n: a.get(n, 0) + b.get(n, 0) for n in {*a, *b}}


def _assert_grads_equal(got, expected, **tol):
    assert set(got) == set(expected)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n], **(tol or dict(rtol=1e-5, atol=1e-7)), msg=n)


def _plain_asymmetric_triplet(anchor, reference, labels, margin):
    """Batch-hard triplet written out per anchor on cosine distance: positives and negatives from ``reference``."""
    terms = []
    for i in range(len(anchor)):
        d = [1.0 - float(torch.nn.functional.cosine_similarity(anchor[i], reference[j], dim=0))
             for j in range(len(reference))]
        pos = max(d[j] for j in range(len(d)) if labels[j] == labels[i])
        neg = min(d[j] for j in range(len(d)) if labels[j] != labels[i])
        terms.append(max(0.0, pos - neg + margin))
    return sum(terms) / len(terms)


def test_unified_has_a_private_classifier_per_width_and_no_shared_one():
    method = _method("unified", triplet_weight=0)
    model = _model(method.model_extra())
    assert not hasattr(model, "classifier") and len(model.classifiers) == len(model.widths)
    assert model.classifier_of(0.5) is not model.classifier_of(1.0)
    images, _ = _batch()
    with torch.no_grad():
        for i, w in enumerate(model.widths):
            model.set_width(w)
            out = model.forward_train(images)
            torch.testing.assert_close(out["logits"], out["embedding"] @ model.classifiers[i].weight.T)
    _, full_only = _run(method, model, (1.0,))
    assert "classifiers.1.weight" in full_only and "classifiers.0.weight" not in full_only
    _, both = _run(method, model, (1.0, 0.5))
    assert "classifiers.0.weight" in both
    # the full width's classifier gets nothing from width 0.5's loss
    assert torch.equal(both["classifiers.1.weight"], full_only["classifiers.1.weight"])


def test_sfsc_sum_trains_every_width_through_one_shared_classifier():
    method = _method("sfsc-sum", triplet_weight=0)
    model = _model(method.model_extra())
    assert not hasattr(model, "classifiers") and model.classifier_of(0.5) is model.classifier_of(1.0)
    _, both = _run(method, model, (1.0, 0.5))
    _, full_only = _run(method, model, (1.0,))
    _, half_only = _run(method, model, (0.5,))
    _assert_grads_equal(both, _add(full_only, half_only))  # the plain sum of the per-width gradients
    assert not torch.allclose(both["classifier.weight"], full_only["classifier.weight"])  # 0.5 reaches it


def test_independent_widths_share_no_parameters():
    method = _method("independent", triplet_weight=0)
    model = _model(method.model_extra())
    members = [model.member(w) for w in model.widths]
    storages = [{p.data_ptr() for p in m.parameters()} for m in members]
    assert not storages[0] & storages[1]
    assert all(n.startswith("members.") for n, _ in model.named_parameters())  # nothing outside the members
    assert members[0].classifier is not members[1].classifier
    _, half = _run(method, model, (0.5,))
    _, full = _run(method, model, (1.0,))
    assert half and all(n.startswith("members.0.") for n in half)
    assert full and all(n.startswith("members.1.") for n in full)
    logs, both = _run(method, model, (1.0, 0.5))
    _assert_grads_equal(both, _add(half, full))  # no coupling term between the widths
    assert not any(k.startswith(("influence", "asymmetric")) for k in logs)


def test_bct_s_stops_the_full_classifiers_gradient_for_the_sub_widths():
    method = _method("bct-s", triplet_weight=0)
    model = _model(method.model_extra())
    _, full_only = _run(method, model, (1.0,))
    logs, both = _run(method, model, (1.0, 0.5))
    assert torch.equal(both["classifiers.1.weight"], full_only["classifiers.1.weight"])
    # ...yet the sub-width is pulled through that classifier: CE of its embedding against the full's weights
    images, labels = _batch()
    model.set_width(0.5)
    with torch.no_grad():
        emb = model.forward_train(images)["embedding"]
    expected = torch.nn.functional.cross_entropy(emb @ model.classifiers[1].weight.T, labels, label_smoothing=0.1)
    assert logs["influence@0.5"] == pytest.approx(float(expected), rel=1e-5)
    _, no_influence = _run(_method("bct-s", triplet_weight=0, influence_weight=0), model, (1.0, 0.5))
    assert not torch.allclose(no_influence["neck_bn.bn.0.weight"], both["neck_bn.bn.0.weight"])


def test_asymmetric_s_uses_the_full_widths_features_detached():
    """The step's gradient = the full width's own + the sub-width's loss with the full width's features as
    constants: nothing of the sub-width's asymmetric term flows back into the full-width path."""
    method = _method("asymmetric-s", triplet_weight=0)
    model = _model(method.model_extra())
    logs, both = _run(method, model, (1.0, 0.5))
    _, full_only = _run(method, model, (1.0,))
    images, labels = _batch()
    model.set_width(1.0)
    with torch.no_grad():
        reference = model.forward_train(images)["embedding"]  # the evaluated (post-BN) embedding
    model.set_width(0.5)
    out = model.forward_train(images)
    term = asymmetric_triplet(out["embedding"], reference, labels, ASYMMETRIC_MARGIN)
    assert float(term) > 0 and float(term) == pytest.approx(
        _plain_asymmetric_triplet(out["embedding"], reference, labels, ASYMMETRIC_MARGIN), rel=1e-5)
    assert logs["asymmetric@0.5"] == pytest.approx(float(term), rel=1e-5)
    sub = _grads_of(model, torch.nn.functional.cross_entropy(out["logits"], labels, label_smoothing=0.1) + term)
    _assert_grads_equal(both, _add(full_only, sub), rtol=1e-4, atol=1e-6)


def test_asymmetric_freezes_the_full_model_and_uses_its_features_in_phase_two():
    torch.manual_seed(0)
    method = _method("asymmetric", triplet_weight=0)
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4, extra=method.model_extra())).train()
    assert method.phases((0.5, 1.0)) == [(1.0,), (0.5,)]
    teacher = model.member(1.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    logs, grads = _run(method, model, (0.5,))
    assert grads and all(n.startswith("members.0.") for n in grads)  # the full model gets no gradient
    for k, v in teacher.state_dict().items():  # ... and no BN statistics update
        assert torch.equal(v, before[k]), k
    images, labels = _batch()
    with torch.no_grad():
        teacher.eval()
        reference = teacher(images)  # eval mode, post-BN: what `swedge eval` embeds
        student = model.member(0.5).forward_train(images)["embedding"]
    expected = _plain_asymmetric_triplet(student, reference, labels, ASYMMETRIC_MARGIN)
    assert expected > 0 and logs["asymmetric@0.5"] == pytest.approx(expected, rel=1e-5)


def test_bct_influence_goes_through_the_frozen_full_models_classifier():
    method = _method("bct", triplet_weight=0)
    model = _model(method.model_extra())
    logs, _ = _run(method, model, (0.5,))
    images, labels = _batch()
    with torch.no_grad():
        emb = model.member(0.5).forward_train(images)["embedding"]
    expected = torch.nn.functional.cross_entropy(emb @ model.member(1.0).classifier.weight.T, labels,
                                                 label_smoothing=0.1)
    own = torch.nn.functional.cross_entropy(emb @ model.member(0.5).classifier.weight.T, labels,
                                            label_smoothing=0.1)
    assert logs["influence@0.5"] == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) != pytest.approx(float(own), rel=1e-3)  # not the small model's own classifier


def _dot(a, b):
    return sum(float(torch.dot(a[n].flatten(), b[n].flatten())) for n in a.keys() & b.keys())


@pytest.mark.parametrize("merge", ["sum", "mean"])
def test_sfsc_projection_only_merges_pcgrad_projected_gradients(merge):
    """PCGrad by hand on the two widths' whole gradients (missing parameters count as zeros). The sub-width's loss
    is negated through the backward hook if need be, so that the two gradients surely conflict (else nothing
    would be projected and the test could not see the projection)."""
    method = _method("sfsc-projection-only", triplet_weight=0, merge=merge)
    assert method.options.uncertainty is False and method.options.projection == "vector"
    model = _model(method.model_extra())
    images, labels = _batch()
    g = []
    for w in (1.0, 0.5):
        model.set_width(w)
        ce = torch.nn.functional.cross_entropy(model.forward_train(images)["logits"], labels, label_smoothing=0.1)
        g.append(_grads_of(model, ce))
    sign = -1.0 if _dot(g[0], g[1]) > 0 else 1.0
    g[1] = {n: sign * t for n, t in g[1].items()}
    calls = []

    def backward(loss):
        calls.append(loss)
        (loss if len(calls) == 1 else sign * loss).backward()

    logs, got = _run(method, model, (1.0, 0.5), backward)
    dot = _dot(g[0], g[1])
    assert dot < 0, "no conflict: the test would not see the projection"
    c1, c2 = dot / _dot(g[1], g[1]), dot / _dot(g[0], g[0])  # g1' = g1 - c1 g2, g2' = g2 - c2 g1
    zero = torch.zeros(())
    p1 = {n: g[0].get(n, zero) - c1 * g[1].get(n, zero) for n in g[0].keys() | g[1].keys()}
    assert abs(_dot(p1, g[1])) < 1e-5 * _dot(g[1], g[1])  # what PCGrad guarantees: g1' no longer conflicts
    shared = g[0].keys() & g[1].keys()
    assert logs["conflict_share"] == 1.0
    assert set(got) == g[0].keys() | g[1].keys()
    moved = 0.0
    for n, t in got.items():
        scale = 0.5 if merge == "mean" and n in shared else 1.0
        expected = scale * (p1[n] + g[1].get(n, zero) - c2 * g[0].get(n, zero))
        plain = scale * (g[0].get(n, zero) + g[1].get(n, zero))
        torch.testing.assert_close(t, expected.expand_as(t), rtol=1e-4, atol=1e-7, msg=n)
        moved += float((expected - plain).abs().sum())
    assert moved > 0  # and the projection changed the merge


def test_sfsc_uncertainty_only_uses_the_evidential_loss_for_the_sub_widths():
    """Full width: CE through the shared classifier; sub-width: psi(S) - sum_k y_k psi(alpha_k) with
    alpha = softplus(z) + 1 and y the label-smoothed target (0.9 + 0.1/K on the label, 0.1/K elsewhere; KL weight 0
    at step 0 of the linear ramp); no projection: the gradients are merged as they are."""
    method = _method("sfsc-uncertainty-only", triplet_weight=0, merge="sum")
    assert method.options.uncertainty is True and method.options.projection == "none"
    model = _model(method.model_extra())
    logs, got = _run(method, model, (1.0, 0.5))
    assert "conflict_share" not in logs
    images, labels = _batch()
    model.set_width(1.0)
    ce = torch.nn.functional.cross_entropy(model.forward_train(images)["logits"], labels, label_smoothing=0.1)
    g_full = _grads_of(model, ce)
    model.set_width(0.5)
    z = model.forward_train(images)["logits"]
    alpha = torch.nn.functional.softplus(z) + 1
    y = torch.nn.functional.one_hot(labels, 4) * 0.9 + 0.1 / 4
    ace = (torch.digamma(alpha.sum(1)) - (y * torch.digamma(alpha)).sum(1)).mean()
    g_half = _grads_of(model, ace)
    assert logs["loss@1.0"] == pytest.approx(float(ce), rel=1e-5)
    assert logs["loss@0.5"] == pytest.approx(float(ace), rel=1e-5)
    assert logs["uncertainty@0.5"] == pytest.approx(float((4 / alpha.sum(1)).mean()), rel=1e-5)
    _assert_grads_equal(got, _add(g_full, g_half), rtol=1e-4, atol=1e-7)
