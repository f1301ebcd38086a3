"""Device profiles: a small TOML file naming device classes and their budgets, read by `swedge select`.

```toml
[device.cpu-2core-1t]              # a name: letters, digits, '.', '_', '-' (also the --out sub-folder)
runtime = "onnxruntime"            # required: the runtime the device runs
threads = 1                        # threads the runtime gets (default 1)
batch = 1                          # the batch size the latency budget is for (default 1)
latency_p90_ms = 2.0               # p90 latency at `batch` must be <= this (and/or latency_p50_ms)
memory_mb = 400                    # peak resident memory of the process running it (MB = 10^6 bytes)
size_mb = 20                       # the artifact's size on disk
min_map_cross = 40.0               # cross-test mAP (device queries vs the server gallery), points, at least
max_map_drop = 10.0                # ... at most this many points below the server model's own self-test mAP
description = "any text"
```

Every key but ``runtime`` is optional; a budget left out is not checked. Each problem is one line naming the
file, the device and the field (unknown key, wrong type, a zero / negative / impossible budget, an unknown
runtime). Torch-free; TOML is read with ``tomllib`` (Python 3.11+) or ``tomli`` (older Pythons).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from swedge.errors import SwedgeError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PERCENTILES = ("p50", "p90")
# key -> (type, what it means); numbers are int or float, never bool
KEYS = {"runtime": (str, "the runtime the device runs"), "threads": (int, "threads for the runtime"),
        "batch": (int, "batch size of the latency budget"),
        "latency_p50_ms": (float, "p50 latency budget in ms"), "latency_p90_ms": (float, "p90 latency budget in ms"),
        "memory_mb": (float, "peak resident memory budget in MB"), "size_mb": (float, "artifact size budget in MB"),
        "min_map_cross": (float, "minimum cross-test mAP in points"),
        "max_map_drop": (float, "maximum cross-test mAP drop below the server model, in points"),
        "description": (str, "free text")}


@dataclass(frozen=True)
class Profile:
    name: str
    runtime: str
    threads: int = 1
    batch: int = 1
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    memory_mb: float | None = None
    size_mb: float | None = None
    min_map_cross: float | None = None
    max_map_drop: float | None = None
    description: str = ""

    def latency_budgets(self) -> list[tuple[str, float]]:
        """[(percentile, ms)] of the latency budgets given, p50 first."""
        return [(p, v) for p in PERCENTILES if (v := getattr(self, f"latency_{p}_ms")) is not None]

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


def read_toml(path: Path) -> dict:
    """The TOML file as a dict: tomllib (3.11+), else tomli, else a SwedgeError saying what to install."""
    try:
        import tomllib as toml
    except ImportError:
        try:
            import tomli as toml  # type: ignore[no-redef]
        except ImportError:
            raise SwedgeError(f"reading {path} needs Python 3.11+ (tomllib) or the tomli package: "
                              "pip install tomli") from None
    try:
        with open(path, "rb") as f:
            return toml.load(f)
    except OSError as exc:
        raise SwedgeError(f"cannot read profiles {path}: {exc.strerror or exc}") from None
    except toml.TOMLDecodeError as exc:
        raise SwedgeError(f"profiles {path} is not valid TOML: {exc}") from None


def _suggest(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_value(where: str, key: str, value):
    kind = KEYS[key][0]
    if kind is str:
        if not isinstance(value, str):
            raise SwedgeError(f"{where}.{key} must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SwedgeError(f"{where}.{key} must be a finite number ({KEYS[key][1]}), got {value!r}")
    if kind is int and (not isinstance(value, int)):
        raise SwedgeError(f"{where}.{key} must be a whole number ({KEYS[key][1]}), got {value!r}")
    if key == "max_map_drop":
        if not 0 <= value < 100:
            raise SwedgeError(f"{where}.{key} is {value!r}: an mAP drop in points lies in [0, 100)")
    elif key == "min_map_cross":
        if not 0 < value <= 100:
            raise SwedgeError(f"{where}.{key} is {value!r}: mAP is in points, so use a value in (0, 100] "
                              "(or leave it out)")
    elif value <= 0:
        raise SwedgeError(f"{where}.{key} is {value!r}: {KEYS[key][1]} must be > 0 (leave it out for no budget)")
    elif key in ("threads", "batch") and value > 4096:
        raise SwedgeError(f"{where}.{key} is {value!r}: more than 4096 is not a device setting")
    return int(value) if kind is int else float(value)


def parse_profiles(data: dict, source: str = "profiles") -> list[Profile]:
    """Validated profiles from a TOML document's dict; SwedgeError (one line) on the first problem."""
    from swedge.exporters.formats import REFERENCE_RUNNERS, runner_modules

    runtimes = [r for r in runner_modules() if r not in REFERENCE_RUNNERS]  # torch is the baseline, not a device's
    extra = sorted(set(data) - {"device"})
    if extra:
        raise SwedgeError(f"{source}: unknown top-level key(s) {extra}; profiles are [device.NAME] tables")
    devices = data.get("device")
    if not isinstance(devices, dict) or not devices:
        raise SwedgeError(f"{source}: no [device.NAME] table; see README, 'Device profiles'")
    out = []
    for name, table in devices.items():
        where = f"{source}: device.{name}"
        if not NAME.fullmatch(name):
            raise SwedgeError(f"{where}: a device name is 1-64 letters, digits, '.', '_' or '-', starting with a "
                              "letter or digit (it names the --out sub-folder)")
        if not isinstance(table, dict):
            raise SwedgeError(f"{where} must be a table ([device.{name}]), got {table!r}")
        for key in table:
            if key not in KEYS:
                raise SwedgeError(f"{where}: unknown key '{key}'{_suggest(key, KEYS)}; known: {', '.join(KEYS)}")
        if "runtime" not in table:
            raise SwedgeError(f"{where}.runtime is missing: name the device's runtime ({', '.join(runtimes)})")
        values = {key: _check_value(where, key, value) for key, value in table.items()}
        if values["runtime"] not in runtimes:
            raise SwedgeError(f"{where}.runtime: unknown runtime '{values['runtime']}'"
                              f"{_suggest(values['runtime'], runtimes)}; choose from {', '.join(runtimes)}")
        out.append(Profile(name=name, **values))
    return out


def load_profiles(path: str | Path) -> list[Profile]:
    return parse_profiles(read_toml(Path(path)), str(path))


__all__ = ["Profile", "KEYS", "PERCENTILES", "load_profiles", "parse_profiles", "read_toml"]
