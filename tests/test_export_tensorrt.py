"""TensorRT route: TRT-ready ONNX (checked in onnxruntime), engine build and runner (through small fakes of
TensorRT and polygraphy.cuda, since TensorRT cannot be installed here), unavailability reasons, static typing.

Measured on the tiny checkpoint (16 calibration images, per-row cosine vs the torch sub-model, onnxruntime CPU):
fp32 1.000000 at every width; fp16-in-ORT (min) 1.000000; int8 explicit QDQ mean 0.99997 / 0.99996 / 0.99986 /
0.99976 (min 0.99995 / 0.99993 / 0.99975 / 0.99959) for w = 0.25 / 0.5 / 0.75 / 1.0. Thresholds: the product's
(swedge.runtimes.thresholds.DEFAULT).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import numpy as np
import pytest

from swedge.errors import SwedgeError
from swedge.runtimes.thresholds import DEFAULT

WIDTHS = (0.25, 0.5, 0.75, 1.0)
REPO = Path(__file__).resolve().parents[1]


# -- shared fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tiny_checkpoint):
    import torch

    from swedge.checkpoint import load_checkpoint
    from swedge.nn.slicing import slice_model

    torch.set_num_threads(1)
    ckpt = load_checkpoint(tiny_checkpoint)
    return {w: slice_model(ckpt.model, w).eval() for w in WIDTHS}


@pytest.fixture(scope="module")
def calib(tiny_market):
    from swedge.calibration.dataset import build_calibration_set
    from swedge.data.preprocess import Preprocess

    return build_calibration_set(tiny_market, Preprocess(size=(64, 32)), size=16, progress=False)


def torch_embed(module, x):
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def ort_embed(path, x):
    """The TRT-ready ONNX as the product runs it here (runtime "onnxruntime-qdq"): graph optimizations off, so
    int8 is the QDQ arithmetic (int32-exact, like TensorRT) on every CPU, not x86's saturating int8 kernels."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    model = path if isinstance(path, bytes) else str(path)
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def row_cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def export(module, out, precision, calibration=None, max_batch=64, **kw):
    from swedge.exporters.base import ExportJob
    from swedge.exporters.tensorrt import TensorRTExporter

    job = ExportJob(module=module, width=0.0, precision=precision, out=out, input_shape=(3, 64, 32),
                    example=None if calibration is None else calibration.inputs[:4], calibration=calibration,
                    max_batch=max_batch, workdir=out.parent / f"{out.name}-work", metadata={"swedge.test": "1"})
    return TensorRTExporter(**kw).export(job)


@pytest.fixture(scope="module")
def exported(models, calib, tmp_path_factory):
    """fp32 TRT artifacts of every width, exported once (no TensorRT here: ONNX only)."""
    root = tmp_path_factory.mktemp("trt")
    return {w: export(models[w], root / f"w{w:g}-fp32", "fp32", calib) for w in WIDTHS}


@pytest.fixture(scope="module")
def int8_onnx(exported, calib, tmp_path_factory):
    """The int8 TRT-ready ONNX of every width: the exporter's own route (quantize_for_tensorrt) applied to the
    fp32 artifacts above, which saves re-tracing each width; the exporter's int8 path itself is tested below."""
    from swedge.calibration.tensorrt_calibrator import quantize_for_tensorrt

    root = tmp_path_factory.mktemp("trt-int8")
    out = {}
    for w, res in exported.items():
        out[w] = root / f"w{w:g}.onnx"
        quantize_for_tensorrt(res.path / "model.onnx", out[w], calib)
    return out


