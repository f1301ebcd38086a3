"""swedge.metrics' mAP / CMC against implementations that share no code with it.

- AP: scikit-learn's ``average_precision_score`` (sum over thresholds of (R_n - R_{n-1}) * P_n), per query on
  the gallery left after Market-1501's junk removal: gallery items with the query's pid *and* camera, and every
  gallery item with pid -1, are dropped; pid 0 (distractors) stay as ordinary negatives; queries left with no
  positive are skipped.
- CMC / Rank-1: plain Python over a ``sorted`` ranking.
- Similarity: cosine, computed here in float64 with ``np.linalg.norm``.

Ties. The product's convention (``swedge.metrics.retrieval``'s docstring): items of equal similarity are ranked
by ascending gallery index, as a stable sort of -similarity would. scikit-learn does *not* do that: a group of
tied scores is one threshold, so every positive in it gets the group's final precision. On tied data the
reference therefore hands scikit-learn the product's ranking as distinct scores (``-position`` in the order
sorted by (-similarity, index)), and a hand case pins the product's convention and shows where the two differ.
"""

import numpy as np
import pytest

from swedge.metrics import evaluate

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="needs scikit-learn (pip install 'swedge[dev]')")


def _cosine(q, g):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    return q @ g.T


def _reference(qf, gf, qp, gp, qc, gc, max_rank=10, index_ties=False):
    """(per-query AP with NaN for skipped queries, CMC[0..max_rank-1], number of valid queries)."""
    sim = _cosine(np.asarray(qf, np.float64), np.asarray(gf, np.float64))
    aps, firsts = [], []
    for i in range(len(qf)):
        keep = [j for j in range(len(gf)) if gp[j] != -1 and not (gp[j] == qp[i] and gc[j] == qc[i])]
        truth = [int(gp[j] == qp[i]) for j in keep]
        if not any(truth):
            aps.append(float("nan"))
            continue
        order = sorted(range(len(keep)), key=lambda k: (-sim[i, keep[k]], keep[k]))  # ties: lower index first
        if index_ties:  # the product's ranking as strictly decreasing scores
            scores = np.empty(len(keep))
            scores[order] = -np.arange(len(keep), dtype=np.float64)
        else:
            scores = sim[i, keep]
        aps.append(float(sklearn_metrics.average_precision_score(truth, scores)))
        firsts.append(next(pos for pos, k in enumerate(order) if truth[k]))
    cmc = [sum(f < k + 1 for f in firsts) / len(firsts) for k in range(max_rank)]
    return np.array(aps), np.array(cmc), len(firsts)


def _market_like(rng, nq=40, ng=200, ids=25, cameras=4, dim=16, prototypes=None):
    """Random queries / gallery with shared ids, pid 0 distractors, pid -1 junk and same-camera matches. Features
    are id centres plus noise, so retrieval is far from trivial either way; with ``prototypes`` every gallery row
    is one of that many distinct vectors (exact ties everywhere)."""
    centres = rng.normal(size=(ids + 1, dim))
    qp = rng.integers(1, ids + 1, nq)
    qp[:3] = -1  # queries with no possible positive: skipped
    gp = rng.integers(1, ids + 1, ng)
    gp[rng.random(ng) < 0.15] = 0
    gp[rng.random(ng) < 0.1] = -1
    qc, gc = rng.integers(0, cameras, nq), rng.integers(0, cameras, ng)
    qf = centres[np.maximum(qp, 0)] + rng.normal(scale=1.2, size=(nq, dim))
    if prototypes:
        bank = rng.normal(size=(prototypes, dim))
        gf = bank[rng.integers(0, prototypes, ng)]
    else:
        gf = centres[np.maximum(gp, 0)] + rng.normal(scale=1.2, size=(ng, dim))
    return qf, gf, qp, gp, qc, gc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_and_cmc_match_sklearn_and_plain_python_on_random_data(seed):
    args = _market_like(np.random.default_rng(seed))
    qp, gp, qc, gc = args[2:]
    # the data exercise what they are meant to: junk by camera, pid -1, distractors, skipped queries
    assert ((gp[None] == qp[:, None]) & (gc[None] == qc[:, None])).any() and (gp == -1).any() and (gp == 0).any()
    got = evaluate(*args, max_rank=10, return_per_query=True)
    aps, cmc, nvalid = _reference(*args)
    assert 3 <= len(qp) - nvalid  # at least the pid -1 queries were skipped
    assert got.num_valid_queries == nvalid
    np.testing.assert_array_equal(np.isnan(got.ap_per_query), np.isnan(aps))
    np.testing.assert_allclose(got.ap_per_query[~np.isnan(aps)], aps[~np.isnan(aps)], rtol=1e-9, atol=1e-12)
    assert got.map == pytest.approx(np.nanmean(aps), rel=1e-9)
    assert 0.1 < got.map < 0.9  # neither trivial nor hopeless
    np.testing.assert_allclose(got.cmc, cmc, rtol=0, atol=1e-12)
    assert got.rank1 == pytest.approx(cmc[0])


def test_float32_features_agree_too():
    qf, gf, *ids = _market_like(np.random.default_rng(7))
    got = evaluate(qf.astype(np.float32), gf.astype(np.float32), *ids, max_rank=5)
    aps, cmc, _ = _reference(qf, gf, *ids, max_rank=5)
    assert got.map == pytest.approx(np.nanmean(aps), abs=1e-6)
    np.testing.assert_allclose(got.cmc, cmc, atol=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_ties_are_ranked_by_ascending_gallery_index(seed):
    args = _market_like(np.random.default_rng(seed), prototypes=6)  # ~33 gallery rows per distinct vector
    got = evaluate(*args, max_rank=10, return_per_query=True)
    aps, cmc, nvalid = _reference(*args, index_ties=True)
    assert got.num_valid_queries == nvalid
    np.testing.assert_allclose(got.ap_per_query[~np.isnan(aps)], aps[~np.isnan(aps)], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.cmc, cmc, atol=1e-12)
    # and the convention matters here: scikit-learn's tie-group rule gives other numbers on the same data
    tied, _, _ = _reference(*args)
    assert abs(np.nanmean(tied) - got.map) > 1e-3


def test_tie_convention_by_hand():
    """Four gallery items with one and the same feature, the only positive at index 2 (0-based).
    Product: ranked by index -> the positive is third -> AP = 1/3, Rank-1 = 0, CMC@3 = 1.
    scikit-learn's tie rule: one threshold holding all four -> AP = precision there = 1/4."""
    q = np.array([[1.0, 0.0]])
    g = np.tile([[0.6, 0.8]], (4, 1))
    qp, gp, qc, gc = np.array([5]), np.array([1, 2, 5, 3]), np.array([0]), np.array([1, 1, 1, 1])
    got = evaluate(q, g, qp, gp, qc, gc, max_rank=4)
    assert got.map == pytest.approx(1 / 3) and list(got.cmc) == [0.0, 0.0, 1.0, 1.0]
    assert sklearn_metrics.average_precision_score([0, 0, 1, 0], [0.6] * 4) == pytest.approx(1 / 4)
    aps, cmc, _ = _reference(q, g, qp, gp, qc, gc, max_rank=4, index_ties=True)
    assert aps[0] == pytest.approx(1 / 3) and list(cmc) == [0.0, 0.0, 1.0, 1.0]
