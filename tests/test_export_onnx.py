"""ONNX exporter (fp32 / fp16 / int8 QDQ), the onnxruntime QDQ quantizer and the onnxruntime runner.

Parity is measured against the torch sub-model of the same width on real-ish images (the synthetic Market
set's query + gallery crops; calibration uses its training split), with the precision thresholds of docs/design.md §6.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from swedge.calibration.ort_qdq import QDQ_QUANTIZER, quantize_onnx_qdq  # noqa: E402
from swedge.errors import MissingDependencyError, SwedgeError  # noqa: E402
from swedge.exporters.base import EXPORTERS, ExportJob  # noqa: E402
from swedge.exporters.onnx import ONNX_INT8, OnnxExporter, export_onnx  # noqa: E402
from swedge.runtimes.base import RUNTIMES, RuntimeUnavailable  # noqa: E402
from swedge.runtimes.ort_runner import OrtRunner  # noqa: E402
from swedge.runtimes.thresholds import DEFAULT  # noqa: E402

WIDTHS = (0.25, 0.5, 0.75, 1.0)
SHAPE = (3, 64, 32)


def cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    from swedge.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def calib(tiny_market):
    from swedge.calibration.dataset import build_calibration_set
    from swedge.data.preprocess import Preprocess

    return build_calibration_set(tiny_market, Preprocess(size=SHAPE[1:]), size=16, progress=False)


@pytest.fixture(scope="module")
def probe(tiny_market):
    """Held-out crops (query + gallery), never seen by calibration."""
    from swedge.calibration.dataset import build_calibration_set
    from swedge.data.preprocess import Preprocess

    sets = [build_calibration_set(tiny_market / split, Preprocess(size=SHAPE[1:]), size=64, progress=False)
            for split in ("query", "bounding_box_test")]
    return np.concatenate([s.inputs for s in sets])


@pytest.fixture(scope="module")
def sub(ckpt):
    from swedge.nn.slicing import slice_model

    cache = {}

    def get(width):
        if width not in cache:
            cache[width] = slice_model(ckpt.model, width).eval()
        return cache[width]

    return get


@pytest.fixture(scope="module")
def reference(sub, probe):
    import torch

    def get(width, x=probe):
        with torch.no_grad():
            return sub(width)(torch.from_numpy(x)).numpy()

    return get


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, sub, calib, probe):
    """Export (width, precision) once per module through the registered exporter; returns (path, result)."""
    root = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(width, precision):
        if (width, precision) not in cache:
            out = root / f"w{width:g}-{precision}.onnx"
            job = ExportJob(module=sub(width), width=width, precision=precision, out=out, input_shape=SHAPE,
                            example=probe[:4], calibration=calib, max_batch=16, workdir=root / "work",
                            metadata={"swedge.width": f"{width:g}", "swedge.precision": precision})
            cache[width, precision] = (out, EXPORTERS.get("onnx")().export(job))
        return cache[width, precision]

    return get


def run(path, x, **kw):
    with OrtRunner(path, threads=1, **kw) as runner:
        return runner.embed(x)


# -- parity, every width and precision --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("width", WIDTHS)
def test_parity_with_torch(artifact, reference, probe, width, precision, record_property):
    path, _ = artifact(width, precision)
    cos = cosine(run(path, probe), reference(width))
    record_property("cosine", {"min": float(cos.min()), "mean": float(cos.mean())})
    print(f"\nw={width} {precision}: cosine min {cos.min():.6f} mean {cos.mean():.6f} "
          f"({path.stat().st_size / 1e6:.2f} MB)")
    failures = DEFAULT.feature_failures(precision, run(path, probe), reference(width))
    assert not failures, failures


def test_dynamic_batch(artifact, reference, probe):
    path, result = artifact(0.25, "fp32")
    assert result.batch == "dynamic"
    dim0 = onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.HasField("dim_value")
    one, five = run(path, probe[:1]), run(path, probe[:5])
    assert one.shape == (1, 32) and five.shape == (5, 32)
    assert not DEFAULT.feature_failures("fp32", one, reference(0.25, probe[:1]))
    assert not DEFAULT.feature_failures("fp32", five, reference(0.25, probe[:5]))
    np.testing.assert_allclose(one[0], five[0], atol=1e-6)


@pytest.mark.slow
def test_static_batch_export_and_runner(tmp_path, sub, reference, probe, capfd):
    path = tmp_path / "static.onnx"
    tools = export_onnx(sub(0.25), path, input_shape=SHAPE, example=probe[:1], max_batch=1)
    assert {"torch", "onnx", "onnxscript"} <= set(tools)
    err = capfd.readouterr().err
    assert "torchvision" not in err and "FutureWarning" not in err  # the exporter's known noise is hidden
    assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    runner = OrtRunner(path, threads=1).load()
    assert runner.max_batch == 1  # detected from the graph input, so embed() feeds one row at a time
    y = runner.embed(probe[:3])
    assert not DEFAULT.feature_failures("fp32", y, reference(0.25, probe[:3]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["static.onnx"]  # atomic write left no temp file


# -- what is inside the files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_metadata_checker_and_result(artifact, calib, precision):
    path, result = artifact(0.25, precision)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["swedge.width"] == "0.25" and props["swedge.precision"] == precision
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["embedding"]
    assert result.path == path and result.runtimes == ["onnxruntime"]
    assert {"torch", "onnx"} <= set(result.tools)
    assert not list(path.parent.glob("*.partial"))
    if precision == "int8":
        q = result.quantization
        assert q["quantizer"] == "onnxruntime-qdq" and q["calibration_sha256"] == calib.sha256
        chosen = ONNX_INT8[q["setting"]]  # picked by held-out calibration images, the best mean cosine
        assert q["method"] == chosen["method"] and q["symmetric_activations"] == chosen["symmetric_activations"]
        assert q["per_channel"] and q["float_ops"] == ["Gemm"]
        scores = q["selection"]["mean_cosine"]
        assert set(scores) == set(ONNX_INT8) and scores[q["setting"]] == max(scores.values())
        assert "onnxruntime" in result.tools
    else:
        assert result.quantization is None


@pytest.mark.parametrize("width", [WIDTHS[0], *(pytest.param(w, marks=pytest.mark.slow) for w in WIDTHS[1:])])
def test_only_sliced_weights_are_shipped(artifact, sub, ckpt, width):
    """Initializers hold exactly the sliced parameters, less what BN folding removes (no full-width weights)."""
    from torch import nn

    from swedge.nn.slicing import count_parameters

    module = sub(width)
    params = count_parameters(module)
    # Folding a BN's 2C affine parameters into the preceding Conv/Gemm leaves at most a C bias (none when it is all
    # zero, e.g. a zero-init residual BN); the Linear's own bias merges into that bias.
    folded = 2 * sum(m.num_features for m in module.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    folded += module.neck.bias.numel() if module.neck.bias is not None else 0
    numel = sum(int(np.prod(i.dims)) for i in onnx.load(artifact(width, "fp32")[0]).graph.initializer)
    assert params - folded <= numel <= params
    if width < 1.0:
        assert numel < 0.6 * count_parameters(sub(1.0))


def test_int8_graph_is_qdq_as_the_chosen_setting(artifact):
    path, result = artifact(0.25, "int8")
    model = onnx.load(path)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quant[0].input[0] == "input"  # activations are quantized from the graph input on
    zero_points = [init[node.input[2]] for node in quant]
    assert all(zp.dtype == np.int8 for zp in zero_points)
    asymmetric = not ONNX_INT8[result.quantization["setting"]]["symmetric_activations"]
    assert any(zp.any() for zp in zero_points) == asymmetric  # asymmetric: post-ReLU ranges get a zero point
    (gemm,) = [n for n in model.graph.node if n.op_type == "Gemm"]  # the embedding layer stays float
    assert init[gemm.input[1]].dtype == np.float32
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    for node in model.graph.node:  # weights stay symmetric (int8, zero point 0)
        if node.op_type == "DequantizeLinear" and node.output[0] in weights and len(node.input) > 2:
            assert not init[node.input[2]].any(), node.name


def test_quantizer_float_bias_for_tensorrt(artifact, calib, reference, probe, tmp_path):
    """quantize_bias=False (what TensorRT wants) keeps float biases; another method (percentile) also works."""
    out = tmp_path / "q.onnx"
    facts = quantize_onnx_qdq(artifact(0.25, "fp32")[0], out, calib, method="percentile", quantize_bias=False)
    assert facts["method"] == "percentile" and facts["quantize_bias"] is False
    model = onnx.load(out)
    init = {i.name: i for i in model.graph.initializer}
    dq_types = {init[n.input[0]].data_type for n in model.graph.node
                if n.op_type == "DequantizeLinear" and n.input[0] in init}
    assert dq_types == {onnx.TensorProto.INT8}  # no int32 bias tensors
    assert not DEFAULT.feature_failures("int8", run(out, probe), reference(0.25))


def test_fp16_initializers_are_float16_with_float32_io(artifact):
    model = onnx.load(artifact(0.25, "fp16")[0])
    kinds = {i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


# -- errors a user can hit --------------------------------------------------------------------------------------
def test_int8_without_calibration_names_the_flag(tmp_path, sub):
    job = ExportJob(module=sub(0.25), width=0.25, precision="int8", out=tmp_path / "m.onnx", input_shape=SHAPE,
                    example=np.zeros((1, *SHAPE), np.float32))
    with pytest.raises(SwedgeError, match="onnx int8 needs calibration data: pass --calib"):
        OnnxExporter().export(job)
    with pytest.raises(SwedgeError, match="onnx does not support precision 'int4'"):
        OnnxExporter().export(ExportJob(**{**job.__dict__, "precision": "int4"}))
    assert not list(tmp_path.iterdir())


def test_example_of_the_wrong_shape(tmp_path, sub):
    with pytest.raises(SwedgeError, match=r"example inputs must be \(N, 3, 64, 32\)"):
        export_onnx(sub(0.25), tmp_path / "m.onnx", input_shape=SHAPE, example=np.zeros((2, 3, 32, 32), np.float32))


def test_quantizer_record_and_bad_arguments(artifact, calib, tmp_path):
    from swedge.calibration.dataset import CalibrationSet

    record = QDQ_QUANTIZER.record(calib, method="minmax")
    assert record["quantizer"] == "onnxruntime-qdq" and record["backend"] == "onnxruntime"
    assert record["calibration_size"] == 16
    src = artifact(0.25, "fp32")[0]
    with pytest.raises(SwedgeError, match="unknown calibration method 'kl'.*minmax, entropy, percentile"):
        quantize_onnx_qdq(src, tmp_path / "q.onnx", calib, method="kl")
    wrong = CalibrationSet(np.zeros((4, 3, 32, 32), np.float32), "x", "test")
    with pytest.raises(SwedgeError, match="calibration inputs have shape"):
        quantize_onnx_qdq(src, tmp_path / "q.onnx", wrong)
    with pytest.raises(SwedgeError, match="needs calibration data"):
        quantize_onnx_qdq(src, tmp_path / "q.onnx", None)
    assert not list(tmp_path.iterdir())


def test_runner_missing_dependency(monkeypatch, artifact):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'swedge\[onnx\]'"):
        OrtRunner(artifact(0.25, "fp32")[0]).load()


def test_runner_bad_inputs(artifact, probe, tmp_path):
    path = artifact(0.25, "fp32")[0]
    with pytest.raises(SwedgeError, match=r"expects input \(N, 3, 64, 32\), got \(2, 3, 32, 32\)"):
        run(path, np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(SwedgeError, match="expected an NCHW batch"):
        run(path, np.zeros((3, 64, 32), np.float32))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SwedgeError, match="holds no model.onnx"):
        run(tmp_path / "empty", probe[:1])
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(SwedgeError, match="cannot load"):
        run(tmp_path / "junk.onnx", probe[:1])
    with pytest.raises(SwedgeError, match="does not exist"):
        run(tmp_path / "missing.onnx", probe[:1])
    with pytest.raises(RuntimeUnavailable, match="NoSuchExecutionProvider not available"):
        run(path, probe[:1], providers=["NoSuchExecutionProvider"])


def test_runner_reads_a_folder_and_describes_itself(artifact, probe, tmp_path):
    path = artifact(0.25, "fp32")[0]
    folder = tmp_path / "trt"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(path.read_bytes())
    np.testing.assert_allclose(run(folder, probe[:2]), run(path, probe[:2]), atol=1e-6)
    assert RUNTIMES.get("onnxruntime") is OrtRunner and EXPORTERS.get("onnx") is OnnxExporter
    assert OnnxExporter().missing() is None
    info = OrtRunner(path).describe()
    assert info["version"] == ort.__version__ and info["providers"] == ["CPUExecutionProvider"]


def test_runner_runs_without_torch(artifact):
    path = str(artifact(0.25, "int8")[0])
    code = ("import sys, numpy as np; from swedge.runtimes.ort_runner import OrtRunner; "
            f"y = OrtRunner({path!r}, threads=1).embed(np.zeros((2, 3, 64, 32), np.float32)); "
            "assert y.shape == (2, 32), y.shape; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