# -- the TRT-ready ONNX, run in onnxruntime -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_fp32_onnx_matches_torch_and_engine_is_skipped(exported, models, calib, width):
    res = exported[width]
    assert sorted(p.name for p in res.path.iterdir()) == ["model.onnx"]
    assert res.runtimes == ["tensorrt", "onnxruntime-qdq"] and res.batch == "dynamic"
    assert res.extra["engine"]["status"] == "skipped"
    assert "TensorRT is not installed" in res.extra["engine"]["reason"]
    assert any(n.startswith("engine not built: TensorRT is not installed") for n in res.notes)
    assert "TRT-ready ONNX (fp32)" in res.notes and "onnx" in res.tools and "tensorrt" not in res.tools
    x = calib.inputs
    ref = torch_embed(models[width], x)
    for batch in (x[:1], x[:5], x):  # dynamic batch: 1, 5 and 16 rows
        failures = DEFAULT.feature_failures("fp32", ort_embed(res.path / "model.onnx", batch), ref[:len(batch)])
        assert not failures, failures


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_fp16_precision_of_every_width(exported, models, calib, width):
    """What BuilderFlag.FP16 does to the numbers, approximated here without a GPU: the same TRT-ready ONNX
    with fp16 weights and compute (float I/O) in onnxruntime. TensorRT may keep some layers in fp32, so this
    is the pessimistic case."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(exported[width].path / "model.onnx")), keep_io_types=True)
    x = calib.inputs
    y, ref = ort_embed(half.SerializeToString(), x), torch_embed(models[width], x)
    print(f"fp16 w={width}: min cosine {row_cosine(y, ref).min():.6f}")
    assert not DEFAULT.feature_failures("fp16", y, ref)


@pytest.mark.slow
def test_fp16_artifact_is_the_fp32_onnx_with_builder_flag_note(models, calib, tmp_path):
    res = export(models[0.5], tmp_path / "fp16", "fp16")
    assert any("BuilderFlag.FP16" in n for n in res.notes)
    x = calib.inputs
    # runs as fp32 in onnxruntime (fp16 itself needs the engine, GPU), judged as fp16 as verify does
    assert not DEFAULT.feature_failures("fp16", ort_embed(res.path / "model.onnx", x), torch_embed(models[0.5], x))


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_int8_onnx_is_symmetric_qdq_and_close_to_torch(int8_onnx, models, calib, width):
    import onnx
    from onnx import numpy_helper

    from swedge.calibration.tensorrt_calibrator import qdq_problems

    path = int8_onnx[width]
    assert qdq_problems(path) == []
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quant) >= 10  # activations of every conv block, not just one tensor
    for node in quant:
        zp = init[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    x = calib.inputs
    ref = torch_embed(models[width], x)
    y = ort_embed(path, x)
    cos = row_cosine(y, ref)
    print(f"int8 w={width}: mean cosine {cos.mean():.5f}, min {cos.min():.5f}")
    assert not DEFAULT.feature_failures("int8", y, ref)
    assert not DEFAULT.feature_failures("int8", ort_embed(path, x[:1]), ref[:1])  # dynamic batch kept through QDQ


@pytest.mark.slow
def test_int8_export_records_quantizer_and_metadata(models, calib, tmp_path):
    import onnx

    from swedge.calibration.tensorrt_calibrator import qdq_problems

    res = export(models[0.5], tmp_path / "w0.5-int8", "int8", calib)
    assert sorted(p.name for p in res.path.iterdir()) == ["model.onnx"]
    assert res.extra["engine"]["status"] == "skipped" and res.runtimes == ["tensorrt", "onnxruntime-qdq"]
    path = res.path / "model.onnx"
    assert qdq_problems(path) == []
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["swedge.test"] == "1"
    q = res.quantization
    assert q["quantizer"] == "tensorrt-qdq" and q["backend"] == "tensorrt" and q["qdq_by"] == "onnxruntime-qdq"
    assert q["calibration_sha256"] == calib.sha256 and q["calibration_size"] == 16 and q["quantize_bias"] is False
    assert any("explicit QDQ int8" in n for n in res.notes) and "onnxruntime" in res.tools
    x = calib.inputs
    assert not DEFAULT.feature_failures("int8", ort_embed(path, x), torch_embed(models[0.5], x))


def test_int8_without_calibration_names_the_flag(models, tmp_path):
    with pytest.raises(SwedgeError, match="--calib"):
        export(models[0.25], tmp_path / "a", "int8")


def test_entropy_route_needs_tensorrt(models, calib, tmp_path):
    from swedge.exporters.base import ExportSkipped

    with pytest.raises(ExportSkipped, match="TensorRT is not installed"):
        export(models[0.25], tmp_path / "a", "int8", calib, int8_route="entropy")
    with pytest.raises(SwedgeError, match="int8 route"):
        export(models[0.25], tmp_path / "b", "int8", calib, int8_route="magic")


def _qdq_graph(zero_point: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(zero_point, "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq0")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_qdq_check_rejects_what_tensorrt_rejects(tmp_path):
    import onnx

    from swedge.calibration.tensorrt_calibrator import qdq_problems

    for name, zp, expect in [("ok", np.array(0, np.int8), None), ("u8", np.array(128, np.uint8), "signed int8"),
                             ("asym", np.array(3, np.int8), "non-zero zero point")]:
        onnx.save(_qdq_graph(zp), tmp_path / f"{name}.onnx")
        problems = qdq_problems(tmp_path / f"{name}.onnx")
        assert (problems == []) if expect is None else any(expect in p for p in problems), (name, problems)


# -- unavailability: the real situation on this machine ---------------------------------------------------------
def test_stub_only_tensorrt_is_not_installed():
    """tensorrt-stubs makes `import tensorrt` succeed as an empty namespace package: not a TensorRT."""
    from swedge.runtimes.tensorrt_engine import NOT_INSTALLED, tensorrt_missing, tensorrt_unavailable

    assert tensorrt_missing() == NOT_INSTALLED
    assert tensorrt_unavailable() == NOT_INSTALLED


def test_runner_raises_runtime_unavailable_with_the_reason(tmp_path, monkeypatch):
    from swedge.runtimes.base import RuntimeUnavailable
    from swedge.runtimes.tensorrt_runner import TensorRTRunner

    (tmp_path / "model.onnx").write_bytes(b"")
    for blocked in (False, True):
        if blocked:  # the import itself fails, as on a machine without the stubs
            monkeypatch.setitem(sys.modules, "tensorrt", None)
        with pytest.raises(RuntimeUnavailable, match=re.escape("pip install 'swedge[tensorrt]'")) as err:
            TensorRTRunner(tmp_path).embed(np.zeros((1, 3, 64, 32), np.float32))
        assert "TensorRT is not installed" in str(err.value) and "NVIDIA GPU" in str(err.value)
    assert TensorRTRunner(tmp_path).version() == ""


def test_runner_module_is_torch_free():
    code = ("import sys, swedge.runtimes.tensorrt_runner, swedge.calibration.tensorrt_calibrator; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- fakes: TensorRT 10's Python API and polygraphy.cuda, just what swedge calls --------------------------------------
MAGIC = b"FAKE-TRT-ENGINE\n"


class FakeCuda(types.ModuleType):
    """polygraphy.cuda stand-in: "device" memory is a dict of host buffers keyed by fake pointers."""

    def __init__(self, gpus=1, status=0):
        super().__init__("polygraphy.cuda")
        self.__spec__ = ModuleSpec("polygraphy.cuda", None)
        self.memory: dict[int, np.ndarray] = {}
        self.freed = 0
        fake = self

        def get_count(ref):
            ref._obj.value = gpus
            return status

        self.wrapper = lambda: types.SimpleNamespace(handle=types.SimpleNamespace(cudaGetDeviceCount=get_count))

        class DeviceArray:
            def __init__(self, shape=(), dtype=np.float32):
                self.dtype, self.ptr, self.shape = np.dtype(dtype), 0, ()
                self.resize(shape)

            def resize(self, shape):
                self.free()
                self.shape = tuple(shape)
                self.ptr = 1000 + len(fake.memory) + fake.freed
                fake.memory[self.ptr] = np.zeros(self.shape, self.dtype)
                return self

            def copy_from(self, host, stream=None):
                assert host.dtype == self.dtype and host.shape == self.shape and host.flags.c_contiguous
                fake.memory[self.ptr][...] = host
                return self

            def copy_to(self, host, stream=None):
                host[...] = fake.memory[self.ptr]
                return host

            def free(self):
                if fake.memory.pop(self.ptr, None) is not None:
                    fake.freed += 1
                self.ptr = 0

        class Stream:
            ptr = 7

            def synchronize(self):
                pass

            def free(self):
                pass

        self.DeviceArray, self.Stream = DeviceArray, Stream


def fake_tensorrt(cuda: FakeCuda) -> types.ModuleType:
    """A TensorRT 10 stand-in. The parser reads the real ONNX (and rejects what TensorRT would: unknown files,
    uint8 Q/DQ); the "engine" is the ONNX plus the build settings, executed by onnxruntime on the fake GPU memory."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    trt = types.ModuleType("tensorrt")
    trt.__spec__ = ModuleSpec("tensorrt", None)  # torch.export looks modules up with find_spec while tracing
    trt.__version__ = "10.99-fake"
    trt.calls = []

    class Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    class ILogger:
        def __init__(self):
            pass

    ILogger.Severity = Severity

    class Dims(tuple):
        pass

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, Dims(shape)

    class Network:
        def __init__(self):
            self.inputs, self.onnx = [], None

        num_inputs = property(lambda self: len(self.inputs))

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            try:
                model = onnx.load(path)
            except Exception as exc:
                self.errors.append(f"failed to parse ONNX model: {exc}")
                return False
            init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
            for node in model.graph.node:
                if node.op_type in ("QuantizeLinear", "DequantizeLinear") and init[node.input[2]].dtype != np.int8:
                    self.errors.append(f"{node.name}: only int8 Q/DQ is supported")
            for i in model.graph.input:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim]
                self.network.inputs.append(Tensor(i.name, dims))
            self.network.onnx = model.SerializeToString()
            return not self.errors

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi)), (lo, opt, hi)
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class Config:
        def __init__(self):
            self.flags, self.pools, self.profiles = [], {}, []
            self.int8_calibrator = self.calibration_profile = None

        def set_flag(self, flag):
            self.flags.append(flag)

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile.shapes)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile):
            self.calibration_profile = profile.shapes
            return True

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            assert flags == 0, "TensorRT 10: no EXPLICIT_BATCH flag"
            return Network()

        create_builder_config = staticmethod(Config)
        create_optimization_profile = staticmethod(Profile)

        def build_serialized_network(self, network, config):
            if any(d < 0 for t in network.inputs for d in t.shape) and not config.profiles:
                self.logger.log(Severity.ERROR, "network has dynamic inputs but no optimization profile")
                return None
            cal = config.int8_calibrator
            if cal is not None:  # implicit calibration, as TensorRT drives it
                if cal.read_calibration_cache() is None:
                    while ptrs := cal.get_batch([t.name for t in network.inputs]):
                        trt.calls.append(("calib_batch", cuda.memory[ptrs[0]].shape))
                    cal.write_calibration_cache(b"fake-cache")
            header = {"flags": config.flags, "pools": config.pools, "profiles": config.profiles,
                      "calibration_profile": config.calibration_profile}
            trt.calls.append(("build", header))
            return memoryview(MAGIC + json.dumps(header).encode() + b"\n" + network.onnx)

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addresses = engine, None, {}
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.sess = ort.InferenceSession(engine.onnx, so, providers=["CPUExecutionProvider"])

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profile[name]
            self.shape = tuple(shape)
            return all(a <= s <= b for a, s, b in zip(lo, shape, hi))

        def get_tensor_shape(self, name):
            return Dims((self.shape[0], self.engine.out_dim))

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream):
            x = cuda.memory[self.addresses["input"]]
            assert x.shape == self.shape
            cuda.memory[self.addresses["embedding"]][...] = self.sess.run(None, {"input": x})[0]
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, header, onnx_bytes):
            self.onnx = onnx_bytes
            self.profile = header["profiles"][0]
            model = onnx.load_from_string(onnx_bytes)
            self.out_dim = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value

        def get_tensor_name(self, i):
            return ["input", "embedding"][i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return Dims([-1, *self.profile["input"][0][1:]] if name == "input" else [-1, self.out_dim])

        def get_tensor_profile_shape(self, name, index):
            return [Dims(s) for s in self.profile[name]]

        def get_tensor_dtype(self, name):
            return "FLOAT"

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            if not bytes(data).startswith(MAGIC):
                self.logger.log(Severity.ERROR, "the engine plan file is not compatible with this version")
                return None
            head, onnx_bytes = bytes(data)[len(MAGIC):].split(b"\n", 1)
            return Engine(json.loads(head), onnx_bytes)

    for cls in (ILogger, Dims, IInt8EntropyCalibrator2, OnnxParser, Builder, Runtime, TensorIOMode):
        setattr(trt, cls.__name__, cls)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.nptype = lambda t: {"FLOAT": np.float32, "HALF": np.float16}[t]
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", cuda)
    return trt, cuda


def test_gpu_reasons(monkeypatch):
    from swedge.runtimes.tensorrt_engine import tensorrt_unavailable

    cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(cuda))
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", cuda)
    assert tensorrt_unavailable() is None
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", FakeCuda(gpus=0))
    assert tensorrt_unavailable() == "no CUDA GPU is visible"
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", FakeCuda(gpus=0, status=100))
    assert "CUDA error 100" in tensorrt_unavailable()
    broken = FakeCuda()
    broken.wrapper = lambda: (_ for _ in ()).throw(OSError("libcudart.so: cannot open shared object file"))
    monkeypatch.setitem(sys.modules, "polygraphy.cuda", broken)
    assert "libcudart" in tensorrt_unavailable() and "NVIDIA GPU" in tensorrt_unavailable()


