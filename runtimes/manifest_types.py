"""The bundle's manifest.json as typed records: the contract between `swedge export` and its readers (torch-free).

:class:`Manifest` holds a :class:`SourceCheckpoint`, :class:`InputSpec`, :class:`OutputSpec`, :class:`ProbeEntry`,
a :class:`ReferenceEntry` per width and an :class:`ArtifactEntry` per artifact, all frozen dataclasses. The
writer builds them and writes ``to_dict()``; readers get them from ``from_dict``, which checks every field (type,
range, known names, bundle paths that stay inside the bundle) and raises one :class:`FieldProblem` naming the first
wrong field (``artifacts[2].sha256``); ``read_manifest`` adds the file and the fix, and checks on disk that no
path passes through a symlink (``bundle_files.inside``).

``to_dict`` writes the keys in the order the writer always has, so ``to_dict(from_dict(d)) == d`` and
manifest.json stays byte-for-byte what it was. A field that is None is an absent key, except where its ``always``
says the writer writes it as null; keys no field names are kept as they were (``extra``).
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Iterable, NamedTuple

from swedge.data.preprocess import Preprocess
from swedge.errors import SwedgeError
from swedge.exporters.formats import FORMATS, PRECISIONS, runner_modules
from swedge.runtimes.bundle_files import outside_problem

STATUSES = ("ok", "skipped", "failed")


class FieldProblem(SwedgeError):
    """One manifest field is missing, of the wrong type, out of range or inconsistent with another."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"'{field}' {problem}")
        self.field = field


# -- field readers: (JSON value, field name) -> the value to store, or FieldProblem ----------------------------
def _object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise FieldProblem(name, f"must be a JSON object, got {type(value).__name__}")
    return value


def _or_null(read: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """``read``, where JSON null is a value too (None)."""
    return lambda value, name: None if value is None else read(value, name)


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldProblem(name, f"must be a finite number, got {value!r}")
    return value  # as read (1 stays 1, 1.0 stays 1.0): the round trip keeps the JSON's bytes


def _non_negative(value, name: str) -> float:
    if _number(value, name) < 0:
        raise FieldProblem(name, f"must be >= 0, got {value!r}")
    return value


def _width(value, name: str) -> float:
    if not 0 < _number(value, name) <= 1:
        raise FieldProblem(name, f"must be a width in (0, 1], got {value!r}")
    return value


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldProblem(name, f"must be an integer, got {value!r}")
    return value


def _positive_int(value, name: str) -> int:
    if _int(value, name) < 1:
        raise FieldProblem(name, f"must be a positive integer, got {value!r}")
    return value


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise FieldProblem(name, f"must be true or false, got {value!r}")
    return value


def _text(value, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise FieldProblem(name, f"must be a non-empty string, got {value!r}")
    return value


def _string(value, name: str) -> str:  # may be empty (a reason, a note)
    if not isinstance(value, str):
        raise FieldProblem(name, f"must be a string, got {value!r}")
    return value


def _matching(pattern: str, what: str) -> Callable[[Any, str], str]:
    """A string that ``pattern`` matches whole."""
    regex = re.compile(pattern)

    def read(value, name: str) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise FieldProblem(name, f"must be {what}, got {value!r}")
        return value
    return read


_sha256 = _matching(r"[0-9a-f]{64}", "a sha256 (64 lowercase hex digits)")
_batch = _matching(r"dynamic|static:[1-9][0-9]*", "'dynamic' or 'static:N'")


def _path(value, name: str) -> str:
    """A path relative to the bundle folder that stays inside it (links are checked on disk, by the reader)."""
    if "\0" in _text(value, name) or value.strip("./") == "":
        raise FieldProblem(name, f"is not a usable relative path: {value!r}")
    if problem := outside_problem(value):
        raise FieldProblem(name, problem)
    return value


def _known(known: Iterable[str] | Callable[[], Iterable[str]]) -> tuple[str, ...]:
    return tuple(known() if callable(known) else known)


def _one_of(known: Iterable[str] | Callable[[], Iterable[str]]) -> Callable[[Any, str], str]:
    """One of ``known`` (a function of no argument is called at each read: the format table may grow)."""
    def read(value, name: str) -> str:
        if not isinstance(value, str) or value not in _known(known):
            raise FieldProblem(name, f"is {value!r}; known: {', '.join(_known(known))}")
        return value
    return read


def _list(item: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple]:
    def read(value, name: str) -> tuple:
        if not isinstance(value, list):
            raise FieldProblem(name, f"must be a JSON list, got {value!r}")
        return tuple(item(v, f"{name}[{i}]") for i, v in enumerate(value))
    return read


def _names(known: Callable[[], Iterable[str]]) -> Callable[[Any, str], tuple]:
    """A non-empty list of ``known()`` names."""
    def read(value, name: str) -> tuple:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise FieldProblem(name, f"must be a non-empty list of names, got {value!r}")
        if unknown := [v for v in value if v not in _known(known)]:
            raise FieldProblem(name, f"has unknown name(s) {unknown}; known: {', '.join(_known(known))}")
        return tuple(value)
    return read


def _strings_map(value, name: str) -> dict:
    for key, v in _object(value, name).items():
        _string(v, f"{name}.{key}")
    return value


def _widths(value, name: str) -> tuple:
    if not isinstance(value, list) or not value:
        raise FieldProblem(name, f"must be a non-empty list of widths in (0, 1], got {value!r}")
    return _list(_width)(value, name)


def _shape(value, name: str) -> tuple:
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in value)
            or (value[0] != -1 and value[0] < 1) or min(value[1:]) < 1):
        raise FieldProblem(name, f"must be [N, C, H, W] (N = -1 for any batch), got {value!r}")
    return tuple(value)


