"""Cost of one training step: SFSC (4 widths, projection + merge) against a full-width-only step.

Measured side by side in one run, on one fixed PK batch (P ids x K=4 images, labels out of 751 classes), each
step = zero_grad + method.train_step (forward, loss, backward per width) + clip_grad_norm_ + Adam step, what
the trainer does per batch on the CPU (less data loading and the LR schedule):

    full         sfsc-sum method at width 1.0 only (CE + triplet): the baseline
    sfsc-sum     4 widths, CE + triplet through the shared classifier, gradients summed by backward
    sfsc         4 widths, default options (evidential sub-widths, vector projection, mean/sum merge)
    sfsc-tensor  sfsc with projection=tensor
    sfsc-kernel  sfsc with projection=kernel
    sfsc-noproj  sfsc with projection=none (diagnostic: sfsc's losses and gradient dicts, plain merge)
    plain-widths four ordinary models, one per width (each width's slice of the same init, no slicing, no
                 switchable layers), CE + triplet each: what the four widths' convolutions cost on this CPU
                 without any SFSC or slimmable machinery, the floor of a 4-width step (diagnostic; its
                 optimizer steps 1.9x the parameters, so compare forward + backward: "fwd+bwd x full")

Timing: every configuration has its own model (same init) and Adam optimiser in one process, with
torch.set_num_threads(--threads). After --warmup untimed steps each, ``--repeats`` blocks run; in a block each
configuration runs ``--steps`` consecutive timed steps, and the configuration order rotates from block to block
so load from other processes spreads over all of them. Reported: median step time over all timed steps, the
median of per-block ratios to ``full`` (paired: robust to slow drifts in machine load), and inside the sfsc
steps the time of ``project_conflicts`` + ``ProjectionResult.merged`` / ``merge`` (wrapped at benchmark time,
the module is not edited) and of everything after the last width's backward (projection + merge + .grad
write-back), as a share of the whole step.

On a shared machine every step also records its threads' run-queue wait (/proc/self/task/*/schedstat: time
runnable but not running because other processes held the cores). Steps whose wait is <= ``--quiet-wait`` of
their wall time are "quiet"; medians over quiet steps are reported next to the all-step medians and, when each
configuration has ``--min-quiet`` of them, are what the targets are judged on. Contention hurts unevenly: two
OpenMP threads with one core taken stall at every barrier, so the many small ops of the sub-widths and of the
projection slow down far more than the full width's big convolutions, and all-step ratios then overstate SFSC.

Allocator: the timing runs with ``swedge.training.host_memory.retain_freed_memory()``, as the trainer on CPU
(``--no-retain-memory`` measures glibc's defaults, under which every SFSC step page-faults its per-width
gradient sets back in).

Memory: each configuration runs again in its own subprocess (so allocations of one never mask another's),
with glibc's malloc told to serve every block >= 128 KiB by mmap (MALLOC_MMAP_THRESHOLD_), so that freed
tensors leave the resident set at once and RSS follows live tensor memory. After setup the child records
VmRSS, resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``) and runs one step: the peak
increase over setup includes Adam's lazily created state. It then drops the gradients, records VmRSS again,
resets the peak, and runs ``--mem-steps`` more steps: the peak increase over the reset's mark (VmHWM read right
after each reset, never an earlier RSS read, which glibc's trimming can leave above it) is the step's
transient memory (gradients, per-width gradient dicts, autograd graph), the figure "one width's graph alive at
a time" is about. Without a resettable peak counter it falls back to ru_maxrss (one figure over setup).

On a shared machine, also mind OpenMP's wait policy: by default idle OpenMP threads spin, and with another
process on one of the two cores every parallel region waits for a descheduled sibling thread. Measured here
under such load, that made a full-width step ~5x and SFSC's projection + merge ~50x slower than with
OMP_WAIT_POLICY=PASSIVE (``--omp-wait-policy passive`` sets it and re-executes), which gives stable figures.

    PYTHONPATH=. python benchmarks/bench_step.py                      # ResNet-18, 128x64, batch 32
    PYTHONPATH=. python benchmarks/bench_step.py --omp-wait-policy passive   # the same, stable under load
    PYTHONPATH=. python benchmarks/bench_step.py --steps 2 --repeats 3 --configs full,sfsc
    PYTHONPATH=. python benchmarks/bench_step.py --channels-last --no-memory   # NHWC, as train --channels-last
    PYTHONPATH=. python benchmarks/bench_step.py --quick --out /tmp/step.json   # smoke test, seconds

Writes benchmarks/results/step.json. Targets (the issue): sfsc step <= 2.0x full (FLOP sum of the four widths
1.875x), projection + merge <= 10 % of the sfsc step, sfsc transient peak memory <= 1.5x full.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

import swedge.methods.projection as projection_mod  # noqa: E402
import swedge.methods.sfsc as sfsc_mod  # noqa: E402
from swedge.training.contention import run_queue_wait  # noqa: E402
from swedge.training.host_memory import retain_freed_memory  # noqa: E402
from swedge.methods import METHODS  # noqa: E402
from swedge.methods.base import StepContext  # noqa: E402
from swedge.nn.model import ModelConfig, build_model  # noqa: E402
from swedge.nn.slicing import slice_model  # noqa: E402
from swedge.nn.slimmable import DEFAULT_WIDTHS  # noqa: E402

TARGET_TIME_RATIO = 2.0
TARGET_PROJECTION_SHARE = 0.10
TARGET_MEMORY_RATIO = 1.5
NUM_CLASSES = 751
IMAGES_PER_ID = 4
GRAD_CLIP = 10.0  # the trainer's default
LR, WEIGHT_DECAY = 3e-3, 5e-4  # the trainer's defaults
MMAP_THRESHOLD = 128 * 1024

ALL_WIDTHS = tuple(sorted(DEFAULT_WIDTHS, reverse=True))
# name -> (method, options, widths)
CONFIGS = {
    "full": ("sfsc-sum", [], (1.0,)),
    "sfsc-sum": ("sfsc-sum", [], ALL_WIDTHS),
    "sfsc": ("sfsc", [], ALL_WIDTHS),
    "sfsc-tensor": ("sfsc", ["projection=tensor"], ALL_WIDTHS),
    "sfsc-kernel": ("sfsc", ["projection=kernel"], ALL_WIDTHS),
    "sfsc-noproj": ("sfsc", ["projection=none"], ALL_WIDTHS),
    "plain-widths": ("sfsc-sum", [], ALL_WIDTHS),  # four ordinary models (see PlainWidths): the kernels' floor
}
PLAIN = "plain-widths"
BASELINE = "full"


# ----------------------------------------------------------------------------------------------- probes
@dataclass
class StepRecord:
    """Wall-clock pieces of one step (seconds), plus what the scheduler says about it."""

    total: float = 0.0
    train_step: float = 0.0
    forward: float = 0.0
    backward: float = 0.0
    after_last_backward: float = 0.0  # projection + merge + write-back (+ the last width's grad dict)
    project: float = 0.0  # project_conflicts(...)
    merge: float = 0.0  # ProjectionResult.merged() or merge(...)
    optimizer: float = 0.0  # clip_grad_norm_ + Adam step
    cpu: float = 0.0  # process CPU time (all threads) during the step
    wait: float = 0.0  # run-queue wait of this process's threads during the step (other load), -1 if unknown
    faults: int = 0  # minor page faults during the step (fresh memory being touched)
    last_backward_end: float = 0.0

    KEYS = ("total", "train_step", "forward", "backward", "after_last_backward", "project", "merge", "optimizer",
            "cpu", "wait", "faults")

    @property
    def wait_share(self) -> float:
        """Run-queue wait summed over threads / wall time: 0 on an idle machine."""
        return self.wait / self.total if self.wait >= 0 and self.total > 0 else float("nan")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.KEYS}


class _Probe:
    """Routes the timings of the wrapped projection functions to the step being measured."""

    record: StepRecord | None = None


PROBE = _Probe()


def _timed(fn, slot):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if PROBE.record is not None:
                setattr(PROBE.record, slot, getattr(PROBE.record, slot) + time.perf_counter() - start)
    wrapper.__wrapped__ = fn
    return wrapper


@contextlib.contextmanager
def instrumented():
    """Wrap sfsc's projection entry points for the duration (restored afterwards; the modules are not edited)."""
    saved = (sfsc_mod.project_conflicts, sfsc_mod.merge, projection_mod.ProjectionResult.merged)
    sfsc_mod.project_conflicts = _timed(saved[0], "project")
    sfsc_mod.merge = _timed(saved[1], "merge")
    projection_mod.ProjectionResult.merged = _timed(saved[2], "merge")
    try:
        yield
    finally:
        sfsc_mod.project_conflicts, sfsc_mod.merge, projection_mod.ProjectionResult.merged = saved


