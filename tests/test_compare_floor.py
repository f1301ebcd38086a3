"""`swedge compare --perturb-floor`: perturbed retrainings at one seed give the floor; every table names its
commit, command line and data seed."""

import json
import re

import pytest

from swedge.study.compare import FLOOR_PERTURBATION, MethodSpec, data_seed, floor_specs, git_commit


def test_floor_specs_perturb_the_label_smoothing_only():
    spec = MethodSpec("ref", "sfsc-sum", ["label_smoothing=0.2", "triplet_weight=0"])
    got = floor_specs(spec, 2)
    assert [s.options for s in got] == [["triplet_weight=0", f"label_smoothing={0.2 + FLOOR_PERTURBATION!r}"],
                                        ["triplet_weight=0", f"label_smoothing={0.2 + 2 * FLOOR_PERTURBATION!r}"]]
    assert floor_specs(MethodSpec("s", "sfsc"), 1)[0].options == [f"label_smoothing={0.1 + FLOOR_PERTURBATION!r}"]


def test_provenance_helpers(tmp_path):
    commit = git_commit()
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert data_seed(tmp_path) == "unknown"
    (tmp_path / "dataset.json").write_text(json.dumps({"seed": 7}))
    assert data_seed(tmp_path) == 7


@pytest.mark.slow
def test_compare_with_a_perturbation_floor_names_its_provenance(tmp_path, capsys):
    from swedge.cli import main
    from swedge.data.synth import generate

    data, out = tmp_path / "synth", tmp_path / "cmp"
    generate(data, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    args = ["compare", "--methods", "sfsc-sum", "--data", str(data), "--seeds", "1", "--out", str(out),
            "--input-size", "32x16", "--epochs", "1", "--ids-per-batch", "4", "--images-per-id", "2",
            "--widths", "0.5,1.0", "--embedding-dim", "8", "--workers", "0", "--resamples", "100", "--no-progress",
            "--perturb-floor", "1", "--grad-clip", "off"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "+ 1 floor runs of sfsc-sum" in printed
    assert (out / "floor" / "sfsc-sum" / "perturb1" / "eval.json").is_file()
    table = json.loads((out / "table.json").read_text())
    floor = table["floor"]
    assert floor["reference"] == "sfsc-sum" and floor["runs"] == 2 and floor["mean_off_diagonal"] >= 0
    assert table["provenance"]["data_seed"] == 3 and "--perturb-floor 1" in table["provenance"]["command"]
    md = (out / "table.md").read_text()
    assert "- commit: `" in md and "generation seed 3" in md and "## Perturbation floor" in md
    mech = table["rows"][0]["mechanisms"]
    assert mech["clipped_share"] == 0.0 and mech["grad_norm_median"] > 0
    assert main(args[:-4] + ["--perturb-floor", "-1"]) == 2
    assert "--perturb-floor must be >= 0" in capsys.readouterr().err
    assert main(args[:-4] + ["--perturb-floor", "1", "--floor-method", "bct"]) == 2
    assert "--floor-method 'bct' is not among --methods" in capsys.readouterr().err