@pytest.mark.slow
def test_engine_build_and_runner_through_fakes(fake_trt, models, calib, tmp_path):
    from swedge.runtimes.manifest_types import ArtifactEntry
    from swedge.runtimes.tensorrt_runner import TensorRTRunner

    trt, cuda = fake_trt
    res = export(models[0.25], tmp_path / "w0.25-fp16", "fp16", max_batch=4, opt_batch=2)
    assert sorted(p.name for p in res.path.iterdir()) == ["model.engine", "model.onnx"]
    engine = res.extra["engine"]
    assert engine["status"] == "built" and engine["tensorrt"] == "10.99-fake" == res.tools["tensorrt"]
    assert engine["profile"] == {"min": 1, "opt": 2, "max": 4} and engine["builder_flags"] == ["FP16"]
    (_, header), = [c for c in trt.calls if c[0] == "build"]
    assert header["flags"] == ["FP16"] and header["pools"] == {"WORKSPACE": 1 << 30}
    assert header["profiles"] == [{"input": [[1, 3, 64, 32], [2, 3, 64, 32], [4, 3, 64, 32]]}]

    x = calib.inputs
    ref = torch_embed(models[0.25], x)
    entry = ArtifactEntry(id="tensorrt-w0.25-fp16", format="tensorrt", width=0.25, precision="fp16", status="ok")
    runner = TensorRTRunner(res.path, entry).load()
    assert runner.max_batch == 4 and not runner.built_on_load and runner.version() == "10.99-fake"
    for batch in (x[:1], x[:5], x):  # 5 and 16 rows run as chunks of the profile's max
        assert not DEFAULT.feature_failures("fp16", runner.embed(batch), ref[:len(batch)])
    with pytest.raises(SwedgeError, match=r"does not match the engine's \(N, 3, 64, 32\)"):
        runner.embed(np.zeros((2, 3, 32, 64), np.float32))
    runner.close()
    assert cuda.memory == {}  # device buffers freed

    (res.path / "model.engine").unlink()  # only the ONNX: the runner builds in memory, files untouched
    with TensorRTRunner(res.path, dataclasses.replace(entry, engine=engine)) as runner:
        assert runner.built_on_load and runner.describe()["engine_built_on_load"]
        assert not DEFAULT.feature_failures("fp16", runner.embed(x[:3]), ref[:3])
    assert sorted(p.name for p in res.path.iterdir()) == ["model.onnx"]


