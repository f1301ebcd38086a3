"""Host provenance: int8 kernels differ by CPU, so every export, verify and bench result names its machine, and
verify says when the export host and this host differ."""

import json
import shutil
import subprocess
import sys

import pytest

from swedge.cli import main
from swedge.runtimes.host import ARM_FLAGS, X86_FLAGS, cpu_info, host_differences, host_record
from swedge.runtimes.verify import verify_bundle

KEYS = {"cpu_model", "arch", "int8_flags", "flags_source", "flags_note", "cpu_count", "os", "os_release", "python",
        "libraries"}


def test_host_record_has_the_fields_and_imports_no_torch():
    code = ("import json, sys; from swedge.runtimes.host import host_record; r = host_record(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m); print(json.dumps(r))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert set(r) == KEYS
    assert r["cpu_model"] and r["arch"] and r["os"] and r["python"] and r["cpu_count"] >= 1
    assert set(r["int8_flags"]) <= set(X86_FLAGS + ARM_FLAGS)
    assert r["libraries"]["numpy"]  # versions come from metadata: torch is listed (installed here), not imported
    assert "torch" in r["libraries"]


def test_cpuinfo_flags_x86_aarch64_and_a_missing_source(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338\nflags\t\t: fpu sse avx2 avx512f "
                   "avx512bw avx512_vnni amx_int8\n\nprocessor\t: 1\nflags\t\t: fpu amx_tile\n")
    cpu = cpu_info(str(x86))
    assert cpu["model"] == "Intel(R) Xeon(R) Gold 6338"
    assert cpu["flags"] == ["avx2", "avx512f", "avx512bw", "avx512_vnni", "amx_int8"]  # first processor only
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve\nCPU implementer\t: 0x41\n"
                   "CPU part\t: 0xd0c\n")
    cpu = cpu_info(str(arm))
    assert cpu["flags"] == ["asimd", "asimddp", "i8mm", "sve"] and "0x41" in cpu["model"]
    (tmp_path / "bare").write_text("processor\t: 0\n")
    cpu = cpu_info(str(tmp_path / "bare"))
    assert cpu["flags"] == [] and "no flags or Features line" in cpu["flags_note"]
    if sys.platform.startswith("linux"):
        cpu = cpu_info(str(tmp_path / "absent"))
        assert cpu["flags"] == [] and cpu["flags_source"] == "" and "no CPU flag source" in cpu["flags_note"]


def test_host_differences_names_one_sided_flags_and_nothing_for_identical_records():
    a = host_record()
    assert host_differences(a, json.loads(json.dumps(a))) == []
    export = dict(a, flags_source="/proc/cpuinfo flags", int8_flags=["avx2", "avx512_vnni", "avx_vnni"],
                  libraries={"onnxruntime": "1.20.0", "torch": "2.5"})
    here = dict(a, flags_source="/proc/cpuinfo flags", int8_flags=["avx2", "amx_int8"],
                libraries={"onnxruntime": "1.22.0"})
    diffs = host_differences(export, here)
    assert "avx512_vnni, avx_vnni on the export host only" in diffs
    assert "amx_int8 on this host only" in diffs
    assert "onnxruntime 1.20.0 on the export host, 1.22.0 on this host" in diffs
    assert not any("torch" in d for d in diffs)  # a device lacking a library is not a difference
    assert len(diffs) == 3
    other = dict(here, cpu_model="Ampere Altra", arch="aarch64")
    assert any("Ampere Altra" in d for d in host_differences(export, other))
    assert any("arch" in d and "aarch64" in d for d in host_differences(export, other))


def test_an_export_records_its_host(onnx_bundle):
    m = json.loads((onnx_bundle / "manifest.json").read_text())
    here = host_record()
    assert set(m["export_host"]) == KEYS
    assert (m["export_host"]["cpu_model"], m["export_host"]["int8_flags"]) == (here["cpu_model"], here["int8_flags"])


