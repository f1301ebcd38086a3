"""The torch eager reference: the sliced sub-model of one width, straight from the checkpoint.

Used as the latency baseline of ``swedge bench`` (and for reference features when exporting). torch is imported
only when this runner loads, so the rest of swedge.runtimes stays torch-free.
"""

from __future__ import annotations

import numpy as np

from swedge.errors import SwedgeError, require
from swedge.runtimes.base import RUNTIMES, Runner


@RUNTIMES.register("torch")
class TorchRunner(Runner):
    """``path`` is the checkpoint (.safetensors); ``entry.width`` the width to slice."""

    extra = "torch"
    label = "torch eager (sliced sub-model)"

    def _load(self) -> None:
        torch = require("torch", "torch")
        from swedge.checkpoint import load_checkpoint
        from swedge.nn.slicing import slice_model

        if self.entry is None:
            raise SwedgeError("torch runner: the entry must name the width to slice")
        width = float(self.entry.width)
        ckpt = load_checkpoint(self.path, widths=[width])
        self._torch = torch
        self._module = slice_model(ckpt.model, width).eval()
        if self.threads:
            torch.set_num_threads(self.threads)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._module(self._torch.from_numpy(x)).numpy()

    def version(self) -> str:
        import importlib.metadata

        return importlib.metadata.version("torch")
