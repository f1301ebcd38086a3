"""Reading a safetensors file without trusting it: the path, the header and every tensor's size are checked
before any tensor data is read, so a folder, an unreadable, truncated or padded file, or one whose header
claims gigabytes, is one CheckpointError instead of an OSError or a MemoryError.

Layout (safetensors): u64 little-endian header length N, N bytes of JSON header, then the tensor data;
each header entry gives dtype, shape and [begin, end) offsets into the data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from swedge.errors import CheckpointError

MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_HINT = "truncated or corrupt: copy it again from where its training run wrote it"


def checkpoint_path(path) -> Path:
    """``path`` as an existing, readable regular file, or a CheckpointError saying what it is instead."""
    path = Path(path)
    if path.is_dir():
        inside = path / "model.safetensors"
        hint = f"; did you mean {inside}?" if inside.is_file() else ": pass the .safetensors file itself"
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path} is not a regular file (a device, pipe or socket): pass a .safetensors file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file, its offsets checked against the file's size."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path} is not a readable safetensors file (header length {n} does not fit "
                                      f"a {size}-byte file; {_HINT})")
            header = json.loads(f.read(n))
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied reading the checkpoint: let this user read it "
                              f"(chmod u+r {path})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CheckpointError(f"{path} is not a readable safetensors file (header is not JSON: {exc}; "
                              f"{_HINT})") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise CheckpointError(f"{path} is not a readable safetensors file (header or its __metadata__ is not a "
                              f"JSON object; {_HINT})")
    end = 0
    for name, entry in header.items():
        if name != "__metadata__":
            end = max(end, _entry_end(path, name, entry))
    if 8 + n + end != size:
        what = "truncated" if 8 + n + end > size else f"{size - 8 - n - end} bytes longer than its tensors"
        raise CheckpointError(f"{path} is not a readable safetensors file ({what}: the header describes "
                              f"{8 + n + end} bytes, the file has {size}; {_HINT})")
    return header


def tensor_specs(header: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) of every tensor in a checked header."""
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"}


def _entry_end(path: Path, name: str, entry) -> int:
    ok = (isinstance(entry, dict) and entry.get("dtype") in DTYPE_BYTES and isinstance(entry.get("shape"), list)
          and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
          and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
          and all(isinstance(o, int) and o >= 0 for o in entry["data_offsets"]))
    if ok:
        begin, end = entry["data_offsets"]
        ok = end - begin == math.prod(entry["shape"]) * DTYPE_BYTES[entry["dtype"]]
    if not ok:
        raise CheckpointError(f"{path} is not a readable safetensors file (tensor '{name}': dtype, shape and "
                              f"offsets do not agree; {_HINT})")
    return entry["data_offsets"][1]
