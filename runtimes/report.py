"""Verification outputs: terminal table, JSON, JUnit XML (CI gate), Markdown + HTML report with heat-maps.

Torch-free; matplotlib is optional (the device side may not have it): without it the report says the heat-map
was left out and why.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from xml.etree import ElementTree as ET

from swedge.io import atomic_write_bytes, atomic_write_json
from swedge.report.table import markdown_table, text_table
from swedge.runtimes.host import describe
from swedge.runtimes.thresholds import WEAK_FLAG
from swedge.runtimes.verify import VerifyReport

HEADERS = ["format", "runtime", "width", "precision", "cos min", "cos mean", "top-k", "mAP self", "mAP cross",
           "ΔmAP", "status"]


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def rows_table(report: VerifyReport, notes: list[str] | None = None) -> list[list]:
    """Table rows; with ``notes`` (a list to fill), long reasons shared by several rows become [n] footnotes."""
    out = []
    shared = {r.reason for r in report.rows if len(r.reason) > 60
              and sum(o.reason == r.reason for o in report.rows) > 1} if notes is not None else set()
    for r in report.rows:
        status = r.status.upper() if r.status != "skipped" else "skipped"
        if r.reason in shared:
            if r.reason not in notes:
                notes.append(r.reason)
            status += f" [{notes.index(r.reason) + 1}]"
        elif r.reason:
            status += f": {r.reason}"
        out.append([r.format, r.runtime, f"{r.width:g}", r.precision, _f(r.cosine_min, ".6f"),
                    _f(r.cosine_mean, ".6f"), _f(r.topk_agreement, ".3f"), _f(r.map_self, ".2f"),
                    _f(r.map_cross, ".2f"), _f(r.delta_map, "+.2f"), status])
    return out


def summary_line(report: VerifyReport) -> str:
    counts = {s: sum(r.status == s for r in report.rows) for s in ("pass", "fail", "skipped")}
    verdict = "PASSED" if report.passed else "FAILED"
    return (f"verify {verdict}: {counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped"
            + (f", {len(report.errors)} bundle error(s)" if report.errors else ""))


def reference_lines(report: VerifyReport) -> list[str]:
    lines = [f"torch w{w}: mAP self {v['map_self']:.2f}, cross (vs server gallery) {v['map_cross']:.2f}"
             for w, v in report.reference.items()]
    inference = sum(r.inference_s for r in report.rows)
    harness = sum(r.harness_s for r in report.rows)
    if inference > 0:
        lines.append(f"embedding time: {harness:.2f} s wall, {inference:.2f} s inside the runtimes "
                     f"(harness overhead {100 * (harness / inference - 1):.1f} %)")
    return lines


def host_lines(report: VerifyReport) -> list[str]:
    """Where the verdict holds: int8 kernels differ by CPU, so say whether this host matches the export host."""
    here = describe(report.host)
    if report.export_host is None and report.errors and not report.rows:  # the manifest itself was unreadable
        return [f"host: {here}"]
    if report.export_host is None:
        return [f"host: {here}; the export host is not recorded (bundle exported by an older swedge): int8 "
                "results hold for this host's CPU class"]
    diffs = report.host_differences
    if not diffs:
        return [f"host: same CPU class as the export host (CPU, int8 flags, runtime versions): {here}"]
    return [f"export host and this host differ: {'; '.join(diffs)} — int8 results may differ between them",
            f"  export host: {describe(report.export_host)}", f"  this host:   {here}"]


def weak_lines(report: VerifyReport) -> list[str]:
    """The thresholds that disable a check, accepted with --allow-weak-thresholds: a pass does not mean much."""
    return [f"warning: weak threshold accepted ({WEAK_FLAG}): {w}" for w in report.weak_thresholds]


def format_text(report: VerifyReport) -> str:
    parts = [f"error: {e}" for e in report.errors] + weak_lines(report)
    if report.rows:
        notes: list[str] = []
        parts.append(text_table(HEADERS, rows_table(report, notes), right={2, 4, 5, 6, 7, 8, 9}))
        parts += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    parts += reference_lines(report)
    parts += report.repairs
    parts += host_lines(report)
    parts.append(summary_line(report))
    return "\n".join(parts)


def write_json(report: VerifyReport, path) -> Path:
    return atomic_write_json(path, report.to_dict())


def write_junit(report: VerifyReport, path) -> Path:
    suite = ET.Element("testsuite", name="swedge.verify", tests=str(len(report.rows) + len(report.errors)),
                       failures=str(sum(r.status == "fail" for r in report.rows) + len(report.errors)),
                       skipped=str(sum(r.status == "skipped" for r in report.rows)))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="host", value=describe(report.host))
    ET.SubElement(props, "property", name="export_host",
                  value=describe(report.export_host) if report.export_host else "not recorded")
    for e in report.errors:
        case = ET.SubElement(suite, "testcase", classname="bundle", name="bundle")
        ET.SubElement(case, "failure", message=e)
    for r in report.rows:
        case = ET.SubElement(suite, "testcase", classname=f"{r.format}.{r.runtime}", name=f"w{r.width:g}-{r.precision}",
                             time=f"{r.harness_s:.3f}")
        if r.status == "fail":
            ET.SubElement(case, "failure", message=r.reason)
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.reason)
        ET.SubElement(case, "system-out").text = json.dumps(r.to_dict())
    return atomic_write_bytes(path, ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def _heatmap(report: VerifyReport, folder: Path) -> tuple[str | None, str]:
    m = report.matrix
    if not m.get("labels"):
        return None, "no artifact produced features"
    try:
        from swedge.report.heatmap import save_heatmap
    except ImportError as exc:  # pragma: no cover - device side without matplotlib
        return None, f"heat-map left out: {exc}"
    try:
        path = save_heatmap(m["map"], m["labels"], folder / "compatibility.png", columns=m["columns"],
                            title="probe mAP (%): query model (rows) x gallery model (columns)",
                            xlabel="gallery model", ylabel="query model")
    except ImportError as exc:
        return None, f"heat-map left out (pip install matplotlib): {exc}"
    return Path(path).name, ""


def write_markdown(report: VerifyReport, folder) -> Path:
    folder = Path(folder)
    png, why = _heatmap(report, folder)
    lines = [f"# swedge verify: {report.bundle}", "", f"**{summary_line(report)}**", ""]
    lines += [f"- error: {e}" for e in report.errors] + [f"- {w}" for w in weak_lines(report)]
    lines += ["## Artifacts", "", markdown_table(HEADERS, rows_table(report)), "", "## Torch sub-models (reference)", ""]
    lines += [f"- {s}" for s in reference_lines(report)]
    if report.repairs:
        lines += ["", "## Int8 repair (at export)", ""] + [f"- {s}" for s in report.repairs]
    lines += ["", "## Hosts", ""] + [f"- {s.strip()}" for s in host_lines(report)]
    lines += ["", "## Compatibility matrix", ""]
    lines += [f"![compatibility]({png})" if png else f"({why})", ""]
    if report.matrix.get("labels"):
        cols = report.matrix["columns"]
        lines.append(markdown_table(["query \\ gallery"] + cols,
                                    [[lab] + [f"{v:.2f}" for v in row]
                                     for lab, row in zip(report.matrix["labels"], report.matrix["map"])]))
    lines += ["", "Thresholds: " + ", ".join(f"{k}={v}" for k, v in report.thresholds.items())]
    if report.baseline:
        lines.append(f"Baseline: {report.baseline}")
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(folder / "report.md", text.encode())
    _write_html(report, folder, png, why)
    return folder / "report.md"


def _write_html(report: VerifyReport, folder: Path, png: str | None, why: str) -> Path:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
    body = []
    for r, cells in zip(report.rows, rows_table(report)):
        cls = {"pass": "ok", "fail": "bad"}.get(r.status, "skip")
        body.append(f"<tr class='{cls}'>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    errors = "".join(f"<p class='bad'>{esc(e)}</p>" for e in [f"error: {e}" for e in report.errors]
                     + weak_lines(report))
    img = f"<img src='{esc(png)}' alt='compatibility matrix'>" if png else f"<p>{esc(why)}</p>"
    refs = "".join(f"<li>{esc(s)}</li>" for s in reference_lines(report))
    hosts = "".join(f"<li>{esc(s.strip())}</li>" for s in host_lines(report))
    page = f"""<!doctype html><meta charset="utf-8"><title>swedge verify</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:3px 8px;font-size:13px}}tr.ok td{{background:#eaf7ea}}tr.bad td{{background:#fbe9e9}}
tr.skip td{{color:#777}}.bad{{color:#a00}}</style>
<h1>swedge verify</h1><p>{esc(report.bundle)}</p><h2 class='{"ok" if report.passed else "bad"}'>
{esc(summary_line(report))}</h2>{errors}<table><tr>{head}</tr>{''.join(body)}</table>
<h2>Torch sub-models</h2><ul>{refs}</ul><h2>Hosts</h2><ul>{hosts}</ul><h2>Compatibility matrix</h2>{img}"""
    return atomic_write_bytes(folder / "report.html", page.encode())
