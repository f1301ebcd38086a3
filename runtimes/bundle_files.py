"""The files of a bundle: paths that must stay inside it, and sha256 of files and folder artifacts (torch-free).

A bundle holds its own files. A symlink anywhere under it (an artifact, a file inside a folder artifact, the
probe, a reference, a folder on the way) is refused, even one that points inside today: the manifest's sha256
covers the bytes read, not where they came from, so a link lets a bundle pass with weights from elsewhere.
Folder artifacts may hold only regular files and folders (a FIFO would block a reader, a socket or device is
no model file); their hash covers every file in them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

from swedge.errors import SwedgeError


class BundleError(SwedgeError):
    """A bundle folder or its manifest is missing, from a newer schema, or does not match its files."""


LINK_REFUSED = "symlinks are refused: a bundle must hold its own files; copy the file in and re-export"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _entry_problem(path: Path) -> str | None:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return f"{path} is a symlink ({LINK_REFUSED})"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return f"{path} is not a regular file or folder (a FIFO, socket or device); remove it and re-export"
    return None


def folder_files(path: Path) -> list[Path]:
    """Every file under the folder ``path``, in the order the folder hash uses; BundleError on a symlink or an
    entry that is neither a regular file nor a folder."""
    files = []
    for top, dirs, names in os.walk(path, followlinks=False):
        for name in dirs + names:
            p = Path(top) / name
            if problem := _entry_problem(p):
                raise BundleError(problem)
            if name in names:
                files.append(p)
    return sorted(files)  # Path order (by parts), as the hash has always been taken


def tree_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder as the sorted list of (relative path, file sha256)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise BundleError(f"{path} does not exist")
    if problem := _entry_problem(path):
        raise BundleError(problem)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in folder_files(path):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def tree_bytes(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in folder_files(path))


def outside_problem(rel: str) -> str | None:
    """Why the manifest path ``rel`` does not name a place inside the bundle (empty, absolute, a '..' part)."""
    parts = PurePosixPath(rel).parts
    if not parts:
        return "is an empty path"
    if PurePosixPath(rel).is_absolute() or ".." in parts or Path(rel).is_absolute():
        return f"points outside the bundle: {rel!r}"
    return None


def inside(root: Path, rel: str, field: str) -> Path:
    """``root / rel`` after checking that ``rel`` (the manifest's ``field``) stays inside the bundle and that no
    part of it, nor anything inside it when it is a folder, is a symlink. Parts that do not exist are left to
    the caller (a missing artifact is that artifact's failure)."""
    if problem := outside_problem(rel):
        raise BundleError(f"'{field}' {problem}; re-export the bundle")
    parts = PurePosixPath(rel).parts
    p = root
    for part in parts:
        p = p / part
        if p.is_symlink():
            raise BundleError(f"'{field}': {p} is a symlink ({LINK_REFUSED})")
        if not p.exists():
            return root.joinpath(*parts)
    if p.is_dir():
        folder_files(p)
    elif problem := _entry_problem(p):
        raise BundleError(f"'{field}': {problem}")
    return p
