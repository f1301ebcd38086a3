"""Run a .tflite embedding model with the LiteRT interpreter (numpy in, numpy out; never imports torch).

Uses ``ai_edge_litert`` (numpy 1.x and 2.x); on old devices where only ``tflite_runtime`` exists (it needs
numpy < 2) that interpreter is used instead, and describe()/version() say which one ran. Dynamic-batch
models (shape_signature -1) are resized to each chunk; int8/uint8 inputs are quantized and outputs
dequantized with the tensors' own scale and zero-point.
"""

from __future__ import annotations

import os

import importlib.metadata
import json

import numpy as np

from swedge.errors import MissingDependencyError, SwedgeError, require
from swedge.runtimes.base import RUNTIMES, Runner

# LiteRT's C++ side logs INFO lines (XNNPACK delegate, op counts) straight to stderr; keep its errors only.
# Set before the native library loads (it is imported lazily); a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METADATA_NAME = "swedge"  # the metadata entry swedge.exporters.tflite embeds


def _interpreter_class():
    """(Interpreter class, distribution name): ai-edge-litert first, tflite-runtime as the old-device fallback."""
    try:
        return require("ai_edge_litert.interpreter", "tflite").Interpreter, "ai-edge-litert"
    except MissingDependencyError as missing:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise missing from None
        return Interpreter, "tflite-runtime"


def read_tflite_metadata(path) -> dict:
    """The ``swedge`` metadata entry of a .tflite file as a dict ({} when there is none)."""
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    with open(path, "rb") as f:
        data = f.read()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() in (METADATA_NAME, METADATA_NAME.encode()):
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}


@RUNTIMES.register("litert")
class LiteRTRunner(Runner):
    extra = "tflite"
    label = "LiteRT interpreter (CPU, XNNPACK)"

    def _load(self) -> None:
        interpreter, self._impl = _interpreter_class()
        try:
            self._it = interpreter(model_path=str(self.path), num_threads=self.threads)
        except SystemError as exc:  # tflite-runtime built for numpy 1.x running under numpy 2
            raise SwedgeError(f"litert: {self._impl} cannot run with numpy {np.__version__} ({exc}); "
                              "pip install 'swedge[tflite]' (ai-edge-litert) or use numpy<2") from None
        except ValueError as exc:
            raise SwedgeError(f"litert: {self.path} is not a valid TFLite model ({exc})") from None
        inputs, outputs = self._it.get_input_details(), self._it.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise SwedgeError(f"litert: {self.path} has {len(inputs)} inputs and {len(outputs)} outputs; an "
                              "embedding model has one of each")
        self._in, self._out = inputs[0], outputs[0]
        signature = [int(d) for d in self._in.get("shape_signature", self._in["shape"])]
        if len(signature) != 4:
            raise SwedgeError(f"litert: {self.path} takes a {len(signature)}-D input {signature}; expected NCHW")
        self._dynamic = signature[0] == -1
        self._static_batch = int(self._in["shape"][0])
        self.max_batch = None if self._dynamic else self._static_batch
        self._batch = 0 if self._dynamic else self._static_batch  # batch the tensors are allocated for
        if not self._dynamic:
            self._it.allocate_tensors()

    def _infer(self, x: np.ndarray) -> np.ndarray:
        expected = tuple(int(d) for d in self._in["shape"][1:])
        if tuple(x.shape[1:]) != expected:
            raise SwedgeError(f"litert: input has shape {tuple(x.shape)} but {self.path.name} expects (N, "
                              f"{', '.join(map(str, expected))}) NCHW, preprocessed as in the checkpoint")
        n = len(x)
        if self._dynamic:
            if n != self._batch:
                self._it.resize_tensor_input(self._in["index"], [n, *expected], strict=True)
                self._it.allocate_tensors()
                self._batch = n
        elif n < self._batch:  # static batch > 1: pad the last chunk, drop the padded rows' outputs
            x = np.concatenate([x, np.zeros((self._batch - n, *expected), np.float32)])
        self._it.set_tensor(self._in["index"], _quantize(x, self._in))
        self._it.invoke()
        return _dequantize(self._it.get_tensor(self._out["index"]), self._out)[:n]

    def close(self) -> None:
        self._it = None  # release the interpreter's tensors; load() builds a fresh one
        super().close()

    def version(self) -> str:
        try:
            return f"{self._impl_name()} {importlib.metadata.version(self._impl_name())}"
        except importlib.metadata.PackageNotFoundError:
            return self._impl_name()

    def describe(self) -> dict:
        out = super().describe()
        out["interpreter"] = self._impl_name()
        return out

    def _impl_name(self) -> str:
        return getattr(self, "_impl", None) or _interpreter_class()[1]


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x
    if dtype.kind not in "iu":
        raise SwedgeError(f"litert: unsupported input tensor type {dtype}")
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind not in "iu":
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale
