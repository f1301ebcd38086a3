"""swedge.exporters: one module per export format, one registry (``EXPORTERS``).

Format modules register themselves when imported; :func:`load_exporters` imports them all (cheap: every
backend library is imported lazily inside the exporter), so adding a format is one file plus one line here.
"""

from __future__ import annotations

import importlib

from swedge.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult, ExportSkipped

FORMAT_MODULES = {
    "onnx": "swedge.exporters.onnx",
    "openvino": "swedge.exporters.openvino",
    "tflite": "swedge.exporters.tflite",
    "coreml": "swedge.exporters.coreml",
    "tensorrt": "swedge.exporters.tensorrt",
}


def load_exporters():
    """The registry with every format registered, in FORMAT_MODULES order."""
    for module in FORMAT_MODULES.values():
        importlib.import_module(module)
    return EXPORTERS


__all__ = ["EXPORTERS", "Exporter", "ExportJob", "ExportResult", "ExportSkipped", "FORMAT_MODULES",
           "load_exporters"]
