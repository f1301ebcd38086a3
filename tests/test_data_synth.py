"""Synthetic set: deterministic bytes, Market naming, disjoint ids, query/gallery protocol, options, errors."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from swedge.data.market import load_market
from swedge.data.synth import GENERATOR_VERSION, generate
from swedge.errors import DataError

TINY = dict(train_ids=6, test_ids=4, cameras=3, images_per_camera=2, distractors=3, junk=2, progress=False)
NAME = re.compile(r"^(\d{4}|-1)_c(\d)s1_(\d{6})_(\d{2})\.jpg$")


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return out, generate(out, seed=3, **TINY)


def test_same_seed_same_bytes(tiny, tmp_path):
    out, _ = tiny
    generate(tmp_path / "again", seed=3, **TINY)
    generate(tmp_path / "other", seed=4, **TINY)
    assert _digest(out) == _digest(tmp_path / "again")
    assert _digest(out) != _digest(tmp_path / "other")


def test_layout_names_and_counts(tiny):
    out, summary = tiny
    files = {d: sorted(p.name for p in (out / d).iterdir())
             for d in ("bounding_box_train", "query", "bounding_box_test")}
    for names in files.values():
        assert names and all(NAME.match(n) for n in names), names
    all_names = [n for names in files.values() for n in names]
    assert len(set(all_names)) == len(all_names)
    gallery = files["bounding_box_test"]
    assert sum(n.startswith("0000_") for n in gallery) == 3 and sum(n.startswith("-1_") for n in gallery) == 2
    assert summary["splits"]["train"] == {"images": len(files["bounding_box_train"]), "ids": 6}
    with Image.open(out / "query" / files["query"][0]) as im:
        assert im.size == (64, 128) and im.mode == "RGB"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["generator_version"] == GENERATOR_VERSION and meta["seed"] == 3
    readme = (out / "README.txt").read_text()
    assert f"generator version {GENERATOR_VERSION}" in readme and "seed 3" in readme


def test_protocol_disjoint_ids_one_query_per_camera(tiny):
    s = load_market(tiny[0])
    train, test = {r.pid for r in s.train}, {r.pid for r in s.query}
    assert not train & test and test == {r.pid for r in s.gallery if r.pid > 0}
    pairs = [(r.pid, r.camid) for r in s.query]
    assert len(pairs) == len(set(pairs))  # one query per (id, camera)
    for pid, cam in pairs:  # every query has a cross-camera match in the gallery
        assert any(r.pid == pid and r.camid != cam for r in s.gallery)
    assert all(len({r.camid for r in s.train if r.pid == p}) >= 2 for p in train)


def test_size_option_and_refusal(tmp_path):
    out = tmp_path / "big"
    generate(out, train_ids=1, test_ids=1, cameras=2, images_per_camera=2, distractors=0, junk=0,
             size=(256, 128), progress=False)
    with Image.open(next((out / "query").iterdir())) as im:
        assert im.size == (128, 256)
    with pytest.raises(DataError, match="not empty"):
        generate(out, train_ids=1, test_ids=1, cameras=2, progress=False)
    generate(out, train_ids=1, test_ids=1, cameras=2, distractors=0, junk=0, force=True, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(cameras=1), "cameras must be 2..9"),
    (dict(images_per_camera=1), "images-per-camera must be >= 2"),
    (dict(train_ids=0), "at least 1 train"),
    (dict(size=(20, 10)), "too small"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(DataError, match=match):
        generate(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_torch_free_modules():
    code = ("import sys, swedge.data, swedge.data.synth, swedge.data.market, swedge.data.fetch, "
            "swedge.data.preprocess; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parents[1]).stdout.strip() == "False"
