"""OpenVINO exporter + NNCF int8 quantizer + OpenVINO runner, checked against the torch sub-model of every width."""

import subprocess
import sys
import time

import numpy as np
import pytest

import swedge.exporters.openvino  # noqa: F401  (registers the exporter and, through it, the quantizer)
from swedge.calibration.nncf_ptq import NNCF_QUANTIZER, quantize_openvino
from swedge.errors import MissingDependencyError, SwedgeError
from swedge.exporters.base import EXPORTERS, ExportJob
from swedge.runtimes.base import RUNTIMES
from swedge.runtimes.openvino_runner import OpenVINORunner

SIZE = (64, 32)
WIDTHS = (0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    import torch

    from swedge.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def calib(tiny_market):
    from swedge.calibration.dataset import build_calibration_set
    from swedge.data.preprocess import Preprocess

    return build_calibration_set(tiny_market, Preprocess(size=SIZE), size=16, progress=False)


@pytest.fixture(scope="module")
def held_out(tiny_market):
    """Query + gallery images (never seen by calibration, which draws from bounding_box_train)."""
    from PIL import Image

    from swedge.data.preprocess import Preprocess, preprocess_numpy

    files = sorted((tiny_market / "query").glob("*.jpg")) + sorted((tiny_market / "bounding_box_test").glob("*.jpg"))
    return np.stack([preprocess_numpy(Image.open(f), Preprocess(size=SIZE)) for f in files]).astype(np.float32)


@pytest.fixture(scope="module")
def export(ckpt, calib, tmp_path_factory):
    """export(width, precision) -> (ExportResult, sliced torch module, seconds); each artifact is built once."""
    from swedge.nn.slicing import slice_model

    root, cache = tmp_path_factory.mktemp("openvino"), {}

    def run(width, precision):
        if (width, precision) not in cache:
            module = slice_model(ckpt.model, width).eval()
            job = ExportJob(module=module, width=width, precision=precision, out=root / f"w{width}-{precision}",
                            input_shape=(3, *SIZE), example=calib.inputs[:2], calibration=calib,
                            metadata={"width": str(width), "precision": precision,
                                      "checkpoint_sha256": ckpt.file_sha256})
            t0 = time.perf_counter()
            result = EXPORTERS.get("openvino")().export(job)
            cache[width, precision] = (result, module, time.perf_counter() - t0)
        return cache[width, precision]

    return run


def cosine(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
# Width 0.75 runs in the e2e lane (`make test-e2e`): the default lane keeps the smallest, a middle and the full.
@pytest.mark.parametrize("width", [w if w != 0.75 else pytest.param(w, marks=pytest.mark.e2e) for w in WIDTHS])
def test_parity_and_dynamic_batch(export, held_out, width, precision):
    import torch

    result, module, seconds = export(width, precision)
    with torch.no_grad():
        ref = module(torch.from_numpy(held_out)).numpy()
    runner = RUNTIMES.get("openvino")(result.path, threads=1)
    got = runner.embed(held_out)
    cos = cosine(ref, got)
    print(f"openvino w={width} {precision}: cosine min {cos.min():.6f} mean {cos.mean():.6f}, "
          f"max abs {np.abs(ref - got).max():.2e}, export {seconds:.1f} s")
    from swedge.runtimes.thresholds import DEFAULT

    failures = DEFAULT.feature_failures(precision, got, ref)
    assert not failures, failures
    # The same compiled model takes batch 1 and batch 5 (dynamic batch) and gives the rows of the full batch.
    for n in (1, 5):
        assert np.allclose(runner.embed(held_out[:n]), got[:n], atol=1e-5)
    assert result.runtimes == ["openvino"] and result.batch == "dynamic"


@pytest.mark.slow
def test_fp32_ir_keeps_fp32_weights_and_fp16_compresses(export):
    fp32, fp16 = export(0.25, "fp32")[0].path, export(0.25, "fp16")[0].path
    xml32 = (fp32 / "model.xml").read_text()
    assert 'element_type="f16"' not in xml32 and 'element_type="f32"' in xml32
    assert 'element_type="f16"' in (fp16 / "model.xml").read_text()
    # fp32 weights take 4 bytes each: the .bin is about twice the fp16 one
    ratio = (fp32 / "model.bin").stat().st_size / (fp16 / "model.bin").stat().st_size
    assert 1.9 < ratio < 2.1


@pytest.mark.slow
def test_int8_ir_has_fake_quantize_and_records_calibration(export, calib):
    result = export(0.5, "int8")[0]
    xml = (result.path / "model.xml").read_text()
    assert xml.count('type="FakeQuantize"') > 0 and 'element_type="i8"' in xml
    q = result.quantization
    assert q["quantizer"] == "nncf-ptq" and q["backend"] == "openvino" and q["scope"] == "weights+activations"
    assert q["calibration_sha256"] == calib.sha256 and q["calibration_size"] == calib.size
    assert q["preset"] == "performance" and q["subset_size"] == calib.size
    # fast vs full bias correction chosen on held-out calibration images: the recorded one is the better scored
    scores = q["selection"]["mean_cosine"]
    assert set(scores) == {"fast", "full"} and q["bias_correction"] == max(scores, key=scores.get)
    assert q["selection"]["held_out_images"] == 4 and q["overflow_fix"] == "enable"
    assert "nncf" in result.tools and "openvino" in result.tools


@pytest.mark.slow
def test_metadata_round_trips(export, ckpt):
    result = export(0.25, "fp32")[0]
    runner = OpenVINORunner(result.path / "model.xml")  # the .xml path works as well as the folder
    assert runner.metadata() == {"width": "0.25", "precision": "fp32", "checkpoint_sha256": ckpt.file_sha256}
    assert runner.describe() == {"runtime": "openvino", "label": "OpenVINO CPU (f32 inference precision)",
                                 "version": runner.version(), "device": "CPU", "inference_precision": "f32"}


# Run in a child process: compiling with a bf16 / f16 hint in a process that has loaded torch's own oneDNN (and
# run ~200 tests) crashed OpenVINO 2025 with SIGSEGV here; alone it never did. The child also proves the check
# needs neither torch nor nncf.
PRECISION_PROBE = """
import json, sys
import numpy as np
import openvino as ov
from swedge.runtimes.openvino_runner import OpenVINORunner
path, asked, inputs = sys.argv[1], sys.argv[2] or None, np.load(sys.argv[3])
core = ov.Core()
config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}
if asked:
    config["INFERENCE_PRECISION_HINT"] = asked
truth = (core.compile_model(core.read_model(path + "/model.xml"), "CPU", config)
         .get_property("INFERENCE_PRECISION_HINT").get_type_name())
runner = OpenVINORunner(path, threads=1, inference_precision=asked)
y = runner.embed(inputs)
pinned = OpenVINORunner(path, threads=1).embed(inputs)
print(json.dumps({"truth": truth, "described": runner.describe()["inference_precision"], "label": runner.label,
                  "shape": list(y.shape), "max_diff": float(np.abs(y - pinned).max())}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("asked", [None, "f16"])
def test_plugin_default_precision_is_reported(export, held_out, asked, tmp_path):
    """Without the f32 pin the CPU plugin may pick bf16 (CPUs with native bf16), and f16 falls back to bf16 on a
    CPU without native f16: describe() says what it ran. The truth comes from OpenVINO itself (the same IR
    compiled here with the same hints), and from the numbers: a non-f32 run differs from the f32-pinned one."""
    import json

    pytest.importorskip("openvino")
    path = export(0.25, "fp32")[0].path
    np.save(tmp_path / "x.npy", held_out[:4])
    proc = subprocess.run([sys.executable, "-c", PRECISION_PROBE, str(path), asked or "", str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["shape"] == [4, 32]
    assert r["described"] == r["truth"]
    if r["truth"] != asked:
        assert f"({r['truth']} inference precision, asked for {asked or 'plugin default'})" in r["label"]
    if r["truth"] == "f32":
        assert r["max_diff"] <= 1e-6
    else:
        assert r["max_diff"] > 1e-5  # it really computed in the lower precision


@pytest.mark.slow
def test_runner_is_torch_free(export):
    path = export(0.25, "int8")[0].path
    code = ("import sys, numpy as np\nfrom swedge.runtimes.openvino_runner import OpenVINORunner\n"
            f"y = OpenVINORunner({str(path)!r}, threads=1).embed(np.zeros((2, 3, {SIZE[0]}, {SIZE[1]}), np.float32))\n"
            "assert y.shape == (2, 32), y.shape\nassert 'torch' not in sys.modules and 'nncf' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_runner_rejects_bad_input(export):
    runner = OpenVINORunner(export(0.25, "fp32")[0].path, threads=1)
    with pytest.raises(SwedgeError, match=r"expects \(N, 3, 64, 32\)"):
        runner.embed(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(SwedgeError, match="NCHW"):
        runner.embed(np.zeros((3, 64, 32), np.float32))


def test_runner_rejects_bad_artifacts(tmp_path):
    with pytest.raises(SwedgeError, match="does not exist"):
        OpenVINORunner(tmp_path / "nope").load()
    with pytest.raises(SwedgeError, match="not an OpenVINO IR"):
        OpenVINORunner(tmp_path).load()  # a folder without model.xml
    (tmp_path / "model.xml").write_text("<net>")
    with pytest.raises(SwedgeError, match=r"model\.bin is missing"):
        OpenVINORunner(tmp_path).load()
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(SwedgeError, match="cannot read"):
        OpenVINORunner(tmp_path).load()
    with pytest.raises(SwedgeError, match="inference_precision"):
        OpenVINORunner(tmp_path, inference_precision="int4")


def test_missing_openvino_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'swedge\[openvino\]'"):
        OpenVINORunner(tmp_path).load()
    assert "pip install 'swedge[openvino]'" in EXPORTERS.get("openvino")().missing()


def test_missing_nncf_names_the_extra(monkeypatch, calib):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'swedge\[openvino\]'"):
        quantize_openvino(object(), calib)


def test_int8_needs_calibration(tmp_path):
    job = ExportJob(module=None, width=1.0, precision="int8", out=tmp_path / "a", input_shape=(3, *SIZE),
                    example=np.zeros((1, 3, *SIZE), np.float32))
    with pytest.raises(SwedgeError, match="--calib"):
        EXPORTERS.get("openvino")().export(job)
    assert not (tmp_path / "a").exists()


def test_quantizer_options_are_checked(calib):
    with pytest.raises(SwedgeError, match="unknown NNCF preset"):
        quantize_openvino(object(), calib, preset="fast")
    with pytest.raises(SwedgeError, match="subset_size"):
        quantize_openvino(object(), calib, subset_size=0)
    assert NNCF_QUANTIZER.record(calib)["calibration_sha256"] == calib.sha256


def test_example_shape_is_checked(ckpt, tmp_path):
    from swedge.nn.slicing import slice_model

    job = ExportJob(module=slice_model(ckpt.model, 0.25), width=0.25, precision="fp32", out=tmp_path / "a",
                    input_shape=(3, *SIZE), example=np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(SwedgeError, match=r"expected \(N, 3, 64, 32\)"):
        EXPORTERS.get("openvino")().export(job)


def test_registered():
    assert "openvino" in EXPORTERS and "openvino" in RUNTIMES and NNCF_QUANTIZER.name == "nncf-ptq"
