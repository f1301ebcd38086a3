"""The seed's claims (SFSC, CVPR 2023; docs/design.md §4) checked on a `swedge compare` table.

1. compatible: ``sfsc`` meets M[w][1.0] > M[w][w] at every width w < 1.0, in every seed.
2. cross-tests: ``sfsc`` beats ``bct-s``, ``asymmetric-s``, ``bct`` and ``asymmetric`` at every w < 1.0, judged per
   cell by the seed-level test (``swedge.metrics.seed_level``: t-CI over seeds and the perturbation floor).
3. self-tests: ``sfsc`` within 1 point of ``unified`` (or better) at every width: the seed-level CI of the
   difference lies above -1 (holds) or below it (fails).
4. the default-method rule (DEFAULT_RULE): ``sfsc``'s mean off-diagonal mAP beats ``sfsc-sum``'s, seed-level.
5. the ablation ladder ``sfsc-sum`` -> +projection -> +uncertainty -> ``sfsc``: reported, not judged.

Each claim (a dict: claim, status, detail; seeds and values, the differences it judged, by width where it has
widths) is "holds", "fails", "unresolved" (the seed-level test cannot tell, the difference is within the
perturbation floor, or fewer than MIN_SEEDS seeds) or "not run" (a method it needs is missing).
"""

from __future__ import annotations

from swedge.metrics.seed_level import MIN_SEEDS, seed_test, verdict

SFSC = "sfsc"
BASELINES = ("bct-s", "asymmetric-s", "bct", "asymmetric")
LADDER = ("sfsc-sum", "sfsc-projection-only", "sfsc-uncertainty-only", "sfsc")
SELF_TOLERANCE = 1.0  # points of mAP
# Written down before any multi-seed run (benchmarks/study/README.md): which method becomes the default.
DEFAULT_RULE = (f"the default becomes {SFSC} only if its mean off-diagonal mAP vs sfsc-sum holds at >= {MIN_SEEDS} "
                "seeds (seed-level CI above 0 and the difference above the perturbation floor); otherwise sfsc-sum "
                "stays")
# The paired tests the claims read, plus the ladder steps against sfsc-sum.
CLAIM_PAIRS = ([(SFSC, b) for b in ("sfsc-sum",) + BASELINES + ("unified",)]
               + [(m, "sfsc-sum") for m in LADDER[1:3]])


def claim_pairs(labels) -> list[tuple[str, str]]:
    """The pairs of CLAIM_PAIRS whose two methods were both run."""
    present = set(labels)
    return [(a, b) for a, b in CLAIM_PAIRS if a in present and b in present]


def _rows(table: dict) -> dict[str, dict]:
    return {row["label"]: row for row in table["rows"]}


def _paired(table: dict, a: str, b: str) -> dict | None:
    return next((p for p in table["paired"] if (p["a"], p["b"]) == (a, b)), None)


def _compatible(rows) -> dict:
    claim = f"{SFSC} is compatible (M[w][1.0] > M[w][w] at every w < 1.0) in every seed"
    if SFSC not in rows:
        return {"claim": claim, "status": "not run", "detail": f"{SFSC} was not run"}
    s = rows[SFSC]["map"]
    n, k = len(rows[SFSC]["seeds"]), s["compatible_seeds"]
    margins = ", ".join(f"{w}: {s['cross'][w]['mean'] - s['self'][w]['mean']:+.2f}" for w in s["cross"])
    status = "holds" if k == n else "fails"
    if n < MIN_SEEDS:
        status, margins = "unresolved", f"{margins} (needs >= {MIN_SEEDS} seeds)"
    return {"claim": claim, "status": status, "detail": f"{k}/{n} seeds; mean cross − self by width {margins}",
            "seeds": n, "holds_in": k, "values": [s["cross"][w]["mean"] - s["self"][w]["mean"] for w in s["cross"]]}


def _beats_baselines(table, rows) -> list[dict]:
    out = []
    for base in BASELINES:
        claim = f"{SFSC} cross-tests beat {base} at every w < 1.0"
        pair = _paired(table, SFSC, base)
        if SFSC not in rows or base not in rows or pair is None:
            out.append({"claim": claim, "status": "not run", "detail": f"needs {SFSC} and {base} with a paired test"})
            continue
        verdicts, parts, values, n_seeds = [], [], [], []
        for c in pair["cells"]:
            if c["kind"] != "cross":
                continue
            r = c["seed_level"]
            verdicts.append(r["status"])
            values.append(r["mean_diff"])
            n_seeds.append(r["n_seeds"])
            parts.append(f"{c['query_width']}: {r['mean_diff']:+.2f} {_ci(r)} {r['status']} ({r['reason']})")
        status = "fails" if "fails" in verdicts else ("holds" if set(verdicts) == {"holds"} else "unresolved")
        out.append({"claim": claim, "status": status, "detail": "; ".join(parts),
                    "seeds": min(n_seeds, default=0), "values": values})
    return out


def _ci(r: dict) -> str:
    return "[no CI]" if r["ci_low"] is None else f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"


def _paired_values(rows, a: str, b: str, get) -> tuple[list[int], list[float]]:
    """Common seeds of rows a and b and the per-seed differences get(a) - get(b) (``get``: row -> values)."""
    va = dict(zip(rows[a]["seeds"], get(rows[a])))
    vb = dict(zip(rows[b]["seeds"], get(rows[b])))
    seeds = sorted(set(va) & set(vb))
    return seeds, [va[s] - vb[s] for s in seeds]


