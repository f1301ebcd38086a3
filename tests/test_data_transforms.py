"""Preprocess (torch-free) and the train/eval transforms built from it."""

import numpy as np
import pytest
import torch
from PIL import Image

from swedge.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, preprocess_numpy
from swedge.data.transforms import EvalTransform, TrainTransform, build_transforms
from swedge.errors import DataError


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (100, 40, 3), dtype=np.uint8))


def test_preprocess_numpy_shape_and_values(image):
    x = preprocess_numpy(image)
    assert x.shape == (3, 128, 64) and x.dtype == np.float32 and x.flags.c_contiguous
    flat = Image.new("RGB", (10, 10), (255, 0, 128))
    y = preprocess_numpy(flat, Preprocess(size=(4, 2)))
    expected = (np.array([255, 0, 128]) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    assert np.allclose(y[:, 0, 0], expected, atol=1e-6)
    bgr = preprocess_numpy(flat, Preprocess(size=(4, 2), channel_order="BGR", mean=(0, 0, 0), std=(1, 1, 1)))
    assert np.allclose(bgr[:, 0, 0], [128 / 255, 0, 1])
    gray = preprocess_numpy(Image.new("L", (10, 10), 7), Preprocess(size=(4, 2)))  # converted to RGB
    assert gray.shape == (3, 4, 2)


def test_preprocess_dict_roundtrip_and_validation():
    p = Preprocess(size=(256, 128))
    d = p.to_dict()
    assert d["size"] == [256, 128] and d["channel_order"] == "RGB" and d["layout"] == "CHW"
    assert Preprocess.from_dict(d) == p
    with pytest.raises(DataError, match="channel_order"):
        Preprocess(channel_order="RGBA")
    with pytest.raises(DataError, match="preprocess std"):
        Preprocess(std=(1, 0, 1))
    with pytest.raises(DataError, match="at least 'size'"):
        Preprocess.from_dict({"mean": [0, 0, 0]})


def _pil_reference(image, size, resample, mean, std, bgr=False):
    """The independent reference: PIL's own resize of the same image, then (x / 255 - mean) / std, HWC -> CHW."""
    h, w = size
    a = np.asarray(image.convert("RGB").resize((w, h), resample), dtype=np.float64) / 255.0
    if bgr:
        a = a[..., ::-1]
    return ((a - np.asarray(mean)) / np.asarray(std)).transpose(2, 0, 1)


@pytest.mark.parametrize("interpolation,resample", [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC),
                                                    ("nearest", Image.NEAREST)])
def test_eval_transform_matches_pils_own_resize(image, interpolation, resample):
    pre = Preprocess(size=(64, 32), interpolation=interpolation)
    x = EvalTransform(pre)(image)
    assert isinstance(x, torch.Tensor) and x.shape == (3, 64, 32) and x.dtype == torch.float32
    ref = _pil_reference(image, (64, 32), resample, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(x.numpy() - ref).max() < 1e-5
    # a HWC uint8 array is treated as the same image
    assert np.abs(preprocess_numpy(np.asarray(image), pre) - ref).max() < 1e-5
    # BGR: channels reversed, mean / std listed in BGR order (as the Preprocess docstring says)
    bgr = preprocess_numpy(image, Preprocess(size=(64, 32), interpolation=interpolation, channel_order="BGR",
                                             mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1]))
    assert np.abs(bgr - _pil_reference(image, (64, 32), resample, IMAGENET_MEAN[::-1], IMAGENET_STD[::-1],
                                       bgr=True)).max() < 1e-5


def test_resize_known_pixels():
    """Hand-computed values: nearest halving of four uniform blocks keeps one pixel per block; bilinear
    (pixel-centre aligned) widening of [0, 255] to 4 pixels gives 0, 63.75, 191.25, 255 -> 0, 64, 191, 255;
    and every filter keeps a constant image constant."""
    plain = dict(mean=(0, 0, 0), std=(1, 1, 1))
    a = np.zeros((4, 2, 3), np.uint8)
    a[:2, 0], a[:2, 1], a[2:, 0], a[2:, 1] = 10, 60, 110, 250
    y = preprocess_numpy(Image.fromarray(a), Preprocess(size=(2, 2), interpolation="nearest", **plain))
    assert np.allclose(y[0] * 255, [[10, 60], [110, 250]], atol=1e-4)
    ramp = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    y = preprocess_numpy(Image.fromarray(ramp), Preprocess(size=(1, 4), interpolation="bilinear", **plain))
    assert np.allclose(y[:, 0] * 255, [[0, 64, 191, 255]] * 3, atol=1e-4)
    flat = Image.new("RGB", (8, 16), (200, 100, 50))
    z = preprocess_numpy(flat, Preprocess(size=(5, 3), interpolation="bicubic", **plain))
    assert np.allclose(z.reshape(3, -1) * 255, np.array([[200], [100], [50]]), atol=1e-4)


def test_train_transform_shape_and_randomness(image):
    train, _ = build_transforms(Preprocess(size=(64, 32)))
    torch.manual_seed(0)
    a = [train(image) for _ in range(6)]
    torch.manual_seed(0)
    b = [train(image) for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # torch's RNG drives all randomness
    assert all(x.shape == (3, 64, 32) and x.dtype == torch.float32 for x in a)
    assert len({x.sum().item() for x in a}) > 1


def test_flip_pad_and_erase_separately(image):
    pre = Preprocess(size=(64, 32))
    ref = EvalTransform(pre)(image)
    flip = TrainTransform(pre, flip_p=1.0, pad=0, erase_p=0.0)(image)
    assert torch.equal(flip, ref.flip(-1))
    torch.manual_seed(1)
    shifted = TrainTransform(pre, flip_p=0.0, pad=4, erase_p=0.0)(image)
    black = torch.tensor([(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])[:, None]
    matches = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
               if torch.allclose(shifted[:, max(0, -dy):64 - max(0, dy), max(0, -dx):32 - max(0, dx)],
                                 ref[:, max(0, dy):64 - max(0, -dy), max(0, dx):32 - max(0, -dx)])]
    assert len(matches) == 1  # a shifted copy of the image...
    dy, dx = matches[0]
    border = torch.ones(64, 32, dtype=torch.bool)
    border[max(0, -dy):64 - max(0, dy), max(0, -dx):32 - max(0, dx)] = False
    assert torch.allclose(shifted[:, border], black.expand(3, int(border.sum())), atol=1e-6)  # ...padded black
    erased = TrainTransform(pre, flip_p=0.0, pad=0, erase_p=1.0)(image)
    zero = (erased == 0).all(0)
    assert 0.02 * 64 * 32 * 0.5 <= zero.sum() <= 0.4 * 64 * 32 * 1.1
    assert torch.equal(erased[:, ~zero], ref[:, ~zero])
