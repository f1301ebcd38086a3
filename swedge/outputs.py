"""What the product writes, checked before the long work starts (torch-free).

- ``check_writable``: an output path that cannot be written (a file where a folder is needed, under a file,
  read-only, a pseudo file system) is one line naming it, before any work.
- ``check_replace``: ``--force`` replaces only a folder that swedge itself wrote (recognised by its marker
  files) and never one that holds an input of the command.
- ``exclusive``: one writer per output: an flock on ``.NAME.lock`` beside it, held for the whole command.
- ``remove_stale_staging``: staging folders of writers that died (their lock is free, we hold it now).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path

from swedge.errors import OutputBusyError, SwedgeError

PSEUDO_FILE_SYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
STAGING = ".partial-"  # staging folders are ".NAME.partial-XXXXXXXX" (tempfile.mkdtemp) beside NAME
ASIDE = ".old-"        # a replaced folder is moved to ".NAME.old-SECONDS" until the new one is in place


def staging_prefix(out: Path) -> str:
    return f".{out.name}{STAGING}"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _first_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | os.PathLike, flag: str, *, folder: bool) -> None:
    """Refuse, in one line naming ``flag`` and the path, an output that cannot be written where it is."""
    path = Path(path).absolute()
    real = path.resolve()
    for pseudo in PSEUDO_FILE_SYSTEMS:
        if _inside(real, pseudo):
            raise SwedgeError(f"{flag} {path} is under {pseudo}, a pseudo file system: choose a path on a disk")
    if path.exists():
        if folder and not path.is_dir():
            raise SwedgeError(f"{flag} {path} is a file, not a folder: choose a folder path (or remove the file)")
        if not folder and path.is_dir():
            raise SwedgeError(f"{flag} {path} is a folder: give a file path")
    anchor = _first_existing(path if folder else path.parent)
    if not anchor.is_dir():
        raise SwedgeError(f"{flag} {path} is under {anchor}, which is a file, not a folder: choose another path")
    try:  # the only sure test (root ignores permission bits, a read-only mount ignores them all)
        fd, probe = tempfile.mkstemp(prefix=".swedge-write-test-", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SwedgeError(f"{flag} {path}: cannot write in {anchor} ({exc.strerror}); choose a writable "
                          "location or fix its permissions") from None


def check_replace(out: Path, *, what: str, marker: str, is_ours, force: bool, inputs: dict[str, Path]) -> None:
    """``out`` may be created, or replaced with ``force`` if ``is_ours(out)`` and it holds none of ``inputs``
    (flag -> path); ``marker`` says how one is recognised. An empty folder counts as absent. The refusal
    suggests --force only where it is allowed."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    real = out.resolve()
    for flag, path in inputs.items():
        if path is not None and _inside(Path(path).resolve(), real):
            raise SwedgeError(f"--out {out} holds the input {flag} {path}: replacing it would delete that input; "
                              "choose another --out")
    if not is_ours(out):
        raise SwedgeError(f"--out {out} already exists and is not {what} ({marker}): swedge replaces only its own "
                          "folders (even with --force); choose another --out, or empty it yourself")
    if not force:
        raise SwedgeError(f"{out} already holds {what}; pass --force to replace it, or choose another --out")


def check_not_an_input(path: str | os.PathLike | None, flag: str, inputs: dict[str, Path]) -> None:
    """An output file must not be one of the command's inputs (``--json CKPT`` would overwrite it)."""
    if path is None:
        return
    real = Path(path).resolve()
    for in_flag, in_path in inputs.items():
        if in_path is not None and _inside(real, Path(in_path).resolve()):
            raise SwedgeError(f"{flag} {path} would overwrite the input {in_flag} {in_path}: choose another path")


@contextlib.contextmanager
def exclusive(out: Path, command: str):
    """Hold ``.NAME.lock`` beside ``out`` for the whole block; a second writer fails at once naming the first."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputBusyError(f"{out} is being written by {holder} (lock {lock}); wait for it to finish, or "
                                  "choose another --out", holder) from None
        try:  # the holder before us may have removed the file we locked: lock the one now there
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{command} (pid {os.getpid()})".encode())
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # before the unlock: a waiter then locks a fresh file, never this one
        os.close(fd)


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the staging and moved-aside folders of dead writers of ``out``; call only inside ``exclusive``
    (every live writer holds the lock, so none of these can be in use). Returns what was removed."""
    out = Path(out).absolute()
    name = re.escape(out.name)
    pattern = re.compile(rf"\.{name}({re.escape(STAGING)}[A-Za-z0-9_]{{8}}|{re.escape(ASIDE)}\d+)")
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for p in sorted(out.parent.iterdir()):
        if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
            removed.append(p)
    return removed
