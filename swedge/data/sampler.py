"""PK identity sampler: every batch holds P identities x K images, so each anchor has positives for triplet loss."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from swedge.errors import DataError


class PKSampler(Sampler[int]):
    """Yields dataset indices; consecutive runs of ``batch_size`` = P*K form one batch (use it with
    ``DataLoader(batch_size=batch_size, sampler=..., drop_last=True)``).

    An epoch cuts each identity's shuffled images into chunks of K (ids with fewer than K images are sampled with
    replacement), then draws P distinct ids per batch, favouring ids with more chunks left, and refills exhausted
    ids when fewer than P remain. So every batch is complete and an epoch sees about every image once.
    Deterministic given (seed, epoch): call ``set_epoch`` each epoch for a new order.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, k: int = 4, *, seed: int = 0,
                 num_batches: int | None = None):
        if k < 1:
            raise DataError(f"K (images per identity) must be >= 1, got {k}")
        if batch_size < k:
            raise DataError(f"batch too small for the PK sampler: batch size {batch_size} < K={k} images per id; "
                            f"use a batch size of P*K, e.g. {4 * k}")
        if batch_size % k:
            raise DataError(f"batch size {batch_size} is not a multiple of K={k}: the PK sampler needs batch = P*K, "
                            f"e.g. {batch_size // k * k} or {(batch_size // k + 1) * k}")
        by_id = defaultdict(list)
        for i, y in enumerate(labels):
            by_id[int(y)].append(i)
        self.p, self.k, self.batch_size, self.seed, self.epoch = batch_size // k, k, batch_size, seed, 0
        if len(by_id) < self.p:
            raise DataError(f"need at least P={self.p} ids for batch size {batch_size} with K={k}, found {len(by_id)}: "
                            "lower the batch size or raise K")
        self.ids = sorted(by_id)
        self.members = [np.asarray(by_id[y]) for y in self.ids]
        chunks = sum(max(1, len(m) // k) for m in self.members)
        self.num_batches = int(num_batches) if num_batches else max(1, chunks // self.p)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _chunks(self, members: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        if len(members) < self.k:
            picked = rng.choice(members, self.k, replace=True)
        else:
            picked = rng.permutation(members)
        return [picked[j:j + self.k] for j in range(0, len(picked) - self.k + 1, self.k)]

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        queues = [self._chunks(m, rng) for m in self.members]
        for _ in range(self.num_batches):
            left = np.array([len(q) for q in queues], dtype=np.float64)
            if np.count_nonzero(left) < self.p:
                for j, q in enumerate(queues):
                    if not q:
                        q.extend(self._chunks(self.members[j], rng))
                left = np.array([len(q) for q in queues], dtype=np.float64)
            for j in rng.choice(len(queues), self.p, replace=False, p=left / left.sum()):
                yield from (int(i) for i in queues[j].pop())

    def batches(self) -> Iterator[list[int]]:
        """The same order grouped into lists of batch_size (for a ``batch_sampler=``)."""
        it = iter(self)
        for _ in range(self.num_batches):
            yield [next(it) for _ in range(self.batch_size)]
