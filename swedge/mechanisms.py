"""What SFSC's two mechanisms did during a run, read back from its train log (``train_log.jsonl``).

- magnitude: the mean uncertainty K/S per width (the evidential parametrisation of the shared classifier's
  logits; logged for CE widths too). The "dynamic priority" only has a signal if K/S differs between widths.
- direction: the share of gradient checks that conflicted (and were projected), early and late in training.

Summaries are means over the first and the last fifth of the logged steps (phase 0, the switchable phase).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

SHARE = 0.2  # the first / last fifth of the logged steps


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def summarise_log(path, widths) -> dict | None:
    """{"uncertainty_late": {w: K/S}, "conflict_early", "conflict_late"} or None without a usable log."""
    path = Path(path)
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill; the rest still counts
        if row.get("phase", 0) == 0:
            rows.append(row)
    if not rows:
        return None
    n = max(1, int(len(rows) * SHARE))
    early, late = rows[:n], rows[-n:]
    unc = {str(w): _mean(r.get(f"uncertainty@{w}") for r in late) for w in widths}
    return {"uncertainty_late": unc if any(v is not None for v in unc.values()) else None,
            "conflict_early": _mean(r.get("conflict_share") for r in early),
            "conflict_late": _mean(r.get("conflict_share") for r in late)}


def aggregate(summaries: list[dict | None]) -> dict | None:
    """Mean over seeds of the per-run summaries (runs without a log left out)."""
    found = [s for s in summaries if s]
    if not found:
        return None
    widths = next((list(s["uncertainty_late"]) for s in found if s["uncertainty_late"]), [])
    unc = {w: _mean(s["uncertainty_late"][w] for s in found if s["uncertainty_late"]) for w in widths}
    return {"runs": len(found), "uncertainty_late": unc or None,
            "conflict_early": _mean(s["conflict_early"] for s in found),
            "conflict_late": _mean(s["conflict_late"] for s in found)}


def format_mechanisms(rows: list[dict], widths) -> list[str]:
    """Markdown: one line per method that logged K/S or conflicts."""
    shown = [r for r in rows if r.get("mechanisms") and (r["mechanisms"]["uncertainty_late"]
                                                         or r["mechanisms"]["conflict_early"] is not None)]
    if not shown:
        return []
    head = ["method"] + [f"K/S {w}" for w in widths] + ["conflicts first 20%", "conflicts last 20%"]
    lines = ["## Mechanisms (train logs)", "",
             "Mean uncertainty K/S per width over the last fifth of training (the uncertainty-based loss can only "
             "re-weight widths whose K/S differ), and the share of gradient checks that conflicted and were "
             "projected, over the first and the last fifth; mean over seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pct = (lambda v: "–" if v is None else f"{100 * v:.1f} %")
    for r in shown:
        m = r["mechanisms"]
        unc = m["uncertainty_late"] or {}
        cells = ([r["label"]] + ["–" if unc.get(str(w)) is None else f"{unc[str(w)]:.3f}" for w in widths]
                 + [pct(m["conflict_early"]), pct(m["conflict_late"])])
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]
