"""The trainer's shared-CPU warning: run-queue wait per second of wall time, and a one-time piece of advice."""

import os

import pytest

from swedge.training.contention import ContentionWatch, run_queue_wait


class Fake:
    def __init__(self, values):
        self.values = list(values)

    def __call__(self):
        return self.values.pop(0)


def test_sample_is_wait_per_wall_second():
    watch = ContentionWatch(reader=Fake([1.0, 1.5, 5.5]), clock=Fake([10.0, 11.0, 13.0]))
    assert watch.sample() == pytest.approx(0.5)
    assert watch.sample() == pytest.approx(2.0)  # two threads that never got a core


def test_sample_is_none_without_schedstat():
    watch = ContentionWatch(reader=Fake([-1.0, 2.0, 3.0]), clock=Fake([0.0, 1.0, 2.0]))
    assert watch.sample() is None  # the previous reading was unavailable
    assert watch.sample() == pytest.approx(1.0)


def test_advice_once_above_the_threshold(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    watch = ContentionWatch(threshold=0.5, reader=Fake([0.0]), clock=Fake([0.0]))
    assert watch.advice(None) is None and watch.advice(0.1) is None and not watch.warned
    msg = watch.advice(1.2)
    assert "1.20 s per second" in msg and "--omp-wait-policy passive" in msg
    assert watch.advice(1.5) is None  # said once


def test_advice_without_the_omp_hint_when_threads_already_sleep(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    msg = ContentionWatch(reader=Fake([0.0]), clock=Fake([0.0])).advice(0.9)
    assert "holding the CPU cores" in msg and "OMP_WAIT_POLICY" not in msg


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux schedstat (/proc) is not available here")
def test_run_queue_wait_reads_this_process():
    first = run_queue_wait()
    sum(i * i for i in range(200_000))
    assert 0 <= first <= run_queue_wait()
