"""TFLite export through litert-torch (no TensorFlow): fp32, fp16 weights, full-integer int8 (PT2E).

Input stays NCHW float32 (int8 for the full-integer model): litert-torch inserts the NHWC transposes itself.
The batch is dynamic (shape_signature -1) because the sliced head pools with ``mean((2, 3))``; a
``flatten`` there would break litert-torch's dynamic lowering.

- fp32: plain conversion.
- fp16: ai-edge-quantizer's FLOAT_CASTING recipe (litert-torch ``full_fp16_recipe``): weights stored as
  float16, activations and I/O stay float32. The CPU interpreter dequantizes the weights to fp32 once at
  load; GPU delegates may compute in fp16.
- int8: PT2E static quantization with the calibration set (swedge.calibration.pt2e), int8 I/O.

job.metadata is embedded as a TFLite metadata entry named ``swedge`` (JSON), readable with
``swedge.runtimes.litert_runner.read_tflite_metadata``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import warnings

from swedge.errors import SwedgeError, require
from swedge.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult, version_of
from swedge.io import atomic_write_bytes

# LiteRT's C++ side logs INFO lines (XNNPACK delegate, op counts) straight to stderr; keep its errors only.
# Set before the native library loads (it is imported lazily); a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METADATA_NAME = "swedge"
TRACE_BATCH = 2  # trace with batch > 1 so torch.export does not specialise the batch dimension to 1

# Converter chatter that is known to be harmless here (each is a logging record, never an error):
_NOISE = (
    "is an Enum subclass and is now natively",  # torch pytree, triggered by torchao's enum registration
    "Failed to load",                           # torchao's optional CUDA kernels (_C_*.so) on a CPU machine
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not any(n in record.getMessage() for n in _NOISE)


@contextlib.contextmanager
def _quiet():
    """Silence litert-torch's progress bars and the known-harmless warnings; errors still propagate, and
    anything printed to stdout is replayed on stderr if the conversion fails."""
    noise = _DropNoise()
    loggers = [logging.getLogger(n) for n in ("", "torchao", "torch.utils._pytree")]
    old_progress = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    for lg in loggers:
        lg.addFilter(noise)
    out = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            yield
    except BaseException:
        sys.stderr.write(out.getvalue())
        raise
    finally:
        for lg in loggers:
            lg.removeFilter(noise)
        if old_progress is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old_progress


def embed_metadata(model: bytes, metadata: dict) -> bytes:
    """Return ``model`` with ``metadata`` (str -> str) added as the TFLite metadata entry ``swedge``."""
    fb = require("ai_edge_litert.tools.flatbuffer_utils", "tflite")
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    obj = fb.read_model_from_bytearray(bytearray(model))
    obj.metadata = [m for m in (obj.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    buf = schema.BufferT()
    buf.data = list(json.dumps(metadata, sort_keys=True).encode())
    obj.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(obj.buffers) - 1
    obj.metadata.append(entry)
    return bytes(fb.convert_object_to_bytearray(obj))


def _has_fp16_weights(model: bytes) -> bool:
    """Whether a .tflite flatbuffer holds float16 tensors (the fp16 recipe's stored weights)."""
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    graph = schema.Model.GetRootAs(model, 0).Subgraphs(0)
    return any(graph.Tensors(i).Type() == schema.TensorType.FLOAT16 for i in range(graph.TensorsLength()))


@EXPORTERS.register("tflite")
class TFLiteExporter(Exporter):
    backend_modules = ("litert_torch", "ai_edge_litert")
    # PT2E's int8 as QDQ for the repair's layer ranking: symmetric per-channel int8 weights, asymmetric int8
    # activations with histogram-fitted ranges (percentile here), the head quantized too.
    int8_repair_scheme = {"per_channel": True, "symmetric_activations": False, "method": "percentile"}

    def _export(self, job: ExportJob) -> ExportResult:
        torch = require("torch", "tflite")
        with _quiet():
            litert_torch = require("litert_torch", "tflite")
            dynamic = job.max_batch > 1
            example = self._example(torch, job, dynamic)
            shapes = ({0: torch.export.Dim("batch", min=1, max=job.max_batch)},) if dynamic else None
            module = job.module.eval()
            result = ExportResult(path=job.out, batch="dynamic" if dynamic else "static:1",
                                  tools=version_of("litert-torch", "ai-edge-litert", "torch"))
            module, quant_config = self._prepare(job, module, example, shapes, result)
            converted = litert_torch.convert(module, (example,), dynamic_shapes=shapes, quant_config=quant_config)
            model = bytes(converted.model_content())  # the fp16 path returns a bytearray
        if job.metadata:
            model = embed_metadata(model, {str(k): str(v) for k, v in job.metadata.items()})
            result.notes.append(f"metadata embedded as TFLite metadata entry '{METADATA_NAME}' (JSON)")
        self._check(job, result, model, dynamic)  # before writing: a wrong artifact never reaches job.out
        atomic_write_bytes(job.out, model)
        return result

    @staticmethod
    def _example(torch, job: ExportJob, dynamic: bool):
        x = torch.from_numpy(job.example).float()
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(job.input_shape):
            raise SwedgeError(f"tflite: example inputs have shape {tuple(x.shape)}, expected (N, "
                              f"{', '.join(map(str, job.input_shape))})")
        n = TRACE_BATCH if dynamic else 1
        return x[:1].repeat(n, 1, 1, 1) if len(x) < n else x[:n].contiguous()

    def _prepare(self, job: ExportJob, module, example, shapes, result: ExportResult):
        """(module to convert, litert-torch QuantConfig or None) for the job's precision."""
        if job.precision == "fp32":
            return module, None
        if job.precision == "fp16":
            recipes = require("litert_torch.generative.quantize.quant_recipes", "tflite")
            result.tools.update(version_of("ai-edge-quantizer"))
            result.notes.append("fp16 weights (ai-edge-quantizer FLOAT_CASTING), fp32 activations and fp32 I/O; "
                                "the CPU interpreter dequantizes weights to fp32 at load")
            return module, recipes.full_fp16_recipe()
        from swedge.calibration.pt2e import PT2E_QUANTIZER, quantize_pt2e

        qc = require("litert_torch.quantize.quant_config", "tflite")
        graph, quantizer, facts = quantize_pt2e(module, example, job.calibration, dynamic_shapes=shapes,
                                                keep_float=job.keep_float)
        result.tools.update(version_of("torchao"))
        result.quantization = PT2E_QUANTIZER.record(job.calibration, **facts)
        result.notes.append("full-integer int8: input and output tensors are int8 (quantize / dequantize with "
                            "the tensors' scale and zero-point)" if not job.keep_float else
                            f"int8 with {len(job.keep_float)} layer(s) kept float (int8 repair); a float first "
                            "layer makes the input float32")
        return graph, qc.QuantConfig(pt2e_quantizer=quantizer)

    @staticmethod
    def _check(job: ExportJob, result: ExportResult, model: bytes, dynamic: bool) -> None:
        """Load the converted model: record its real I/O, and fail if it is not what was asked for."""
        interpreter = require("ai_edge_litert.interpreter", "tflite")
        it = interpreter.Interpreter(model_content=model)
        (inp,), (out,) = it.get_input_details(), it.get_output_details()
        io_types = {inp["dtype"].__name__, out["dtype"].__name__}
        # A kept-float first layer reads the float input directly; the output stays int8 either way.
        wanted = {"int8"} if not job.keep_float else {"int8", "float32"}
        if job.precision == "int8" and not io_types <= wanted:
            raise SwedgeError(f"tflite int8: the converter produced {sorted(io_types)} I/O, not full-integer int8 "
                              f"(litert-torch {result.tools.get('litert-torch')}); the artifact is not usable as int8")
        if job.precision == "fp16" and not _has_fp16_weights(model):
            raise SwedgeError("tflite fp16: the converted model holds no float16 weights (the fp16 recipe did not "
                              f"apply with ai-edge-quantizer {result.tools.get('ai-edge-quantizer')})")
        if dynamic and int(inp["shape_signature"][0]) != -1:
            raise SwedgeError(f"tflite: the converter made a static batch {list(inp['shape_signature'])}, "
                              "not a dynamic one")
        result.extra.update(layout="NCHW", input_dtype=inp["dtype"].__name__, output_dtype=out["dtype"].__name__,
                            input_shape=[int(d) for d in inp["shape_signature"]])
        if job.precision == "int8":
            if io_types != {"int8"}:
                result.quantization["io"] = f"{inp['dtype'].__name__} input, {out['dtype'].__name__} output"
            result.extra.update(input_quantization=[float(v) for v in inp["quantization"]],
                                output_quantization=[float(v) for v in out["quantization"]])
