"""The quantizer registry: one entry per backend's post-training quantization routine.

Each quantizer is a function with a backend-specific signature (an ONNX file, an OpenVINO model, a torch module
...) plus the facts the manifest records: backend, algorithm, scope ("weights+activations" or "weights-only").
Exporters look quantizers up by name, so the bundle says exactly which algorithm produced each int8 artifact.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import Callable

from swedge.registry import Registry


@dataclass(frozen=True)
class Quantizer:
    name: str
    backend: str
    algorithm: str
    scope: str  # "weights+activations" | "weights-only"
    run: Callable

    def record(self, calibration=None, **extra) -> dict:
        """The manifest's ``quantization`` entry for an artifact made by this quantizer."""
        out = {"quantizer": self.name, "backend": self.backend, "algorithm": self.algorithm, "scope": self.scope}
        if calibration is not None:
            out.update(calibration_sha256=calibration.sha256, calibration_size=calibration.size,
                       calibration_source=calibration.source)
        out.update(extra)
        return out


QUANTIZERS: Registry[Quantizer] = Registry("quantizer")


def register_quantizer(name: str, *, backend: str, algorithm: str, scope: str = "weights+activations"):
    def add(fn: Callable) -> Callable:
        QUANTIZERS.register(name)(Quantizer(name, backend, algorithm, scope, fn))
        return fn

    return add


@contextlib.contextmanager
def quiet_quantizer(logger: str | None, level: int):
    """Swallow what a quantization library prints on stdout (progress bars) and raise ``logger`` (None = root) to at
    least ``level`` for the duration of the call; its errors and exceptions still show."""
    log = logging.getLogger(logger)
    before = log.level
    log.setLevel(max(before, level))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(before)
