"""One format table (swedge.exporters.formats): every list of formats reads it, and adding a format is one exporter
file, one runner file and one row, with no product file edited (the toy 'npz' format below)."""

import subprocess
import sys

import numpy as np
import pytest

from swedge.errors import SwedgeError
from swedge.exporters.base import EXPORTERS, ExportJob
from swedge.exporters.formats import FORMATS, Format, export_tools, format_of, runner_modules
from swedge.registry import Registry
from swedge.runtimes.base import RUNTIMES

TOY_EXPORTER = '''
import numpy as np

from swedge.exporters.base import EXPORTERS, Exporter, ExportResult


@EXPORTERS.register("npz")
class NpzExporter(Exporter):
    """The sliced model's weights as numpy arrays, plus a projection of the input to the embedding size."""

    def _export(self, job):
        import torch

        with torch.no_grad():
            dim = job.module(torch.from_numpy(job.example[:1])).shape[1]
        size = int(np.prod(job.input_shape))
        projection = np.random.default_rng(0).standard_normal((size, dim)).astype(np.float32) / size ** 0.5
        weights = {k.replace(".", "/"): v.numpy() for k, v in job.module.state_dict().items()}
        np.savez(job.out, projection=projection, **weights)
        return ExportResult(job.out, tools={"numpy": np.__version__})
'''

TOY_RUNNER = '''
import numpy as np

from swedge.runtimes.base import RUNTIMES, Runner


@RUNTIMES.register("numpy")
class NpzRunner(Runner):
    """A stand-in forward (the input times the stored projection): the plumbing is under test, not fidelity."""

    label = "numpy (toy)"

    def _load(self):
        self.projection = np.load(self.path)["projection"]

    def _infer(self, x):
        return x.reshape(len(x), -1) @ self.projection
'''


@pytest.fixture
def toy_format(tmp_path, monkeypatch):
    """The 'npz' format: its exporter and runner modules written to a folder on sys.path, and its row."""
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy_npz_exporter.py").write_text(TOY_EXPORTER)
    (folder / "toy_npz_runner.py").write_text(TOY_RUNNER)
    monkeypatch.syspath_prepend(str(folder))
    row = Format("npz", "NPZ", extra="", exporter="toy_npz_exporter", runners={"numpy": "toy_npz_runner"},
                 suffix=".npz", precisions=("fp32",), calibrated=(), libraries=("toy-npz-runtime",))
    monkeypatch.setitem(FORMATS, "npz", row)
    yield row
    EXPORTERS._entries.pop("npz", None)  # forget the toy: the next test imports its modules afresh
    RUNTIMES._entries.pop("numpy", None)
    for module in ("toy_npz_exporter", "toy_npz_runner"):
        sys.modules.pop(module, None)


