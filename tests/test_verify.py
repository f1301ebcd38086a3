"""`swedge verify`: passes a good bundle, and turns every kind of damage into a failure line and exit code 1."""

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from swedge.cli import main
from swedge.metrics import evaluate
from swedge.runtimes.manifest import file_sha256
from swedge.runtimes.thresholds import DEFAULT
from swedge.runtimes.verify import verify_bundle


@pytest.fixture
def bundle(onnx_bundle):
    return onnx_bundle


@pytest.fixture
def copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def _edit_manifest(root, fn):
    path = root / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def test_a_good_bundle_passes_with_every_output(bundle, tmp_path, capsys):
    rc = main(["verify", str(bundle), "--quiet", "--json", str(tmp_path / "v.json"), "--junit", str(tmp_path / "v.xml"),
               "--report", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "verify PASSED: 2 passed, 0 failed, 0 skipped" in out
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["passed"] is True
    for a in data["artifacts"]:
        for key in ("format", "width", "precision", "runtime", "cosine_min", "cosine_mean", "map_self", "map_cross",
                    "delta_map", "status"):
            assert key in a
        assert a["cosine_min"] >= 0.9999 and abs(a["delta_map"]) < 1e-6 and a["status"] == "pass"
    suite = ET.parse(tmp_path / "v.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert (tmp_path / "rep" / "report.md").exists() and (tmp_path / "rep" / "report.html").exists()
    assert (tmp_path / "rep" / "compatibility.png").stat().st_size > 1000
    # the matrix holds the torch references and both artifacts as queries
    assert len(data["matrix"]["labels"]) == 4


def test_a_tampered_artifact_fails_by_sha256(copy, capsys):
    onnx = next((copy / "onnx").glob("w0.5-*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    rc = main(["verify", str(copy), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "sha256 mismatch" in out and "verify FAILED: 1 passed, 1 failed" in out


def test_a_newer_schema_is_a_clear_failure(copy, capsys):
    _edit_manifest(copy, lambda m: m.update(schema_version=99))
    rc = main(["verify", str(copy), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "schema version 99" in out and "upgrade swedge" in out


def test_a_probe_with_nan_fails(copy, capsys):
    probe = copy / "probe" / "inputs.npy"
    a = np.load(probe)
    a[3, 0, 0, 0] = np.nan
    np.save(probe, a)
    _edit_manifest(copy, lambda m: m["probe"].update(inputs_sha256=file_sha256(probe)))  # hash kept consistent
    rc = main(["verify", str(copy), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "NaN/Inf" in out


def test_an_output_dim_other_than_the_servers_fails(copy, capsys):
    _edit_manifest(copy, lambda m: m["output"].update(dim=64))
    rc = main(["verify", str(copy), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1 and "'output.dim'" in out  # the references disagree with it, found before anything runs


def test_a_missing_runtime_fails_naming_the_extra(bundle, monkeypatch, capsys):
    """onnxruntime made unimportable: the runner's own lazy import fails, and the product's message (not one
    written here) names the module and the pip extra on every row."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    report = verify_bundle(bundle, progress=False)
    assert not report.passed and len(report.rows) == 2
    for r in report.rows:
        assert r.status == "fail", r
        assert r.reason.startswith("missing runtime: 'onnxruntime' is not installed"), r.reason
        assert r.reason.endswith("install it with: pip install 'swedge[onnx]'"), r.reason
    assert main(["verify", str(bundle), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "'onnxruntime' is not installed" in out and "swedge[onnx]" in out and "Traceback" not in out


def test_unknown_runtime_name_gets_a_suggestion(bundle, capsys):
    rc = main(["verify", str(bundle), "--runtime", "onnxruntim", "--quiet"])
    assert rc == 2 and "did you mean 'onnxruntime'" in capsys.readouterr().err


def test_bad_batch_or_threads_is_a_usage_error_not_failed_artifacts(bundle, capsys):
    for bad in (["--batch", "0"], ["--threads", "0"]):
        assert main(["verify", str(bundle), "--quiet", *bad]) == 2
        assert "--batch and --threads must be >= 1" in capsys.readouterr().err


def _baseline_bundle(checkpoint, market, out, edit):
    """A reference-only bundle (no artifacts: --baseline reads only the old references) of ``checkpoint`` edited by
    ``edit(model)``: an *older model* than the one in ``onnx_bundle``, exported with the same probe set."""
    import torch

    from swedge.checkpoint import load_checkpoint, save_checkpoint
    from swedge.exporters.bundle import ExportPlan, export_bundle

    old = load_checkpoint(checkpoint)
    torch.manual_seed(1)
    with torch.no_grad():
        edit(old.model)
    path = out.parent / f"{out.name}.safetensors"
    save_checkpoint(path, old.model, preprocess=old.preprocess, method={"name": "sfsc-sum"})
    export_bundle(ExportPlan(checkpoint=path, out=out, formats=[], widths=[0.5, 1.0], precisions=["fp32"],
                             probe=market), progress=False)
    return out


def _nudged(model):  # another checkpoint that stays compatible: every weight moved by 1e-4 of its spread
    import torch

    for p in model.parameters():
        if p.numel() > 1:
            p.add_(torch.randn_like(p) * 1e-4 * p.std())


def test_a_compatible_baseline_from_another_checkpoint_passes(bundle, tiny_checkpoint, tiny_market, tmp_path):
    old = _baseline_bundle(tiny_checkpoint, tiny_market, tmp_path / "old", _nudged)
    report = verify_bundle(bundle, baseline=old, progress=False)
    new_sha = json.loads((bundle / "manifest.json").read_text())["checkpoint"]["sha256"]
    assert report.baseline["checkpoint_sha256"] != new_sha  # really another model
    assert report.passed, [(r.id, r.reason) for r in report.rows]
    for r in report.rows:  # new queries in the old gallery: about as good as in the new one
        assert r.map_baseline is not None and abs(r.map_baseline - r.map_cross) < DEFAULT.baseline_max_map_drop


def test_an_incompatible_baseline_fails_naming_the_old_gallery(bundle, tiny_checkpoint, tiny_market, tmp_path,
                                                               capsys):
    # The old model: another checkpoint whose embedding had learned the probe ids (a random tiny net retrieves at
    # chance, and a mirrored or re-drawn one too, so nothing could fall below it): its references become a one-hot
    # code of the person id, re-hashed. Its own cross-test is then 100 mAP, while the new queries, drawn in another
    # space, retrieve the old gallery at chance.
    old = _baseline_bundle(tiny_checkpoint, tiny_market, tmp_path / "old", _nudged)
    pids = np.load(old / "probe" / "labels.npz")["pids"]
    code = np.eye(32, dtype=np.float32)[pids % 32]

    def learned(m):
        for ref in m["references"].values():
            np.save(old / ref["path"], code)
            ref["sha256"] = file_sha256(old / ref["path"])

    _edit_manifest(old, learned)
    report = verify_bundle(bundle, baseline=old, progress=False)
    assert not report.passed and report.baseline["server_self_map"] == pytest.approx(100.0)
    z = np.load(bundle / "probe" / "labels.npz")
    q = z["is_query"]
    for r in report.rows:
        # searched in the old gallery, not in the new one: the score of the new queries against the one-hot code
        new_q = np.load(bundle / "reference" / f"w{r.width:g}.npy")[q]
        expected = 100 * evaluate(new_q, code[~q], z["pids"][q], z["pids"][~q], z["camids"][q], z["camids"][~q]).map
        assert abs(expected - r.map_cross) > 1  # the two galleries are told apart
        assert r.map_baseline == pytest.approx(expected, abs=1e-3)
        assert r.status == "fail" and "vs old gallery mAP" in r.reason and "old model's 100.00" in r.reason, r.reason
        assert r.map_baseline < 100.0 - DEFAULT.baseline_max_map_drop
        assert r.reason.startswith("vs old gallery") and ";" not in r.reason  # the baseline is the only reason
    rc = main(["verify", str(bundle), "--baseline", str(old), "--quiet"])
    assert rc == 1 and "vs old gallery mAP" in capsys.readouterr().out


def test_thresholds_file_overrides_and_unknown_keys_are_refused(bundle, tmp_path, capsys):
    (tmp_path / "t.json").write_text(json.dumps({"fp32_cosine_min": 1.0}))
    assert main(["verify", str(bundle), "--quiet", "--thresholds", str(tmp_path / "t.json")]) == 1
    assert "min cosine" in capsys.readouterr().out
    (tmp_path / "u.json").write_text(json.dumps({"fp32_cosine": 0.9}))
    assert main(["verify", str(bundle), "--quiet", "--thresholds", str(tmp_path / "u.json")]) == 2
    assert "unknown threshold" in capsys.readouterr().err


def test_on_device_entry_point_runs_without_torch(bundle):
    """`python -m swedge.runtimes verify` with torch made unimportable: the device-side path."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; from swedge.runtimes.__main__ import main; "
            f"rc = main(['verify', {str(bundle)!r}, '--runtime', 'onnxruntime', '--quiet']); "
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None], 'torch imported'; "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verify PASSED" in proc.stdout


def test_every_runner_is_closed_even_when_its_runtime_fails(bundle, monkeypatch):
    """verify_bundle uses each runner in `with`: one that raises mid-probe still frees its session."""
    from swedge.runtimes import verify
    from swedge.runtimes.ort_runner import OrtRunner

    closed = []
    real_close = OrtRunner.close
    monkeypatch.setattr(OrtRunner, "close", lambda self: (closed.append(self.path.name), real_close(self)))
    assert verify_bundle(bundle, progress=False).passed and len(closed) == 2

    def crash(runner, probe, batch):
        raise RuntimeError("the runtime crashed")

    closed.clear()
    monkeypatch.setattr(verify, "_embed", crash)
    report = verify_bundle(bundle, progress=False)
    assert [r.status for r in report.rows] == ["fail", "fail"] and "the runtime crashed" in report.rows[0].reason
    assert sorted(closed) == ["w0.5-fp32.onnx", "w1-fp32.onnx"]
