"""The seed's claims (SFSC, CVPR 2023; DESIGN §4) checked on a `swedge compare` table.

1. compatible: ``sfsc`` meets M[w][1.0] > M[w][w] at every width w < 1.0, in every seed.
2. cross-tests: ``sfsc`` beats ``bct-s``, ``asymmetric-s``, ``bct`` and ``asymmetric`` at every w < 1.0, judged by
   the paired per-query test (a difference whose CI includes 0 is a tie, not a win).
3. self-tests: ``sfsc`` within 1 point of ``unified`` (or better) at every width, mean over seeds.
4. the ablation ladder ``sfsc-sum`` -> +projection -> +uncertainty -> ``sfsc``: reported, not judged.

Each claim is "holds", "fails", "not shown" (ties only) or "not run" (a method it needs is missing).
"""

from __future__ import annotations

SFSC = "sfsc"
BASELINES = ("bct-s", "asymmetric-s", "bct", "asymmetric")
LADDER = ("sfsc-sum", "sfsc-projection-only", "sfsc-uncertainty-only", "sfsc")
SELF_TOLERANCE = 1.0  # points of mAP
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
    return {"claim": claim, "status": "holds" if k == n else "fails",
            "detail": f"{k}/{n} seeds; mean cross − self by width {margins}"}


def _beats_baselines(table, rows) -> list[dict]:
    out = []
    for base in BASELINES:
        claim = f"{SFSC} cross-tests beat {base} at every w < 1.0"
        pair = _paired(table, SFSC, base)
        if SFSC not in rows or base not in rows or pair is None:
            out.append({"claim": claim, "status": "not run", "detail": f"needs {SFSC} and {base} with a paired test"})
            continue
        verdicts, parts = [], []
        for c in pair["cells"]:
            if c["kind"] != "cross":
                continue
            r = c["combined"]
            v = "tie" if r["verdict"] != "real" else ("win" if r["mean_diff"] > 0 else "loss")
            verdicts.append(v)
            parts.append(f"{c['query_width']}: {r['mean_diff']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] {v}")
        status = "fails" if "loss" in verdicts else ("holds" if set(verdicts) == {"win"} else "not shown")
        out.append({"claim": claim, "status": status, "detail": "; ".join(parts)})
    return out


def _self_vs_unified(rows) -> dict:
    claim = f"{SFSC} self-tests within {SELF_TOLERANCE:g} point of unified (or above) at every width"
    if SFSC not in rows or "unified" not in rows:
        return {"claim": claim, "status": "not run", "detail": f"needs {SFSC} and unified"}
    a, b = rows[SFSC]["map"]["self"], rows["unified"]["map"]["self"]
    diffs = {w: a[w]["mean"] - b[w]["mean"] for w in a}
    return {"claim": claim, "status": "holds" if min(diffs.values()) >= -SELF_TOLERANCE else "fails",
            "detail": "mean difference by width " + ", ".join(f"{w}: {d:+.2f}" for w, d in diffs.items())}


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
    return [_compatible(rows), *_beats_baselines(table, rows), _self_vs_unified(rows)]


def format_claims(claims: list[dict], steps: list[dict]) -> list[str]:
    """Markdown lines: the claims and the ladder."""
    lines = ["## The seed's claims on this data", "",
             "Cross-test wins are judged by the paired per-query test below (CI excluding 0); a difference "
             "within the CI is a tie, and ties alone make a claim \"not shown\".", ""]
    lines += [f"- **{c['status']}**: {c['claim']} — {c['detail']}" for c in claims]
    if steps:
        lines += ["", "Ablation ladder (mAP %, mean over seeds):", "",
                  "| method | seeds | mean cross | mean off-diag | cross − sfsc-sum (paired) |", "|---|---|---|---|---|"]
        for s in steps:
            diff = "" if s["cross_minus_sfsc_sum"] is None else f"{s['cross_minus_sfsc_sum']:+.2f}"
            lines.append(f"| {s['label']} | {s['seeds']} | {s['mean_cross']:.2f} | {s['mean_off_diagonal']:.2f} "
                         f"| {diff} |")
    return lines + [""]
