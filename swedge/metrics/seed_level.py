"""Seed-level comparison of two methods (numpy only): the unit is the training seed, not the query.

The per-query test (``paired.py``) asks whether two trained models differ on this test set; a reviewer asks
whether the METHOD wins, i.e. whether the difference survives retraining. Here:

- :func:`seed_test`: per-seed mean differences d_s (s = 1..n); the t-based CI over seeds
  mean(d) +- t_{n-1} sd(d) / sqrt(n), and the two-sided sign-flip permutation p over seeds (exact, all 2^n
  sign vectors, for n <= EXACT_SEEDS; else sampled). With 5 seeds the smallest exact p is 2/32 = 0.0625, so
  verdicts read the CI, and the p is reported beside it.
- :func:`hierarchical_bootstrap`: resample seeds with replacement, then queries within each drawn seed; the
  percentile CI of the mean difference covers both training noise and query sampling.
- :func:`verdict`: ``holds`` (the seed-level CI excludes 0 in the claimed direction AND |diff| > floor),
  ``fails`` (it excludes 0 in the opposite direction, and |diff| > floor), else ``unresolved``; with fewer than
  MIN_SEEDS seeds always ``unresolved`` ("needs >= 5 seeds"). The floor is the metric's spread over retrainings
  at one seed with a negligible perturbation (``swedge compare --perturb-floor``): a difference below it is
  within what a bit flip in training moves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MIN_SEEDS = 5  # fewer seeds: every claim is "unresolved"
EXACT_SEEDS = 16  # up to this many seeds the sign-flip test enumerates every sign vector
_CHUNK_ELEMENTS = 2_000_000


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (scipy's; imported here so that the module loads
    with numpy alone)."""
    from scipy.stats import t

    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    return float(t.ppf(p, df))


@dataclass
class SeedResult:
    """Differences A - B in the units of the inputs (points of mAP when given percent)."""

    mean_diff: float
    ci_low: float | None  # t-based over seeds; None with one seed
    ci_high: float | None
    p_value: float  # sign-flip permutation over seeds, two-sided
    n_seeds: int
    per_seed: list[float]
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def seed_test(per_seed_diffs, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> SeedResult:
    """Paired test over seeds on per-seed mean differences (one number per seed)."""
    d = np.asarray(per_seed_diffs, dtype=np.float64).reshape(-1)
    if d.size == 0 or not np.isfinite(d).all():
        raise ValueError("need at least one finite per-seed difference")
    n, mean = d.size, float(d.mean())
    low = high = None
    if n > 1:
        half = t_quantile(1 - (1 - confidence) / 2, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        low, high = mean - half, mean + half
    if n <= EXACT_SEEDS:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # every sign vector, identity first
        flipped = signs @ d / n
        p = float(np.mean(np.abs(flipped) >= abs(mean) - 1e-12 * max(1.0, abs(mean))))
    else:
        rng = np.random.default_rng(seed)
        flipped = rng.choice((-1.0, 1.0), size=(resamples, n)) @ d / n
        p = (1 + int(np.count_nonzero(np.abs(flipped) >= abs(mean) - 1e-12 * max(1.0, abs(mean))))) / (1 + resamples)
    return SeedResult(mean_diff=mean, ci_low=low, ci_high=high, p_value=p, n_seeds=n,
                      per_seed=[float(x) for x in d], confidence=confidence)


def hierarchical_bootstrap(diffs_by_seed, *, resamples: int = 10_000, confidence: float = 0.95,
                           seed: int = 0) -> dict:
    """Percentile CI of the mean per-query difference, resampling seeds, then queries within each drawn seed.

    ``diffs_by_seed``: one array of per-query differences per seed (NaN = a skipped query, left out).
    Returns {"mean_diff", "ci_low", "ci_high", "resamples", "confidence"}."""
    seeds = [np.asarray(d, dtype=np.float64).reshape(-1) for d in diffs_by_seed]
    seeds = [d[np.isfinite(d)] for d in seeds]
    if not seeds or any(d.size == 0 for d in seeds):
        raise ValueError("every seed needs at least one finite per-query difference")
    rng = np.random.default_rng(seed)
    n = len(seeds)
    drawn = rng.integers(0, n, size=(resamples, n))  # which seed fills each slot of each resample
    totals = np.zeros(resamples)
    for s, d in enumerate(seeds):
        rows = np.flatnonzero(drawn == s) // n  # resample index of every slot that drew seed s
        step = max(1, _CHUNK_ELEMENTS // d.size)
        for start in range(0, rows.size, step):
            part = rows[start:start + step]
            means = d[rng.integers(0, d.size, size=(part.size, d.size))].mean(axis=1)
            np.add.at(totals, part, means)
    boot = totals / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return {"mean_diff": float(np.mean([d.mean() for d in seeds])), "ci_low": float(low), "ci_high": float(high),
            "resamples": resamples, "confidence": confidence}


def verdict(mean_diff: float, ci_low: float | None, ci_high: float | None, n_seeds: int,
            floor: float | None = None, direction: int = 1) -> tuple[str, str]:
    """(status, reason): holds / fails / unresolved for a claim that A - B has the sign of ``direction``."""
    if n_seeds < MIN_SEEDS:
        return "unresolved", f"needs >= {MIN_SEEDS} seeds (has {n_seeds})"
    if ci_low is None or ci_high is None:
        return "unresolved", "no seed-level interval"
    above = abs(mean_diff) > (floor or 0.0)
    floor_text = "floor not measured" if floor is None else f"floor {floor:.2f}"
    claimed = ci_low > 0 if direction > 0 else ci_high < 0
    opposite = ci_high < 0 if direction > 0 else ci_low > 0
    if (claimed or opposite) and not above:
        return "unresolved", f"|diff| {abs(mean_diff):.2f} <= {floor_text}"
    if claimed:
        return "holds", f"seed-level CI excludes 0 in the claimed direction; |diff| > {floor_text}"
    if opposite:
        return "fails", f"seed-level CI excludes 0 in the opposite direction; |diff| > {floor_text}"
    return "unresolved", "seed-level CI includes 0"
