"""What an export format is, in one table: one :class:`Format` row per format, keyed by its name.

Everything that lists formats reads this table: the exporter registry (which module to import), the runtimes
(which runner runs a format, how an artifact path is recognised), ``swedge export`` / ``swedge demo`` (defaults,
help texts), and the bundle writer (which tools' versions to record). Adding a format is one exporter module, its
runner module(s) and one row (tests/test_format_table.py does it with a toy format).

Torch-free and import-light on purpose: ``swedge.runtimes`` reads it on devices with numpy and one runtime.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")  # every precision swedge knows (a manifest's precision is one of them)


@dataclass(frozen=True)
class Format:
    name: str
    title: str                      # how help texts name it
    extra: str                      # pip install 'swedge[<extra>]' installs the exporter's backend
    exporter: str                   # module that registers the exporter (@EXPORTERS.register(name))
    runners: dict[str, str]         # runtime -> module that registers its runner, preferred first; the runtimes
                                    # the manifest lists for every artifact of this format
    suffix: str = ""                # what the exporter writes: "<path><suffix>"; "" = a folder
    file_suffixes: tuple[str, ...] = ()  # also recognised by runtimes.load(path): one file of the artifact
    marker: str = ""                # a folder artifact is recognised by this file inside it
    precisions: tuple[str, ...] = PRECISIONS
    calibrated: tuple[str, ...] = ("int8",)  # precisions that need calibration images
    tools: tuple[str, ...] = ()     # distributions whose versions the bundle's header records
    libraries: tuple[str, ...] = ()  # runtime-side distributions whose versions a host record (verify, bench) names

    @property
    def suffixes(self) -> tuple[str, ...]:
        """File suffixes that name an artifact of this format."""
        return (self.suffix, *self.file_suffixes) if self.suffix else self.file_suffixes


# Core ML predict exists only on macOS; elsewhere the numpy MIL reference ('coreml-mil') runs the program.
MACOS_ONLY = ("coreml",)
# Runtimes of no format: the torch reference that verify and bench compare against.
REFERENCE_RUNNERS = {"torch": "swedge.runtimes.torch_runner"}

FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", "ONNX", extra="onnx", exporter="swedge.exporters.onnx", suffix=".onnx",
           runners={"onnxruntime": "swedge.runtimes.ort_runner"}, tools=("onnx", "onnxruntime"),
           libraries=("onnxruntime",)),
    Format("openvino", "OpenVINO", extra="openvino", exporter="swedge.exporters.openvino", file_suffixes=(".xml",),
           marker="model.xml", runners={"openvino": "swedge.runtimes.openvino_runner"}, tools=("openvino", "nncf"),
           libraries=("openvino", "nncf")),
    Format("tflite", "TFLite", extra="tflite", exporter="swedge.exporters.tflite", suffix=".tflite",
           runners={"litert": "swedge.runtimes.litert_runner"}, tools=("litert-torch", "ai-edge-litert"),
           libraries=("ai-edge-litert", "tflite-runtime")),
    # int8 is weights-only: no activation ranges to calibrate
    Format("coreml", "Core ML", extra="coreml", exporter="swedge.exporters.coreml", suffix=".mlpackage",
           calibrated=(), runners={"coreml": "swedge.runtimes.coreml_runner",
                                   "coreml-mil": "swedge.runtimes.mil_reference"}, tools=("coremltools",),
           libraries=("coremltools",)),
    # TensorRT's int8 is int32-exact: the QDQ reference checks it where TensorRT is absent, not x86 int8 kernels.
    # The engine's TensorRT version is recorded per artifact (engines are specific to it).
    Format("tensorrt", "TensorRT", extra="tensorrt", exporter="swedge.exporters.tensorrt", file_suffixes=(".engine",),
           marker="model.onnx", runners={"tensorrt": "swedge.runtimes.tensorrt_runner",
                                         "onnxruntime-qdq": "swedge.runtimes.ort_runner"},
           tools=("onnx", "onnxruntime"), libraries=("tensorrt",)),
)}


def runs_here(runtime: str) -> bool:
    """Whether ``runtime`` can run on this machine at all (its runner may still find its library missing)."""
    return sys.platform == "darwin" or runtime not in MACOS_ONLY


def runner_modules() -> dict[str, str]:
    """runtime -> module that registers its runner, over every format, then the reference runners."""
    out: dict[str, str] = {}
    for f in FORMATS.values():
        out.update(f.runners)
    return {**out, **REFERENCE_RUNNERS}


def format_of(path: Path) -> str | None:
    """The format of an artifact path: by its suffix, else (a folder) by the file it holds; None if unknown."""
    for f in FORMATS.values():
        if path.suffix.lower() in f.suffixes:
            return f.name
    for f in FORMATS.values():
        if f.marker and path.is_dir() and (path / f.marker).exists():
            return f.name
    return None


def runtime_libraries() -> tuple[str, ...]:
    """The runtime-side distributions of every format, in table order without repeats."""
    return tuple(dict.fromkeys(lib for f in FORMATS.values() for lib in f.libraries))


def export_tools() -> tuple[str, ...]:
    """The distributions every format's exporter uses, in table order without repeats."""
    return tuple(dict.fromkeys(t for f in FORMATS.values() for t in f.tools))
