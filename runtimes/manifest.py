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

import json
from dataclasses import dataclass
from pathlib import Path

from swedge.runtimes.bundle_files import (LINK_REFUSED, BundleError, file_sha256, folder_files,  # noqa: F401
                                          inside, tree_bytes, tree_sha256)
from swedge.runtimes.manifest_check import PRECISIONS, FieldProblem, check_manifest

SCHEMA = "swedge.bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


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

    def require_artifacts(self) -> None:
        if not self.artifacts:
            raise BundleError(f"{self.root} has no artifacts: every format was skipped or none was asked for at "
                              "export; re-export it with --formats")

    @property
    def widths(self) -> list[float]:
        return [float(w) for w in self.manifest["checkpoint"]["widths"]]

    @property
    def server_width(self) -> float:
        return float(self.manifest.get("server_width", max(self.widths)))

    def path_of(self, rel: str, field: str = "path") -> Path:
        """``rel`` inside the bundle; BundleError when it leaves the bundle or passes through a symlink."""
        return inside(self.root, rel, field)

    def listed_paths(self) -> list[tuple[str, str, dict]]:
        """(path, field, entry) of every file the manifest lists: probe, references, exported artifacts."""
        m = self.manifest
        out = [(m["probe"][k], f"probe.{k}", m["probe"]) for k in ("inputs", "labels")]
        out += [(r["path"], f"references.{w}.path", r) for w, r in m["references"].items()]
        out += [(a["path"], f"artifacts[{i}].path", a) for i, a in enumerate(m["artifacts"]) if a["status"] == "ok"]
        return out

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
        check_manifest(manifest)
    except FieldProblem as exc:
        raise BundleError(f"{path}: {exc}; re-export the bundle") from None
    if "export_host" in manifest:  # absent in bundles exported before it existed: allowed
        from swedge.runtimes.host import record_problem

        if problem := record_problem(manifest["export_host"]):
            raise BundleError(f"{path}: 'export_host' {problem}; re-export the bundle (or remove the field)")
    bundle = Bundle(root=root, manifest=manifest)
    for rel, field, entry in bundle.listed_paths():  # before anything is read: nothing may resolve outside
        p = bundle.path_of(rel, field)
        if "files" in entry and p.is_dir():
            _check_listed_files(p, entry["files"], field)
    return bundle


def _check_listed_files(folder: Path, listed: list[str], field: str) -> None:
    """A folder artifact holds exactly the files its manifest entry lists (the hash covers them all, and an
    extra file would be read by nobody the manifest names)."""
    present = {f.relative_to(folder).as_posix() for f in folder_files(folder)}
    extra, missing = sorted(present - set(listed)), sorted(set(listed) - present)
    if extra or missing:
        raise BundleError(f"'{field}' {folder}: " + "; ".join(
            ([f"extra file(s) {extra} not listed in its 'files'"] if extra else [])
            + ([f"listed file(s) {missing} missing"] if missing else [])) + "; re-export the bundle")
