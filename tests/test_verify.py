"""`swedge verify`: passes a good bundle, and turns every kind of damage into a failure line and exit code 1."""

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from swedge.cli import main
from swedge.errors import MissingDependencyError
from swedge.runtimes.manifest import file_sha256
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
    assert rc == 1 and "differs from the server's embedding dim (64,)" in out


def test_a_missing_runtime_fails_naming_the_extra(bundle, monkeypatch):
    from swedge.runtimes import runner_class

    cls = runner_class("onnxruntime")

    def missing(self):
        raise MissingDependencyError("'onnxruntime' is not installed; install it with: pip install 'swedge[onnx]'")

    monkeypatch.setattr(cls, "_load", missing)
    report = verify_bundle(bundle, progress=False)
    assert not report.passed
    assert all(r.status == "fail" and "missing runtime" in r.reason and "swedge[onnx]" in r.reason for r in report.rows)


def test_unknown_runtime_name_gets_a_suggestion(bundle, capsys):
    rc = main(["verify", str(bundle), "--runtime", "onnxruntim", "--quiet"])
    assert rc == 2 and "did you mean 'onnxruntime'" in capsys.readouterr().err


def test_bad_batch_or_threads_is_a_usage_error_not_failed_artifacts(bundle, capsys):
    for bad in (["--batch", "0"], ["--threads", "0"]):
        assert main(["verify", str(bundle), "--quiet", *bad]) == 2
        assert "--batch and --threads must be >= 1" in capsys.readouterr().err


def test_baseline_checks_new_queries_against_the_old_gallery(bundle, tmp_path):
    report = verify_bundle(bundle, baseline=bundle, progress=False)
    assert report.passed and report.baseline["checkpoint_sha256"]
    for r in report.rows:  # same model on both sides: the old gallery is the new gallery
        assert r.map_baseline == pytest.approx(r.map_cross, abs=1e-6)


def test_thresholds_file_overrides_and_unknown_keys_are_refused(bundle, tmp_path, capsys):
    (tmp_path / "t.json").write_text(json.dumps({"fp32_cosine_min": 1.01}))
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
