"""DESIGN §1: the on-device side (metrics, runtimes, data reading) imports without torch."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", ["swedge.metrics, swedge.runtimes", "swedge.data.market, swedge.data.preprocess",
                                     "swedge.cli", "swedge.runtimes.__main__, swedge.runtimes.bench_cli",
                                     "swedge.runtimes.select_run, swedge.runtimes.profiles, swedge.runtimes.memory"])
def test_no_torch_import(modules):
    code = f"import {modules}, sys; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)
