"""Input preprocessing that travels with the checkpoint, plus a numpy implementation for the device side.

Torch-free on purpose: the on-device harness preprocesses probe images with numpy + PIL only, and must get the
same array the torch eval transform feeds the model (``swedge.data.transforms`` calls ``preprocess_numpy``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from PIL import Image

from swedge.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
# What a sane preprocessing can hold: pixels are scaled to [0, 1] before normalising, so a mean outside it or a
# std above 1 (or 0) only comes from a damaged or edited header; no re-ID / retrieval input is 8192 px a side.
MAX_INPUT_SIDE = 8192
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (0.0, 1.0)


def _numbers(name: str, value, count: int) -> tuple[float, ...]:
    """``count`` finite real numbers (bools and strings refused), or a DataError naming the field."""
    if not isinstance(value, (list, tuple)) or len(value) != count or \
            any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) for v in value):
        raise DataError(f"preprocess {name} must be a list of {count} finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


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
        # Validate once here so a bad checkpoint header or manifest fails where it is read, not at the first image.
        size, mean, std = (_numbers(name, v, 3 if name != "size" else 2)
                           for name, v in (("size", self.size), ("mean", self.mean), ("std", self.std)))
        if any(v != int(v) or not 1 <= v <= MAX_INPUT_SIDE for v in size):
            raise DataError(f"preprocess size must be (H, W), whole numbers in 1..{MAX_INPUT_SIDE}, got {self.size!r}")
        if any(not MEAN_RANGE[0] <= v <= MEAN_RANGE[1] for v in mean):
            raise DataError(f"preprocess mean must be 3 finite values in {list(MEAN_RANGE)} (pixels are scaled to "
                            f"[0, 1] first), got {self.mean!r}")
        if any(not STD_RANGE[0] < v <= STD_RANGE[1] for v in std):
            raise DataError(f"preprocess std must be 3 finite values in ({STD_RANGE[0]}, {STD_RANGE[1]}], "
                            f"got {self.std!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise DataError(f"preprocess channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.interpolation not in _RESAMPLE:
            raise DataError(f"preprocess interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")
        object.__setattr__(self, "size", tuple(int(v) for v in size))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

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
        from swedge.data.images import to_rgb

        image = to_rgb(image)  # 16-bit grey scaled, not clipped to white
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
