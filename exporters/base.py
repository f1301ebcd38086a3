"""What every exporter receives and returns, and the exporter registry.

An exporter turns the *sliced* standalone torch module of one width (``swedge.nn.slicing.slice_model``, never
the switchable model) into one artifact at one precision. It writes only to ``job.out`` (a file or a folder
path without suffix chosen by the bundle writer + the exporter's ``suffix``), inside the bundle's staging
folder, so an interrupted export never leaves a bundle that looks complete.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swedge.errors import SwedgeError
from swedge.exporters.formats import FORMATS, Format
from swedge.registry import Registry

INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
CALIB_HINT = "pass --calib DATA (a Market-1501 folder, a folder of images, or a preprocessed .npy)"


class ExportSkipped(Exception):
    """Raised by an exporter when this combination cannot be produced on this machine; the message says why
    (recorded in the manifest as status 'skipped')."""


@dataclass
class ExportJob:
    module: Any                     # torch.nn.Module in eval mode: the sliced sub-model of ``width``
    width: float
    precision: str                  # fp32 | fp16 | int8
    out: Path                       # target path (file or folder), suffix included
    input_shape: tuple[int, int, int]  # (3, H, W)
    example: np.ndarray             # a few real preprocessed inputs (N, 3, H, W) float32, for tracing
    calibration: Any = None         # swedge.calibration.CalibrationSet or None
    max_batch: int = 64             # upper bound of the dynamic batch dimension where a format needs one
    workdir: Path | None = None     # scratch folder inside the staging bundle (removed before publishing)
    metadata: dict = field(default_factory=dict)  # str -> str facts to embed where the format allows
                                    # (ONNX metadata_props, Core ML user_defined_metadata, ...)
    keep_float: tuple[str, ...] = ()  # int8: torch module names of layers to leave in float (int8 repair)


@dataclass
class ExportResult:
    path: Path                      # what was written (file or folder)
    tools: dict = field(default_factory=dict)          # library -> version used
    quantization: dict | None = None  # {"algorithm", "scope", "calibration_sha256", "calibration_size", ...}
    notes: list[str] = field(default_factory=list)     # e.g. "weights-only int8", "fp16 compressed weights"
    extra: dict = field(default_factory=dict)          # format-specific facts (e.g. TensorRT engine status):
                                    # fields of swedge.runtimes.manifest_types.ArtifactEntry
    runtimes: list[str] = field(default_factory=list)  # runtimes that can run it (first = default): the
                                    # format's, set by Exporter.export
    batch: str = "dynamic"          # "dynamic" or "static:N"


class Exporter:
    """Subclass, implement ``_export``, register with ``@EXPORTERS.register(name)`` (which sets ``name``); what the
    format is (suffix, extra, precisions, runtimes) is its row in :data:`swedge.exporters.formats.FORMATS`."""

    name = ""
    backend_modules: tuple[str, ...] = ()              # imported to check availability
    # int8 repair (calibration/int8_repair.py): None = int8 export cannot keep layers float; else the QDQ options
    # (calibration.ort_qdq.quantize_onnx_qdq) that emulate this format's int8 scheme, to rank layers with
    int8_repair_scheme: dict | None = None

    @property
    def format(self) -> Format:
        return FORMATS[self.name]

    def missing(self) -> str | None:
        """None when the backend libraries import, else the reason (naming the extra to install)."""
        import logging

        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # backends log import-time chatter (e.g. coremltools)
        try:
            for mod in self.backend_modules:
                try:
                    importlib.import_module(mod)
                except Exception as exc:  # ImportError, or a broken install raising something else
                    return (f"'{mod}' is not importable ({type(exc).__name__}: {exc}); "
                            f"pip install 'swedge[{self.format.extra}]'")
        finally:
            root.level = level
        return None

    def unsupported(self, precision: str) -> str | None:
        """None when the format has ``precision``, else the reason."""
        if precision in self.format.precisions:
            return None
        return f"{self.name} does not support precision '{precision}' (supports {', '.join(self.format.precisions)})"

    def export(self, job: ExportJob) -> ExportResult:
        """The job checked against the format's precisions and calibration needs, exported by ``_export``."""
        if reason := self.unsupported(job.precision):
            raise SwedgeError(reason)
        if job.precision in self.format.calibrated and job.calibration is None:
            raise SwedgeError(f"{self.name} {job.precision} needs calibration data: {CALIB_HINT}")
        result = self._export(job)
        result.runtimes = list(self.format.runners)
        return result

    def _export(self, job: ExportJob) -> ExportResult:
        raise NotImplementedError


def version_of(*dists: str) -> dict:
    """Installed versions of the named distributions (missing ones are left out)."""
    from swedge.runtimes.host import library_versions

    return library_versions(dists)


EXPORTERS: Registry[type[Exporter]] = Registry("export format")
