"""Cross-width compatibility matrix: M[q][g] = retrieval score with queries embedded by width q and the
gallery by width g. BCT criterion: width w is compatible if M[w][max] > M[w][w] (cross beats self-test)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from swedge.metrics.retrieval import _as_features, evaluate, l2_normalize

_LABELS = {"map": "mAP (%)", "rank1": "Rank-1 (%)"}


@dataclass
class CrossMatrix:
    """Scores in percent; rows = query width, columns = gallery width, both in ``widths`` order."""

    widths: list
    map: np.ndarray
    rank1: np.ndarray

    def _metric(self, metric: str) -> np.ndarray:
        if metric not in _LABELS:
            raise ValueError(f"metric must be one of {sorted(_LABELS)}, got {metric!r}")
        return getattr(self, metric)

    def compatible(self, metric: str = "map") -> dict:
        """{w: M[w][max] > M[w][w]} for every width below the largest."""
        m, top = self._metric(metric), len(self.widths) - 1
        return {w: bool(m[i, top] > m[i, i]) for i, w in enumerate(self.widths[:-1])}

    def to_dict(self) -> dict:
        return {
            "widths": [float(w) for w in self.widths],
            "map": self.map.tolist(),
            "rank1": self.rank1.tolist(),
            "compatibility": {str(float(w)): ok for w, ok in self.compatible().items()},
            "axes": {"rows": "query width", "columns": "gallery width"},
        }

    def format_table(self, metric: str = "map") -> str:
        m, names = self._metric(metric), [str(float(w)) for w in self.widths]
        lines = [f"{_LABELS[metric]}: rows = query width, columns = gallery width, [x] = same width (self-test)"]
        lines.append(" " * 14 + "".join(f"{'g=' + n:>10}" for n in names))
        for i, n in enumerate(names):
            cells = "".join(f"{f'[{v:.2f}]' if i == j else f'{v:.2f}':>10}" for j, v in enumerate(m[i]))
            lines.append(f"{'query w=' + n:<14}{cells}")
        top = names[-1]
        lines.append(f"BCT criterion on {_LABELS[metric].split()[0]}: M[w][{top}] > M[w][w]")
        for i, ok in enumerate(self.compatible(metric).values()):
            verdict = "compatible" if ok else "NOT compatible"
            lines.append(f"  w={names[i]}: {m[i, -1]:.2f} vs {m[i, i]:.2f} -> {verdict}")
        return "\n".join(lines)


def retrieval_grid(queries: dict, galleries: dict, q_pids, g_pids, q_camids, g_camids, *,
                   per_query: bool = False) -> dict:
    """{(query key, gallery key): RetrievalResult} for every pair: the one place a matrix of retrieval cells is
    computed (cross-width matrices here and in the study, verify's runtime x width matrix). Keys are any labels;
    each feature set is L2-normalised once, not once per cell."""
    qn = {k: l2_normalize(_as_features(f, f"query_feats[{k}]")) for k, f in queries.items()}
    gn = {k: l2_normalize(_as_features(f, f"gallery_feats[{k}]")) for k, f in galleries.items()}
    return {(qk, gk): evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids, normalize=False,
                               return_per_query=per_query)
            for qk, qf in qn.items() for gk, gf in gn.items()}


def cross_matrix(features: dict, q_pids, g_pids, q_camids, g_camids, *, per_query: bool = False):
    """features[w] = (query_feats, gallery_feats) of width w; every width must share one feature dim.

    With ``per_query`` it returns (CrossMatrix, the grid's {(wq, wg): RetrievalResult}) for per-query AP."""
    if not features:
        raise ValueError("features is empty")
    widths = sorted(float(w) for w in features)
    by_width = {float(w): v for w, v in features.items()}
    grid = retrieval_grid({w: by_width[w][0] for w in widths}, {w: by_width[w][1] for w in widths},
                          q_pids, g_pids, q_camids, g_camids, per_query=per_query)
    map_ = np.array([[100.0 * grid[wq, wg].map for wg in widths] for wq in widths])
    rank1 = np.array([[100.0 * grid[wq, wg].rank1 for wg in widths] for wq in widths])
    matrix = CrossMatrix(widths=widths, map=map_, rank1=rank1)
    return (matrix, grid) if per_query else matrix
