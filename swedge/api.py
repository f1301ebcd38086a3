"""swedge as a library: ``train``, ``export``, ``verify``, ``bench``, ``open_bundle``, ``load_checkpoint``.

The ``swedge`` commands of the same names are thin callers of these functions (argparse -> call -> print), so a
script and the command line share one code path, the same defaults and the same checks::

    import swedge

    run = swedge.train("data/synth", "runs/a", epochs=2, widths="0.5,1.0")
    bundle = swedge.export(run.checkpoint, "bundles/a", formats="onnx", calib="data/synth")
    report = swedge.verify(bundle.root)
    print(report.table(), report.passed)
    print(swedge.bench(bundle.root, batches=1).table())

Arguments are coerced: a path may be a ``str`` or a ``pathlib.Path``; a list of names (formats, precisions,
runtimes) may be one name, a comma-separated string or a list; widths may be ``0.5``, ``"0.5"``, ``[0.5, 1.0]``
or ``"0.5,1.0"``. A bad argument raises :class:`swedge.errors.SwedgeError` naming it.

This module imports nothing heavy at import time: ``open_bundle`` and ``verify`` need numpy and a runtime,
never torch (see tests/test_import_rules.py); ``train``, ``export``, ``load_checkpoint`` and bench's torch
baseline import torch when called.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from swedge.errors import SwedgeError

if TYPE_CHECKING:  # pragma: no cover
    from swedge.checkpoint import Checkpoint
    from swedge.runtimes.bench import Timing
    from swedge.runtimes.manifest import Bundle
    from swedge.runtimes.verify import VerifyReport
    from swedge.training.config import TrainConfig

__all__ = ["train", "export", "verify", "bench", "open_bundle", "load_checkpoint", "TrainResult", "BenchReport",
           "EXPORT_FORMATS", "default_precisions"]

# `swedge export`'s defaults (the command's flags take them from here); the formats: EXPORT_FORMATS, below.
CALIB_SIZE = 128
PROBE_SIZE = 600  # = swedge.exporters.probe.DEFAULT_PROBE_IMAGES (tests/test_python_api.py checks)
MAX_BATCH = 64
# `swedge verify` / `swedge bench` defaults.
VERIFY_BATCH = 64
BENCH_BATCHES = (1, 32)
BENCH_ITERS, BENCH_WARMUP, BENCH_THREADS = 30, 5, 1


def __getattr__(name: str):
    """EXPORT_FORMATS: every format of the table (swedge.exporters.formats), read when asked for, so that a row
    added at run time is in it and importing this module stays light."""
    if name == "EXPORT_FORMATS":
        from swedge.exporters.formats import FORMATS

        return tuple(FORMATS)
    raise AttributeError(f"module 'swedge.api' has no attribute '{name}'")


def default_precisions(calib) -> list[str]:
    """The precisions exported when none are asked for: fp32 and fp16, plus int8 when calibration data is given."""
    return ["fp32", "fp16", "int8"] if calib else ["fp32", "fp16"]


# ----------------------------------------------------------------------------------------------- coercion


def as_path(value, name: str, *, optional: bool = False) -> Path | None:
    """A ``str`` or ``os.PathLike`` as a Path (None allowed when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str) and text:
            return Path(text)
    raise SwedgeError(f"{name} must be a path (a str or a pathlib.Path), got {value!r}")


def _fspath(value, name: str) -> str:
    """Like :func:`as_path`, but the caller's spelling kept as a str (recorded in checkpoints and JSON as given)."""
    as_path(value, name)
    return os.fspath(value)


def _fspath_or_none(value, name: str) -> str | None:
    return None if value is None else _fspath(value, name)


