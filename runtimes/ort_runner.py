"""ONNX Runtime runner for .onnx artifacts (fp32, fp16 with float I/O, int8 QDQ). Never imports torch.

The artifact is a .onnx file, or a folder holding ``model.onnx`` (the TensorRT bundle artifact ships its
TRT-ready ONNX that way). CPUExecutionProvider by default; other providers (CUDA, TensorRT) only when asked,
and a provider that ONNX Runtime silently dropped at session creation is an error, not a quiet CPU fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from swedge.errors import SwedgeError, require
from swedge.runtimes.base import RUNTIMES, Runner, RuntimeUnavailable
from swedge.runtimes.manifest_types import ArtifactEntry

MODEL_IN_FOLDER = "model.onnx"
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@RUNTIMES.register("onnxruntime")
class OrtRunner(Runner):
    extra = "onnx"
    label = "ONNX Runtime"
    qdq_reference = False

    def __init__(self, path, entry: ArtifactEntry | None = None, *, threads: int | None = None,
                 providers: list[str] | tuple[str, ...] | None = None):
        super().__init__(path, entry, threads=threads)
        # Explicit argument first, then the manifest entry's choice, then CPU.
        self.providers = list(providers or (entry and entry.providers) or DEFAULT_PROVIDERS)
        self._session: Any = None
        self._input = ""
        self._dtype: type = np.float32
        self._dims: list = []

    def model_file(self) -> Path:
        if self.path.is_dir():
            model = self.path / MODEL_IN_FOLDER
            if not model.is_file():
                raise SwedgeError(f"{self.name}: folder {self.path} holds no {MODEL_IN_FOLDER}")
            return model
        return self.path

    def _load(self) -> None:
        ort = require("onnxruntime", self.extra)
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise RuntimeUnavailable(f"{self.name}: execution provider(s) {', '.join(missing)} not available here "
                                     f"(available: {', '.join(available)})")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
        if self.qdq_reference:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1
        model = self.model_file()
        try:
            session = ort.InferenceSession(str(model), options, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... classes
            raise SwedgeError(f"{self.name}: cannot load {model} ({type(exc).__name__}: {exc})") from None
        dropped = [p for p in self.providers if p not in session.get_providers()]
        if dropped:
            raise RuntimeUnavailable(f"{self.name}: ONNX Runtime could not start {', '.join(dropped)} for {model} "
                                     f"(running on: {', '.join(session.get_providers())})")
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise SwedgeError(f"{self.name}: {model} has {len(inputs)} inputs; swedge artifacts take one NCHW tensor")
        spec = inputs[0]
        if spec.type not in _INPUT_DTYPES:
            raise SwedgeError(f"{self.name}: {model} takes {spec.type} input; this runner feeds float32 or float16")
        self._session, self._input, self._dtype, self._dims = session, spec.name, _INPUT_DTYPES[spec.type], spec.shape
        # An int first dimension is a static batch: embed() then feeds chunks of exactly that size.
        self.max_batch = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else None

    def _check_shape(self, x: np.ndarray) -> None:
        want = self._dims[1:]
        if len(want) != x.ndim - 1 or any(isinstance(w, int) and w != s for w, s in zip(want, x.shape[1:])):
            shown = ", ".join(str(w) if isinstance(w, int) else "?" for w in want)
            raise SwedgeError(f"{self.name}: {self.model_file().name} expects input (N, {shown}), got {x.shape}; "
                              "apply the checkpoint's preprocessing (size, layout CHW)")

    def _infer(self, x: np.ndarray) -> np.ndarray:
        self._check_shape(x)
        n = len(x)
        if self.max_batch and n < self.max_batch:  # pad the last chunk of a static-batch model
            x = np.concatenate([x, np.zeros((self.max_batch - n, *x.shape[1:]), x.dtype)])
        y = self._session.run(None, {self._input: x.astype(self._dtype, copy=False)})[0]
        return np.asarray(y, dtype=np.float32)[:n]

    def close(self) -> None:
        self._session = None
        super().close()

    def describe(self) -> dict:
        return {**super().describe(), "providers": list(self.providers)}

    def version(self) -> str:
        return require("onnxruntime", self.extra).__version__


@RUNTIMES.register("onnxruntime-qdq")
class OrtQdqReferenceRunner(OrtRunner):
    """ONNX Runtime with graph optimizations off: every QuantizeLinear / DequantizeLinear runs as written and the
    convolutions in float, i.e. the QDQ file's own arithmetic (what TensorRT's explicit quantization computes,
    int32-exact), independent of this CPU's int8 kernels. The stand-in for TensorRT here, and the scorer of int8
    candidate settings at export; slower than the fused int8 kernels, so never a speed figure."""

    label = "ONNX Runtime, QDQ reference (no int8 kernels)"
    qdq_reference = True
