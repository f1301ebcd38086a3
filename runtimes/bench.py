"""`swedge bench` and the device's `python -m swedge.runtimes bench`: latency p50 / p90 per artifact and runtime
at the batch sizes asked, peak memory, torch eager as the baseline where torch is installed. One JSON schema for
both (:func:`bench_record`), which `swedge select` reads.

Timing is the runtime's own inference call (``Runner.last_inference_s``), after warm-up, with a fixed thread
count for every runtime (default 1: on a small shared machine more threads make torch eager erratic, see
docs/backends.md §13). Ratios are taken within one run; absolute numbers move with machine load. Memory is the
peak resident memory while an artifact was loaded and run (``swedge.runtimes.memory``: per artifact on Linux,
the process's peak so far elsewhere; the record names the method).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from swedge.errors import SwedgeError
from swedge.runtimes import memory
from swedge.runtimes.host import describe, host_record
from swedge.runtimes.manifest import MANIFEST, ArtifactEntry, Manifest, file_sha256, read_manifest
from swedge.runtimes.probe import load_probe


@dataclass
class Timing:
    format: str
    runtime: str
    width: float
    precision: str
    batch: int
    p50_ms: float | None = None
    p90_ms: float | None = None
    status: str = "ok"
    reason: str = ""
    speedup_vs_torch: float | None = None
    id: str = ""                       # the manifest's artifact id ("torch-w0.5" for the baseline)
    bytes: int | None = None           # the artifact's size on disk (the manifest's)
    peak_rss_mb: float | None = None   # peak resident memory of the process while it was loaded and run

    def to_dict(self) -> dict:
        return asdict(self)


def _inputs(inputs: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(inputs))
    return np.ascontiguousarray(np.concatenate([np.asarray(inputs[:batch])] * reps)[:batch], dtype=np.float32)


def time_runner(runner, x: np.ndarray, *, warmup: int, iters: int) -> tuple[float, float]:
    for _ in range(warmup):
        runner.embed(x)
    times = []
    for _ in range(iters):
        runner.embed(x)
        times.append(runner.last_inference_s * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def _torch_checkpoint(manifest: Manifest, override) -> tuple[Path | None, str]:
    path = Path(override or manifest.checkpoint.path)
    if not path.is_file():
        return None, f"checkpoint {path} not found (pass --checkpoint)"
    if file_sha256(path) != manifest.checkpoint.sha256:
        return None, f"checkpoint {path} is not the one this bundle was exported from (sha256 differs)"
    return path, ""


def bench_bundle(root, *, batches=(1, 32), warmup: int = 5, iters: int = 30, threads: int | None = 1,
                 runtimes: list[str] | None = None, formats: list[str] | None = None, torch_baseline: bool = True,
                 checkpoint=None, progress: bool = True) -> list[Timing]:
    from tqdm import tqdm

    from swedge.runtimes import RuntimeUnavailable, runner_class, runtimes_for

    bundle = read_manifest(root)
    bundle.require_artifacts()
    inputs = load_probe(bundle, max(batches)).inputs  # validated: an int8 probe is the probe's fault, not a timing
    jobs = []
    if torch_baseline:
        ckpt, why = _torch_checkpoint(bundle.manifest, checkpoint)
        for w in bundle.widths:
            eager = ArtifactEntry(id=f"torch-w{w:g}", format="torch", width=w, precision="fp32", status="ok")
            jobs.append((eager, "torch", ckpt, why))
    for a in bundle.artifacts:
        if a.status != "ok" or (formats and a.format not in formats):
            continue
        for name in runtimes_for(a):
            if runtimes and name not in runtimes:
                continue
            why = "MIL reference interpreter (a numerics check, not a runtime to time)" if name == "coreml-mil" else ""
            jobs.append((a, name, None, why))
    out: list[Timing] = []
    for a, name, path, why in tqdm(jobs, desc="bench", unit="model", disable=not progress):
        rows = [Timing(a.format, name, float(a.width), a.precision, b, id=a.id, bytes=a.bytes) for b in batches]
        out += rows
        try:
            if why:
                raise RuntimeUnavailable(why)
            if path is None:
                path = bundle.check_file(a.path, a.sha256)
            method = memory.reset_peak()
            with runner_class(name)(path, a, threads=threads) as runner:
                for t in rows:
                    t.p50_ms, t.p90_ms = time_runner(runner, _inputs(inputs, t.batch), warmup=warmup, iters=iters)
                peak = memory.peak_mb(method)  # while the runner is still loaded
            for t in rows:
                t.peak_rss_mb = peak
        except (RuntimeUnavailable, SwedgeError) as exc:
            for t in rows:
                t.status, t.reason = "skipped", str(exc)
    base = {(t.width, t.batch): t.p50_ms for t in out if t.runtime == "torch" and t.p50_ms}
    for t in out:
        if t.p50_ms and (t.width, t.batch) in base:
            t.speedup_vs_torch = base[(t.width, t.batch)] / t.p50_ms
    return out


SCHEMA = "swedge.bench"
SCHEMA_VERSION = 1


def manifest_sha256(root) -> str:
    """sha256 of a bundle's manifest.json: what a bench or verify JSON records, so `swedge select` can tell
    results of this bundle from another's (the manifest lists every artifact's sha256)."""
    return file_sha256(Path(root) / MANIFEST)


def bench_record(root, timings: list[Timing], *, threads: int | None, host: dict | None = None,
                 warmup: int | None = None, iters: int | None = None, command: str = "swedge bench") -> dict:
    """The JSON of a bench run (`swedge bench` and the device's `python -m swedge.runtimes bench` alike): timings
    beside the host they were measured on (latency and int8 kernels depend on the CPU: model and int8 ISA
    flags), the bundle's manifest sha256, and peak memory."""
    peaks = [t.peak_rss_mb for t in timings if t.peak_rss_mb is not None]
    process = memory.process_peak_mb()  # a per-artifact reset also lowers ru_maxrss: take the larger
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "command": command, "bundle": str(root),
            "manifest_sha256": manifest_sha256(root), "threads": threads, "warmup": warmup, "iters": iters,
            "batches": sorted({t.batch for t in timings}),
            "runtimes": sorted({t.runtime for t in timings if t.runtime != "torch"}),
            "peak_rss_mb": max(peaks + ([process] if process is not None else []), default=None),
            "memory_method": memory.method(),
            "host": host or host_record(), "timings": [t.to_dict() for t in timings]}


