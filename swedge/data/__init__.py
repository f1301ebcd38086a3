"""Data layer: Market-1501 layout (load / write), the synthetic set, registry fetchers, and the torch side
(transforms, PK sampler, dataset).

Importing ``swedge.data`` does not import torch: the torch-side names load on first use.
"""

from swedge.data.market import MarketSplits, Record, load_market, relabel
from swedge.data.preprocess import Preprocess, preprocess_numpy

_LAZY = {  # name -> torch-importing module
    "ImageDataset": "swedge.data.dataset",
    "PKSampler": "swedge.data.sampler",
    "TrainTransform": "swedge.data.transforms",
    "EvalTransform": "swedge.data.transforms",
    "build_transforms": "swedge.data.transforms",
}

__all__ = ["MarketSplits", "Record", "load_market", "relabel", "Preprocess", "preprocess_numpy", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'swedge.data' has no attribute {name!r}")
