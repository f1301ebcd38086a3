"""Heat-map PNG of a cross-width matrix (rows = query width, columns = gallery width)."""

from __future__ import annotations

from swedge.report.png import save_png


def save_heatmap(matrix, widths, path, *, title: str, metric_label: str = "mAP (%)",
                 xlabel: str = "gallery width", ylabel: str = "query width", columns=None) -> str:
    """Write ``matrix`` (len(widths) x len(widths)) as an annotated PNG at ``path``; returns the path.

    Uses the Agg canvas directly (no pyplot), so it works headless and leaves the caller's backend alone.
    The file is written to a temporary name in the same folder, then renamed, so readers never see half
    a PNG.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=float)
    names = [w if isinstance(w, str) else str(float(w)) for w in widths]  # row labels (query side)
    cols = names if columns is None else [c if isinstance(c, str) else str(float(c)) for c in columns]
    if m.shape != (len(names), len(cols)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(names)} x {len(cols)} labels")

    longest = max(len(n) for n in names + cols)
    fig = Figure(figsize=(2.8 + 0.9 * len(cols) + 0.06 * longest, 1.6 + 0.6 * len(names) + 0.06 * longest))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax, label=metric_label)
    ax.set_xticks(range(len(cols)), labels=cols, rotation=45 if longest > 6 else 0, ha="right" if longest > 6 else "center")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    finite = m[np.isfinite(m)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            # Dark text on the bright end of viridis, light text on the dark end.
            color = "black" if m[i, j] > mid else "white"
            text = f"{m[i, j]:.2f}"
            diagonal = i == j and columns is None
            ax.text(j, i, f"[{text}]" if diagonal else text, ha="center", va="center", color=color, fontsize=9)
    fig.tight_layout()

    return save_png(fig, path, dpi=120)
