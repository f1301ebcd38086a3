"""Stop glibc from handing freed heap memory back to the kernel between CPU training steps.

SFSC keeps one gradient set per width alive until the merge (~4x the parameters), frees them all at the end
of the step, and glibc then trims the top of the heap; the next step takes the same memory back page by page.
Measured in ``benchmarks/bench_step.py`` (ResNet-18, 128x64, batch 32, 2 threads): ~56,000 minor page faults
per SFSC step and a step 2.29x a full-width step; with the settings below, ~600 faults and 2.16x. A plain
full-width step is unaffected (0 faults either way). The cost is that the process keeps its peak heap (the
step's transient memory, ~220 MiB there) instead of returning it after each step.

Only glibc on Linux; elsewhere, or when the allocator refuses, nothing changes and the reason is returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of free memory at the heap top
MMAP_THRESHOLD = 32 << 20  # glibc's maximum: blocks below it (every ResNet-50 gradient) come from the heap


def retain_freed_memory() -> tuple[bool, str]:
    """(applied, what was done or why not). Safe to call more than once."""
    if not sys.platform.startswith("linux"):
        return False, f"not Linux ({sys.platform}): allocator left as it is"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        return False, f"no glibc mallopt ({exc}): allocator left as it is"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return False, "mallopt refused the thresholds: allocator left as it is"
    return True, f"glibc mallopt: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
