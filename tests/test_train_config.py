"""Training settings: each bad value stops with a message naming its flag; the learning-rate schedules."""

import json
import math

import pytest
import torch

from swedge.errors import SwedgeError
from swedge.training.config import TrainConfig, check_config, check_device, lr_factor


def _cfg(**kw):
    return TrainConfig(data="d", out="o", **kw)


def test_defaults_pass():
    check_config(_cfg())
    check_config(_cfg(schedule="step", decay_epochs=(2.0, 4.5)))


@pytest.mark.parametrize("kw, says", [
    (dict(epochs=0), "--epochs must be >= 1"),
    (dict(ids_per_batch=1), "--ids-per-batch (P) must be >= 2"),
    (dict(images_per_id=0), "--images-per-id (K) must be >= 1"),
    (dict(embedding_dim=0), "--embedding-dim must be >= 1"),
    (dict(lr=-1.0), "--lr must be > 0"),
    (dict(lr=0.0), "--lr must be > 0"),
    (dict(lr=math.nan), "must be finite"),
    (dict(weight_decay=-1e-4), "--weight-decay must be >= 0"),
    (dict(optimizer="sgd"), "unknown optimizer 'sgd'"),
    (dict(warmup_epochs=-1.0), "--warmup-epochs must lie in [0, --epochs=6]"),
    (dict(warmup_epochs=7.0), "--warmup-epochs must lie in [0, --epochs=6]"),
    (dict(schedule="linear"), "unknown schedule 'linear'"),
    (dict(decay_epochs=(2.0,)), "--decay-epochs belongs to --schedule step"),
    (dict(schedule="step", decay_epochs=(4.0, 2.0)), "--decay-epochs must be ascending epochs inside (0, --epochs=6)"),
    (dict(schedule="step", decay_epochs=(6.0,)), "inside (0, --epochs=6)"),
    (dict(decay_rate=0.0), "--decay-rate must lie in (0, 1]"),
    (dict(grad_clip=-1.0), "--grad-clip must be > 0, or 0 / off"),
    (dict(workers=-1), "--workers must be >= 0"),
    (dict(amp="fp8"), "unknown --amp 'fp8'"),
    (dict(log_every=0), "--log-every must be >= 1"),
    (dict(batch_shards=0), "--batch-shards must be >= 1"),
    (dict(max_steps=-5), "--max-steps must be >= 0"),
    (dict(device="gpu"), "unknown --device 'gpu'"),
    (dict(device="meta"), "swedge trains on cpu or cuda[:N]"),
])
def test_bad_settings_name_their_flag(kw, says):
    with pytest.raises(SwedgeError) as err:
        check_config(_cfg(**kw))
    assert says in str(err.value)


def test_cuda_device_must_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SwedgeError, match="--device cuda: no CUDA GPU is usable here .* --device cpu"):
        check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda")
    check_device("cuda:1")
    with pytest.raises(SwedgeError, match="2 CUDA device.*cuda:0 to cuda:1"):
        check_device("cuda:2")


def test_lr_schedules():
    total, warmup = 100, 10
    assert lr_factor(0, total, warmup) == pytest.approx(0.1)  # warm-up: linear from 1/warmup
    assert lr_factor(9, total, warmup) == pytest.approx(1.0)
    assert lr_factor(10, total, warmup) == pytest.approx(1.0)  # cosine starts at the base rate ...
    assert lr_factor(99, total, warmup) == pytest.approx(0.01, abs=1e-3)  # ... and ends at 1 %
    step = [lr_factor(s, total, warmup, (40, 70), 0.1) for s in range(total)]
    assert step[0] == pytest.approx(0.1) and step[39] == 1.0
    assert step[40] == pytest.approx(0.1) and step[69] == pytest.approx(0.1)
    assert step[70] == pytest.approx(0.01) and step[99] == pytest.approx(0.01)


def test_step_schedule_in_a_training_run(tmp_path):
    from swedge.data.synth import generate
    from swedge.training.trainer import train

    data = tmp_path / "d"
    generate(data, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), input_size=(32, 16), epochs=4, ids_per_batch=4,
                      images_per_id=2, widths=(0.5, 1.0), embedding_dim=8, workers=0, log_every=1, warmup_epochs=0,
                      schedule="step", decay_epochs=(2, 3), lr=1e-3)
    train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    per_epoch = len(log) // 4
    lrs = [round(r["lr"], 9) for r in log]  # the rate for the next step, logged after each step
    want = [1e-3] * (2 * per_epoch - 1) + [1e-4] * per_epoch + [1e-5] * (per_epoch + 1)
    assert lrs == pytest.approx(want)
