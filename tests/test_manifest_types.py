"""The manifest's typed records (issue 19, a typed seam): what `swedge export` writes reads back as the same records
and the same bytes, the on-disk key order is the one bundles have always had, and reading needs no torch."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import swedge.exporters.bundle as writer
from swedge.exporters.base import Exporter, ExportJob, ExportResult, ExportSkipped
from swedge.exporters.repair import repair_int8
from swedge.io import atomic_write_json
from swedge.runtimes.manifest import MANIFEST, read_manifest
from swedge.runtimes.manifest_types import ArtifactEntry, Manifest

# the keys of an exported artifact, in the order the writer has always written them
HEAD = ["id", "format", "width", "precision"]
OK = [*HEAD, "path", "sha256", "bytes", "export_seconds", "status", "runtimes", "batch", "tools", "quantization",
      "notes"]


def _written(d: dict, tmp_path: Path) -> bytes:
    """``d`` as the bundle writer writes manifest.json."""
    return atomic_write_json(tmp_path / "m.json", d).read_bytes()


def test_an_exported_manifest_reads_back_to_the_same_records_and_bytes(onnx_bundle, tmp_path):
    text = (onnx_bundle / MANIFEST).read_bytes()
    m = Manifest.from_dict(json.loads(text))
    assert _written(m.to_dict(), tmp_path) == text
    assert Manifest.from_dict(m.to_dict()) == m == read_manifest(onnx_bundle).manifest
    assert list(m.to_dict()["artifacts"][0]) == [*OK, "opset", "parity"]


class _Fake(Exporter):
    """An exporter whose outcome is given: an ExportResult (a file is written), or an exception to raise."""

    def __init__(self, name: str, outcome):
        self.name, self.outcome = name, outcome

    def _export(self, job: ExportJob) -> ExportResult:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        job.out.write_bytes(b"weights")
        return replace(self.outcome, path=job.out)


def _entry(tmp_path, name, outcome, precision="fp32", width=0.5) -> ArtifactEntry:
    out = tmp_path / "staging" / name / f"w{width:g}-{precision}"
    out.parent.mkdir(parents=True, exist_ok=True)
    job = ExportJob(module=None, width=width, precision=precision, out=out, input_shape=(3, 64, 32),
                    example=np.zeros((1, 3, 64, 32), np.float32), calibration="calibration images")
    return writer._export_one(_Fake(name, outcome), job, np.zeros((4, 3, 64, 32), np.float32), np.ones((4, 8)))


def _result(**kw) -> ExportResult:
    return ExportResult(path=Path("."), tools={"torch": "2.9"}, notes=["a note"], **kw)


# format-specific facts as each exporter records them (ExportResult.extra), and the keys they add to the entry
FACTS = [
    ("onnx", {"opset": 18}, ["opset"]),
    ("openvino", {"files": ["model.xml", "model.bin"]}, ["files"]),
    ("coreml", {"deployment_target": "iOS16", "compute_precision": "fp32"}, ["deployment_target",
                                                                           "compute_precision"]),
    ("tensorrt", {"engine": {"status": "skipped", "reason": "no NVIDIA GPU"}}, ["engine"]),
    ("tflite", {"layout": "NCHW", "input_dtype": "int8", "output_dtype": "int8", "input_shape": [-1, 3, 64, 32],
                "input_quantization": [0.02, -3.0], "output_quantization": [0.01, 0.0]},
     ["layout", "input_dtype", "output_dtype", "input_shape", "input_quantization", "output_quantization"]),
    ("onnx", {"opset": 18, "a_new_fact": [1]}, ["opset", "a_new_fact"]),  # a fact no field names: kept after them
]


def _gate(outcomes):
    class Gate:
        def check(self, path, entry, embed_here):
            return outcomes.pop(0)
    return Gate()


def _repaired(tmp_path, scheme, gate_results, trials) -> ArtifactEntry:
    """An int8 entry through `--int8-repair`, the gate and the re-exports given."""
    exporter = _Fake("onnx", None)
    exporter.int8_repair_scheme = scheme
    first = _entry(tmp_path, "onnx", _result(quantization={"quantizer": "ort-qdq"}), "int8")
    job = ExportJob(module=None, width=0.5, precision="int8", out=tmp_path / "x", input_shape=(3, 64, 32),
                    example=np.zeros((1, 3, 64, 32), np.float32))
    return repair_int8(exporter, job, first, gate=_gate(gate_results),
                       ranking=lambda: {"method": "ablation", "layers": [{"layer": n} for n in "abcd"]},
                       export_one=lambda e, j: trials.pop(0), embed_here=None)


def test_every_kind_of_entry_the_writer_makes_keeps_its_key_order_and_reads_back(onnx_bundle, tmp_path, monkeypatch):
    """Each entry comes from the writer's own code (``_export_one``, ``repair_int8``) with fake backends."""
    monkeypatch.setattr(writer, "_embed_here", lambda path, entry, x: ("onnxruntime", np.ones((len(x), 8))))
    entries, orders = [], []
    for i, (fmt, extra, keys) in enumerate(FACTS):
        entries.append(replace(_entry(tmp_path, fmt, _result(extra=extra)), id=f"{fmt}-{i}"))
        orders.append([*OK, *keys, "parity"])
    entries.append(_entry(tmp_path, "onnx", ExportSkipped("no backend here"), "fp16"))
    entries.append(replace(_entry(tmp_path, "onnx", RuntimeError("converter bug"), "fp16", 1.0), id="failed"))
    orders += [[*HEAD, "status", "reason"]] * 2
    fails = {"runtime": "onnxruntime", "delta_map": -3.0, "failures": ["ΔmAP"]}
    passes = {**fails, "delta_map": -0.1, "failures": []}
    ok = _entry(tmp_path, "onnx", _result(quantization={"quantizer": "ort-qdq"}), "int8")
    repairs = {  # case -> (scheme, gate results, re-exports, the repair record's keys)
        "passes": (None, [passes], [], ["before", "needed"]),
        "not-checked": (None, [{"runtime": None, "failures": ["cannot run here"]}], [], ["before", "needed"]),
        "cannot": (None, [fails], [], ["before", "needed", "repaired", "reason"]),
        "repaired": ({}, [fails, fails, passes], [ok, ok], ["before", "needed", "repaired", "kept_float", "after",
                                                             "tries", "stopping", "ranking"]),
        "not-repaired": ({}, [fails, fails, fails], [ok, ok], ["before", "needed", "repaired", "tries", "stopping",
                                                               "ranking", "reason"]),
    }
    for case, (scheme, gate, trials, keys) in repairs.items():
        entries.append(replace(_repaired(tmp_path, scheme, gate, trials), id=f"int8-{case}"))
        orders.append([*OK, "parity", "repair"])
    monkeypatch.setattr(writer, "_embed_here", lambda path, entry, x: (None, "no runtime for this format here"))
    entries.append(replace(_entry(tmp_path, "tensorrt", _result()), id="parity-skipped"))
    orders.append([*OK, "parity"])

    base = read_manifest(onnx_bundle).manifest
    m = replace(base, artifacts=tuple(entries), device={"name": "phone", "chosen": entries[0].id})
    d = json.loads(_written(m.to_dict(), tmp_path))
    assert [list(a) for a in d["artifacts"]] == orders
    assert [list(a["repair"]) for a in d["artifacts"] if "repair" in a] == [r[3] for r in repairs.values()]
    assert list(d["artifacts"][-1]["parity"]) == ["runtime", "skipped"]
    assert list(d)[-2:] == ["probe", "device"]  # a sub-bundle's device record is written last
    back = Manifest.from_dict(d)
    assert back == m and _written(back.to_dict(), tmp_path) == _written(d, tmp_path)


