"""Hostile but fair inputs to what training, eval and export read (checkpoints and data sets): each is one
line naming the problem, exit 2, no traceback, no silent pass. The catalogue is one table; cases that need more
than an exit code and a message have their own tests below it."""

import json
import os
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swedge.checkpoint import load_checkpoint
from swedge.checkpoint_meta import HEADER_DIGEST_KEY, seal
from swedge.cli import main
from swedge.data.images import UINT16_TO_UINT8, read_rgb
from swedge.data.market import INT64_MAX, SPLIT_DIRS
from swedge.errors import DataError

# --------------------------------------------------------------------------------------------- building bad inputs


def _split(data: bytes):
    n = int.from_bytes(data[:8], "little")
    return n, json.loads(data[8:8 + n])


def edited_checkpoint(src: Path, dst: Path, edit, *, reseal: bool) -> Path:
    """``src`` with its swedge metadata edited, tensor data untouched; ``reseal`` recomputes the header digest
    (a forged header), so the field checks behind the digest are what is tested."""
    data = src.read_bytes()
    n, header = _split(data)
    meta = json.loads(header["__metadata__"]["swedge"])
    meta = edit(meta) or meta
    if reseal and isinstance(meta, dict):
        meta = seal(meta)
    header["__metadata__"]["swedge"] = json.dumps(meta)
    text = json.dumps(header).encode()
    dst.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    return dst


