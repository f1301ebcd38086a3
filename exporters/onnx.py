"""ONNX export of one sliced sub-model: fp32 (torch.onnx, dynamo), fp16 (ORT's float16 converter), int8 (static QDQ).

``export_onnx`` is the shared building block: the TensorRT exporter writes its TRT-ready model.onnx with it too.
torch, onnx and onnxruntime are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from swedge.errors import SwedgeError, require
from swedge.exporters.base import (INPUT_NAME, OUTPUT_NAME, EXPORTERS, ExportJob, ExportResult, Exporter,
                                   version_of)
from swedge.io import atomic_write_bytes

OPSET = 18


def forward_arg_name(module) -> str:
    """The name of ``module.forward``'s tensor argument: torch.export keys ``dynamic_shapes`` by it."""
    params = [p for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not params:
        raise SwedgeError(f"{type(module).__name__}.forward takes no positional input; cannot export it to ONNX")
    return params[0].name


@contextlib.contextmanager
def _quiet_exporter():
    """Hide the exporter's known harmless noise (WARNING logs "torchvision is not installed. Skipping
    torchvision::nms", FutureWarning/DeprecationWarning from torch internals); errors and ERROR logs still show."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _example_batch(example, input_shape, batch: int) -> np.ndarray:
    """``batch`` rows of real inputs for tracing (tiled if fewer are given; random if none)."""
    shape = tuple(int(s) for s in input_shape)
    if example is None:
        return np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    example = np.asarray(example, dtype=np.float32)
    if example.ndim != 4 or tuple(example.shape[1:]) != shape or len(example) == 0:
        raise SwedgeError(f"example inputs must be (N, {', '.join(map(str, shape))}) float32 to match the input "
                          f"shape, got {example.shape}")
    reps = -(-batch // len(example))
    return np.ascontiguousarray(np.concatenate([example] * reps)[:batch])


def trace_onnx(module, *, input_shape, example=None, max_batch: int = 64, opset: int = OPSET):
    """The sliced module as an in-memory ``onnx.ModelProto`` (fp32; input "input", output "embedding").

    Dynamic batch 1..max_batch when max_batch >= 2, else a static batch of 1. Weights stay inside the proto."""
    torch = require("torch", "onnx")
    require("onnxscript", "onnx")  # the dynamo exporter's backend; without it torch fails with a bare ImportError
    if max_batch < 1:
        raise SwedgeError(f"max_batch must be at least 1, got {max_batch}")
    dynamic = max_batch >= 2
    # torch.export specialises a size-1 dimension, so trace a dynamic batch with 2 rows.
    x = torch.from_numpy(_example_batch(example, input_shape, 2 if dynamic else 1))
    kwargs = {}
    if dynamic:
        kwargs["dynamic_shapes"] = {forward_arg_name(module): {0: torch.export.Dim("batch", min=1, max=max_batch)}}
    module = module.eval()
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(module, (x,), None, dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], external_data=False, verbose=False, **kwargs)
    return program.model_proto


def set_metadata(model, metadata: dict | None) -> None:
    """Write ``metadata`` (str -> str) into the model's metadata_props, replacing keys that already exist."""
    if not metadata:
        return
    props = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SwedgeError(f"ONNX metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key in props:
            props[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


def save_onnx(model, path) -> Path:
    """Check the model with the ONNX checker, then write it atomically (temp file beside ``path``, rename)."""
    onnx = require("onnx", "onnx")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise SwedgeError(f"the exported ONNX graph fails onnx.checker ({exc}); not writing {path}") from None
    return atomic_write_bytes(path, model.SerializeToString())


def export_onnx(module, path, *, input_shape, example, max_batch: int = 64, metadata: dict | None = None,
                opset: int = OPSET) -> dict:
    """Export ``module`` (a sliced sub-model) to the fp32 ONNX file ``path``; returns the tool versions used."""
    model = trace_onnx(module, input_shape=input_shape, example=example, max_batch=max_batch, opset=opset)
    set_metadata(model, metadata)
    save_onnx(model, path)
    return version_of("torch", "onnx", "onnxscript")


# int8 settings for onnxruntime, chosen per artifact on held-out calibration images (never the probe), scored by
# the QDQ reference (no int8 kernels), so the exporting CPU never picks. Every candidate uses pair-safe weights
# (ort_qdq.pair_safe_weight_overrides): no pair of uint8 x int8 products can leave int16, so onnxruntime's
# saturating path (x86 without VNNI) computes the same integers as VNNI / AMX / ARM and the file means the same
# on every CPU. Measured with benchmarks/bench_int8.py (table: benchmarks/int8/README.md): asymmetric activations
# beat symmetric ones (post-ReLU tensors waste half a symmetric range); plain 8-bit weights lose up to 0.04 mean
# cosine on the saturating path; 7-bit weights everywhere cost ImageNet MobileNetV2 0.05 (depthwise kernels are
# sensitive and never saturate), pair-safe weights 0.001. The embedding Gemm stays float. TensorRT's exporter
# quantizes with its own settings (its int8 is int32-exact).
ONNX_INT8 = {
    "asymmetric-percentile": {"method": "percentile", "symmetric_activations": False, "pair_safe_weights": True,
                              "float_ops": ("Gemm",)},
    "asymmetric-minmax": {"method": "minmax", "symmetric_activations": False, "pair_safe_weights": True,
                          "float_ops": ("Gemm",)},
}


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    backend_modules = ("onnx", "onnxscript", "onnxruntime")
    int8_repair_scheme = ONNX_INT8["asymmetric-minmax"]

    def _export(self, job: ExportJob) -> ExportResult:
        batch = "dynamic" if job.max_batch >= 2 else "static:1"
        trace = dict(input_shape=job.input_shape, example=job.example, max_batch=job.max_batch)
        if job.precision == "fp32":
            tools = export_onnx(job.module, job.out, metadata=job.metadata, **trace)
            return ExportResult(job.out, tools=tools, batch=batch, extra={"opset": OPSET})
        if job.precision == "fp16":
            return self._fp16(job, trace, batch)
        return self._int8(job, trace, batch)

    def _fp16(self, job: ExportJob, trace: dict, batch: str) -> ExportResult:
        require("onnxruntime", "onnx")
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = convert_float_to_float16(trace_onnx(job.module, **trace), keep_io_types=True)
        # The converter appends its input Casts at the end of the node list; the ONNX checker wants topological order.
        OnnxModel.graph_topological_sort(model.graph, is_deterministic=True)
        set_metadata(model, job.metadata)
        save_onnx(model, job.out)
        return ExportResult(job.out, tools=version_of("torch", "onnx", "onnxscript", "onnxruntime"),
                            batch=batch, extra={"opset": OPSET},
                            notes=["fp16 weights and compute; float32 input/output kept (Cast at the graph edges)"])

    def _int8(self, job: ExportJob, trace: dict, batch: str) -> ExportResult:
        from swedge.calibration.int8_paths import saturation_bound
        from swedge.calibration.ort_qdq import QDQ_QUANTIZER, quantize_onnx_qdq_selected

        onnx = require("onnx", "onnx")
        with contextlib.ExitStack() as stack:
            work = Path(job.workdir) if job.workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            work.mkdir(parents=True, exist_ok=True)
            fp32, int8 = work / f"{job.out.stem}.fp32.onnx", work / f"{job.out.stem}.int8.onnx"
            tools = export_onnx(job.module, fp32, **trace)
            candidates = {k: {**v, "keep_float": job.keep_float} for k, v in ONNX_INT8.items()}
            facts = quantize_onnx_qdq_selected(fp32, int8, job.calibration, candidates)
            facts["saturation"] = saturation_bound(int8)
            if not facts["saturation"]["saturation_free"]:  # an invariant of ONNX_INT8, checked on the file itself
                raise RuntimeError(f"onnx int8: layers {facts['saturation']['layers_that_can_saturate']} can saturate "
                                  "int16 on x86 CPUs without VNNI; the int8 settings must keep weights in 7 bits")
            model = onnx.load(int8)
        set_metadata(model, job.metadata)
        save_onnx(model, job.out)
        tools.update(version_of("onnxruntime"))
        return ExportResult(job.out, tools=tools, batch=batch, extra={"opset": OPSET},
                            quantization=QDQ_QUANTIZER.record(job.calibration, **facts),
                            notes=["int8 weights and activations (static QDQ), weights pair-safe: the same integers "
                                   "on every CPU path (no int16 saturation); float32 input/output"])
