"""TensorRT runner: a serialized engine, or the TRT-ready ONNX built into one on load, run through TensorRT 10's
name-based I/O (set_input_shape / set_tensor_address / execute_async_v3). GPU memory and the stream come from
polygraphy.cuda (ctypes over the CUDA runtime): no torch, no pycuda.

Artifact: a TensorRT folder (``model.engine`` and/or ``model.onnx``), a ``.engine`` file or an ``.onnx`` file.
An engine built on load stays in memory: the bundle's files, and so their sha256, are never modified.
Without TensorRT or a GPU, ``load()`` raises RuntimeUnavailable naming why (the harness then falls back to
onnxruntime on the same ONNX, labelled as such).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from swedge.errors import SwedgeError
from swedge.runtimes.base import RUNTIMES, Runner
from swedge.runtimes.tensorrt_engine import (ENGINE_FILE, ONNX_FILE, BuildOptions, build_serialized_engine,
                                             cuda_module, dims_list, error_logger, require_tensorrt, tensorrt_missing,
                                             tensorrt_version)

IO_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@RUNTIMES.register("tensorrt")
class TensorRTRunner(Runner):
    extra = "tensorrt"
    label = "TensorRT"

    built_on_load = False

    def _load(self) -> None:
        require_tensorrt()  # RuntimeUnavailable: no TensorRT, no CUDA runtime, or no GPU
        import tensorrt as trt

        cuda = cuda_module()
        data = self._engine_bytes()
        logger, errors = error_logger()
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            detail = "; ".join(errors) or "no detail"
            raise SwedgeError(f"tensorrt: cannot load the engine from {self.path} ({detail}); an engine only loads "
                              "with the TensorRT version and GPU model it was built for: "
                              f"delete {ENGINE_FILE} to rebuild it from {ONNX_FILE}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SwedgeError(f"tensorrt: {self.path} has inputs {inputs} and outputs {outputs}; a swedge "
                              "embedder has exactly one of each")
        self._input, self._output = inputs[0], outputs[0]
        shape = dims_list(engine.get_tensor_shape(self._input))
        self._sample_shape = tuple(shape[1:])
        if shape[0] < 0:  # dynamic batch: the profile's max bounds each chunk
            self.max_batch = int(engine.get_tensor_profile_shape(self._input, 0)[2][0])
            self._static_batch = 0
        else:
            self.max_batch = self._static_batch = shape[0]
        self._in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        self._out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        for tensor, dtype in ((self._input, self._in_dtype), (self._output, self._out_dtype)):
            if dtype not in IO_DTYPES:
                raise SwedgeError(f"tensorrt: engine tensor '{tensor}' is {dtype}; swedge engines keep float "
                                  "input/output (int8 lives inside, between Q/DQ)")
        # Keep runtime and engine referenced: the context is only valid while they live.
        self._runtime, self._engine = runtime, engine
        self._context = engine.create_execution_context()
        self._stream = cuda.Stream()
        self._d_in = cuda.DeviceArray(shape=(0,), dtype=self._in_dtype)
        self._d_out = cuda.DeviceArray(shape=(0,), dtype=self._out_dtype)

    def _engine_bytes(self) -> bytes:
        path = self.path
        engine = path / ENGINE_FILE if path.is_dir() else path if path.suffix == ".engine" else None
        onnx = path / ONNX_FILE if path.is_dir() else path if path.suffix == ".onnx" else None
        if engine is not None and engine.is_file():
            return engine.read_bytes()
        if onnx is None or not onnx.is_file():
            raise SwedgeError(f"tensorrt: {path} holds neither {ENGINE_FILE} nor {ONNX_FILE}")
        entry = self.entry
        quantizer = ((entry and entry.quantization) or {}).get("quantizer")
        if quantizer == "tensorrt-entropy":
            raise SwedgeError(f"tensorrt: {path} was calibrated inside TensorRT's builder but has no {ENGINE_FILE}; "
                              "its ONNX is fp32, so re-export it with TensorRT and --calib")
        profile = ((entry and entry.engine) or {}).get("profile") or {}
        options = BuildOptions(precision=entry.precision if entry else "fp32",
                               max_batch=int(profile.get("max", 64)), opt_batch=int(profile.get("opt", 8)))
        self.built_on_load = True
        return build_serialized_engine(onnx, options)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        if tuple(x.shape[1:]) != self._sample_shape:
            raise SwedgeError(f"tensorrt: input of shape {tuple(x.shape)} does not match the engine's "
                              f"(N, {', '.join(map(str, self._sample_shape))})")
        n = len(x)
        batch = np.ascontiguousarray(x, dtype=self._in_dtype)
        if self._static_batch and n < self._static_batch:  # a static engine takes exactly its batch: pad
            pad = np.zeros((self._static_batch - n, *self._sample_shape), self._in_dtype)
            batch = np.concatenate([batch, pad])
        if not self._context.set_input_shape(self._input, tuple(batch.shape)):
            raise SwedgeError(f"tensorrt: the engine rejects input shape {batch.shape} (its profile allows batch "
                              f"1..{self.max_batch})")
        out_shape = tuple(dims_list(self._context.get_tensor_shape(self._output)))
        self._d_in.resize(batch.shape)
        self._d_out.resize(out_shape)
        self._d_in.copy_from(batch, self._stream)
        self._context.set_tensor_address(self._input, self._d_in.ptr)
        self._context.set_tensor_address(self._output, self._d_out.ptr)
        if not self._context.execute_async_v3(self._stream.ptr):
            raise SwedgeError("tensorrt: execute_async_v3 failed (see TensorRT's log)")
        host = np.empty(out_shape, self._out_dtype)
        self._d_out.copy_to(host, self._stream)
        self._stream.synchronize()
        return host[:n].astype(np.float32)

    def close(self) -> None:
        if self._loaded:
            self._d_in.free()
            self._d_out.free()
            self._stream.free()
            del self._context, self._engine, self._runtime
        super().close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine_built_on_load": self.built_on_load}

    def version(self) -> str:
        return "" if tensorrt_missing() else tensorrt_version()
