"""Market-1501 retrieval evaluation (mAP and CMC), numpy only.

Protocol (same as torchreid's ``eval_market1501``):
- similarity = dot product of L2-normalised features (cosine), ranked by descending similarity;
- per query, gallery items with the same pid AND the same camid are junk (removed), as are gallery items
  with pid -1; gallery pid 0 (distractors) are ordinary negatives;
- positives = remaining gallery items with the query's pid; queries without any are skipped;
- AP = mean over positives of (positives ranked at or above it) / (its 0-based rank + 1);
- CMC[k] = 1 if the first positive's 0-based rank is < k + 1, averaged over valid queries.

Tie rule: items with equal similarity are ordered by ascending gallery index (a stable sort of
-similarity). Every score here follows it, so fast and reference results agree exactly.

Speed: AP needs only the ranks of the few positives per query, never a full sort. Under the tie rule the
rank of a positive at index j with similarity s is
    #{valid i < j : sim_i >= s} + #{valid i > j : sim_i > s},
i.e. one vectorised comparison pass over the row per positive. Junk items are set to NaN, which compares
false both ways, so they never count.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

# Rows of the similarity matrix held at once: 256 x 15,913 float32 = 16 MB per block.
_BLOCK = 256
# Two workers overlap one block's matmul (BLAS, GIL released) with another's counting: ~10% faster on
# 2 cores; more workers only contend for the same cores.
_WORKERS = min(2, os.cpu_count() or 1)


@dataclass
class RetrievalResult:
    """Scores of one query/gallery evaluation; ``map`` and ``cmc`` are fractions in [0, 1]."""

    map: float
    cmc: np.ndarray  # shape (max_rank,); cmc[k] = share of valid queries with a positive in the top k+1
    num_valid_queries: int
    ap_per_query: Optional[np.ndarray] = None  # shape (Q,), NaN for skipped queries
    rank1_per_query: Optional[np.ndarray] = None  # shape (Q,), 1.0 / 0.0, NaN for skipped queries

    @property
    def rank1(self) -> float:
        return float(self.cmc[0])


def _as_features(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, dim), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _as_ids(x, n: int, name: str) -> np.ndarray:
    x = np.asarray(x).reshape(-1)
    if x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} entries, expected {n}")
    return x.astype(np.int64, copy=False)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by max(norm, 1e-12), like torch.nn.functional.normalize."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=x.dtype))
    return x / np.maximum(norms, 1e-12)[:, None].astype(x.dtype)


def _prepare(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids, normalize):
    qf = _as_features(query_feats, "query_feats")
    gf = _as_features(gallery_feats, "gallery_feats")
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f"feature dims differ: query {qf.shape[1]}, gallery {gf.shape[1]}")
    # Compute in float64 only if an input is float64; otherwise float32 (the speed target).
    dtype = np.result_type(qf.dtype, gf.dtype, np.float32)
    qf, gf = qf.astype(dtype, copy=False), gf.astype(dtype, copy=False)
    if normalize:
        qf, gf = l2_normalize(qf), l2_normalize(gf)
    elif qf.size and gf.size:
        # Raw dot products must stay finite: an inf/NaN similarity would break the rank counting.
        bound = float(np.abs(qf).max()) * float(np.abs(gf).max()) * qf.shape[1]
        if not bound < float(np.finfo(dtype).max):
            raise ValueError("feature magnitudes may overflow the dot product; normalise them first")
    nq, ng = qf.shape[0], gf.shape[0]
    ids = (_as_ids(q_pids, nq, "q_pids"), _as_ids(g_pids, ng, "g_pids"),
           _as_ids(q_camids, nq, "q_camids"), _as_ids(g_camids, ng, "g_camids"))
    return qf, gf, ids


def _row_blocks(nq: int, block: int) -> Iterator[tuple[int, int]]:
    """Query row ranges; never a 1-row block, since BLAS may switch to gemv there and round
    differently (fast and reference must see bit-identical similarities)."""
    starts = list(range(0, nq, block))
    if len(starts) > 1 and nq - starts[-1] == 1:
        starts.pop()
    for k, a in enumerate(starts):
        yield a, (starts[k + 1] if k + 1 < len(starts) else nq)


def _gallery_index(g_pids):
    """Gallery indices sorted by pid (stable), leaving out junk pid -1, and the sorted pids."""
    keep = np.flatnonzero(g_pids != -1)
    order = keep[np.argsort(g_pids[keep], kind="stable")]
    return order, g_pids[order]


def _same_pid_pairs(q_pids_block, order, sorted_pids):
    """(row, gallery index) of every gallery item sharing the row's pid, grouped by row, ascending index."""
    lo = np.searchsorted(sorted_pids, q_pids_block, side="left")
    hi = np.searchsorted(sorted_pids, q_pids_block, side="right")
    counts = hi - lo
    rows = np.repeat(np.arange(len(q_pids_block)), counts)
    # Concatenated ranges lo[r]..hi[r]: position within the flat array minus the row's offset, plus lo.
    offsets = np.cumsum(counts) - counts
    flat = np.arange(counts.sum()) - np.repeat(offsets, counts) + np.repeat(lo, counts)
    return rows, order[flat]


