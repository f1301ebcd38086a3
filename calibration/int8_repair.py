"""Retrieval-aware int8 repair: which layers to keep in float when an int8 artifact misses the retrieval gate.

Layers are the sliced model's convolutions, named by their torch module names (``backbone.features.3.conv.1.0``).
They are ranked once per width by the damage each does when it *alone* is int8 (its input activation and weights
quantized, every other layer float), measured on held-out **calibration** images (never the probe) as the distance
of the cross-similarities from the float ones:
``S = normalize(int8 sub-model queries) @ normalize(float server gallery).T`` -- the very scores the cross-test
ranks by. (Ranking by the gain of keeping one layer float in an otherwise int8 model was tried first and transfers
worse: ImageNet MobileNetV2 w=0.75, TensorRT's scheme, top 4 float: held-out mean cosine 0.980 by gain, 0.9986 by
damage — the errors of neighbouring layers mask each other when all are int8.)
A trial is an ONNX QDQ file scored by the QDQ reference (no int8 kernels), so the ranking is the same on every
exporting host; each format names the QDQ options that emulate its own int8 scheme (symmetric or not, 7-bit or
8-bit weights: ``Exporter.int8_repair_scheme``), so OpenVINO's layers are ranked under NNCF's scheme. The bundle
then keeps the top ``REPAIR_COUNTS`` layers float, fewest first, until the artifact passes the gate
(exporters/repair.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from swedge.errors import SwedgeError

REPAIR_COUNTS = (1, 2, 4, 8, 16, 24, 32)  # layers kept float, tried in order; the first count that passes is kept
HOLDOUT = 0.25  # share of the calibration set the trials are scored on (they are calibrated on the rest)
MIN_HELD_OUT = 4


def conv_layers(module) -> list[tuple[str, tuple[int, ...], int]]:
    """(torch module name, weight shape, groups) of every 2-d convolution of ``module``, in registration order."""
    import torch

    return [(name, tuple(int(d) for d in sub.weight.shape), int(sub.groups)) for name, sub in module.named_modules()
            if isinstance(sub, torch.nn.Conv2d)]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def cross_similarity_error(queries: np.ndarray, reference_queries: np.ndarray, server_gallery: np.ndarray) -> float:
    """How far the cross-test scores of ``queries`` (int8) are from those of ``reference_queries`` (float),
    against one float server gallery: ||S - S_ref||_F / ||S_ref - mean(S_ref)||_F (0 = the same ranking scores)."""
    gallery = _unit(np.asarray(server_gallery, np.float64))
    got = _unit(np.asarray(queries, np.float64)) @ gallery.T
    want = _unit(np.asarray(reference_queries, np.float64)) @ gallery.T
    spread = np.linalg.norm(want - want.mean())
    if not np.isfinite(got).all():
        return float("inf")
    return float(np.linalg.norm(got - want) / (spread if spread > 0 else 1.0))


def rank_layers(fp32_onnx: Path, calibration, layers: list[str], embed_float, embed_server, *, scheme: dict,
                progress: bool = False) -> dict:
    """Rank ``layers`` (torch module names), most damaging first, by the held-out cross-similarity error when each
    alone is int8. ``embed_float(x)`` / ``embed_server(x)``: the float sub-model's and the server model's embeddings;
    ``scheme``: quantize_onnx_qdq options emulating the target format's int8.
    Returns {"layers": [{"layer", "damage"} ...] most damaging first, "error_all_int8", "held_out_images", ...}."""
    from tqdm import tqdm

    from swedge.calibration.ort_qdq import quantize_onnx_qdq
    from swedge.runtimes.ort_runner import OrtQdqReferenceRunner

    split = calibration.holdout_split(HOLDOUT) if calibration is not None else None
    if split is None or len(split[1]) < MIN_HELD_OUT:
        raise SwedgeError(f"int8 repair ranks layers on {HOLDOUT:.0%} of the calibration images held out and needs "
                          f"at least {MIN_HELD_OUT} of them: pass a larger --calib-size "
                          f"(>= {round(MIN_HELD_OUT / HOLDOUT)})")
    fit, held = split
    reference, server = embed_float(held), embed_server(held)

    def error(keep: tuple[str, ...], work: Path) -> float:
        trial = work / "trial.onnx"
        quantize_onnx_qdq(fp32_onnx, trial, fit, **scheme, keep_float=keep)
        return cross_similarity_error(OrtQdqReferenceRunner(trial).embed(held), reference, server)

    with tempfile.TemporaryDirectory(prefix="swedge-repair-") as tmp:
        work = Path(tmp)
        base = error((), work)
        damage = {}
        for layer in tqdm(layers, desc="int8 repair: layer sensitivity", unit="layer", disable=not progress,
                          leave=False):
            damage[layer] = error(tuple(other for other in layers if other != layer), work)
    ranked = sorted(layers, key=lambda name: -damage[name])
    return {"layers": [{"layer": name, "damage": round(damage[name], 6)} for name in ranked],
            "error_all_int8": round(base, 6), "held_out_images": int(len(held)), "calibrated_on": int(fit.size),
            "score": "cross-similarity error vs the float server gallery (held-out calibration images)",
            "scored_by": f"{OrtQdqReferenceRunner.name}, one layer int8 per trial (the others float)",
            "scheme": {k: list(v) if isinstance(v, tuple) else v for k, v in scheme.items()}}


def repair_counts(n_layers: int) -> list[int]:
    """How many of the ranked layers to keep float, in the order they are tried (never all of them)."""
    return [k for k in REPAIR_COUNTS if k < n_layers]