# ------------------------------------------------------------------------------------------------ bench
@dataclass
class Bench:
    """One configuration: its own model, optimiser, method and the fixed batch."""

    name: str
    model: torch.nn.Module
    method: object
    widths: tuple[float, ...]
    optimizer: torch.optim.Optimizer
    params: list
    images: torch.Tensor
    labels: torch.Tensor
    step_index: int = 0
    records: list[StepRecord] = field(default_factory=list)

    def step(self, total_steps: int = 1000) -> StepRecord:
        rec = StepRecord()
        model = self.model

        def forward(x):
            start = time.perf_counter()
            out = model.forward_train(x)
            rec.forward += time.perf_counter() - start
            return out

        def backward(loss):
            start = time.perf_counter()
            loss.backward()
            rec.last_backward_end = time.perf_counter()
            rec.backward += rec.last_backward_end - start

        ctx = StepContext(self.step_index, total_steps, 0, self.widths, 0, forward, backward)
        PROBE.record = rec
        try:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            w0, c0 = run_queue_wait(), time.process_time()
            t0 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            self.method.train_step(model, self.images, self.labels, ctx)
            t1 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(self.params, GRAD_CLIP)
            self.optimizer.step()
            t2 = time.perf_counter()
            c1, w1 = time.process_time(), run_queue_wait()
            rec.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        finally:
            PROBE.record = None
        rec.cpu, rec.wait = c1 - c0, (w1 - w0 if w0 >= 0 and w1 >= 0 else -1.0)
        rec.total, rec.train_step, rec.optimizer = t2 - t0, t1 - t0, t2 - t1
        rec.after_last_backward = t1 - rec.last_backward_end
        self.step_index += 1
        return rec


