"""Run Python on an emulated x86 CPU with AVX2 and neither AVX-512 nor VNNI (qemu-user, TCG).

Int8 kernels are picked by CPUID at run time: onnxruntime's U8S8 convolutions on such a CPU go through
VPMADDUBSW (int16 pair sums that saturate), oneDNN (OpenVINO) and XNNPACK (LiteRT) through their AVX2 code. A
test on a VNNI machine cannot reach those kernels natively; under ``qemu-x86_64 -cpu max,-avx512f,...`` the real
libraries see that CPU and run them (tens of times slower: keep inputs small). Where qemu-user is missing the
tests skip and say how to get it (`.ci/run` installs it).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# TCG's "max" CPU has AVX2; the minus flags keep it free of AVX-512 and of both VNNI kinds whatever qemu adds.
CPU_MODEL = "max,-avx512f,-avx512vnni,-avx-vnni"
_FEATURES = "import json, numpy as np; print(json.dumps(getattr(np, '_core', None) and " \
            "np._core._multiarray_umath.__cpu_features__ or np.core._multiarray_umath.__cpu_features__))"


def qemu() -> str:
    """The qemu-x86_64 binary, or skip the calling test with the reason."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the AVX2-CPU checks emulate x86-64; this host is {platform.machine()}")
    path = shutil.which("qemu-x86_64")
    if path is None:
        pytest.skip("qemu-x86_64 not found: `apt-get install qemu-user` runs the int8 checks on an emulated "
                    "AVX2 CPU without VNNI (.ci/run installs it)")
    return path


def run_python(code: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -c code args`` on the emulated AVX2 CPU (the venv's own interpreter and packages)."""
    proc = subprocess.run([qemu(), "-cpu", CPU_MODEL, sys.executable, "-c", code, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def cpu_features() -> dict:
    """numpy's CPUID reading on the emulated CPU (proves which CPU the libraries there see)."""
    return json.loads(run_python(_FEATURES).stdout.strip().splitlines()[-1])


_EMBED = """
import sys, numpy as np
from swedge.runtimes import {module}
with {module}.{cls}(sys.argv[1], threads=1) as runner:
    np.save(sys.argv[3], runner.embed(np.load(sys.argv[2])))
"""
RUNNERS = {"onnxruntime": ("ort_runner", "OrtRunner"), "openvino": ("openvino_runner", "OpenVINORunner"),
           "litert": ("litert_runner", "LiteRTRunner")}


def embed(runtime: str, artifact: Path, x: np.ndarray, work: Path) -> np.ndarray:
    """The product's own runner for ``runtime`` on the emulated AVX2 CPU: features of ``x``."""
    module, cls = RUNNERS[runtime]
    np.save(work / "avx2_in.npy", x)
    run_python(_EMBED.format(module=module, cls=cls), artifact, work / "avx2_in.npy", work / "avx2_out.npy")
    return np.load(work / "avx2_out.npy")


def embed_here(runtime: str, artifact: Path, x: np.ndarray) -> np.ndarray:
    """The same runner on this machine's CPU, for comparison."""
    import importlib

    module, cls = RUNNERS[runtime]
    with getattr(importlib.import_module(f"swedge.runtimes.{module}"), cls)(artifact, threads=1) as runner:
        return runner.embed(x)
