"""`swedge bench`: timings for every artifact and the torch baseline, with honest skips."""

import json
import shutil

from swedge.cli import main
from swedge.runtimes.bench import bench_bundle


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
