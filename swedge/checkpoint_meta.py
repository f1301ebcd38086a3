"""A checkpoint's metadata (the "swedge" JSON in its safetensors header): the digest that seals it, and the
check of every field the code later reads, so an edited or damaged header is refused at load, naming the field.

The tensors' sha256 is one field of the metadata, so the header digest covers the whole file's content.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from swedge.errors import CheckpointError, SwedgeError

if TYPE_CHECKING:  # pragma: no cover
    from swedge.data.preprocess import Preprocess

FORMAT_VERSION = 2  # 2: the metadata carries HEADER_DIGEST_KEY
DIGEST_SINCE = 2  # version 1 files predate the digest: still read, with a note
HEADER_DIGEST_KEY = "header_sha256"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_noted: set[str] = set()


def header_digest(meta: dict) -> str:
    """sha256 of the metadata without its digest, as canonical JSON (key order and spacing do not count)."""
    body = {k: v for k, v in meta.items() if k != HEADER_DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(meta: dict) -> dict:
    return {**meta, HEADER_DIGEST_KEY: header_digest(meta)}


def parse_meta(path: Path, raw) -> dict:
    """The metadata of ``path`` from its raw JSON text: version, digest and every field checked."""
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a swedge checkpoint (no 'swedge' metadata)")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object, got {type(meta).__name__}: the header is "
                              "damaged; use the checkpoint its training run wrote")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        _bad(path, "format_version", f"must be a whole number >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this swedge reads up to "
                              f"{FORMAT_VERSION}: upgrade swedge")
    digest = meta.get(HEADER_DIGEST_KEY)
    if digest is None and version >= DIGEST_SINCE:
        raise CheckpointError(f"{path}: the header was modified: its '{HEADER_DIGEST_KEY}' is missing; use the "
                              "checkpoint its training run wrote")
    if digest is not None and digest != header_digest(meta):
        raise CheckpointError(f"{path}: the header was modified after saving (its metadata does not match its "
                              f"'{HEADER_DIGEST_KEY}'); use the checkpoint its training run wrote")
    if digest is None:
        note(path, f"{path} is a format-{version} checkpoint: its metadata (preprocessing, widths, method) is not "
             "covered by a digest; re-save it with this swedge to seal it")
    check_fields(path, meta)
    return meta


def note(path: Path, message: str, kind: str = "note") -> None:
    """One line on stderr, once per file and process (a bundle export loads its checkpoint more than once)."""
    key = f"{kind}:{Path(path).resolve()}"
    if key not in _noted:
        _noted.add(key)
        print(f"swedge: {kind}: {message}", file=sys.stderr)


def check_fields(path: Path, meta: dict) -> None:
    """Type, range and enumerated value of every field swedge reads; the first wrong one is named."""
    for key in ("model", "preprocess", "tensors_sha256"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata lacks '{key}'")
    if not isinstance(meta["tensors_sha256"], str) or not _SHA256.match(meta["tensors_sha256"]):
        _bad(path, "tensors_sha256", "must be 64 lower-case hex digits")
    for key in ("model", "preprocess", "method", "training", "extra", "versions"):
        if not isinstance(meta.get(key, {}), dict):
            _bad(path, key, f"must be a JSON object, got {type(meta[key]).__name__}")
    _check_model(path, meta["model"])
    parse_preprocess(path, meta["preprocess"])
    _check_method(path, meta.get("method", {}))
    _check_training(path, meta.get("training", {}))
    extra = meta.get("extra", {})
    for key in ("phase", "epochs_done", "steps_done"):
        if key in extra and (not _is_int(extra[key]) or extra[key] < 0):
            _bad(path, f"extra.{key}", f"must be a whole number >= 0, got {extra[key]!r}")
    if "complete" in extra and not isinstance(extra["complete"], bool):
        _bad(path, "extra.complete", f"must be true or false, got {extra['complete']!r}")


def _check_model(path: Path, model: dict) -> None:
    from swedge.nn.backbones import BACKBONES
    from swedge.nn.model import CLASSIFIER_KINDS, EVIDENTIAL_BIAS_KINDS, MEMBER_KINDS, NECK_SHIFT_KINDS
    from swedge.nn.slimmable import check_widths

    if model.get("arch") not in BACKBONES:
        _bad(path, "model.arch", f"is {model.get('arch')!r}, not one of {BACKBONES.names()}")
    widths = model.get("widths")
    if not isinstance(widths, list) or not all(_is_number(w) for w in widths):
        _bad(path, "model.widths", f"must be a list of numbers, got {widths!r}")
    try:
        check_widths(widths)
    except ValueError as exc:
        _bad(path, "model.widths", str(exc))
    for key in ("embedding_dim", "num_classes"):
        if not _is_int(model.get(key)) or model[key] < 1:
            _bad(path, f"model.{key}", f"must be a whole number >= 1, got {model.get(key)!r}")
    extra = model.get("extra", {})
    if not isinstance(extra, dict):
        _bad(path, "model.extra", f"must be a JSON object, got {type(extra).__name__}")
    allowed = {"classifier": CLASSIFIER_KINDS, "members": MEMBER_KINDS, "evidential_bias": EVIDENTIAL_BIAS_KINDS,
               "neck_shift": NECK_SHIFT_KINDS}
    for key, value in extra.items():
        if key not in allowed or value not in allowed[key]:
            _bad(path, f"model.extra.{key}", f"is {value!r}; known: " +
                 "; ".join(f"{k} in {list(v)}" for k, v in allowed.items()))


def parse_preprocess(path: Path, preprocess: dict) -> Preprocess:
    """The header's preprocessing as the typed record; a CheckpointError naming the field when it is wrong."""
    from swedge.data.preprocess import Preprocess

    try:
        return Preprocess.from_dict(preprocess)
    except SwedgeError as exc:
        _bad(path, "preprocess", f"is wrong: {exc}")


