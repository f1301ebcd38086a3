"""Paired per-query test: known shift found, no shift not found, NaN queries dropped, seeds combined."""

import subprocess
import sys

import numpy as np
import pytest

from swedge.metrics.paired import paired_over_seeds, paired_test


def test_known_shift_is_found_and_covered():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 100, 800)
    a = b + 2.0 + rng.normal(0, 8, 800)  # A better by 2 points, noisy per query
    r = paired_test(a, b, resamples=4000, seed=1)
    assert r.n == 800
    assert r.ci_low < 2.0 < r.ci_high
    assert r.ci_low > 0 and r.p_value < 1e-3
    assert r.verdict == "real" and r.to_dict()["verdict"] == "real"
    assert abs(r.mean_diff - (a - b).mean()) < 1e-12


def test_no_shift_is_noise():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 100, 800)
    a = b + rng.normal(0, 8, 800)
    r = paired_test(a, b, resamples=4000, seed=1)
    assert r.ci_low < 0 < r.ci_high
    assert r.p_value > 0.2
    assert r.verdict == "noise"
    # An exactly symmetric difference: every sign flip is as extreme as the observed 0.
    d = np.concatenate([np.arange(1, 51.0), -np.arange(1, 51.0)])
    assert paired_test(d, np.zeros_like(d), resamples=500).p_value == 1.0


def test_p_value_is_calibrated_under_the_null():
    rng = np.random.default_rng(5)
    ps = [paired_test(rng.normal(0, 1, 40), np.zeros(40), resamples=400, seed=i).p_value for i in range(200)]
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.10


def test_small_n_needs_both_ci_and_p():
    # 4 queries all +1: the bootstrap CI is [1, 1], but 2 of 16 sign patterns are as extreme: p ~ 0.125.
    r = paired_test([1, 2, 3, 4], [0, 1, 2, 3], resamples=4000)
    assert r.ci_low == r.ci_high == 1.0
    assert 0.1 < r.p_value < 0.15
    assert r.verdict == "noise"


def test_nan_queries_dropped_and_seeded():
    a = np.array([0.5, np.nan, 0.7, 0.9, 0.2])
    b = np.array([0.4, 0.3, np.nan, 0.8, 0.1])
    r = paired_test(a, b, resamples=300, seed=3)
    assert r.n == 3 and abs(r.mean_diff - 0.1) < 1e-12
    assert r == paired_test(a, b, resamples=300, seed=3)
    with pytest.raises(ValueError, match="same length"):
        paired_test([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="no query"):
        paired_test([np.nan], [1.0])


def test_over_seeds_averages_per_query_differences():
    rng = np.random.default_rng(2)
    b = {s: rng.uniform(0, 100, 300) for s in (0, 1, 2)}
    a = {s: b[s] + 1.5 + rng.normal(0, 5, 300) for s in (0, 1)}  # seed 2 only for b: ignored
    res = paired_over_seeds(a, b, resamples=2000)
    assert res["seeds"] == [0, 1] and set(res["per_seed"]) == {0, 1}
    expected = np.mean([a[s] - b[s] for s in (0, 1)], axis=0).mean()
    assert abs(res["combined"].mean_diff - expected) < 1e-9
    assert res["combined"].verdict == "real" and res["combined"].n == 300
    one = paired_over_seeds({0: a[0]}, {0: b[0]}, resamples=500)
    assert one["combined"] == one["per_seed"][0]
    with pytest.raises(ValueError, match="share no seed"):
        paired_over_seeds({0: a[0]}, {1: b[1]})


def test_imports_without_torch():
    code = "import swedge.metrics.paired, sys; assert 'torch' not in sys.modules and 'scipy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
