"""`swedge compare`: train methods x seeds on one data set, then one table of self-/cross-tests, heat-maps and
paired per-query tests (docs/design.md §4).

Layout under OUT:
    runs/<label>/seed<s>/   model.safetensors, train_log.jsonl (the trainer's), eval.json (ours)
    floor/<label>/perturb<k>/  the perturbation floor's retrainings (``--perturb-floor N``), laid out alike
    table.md, table.json    the summary (rebuilt from every requested run's eval.json on each call)
    heatmaps/<label>.png    mean cross-model mAP matrix over seeds

This module trains and evaluates; the summary is built in ``swedge.study.table``.

Perturbation floor (``perturb_floor=N``): the reference method is retrained N more times at seed 0 with its
label smoothing moved by k * FLOOR_PERTURBATION (k = 1..N), a change no result should depend on; the spread of
each cell's mAP over those runs and the seed-0 run is the floor every verdict must exceed. Every table names the
git commit, the command line and the data-generation seed (``provenance``).

Resume: eval.json is written atomically only after training and evaluation both finished, so it marks a
finished run; re-running the same command skips those and restarts any interrupted one. It also records the
settings that shape the result, and a re-run with different settings is refused rather than mixed in.

Lanes: each run is trained under its folder's lock (``swedge.outputs.exclusive``), so several `swedge compare`
processes on the same --out share the work (one per core or GPU lane): a run another one holds is skipped, one it
finished meanwhile is read; only a folder nobody holds and without eval.json counts as interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swedge.study.claims import claim_pairs
from swedge.study.table import build_table, cell_key, off_diagonal_mean, perturbation_floor, write_report
from swedge.errors import OutputBusyError, SwedgeError
from swedge.io import atomic_write_json
from swedge.outputs import exclusive
from swedge.study.mechanisms import summarise_log
from swedge.training import RESULT_NEUTRAL

# docs/design.md §4 table order; labels of option variants (e.g. sfsc-kernel=sfsc) sort right after their method.
METHOD_ORDER = ("independent", "unified", "bct", "bct-s", "asymmetric", "asymmetric-s", "sfsc-sum",
                "sfsc-projection-only", "sfsc-uncertainty-only", "sfsc")
RUN_FORMAT = "swedge-compare-run/1"
# TrainConfig fields a finished run need not share with the command reusing it: the result-neutral ones, the data
# folder (the study's own, its seed is in the provenance), and "init" (the path), replaced by "init_sha256" (the
# content): a moved file is the same start.
_NOT_FINGERPRINTED = (*RESULT_NEUTRAL, "data", "init")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
FLOOR_PERTURBATION = 1e-5  # added k times to the reference's label_smoothing for the k-th floor run
FLOOR_SEED = 0


@dataclass
class MethodSpec:
    """One row of the comparison: a registered method under a label, with its options."""

    label: str
    method: str
    options: list[str] = field(default_factory=list)


def parse_methods(text: str, opts: list[str] | None = None) -> list[MethodSpec]:
    """``"sfsc,sfsc-sum,sfsc-kernel=sfsc"`` + ``["sfsc-kernel:projection=kernel"]`` -> specs.

    ``LABEL=METHOD`` runs a registered method under another name, so option variants get their own rows.
    """
    specs: list[MethodSpec] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        label, _, method = item.partition("=")
        label, method = label.strip(), (method or label).strip()
        if not _LABEL.match(label):
            raise SwedgeError(f"method label '{label}' must be letters, digits, '.', '_', '+', '-'")
        if any(s.label == label for s in specs):
            raise SwedgeError(f"method '{label}' is listed twice")
        specs.append(MethodSpec(label, method))
    if not specs:
        raise SwedgeError("--methods is empty; give e.g. --methods sfsc,sfsc-sum")
    by_label = {s.label: s for s in specs}
    for opt in opts or ():
        label, sep, pair = opt.partition(":")
        if not sep or label not in by_label:
            raise SwedgeError(f"--opt '{opt}' must be LABEL:KEY=VALUE with LABEL one of {', '.join(by_label)}")
        by_label[label].options.append(pair)
    return specs


def validate_methods(specs: list[MethodSpec]) -> None:
    """Unknown methods or options fail here, before hours of training, not at run k of n."""
    from swedge.methods import METHODS

    for s in specs:
        cls = METHODS.get(s.method)
        if s.label != s.method and s.label in METHODS:
            raise SwedgeError(f"label '{s.label}' is itself a method; name the variant differently")
        cls.parse_options(s.options)


def ordered_labels(specs: list[MethodSpec]) -> list[str]:
    def key(item):
        i, s = item
        return (METHOD_ORDER.index(s.method) if s.method in METHOD_ORDER else len(METHOD_ORDER), s.label != s.method, i)

    return [s.label for _, s in sorted(enumerate(specs), key=key)]


def default_pairs(labels) -> list[tuple[str, str]]:
    """The paired tests the seed's claims read (sfsc vs sfsc-sum, each baseline and unified; the ladder steps
    vs sfsc-sum), for the methods that were run."""
    return claim_pairs(labels)


# ---------------------------------------------------------------- running


def run_dir(out, label: str, seed: int) -> Path:
    return Path(out) / "runs" / label / f"seed{seed}"


def floor_dir(out, label: str, k: int) -> Path:
    return Path(out) / "floor" / label / f"perturb{k}"


def floor_specs(spec: MethodSpec, n: int) -> list[MethodSpec]:
    """The N perturbed copies of the reference: label smoothing + k * FLOOR_PERTURBATION, k = 1..N."""
    from swedge.methods import METHODS

    cls = METHODS.get(spec.method)
    base = cls.parse_options(spec.options)
    if not hasattr(base, "label_smoothing"):
        raise SwedgeError(f"--perturb-floor: method '{spec.method}' has no label_smoothing option to perturb; "
                          "choose another --floor-method")
    out = []
    for k in range(1, n + 1):
        value = dataclasses.asdict(base)["label_smoothing"] + k * FLOOR_PERTURBATION
        opts = [o for o in spec.options if o.partition("=")[0].strip().replace("-", "_") != "label_smoothing"]
        out.append(MethodSpec(spec.label, spec.method, opts + [f"label_smoothing={value!r}"]))
    return out


def git_commit() -> str:
    """HEAD of the repository holding this package, or "unknown"."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = res.stdout.strip()
    return text if res.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", text) else "unknown"


