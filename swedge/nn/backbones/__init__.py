"""Slimmable backbones, one registry. Each factory is ``f(widths) -> nn.Module`` returning a feature map
(N, C·w, h, w') whose full channel count is the module's ``out_channels``."""

from swedge.registry import Registry

BACKBONES: Registry = Registry("backbone")

# Importing the modules registers their entries.
from swedge.nn.backbones import mobilenetv2, resnet  # noqa: E402,F401
