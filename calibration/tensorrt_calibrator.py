"""TensorRT int8: explicit Q/DQ (the default) and the legacy implicit calibrator.

Two routes, both registered so the manifest names the one that made each engine:

- ``tensorrt-qdq`` (default): the int8 ONNX carries explicit QuantizeLinear/DequantizeLinear pairs computed by
  onnxruntime's static calibration on our calibration set; TensorRT builds it with the INT8 flag and no
  calibrator. TensorRT only accepts *symmetric* int8 Q/DQ (zero point 0, signed int8), so the quantizer is run
  symmetric and the result is checked for that. This is TensorRT 10's recommended path: implicit quantization
  (calibrators, dynamic ranges) is deprecated since TensorRT 10.1.
- ``tensorrt-entropy``: TensorRT's own ``IInt8EntropyCalibrator2`` on the fp32 ONNX, fed from the calibration
  set through GPU buffers, with a calibration cache file so a rebuild skips calibration. Needs TensorRT and a
  GPU at export time; kept for older deployments that still use implicit quantization.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from swedge.calibration.base import Quantizer
from swedge.errors import SwedgeError

if TYPE_CHECKING:
    import tensorrt as trt
    from typing_extensions import Buffer

    from swedge.calibration.dataset import CalibrationSet

DEFAULT_CALIBRATION_BATCH = 8


# quantize_onnx_qdq keyword options (Any: mypy cannot unpack a dict of mixed value types into typed keywords)
TENSORRT_QDQ: dict[str, Any] = {"per_channel": True, "symmetric_activations": True, "quantize_bias": False,
                                "method": "percentile", "percentile": 99.99, "float_ops": ("Gemm",)}


TENSORRT_QDQ_QUANTIZER = Quantizer(
    "tensorrt-qdq", backend="tensorrt",
    algorithm="explicit QDQ from onnxruntime static calibration (symmetric int8, per-channel weights)")


def quantize_for_tensorrt(src: str | Path, dst: str | Path, calibration: CalibrationSet, *,
                          keep_float: tuple[str, ...] = ()) -> dict:
    """fp32 ONNX ``src`` -> explicit-Q/DQ int8 ONNX ``dst`` that TensorRT can build; returns the quantizer's facts."""
    from swedge.calibration.ort_qdq import quantize_onnx_qdq

    # Biases stay float: TensorRT's DequantizeLinear takes int8 inputs only, so an int32 bias would not parse.
    # 99.99th-percentile ranges and a float embedding Gemm. Symmetric int8 mAP drop (self, points, w = .25/.5/.75/1)
    # on the trained demo checkpoint: MinMax -0.8/-1.4/-1.1/-0.8, percentile 99.999 -0.9/-1.1/-1.1/-0.2,
    # 99.99 -0.3/-0.4/-0.8/-0.6, 99.9 -/-1.3/-2.3/- (clipping too much).
    facts = quantize_onnx_qdq(src, dst, calibration, **TENSORRT_QDQ, keep_float=keep_float)
    problems = qdq_problems(dst)
    if problems:
        raise SwedgeError(f"{dst} is not TensorRT-ready int8: " + "; ".join(problems))
    return {**facts, "qdq_by": "onnxruntime-qdq"}


def qdq_problems(path: str | Path) -> list[str]:
    """What in an int8 ONNX would make TensorRT reject it or quantize differently; empty when ready.

    TensorRT needs Q/DQ pairs with signed int8 zero points equal to 0 (symmetric), constant scales, and at
    least one quantized tensor (else the INT8 flag silently builds an fp32 engine)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute}
    problems = []
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        problems.append("no QuantizeLinear/DequantizeLinear nodes")
    for node in qdq:
        scale = node.input[1]
        if scale not in init and scale not in consts:
            problems.append(f"{node.name}: scale '{scale}' is not a constant")
        if len(node.input) < 3 or not node.input[2]:
            if node.op_type == "QuantizeLinear":  # ONNX default: uint8 output
                problems.append(f"{node.name}: no zero point, so uint8 output (TensorRT needs int8, zero point 0)")
            continue
        zp_name = node.input[2]
        tensor = init.get(zp_name) or consts.get(zp_name)
        if tensor is None:
            problems.append(f"{node.name}: zero point '{zp_name}' is not a constant")
            continue
        zp = numpy_helper.to_array(tensor)
        if zp.dtype != np.int8:
            problems.append(f"{node.name}: zero point type {zp.dtype} (TensorRT needs signed int8)")
        elif np.any(zp != 0):
            problems.append(f"{node.name}: non-zero zero point (TensorRT needs symmetric quantization)")
    return problems


def calibration_batching(calibration: CalibrationSet, batch_size: int = DEFAULT_CALIBRATION_BATCH) -> tuple[int, int]:
    """(batch size, images used): TensorRT asks for fixed-size batches, so an incomplete last batch is left out."""
    if calibration.size == 0:
        raise SwedgeError("the calibration set is empty")
    batch = max(1, min(batch_size, calibration.size))
    return batch, (calibration.size // batch) * batch


TENSORRT_ENTROPY_QUANTIZER = Quantizer("tensorrt-entropy", backend="tensorrt",
                                       algorithm="IInt8EntropyCalibrator2 (implicit quantization)")


@contextlib.contextmanager
def entropy_calibrator(calibration: CalibrationSet, cache_file: str | Path, *,
                       batch_size: int = DEFAULT_CALIBRATION_BATCH) -> Iterator[trt.IInt8EntropyCalibrator2]:
    """A TensorRT entropy calibrator over ``calibration`` (needs TensorRT and a GPU); its GPU buffer is freed
    on exit. An existing ``cache_file`` is reused instead of calibrating again; it is written after calibration.
    See :func:`calibration_batching` for the batches it feeds."""
    from swedge.runtimes.tensorrt_engine import cuda_module, require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    batch, _ = calibration_batching(calibration, batch_size)
    cache = Path(cache_file)
    batches = iter([np.ascontiguousarray(b, dtype=np.float32)
                    for b in calibration.batches(batch) if len(b) == batch])
    device = cuda_module().DeviceArray(shape=(batch, *calibration.inputs.shape[1:]), dtype=np.float32)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 trampolines need the explicit base init

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int]:
            data = next(batches, None)
            if data is None:
                return []  # no more data: calibration ends
            device.copy_from(data)
            return [int(device.ptr)] * len(names)  # our networks have one input

        def read_calibration_cache(self) -> bytes | None:  # None: no cache, TensorRT calibrates
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, cache_data: Buffer) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(cache_data))

    try:
        yield EntropyCalibrator()
    finally:
        device.free()