def _check_method(path: Path, method: dict) -> None:
    """Empty (a library caller's checkpoint), or a registered method and options it has."""
    import dataclasses

    from swedge.methods import METHODS

    if not method:
        return
    name = method.get("name")
    if name not in METHODS:
        _bad(path, "method.name", f"is {name!r}, not one of {METHODS.names()}")
    options = method.get("options", {})
    known = {f.name for f in dataclasses.fields(METHODS.get(name).Options)}
    if not isinstance(options, dict) or not set(options) <= known:
        _bad(path, "method.options", f"must be an object with keys from {sorted(known)}, got {options!r}")


def _check_training(path: Path, training: dict) -> None:
    from swedge.training.config import AMP_MODES, OPTIMIZERS, SCHEDULES

    for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("amp", AMP_MODES)):
        if key in training and training[key] not in allowed:
            _bad(path, f"training.{key}", f"is {training[key]!r}, not one of {list(allowed)}")
    for key, low in (("epochs", 1), ("max_steps", 0)):
        if key in training and (not _is_int(training[key]) or training[key] < low):
            _bad(path, f"training.{key}", f"must be a whole number >= {low}, got {training[key]!r}")
    # --init FILE: its path as given, its file name and the sha256 of its content
    for key in ("init", "init_name"):
        if key in training and not isinstance(training[key], str):
            _bad(path, f"training.{key}", f"must be a string, got {training[key]!r}")
    if "init_sha256" in training and not (isinstance(training["init_sha256"], str)
                                          and _SHA256.match(training["init_sha256"])):
        _bad(path, "training.init_sha256", f"must be 64 lower-case hex digits, got {training['init_sha256']!r}")
    if ("init_sha256" in training) != ("init_name" in training):
        _bad(path, "training.init_sha256", "and training.init_name come together (both or neither)")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _bad(path: Path, field: str, problem: str):
    raise CheckpointError(f"{path}: header field '{field}' {problem}: the header is damaged or was edited; use "
                          "the checkpoint its training run wrote")