def _eval_block(qf, gf, ids, index, a, b):
    """Per-query AP and first-positive rank (-1 if skipped) for query rows a..b."""
    q_pids, g_pids, q_camids, g_camids = ids
    sim = qf[a:b] @ gf.T
    rows, cols = _same_pid_pairs(q_pids[a:b], index[0], index[1])
    junk = g_camids[cols] == q_camids[a:b][rows]
    sim[rows[junk], cols[junk]] = np.nan
    if index[2].size:
        sim[:, index[2]] = np.nan  # gallery pid -1
    rows, cols = rows[~junk], cols[~junk]  # positives, grouped by row, ascending gallery index

    n = b - a
    ap = np.full(n, np.nan)
    first = np.full(n, -1, dtype=np.int64)
    bounds = np.searchsorted(rows, np.arange(n + 1))
    for r in range(n):
        pos = cols[bounds[r]:bounds[r + 1]]
        if pos.size == 0:
            continue
        row = sim[r]
        ranks = np.empty(pos.size, dtype=np.int64)
        for k, j in enumerate(pos.tolist()):
            s = row[j]
            ranks[k] = np.count_nonzero(row[:j] >= s) + np.count_nonzero(row[j + 1:] > s)
        ranks.sort()
        ap[r] = (np.arange(1, pos.size + 1) / (ranks + 1.0)).sum() / pos.size
        first[r] = ranks[0]
    return ap, first


def _summarise(ap, first, max_rank, return_per_query):
    valid = first >= 0
    nvalid = int(valid.sum())
    if nvalid == 0:
        raise ValueError("no query has a valid positive in the gallery (all query identities are absent)")
    hist = np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)
    cmc = np.cumsum(hist)[:max_rank] / nvalid
    result = RetrievalResult(map=float(np.mean(ap[valid])), cmc=cmc, num_valid_queries=nvalid)
    if return_per_query:
        result.ap_per_query = ap
        result.rank1_per_query = np.where(valid, (first == 0).astype(np.float64), np.nan)
    return result


def evaluate(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids, *,
             max_rank: int = 50, normalize: bool = True, return_per_query: bool = False) -> RetrievalResult:
    """Market-1501 mAP / CMC of queries against a gallery (see the module docstring for the protocol).

    ``normalize=False`` uses the raw dot product (pass features that are already L2-normalised).
    Differences from torchreid, all on edge cases: ties follow the documented rule (torchreid's unstable
    argsort leaves them unspecified); a query with pid -1 has no positives and is skipped; ``cmc`` always
    has ``max_rank`` entries (past the gallery size it stays at its last value).
    Raises ValueError if no query has a valid positive (torchreid asserts in that case).
    """
    if max_rank < 1:
        raise ValueError("max_rank must be >= 1")
    qf, gf, ids = _prepare(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids, normalize)
    index = (*_gallery_index(ids[1]), np.flatnonzero(ids[1] == -1))
    ranges = list(_row_blocks(qf.shape[0], _BLOCK))
    if _WORKERS > 1 and len(ranges) > 1:
        with ThreadPoolExecutor(_WORKERS) as pool:
            parts = list(pool.map(lambda ab: _eval_block(qf, gf, ids, index, *ab), ranges))
    else:
        parts = [_eval_block(qf, gf, ids, index, a, b) for a, b in ranges]
    ap = np.concatenate([p[0] for p in parts]) if parts else np.empty(0)
    first = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, dtype=np.int64)
    return _summarise(ap, first, max_rank, return_per_query)


def evaluate_reference(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids, *,
                       max_rank: int = 50, normalize: bool = True, return_per_query: bool = False,
                       ) -> RetrievalResult:
    """Plain per-query version of :func:`evaluate`, written like torchreid, for tests and benchmarks."""
    qf, gf, ids = _prepare(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids, normalize)
    q_pids, g_pids, q_camids, g_camids = ids
    ap = np.full(qf.shape[0], np.nan)
    first = np.full(qf.shape[0], -1, dtype=np.int64)
    for a, b in _row_blocks(qf.shape[0], _BLOCK):
        sim = qf[a:b] @ gf.T
        for i in range(a, b):
            order = np.argsort(-sim[i - a], kind="stable")  # ties: ascending gallery index
            remove = ((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])) | (g_pids[order] == -1)
            matches = (g_pids[order][~remove] == q_pids[i]).astype(np.int64)
            if not matches.any():
                continue
            cum = matches.cumsum()
            ap[i] = (cum / (np.arange(len(cum)) + 1.0) * matches).sum() / matches.sum()
            first[i] = int(np.flatnonzero(matches)[0])
    return _summarise(ap, first, max_rank, return_per_query)
