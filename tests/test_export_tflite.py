"""TFLite exporter (litert-torch), PT2E int8 quantizer and LiteRT runner: parity with the torch sub-model."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from swedge.calibration.pt2e import PT2E_QUANTIZER, quantize_pt2e  # noqa: E402
from swedge.errors import MissingDependencyError, SwedgeError  # noqa: E402
from swedge.exporters.base import EXPORTERS, ExportJob  # noqa: E402
from swedge.exporters.tflite import TFLiteExporter, _has_fp16_weights  # noqa: E402
from swedge.runtimes.base import RUNTIMES  # noqa: E402
from swedge.runtimes.litert_runner import LiteRTRunner, read_tflite_metadata  # noqa: E402
from swedge.runtimes.thresholds import DEFAULT  # noqa: E402

SHAPE = (3, 64, 32)


def cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tiny_market):
    import torch

    from swedge.calibration.dataset import build_calibration_set
    from swedge.checkpoint import load_checkpoint
    from swedge.data.preprocess import Preprocess

    torch.set_num_threads(1)
    pre = Preprocess(size=(64, 32))
    calib = build_calibration_set(tiny_market, pre, size=16, progress=False)
    probe = build_calibration_set(tiny_market / "query", pre, size=5, progress=False).inputs  # unseen images
    ckpt = load_checkpoint(tiny_checkpoint)
    # The backbone zero-inits each residual branch's last BN gamma, so an untrained checkpoint has dead
    # residual branches that the converter folds away (only 4 of 20 convs reach the fp32 .tflite). Give those
    # gammas real values so every conv is exported and checked (this module's own copy of the model).
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in ckpt.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.any():
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.25)
    return types.SimpleNamespace(ckpt=ckpt, calib=calib, probe=probe, cache={})


@pytest.fixture(scope="module")
def artifact(setup, tmp_path_factory):
    """export(width, precision) -> (ExportResult, torch reference features of the probe), cached per module."""
    import torch

    from swedge.nn.slicing import slice_model

    def export(width, precision, max_batch=16, metadata=True):
        key = (width, precision, max_batch, metadata)
        if key not in setup.cache:
            module = slice_model(setup.ckpt.model, width).eval()
            out = tmp_path_factory.mktemp("tflite") / f"w{width}_{precision}.tflite"
            job = ExportJob(module=module, width=width, precision=precision, out=out, input_shape=SHAPE,
                            example=setup.calib.inputs[:2], calibration=setup.calib, max_batch=max_batch,
                            metadata={"width": str(width), "precision": precision} if metadata else {})
            with torch.no_grad():
                ref = module(torch.from_numpy(setup.probe)).numpy()
            setup.cache[key] = (TFLiteExporter().export(job), ref)
        return setup.cache[key]

    return export


def run_both_batches(path, probe):
    runner = LiteRTRunner(path, threads=1)
    return runner, runner.embed(probe), runner.embed(probe[:1])


def test_registered():
    assert EXPORTERS.get("tflite") is TFLiteExporter
    assert RUNTIMES.get("litert") is LiteRTRunner
    assert PT2E_QUANTIZER.name == "litert-pt2e" and PT2E_QUANTIZER.backend == "litert"


@pytest.mark.slow
# The default lane converts two widths per precision; the e2e lane (`make test-e2e`) the rest.
@pytest.mark.parametrize("width", [0.25, 0.5, pytest.param(0.75, marks=pytest.mark.e2e), pytest.param(1.0, marks=pytest.mark.e2e)])
def test_fp32_every_width_dynamic_batch(artifact, setup, width):
    result, ref = artifact(width, "fp32")
    assert result.batch == "dynamic" and result.extra["input_shape"] == [-1, *SHAPE]
    assert result.runtimes == ["litert"] and result.quantization is None and "litert-torch" in result.tools
    runner, y5, y1 = run_both_batches(result.path, setup.probe)
    assert runner.max_batch is None  # dynamic: the whole batch goes through in one call
    assert not DEFAULT.feature_failures("fp32", y5, ref) and not DEFAULT.feature_failures("fp32", y1, ref[:1])
    assert read_tflite_metadata(result.path) == {"width": str(width), "precision": "fp32"}
    assert not _has_fp16_weights(result.path.read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("width", [0.25, pytest.param(1.0, marks=pytest.mark.e2e)])
def test_fp16_weights_fp32_io(artifact, setup, width):
    result, ref = artifact(width, "fp16")
    assert result.extra["input_dtype"] == result.extra["output_dtype"] == "float32"
    assert _has_fp16_weights(result.path.read_bytes()) and "ai-edge-quantizer" in result.tools
    assert os.path.getsize(result.path) < 0.7 * os.path.getsize(artifact(width, "fp32")[0].path)
    _, y5, y1 = run_both_batches(result.path, setup.probe)
    assert not DEFAULT.feature_failures("fp16", y5, ref) and not DEFAULT.feature_failures("fp16", y1, ref[:1])


@pytest.mark.slow
@pytest.mark.parametrize("width", [0.5, pytest.param(1.0, marks=pytest.mark.e2e)])
def test_int8_full_integer(artifact, setup, width):
    from ai_edge_litert.interpreter import Interpreter

    result, ref = artifact(width, "int8")
    it = Interpreter(model_path=str(result.path))
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8
    q = result.quantization
    assert q["quantizer"] == "litert-pt2e" and q["io"] == "int8"
    assert q["calibration_sha256"] == setup.calib.sha256 and q["calibration_size"] == 16
    _, y5, y1 = run_both_batches(result.path, setup.probe)
    cos = cosines(y5, ref)
    print(f"tflite int8 w={width}: mean cosine {cos.mean():.6f}, min {cos.min():.6f}")
    assert not DEFAULT.feature_failures("int8", y5, ref) and not DEFAULT.feature_failures("int8", y1, ref[:1])


@pytest.mark.slow
def test_static_batch_when_max_batch_is_1(artifact, setup):
    result, ref = artifact(0.5, "fp16", max_batch=1, metadata=False)
    assert result.batch == "static:1" and result.extra["input_shape"] == [1, *SHAPE]
    assert read_tflite_metadata(result.path) == {}
    runner = LiteRTRunner(result.path, threads=1).load()
    assert runner.max_batch == 1  # embed() feeds the batch image by image
    assert not DEFAULT.feature_failures("fp16", runner.embed(setup.probe), ref)


def test_int8_needs_calibration(setup):
    job = ExportJob(module=None, width=0.5, precision="int8", out=setup.ckpt.path.with_suffix(".x.tflite"),
                    input_shape=SHAPE, example=setup.calib.inputs[:1])
    with pytest.raises(SwedgeError, match="--calib"):
        TFLiteExporter().export(job)
    with pytest.raises(SwedgeError, match="does not support precision"):
        TFLiteExporter().export(ExportJob(**{**job.__dict__, "precision": "int4"}))


def test_pt2e_rejects_mismatched_calibration():
    import torch

    from swedge.calibration.dataset import CalibrationSet

    bad = CalibrationSet(np.zeros((2, 3, 32, 32), np.float32), "0" * 64, "wrong-size.npy")
    with pytest.raises(SwedgeError, match="preprocessing"):
        quantize_pt2e(torch.nn.Identity(), torch.zeros(2, *SHAPE), bad)


def _hide_litert(monkeypatch):
    for mod in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, mod, None)  # None in sys.modules makes the import fail


def test_runner_missing_dependency(monkeypatch, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\0" * 16)
    _hide_litert(monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"pip install 'swedge\[tflite\]'"):
        LiteRTRunner(path).load()
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    assert "pip install 'swedge[tflite]'" in TFLiteExporter().missing()


@pytest.mark.slow
def test_runner_falls_back_to_tflite_runtime(artifact, setup, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    result, ref = artifact(0.25, "fp32")
    _hide_litert(monkeypatch)
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = Interpreter  # stands in for tflite-runtime's class, which has the same API
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    runner = LiteRTRunner(result.path, threads=1).load()
    assert runner.describe()["interpreter"] == "tflite-runtime"
    assert not DEFAULT.feature_failures("fp32", runner.embed(setup.probe), ref)


@pytest.mark.slow
def test_runner_rejects_bad_input(artifact, setup, tmp_path):
    result, _ = artifact(0.25, "fp32")
    runner = LiteRTRunner(result.path, threads=1)
    with pytest.raises(SwedgeError, match=r"expects \(N, 3, 64, 32\)"):
        runner.embed(np.zeros((2, 3, 32, 64), np.float32))
    with pytest.raises(SwedgeError, match="NCHW"):
        runner.embed(np.zeros((3, 64, 32), np.float32))
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(result.path.read_bytes()[:200])
    with pytest.raises(SwedgeError, match="not a valid TFLite model"):
        LiteRTRunner(bad).load()
    with pytest.raises(SwedgeError, match="does not exist"):
        LiteRTRunner(tmp_path / "missing.tflite").load()


def test_runner_module_is_torch_free():
    code = ("import swedge.runtimes.litert_runner, sys; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)
