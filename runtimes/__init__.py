"""swedge.runtimes: numpy-in / numpy-out runners for exported artifacts, and the verification harness.

Importable without torch (DESIGN §1): the on-device check runs with numpy plus one runtime. Runner modules
register themselves in ``RUNTIMES`` when imported; :func:`load` imports them on first use, so importing this
package stays cheap and a broken backend only affects its own runner.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from swedge.runtimes.base import RUNTIMES, Runner, RuntimeUnavailable

# runtime name -> module that registers it (imported lazily)
RUNNER_MODULES = {
    "onnxruntime": "swedge.runtimes.ort_runner",
    "onnxruntime-qdq": "swedge.runtimes.ort_runner",
    "openvino": "swedge.runtimes.openvino_runner",
    "litert": "swedge.runtimes.litert_runner",
    "coreml": "swedge.runtimes.coreml_runner",
    "coreml-mil": "swedge.runtimes.mil_reference",
    "tensorrt": "swedge.runtimes.tensorrt_runner",
    "torch": "swedge.runtimes.torch_runner",
}

# format -> runtimes that can run it here, preferred first (the harness labels the non-native ones)
FORMAT_RUNTIMES = {
    "onnx": ["onnxruntime"],
    "openvino": ["openvino"],
    "tflite": ["litert"],
    "coreml": ["coreml", "coreml-mil"] if sys.platform == "darwin" else ["coreml-mil"],
    "tensorrt": ["tensorrt", "onnxruntime-qdq"],  # TensorRT's int8 is int32-exact: the QDQ reference, not x86 kernels
}


def runner_class(name: str) -> type[Runner]:
    if name not in RUNTIMES:
        if name not in RUNNER_MODULES:
            RUNTIMES.get(name)  # raises: unknown runtime, with suggestions
        importlib.import_module(RUNNER_MODULES[name])
    return RUNTIMES.get(name)


def runtimes_for(entry: dict) -> list[str]:
    """Runtimes for a manifest artifact entry: the ones it lists, else the format's defaults."""
    listed = entry.get("runtimes") or FORMAT_RUNTIMES.get(entry.get("format", ""), [])
    if sys.platform != "darwin":
        listed = [r for r in listed if r != "coreml"] or listed
    return list(listed)


def load(artifact: str | Path | dict, *, bundle_root: str | Path | None = None, runtime: str | None = None,
         threads: int | None = None) -> Runner:
    """A loaded runner for a manifest entry (dict, paths relative to ``bundle_root``) or an artifact path
    (its format guessed from the suffix). ``runtime`` picks one of the entry's runtimes explicitly."""
    if isinstance(artifact, dict):
        entry = artifact
        path = Path(bundle_root or ".") / entry["path"]
    else:
        path = Path(artifact)
        entry = {"format": _format_of(path), "path": str(path)}
    name = runtime or runtimes_for(entry)[0]
    return runner_class(name)(path, entry, threads=threads).load()


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite", ".mlpackage": "coreml",
               ".engine": "tensorrt"}
    if suffix in formats:
        return formats[suffix]
    if path.is_dir() and (path / "model.xml").exists():
        return "openvino"
    if path.is_dir() and (path / "model.onnx").exists():
        return "tensorrt"
    from swedge.errors import SwedgeError

    raise SwedgeError(f"cannot tell the format of {path}: pass a bundle manifest entry or a known suffix "
                      f"({', '.join(formats)})")


__all__ = ["RUNTIMES", "Runner", "RuntimeUnavailable", "FORMAT_RUNTIMES", "load", "runner_class", "runtimes_for"]
