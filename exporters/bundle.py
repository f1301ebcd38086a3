"""``swedge export``: one checkpoint -> a self-describing bundle (docs/design.md §5), written atomically.

Everything is written into a staging folder beside the target (``.NAME.partial-XXXX``); ``manifest.json`` is
written last and the folder is renamed into place only when every artifact is done, so a killed export never
leaves a folder that looks like (or verifies as) a bundle.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from swedge import __version__
from swedge.errors import SwedgeError
from swedge.exporters.base import (CALIB_HINT, EXPORTERS, INPUT_NAME, OUTPUT_NAME, ExportJob, ExportSkipped,
                                   version_of)
from swedge.exporters.formats import FORMATS, export_tools
from swedge.exporters.probe import DEFAULT_PROBE_IMAGES, build_probe, reference_features, save_npy, save_npz
from swedge.interrupts import abort_on_interrupt, interrupted
from swedge.io import atomic_write_json, umask
from swedge.outputs import check_replace, check_writable, exclusive, remove_stale_staging, staging_prefix
from swedge.runtimes.manifest import (MANIFEST, PRECISIONS, SCHEMA, SCHEMA_VERSION, artifact_id, tree_bytes,
                                      tree_sha256)
from swedge.runtimes.manifest_types import (ArtifactEntry, InputSpec, Manifest, OutputSpec, Parity, ProbeEntry,
                                            ReferenceEntry, SourceCheckpoint)

PARITY_IMAGES = 64  # probe rows checked straight after export (the full check is `swedge verify`)


@dataclass
class ExportPlan:
    checkpoint: Path
    out: Path
    formats: list[str]
    widths: list[float] | None = None
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16"])
    calib: Path | None = None
    calib_size: int = 128
    probe: Path | None = None
    probe_size: int = DEFAULT_PROBE_IMAGES
    max_batch: int = 64
    force: bool = False
    seed: int = 0
    cache_dir: Path | None = None
    int8_repair: bool = False  # re-export failing int8 artifacts with their most sensitive layers float


def validate_plan(plan: ExportPlan) -> None:
    """Everything checkable before any work: names, calibration needs, the output folder."""
    from swedge.exporters import load_exporters

    load_exporters()
    for fmt in plan.formats:
        EXPORTERS.get(fmt)  # unknown format -> message with a suggestion
    import difflib

    for p in plan.precisions:
        if p not in PRECISIONS:
            close = difflib.get_close_matches(p, PRECISIONS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise SwedgeError(f"unknown precision '{p}'.{hint} Choose from: {', '.join(PRECISIONS)}")
    needing = {(f, p) for f in plan.formats for p in plan.precisions if p in FORMATS[f].calibrated}
    if needing and plan.calib is None:
        precisions = "/".join(sorted({p for _, p in needing}))
        raise SwedgeError(f"{precisions} for {', '.join(sorted({f for f, _ in needing}))} needs calibration data: "
                          f"{CALIB_HINT}, or drop {precisions}")
    if plan.probe is None and plan.calib is None:
        raise SwedgeError("a probe set is needed for the bundle's reference features: pass --probe DATA "
                          "(a Market-1501 folder; its query + bounding_box_test splits are used)")
    check_out(plan)


def plan_inputs(plan: ExportPlan) -> dict:
    """The export's inputs (flag -> path): --force must never delete them, no output may overwrite them."""
    return {"CHECKPOINT": plan.checkpoint, "--calib": plan.calib, "--probe": plan.probe}


def is_bundle(path: Path) -> bool:
    """A folder swedge exported: its manifest.json has the bundle schema (a killed export's has none)."""
    import json

    try:
        return json.loads((path / MANIFEST).read_text()).get("schema") == SCHEMA
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def check_out(plan: ExportPlan) -> None:
    """--out can be written and, if it exists, may be replaced (see swedge.outputs)."""
    check_writable(plan.out, "--out", folder=True)
    check_replace(plan.out, what="a bundle", marker=f"no {MANIFEST} of schema {SCHEMA}", is_ours=is_bundle,
                  force=plan.force, inputs=plan_inputs(plan))


def _calibration(plan: ExportPlan, preprocess, progress: bool):
    if plan.calib is None:
        return None
    from swedge.calibration.dataset import build_calibration_set

    cache = plan.cache_dir or Path.home() / ".cache" / "swedge" / "calibration"
    return build_calibration_set(plan.calib, preprocess, size=plan.calib_size, seed=plan.seed, cache_dir=cache,
                                 progress=progress)


