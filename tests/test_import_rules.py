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


def test_the_python_api_is_lazy_and_open_bundle_and_verify_stay_torch_free():
    """`import swedge` loads no API module; swedge.open_bundle / swedge.verify / swedge.bench resolve without torch;
    every API name resolves (from-import too)."""
    code = ("import sys, swedge; assert 'swedge.api' not in sys.modules, 'import swedge loaded the API'; "
            "swedge.open_bundle, swedge.verify, swedge.bench, swedge.BenchReport; "
            "from swedge import verify, open_bundle; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m); "
            "import swedge.api as api; "
            "assert all(getattr(swedge, n) is getattr(api, n) for n in ('train', 'export', 'verify', 'bench', "
            "'open_bundle', 'load_checkpoint', 'TrainResult')); "
            "assert 'torch' not in sys.modules; "
            "assert set(swedge.__all__) <= set(dir(swedge))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_attribute_of_swedge_is_an_attribute_error():
    import swedge

    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        swedge.trian
