"""The on-device check in a separate venv that has numpy + onnxruntime and NO torch (docs/design.md §1, issue 5).

Builds the venv from the pinned constraints (a minute at most; pip's cache makes reruns fast), installs swedge
without its optional dependencies, and runs `python -m swedge.runtimes verify` and `bench` on a bundle exported here; `swedge select` takes their JSONs.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from swedge.exporters.bundle import ExportPlan, export_bundle

# The e2e lane (`make test-e2e`): this module builds a fresh venv without torch (~20 s).
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_verify_in_a_venv_without_torch(tiny_checkpoint, tiny_market, tmp_path):
    bundle = tmp_path / "bundle"
    export_bundle(ExportPlan(checkpoint=tiny_checkpoint, out=bundle, formats=["onnx"], widths=[0.25, 1.0],
                             precisions=["fp32"], probe=tiny_market), progress=False)
    venv = tmp_path / "device"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt")]
    subprocess.run(pip + ["numpy", "pillow", "tqdm", "onnxruntime"], check=True)
    subprocess.run(pip + ["--no-deps", str(ROOT)], check=True, cwd=tmp_path)
    probe = subprocess.run([py, "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "True", "the device venv must not have torch"
    proc = subprocess.run([py, "-m", "swedge.runtimes", "verify", str(bundle), "--runtime", "onnxruntime", "--quiet",
                           "--json", str(tmp_path / "v.json")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verify PASSED: 2 passed" in proc.stdout
    proc = subprocess.run([py, "-m", "swedge.runtimes", "bench", str(bundle), "--runtime", "onnxruntime", "--batch", "1",
                           "--iters", "3", "--quiet", "--json", str(tmp_path / "b.json")], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tmp_path / "p.toml").write_text('[device.d]\nruntime = "onnxruntime"\nlatency_p90_ms = 100000\n')
    from swedge.cli import main  # back on the server: the device's JSONs choose its artifact

    assert main(["select", str(bundle), "--profiles", str(tmp_path / "p.toml"), "--bench", str(tmp_path / "b.json"),
                 "--verify", str(tmp_path / "v.json"), "--quiet"]) == 0
