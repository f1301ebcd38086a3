"""Tests of swedge.metrics (Market-1501 mAP/CMC, cross-width matrix) and the heat-map helper."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from swedge.metrics import CrossMatrix, cross_matrix, evaluate, evaluate_reference
from swedge.metrics import retrieval

BOTH = pytest.mark.parametrize("fn", [evaluate, evaluate_reference], ids=["fast", "reference"])

# Hand case: 1-D features with normalize=False, so similarity = query value (1.0) * gallery value.
#   idx  sim   pid  cam
#    0   0.90   2    1
#    1   0.80   1    1
#    2   0.75   1    0   <- junk for query pid 1 cam 0 (same pid, same camera)
#    3   0.70   1    2
#    4   0.60   3    0
#    5   0.50   0    1   <- distractor: an ordinary negative
#    6   0.40   1    3
G_SIM = [0.90, 0.80, 0.75, 0.70, 0.60, 0.50, 0.40]
G_PID = [2, 1, 1, 1, 3, 0, 1]
G_CAM = [1, 1, 0, 2, 0, 1, 3]
Q_PID = [1, 2, 3]
Q_CAM = [0, 1, 5]


def hand_case(**extra):
    q = np.ones((3, 1), np.float32)
    g = np.array(G_SIM, np.float32)[:, None]
    return evaluate_args(q, g, Q_PID, G_PID, Q_CAM, G_CAM), dict(normalize=False, **extra)


def evaluate_args(q, g, qp, gp, qc, gc):
    return (q, g, np.array(qp), np.array(gp), np.array(qc), np.array(gc))


@BOTH
def test_hand_computed_map_and_cmc(fn):
    args, kw = hand_case(max_rank=6, return_per_query=True)
    r = fn(*args, **kw)
    # Query 0 (pid 1, cam 0): item 2 removed; ranking 0 1 3 4 5 6 -> positives 1, 3, 6 at ranks 1, 2, 5.
    #   AP = (1/2 + 2/3 + 3/6) / 3 = (3/6 + 4/6 + 3/6) / 3 = 10/18 = 5/9
    # Query 1 (pid 2, cam 1): its only gallery match (item 0) is on cam 1 -> junk -> skipped.
    # Query 2 (pid 3, cam 5): nothing removed; item 4 at rank 4 -> AP = 1/5.
    # mAP = (5/9 + 1/5) / 2 = (25/45 + 9/45) / 2 = 17/45
    # First positive ranks 1 and 4 -> CMC[k] = share with rank < k+1 = [0, .5, .5, .5, 1, 1].
    assert r.num_valid_queries == 2
    assert r.map == pytest.approx(17 / 45, abs=1e-12)
    np.testing.assert_allclose(r.cmc, [0, 0.5, 0.5, 0.5, 1, 1])
    assert r.rank1 == 0
    np.testing.assert_allclose(r.ap_per_query, [5 / 9, np.nan, 1 / 5])
    np.testing.assert_allclose(r.rank1_per_query, [0, np.nan, 0])


@BOTH
def test_same_id_same_camera_is_removed(fn):
    args, kw = hand_case(return_per_query=True)
    q, g, qp, gp, qc, gc = args
    # Move item 2 to another camera: it becomes a positive at rank 2, so query 0's positives sit at
    # ranks 1, 2, 3, 6: AP = (1/2 + 2/3 + 3/4 + 4/7) / 4.
    gc2 = gc.copy()
    gc2[2] = 4
    ap = fn(q, g, qp, gp, qc, gc2, **kw).ap_per_query[0]
    assert ap == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 4 / 7) / 4, abs=1e-12)


@BOTH
def test_junk_pid_minus_one_is_ignored(fn):
    args, kw = hand_case(return_per_query=True)
    q, g, qp, gp, qc, gc = args
    base = fn(*args, **kw)
    # A pid -1 item above everything must change nothing (as an ordinary negative it would lower AP).
    g2 = np.vstack([[[0.95]], g]).astype(np.float32)
    r = fn(q, g2, qp, np.r_[-1, gp], qc, np.r_[2, gc], **kw)
    assert r.map == pytest.approx(base.map, abs=1e-12)
    np.testing.assert_allclose(r.cmc, base.cmc)
    # A query with pid -1 never matches the -1 gallery items: skipped.
    r = fn(q, g2, np.r_[-1, qp[1:]], np.r_[-1, gp], qc, np.r_[2, gc], **kw)
    assert np.isnan(r.ap_per_query[0])


@BOTH
def test_distractor_pid_zero_is_a_negative(fn):
    args, kw = hand_case(return_per_query=True)
    q, g, qp, gp, qc, gc = args
    # Dropping the pid-0 item (rank 4 for query 0) moves the last positive from rank 5 to rank 4.
    keep = gp != 0
    r = fn(q, g[keep], qp, gp[keep], qc, gc[keep], **kw)
    assert r.ap_per_query[0] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3, abs=1e-12)


@BOTH
def test_ties_ordered_by_gallery_index(fn):
    # All gallery features equal -> every similarity ties; order = ascending gallery index.
    q = np.ones((1, 4), np.float32)
    g = np.ones((4, 4), np.float32)
    # pids 2 1 3 1: positives at ranks 1 and 3 -> AP = (1/2 + 2/4) / 2 = 1/2, first rank 1.
    r = fn(q, g, np.array([1]), np.array([2, 1, 3, 1]), np.array([0]), np.array([1, 1, 1, 2]))
    assert r.map == pytest.approx(0.5, abs=1e-12) and r.cmc[0] == 0 and r.cmc[1] == 1
    # Reversed gallery: positives at ranks 0 and 2 -> AP = (1/1 + 2/3) / 2 = 5/6, rank-1 hit.
    r = fn(q, g, np.array([1]), np.array([1, 3, 1, 2]), np.array([0]), np.array([2, 1, 1, 1]))
    assert r.map == pytest.approx(5 / 6, abs=1e-12) and r.cmc[0] == 1


def test_normalize_makes_it_cosine():
    rng = np.random.default_rng(3)
    q, g = rng.standard_normal((20, 8)), rng.standard_normal((50, 8))
    ids = (rng.integers(0, 5, 20), rng.integers(0, 5, 50), rng.integers(0, 3, 20), rng.integers(0, 3, 50))
    a = evaluate(q * 7.0, g * rng.uniform(0.1, 9, (50, 1)), *ids, return_per_query=True)
    b = evaluate(q, g, *ids, return_per_query=True)
    np.testing.assert_allclose(a.ap_per_query, b.ap_per_query, atol=1e-12)


def _random_case(rng, nq, ng, dim, kind, n_ids, n_cams=6):
    if kind == "sign":  # all norms equal: dot products take few values -> many exact ties
        q = rng.choice([-1.0, 1.0], (nq, dim)).astype(np.float32)
        g = rng.choice([-1.0, 1.0], (ng, dim)).astype(np.float32)
    elif kind == "levels":  # quantised to 3 levels: ties among items with equal norm
        q = rng.integers(-1, 2, (nq, dim)).astype(np.float32)
        g = rng.integers(-1, 2, (ng, dim)).astype(np.float32)
        g[::7] = g[3]  # exact duplicates, too
    else:
        q = rng.standard_normal((nq, dim))  # float64 path
        g = rng.standard_normal((ng, dim))
    # Query pids include ids absent from the gallery -> queries without positives.
    qp = rng.integers(0, n_ids + 3, nq)
    qp[0] = n_ids + 100
    gp = rng.integers(-1, n_ids, ng)
    return q, g, qp, gp, rng.integers(0, n_cams, nq), rng.integers(0, n_cams, ng)


@pytest.mark.parametrize("nq,ng,dim,kind,n_ids,block", [
    (40, 300, 16, "sign", 10, 16),
    (33, 500, 8, "levels", 20, 8),
    (65, 200, 32, "gauss", 15, 16),
    (17, 1000, 4, "sign", 50, 256),
    (257, 400, 8, "levels", 30, 256),  # 257 rows: the last block must not be a single row
])
@pytest.mark.parametrize("workers", [1, 2])
def test_fast_equals_reference(monkeypatch, nq, ng, dim, kind, n_ids, block, workers):
    monkeypatch.setattr(retrieval, "_BLOCK", block)
    monkeypatch.setattr(retrieval, "_WORKERS", workers)
    rng = np.random.default_rng(nq * 1000 + ng)
    case = _random_case(rng, nq, ng, dim, kind, n_ids)
    fast = evaluate(*case, max_rank=20, return_per_query=True)
    ref = evaluate_reference(*case, max_rank=20, return_per_query=True)
    skipped = np.isnan(ref.ap_per_query)
    assert 0 < skipped.sum() < nq  # the case really has skipped and valid queries
    np.testing.assert_array_equal(np.isnan(fast.ap_per_query), skipped)
    np.testing.assert_allclose(fast.ap_per_query[~skipped], ref.ap_per_query[~skipped], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(fast.rank1_per_query[~skipped], ref.rank1_per_query[~skipped])
    assert fast.map == pytest.approx(ref.map, abs=1e-6)
    np.testing.assert_allclose(fast.cmc, ref.cmc, atol=1e-12)
    assert fast.num_valid_queries == ref.num_valid_queries


def test_row_blocks_never_single_row():
    for nq in (1, 2, 255, 256, 257, 513, 1000):
        blocks = list(retrieval._row_blocks(nq, 256))
        assert blocks[0][0] == 0 and blocks[-1][1] == nq
        assert all(b - a >= 2 for a, b in blocks) or nq == 1


def test_cmc_length_and_errors():
    args, kw = hand_case(max_rank=50)
    r = evaluate(*args, **kw)
    assert r.cmc.shape == (50,) and r.cmc[-1] == 1.0  # longer than the gallery: stays at 1
    q, g, qp, gp, qc, gc = args
    with pytest.raises(ValueError, match="no query"):
        evaluate(q, g, np.array([7, 8, 9]), gp, qc, gc)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.full_like(q, np.nan), g, qp, gp, qc, gc)
    with pytest.raises(ValueError, match="overflow"):
        evaluate(q * 1e30, g * 1e30, qp, gp, qc, gc, normalize=False)
    with pytest.raises(ValueError, match="dims"):
        evaluate(np.ones((3, 2)), g, qp, gp, qc, gc)
    with pytest.raises(ValueError, match="g_pids"):
        evaluate(q, g, qp, gp[:-1], qc, gc)


def _cross_features(rng, n_ids=30, per_id=6, dim=32):
    centers = rng.standard_normal((n_ids, dim))
    pids = np.repeat(np.arange(1, n_ids + 1), per_id)
    cams = np.tile(np.arange(per_id), n_ids)
    clean = centers[pids - 1] + 0.3 * rng.standard_normal((len(pids), dim))
    noisy = centers[pids - 1] + 1.5 * rng.standard_normal((len(pids), dim))
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    qsel, gsel = cams == 0, cams != 0
    feats = {
        1.0: (clean[qsel], clean[gsel]),
        0.25: (noisy[qsel], noisy[gsel]),  # poor but in the full width's space: compatible
        0.5: (clean[qsel] @ rotation, clean[gsel] @ rotation),  # good but rotated: not compatible
    }
    return feats, (pids[qsel], pids[gsel], cams[qsel], cams[gsel])


def test_cross_matrix():
    feats, ids = _cross_features(np.random.default_rng(0))
    cm = cross_matrix(feats, *ids)
    assert isinstance(cm, CrossMatrix) and cm.widths == [0.25, 0.5, 1.0]
    assert cm.map.shape == cm.rank1.shape == (3, 3)
    diag = evaluate(feats[0.5][0], feats[0.5][1], *ids)
    assert cm.map[1, 1] == pytest.approx(100 * diag.map) and cm.rank1[1, 1] == pytest.approx(100 * diag.rank1)
    cross = evaluate(feats[0.25][0], feats[1.0][1], *ids)  # row = query width, column = gallery width
    assert cm.map[0, 2] == pytest.approx(100 * cross.map)
    assert cm.compatible() == {0.25: True, 0.5: False}
    d = json.loads(json.dumps(cm.to_dict()))
    assert d["widths"] == [0.25, 0.5, 1.0] and d["compatibility"] == {"0.25": True, "0.5": False}
    assert len(d["map"]) == 3 and len(d["rank1"][0]) == 3
    table = cm.format_table()
    assert "query w=0.25" in table and f"[{cm.map[0, 0]:.2f}]" in table and "NOT compatible" in table
    assert "Rank-1" in cm.format_table("rank1")


def test_retrieval_grid_cells_are_per_pair_evaluations_keyed_by_any_label():
    from swedge.metrics.cross import retrieval_grid

    feats, ids = _cross_features(np.random.default_rng(1))
    queries = {"a": feats[0.25][0], "b": feats[1.0][0]}
    galleries = {"x": feats[0.5][1], "y": feats[1.0][1]}
    grid = retrieval_grid(queries, galleries, *ids, per_query=True)
    assert list(grid) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    for (qk, gk), r in grid.items():
        alone = evaluate(queries[qk], galleries[gk], *ids, return_per_query=True)
        assert r.map == pytest.approx(alone.map) and r.rank1 == pytest.approx(alone.rank1)
        np.testing.assert_allclose(r.ap_per_query, alone.ap_per_query)
    matrix, cells = cross_matrix(feats, *ids, per_query=True)
    assert matrix.map[0, 2] == pytest.approx(100 * cells[0.25, 1.0].map)
    assert len(cells[0.25, 1.0].ap_per_query) == len(ids[0])


def test_import_is_torch_and_matplotlib_free():
    code = "import swedge.metrics, sys; assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_heatmap_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from swedge.report.heatmap import save_heatmap

    out = tmp_path / "sub" / "cross.png"
    m = np.array([[58.2, 61.0, 69.4], [60.0, 70.7, 72.1], [59.0, 71.0, 81.4]])
    assert save_heatmap(m, [0.25, 0.5, 1.0], out, title="cross-test") == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(out.parent) == ["cross.png"]  # no temp file left behind
    with pytest.raises(ValueError):
        save_heatmap(m[:2], [0.25, 0.5, 1.0], out, title="bad")
