"""The bundle's manifest.json: schema, reading with validation, and sha256 of artifacts (torch-free).

A bundle (docs/design.md §5) is a folder::

    manifest.json                  this schema
    probe/inputs.npy               (N, 3, H, W) float32, already preprocessed with the checkpoint's preprocessing
    probe/labels.npz               pids, camids (int64), is_query (bool): the probe's query/gallery split
    reference/w0.25.npy ...        (N, D) float32 features of the torch sub-model of each width on the probe
    <format>/w0.25-fp32.<ext> ...  the artifacts (a file, or a folder such as an .mlpackage or an OpenVINO IR)

Every file the harness reads is listed with its sha256 and checked before use, so a tampered or truncated
artifact is a failure line, never a silent pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from swedge.runtimes.bundle_files import (LINK_REFUSED, BundleError, file_sha256, folder_files,  # noqa: F401
                                          inside, tree_bytes, tree_sha256)
from swedge.runtimes.manifest_types import PRECISIONS, ArtifactEntry, FieldProblem, Manifest  # noqa: F401

SCHEMA = "swedge.bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def artifact_id(fmt: str, width: float, precision: str) -> str:
    return f"{fmt}-w{width:g}-{precision}"


@dataclass
class Bundle:
    """A read, validated bundle: ``root`` folder and its typed ``manifest``."""

    root: Path
    manifest: Manifest

    @property
    def artifacts(self) -> tuple[ArtifactEntry, ...]:
        return self.manifest.artifacts

    def require_artifacts(self) -> None:
        if not self.artifacts:
            raise BundleError(f"{self.root} has no artifacts: every format was skipped or none was asked for at "
                              "export; re-export it with --formats")

    @property
    def widths(self) -> list[float]:
        return [float(w) for w in self.manifest.checkpoint.widths]

    @property
    def server_width(self) -> float:
        return float(self.manifest.server)

    def path_of(self, rel: str, field: str = "path") -> Path:
        """``rel`` inside the bundle; BundleError when it leaves the bundle or passes through a symlink."""
        return inside(self.root, rel, field)

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


def repair_summaries(artifacts: tuple[ArtifactEntry, ...]) -> list[str]:
    """One line per int8 artifact that ``swedge export --int8-repair`` re-exported (or failed to repair), from the
    manifest's ``repair`` records (their fields checked when the manifest was read)."""
    lines = []
    for a in artifacts:
        r = a.repair
        if r is None or not r.needed:
            continue
        before = float(r.before["delta_map"])
        if r.repaired:
            lines.append(f"int8 repair: {a.id} keeps {len(r.kept_float)} layer(s) float ({', '.join(r.kept_float)}); "
                         f"ΔmAP cross {before:+.2f} -> {float(r.after['delta_map']):+.2f} at export")
        else:
            lines.append(f"int8 repair: {a.id} not repaired (ΔmAP cross {before:+.2f} at export): {r.reason or ''}")
    return lines


def read_manifest(root: str | Path) -> Bundle:
    root = Path(root).resolve()  # the bundle folder itself may be a link (bundles/latest); nothing under it may
    path = root / MANIFEST
    if path.is_symlink():
        raise BundleError(f"{path} is a symlink ({LINK_REFUSED})")
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
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{path} has schema version {version!r}, not a version number (1 to {SCHEMA_VERSION}); "
                          "re-export the bundle")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{path} has schema version {version!r}; this swedge reads up to {SCHEMA_VERSION}: "
                          "upgrade swedge (pip install -U swedge)")
    try:
        bundle = Bundle(root=root, manifest=Manifest.from_dict(manifest))
    except FieldProblem as exc:
        raise BundleError(f"{path}: {exc}; re-export the bundle") from None
    for listed in bundle.manifest.listed_files():  # before anything is read: nothing may resolve outside
        p = bundle.path_of(listed.path, listed.field)
        if listed.files is not None and p.is_dir():
            _check_listed_files(p, listed.files, listed.field)
    return bundle


def _check_listed_files(folder: Path, listed: tuple[str, ...], field: str) -> None:
    """A folder artifact holds exactly the files its manifest entry lists (the hash covers them all, and an
    extra file would be read by nobody the manifest names)."""
    present = {f.relative_to(folder).as_posix() for f in folder_files(folder)}
    extra, missing = sorted(present - set(listed)), sorted(set(listed) - present)
    if extra or missing:
        raise BundleError(f"'{field}' {folder}: " + "; ".join(
            ([f"extra file(s) {extra} not listed in its 'files'"] if extra else [])
            + ([f"listed file(s) {missing} missing"] if missing else [])) + "; re-export the bundle")
