"""The Core ML runtime (``MLModel.predict``): macOS only. On Linux use the 'coreml-mil' MIL reference runner.

Also home of :func:`import_coremltools`, the one quiet way every swedge Core ML module imports coremltools.
Torch-free: coremltools itself may import torch when it is installed, this module never does.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from typing import Any

import numpy as np

from swedge.errors import SwedgeError, require
from swedge.runtimes.base import RUNTIMES, Runner, RuntimeUnavailable

# Same names as swedge.exporters.base (not imported from there: swedge.exporters may pull in torch).
INPUT_NAME, OUTPUT_NAME = "input", "embedding"

# Loggers that print harmless noise while coremltools imports on Linux: its missing native proxies
# ("Failed to load _MLModelProxy"), untested torch / scikit-learn versions, and what the optional torchao
# import it triggers prints. Raised to ERROR during the import only, so real errors still show.
_IMPORT_NOISE = ("coremltools", "torchao", "torch.utils._pytree")


def import_coremltools():
    """``import coremltools`` without its Linux import warnings; MissingDependencyError when it is absent."""
    loggers = [logging.getLogger(name) for name in _IMPORT_NOISE]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        return require("coremltools", "coreml")
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def coremltools_version() -> str:
    try:
        return importlib.metadata.version("coremltools")
    except importlib.metadata.PackageNotFoundError:
        return ""


def batch_range(spec) -> tuple[int, int]:
    """(min, max) batch size the saved model's input accepts (a RangeDim on axis 0, or its fixed size)."""
    array = _input_description(spec).type.multiArrayType
    ranges = array.shapeRange.sizeRanges
    if ranges:
        upper = ranges[0].upperBound
        return int(ranges[0].lowerBound), int(upper) if upper > 0 else sys.maxsize  # -1 means unbounded
    return int(array.shape[0]), int(array.shape[0])


def sample_shape(spec) -> tuple[int, ...]:
    """The input's per-sample shape (C, H, W) as the saved model declares it."""
    return tuple(int(d) for d in _input_description(spec).type.multiArrayType.shape[1:])


def _input_description(spec):
    for desc in spec.description.input:
        if desc.name == INPUT_NAME:
            return desc
    names = [d.name for d in spec.description.input]
    raise SwedgeError(f"Core ML model has inputs {names}, not '{INPUT_NAME}': it was not exported by swedge")


def check_sample_shape(name: str, x: np.ndarray, expected: tuple[int, ...]) -> None:
    if tuple(x.shape[1:]) != expected:
        raise SwedgeError(f"{name}: input batch has per-sample shape {tuple(x.shape[1:])}, the model expects "
                          f"{expected} (N, C, H, W after the checkpoint's preprocessing)")


@RUNTIMES.register("coreml")
class CoreMLRunner(Runner):
    """Apple's Core ML runtime through ``coremltools.models.MLModel.predict`` (compute units: all)."""

    extra = "coreml"
    label = "Core ML (MLModel.predict)"
    _model: Any = None
    _shape: tuple[int, ...] = ()

    def _load(self) -> None:
        if sys.platform != "darwin":
            raise RuntimeUnavailable("Core ML predict needs macOS (MLModel.predict); on Linux use the 'coreml-mil' "
                                     "MIL reference runner")
        ct = import_coremltools()
        self._model = ct.models.MLModel(str(self.path), compute_units=ct.ComputeUnit.ALL)
        spec = self._model.get_spec()
        self._shape = sample_shape(spec)
        self.max_batch = batch_range(spec)[1]

    def _infer(self, x: np.ndarray) -> np.ndarray:
        check_sample_shape(self.name, x, self._shape)
        out = self._model.predict({INPUT_NAME: x})[OUTPUT_NAME]
        return np.asarray(out, dtype=np.float32)  # fp16 outputs come back as float16 arrays

    def close(self) -> None:
        self._model = None
        super().close()

    def version(self) -> str:
        return coremltools_version()
