"""The GPU scripts (benchmarks/gpu_smoke.sh, benchmarks/gpu_study.sh, their shared benchmarks/gpu_common.sh) run
only on a lent GPU or in a minutes-long DEVICE=cpu rehearsal; here: they parse, gpu_study.sh's usage works, its
documented defaults are the ones it uses, and its budget cites the measured H100 step times it was planned from."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = ["gpu_common.sh", "gpu_smoke.sh", "gpu_study.sh"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse(name):
    proc = subprocess.run(["bash", "-n", str(BENCH / name)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_study_usage():
    script = str(BENCH / "gpu_study.sh")
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "Usage: benchmarks/gpu_study.sh" in proc.stdout
    assert "DEADLINE" in proc.stdout and "Budget" in proc.stdout and not proc.stdout.startswith("!")
    bad = subprocess.run([script, "extra"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage:" in bad.stderr


def test_study_documents_its_defaults():
    text = (BENCH / "gpu_study.sh").read_text()
    defaults = dict(re.findall(r"^([A-Z_]+)=\$\{\1:-([^}]+)\}$", text, re.M))
    assert {"DEADLINE", "EPOCHS", "IDS", "SEEDS", "LANES", "SIZE"} <= set(defaults)
    doc = text.split("\nset -euo pipefail", 1)[0]
    for name in ("WORK", "DEVICE", "IMAGENET", "SIZE", "EPOCHS", "IDS", "TEST_IDS", "P", "SEEDS", "FLOOR", "LANES",
                 "WORKERS", "AMP", "CHANNELS_LAST", "DEADLINE", "GRACE", "OVERHEAD"):
        assert re.search(rf"\b{name} \({re.escape(defaults[name])}\b", doc), f"{name}'s default {defaults[name]}"
    # the budget paragraph reasons with these defaults
    for claim in (f"IDS={defaults['IDS']}", f"SEEDS={defaults['SEEDS']}", f"LANES={defaults['LANES']}",
                  f"DEADLINE={defaults['DEADLINE']}", f"{defaults['EPOCHS']} epochs"):
        assert claim in doc, claim


def test_study_budget_cites_the_measured_step_times():
    runs = json.loads((BENCH / "gpu_h100" / "run2_step_cost.json").read_text())["runs"]
    doc = (BENCH / "gpu_study.sh").read_text().split("\nset -euo pipefail", 1)[0]
    for run in ("sfsc-sum-p16", "sfsc-p16", "full-p64"):
        assert f"{runs[run]['step_ms_median']} ms" in doc, run