def make_batch(batch: int, input_hw: tuple[int, int], seed: int = 0):
    if batch % IMAGES_PER_ID:
        raise SystemExit(f"--batch must be a multiple of K={IMAGES_PER_ID} (PK sampling), got {batch}")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randperm(NUM_CLASSES, generator=g)[: batch // IMAGES_PER_ID]
    labels = ids.repeat_interleave(IMAGES_PER_ID)
    images = torch.randn(batch, 3, *input_hw, generator=g)
    return images, labels


class PlainWidths(torch.nn.Module):
    """One ordinary nn.Module per width (``slice_model`` copies of one switchable init, each with its own copy of
    the classifier), behind the interface the methods use: set_width + forward_train."""

    def __init__(self, switchable: torch.nn.Module):
        super().__init__()
        self.widths = switchable.widths
        self.members = torch.nn.ModuleList(slice_model(switchable, w) for w in self.widths)
        self.heads = torch.nn.ModuleList(copy.deepcopy(switchable.classifier) for _ in self.widths)
        self.width = max(self.widths)

    def set_width(self, width: float) -> None:
        self.width = width

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        i = self.widths.index(self.width)
        feat = self.members[i].features(x)
        emb = self.members[i].neck_bn(feat)
        return {"feat": feat, "embedding": emb, "logits": self.heads[i](emb)}


def build_bench(name: str, arch: str, images, labels, seed: int = 0, channels_last: bool = False) -> Bench:
    method_name, opts, widths = CONFIGS[name]
    cls = METHODS.get(method_name)
    method = cls(cls.parse_options(opts))
    torch.manual_seed(seed)  # every configuration starts from the same weights
    model = build_model(ModelConfig(arch, DEFAULT_WIDTHS, 256, NUM_CLASSES, extra=method.model_extra())).train()
    if name == PLAIN:
        model = PlainWidths(model).train()
    if channels_last:  # as the trainer's --channels-last: weights and every batch in NHWC
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=LR, weight_decay=WEIGHT_DECAY)
    return Bench(name, model, method, widths, optimizer, params, images, labels)


