"""How closely an artifact's features follow the torch sub-model's (torch-free).

Embeddings are compared by per-row cosine (what retrieval sees after L2 normalisation), max absolute error
(scale-dependent, reported for completeness) and top-k neighbour agreement (do the same gallery items come back).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Fidelity:
    cosine_min: float
    cosine_mean: float
    max_abs: float
    topk_agreement: float  # mean |topk(a) ∩ topk(b)| / k over query rows
    k: int
    max_rel_error: float = 0.0  # max over rows of max |a - b| / ||b||: max_abs made scale-free

    def to_dict(self) -> dict:
        return asdict(self)


# Rows whose L2-normalised features all lie within this distance of the first row are "constant": retrieval
# then ranks by ties alone, so a collapsed model would score the same as its collapsed reference.
CONSTANT_SPREAD = 1e-6


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine; a row whose cosine is undefined (all-zero or non-finite on either side) counts as -1,
    the worst possible: 0/0 is no evidence of agreement."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {a.shape} vs {b.shape}")
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cos = num / np.where(den > 0, den, 1)
    return np.where((den > 0) & np.isfinite(cos), cos, -1.0)


def feature_problem(features: np.ndarray) -> str | None:
    """Why (N, D) features cannot be scored, or None: non-finite values, all-zero rows (their cosine and
    ranking are undefined), or constant features (every row the same direction)."""
    f = np.asarray(features, np.float64).reshape(len(features), -1)
    if bad := int((~np.isfinite(f)).any(1).sum()):
        return f"non-finite features (NaN/Inf) in {bad} of {len(f)} rows"
    norms = np.linalg.norm(f, axis=1)
    if zero := int((norms == 0).sum()):
        return f"all-zero feature rows: {zero} of {len(f)}"
    unit = f / norms[:, None]
    if len(f) > 1 and np.abs(unit - unit[0]).max() <= CONSTANT_SPREAD:
        return f"constant features: all {len(f)} rows point the same way, so retrieval cannot rank them"
    return None


def topk_agreement(qa: np.ndarray, qb: np.ndarray, gallery: np.ndarray, k: int = 10) -> float:
    """Share of the top-k gallery neighbours found by both query sets (same gallery features)."""
    from swedge.metrics.retrieval import l2_normalize

    k = min(k, len(gallery))
    if k == 0 or len(qa) == 0:
        return 1.0
    g = l2_normalize(np.asarray(gallery, np.float32))
    ta = np.argpartition(-(l2_normalize(np.asarray(qa, np.float32)) @ g.T), k - 1, axis=1)[:, :k]
    tb = np.argpartition(-(l2_normalize(np.asarray(qb, np.float32)) @ g.T), k - 1, axis=1)[:, :k]
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(ta, tb)]))


def fidelity(features: np.ndarray, reference: np.ndarray, *, is_query=None, k: int = 10) -> Fidelity:
    """Compare ``features`` with ``reference`` row by row; top-k over the reference gallery rows."""
    features = np.asarray(features)
    reference = np.asarray(reference)
    cos = row_cosine(features, reference)
    finite = np.isfinite(features).all()
    max_abs = float(np.abs(features.astype(np.float64) - reference).max()) if finite and len(cos) else float("inf")
    max_rel = relative_error(features, reference) if finite and len(cos) else float("inf")
    if is_query is None:
        is_query = np.ones(len(features), bool)
    is_query = np.asarray(is_query, bool)
    gallery = reference[~is_query] if (~is_query).any() else reference
    agree = topk_agreement(features[is_query], reference[is_query], gallery, k) if finite else 0.0
    return Fidelity(float(cos.min()) if len(cos) else 1.0, float(cos.mean()) if len(cos) else 1.0, max_abs,
                    agree, min(k, len(gallery)), max_rel)


def relative_error(features: np.ndarray, reference: np.ndarray) -> float:
    """max over rows of max |a - b| / ||b||; a zero reference row with a non-zero artifact row is infinite."""
    a = np.asarray(features, np.float64).reshape(len(features), -1)
    b = np.asarray(reference, np.float64).reshape(len(reference), -1)
    err = np.abs(a - b).max(1)
    norm = np.linalg.norm(b, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(norm > 0, err / np.where(norm > 0, norm, 1), np.where(err == 0, 0.0, np.inf))
    return float(rel.max()) if len(rel) else 0.0
