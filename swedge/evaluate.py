"""Checkpoint -> per-width query/gallery features -> cross-model retrieval matrix."""

from __future__ import annotations

import numpy as np
import torch

from swedge.checkpoint import Checkpoint


@torch.no_grad()
def extract_features(model, records, preprocess, widths, *, batch_size: int = 128, workers: int = 2,
                     progress: bool = True, desc: str = "features", device: str = "cpu") -> dict[float, np.ndarray]:
    """Embed ``records`` at every width; each batch is decoded once and run through all widths."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from swedge.data.dataset import ImageDataset, loader_batches
    from swedge.data.transforms import EvalTransform

    loader = DataLoader(ImageDataset(records, EvalTransform(preprocess)), batch_size=batch_size,
                        num_workers=workers)
    model.eval().to(device)
    chunks: dict[float, list[np.ndarray]] = {w: [] for w in widths}
    for images, _labels, _cams in tqdm(loader_batches(loader), total=len(loader), desc=desc, unit="batch", disable=not progress, leave=False):
        images = images.to(device)
        for w in widths:
            with model.at_width(w):
                chunks[w].append(model(images).float().cpu().numpy())
    return {w: np.concatenate(c) for w, c in chunks.items()}


def checkpoint_features(ckpt: Checkpoint, data_dir, *, widths=None, batch_size: int = 128, workers: int = 2,
                        progress: bool = True, device: str = "cpu"):
    """Per-width query and gallery features of a Market-style test split, plus the ids.

    Returns (widths, {w: (query_feats, gallery_feats)}, splits, (q_pids, g_pids, q_camids, g_camids)).
    """
    from swedge.data.market import load_market, require_matches

    widths = tuple(sorted(float(w) for w in (widths or ckpt.widths)))
    splits = load_market(data_dir)
    require_matches(splits)  # before any image is embedded
    preprocess = ckpt.preprocess
    kw = dict(batch_size=batch_size, workers=workers, progress=progress, device=device)
    q = extract_features(ckpt.model, splits.query, preprocess, widths, desc="query", **kw)
    g = extract_features(ckpt.model, splits.gallery, preprocess, widths, desc="gallery", **kw)

    def ids(records):
        return np.array([r.pid for r in records]), np.array([r.camid for r in records])

    (qp, qc), (gp, gc) = ids(splits.query), ids(splits.gallery)
    return widths, {w: (q[w], g[w]) for w in widths}, splits, (qp, gp, qc, gc)


def evaluate_checkpoint(ckpt: Checkpoint, data_dir, **kw):
    """The cross-model matrix (``swedge eval``); keyword arguments as :func:`checkpoint_features`."""
    from swedge.metrics.cross import cross_matrix

    _widths, features, _splits, ids = checkpoint_features(ckpt, data_dir, **kw)
    return cross_matrix(features, *ids)