def _default_rule(table, rows) -> dict:
    claim = f"{SFSC} mean off-diagonal mAP beats sfsc-sum (the default-method rule)"
    if SFSC not in rows or "sfsc-sum" not in rows:
        return {"claim": claim, "status": "not run", "detail": f"needs {SFSC} and sfsc-sum"}
    seeds, diffs = _paired_values(rows, SFSC, "sfsc-sum", lambda r: r["map"]["mean_off_diagonal"]["values"])
    if not seeds:
        return {"claim": claim, "status": "not run", "detail": "no common seed"}
    floor = (table.get("floor") or {}).get("mean_off_diagonal")
    r = seed_test(diffs)
    status, reason = verdict(r.mean_diff, r.ci_low, r.ci_high, r.n_seeds, floor)
    return {"claim": claim, "status": status,
            "detail": f"{r.mean_diff:+.2f} {_ci(r.to_dict())} over {r.n_seeds} seeds, sign-flip p = {r.p_value:.3f}, "
                      f"{_floor_text(floor)}: {reason}", "seeds": r.n_seeds, "values": [r.mean_diff], "floor": floor}


def _floor_text(floor: float | None) -> str:
    return "floor not measured" if floor is None else f"floor {floor:.2f}"


def _self_vs_unified(rows) -> dict:
    claim = f"{SFSC} self-tests within {SELF_TOLERANCE:g} point of unified (or above) at every width"
    if SFSC not in rows or "unified" not in rows:
        return {"claim": claim, "status": "not run", "detail": f"needs {SFSC} and unified"}
    parts, statuses, values, n_seeds = [], [], [], []
    for w in rows[SFSC]["map"]["self"]:
        seeds, diffs = _paired_values(rows, SFSC, "unified", lambda r: r["map"]["self"][w]["values"])
        r = seed_test(diffs)
        # non-inferiority: the seed-level CI of sfsc - unified lies above -tolerance (holds) or below it (fails)
        if r.n_seeds < MIN_SEEDS or r.ci_low is None:
            statuses.append("unresolved")
        else:
            statuses.append("holds" if r.ci_low > -SELF_TOLERANCE else
                            "fails" if r.ci_high < -SELF_TOLERANCE else "unresolved")
        parts.append(f"{w}: {r.mean_diff:+.2f} {_ci(r.to_dict())}")
        values.append(r.mean_diff)
        n_seeds.append(r.n_seeds)
    status = "fails" if "fails" in statuses else ("holds" if set(statuses) == {"holds"} else "unresolved")
    n = len(rows[SFSC]["seeds"])
    note = f" (needs >= {MIN_SEEDS} seeds)" if n < MIN_SEEDS else ""
    return {"claim": claim, "status": status,
            "detail": "difference by width, seed-level CI: " + ", ".join(parts) + note,
            "seeds": min(n_seeds), "values": values}


def ladder(table: dict) -> list[dict]:
    """The ablation ladder rows that were run: mean off-diagonal and mean cross-test mAP, and the paired
    mean cross-test difference against sfsc-sum where that test ran."""
    rows, out = _rows(table), []
    for label in LADDER:
        if label not in rows:
            continue
        s = rows[label]["map"]
        cross = [v["mean"] for v in s["cross"].values()]
        pair = _paired(table, label, "sfsc-sum")
        diff = None
        if pair is not None:
            diff = sum(c["combined"]["mean_diff"] for c in pair["cells"] if c["kind"] == "cross") / len(cross)
        out.append({"label": label, "mean_off_diagonal": s["mean_off_diagonal"]["mean"],
                    "mean_cross": sum(cross) / len(cross), "cross_minus_sfsc_sum": diff,
                    "seeds": len(rows[label]["seeds"])})
    return out


def check_claims(table: dict) -> list[dict]:
    rows = _rows(table)
    return [_compatible(rows), *_beats_baselines(table, rows), _self_vs_unified(rows), _default_rule(table, rows)]


def format_claims(claims: list[dict], steps: list[dict]) -> list[str]:
    """Markdown lines: the claims and the ladder."""
    lines = ["## The seed's claims on this data", "",
             "Judged at the seed level (the unit is the training seed): holds = the t-based 95% CI over seeds "
             "excludes 0 in the claimed direction and |diff| exceeds the perturbation floor; fails = it excludes 0 "
             f"the other way (|diff| above the floor); else unresolved. Fewer than {MIN_SEEDS} seeds: always "
             f"unresolved. Default-method rule: {DEFAULT_RULE}.", ""]
    lines += [f"- **{c['status']}**: {c['claim']} — {c['detail']}" for c in claims]
    if steps:
        lines += ["", "Ablation ladder (mAP %, mean over seeds):", "",
                  "| method | seeds | mean cross | mean off-diag | cross − sfsc-sum (paired) |", "|---|---|---|---|---|"]
        for s in steps:
            diff = "" if s["cross_minus_sfsc_sum"] is None else f"{s['cross_minus_sfsc_sum']:+.2f}"
            lines.append(f"| {s['label']} | {s['seeds']} | {s['mean_cross']:.2f} | {s['mean_off_diagonal']:.2f} "
                         f"| {diff} |")
    return lines + [""]
