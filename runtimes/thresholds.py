"""Pass/fail thresholds by precision: the one table the gate, the exporters' parity checks and the tests read.

A JSON file given with ``--thresholds`` overrides any of them. What each number means:
- fp32: per-row cosine >= ``fp32_cosine_min`` (the *worst* row) and per-row max |a - b| / ||b|| <=
  ``fp32_max_rel_error``: the same maths on other kernels reaches cosine 1 - 1e-7 and ~1e-6 relative error, so a
  1 % error (cosine 0.99995) must fail.
- fp16: per-row cosine >= ``fp16_cosine_min`` (worst row; 10-bit mantissa).
- int8: *mean* cosine over rows >= ``int8_cosine_mean`` (a few rows near a quantisation step are expected);
  retrieval is what int8 is judged by.
- every precision: probe-set mAP may drop by at most ``max_map_drop`` points, in the self-test (artifact queries
  vs artifact gallery) and in the cross-test (artifact queries vs the server's gallery).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from swedge.errors import SwedgeError


WEAK_FLAG = "--allow-weak-thresholds"
COSINES = ("fp32_cosine_min", "fp16_cosine_min", "int8_cosine_mean")
MAP_DROPS = ("max_map_drop", "baseline_max_map_drop")
# name -> (lowest, highest, what the range is); OPEN_LOW: the lowest value itself is refused
RANGES = {**{n: (-1.0, 1.0, "a cosine lies in [-1, 1]; use a value in (0, 1]") for n in COSINES},
          "fp32_max_rel_error": (0.0, math.inf, "a relative error limit must be > 0"),
          **{n: (0.0, math.inf, "an mAP drop in points must be >= 0") for n in MAP_DROPS}}
OPEN_LOW = {"fp32_max_rel_error"}
# In range, yet no artifact can fail them: refused unless WEAK_FLAG is given. mAP lies in [0, 100] points; a
# relative error of 1 is an error as large as the reference row itself.
WEAK_COSINE = 0.0      # a cosine limit at or below it passes orthogonal or opposite features
WEAK_REL_ERROR = 1.0   # an error limit at or above it passes an error as large as the feature
WEAK_MAP_DROP = 100.0  # an mAP drop limit at or above it passes any retrieval
WEAK = {**{n: (lambda v: v <= WEAK_COSINE, f"a cosine limit <= {WEAK_COSINE:g} passes orthogonal or opposite "
               "features") for n in COSINES},
        "fp32_max_rel_error": (lambda v: v >= WEAK_REL_ERROR, f"an error limit >= {WEAK_REL_ERROR:g} passes an error "
                               "as large as the feature"),
        **{n: (lambda v: v >= WEAK_MAP_DROP, f"an mAP drop >= {WEAK_MAP_DROP:g} points passes any retrieval")
           for n in MAP_DROPS}}


@dataclass(frozen=True)
class Thresholds:
    fp32_cosine_min: float = 0.999999
    fp32_max_rel_error: float = 1e-4   # max |a - b| over the row, relative to the reference row's L2 norm
    fp16_cosine_min: float = 0.999
    int8_cosine_mean: float = 0.99
    max_map_drop: float = 1.0          # points of mAP (self and cross) below the torch sub-model
    baseline_max_map_drop: float = 1.0  # --baseline: points below the old model's own cross-test

    @classmethod
    def load(cls, path: str | Path | None, *, allow_weak: bool = False) -> Thresholds:
        """The defaults overridden by the JSON file ``path``: numbers only, finite, in range. A value that would
        disable a check (see ``WEAK``) is refused unless ``allow_weak``; ``weak()`` then names it."""
        if path is None:
            return cls()
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SwedgeError(f"cannot read thresholds {path}: {exc}") from None
        if not isinstance(data, dict):
            raise SwedgeError(f"thresholds {path} must be a JSON object of name: number, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SwedgeError(f"unknown threshold(s) {unknown} in {path}; known: {sorted(known)}")
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SwedgeError(f"threshold '{name}' in {path} must be a finite number, got {value!r}")
            low, high, meaning = RANGES[name]
            if not low <= value <= high or (name in OPEN_LOW and value == low):
                raise SwedgeError(f"threshold '{name}' in {path} is {value!r}; {meaning}")
        out = cls(**{k: float(v) for k, v in data.items()})
        if (weak := out.weak()) and not allow_weak:
            raise SwedgeError(f"threshold(s) in {path} would disable a check: {'; '.join(weak)}; pass {WEAK_FLAG} "
                              "to accept that (the report then says so)")
        return out

    def weak(self) -> list[str]:
        """The values that disable a check, each as 'name = value (why)'; empty for sound thresholds."""
        return [f"'{name}' = {getattr(self, name):g} ({why})" for name, (is_weak, why) in WEAK.items()
                if is_weak(getattr(self, name))]

    def to_dict(self) -> dict:
        return asdict(self)

    def cosine_failures(self, precision: str, cosine_min: float, cosine_mean: float,
                        max_rel_error: float | None = None) -> list[str]:
        """The fidelity criteria of ``precision`` that fail, each as a short sentence (empty = pass)."""
        if precision == "int8":
            ok = cosine_mean >= self.int8_cosine_mean
            return [] if ok else [f"mean cosine {cosine_mean:.5f} < {self.int8_cosine_mean}"]
        if precision not in ("fp32", "fp16"):
            raise SwedgeError(f"no thresholds for precision '{precision}'; known: fp32, fp16, int8")
        limit = self.fp16_cosine_min if precision == "fp16" else self.fp32_cosine_min
        failures = [] if cosine_min >= limit else [f"min cosine {cosine_min:.7f} < {limit}"]
        if precision == "fp32" and max_rel_error is not None and not max_rel_error <= self.fp32_max_rel_error:
            failures.append(f"max relative error {max_rel_error:.2e} > {self.fp32_max_rel_error:g}")
        return failures

    def feature_failures(self, precision: str, features, reference) -> list[str]:
        """``cosine_failures`` computed from two feature arrays (rows = images), as the gate computes them."""
        from swedge.metrics.fidelity import relative_error, row_cosine

        cos = row_cosine(features, reference)
        return self.cosine_failures(precision, float(cos.min()), float(cos.mean()),
                                    relative_error(features, reference))

    def check(self, precision: str, cosine_min: float, cosine_mean: float, delta_self: float,
              delta_cross: float, max_rel_error: float | None = None) -> list[str]:
        """Every failed criterion (fidelity and mAP drop), each as a short sentence (empty = pass)."""
        failures = self.cosine_failures(precision, cosine_min, cosine_mean, max_rel_error)
        for name, delta in (("self", delta_self), ("cross", delta_cross)):
            if not delta >= -self.max_map_drop:
                failures.append(f"mAP {name} drops {-delta:.2f} points (> {self.max_map_drop})")
        return failures


DEFAULT = Thresholds()
