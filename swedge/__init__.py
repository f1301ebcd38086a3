"""swedge: one switchable retrieval checkpoint -> compatible per-width edge artifacts.

Kept deliberately light: importing ``swedge`` (and ``swedge.metrics`` / ``swedge.runtimes``) must not import
torch, so the on-device side runs with numpy plus one runtime.
"""

__version__ = "0.1.0"
