"""Input preprocessing that travels with the checkpoint, plus a numpy implementation for the device side.

Torch-free on purpose: the on-device harness preprocesses probe images with numpy + PIL only, and must get the
same array the torch eval transform feeds the model (``swedge.data.transforms`` calls ``preprocess_numpy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from swedge.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


@dataclass(frozen=True)
class Preprocess:
    """Resize to ``size`` = (H, W), scale to [0, 1], normalise per channel; ``mean``/``std`` are listed in
    ``channel_order``. Output layout is CHW float32."""

    size: tuple[int, int] = (128, 64)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    interpolation: str = "bilinear"

    def __post_init__(self):
        # Validate once here so a bad checkpoint header fails at load time, not at the first image.
        if len(self.size) != 2 or min(self.size) < 1:
            raise DataError(f"preprocess size must be (H, W) with positive ints, got {self.size!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise DataError(f"preprocess mean/std must be 3 values each with std > 0, got {self.mean!r} / {self.std!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise DataError(f"preprocess channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.interpolation not in _RESAMPLE:
            raise DataError(f"preprocess interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, *self.size)

    def to_dict(self) -> dict:
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std),
                "channel_order": self.channel_order, "interpolation": self.interpolation, "layout": "CHW"}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        known = {"size", "mean", "std", "channel_order", "interpolation"}
        if not isinstance(d, dict) or "size" not in d:
            raise DataError(f"preprocess metadata must be a dict with at least 'size', got {d!r}")
        if d.get("layout", "CHW") != "CHW":
            raise DataError(f"preprocess layout {d['layout']!r} is not supported: swedge writes CHW")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


def resize_rgb(image, pre: Preprocess) -> Image.Image:
    """PIL RGB image resized to the input size (accepts a PIL image or an HWC uint8 array)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    h, w = pre.size
    if image.size != (w, h):
        image = image.resize((w, h), _RESAMPLE[pre.interpolation])
    return image


def normalise_hwc(array: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 HWC RGB -> float32 CHW, channel order and normalisation applied."""
    a = np.asarray(array, dtype=np.float32) * np.float32(1 / 255)
    if pre.channel_order == "BGR":
        a = a[..., ::-1]
    a = (a - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def preprocess_numpy(image, pre: Preprocess | None = None) -> np.ndarray:
    """The eval-time input for one image (PIL or HWC uint8 RGB array): float32 array of shape (3, H, W)."""
    pre = pre or Preprocess()
    return normalise_hwc(np.asarray(resize_rgb(image, pre)), pre)
