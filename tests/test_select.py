"""`swedge select`: the device's torch-free bench, the choice rule, every rejection reason, bad input (exit 2,
nothing written), no candidate (exit 1), and the per-device sub-bundle that verifies on its own."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from swedge.cli import main
from swedge.runtimes.manifest import file_sha256
from swedge.runtimes.verify import verify_bundle

TWO_DEVICES = """
[device.fast]
runtime = "onnxruntime"
latency_p90_ms = 2.0

[device.slow]
runtime = "onnxruntime"
latency_p90_ms = 4.0
"""


@pytest.fixture(scope="module")
def device_bench(onnx_bundle, tmp_path_factory):
    """`python -m swedge.runtimes bench` in a subprocess that cannot import torch: the device's JSON."""
    out = tmp_path_factory.mktemp("device") / "bench.json"
    code = ("import sys; sys.modules['torch'] = None; from swedge.runtimes.__main__ import main; "
            f"rc = main(['bench', {str(onnx_bundle)!r}, '--runtime', 'onnxruntime', '--batch', '1,2', '--iters', '3', "
            f"'--warmup', '1', '--quiet', '--json', {str(out)!r}]); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'torch' and sys.modules[m] is not None], "
            "'torch imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "peak memory:" in proc.stdout and "p90 ms" in proc.stdout
    return out


@pytest.fixture(scope="module")
def device_verify(onnx_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("device") / "verify.json"
    out.write_text(json.dumps(verify_bundle(onnx_bundle, runtimes=["onnxruntime"], progress=False).to_dict()))
    return out


def _edit(src: Path, dst: Path, fn) -> Path:
    data = json.loads(src.read_text())
    fn(data)
    dst.write_text(json.dumps(data))
    return dst


def _latency(bench: Path, dst: Path, p90: dict) -> Path:
    """The device bench with p90 (and p50) set per width: deterministic budgets."""
    def fn(d):
        for t in d["timings"]:
            t["p50_ms"] = t["p90_ms"] = p90[t["width"]]
    return _edit(bench, dst, fn)


def _profiles(tmp_path, text=TWO_DEVICES) -> Path:
    (tmp_path / "p.toml").write_text(text)
    return tmp_path / "p.toml"


def test_the_device_bench_json_has_the_shared_schema(device_bench, onnx_bundle):
    d = json.loads(device_bench.read_text())
    assert d["schema"] == "swedge.bench" and d["manifest_sha256"] == file_sha256(onnx_bundle / "manifest.json")
    assert d["runtimes"] == ["onnxruntime"] and d["batches"] == [1, 2] and d["threads"] == 1
    assert d["peak_rss_mb"] > 10 and d["memory_method"]
    host = d["host"]
    assert host["cpu_model"] and host["arch"] and host["os"] and "onnxruntime" in host["libraries"]
    assert {(t["id"], t["batch"]) for t in d["timings"]} == {
        (f"onnx-w{w}-fp32", b) for w in ("0.5", "1") for b in (1, 2)}
    for t in d["timings"]:
        assert t["status"] == "ok" and 0 < t["p50_ms"] <= t["p90_ms"] and t["peak_rss_mb"] > 10 and t["bytes"] > 0


def test_the_widest_artifact_that_fits_each_device(device_bench, device_verify, onnx_bundle, tmp_path, capsys):
    bench = _latency(device_bench, tmp_path / "b.json", {0.5: 1.0, 1.0: 3.0})
    rc = main(["select", str(onnx_bundle), "--profiles", str(_profiles(tmp_path)), "--bench", str(bench),
               "--verify", str(device_verify), "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    devices = {d["name"]: d for d in json.loads((tmp_path / "s.json").read_text())["devices"]}
    assert devices["fast"]["chosen"]["id"] == "onnx-w0.5-fp32"
    assert devices["slow"]["chosen"]["id"] == "onnx-w1-fp32"
    (rejected,) = [c for c in devices["fast"]["candidates"] if c["status"] == "rejected"]
    assert rejected["id"] == "onnx-w1-fp32" and rejected["reasons"] == [
        "too slow by 1.00 ms (p90 3.00 ms > 2 ms at batch 1)"]
    assert "onnx-w1-fp32: too slow by 1.00 ms" in out and "measured on this host" not in out
    assert devices["fast"]["measured"]["on_device"] is True and str(bench) in devices["fast"]["measured"]["bench"]


def test_precision_breaks_a_tie_of_widths(device_bench, device_verify, onnx_bundle, tmp_path):
    """fp32 > fp16 > int8 at one width: an fp16 copy of the w1 entry (same file) loses to fp32, wins alone."""
    from swedge.runtimes.manifest import read_manifest
    from swedge.runtimes.profiles import parse_profiles
    from swedge.runtimes.select import Measured, choose

    bundle = read_manifest(onnx_bundle)
    w1 = next(a for a in bundle.artifacts if a.id == "onnx-w1-fp32")
    bundle.manifest = replace(bundle.manifest, artifacts=(replace(w1, id="onnx-w1-fp16", precision="fp16"), w1))
    bench, verify = json.loads(device_bench.read_text()), json.loads(device_verify.read_text())
    for data, key in ((bench, "timings"), (verify, "artifacts")):
        data[key] += [{**r, "id": "onnx-w1-fp16", "precision": "fp16"} for r in data[key] if r["id"] == "onnx-w1-fp32"]
    (p,) = parse_profiles({"device": {"d": {"runtime": "onnxruntime"}}})
    ch = choose(bundle, p, Measured("bench", bench, "b"), Measured("verify", verify, "v"))
    assert ch.chosen["id"] == "onnx-w1-fp32"
    assert [c["status"] for c in ch.candidates] == ["chosen", "fits"]
    bundle.manifest = replace(bundle.manifest, artifacts=bundle.manifest.artifacts[:1])
    assert choose(bundle, p, Measured("bench", bench, "b"), Measured("verify", verify, "v")).chosen["id"] == \
        "onnx-w1-fp16"


def test_every_rejection_reason_and_no_candidate_exits_1(device_bench, device_verify, onnx_bundle, tmp_path, capsys):
    def edit(d):  # server self-test mAP 80, w0.5 cross-test 60 (20 below it), w1 failed
        d["reference"]["1"]["map_self"] = 80.0
        for r in d["artifacts"]:
            if r["id"] == "onnx-w1-fp32":
                r["status"], r["reason"] = "fail", "min cosine 0.9 < 0.999999"
            else:
                r["map_cross"] = 60.0
    verify = _edit(device_verify, tmp_path / "v.json", edit)
    sizes = {a["id"]: a["bytes"] / 1e6 for a in json.loads((onnx_bundle / "manifest.json").read_text())["artifacts"]}
    small = sizes["onnx-w0.5-fp32"]
    profiles = _profiles(tmp_path, f"""
[device.tight]
runtime = "onnxruntime"
size_mb = {small / 2}
memory_mb = 1
max_map_drop = 15
min_map_cross = 70
""")
    rc = main(["select", str(onnx_bundle), "--profiles", str(profiles), "--bench", str(device_bench),
               "--verify", str(verify), "--json", str(tmp_path / "s.json"), "--out", str(tmp_path / "ship")])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.strip() == "select: no artifact fits device(s) tight (reasons above)"
    (device,) = json.loads((tmp_path / "s.json").read_text())["devices"]
    assert device["chosen"] is None
    reasons = {c["id"]: c["reasons"] for c in device["candidates"]}
    w05, w1 = reasons["onnx-w0.5-fp32"], reasons["onnx-w1-fp32"]
    assert any(r.startswith(f"size {small / 2:.2f} MB over") for r in w05), w05
    assert any(r.startswith("memory ") and " MB over" in r for r in w05), w05
    assert "ΔmAP 5.00 over (cross-test mAP 60.00 is 20.00 below the server's 80.00; budget 15)" in w05, w05
    assert "mAP 10.00 under (cross-test mAP 60.00 < 70)" in w05, w05
    assert len(w05) == 4 and w1[-1] == "failed verify: min cosine 0.9 < 0.999999"
    assert "failed verify: min cosine 0.9 < 0.999999" in w1
    assert "NONE (no candidate fits)" in captured.out
    assert not (tmp_path / "ship").exists()  # no device had a choice: no sub-bundle


def test_results_of_another_bundle_are_refused_and_nothing_is_written(device_bench, device_verify, onnx_bundle,
                                                                      tmp_path, capsys):
    other = _edit(device_bench, tmp_path / "other.json", lambda d: d.update(manifest_sha256="0" * 64))
    old = _edit(device_verify, tmp_path / "old.json", lambda d: d.pop("manifest_sha256"))
    profiles = _profiles(tmp_path)
    cases = [(["--bench", str(other)], "was measured on another bundle (manifest sha256 000000000000…"),
             (["--verify", str(old)], "does not record the bundle's manifest sha256"),
             (["--bench", f"phone={device_bench}"], "binds a result to device 'phone', which the profiles do not name"),
             (["--bench", str(device_bench), "--bench", str(device_bench)], "2 --bench files hold results for device"),
             (["--verify", str(device_bench)], "is not a verify result"),
             (["--bench", str(_edit(device_bench, tmp_path / "b4.json", lambda d: [t.update(batch=4) for t in
                                                                                   d["timings"]]))],
              "has no timing at batch 1 on onnxruntime, the batch of device fast: run the bench there with --batch 1")]
    for extra, says in cases:
        rc = main(["select", str(onnx_bundle), "--profiles", str(profiles), *extra, "--json", str(tmp_path / "s.json"),
                   "--out", str(tmp_path / "ship")])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and err.count("\n") == 1, err
        assert not (tmp_path / "s.json").exists() and not (tmp_path / "ship").exists()


def test_bad_profiles_and_runtimes_are_exit_2(device_bench, device_verify, onnx_bundle, tmp_path, capsys):
    bad = [("[device.d]\nruntime = \"onnxruntime\"\nlatency_p90_ms = -2\n", "device.d.latency_p90_ms is -2"),
           ("[device.d]\nruntime = \"onnxruntime\"\nlatencyp90 = 2\n", "device.d: unknown key 'latencyp90'"),
           ("[device.d]\nruntime = \"openvino\"\n", "device d: no artifact of"),
           ("[device.d]\nruntime = \"tflite\"\n", "unknown runtime 'tflite' (did you mean 'litert'?)")]
    for text, says in bad:
        rc = main(["select", str(onnx_bundle), "--profiles", str(_profiles(tmp_path, text)), "--json",
                   str(tmp_path / "s.json")])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and err.count("\n") == 1, err
        assert not (tmp_path / "s.json").exists()


def test_a_runtime_that_does_not_run_here_needs_the_device_results(onnx_bundle, tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, copy)
    m = json.loads((copy / "manifest.json").read_text())
    for a in m["artifacts"]:
        a["runtimes"] = ["tensorrt"]  # no NVIDIA GPU / tensorrt package on this machine
    (copy / "manifest.json").write_text(json.dumps(m))
    rc = main(["select", str(copy), "--profiles", str(_profiles(tmp_path, "[device.jetson]\nruntime = \"tensorrt\"\n"))])
    err = capsys.readouterr().err
    assert rc == 2 and "device jetson: tensorrt does not run on this host" in err
    assert "no --bench and --verify from the device were given" in err


def test_measured_here_and_a_sub_bundle_that_verifies_on_its_own(onnx_bundle, tmp_path, capsys):
    profiles = _profiles(tmp_path, "[device.loose]\nruntime = \"onnxruntime\"\nlatency_p90_ms = 10000\n"
                                   "[device.none]\nruntime = \"onnxruntime\"\nsize_mb = 0.000001\n")
    rc = main(["select", str(onnx_bundle), "--profiles", str(profiles), "--iters", "2", "--warmup", "0", "--quiet",
               "--json", str(tmp_path / "s.json"), "--out", str(tmp_path / "ship")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "measured on this host, not on the device" in out
    devices = {d["name"]: d for d in json.loads((tmp_path / "s.json").read_text())["devices"]}
    assert devices["loose"]["chosen"]["id"] == "onnx-w1-fp32" and devices["loose"]["measured"]["on_device"] is False
    assert devices["loose"]["chosen"]["peak_rss_mb"] > 10
    assert not (tmp_path / "ship" / "none").exists()
    sub = tmp_path / "ship" / "loose"
    m = json.loads((sub / "manifest.json").read_text())
    assert [a["id"] for a in m["artifacts"]] == ["onnx-w1-fp32"] and set(m["references"]) == {"1"}
    assert m["device"]["name"] == "loose" and m["device"]["profile"]["latency_p90_ms"] == 10000
    assert m["device"]["selected_from"]["manifest_sha256"] == file_sha256(onnx_bundle / "manifest.json")
    assert not (sub / "onnx" / "w0.5-fp32.onnx").exists()
    assert main(["verify", str(sub), "--quiet"]) == 0
    assert "verify PASSED: 1 passed" in capsys.readouterr().out
    # a second run refuses to replace it without --force, before measuring anything
    rc = main(["select", str(onnx_bundle), "--profiles", str(profiles), "--out", str(tmp_path / "ship")])
    assert rc == 2 and "pass --force to replace it" in capsys.readouterr().err


def test_help_teaches_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "python -m swedge.runtimes bench" in out and "fp32 > fp16 > int8" in out


def test_the_benchmark_script_prints_and_writes_the_choice(device_bench, device_verify, onnx_bundle, tmp_path,
                                                           capsys):
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_select", root / "benchmarks" / "bench_select.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bench = _latency(device_bench, tmp_path / "b.json", {0.5: 1.0, 1.0: 3.0})
    rc = module.main([str(onnx_bundle), "--profiles", str(_profiles(tmp_path)), "--bench", str(bench), "--verify",
                      str(device_verify), "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "seconds: check_inputs" in out
    data = json.loads((tmp_path / "s.json").read_text())
    assert {d["name"]: d["chosen"]["id"] for d in data["devices"]} == {"fast": "onnx-w0.5-fp32",
                                                                       "slow": "onnx-w1-fp32"}
    assert set(data["seconds"]) == {"check_inputs", "measure_here", "choose"}
