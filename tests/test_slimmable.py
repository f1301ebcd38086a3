import pytest
import torch

from swedge.nn.backbones import BACKBONES
from swedge.nn.model import ModelConfig, build_model
from swedge.nn.slicing import count_parameters, slice_model
from swedge.nn.slimmable import SlimmableConv2d, active_width, check_widths, set_width, width_channels

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def _trained_bn_model(arch: str) -> torch.nn.Module:
    """A model whose per-width BN statistics differ from the defaults (so slicing the wrong BN would show)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, widths=WIDTHS, embedding_dim=32, num_classes=7))
    model.train()
    x = torch.randn(6, 3, 64, 32)
    with torch.no_grad():
        for w in WIDTHS:
            model.set_width(w)
            for _ in range(2):
                model(x * (1 + w))
    return model.eval()


@pytest.fixture(scope="module", params=BACKBONES.names())
def arch_model(request):
    return request.param, _trained_bn_model(request.param)


@pytest.mark.parametrize("width", WIDTHS)
def test_slice_equals_switchable(arch_model, width):
    arch, model = arch_model
    sliced = slice_model(model, width).eval()
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad(), model.at_width(width):
        expected = model(x)
        got = sliced(x)
    assert got.shape == (3, 32)
    assert (got - expected).abs().max().item() <= 1e-5
    # genuinely smaller layers, no switchable leftovers, no classifier
    assert not any(isinstance(m, SlimmableConv2d) for m in sliced.modules())
    assert not hasattr(sliced, "classifier")


def test_parameter_count_scales_with_width_squared(arch_model):
    arch, model = arch_model
    full = count_parameters(slice_model(model, 1.0))
    ratios = [count_parameters(slice_model(model, w)) / full for w in WIDTHS]
    assert ratios == sorted(ratios) and ratios[-1] == 1.0
    for w, r in zip(WIDTHS, ratios):
        # the unsliced stem input and the fixed embedding dim add a little on top of w^2
        assert 0.8 * w * w <= r <= w * w + 0.05, (arch, w, r)


def test_sliced_conv_really_smaller():
    model = _trained_bn_model("resnet18")
    sliced = slice_model(model, 0.25)
    first = sliced.backbone.stem[0][0]
    assert isinstance(first, torch.nn.Conv2d) and first.weight.shape == (16, 3, 7, 7)
    assert sliced.neck.weight.shape == (32, 128)


def test_width_switch_reaches_every_layer():
    model = build_model(ModelConfig(arch="resnet18", embedding_dim=16, num_classes=3)).eval()
    model.set_width(0.5)
    assert model.width == 0.5
    # a half-applied switch is detected, both by active_width and by the forward pass
    model.backbone.layers[2][0].body[0][0].set_width(1.0)
    with pytest.raises(RuntimeError, match="different widths"):
        active_width(model)
    with pytest.raises(RuntimeError, match="did not reach every layer"):
        model(torch.randn(1, 3, 64, 32))
    set_width(model, 0.25)
    assert model.width == 0.25


def test_widths_outputs_differ_and_dims_fixed():
    model = _trained_bn_model("mobilenetv2")
    x = torch.randn(2, 3, 64, 32)
    outs = {}
    with torch.no_grad():
        for w in WIDTHS:
            with model.at_width(w):
                outs[w] = model(x)
    assert all(o.shape == (2, 32) for o in outs.values())
    assert not torch.allclose(outs[0.25], outs[1.0])


@pytest.mark.parametrize("bad", [(0.5,), (1.0, 0.5), (0.0, 1.0), (0.5, 0.5, 1.0), (0.5, 1.5), ()])
def test_bad_widths(bad):
    with pytest.raises(ValueError):
        check_widths(bad)


def test_unknown_width_and_arch():
    model = build_model(ModelConfig(embedding_dim=8, num_classes=2))
    with pytest.raises(ValueError, match="not one of"):
        model.set_width(0.3)
    with pytest.raises(ValueError, match="not one of"):
        slice_model(model, 0.3)
    from swedge.errors import SwedgeError

    with pytest.raises(SwedgeError, match="Did you mean 'resnet18'"):
        ModelConfig(arch="resnet19")


def test_width_channels():
    assert [width_channels(64, w) for w in WIDTHS] == [16, 32, 48, 64]
    assert width_channels(3, 0.25) == 1
