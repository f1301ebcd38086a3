"""The verification harness: every artifact of a bundle, on every runtime that can run it, against the torch
sub-model of its width and against the server model (torch-free; docs/design.md §6).

Per (artifact, runtime) row: sha256 checked before loading; probe inputs streamed in batches (memory stays
flat as the probe grows); fidelity (per-row cosine min/mean, max abs error, top-k agreement); self-test and
cross-test mAP / Rank-1 on the probe split; ΔmAP against the torch sub-model; thresholds by precision.
Anything wrong (tampered file, NaN inputs, wrong output size, missing runtime) is a failed row or a bundle
error, never a crash and never a pass.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from swedge.errors import MissingDependencyError, SwedgeError
from swedge.metrics.fidelity import feature_problem, fidelity
from swedge.runtimes.host import host_differences, host_record
from swedge.runtimes.manifest import MANIFEST, Bundle, BundleError, file_sha256, read_manifest, repair_summaries
from swedge.runtimes.probe import NpyRows, Probe, load_probe, load_references  # noqa: F401 (re-exported)
from swedge.runtimes.thresholds import Thresholds

PASS, FAIL, SKIP = "pass", "fail", "skipped"


@dataclass
class Row:
    id: str
    format: str
    width: float
    precision: str
    runtime: str
    status: str = FAIL
    reason: str = ""
    runtime_label: str = ""
    cosine_min: float | None = None
    cosine_mean: float | None = None
    max_abs: float | None = None
    max_rel_error: float | None = None
    topk_agreement: float | None = None
    map_self: float | None = None
    rank1_self: float | None = None
    map_cross: float | None = None
    rank1_cross: float | None = None
    delta_map: float | None = None       # cross-test mAP minus the torch sub-model's (points)
    delta_map_self: float | None = None
    map_baseline: float | None = None    # --baseline: artifact queries vs the old server gallery
    inference_s: float = 0.0             # time inside the runtime
    harness_s: float = 0.0               # wall time of embedding the probe through the harness (load excluded)
    scoring_s: float = 0.0               # fidelity + retrieval metrics of the row
    features: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.format}/{self.runtime} w{self.width:g} {self.precision}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("features")
        return d


@dataclass
class VerifyReport:
    bundle: str
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)       # bundle-level failures
    reference: dict = field(default_factory=dict)         # width -> torch sub-model's self/cross mAP
    matrix: dict = field(default_factory=dict)            # {"labels", "columns", "map"}: query row x gallery col
    thresholds: dict = field(default_factory=dict)
    baseline: dict | None = None
    host: dict = field(default_factory=host_record)  # the machine this verify ran on
    export_host: dict | None = None                  # the manifest's: None for bundles exported before it existed
    repairs: list[str] = field(default_factory=list)  # what `swedge export --int8-repair` did, one line each
    weak_thresholds: list[str] = field(default_factory=list)  # accepted with --allow-weak-thresholds
    manifest_sha256: str | None = None  # of the bundle verified: `swedge select` matches results to bundles by it
    outputs: dict = field(default_factory=dict, repr=False)  # files written from it: "json" / "junit" / "report"

    @property
    def host_differences(self) -> list[str] | None:
        """What differs between the export host and this one (int8 kernels differ by CPU); None when unknown."""
        return None if self.export_host is None else host_differences(self.export_host, self.host)

    @property
    def passed(self) -> bool:
        ran = [r for r in self.rows if r.status != SKIP]
        return not self.errors and bool(ran) and all(r.status == PASS for r in ran)

    def table(self) -> str:
        """The result as text: one row per artifact and runtime, the reference, the hosts (what `swedge verify`
        prints)."""
        from swedge.runtimes.report import format_text

        return format_text(self)

    def to_dict(self) -> dict:
        return {"bundle": self.bundle, "manifest_sha256": self.manifest_sha256, "passed": self.passed,
                "errors": self.errors,
                "thresholds": self.thresholds, "reference": self.reference, "baseline": self.baseline,
                "artifacts": [r.to_dict() for r in self.rows], "matrix": self.matrix, "host": self.host,
                "export_host": self.export_host, "host_differences": self.host_differences, "repairs": self.repairs,
                "weak_thresholds": self.weak_thresholds}


def _embed(runner, probe: Probe, batch: int) -> tuple[np.ndarray, float]:
    chunks, spent = [], 0.0
    for i in range(0, len(probe.inputs), batch):
        chunks.append(runner.embed(probe.inputs[i:i + batch]))
        spent += runner.last_inference_s
    return np.concatenate(chunks), spent


def _score(row: Row, feats: np.ndarray, probe: Probe, refs, server_w: float, ref_scores: dict, dim: int,
           thresholds: Thresholds, baseline_gallery) -> None:
    if feats.shape != (len(probe.inputs), dim):
        row.reason = f"output shape {feats.shape[1:]} differs from the server's embedding dim ({dim},)"
        return
    if problem := feature_problem(feats):  # undefined cosines and rankings: a failure, never a 0/0 pass
        row.reason = problem
        return
    for key, value in score_features(feats, probe, refs[row.width], refs[server_w], ref_scores[row.width]).items():
        setattr(row, key, value)
    q = probe.split(feats)[0]
    failures = thresholds.check(row.precision, row.cosine_min, row.cosine_mean, row.delta_map_self, row.delta_map,
                                row.max_rel_error)
    if baseline_gallery is not None:
        gallery, old_cross = baseline_gallery
        row.map_baseline = 100 * probe.retrieval(q, gallery).map
        limit = old_cross[row.width] - thresholds.baseline_max_map_drop if row.width in old_cross else None
        if limit is not None and row.map_baseline < limit:
            failures.append(f"vs old gallery mAP {row.map_baseline:.2f} < old model's {old_cross[row.width]:.2f} "
                            f"- {thresholds.baseline_max_map_drop}")
    row.features = feats
    row.status, row.reason = (FAIL, "; ".join(failures)) if failures else (PASS, "")


def score_features(feats: np.ndarray, probe: Probe, reference: np.ndarray, server: np.ndarray,
                   reference_score: dict) -> dict:
    """The gate's figures for one artifact's probe features: fidelity to the torch sub-model (``reference``),
    self-test and cross-test (vs the server's gallery) mAP / Rank-1, and ΔmAP against ``reference_score``."""
    fid = fidelity(feats, reference, is_query=probe.is_query)
    q, g = probe.split(feats)
    own, cross = probe.retrieval(q, g), probe.retrieval(q, probe.split(server)[1])
    figures = {"cosine_min": fid.cosine_min, "cosine_mean": fid.cosine_mean, "max_abs": fid.max_abs,
               "topk_agreement": fid.topk_agreement, "max_rel_error": fid.max_rel_error,
               "map_self": 100 * own.map, "rank1_self": 100 * own.rank1,
               "map_cross": 100 * cross.map, "rank1_cross": 100 * cross.rank1}
    figures["delta_map_self"] = figures["map_self"] - reference_score["map_self"]
    figures["delta_map"] = figures["map_cross"] - reference_score["map_cross"]
    return figures


def reference_scores(refs: dict[float, np.ndarray], probe: Probe, server_w: float) -> dict[str, dict]:
    """Self-test and cross-test mAP of every torch sub-model on the probe (what ΔmAP is measured against)."""
    out = {}
    for w, f in refs.items():
        q, g = probe.split(f)
        out[f"{w:g}"] = {"map_self": 100 * probe.retrieval(q, g).map,
                         "map_cross": 100 * probe.retrieval(q, probe.split(refs[server_w])[1]).map}
    return out


def _baseline(path, probe: Probe, dim: int):
    """(old server gallery features, {width: old torch cross-test mAP}) from an older bundle."""
    old = read_manifest(path)
    if old.manifest.probe.inputs_sha256 != probe.sha256:
        raise BundleError(f"baseline {path} was exported with a different probe set: export both with the same "
                          "--probe so the new queries can be searched in the old gallery")
    try:
        refs = load_references(old, len(probe.inputs), dim)
    except BundleError as exc:
        raise BundleError(f"baseline {path}: {exc}") from None
    server = refs[old.server_width]
    cross = {w: 100 * probe.retrieval(probe.split(f)[0], probe.split(server)[1]).map for w, f in refs.items()}
    return probe.split(server)[1], cross, {"bundle": str(path), "checkpoint_sha256": old.manifest.checkpoint.sha256,
                                           "server_self_map": cross[old.server_width]}


def _rows_for(bundle: Bundle, runtimes: list[str] | None, formats: list[str] | None):
    from swedge.runtimes import runtimes_for

    for a in bundle.artifacts:
        if formats and a.format not in formats:
            continue
        names = runtimes_for(a) if a.status == "ok" else [(a.runtimes or ["-"])[0]]
        if runtimes:
            names = [n for n in names if n in runtimes]
        for name in names:
            yield a, name


def verify_bundle(root, *, runtimes: list[str] | None = None, formats: list[str] | None = None,
                  thresholds: Thresholds | None = None, baseline=None, batch: int = 64, threads: int | None = None,
                  progress: bool = True) -> VerifyReport:
    from tqdm import tqdm

    from swedge.runtimes import RuntimeUnavailable, runner_class

    thresholds = thresholds or Thresholds()
    report = VerifyReport(bundle=str(root), thresholds=thresholds.to_dict(), weak_thresholds=thresholds.weak())
    try:
        bundle = read_manifest(root)
        report.manifest_sha256 = file_sha256(bundle.root / MANIFEST)
        report.export_host = bundle.manifest.export_host
        report.repairs = repair_summaries(bundle.artifacts)
        bundle.require_artifacts()
        server_w, dim = bundle.server_width, bundle.manifest.output.dim
        probe = load_probe(bundle, batch)
        refs = load_references(bundle, len(probe.inputs), dim)
        old = _baseline(baseline, probe, dim) if baseline else None
    except SwedgeError as exc:
        report.errors.append(str(exc))
        return report
    report.reference = reference_scores(refs, probe, server_w)
    ref_scores = {float(w): v for w, v in report.reference.items()}
    if old is not None:
        report.baseline = old[2]
    baseline_gallery = (old[0], old[1]) if old else None

    pairs = list(_rows_for(bundle, runtimes, formats))
    if (runtimes or formats) and not pairs:
        asked = " and ".join(f"{kind} {', '.join(v)}" for kind, v in (("format", formats), ("runtime", runtimes)) if v)
        report.errors.append(f"no artifact in {root} matches {asked} (it holds "
                             f"{', '.join(sorted({a.format for a in bundle.artifacts}))})")
    for a, name in tqdm(pairs, desc="verify", unit="artifact", disable=not progress):
        row = Row(id=a.id, format=a.format, width=float(a.width), precision=a.precision, runtime=name)
        report.rows.append(row)
        if a.status != "ok":
            row.status, row.reason = SKIP, f"not exported: {a.status if a.reason is None else a.reason}"
            continue
        try:
            path = bundle.check_file(a.path, a.sha256)
            with runner_class(name)(path, a, threads=threads) as runner:
                row.runtime_label = runner.label or name
                t0 = time.perf_counter()
                feats, row.inference_s = _embed(runner, probe, batch)
                row.harness_s = time.perf_counter() - t0
        except RuntimeUnavailable as exc:
            row.status, row.reason = SKIP, str(exc)
            continue
        except MissingDependencyError as exc:
            row.reason = f"missing runtime: {exc}"
            continue
        except SwedgeError as exc:
            row.reason = str(exc)
            continue
        except Exception as exc:  # a runtime crashing on this artifact is a failure of the artifact
            row.reason = f"{name} failed: {type(exc).__name__}: {exc}"
            continue
        t0 = time.perf_counter()
        _score(row, feats, probe, refs, server_w, ref_scores, dim, thresholds, baseline_gallery)
        row.scoring_s = time.perf_counter() - t0
    report.matrix = compatibility_matrix(report.rows, refs, probe)
    return report


def compatibility_matrix(rows: list[Row], refs: dict, probe: Probe) -> dict:
    """mAP with queries from each row (and each torch sub-model) against galleries of the torch sub-models
    and of every artifact of the server width: (width × runtime × precision) queries × galleries."""
    queries = [(f"torch w{w:g}", f) for w, f in sorted(refs.items())]
    queries += [(r.label, r.features) for r in rows if r.features is not None]
    server_w = max(refs)
    galleries = [(f"torch w{w:g}", f) for w, f in sorted(refs.items())]
    galleries += [(r.label, r.features) for r in rows if r.features is not None and r.width == server_w]
    grid = probe.grid([f for _, f in queries], [f for _, f in galleries])
    values = [[100 * grid[i, j].map for j in range(len(galleries))] for i in range(len(queries))]
    return {"labels": [q for q, _ in queries], "columns": [g for g, _ in galleries], "map": values}
