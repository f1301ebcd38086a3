"""swedge: one switchable retrieval checkpoint -> compatible per-width edge artifacts.

Kept deliberately light: importing ``swedge`` (and ``swedge.metrics`` / ``swedge.runtimes``) must not import
torch, so the on-device side runs with numpy plus one runtime. The Python API (``swedge.train``,
``swedge.export``, ``swedge.verify``, ``swedge.bench``, ``swedge.open_bundle``, ``swedge.load_checkpoint``; see
``swedge.api``) is loaded on first use, and each function imports what it needs when called.
"""

__version__ = "0.1.0"

# name -> where it lives; resolved lazily by __getattr__ (PEP 562) so that `import swedge` stays torch-free.
_API = {name: "swedge.api" for name in ("train", "export", "verify", "bench", "open_bundle", "load_checkpoint",
                                        "TrainResult", "BenchReport")}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    raise AttributeError(f"module 'swedge' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_API))
