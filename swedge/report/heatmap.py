"""Heat-map PNG of a cross-width matrix (rows = query width, columns = gallery width)."""

from __future__ import annotations

import os
import tempfile


def save_heatmap(matrix, widths, path, *, title: str, metric_label: str = "mAP (%)") -> str:
    """Write ``matrix`` (len(widths) x len(widths)) as an annotated PNG at ``path``; returns the path.

    Uses the Agg canvas directly (no pyplot), so it works headless and leaves the caller's backend alone.
    The file is written to a temporary name in the same folder, then renamed, so readers never see half
    a PNG.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=float)
    names = [str(float(w)) for w in widths]
    if m.shape != (len(names), len(names)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(names)} widths")

    size = 1.6 + 0.9 * len(names)
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax, label=metric_label)
    ax.set_xticks(range(len(names)), labels=names)
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("gallery width")
    ax.set_ylabel("query width")
    ax.set_title(title)
    finite = m[np.isfinite(m)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            # Dark text on the bright end of viridis, light text on the dark end.
            color = "black" if m[i, j] > mid else "white"
            text = f"{m[i, j]:.2f}"
            ax.text(j, i, f"[{text}]" if i == j else text, ha="center", va="center", color=color, fontsize=9)
    fig.tight_layout()

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".heatmap-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
