"""A calibration set: real images through the checkpoint's own preprocessing, cached on disk, named by sha256.

Sources: a Market-1501 folder (its ``bounding_box_train`` split: never the probe's test split), any folder of
images (searched recursively), or a ``.npy`` array already preprocessed to (N, 3, H, W) float32. Images are
sampled with a fixed seed so the same source, size and preprocessing always give the same set (and hash).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swedge.data.market import IMAGE_EXTS, SPLIT_DIRS
from swedge.data.preprocess import Preprocess, preprocess_numpy
from swedge.errors import DataError
from swedge.io import atomic_write_npy

DEFAULT_SIZE = 128


@dataclass
class CalibrationSet:
    inputs: np.ndarray  # (N, 3, H, W) float32, preprocessed
    sha256: str         # of the array's dtype, shape and bytes
    source: str

    @property
    def size(self) -> int:
        return len(self.inputs)

    def batches(self, batch: int = 1):
        for i in range(0, self.size, batch):
            yield self.inputs[i:i + batch]

    def record(self) -> dict:
        return {"sha256": self.sha256, "size": self.size, "source": self.source}

    def holdout_split(self, fraction: float) -> tuple[CalibrationSet, np.ndarray] | None:
        """(a set of the first images, the last ``fraction`` of them held out) for choosing a quantization
        setting on calibration images only; None when the set is too small to leave both sides non-empty."""
        n_hold = max(1, int(round(self.size * fraction)))
        if self.size - n_hold < 1:
            return None
        return CalibrationSet(self.inputs[:-n_hold], "", self.source), self.inputs[-n_hold:]


def array_sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}\n".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def image_files(source: Path) -> list[Path]:
    """The images a calibration set is drawn from (sorted, so sampling is reproducible)."""
    train = source / SPLIT_DIRS["train"]
    root = train if train.is_dir() else source
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {root}: give --calib a Market-1501 "
                        "folder, a folder of images, or a preprocessed .npy array")
    return files


def _from_npy(path: Path, preprocess: Preprocess, size: int | None) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({exc})") from None
    expected = (3, *preprocess.size)
    if a.ndim != 4 or tuple(a.shape[1:]) != expected:
        raise DataError(f"calibration array {path} has shape {a.shape}; this checkpoint expects (N, {expected[0]}, "
                        f"{expected[1]}, {expected[2]}) after its preprocessing (size H×W = {preprocess.size})")
    if not np.isfinite(a).all():
        raise DataError(f"calibration array {path} contains NaN or Inf values")
    return np.ascontiguousarray(a[:size] if size else a, dtype=np.float32)


def _from_images(files: list[Path], preprocess: Preprocess, size: int, seed: int, progress: bool) -> np.ndarray:
    from PIL import UnidentifiedImageError
    from tqdm import tqdm

    from swedge.data.images import read_rgb

    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(files), size=min(size, len(files)), replace=False))
    out = np.empty((len(picked), 3, *preprocess.size), np.float32)
    for i, idx in enumerate(tqdm(picked, desc="calibration", unit="img", disable=not progress, leave=False)):
        try:
            out[i] = preprocess_numpy(read_rgb(files[idx]), preprocess)  # bombs, 16-bit grey: one place
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"calibration image {files[idx]} cannot be read ({exc})") from None
    return out


def _cache_key(files: list[Path], preprocess: Preprocess, size: int, seed: int) -> str:
    h = hashlib.sha256(json.dumps([preprocess.to_dict(), size, seed]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def build_calibration_set(source, preprocess: Preprocess, *, size: int = DEFAULT_SIZE, seed: int = 0,
                          cache_dir=None, progress: bool = True) -> CalibrationSet:
    """``size`` images from ``source`` preprocessed like the checkpoint's eval transform; cached when
    ``cache_dir`` is given (the cache file is keyed by the source files, preprocessing, size and seed)."""
    if size < 1:
        raise DataError(f"calibration size must be at least 1, got {size}")
    source = Path(source)
    if not source.exists():
        raise DataError(f"calibration source {source} does not exist")
    if source.is_file():
        a = _from_npy(source, preprocess, size)
        return CalibrationSet(a, array_sha256(a), str(source))
    files = image_files(source)
    cache = Path(cache_dir) / f"calib-{_cache_key(files, preprocess, size, seed)}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        a = np.load(cache, allow_pickle=False)
    else:
        a = _from_images(files, preprocess, size, seed, progress)
        if cache is not None:
            atomic_write_npy(cache, a)
    return CalibrationSet(a, array_sha256(a), str(source))
