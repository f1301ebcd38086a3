"""OpenVINO IR export: the sliced torch module -> a folder holding ``model.xml`` + ``model.bin``.

fp32 keeps f32 weights (``save_model`` would compress them to f16 by default), fp16 stores f16 weights, int8 is
NNCF post-training quantization of the converted model (FakeQuantize ops, int8 weights in the .bin). The batch
dimension is dynamic. ``job.metadata`` is embedded in the IR's rt_info under ``swedge``.
"""

from __future__ import annotations

import warnings

from swedge.calibration.nncf_ptq import NNCF_AS_QDQ, NNCF_QUANTIZER, conv_names, quantize_openvino_selected
from swedge.errors import SwedgeError, require

from .base import INPUT_NAME, OUTPUT_NAME, EXPORTERS, Exporter, ExportJob, ExportResult, version_of

XML, BIN = "model.xml", "model.bin"
RT_INFO_KEY = "swedge"

# What the CPU plugin really does with these IRs (checked with openvino 2026.4 on an AVX512_BF16 CPU): without
# INFERENCE_PRECISION_HINT it computes in bf16 where the CPU has native bf16 (AVX512_BF16 / AMX), in f16 only
# where it has native f16 (ARM, AMX-FP16; asking for f16 elsewhere silently gives bf16), else in f32. The int8
# IR gave the same output with and without the hint there, so its note leaves this out.
_PRECISION_NOTE = ("the OpenVINO CPU plugin computes in bf16 by default on CPUs with native bf16 (AVX512_BF16/AMX), "
                   "f16 only on CPUs with native f16, else f32; swedge's openvino runner pins "
                   "INFERENCE_PRECISION_HINT=f32")
_NOTES = {
    "fp32": ["fp32 weights (compress_to_fp16=False)", _PRECISION_NOTE],
    "fp16": ["fp16 weights (compressed); the plugin decompresses them to its inference precision when compiling",
             _PRECISION_NOTE],
    "int8": ["int8 weights and activations (NNCF FakeQuantize); other constants kept f32"],
}


@EXPORTERS.register("openvino")
class OpenVINOExporter(Exporter):
    int8_repair_scheme = NNCF_AS_QDQ
    backend_modules = ("openvino",)   # nncf is imported only for int8, by the quantizer

    def _export(self, job: ExportJob) -> ExportResult:
        ov = require("openvino", "openvino")
        model = _convert(ov, job)
        quantization = None
        if job.precision == "int8":
            model, facts = quantize_openvino_selected(model, job.calibration,
                                                      keep_float=conv_names(model, job.module, job.keep_float))
            if job.keep_float:
                facts["kept_float"] = list(job.keep_float)
            quantization = NNCF_QUANTIZER.record(job.calibration, **facts)
        for key, value in job.metadata.items():  # after quantization, so nothing can drop it
            model.set_rt_info(str(value), [RT_INFO_KEY, str(key)])
        job.out.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, job.out / XML, compress_to_fp16=job.precision == "fp16")
        tools = version_of("openvino", "torch", *(("nncf",) if job.precision == "int8" else ()))
        return ExportResult(path=job.out, tools=tools, quantization=quantization, notes=list(_NOTES[job.precision]),
                            batch="dynamic", extra={"files": [XML, BIN]})


def _convert(ov, job: ExportJob):
    """Trace the sliced module into an ``openvino.Model`` with a dynamic batch and swedge's I/O names."""
    torch = require("torch", "openvino")
    c, h, w = job.input_shape
    if job.example.ndim != 4 or tuple(job.example.shape[1:]) != (c, h, w):
        raise SwedgeError(f"openvino: example inputs have shape {job.example.shape}, expected (N, {c}, {h}, {w})")
    example = torch.from_numpy(job.example[:1].copy())
    # convert_model traces through torch.jit, which torch 2.13 flags as deprecated on every call (still works)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace", category=DeprecationWarning)
        model = ov.convert_model(job.module, example_input=example, input=[(-1, c, h, w)])
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model
