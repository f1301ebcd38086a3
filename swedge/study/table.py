"""`swedge compare`'s summary: run results (eval.json dicts) -> the seed-style table (mean ± std over seeds,
per-seed compatibility, paired per-query tests, the seed's claims, the ablation ladder), as JSON, Markdown and
heat-maps. Torch-free: it reads finished runs only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from swedge.study.claims import check_claims, format_claims, ladder
from swedge.errors import SwedgeError
from swedge.io import atomic_write_bytes, atomic_write_json
from swedge.study.mechanisms import aggregate, format_mechanisms
from swedge.metrics.paired import paired_over_seeds
from swedge.metrics.seed_level import hierarchical_bootstrap, seed_test, verdict


def cell_key(q: float, g: float) -> str:
    """Key of one (query width, gallery width) cell in a run's per-query AP."""
    return f"{float(q)}->{float(g)}"


def off_diagonal_mean(m) -> float:
    m = np.asarray(m, dtype=float)
    return float(m[~np.eye(len(m), dtype=bool)].mean())


def _stat(values) -> dict:
    """Mean and sample std (ddof=1) over seeds; std is None with one seed (there is no spread to report)."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None,
            "values": [float(x) for x in v]}


def _summarise(runs: list[dict], metric: str) -> dict:
    mats = np.array([r[metric] for r in runs], dtype=float)  # (seeds, n, n)
    widths = runs[0]["widths"]
    top = len(widths) - 1
    return {
        "self": {str(w): _stat(mats[:, i, i]) for i, w in enumerate(widths)},
        "cross": {str(w): _stat(mats[:, i, top]) for i, w in enumerate(widths[:-1])},
        "mean_off_diagonal": _stat([off_diagonal_mean(m) for m in mats]),
        # BCT criterion at every w < 1, per seed; reported as "k of n seeds".
        "compatible_seeds": int(sum(all(m[i, top] > m[i, i] for i in range(top)) for m in mats)),
        "mean_matrix": mats.mean(axis=0).tolist(),
        "std_matrix": (mats.std(axis=0, ddof=1) if len(mats) > 1 else np.zeros_like(mats[0])).tolist(),
    }


def _per_query(run: dict, q: float, g: float) -> np.ndarray:
    values = run["per_query_ap"][cell_key(q, g)]
    return 100 * np.array([np.nan if v is None else v for v in values], dtype=float)  # points


def perturbation_floor(runs: list[dict], reference: str, perturbation: str) -> dict:
    """The spread (max - min, and std) of each needed cell's mAP and of the mean off-diagonal mAP over runs of one
    method at one seed that differ only by a negligible perturbation: the floor a difference must exceed."""
    mats = np.array([r["map"] for r in runs], dtype=float)
    widths = [float(w) for w in runs[0]["widths"]]
    index = {w: i for i, w in enumerate(widths)}
    top = widths[-1]
    cells = {cell_key(q, g): mats[:, index[q], index[g]] for q, g in [(w, top) for w in widths[:-1]]
             + [(w, w) for w in widths]}
    off = np.array([off_diagonal_mean(m) for m in mats])
    spread = (lambda v: float(v.max() - v.min()))
    std = (lambda v: float(v.std(ddof=1)) if v.size > 1 else None)
    return {"reference": reference, "runs": len(runs), "perturbation": perturbation,
            "cells": {k: spread(v) for k, v in cells.items()}, "cells_std": {k: std(v) for k, v in cells.items()},
            "mean_off_diagonal": spread(off), "mean_off_diagonal_std": std(off),
            "mean_off_diagonal_values": [float(x) for x in off]}


def _seed_level(a_by_seed: dict, b_by_seed: dict, floor: float | None, resamples: int, seed: int) -> dict:
    """Seed-level test of one cell: per-seed mean differences (t-CI, sign-flip p), hierarchical bootstrap over
    seeds x queries, and the verdict against the floor."""
    seeds = sorted(a_by_seed)
    diffs = [a_by_seed[s] - b_by_seed[s] for s in seeds]
    r = seed_test([float(np.nanmean(d)) for d in diffs], resamples=resamples, seed=seed)
    status, reason = verdict(r.mean_diff, r.ci_low, r.ci_high, r.n_seeds, floor)
    return {**r.to_dict(), "hierarchical": hierarchical_bootstrap(diffs, resamples=resamples, seed=seed),
            "floor": floor, "status": status, "reason": reason}


def build_table(runs: list[dict], *, pairs=(), resamples: int = 10_000, seed: int = 0, floor: dict | None = None,
                provenance: dict | None = None) -> dict:
    """Summary of run results (dicts as written to eval.json), rows in the order of first appearance.

    Every run must share the widths; paired tests also need the same query list (checked by hash). ``floor``:
    :func:`perturbation_floor`'s result (None: not measured); ``provenance``: commit, command, data seed.
    """
    if not runs:
        raise SwedgeError("no run results to summarise")
    widths = [float(w) for w in runs[0]["widths"]]  # a run trained just now holds a tuple, a loaded one a list
    if any([float(w) for w in r["widths"]] != widths for r in runs):
        raise SwedgeError("runs have different widths; compare needs one width list for every method")
    by_label: dict[str, list[dict]] = {}
    for r in runs:
        by_label.setdefault(r["label"], []).append(r)
    rows = []
    for label, rs in by_label.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        rows.append({"label": label, "method": rs[0]["method"], "options": rs[0].get("options", []),
                     "seeds": [r["seed"] for r in rs],
                     "map": _summarise(rs, "map"), "rank1": _summarise(rs, "rank1"),
                     "mechanisms": aggregate([r.get("mechanisms") for r in rs])})

    paired = []
    for a, b in pairs:
        ra = {r["seed"]: r for r in by_label.get(a, [])}
        rb = {r["seed"]: r for r in by_label.get(b, [])}
        common = sorted(set(ra) & set(rb))
        if not common:
            raise SwedgeError(f"paired test {a} vs {b}: no seed has results for both")
        if len({ra[s]["queries_sha256"] for s in common} | {rb[s]["queries_sha256"] for s in common}) != 1:
            raise SwedgeError(f"paired test {a} vs {b}: the runs were evaluated on different query lists")
        top = widths[-1]
        cells = []
        for q, g in [(w, top) for w in widths[:-1]] + [(w, w) for w in widths]:
            qa, qb = {s: _per_query(ra[s], q, g) for s in common}, {s: _per_query(rb[s], q, g) for s in common}
            test = paired_over_seeds(qa, qb, resamples=resamples, seed=seed)
            cell_floor = (floor or {}).get("cells", {}).get(cell_key(q, g))
            cells.append({"query_width": q, "gallery_width": g, "kind": "self" if q == g else "cross",
                          "combined": test["combined"].to_dict(),
                          "per_seed": {str(s): t.to_dict() for s, t in test["per_seed"].items()},
                          "seed_level": _seed_level(qa, qb, cell_floor, resamples, seed)})
        paired.append({"a": a, "b": b, "seeds": common, "cells": cells})
    table = {"widths": widths, "rows": rows, "paired": paired, "floor": floor, "provenance": provenance or {},
            "paired_method": "per-query AP difference in points; percentile bootstrap CI over queries and "
                             "two-sided sign-flip permutation p-value, each seeded, "
                             f"{resamples} resamples; combined = per-query difference averaged over seeds; "
                             "verdict real = CI excludes 0 and p < 0.05",
             "seed_level_method": "per-seed mean difference: t-based 95% CI over seeds and exact sign-flip "
                                  "permutation p over seeds; hierarchical bootstrap over seeds then queries; "
                                  "holds / fails / unresolved against the perturbation floor"}
    table["claims"], table["ladder"] = check_claims(table), ladder(table)
    return table


def _pm(stat: dict) -> str:
    return f"{stat['mean']:.2f}" if stat["std"] is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def format_markdown(table: dict) -> str:
    widths = table["widths"]
    top = widths[-1]
    lines = ["# swedge compare", ""] + _provenance_lines(table.get("provenance") or {}) + [
             "M[q][g]: queries embedded at width q, gallery at width g. Self-test M[w][w]; cross-test "
             f"M[w][{top}]; compatibility (BCT): M[w][{top}] > M[w][w] at every w < {top} (seeds where it holds). "
             "Mean ± sample std over seeds.", ""]
    for metric, name in (("map", "mAP (%)"), ("rank1", "Rank-1 (%)")):
        head = (["method", "seeds"] + [f"self {w}" for w in widths] + [f"cross {w}→{top}" for w in widths[:-1]]
                + ["mean off-diag", "compatible"])
        lines += [f"## {name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in table["rows"]:
            s = row[metric]
            cells = ([row["label"], str(len(row["seeds"]))] + [_pm(s["self"][str(w)]) for w in widths]
                     + [_pm(s["cross"][str(w)]) for w in widths[:-1]]
                     + [_pm(s["mean_off_diagonal"]), f"{s['compatible_seeds']}/{len(row['seeds'])}"])
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += _floor_lines(table.get("floor"))
    if any(c["status"] != "not run" for c in table.get("claims", [])) or table.get("ladder"):
        lines += format_claims(table["claims"], table["ladder"])
    lines += format_mechanisms(table["rows"], widths)
    lines += ["## Mean cross-model mAP matrices (rows query width, columns gallery width)", ""]
    for row in table["rows"]:
        opts = f" ({', '.join(row['options'])})" if row["options"] else ""
        lines += [f"**{row['label']}**{opts}: method `{row['method']}`, seeds {row['seeds']}", "",
                  "| q \\ g | " + " | ".join(str(w) for w in widths) + " |", "|" + "---|" * (len(widths) + 1)]
        for i, w in enumerate(widths):
            vals = [f"**{v:.2f}**" if i == j else f"{v:.2f}" for j, v in enumerate(row["map"]["mean_matrix"][i])]
            lines.append(f"| {w} | " + " | ".join(vals) + " |")
        lines.append("")
    if table["paired"]:
        lines += ["## Paired per-query tests (mAP)", "",
                  "Per-query AP difference A − B in points on the same queries: 95% CI by bootstrap over queries, "
                  "p by sign-flip permutation. With several seeds the combined test uses each query's difference "
                  "averaged over seeds (training noise across seeds is not in the CI; see the per-seed means). "
                  "Verdict: real if the CI excludes 0 (and p < 0.05, which agrees except with a handful of queries), "
                  "else noise.", ""]
        for pair in table["paired"]:
            lines += [f"### {pair['a']} − {pair['b']} (seeds {pair['seeds']})", ""]
            for c in pair["cells"]:
                r = c["combined"]
                cell = f"M[{c['query_width']}][{c['gallery_width']}] ({c['kind']})"
                text = (f"- {cell}: {pair['a']} − {pair['b']} = {r['mean_diff']:+.2f} points "
                        f"(95% CI [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], p = {_p(r['p_value'])}, "
                        f"n = {r['n']}) → **{r['verdict']}**")
                if len(c["per_seed"]) > 1:
                    diffs = [t["mean_diff"] for t in c["per_seed"].values()]
                    text += "; per seed " + ", ".join(f"{s}: {d:+.2f}" for s, d in zip(c["per_seed"], diffs))
                    if min(diffs) < 0 < max(diffs):
                        text += " (seeds disagree in sign)"
                lines.append(text)
                if "seed_level" in c:
                    lines.append("  - " + _seed_level_text(c["seed_level"]))
            lines.append("")
    return "\n".join(lines)


def _provenance_lines(prov: dict) -> list[str]:
    if not prov:
        return []
    return [f"- commit: `{prov.get('git_commit', 'unknown')}`", f"- command: `{prov.get('command', 'unknown')}`",
            f"- data: `{prov.get('data', 'unknown')}`, generation seed {prov.get('data_seed', 'unknown')}", ""]


def _floor_text(floor) -> str:
    return "floor not measured" if floor is None else f"floor {floor:.2f}"


def _seed_level_text(r: dict) -> str:
    ci = "no CI (one seed)" if r["ci_low"] is None else f"95% t-CI [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
    h = r["hierarchical"]
    return (f"seed level: {r['mean_diff']:+.2f} over {r['n_seeds']} seeds, {ci}, sign-flip p = {_p(r['p_value'])}, "
            f"hierarchical CI [{h['ci_low']:+.2f}, {h['ci_high']:+.2f}], {_floor_text(r['floor'])} → "
            f"**{r['status']}** ({r['reason']})")


def _floor_lines(floor: dict | None) -> list[str]:
    if not floor:
        return ["## Perturbation floor", "", "Not measured (`swedge compare --perturb-floor N`): verdicts below use "
                "a floor of 0.", ""]
    cells = ", ".join(f"M[{k.replace('->', '][')}] {v:.2f}" for k, v in floor["cells"].items())
    return ["## Perturbation floor", "",
            f"{floor['reference']} retrained {floor['runs']} times at seed 0 with a negligible perturbation "
            f"({floor['perturbation']}); spread (max − min) of mAP: mean off-diagonal "
            f"{floor['mean_off_diagonal']:.2f}; {cells}. A difference within the floor is unresolved.", ""]


def write_report(table: dict, out) -> str:
    """table.json, table.md and one heat-map per method under ``out``; returns the Markdown."""
    from swedge.report.heatmap import save_heatmap

    out = Path(out)
    md = format_markdown(table)
    atomic_write_json(out / "table.json", table)
    atomic_write_bytes(out / "table.md", (md + "\n").encode())
    for row in table["rows"]:
        save_heatmap(row["map"]["mean_matrix"], table["widths"], out / "heatmaps" / f"{row['label']}.png",
                     title=f"{row['label']}: mean cross-model mAP, {len(row['seeds'])} seed(s)")
    return md
