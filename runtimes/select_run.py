"""`swedge select` end to end (torch-free): read and check every input, measure here what no device file gave,
choose per device (:mod:`swedge.runtimes.select`), and format the table.

Every input is checked before anything is measured or written: the profiles, each --bench / --verify file (this
bundle's, by the manifest sha256), that every device's runtime runs some artifact of the bundle, and that a
runtime to be measured here is installed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swedge.errors import MissingDependencyError, SwedgeError
from swedge.runtimes.bench import manifest_sha256
from swedge.runtimes.manifest import Bundle, read_manifest
from swedge.runtimes.profiles import Profile, load_profiles
from swedge.runtimes.select import (RULE, THIS_HOST, Choice, Measured, choose, match, parse_binding, read_result,
                                    runnable_runtimes)


@dataclass
class Selection:
    bundle: Bundle
    manifest_sha256: str
    profiles_path: str
    choices: list[Choice]

    @property
    def unmatched(self) -> list[str]:
        return [c.profile.name for c in self.choices if c.chosen is None]

    def to_dict(self) -> dict:
        from swedge.runtimes.host import host_record

        return {"schema": "swedge.select", "schema_version": 1, "bundle": str(self.bundle.root),
                "manifest_sha256": self.manifest_sha256, "profiles": self.profiles_path, "rule": RULE,
                "host": host_record(), "devices": [c.to_dict() for c in self.choices], "no_choice": self.unmatched}


def _given(args: list[str], kind: str, names: set[str], sha: str) -> list[Measured]:
    out = []
    for arg in args or []:
        name, path = parse_binding(arg, names)
        out.append(Measured(kind, read_result(path, kind, sha), path, bound_to=name))
    return out


def _runs_here(bundle, runtime: str) -> str | None:
    """None when ``runtime`` loads an artifact of the bundle here, else why not."""
    from swedge.runtimes import RuntimeUnavailable, runner_class, runtimes_for

    a = next(a for a in bundle.artifacts if a.status == "ok" and runtime in runtimes_for(a))
    try:
        path = bundle.check_file(a.path, a.sha256)
        runner_class(runtime)(path, a, threads=1).load().close()
    except (RuntimeUnavailable, MissingDependencyError) as exc:
        return str(exc)
    except SwedgeError as exc:
        return f"{a.id}: {exc}"
    return None


def check_inputs(bundle_path, profiles_path, bench_args, verify_args):
    """(bundle, sha, profiles, bench per device, verify per device) after every input check; SwedgeError else."""
    bundle = read_manifest(bundle_path)
    bundle.require_artifacts()
    sha = manifest_sha256(bundle.root)
    profiles = load_profiles(profiles_path)
    names = {p.name for p in profiles}
    bench = match(profiles, _given(bench_args, "bench", names, sha), "bench")
    verify = match(profiles, _given(verify_args, "verify", names, sha), "verify")
    runnable = runnable_runtimes(bundle)
    checked: dict[str, str | None] = {}
    for p in profiles:
        if p.runtime not in runnable:
            formats = sorted({a.format for a in bundle.artifacts if a.status == "ok"})
            raise SwedgeError(f"device {p.name}: no artifact of {bundle.root} runs on its runtime {p.runtime} (the "
                              f"bundle holds {', '.join(formats)}, run by {', '.join(sorted(runnable))})")
        given = bench[p.name]
        if given is not None and not any(t["runtime"] == p.runtime and t["batch"] == p.batch
                                         for t in given.data["timings"]):
            raise SwedgeError(f"--bench {given.source} has no timing at batch {p.batch} on {p.runtime}, the batch of "
                              f"device {p.name}: run the bench there with --batch {p.batch}")
        if bench[p.name] is None or verify[p.name] is None:
            if p.runtime not in checked:
                checked[p.runtime] = _runs_here(bundle, p.runtime)
            if checked[p.runtime]:
                raise SwedgeError(f"device {p.name}: {p.runtime} does not run on this host ({checked[p.runtime]}) "
                                  f"and no --bench and --verify from the device were given for it")
    return bundle, sha, profiles, bench, verify


def measure_here(bundle, profiles: list[Profile], bench: dict, verify: dict, *, iters: int, warmup: int,
                 progress: bool, say=print) -> None:
    """Fill the devices without a result (None) with bench / verify runs on this host (one per setting)."""
    from swedge.runtimes.verify import verify_bundle

    benches: dict[tuple, Measured] = {}
    verifies: dict[str, Measured] = {}
    for p in profiles:
        if bench[p.name] is None:
            key = (p.runtime, p.threads, p.batch)
            if key not in benches:
                say(f"select: benchmarking {p.runtime} at batch {p.batch}, {p.threads} thread(s) on this host "
                    f"(for {p.name})")
                record = bench_here(bundle.root, p, iters=iters, warmup=warmup)
                benches[key] = Measured("bench", record, THIS_HOST)
            bench[p.name] = benches[key]
        if verify[p.name] is None:
            if p.runtime not in verifies:
                say(f"select: verifying {p.runtime} on this host (for {p.name})")
                report = verify_bundle(bundle.root, runtimes=[p.runtime], progress=progress)
                if report.errors:
                    raise SwedgeError(f"verify of {bundle.root} failed: {'; '.join(report.errors)}")
                verifies[p.runtime] = Measured("verify", report.to_dict(), THIS_HOST)
            verify[p.name] = verifies[p.runtime]


def bench_here(root: Path, p: Profile, *, iters: int, warmup: int) -> dict:
    """A bench record of ``p``'s runtime, batch and threads from `python -m swedge.runtimes bench` in a fresh
    process of this interpreter: its peak memory is a device-like process's (numpy + the runtime), not this one's
    (which may hold torch), and its timings are not disturbed by this process's threads."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="swedge-select-") as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "swedge.runtimes", "bench", str(root), "--runtime", p.runtime, "--batch",
               str(p.batch), "--threads", str(p.threads), "--iters", str(iters), "--warmup", str(warmup), "--quiet",
               "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if not out.is_file():
            last = (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}").splitlines()[-1]
            raise SwedgeError(f"benchmarking {p.runtime} on this host failed: {last}")
        record = json.loads(out.read_text())
    record["command"] = "swedge select (python -m swedge.runtimes bench on this host)"
    return record


