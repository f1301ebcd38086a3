"""What the manifest records about each backend's post-training quantization routine.

Each routine is a function with a backend-specific signature (an ONNX file, an OpenVINO model, a torch module
...), so exporters call it directly; beside it, its module defines a :class:`Quantizer` (name, backend, algorithm,
scope) whose ``record`` the exporter stores, so the bundle says exactly which algorithm produced each int8 artifact.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass


@dataclass(frozen=True)
class Quantizer:
    name: str
    backend: str
    algorithm: str
    scope: str = "weights+activations"  # or "weights-only"

    def record(self, calibration=None, **extra) -> dict:
        """The manifest's ``quantization`` entry for an artifact made by this quantizer."""
        out = {"quantizer": self.name, "backend": self.backend, "algorithm": self.algorithm, "scope": self.scope}
        if calibration is not None:
            out.update(calibration_sha256=calibration.sha256, calibration_size=calibration.size,
                       calibration_source=calibration.source)
        out.update(extra)
        return out


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
