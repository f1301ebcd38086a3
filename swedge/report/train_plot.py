"""Summary PNG of a training log (``train_log.jsonl``): per-width loss, per-width uncertainty and the share of
conflicting gradient pairs over the steps, one panel each (the last two only when the method logs them)."""

from __future__ import annotations

import json
from pathlib import Path

from swedge.report.png import save_png


def _series(records: list[dict], prefix: str) -> dict[float, tuple[list, list]]:
    """{width: (steps, values)} for the keys ``prefix@WIDTH``, widest first."""
    out: dict[float, tuple[list, list]] = {}
    for r in records:
        for key, value in r.items():
            if key.startswith(prefix + "@"):
                steps, values = out.setdefault(float(key.split("@", 1)[1]), ([], []))
                steps.append(r["step"])
                values.append(value)
    return dict(sorted(out.items(), reverse=True))


def save_train_plot(log_path, png_path, *, title: str = "training") -> Path | None:
    """Write the summary of ``log_path`` to ``png_path`` (atomically); None when the log has no records."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    if not records:
        return None
    panels = [("loss", _series(records, "loss"))]
    if any(k.startswith("uncertainty@") for r in records for k in r):
        panels.append(("uncertainty K/S", _series(records, "uncertainty")))
    conflicts = [(r["step"], r["conflict_share"]) for r in records if "conflict_share" in r]
    if conflicts:
        panels.append(("conflict share", {None: tuple(zip(*conflicts))}))
    # Phase changes (e.g. BCT's frozen full model, then the small ones) as dashed lines.
    changes = [b["step"] for a, b in zip(records, records[1:]) if a.get("phase") != b.get("phase")]

    # Agg canvas directly (no pyplot): headless, and the caller's backend is left alone.
    fig = Figure(figsize=(7, 2.4 * len(panels)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, series) in zip(axes, panels):
        for width, (steps, values) in series.items():
            ax.plot(steps, values, label=None if width is None else f"w={width:g}", linewidth=1.2)
        for step in changes:
            ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylabel(label)
        ax.ticklabel_format(axis="y", useOffset=False)  # uncertainties move in the 5th decimal early on
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8, loc="upper right")
    axes[0].set_title(title)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    return Path(save_png(fig, png_path))