def select(bundle_path, profiles_path, *, bench_args=(), verify_args=(), iters: int = 30, warmup: int = 5,
           progress: bool = True, say=print) -> Selection:
    bundle, sha, profiles, bench, verify = check_inputs(bundle_path, profiles_path, bench_args, verify_args)
    measure_here(bundle, profiles, bench, verify, iters=iters, warmup=warmup, progress=progress, say=say)
    choices = [choose(bundle, p, bench[p.name], verify[p.name]) for p in profiles]
    return Selection(bundle, sha, str(profiles_path), choices)


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_selection(sel: Selection) -> str:
    """The table (the chosen artifact per device), then every candidate that was not chosen and why."""
    from swedge.report.table import text_table

    rows = []
    for ch in sel.choices:
        c, p = ch.chosen, ch.profile
        where = "device" if ch.bench.on_device and ch.verify.on_device else (
            "measured on this host, not on the device" if not (ch.bench.on_device or ch.verify.on_device)
            else f"bench: {'device' if ch.bench.on_device else 'this host'}, verify: "
                 f"{'device' if ch.verify.on_device else 'this host'}")
        if c is None:
            rows.append([p.name, p.runtime, "NONE (no candidate fits)", "-", "-", "-", "-", "-", "-", where])
            continue
        rows.append([p.name, p.runtime, c["id"], f"{c['width']:g}", c["precision"],
                     f"{_f(c['p50_ms'], '.2f')} / {_f(c['p90_ms'], '.2f')} @{p.batch}", _f(c["size_mb"], ".2f"),
                     _f(c["peak_rss_mb"], ".0f"), _f(c["map_cross"], ".2f"), where])
    lines = [text_table(["device", "runtime", "chosen", "width", "precision", "p50 / p90 ms", "size MB", "peak MB",
                         "cross mAP", "measured on"], rows, right={3, 5, 6, 7, 8})]
    for ch in sel.choices:
        others = [c for c in ch.candidates if c["status"] != "chosen"]
        if others or ch.notes:
            lines.append(f"\n{ch.profile.name}:")
        lines += [f"  note: {n}" for n in ch.notes]
        for c in others:
            why = "; ".join(c["reasons"]) if c["reasons"] else "fits, but ranks below the choice"
            lines.append(f"  {c['id']}: {why}")
    lines.append(f"\nrule: {RULE}")
    return "\n".join(lines)


__all__ = ["Selection", "check_inputs", "format_selection", "measure_here", "select"]