def _embed_here(result_path: Path, entry: ArtifactEntry, inputs: np.ndarray):
    """(runtime name, features) on the first of the artifact's runtimes that runs here, or (None, reasons)."""
    from swedge.runtimes import RuntimeUnavailable, runner_class, runtimes_for

    reasons = []
    for name in runtimes_for(entry):
        try:
            with runner_class(name)(result_path, entry, threads=None) as runner:
                return name, runner.embed(inputs)
        except (RuntimeUnavailable, SwedgeError) as exc:
            reasons.append(f"{name}: {exc}")
    return None, "; ".join(reasons) or "no runtime for this format"


def _parity(result_path: Path, entry: ArtifactEntry, probe: np.ndarray, reference: np.ndarray) -> Parity:
    """Straight-after-export check on the first probe rows, on the first runtime that runs here."""
    from swedge.metrics.fidelity import row_cosine

    name, feats = _embed_here(result_path, entry, probe[:PARITY_IMAGES])
    if name is None:
        return Parity(runtime=None, skipped=feats)
    cos = row_cosine(feats, reference[:PARITY_IMAGES])
    return Parity(runtime=name, rows=int(len(cos)), cosine_min=float(cos.min()), cosine_mean=float(cos.mean()))


def _export_one(exporter, job: ExportJob, probe, reference) -> ArtifactEntry:
    if interrupted():  # a Ctrl-C that a backend hid (swallowed, or as another exception): start nothing more
        raise KeyboardInterrupt
    head = dict(id=artifact_id(exporter.name, job.width, job.precision), format=exporter.name, width=job.width,
                precision=job.precision)
    t0 = time.perf_counter()
    reason = exporter.unsupported(job.precision) or exporter.missing()
    if reason:
        return ArtifactEntry(**head, status="skipped", reason=reason)
    try:
        res = exporter.export(job)
    except ExportSkipped as exc:
        return ArtifactEntry(**head, status="skipped", reason=str(exc))
    except SwedgeError:
        raise
    except Exception as exc:  # a backend bug: record it, keep exporting the rest, exit non-zero at the end
        return ArtifactEntry(**head, status="failed", reason=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    rel = res.path.relative_to(job.out.parents[1])
    entry = ArtifactEntry(**head, path=rel.as_posix(), sha256=tree_sha256(res.path), bytes=tree_bytes(res.path),
                          export_seconds=round(seconds, 3), status="ok", runtimes=res.runtimes, batch=res.batch,
                          tools=res.tools, quantization=res.quantization, notes=res.notes,
                          **ArtifactEntry.keywords(res.extra))  # a new format's facts no field names: under extra
    return replace(entry, parity=_parity(res.path, entry, probe, reference))


def export_bundle(plan: ExportPlan, *, progress: bool = True, on_artifact=None) -> Manifest:
    """Write the bundle; returns the manifest. ``on_artifact(entry)`` is called after each artifact.

    One export per --out at a time (a lock beside it); Ctrl-C aborts and publishes nothing."""
    validate_plan(plan)
    with exclusive(plan.out, "swedge export"), abort_on_interrupt():
        check_out(plan)  # again under the lock: another export may have published there meanwhile
        for p in remove_stale_staging(plan.out):
            print(f"export: removed {p}, left by an export that was killed", file=sys.stderr)
        return _export_locked(plan, progress, on_artifact)


def _export_locked(plan: ExportPlan, progress: bool, on_artifact) -> Manifest:
    from tqdm import tqdm

    from swedge.checkpoint import load_checkpoint
    from swedge.nn.slicing import count_parameters, slice_model

    ckpt = load_checkpoint(plan.checkpoint, widths=plan.widths)
    widths = sorted(float(w) for w in (plan.widths or ckpt.widths))
    server = max(ckpt.widths)  # its reference is always stored: verify compares every width against it
    preprocess = ckpt.preprocess
    calibration = _calibration(plan, preprocess, progress)
    probe_inputs, labels = build_probe(plan.probe or plan.calib, preprocess, max_images=plan.probe_size,
                                       seed=plan.seed, progress=progress)

    with _staged_bundle(plan.out.resolve()) as staging:
        probe = ProbeEntry(inputs="probe/inputs.npy", labels="probe/labels.npz",
                           inputs_sha256=save_npy(staging / "probe/inputs.npy", probe_inputs),
                           labels_sha256=save_npz(staging / "probe/labels.npz", labels),
                           count=int(len(probe_inputs)), queries=int(labels["is_query"].sum()),
                           source=str(plan.probe or plan.calib))
        manifest = _manifest_head(ckpt, widths, preprocess, calibration, plan, probe)
        modules, references, listed = {}, {}, {}
        for w in sorted({*widths, server}):
            modules[w] = slice_model(ckpt.model, w).eval()
            references[w] = reference_features(modules[w], probe_inputs)
            rel = f"reference/w{w:g}.npy"
            listed[f"{w:g}"] = ReferenceEntry(path=rel, sha256=save_npy(staging / rel, references[w]),
                                              parameters=count_parameters(modules[w]))
        manifest = replace(manifest, references=listed)
        artifacts = []
        example = (calibration.inputs if calibration is not None else probe_inputs)[:4]
        repair = _Repair(plan, modules, calibration, probe_inputs, labels, references, staging, progress)
        jobs = [(f, w, p) for f in plan.formats for w in widths for p in plan.precisions]
        bar = tqdm(jobs, desc="export", unit="artifact", disable=not progress)
        for fmt, w, p in bar:
            exporter = EXPORTERS.get(fmt)()
            bar.set_postfix_str(f"{fmt} w{w:g} {p}")
            folder = staging / fmt
            folder.mkdir(exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="work-", dir=staging))
            out = folder / f"w{w:g}-{p}{exporter.format.suffix}"
            job = ExportJob(module=modules[w], width=w, precision=p, out=out, input_shape=(3, *preprocess.size),
                            example=example, calibration=calibration, max_batch=plan.max_batch, workdir=work,
                            metadata=_artifact_metadata(manifest, w, p))
            entry = _export_one(exporter, job, probe_inputs, references[w])
            if plan.int8_repair and p == "int8" and entry.status == "ok":
                bar.set_postfix_str(f"{fmt} w{w:g} {p}: checking the gate (--int8-repair)")
                entry = repair(exporter, job, entry)
            shutil.rmtree(work, ignore_errors=True)
            artifacts.append(entry)
            if on_artifact:
                on_artifact(entry)
        for d in staging.iterdir():  # formats that produced nothing leave no empty folder behind
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        manifest = replace(manifest, artifacts=tuple(artifacts))
        atomic_write_json(staging / MANIFEST, manifest.to_dict())
    return manifest


