"""Market-1501 folder layout: parse and load it, and write it atomically (numpy/PIL-free, torch-free).

Layout: ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` (the gallery), files named
``PPPP_cCsS_FFFFFF_NN.jpg`` (person id, camera, sequence, frame, box index). pid -1 is junk (bad detections:
dropped everywhere, as torchreid does); pid 0 is a distractor (kept in the gallery as a negative only).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from swedge.errors import DataError

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
JUNK_PID, DISTRACTOR_PID = -1, 0
INT64_MAX = 2**63 - 1  # ids and cameras become int64 arrays / tensors (labels, probe, evaluation)
_NAME = re.compile(r"^(-1|\d+)_c(\d+)")


@dataclass(frozen=True)
class Record:
    """One image: ``camid`` is 0-based (file's ``cN`` minus 1), as torchreid and most evaluators expect."""

    path: str
    pid: int
    camid: int


@dataclass
class MarketSplits:
    root: str
    train: list[Record] = field(default_factory=list)
    query: list[Record] = field(default_factory=list)
    gallery: list[Record] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts per split: images, identities (distractors not counted as ids), cameras."""
        out = {}
        for name in SPLIT_DIRS:
            recs = getattr(self, name)
            out[name] = {
                "images": len(recs),
                "ids": len({r.pid for r in recs if r.pid > 0}),
                "cameras": len({r.camid for r in recs}),
            }
        out["gallery"]["distractors"] = sum(r.pid == DISTRACTOR_PID for r in self.gallery)
        return out

    def describe(self) -> str:
        s = self.summary()
        return (
            f"train {s['train']['ids']} ids / {s['train']['images']} images, "
            f"query {s['query']['ids']} ids / {s['query']['images']}, "
            f"gallery {s['gallery']['ids']} ids / {s['gallery']['images']} "
            f"({s['gallery']['distractors']} distractors), {s['train']['cameras']} train cameras"
        )


def market_name(pid: int, cam: int, frame: int, nn: int = 1, seq: int = 1, ext: str = ".jpg") -> str:
    """File name in Market's scheme; ``cam`` is 1-based as in the file name; pid -1 is written as ``-1``."""
    head = "-1" if pid == JUNK_PID else f"{pid:04d}"
    return f"{head}_c{cam}s{seq}_{frame:06d}_{nn:02d}{ext}"


def parse_name(name: str) -> tuple[int, int] | None:
    """(pid, 1-based camera) from a Market file name, or None when it does not follow the scheme."""
    m = _NAME.match(name)
    if not m or int(m.group(2)) < 1:
        return None
    return int(m.group(1)), int(m.group(2))


def read_split(folder: str | os.PathLike, *, keep_distractors: bool) -> list[Record]:
    """Records of one split folder, sorted by file name; junk always dropped, distractors on request."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}: a Market-1501 root holds {', '.join(SPLIT_DIRS.values())}")
    names = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in IMAGE_EXTS)
    if not names:
        raise DataError(f"no images (.jpg/.png) in {folder}: is this the right folder, and is it fully extracted?")
    records = []
    for name in names:
        parsed = parse_name(name)
        if parsed is None:
            raise DataError(
                f"cannot parse file name {folder / name}: expected Market-1501 names like 0002_c1s1_000451_03.jpg "
                "(pid_cCAMERA...); rename or remove this file"
            )
        pid, cam = parsed
        if max(pid, cam) > INT64_MAX:
            raise DataError(f"file name {folder / name} holds an id or camera number above {INT64_MAX} (64-bit "
                            "integers): rename the file with a smaller number")
        if pid == JUNK_PID or (pid == DISTRACTOR_PID and not keep_distractors):
            continue
        records.append(Record(str(folder / name), pid, cam - 1))
    if not any(r.pid > 0 for r in records):
        raise DataError(f"no valid identities in {folder}: every image is junk (-1) or a distractor (0000)")
    return records


def load_market(root: str | os.PathLike) -> MarketSplits:
    """Load a Market-1501-style folder (the real benchmark, ``swedge data synth`` or ``swedge data fetch`` output)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist: create one with `swedge data synth --out {root}`")
    missing = [d for d in SPLIT_DIRS.values() if not (root / d).is_dir()]
    if missing:
        # The official zip extracts to Market-1501-v15.09.15/: point at it instead of a bare "missing" message.
        nested = [p for p in root.iterdir() if p.is_dir() and (p / SPLIT_DIRS["train"]).is_dir()]
        hint = f"; did you mean --data {nested[0]}?" if nested else ""
        raise DataError(f"{root} is not a Market-1501 folder: missing {', '.join(missing)}{hint}")
    splits = MarketSplits(
        root=str(root),
        train=read_split(root / SPLIT_DIRS["train"], keep_distractors=False),
        # A distractor query has no true match, so it would only add an undefined AP: drop it.
        query=read_split(root / SPLIT_DIRS["query"], keep_distractors=False),
        gallery=read_split(root / SPLIT_DIRS["gallery"], keep_distractors=True),
    )
    overlap = {r.pid for r in splits.train} & {r.pid for r in splits.gallery if r.pid > 0}
    if overlap:
        # Not fatal (some custom sets share ids on purpose), but almost always a copying mistake.
        warnings.warn(f"{len(overlap)} identities appear in both train and gallery of {root}", stacklevel=2)
    return splits


def require_matches(splits: MarketSplits) -> None:
    """Retrieval needs queries whose identity the gallery shows from another camera (same-camera images of the
    same identity are ignored, as in Market-1501's protocol); with none, every mAP is undefined."""
    seen = {(r.pid, r.camid) for r in splits.gallery}
    cams = {}
    for pid, camid in seen:
        cams.setdefault(pid, set()).add(camid)
    if not any(cams.get(r.pid, set()) - {r.camid} for r in splits.query):
        raise DataError(f"no query in {Path(splits.root) / SPLIT_DIRS['query']} has a match in "
                        f"{Path(splits.root) / SPLIT_DIRS['gallery']} (the same id seen by another camera): "
                        "put each query identity's other-camera images in the gallery")


def relabel(records: list[Record]) -> tuple[list[int], dict[int, int]]:
    """Contiguous labels 0..N-1 (in sorted pid order) for classification, and the pid -> label map."""
    pid2label = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [pid2label[r.pid] for r in records], pid2label


# ---------------------------------------------------------------------------------------------- writing


def check_out_dir(out: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) when ``out`` is a file or a non-empty folder and ``force`` is off."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder: choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DataError(f"output folder {out} is not empty: pass --force (force=True) to replace it, "
                        "or pick another --out")
    return out