def test_fake_build_reports_parser_and_deserialize_errors(fake_trt, tmp_path):
    from swedge.runtimes.tensorrt_engine import BuildOptions, build_serialized_engine
    from swedge.runtimes.tensorrt_runner import TensorRTRunner

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(SwedgeError, match="ONNX parser rejected .*failed to parse ONNX model"):
        build_serialized_engine(bad, BuildOptions())
    (tmp_path / "model.engine").write_bytes(b"an engine from another TensorRT")
    with pytest.raises(SwedgeError, match="plan file is not compatible.*only loads with the TensorRT version"):
        TensorRTRunner(tmp_path).load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SwedgeError, match="neither model.engine nor model.onnx"):
        TensorRTRunner(empty).load()


@pytest.mark.slow
def test_entropy_calibrator_through_fakes(fake_trt, models, calib, tmp_path):
    trt, cuda = fake_trt
    res = export(models[0.25], tmp_path / "w0.25-int8", "int8", calib, max_batch=8, int8_route="entropy")
    assert sorted(p.name for p in res.path.iterdir()) == ["calibration.cache", "model.engine", "model.onnx"]
    q = res.quantization
    assert q["quantizer"] == "tensorrt-entropy" and q["algorithm"].startswith("IInt8EntropyCalibrator2")
    assert q["calibration_batch"] == 8 and q["calibration_images_used"] == 16
    assert [c[1] for c in trt.calls if c[0] == "calib_batch"] == [(8, 3, 64, 32)] * 2
    (_, header), = [c for c in trt.calls if c[0] == "build"]
    assert header["flags"] == ["INT8"] and header["calibration_profile"] == {"input": [[8, 3, 64, 32]] * 3}
    assert cuda.memory == {}  # the calibrator's buffer is freed after the build

    # A second build reuses the cache: no batches are requested.
    from swedge.calibration.tensorrt_calibrator import entropy_calibrator
    from swedge.runtimes.tensorrt_engine import BuildOptions, build_serialized_engine

    trt.calls.clear()
    with entropy_calibrator(calib, res.path / "calibration.cache", batch_size=8) as cal:
        build_serialized_engine(res.path / "model.onnx", BuildOptions("int8", max_batch=8), calibrator=cal,
                                calibration_batch=8)
    assert [c[0] for c in trt.calls] == ["build"]