def data_seed(data) -> int | str:
    """The generation seed recorded in the data folder's dataset.json, or "unknown"."""
    try:
        seed = json.loads((Path(data) / "dataset.json").read_text()).get("seed")
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return seed if isinstance(seed, int) else "unknown"


def provenance(data, command: str | None = None) -> dict:
    return {"git_commit": git_commit(), "command": command or shlex.join(["swedge", *sys.argv[1:]]),
            "data": str(data), "data_seed": data_seed(data)}


def fingerprint(spec: MethodSpec, seed: int, train: dict) -> dict:
    """What a finished run must share with the command that would reuse it. ``train`` may carry
    ``init_sha256`` (run_compare adds it); else it is read from ``train["init"]``."""
    if "init_sha256" not in train:
        from swedge.nn.pretrained import file_sha256

        train = {**train, "init_sha256": file_sha256(Path(train["init"])) if train.get("init") else ""}
    kept = {k: v for k, v in sorted(train.items()) if k not in _NOT_FINGERPRINTED}
    return json.loads(json.dumps({"method": spec.method, "options": list(spec.options), "seed": seed, **kept}))


def load_run(path) -> dict:
    result = json.loads(Path(path).read_text())
    if result.get("format") != RUN_FORMAT:
        raise SwedgeError(f"{path} is not a `swedge compare` run result (format {result.get('format')!r})")
    return result


def needed_cells(widths) -> list[tuple[float, float]]:
    """(query width, gallery width) cells whose per-query AP is kept: self-tests and cross-tests to the full."""
    top = widths[-1]
    return [(w, w) for w in widths] + [(w, top) for w in widths[:-1]]


def evaluate_run(checkpoint, data, *, batch_size: int = 128, workers: int = 2, progress: bool = False,
                 device: str = "cpu") -> dict:
    """The 4x4 matrix like `swedge eval`, keeping per-query AP for :func:`needed_cells`."""
    from swedge.checkpoint import load_checkpoint
    from swedge.evaluate import checkpoint_features
    from swedge.metrics.cross import cross_matrix

    ckpt = load_checkpoint(checkpoint)
    widths, features, splits, ids = checkpoint_features(
        ckpt, data, batch_size=batch_size, workers=workers, progress=progress, device=device)
    matrix, grid = cross_matrix(features, *ids, per_query=True)
    # JSON has no NaN: a skipped query (no valid positive) is stored as null.
    per_query = {cell_key(wq, wg): [None if np.isnan(v) else round(float(v), 6) for v in grid[wq, wg].ap_per_query]
                 for wq, wg in needed_cells(widths)}
    valid = grid[widths[-1], widths[-1]].num_valid_queries
    # Identifies the query list, so paired tests only ever pair the same queries.
    names = "\n".join(f"{Path(r.path).name}|{r.pid}|{r.camid}" for r in splits.query)
    return {"widths": widths, "map": matrix.map.tolist(), "rank1": matrix.rank1.tolist(),
            "num_queries": len(splits.query),
            "num_valid_queries": valid, "queries_sha256": hashlib.sha256(names.encode()).hexdigest(),
            "per_query_ap": per_query, "checkpoint_sha256": ckpt.file_sha256}


