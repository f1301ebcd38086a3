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
def test_demo_stages_end_to_end_and_exits_1_when_the_criterion_fails(tiny_checkpoint, tiny_market, tmp_path, capsys):
    """The random-weight checkpoint's exports pass verify, but it is not a compatible model: the demo runs every
    stage, then says plainly that the gate failed, and exits 1."""
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--data", str(tiny_market), "--checkpoint", str(tiny_checkpoint),
               "--formats", "onnx", "--precisions", "fp32", "--bench-iters", "2", "--quiet"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"] == {"checkpoint": str(tiny_checkpoint), "trained": False}
    assert summary["export"]["ok"] == 4 and summary["export"]["failed"] == 0  # one ONNX artifact per width
    assert summary["verify"]["passed"] and summary["verify"]["counts"]["fail"] == 0
    assert set(summary["seconds"]) == {"data", "train", "eval", "export", "verify", "bench"}
    for name in ("summary.md", "eval.json", "bench.json", "bench.png", "verify/report.html"):
        assert (out / name).is_file(), name
    assert not summary["eval"]["compatible"], summary["eval"]["map"]  # random weights: no compatibility
    assert summary["gate"] == {"passed": False, "failed": ["compatibility criterion"]}
    assert rc == 1
    assert printed.rstrip().splitlines()[-1] == ("demo: FAILED: the demo ran to the end, but compatibility "
                                                  "criterion failed; exit code 1")
    assert "gate: FAILED" in (out / "summary.md").read_text()
    assert json.loads((out / "bench.json").read_text())["host"]["cpu_model"]


@pytest.mark.parametrize("verify, compatible, failed", [
    (True, True, []), (False, True, ["verify"]), (True, False, ["compatibility criterion"]),
    (False, False, ["verify", "compatibility criterion"]),
])
def test_gate_needs_verify_and_the_criterion(verify, compatible, failed):
    from swedge.demo import gate

    assert gate({"verify": {"passed": verify}, "eval": {"compatible": compatible}}) == {"passed": not failed,
                                                                                        "failed": failed}


@pytest.mark.parametrize("passed, rc", [(True, 0), (False, 1)])
def test_exit_code_follows_the_gate(monkeypatch, tmp_path, capsys, passed, rc):
    import swedge.demo

    monkeypatch.setattr(swedge.demo, "run_demo", lambda cfg: {"gate": swedge.demo.gate(
        {"verify": {"passed": passed}, "eval": {"compatible": True}})})
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == rc
    assert capsys.readouterr().out.rstrip().endswith("demo: PASSED (verify passed, compatibility criterion holds)"
                                                     if passed else "failed; exit code 1")


def test_the_demo_trains_its_recipe(tmp_path):
    from swedge.demo import DEMO_METHOD, DEMO_OPTIONS, DemoConfig, _train_config

    cfg = _train_config(DemoConfig(out=tmp_path, seed=4), tmp_path)
    assert (cfg.method, cfg.method_options, cfg.seed) == (DEMO_METHOD, DEMO_OPTIONS, 4)
    other = _train_config(DemoConfig(out=tmp_path, method="bct", method_options=["x=1"]), tmp_path)
    assert (other.method, other.method_options) == ("bct", ["x=1"])


def test_the_demo_repairs_int8_files_that_miss_the_gate_unless_told_not_to(tmp_path, monkeypatch):
    """The demo's export plan asks for --int8-repair (a 6-epoch model's int8 margins move between machines);
    `swedge demo --no-int8-repair` exports int8 as calibrated."""
    import swedge.demo as demo
    from swedge.cli import main

    assert demo._export_plan(demo.DemoConfig(), tmp_path, tmp_path / "m.safetensors").int8_repair
    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg, say=print: seen.append(cfg) or {"gate": {"passed": True}})
    monkeypatch.setattr(demo, "verdict_line", lambda result: "")
    for flags, expected in (([], True), (["--no-int8-repair"], False)):
        main(["demo", "--out", str(tmp_path / f"d{len(seen)}"), "--quiet", *flags])
        assert seen[-1].int8_repair is expected