def flop_ratio(arch: str, input_hw: tuple[int, int]) -> dict:
    """Forward FLOPs per width (batch 1, torch's FLOP counter) and the sum over the widths / the full width."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(ModelConfig(arch, DEFAULT_WIDTHS, 256, NUM_CLASSES)).eval()
    x = torch.randn(1, 3, *input_hw)
    flops = {}
    with torch.no_grad():
        for w in ALL_WIDTHS:
            model.set_width(w)
            counter = FlopCounterMode(display=False)
            with counter:
                model.forward_train(x)
            flops[str(w)] = counter.get_total_flops()
    full = flops[str(1.0)]
    return {"forward_flops_per_image": flops, "sum_over_full": sum(flops.values()) / full if full else None}


# ----------------------------------------------------------------------------------------------- timing
def _median(xs):
    return statistics.median(xs) if xs else None


def _summary(recs: list[StepRecord]) -> dict:
    return {
        "n": len(recs),
        "median_s": {k: _median([x.as_dict()[k] for x in recs]) for k in StepRecord.KEYS} if recs else None,
        "after_last_backward_share": _median([x.after_last_backward / x.total for x in recs]),
        "projection_merge_share": _median([(x.project + x.merge) / x.total for x in recs]),
    }


def run_timing(args, names: list[str], images, labels) -> dict:
    benches = [build_bench(n, args.arch, images, labels, channels_last=args.channels_last) for n in names]
    with instrumented():
        for _ in range(args.warmup):
            for b in benches:
                b.step()
        gc.collect()
        blocks = []  # per block: name -> median step time of that block
        for r in range(args.repeats):
            order = benches[r % len(benches):] + benches[:r % len(benches)]
            block, waits = {}, []
            for b in order:
                recs = [b.step() for _ in range(args.steps)]
                b.records.extend(recs)
                block[b.name] = _median([x.total for x in recs])
                waits += [x.wait_share for x in recs]
            blocks.append(block)
            if args.verbose:
                print(f"  block {r + 1}/{args.repeats} (run-queue wait {100 * max(waits):.0f} % max): "
                      + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in block.items()), flush=True)
    out = {}
    for b in benches:
        recs = b.records
        quiet = [x for x in recs if x.wait_share <= args.quiet_wait]
        out[b.name] = {
            "method": CONFIGS[b.name][0], "options": CONFIGS[b.name][1], "widths": list(b.widths),
            **_summary(recs),
            "min_s": min(x.total for x in recs),
            "quiet": _summary(quiet),
            "steps": [x.as_dict() for x in recs],
        }
    if BASELINE in out:
        base = out[BASELINE]
        for name, res in out.items():
            ratios = [blk[name] / blk[BASELINE] for blk in blocks]
            res["ratio_to_full_paired"] = _median(ratios)
            res["ratio_to_full_paired_all"] = ratios
            res["ratio_to_full_of_medians"] = res["median_s"]["total"] / base["median_s"]["total"]
            res["ratio_to_full_of_mins"] = res["min_s"] / base["min_s"]
            enough = min(res["quiet"]["n"], base["quiet"]["n"]) >= args.min_quiet
            res["ratio_to_full_quiet"] = (res["quiet"]["median_s"]["total"] / base["quiet"]["median_s"]["total"]
                                          if enough else None)
            # forward + losses + backward (+ projection/merge): train_step, without zero_grad/clip/Adam
            res["train_step_ratio_to_full"] = (_pick(res, args.min_quiet)[1]["median_s"]["train_step"]
                                               / _pick(base, args.min_quiet)[1]["median_s"]["train_step"])
    return out


# ----------------------------------------------------------------------------------------------- memory
def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> int | None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); the reset mark in KiB, or None if it did not work.

    The mark, not an RSS read before the reset, is the baseline: RSS can shrink between the two reads (glibc trims,
    the allocator returns pages), and VmHWM only grows from the mark until the next reset."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm if hwm is not None and rss is not None and hwm <= rss + 1024 else None


def memory_child(args) -> dict:
    """Runs in its own process: peak RSS of one configuration's steps (see the module doc)."""
    torch.set_num_threads(args.threads)
    images, labels = make_batch(args.batch, args.input_hw)
    bench = build_bench(args.memory_child, args.arch, images, labels, channels_last=args.channels_last)
    param_bytes = sum(p.numel() * p.element_size() for p in bench.params)
    gc.collect()
    rss_setup = _status_kib("VmRSS")
    maxrss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    setup_mark = _reset_peak()
    resettable = setup_mark is not None
    bench.step()  # first step: creates Adam's state too
    first_peak = _status_kib("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(max(0, args.mem_warmup - 1)):
        bench.step()
    bench.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    rss_steady = _status_kib("VmRSS")
    steady_mark = _reset_peak() if resettable else None
    steady_peak = None
    if steady_mark is not None:
        for _ in range(args.mem_steps):
            bench.step()
            bench.optimizer.zero_grad(set_to_none=True)  # as the next step would, before its forward
        steady_peak = _status_kib("VmHWM")
    maxrss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mib = 1 / 1024
    return {
        "name": args.memory_child, "peak_counter": "VmHWM (reset via clear_refs)" if resettable else "ru_maxrss",
        "param_mib": param_bytes / 2**20,
        "rss_setup_mib": rss_setup * mib,
        "first_step_peak_over_setup_mib": (first_peak - setup_mark) * mib if resettable
        else (first_peak - maxrss_setup) * mib,
        "rss_steady_mib": rss_steady * mib,
        "step_peak_over_steady_mib": (steady_peak - steady_mark) * mib if steady_peak is not None else None,
        "ru_maxrss_increase_over_setup_mib": (maxrss_end - maxrss_setup) * mib,
    }


def run_memory(args, names: list[str]) -> dict:
    out = {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), OMP_NUM_THREADS=str(args.threads))
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", name, "--arch", args.arch,
               "--input", f"{args.input_hw[0]}x{args.input_hw[1]}", "--batch", str(args.batch),
               "--threads", str(args.threads), "--mem-steps", str(args.mem_steps),
               "--mem-warmup", str(args.mem_warmup)] + (["--channels-last"] if args.channels_last else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"memory child {name} failed:\n{proc.stderr}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        if args.verbose:
            r = out[name]
            print(f"  memory {name}: step peak {r['step_peak_over_steady_mib']:.0f} MiB over steady, first step "
                  f"{r['first_step_peak_over_setup_mib']:.0f} MiB over setup", flush=True)
    key = "step_peak_over_steady_mib"
    if BASELINE in out:
        for name, r in out.items():
            base = out[BASELINE]
            if r[key] is not None and base[key]:
                r["step_peak_ratio_to_full"] = r[key] / base[key]
            r["first_step_peak_ratio_to_full"] = r["first_step_peak_over_setup_mib"] / \
                base["first_step_peak_over_setup_mib"]
    return out


# ------------------------------------------------------------------------------------------------- main
def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input needs HxW, e.g. 128x64, got {text!r}") from None
    return h, w


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--input", dest="input_hw", type=_parse_hw, default=(128, 64), help="HxW (default 128x64)")
    ap.add_argument("--batch", type=int, default=32, help=f"images per step, P ids x K={IMAGES_PER_ID}")
    ap.add_argument("--channels-last", action="store_true",
                    help="every configuration in NHWC memory format (the trainer's --channels-last)")
    ap.add_argument("--steps", type=int, default=1, help="consecutive timed steps per configuration per block")
    ap.add_argument("--repeats", type=int, default=8, help="blocks; the configuration order rotates per block")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration before timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omp-wait-policy", choices=("inherit", "passive", "active"), default="inherit",
                    help="OMP_WAIT_POLICY for this run (re-executes the script with it set): 'passive' makes idle "
                         "OpenMP threads sleep instead of spin, which keeps timings sane when other processes share "
                         "the cores; 'inherit' (default) keeps the environment's, as training does")
    ap.add_argument("--quiet-wait", type=float, default=0.05,
                    help="a step is 'quiet' if its threads' run-queue wait is <= this share of its wall time")
    ap.add_argument("--min-quiet", type=int, default=3, help="quiet steps per config needed for the quiet figures")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list out of {', '.join(CONFIGS)}")
    ap.add_argument("--memory-configs", default=None, help="configurations measured for memory (default: --configs)")
    ap.add_argument("--mem-steps", type=int, default=2)
    ap.add_argument("--mem-warmup", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-retain-memory", dest="retain_memory", action="store_false",
                    help="leave glibc's malloc at its defaults for the timing (the trainer keeps freed memory on "
                         "CPU, see swedge/training/host_memory.py; without it SFSC steps page-fault their gradients back in)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 32x16 input, batch 8, full and sfsc only, 1 step x 1 block, 1 warm-up, "
                         "no FLOP count")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "step.json"))
    ap.add_argument("--silent", dest="verbose", action="store_false", help="print nothing, just write the JSON")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.input_hw, args.batch, args.steps, args.repeats, args.warmup = (32, 16), 8, 1, 1, 1
        args.mem_steps, args.mem_warmup = 1, 1
        if args.configs == ",".join(CONFIGS):
            args.configs = "full,sfsc"
    return args


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    return names


