"""Peak resident memory of this process, per artifact where the OS allows it (torch-free, stdlib only).

On Linux the kernel's high-water mark (``VmHWM`` in /proc/self/status) can be reset by writing ``5`` to
/proc/self/clear_refs (Linux >= 4.0), so each artifact's peak is measured on its own: the process (Python, numpy,
the runtime library, the probe) plus that artifact loaded and run. Elsewhere (macOS, a sandbox that forbids the
write) the peak is ``resource.getrusage``'s ``ru_maxrss``: the process's peak so far, which never goes down, so
later artifacts inherit earlier peaks — an upper bound, and the record says so (``method``).
"""

from __future__ import annotations

import sys

MB = 1e6  # budgets and figures are in MB = 10^6 bytes

PER_ARTIFACT = "VmHWM reset per artifact (/proc/self/clear_refs)"
PROCESS_PEAK = "ru_maxrss: peak of the whole process so far (an upper bound for later artifacts)"


def _vm_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, kB on Linux


def reset_peak() -> str:
    """Start a new peak measurement; returns the method the next :func:`peak_mb` uses."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        if _vm_hwm_bytes() is not None:
            return PER_ARTIFACT
    except OSError:
        pass
    return PROCESS_PEAK


def method() -> str:
    """The method :func:`reset_peak` would pick here, without resetting anything."""
    try:
        with open("/proc/self/clear_refs", "a", encoding="ascii"):
            pass
    except OSError:
        return PROCESS_PEAK
    return PER_ARTIFACT if _vm_hwm_bytes() is not None else PROCESS_PEAK


def peak_mb(method: str) -> float | None:
    """The peak resident memory in MB since :func:`reset_peak` (``PER_ARTIFACT``) or of the process."""
    value = _vm_hwm_bytes() if method == PER_ARTIFACT else _ru_maxrss_bytes()
    return None if value is None else round(value / MB, 1)


def process_peak_mb() -> float | None:
    """The whole process's peak resident memory in MB (ru_maxrss; VmHWM where getrusage is missing)."""
    value = _ru_maxrss_bytes()
    if value is None:
        value = _vm_hwm_bytes()
    return None if value is None else round(value / MB, 1)


__all__ = ["MB", "PER_ARTIFACT", "PROCESS_PEAK", "method", "reset_peak", "peak_mb", "process_peak_mb"]
