"""Run control: --resume after a kill reproduces the uninterrupted run, OUT protection, --max-steps, and the
GPU code paths that also run on a CPU (bf16 autocast, channels-last)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from swedge.cli import main
from swedge.training.config import TrainConfig
from swedge.training.trainer import MACHINE_LOG_FIELDS, STATE_FILE, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from swedge.data.synth import generate

    out = tmp_path_factory.mktemp("d") / "synth"
    generate(out, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two cores shared with other jobs: more threads than cores slows these tiny steps by 10x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ARGS = dict(method="sfsc", input_size=(32, 16), widths=(0.5, 1.0), embedding_dim=8, workers=0, epochs=2,
            ids_per_batch=4, images_per_id=2, log_every=1)  # 4 steps per epoch


def _cli(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--method", "sfsc", "--input-size", "32x16",
            "--widths", "0.5,1.0", "--embedding-dim", "8", "--workers", "0", "--epochs", "2", "--ids-per-batch", "4",
            "--images-per-id", "2", "--log-every", "1", *extra]


def _log(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    train(TrainConfig(data=str(tiny_data), out=str(out), **ARGS), progress=False)
    return out


class Killed(Exception):
    """Stands in for SIGKILL: nothing after it runs, no handler saves anything."""


@pytest.mark.slow
def test_resume_after_a_kill_repeats_the_uninterrupted_run(tiny_data, full_run, tmp_path, monkeypatch):
    import swedge.methods.sfsc as sfsc

    full = _log(full_run)
    per_epoch = sum(r["epoch"] == 1 for r in full)
    assert per_epoch == 4 and len(full) == 8
    original = sfsc.Sfsc.train_step

    def dies_in_epoch_two(self, model, images, labels, ctx):
        if ctx.step == per_epoch + 1:  # epoch 2's first step is done and logged: a kill mid-epoch
            raise Killed
        return original(self, model, images, labels, ctx)

    monkeypatch.setattr(sfsc.Sfsc, "train_step", dies_in_epoch_two)
    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(TrainConfig(data=str(tiny_data), out=str(run), **ARGS), progress=False)
    monkeypatch.undo()
    assert [r["step"] for r in _log(run)] == list(range(1, per_epoch + 2))  # one record past the saved epoch
    state = torch.load(run / STATE_FILE, weights_only=True)  # plain tensors and containers only
    assert (state["step"], state["epochs_done"], state["phase"]) == (per_epoch, 1, 0)

    assert main(_cli(tiny_data, run, "--resume")) == 0
    resumed = _log(run)
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    for a, b in zip(resumed, full):
        for key in MACHINE_LOG_FIELDS:
            a.pop(key, None), b.pop(key, None)
        assert a == b  # exactly: same batches, augmentation, projection order, optimizer and RNG states
    got, want = load_file(run / "model.safetensors"), load_file(full_run / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert (run / "train_log.png").stat().st_size > 1000


def test_resume_refuses_other_settings(tiny_data, full_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    assert main(_cli(tiny_data, run, "--resume", "--widths", "0.25,0.5,1.0")) == 2
    err = capsys.readouterr().err
    assert "settings of the run in the folder" in err and "widths: saved [0.5, 1.0], now [0.25, 0.5, 1.0]" in err
    assert main(_cli(tiny_data, run, "--resume", "--method", "sfsc-sum")) == 2
    assert "method: saved 'sfsc', now 'sfsc-sum'" in capsys.readouterr().err
    assert main(_cli(tiny_data, tmp_path / "empty", "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_existing_run_needs_resume_or_force(tiny_data, full_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    assert main(_cli(tiny_data, run)) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "--force" in err
    assert main(_cli(tiny_data, run, "--resume", "--force")) == 2
    assert "choose one" in capsys.readouterr().err
    # --force starts afresh; --max-steps stops mid-epoch, so no trainer state (an epoch-end resume point) is left.
    assert main(_cli(tiny_data, run, "--force", "--max-steps", "1")) == 0
    assert [r["step"] for r in _log(run)] == [1]
    assert not (run / STATE_FILE).exists()


def test_optimizer_choice_is_used_and_recorded(tiny_data, full_run, tmp_path):
    """adamw (decoupled weight decay) trains other weights than adam from the same seed; unknown names fail."""
    from swedge.checkpoint import load_checkpoint
    from swedge.errors import SwedgeError

    path = train(TrainConfig(data=str(tiny_data), out=str(tmp_path / "w"), **ARGS, optimizer="adamw",
                             weight_decay=0.5), progress=False)
    assert load_checkpoint(path).meta["training"]["optimizer"] == "adamw"
    assert load_checkpoint(full_run / "model.safetensors").meta["training"]["optimizer"] == "adam"
    got, want = load_file(path), load_file(full_run / "model.safetensors")
    assert any(not torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(SwedgeError, match="unknown optimizer 'sgd': choose one of adam, adamw"):
        train(TrainConfig(data=str(tiny_data), out=str(tmp_path / "s"), **ARGS, optimizer="sgd"), progress=False)
    assert not (tmp_path / "s").exists()


def test_state_saved_before_the_optimizer_option_still_resumes(tiny_data, full_run, tmp_path):
    """Trainer states written before TrainConfig.optimizer existed were trained with Adam: they resume."""
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    state = torch.load(run / STATE_FILE, weights_only=True)
    del state["key"]["optimizer"]
    torch.save(state, run / STATE_FILE)
    assert main(_cli(tiny_data, run, "--resume")) == 0  # the run was complete: nothing left to train
    assert main(_cli(tiny_data, run, "--resume", "--optimizer", "adamw")) == 2


def test_bf16_autocast_channels_last_and_max_steps_on_cpu(tiny_data, tmp_path):
    """The flags of the GPU smoke run (benchmarks/gpu_smoke.sh), on the CPU."""
    from swedge.checkpoint import load_checkpoint

    cfg = TrainConfig(data=str(tiny_data), out=str(tmp_path), **{**ARGS, "epochs": 1}, amp="bf16",
                      channels_last=True, max_steps=2)
    path = train(cfg, progress=False)
    log = _log(tmp_path)
    assert [r["step"] for r in log] == [1, 2]
    assert all(0 < r[f"loss@{w}"] < 100 for r in log for w in (0.5, 1.0))
    assert load_checkpoint(path).meta["extra"]["steps_done"] == 2
