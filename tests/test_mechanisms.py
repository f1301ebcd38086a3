"""Train-log summaries of SFSC's mechanisms (uncertainty K/S per width, conflict shares)."""

import json

import pytest

from swedge.study.mechanisms import aggregate, format_mechanisms, summarise_log


def write_log(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 99, \"cut by a kill")


def test_summarise_log_first_and_last_fifth(tmp_path):
    rows = [{"step": s, "phase": 0, "uncertainty@0.5": 0.6 - s / 100, "uncertainty@1.0": 0.5,
             "conflict_share": 0.4 if s < 3 else 0.0} for s in range(10)]
    rows.append({"step": 10, "phase": 1, "uncertainty@0.5": 9.0})  # a later phase is not the switchable run
    write_log(tmp_path / "log.jsonl", rows)
    s = summarise_log(tmp_path / "log.jsonl", [0.5, 1.0])
    assert s["conflict_early"] == pytest.approx(0.4) and s["conflict_late"] == 0.0
    assert s["uncertainty_late"] == {"0.5": pytest.approx(0.6 - 0.085), "1.0": pytest.approx(0.5)}
    assert summarise_log(tmp_path / "missing.jsonl", [1.0]) is None


def test_aggregate_and_format_skip_methods_without_mechanisms(tmp_path):
    write_log(tmp_path / "ce.jsonl", [{"step": s, "loss@1.0": 1.0} for s in range(5)])
    ce = summarise_log(tmp_path / "ce.jsonl", [0.5, 1.0])
    assert ce["uncertainty_late"] is None and ce["conflict_early"] is None
    a = aggregate([{"uncertainty_late": {"0.5": 0.4, "1.0": 0.5}, "conflict_early": 0.2, "conflict_late": 0.0},
                   {"uncertainty_late": {"0.5": 0.6, "1.0": 0.5}, "conflict_early": 0.0, "conflict_late": 0.0},
                   None])
    assert a["runs"] == 2 and a["uncertainty_late"]["0.5"] == pytest.approx(0.5) and a["conflict_early"] == 0.1
    lines = format_mechanisms([{"label": "sfsc", "mechanisms": a}, {"label": "unified", "mechanisms": aggregate([ce])}],
                              [0.5, 1.0])
    assert "| sfsc | 0.500 | 0.500 | – | – | 10.0 % | 0.0 % | – | – |" in lines
    assert not any("unified" in x for x in lines)


def test_ks_spread_says_whether_the_widths_separate_and_clipping_is_summarised(tmp_path):
    from swedge.study.mechanisms import KS_SEPARATION

    rows = [{"step": s, "phase": 0, "uncertainty@0.5": 0.5 + KS_SEPARATION * 1.5, "uncertainty@1.0": 0.5,
             "grad_norm": float(s), "clipped": int(s > 6), "clipped_steps": int(s > 6), "clip_steps": 1}
            for s in range(10)]
    write_log(tmp_path / "log.jsonl", rows)
    s = summarise_log(tmp_path / "log.jsonl", [0.5, 1.0])
    assert s["ks_spread_late"] == pytest.approx(KS_SEPARATION * 1.5)
    assert s["clipped_share"] == pytest.approx(0.3) and s["grad_norm_median"] == pytest.approx(4.5)
    line = next(x for x in format_mechanisms([{"label": "sfsc", "mechanisms": aggregate([s])}], [0.5, 1.0])
                if x.startswith("| sfsc"))
    assert "| yes |" in line and "30.0 %" in line and "| 4.5 |" in line
    rows = [{**r, "uncertainty@0.5": 0.5 + KS_SEPARATION / 2} for r in rows]
    write_log(tmp_path / "log.jsonl", rows)
    flat = summarise_log(tmp_path / "log.jsonl", [0.5, 1.0])
    assert "| no |" in format_mechanisms([{"label": "x", "mechanisms": aggregate([flat])}], [0.5, 1.0])[-2]
