import json

import pytest
import torch

from swedge.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from swedge.checkpoint_meta import seal
from swedge.cli import main
from swedge.data.preprocess import Preprocess
from swedge.errors import CheckpointError
from swedge.nn.model import ModelConfig, build_model

PRE = {"size": [64, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "channel_order": "RGB"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", widths=(0.5, 1.0), embedding_dim=16, num_classes=5))
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "m.safetensors", model, preprocess=PRE,
                           method={"name": "sfsc-sum"}, training={"epochs": 1})
    return model, path


def test_round_trip(saved):
    model, path = saved
    ck = load_checkpoint(path)
    assert ck.config.widths == (0.5, 1.0) and ck.config.num_classes == 5 and ck.preprocess == Preprocess.from_dict(PRE)
    assert ck.meta["method"]["name"] == "sfsc-sum" and "torch" in ck.meta["versions"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k]), k
    assert len(ck.file_sha256) == 64
    assert read_metadata(path)["model"]["arch"] == "resnet18"


def test_preprocess_is_parsed_once_into_its_record_and_the_file_keeps_the_dict(saved, tmp_path):
    """``Checkpoint.preprocess`` is a Preprocess read when the checkpoint loads; the header holds the dict as written
    (PRE has no 'interpolation' nor 'layout', like older headers: they load with the defaults) and a re-save of the
    record writes its dict."""
    model, path = saved
    ck = load_checkpoint(path)
    assert isinstance(ck.preprocess, Preprocess) and ck.preprocess.size == (64, 32)
    assert ck.preprocess.mean == (0.5, 0.5, 0.5) and ck.preprocess.interpolation == "bilinear"
    assert read_metadata(path)["preprocess"] == PRE
    again = save_checkpoint(tmp_path / "again.safetensors", model, preprocess=ck.preprocess)
    assert read_metadata(again)["preprocess"] == ck.preprocess.to_dict()
    assert load_checkpoint(again).preprocess == ck.preprocess


def _expect(path, match, **kw):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, **kw)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.safetensors", "no such checkpoint")


def test_truncated(saved, tmp_path):
    data = saved[1].read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"t{cut}.safetensors"
        bad.write_bytes(data[:cut])
        _expect(bad, "truncated or corrupt")


def test_not_safetensors(tmp_path):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x00" * 3 + b"definitely not a checkpoint" * 10)
    _expect(bad, "truncated or corrupt")


def test_flipped_byte_detected_by_sha(saved, tmp_path):
    data = bytearray(saved[1].read_bytes())
    data[-50] ^= 0xFF
    bad = tmp_path / "flip.safetensors"
    bad.write_bytes(bytes(data))
    _expect(bad, "sha256")


def _rewrite_meta(src, dst, edit):
    from safetensors.torch import load, save

    data = src.read_bytes()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(json.loads(data[8:8 + n])["__metadata__"]["swedge"])
    tensors = load(data)
    edit(meta, tensors)
    # Re-sealed, so the checks behind the header digest are what is tested.
    dst.write_bytes(save(tensors, metadata={"swedge": json.dumps(seal(meta))}))
    return dst


def test_plain_safetensors_is_not_a_checkpoint(saved, tmp_path):
    from safetensors.torch import load, save

    plain = tmp_path / "p.safetensors"
    plain.write_bytes(save(load(saved[1].read_bytes())))
    _expect(plain, "not a swedge checkpoint")


def test_newer_format(saved, tmp_path):
    def edit(meta, _):
        meta["format_version"] = 99

    _expect(_rewrite_meta(saved[1], tmp_path / "v.safetensors", edit), "format version 99.*upgrade")


def test_wrong_arch_in_metadata(saved, tmp_path):
    def edit(meta, _):
        meta["model"]["arch"] = "resnet50"

    _expect(_rewrite_meta(saved[1], tmp_path / "a.safetensors", edit), "do not match a 'resnet50' model")


def test_wrong_widths_in_metadata(saved, tmp_path):
    def edit(meta, _):
        meta["model"]["widths"] = [0.25, 0.5, 1.0]

    _expect(_rewrite_meta(saved[1], tmp_path / "w.safetensors", edit), "do not match")


def test_mismatched_shape(saved, tmp_path):
    from swedge.checkpoint import tensors_sha256

    def edit(meta, tensors):
        tensors["classifier.weight"] = torch.zeros(6, 16)
        meta["tensors_sha256"] = tensors_sha256(tensors)

    _expect(_rewrite_meta(saved[1], tmp_path / "s.safetensors", edit), "'classifier.weight' has shape")


def test_requested_width_or_arch_missing(saved):
    _expect(saved[1], "width 0.25 is not one of them", widths=[0.25])
    _expect(saved[1], "holds a 'resnet18' model, not 'mobilenetv2'", arch="mobilenetv2")


def test_cli_prints_one_line_no_traceback(saved, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(saved[1].read_bytes()[:1000])
    assert main(["eval", str(bad), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "truncated or corrupt" in err


def test_save_is_atomic(saved, tmp_path, monkeypatch):
    """A failure while writing leaves neither a partial file nor the old file damaged."""
    model, path = saved
    target = tmp_path / "m.safetensors"
    target.write_bytes(path.read_bytes())
    import swedge.io

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(swedge.io.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, model, preprocess=PRE)
    assert target.read_bytes() == path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
