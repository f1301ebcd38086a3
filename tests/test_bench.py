"""`swedge bench`: timings for every artifact and the torch baseline, with honest skips."""

import json
import shutil

import pytest

from swedge.cli import main
from swedge.runtimes import memory
from swedge.runtimes.bench import bench_bundle
from swedge.runtimes.manifest import file_sha256


def test_bench_times_artifacts_against_torch(onnx_bundle, tmp_path, capsys):
    rc = main(["bench", str(onnx_bundle), "--iters", "3", "--warmup", "1", "--batches", "1,4",
               "--json", str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "p50 ms" in out
    timings = json.loads((tmp_path / "b.json").read_text())["timings"]
    assert {(t["runtime"], t["width"], t["batch"]) for t in timings} == {
        (r, w, b) for r in ("torch", "onnxruntime") for w in (0.5, 1.0) for b in (1, 4)}
    for t in timings:
        assert t["status"] == "ok" and 0 < t["p50_ms"] <= t["p90_ms"]
        if t["runtime"] == "onnxruntime":
            assert t["speedup_vs_torch"] > 0
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_swedge_bench_json_is_the_device_schema_and_select_takes_it(onnx_bundle, tmp_path, capsys):
    """`swedge bench` writes what `python -m swedge.runtimes bench` writes (plus the torch rows)."""
    rc = main(["bench", str(onnx_bundle), "--iters", "2", "--warmup", "0", "--batches", "1",
               "--json", str(tmp_path / "b.json")])
    assert rc == 0
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["schema"] == "swedge.bench" and d["manifest_sha256"] == file_sha256(onnx_bundle / "manifest.json")
    assert d["runtimes"] == ["onnxruntime"] and d["peak_rss_mb"] > 10 and d["iters"] == 2
    assert {t["id"] for t in d["timings"]} == {"torch-w0.5", "torch-w1", "onnx-w0.5-fp32", "onnx-w1-fp32"}
    (tmp_path / "p.toml").write_text('[device.d]\nruntime = "onnxruntime"\nlatency_p90_ms = 100000\n')
    capsys.readouterr()
    assert main(["select", str(onnx_bundle), "--profiles", str(tmp_path / "p.toml"), "--bench",
                 str(tmp_path / "b.json"), "--quiet"]) == 0
    assert "onnx-w1-fp32" in capsys.readouterr().out


def test_peak_memory_is_measured_per_artifact():
    """The high-water mark is reset before each artifact (Linux), so a big earlier peak does not carry over."""
    import numpy as np

    method = memory.reset_peak()
    if method != memory.PER_ARTIFACT:
        pytest.skip(f"no per-artifact reset here: {method}")
    big = np.ones(25_000_000)  # 200 MB, touched
    high = memory.peak_mb(method)
    del big
    assert memory.reset_peak() == method
    assert memory.peak_mb(method) < high - 150


def test_torch_baseline_is_skipped_when_the_checkpoint_changed(onnx_bundle, tiny_checkpoint, tmp_path):
    other = tmp_path / "other.safetensors"
    shutil.copy(tiny_checkpoint, other)
    with open(other, "ab") as f:
        f.write(b"\0")
    timings = bench_bundle(onnx_bundle, batches=(1,), warmup=0, iters=1, checkpoint=other, progress=False)
    torch_rows = [t for t in timings if t.runtime == "torch"]
    assert torch_rows and all(t.status == "skipped" and "sha256 differs" in t.reason for t in torch_rows)
    assert all(t.status == "ok" for t in timings if t.runtime == "onnxruntime")


def test_bench_rejects_bad_counts(onnx_bundle, capsys):
    counts = "--iters and --threads must be >= 1 and --warmup >= 0"
    for bad, says in ((["--iters", "0"], counts), (["--warmup", "-1"], counts), (["--threads", "0"], counts),
                      (["--batches", "0"], "--batches must be positive integers"),
                      (["--batches", "1,x"], "--batches must be positive integers")):
        assert main(["bench", str(onnx_bundle), *bad]) == 2
        assert says in capsys.readouterr().err


def test_every_runner_is_closed_even_when_timing_fails(onnx_bundle, monkeypatch):
    """bench_bundle uses each runner in `with`: one whose timing raises still frees its session."""
    from swedge.errors import SwedgeError
    from swedge.runtimes import bench
    from swedge.runtimes.ort_runner import OrtRunner

    closed = []
    real_close = OrtRunner.close
    monkeypatch.setattr(OrtRunner, "close", lambda self: (closed.append(self.path.name), real_close(self)))

    def broken(runner, x, *, warmup, iters):
        raise SwedgeError("the timer broke")

    monkeypatch.setattr(bench, "time_runner", broken)
    timings = bench_bundle(onnx_bundle, batches=(1,), warmup=0, iters=1, torch_baseline=False, progress=False)
    assert [(t.status, t.reason) for t in timings] == [("skipped", "the timer broke")] * 2
    assert sorted(closed) == ["w0.5-fp32.onnx", "w1-fp32.onnx"]
