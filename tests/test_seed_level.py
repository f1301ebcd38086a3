"""Seed-level statistics on synthetic numbers: t quantiles, the paired test over seeds, the hierarchical
bootstrap over seeds x queries, and the holds / fails / unresolved verdict."""

import math

import numpy as np
import pytest

from swedge.metrics.seed_level import MIN_SEEDS, hierarchical_bootstrap, seed_test, t_quantile, verdict


@pytest.mark.parametrize("df,expected", [(1, 12.7062047), (4, 2.7764451), (9, 2.2621572), (30, 2.0422725)])
def test_t_quantile_matches_the_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)


def test_seed_test_t_interval_and_exact_sign_flip():
    d = [1.0, 2.0, 1.5, 0.5, 2.5]
    r = seed_test(d)
    half = 2.7764451 * np.std(d, ddof=1) / math.sqrt(5)
    assert r.mean_diff == pytest.approx(1.5) and r.ci_low == pytest.approx(1.5 - half, abs=1e-5)
    assert r.ci_high == pytest.approx(1.5 + half, abs=1e-5)
    assert r.p_value == pytest.approx(2 / 32)  # all positive: only the identity and all-flipped are as extreme
    mixed = seed_test([1.0, -1.0, 1.0, -1.0, 0.5])
    assert mixed.p_value > 0.5 and mixed.ci_low < 0 < mixed.ci_high
    one = seed_test([3.0])
    assert one.ci_low is None and one.n_seeds == 1


def test_hierarchical_bootstrap_sees_the_seed_to_seed_spread():
    rng = np.random.default_rng(0)
    # every seed's queries agree tightly, but the seeds disagree: the per-query CI would be narrow, this is not
    shifts = [3.0, -2.0, 4.0, -1.0, 0.5]
    diffs = [s + rng.normal(0, 0.1, 300) for s in shifts]
    h = hierarchical_bootstrap(diffs, resamples=2000)
    assert h["mean_diff"] == pytest.approx(np.mean(shifts), abs=0.05)
    assert h["ci_low"] < 0 < h["ci_high"] and h["ci_high"] - h["ci_low"] > 3
    tight = hierarchical_bootstrap([1.0 + rng.normal(0, 0.1, 300) for _ in range(5)], resamples=2000)
    assert 0.9 < tight["ci_low"] < 1.0 < tight["ci_high"] < 1.1
    nan = np.full(300, np.nan)
    nan[:10] = 1.0
    assert hierarchical_bootstrap([nan] * 3, resamples=100)["mean_diff"] == 1.0  # skipped queries left out


def _judge(d, floor=None, direction=1):
    r = seed_test(d)
    return verdict(r.mean_diff, r.ci_low, r.ci_high, r.n_seeds, floor, direction)


def test_verdicts():
    consistent = [1.0, 1.2, 0.9, 1.1, 1.3]
    assert _judge(consistent)[0] == "holds"
    assert _judge(consistent, floor=0.5)[0] == "holds"
    status, reason = _judge(consistent, floor=2.0)  # real but within the perturbation floor
    assert status == "unresolved" and "floor 2.00" in reason
    assert _judge(consistent, direction=-1)[0] == "fails"
    assert _judge([-x for x in consistent])[0] == "fails"
    status, reason = _judge([1.0, -1.0, 1.5, -0.5, 0.2])
    assert status == "unresolved" and "includes 0" in reason
    status, reason = _judge(consistent[:MIN_SEEDS - 1])  # would hold, but too few seeds
    assert status == "unresolved" and f"needs >= {MIN_SEEDS} seeds" in reason