def format_timings(timings: list[Timing]) -> str:
    from swedge.report.table import text_table

    rows = [[t.format, t.runtime, f"{t.width:g}", t.precision, t.batch,
             "-" if t.p50_ms is None else f"{t.p50_ms:.2f}", "-" if t.p90_ms is None else f"{t.p90_ms:.2f}",
             "-" if t.speedup_vs_torch is None else f"{t.speedup_vs_torch:.2f}x",
             "-" if t.peak_rss_mb is None else f"{t.peak_rss_mb:.0f}",
             t.status if not t.reason else f"{t.status}: {t.reason}"] for t in timings]
    return text_table(["format", "runtime", "width", "precision", "batch", "p50 ms", "p90 ms", "vs torch", "peak MB",
                       "status"], rows, right={2, 4, 5, 6, 7, 8})


def host_line(host: dict | None = None) -> str:
    return f"measured on: {describe(host or host_record())}"


def save_plot(timings: list[Timing], path, *, batch: int = 1, host: dict | None = None) -> str | None:
    """Latency p50 against width, one line per (format, runtime, precision); None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    series: dict[str, list[tuple[float, float]]] = {}
    for t in timings:
        if t.batch == batch and t.p50_ms:
            series.setdefault(f"{t.format}/{t.runtime} {t.precision}", []).append((t.width, t.p50_ms))
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors  # 20 distinct colours: one per runtime x precision line
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts.sort()
        style = dict(color="black", linewidth=2.5) if name.startswith("torch") else dict(color=colors[i % 20])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers.get(name.rsplit(" ", 1)[-1], "o"),
                label=name, **style)
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel(f"latency p50 (ms), batch {batch}")
    ax.set_title(f"swedge bench: batch {batch}" + (f"\n{describe(host)}" if host else ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    from swedge.report.png import save_png

    return save_png(fig, path)
