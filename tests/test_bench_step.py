"""benchmarks/bench_step.py runs end to end in its --quick mode and writes the figures the issue asks for."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_step", ROOT / "benchmarks" / "bench_step.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being created
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_quick_run_writes_timings_and_checks(bench, tmp_path, torch_threads):
    out = tmp_path / "step.json"
    # one thread: the smoke test should not fight the other tests' threads on a 2-core machine
    assert bench.main(["--quick", "--no-memory", "--threads", "1", "--silent", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    timing = result["timing"]
    assert set(timing) == {"full", "sfsc"}
    # the ratios are what the written per-step records say (one block of one step in --quick)
    full_steps, sfsc_steps = timing["full"]["steps"], timing["sfsc"]["steps"]
    assert len(full_steps) == len(sfsc_steps) == 1
    assert timing["sfsc"]["ratio_to_full_paired"] == pytest.approx(sfsc_steps[0]["total"] / full_steps[0]["total"])
    assert timing["sfsc"]["train_step_ratio_to_full"] == pytest.approx(sfsc_steps[0]["train_step"]
                                                                       / full_steps[0]["train_step"])
    assert 0 < sfsc_steps[0]["train_step"] < sfsc_steps[0]["total"]
    sfsc = timing["sfsc"]
    assert sfsc["median_s"]["total"] > 0 and sfsc["median_s"]["project"] > 0 and sfsc["median_s"]["merge"] > 0
    assert 0 < sfsc["after_last_backward_share"] < 1
    assert timing["full"]["median_s"]["project"] == 0  # the baseline never projects
    assert set(result["checks"]) == {"sfsc_over_full_time", "sfsc_projection_merge_writeback_share",
                                     "sfsc_over_full_step_peak_memory"}
    assert result["checks"]["sfsc_over_full_step_peak_memory"]["ok"] is None  # --no-memory
    # the wrapped projection functions are restored afterwards
    import swedge.methods.sfsc as sfsc_mod

    assert not hasattr(sfsc_mod.project_conflicts, "__wrapped__")


def test_memory_child_reports_a_step_peak(bench, torch_threads):
    args = bench.parse_args(["--quick", "--memory-child", "sfsc", "--threads", "1"])
    r = bench.memory_child(args)
    assert r["param_mib"] > 10  # ResNet-18
    assert r["first_step_peak_over_setup_mib"] >= 0
    if r["peak_counter"].startswith("VmHWM"):
        assert r["step_peak_over_steady_mib"] is not None and r["step_peak_over_steady_mib"] >= 0


def test_plain_widths_floor_computes_the_switchable_models_function(bench, torch_threads):
    """The floor configuration is only a fair floor if its ordinary per-width models are the same networks."""
    import torch

    images, labels = bench.make_batch(8, (32, 16))
    floor = bench.build_bench("plain-widths", "resnet18", images, labels)
    switchable = bench.build_bench("sfsc-sum", "resnet18", images, labels)  # same seed, same init
    floor.model.eval()
    switchable.model.eval()
    with torch.no_grad():
        for width in floor.widths:
            floor.model.set_width(width)
            switchable.model.set_width(width)
            a, b = floor.model.forward_train(images), switchable.model.forward_train(images)
            for key in ("feat", "embedding", "logits"):
                torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    floor.model.train()
    before = [m.neck.weight.detach().clone() for m in floor.model.members]
    record = floor.step()
    assert record.train_step > 0 and record.project == 0
    # one optimizer over every width's model: each member moved
    assert all(not torch.equal(b, m.neck.weight) for b, m in zip(before, floor.model.members))


def test_channels_last_configuration_runs_in_nhwc(bench, torch_threads):
    images, labels = bench.make_batch(8, (32, 16))
    b = bench.build_bench("sfsc", "resnet18", images, labels, channels_last=True)
    assert b.images.is_contiguous(memory_format=torch.channels_last) and not b.images.is_contiguous()
    conv = next(p for p in b.model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    before = conv.detach().clone()
    with bench.instrumented():
        rec = b.step()
    assert rec.project > 0 and not torch.equal(conv.detach(), before)


def test_ratios_are_paired_per_block_medians(bench, monkeypatch):
    """run_timing's statistics on scripted step times, where the paired median of per-block ratios, the ratio of
    medians and the ratio of minima all differ: each figure must be the one its name says."""
    script = {"full": [9.0, 1.0, 4.0, 1.0], "sfsc": [9.0, 3.0, 4.0, 2.0]}  # a warm-up step, then 3 blocks

    class Fake:
        def __init__(self, name, *args, **kwargs):
            self.name, self.widths, self.records, self.times = name, (1.0,), [], iter(script[name])

        def step(self):
            t = next(self.times)
            return bench.StepRecord(total=t, train_step=t / 2 if self.name == "full" else t - 0.5, wait=0.0)

    monkeypatch.setattr(bench, "build_bench", Fake)
    args = bench.parse_args(["--quick", "--threads", "1"])
    args.repeats, args.min_quiet = 3, 1
    t = bench.run_timing(args, ["full", "sfsc"], None, None)
    s = t["sfsc"]
    assert s["ratio_to_full_paired_all"] == [3.0, 1.0, 2.0]  # per block: 3/1, 4/4, 2/1
    assert s["ratio_to_full_paired"] == 2.0  # their median
    assert s["ratio_to_full_of_medians"] == 3.0  # median 3 over median 1
    assert s["ratio_to_full_of_mins"] == 2.0
    assert s["ratio_to_full_quiet"] == 3.0  # every step is quiet (no run-queue wait): the medians again
    assert s["train_step_ratio_to_full"] == pytest.approx(2.5 / 0.5)  # median train_step 2.5 over 0.5
    assert t["full"]["ratio_to_full_paired"] == 1.0 and t["full"]["ratio_to_full_paired_all"] == [1.0] * 3
