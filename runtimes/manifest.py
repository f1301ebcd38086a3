"""The bundle's manifest.json: schema, reading with validation, and sha256 of artifacts (torch-free).

A bundle (DESIGN §5) is a folder::

    manifest.json                  this schema
    probe/inputs.npy               (N, 3, H, W) float32, already preprocessed with the checkpoint's preprocessing
    probe/labels.npz               pids, camids (int64), is_query (bool): the probe's query/gallery split
    reference/w0.25.npy ...        (N, D) float32 features of the torch sub-model of each width on the probe
    <format>/w0.25-fp32.<ext> ...  the artifacts (a file, or a folder such as an .mlpackage or an OpenVINO IR)

Every file the harness reads is listed with its sha256 and checked before use, so a tampered or truncated
artifact is a failure line, never a silent pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from swedge.errors import SwedgeError

SCHEMA = "swedge.bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")


class BundleError(SwedgeError):
    """A bundle folder or its manifest is missing, from a newer schema, or does not match its files."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder as the sorted list of (relative path, file sha256)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise BundleError(f"{path} does not exist")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def tree_bytes(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def artifact_id(fmt: str, width: float, precision: str) -> str:
    return f"{fmt}-w{width:g}-{precision}"


@dataclass
class Bundle:
    """A read, validated bundle: ``root`` folder and its ``manifest`` dict."""

    root: Path
    manifest: dict

    @property
    def artifacts(self) -> list[dict]:
        return self.manifest["artifacts"]

    @property
    def widths(self) -> list[float]:
        return [float(w) for w in self.manifest["checkpoint"]["widths"]]

    @property
    def server_width(self) -> float:
        return float(self.manifest.get("server_width", max(self.widths)))

    def path_of(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if self.root.resolve() not in p.parents and p != self.root.resolve():
            raise BundleError(f"manifest path {rel!r} points outside the bundle")
        return p

    def check_file(self, rel: str, sha256: str) -> Path:
        """The path of a listed file after checking its sha256; BundleError names a mismatch."""
        p = self.path_of(rel)
        if not p.exists():
            raise BundleError(f"{rel} is listed in the manifest but missing from the bundle")
        actual = tree_sha256(p)
        if actual != sha256:
            raise BundleError(f"{rel}: sha256 mismatch (manifest {sha256[:12]}…, file {actual[:12]}…): "
                              "the file was modified or truncated after export; re-export the bundle")
        return p


def repair_summaries(artifacts: list) -> list[str]:
    """One line per int8 artifact that ``swedge export --int8-repair`` re-exported (or failed to repair), from the
    manifest's ``repair`` records; a malformed record is a BundleError naming the artifact."""
    lines = []
    for a in artifacts:
        r = a.get("repair") if isinstance(a, dict) else None
        if r is None or (isinstance(r, dict) and r.get("needed") is not True):
            continue
        try:
            before = float(r["before"]["delta_map"])
            if r["repaired"]:
                kept = r["kept_float"]
                if not isinstance(kept, list) or not all(isinstance(k, str) for k in kept):
                    raise TypeError("kept_float must be a list of layer names")
                lines.append(f"int8 repair: {a['id']} keeps {len(kept)} layer(s) float ({', '.join(kept)}); "
                             f"ΔmAP cross {before:+.2f} -> {float(r['after']['delta_map']):+.2f} at export")
            else:
                lines.append(f"int8 repair: {a['id']} not repaired (ΔmAP cross {before:+.2f} at export): "
                             f"{str(r.get('reason', ''))}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"artifact {a.get('id')!r}: malformed 'repair' record ({exc}); re-export the "
                              "bundle") from None
    return lines


def read_manifest(root: str | Path) -> Bundle:
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        # export_bundle stages into ".NAME.partial-XXXXXXXX" (tempfile.mkdtemp) beside the target
        staging = root.name.startswith(".") and ".partial-" in root.name
        hint = " (an export was interrupted: this is a staging folder)" if staging else ""
        raise BundleError(f"{root} is not a swedge bundle: no {MANIFEST}{hint}; create one with `swedge export`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise BundleError(f"{path} is not a swedge bundle manifest (schema {manifest.get('schema')!r})"
                          if isinstance(manifest, dict) else f"{path} is not a swedge bundle manifest")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise BundleError(f"{path} has schema version {version!r}; this swedge reads up to {SCHEMA_VERSION}: "
                          "upgrade swedge (pip install -U swedge)")
    for key in ("checkpoint", "artifacts", "probe", "references", "input"):
        if key not in manifest:
            raise BundleError(f"{path} lacks the '{key}' section; re-export the bundle")
    if "export_host" in manifest:  # absent in bundles exported before it existed: allowed
        from swedge.runtimes.host import record_problem

        if problem := record_problem(manifest["export_host"]):
            raise BundleError(f"{path}: 'export_host' {problem}; re-export the bundle (or remove the field)")
    return Bundle(root=root, manifest=manifest)