# -- static check against tensorrt-stubs ----------------------------------------------------------------------------
CHECKED = ["swedge.exporters.tensorrt", "swedge.calibration.tensorrt_calibrator", "swedge.runtimes.tensorrt_runner",
           "swedge.runtimes.tensorrt_engine"]


def mypy_tree(root: Path) -> Path:
    """A MYPYPATH under which mypy sees swedge as installed (exporters/ etc. mapped into swedge/) and the
    TensorRT stubs. The stubs are copied with two generated-code syntax errors fixed (a parameter named `in`,
    a required parameter after defaulted ones): as shipped, mypy stops at them before checking anything."""
    import importlib.util

    pkg = root / "swedge"
    pkg.mkdir(parents=True)
    for child in (REPO / "swedge").iterdir():
        (pkg / child.name).symlink_to(child)
    for folder in ("exporters", "calibration", "runtimes"):
        (pkg / folder).symlink_to(REPO / folder)
    for name in ("tensorrt", "tensorrt_bindings"):
        src = Path(importlib.util.find_spec(name).submodule_search_locations[0])
        (root / name).mkdir()
        for stub in src.glob("*.pyi"):
            text = stub.read_text()
            text = re.sub(r"\bin: list\[", "in_: list[", text)
            text = text.replace("power: Weights = None, channel_axis: int)",
                                "power: Weights = None, channel_axis: int = ...)")
            (root / name / stub.name).write_text(text)
    return root


def run_mypy(tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MYPYPATH": str(mypy_tree(tmp / "tree"))}
    args = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "mypy-tensorrt.ini"),
            "--cache-dir", str(tmp / "cache")]
    for module in CHECKED:
        args += ["-m", module]
    return subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_mypy_against_tensorrt_stubs(tmp_path):
    pytest.importorskip("mypy")
    proc = run_mypy(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
