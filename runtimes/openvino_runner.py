"""OpenVINO CPU runner for an IR folder (``model.xml`` + ``model.bin``) or a ``model.xml`` path. Torch-free.

The CPU plugin would compute in bf16 on CPUs with native bf16 (AVX512_BF16 / AMX) unless told otherwise, which
measures the CPU's arithmetic rather than the artifact; the runner pins ``INFERENCE_PRECISION_HINT=f32`` by
default. ``inference_precision=None`` leaves the plugin's own choice (what an application that sets no hint gets);
``describe()`` reports the precision the compiled model really uses (asking for f16 on a CPU without native f16
gives bf16).
"""

from __future__ import annotations

import numpy as np

from swedge.errors import SwedgeError, require

from .base import RUNTIMES, Runner
from .manifest_types import ArtifactEntry

XML = "model.xml"
RT_INFO_KEY = "swedge"
INFERENCE_PRECISIONS = ("f32", "bf16", "f16", None)  # None: the plugin's default


@RUNTIMES.register("openvino")
class OpenVINORunner(Runner):
    extra = "openvino"
    max_batch = None  # the IR's batch dimension is dynamic

    def __init__(self, path, entry: ArtifactEntry | None = None, *, threads: int | None = None,
                 inference_precision: str | None = "f32"):
        super().__init__(path, entry, threads=threads)
        if inference_precision not in INFERENCE_PRECISIONS:
            raise SwedgeError(f"openvino: inference_precision must be one of {INFERENCE_PRECISIONS}, "
                              f"got {inference_precision!r}")
        self.inference_precision = inference_precision
        self.label = f"OpenVINO CPU ({inference_precision or 'plugin-default'} inference precision)"
        self._actual_precision = ""

    def _load(self) -> None:
        ov = require("openvino", "openvino")
        xml = self.path / XML if self.path.is_dir() else self.path
        if xml.suffix != ".xml" or not xml.is_file():
            raise SwedgeError(f"openvino: {self.path} is not an OpenVINO IR (expected a folder holding {XML}, "
                              "or the .xml file itself)")
        if not xml.with_suffix(".bin").is_file():
            raise SwedgeError(f"openvino: {xml.with_suffix('.bin')} is missing (an IR is the .xml plus its .bin)")
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except RuntimeError as exc:
            raise SwedgeError(f"openvino: cannot read {xml} (corrupt or not an IR: {exc})") from None
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise SwedgeError(f"openvino: {xml} has {len(model.inputs)} inputs / {len(model.outputs)} outputs; "
                              "swedge artifacts have one of each")
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.inference_precision:
            config["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        compiled = core.compile_model(model, "CPU", config)
        self._actual_precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if self._actual_precision != self.inference_precision:  # plugin default, or f16 that fell back to bf16
            self.label = (f"OpenVINO CPU ({self._actual_precision} inference precision, "
                          f"asked for {self.inference_precision or 'plugin default'})")
        self._metadata = _swedge_rt_info(model)
        # (None, 3, H, W) for a dynamic batch: what _infer checks a chunk against
        self._input_shape = tuple(None if d.is_dynamic else d.get_length() for d in model.inputs[0].get_partial_shape())
        self._input_dtype = model.inputs[0].get_element_type().to_dtype()
        self._request = compiled.create_infer_request()

    def _infer(self, x: np.ndarray) -> np.ndarray:
        want = self._input_shape
        if len(want) != x.ndim or any(d is not None and d != n for d, n in zip(want, x.shape)):
            shown = ", ".join("N" if d is None else str(d) for d in want)
            raise SwedgeError(f"openvino: input batch has shape {tuple(x.shape)}, the model expects ({shown}) "
                              "(NCHW after the checkpoint's preprocessing)")
        # Every swedge IR takes f32; cast anyway so an IR with other I/O types gets what it declares.
        self._request.infer({0: x.astype(self._input_dtype, copy=False)})
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32)

    def close(self) -> None:
        self._request = None
        super().close()

    def metadata(self) -> dict:
        """The ``swedge`` facts the exporter embedded in the IR's rt_info (str -> str)."""
        self.load()
        return dict(self._metadata)

    def describe(self) -> dict:
        """After load(), ``inference_precision`` is what the compiled model really computes in."""
        return {**super().describe(), "device": "CPU",
                "inference_precision": self._actual_precision or self.inference_precision}

    def version(self) -> str:
        return require("openvino", "openvino").__version__.split("-")[0]  # "2026.4.1-<build>-<branch>"


def _swedge_rt_info(model) -> dict:
    if not model.has_rt_info([RT_INFO_KEY]):
        return {}
    keys = model.get_rt_info([RT_INFO_KEY]).astype(dict)
    return {k: model.get_rt_info([RT_INFO_KEY, k]).astype(str) for k in keys}