class _Repair:
    """--int8-repair for one export: the probe gate, and each width's layer ranking computed once when needed."""

    def __init__(self, plan, modules, calibration, probe_inputs, labels, references, staging: Path, progress: bool):
        self.plan, self.modules, self.calibration = plan, modules, calibration
        self.probe_inputs, self.labels, self.references = probe_inputs, labels, references
        self.staging, self.progress = staging, progress
        self._gate, self._rankings = None, {}

    def __call__(self, exporter, job: ExportJob, entry: ArtifactEntry) -> ArtifactEntry:
        from swedge.exporters.repair import ExportGate, repair_int8

        if self._gate is None:
            self._gate = ExportGate(self.probe_inputs, self.labels, self.references)
        return repair_int8(exporter, job, entry, gate=self._gate,
                           ranking=lambda: self.ranking(job.width, exporter.name, exporter.int8_repair_scheme),
                           export_one=lambda e, j: _export_one(e, j, self.probe_inputs, self.references[j.width]),
                           embed_here=_embed_here)

    def ranking(self, width: float, fmt: str, scheme: dict) -> dict:
        if (width, fmt) not in self._rankings:
            from swedge.calibration.int8_repair import conv_layers, rank_layers
            from swedge.exporters.onnx import export_onnx
            from swedge.exporters.probe import reference_features

            module, server = self.modules[width], self.modules[max(self.modules)]
            work = Path(tempfile.mkdtemp(prefix="work-rank-", dir=self.staging))
            try:
                fp32 = work / "fp32.onnx"
                export_onnx(module, fp32, input_shape=tuple(self.probe_inputs.shape[1:]),
                            example=self.calibration.inputs[:4], max_batch=self.plan.max_batch)
                self._rankings[width, fmt] = rank_layers(
                    fp32, self.calibration, [name for name, _, _ in conv_layers(module)],
                    lambda x: reference_features(module, x), lambda x: reference_features(server, x),
                    scheme=scheme, progress=self.progress)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return self._rankings[width, fmt]