class MarketWriter:
    """Writes a Market-style folder into a temp dir beside ``out`` and renames it into place on success,
    so an interrupted run never leaves a half data set that loads."""

    def __init__(self, out: str | os.PathLike, *, force: bool = False, quality: int = 90):
        self.out = check_out_dir(out, force)
        self.force, self.quality = force, quality
        self.counts = {split: 0 for split in SPLIT_DIRS}
        self.tmp: Path | None = None

    def __enter__(self) -> MarketWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".partial", dir=self.out.parent))
        for d in SPLIT_DIRS.values():
            (self.tmp / d).mkdir()
        return self

    def path(self, split: str, name: str) -> str:
        self.counts[split] += 1
        return os.path.join(self.tmp, SPLIT_DIRS[split], name)

    def save(self, split: str, name: str, image) -> None:
        """Save a PIL image; JPEG at the writer's quality unless the name says otherwise."""
        image.save(self.path(split, name), quality=self.quality)

    def write_text(self, name: str, text: str) -> None:
        (self.tmp / name).write_text(text, encoding="utf-8")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        check_out_dir(self.out, self.force)  # someone may have filled it while we worked
        trash = None
        if self.out.exists():
            # Move the old folder aside first: rename onto a non-empty folder is not allowed.
            trash = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".old", dir=self.out.parent))
            os.replace(self.out, trash / "old")
        os.replace(self.tmp, self.out)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
