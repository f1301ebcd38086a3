"""Which machine a result came from: CPU model, the ISA flags that change int8 kernels, OS, runtime versions.

int8 kernels differ by CPU: onnxruntime on x86 without VNNI multiplies u8 x s8 through VPMADDUBSW, whose int16
pair sums saturate, while VNNI / AMX / ARM dot-product kernels are exact. A verdict on an int8 artifact therefore
holds for a CPU class, and every export, verify and bench result records :func:`host_record` of the machine it
ran on. Torch-free and stdlib-only (this runs on devices with numpy and one runtime); never raises on a
machine it does not know, it records why the flags are missing instead.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys

from swedge.exporters.formats import runtime_libraries

# x86 /proc/cpuinfo flags that pick an int8 (or bf16) kernel in onnxruntime / OpenVINO / XNNPACK
X86_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
             "amx_bf16")
# aarch64 (and 32-bit ARM) Features that do the same: NEON, SDOT/UDOT, SMMLA (i8mm), SVE, BF16, SME
ARM_FLAGS = ("neon", "asimd", "asimddp", "i8mm", "sve", "sve2", "svei8mm", "bf16", "sme")
# macOS sysctl keys (value 1 = present) -> the Linux names above
SYSCTL_FLAGS = {"hw.optional.avx2_0": "avx2", "hw.optional.avx512f": "avx512f", "hw.optional.avx512bw": "avx512bw",
                "hw.optional.avx512vnni": "avx512_vnni", "hw.optional.AdvSIMD": "asimd",
                "hw.optional.neon": "asimd", "hw.optional.arm.FEAT_DotProd": "asimddp",
                "hw.optional.arm.FEAT_I8MM": "i8mm", "hw.optional.arm.FEAT_BF16": "bf16",
                "hw.optional.arm.FEAT_SME": "sme"}


def libraries() -> tuple[str, ...]:
    """Distributions whose version changes what runs (looked up by metadata: none of them is imported): numpy,
    the format table's runtime libraries (read when asked, so a format added at run time counts), torch."""
    return ("numpy", *runtime_libraries(), "torch")


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, list[str], str, str]:
    """(model, int8 flags, flags source, note) from the first processor block of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                if fields:
                    break  # one processor block is enough
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    model = (fields.get("model name") or fields.get("hardware") or fields.get("model") or fields.get("cpu model")
             or "")
    if not model and "cpu implementer" in fields:  # aarch64 Linux often names the core only by id
        model = f"ARM implementer {fields['cpu implementer']} part {fields.get('cpu part', '?')}"
    if "flags" in fields:
        present = set(fields["flags"].split())
        return model, [f for f in X86_FLAGS if f in present], path + " flags", ""
    if "features" in fields:
        present = set(fields["features"].split())
        return model, [f for f in ARM_FLAGS if f in present], path + " Features", ""
    return model, [], "", f"{path} has no flags or Features line"  # e.g. s390x, or a sandbox's stub


def _sysctl() -> tuple[str, list[str], str, str]:
    try:
        out = subprocess.run(["sysctl", "machdep.cpu.brand_string", "hw.optional"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return "", [], "", f"sysctl failed: {exc}"
    values = dict(line.partition(":")[::2] for line in out.splitlines() if ":" in line)
    values = {k.strip(): v.strip() for k, v in values.items()}
    flags = {name for key, name in SYSCTL_FLAGS.items() if values.get(key) == "1"}
    order = X86_FLAGS + ARM_FLAGS
    return values.get("machdep.cpu.brand_string", ""), sorted(flags, key=order.index), "sysctl", ""


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """{"model", "flags", "flags_source", "flags_note"}; an unknown machine gives empty flags and a note."""
    model, flags, source, note = "", [], "", ""
    try:
        if os.path.exists(cpuinfo_path):
            model, flags, source, note = _cpuinfo(cpuinfo_path)
        elif sys.platform == "darwin":
            model, flags, source, note = _sysctl()
        else:
            note = f"no CPU flag source on {platform.system() or sys.platform}"
    except Exception as exc:  # provenance must never break a verify or an export
        note = f"CPU flags unreadable: {type(exc).__name__}: {exc}"
    return {"model": model or platform.processor() or "unknown", "flags": flags, "flags_source": source,
            "flags_note": note}


def library_versions(names=None) -> dict[str, str]:
    """Installed versions of ``names`` (default :func:`libraries`; missing ones left out), read from package
    metadata without importing."""
    out = {}
    for name in libraries() if names is None else names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
        except Exception:  # a broken dist-info must not break provenance
            pass
    return out


def host_record() -> dict:
    """A JSON-able description of this machine, as far as int8 numerics are concerned."""
    cpu = cpu_info()
    return {"cpu_model": cpu["model"], "arch": platform.machine(), "int8_flags": cpu["flags"],
            "flags_source": cpu["flags_source"], "flags_note": cpu["flags_note"], "cpu_count": os.cpu_count(),
            "os": platform.system(), "os_release": platform.release(), "python": platform.python_version(),
            "libraries": library_versions()}


_STRINGS = ("cpu_model", "arch", "flags_source", "flags_note", "os", "os_release", "python")


def record_problem(record) -> str | None:
    """What is wrong with a host record read from a file (a manifest's ``export_host``), or None: the fields
    :func:`describe` and :func:`host_differences` read must have the types :func:`host_record` writes."""
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    for key in _STRINGS:
        if key in record and not isinstance(record[key], str):
            return f"field '{key}' is a {type(record[key]).__name__}, not a string"
    flags = record.get("int8_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        return "field 'int8_flags' is not a list of strings"
    libs = record.get("libraries", {})
    if not isinstance(libs, dict) or not all(isinstance(v, str) for v in libs.values()):
        return "field 'libraries' is not an object of version strings"
    count = record.get("cpu_count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        return "field 'cpu_count' is not an integer"
    return None


def describe(record: dict | None) -> str:
    """One line: CPU model, arch, int8 flags (or why they are unknown)."""
    if not record:
        return "unknown host"
    flags = record.get("int8_flags") or []
    if flags:
        what = "int8 flags: " + " ".join(flags)
    elif record.get("flags_source"):
        what = "int8 flags: none"
    else:
        what = "int8 flags unknown" + (f" ({record['flags_note']})" if record.get("flags_note") else "")
    return f"{record.get('cpu_model', 'unknown')} ({record.get('arch', '?')}, {record.get('os', '?')}; {what})"


def host_differences(a: dict | None, b: dict | None, names: tuple[str, str] = ("the export host", "this host")
                     ) -> list[str]:
    """Sentences naming what differs between host records ``a`` and ``b`` ([] when nothing that matters does):
    CPU model, int8 flags present on one side only, OS / arch, runtime versions installed on both sides."""
    a, b = a or {}, b or {}
    na, nb = names
    out = []
    if a.get("cpu_model") != b.get("cpu_model"):
        out.append(f"CPU {a.get('cpu_model', 'unknown')!r} on {na}, {b.get('cpu_model', 'unknown')!r} on {nb}")
    for key, label in (("arch", "arch"), ("os", "OS")):
        if a.get(key) != b.get(key):
            out.append(f"{label} {a.get(key, 'unknown')} on {na}, {b.get(key, 'unknown')} on {nb}")
    known_a, known_b = bool(a.get("flags_source")), bool(b.get("flags_source"))
    if known_a and known_b:
        fa, fb = a.get("int8_flags") or [], b.get("int8_flags") or []
        if only := [f for f in fa if f not in fb]:
            out.append(f"{', '.join(only)} on {na} only")
        if only := [f for f in fb if f not in fa]:
            out.append(f"{', '.join(only)} on {nb} only")
    elif known_a != known_b:
        name, rec = (nb, b) if known_a else (na, a)
        note = rec.get("flags_note")
        out.append(f"int8 flags unknown on {name}" + (f" ({note})" if note else ""))
    la, lb = a.get("libraries") or {}, b.get("libraries") or {}
    for lib in sorted(set(la) & set(lb)):
        if la[lib] != lb[lib]:
            out.append(f"{lib} {la[lib]} on {na}, {lb[lib]} on {nb}")
    return out


__all__ = ["host_record", "host_differences", "describe", "record_problem", "cpu_info", "library_versions", "libraries", "X86_FLAGS", "ARM_FLAGS"]