def _set(*keys_value):
    """An edit that sets meta[k1][k2]... = value."""
    *keys, value = keys_value

    def edit(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


def _drop_digest(meta):
    meta.pop(HEADER_DIGEST_KEY)


def copy_market(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def first_image(root: Path, split: str) -> Path:
    return sorted((root / SPLIT_DIRS[split]).glob("*.jpg"))[0]


def corrupt_image(root: Path, split: str) -> Path:
    bad = first_image(root, split)
    bad.write_bytes(b"\xff\xd8 not really a jpeg" * 4)
    return bad


def corrupt_all(root: Path, split: str) -> None:
    """Every image of a split: a PK epoch draws only some of the training images."""
    for f in (root / SPLIT_DIRS[split]).glob("*.jpg"):
        f.write_bytes(b"\xff\xd8 not really a jpeg")


def bomb_all(root: Path, split: str, side: int) -> None:
    for f in sorted((root / SPLIT_DIRS[split]).glob("*.jpg")):
        f.unlink()
        png_claiming(f.with_suffix(".png"), side, side)


def truncate_half(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])  # a download cut short


def replace_with_folder(f: Path) -> None:
    f.unlink()
    f.mkdir()


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A small real PNG whose IHDR claims ``width`` x ``height`` (CRC fixed): the shape of a decompression bomb."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"IHDR")
    data[at + 4:at + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[at + 17:at + 21] = zlib.crc32(bytes(data[at:at + 17])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def bomb(root: Path, split: str, side: int) -> Path:
    victim = first_image(root, split)
    victim.unlink()
    return png_claiming(victim.with_suffix(".png"), side, side)


def rename_first(root: Path, split: str, pattern: str, repl: str) -> Path:
    victim = first_image(root, split)
    target = victim.with_name(re.sub(pattern, repl, victim.name, count=1))
    victim.rename(target)
    return target


def no_matches(root: Path) -> Path:
    """Every query and gallery image moved to camera 1: same id + same camera is not a match (Market protocol)."""
    for split in ("query", "gallery"):
        for i, f in enumerate(sorted((root / SPLIT_DIRS[split]).glob("*.jpg"))):
            f.rename(f.with_name(re.sub(r"_c\d+s\d+_\d+", f"_c1s1_{i:06d}", f.name, count=1)))
    return root


BOMB_SIDE = 30000  # 9e8 pixels: over twice PIL's MAX_IMAGE_PIXELS, its DecompressionBombError
WARN_SIDE = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5)  # between the limit and twice it: PIL only warns

# id, build(tmp, ckpt, market) -> (ckpt, data) to use, command, exit code, what the message must name
# (the file is named in every message: "{ckpt}" / "{bad}" are filled in).
CKPT = "checkpoint"
CASES = [
    # ---- checkpoint headers: shape, type, enumerated values, ranges (forged: digest recomputed)
    ("header-is-list", lambda m: [m], True, "metadata must be a JSON object"),
    ("version-negative", _set("format_version", -1), True, "'format_version'"),
    ("version-string", _set("format_version", "1"), True, "'format_version'"),
    ("version-future", _set("format_version", 99), True, "upgrade swedge"),
    ("model-is-list", _set("model", [1]), True, "'model'"),
    ("arch-unknown", _set("model", "arch", "vgg16"), True, "'model.arch'"),
    ("widths-outside-set", _set("model", "widths", [0.5, 1.5]), True, "'model.widths'"),
    ("widths-string", _set("model", "widths", "0.5,1.0"), True, "'model.widths'"),
    ("widths-no-full", _set("model", "widths", [0.25, 0.5]), True, "'model.widths'"),
    ("embedding-dim-string", _set("model", "embedding_dim", "32"), True, "'model.embedding_dim'"),
    ("num-classes-zero", _set("model", "num_classes", 0), True, "'model.num_classes'"),
    ("classifier-kind-unknown", _set("model", "extra", {"classifier": "bogus"}), True, "'model.extra.classifier'"),
    ("preprocess-is-string", _set("preprocess", "imagenet"), True, "'preprocess'"),
    ("size-zero", _set("preprocess", "size", [0, 32]), True, "preprocess size"),
    ("size-negative", _set("preprocess", "size", [-64, 32]), True, "preprocess size"),
    ("size-string", _set("preprocess", "size", "64x32"), True, "preprocess size"),
    ("size-fractional", _set("preprocess", "size", [64.5, 32]), True, "preprocess size"),
    ("std-zero", _set("preprocess", "std", [0, 0.2, 0.2]), True, "preprocess std"),
    ("mean-nan", _set("preprocess", "mean", [float("nan"), 0.4, 0.4]), True, "preprocess mean"),
    ("mean-out-of-range", _set("preprocess", "mean", [120, 110, 100]), True, "preprocess mean"),
    ("channel-order-unknown", _set("preprocess", "channel_order", "RGBA"), True, "channel_order"),
    ("method-unknown", _set("method", {"name": "magic"}), True, "'method.name'"),
    ("method-options-unknown", _set("method", {"name": "sfsc-sum", "options": {"x": 1}}), True,
     "'method.options'"),
    ("amp-unknown", _set("training", {"amp": "int4"}), True, "'training.amp'"),
    ("optimizer-unknown", _set("training", {"optimizer": "sgd"}), True, "'training.optimizer'"),
    ("epochs-string", _set("training", {"epochs": "6"}), True, "'training.epochs'"),
    ("extra-is-list", _set("extra", []), True, "'extra'"),
    ("tensors-sha-number", _set("tensors_sha256", 7), True, "'tensors_sha256'"),
    # ---- edited metadata, digest left as it was: the digest catches it
    ("edited-size", _set("preprocess", "size", [128, 64]), False, "header was modified"),
    ("edited-mean", _set("preprocess", "mean", [0.5, 0.5, 0.5]), False, "header was modified"),
    ("edited-widths", _set("model", "widths", [0.25, 0.5, 1.0]), False, "header was modified"),
    ("edited-method", _set("method", "name", "sfsc"), False, "header was modified"),
    ("digest-removed", _drop_digest, False, "header was modified"),
]


def _header_case(edit, reseal):
    def build(tmp, ckpt, market):
        return edited_checkpoint(ckpt, tmp / "bad.safetensors", edit, reseal=reseal), market
    return build


def _raw_header_case(edit):
    """The safetensors header itself edited (tensor entries, __metadata__), the data left as it was."""
    def damage(data: bytes) -> bytes:
        n, header = _split(data)
        edit(header)
        text = json.dumps(header).encode()
        return len(text).to_bytes(8, "little") + text + data[8 + n:]
    return _file_case(damage)


def _retype(header):
    header["neck.weight"]["dtype"] = "I32"  # as many bytes as F32: only the dtype check can tell


def _file_case(damage):
    def build(tmp, ckpt, market):
        bad = tmp / "bad.safetensors"
        bad.write_bytes(damage(ckpt.read_bytes()))
        return bad, market
    return build


def _data_case(damage):
    def build(tmp, ckpt, market):
        data = copy_market(market, tmp / "data")
        damage(data)
        return ckpt, data
    return build


EVAL = ["eval", "{ckpt}", "--data", "{data}", "--workers", "0"]
EXPORT = ["export", "{ckpt}", "--calib", "{data}", "--out", "{tmp}/bundle", "--formats", "onnx", "--widths", "1.0",
          "--precisions", "fp32"]
TRAIN = ["train", "--data", "{data}", "--out", "{tmp}/run", "--arch", "mobilenetv2", "--widths", "1.0",
         "--embedding-dim", "16",
         "--input-size", "32x16", "--epochs", "1", "--ids-per-batch", "4", "--images-per-id", "2", "--quiet"]
ROWS = [(cid, _header_case(edit, reseal), EVAL, 2, msg) for cid, edit, reseal, msg in CASES] + [
    # the same checks on the export path
    ("export-edited-size", _header_case(_set("preprocess", "size", [128, 64]), False), EXPORT, 2,
     "header was modified"),
    ("export-size-zero", _header_case(_set("preprocess", "size", [0, 32]), True), EXPORT, 2, "preprocess size"),
    # ---- checkpoint files
    ("truncated-in-header", _file_case(lambda b: b[:200]), EVAL, 2, "truncated"),
    ("truncated-in-data", _file_case(lambda b: b[:len(b) // 2]), EVAL, 2, "truncated"),
    ("length-prefix-only", _file_case(lambda b: b[:8]), EVAL, 2, "truncated or corrupt"),
    ("padded", _file_case(lambda b: b + b"\0" * 64), EVAL, 2, "64 bytes longer than its tensors"),
    ("header-length-huge", _file_case(lambda b: (2**62).to_bytes(8, "little") + b[8:]), EVAL, 2, "header length"),
    ("empty-file", _file_case(lambda b: b""), EVAL, 2, "truncated or corrupt"),
    ("folder", lambda tmp, ckpt, market: (ckpt.parent, market), EVAL, 2, "is a folder"),
    ("device-file", lambda tmp, ckpt, market: ("/dev/null", market), EVAL, 2, "not a regular file"),
    ("metadata-not-object", _raw_header_case(lambda h: h.update(__metadata__=["swedge"])), EVAL, 2,
     "__metadata__ is not a JSON object"),
    ("dtype-changed", _raw_header_case(_retype), EVAL, 2, "'neck.weight' is I32"),
    # a forged size that would allocate ~100 GB if the model were built before the header's shapes are checked
    ("embedding-dim-huge", _header_case(_set("model", "embedding_dim", 10**8), True), EVAL, 2,
     "has shape"),
    # ---- data sets, on each path that reads them
    ("eval-corrupt-query", _data_case(lambda d: corrupt_image(d, "query")), EVAL, 2, "cannot read image"),
    ("eval-zero-byte-image", _data_case(lambda d: first_image(d, "query").write_bytes(b"")), EVAL, 2,
     "cannot read image"),
    ("eval-truncated-jpeg", _data_case(lambda d: truncate_half(first_image(d, "query"))), EVAL, 2, "truncated"),
    ("eval-folder-as-image", _data_case(lambda d: replace_with_folder(first_image(d, "query"))), EVAL, 2,
     "Is a directory"),
    ("eval-corrupt-query-workers", _data_case(lambda d: corrupt_image(d, "query")), EVAL[:-1] + ["2"], 2,
     "cannot read image"),
    ("eval-bomb", _data_case(lambda d: bomb(d, "query", BOMB_SIDE)), EVAL, 2, "too large to decode"),
    ("eval-bomb-warning-size", _data_case(lambda d: bomb(d, "query", WARN_SIDE)), EVAL, 2, "too large to decode"),
    ("eval-pid-over-int64", _data_case(lambda d: rename_first(d, "query", r"^\d+", str(INT64_MAX + 1))), EVAL, 2,
     str(INT64_MAX)),
    ("eval-camera-over-int64", _data_case(lambda d: rename_first(d, "gallery", r"_c\d+", f"_c{10**20}")), EVAL, 2,
     str(INT64_MAX)),
    ("eval-no-query-matches", _data_case(no_matches), EVAL, 2, "has a match"),
    ("export-corrupt-probe", _data_case(lambda d: corrupt_image(d, "query")), EXPORT, 2, "cannot read image"),
    ("export-corrupt-calib", _data_case(lambda d: corrupt_image(d, "train")), EXPORT[:-1] + ["int8"], 2,
     "cannot read image"),  # int8: the calibration set is read (before any quantization)
    ("export-bomb", _data_case(lambda d: bomb(d, "query", BOMB_SIDE)), EXPORT, 2, "too large to decode"),
    ("export-no-query-matches", _data_case(no_matches), EXPORT, 2, "has a match"),
    ("export-pid-over-int64", _data_case(lambda d: rename_first(d, "query", r"^\d+", str(INT64_MAX + 1))), EXPORT,
     2, str(INT64_MAX)),
    ("train-corrupt", _data_case(lambda d: corrupt_all(d, "train")), TRAIN + ["--workers", "0"], 2,
     "cannot read image"),
    ("train-bomb", _data_case(lambda d: bomb_all(d, "train", BOMB_SIDE)), TRAIN + ["--workers", "0"], 2,
     "too large to decode"),
    ("train-pid-over-int64", _data_case(lambda d: rename_first(d, "train", r"^\d+", str(INT64_MAX + 1))), TRAIN, 2,
     str(INT64_MAX)),
]


_PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's, on stderr while a command works: not a message


def messages(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and not _PROGRESS_BAR.search(line)]


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, tiny_checkpoint):
    """A real checkpoint a fifth of tiny_checkpoint's size (MobileNetV2, D=16): every case writes a damaged
    copy of it, and the preprocessing fits tiny_market."""
    from swedge.checkpoint import save_checkpoint
    from swedge.nn.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mobilenetv2", widths=(0.5, 1.0), embedding_dim=16, num_classes=4)).eval()
    path = tmp_path_factory.mktemp("small") / "model.safetensors"
    return save_checkpoint(path, model, preprocess=load_checkpoint(tiny_checkpoint).preprocess,
                           method={"name": "sfsc-sum"}, training={"epochs": 1}, extra={"complete": True})


def _run(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("build, argv, code, needle", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_hostile_input_is_one_line(build, argv, code, needle, small_checkpoint, tiny_market, tmp_path, capsys):
    ckpt, data = build(tmp_path, small_checkpoint, tiny_market)
    rc, err = _run(capsys, [a.format(ckpt=ckpt, data=data, tmp=tmp_path) for a in argv])
    lines = messages(err)
    assert rc == code, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert lines[0].startswith(f"swedge {argv[0]}: error: ")


# ----------------------------------------------------------------------------------------- cases that need more


@pytest.mark.parametrize("workers", ["0", "2"])
def test_corrupt_image_in_a_worker_is_one_line_from_any_process(workers, small_checkpoint, tiny_market, tmp_path,
                                                                 capfd):
    """capfd, not capsys: a worker process's own stderr would show here too."""
    data = copy_market(tiny_market, tmp_path / "data")
    bad = corrupt_image(data, "query")
    rc = main(["eval", str(small_checkpoint), "--data", str(data), "--workers", workers])
    err = capfd.readouterr().err
    lines = messages(err)
    assert rc == 2 and "Traceback" not in err and "worker process" not in err, err
    assert len(lines) == 1 and str(bad) in lines[0] and "cannot read image" in lines[0], err


def test_corrupt_image_while_training_with_workers(tiny_market, tmp_path, capfd):
    data = copy_market(tiny_market, tmp_path / "data")
    corrupt_all(data, "train")
    argv = [a.format(data=data, tmp=tmp_path) for a in TRAIN] + ["--workers", "2"]
    rc = main(argv)
    err = capfd.readouterr().err
    lines = messages(err)
    assert rc == 2 and "Traceback" not in err and "worker process" not in err, err
    assert len(lines) == 1 and "cannot read image" in lines[0] and str(data / SPLIT_DIRS["train"]) in lines[0], err


def test_eight_gigabyte_checkpoint_is_refused_before_reading(small_checkpoint, tmp_path, capsys):
    """A header that claims 8 GB for a real tensor name (a sparse file: no disk used): refused from the header,
    never read whole (today: MemoryError)."""
    n, header = _split(small_checkpoint.read_bytes())
    name = "classifier.weight"
    begin = header[name]["data_offsets"][0]
    header[name] = {"dtype": "F32", "shape": [2**31], "data_offsets": [begin, begin + 2**33]}
    others = [v["data_offsets"][1] for k, v in header.items() if k not in ("__metadata__", name)]
    text = json.dumps(header).encode()
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
    os.truncate(big, 8 + len(text) + max(others + [begin + 2**33]))
    rc, err = _run(capsys, ["eval", str(big), "--data", str(tmp_path), "--workers", "0"])
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"tensor '{name}' has shape (2147483648,)" in err


def test_unreadable_checkpoint(small_checkpoint, tmp_path, monkeypatch, capsys):
    """chmod 000 does not stop root (these tests may run as root), so the refusal is what open() raises."""
    import builtins

    import swedge.checkpoint_file

    real_open = builtins.open

    def denied(file, *a, **k):
        if Path(file) == small_checkpoint:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(swedge.checkpoint_file, "open", denied, raising=False)
    rc, err = _run(capsys, ["eval", str(small_checkpoint), "--data", str(tmp_path), "--workers", "0"])
    assert rc == 2 and "Traceback" not in err and "permission denied" in err and str(small_checkpoint) in err, err


def test_old_checkpoint_without_digest_loads_with_one_note(small_checkpoint, tmp_path, capsys):
    def as_format_1(meta):
        meta.pop(HEADER_DIGEST_KEY)
        meta["format_version"] = 1

    old = edited_checkpoint(small_checkpoint, tmp_path / "old.safetensors", as_format_1, reseal=False)
    assert load_checkpoint(old).config.widths == load_checkpoint(small_checkpoint).config.widths
    load_checkpoint(old)  # noted once per file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(old) in err[0] and "not covered by a digest" in err[0], err


@pytest.mark.parametrize("extra, training, warns", [
    ({"complete": False, "epochs_done": 1}, {"epochs": 2}, True),
    ({"complete": True, "epochs_done": 2}, {"epochs": 2}, False),
    ({"epochs_done": 1}, {"epochs": 2}, True),  # saved before runs marked completion: judged by its epochs
    ({"epochs_done": 2}, {"epochs": 2}, False),
    ({"epochs_done": 0, "steps_done": 5}, {"epochs": 2, "max_steps": 5}, False),  # --max-steps reached
])
def test_unfinished_run_checkpoint_warns(extra, training, warns, small_checkpoint, tmp_path, capsys):
    def edit(meta):
        meta["extra"], meta["training"] = extra, training

    ckpt = edited_checkpoint(small_checkpoint, tmp_path / "model.safetensors", edit, reseal=True)
    load_checkpoint(ckpt)
    load_checkpoint(ckpt)  # warned once per file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == int(warns), err
    assert not warns or ("did not finish" in err[0] and str(ckpt) in err[0] and "--resume" in err[0])


def test_killed_run_is_marked_unfinished_and_resume_completes_it(tiny_market, tmp_path, monkeypatch, capsys):
    """A run killed after its first of two epochs is marked unfinished (loading it warns); a damaged state is
    one line; --resume from the good state marks it complete."""
    import swedge.training.trainer
    from swedge.checkpoint import read_metadata

    real_save = swedge.training.trainer._Run._save

    def save_then_die(self, phase, epochs_done, step, *args, **kw):
        real_save(self, phase, epochs_done, step, *args, **kw)
        if epochs_done == 1 and args:
            raise KeyboardInterrupt  # the kill lands right after epoch 1's save

    argv = [a.format(data=tiny_market, tmp=tmp_path) for a in TRAIN]
    argv[argv.index("--epochs") + 1] = "2"
    monkeypatch.setattr(swedge.training.trainer._Run, "_save", save_then_die)
    assert main(argv + ["--workers", "0"]) == 130
    ckpt = tmp_path / "run" / "model.safetensors"
    assert read_metadata(ckpt)["extra"]["complete"] is False
    capsys.readouterr()
    load_checkpoint(ckpt)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not finish" in err[0] and str(ckpt) in err[0], err

    monkeypatch.setattr(swedge.training.trainer._Run, "_save", real_save)
    state_path = tmp_path / "run" / swedge.training.trainer.STATE_FILE
    good = state_path.read_bytes()
    state = torch.load(state_path, weights_only=True)
    state["model"] = {"not.a.weight": torch.zeros(1)}  # a damaged state whose settings still match
    torch.save(state, state_path)
    rc, err = _run(capsys, argv + ["--workers", "0", "--resume"])
    assert rc == 2 and "Traceback" not in err and "does not fit this run" in messages(err)[-1], err
    state_path.write_bytes(good)
    assert main(argv + ["--workers", "0", "--resume"]) == 0
    assert read_metadata(ckpt)["extra"]["complete"] is True


@pytest.mark.parametrize("state, needle", [([1, 2, 3], "holds a list"), ({"format": 1}, "lacks or has the wrong"),
                                           ("text", "holds a str")])
def test_resume_from_a_non_dict_trainer_state(state, needle, tiny_market, tmp_path, capsys):
    from swedge.training.trainer import STATE_FILE

    run = tmp_path / "run"
    run.mkdir()
    torch.save(state, run / STATE_FILE)
    argv = [a.format(data=tiny_market, tmp=tmp_path) for a in TRAIN] + ["--workers", "0", "--resume"]
    rc, err = _run(capsys, argv)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err and STATE_FILE in err


def test_resume_never_unpickles(tiny_market, tmp_path, capsys):
    """A booby-trapped state: torch.load(weights_only=True) refuses it, in one line, and nothing runs."""
    import pickle

    from swedge.training.trainer import STATE_FILE

    marker = tmp_path / "pwned"

    class Trap:
        def __reduce__(self):
            return (Path.touch, (marker,))

    run = tmp_path / "run"
    run.mkdir()
    (run / STATE_FILE).write_bytes(pickle.dumps(Trap()))
    argv = [a.format(data=tiny_market, tmp=tmp_path) for a in TRAIN] + ["--workers", "0", "--resume"]
    rc, err = _run(capsys, argv)
    assert rc == 2 and not marker.exists() and len(err.strip().splitlines()) == 1, err


def _png16(path: Path, value: int) -> Path:
    Image.fromarray(np.full((8, 4), value, np.uint16)).save(path)  # a real 16-bit grey PNG
    return path


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    value = 32768
    path = _png16(tmp_path / "grey16.png", value)
    with Image.open(path) as im:
        assert im.mode == "I;16"  # what PIL makes of it (and clips to white with convert("RGB"))
    expected = round(value / UINT16_TO_UINT8)
    assert np.array_equal(np.asarray(read_rgb(path)), np.full((8, 4, 3), expected, np.uint8))


def test_sixteen_bit_png_on_the_probe_and_calibration_path(tmp_path):
    """preprocess_numpy is what the export's probe and calibration sets run on every image."""
    from swedge.data.preprocess import Preprocess, preprocess_numpy

    pre = Preprocess(size=(8, 4))
    path = _png16(tmp_path / "grey16.png", 65535 // 3)
    eight_bit = Image.new("RGB", (4, 8), (round(65535 // 3 / UINT16_TO_UINT8),) * 3)
    with Image.open(path) as im:
        np.testing.assert_array_equal(preprocess_numpy(im, pre), preprocess_numpy(eight_bit, pre))
    np.testing.assert_array_equal(preprocess_numpy(read_rgb(path), pre), preprocess_numpy(eight_bit, pre))


def test_32_bit_and_float_images_are_refused(tmp_path):
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(wide)
    flt = tmp_path / "float.tif"
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(flt)
    with pytest.raises(DataError, match="wide.tif.*outside 0..65535"):
        read_rgb(wide)
    with pytest.raises(DataError, match="float.tif.*floating-point"):
        read_rgb(flt)
