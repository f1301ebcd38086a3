"""Plain-text and Markdown tables (torch-free; used by export, verify and bench)."""

from __future__ import annotations


def _cells(rows) -> list[list[str]]:
    return [["" if v is None else str(v) for v in row] for row in rows]


def text_table(headers: list[str], rows, *, right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` holds the indices of right-aligned (numeric) columns."""
    body = _cells(rows)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    right = right or set()

    def line(cells):
        cells = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(cells).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in body])


def markdown_table(headers: list[str], rows) -> str:
    body = _cells(rows)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(out)
