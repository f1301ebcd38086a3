"""Pass/fail thresholds by precision (DESIGN §6); a JSON file given with ``--thresholds`` overrides any of them.

Defaults: fp32 per-row cosine >= 0.9999 (same maths, different kernels), fp16 >= 0.999 (10-bit mantissa),
int8 mean cosine >= 0.99; for every precision the probe-set mAP may drop by at most 1 point, in the self-test
(artifact queries vs artifact gallery) and in the cross-test (artifact queries vs the server's gallery).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from swedge.errors import SwedgeError


@dataclass
class Thresholds:
    fp32_cosine_min: float = 0.9999
    fp16_cosine_min: float = 0.999
    int8_cosine_mean: float = 0.99
    max_map_drop: float = 1.0          # points of mAP (self and cross) below the torch sub-model
    baseline_max_map_drop: float = 1.0  # --baseline: points below the old model's own cross-test

    @classmethod
    def load(cls, path: str | Path | None) -> Thresholds:
        if path is None:
            return cls()
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SwedgeError(f"cannot read thresholds {path}: {exc}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SwedgeError(f"unknown threshold(s) {unknown} in {path}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self, precision: str, cosine_min: float, cosine_mean: float, delta_self: float,
              delta_cross: float) -> list[str]:
        """The failed criteria, each as a short sentence (empty = pass)."""
        failures = []
        if precision == "int8":
            if not cosine_mean >= self.int8_cosine_mean:
                failures.append(f"mean cosine {cosine_mean:.5f} < {self.int8_cosine_mean}")
        else:
            limit = self.fp16_cosine_min if precision == "fp16" else self.fp32_cosine_min
            if not cosine_min >= limit:
                failures.append(f"min cosine {cosine_min:.6f} < {limit}")
        for name, delta in (("self", delta_self), ("cross", delta_cross)):
            if not delta >= -self.max_map_drop:
                failures.append(f"mAP {name} drops {-delta:.2f} points (> {self.max_map_drop})")
        return failures
