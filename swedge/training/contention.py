"""Is another process holding this machine's cores? Read from Linux schedstat, to warn while training on CPU.

Measured on the project's 2-core machine: with a second job on the cores, a training step ran 5-20x slower,
because PyTorch's OpenMP threads spin at every barrier while a sibling thread is descheduled
(`benchmarks/bench_step.py`, `benchmarks/bench_contention.py`). swedge's commands therefore default to
OMP_WAIT_POLICY=PASSIVE when other processes are running as they start (swedge/omp_policy.py); the trainer
measures the wait and says so, once, naming the policy.
"""

from __future__ import annotations

import os
import time


def run_queue_wait() -> float:
    """Seconds this process's threads have spent runnable but not running (Linux schedstat), -1 if unavailable."""
    total = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return -1.0
    return total / 1e9


class ContentionWatch:
    """Run-queue wait of this process's threads per second of wall time, between samples (0 on an idle machine;
    summed over threads, so two threads that never get a core read 2.0)."""

    def __init__(self, threshold: float = 0.5, reader=run_queue_wait, clock=time.perf_counter):
        self.threshold, self._reader, self._clock = threshold, reader, clock
        self._last = (reader(), clock())
        self.warned = False

    def sample(self) -> float | None:
        """Wait share since the previous sample; None where schedstat is unavailable."""
        now = (self._reader(), self._clock())
        (w0, t0), (w1, t1) = self._last, now
        self._last = now
        if w0 < 0 or w1 < 0 or t1 <= t0:
            return None
        return max(0.0, w1 - w0) / (t1 - t0)

    def advice(self, share: float | None) -> str | None:
        """A one-time message when ``share`` reaches the threshold, else None."""
        if share is None or share < self.threshold or self.warned:
            return None
        self.warned = True
        msg = (f"warning: other processes are holding the CPU cores (this run's threads waited {share:.2f} s per "
               "second for a core since the last log line); training slows down accordingly.")
        if os.environ.get("OMP_WAIT_POLICY", "").lower() != "passive":
            msg += (" OpenMP threads spin here (OMP_WAIT_POLICY is not PASSIVE), which made steps 5-20x slower on "
                    "a shared CPU: stop the other jobs, or start this run with --omp-wait-policy passive.")
        return msg
