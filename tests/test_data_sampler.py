"""PK sampler: P distinct ids x K images per batch, replacement for small ids, determinism, errors."""

from collections import Counter

import pytest

from swedge.data.sampler import PKSampler
from swedge.errors import DataError

# 10 ids with 1..10 images each
LABELS = [pid for pid in range(10) for _ in range(pid + 1)]


def _batches(s):
    order = list(s)
    assert len(order) == len(s)
    return [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]


def test_each_batch_is_p_ids_times_k():
    s = PKSampler(LABELS, batch_size=12, k=4, seed=0)
    assert (s.p, s.k) == (3, 4)
    batches = _batches(s)
    assert len(batches) == s.num_batches > 0
    for b in batches:
        counts = Counter(LABELS[i] for i in b)
        assert len(counts) == 3 and set(counts.values()) == {4}
        for pid in counts:  # consecutive runs of K belong to one id
            assert any(all(LABELS[i] == pid for i in b[j:j + 4]) for j in range(0, 12, 4))
    assert list(s.batches()) == batches


def test_small_ids_are_sampled_with_replacement():
    labels = [0, 1, 1, 2, 2, 2]
    s = PKSampler(labels, batch_size=4, k=2, seed=1, num_batches=20)
    batches = _batches(s)
    assert len(batches) == 20
    with_zero = [b for b in batches if 0 in b]
    assert with_zero and all(b.count(0) == 2 for b in with_zero)  # the 1-image id repeats its only image


def test_deterministic_per_seed_and_epoch():
    a, b = PKSampler(LABELS, 8, 4, seed=5), PKSampler(LABELS, 8, 4, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(PKSampler(LABELS, 8, 4, seed=6)) != first


def test_epoch_covers_most_images():
    s = PKSampler(LABELS, 8, 2, seed=0)
    covered = set(s)
    assert len(covered) >= 0.8 * len(LABELS)


@pytest.mark.parametrize("batch, k, match", [
    (10, 4, "not a multiple of K=4"),
    (2, 4, "batch too small for the PK sampler"),
    (44, 4, "need at least P=11 ids"),
    (8, 0, "K .* must be >= 1"),
])
def test_errors(batch, k, match):
    with pytest.raises(DataError, match=match):
        PKSampler(LABELS, batch, k)


def test_works_with_dataloader():
    import torch

    s = PKSampler(LABELS, 8, 4)
    dl = torch.utils.data.DataLoader(torch.tensor(LABELS), batch_size=8, sampler=s, drop_last=True)
    for y in dl:
        assert sorted(Counter(y.tolist()).values()) == [4, 4]
