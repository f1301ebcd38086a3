"""asymmetric / asymmetric-s train their triplet on the evaluated embedding: post-BN, L2-normalised, 1 - cos."""

import pytest
import torch

from swedge.methods import METHODS
from swedge.methods.asymmetric import ASYMMETRIC_MARGIN, asymmetric_triplet
from swedge.methods.base import StepContext
from swedge.nn.model import ModelConfig, build_model


def test_zero_when_small_equals_full_and_margin_zero():
    emb = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(4).repeat_interleave(2)
    same = emb[labels * 2]  # every image of an id has the same embedding: positives at distance 0
    assert float(asymmetric_triplet(same, same.clone(), labels, 0.0)) == 0.0
    # scale-free (cosine): rescaling either side changes nothing; a margin makes it positive
    assert float(asymmetric_triplet(3 * same, same, labels, 0.0)) == 0.0
    assert float(asymmetric_triplet(same, same, labels, 2.5)) > 0  # 1 - cos <= 2: a margin above 2 never holds


def test_distance_is_one_minus_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    ref = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1])
    # anchor 0: positive ref 0 at 1 - cos45, negative ref 1 at 1 - cos180 = 2
    # anchor 1: positive ref 1 at 1 - cos90 = 1, negative ref 0 at 1 - cos45
    c = 1 - 2 ** -0.5
    expected = (max(0.0, c - 2 + 0.1) + max(0.0, 1 - c + 0.1)) / 2
    assert float(asymmetric_triplet(a, ref, labels, 0.1)) == pytest.approx(expected, rel=1e-6)


def _batch():
    return torch.randn(8, 3, 32, 16, generator=torch.Generator().manual_seed(1)), torch.arange(4).repeat_interleave(2)


@pytest.mark.parametrize("name", ["asymmetric-s", "asymmetric"])
def test_gradients_of_the_term_flow_only_to_the_small_model(name):
    """The asymmetric term alone (CE and triplet weights 0 through options where possible): the full width's
    path gets no gradient from it; the term matches the evaluated embeddings' cosine triplet."""
    cls = METHODS.get(name)
    method = cls(cls.parse_options(["triplet_weight=0"]))
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4, extra=method.model_extra())).train()
    images, labels = _batch()
    widths = (0.5,) if name == "asymmetric" else (1.0, 0.5)
    # isolate the term: run the step with CE zeroed by a hook on backward that keeps only the term
    state, terms = {}, []
    if name == "asymmetric-s":
        model.set_width(1.0)
        out = model.forward_train(images)
        state["full"] = {k: v.detach() for k, v in out.items()}
    model.set_width(0.5)
    out = model.forward_train(images)
    ctx = StepContext(0, 10, 0, widths, 0, model.forward_train, lambda loss: loss.backward())
    term = method.term(model, images, out, labels, state, ctx)
    terms.append(term)
    model.zero_grad(set_to_none=True)
    term.backward()
    small = [n for n, p in model.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    assert small, "the small model gets a gradient"
    if name == "asymmetric":
        assert all(n.startswith("members.0.") for n in small)  # never the frozen full model
        teacher = model.member(1.0)
        assert not teacher.training  # the teacher ran in eval mode
        with torch.no_grad():
            reference = teacher(images)
    else:
        # full width's private BN gets nothing; shared weights are reached only through the small width's path
        assert not any(".bn.1." in n for n in small)
        reference = state["full"]["embedding"]
    expected = asymmetric_triplet(out["embedding"].detach(), reference, labels, ASYMMETRIC_MARGIN)
    assert float(term) == pytest.approx(float(expected), rel=1e-6)
