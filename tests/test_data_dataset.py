"""ImageDataset: (tensor, label, camid), labels override pids, unreadable files are named."""

import pytest
import torch
from PIL import Image

from swedge.data.dataset import ImageDataset
from swedge.data.market import Record
from swedge.data.transforms import EvalTransform
from swedge.data.preprocess import Preprocess
from swedge.errors import DataError


def test_items(tmp_path):
    Image.new("L", (10, 20), 50).save(tmp_path / "a.png")
    Image.new("RGB", (10, 20), (1, 2, 3)).save(tmp_path / "b.jpg")
    recs = [Record(str(tmp_path / "a.png"), 7, 0), Record(str(tmp_path / "b.jpg"), 9, 2)]
    ds = ImageDataset(recs, EvalTransform(Preprocess(size=(16, 8))))
    x, y, c = ds[1]
    assert x.shape == (3, 16, 8) and (y, c) == (9, 2) and len(ds) == 2
    assert ds[0][0].shape == (3, 16, 8)  # grayscale converted to RGB
    assert ImageDataset(recs, lambda im: im, labels=[0, 1])[1][1] == 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch[0].shape == (2, 3, 16, 8) and batch[2].tolist() == [0, 2]


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "0001_c1s1_000001_01.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    ds = ImageDataset([Record(str(bad), 1, 0)], EvalTransform())
    with pytest.raises(DataError, match="cannot read image .*0001_c1s1_000001_01.jpg"):
        ds[0]


def test_label_count_must_match():
    with pytest.raises(DataError, match="2 labels for 1 records"):
        ImageDataset([Record("x", 1, 0)], EvalTransform(), labels=[0, 1])
