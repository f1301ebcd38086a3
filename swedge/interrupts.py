"""Ctrl-C during long work: it aborts, and nothing can hide it.

A SIGINT that lands inside a backend's C++ (torch.export, a converter) can come back as some other exception
(a RuntimeError wrapping it, a child process that died of the same signal); ``interrupted()`` tells such an
exception apart from a real failure. Later Ctrl-Cs are only remembered while the first one unwinds: raising
again inside a C++ callback is what prints a C++ stack.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_count = 0


def interrupted() -> bool:
    """True once Ctrl-C was pressed inside ``abort_on_interrupt``."""
    return _count > 0


def reset() -> None:
    global _count
    _count = 0


def _handler(signum, frame):
    global _count
    _count += 1
    if _count == 1:
        raise KeyboardInterrupt


@contextlib.contextmanager
def abort_on_interrupt():
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    reset()
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        if not interrupted():  # after a Ctrl-C, further ones are counted, not raised, until the process ends
            signal.signal(signal.SIGINT, previous)
