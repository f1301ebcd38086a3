"""Map-style dataset over Market records: (image tensor, label, camid)."""

from __future__ import annotations

from typing import Callable, Sequence

from torch.utils.data import Dataset

from swedge.data.images import read_rgb
from swedge.data.market import Record
from swedge.errors import DataError

# How the traceback text torch's DataLoader sends back from a worker names our error, just before its message.
_WORKER_ERROR = f"{DataError.__module__}.{DataError.__qualname__}: "


def loader_batches(loader):
    """Iterate ``loader``; a DataError from a worker process comes out as its own one line (torch re-raises
    it in the main process with the worker's whole traceback as the message)."""
    batches = iter(loader)
    try:
        yield from batches
    except DataError as exc:
        text = str(exc)
        if _WORKER_ERROR not in text:
            raise  # raised in this process: already one line
        # Stop the workers now: left to garbage collection, torch's shutdown waits 5 s per worker.
        getattr(batches, "_shutdown_workers", lambda: None)()
        raise DataError(text.rpartition(_WORKER_ERROR)[2].strip().splitlines()[0]) from None


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