def test_keys_no_field_names_are_kept_as_read(onnx_bundle):
    """A key from another swedge version is neither refused nor dropped when a sub-bundle is written."""
    d = json.loads((onnx_bundle / MANIFEST).read_text())
    d["future"] = {"x": 1}
    d["artifacts"][0]["future_fact"] = [1, 2]
    assert Manifest.from_dict(d).to_dict() == d


def test_reading_and_verifying_a_bundle_needs_no_torch(onnx_bundle):
    """The device side (numpy + one runtime): records, read_manifest and verify with torch unimportable."""
    code = ("import sys; sys.modules['torch'] = None\n"  # `import torch` raises ImportError from here on
            "from swedge.runtimes.manifest import read_manifest\n"
            "from swedge.runtimes.manifest_types import Manifest\n"
            "from swedge.runtimes.verify import verify_bundle\n"
            f"b = read_manifest({str(onnx_bundle)!r})\n"
            "assert Manifest.from_dict(b.manifest.to_dict()) == b.manifest\n"
            f"r = verify_bundle({str(onnx_bundle)!r}, progress=False)\n"
            "assert r.passed, r.table()\n"
            "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("entry", [
    {"id": "a", "format": "onnx", "width": 0.5, "precision": "fp32", "status": "ok", "path": "../a.onnx",
     "sha256": "0" * 64},
    {"id": "a", "format": "onnx", "width": 0.5, "precision": "fp32", "status": "ok", "path": "a.onnx",
     "sha256": "abc"},
])
def test_load_reads_a_dict_entry_as_the_record_and_refuses_a_bad_one(entry):
    from swedge.errors import SwedgeError
    from swedge.runtimes import load

    with pytest.raises(SwedgeError, match=r"'artifact\.(path|sha256)'"):
        load(entry, bundle_root=".")
