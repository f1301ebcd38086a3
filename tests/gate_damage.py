"""Helpers for tests/test_gate_e2e.py: damage an artifact's weights *inside a still-valid file*, then re-list it
in the manifest exactly as the exporter does (``tree_sha256`` / ``tree_bytes``), so the sha256 check passes and
only the gate's numeric criteria can catch it.

Bundles are copied with hard links (an exported bundle is ~0.5 GB); every file these helpers change is written
to a new file and renamed over the link, so the original bundle is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from swedge.runtimes.manifest import MANIFEST, tree_bytes, tree_sha256


def linked_copy(src: Path, dst: Path) -> Path:
    """A copy of bundle ``src`` at ``dst`` whose files are hard links (falls back to real copies)."""

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)
    return dst


def _replace_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and rename it over ``path`` (never writes into a shared hard link)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def artifact(root: Path, artifact_id: str) -> dict:
    m = json.loads((root / MANIFEST).read_text())
    return next(a for a in m["artifacts"] if a["id"] == artifact_id)


def relist(root: Path, artifact_id: str) -> dict:
    """Recompute the artifact's sha256 and bytes the way the exporter records them; returns the new entry."""
    m = json.loads((root / MANIFEST).read_text())
    entry = next(a for a in m["artifacts"] if a["id"] == artifact_id)
    path = root / entry["path"]
    entry["sha256"], entry["bytes"] = tree_sha256(path), tree_bytes(path)
    _replace_bytes(root / MANIFEST, json.dumps(m, indent=1).encode())
    return entry


def _perturb(values: np.ndarray, relative: float, seed: int) -> np.ndarray:
    """Every element times exp(``relative`` * N(0, 1)) (sign kept: a quantisation scale stays positive), in the
    tensor's own dtype (same shape, same bytes)."""
    noise = np.random.default_rng(seed).standard_normal(values.shape)
    return (values.astype(np.float64) * np.exp(relative * noise)).astype(values.dtype)


def damage_onnx(path: Path, *, tensor: str, relative: float, seed: int = 0) -> str:
    """Multiplicative noise on one initializer of an ONNX file (float32, float16, or an int8 QDQ weight's
    float scale).

    ``tensor``: the initializer's name (for an int8 QDQ model e.g. ``"<conv>.weight_scale"``: the int8 weights
    themselves stay valid int8, their per-channel scales get the noise). Returns the name. ``relative=0``
    rewrites the file through onnx without changing a number (the control: the rewrite alone passes the gate).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = next((i for i in model.graph.initializer if i.name == tensor), None)
    if init is None or init.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        raise AssertionError(f"no float initializer named {tensor!r} in {path}")
    values = numpy_helper.to_array(init)
    damaged = _perturb(values, relative, seed)
    init.CopyFrom(numpy_helper.from_array(damaged, init.name))
    onnx.checker.check_model(model)  # still a valid file: only the numbers changed
    _replace_bytes(path, model.SerializeToString())
    return init.name


def damage_openvino(folder: Path, *, relative: float, seed: int = 0) -> str:
    """Multiplicative noise on the largest f32 Const of an OpenVINO IR (``model.xml`` + ``model.bin``), in the
    .bin.

    The IR stays valid (same offsets, sizes and element types). Returns the Const's name."""
    xml, binf = folder / "model.xml", folder / "model.bin"
    consts = []
    for layer in ET.parse(xml).getroot().iter("layer"):
        data = layer.find("data")
        if layer.get("type") == "Const" and data is not None and data.get("element_type") == "f32":
            consts.append((int(data.get("size")), int(data.get("offset")), layer.get("name")))
    if not consts:
        raise AssertionError(f"no f32 Const in {xml}")
    size, offset, name = max(consts)
    blob = bytearray(binf.read_bytes())
    values = np.frombuffer(bytes(blob[offset:offset + size]), dtype="<f4")
    damaged = _perturb(values, relative, seed)
    blob[offset:offset + size] = damaged.tobytes()
    _replace_bytes(binf, bytes(blob))
    return name