def _items(value) -> list:
    """One value, a comma-separated string, or a list / tuple of values -> a list (never a str's characters)."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (bytes, dict)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)  # another iterable (a generator, a set of names)


def as_names(value, name: str) -> list[str] | None:
    """Names: ``"onnx"``, ``"onnx,tflite"`` or ``["onnx", "tflite"]`` -> a list of names; None stays None."""
    if value is None:
        return None
    items = _items(value)
    bad = [v for v in items if not isinstance(v, str) or not v.strip()]
    if bad:
        raise SwedgeError(f"{name} must be a name, a comma-separated string or a list of names (like 'onnx' or "
                          f"['onnx', 'tflite']), got {value!r}")
    names = [v.strip() for v in items]
    if not names:
        raise SwedgeError(f"{name}: give at least one name, got {value!r}")
    return names


def _number(item, kind=float):
    if isinstance(item, bool) or not isinstance(item, (int, float, str)):
        raise ValueError
    number = kind(item.strip() if isinstance(item, str) else item)
    if kind is int and not isinstance(item, str) and number != item:  # 2.5 is not a whole number
        raise ValueError
    if not math.isfinite(number):
        raise ValueError
    return number


def as_widths(value, name: str = "widths") -> list[float] | None:
    """Widths: ``0.5``, ``"0.5"``, ``[0.5, 1.0]``, ``["0.5", "1.0"]`` or ``"0.5,1.0"`` -> [floats]; None stays None."""
    return _numbers(value, name, float, "0.5, '0.5,1.0' or [0.5, 1.0]")


def _numbers(value, name: str, kind, example: str) -> list | None:
    if value is None:
        return None
    try:
        numbers = [_number(v, kind) for v in _items(value)]
    except (TypeError, ValueError):
        numbers = None
    if not numbers:
        raise SwedgeError(f"{name} must be {'whole ' if kind is int else ''}numbers like {example}, got {value!r}")
    return numbers


def as_int(value, name: str) -> int:
    try:
        return _number(value, int)
    except (TypeError, ValueError):
        raise SwedgeError(f"{name} must be a whole number, got {value!r}") from None


def as_float(value, name: str) -> float:
    try:
        return float(_number(value, float))
    except (TypeError, ValueError):
        raise SwedgeError(f"{name} must be a finite number, got {value!r}") from None


def as_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise SwedgeError(f"{name} must be True or False, got {value!r}")
    return value


def _writable(path, name: str, *, folder: bool) -> None:
    if path is not None:
        from swedge.outputs import check_writable

        check_writable(path, name, folder=folder)


# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote: the checkpoint (all widths in one file) inside the run folder."""

    checkpoint: Path
    run: Path
    config: "TrainConfig" = field(repr=False)

    @property
    def log(self) -> Path:
        """The run's train log (one JSON record per logged step)."""
        from swedge.training.trainer import LOG_FILE

        return self.run / LOG_FILE


@dataclass
class BenchReport:
    """Latency per artifact, runtime and batch size (:class:`swedge.runtimes.bench.Timing` rows) and the host."""

    bundle: str
    timings: list["Timing"]
    host: dict
    threads: int | None
    warmup: int
    iters: int
    command: str = "swedge bench"
    plot: str | None = None  # the latency plot written, if one was asked for and matplotlib is installed
    plot_missing: str = ""   # why an asked-for plot was not written

    @property
    def batches(self) -> list[int]:
        return sorted({t.batch for t in self.timings})

    def to_dict(self) -> dict:
        """The bench JSON (schema ``swedge.bench``), as `swedge bench --json` writes it and `swedge select` reads it."""
        from swedge.runtimes.bench import bench_record

        return bench_record(self.bundle, self.timings, threads=self.threads, host=self.host, warmup=self.warmup,
                            iters=self.iters, command=self.command)

    def table(self) -> str:
        """The timings as a text table (what `swedge bench` prints)."""
        from swedge.runtimes.bench import format_timings

        return format_timings(self.timings)

    def host_line(self) -> str:
        from swedge.runtimes.bench import host_line

        return host_line(self.host)


# -------------------------------------------------------------------------------------------------- train

_TRAIN_FIXED = ("data", "out", "method", "method_options")


def train(data, out, *, method: str | None = None, options=None, resume: bool = False, force: bool = False,
          progress: bool = True, **settings) -> TrainResult:
    """Train one switchable checkpoint from a Market-1501-style folder ``data`` into the run folder ``out``.

    ``method``: a training method (default ``sfsc-sum``, as `swedge train`); ``options``: its options, as
    ``{"key": value}``, ``"key=value"`` or a list of them (`--opt`). ``settings``: any other field of
    :class:`swedge.training.config.TrainConfig` under its name (``arch``, ``widths``, ``epochs``, ``input_size``
    ("64x32" or (64, 32)), ``lr``, ``device``, ``seed``, ``init``, ...), defaults as `swedge train`.
    ``resume`` continues the run in ``out``; ``force`` replaces it (refused otherwise).
    """
    import dataclasses

    from swedge.training.config import TrainConfig, check_config

    if as_bool(resume, "resume") and as_bool(force, "force"):
        raise SwedgeError("--resume continues the run in OUT and --force replaces it: choose one")
    data_s, out_s = _fspath(data, "data"), _fspath(out, "out")
    known = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name not in _TRAIN_FIXED}
    unknown = [k for k in settings if k not in known]
    if unknown:
        import difflib

        hints = [f"'{k}'" + (f" (did you mean '{c[0]}'?)" if (c := difflib.get_close_matches(k, known, 1)) else "")
                 for k in unknown]
        raise SwedgeError(f"train: unknown setting {', '.join(hints)}; settings are {', '.join(known)}")
    defaults = TrainConfig(data="", out="")
    kwargs = {k: _train_setting(k, v, getattr(defaults, k)) for k, v in settings.items()}
    if method is not None and not isinstance(method, str):
        raise SwedgeError(f"method must be a method name like 'sfsc', got {method!r}")
    cfg = TrainConfig(data=data_s, out=out_s, method=method or defaults.method,
                      method_options=_method_options(options), **kwargs)
    check_config(cfg)  # every setting, the init file included, before the run folder is touched
    _writable(out_s, "--out", folder=True)
    check_run_folder(out_s, data_s)
    from swedge.training.trainer import train as _train

    with _one_writer(out_s):
        path = _train(cfg, progress=as_bool(progress, "progress"), resume=resume, overwrite=force)
    return TrainResult(checkpoint=Path(path), run=Path(out_s), config=cfg)


