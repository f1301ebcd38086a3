"""One lifecycle for every backend (Polygraphy-style): load artifact -> embed numpy batch -> numpy features.

A runner never imports torch unless it is the torch reference runner. Backend libraries are imported inside
``load()`` through :func:`swedge.errors.require`, so a missing one is a one-line MissingDependencyError that
names the pip extra.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from swedge.errors import SwedgeError
from swedge.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from swedge.runtimes.manifest_types import ArtifactEntry


class RuntimeUnavailable(SwedgeError):
    """The runtime cannot run here at all (e.g. TensorRT without an NVIDIA GPU, Core ML predict off macOS)."""


class Runner:
    """Base class. Subclasses set ``extra``/``label``, implement ``_load`` and ``_infer`` and register with
    ``@RUNTIMES.register(name)``, which sets ``name``; the format table names the module (formats.Format.runners).

    ``embed(x)`` takes float32 NCHW inputs (the checkpoint's preprocessing already applied) of any batch size,
    runs them in chunks of at most ``max_batch`` (1 for static-batch artifacts) and returns float32 (N, D).
    """

    name = "base"  # set by RUNTIMES.register
    extra = ""
    label = ""  # how reports name it, e.g. "MIL reference (numpy), not the Core ML runtime"
    max_batch: int | None = None

    def __init__(self, path: str | Path, entry: ArtifactEntry | None = None, *, threads: int | None = None):
        self.path = Path(path)
        self.entry = entry  # the bundle's record of the artifact; None for a bare file
        self.threads = threads
        self.last_inference_s = 0.0
        self._loaded = False

    # -- lifecycle -------------------------------------------------------------------------------------
    def load(self) -> Runner:
        if not self._loaded:
            if not self.path.exists():
                raise SwedgeError(f"{self.name}: artifact {self.path} does not exist")
            self._load()
            self._loaded = True
        return self

    def close(self) -> None:
        self._loaded = False

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inference -------------------------------------------------------------------------------------
    def embed(self, x: np.ndarray) -> np.ndarray:
        self.load()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise SwedgeError(f"{self.name}: expected an NCHW batch, got shape {x.shape}")
        step = self.max_batch or len(x)
        outs, total = [], 0.0
        for i in range(0, len(x), max(step, 1)):
            chunk = x[i:i + step]
            t0 = time.perf_counter()
            y = self._infer(chunk)
            total += time.perf_counter() - t0
            outs.append(np.asarray(y, dtype=np.float32).reshape(len(chunk), -1))
        self.last_inference_s = total
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def describe(self) -> dict:
        return {"runtime": self.name, "label": self.label or self.name, "version": self.version()}

    def version(self) -> str:
        return ""

    # -- to implement ----------------------------------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def _infer(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


RUNTIMES: Registry[type[Runner]] = Registry("runtime")
