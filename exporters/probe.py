"""The bundle's probe set and reference features.

The probe is a Market-1501 test split (query + gallery) of the user's own images, preprocessed exactly as the
checkpoint's eval transform does, so every runtime sees the same input array. Large test splits are cut to
``max_images`` by sampling whole identities (with all their query and gallery images), so every kept query
still has its true matches; distractors are sampled in the same proportion.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from swedge.data.market import DISTRACTOR_PID, Record, load_market, require_matches
from swedge.data.preprocess import Preprocess, preprocess_numpy
from swedge.errors import DataError
from swedge.io import atomic_write_bytes, atomic_write_npy
from swedge.runtimes.manifest import file_sha256

DEFAULT_PROBE_IMAGES = 600


def select_probe(query: list[Record], gallery: list[Record], max_images: int, seed: int = 0):
    """(query, gallery) cut to about ``max_images`` by whole identities, deterministic for a seed."""
    if len(query) + len(gallery) <= max_images:
        return query, gallery
    rng = np.random.default_rng(seed)
    ids = sorted({r.pid for r in query})
    per_id = {pid: 0 for pid in ids}
    for r in query + gallery:
        if r.pid in per_id:
            per_id[r.pid] += 1
    distractors = [r for r in gallery if r.pid == DISTRACTOR_PID]
    share = len(distractors) / max(len(query) + len(gallery), 1)
    budget, keep = max_images * (1 - share), set()
    for pid in rng.permutation(ids):
        if keep and budget - per_id[int(pid)] < 0:
            break
        keep.add(int(pid))
        budget -= per_id[int(pid)]
    n_distr = int(round(share * max_images))
    picked_d = {distractors[i].path for i in rng.choice(len(distractors), size=min(n_distr, len(distractors)),
                                                         replace=False)} if distractors else set()
    q = [r for r in query if r.pid in keep]
    g = [r for r in gallery if r.pid in keep or r.path in picked_d]
    return q, g


def build_probe(data_dir, preprocess: Preprocess, *, max_images: int = DEFAULT_PROBE_IMAGES, seed: int = 0,
                progress: bool = True):
    """Preprocessed probe inputs (N, 3, H, W) float32 and labels {pids, camids, is_query}."""
    from PIL import UnidentifiedImageError
    from tqdm import tqdm

    from swedge.data.images import read_rgb

    splits = load_market(data_dir)
    require_matches(splits)  # else every probe mAP is undefined
    if not splits.query or not splits.gallery:
        raise DataError(f"{data_dir} has no query/gallery images (query/ and bounding_box_test/): the probe set "
                        "needs a Market-1501 test split; pass --probe DIR")
    if max_images < 1:
        raise DataError(f"--probe-size must be >= 1, got {max_images}")
    query, gallery = select_probe(splits.query, splits.gallery, max_images, seed)
    if (ids := len({r.pid for r in query})) < 2:
        raise DataError(f"the probe set holds {ids} query identity; retrieval mAP needs at least 2 (with one, every "
                        f"ranking is perfect): raise --probe-size (now {max_images}) or use a larger --probe set")
    records = query + gallery
    inputs = np.empty((len(records), 3, *preprocess.size), np.float32)
    for i, r in enumerate(tqdm(records, desc="probe", unit="img", disable=not progress, leave=False)):
        try:
            inputs[i] = preprocess_numpy(read_rgb(r.path), preprocess)  # bombs, 16-bit grey: one place
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"probe image {r.path} cannot be read ({exc})") from None
    labels = {
        "pids": np.array([r.pid for r in records], np.int64),
        "camids": np.array([r.camid for r in records], np.int64),
        "is_query": np.array([i < len(query) for i in range(len(records))], bool),
    }
    return inputs, labels


def save_npy(path: Path, array: np.ndarray) -> str:
    atomic_write_npy(path, array)
    return file_sha256(path)


def save_npz(path: Path, arrays: dict) -> str:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return file_sha256(path)


def reference_features(module, inputs: np.ndarray, batch: int = 64) -> np.ndarray:
    """The torch sub-model's embeddings of the probe (eval mode, float32)."""
    import torch

    module.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            out.append(module(torch.from_numpy(inputs[i:i + batch])).float().numpy())
    return np.concatenate(out)