def _train_setting(name: str, value, default):
    """One TrainConfig setting, coerced like its `swedge train` flag parses it."""
    from swedge.training.config import parse_grad_clip

    if name == "widths":
        from swedge.nn.slimmable import check_widths

        try:
            return check_widths(as_widths(value, "widths") or ())  # None: "widths must not be empty"
        except ValueError as exc:
            raise SwedgeError(str(exc)) from None
    if name == "input_size":
        return _size(value)
    if name == "decay_epochs":
        return () if value in (None, "", (), []) else tuple(_numbers(value, name, float, "40,70 or [40, 70]") or ())
    if name == "grad_clip" and isinstance(value, str):
        return parse_grad_clip(value)
    if name == "init":
        return "" if value in (None, "") else _fspath(value, "init")
    if isinstance(default, bool):
        return as_bool(value, name)
    if isinstance(default, int):
        return as_int(value, name)
    if isinstance(default, float):
        return as_float(value, name)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise SwedgeError(f"{name} must be a str, got {value!r}")
        return value
    return value


def _size(value) -> tuple[int, int]:
    try:
        if isinstance(value, str):
            h, w = (int(v) for v in value.lower().split("x"))
        else:
            h, w = (_number(v, int) for v in value)
        if h > 0 and w > 0:
            return h, w
    except (TypeError, ValueError):
        pass
    raise SwedgeError(f"input_size must be HxW like '128x64' or (128, 64), got {value!r}")


def _method_options(options) -> list[str]:
    if options is None:
        return []
    if isinstance(options, dict):
        return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()]
    items = [options] if isinstance(options, str) else list(options) if isinstance(options, (list, tuple)) else None
    if items is None or not all(isinstance(o, str) for o in items):
        raise SwedgeError(f"options must be {{'key': value}}, 'key=value' or a list of 'key=value', got {options!r}")
    return items


def check_run_folder(out: str, data: str) -> None:
    """--out is absent, empty or a run (--force replaces a run's files, never adds a run to a foreign folder)."""
    from swedge.training.trainer import RUN_FILES

    out_path, data_path = Path(out).resolve(), Path(data).resolve()
    if out_path == data_path or out_path in data_path.parents:
        raise SwedgeError(f"--out {out} holds the training data --data {data}: choose a run folder outside it")
    if out_path.is_dir() and any(out_path.iterdir()) and not any((out_path / f).exists() for f in RUN_FILES):
        raise SwedgeError(f"--out {out} already exists and is not a training run (it holds none of "
                          f"{', '.join(RUN_FILES)}): choose another --out, or empty it yourself")


def _one_writer(out: str):
    """The run folder's lock; under torchrun only rank 0 holds it (the other ranks write nothing)."""
    import contextlib

    from swedge.outputs import exclusive

    return exclusive(Path(out), "swedge train") if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------- export


def export_plan(checkpoint, out, *, formats=None, widths=None, precisions=None, calib=None, calib_size=CALIB_SIZE,
                probe=None, probe_size=PROBE_SIZE, max_batch=MAX_BATCH, force: bool = False,
                int8_repair: bool = False):
    """The :class:`swedge.exporters.bundle.ExportPlan` of :func:`export`'s arguments, defaults filled in."""
    from swedge.exporters.bundle import ExportPlan
    from swedge.exporters.formats import FORMATS

    calib_p = as_path(calib, "calib", optional=True)
    return ExportPlan(checkpoint=as_path(checkpoint, "checkpoint"), out=as_path(out, "out"),
                      formats=as_names(formats, "formats") or list(FORMATS),
                      widths=as_widths(widths, "widths"),
                      precisions=as_names(precisions, "precisions") or default_precisions(calib_p),
                      calib=calib_p, calib_size=as_int(calib_size, "calib_size"),
                      probe=as_path(probe, "probe", optional=True), probe_size=as_int(probe_size, "probe_size"),
                      max_batch=as_int(max_batch, "max_batch"), force=as_bool(force, "force"),
                      int8_repair=as_bool(int8_repair, "int8_repair"))


