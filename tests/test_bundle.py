"""`swedge export`: the bundle is complete and self-describing, and every kind of bad input is refused cleanly."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from swedge.cli import main
from swedge.exporters.bundle import ExportPlan, export_bundle
from swedge.runtimes.manifest import read_manifest, tree_sha256
from swedge.runtimes.thresholds import DEFAULT


@pytest.fixture(scope="module")
def onnx_bundle(tiny_checkpoint, tiny_market, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "bundle"
    plan = ExportPlan(checkpoint=tiny_checkpoint, out=out, formats=["onnx"], widths=[0.25, 1.0],
                      precisions=["fp32", "int8"], calib=tiny_market, calib_size=16,
                      cache_dir=tmp_path_factory.mktemp("cache"))
    export_bundle(plan, progress=False)
    return out


def test_bundle_is_complete_and_hashes_match(onnx_bundle):
    m = json.loads((onnx_bundle / "manifest.json").read_text())
    read_manifest(onnx_bundle)  # valid
    assert [a["id"] for a in m["artifacts"]] == ["onnx-w0.25-fp32", "onnx-w0.25-int8", "onnx-w1-fp32", "onnx-w1-int8"]
    for a in m["artifacts"]:
        assert a["status"] == "ok", a
        assert tree_sha256(onnx_bundle / a["path"]) == a["sha256"]
        assert a["bytes"] > 0 and a["export_seconds"] > 0 and a["tools"]["torch"]
        assert a["parity"]["runtime"] == "onnxruntime"
        p = a["parity"]
        assert not DEFAULT.cosine_failures(a["precision"], p["cosine_min"], p["cosine_mean"]), a["id"]
    int8 = m["artifacts"][1]["quantization"]
    assert int8["calibration_sha256"] == m["calibration"]["sha256"] and int8["calibration_size"] == 16
    probe = np.load(onnx_bundle / m["probe"]["inputs"])
    assert probe.shape == (m["probe"]["count"], 3, 64, 32) and probe.dtype == np.float32
    for w in ("0.25", "1"):
        ref = np.load(onnx_bundle / m["references"][w]["path"])
        assert ref.shape == (len(probe), 32)
    # artifact size scales with the parameter count, about w^2 (the stem and the embedding layer are not sliced)
    sizes = {a["width"]: a["bytes"] for a in m["artifacts"] if a["precision"] == "fp32"}
    assert 0.04 < sizes[0.25] / sizes[1.0] < 0.1


def test_the_manifest_is_its_records_written_out(onnx_bundle, tmp_path):
    """With int8, calibration and quantization records too, the typed manifest writes back the same bytes."""
    from swedge.io import atomic_write_json

    m = read_manifest(onnx_bundle).manifest
    assert m.calibration["size"] == 16 and m.artifacts[1].quantization["calibration_size"] == 16
    written = atomic_write_json(tmp_path / "manifest.json", m.to_dict()).read_bytes()
    assert written == (onnx_bundle / "manifest.json").read_bytes()


def test_export_twice_gives_the_same_artifact_hashes(onnx_bundle, tiny_checkpoint, tiny_market, tmp_path):
    again = tmp_path / "again"
    export_bundle(ExportPlan(checkpoint=tiny_checkpoint, out=again, formats=["onnx"], widths=[0.25],
                             precisions=["fp32", "int8"], calib=tiny_market, calib_size=16,
                             cache_dir=tmp_path / "c"), progress=False)
    first = {a.id: a.sha256 for a in read_manifest(onnx_bundle).artifacts}
    for a in read_manifest(again).artifacts:
        assert a.sha256 == first[a.id], a.id


def _export(args, capsys):
    rc = main(["export", *map(str, args)])
    return rc, capsys.readouterr()


@pytest.mark.parametrize("flag,value,message", [
    ("--formats", "onnxx", "Did you mean 'onnx'?"),
    ("--precisions", "fp61", "Did you mean 'fp16'?"),
    ("--widths", "0.3", "0.3"),
    ("--probe-size", "0", "--probe-size must be >= 1"),
    ("--probe-size", "1", "retrieval mAP needs at least 2"),  # one identity: every ranking would be perfect
])
def test_bad_flag_values_are_refused_before_anything_is_written(flag, value, message, tiny_checkpoint, tiny_market, tmp_path, capsys):
    args = [tiny_checkpoint, "--out", tmp_path / "o", "--probe", tiny_market, "--precisions", "fp32", flag, value]
    rc, cap = _export(args, capsys)
    assert rc == 2 and message in cap.err and "Traceback" not in cap.err
    assert not (tmp_path / "o").exists()


def test_int8_without_calibration_is_refused(tiny_checkpoint, tiny_market, tmp_path, capsys):
    rc, cap = _export([tiny_checkpoint, "--out", tmp_path / "o", "--formats", "onnx", "--precisions", "int8",
                       "--probe", tiny_market], capsys)
    assert rc == 2 and "needs calibration data: pass --calib" in cap.err


def test_calibration_array_of_the_wrong_size_is_refused(tiny_checkpoint, tiny_market, tmp_path, capsys):
    np.save(tmp_path / "calib.npy", np.zeros((4, 3, 128, 64), np.float32))
    rc, cap = _export([tiny_checkpoint, "--out", tmp_path / "o", "--formats", "onnx", "--precisions", "int8",
                       "--calib", tmp_path / "calib.npy", "--probe", tiny_market], capsys)
    assert rc == 2 and "(4, 3, 128, 64)" in cap.err and "64" in cap.err and "expects" in cap.err


def test_an_existing_bundle_is_not_replaced_without_force(onnx_bundle, tiny_checkpoint, tiny_market, capsys):
    before = (onnx_bundle / "manifest.json").read_bytes()
    rc, cap = _export([tiny_checkpoint, "--out", onnx_bundle, "--formats", "onnx", "--precisions", "fp32",
                       "--probe", tiny_market], capsys)
    assert rc == 2 and "already holds a bundle; pass --force" in cap.err
    assert (onnx_bundle / "manifest.json").read_bytes() == before


def test_a_missing_backend_is_skipped_naming_the_extra(tiny_checkpoint, tiny_market, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    m = export_bundle(ExportPlan(checkpoint=tiny_checkpoint, out=tmp_path / "o", formats=["onnx"], widths=[0.25],
                                 precisions=["fp32"], probe=tiny_market), progress=False)
    (a,) = m.artifacts
    assert a.status == "skipped" and "pip install 'swedge[onnx]'" in a.reason


def test_a_killed_export_leaves_nothing_that_looks_like_a_bundle(tiny_checkpoint, tiny_market, tmp_path, capsys):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "swedge", "export", str(tiny_checkpoint), "--out", str(out), "--formats", "onnx",
           "--precisions", "fp32,fp16", "--probe", str(tiny_market)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob(".killed.partial-*/onnx/*.onnx")):
        time.sleep(0.05)  # kill once the first artifact is on disk: mid-export
    alive = proc.poll() is None
    staged = list(tmp_path.glob(".killed.partial-*/onnx/*.onnx"))
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert alive, f"the export ended (rc {proc.returncode}) before it could be killed: {err[-2000:]}"
    assert staged, "no artifact was staged within 120 s: the kill did not happen mid-export"
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    (staging,) = tmp_path.glob(".killed.partial-*")  # SIGKILL runs no cleanup: the staging folder stays
    assert not (staging / "manifest.json").exists()
    rc = main(["verify", str(staging), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 1
    assert "is not a swedge bundle" in cap.out + cap.err
    assert "an export was interrupted: this is a staging folder" in cap.out + cap.err
    # the rerun works, removes the dead export's staging folder (saying so) and leaves one complete bundle
    assert main(cmd[3:] + ["--widths", "0.25", "--precisions", "fp32", "--quiet"]) == 0
    assert f"removed {staging}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed"]
    assert main(["verify", str(out), "--quiet"]) == 0


def test_export_cli_prints_a_summary_table(tiny_checkpoint, tiny_market, tmp_path, capsys):
    rc, cap = _export([tiny_checkpoint, "--out", tmp_path / "o", "--formats", "onnx", "--widths", "0.25",
                       "--precisions", "fp32", "--probe", tiny_market, "--json", tmp_path / "s.json", "--quiet"], capsys)
    assert rc == 0
    assert "format  width  precision" in cap.out and "1 ok, 0 skipped, 0 failed" in cap.out
    assert "export:" not in cap.err and "probe:" not in cap.err  # --quiet: no progress bars
    assert json.loads((tmp_path / "s.json").read_text())["artifacts"][0]["status"] == "ok"


def test_histogram_calibration_with_a_partial_last_batch(onnx_bundle, tmp_path):
    """Percentile ranges from a calibration set whose size is not a multiple of the batch (13 images, batch 8)."""
    from swedge.calibration.dataset import CalibrationSet, array_sha256
    from swedge.calibration.ort_qdq import quantize_onnx_qdq

    inputs = np.load(onnx_bundle / "probe" / "inputs.npy")[:13]
    calib = CalibrationSet(inputs, array_sha256(inputs), "probe rows")
    facts = quantize_onnx_qdq(onnx_bundle / "onnx" / "w0.25-fp32.onnx", tmp_path / "q.onnx", calib,
                              method="percentile", batch=8)
    assert facts["calibration_batch"] == 1 and (tmp_path / "q.onnx").stat().st_size > 0
