"""Validation of every manifest field the harness, bench and runners read, before anything runs (torch-free).

Each problem is one :class:`FieldProblem` naming the field (``artifacts[2].width``) and what it should be;
``read_manifest`` adds the file and the fix. Paths are checked for type here and for where they resolve in
``bundle_files.inside``.
"""

from __future__ import annotations

import math
import re

from swedge.exporters.formats import FORMATS, PRECISIONS, runner_modules

STATUSES = ("ok", "skipped", "failed")
SECTIONS = {"checkpoint": dict, "artifacts": list, "probe": dict, "references": dict, "input": dict, "output": dict}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FieldProblem(ValueError):
    def __init__(self, field: str, problem: str):
        super().__init__(f"'{field}' {problem}")
        self.field = field


def _get(d: dict, key: str, field: str):
    if key not in d:
        raise FieldProblem(field, "is missing")
    return d[key]


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldProblem(field, f"must be a finite number, got {value!r}")
    return float(value)


def _width(value, field: str) -> float:
    w = _number(value, field)
    if not 0 < w <= 1:
        raise FieldProblem(field, f"must be a width in (0, 1], got {value!r}")
    return w


def _positive_int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FieldProblem(field, f"must be a positive integer, got {value!r}")
    return value


def _text(value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise FieldProblem(field, f"must be a non-empty string, got {value!r}")
    return value


def _path(value, field: str) -> str:
    if "\0" in _text(value, field) or value.strip("./") == "":
        raise FieldProblem(field, f"is not a usable relative path: {value!r}")
    return value


def _sha256(value, field: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise FieldProblem(field, f"must be a sha256 (64 lowercase hex digits), got {value!r}")
    return value


def _names(value, field: str, known) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise FieldProblem(field, f"must be a non-empty list of names, got {value!r}")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise FieldProblem(field, f"has unknown name(s) {unknown}; known: {', '.join(known)}")
    return value


def check_manifest(m: dict) -> None:
    """Raise FieldProblem for the first field that is missing, of the wrong type, out of range or inconsistent."""
    for key, kind in SECTIONS.items():
        if not isinstance(_get(m, key, key), kind):
            raise FieldProblem(key, f"must be a JSON {'object' if kind is dict else 'list'}, got "
                               f"{type(m[key]).__name__}")
    ck = m["checkpoint"]
    widths = _get(ck, "widths", "checkpoint.widths")
    if not isinstance(widths, list) or not widths:
        raise FieldProblem("checkpoint.widths", f"must be a non-empty list of widths in (0, 1], got {widths!r}")
    widths = {_width(w, f"checkpoint.widths[{i}]") for i, w in enumerate(widths)}
    _text(_get(ck, "path", "checkpoint.path"), "checkpoint.path")
    _sha256(_get(ck, "sha256", "checkpoint.sha256"), "checkpoint.sha256")

    shape = _get(m["input"], "shape", "input.shape")
    if (not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                   for s in shape)
            or (shape[0] != -1 and shape[0] < 1) or min(shape[1:]) < 1):
        raise FieldProblem("input.shape", f"must be [N, C, H, W] (N = -1 for any batch), got {shape!r}")
    _positive_int(_get(m["output"], "dim", "output.dim"), "output.dim")

    p = m["probe"]
    for key in ("inputs", "labels"):
        _path(_get(p, key, f"probe.{key}"), f"probe.{key}")
        _sha256(_get(p, f"{key}_sha256", f"probe.{key}_sha256"), f"probe.{key}_sha256")

    # The server width's reference is stored even when that width is not exported (verify's cross-test needs it).
    server = _width(m.get("server_width", max(widths)), "server_width")
    refs = m["references"]
    if not refs:
        raise FieldProblem("references", "is empty: the bundle has no reference features")
    for key, r in refs.items():
        field = f"references.{key}"
        try:
            w = float(key)
        except ValueError:
            raise FieldProblem("references", f"has key {key!r}, which is not a width") from None
        if w not in widths | {server}:
            raise FieldProblem(field, f"is a width the manifest lists neither in 'checkpoint.widths' "
                               f"({sorted(widths)}) nor as 'server_width' ({server:g})")
        if not isinstance(r, dict):
            raise FieldProblem(field, f"must be an object with 'path' and 'sha256', got {r!r}")
        _path(_get(r, "path", f"{field}.path"), f"{field}.path")
        _sha256(_get(r, "sha256", f"{field}.sha256"), f"{field}.sha256")
    if server not in {float(k) for k in refs}:
        raise FieldProblem("server_width", f"is {server:g}, but 'references' has no features of that width")
    _check_artifacts(m["artifacts"], {float(k) for k in refs})


def _check_artifacts(artifacts: list, ref_widths: set[float]) -> None:
    ids = set()
    for i, a in enumerate(artifacts):
        f = f"artifacts[{i}]"
        if not isinstance(a, dict):
            raise FieldProblem(f, f"must be an object, got {type(a).__name__}")
        aid = _text(_get(a, "id", f"{f}.id"), f"{f}.id")
        if aid in ids:
            raise FieldProblem(f"{f}.id", f"repeats the id {aid!r} of an earlier artifact")
        ids.add(aid)
        fmt = _get(a, "format", f"{f}.format")
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise FieldProblem(f"{f}.format", f"is {fmt!r}; known formats: {', '.join(FORMATS)}")
        if _width(_get(a, "width", f"{f}.width"), f"{f}.width") not in ref_widths:
            raise FieldProblem(f"{f}.width", f"is {a['width']!r}, a width without reference features (the bundle "
                               f"has {', '.join(f'{w:g}' for w in sorted(ref_widths))})")
        if not isinstance(_get(a, "precision", f"{f}.precision"), str) or a["precision"] not in PRECISIONS:
            raise FieldProblem(f"{f}.precision", f"is {a['precision']!r}; known: {', '.join(PRECISIONS)}")
        if not isinstance(_get(a, "status", f"{f}.status"), str) or a["status"] not in STATUSES:
            raise FieldProblem(f"{f}.status", f"is {a['status']!r}; known: {', '.join(STATUSES)}")
        if "reason" in a and not isinstance(a["reason"], str):
            raise FieldProblem(f"{f}.reason", f"must be a string, got {a['reason']!r}")
        if a["status"] != "ok":
            continue
        _path(_get(a, "path", f"{f}.path"), f"{f}.path")
        _sha256(_get(a, "sha256", f"{f}.sha256"), f"{f}.sha256")
        if a.get("runtimes") is not None:
            _names(a["runtimes"], f"{f}.runtimes", runner_modules())
        for key in ("quantization", "engine"):  # read by the runners (TensorRT's build options)
            if a.get(key) is not None and not isinstance(a[key], dict):
                raise FieldProblem(f"{f}.{key}", f"must be an object or null, got {a[key]!r}")
        if a.get("providers") is not None:  # onnxruntime execution providers
            if not isinstance(a["providers"], list) or not all(isinstance(n, str) for n in a["providers"]):
                raise FieldProblem(f"{f}.providers", f"must be a list of provider names, got {a['providers']!r}")
        if "files" in a:
            files = a["files"]
            if not isinstance(files, list) or not all(isinstance(n, str) and n for n in files):
                raise FieldProblem(f"{f}.files", f"must be a list of file names, got {files!r}")
