"""swedge's commands set OpenMP's wait policy before torch loads: passive on a shared CPU, the user's choice first."""

import os
import subprocess
import sys

import pytest

from swedge import omp_policy


@pytest.fixture
def no_policy(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)


def test_auto_sleeps_on_a_shared_cpu_and_spins_on_a_quiet_one(no_policy):
    assert omp_policy.apply(probe=lambda: 1.0)[0] == "passive" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert omp_policy.apply("auto", probe=lambda: 0.0)[0] == "default" and "OMP_WAIT_POLICY" not in os.environ
    assert omp_policy.apply(probe=lambda: None)[0] == "default"  # unknown load: libgomp's own default


def test_the_environment_and_the_flag_win(no_policy, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert omp_policy.apply(probe=lambda: 2.0) == ("active", "from the environment")
    assert omp_policy.apply("passive", probe=lambda: 0.0)[0] == "passive"


def test_other_runnable_reads_procs_running(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n")
    assert omp_policy.other_runnable(samples=2, interval=0, stat=str(stat)) == 2.0
    assert omp_policy.other_runnable(stat=str(tmp_path / "missing")) is None


def test_the_cli_sets_it_before_torch_starts():
    """In a fresh process: the policy is set before anything imports torch (its OpenMP reads it once)."""
    code = ("import os, sys; from swedge import omp_policy; from swedge.cli import main\n"
            "seen = []; real = omp_policy.apply\n"
            "omp_policy.apply = lambda c=None: (seen.append('torch' in sys.modules), real(c))[1]\n"
            "rc = main(['--omp-wait-policy', 'active', 'verify', '/nonexistent-bundle'])\n"
            "print(rc, seen, os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[False] ACTIVE"), out
