"""The export summary table: one row per artifact of a bundle manifest (``swedge export`` and the demo print it)."""

from __future__ import annotations

from swedge.report.table import text_table
from swedge.runtimes.manifest_types import Manifest, Repair


def summary_rows(manifest: Manifest, notes: list[str] | None = None) -> list[list]:
    """One row per artifact; TensorRT engine skip reasons go to ``notes`` (printed once under the table)."""
    rows = []
    for a in manifest.artifacts:
        parity = a.parity
        cos = f"{parity.cosine_min:.6f} ({parity.runtime})" if parity and parity.cosine_min is not None else "-"
        size = f"{a.bytes / 1e6:.2f}" if a.bytes is not None else "-"
        secs = f"{a.export_seconds:.1f}" if a.export_seconds is not None else "-"
        status = a.status if a.status == "ok" else f"{a.status}: {a.reason or ''}"
        if a.status == "ok" and (a.engine or {}).get("status") == "skipped":
            reason = a.engine.get("reason", "")
            if notes is not None and reason not in notes:
                notes.append(reason)
            status = f"ok, TRT-ready ONNX; engine skipped [{notes.index(reason) + 1 if notes is not None else reason}]"
        status += repair_note(a.repair)
        rows.append([a.format, f"{a.width:g}", a.precision, size, secs, cos, status])
    return rows


def repair_note(repair: Repair | None) -> str:
    """What --int8-repair did to an artifact, for the summary's status column ('' when it was not asked)."""
    if not repair or repair.needed is False:
        return "" if not repair else ", gate passes as is"
    if repair.needed is None:
        return ", gate not checked (no runtime here)"
    before = f"ΔmAP cross {repair.before['delta_map']:+.2f}"
    if repair.repaired:
        return f", repaired: {len(repair.kept_float)} layer(s) float, {before} -> {repair.after['delta_map']:+.2f}"
    return f", NOT repaired ({before}): {repair.reason or ''}"


def format_summary(manifest: Manifest) -> str:
    notes: list[str] = []
    headers = ["format", "width", "precision", "MB", "seconds", "parity cos min", "status"]
    table = text_table(headers, summary_rows(manifest, notes), right={1, 3, 4})
    return "\n".join([table] + [f"[{i}] {n}" for i, n in enumerate(notes, 1)])
