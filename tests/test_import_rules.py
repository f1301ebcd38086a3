"""docs/design.md §1: the on-device side (metrics, runtimes, data reading) imports without torch."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", ["swedge.metrics, swedge.runtimes", "swedge.data.market, swedge.data.preprocess",
                                     "swedge.cli", "swedge.runtimes.__main__, swedge.runtimes.bench_cli",
                                     "swedge.runtimes.select_run, swedge.runtimes.profiles, swedge.runtimes.memory",
                                     "swedge.study.compare, swedge.study.table"])
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


def test_arrows_run_down_nothing_below_the_cli_imports_it():
    """The CLI is a thin caller: library, exporters, runtimes and calibration never import swedge.cli."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("swedge", "exporters", "runtimes", "calibration"):
        for path in (root / folder).rglob("*.py"):
            if path.relative_to(root).parts[:2] == ("swedge", "cli") or path.name == "__main__.py":
                continue  # the CLI itself and `python -m` entry points sit on top
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.startswith("swedge.cli")]
    assert not offenders, offenders


def test_the_training_subpackage_never_shadows_swedge_train():
    """A subpackage named `swedge.train` would replace the swedge.train() function once imported."""
    code = "import swedge.training.trainer, swedge.study.compare, swedge; assert callable(swedge.train), swedge.train"
    subprocess.run([sys.executable, "-c", code], check=True)
