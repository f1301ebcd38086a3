"""swedge as a library (swedge.api): the example runs end to end; arguments are coerced (one name is a list of one,
never its characters); defaults are the CLI's; the CLI commands are callers of these functions; typed results."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import swedge
from swedge import api
from swedge.cli import main
from swedge.errors import SwedgeError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"


@pytest.mark.slow
def test_the_example_script_trains_exports_verifies_and_benches(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path / "work")], capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify PASSED: 2 passed, 0 failed" in done.stdout, done.stdout
    assert "onnxruntime" in done.stdout and "p50 ms" in done.stdout  # the bench table
    work = tmp_path / "work"
    assert (work / "run" / "model.safetensors").is_file()
    assert {a.id for a in swedge.open_bundle(work / "bundle").artifacts} == {"onnx-w0.5-fp32", "onnx-w1-fp32"}


# --- coercion --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("onnx", ["onnx"]), ("onnx,tflite", ["onnx", "tflite"]), (["onnx"], ["onnx"]), (("onnx", " tflite "),
                                                                                      ["onnx", "tflite"]),
])
def test_names_are_one_name_a_comma_list_or_a_list(value, expected):
    assert api.as_names(value, "formats") == expected


@pytest.mark.parametrize("value, expected", [
    (0.5, [0.5]), ("0.5", [0.5]), ([0.5, 1.0], [0.5, 1.0]), ("0.5,1.0", [0.5, 1.0]), (["0.5", 1], [0.5, 1.0]),
    ((1,), [1.0]),
])
def test_widths_are_a_number_a_string_or_a_list(value, expected):
    assert api.as_widths(value) == expected


def test_export_plan_coerces_every_argument():
    plan = api.export_plan("ck.safetensors", "bundles/a", formats="onnx", widths="0.5,1.0", precisions="fp32",
                           probe="data", calib_size="64")
    assert plan.formats == ["onnx"] and plan.widths == [0.5, 1.0] and plan.precisions == ["fp32"]
    assert plan.out == Path("bundles/a") and plan.checkpoint == Path("ck.safetensors") and plan.probe == Path("data")
    assert plan.calib_size == 64 and plan.calib is None


@pytest.mark.parametrize("kwargs, says", [
    ({"formats": 3}, "formats must be a name"),
    ({"formats": ""}, "formats: give at least one name"),
    ({"precisions": ["fp32", 16]}, "precisions must be a name"),
    ({"widths": "half"}, "widths must be numbers"),
    ({"widths": [0.5, None]}, "widths must be numbers"),
    ({"widths": True}, "widths must be numbers"),
    ({"calib": 5}, "calib must be a path"),
    ({"calib_size": 2.5}, "calib_size must be a whole number"),
    ({"force": "yes"}, "force must be True or False"),
])
def test_a_bad_export_argument_is_a_swedge_error_naming_it(kwargs, says):
    with pytest.raises(SwedgeError, match=says):
        api.export_plan("ck.safetensors", "out", **kwargs)


def test_out_must_be_a_path():
    with pytest.raises(SwedgeError, match="out must be a path"):
        api.export_plan("ck.safetensors", None)


@pytest.mark.parametrize("kwargs, says", [
    ({"batches": 0}, "--batches must be positive integers like 1,32, got '0'"),
    ({"batches": [1, 2.5]}, "--batches must be positive integers"),
    ({"batches": "1,x"}, "--batches must be positive integers"),
    ({"iters": 0}, "--iters and --threads must be >= 1"),
    ({"runtimes": "onnxrt"}, "did you mean 'onnxruntime'"),
    ({"formats": 7}, "formats must be a name"),
])
def test_bench_refuses_bad_arguments_before_reading_the_bundle(kwargs, says, tmp_path):
    with pytest.raises(SwedgeError, match=says):
        api.bench(tmp_path / "no-bundle", **kwargs)


@pytest.mark.parametrize("settings, says", [
    ({"epoch": 1}, "unknown setting 'epoch' \\(did you mean 'epochs'\\?\\)"),
    ({"widths": "0.25,0.5"}, "largest width must be 1.0"),
    ({"input_size": "64by32"}, "input_size must be HxW"),
    ({"epochs": "two"}, "epochs must be a whole number"),
    ({"epochs": 0}, "--epochs must be >= 1"),
    ({"options": 3}, "options must be"),
    ({"imagenet": "yes"}, "imagenet must be True or False"),
])
def test_train_refuses_bad_settings_before_writing_anything(settings, says, tiny_market, tmp_path):
    with pytest.raises(SwedgeError, match=says):
        swedge.train(str(tiny_market), tmp_path / "run", workers=0, **settings)
    assert not (tmp_path / "run").exists()


def test_train_coerces_settings_into_the_config(monkeypatch, tiny_market, tmp_path):
    import swedge.training.trainer

    seen = {}

    def fake_train(cfg, progress, resume, overwrite):
        seen.update(cfg=cfg, resume=resume, overwrite=overwrite)
        return Path(cfg.out) / "model.safetensors"

    monkeypatch.setattr(swedge.training.trainer, "train", fake_train)
    result = swedge.train(tiny_market, str(tmp_path / "run"), widths="0.5,1.0", input_size="64x32",
                          decay_epochs="2,3", schedule="step", epochs="4", grad_clip="off",
                          options={"triplet_weight": 0})
    cfg = seen["cfg"]
    assert cfg.widths == (0.5, 1.0) and cfg.input_size == (64, 32) and cfg.decay_epochs == (2.0, 3.0)
    assert cfg.epochs == 4 and cfg.grad_clip == 0.0 and cfg.method_options == ["triplet_weight=0"]
    assert cfg.data == str(tiny_market) and cfg.out == str(tmp_path / "run") and cfg.method == "sfsc-sum"
    assert result.checkpoint == tmp_path / "run" / "model.safetensors" and result.run == tmp_path / "run"
    assert seen["overwrite"] is False and seen["resume"] is False  # the CLI's defaults: no --force, no --resume


# --- the CLI calls the API, with the same defaults ---------------------------------------------------------------


def test_export_defaults_are_one_function_shared_with_the_cli(monkeypatch, tmp_path):
    import swedge.exporters.bundle as bundle_mod

    plans = []

    def fake_export(plan, progress=True):
        plans.append(plan)
        return SimpleNamespace(artifacts=())

    monkeypatch.setattr(bundle_mod, "export_bundle", fake_export)
    ck = tmp_path / "ck.safetensors"
    assert main(["export", str(ck), "--out", str(tmp_path / "a"), "--calib", str(tmp_path), "--quiet"]) == 0
    assert main(["export", str(ck), "--out", str(tmp_path / "b"), "--probe", str(tmp_path), "--quiet"]) == 0
    bundle = swedge.export(ck, tmp_path / "c", calib=tmp_path, progress=False)
    swedge.export(str(ck), str(tmp_path / "d"), probe=str(tmp_path), progress=False)
    cli_calib, cli_probe, api_calib, api_probe = plans
    assert cli_calib.precisions == api_calib.precisions == api.default_precisions(True) == ["fp32", "fp16", "int8"]
    assert cli_probe.precisions == api_probe.precisions == api.default_precisions(None) == ["fp32", "fp16"]
    assert cli_calib.formats == api_calib.formats == list(api.EXPORT_FORMATS)
    for field in ("widths", "calib_size", "probe_size", "max_batch", "force", "int8_repair"):
        assert getattr(cli_calib, field) == getattr(api_calib, field), field
    assert bundle.root == (tmp_path / "c").resolve() and bundle.artifacts == ()


def test_api_defaults_are_the_exporters_defaults():
    from swedge.exporters.bundle import ExportPlan
    from swedge.exporters.probe import DEFAULT_PROBE_IMAGES

    plan = ExportPlan(checkpoint=Path("c"), out=Path("o"), formats=["onnx"])
    assert (api.CALIB_SIZE, api.PROBE_SIZE, api.MAX_BATCH) == (plan.calib_size, DEFAULT_PROBE_IMAGES, plan.max_batch)


def test_cli_train_and_bench_are_callers_of_the_api(monkeypatch, tmp_path, capsys):
    from swedge.training.config import TrainConfig

    calls = {}

    def fake_train(data, out, **kw):
        calls["train"] = (data, out, kw)
        return api.TrainResult(checkpoint=Path(out) / "model.safetensors", run=Path(out), config=None)

    def fake_bench(bundle, **kw):
        calls["bench"] = (bundle, kw)
        return api.BenchReport(bundle=bundle, timings=[], host={}, threads=1, warmup=5, iters=30)

    monkeypatch.setattr(api, "train", fake_train)
    monkeypatch.setattr(api, "bench", fake_bench)
    assert main(["train", "--data", "d", "--out", str(tmp_path / "r")]) == 0
    assert f"checkpoint: {tmp_path / 'r' / 'model.safetensors'}" in capsys.readouterr().out
    data, out, kw = calls["train"]
    defaults = TrainConfig(data="", out="")
    assert (data, out) == ("d", str(tmp_path / "r")) and kw["method"] == defaults.method
    for name in ("epochs", "widths", "lr", "arch", "seed", "grad_clip", "input_size"):
        assert kw[name] == getattr(defaults, name), name
    assert main(["bench", "b", "--runtime", "onnxruntime"]) == 0
    bundle, kw = calls["bench"]
    assert bundle == "b" and kw["runtimes"] == "onnxruntime" and kw["batches"] == "1,32"
    assert (kw["iters"], kw["warmup"], kw["threads"]) == (api.BENCH_ITERS, api.BENCH_WARMUP, api.BENCH_THREADS)


def test_cli_export_and_verify_are_callers_of_the_api(monkeypatch, tmp_path, capsys):
    from swedge.runtimes.manifest import Bundle
    from swedge.runtimes.verify import VerifyReport

    calls = {}

    def fake_export(checkpoint, out, **kw):
        calls["export"] = (checkpoint, out, kw)
        return Bundle(root=Path(out), manifest=SimpleNamespace(artifacts=()))

    def fake_verify(bundle, **kw):
        calls["verify"] = (bundle, kw)
        return VerifyReport(bundle=bundle, errors=["no artifacts"])

    monkeypatch.setattr(api, "export", fake_export)
    monkeypatch.setattr(api, "verify", fake_verify)
    assert main(["export", "ck", "--out", str(tmp_path / "b"), "--formats", "onnx", "--quiet"]) == 0
    assert f"bundle: {tmp_path / 'b'}  (0 ok, 0 skipped, 0 failed)" in capsys.readouterr().out
    checkpoint, out, kw = calls["export"]
    assert (checkpoint, kw["formats"], kw["precisions"], kw["calib"]) == ("ck", ["onnx"], None, None)
    assert main(["verify", "b", "--runtime", "onnxruntime", "--batch", "8"]) == 1
    assert "error: no artifacts" in capsys.readouterr().out
    assert calls["verify"] == ("b", dict(runtimes=["onnxruntime"], formats=None, thresholds=None,
                                         allow_weak_thresholds=False, baseline=None, batch=8, threads=None, json=None,
                                         junit=None, report=None, progress=True))


# --- typed results -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_returns_the_bundle_and_writes_its_json(tiny_checkpoint, tiny_market, tmp_path):
    from swedge.runtimes.manifest import Bundle

    bundle = swedge.export(str(tiny_checkpoint), str(tmp_path / "b"), formats="onnx", widths=1.0, precisions="fp32",
                           probe=str(tiny_market), json=tmp_path / "export.json", progress=False)
    assert isinstance(bundle, Bundle) and [a.id for a in bundle.artifacts] == ["onnx-w1-fp32"]
    assert bundle.artifacts[0].status == "ok" and bundle.root == (tmp_path / "b").resolve()
    assert swedge.open_bundle(str(tmp_path / "b")).manifest == bundle.manifest
    written = json.loads((tmp_path / "export.json").read_text())
    assert written["bundle"] == str(tmp_path / "b")
    assert written["artifacts"] == [a.to_dict() for a in bundle.artifacts]


def test_verify_and_bench_return_reports(onnx_bundle, tmp_path):
    from swedge.runtimes.bench import Timing
    from swedge.runtimes.verify import VerifyReport

    report = swedge.verify(onnx_bundle, runtimes="onnxruntime", formats="onnx", json=str(tmp_path / "v.json"),
                           report=tmp_path / "rep", progress=False)
    assert isinstance(report, VerifyReport) and report.passed and len(report.rows) == 2
    assert "verify PASSED" in report.table()
    assert report.outputs["report"] == tmp_path / "rep" / "report.md" and (tmp_path / "rep" / "report.md").is_file()
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is True
    bench = swedge.bench(str(onnx_bundle), batches="1", iters=2, warmup=0, runtimes=["onnxruntime"],
                         torch_baseline=False, json=tmp_path / "b.json", progress=False)
    assert isinstance(bench, api.BenchReport) and all(isinstance(t, Timing) for t in bench.timings)
    assert {t.id for t in bench.timings} == {"onnx-w0.5-fp32", "onnx-w1-fp32"} and bench.batches == [1]
    assert "onnxruntime" in bench.table() and "p50 ms" in bench.table()
    record = bench.to_dict()
    assert record["schema"] == "swedge.bench" and record["iters"] == 2
    assert json.loads((tmp_path / "b.json").read_text())["timings"] == record["timings"]
    assert bench.plot == str(tmp_path / "b.png") and (tmp_path / "b.png").is_file()  # beside --json, as the CLI


def test_open_bundle_and_verify_run_without_torch(onnx_bundle):
    code = (f"import sys, swedge; b = swedge.open_bundle({str(onnx_bundle)!r}); "
            f"r = swedge.verify(b.root, runtimes='onnxruntime', progress=False); "
            "assert r.passed and len(b.artifacts) == 2; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_checkpoint_takes_a_str_and_widths_as_text(tiny_checkpoint):
    from swedge.checkpoint import Checkpoint

    ckpt = swedge.load_checkpoint(str(tiny_checkpoint), widths="0.5,1.0")
    assert isinstance(ckpt, Checkpoint) and ckpt.config.widths == (0.25, 0.5, 0.75, 1.0)
    with pytest.raises(SwedgeError, match="width 0.3 is not one of them"):
        swedge.load_checkpoint(tiny_checkpoint, widths=0.3)
