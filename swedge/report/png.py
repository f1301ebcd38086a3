"""Write a matplotlib Figure as a PNG atomically (readers never see half a file)."""

from __future__ import annotations

import io

from swedge.io import atomic_write_bytes


def save_png(fig, path, dpi: int = 110) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return str(path)