def test_verify_records_its_host_and_says_same_on_the_export_host(onnx_bundle, tmp_path, capsys):
    rc = main(["verify", str(onnx_bundle), "--quiet", "--json", str(tmp_path / "v.json"), "--report",
               str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0, out
    data = json.loads((tmp_path / "v.json").read_text())
    assert set(data["host"]) == KEYS and data["export_host"]["cpu_model"] == data["host"]["cpu_model"]
    assert data["host_differences"] == []
    assert "host: same CPU class as the export host" in out and "differ" not in out
    assert "same CPU class as the export host" in (tmp_path / "rep" / "report.md").read_text()


@pytest.fixture
def copy(onnx_bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(onnx_bundle, dst)
    return dst


def _edit_manifest(root, fn):  # the manifest lists the sha256 of every file but not its own: editing it is legit
    path = root / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def test_verify_names_the_flags_the_export_host_had_and_this_one_lacks(copy, tmp_path, capsys):
    here = host_record()
    if not here["flags_source"]:
        pytest.skip("this machine exposes no CPU flags")
    extra = next(f for f in X86_FLAGS + ARM_FLAGS if f not in here["int8_flags"])
    _edit_manifest(copy, lambda m: m["export_host"].update(int8_flags=m["export_host"]["int8_flags"] + [extra]))
    rc = main(["verify", str(copy), "--quiet", "--report", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0, out  # a provenance note, not a failure
    line = next(s for s in out.splitlines() if s.startswith("export host and this host differ"))
    assert f"{extra} on the export host only" in line and "int8 results may differ" in line, line
    assert "same CPU class" not in out
    assert f"{extra} on the export host only" in (tmp_path / "rep" / "report.md").read_text()
    assert f"{extra} on the export host only" in (tmp_path / "rep" / "report.html").read_text()


def test_an_old_manifest_without_export_host_still_verifies(copy, capsys):
    _edit_manifest(copy, lambda m: m.pop("export_host"))
    report = verify_bundle(copy, progress=False)
    assert report.passed and report.export_host is None and report.to_dict()["host_differences"] is None
    assert main(["verify", str(copy), "--quiet"]) == 0
    assert "the export host is not recorded" in capsys.readouterr().out


def test_bench_names_its_host(onnx_bundle, tmp_path, capsys):
    rc = main(["bench", str(onnx_bundle), "--no-torch", "--iters", "1", "--warmup", "0", "--batches", "1",
               "--json", str(tmp_path / "b.json"), "--png", str(tmp_path / "b.png")])
    out = capsys.readouterr().out
    here = host_record()
    assert rc == 0 and f"measured on: {here['cpu_model']}" in out
    assert all(f in out.split("measured on:")[1] for f in here["int8_flags"])
    data = json.loads((tmp_path / "b.json").read_text())
    assert set(data["host"]) == KEYS and data["host"]["int8_flags"] == here["int8_flags"]


@pytest.mark.parametrize("bad, says", [
    ("a string", "is a str, not an object"),
    ({"cpu_model": 3}, "field 'cpu_model' is a int"),
    ({"int8_flags": "avx2"}, "field 'int8_flags' is not a list of strings"),
    ({"libraries": {"onnxruntime": 1.2}}, "field 'libraries' is not an object of version strings"),
    ({"cpu_count": "2"}, "field 'cpu_count' is not an integer"),
])
def test_a_malformed_export_host_is_a_bundle_error_naming_the_field(copy, bad, says, capsys):
    _edit_manifest(copy, lambda m: m.update(export_host=bad))
    assert main(["verify", str(copy), "--quiet"]) != 0
    err = capsys.readouterr()
    assert "'export_host' " + says in err.out + err.err


def test_an_unreadable_bundle_does_not_claim_an_old_export(tmp_path, capsys):
    assert main(["verify", str(tmp_path), "--quiet"]) != 0
    out = capsys.readouterr().out
    assert "not a swedge bundle" in out and "not recorded" not in out and "host: " in out
