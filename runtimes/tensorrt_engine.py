"""TensorRT availability and engine building (TensorRT 10 API), torch-free: used by the exporter and the runner.

TensorRT cannot be pip-installed everywhere (its libraries come from NVIDIA's own index) and needs an NVIDIA GPU,
so :func:`tensorrt_unavailable` says why it cannot run here instead of failing at import time. Note that the
``tensorrt-stubs`` package (used for the static check) makes ``import tensorrt`` succeed as an empty namespace
package: the real module is recognised by its ``Builder`` class.

GPU memory and streams go through ``polygraphy.cuda`` (pure Python over the CUDA runtime via ctypes), so neither
torch nor pycuda is needed on the device.
"""

from __future__ import annotations

import ctypes
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from swedge.errors import SwedgeError
from swedge.runtimes.base import RuntimeUnavailable

if TYPE_CHECKING:
    import tensorrt as trt

NOT_INSTALLED = "TensorRT is not installed (pip install 'swedge[tensorrt]' from NVIDIA's index; needs an NVIDIA GPU)"
NO_POLYGRAPHY = ("polygraphy is not installed (pip install polygraphy): swedge drives CUDA memory through "
                 "polygraphy.cuda")
DEFAULT_WORKSPACE = 1 << 30   # builder scratch memory; small CNNs need far less
ONNX_FILE = "model.onnx"      # inside a TensorRT artifact folder: the TRT-ready ONNX (always there)
ENGINE_FILE = "model.engine"  # the serialized engine (when it was built at export)


def tensorrt_missing() -> str | None:
    """None when the real TensorRT Python package imports, else the reason."""
    try:
        trt_module = importlib.import_module("tensorrt")
    except Exception:  # ImportError, or a broken install (missing libnvinfer.so raises ImportError/OSError)
        return NOT_INSTALLED
    if not hasattr(trt_module, "Builder"):  # tensorrt-stubs alone: an empty namespace package
        return NOT_INSTALLED
    return None


def cuda_module() -> ModuleType:
    """polygraphy.cuda (looked up through importlib so tests can substitute it in sys.modules)."""
    try:
        return importlib.import_module("polygraphy.cuda")
    except ImportError:
        raise RuntimeUnavailable(NO_POLYGRAPHY) from None


def gpu_missing() -> str | None:
    """None when the CUDA runtime loads and sees at least one GPU, else the reason."""
    try:
        cuda = cuda_module()
    except RuntimeUnavailable as exc:
        return str(exc)
    count = ctypes.c_int(0)
    try:
        status = cuda.wrapper().handle.cudaGetDeviceCount(ctypes.byref(count))
    except Exception as exc:  # libcudart not found (OSError) or polygraphy refusing to load it
        return (f"the CUDA runtime (libcudart) cannot be loaded ({type(exc).__name__}: {exc}); "
                "TensorRT needs an NVIDIA GPU")
    if status != 0:  # e.g. 100 = cudaErrorNoDevice, 35 = cudaErrorInsufficientDriver
        return f"no usable CUDA GPU (cudaGetDeviceCount returned CUDA error {status})"
    if count.value < 1:
        return "no CUDA GPU is visible"
    return None


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot build or run engines on this machine, or None when it can."""
    return tensorrt_missing() or gpu_missing()


def require_tensorrt() -> None:
    reason = tensorrt_unavailable()
    if reason:
        raise RuntimeUnavailable(reason)


def dims_list(dims: trt.Dims) -> list[int]:
    """A TensorRT Dims as a list (indexed: the stubs do not declare Dims iterable, though it is at runtime)."""
    return [int(dims[i]) for i in range(len(dims))]


def tensorrt_version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"            # fp32 | fp16 | int8 (int8: explicit QDQ in the ONNX, or a calibrator)
    max_batch: int = 64
    opt_batch: int = 8                 # the batch TensorRT tunes its kernels for
    workspace_bytes: int = DEFAULT_WORKSPACE

    def profile(self) -> tuple[int, int, int]:
        if self.max_batch < 1:
            raise SwedgeError(f"TensorRT max batch must be at least 1, got {self.max_batch}")
        return 1, max(1, min(self.opt_batch, self.max_batch)), self.max_batch


def error_logger() -> tuple[trt.ILogger, list[str]]:
    """A TensorRT logger that keeps error messages, so a failed build says why (TensorRT returns None, not an
    exception), and prints nothing else."""
    import tensorrt as trt

    errors: list[str] = []
    severe = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR)

    class ErrorLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in severe:
                errors.append(msg)

    return ErrorLogger(), errors


def _parse_onnx(network: trt.INetworkDefinition, logger: trt.ILogger, onnx_path: Path) -> None:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so weights stored as ONNX external data next to the file are found.
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise SwedgeError(f"TensorRT's ONNX parser rejected {onnx_path}: " + "; ".join(errors or ["no details"]))


def build_serialized_engine(onnx_path: str | Path, options: BuildOptions, *,
                            calibrator: trt.IInt8Calibrator | None = None, calibration_batch: int = 0) -> bytes:
    """Parse the ONNX file and build a serialized TensorRT engine (the bytes of a ``.engine`` file).

    Dynamic batch: one optimisation profile min 1 / opt ``opt_batch`` / max ``max_batch`` on the batch axis.
    fp16 comes from the builder flag; int8 either from the ONNX's explicit Q/DQ nodes (no calibrator: the
    TensorRT 10 way) or from an implicit-quantization ``calibrator`` (deprecated since TensorRT 10.1).
    """
    require_tensorrt()
    import tensorrt as trt

    if options.precision not in ("fp32", "fp16", "int8"):
        raise SwedgeError(f"TensorRT precision must be fp32, fp16 or int8, got {options.precision!r}")
    logger, errors = error_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode, EXPLICIT_BATCH is ignored
    _parse_onnx(network, logger, Path(onnx_path))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    if options.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)

    lo, opt, hi = options.profile()
    profile = builder.create_optimization_profile()
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = dims_list(tensor.shape)
        if any(d < 0 for d in dims[1:]):
            raise SwedgeError(f"{onnx_path}: input '{tensor.name}' has dynamic non-batch dims {dims}; swedge "
                              "exports a fixed input size")
        if dims[0] < 0:  # dynamic batch: one profile min 1 / opt / max on the batch axis
            dynamic = True
            rest = dims[1:]
            profile.set_shape(tensor.name, trt.Dims([lo, *rest]), trt.Dims([opt, *rest]), trt.Dims([hi, *rest]))
    if dynamic:
        config.add_optimization_profile(profile)

    if calibrator is not None:
        if options.precision != "int8":
            raise SwedgeError("a TensorRT calibrator only makes sense for int8")
        config.int8_calibrator = calibrator
        if dynamic:  # calibration runs at one fixed shape: the calibrator's batch
            if calibration_batch < 1:
                raise SwedgeError("calibration_batch must be the calibrator's batch size (>= 1)")
            calib = builder.create_optimization_profile()
            for i in range(network.num_inputs):
                tensor = network.get_input(i)
                shape = trt.Dims([calibration_batch, *dims_list(tensor.shape)[1:]])
                calib.set_shape(tensor.name, shape, shape, shape)
            config.set_calibration_profile(calib)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SwedgeError(f"TensorRT could not build an engine from {onnx_path}: "
                          + ("; ".join(errors) or "no error was logged"))
    return bytes(serialized)
