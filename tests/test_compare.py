"""`swedge compare`: method specs, the table builder on hand-made run results, and one tiny end-to-end run."""

import json
from pathlib import Path

import numpy as np
import pytest

from swedge.study.compare import RUN_FORMAT, default_pairs, needed_cells, ordered_labels, parse_methods
from swedge.study.table import build_table, cell_key, format_markdown, write_report
from swedge.errors import SwedgeError

WIDTHS = [0.5, 1.0]


def fake_run(label, seed, matrix, ap_shift=0.0, method=None, queries="q1"):
    """A result dict shaped like eval.json: 2 widths, 200 queries with per-query AP for the needed cells."""
    base = np.random.default_rng(seed).uniform(0.2, 0.8, 200)  # per-seed "query difficulty", shared by methods
    rng = np.random.default_rng([seed, sum(map(ord, label))])  # per-method noise
    ap = {cell_key(q, g): list(base + ap_shift + rng.normal(0, 0.02, 200)) for q, g in needed_cells(WIDTHS)}
    ap[cell_key(0.5, 1.0)][0] = None  # a skipped query
    return {"format": RUN_FORMAT, "label": label, "method": method or label, "options": [], "seed": seed,
            "widths": WIDTHS, "map": matrix, "rank1": matrix, "queries_sha256": queries, "per_query_ap": ap}


def test_parse_methods_labels_variants_and_options():
    specs = parse_methods("sfsc, sfsc-sum,sfsc-kernel=sfsc", ["sfsc-kernel:projection=kernel", "sfsc:kl_weight=0.1"])
    assert [(s.label, s.method, s.options) for s in specs] == [
        ("sfsc", "sfsc", ["kl_weight=0.1"]), ("sfsc-sum", "sfsc-sum", []),
        ("sfsc-kernel", "sfsc", ["projection=kernel"])]
    for bad, opts, msg in [("sfsc,sfsc", [], "twice"), ("", [], "empty"), ("a/b", [], "label"),
                           ("sfsc", ["kl_weight=1"], "LABEL:KEY=VALUE"), ("sfsc", ["bct:x=1"], "LABEL:KEY=VALUE")]:
        with pytest.raises(SwedgeError, match=msg):
            parse_methods(bad, opts)


def test_order_and_default_pairs():
    specs = parse_methods("sfsc,sfsc-kernel=sfsc,mine=unified,sfsc-sum,bct-s,independent")
    assert ordered_labels(specs) == ["independent", "mine", "bct-s", "sfsc-sum", "sfsc", "sfsc-kernel"]
    assert default_pairs(["sfsc", "sfsc-sum", "bct-s", "unified", "sfsc-uncertainty-only"]) == [
        ("sfsc", "sfsc-sum"), ("sfsc", "bct-s"), ("sfsc", "unified"), ("sfsc-uncertainty-only", "sfsc-sum")]
    assert default_pairs(["sfsc-sum", "bct-s"]) == []


def test_build_table_from_fake_results(tmp_path):
    runs = [fake_run("sfsc-sum", 0, [[40, 50], [48, 60]]), fake_run("sfsc-sum", 1, [[42, 40], [46, 62]]),
            fake_run("sfsc", 0, [[41, 52], [49, 61]], ap_shift=0.05),
            fake_run("sfsc", 1, [[43, 54], [47, 63]], ap_shift=0.05)]
    table = build_table(runs, pairs=[("sfsc", "sfsc-sum")], resamples=500)
    assert [r["label"] for r in table["rows"]] == ["sfsc-sum", "sfsc"]
    s = table["rows"][0]["map"]
    assert s["self"]["0.5"]["mean"] == 41 and s["self"]["1.0"]["mean"] == 61
    assert s["self"]["0.5"]["std"] == pytest.approx(np.std([40, 42], ddof=1))
    assert s["cross"]["0.5"]["mean"] == 45 and set(s["cross"]) == {"0.5"}
    assert s["mean_off_diagonal"]["mean"] == pytest.approx(np.mean([49, 43]))
    assert s["compatible_seeds"] == 1  # seed 1: 40 < 42
    assert s["mean_matrix"] == [[41, 45], [47, 61]]
    assert table["rows"][1]["map"]["compatible_seeds"] == 2

    (pair,) = table["paired"]
    assert pair["seeds"] == [0, 1]
    cells = {(c["query_width"], c["gallery_width"]): c for c in pair["cells"]}
    assert set(cells) == {(0.5, 1.0), (0.5, 0.5), (1.0, 1.0)}
    cross = cells[(0.5, 1.0)]["combined"]
    assert cross["n"] == 199 and cross["verdict"] == "real"  # the skipped query is left out
    assert cross["ci_low"] < 5.0 < cross["ci_high"]  # +0.05 AP = +5 points
    assert set(cells[(0.5, 1.0)]["per_seed"]) == {"0", "1"}

    md = format_markdown(table)
    assert "| sfsc-sum | 2 | 41.00 ± 1.41 |" in md and "| 1/2 |" in md
    assert "sfsc − sfsc-sum = +" in md and "→ **real**" in md and "## Rank-1 (%)" in md
    write_report(table, tmp_path)
    assert json.loads((tmp_path / "table.json").read_text())["widths"] == WIDTHS
    assert (tmp_path / "table.md").read_text().startswith("# swedge compare")
    assert (tmp_path / "heatmaps" / "sfsc.png").is_file() and (tmp_path / "heatmaps" / "sfsc-sum.png").is_file()