def _load_finished(folder: Path, fp: dict, later_fields: dict) -> dict | None:
    """The run's eval.json if it has finished (None if not), refused if made with other settings than ``fp``."""
    path = folder / "eval.json"
    if not path.is_file():
        return None
    done = load_run(path)
    later = {k: v for k, v in later_fields.items() if k in fp}  # fields older runs did not record
    old = {**later, **(done.get("fingerprint") or {})}
    if old != fp:
        diff = "; ".join(f"{k}: {old.get(k)!r} there, {fp.get(k)!r} now"
                         for k in sorted(set(old) | set(fp)) if old.get(k) != fp.get(k))
        raise SwedgeError(f"{path} was made with other settings than this command ({diff}); use a fresh "
                          "--out, or delete that run folder to retrain it")
    return done


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


MIN_RESAMPLES = 100


def run_compare(data, out, specs: list[MethodSpec], seeds: list[int], train: dict, *,
                pairs: list[tuple[str, str]] | None = None, resamples: int = 10_000, progress: bool = True,
                train_missing: bool = True, echo=print, perturb_floor: int = 0, floor_method: str | None = None,
                command: str | None = None) -> dict:
    """Train and evaluate every (method, seed) not done yet, then write table.md/json and heat-maps.

    ``train``: TrainConfig fields shared by every run (not data/out/method/method_options/seed).
    ``pairs``: (A, B) labels for the paired tests; None = :func:`default_pairs`. ``train_missing=False``
    tabulates the finished runs only (a method without any is left out; pairs then need both methods).
    ``perturb_floor``: N perturbed retrainings of ``floor_method`` (default sfsc-sum if run, else the first
    method) at seed 0 give the floor; ``command``: the command line the table names (default sys.argv).
    Returns the table dict.
    """
    from swedge.training.config import LATER_FIELDS, TrainConfig, check_config
    from swedge.training.trainer import train as train_one

    if resamples < MIN_RESAMPLES:
        raise SwedgeError(f"--resamples must be >= {MIN_RESAMPLES} for a paired test's interval, got {resamples}")
    check_config(TrainConfig(data=str(data), out=str(out), **train))  # before hours of training, not after
    init_sha256 = ""
    if train.get("init"):
        from swedge.nn.pretrained import file_sha256

        init_sha256 = file_sha256(Path(train["init"]))
    out = Path(out)
    validate_methods(specs)
    labels = [s.label for s in specs]
    pairs = default_pairs(labels) if pairs is None else list(pairs)
    for a, b in pairs:
        for x in (a, b):
            if x not in labels:
                raise SwedgeError(f"--paired names '{x}', which is not among --methods ({', '.join(labels)})")

    if perturb_floor < 0:
        raise SwedgeError(f"--perturb-floor must be >= 0 (0 = no floor), got {perturb_floor}")
    reference = floor_method or ("sfsc-sum" if "sfsc-sum" in labels else labels[0])
    if reference not in labels:
        raise SwedgeError(f"--floor-method '{reference}' is not among --methods ({', '.join(labels)})")
    floor_jobs = floor_specs(next(s for s in specs if s.label == reference), perturb_floor) if perturb_floor else []

    specs = [next(s for s in specs if s.label == lab) for lab in ordered_labels(specs)]
    # Seed-major order: stopping early still leaves every method at the first seeds, i.e. a fair table; the
    # floor's retrainings come last.
    # (spec, seed, folder, name): the name tells a floor retraining from the seed-0 run it perturbs
    jobs = [(s, seed, run_dir(out, s.label, seed), f"{s.label} seed {seed}") for seed in seeds for s in specs]
    jobs += [(s, FLOOR_SEED, floor_dir(out, s.label, k), f"{s.label} floor run {k} (seed {FLOOR_SEED}, perturbed)")
             for k, s in enumerate(floor_jobs, 1)]
    results: dict[Path, dict] = {}
    todo = []
    for spec, seed, folder, name in jobs:
        fp = fingerprint(spec, seed, {**train, "init_sha256": init_sha256})
        done = _load_finished(folder, fp, LATER_FIELDS)
        if done is not None:
            results[folder] = done
        else:
            todo.append((spec, seed, fp, folder, name))
    floor_note = f" + {len(floor_jobs)} floor runs of {reference}" if floor_jobs else ""
    echo(f"compare: {len(jobs)} runs ({len(specs)} methods x {len(seeds)} seeds{floor_note}): "
         f"{len(jobs) - len(todo)} already done, "
         + (f"{len(todo)} to train -> {out}" if train_missing else f"{len(todo)} not trained (--table-only) in {out}"))

    if not train_missing:
        if todo:
            echo("  missing: " + ", ".join(name for *_, name in todo))
        todo = []
    durations: list[float] = []
    elsewhere = []  # the todo entries another compare was training
    for k, (spec, seed, fp, folder, name) in enumerate(todo, 1):
        eta = f", ETA {_fmt_duration(np.mean(durations) * (len(todo) - k + 1))}" if durations else ""
        echo(f"[{k}/{len(todo)}] training {name} -> {folder}{eta}")
        with contextlib.ExitStack() as claim:
            # One trainer per run folder: two `swedge compare`s on the same --out (lanes sharing a CPU or GPU)
            # each train what the other has not claimed, and never remove a run the other is training.
            try:
                claim.enter_context(exclusive(folder, "swedge compare"))
            except OutputBusyError as busy:
                echo(f"  skipped: another process is training it ({busy.holder})")
                elsewhere.append((spec, seed, fp, folder, name))
                continue
            done = _load_finished(folder, fp, LATER_FIELDS)  # another compare may have finished it meanwhile
            if done is not None:
                results[folder] = done
                echo("  skipped: finished meanwhile by another swedge compare")
                continue
            if folder.exists():
                # No eval.json and nobody holds its lock: an interrupted run. Seeded training restarts from
                # scratch to the same result.
                echo(f"  restarting an interrupted run: removing {folder}")
                shutil.rmtree(folder)
            t0 = time.time()
            cfg = TrainConfig(data=str(data), out=str(folder), method=spec.method, method_options=list(spec.options),
                              seed=seed, **train)
            ckpt = train_one(cfg, progress=progress)
            t1 = time.time()
            ev = evaluate_run(ckpt, data, workers=cfg.workers, progress=progress, device=cfg.device)
            t2 = time.time()
            result = {"format": RUN_FORMAT, "label": spec.label, "method": spec.method, "options": list(spec.options),
                      "seed": seed, "fingerprint": fp, "checkpoint": str(ckpt), **ev,
                      "train_seconds": round(t1 - t0, 2), "eval_seconds": round(t2 - t1, 2)}
            atomic_write_json(folder / "eval.json", result)
            results[folder] = result
            durations.append(t2 - t0)
            m = np.asarray(ev["map"])
            echo(f"  done in {_fmt_duration(t2 - t0)}: self-test mAP at full width {m[-1, -1]:.2f}, "
                 f"mean off-diagonal {off_diagonal_mean(m):.2f}")

    unfinished = []
    for _, _, fp, folder, name in elsewhere:  # the other lane may have finished them by now
        done = _load_finished(folder, fp, LATER_FIELDS)
        if done is not None:
            results[folder] = done
        else:
            unfinished.append(name)
    if unfinished:
        echo(f"{len(unfinished)} run(s) being trained by another swedge compare, not in this table: "
             f"{', '.join(unfinished)}; when they finish, rerun with --table-only")

    runs = []
    for s in specs:
        for seed in seeds:
            r = results.get(run_dir(out, s.label, seed))
            if r is not None:  # K/S and conflict shares from the train log, read afresh for every table
                runs.append({**r, "mechanisms": summarise_log(run_dir(out, s.label, seed) / "train_log.jsonl",
                                                              r["widths"])})
    if not runs:
        raise SwedgeError(f"no finished runs under {out} for these methods and seeds: nothing to tabulate")
    if not train_missing or unfinished:  # rows with no finished run (not trained, or another lane's) are left out
        done = {r["label"] for r in runs}
        pairs = [(a, b) for a, b in pairs if a in done and b in done]  # pairs was resolved at the start
    floor = None
    base = results.get(run_dir(out, reference, FLOOR_SEED))
    perturbed = [results[f] for _, _, f, _ in jobs[len(seeds) * len(specs):] if f in results]
    if floor_jobs and len([base] + perturbed if base else perturbed) >= 2:
        floor = perturbation_floor(([base] if base else []) + perturbed, reference,
                                   f"label_smoothing + k x {FLOOR_PERTURBATION:g}, k = 1..{len(floor_jobs)}, "
                                   f"seed {FLOOR_SEED}")
    table = build_table(runs, pairs=pairs, resamples=resamples, floor=floor, provenance=provenance(data, command))
    write_report(table, out)
    return table
