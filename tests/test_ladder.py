"""The ablation ladder: each rung one mechanism away from its neighbour; sfsc with both mechanisms off is
sfsc-sum bitwise; sfsc-sum's sub_width_weight control; --grad-clip and its train-log records."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from swedge.checkpoint import load_checkpoint
from swedge.methods import METHODS
from swedge.methods.base import StepContext
from swedge.methods.sfsc import SFSC_SUM_OPTIONS
from swedge.nn.model import ModelConfig, build_model
from swedge.training.config import TrainConfig
from swedge.training.trainer import train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from swedge.data.synth import generate

    out = tmp_path_factory.mktemp("d") / "synth"
    generate(out, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    return out


def _cfg(data, out, method, opts=(), **kw):
    base = dict(data=str(data), out=str(out), method=method, method_options=list(opts), input_size=(32, 16),
                epochs=1, ids_per_batch=4, images_per_id=2, widths=(0.5, 1.0), embedding_dim=8, workers=0,
                log_every=1, max_steps=3)
    base.update(kw)
    return TrainConfig(**base)


def _options(name, **over) -> dict:
    return dataclasses.asdict(METHODS.get(name).Options(**over))


def _differ(a: dict, b: dict) -> set:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_each_rung_differs_from_its_neighbour_in_exactly_one_field():
    bottom = _options("sfsc", **SFSC_SUM_OPTIONS)  # sfsc-sum, written as sfsc's options
    proj, unc, top = _options("sfsc-projection-only"), _options("sfsc-uncertainty-only"), _options("sfsc")
    assert _differ(bottom, proj) == {"projection"}
    assert _differ(bottom, unc) == {"uncertainty"}
    assert _differ(proj, top) == {"uncertainty"}
    assert _differ(unc, top) == {"projection"}
    assert top["merge"] == "sum"  # PCGrad's Algorithm 1 and the authors' code
    # sfsc-sum's own options are the ones the sfsc rungs share with it, at the same values
    sum_opts = _options("sfsc-sum")
    assert {k: bottom[k] for k in sum_opts if k in bottom} == {k: v for k, v in sum_opts.items() if k in bottom}


def test_sfsc_without_its_mechanisms_trains_bitwise_like_sfsc_sum(tiny_data, tmp_path):
    a = train(_cfg(tiny_data, tmp_path / "sum", "sfsc-sum"), progress=False)
    opts = [f"{k}={str(v).lower()}" for k, v in SFSC_SUM_OPTIONS.items()]
    b = train(_cfg(tiny_data, tmp_path / "sfsc", "sfsc", opts), progress=False)
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    init = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 8)).state_dict()
    assert any(not torch.equal(wa[k], init[k]) for k in wa if k in init)  # it trained
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _batch():
    return torch.randn(8, 3, 32, 16, generator=torch.Generator().manual_seed(1)), torch.arange(4).repeat_interleave(2)


def test_sub_width_weight_scales_the_sub_widths_ce_only():
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet18", (0.5, 1.0), 8, 4)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 20.0)
    images, labels = _batch()
    cls = METHODS.get("sfsc-sum")
    method = cls(cls.parse_options(["sub_width_weight=0.25", "triplet_weight=0"]))
    ctx = StepContext(0, 10, 0, (1.0, 0.5), 0, model.forward_train, lambda loss: loss.backward())
    logs = method.train_step(model, images, labels, ctx)
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    total = 0
    for w, weight in ((1.0, 1.0), (0.5, 0.25)):
        model.set_width(w)
        total = total + weight * torch.nn.functional.cross_entropy(model.forward_train(images)["logits"], labels,
                                                                   label_smoothing=0.1)
    total.backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
    assert logs["loss@0.5"] == pytest.approx(0.25 * logs["ce@0.5"], rel=1e-5)
    assert logs["loss@1.0"] == pytest.approx(logs["ce@1.0"], rel=1e-5)
    assert {"ace@0.5", "alpha_y_over_s@0.5", "uncertainty@0.5"} <= set(logs)


def test_sub_width_weight_must_be_non_negative():
    from swedge.errors import SwedgeError

    cls = METHODS.get("sfsc-sum")
    with pytest.raises(SwedgeError, match="sub_width_weight"):
        cls(cls.parse_options(["sub_width_weight=-1"]))


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_grad_clip_is_recorded_logged_and_can_be_switched_off(tiny_data, tmp_path):
    tight = train(_cfg(tiny_data, tmp_path / "tight", "sfsc-sum", grad_clip=1e-6), progress=False)
    rows = _log(tmp_path / "tight")
    assert all(r["clipped"] == 1 and r["clipped_steps"] == r["clip_steps"] == 1 and r["grad_norm"] > 1e-6
               for r in rows)
    assert load_checkpoint(tight).meta["training"]["grad_clip"] == 1e-6
    off = train(_cfg(tiny_data, tmp_path / "off", "sfsc-sum", grad_clip=0.0, log_every=3), progress=False)
    rows = _log(tmp_path / "off")
    assert [(r["clipped"], r["clipped_steps"], r["clip_steps"]) for r in rows] == [(0, 0, 3)]
    assert load_checkpoint(off).meta["training"]["grad_clip"] == 0.0
    # off leaves the gradients bitwise alone: the same run with a clip no step reaches gives the same weights
    loose = train(_cfg(tiny_data, tmp_path / "loose", "sfsc-sum", grad_clip=1e9, log_every=3), progress=False)
    wo, wl = load_file(str(off)), load_file(str(loose))
    assert all(torch.equal(wo[k], wl[k]) for k in wo)


def test_grad_clip_flag_parses_off_and_rejects_nonsense():
    from swedge.errors import SwedgeError
    from swedge.training.config import parse_grad_clip

    assert parse_grad_clip("off") == 0.0 and parse_grad_clip("0") == 0.0 and parse_grad_clip("2.5") == 2.5
    for bad in ("-1", "nan", "lots"):
        with pytest.raises(SwedgeError, match="--grad-clip"):
            parse_grad_clip(bad)