def _manifest_head(ckpt, widths, preprocess, calibration, plan, probe: ProbeEntry) -> Manifest:
    """The manifest before any reference or artifact is listed."""
    from swedge.runtimes.host import host_record

    h, w = preprocess.size
    return Manifest(
        schema=SCHEMA, schema_version=SCHEMA_VERSION, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        swedge_version=__version__,
        checkpoint=SourceCheckpoint(path=str(Path(plan.checkpoint).resolve()), sha256=ckpt.file_sha256,
                                    tensors_sha256=ckpt.meta.get("tensors_sha256"), arch=ckpt.config.arch,
                                    widths=widths, embedding_dim=ckpt.config.embedding_dim,
                                    method=ckpt.meta.get("method", {}).get("name")),
        server_width=max(ckpt.widths), preprocess=preprocess,
        input=InputSpec(name=INPUT_NAME, shape=(-1, 3, h, w), dtype="float32", layout="NCHW"),
        output=OutputSpec(name=OUTPUT_NAME, dim=ckpt.config.embedding_dim, dtype="float32"),
        calibration=calibration.record() if calibration is not None else None,
        tools=version_of("torch", "numpy", *export_tools()),
        export_host=host_record(),  # int8 kernels differ by CPU: verify compares its own host with this one
        references={}, artifacts=(), probe=probe)


def _artifact_metadata(manifest: Manifest, width: float, precision: str) -> dict:
    import json

    return {"swedge.version": __version__, "swedge.width": f"{width:g}", "swedge.precision": precision,
            "swedge.checkpoint_sha256": manifest.checkpoint.sha256,
            "swedge.preprocess": json.dumps(manifest.preprocess.to_dict(), sort_keys=True)}


@contextmanager
def _staged_bundle(out: Path):
    """A staging folder beside ``out`` to write a bundle into; published (renamed into place) when the block ends
    without error and no Ctrl-C was hidden by a backend meanwhile, removed otherwise."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(out), dir=out.parent))
    try:
        yield staging
        if interrupted():  # a Ctrl-C a backend hid during the last step: publish nothing
            raise KeyboardInterrupt
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, out: Path) -> None:
    """Rename the finished staging folder into place; an old bundle (``--force``) is moved aside first and
    removed only after the new one is in place."""
    staging.chmod(0o777 & ~umask())  # mkdtemp made it 0700: publish with the usual permissions
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{int(time.time())}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def write_subset(src, ids: list[str], out: Path, *, extra: dict, force: bool = False,
                 command: str = "swedge select") -> Manifest:
    """A bundle at ``out`` holding only the artifacts ``ids`` of the read bundle ``src`` (a
    ``swedge.runtimes.manifest.Bundle``), its probe, and the references of their widths and of the server width;
    ``extra`` sets manifest fields (e.g. ``device``, what it was chosen for). Written as an export is: staged beside
    ``out``, every copied file checked against the manifest's sha256, renamed into place; one writer per ``out``,
    ``--force`` replaces only a bundle. Returns the new manifest."""
    out = Path(out).absolute()
    check_writable(out, "--out", folder=True)
    check_replace(out, what="a bundle", marker=f"no {MANIFEST} of schema {SCHEMA}", is_ours=is_bundle, force=force,
                  inputs={"BUNDLE": src.root})
    with exclusive(out, command), abort_on_interrupt():
        check_replace(out, what="a bundle", marker=f"no {MANIFEST} of schema {SCHEMA}", is_ours=is_bundle,
                      force=force, inputs={"BUNDLE": src.root})
        for p in remove_stale_staging(out):
            print(f"{command}: removed {p}, left by a writer that was killed", file=sys.stderr)
        artifacts = tuple(a for a in src.artifacts if a.id in ids)
        if missing := sorted(set(ids) - {a.id for a in artifacts}):
            raise SwedgeError(f"{src.root} has no artifact {missing}")
        keep = {float(a.width) for a in artifacts} | {src.server_width}
        manifest = replace(src.manifest, artifacts=artifacts, **extra,
                           references={k: r for k, r in src.manifest.references.items() if float(k) in keep})
        with _staged_bundle(out) as staging:
            for rel, sha, _, _ in manifest.listed_files():
                source, target = src.check_file(rel, sha), staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
                if tree_sha256(target) != sha:  # the copy is what the manifest promises, or nothing is published
                    raise SwedgeError(f"{rel} changed while it was copied to {out}; run the command again")
            atomic_write_json(staging / MANIFEST, manifest.to_dict())
    return manifest
