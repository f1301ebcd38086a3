"""Core ML exporter: the sliced torch module -> an ML program (.mlpackage folder), fp32 / fp16 / int8 weights.

Conversion runs on Linux (coremltools' converter is pure Python); running the model needs macOS ('coreml'
runner), so on Linux the artifact is checked by the 'coreml-mil' MIL reference runner. I/O stays float32 at
every precision (fp16 would otherwise turn the input and output into fp16, docs/backends.md §8d.6). int8 is
weights-only: activation quantization needs predict, i.e. macOS.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from swedge.exporters.base import (INPUT_NAME, OUTPUT_NAME, EXPORTERS, Exporter, ExportJob, ExportResult,
                                   version_of)

DEPLOYMENT_TARGET = "iOS16"  # the first target with fp16 I/O choices and per-channel int8 weights (Core ML 6)
# int8 weights go on the fp32 program. Measured (ResNet-18 w=0.5, MIL reference): the fp32 base gives exactly
# per-channel int8 weights (cosine 0.99999998 vs torch with simulated int8 weights; mean cosine 0.99415 vs the
# fp32 model) while the fp16 base quantizes fp16-rounded weights (0.99805 / 0.99354) and adds fp16 activations
# on device. The price: fp32 programs do not run on the Neural Engine (fp16 only); size is the same.
INT8_BASE_PRECISION = "fp32"


# A tqdm progress-bar frame, e.g. "Running MIL default pipeline:  37%|███▋ | 34/92 [00:00<00:00, 330.70 passes/s]".
_PROGRESS = re.compile(r"\[\d+:\d\d(<[^\]]*)?, [^\]]*/s\]\s*(\x1b\[A)*\s*$")


@contextlib.contextmanager
def _without_progress_bars():
    """Drop coremltools' tqdm progress bars from stderr; every other line written meanwhile is passed on."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            yield
    finally:
        kept = [frame for line in buf.getvalue().splitlines() for frame in line.split("\r")
                if frame.strip() and not _PROGRESS.search(frame)]
        if kept:
            sys.stderr.write("\n".join(kept) + "\n")


def _convert(ct, job: ExportJob, precision: str):
    import torch

    # torch.export, not torch.jit.trace (deprecated in torch 2.13); the batch axis is symbolic in both programs.
    # torch.export specialises a batch of 1 to a constant: trace with two rows, a symbolic batch of 1..max_batch.
    rows = np.ascontiguousarray(np.resize(job.example, (2, *job.example.shape[1:])), dtype=np.float32)
    dynamic = job.max_batch > 1
    example = torch.from_numpy(rows if dynamic else rows[:1])
    shapes = ({0: torch.export.Dim("batch", min=1, max=job.max_batch)},) if dynamic else None
    batch = ct.RangeDim(1, job.max_batch) if dynamic else 1
    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13's own pytree deprecation notice, printed on every export (harmless, docs/backends.md §8d.2)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.export.export(job.module.eval(), (example,), dynamic_shapes=shapes)
        return ct.convert(
            program.run_decompositions({}),
            convert_to="mlprogram",
            inputs=[ct.TensorType(name=INPUT_NAME, shape=(batch, *job.input_shape), dtype=np.float32)],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            compute_precision=compute,
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
        )


def _describe(mlmodel, job: ExportJob, notes: list[str]) -> None:
    mlmodel.short_description = (f"swedge retrieval embedding, width {job.width:g}, {job.precision}"
                                 + (f" ({notes[0]})" if notes else ""))
    mlmodel.input_description[INPUT_NAME] = f"float32 (N, {', '.join(map(str, job.input_shape))}), preprocessed"
    mlmodel.output_description[OUTPUT_NAME] = "float32 (N, D) embedding (L2-normalise for retrieval)"
    for key, value in job.metadata.items():
        mlmodel.user_defined_metadata[str(key)] = str(value)


def _usual_permissions(folder: Path) -> None:
    """coremltools writes model.mlmodel as 0600 (a temp file renamed); give the package the umask's modes so
    a bundle copied to another user or device stays readable."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _save_atomically(mlmodel, out: Path, workdir: Path | None) -> None:
    """Save into a scratch folder beside/inside the bundle, then rename: a kill never leaves a half package."""
    scratch = Path(tempfile.mkdtemp(prefix=".coreml-", dir=workdir or out.parent))
    try:
        tmp = scratch / out.name
        mlmodel.save(str(tmp))
        _usual_permissions(tmp)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@EXPORTERS.register("coreml")
class CoreMLExporter(Exporter):
    backend_modules = ("coremltools",)

    def _export(self, job: ExportJob) -> ExportResult:
        from swedge.runtimes.coreml_runner import import_coremltools

        ct = import_coremltools()
        notes: list[str] = []
        quantization: dict | None = None
        extra: dict = {"deployment_target": DEPLOYMENT_TARGET}
        with _without_progress_bars():
            base = INT8_BASE_PRECISION if job.precision == "int8" else job.precision
            mlmodel = _convert(ct, job, base)
            extra["compute_precision"] = base
            if job.precision == "fp16":
                notes.append("fp16 weights and activations, float32 input/output")
            if job.precision == "int8":
                from swedge.calibration.coreml_weights import COREML_QUANTIZER, quantize_coreml_weights

                mlmodel, facts = quantize_coreml_weights(mlmodel)
                notes.append("int8 weights-only (activation quantization needs macOS); fp32 activations")
                quantization = COREML_QUANTIZER.record(None, base_precision=base, **facts)
            _describe(mlmodel, job, notes)
            _save_atomically(mlmodel, Path(job.out), job.workdir)
        return ExportResult(path=Path(job.out), tools=version_of("coremltools", "torch"), quantization=quantization,
                            notes=notes, extra=extra,
                            batch="dynamic" if job.max_batch > 1 else "static:1")
