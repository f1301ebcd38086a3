"""User-facing errors: the CLI prints their message as one line (no traceback unless --debug)."""


class SwedgeError(Exception):
    """A problem with the user's input or environment, with a message that names it and the fix."""


class CheckpointError(SwedgeError):
    """A checkpoint file is missing, truncated, corrupt, or does not match what was asked of it."""


class DataError(SwedgeError):
    """A data folder or image does not have the expected layout, size or content."""


class OutputBusyError(SwedgeError):
    """Another live process holds the output's writer lock; ``holder`` is what it recorded there."""

    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder


class MissingDependencyError(SwedgeError):
    """An optional backend library is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency lazily, or raise a MissingDependencyError naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised through the CLI tests
        raise MissingDependencyError(
            f"'{module}' is not installed ({exc}); install it with: pip install 'swedge[{extra}]'"
        ) from exc
