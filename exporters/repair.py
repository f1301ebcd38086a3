"""``swedge export --int8-repair``: an int8 artifact that misses the retrieval gate is re-exported with the most
sensitive layers kept in float, fewest first, until it passes.

Which layers: ranked once per width on held-out calibration images (calibration/int8_repair.py; never the probe).
How many: the first of 1, 2, 4, ... whose artifact passes the gate (the same ``Thresholds.check`` as ``swedge
verify``) on the bundle's probe, as NNCF's accuracy control stops on its validation set. So the probe picks only
the count, and the manifest says so; a probe of other images is the unbiased check (``swedge verify`` with a bundle
exported with another ``--probe``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from swedge.calibration.int8_repair import repair_counts
from swedge.runtimes.manifest_types import ArtifactEntry, Repair
from swedge.runtimes.thresholds import DEFAULT

STOPPING = ("layers ranked on held-out calibration images; the number kept is the fewest of "
            "1, 2, 4, ... that passes the gate on this bundle's probe")
_FIGURES = ("cosine_mean", "cosine_min", "map_self", "map_cross", "delta_map_self", "delta_map")


class ExportGate:
    """The gate, as ``swedge verify`` applies it, on the probe held in memory during an export."""

    def __init__(self, probe_inputs: np.ndarray, labels: dict, references: dict[float, np.ndarray], thresholds=None):
        from swedge.runtimes.verify import Probe, reference_scores

        self.inputs = probe_inputs
        self.probe = Probe(probe_inputs, labels["pids"], labels["camids"], labels["is_query"].astype(bool), "")
        self.references = references
        self.server_width = max(references)
        self.scores = {float(w): v for w, v in reference_scores(references, self.probe, self.server_width).items()}
        self.thresholds = thresholds or DEFAULT

    def check(self, path: Path, entry: ArtifactEntry, embed_here) -> dict:
        """{"runtime", figures..., "failures": [...]} for the artifact at ``path`` (runtime None: cannot run here)."""
        from swedge.runtimes.verify import score_features

        name, feats = embed_here(path, entry, self.inputs)
        if name is None:
            return {"runtime": None, "failures": [f"cannot run here: {feats}"]}
        w = float(entry.width)
        figures = score_features(feats, self.probe, self.references[w], self.references[self.server_width],
                                 self.scores[w])
        failures = self.thresholds.check(entry.precision, figures["cosine_min"], figures["cosine_mean"],
                                         figures["delta_map_self"], figures["delta_map"], figures["max_rel_error"])
        return {"runtime": name, **{k: round(float(figures[k]), 6) for k in _FIGURES}, "failures": failures}


def repair_int8(exporter, job, entry: ArtifactEntry, *, gate: ExportGate, ranking, export_one,
                embed_here) -> ArtifactEntry:
    """The artifact's entry after repair (``entry``'s file when it passes or cannot be repaired); the entry's
    ``repair`` record says what was tried. ``ranking()`` returns the width's layer ranking (computed once)."""
    before = gate.check(job.out, entry, embed_here)
    if before["runtime"] is None or not before["failures"]:  # needed: None = the gate could not run here
        return dataclasses.replace(entry, repair=Repair(before=before,
                                                        needed=None if before["runtime"] is None else False))
    if exporter.int8_repair_scheme is None:
        return dataclasses.replace(entry, repair=Repair(
            before=before, needed=True, repaired=False,
            reason=f"{exporter.name} int8 export cannot keep layers float in swedge"))
    ranked = ranking()
    layers = [r["layer"] for r in ranked["layers"]]
    tries, current = [], entry  # current: the entry of the file now at job.out
    for k in repair_counts(len(layers)):
        trial_job = dataclasses.replace(job, keep_float=tuple(layers[:k]))
        trial = export_one(exporter, trial_job)
        if trial.status != "ok":  # writes are atomic: the previous file is still in place
            tries.append({"kept": k, "failures": [f"export failed: {trial.reason}"]})
            break
        current = trial
        result = gate.check(trial_job.out, current, embed_here)
        tries.append({"kept": k, **{key: v for key, v in result.items() if key != "runtime"}})
        if not result["failures"]:
            return dataclasses.replace(current, repair=Repair(
                before=before, needed=True, repaired=True, kept_float=layers[:k], after=result, tries=tries,
                stopping=STOPPING, ranking=_short(ranked)))
    return dataclasses.replace(current, repair=Repair(
        before=before, needed=True, repaired=False, tries=tries, stopping=STOPPING, ranking=_short(ranked),
        reason=f"still fails with {tries[-1]['kept'] if tries else 0} of the most sensitive layers float"))


def _short(ranked: dict, top: int = 16) -> dict:
    """The ranking as the manifest keeps it: its provenance and the top layers."""
    return {**{k: v for k, v in ranked.items() if k != "layers"}, "top": ranked["layers"][:top]}
