"""`swedge demo`, the README's main command: every stage's settings checked up front; the stages end to end."""

import json

import pytest

from swedge.cli import main


@pytest.mark.parametrize("bad, says", [
    (["--bench-iters", "0"], "--bench-iters must be >= 1"),
    (["--formats", "onnxx"], "Did you mean 'onnx'?"),
    (["--precisions", "fp61"], "Did you mean 'fp16'?"),
    (["--method", "sfsc-summ"], "Did you mean 'sfsc-sum'"),
    (["--epochs", "0"], "--epochs must be >= 1"),
])
def test_demo_checks_every_stage_before_the_first(bad, says, tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "data"
    assert main(["demo", "--out", str(out), "--data", str(data), "--quiet", *bad]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists() and not data.exists()  # no stage ran: nothing generated, nothing trained


@pytest.mark.slow
def test_demo_stages_end_to_end_from_a_checkpoint(tiny_checkpoint, tiny_market, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--data", str(tiny_market), "--checkpoint", str(tiny_checkpoint),
                 "--formats", "onnx", "--precisions", "fp32", "--bench-iters", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"] == {"checkpoint": str(tiny_checkpoint), "trained": False}
    assert summary["export"]["ok"] == 4 and summary["export"]["failed"] == 0  # one ONNX artifact per width
    assert summary["verify"]["passed"] and summary["verify"]["counts"]["fail"] == 0
    assert set(summary["seconds"]) == {"data", "train", "eval", "export", "verify", "bench"}
    for name in ("summary.md", "eval.json", "bench.json", "bench.png", "verify/report.html"):
        assert (out / name).is_file(), name
    assert "summary: " in capsys.readouterr().out
