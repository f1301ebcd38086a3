"""OpenMP's wait policy for swedge's commands, set before torch loads its OpenMP runtime (which reads it once).

Measured here (benchmarks/bench_contention.py; the demo's training step, 2 threads, 2 cores): on a quiet CPU
libgomp's default (spin a while, then sleep) took 0.54 s and PASSIVE (sleep at once) 0.84 s; beside another
training, the default took 2.37 s and PASSIVE 1.21 s. Neither wins both, so ``auto`` (the default) looks at the
CPU when the command starts: PASSIVE when other processes are already running on it, libgomp's default otherwise.
An OMP_WAIT_POLICY in the environment, or ``swedge --omp-wait-policy passive|active``, wins.
"""

from __future__ import annotations

import os
import time

CHOICES = ("auto", "passive", "active")
DEFAULT = "auto"
BUSY = 0.5  # other runnable tasks, on average over the samples, from which the CPU counts as shared


def other_runnable(samples: int = 5, interval: float = 0.01, stat: str = "/proc/stat") -> float | None:
    """Tasks runnable on the CPU besides this process, averaged over a few samples of /proc/stat's procs_running
    (Linux); None where it cannot be read."""
    counts = []
    for i in range(samples):
        try:
            with open(stat) as fh:
                line = next(x for x in fh if x.startswith("procs_running"))
            counts.append(int(line.split()[1]) - 1)  # this process is running while it reads
        except (OSError, StopIteration, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(interval)
    return max(0.0, sum(counts) / len(counts))


def apply(choice: str | None = None, *, probe=other_runnable) -> tuple[str, str]:
    """Set OMP_WAIT_POLICY for this process and its children; returns (policy in force, why). ``choice``:
    one of CHOICES, or None for the environment's own value, else DEFAULT. No effect on a torch already loaded."""
    if choice is None and os.environ.get("OMP_WAIT_POLICY"):
        return os.environ["OMP_WAIT_POLICY"].lower(), "from the environment"
    choice = choice or DEFAULT
    if choice != "auto":
        os.environ["OMP_WAIT_POLICY"] = choice.upper()
        return choice, "--omp-wait-policy"
    busy = probe()
    if busy is not None and busy >= BUSY:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "passive", f"auto: {busy:.1f} other task(s) running on the CPU"
    os.environ.pop("OMP_WAIT_POLICY", None)
    return "default", "auto: the CPU is quiet" if busy is not None else "auto: CPU load unknown"
