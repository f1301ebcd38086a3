"""TensorRT export: a folder holding the TRT-ready ONNX (always) and the engine (when TensorRT and a GPU are here).

``model.onnx`` is what TensorRT's ONNX parser builds from: fp32/fp16 -> the fp32 ONNX (TensorRT makes fp16 from
its builder flag), int8 -> explicit Q/DQ int8 from our calibration set (swedge.calibration.tensorrt_calibrator).
It is produced even without TensorRT; here onnxruntime runs it as the QDQ reference (runtime "onnxruntime-qdq":
graph optimizations off, so the int8 arithmetic is the file's own, int32-exact like TensorRT's, not this x86 CPU's
int8 kernels). ``model.engine`` is built with TensorRT 10's
API when it is installed and a GPU is visible; otherwise the export still succeeds and the manifest records
``engine: {"status": "skipped", "reason": ...}``. An engine is specific to one GPU model and TensorRT version:
ship the ONNX and build on the target when they differ (the TensorRT runner builds from it on first load).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from swedge.calibration.tensorrt_calibrator import TENSORRT_QDQ
from swedge.errors import SwedgeError
from swedge.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult, ExportSkipped, version_of
from swedge.runtimes.tensorrt_engine import ENGINE_FILE, ONNX_FILE, tensorrt_unavailable

CACHE_FILE = "calibration.cache"
INT8_ROUTES = ("qdq", "entropy")


@EXPORTERS.register("tensorrt")
class TensorRTExporter(Exporter):
    int8_repair_scheme = TENSORRT_QDQ
    backend_modules = ("onnx", "onnxruntime")  # the TRT-ready ONNX needs only these; the engine is optional

    def __init__(self, *, int8_route: str = "qdq", opt_batch: int = 8, workspace_bytes: int | None = None):
        if int8_route not in INT8_ROUTES:
            raise SwedgeError(f"TensorRT int8 route must be one of {', '.join(INT8_ROUTES)}, got {int8_route!r}")
        self.int8_route = int8_route
        self.opt_batch = opt_batch
        self.workspace_bytes = workspace_bytes

    def _export(self, job: ExportJob) -> ExportResult:
        implicit = job.precision == "int8" and self.int8_route == "entropy"
        unavailable = tensorrt_unavailable()
        if implicit and unavailable:
            raise ExportSkipped(f"implicit int8 calibration runs inside TensorRT's builder: {unavailable}")

        out = Path(job.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / ENGINE_FILE).unlink(missing_ok=True)  # never leave an engine that does not match the new ONNX
        result = ExportResult(out, batch="dynamic" if job.max_batch >= 2 else "static:1")
        self._write_onnx(job, out / ONNX_FILE, result, implicit)
        if unavailable:
            engine = {"status": "skipped", "reason": unavailable}
            result.notes.append(f"engine not built: {unavailable}")
        else:
            engine = self._build_engine(job, out, implicit, result)
        result.extra["engine"] = engine
        return result

    # -- the TRT-ready ONNX --------------------------------------------------------------------------------
    def _write_onnx(self, job: ExportJob, path: Path, result: ExportResult, implicit: bool) -> None:
        from swedge.exporters.onnx import export_onnx

        if job.precision != "int8" or implicit:
            result.tools.update(export_onnx(job.module, path, input_shape=job.input_shape, example=job.example,
                                            max_batch=job.max_batch, metadata=job.metadata))
            result.notes.append({
                "fp32": "TRT-ready ONNX (fp32)",
                "fp16": "TRT-ready ONNX (fp32 weights; TensorRT builds fp16 with BuilderFlag.FP16)",
                "int8": "fp32 ONNX; int8 from TensorRT's IInt8EntropyCalibrator2 at engine build "
                        "(implicit quantization, deprecated since TensorRT 10.1)",
            }[job.precision])
            return
        import onnx

        from swedge.calibration.tensorrt_calibrator import TENSORRT_QDQ_QUANTIZER, quantize_for_tensorrt
        from swedge.exporters.onnx import save_onnx, set_metadata

        with contextlib.ExitStack() as stack:
            work = Path(job.workdir) if job.workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            work.mkdir(parents=True, exist_ok=True)
            fp32, int8 = work / "tensorrt.fp32.onnx", work / "tensorrt.int8.onnx"
            result.tools.update(export_onnx(job.module, fp32, input_shape=job.input_shape, example=job.example,
                                            max_batch=job.max_batch))
            facts = quantize_for_tensorrt(fp32, int8, job.calibration, keep_float=job.keep_float)
            model = onnx.load(str(int8))
        set_metadata(model, job.metadata)
        save_onnx(model, path)
        result.tools.update(version_of("onnxruntime"))
        result.quantization = TENSORRT_QDQ_QUANTIZER.record(job.calibration, **facts)
        result.notes.append("TRT-ready ONNX (explicit QDQ int8: symmetric, per-channel weights); "
                            "float32 input/output")

    # -- the engine ----------------------------------------------------------------------------------------
    def _build_engine(self, job: ExportJob, out: Path, implicit: bool, result: ExportResult) -> dict:
        from swedge.io import atomic_write_bytes
        from swedge.runtimes.tensorrt_engine import BuildOptions, build_serialized_engine, tensorrt_version

        options = BuildOptions(precision=job.precision, max_batch=job.max_batch, opt_batch=self.opt_batch,
                               **({"workspace_bytes": self.workspace_bytes} if self.workspace_bytes else {}))
        t0 = time.perf_counter()
        if implicit:
            data = self._build_calibrated(job, out, options, result)
        else:
            data = build_serialized_engine(out / ONNX_FILE, options)
        seconds = time.perf_counter() - t0
        atomic_write_bytes(out / ENGINE_FILE, data)
        version = tensorrt_version()
        result.tools["tensorrt"] = version
        lo, opt, hi = options.profile()
        flag = {"fp32": None, "fp16": "FP16", "int8": "INT8"}[job.precision]
        return {"status": "built", "seconds": round(seconds, 3), "tensorrt": version, "bytes": len(data),
                "profile": {"min": lo, "opt": opt, "max": hi}, "builder_flags": [flag] if flag else [],
                "note": "engine is specific to the GPU model and TensorRT version it was built with"}

    def _build_calibrated(self, job: ExportJob, out: Path, options, result: ExportResult) -> bytes:
        from swedge.calibration.tensorrt_calibrator import (TENSORRT_ENTROPY_QUANTIZER, calibration_batching,
                                                            entropy_calibrator)
        from swedge.runtimes.tensorrt_engine import build_serialized_engine

        batch, used = calibration_batching(job.calibration)
        with entropy_calibrator(job.calibration, out / CACHE_FILE, batch_size=batch) as calibrator:
            data = build_serialized_engine(out / ONNX_FILE, options, calibrator=calibrator, calibration_batch=batch)
        result.quantization = TENSORRT_ENTROPY_QUANTIZER.record(
            job.calibration, calibration_batch=batch, calibration_images_used=used, cache=CACHE_FILE)
        return data