def test_build_table_single_seed_and_refusals():
    fresh = fake_run("sfsc", 1, [[40, 50], [48, 60]])
    fresh["widths"] = tuple(fresh["widths"])  # as a run trained in this process holds it, next to loaded ones
    assert build_table([fake_run("sfsc", 0, [[40, 50], [48, 60]]), fresh])["widths"] == WIDTHS
    one = build_table([fake_run("unified", 0, [[40, 50], [48, 60]])])
    assert one["rows"][0]["map"]["self"]["0.5"]["std"] is None and one["paired"] == []
    assert "| unified | 1 | 40.00 | 60.00 | 50.00 |" in format_markdown(one)
    with pytest.raises(SwedgeError, match="different query lists"):
        build_table([fake_run("a", 0, [[1, 2], [3, 4]]), fake_run("b", 0, [[1, 2], [3, 4]], queries="q2")],
                    pairs=[("a", "b")], resamples=100)
    with pytest.raises(SwedgeError, match="no seed"):
        build_table([fake_run("a", 0, [[1, 2], [3, 4]]), fake_run("b", 1, [[1, 2], [3, 4]])],
                    pairs=[("a", "b")], resamples=100)


def test_compare_checks_its_settings_before_training(tmp_path, capsys):
    from swedge.cli import main

    base = ["compare", "--methods", "sfsc", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "cmp")]
    assert main(base + ["--resamples", "10"]) == 2
    assert "--resamples must be >= 100" in capsys.readouterr().err
    assert main(base + ["--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


@pytest.mark.slow
def test_compare_end_to_end_and_resume(tmp_path, capsys):
    from swedge.cli import main
    from swedge.data.synth import generate

    data, out = tmp_path / "synth", tmp_path / "cmp"
    generate(data, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    args = ["compare", "--methods", "sfsc,sfsc-sum", "--data", str(data), "--seeds", "1", "--out", str(out),
            "--input-size", "32x16", "--epochs", "1", "--ids-per-batch", "4", "--images-per-id", "2",
            "--widths", "0.5,1.0", "--embedding-dim", "8", "--workers", "0", "--resamples", "200", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[1/2] training sfsc-sum seed 0" in printed and "[2/2] training sfsc seed 0" in printed
    assert "| sfsc |" in printed and "sfsc − sfsc-sum" in printed
    for label in ("sfsc", "sfsc-sum"):
        run = out / "runs" / label / "seed0"
        assert (run / "model.safetensors").is_file() and (out / "heatmaps" / f"{label}.png").is_file()
        result = json.loads((run / "eval.json").read_text())
        assert result["label"] == label and len(result["map"]) == 2
        assert set(result["per_query_ap"]) == {"0.5->0.5", "1.0->1.0", "0.5->1.0"}
    assert (out / "table.md").is_file() and (out / "table.json").is_file()

    # Re-running the same command trains nothing and rebuilds the same table.
    stamp = (out / "runs" / "sfsc" / "seed0" / "eval.json").stat().st_mtime_ns
    table_before = (out / "table.md").read_text()
    assert main(args) == 0
    assert "2 already done, 0 to train" in capsys.readouterr().out
    assert (out / "runs" / "sfsc" / "seed0" / "eval.json").stat().st_mtime_ns == stamp
    assert (out / "table.md").read_text() == table_before

    # A run recorded before the --optimizer option existed was trained with Adam: still done.
    result_path = out / "runs" / "sfsc" / "seed0" / "eval.json"
    result = json.loads(result_path.read_text())
    for later in ("optimizer", "schedule", "decay_epochs", "decay_rate", "grad_clip"):
        del result["fingerprint"][later]
    result_path.write_text(json.dumps(result))
    assert main(args) == 0
    assert "2 already done, 0 to train" in capsys.readouterr().out
    assert main(args + ["--optimizer", "adamw"]) == 2
    assert "optimizer: 'adam' there, 'adamw' now" in capsys.readouterr().err

    # --table-only with more methods and seeds than are done: tabulates what is there, trains nothing.
    more = ["--methods", "sfsc,sfsc-sum,unified", "--seeds", "2", "--table-only"]
    assert main(args[:1] + more + args[3:5] + args[7:]) == 0
    printed = capsys.readouterr().out
    assert "2 already done, 4 not trained (--table-only)" in printed
    assert "missing: unified seed 0, unified seed 1, sfsc-sum seed 1, sfsc seed 1" in printed  # seed-major
    assert not (out / "runs" / "unified").exists() and "| sfsc | 1 |" in printed
    # A floor retraining is named as one, not as the seed-0 run it perturbs.
    assert main(args[:1] + more + ["--perturb-floor", "1"] + args[3:5] + args[7:]) == 0
    assert "sfsc seed 1, sfsc-sum floor run 1 (seed 0, perturbed)" in capsys.readouterr().out

    # Other settings into the same folder are refused before any training.
    changed = list(args)
    changed[changed.index("--epochs") + 1] = "2"
    assert main(changed) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_two_compares_on_one_out_share_the_runs_and_never_remove_a_live_one(tmp_path, capsys, monkeypatch):
    """Lanes: a run folder another compare holds is skipped (not removed), one it finished meanwhile is read, not
    retrained; a folder nobody holds is an interrupted run and is retrained."""
    import contextlib
    import shutil

    import swedge.study.compare as compare
    from swedge.cli import main
    from swedge.data.synth import generate
    from swedge.outputs import exclusive

    data, out = tmp_path / "synth", tmp_path / "cmp"
    generate(data, train_ids=8, test_ids=4, cameras=2, images_per_camera=2, size=(32, 16), seed=3, progress=False)
    args = ["compare", "--methods", "sfsc,sfsc-sum", "--data", str(data), "--seeds", "1", "--out", str(out),
            "--input-size", "32x16", "--epochs", "1", "--ids-per-batch", "4", "--images-per-id", "2",
            "--widths", "0.5,1.0", "--embedding-dim", "8", "--workers", "0", "--resamples", "200", "--no-progress"]
    live = out / "runs" / "sfsc" / "seed0"
    live.mkdir(parents=True)
    (live / "partial").write_text("another compare's run in progress")
    with exclusive(live, "swedge compare (the other lane)"):
        assert main(args) == 0
    printed = capsys.readouterr().out
    assert "skipped: another process is training it (swedge compare (the other lane) (pid" in printed
    assert "1 run(s) being trained by another swedge compare, not in this table: sfsc seed 0" in printed
    assert (live / "partial").is_file() and (out / "runs" / "sfsc-sum" / "seed0" / "eval.json").is_file()
    assert "| sfsc-sum |" in printed and "| sfsc |" not in printed

    # Nobody holds it now: an interrupted run, retrained from scratch.
    assert main(args) == 0
    assert "restarting an interrupted run" in capsys.readouterr().out
    assert not (live / "partial").exists() and (live / "eval.json").is_file()

    # Finished by the other lane between this compare's start and its turn: read, not retrained.
    backup = tmp_path / "eval.json"
    shutil.move(live / "eval.json", backup)
    model_stamp = (live / "model.safetensors").stat().st_mtime_ns

    @contextlib.contextmanager
    def other_lane_finishes_first(folder, command):
        if Path(folder) == live and not (live / "eval.json").exists():
            shutil.copy(backup, live / "eval.json")
        with exclusive(folder, command):
            yield

    monkeypatch.setattr(compare, "exclusive", other_lane_finishes_first)
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 already done, 1 to train" in printed and "finished meanwhile by another swedge compare" in printed
    assert (live / "model.safetensors").stat().st_mtime_ns == model_stamp and "| sfsc |" in printed


def _claim_runs(seeds):
    m = [[40, 50], [48, 60]]
    runs = []
    for s in seeds:
        runs += [fake_run("unified", s, [[41, 45], [45, 61]]), fake_run("bct-s", s, [[40, 44], [45, 60]]),
                 fake_run("asymmetric", s, m, ap_shift=0.05), fake_run("sfsc-sum", s, m),
                 fake_run("sfsc", s, [[39.5, 52], [49, 60.5]], ap_shift=0.03)]
    return runs


def test_claims_are_checked_from_the_table():
    from swedge.metrics.seed_level import MIN_SEEDS

    runs = _claim_runs(range(MIN_SEEDS))
    table = build_table(runs, pairs=default_pairs(sorted({r["label"] for r in runs})), resamples=300)
    claims = {c["claim"].split(" (")[0]: c for c in table["claims"]}
    assert claims["sfsc is compatible"]["status"] == "holds"
    assert claims["sfsc cross-tests beat bct-s at every w < 1.0"]["status"] == "holds"
    assert claims["sfsc cross-tests beat asymmetric at every w < 1.0"]["status"] == "fails"  # +0.05 AP for them
    assert claims["sfsc cross-tests beat bct at every w < 1.0"]["status"] == "not run"
    assert claims["sfsc self-tests within 1 point of unified"]["status"] == "fails"  # 39.5 vs 41 at w=0.5
    assert claims["sfsc mean off-diagonal mAP beats sfsc-sum"]["status"] == "holds"  # 50.5 vs 49, every seed
    steps = {s["label"]: s for s in table["ladder"]}
    assert set(steps) == {"sfsc-sum", "sfsc"} and steps["sfsc"]["mean_cross"] == 52
    assert steps["sfsc"]["cross_minus_sfsc_sum"] == pytest.approx(3.0, abs=0.5)
    md = format_markdown(table)
    assert "## The seed's claims on this data" in md and "- **fails**: sfsc cross-tests beat asymmetric" in md
    assert f"| sfsc | {MIN_SEEDS} | 52.00 | 50.50 | +" in md
    assert "seed level: " in md and "floor not measured" in md


def test_claims_with_fewer_than_min_seeds_or_within_the_floor_are_unresolved():
    from swedge.study.table import perturbation_floor
    from swedge.metrics.seed_level import MIN_SEEDS

    few = _claim_runs(range(MIN_SEEDS - 1))
    table = build_table(few, pairs=default_pairs(sorted({r["label"] for r in few})), resamples=300)
    for c in table["claims"]:
        assert c["status"] in ("unresolved", "not run"), c
    assert any(f"needs >= {MIN_SEEDS} seeds" in c["detail"] for c in table["claims"])
    runs = _claim_runs(range(MIN_SEEDS))
    # retrainings of sfsc-sum at seed 0 whose mean off-diagonal mAP spreads by 2 points > the 1.5 difference
    floor = perturbation_floor([fake_run("sfsc-sum", 0, [[40, 50 + d], [48 + d, 60]]) for d in (0, 1, 2)],
                               "sfsc-sum", "label_smoothing + 1e-5 k")
    assert floor["mean_off_diagonal"] == pytest.approx(2.0) and floor["cells"]["0.5->1.0"] == pytest.approx(2.0)
    table = build_table(runs, pairs=[("sfsc", "sfsc-sum")], resamples=300, floor=floor)
    claims = {c["claim"].split(" (")[0]: c for c in table["claims"]}
    rule = claims["sfsc mean off-diagonal mAP beats sfsc-sum"]
    assert rule["status"] == "unresolved" and "floor 2.00" in rule["detail"]
    assert "## Perturbation floor" in format_markdown(table)


@pytest.mark.parametrize("name", ["synth-issue18/table", "synth-mnv2-issue18/table", "emoji-issue18/table",
                                  "synth-small-issue18/table", "synth-small-issue18/variants"])
def test_committed_study_tables_rebuild_byte_identical_from_their_json(name):
    """The study's published tables are what the current code makes of their JSON: a change to the table code
    that moved a figure or a verdict would show here."""
    base = Path(__file__).resolve().parents[1] / "benchmarks" / "study" / name
    table = json.loads(base.with_suffix(".json").read_text())
    assert format_markdown(table) + "\n" == base.with_suffix(".md").read_text()


def test_readme_study_verdicts_are_what_the_committed_tables_say(tmp_path):
    """The README's verdict table is rebuilt from the committed table.json files by the claims code: a hand edit,
    a new table or a changed claim rule makes it stale."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("study_verdicts", root / "benchmarks" / "study_verdicts.py")
    verdicts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verdicts)
    assert verdicts.main(["--check", str(root / "README.md")]) == 0
    stale = tmp_path / "README.md"
    stale.write_text((root / "README.md").read_text().replace("**fails**", "**holds**", 1))
    assert verdicts.main(["--check", str(stale)]) == 1
    assert verdicts.main(["--write", str(stale)]) == 0 and verdicts.main(["--check", str(stale)]) == 0
