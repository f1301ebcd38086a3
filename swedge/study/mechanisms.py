"""What SFSC's two mechanisms did during a run, read back from its train log (``train_log.jsonl``).

- magnitude: the mean uncertainty K/S per width (the evidential parametrisation of the logits the width's loss
  sees; logged for CE widths too), late in training, and its spread between the widths (max - min). The
  "dynamic priority" only has a signal if K/S differs between widths: the summary says whether the spread
  reaches KS_SEPARATION.
- direction: the share of gradient checks that conflicted (and were projected), early and late in training.
- clipping: the share of steps whose total gradient norm was clipped (``--grad-clip``), and the median pre-clip
  norm of the logged steps.

K/S and conflicts are means over the first and the last fifth of the logged steps of phase 0 (the switchable
phase); clipping covers every logged record.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

SHARE = 0.2  # the first / last fifth of the logged steps
KS_SEPARATION = 0.05  # late K/S spread between the widths from which "K/S separates the widths" is said


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _spread(per_width: dict | None) -> float | None:
    vals = [v for v in (per_width or {}).values() if v is not None]
    return max(vals) - min(vals) if len(vals) > 1 else None


def _read(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill; the rest still counts
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _clipping(rows: list[dict]) -> dict:
    steps = sum(r.get("clip_steps", 0) for r in rows)
    clipped = sum(r.get("clipped_steps", 0) for r in rows)
    norms = [r["grad_norm"] for r in rows if isinstance(r.get("grad_norm"), (int, float))]
    return {"clipped_share": clipped / steps if steps else None,
            "grad_norm_median": statistics.median(norms) if norms else None}


def summarise_log(path, widths) -> dict | None:
    """{"uncertainty_late": {w: K/S}, "ks_spread_late", "conflict_early", "conflict_late", "clipped_share",
    "grad_norm_median"} or None without a usable log."""
    path = Path(path)
    if not path.is_file():
        return None
    every = _read(path)
    rows = [r for r in every if r.get("phase", 0) == 0]
    if not rows:
        return None
    n = max(1, int(len(rows) * SHARE))
    early, late = rows[:n], rows[-n:]
    unc = {str(w): _mean(r.get(f"uncertainty@{w}") for r in late) for w in widths}
    unc = unc if any(v is not None for v in unc.values()) else None
    return {"uncertainty_late": unc, "ks_spread_late": _spread(unc),
            "conflict_early": _mean(r.get("conflict_share") for r in early),
            "conflict_late": _mean(r.get("conflict_share") for r in late), **_clipping(every)}


def aggregate(summaries: list[dict | None]) -> dict | None:
    """Mean over seeds of the per-run summaries (runs without a log left out)."""
    found = [s for s in summaries if s]
    if not found:
        return None
    widths = next((list(s["uncertainty_late"]) for s in found if s["uncertainty_late"]), [])
    unc = {w: _mean(s["uncertainty_late"][w] for s in found if s["uncertainty_late"]) for w in widths}
    return {"runs": len(found), "uncertainty_late": unc or None,
            "ks_spread_late": _mean(s.get("ks_spread_late") for s in found),
            "conflict_early": _mean(s["conflict_early"] for s in found),
            "conflict_late": _mean(s["conflict_late"] for s in found),
            "clipped_share": _mean(s.get("clipped_share") for s in found),
            "grad_norm_median": _mean(s.get("grad_norm_median") for s in found)}


def separates(spread: float | None) -> str:
    return "–" if spread is None else ("yes" if spread >= KS_SEPARATION else "no")


def format_mechanisms(rows: list[dict], widths) -> list[str]:
    """Markdown: one line per method that logged K/S, conflicts or clipping."""
    shown = [r for r in rows if r.get("mechanisms") and (r["mechanisms"]["uncertainty_late"]
                                                         or r["mechanisms"]["conflict_early"] is not None
                                                         or r["mechanisms"].get("clipped_share") is not None)]
    if not shown:
        return []
    head = (["method"] + [f"K/S {w}" for w in widths]
            + ["K/S spread", "separates", "conflicts first 20%", "conflicts last 20%", "clipped", "median norm"])
    lines = ["## Mechanisms (train logs)", "",
             "Mean uncertainty K/S per width over the last fifth of training, and its spread between the widths "
             f"(the uncertainty-based loss can only re-weight widths whose K/S differ: \"separates\" = spread >= "
             f"{KS_SEPARATION}); the share of gradient checks that conflicted and were projected, over the first "
             "and the last fifth; the share of steps whose gradient norm was clipped (--grad-clip) and the median "
             "pre-clip total norm of the logged steps; mean over seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pct = (lambda v: "–" if v is None else f"{100 * v:.1f} %")
    num = (lambda v, f=".3f": "–" if v is None else format(v, f))
    for r in shown:
        m = r["mechanisms"]
        unc = m["uncertainty_late"] or {}
        spread = m.get("ks_spread_late")
        cells = ([r["label"]] + [num(unc.get(str(w))) for w in widths]
                 + [num(spread), separates(spread), pct(m["conflict_early"]), pct(m["conflict_late"]),
                    pct(m.get("clipped_share")), num(m.get("grad_norm_median"), ".3g")])
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]
