"""swedge.exporters: one module per export format, one registry (``EXPORTERS``), one format table (``FORMATS``).

Format modules register themselves when imported; :func:`load_exporters` imports every module the format table
names (cheap: every backend library is imported lazily inside the exporter).
"""

from __future__ import annotations

import importlib

from swedge.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult, ExportSkipped
from swedge.exporters.formats import FORMATS, Format


def load_exporters():
    """The registry with every format of the table registered."""
    for fmt in FORMATS.values():
        importlib.import_module(fmt.exporter)
    return EXPORTERS


__all__ = ["EXPORTERS", "Exporter", "ExportJob", "ExportResult", "ExportSkipped", "FORMATS", "Format",
           "load_exporters"]