def export(checkpoint, out, *, formats=None, widths=None, precisions=None, calib=None, calib_size=CALIB_SIZE,
           probe=None, probe_size=PROBE_SIZE, max_batch=MAX_BATCH, force: bool = False, int8_repair: bool = False,
           json=None, progress: bool = True) -> "Bundle":
    """Export ``checkpoint`` into the bundle folder ``out``; returns the :class:`swedge.runtimes.manifest.Bundle`.

    ``formats``: default all of EXPORT_FORMATS; ``widths``: default every width of the checkpoint; ``precisions``:
    default :func:`default_precisions` (fp32, fp16, and int8 when ``calib`` is given); ``calib``: calibration
    images (a Market-1501 folder, an image folder or a preprocessed .npy); ``probe``: the Market-1501 folder
    whose test split becomes the probe set (default ``calib``). ``json``: also write the export summary there.
    Artifacts that failed or were skipped are in ``bundle.artifacts`` with their status and reason.
    """
    from swedge.exporters.bundle import export_bundle, plan_inputs
    from swedge.io import atomic_write_json
    from swedge.outputs import check_not_an_input
    from swedge.runtimes.manifest import Bundle

    plan = export_plan(checkpoint, out, formats=formats, widths=widths, precisions=precisions, calib=calib,
                       calib_size=calib_size, probe=probe, probe_size=probe_size, max_batch=max_batch, force=force,
                       int8_repair=int8_repair)
    json_p = as_path(json, "json", optional=True)
    _writable(json_p, "--json", folder=False)
    check_not_an_input(json_p, "--json", plan_inputs(plan))
    manifest = export_bundle(plan, progress=as_bool(progress, "progress"))
    if json_p is not None:
        atomic_write_json(json_p, {"bundle": os.fspath(out), "artifacts": manifest.to_dict()["artifacts"]})
    return Bundle(root=plan.out.resolve(), manifest=manifest)


# ------------------------------------------------------------------------------------------------- verify


def verify(bundle, *, runtimes=None, formats=None, baseline=None, thresholds=None,
           allow_weak_thresholds: bool = False, batch=VERIFY_BATCH, threads=None, json=None, junit=None, report=None,
           progress: bool = True) -> "VerifyReport":
    """Run every artifact of ``bundle`` on every runtime here (or only ``runtimes`` / ``formats``) and check its
    fidelity and compatibility; returns the :class:`swedge.runtimes.verify.VerifyReport` (``.passed``,
    ``.rows``, ``.table()``, ``.to_dict()``). Torch-free.

    ``thresholds``: a JSON file (or a :class:`swedge.runtimes.thresholds.Thresholds`) overriding the gate;
    ``baseline``: an older bundle whose gallery the new queries are checked against. ``json`` / ``junit`` /
    ``report`` (a folder: report.md, report.html, heat-map): also write them; the paths are in ``.outputs``.
    """
    from swedge.runtimes.report import write_json, write_junit, write_markdown
    from swedge.runtimes.thresholds import Thresholds
    from swedge.runtimes.verify import verify_bundle
    from swedge.runtimes.verify_cli import check_names

    root = _fspath(bundle, "bundle")
    batch, threads = as_int(batch, "batch"), None if threads is None else as_int(threads, "threads")
    if batch < 1 or (threads is not None and threads < 1):
        # Not an artifact's fault: without this check every artifact would fail and the report would blame them.
        raise SwedgeError(f"--batch and --threads must be >= 1, got {batch} and {threads}")
    runtimes, formats = as_names(runtimes, "runtimes"), as_names(formats, "formats")
    check_names(runtimes, formats)
    outputs = {"json": as_path(json, "json", optional=True), "junit": as_path(junit, "junit", optional=True),
               "report": as_path(report, "report", optional=True)}
    for key, path in outputs.items():
        _writable(path, f"--{key}", folder=key == "report")
    if not isinstance(thresholds, Thresholds):
        thresholds = Thresholds.load(_fspath_or_none(thresholds, "thresholds"),
                                     allow_weak=as_bool(allow_weak_thresholds, "allow_weak_thresholds"))
    result = verify_bundle(root, runtimes=runtimes, formats=formats, thresholds=thresholds,
                           baseline=_fspath_or_none(baseline, "baseline"), batch=batch, threads=threads,
                           progress=as_bool(progress, "progress"))
    if outputs["json"]:
        result.outputs["json"] = write_json(result, outputs["json"])
    if outputs["junit"]:
        result.outputs["junit"] = write_junit(result, outputs["junit"])
    if outputs["report"]:
        result.outputs["report"] = write_markdown(result, outputs["report"])
    return result


