"""Slimmable ResNet-18 / ResNet-50 with last stride 1 (the re-ID convention: a larger final feature map).

``torchvision_layers()`` names each layer as torchvision's ``resnet18`` / ``resnet50`` does (conv1, bn1,
layerL.B.convK / bnK, layerL.B.downsample.0/1; the ``fc`` head is not used), so ``--init FILE`` loads a
torchvision state dict: the shapes are torchvision's, only layer4's stride differs (1 here, 2 there).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from swedge.nn.backbones import BACKBONES
from swedge.nn.pretrained import pretrained
from swedge.nn.slimmable import SlimmableConv2d, SwitchableBatchNorm2d


def conv_bn(cin: int, cout: int, k: int, widths, stride: int = 1, slim_in: bool = True) -> nn.Sequential:
    return nn.Sequential(
        SlimmableConv2d(cin, cout, k, widths, stride=stride, padding=k // 2, slim_in=slim_in),
        SwitchableBatchNorm2d(cout, widths),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, widths):
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(conv_bn(cin, planes, 3, widths, stride), nn.ReLU(inplace=True),
                                  conv_bn(planes, cout, 3, widths))
        self.shortcut = conv_bn(cin, cout, 1, widths, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(BasicBlock):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, widths):
        nn.Module.__init__(self)
        cout = planes * self.expansion
        self.body = nn.Sequential(
            conv_bn(cin, planes, 1, widths), nn.ReLU(inplace=True),
            conv_bn(planes, planes, 3, widths, stride), nn.ReLU(inplace=True),
            conv_bn(planes, cout, 1, widths),
        )
        self.shortcut = conv_bn(cin, cout, 1, widths, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)


class SlimmableResNet(nn.Module):
    def __init__(self, block: type[BasicBlock], depths: Sequence[int], widths, last_stride: int = 1):
        super().__init__()
        # The stem's input stays 3 channels at every width.
        self.stem = nn.Sequential(conv_bn(3, 64, 7, widths, stride=2, slim_in=False), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            stride = 1 if i == 0 else (last_stride if i == 3 else 2)
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, planes, stride if j == 0 else 1, widths))
                cin = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.out_channels = cin
        for m in self.modules():  # zero-init the last BN of each residual branch: a stable start
            if isinstance(m, BasicBlock):
                for bn in m.body[-1][1].bn:
                    nn.init.zeros_(bn.weight)

    def forward(self, x):
        return self.layers(self.stem(x))

    TORCHVISION_IGNORED = ("fc.",)

    def torchvision_layers(self) -> list[tuple[str, nn.Module]]:
        """(torchvision key prefix, SlimmableConv2d / SwitchableBatchNorm2d) in forward order."""
        out = [("conv1", self.stem[0][0]), ("bn1", self.stem[0][1])]
        for i, layer in enumerate(self.layers, 1):
            for j, block in enumerate(layer):
                convs = [m for m in block.body if isinstance(m, nn.Sequential)]
                for k, (conv, bn) in enumerate(convs, 1):
                    out += [(f"layer{i}.{j}.conv{k}", conv), (f"layer{i}.{j}.bn{k}", bn)]
                if not isinstance(block.shortcut, nn.Identity):
                    conv, bn = block.shortcut
                    out += [(f"layer{i}.{j}.downsample.0", conv), (f"layer{i}.{j}.downsample.1", bn)]
        return out


@BACKBONES.register("resnet18")
@pretrained()  # no shipped weights: --init FILE (torchvision resnet18 format)
def resnet18(widths) -> SlimmableResNet:
    net = SlimmableResNet(BasicBlock, (2, 2, 2, 2), widths)
    net.arch_name = "resnet18"
    return net


@BACKBONES.register("resnet50")
@pretrained()  # no shipped weights: --init FILE (torchvision resnet50 format)
def resnet50(widths) -> SlimmableResNet:
    net = SlimmableResNet(Bottleneck, (3, 4, 6, 3), widths)
    net.arch_name = "resnet50"
    return net
