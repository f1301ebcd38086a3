"""One safetensors file per checkpoint: tensors + JSON metadata in the safetensors header.

Metadata (key "swedge"): format version, model config (arch, widths, embedding dim, num ids), preprocessing,
method and training config, library versions, and the sha256 of the tensors. Loading never unpickles; every
way a file can be wrong ends in one CheckpointError that names the problem.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from swedge import __version__
from swedge.errors import CheckpointError
from swedge.io import atomic_write_bytes
from swedge.nn.model import ModelConfig, SwitchableEmbedder, build_model

FORMAT_VERSION = 1
META_KEY = "swedge"


@dataclass
class Checkpoint:
    model: SwitchableEmbedder
    config: ModelConfig
    preprocess: dict
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    file_sha256: str = ""

    @property
    def widths(self) -> tuple[float, ...]:
        return self.config.widths


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hash of names, dtypes, shapes and raw bytes, in name order (independent of the file layout)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path, model: SwitchableEmbedder, *, preprocess: dict, method: dict | None = None,
                    training: dict | None = None, extra: dict | None = None) -> Path:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "preprocess": preprocess,
        "method": method or {},
        "training": training or {},
        "extra": extra or {},
        "versions": {"swedge": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensors_sha256": tensors_sha256(tensors),
    }
    return atomic_write_bytes(path, save(tensors, metadata={META_KEY: json.dumps(meta)}))


def read_metadata(path) -> dict:
    """The checkpoint's metadata without loading the tensors (cheap; used by `swedge eval --help`-style listings)."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt: {exc})") from None
    return _parse_meta(path, raw)


def load_checkpoint(path, *, widths=None, arch: str | None = None) -> Checkpoint:
    """Load and validate a checkpoint. ``widths``/``arch``: what the caller needs; a mismatch is an error."""
    from safetensors.torch import load

    path = _existing(path)
    data = path.read_bytes()
    try:
        tensors = load(data)  # validates the header and the data offsets
        header_len = int.from_bytes(data[:8], "little")  # safetensors layout: u64 length, JSON header, data
        raw = (json.loads(data[8:8 + header_len]).get("__metadata__") or {}).get(META_KEY)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt: {exc})") from None
    meta = _parse_meta(path, raw)
    if tensors_sha256(tensors) != meta.get("tensors_sha256"):
        raise CheckpointError(f"{path}: tensor data does not match the sha256 recorded in its metadata "
                              "(the file was modified or corrupted after saving)")
    try:
        config = ModelConfig.from_dict(meta["model"])
    except Exception as exc:
        raise CheckpointError(f"{path}: invalid model metadata ({exc})") from None
    if arch is not None and arch != config.arch:
        raise CheckpointError(f"{path} holds a '{config.arch}' model, not '{arch}'")
    for w in widths or ():
        if float(w) not in config.widths:
            raise CheckpointError(f"{path} has widths {list(config.widths)}; width {w} is not one of them")
    model = build_model(config)
    _load_state(path, model, tensors, config.arch)
    model.eval()
    return Checkpoint(model=model, config=config, preprocess=meta.get("preprocess", {}), meta=meta, path=path,
                      file_sha256=hashlib.sha256(data).hexdigest())


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def _parse_meta(path: Path, raw: str | None) -> dict:
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a swedge checkpoint (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this swedge reads up to "
                              f"{FORMAT_VERSION}: upgrade swedge")
    for key in ("model", "tensors_sha256"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata lacks '{key}'")
    return meta


def _load_state(path: Path, model: SwitchableEmbedder, tensors: dict, arch: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + \
                 ("; " if missing and unexpected else "") + \
                 (f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "")
        raise CheckpointError(f"{path}: tensors do not match a '{arch}' model with the recorded widths: {detail}")
    for name, t in tensors.items():
        if t.shape != expected[name].shape:
            raise CheckpointError(f"{path}: tensor '{name}' has shape {tuple(t.shape)}, a '{arch}' model "
                                  f"expects {tuple(expected[name].shape)}")
    model.load_state_dict(tensors)
