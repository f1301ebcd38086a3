"""Train and eval image transforms (PIL in, CHW float tensor out) without torchvision.

Randomness comes from torch's global RNG, so ``torch.manual_seed`` and DataLoader worker seeding control it.
The eval transform is ``preprocess_numpy`` wrapped in a tensor: the device side reproduces it without torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from swedge.data.preprocess import Preprocess, normalise_hwc, preprocess_numpy, resize_rgb


class EvalTransform:
    """Resize, scale to [0, 1], normalise: exactly ``preprocess_numpy`` as a tensor."""

    def __init__(self, pre: Preprocess | None = None):
        self.pre = pre or Preprocess()

    def __call__(self, image) -> torch.Tensor:
        return torch.from_numpy(preprocess_numpy(image, self.pre))

    def __repr__(self) -> str:
        return f"EvalTransform({self.pre})"


class TrainTransform:
    """Re-ID training augmentation: resize, random horizontal flip, zero-pad + random crop back to size,
    normalise, random erasing (Zhong et al. 2020: p=0.5, area 2-40%, aspect 0.3-3.3, filled with the mean)."""

    def __init__(self, pre: Preprocess | None = None, *, flip_p: float = 0.5, pad: int = 10, erase_p: float = 0.5,
                 erase_area: tuple[float, float] = (0.02, 0.4), erase_aspect: float = 0.3):
        self.pre = pre or Preprocess()
        self.flip_p, self.pad, self.erase_p = flip_p, pad, erase_p
        self.erase_area, self.erase_aspect = erase_area, erase_aspect

    def __call__(self, image) -> torch.Tensor:
        a = np.asarray(resize_rgb(image, self.pre))
        if torch.rand(()) < self.flip_p:
            a = a[:, ::-1]
        if self.pad > 0:
            a = self._pad_crop(a)
        x = torch.from_numpy(normalise_hwc(a, self.pre))
        if torch.rand(()) < self.erase_p:
            self._erase(x)
        return x

    def _pad_crop(self, a: np.ndarray) -> np.ndarray:
        """Same as padding by ``pad`` black pixels and cropping a random (H, W) window, without the big copy."""
        h, w, _ = a.shape
        dy, dx = (int(v) for v in torch.randint(-self.pad, self.pad + 1, (2,)))
        out = np.zeros_like(a)
        out[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = a[max(0, dy):h - max(0, -dy),
                                                                        max(0, dx):w - max(0, -dx)]
        return out

    def _erase(self, x: torch.Tensor) -> None:
        """Zero a random rectangle in place (zero = the mean colour after normalisation); up to 100 tries."""
        _, h, w = x.shape
        lo, hi = self.erase_area
        for _ in range(100):
            area = h * w * float(torch.empty(()).uniform_(lo, hi))
            aspect = float(torch.empty(()).uniform_(self.erase_aspect, 1 / self.erase_aspect))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                y0 = int(torch.randint(0, h - eh + 1, ()))
                x0 = int(torch.randint(0, w - ew + 1, ()))
                x[:, y0:y0 + eh, x0:x0 + ew] = 0
                return

    def __repr__(self) -> str:
        return (f"TrainTransform({self.pre}, flip_p={self.flip_p}, pad={self.pad}, erase_p={self.erase_p}, "
                f"erase_area={self.erase_area}, erase_aspect={self.erase_aspect})")


def build_transforms(pre: Preprocess | None = None, **train_options) -> tuple[TrainTransform, EvalTransform]:
    """(train, eval) transforms for one Preprocess; ``train_options`` go to TrainTransform."""
    pre = pre or Preprocess()
    return TrainTransform(pre, **train_options), EvalTransform(pre)
