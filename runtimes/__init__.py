"""swedge.runtimes: numpy-in / numpy-out runners for exported artifacts, and the verification harness.

Importable without torch (docs/design.md §1): the on-device check runs with numpy plus one runtime. Runner modules
register themselves in ``RUNTIMES`` when imported; :func:`load` imports them on first use, so importing this
package stays cheap and a broken backend only affects its own runner.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from swedge.exporters.formats import FORMATS, format_of, runner_modules, runs_here
from swedge.runtimes.base import RUNTIMES, Runner, RuntimeUnavailable

if TYPE_CHECKING:  # pragma: no cover - imports this package
    from swedge.runtimes.manifest_types import ArtifactEntry


def runner_class(name: str) -> type[Runner]:
    if name not in RUNTIMES:
        modules = runner_modules()
        if name not in modules:
            RUNTIMES.get(name)  # raises: unknown runtime, with suggestions
        importlib.import_module(modules[name])
    return RUNTIMES.get(name)


def runtimes_for(entry: ArtifactEntry) -> list[str]:
    """Runtimes for a manifest artifact entry, preferred first: the ones it lists, else its format's."""
    fmt = FORMATS.get(entry.format)
    return _here(entry.runtimes or (list(fmt.runners) if fmt else []))


def _here(listed) -> list[str]:
    """Those that cannot run on this machine left out, unless nothing else is left (the runner then says why)."""
    return [r for r in listed if runs_here(r)] or list(listed)


def load(artifact: str | Path | dict | ArtifactEntry, *, bundle_root: str | Path | None = None,
         runtime: str | None = None, threads: int | None = None) -> Runner:
    """A loaded runner for a manifest entry (paths relative to ``bundle_root``; a dict is read as one) or an
    artifact path (its format guessed from the suffix). ``runtime`` picks one of the entry's runtimes explicitly."""
    from swedge.runtimes.manifest_types import ArtifactEntry

    entry = None
    if isinstance(artifact, dict):
        artifact = ArtifactEntry.from_dict(artifact, "artifact")
    if isinstance(artifact, ArtifactEntry):
        if artifact.path is None:
            from swedge.errors import SwedgeError

            raise SwedgeError(f"artifact {artifact.id} has no file: it was {artifact.status} at export")
        entry, path = artifact, Path(bundle_root or ".") / artifact.path
        names = runtimes_for(entry)
    else:
        path = Path(artifact)
        names = _here(list(FORMATS[_format_of(path)].runners))
    name = runtime or names[0]
    return runner_class(name)(path, entry, threads=threads).load()


def _format_of(path: Path) -> str:
    fmt = format_of(path)
    if fmt is None:
        from swedge.errors import SwedgeError

        suffixes = [s for f in FORMATS.values() for s in f.suffixes]
        raise SwedgeError(f"cannot tell the format of {path}: pass a bundle manifest entry or a known suffix "
                          f"({', '.join(suffixes)})")
    return fmt


__all__ = ["RUNTIMES", "Runner", "RuntimeUnavailable", "load", "runner_class", "runtimes_for"]
