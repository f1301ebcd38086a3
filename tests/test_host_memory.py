import sys

import pytest

from swedge.training import host_memory


def test_retain_freed_memory_applies_on_linux_glibc():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc mallopt only exists on Linux")
    applied, note = host_memory.retain_freed_memory()
    assert applied, note
    assert "trim threshold" in note


def test_retain_freed_memory_reports_why_not(monkeypatch):
    monkeypatch.setattr(host_memory.sys, "platform", "darwin")
    applied, note = host_memory.retain_freed_memory()
    assert not applied and "not Linux" in note
