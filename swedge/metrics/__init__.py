"""Torch-free retrieval evaluation: Market-1501 mAP/CMC and the cross-width compatibility matrix.

Only numpy is imported here (no torch, no matplotlib), so evaluation runs on the device side too.
"""

from swedge.metrics.cross import CrossMatrix, cross_matrix
from swedge.metrics.retrieval import RetrievalResult, evaluate, evaluate_reference, l2_normalize

__all__ = ["CrossMatrix", "RetrievalResult", "cross_matrix", "evaluate", "evaluate_reference", "l2_normalize"]