# -------------------------------------------------------------------------------------------------- bench


def plot_path(json=None, png=None) -> Path | None:
    """Where `swedge bench` draws its latency plot: ``png``, else beside ``json``, else nowhere."""
    if png is not None:
        return as_path(png, "png")
    json_p = as_path(json, "json", optional=True)
    return json_p.with_suffix(".png") if json_p is not None else None


def bench(bundle, *, batches=BENCH_BATCHES, iters=BENCH_ITERS, warmup=BENCH_WARMUP, threads=BENCH_THREADS,
          runtimes=None, formats=None, checkpoint=None, torch_baseline: bool = True, json=None, png=None,
          progress: bool = True) -> BenchReport:
    """Latency p50 / p90 of every artifact of ``bundle`` on every runtime here, at each of ``batches``, against
    the torch eager sub-model of the same width (``torch_baseline``; its checkpoint is the manifest's unless
    ``checkpoint`` is given). Returns a :class:`BenchReport` (``.table()``, ``.to_dict()``, ``.timings``).
    ``json``: also write the bench JSON there; ``png``: the latency plot (default: beside ``json``)."""
    from swedge.io import atomic_write_json
    from swedge.runtimes.bench import bench_bundle, save_plot
    from swedge.runtimes.host import host_record
    from swedge.runtimes.verify_cli import check_names

    root = _fspath(bundle, "bundle")
    try:
        batch_list = [_number(b, int) for b in _items(batches)]
    except (TypeError, ValueError):
        batch_list = []
    if not batch_list or min(batch_list) < 1:
        shown = ",".join(map(str, batches)) if isinstance(batches, (list, tuple)) else batches
        raise SwedgeError(f"--batches must be positive integers like 1,32, got '{shown}'")
    iters, warmup, threads = as_int(iters, "iters"), as_int(warmup, "warmup"), as_int(threads, "threads")
    if iters < 1 or warmup < 0 or threads < 1:
        raise SwedgeError(f"--iters and --threads must be >= 1 and --warmup >= 0, got {iters}, {threads} "
                          f"and {warmup}")
    runtimes, formats = as_names(runtimes, "runtimes"), as_names(formats, "formats")
    check_names(runtimes, formats)
    json_p, png_p = as_path(json, "json", optional=True), plot_path(json, png)
    _writable(json_p, "--json", folder=False)
    _writable(png_p, "--png", folder=False)
    timings = bench_bundle(root, batches=batch_list, warmup=warmup, iters=iters, threads=threads,
                           runtimes=runtimes, formats=formats, torch_baseline=as_bool(torch_baseline, "torch_baseline"),
                           checkpoint=_fspath_or_none(checkpoint, "checkpoint"),
                           progress=as_bool(progress, "progress"))
    result = BenchReport(bundle=root, timings=timings, host=host_record(), threads=threads, warmup=warmup,
                         iters=iters)
    if json_p is not None:
        atomic_write_json(json_p, result.to_dict())
    if png_p is not None:
        result.plot = save_plot(timings, png_p, batch=min(batch_list), host=result.host)
        result.plot_missing = "" if result.plot else "left out (matplotlib missing)"
    return result


# ---------------------------------------------------------------------------------------------- read back


def open_bundle(path) -> "Bundle":
    """A bundle folder, read and validated (:class:`swedge.runtimes.manifest.Bundle`: ``root``, ``manifest``,
    ``artifacts``, ``widths``; the manifest's records are :mod:`swedge.runtimes.manifest_types`); torch-free."""
    from swedge.runtimes.manifest import read_manifest

    return read_manifest(as_path(path, "path"))


def load_checkpoint(path, *, widths=None, arch: str | None = None) -> "Checkpoint":
    """A checkpoint written by :func:`train`, validated (:class:`swedge.checkpoint.Checkpoint`: ``model``,
    ``config``, ``preprocess``, ``meta``). ``widths`` / ``arch``: what the caller needs; a mismatch is an error."""
    from swedge.checkpoint import load_checkpoint as _load

    if arch is not None and not isinstance(arch, str):
        raise SwedgeError(f"arch must be an architecture name like 'resnet18', got {arch!r}")
    return _load(as_path(path, "path"), widths=as_widths(widths, "widths"), arch=arch)

