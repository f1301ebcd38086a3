"""End to end on a tiny generated data set: synth -> train (sfsc-sum, 1 epoch) -> checkpoint -> eval matrix."""

import json
import os

import pytest

from swedge.cli import main


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from swedge.data.synth import generate

    out = tmp_path_factory.mktemp("d") / "synth"
    generate(out, train_ids=8, test_ids=6, cameras=3, images_per_camera=2, size=(64, 32), seed=1, progress=False)
    return out


@pytest.mark.slow
def test_train_then_eval(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--epochs", "1", "--input-size", "64x32",
                 "--ids-per-batch", "4", "--images-per-id", "2", "--widths", "0.5,1.0", "--embedding-dim", "16",
                 "--workers", "0"]) == 0
    ckpt = run / "model.safetensors"
    assert ckpt.is_file()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log and {"loss@0.5", "loss@1.0", "ce@0.5", "triplet@1.0"} <= set(log[-1])
    if os.path.exists("/proc/self/task"):  # Linux: how much the run waited for a core (the shared-CPU warning)
        assert all(r["cpu_wait_share"] >= 0 for r in log)

    out_json = tmp_path / "eval.json"
    assert main(["eval", str(ckpt), "--data", str(tiny_data), "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    assert main(["eval", str(ckpt), "--data", str(tiny_data), "--json", str(out_json), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "query w=0.5" in printed
    result = json.loads(out_json.read_text())
    assert result["widths"] == [0.5, 1.0]
    assert len(result["map"]) == 2 and len(result["map"][0]) == 2 and len(result["rank1"]) == 2
    assert all(0 <= v <= 100 for row in result["map"] for v in row)
    assert out_json.with_suffix(".png").is_file()


def test_train_rejects_bad_input(tiny_data, tmp_path, capsys):
    base = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--workers", "0"]
    assert main(base + ["--widths", "0.25,0.5"]) == 2
    assert "largest width must be 1.0" in capsys.readouterr().err
    assert main(base + ["--method", "sfsc-summ"]) == 2
    assert "Did you mean 'sfsc-sum'" in capsys.readouterr().err
    assert main(base + ["--opt", "nonsense=1"]) == 2
    assert "has no option" in capsys.readouterr().err
    assert main(base + ["--ids-per-batch", "50"]) == 2
    assert "need at least" in capsys.readouterr().err
    assert main(base + ["--ids-per-batch", "1"]) == 2  # one identity per batch: BN removes the identity signal
    assert "must be >= 2" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
    assert not (tmp_path / "r" / "model.safetensors").exists()