def _fmt(v, spec=".0f", scale=1.0, suffix=""):
    return "-" if v is None else f"{v * scale:{spec}}{suffix}"


def _pick(r: dict, min_quiet: int) -> tuple[str, dict]:
    """The figures a configuration is judged by: its quiet steps if there are enough, else all steps."""
    return ("quiet", r["quiet"]) if r["quiet"]["n"] >= min_quiet else ("all", r)


def report(result: dict) -> list[str]:
    t, m, min_quiet = result["timing"], result.get("memory", {}), result["setup"]["min_quiet"]
    lines = [f"{'config':<12} {'all ms':>7} {'quiet ms':>8} {'quiet n':>8} {'min ms':>7} {'x full':>7} "
             f"{'x paired':>8} {'x quiet':>7} {'x min':>6} {'fwd+bwd x':>9}"]
    for name, r in t.items():
        q = r["quiet"]["median_s"]
        lines.append(
            f"{name:<12} {_fmt(r['median_s']['total'], scale=1e3):>7} {_fmt(q and q['total'], scale=1e3):>8} "
            f"{r['quiet']['n']:>4}/{r['n']:<3} {_fmt(r['min_s'], scale=1e3):>7} "
            f"{_fmt(r.get('ratio_to_full_of_medians'), '.2f'):>7} {_fmt(r.get('ratio_to_full_paired'), '.2f'):>8} "
            f"{_fmt(r.get('ratio_to_full_quiet'), '.2f'):>7} {_fmt(r.get('ratio_to_full_of_mins'), '.2f'):>6} "
            f"{_fmt(r.get('train_step_ratio_to_full'), '.2f'):>9}")
    lines += [
        "  all / quiet / min: median over all timed steps / over quiet steps (run-queue wait <= "
        f"{100 * result['setup']['quiet_wait']:.0f} % of the step) / fastest step;",
        "  x full: ratio of all-step medians; x paired: median of per-block ratios; x quiet, x min: of quiet medians, "
        "of fastest steps;",
        "  fwd+bwd x: the method's part of the step (forward, losses, backward, projection/merge; no zero_grad, clip, "
        "Adam), quiet medians (all if too few)",
        "",
        f"{'config':<12} {'fwd ms':>7} {'bwd ms':>7} {'proj ms':>8} {'merge ms':>8} {'post ms':>8} {'post %':>7} "
        f"{'optim ms':>8} {'faults':>7} {'mem MiB':>8} {'x full':>7} {'1st MiB':>8}",
    ]
    for name, r in t.items():
        _, fig = _pick(r, min_quiet)
        s, mem = fig["median_s"], m.get(name, {})
        lines.append(
            f"{name:<12} {_fmt(s['forward'], scale=1e3):>7} {_fmt(s['backward'], scale=1e3):>7} "
            f"{_fmt(s['project'], '.1f', 1e3):>8} {_fmt(s['merge'], '.1f', 1e3):>8} "
            f"{_fmt(s['after_last_backward'], '.1f', 1e3):>8} {_fmt(fig['after_last_backward_share'], '.1f', 100):>7} "
            f"{_fmt(s['optimizer'], scale=1e3):>8} {_fmt(s['faults']):>7} "
            f"{_fmt(mem.get('step_peak_over_steady_mib')):>8} {_fmt(mem.get('step_peak_ratio_to_full'), '.2f'):>7} "
            f"{_fmt(mem.get('first_step_peak_over_setup_mib')):>8}")
    lines += [
        f"  medians over the quiet steps (all steps if fewer than {min_quiet} were quiet); proj = project_conflicts, "
        "merge = merged() / merge(),",
        "  post = everything after the last width's backward (projection + merge + .grad write-back), post % = its "
        "share of the step; faults = minor page faults per step;",
        "  mem = peak RSS increase during a step over the steady state (params + Adam state, no grads), own process, "
        "mmap'd malloc; 1st = first step's peak over setup (incl. Adam state creation)",
        "",
    ]
    for key, c in result["checks"].items():
        verdict = "PASS" if c["ok"] else ("n/a" if c["ok"] is None else "MISS")
        lines.append(f"target {key}: {_fmt(c['value'], '.3f')} <= {c['target']} ({c['statistic']}) -> {verdict}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return 0
    torch.set_num_threads(args.threads)
    # As the trainer does on CPU (swedge.training.host_memory); the memory children keep their own mmap'd malloc.
    host_memory = retain_freed_memory()[1] if args.retain_memory else "glibc defaults (--no-retain-memory)"
    effective = os.environ.get("OMP_WAIT_POLICY", "").lower() or "unset (spin)"
    if args.omp_wait_policy != "inherit" and effective != args.omp_wait_policy:
        print(f"warning: --omp-wait-policy {args.omp_wait_policy} is only applied when run as a script; "
              f"OMP_WAIT_POLICY here is {effective}", file=sys.stderr)
    names = _names(args.configs)
    mem_names = _names(args.memory_configs) if args.memory_configs else names
    images, labels = make_batch(args.batch, args.input_hw)
    load_before = os.getloadavg()
    started = time.time()
    if args.verbose:
        print(f"{args.arch} {args.input_hw[0]}x{args.input_hw[1]}, batch {args.batch} ({args.batch // IMAGES_PER_ID}"
              f"x{IMAGES_PER_ID}), {NUM_CLASSES} classes, {args.threads} threads; {args.warmup} warm-up, "
              f"{args.repeats} blocks x {args.steps} steps per config; OMP_WAIT_POLICY {effective}; load avg "
              f"{load_before[0]:.2f}; allocator: {host_memory}"
              + ("; channels_last" if args.channels_last else ""), flush=True)
    flops = {} if args.quick else flop_ratio(args.arch, args.input_hw)
    timing = run_timing(args, names, images, labels)
    load_mid = os.getloadavg()
    memory = {} if args.no_memory else run_memory(args, mem_names)
    load_after = os.getloadavg()

    sfsc_t, sfsc_m = timing.get("sfsc"), memory.get("sfsc")
    # Judged on quiet steps when there are enough (contention from other processes slows the many small ops of
    # the sub-widths and the projection far more than the full width's big convolutions), else on all steps.
    time_stat = share_stat = None
    if sfsc_t:
        time_stat = "quiet" if sfsc_t["ratio_to_full_quiet"] is not None else "paired"
        share_stat = _pick(sfsc_t, args.min_quiet)[0]
    checks = {
        "sfsc_over_full_time": {
            "value": sfsc_t and sfsc_t["ratio_to_full_quiet" if time_stat == "quiet" else "ratio_to_full_paired"],
            "statistic": f"{time_stat} medians" if time_stat else None, "target": TARGET_TIME_RATIO},
        "sfsc_projection_merge_writeback_share": {
            "value": sfsc_t and _pick(sfsc_t, args.min_quiet)[1]["after_last_backward_share"],
            "statistic": f"median over {share_stat} sfsc steps" if share_stat else None,
            "target": TARGET_PROJECTION_SHARE},
        "sfsc_over_full_step_peak_memory": {"value": sfsc_m and sfsc_m.get("step_peak_ratio_to_full"),
                                            "statistic": "step peak RSS over steady state",
                                            "target": TARGET_MEMORY_RATIO},
    }
    for c in checks.values():
        c["ok"] = None if c["value"] is None else bool(c["value"] <= c["target"])
    result = {
        "setup": {"arch": args.arch, "input_hw": list(args.input_hw), "batch": args.batch,
                  "pk": [args.batch // IMAGES_PER_ID, IMAGES_PER_ID], "num_classes": NUM_CLASSES,
                  "widths": list(ALL_WIDTHS), "threads": args.threads, "warmup": args.warmup, "steps": args.steps,
                  "repeats": args.repeats, "quiet_wait": args.quiet_wait, "min_quiet": args.min_quiet,
                  "optimizer": f"Adam lr={LR} wd={WEIGHT_DECAY}, clip {GRAD_CLIP}",
                  "quick": args.quick, "host_memory": host_memory,
                  "memory_format": "channels_last" if args.channels_last else "contiguous"},
        "flops": flops,
        "timing": timing,
        "memory": memory,
        "memory_method": ("own subprocess per config, MALLOC_MMAP_THRESHOLD_=%d; step peak = VmHWM minus the "
                          "reset mark (VmHWM right after the reset) over --mem-steps steps after a warm-up step and "
                          "zero_grad(set_to_none), VmHWM reset through "
                          "/proc/self/clear_refs; first-step peak = same from the after-setup mark" % MMAP_THRESHOLD),
        "checks": checks,
        "env": {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                "omp": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
                "machine": platform.machine(), "loadavg_before_mid_after": [load_before[0], load_mid[0], load_after[0]],
                "wall_s": time.time() - started},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    if args.verbose and flops:
        print(f"FLOPs: sum over the {len(ALL_WIDTHS)} widths / full = {flops['sum_over_full']:.3f}")
    if args.verbose:
        print("\n".join(report(result)))
        waits = [st["wait"] / st["total"] for r in timing.values() for st in r["steps"] if st["wait"] >= 0]
        if waits and statistics.median(waits) > args.quiet_wait and \
                os.environ.get("OMP_WAIT_POLICY", "").lower() != "passive":
            print(f"note: other processes held the cores for most steps (median run-queue wait "
                  f"{100 * statistics.median(waits):.0f} %); spinning OpenMP threads then stall at every barrier. "
                  "Rerun with --omp-wait-policy passive for figures that are not dominated by that.")
        print(f"load average before/after timing/after memory: {load_before[0]:.2f} / {load_mid[0]:.2f} / "
              f"{load_after[0]:.2f}; wall {time.time() - started:.0f} s; wrote {args.out}")
    return 0


def _reexec_with_wait_policy(argv: list[str]) -> None:
    """OMP_WAIT_POLICY is read once, when the OpenMP runtime starts (importing torch): set it and start over."""
    policy = parse_args(argv).omp_wait_policy
    if policy != "inherit" and os.environ.get("OMP_WAIT_POLICY", "").lower() != policy:
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *argv])


if __name__ == "__main__":
    _reexec_with_wait_policy(sys.argv[1:])
    sys.exit(main())