def _preprocess(value, name: str) -> Preprocess:
    try:
        return Preprocess.from_dict(value)
    except SwedgeError as exc:
        raise FieldProblem(name, f"is wrong: {exc}") from None


def _export_host(value, name: str) -> dict:
    from swedge.runtimes.host import record_problem

    if problem := record_problem(value):
        raise FieldProblem(name, problem)
    return value


def _gate(value, name: str) -> dict:
    """A gate check of --int8-repair (``exporters.repair.ExportGate.check``): the ΔmAP is what summaries read."""
    if _object(value, name).get("runtime") is not None:
        _number(value.get("delta_map"), f"{name}.delta_map")
    return value


# -- records -------------------------------------------------------------------------------------------------
def _field(read: Callable[[Any, str], Any], *, required: bool = False, always: bool | Callable = False):
    """A record field: ``read`` checks and converts its JSON value; optional ones default to None (absent key).
    ``always``: written even when None (as null), or a predicate on the record saying when."""
    meta = {"read": read, "always": always}
    return field(metadata=meta) if required else field(default=None, metadata=meta)


def _extra():
    """The keys no field names, kept as read (written after the fields)."""
    return field(default_factory=dict, metadata={"extra": True})


def _json(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


class _Record:
    """``from_dict`` / ``to_dict`` from the fields' metadata (see :func:`_field`)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if isinstance(getattr(self, f.name), list):  # a writer's list: the tuple from_dict reads
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

    def _check(self, name: str) -> None:
        """Checks across fields, after each field was read."""

    @classmethod
    def keywords(cls, d: dict) -> dict:
        """``d``'s keys as keyword arguments: those a field names, the others under ``extra``."""
        named = {f.name for f in fields(cls) if not f.metadata.get("extra")}
        return {**{k: v for k, v in d.items() if k in named}, "extra": {k: v for k, v in d.items() if k not in named}}

    @classmethod
    def from_dict(cls, d, name: str = "manifest"):
        d = _object(d, name)
        prefix = f"{name}." if name != "manifest" else ""  # the top level's fields are named plainly
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.metadata.get("extra"):
                values[f.name] = cls.keywords(d)["extra"]
            elif f.name in d:
                values[f.name] = f.metadata["read"](d[f.name], prefix + f.name)
            elif f.default is MISSING:
                raise FieldProblem(prefix + f.name, "is missing")
        record = cls(**values)
        record._check(name)
        return record

    def to_dict(self) -> dict:
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("extra"):
                out.update(_json(value))
            elif value is not None or (f.metadata["always"](self) if callable(f.metadata["always"])
                                       else f.metadata["always"]):
                out[f.name] = _json(value)
        return out


@dataclass(frozen=True, kw_only=True)
class SourceCheckpoint(_Record):
    """The checkpoint the bundle was exported from (its path on the export host, not a bundle file)."""

    path: str = _field(_text, required=True)
    sha256: str = _field(_sha256, required=True)
    tensors_sha256: str | None = _field(_or_null(_sha256), always=True)
    arch: str | None = _field(_text)
    widths: tuple[float, ...] = _field(_widths, required=True)
    embedding_dim: int | None = _field(_positive_int)
    method: str | None = _field(_or_null(_text), always=True)


@dataclass(frozen=True, kw_only=True)
class InputSpec(_Record):
    name: str | None = _field(_text)
    shape: tuple[int, ...] = _field(_shape, required=True)
    dtype: str | None = _field(_one_of(("float32",)))
    layout: str | None = _field(_one_of(("NCHW",)))


@dataclass(frozen=True, kw_only=True)
class OutputSpec(_Record):
    name: str | None = _field(_text)
    dim: int = _field(_positive_int, required=True)
    dtype: str | None = _field(_one_of(("float32",)))


@dataclass(frozen=True, kw_only=True)
class ProbeEntry(_Record):
    """The probe set: preprocessed inputs and their query / gallery labels."""

    inputs: str = _field(_path, required=True)
    labels: str = _field(_path, required=True)
    inputs_sha256: str = _field(_sha256, required=True)
    labels_sha256: str = _field(_sha256, required=True)
    count: int | None = _field(_positive_int)
    queries: int | None = _field(_positive_int)
    source: str | None = _field(_string)

    def _check(self, name: str) -> None:
        if self.count is not None and self.queries is not None and self.queries >= self.count:
            raise FieldProblem(f"{name}.queries", f"is {self.queries}, but the probe of {self.count} rows needs "
                               "gallery rows too")


@dataclass(frozen=True, kw_only=True)
class ReferenceEntry(_Record):
    """The torch sub-model's features of one width on the probe."""

    path: str = _field(_path, required=True)
    sha256: str = _field(_sha256, required=True)
    parameters: int | None = _field(_positive_int)


@dataclass(frozen=True, kw_only=True)
class Parity(_Record):
    """The straight-after-export check on the first probe rows (runtime None: none ran at export)."""

    runtime: str | None = _field(_or_null(_text), always=True)
    rows: int | None = _field(_positive_int)
    cosine_min: float | None = _field(_number)
    cosine_mean: float | None = _field(_number)
    skipped: str | None = _field(_string)


@dataclass(frozen=True, kw_only=True)
class Repair(_Record):
    """What `swedge export --int8-repair` did to an int8 artifact (needed None: the gate could not run there)."""

    before: dict = _field(_gate, required=True)
    needed: bool | None = _field(_or_null(_bool), always=True)
    repaired: bool | None = _field(_bool)
    kept_float: tuple[str, ...] | None = _field(_list(_text))  # the layers left float, most sensitive first
    after: dict | None = _field(_gate)
    tries: tuple[dict, ...] | None = _field(_list(_object))
    stopping: str | None = _field(_string)
    ranking: dict | None = _field(_object)
    reason: str | None = _field(_string)  # why not repaired

    def _check(self, name: str) -> None:
        if not self.needed:  # passed as exported, or not checked: nothing more is read
            return
        if self.before.get("runtime") is None:
            raise FieldProblem(f"{name}.before.runtime", "is missing: a repair was needed, so the gate ran")
        for key in ("repaired", "kept_float", "after") if self.repaired else ("repaired",):
            if getattr(self, key) is None:
                raise FieldProblem(f"{name}.{key}", "is missing")


def _repair(value, name: str) -> Repair:
    if not isinstance(value, dict):
        raise FieldProblem(name, f"is a malformed 'repair' record (not a JSON object): {value!r}")
    return Repair.from_dict(value, name)


@dataclass(frozen=True, kw_only=True)
class ArtifactEntry(_Record):
    """One exported artifact; the fields from ``path`` on are written for ``status`` "ok" only."""

    id: str = _field(_text, required=True)
    format: str = _field(_one_of(lambda: FORMATS), required=True)
    width: float = _field(_width, required=True)
    precision: str = _field(_one_of(PRECISIONS), required=True)
    path: str | None = _field(_path)
    sha256: str | None = _field(_sha256)
    bytes: int | None = _field(_positive_int)
    export_seconds: float | None = _field(_non_negative)
    status: str = _field(_one_of(STATUSES), required=True)
    reason: str | None = _field(_string)  # why skipped or failed
    runtimes: tuple[str, ...] | None = _field(_names(runner_modules))
    batch: str | None = _field(_batch)
    tools: dict | None = _field(_strings_map)
    quantization: dict | None = _field(_or_null(_object), always=lambda a: a.status == "ok")
    notes: tuple[str, ...] | None = _field(_list(_string))
    # format-specific facts (the exporter's ExportResult.extra); the runners read files, engine and providers
    files: tuple[str, ...] | None = _field(_list(_path))  # a folder artifact's files (OpenVINO IR)
    engine: dict | None = _field(_or_null(_object))  # TensorRT: the engine built, or why not
    providers: tuple[str, ...] | None = _field(_list(_text))  # onnxruntime execution providers
    opset: int | None = _field(_positive_int)
    deployment_target: str | None = _field(_text)
    compute_precision: str | None = _field(_one_of(PRECISIONS))
    layout: str | None = _field(_one_of(("NCHW",)))
    input_dtype: str | None = _field(_text)
    output_dtype: str | None = _field(_text)
    input_shape: tuple[int, ...] | None = _field(_list(_int))
    input_quantization: tuple[float, ...] | None = _field(_list(_number))  # (scale, zero point)
    output_quantization: tuple[float, ...] | None = _field(_list(_number))
    extra: dict = _extra()
    parity: Parity | None = _field(Parity.from_dict)
    repair: Repair | None = _field(_repair)

    def _check(self, name: str) -> None:
        if self.status == "ok":
            for key in ("path", "sha256"):
                if getattr(self, key) is None:
                    raise FieldProblem(f"{name}.{key}", "is missing")


class Listed(NamedTuple):
    """A file the manifest lists: its bundle path, sha256, the field naming it, and a folder's listed files."""

    path: str
    sha256: str
    field: str
    files: tuple[str, ...] | None = None


def _references(value, name: str) -> dict[str, ReferenceEntry]:
    out = {}
    for key, entry in _object(value, name).items():
        try:
            float(key)
        except ValueError:
            raise FieldProblem(name, f"has key {key!r}, which is not a width") from None
        out[key] = ReferenceEntry.from_dict(entry, f"{name}.{key}")
    return out


@dataclass(frozen=True, kw_only=True)
class Manifest(_Record):
    """manifest.json (docs/design.md §5); keys in the writer's order (the probe, stored first, is written last)."""

    schema: str = _field(_text, required=True)
    schema_version: int = _field(_positive_int, required=True)
    created: str | None = _field(_text)
    swedge_version: str | None = _field(_text)
    checkpoint: SourceCheckpoint = _field(SourceCheckpoint.from_dict, required=True)
    server_width: float | None = _field(_width)  # absent in bundles exported before it was recorded
    preprocess: Preprocess | None = _field(_preprocess)
    input: InputSpec = _field(InputSpec.from_dict, required=True)
    output: OutputSpec = _field(OutputSpec.from_dict, required=True)
    calibration: dict | None = _field(_or_null(_object), always=True)
    tools: dict | None = _field(_strings_map)
    export_host: dict | None = _field(_export_host)  # absent in bundles exported before it existed
    references: dict[str, ReferenceEntry] = _field(_references, required=True)
    artifacts: tuple[ArtifactEntry, ...] = _field(_list(ArtifactEntry.from_dict), required=True)
    probe: ProbeEntry = _field(ProbeEntry.from_dict, required=True)
    device: dict | None = _field(_object)  # a `swedge select --out` sub-bundle: the device it was chosen for
    extra: dict = _extra()

    @property
    def server(self) -> float:
        """The server width: every width's cross-test is against its gallery."""
        return self.server_width if self.server_width is not None else max(self.checkpoint.widths)

    def listed_files(self) -> list[Listed]:
        """Every file the manifest lists: probe, references, exported artifacts."""
        p = self.probe
        out = [Listed(p.inputs, p.inputs_sha256, "probe.inputs"), Listed(p.labels, p.labels_sha256, "probe.labels")]
        out += [Listed(r.path, r.sha256, f"references.{w}.path") for w, r in self.references.items()]
        out += [Listed(a.path, a.sha256, f"artifacts[{i}].path", a.files)
                for i, a in enumerate(self.artifacts) if a.status == "ok"]
        return out

    def _check(self, name: str) -> None:
        widths, server = set(self.checkpoint.widths), self.server
        if self.preprocess is not None and tuple(self.input.shape[2:]) != self.preprocess.size:
            raise FieldProblem("input.shape", f"is {list(self.input.shape)}, but 'preprocess.size' is "
                               f"{list(self.preprocess.size)}: the probe and the device would not agree")
        # The server width's reference is stored even when that width is not exported (verify's cross-test).
        if not self.references:
            raise FieldProblem("references", "is empty: the bundle has no reference features")
        for key in self.references:
            if float(key) not in widths | {server}:
                raise FieldProblem(f"references.{key}", f"is a width the manifest lists neither in "
                                   f"'checkpoint.widths' ({sorted(widths)}) nor as 'server_width' ({server:g})")
        ref_widths = {float(k) for k in self.references}
        if server not in ref_widths:
            raise FieldProblem("server_width", f"is {server:g}, but 'references' has no features of that width")
        ids: set[str] = set()
        for i, a in enumerate(self.artifacts):
            if a.id in ids:
                raise FieldProblem(f"artifacts[{i}].id", f"repeats the id {a.id!r} of an earlier artifact")
            ids.add(a.id)
            if a.width not in ref_widths:
                raise FieldProblem(f"artifacts[{i}].width", f"is {a.width!r}, a width without reference features "
                                   f"(the bundle has {', '.join(f'{w:g}' for w in sorted(ref_widths))})")
