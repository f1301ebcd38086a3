"""Map-style dataset over Market records: (image tensor, label, camid)."""

from __future__ import annotations

from typing import Callable, Sequence

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from swedge.data.market import Record
from swedge.errors import DataError


def read_rgb(path: str) -> Image.Image:
    """Open an image as RGB, or raise a DataError naming the file (truncated downloads happen)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot read image {path} ({exc}): re-create or remove the file") from exc


class ImageDataset(Dataset):
    """``labels`` (e.g. from ``relabel``) replace the pid as the returned label; by default the pid is returned."""

    def __init__(self, records: Sequence[Record], transform: Callable, labels: Sequence[int] | None = None):
        if labels is not None and len(labels) != len(records):
            raise DataError(f"{len(labels)} labels for {len(records)} records: pass one label per record")
        self.records, self.transform = list(records), transform
        self.labels = list(labels) if labels is not None else [r.pid for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        return self.transform(read_rgb(r.path)), self.labels[i], r.camid
