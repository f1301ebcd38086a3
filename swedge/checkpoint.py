"""One safetensors file per checkpoint: tensors + JSON metadata in the safetensors header.

Metadata (key "swedge"): format version, model config (arch, widths, embedding dim, num ids), preprocessing,
method and training config, library versions, the sha256 of the tensors, and a digest of all of it
(``swedge.checkpoint_meta``). Loading never unpickles; every way a file can be wrong ends in one
CheckpointError that names the problem.
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
from swedge.checkpoint_file import checkpoint_path, read_header, tensor_specs
from swedge.checkpoint_meta import FORMAT_VERSION, check_fields, note, parse_meta, parse_preprocess, seal
from swedge.data.preprocess import Preprocess
from swedge.errors import CheckpointError
from swedge.io import atomic_write_bytes
from swedge.nn.model import ModelConfig, SwitchableEmbedder, build_model
from swedge.runtimes.manifest import file_sha256

META_KEY = "swedge"
# The dtypes a swedge model's state holds (float parameters and buffers, int64 BN counters), as safetensors names them.
_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                       "I64": torch.int64}


@dataclass
class Checkpoint:
    model: SwitchableEmbedder
    config: ModelConfig
    preprocess: Preprocess  # the header's "preprocess", parsed and checked when the checkpoint loads
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


def save_checkpoint(path, model: SwitchableEmbedder, *, preprocess: Preprocess | dict, method: dict | None = None,
                    training: dict | None = None, extra: dict | None = None) -> Path:
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "preprocess": preprocess.to_dict() if isinstance(preprocess, Preprocess) else preprocess,
        "method": method or {},
        "training": training or {},
        "extra": extra or {},
        "versions": {"swedge": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensors_sha256": tensors_sha256(tensors),
    }
    check_fields(Path(path), meta)  # what load would refuse is not written in the first place
    return atomic_write_bytes(path, save(tensors, metadata={META_KEY: json.dumps(seal(meta))}))


def read_metadata(path) -> dict:
    """The checkpoint's metadata without loading the tensors (cheap; the header alone is read and checked)."""
    path = checkpoint_path(path)
    return parse_meta(path, (read_header(path).get("__metadata__") or {}).get(META_KEY))


def load_checkpoint(path, *, widths=None, arch: str | None = None) -> Checkpoint:
    """Load and validate a checkpoint. ``widths``/``arch``: what the caller needs; a mismatch is an error.

    Everything is checked from the header (sizes, metadata, tensor names and shapes against the recorded
    model) before the tensor data is read, memory-mapped."""
    from safetensors.torch import load_file

    path = checkpoint_path(path)
    header = read_header(path)
    meta = parse_meta(path, (header.get("__metadata__") or {}).get(META_KEY))
    config = ModelConfig.from_dict(meta["model"])  # its fields were checked by parse_meta
    if arch is not None and arch != config.arch:
        raise CheckpointError(f"{path} holds a '{config.arch}' model, not '{arch}'")
    for w in widths or ():
        if float(w) not in config.widths:
            raise CheckpointError(f"{path} has widths {list(config.widths)}; width {w} is not one of them")
    with torch.device("meta"):  # no memory yet: a forged embedding_dim of 10**9 must not allocate first
        _check_shapes(path, build_model(config), tensor_specs(header), config.arch)
    model = build_model(config)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors' own errors have no common base; the header was already checked
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt: {exc})") from None
    if tensors_sha256(tensors) != meta["tensors_sha256"]:
        raise CheckpointError(f"{path}: tensor data does not match the sha256 recorded in its metadata "
                              "(the file was modified or corrupted after saving)")
    model.load_state_dict(tensors)
    model.eval()
    _warn_unfinished(path, meta)
    return Checkpoint(model=model, config=config, preprocess=parse_preprocess(path, meta["preprocess"]), meta=meta,
                      path=path, file_sha256=file_sha256(path))


def _warn_unfinished(path: Path, meta: dict) -> None:
    """A run marks its last save ``extra.complete``; runs older than the mark are judged by their epochs."""
    extra, training = meta.get("extra", {}), meta.get("training", {})
    epochs, done = training.get("epochs"), extra.get("complete")
    if done is None and "epochs_done" in extra and epochs is not None:
        max_steps = training.get("max_steps", 0)  # 0: off
        done = extra["epochs_done"] >= epochs or bool(max_steps) and extra.get("steps_done") == max_steps
    if done is False:
        note(path, f"{path} is from a training run that did not finish ({extra.get('epochs_done')} of {epochs} "
             "epochs saved): continue it with `swedge train --resume`, or use it knowingly", kind="warning")


def _check_shapes(path: Path, model, specs: dict[str, tuple[str, tuple[int, ...]]], arch: str) -> None:
    """The header's tensors against the model the metadata describes: names, shapes, dtypes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(specs))
    unexpected = sorted(set(specs) - set(expected))
    if missing or unexpected:
        detail = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + \
                 ("; " if missing and unexpected else "") + \
                 (f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "")
        raise CheckpointError(f"{path}: tensors do not match a '{arch}' model with the recorded widths: {detail}")
    for name, (dtype, shape) in specs.items():
        if shape != tuple(expected[name].shape):
            raise CheckpointError(f"{path}: tensor '{name}' has shape {shape}, a '{arch}' model "
                                  f"expects {tuple(expected[name].shape)}")
        if _SAFETENSORS_DTYPES.get(dtype) != expected[name].dtype:
            raise CheckpointError(f"{path}: tensor '{name}' is {dtype}, a '{arch}' model expects "
                                  f"{expected[name].dtype}")