def test_a_toy_format_is_exported_listed_and_loaded(toy_format, tiny_checkpoint, tiny_market, tmp_path, capsys):
    from swedge import runtimes
    from swedge.api import EXPORT_FORMATS, export_plan
    from swedge.cli import main
    from swedge.runtimes.manifest import read_manifest
    from swedge.runtimes.verify_cli import check_names

    assert "npz" in EXPORT_FORMATS and "npz" in export_plan(tiny_checkpoint, tmp_path / "x").formats
    out = tmp_path / "bundle"
    rc = main(["export", str(tiny_checkpoint), "--out", str(out), "--formats", "npz", "--widths", "0.25",
               "--precisions", "fp32,fp16", "--probe", str(tiny_market), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    bundle = read_manifest(out)  # the manifest check knows the format and its runtime from the table
    fp32, fp16 = bundle.artifacts
    assert fp32.status == "ok" and fp32.path == "npz/w0.25-fp32.npz" and fp32.runtimes == ("numpy",)
    assert fp32.parity.runtime == "numpy" and "numpy" in bundle.manifest.tools
    assert fp16.status == "skipped" and fp16.reason == "npz does not support precision 'fp16' (supports fp32)"
    probe = np.load(out / bundle.manifest.probe.inputs)[:3]
    by_suffix = runtimes.load(out / fp32.path)
    by_entry = runtimes.load(fp32, bundle_root=out)
    assert type(by_suffix).__name__ == type(by_entry).__name__ == "NpzRunner" and by_entry.name == "numpy"
    assert np.array_equal(by_suffix.embed(probe), by_entry.embed(probe)) and by_entry.embed(probe).shape == (3, 32)
    check_names(["numpy"], ["npz"])  # `swedge verify --runtime numpy --formats npz` is accepted


def test_help_texts_and_the_demo_list_a_toy_format(toy_format, capsys):
    from swedge.cli import main
    from swedge.demo import DemoConfig

    assert DemoConfig().formats[-1] == "npz"
    helps = {}
    for argv in (["--help"], ["export", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        helps[argv[0]] = " ".join(capsys.readouterr().out.split())
    assert "ONNX/OpenVINO/TFLite/Core ML/TensorRT/NPZ" in helps["--help"]
    assert "ONNX / OpenVINO / TFLite / Core ML / TensorRT / NPZ" in helps["--help"]  # the export command's line
    assert "onnx,openvino,tflite,coreml,tensorrt,npz" in helps["export"]
    assert "onnx,openvino,tflite,coreml,tensorrt,npz" in helps["demo"]


def test_the_exporter_base_guards_precision_and_calibration_from_the_row(toy_format, monkeypatch, tmp_path):
    from swedge.exporters import load_exporters

    exporter = load_exporters().get("npz")()
    job = ExportJob(module=None, width=1.0, precision="fp16", out=tmp_path / "m.npz", input_shape=(3, 8, 4),
                    example=np.zeros((1, 3, 8, 4), np.float32))
    with pytest.raises(SwedgeError, match=r"npz does not support precision 'fp16' \(supports fp32\)"):
        exporter.export(job)
    monkeypatch.setitem(FORMATS, "npz", Format(**{**toy_format.__dict__, "calibrated": ("fp32",)}))
    with pytest.raises(SwedgeError, match="npz fp32 needs calibration data: pass --calib"):
        exporter.export(ExportJob(**{**job.__dict__, "precision": "fp32"}))
    assert not (tmp_path / "m.npz").exists()


def test_the_five_formats_keep_their_runtimes_suffixes_and_tools(monkeypatch, tmp_path):
    from swedge.exporters import load_exporters
    from swedge.runtimes import runtimes_for
    from swedge.runtimes.manifest_types import ArtifactEntry

    def of(fmt):  # an entry that lists no runtimes: its format's
        return ArtifactEntry(id=fmt, format=fmt, width=1.0, precision="fp32", status="ok")

    assert list(load_exporters()) == list(FORMATS) == ["onnx", "openvino", "tflite", "coreml", "tensorrt"]
    assert all(EXPORTERS.get(n).name == n for n in EXPORTERS) and all(RUNTIMES.get(n).name == n for n in RUNTIMES)
    defaults = {f: runtimes_for(of(f)) for f in FORMATS}
    assert defaults == {"onnx": ["onnxruntime"], "openvino": ["openvino"], "tflite": ["litert"],
                        "coreml": ["coreml-mil"], "tensorrt": ["tensorrt", "onnxruntime-qdq"]}
    monkeypatch.setattr(sys, "platform", "darwin")
    assert runtimes_for(of("coreml")) == ["coreml", "coreml-mil"]
    assert set(runner_modules()) == {"onnxruntime", "onnxruntime-qdq", "openvino", "litert", "coreml", "coreml-mil",
                                     "tensorrt", "torch"}
    assert export_tools() == ("onnx", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert",
                              "coremltools")  # the bundle header's tool list, as before the table
    from swedge.runtimes.host import libraries

    assert libraries() == ("numpy", "onnxruntime", "openvino", "nncf", "ai-edge-litert", "tflite-runtime",
                           "coremltools", "tensorrt", "torch")  # the host record's list, as before the table
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "model.xml").touch()
    (tmp_path / "trt").mkdir()
    (tmp_path / "trt" / "model.onnx").touch()
    paths = {"a.onnx": "onnx", "ir/model.xml": "openvino", "ir": "openvino", "a.tflite": "tflite",
             "a.mlpackage": "coreml", "a.engine": "tensorrt", "trt": "tensorrt", "a.bin": None}
    assert {p: format_of(tmp_path / p) for p in paths} == paths


def test_a_new_formats_runtime_library_is_named_in_the_host_record(toy_format, monkeypatch):
    from swedge.runtimes import host

    monkeypatch.setattr(host.importlib.metadata, "version", lambda name: "9.9" if name == "toy-npz-runtime" else "1")
    assert host.library_versions()["toy-npz-runtime"] == "9.9"


def test_the_registry_names_what_it_registers():
    things: Registry = Registry("thing")

    @things.register("widget")
    class Widget:
        pass

    assert Widget.name == "widget" and things.get("widget") is Widget
    with pytest.raises(SwedgeError, match="unknown thing 'widgit'. Did you mean 'widget'?"):
        things.get("widgit")


def test_the_table_and_the_runtimes_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
            "import swedge.exporters.formats, swedge.runtimes\n"
            "assert swedge.runtimes.runner_class('onnxruntime').name == 'onnxruntime'")
    subprocess.run([sys.executable, "-c", code], check=True)

