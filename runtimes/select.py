"""`swedge select`: for each device profile, the artifact of a bundle to ship (torch-free).

The rule, per device: the candidates are the bundle's exported artifacts that run on the profile's runtime. A
candidate *fits* when it meets every budget of the profile (latency p50 / p90 at the profile's batch, peak memory,
size on disk) and passes the gate (its verify row on that runtime passed, and its cross-test mAP meets the
profile's ``min_map_cross`` / ``max_map_drop``). Of the fitting candidates the one chosen is the widest width;
among equal widths the best precision, fp32 > fp16 > int8; then the lower latency (the budget's percentile,
p90 when both are given), then the artifact id. A device no candidate fits has no choice (exit 1).

Measurements: a bench / verify JSON given for the device (``--bench NAME=FILE``, or unbound and matched by runtime)
is used; otherwise they are measured on this host, and the result says so. Every JSON must record the sha256 of
this bundle's manifest (results of another bundle are refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from swedge.errors import SwedgeError
from swedge.runtimes.host import describe
from swedge.runtimes.manifest_types import ArtifactEntry
from swedge.runtimes.memory import MB
from swedge.runtimes.profiles import NAME, Profile

PRECISION_RANK = {"fp32": 0, "fp16": 1, "int8": 2}
THIS_HOST = "this host, not the device"
RULE = ("widest width that fits every budget and passes the gate; then fp32 > fp16 > int8; then lower latency; "
        "then artifact id")


@dataclass
class Measured:
    """A bench or verify result (the JSON's dict) and where it came from."""

    kind: str            # "bench" | "verify"
    data: dict
    source: str          # a file path, or THIS_HOST
    bound_to: str | None = None

    @property
    def on_device(self) -> bool:
        return self.source != THIS_HOST

    def runtimes(self) -> set[str]:
        rows = self.data.get("timings" if self.kind == "bench" else "artifacts", [])
        return {r.get("runtime") for r in rows if r.get("status") in ("ok", "pass", "fail")}

    def where(self) -> str:
        host = describe(self.data.get("host"))
        return f"{THIS_HOST} ({host})" if not self.on_device else f"{self.source} ({host})"


@dataclass
class Choice:
    profile: Profile
    bench: Measured
    verify: Measured
    candidates: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> dict | None:
        return next((c for c in self.candidates if c["status"] == "chosen"), None)

    def to_dict(self) -> dict:
        return {"name": self.profile.name, "profile": self.profile.to_dict(), "chosen": self.chosen,
                "measured": {"bench": self.bench.where(), "verify": self.verify.where(),
                             "on_device": self.bench.on_device and self.verify.on_device},
                "notes": self.notes, "candidates": self.candidates}


# -- reading results ---------------------------------------------------------------------------------------------
_ROWS = {"bench": ("timings", ("id", "runtime", "batch", "status")),
         "verify": ("artifacts", ("id", "runtime", "status"))}


def read_result(path: str | Path, kind: str, manifest_sha256: str) -> dict:
    """A bench / verify JSON of *this* bundle (its manifest sha256), its rows checked for the fields read."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SwedgeError(f"cannot read --{kind} {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SwedgeError(f"--{kind} {path} is not valid JSON ({exc})") from None
    key, needed = _ROWS[kind]
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in needed) for r in rows):
        what = "`swedge bench` / `python -m swedge.runtimes bench`" if kind == "bench" else "`swedge verify`"
        raise SwedgeError(f"--{kind} {path} is not a {kind} result: expected the JSON of {what} with '{key}' rows "
                          f"holding {', '.join(needed)}")
    recorded = data.get("manifest_sha256")
    if not isinstance(recorded, str):
        raise SwedgeError(f"--{kind} {path} does not record the bundle's manifest sha256 (written by an older swedge "
                          f"or for a broken bundle): run {kind} again")
    if recorded != manifest_sha256:
        raise SwedgeError(f"--{kind} {path} was measured on another bundle (manifest sha256 {recorded[:12]}…, this "
                          f"bundle's {manifest_sha256[:12]}…)")
    if kind == "verify" and not isinstance(data.get("reference"), dict):
        raise SwedgeError(f"--verify {path} has no 'reference' scores (the bundle failed to verify there?)")
    return data


def parse_binding(arg: str, devices: set[str]) -> tuple[str | None, str]:
    """``NAME=FILE`` -> (NAME, FILE) for a known device; a plain ``FILE`` -> (None, FILE)."""
    name, sep, rest = arg.partition("=")
    if sep and NAME.fullmatch(name):
        if name not in devices:
            raise SwedgeError(f"'{arg}' binds a result to device '{name}', which the profiles do not name "
                              f"(they name {', '.join(sorted(devices))})")
        return name, rest
    return None, arg


def match(profiles: list[Profile], given: list[Measured], kind: str) -> dict[str, Measured | None]:
    """Device name -> the result to use (bound first, else the one unbound result holding its runtime; with
    several, the bench whose thread count matches), or None: measure here."""
    out: dict[str, Measured | None] = {}
    for p in profiles:
        bound = [m for m in given if m.bound_to == p.name]
        if len(bound) > 1:
            raise SwedgeError(f"device {p.name} has {len(bound)} --{kind} files bound to it; give one")
        if bound:
            if p.runtime not in bound[0].runtimes():
                raise SwedgeError(f"--{kind} {bound[0].source} is bound to device {p.name}, but holds no result for "
                                  f"its runtime {p.runtime}")
            out[p.name] = bound[0]
            continue
        free = [m for m in given if m.bound_to is None and p.runtime in m.runtimes()]
        if kind == "bench" and len(free) > 1:
            free = [m for m in free if m.data.get("threads") == p.threads] or free
        if len(free) > 1:
            raise SwedgeError(f"{len(free)} --{kind} files hold results for device {p.name}'s runtime {p.runtime} "
                              f"({', '.join(m.source for m in free)}): bind one with --{kind} {p.name}=FILE")
        out[p.name] = free[0] if free else None
    return out


# -- judging candidates ------------------------------------------------------------------------------------------
def _timing(bench: dict, aid: str, runtime: str, batch: int) -> dict | None:
    return next((t for t in bench["timings"] if t["id"] == aid and t["runtime"] == runtime and t["batch"] == batch),
                None)


def _check_budget(why: list[str], what: str, value, budget, unmeasured: str, spec: str) -> None:
    """Append why a candidate misses a budget in MB (not measured, or over by how much); no budget, no check."""
    if budget is None:
        return
    if value is None:
        why.append(unmeasured)
    elif value > budget:
        why.append(f"{what} {value - budget:{spec}} MB over ({value:{spec}} MB > {budget:g} MB)")


def _verify_row(verify: dict, aid: str, runtime: str) -> dict | None:
    return next((r for r in verify["artifacts"] if r["id"] == aid and r["runtime"] == runtime), None)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def judge(artifact: ArtifactEntry, p: Profile, bench: dict, verify: dict, server_map: float | None) -> dict:
    """One candidate: its figures and every reason it does not fit (empty: fits)."""
    aid = artifact.id
    size = artifact.bytes
    c = {"id": aid, "format": artifact.format, "width": float(artifact.width),
         "precision": artifact.precision, "runtime": p.runtime, "size_mb": None if size is None else size / MB,
         "p50_ms": None, "p90_ms": None, "peak_rss_mb": None, "map_cross": None, "verify": None, "reasons": []}
    why = c["reasons"]
    t = _timing(bench, aid, p.runtime, p.batch)
    if t is None or t["status"] != "ok":
        why.append(f"not benchmarked at batch {p.batch}" + (f": {t.get('reason')}" if t else ""))
    else:
        c["p50_ms"], c["p90_ms"], c["peak_rss_mb"] = (_number(t.get(k)) for k in ("p50_ms", "p90_ms", "peak_rss_mb"))
        for pct, budget in p.latency_budgets():
            value = c[f"{pct}_ms"]
            if value is None:
                why.append(f"no {pct} latency measured")
            elif value > budget:
                why.append(f"too slow by {value - budget:.2f} ms ({pct} {value:.2f} ms > {budget:g} ms at batch "
                           f"{p.batch})")
        _check_budget(why, "memory", c["peak_rss_mb"], p.memory_mb, "peak memory not measured", ".1f")
    _check_budget(why, "size", c["size_mb"], p.size_mb, "size unknown (the manifest records no bytes)", ".2f")
    row = _verify_row(verify, aid, p.runtime)
    if row is None:
        why.append(f"not verified on {p.runtime}")
    else:
        c["verify"] = row["status"]
        c["map_cross"] = _number(row.get("map_cross"))
        if row["status"] != "pass":
            why.append(f"failed verify: {row.get('reason') or row['status']}" if row["status"] == "fail"
                       else f"verify {row['status']}: {row.get('reason', '')}")
        elif c["map_cross"] is None:
            why.append("verify recorded no cross-test mAP")
        else:
            m = c["map_cross"]
            if p.min_map_cross is not None and m < p.min_map_cross:
                why.append(f"mAP {p.min_map_cross - m:.2f} under (cross-test mAP {m:.2f} < {p.min_map_cross:g})")
            if p.max_map_drop is not None and server_map is not None and server_map - m > p.max_map_drop:
                why.append(f"ΔmAP {server_map - m - p.max_map_drop:.2f} over (cross-test mAP {m:.2f} is "
                           f"{server_map - m:.2f} below the server's {server_map:.2f}; budget {p.max_map_drop:g})")
    return c


def _rank(c: dict, p: Profile):
    latency = c["p90_ms"] if p.latency_p90_ms is not None or p.latency_p50_ms is None else c["p50_ms"]
    return (-c["width"], PRECISION_RANK[c["precision"]], latency if latency is not None else float("inf"), c["id"])


def choose(bundle, p: Profile, bench: Measured, verify: Measured) -> Choice:
    from swedge.runtimes import runtimes_for

    choice = Choice(p, bench, verify)
    server = verify.data["reference"].get(f"{bundle.server_width:g}") or {}
    server_map = _number(server.get("map_self")) if isinstance(server, dict) else None
    if p.max_map_drop is not None and server_map is None:
        choice.notes.append(f"verify ({verify.source}) has no server self-test mAP: max_map_drop not checked")
    threads = bench.data.get("threads")
    if threads is not None and threads != p.threads:
        choice.notes.append(f"bench ran with {threads} thread(s), the profile says {p.threads}")
    for a in bundle.artifacts:
        if a.status == "ok" and p.runtime in runtimes_for(a):
            choice.candidates.append(judge(a, p, bench.data, verify.data, server_map))
    fits = sorted((c for c in choice.candidates if not c["reasons"]), key=lambda c: _rank(c, p))
    for c in choice.candidates:
        c["status"] = "rejected" if c["reasons"] else "fits"
    if fits:
        fits[0]["status"] = "chosen"
    choice.candidates.sort(key=lambda c: _rank(c, p))
    return choice


def runnable_runtimes(bundle) -> set[str]:
    from swedge.runtimes import runtimes_for

    return {r for a in bundle.artifacts if a.status == "ok" for r in runtimes_for(a)}


__all__ = ["Choice", "Measured", "RULE", "THIS_HOST", "choose", "judge", "match", "parse_binding", "read_result",
           "runnable_runtimes"]
