"""Market-1501 loader and writer: parsing, junk/distractor handling, errors that name the file and the fix."""

import os

import pytest
from PIL import Image

from swedge.data.market import MarketWriter, load_market, market_name, parse_name, relabel
from swedge.errors import DataError


def _touch(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (8, 16), (120, 30, 30)).save(folder / n)


@pytest.fixture
def market(tmp_path):
    _touch(tmp_path / "bounding_box_train", ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg",
                                             "0007_c3s2_001001_01.jpg", "-1_c1s1_000401_03.jpg",
                                             "0000_c1s1_000002_01.jpg"])
    _touch(tmp_path / "query", ["0011_c1s1_000100_01.jpg", "0012_c4s1_000200_01.jpg", "-1_c2s1_0_01.jpg"])
    _touch(tmp_path / "bounding_box_test", ["0011_c2s1_000300_01.jpg", "0012_c1s1_000400_02.jpg",
                                            "0000_c1s1_000500_01.jpg", "-1_c3s1_000600_01.jpg"])
    (tmp_path / "bounding_box_test" / "Thumbs.db").write_bytes(b"x")  # the real Market zip ships these
    return tmp_path


def test_load_market_filters_junk_and_distractors(market):
    s = load_market(market)
    assert [(r.pid, r.camid) for r in s.train] == [(2, 0), (2, 1), (7, 2)]  # no -1, no 0000; camid 0-based
    assert {r.pid for r in s.query} == {11, 12}
    assert sorted(r.pid for r in s.gallery) == [0, 11, 12]  # distractor kept, junk dropped
    assert all(os.path.isfile(r.path) for r in s.train + s.query + s.gallery)
    summary = s.summary()
    assert summary["train"] == {"images": 3, "ids": 2, "cameras": 3}
    assert summary["gallery"]["distractors"] == 1
    assert "train 2 ids / 3 images" in s.describe()


def test_relabel_is_contiguous_in_pid_order(market):
    labels, pid2label = relabel(load_market(market).train)
    assert labels == [0, 0, 1] and pid2label == {2: 0, 7: 1}


def test_bad_file_name_is_named(market):
    _touch(market / "query", ["frame_12.jpg"])
    with pytest.raises(DataError, match=r"cannot parse file name .*frame_12\.jpg"):
        load_market(market)


@pytest.mark.parametrize("name", ["0001_c0s1_000001_01.jpg", "abcd_c1s1_000001_01.jpg", "0001c1.jpg"])
def test_parse_name_rejects(name):
    assert parse_name(name) is None


def test_name_roundtrip():
    assert market_name(2, 1, 451, 3) == "0002_c1s1_000451_03.jpg"
    assert market_name(-1, 6, 7) == "-1_c6s1_000007_01.jpg"
    assert parse_name(market_name(-1, 6, 7)) == (-1, 6)
    assert parse_name("1501_c12s1_000001_01.png") == (1501, 12)


def test_missing_root_and_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist.*swedge data synth"):
        load_market(tmp_path / "nope")
    (tmp_path / "query").mkdir()
    with pytest.raises(DataError, match="missing bounding_box_train, bounding_box_test"):
        load_market(tmp_path)


def test_nested_root_hint(market, tmp_path_factory):
    outer = tmp_path_factory.mktemp("outer")
    os.rename(market, outer / "Market-1501-v15.09.15")
    with pytest.raises(DataError, match="did you mean --data .*Market-1501-v15.09.15"):
        load_market(outer)


def test_empty_folder_and_no_valid_ids(market):
    for f in (market / "query").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"no images .* in .*query"):
        load_market(market)
    _touch(market / "query", ["-1_c1s1_000001_01.jpg", "0000_c1s1_000002_01.jpg"])
    with pytest.raises(DataError, match=r"no valid identities in .*query"):
        load_market(market)


def test_writer_is_atomic_and_refuses_non_empty(tmp_path):
    out = tmp_path / "set"
    with pytest.raises(RuntimeError):
        with MarketWriter(out) as w:
            w.save("train", market_name(1, 1, 1), Image.new("RGB", (8, 16)))
            raise RuntimeError("interrupted")
    assert not out.exists() and os.listdir(tmp_path) == []  # no half data set, no temp dir left

    with MarketWriter(out) as w:
        w.save("train", market_name(1, 1, 1), Image.new("RGB", (8, 16)))
        w.write_text("README.txt", "hi")
    assert (out / "bounding_box_train" / "0001_c1s1_000001_01.jpg").is_file() and w.counts["train"] == 1
    with pytest.raises(DataError, match="not empty.*--force"):
        MarketWriter(out)
    with MarketWriter(out, force=True) as w:
        w.write_text("README.txt", "new")
    assert (out / "README.txt").read_text() == "new" and not any((out / "bounding_box_train").iterdir())
    assert sorted(os.listdir(tmp_path)) == ["set"]
