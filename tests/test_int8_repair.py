"""Retrieval-aware int8 repair: layer names, float layers that stay float on every onnxruntime path, the
fewest-first loop, and the bundle path end to end (calibration/int8_repair.py, exporters/repair.py)."""

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from swedge.calibration.dataset import CalibrationSet, array_sha256  # noqa: E402
from swedge.calibration.int8_repair import cross_similarity_error, repair_counts  # noqa: E402
from swedge.errors import SwedgeError  # noqa: E402


def _calibration(bundle, n=32):
    inputs = np.load(bundle / "probe" / "inputs.npy")[:n]
    return CalibrationSet(inputs, array_sha256(inputs), "probe rows")


def _conv(path, index):
    """The torch module name of the ``index``-th Conv of an fp32 ONNX file."""
    import onnx

    return [n.input[1].removesuffix(".weight") for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"][index]


def test_cross_similarity_error_is_zero_only_for_the_same_scores():
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((20, 16)), rng.standard_normal((30, 16))
    assert cross_similarity_error(q, q, g) == 0.0
    assert cross_similarity_error(q * 3.0, q, g) < 1e-12  # scale-free, as retrieval is
    noisy = cross_similarity_error(q + 0.3 * rng.standard_normal(q.shape), q, g)
    worse = cross_similarity_error(q + 1.0 * rng.standard_normal(q.shape), q, g)
    assert 0 < noisy < worse
    q_nan = q.copy()
    q_nan[0, 0] = np.nan
    assert cross_similarity_error(q_nan, q, g) == float("inf")


def test_repair_counts_never_keep_every_layer():
    assert repair_counts(20) == [1, 2, 4, 8, 16]
    assert repair_counts(3) == [1, 2]
    assert repair_counts(1) == []


def test_kept_layer_stays_float_on_every_onnxruntime_path(onnx_bundle, tmp_path):
    """A kept-float conv reads float input and float weights, so onnxruntime's optimizer (WeightBiasQuantization)
    cannot re-quantize its weights per tensor when it loads the file (which wrecked depthwise layers)."""
    import onnx
    import onnxruntime as ort

    from swedge.calibration.ort_qdq import quantize_onnx_qdq

    src = onnx_bundle / "onnx" / "w1-fp32.onnx"
    layer = _conv(src, 2)  # inside a block: its input is another int8 layer's output
    calib = _calibration(onnx_bundle)
    facts = quantize_onnx_qdq(src, tmp_path / "k.onnx", calib, method="minmax", symmetric_activations=False,
                              keep_float=(layer,))
    assert facts["kept_float"] == [layer]
    graph = onnx.load(str(tmp_path / "k.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    conv = next(n for n in graph.node if n.op_type == "Conv" and n.input[1] == f"{layer}.weight")
    assert conv.input[0] not in producer or producer[conv.input[0]].op_type != "DequantizeLinear"
    assert f"{layer}.weight" in {i.name for i in graph.initializer}  # float weights, no DequantizeLinear

    # what onnxruntime makes of the file at load: the kept conv must still read float weights
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(tmp_path / "k.onnx"), options)
    loaded = onnx.load(str(tmp_path / "loaded.onnx")).graph
    producer = {o: n for n in loaded.node for o in n.output}
    conv = next(n for n in loaded.node if n.op_type == "Conv" and n.name == conv.name)
    weight = producer.get(conv.input[1])
    assert weight is None or weight.op_type != "DequantizeLinear", "onnxruntime re-quantized the kept layer's weights"


def test_unknown_layer_is_refused_with_the_known_ones(onnx_bundle, tmp_path):
    from swedge.calibration.ort_qdq import quantize_onnx_qdq

    with pytest.raises(SwedgeError, match=r"no convolution for layer\(s\) \['backbone.nope'\]"):
        quantize_onnx_qdq(onnx_bundle / "onnx" / "w1-fp32.onnx", tmp_path / "k.onnx", _calibration(onnx_bundle),
                          keep_float=("backbone.nope",))


def test_openvino_layers_are_matched_by_order_and_shape(tiny_checkpoint):
    ov = pytest.importorskip("openvino")
    import torch

    from swedge.calibration.int8_repair import conv_layers
    from swedge.calibration.nncf_ptq import conv_names
    from swedge.checkpoint import load_checkpoint
    from swedge.nn.slicing import slice_model

    model = load_checkpoint(tiny_checkpoint).model
    module, other = slice_model(model, 0.5).eval(), slice_model(model, 1.0).eval()
    with torch.no_grad():
        converted = ov.convert_model(module, example_input=torch.zeros(1, 3, 64, 32), input=[(-1, 3, 64, 32)])
    layers = [name for name, _, _ in conv_layers(module)]
    names = conv_names(converted, module, tuple(layers))
    convs = [op for op in converted.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    assert names == [op.get_friendly_name() for op in convs]
    with pytest.raises(SwedgeError, match="cannot match"):
        conv_names(converted, other, (layers[0],))  # the other width's shapes disagree: an error, never a guess


def test_litert_kept_layer_stays_float_in_the_pt2e_graph(tiny_checkpoint):
    """litert-torch's set_module_name derives names from nn_module_stack keys in an older torch's format; the name
    swedge gives it must match the real module, so that layer's weights are never quantized (and only it)."""
    pytest.importorskip("litert_torch")
    import torch

    from swedge.calibration.int8_repair import conv_layers
    from swedge.calibration.pt2e import quantize_pt2e
    from swedge.checkpoint import load_checkpoint
    from swedge.nn.slicing import slice_model

    module = slice_model(load_checkpoint(tiny_checkpoint).model, 0.25).eval()
    layers = [name for name, _, _ in conv_layers(module)]
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((4, 3, 64, 32)).astype(np.float32)
    calib = CalibrationSet(inputs, array_sha256(inputs), "random")
    kept = layers[3]
    graph, _, facts = quantize_pt2e(module, torch.from_numpy(inputs[:1]), calib, keep_float=(kept,))
    assert facts["kept_float"] == [kept]

    def weight_is_quantized(layer):
        conv = next(n for n in graph.graph.nodes if n.op == "call_function" and "conv" in str(n.target)
                    and list(n.meta["nn_module_stack"].values())[-1][0] == layer)
        return "dequantize" in str(getattr(conv.args[1], "target", ""))

    assert not weight_is_quantized(kept)
    assert all(weight_is_quantized(layer) for layer in layers if layer != kept)
    with pytest.raises(SwedgeError, match="'backbone.nope' is not in the traced graph"):
        quantize_pt2e(module, torch.from_numpy(inputs[:1]), calib, keep_float=("backbone.nope",))


class _FakeExporter:
    name = "fake"
    int8_repair_scheme = {"method": "minmax"}


class _FakeGate:
    """Passes once at least ``need`` of the ranked layers are float."""

    def __init__(self, need):
        self.need = need

    def check(self, path, entry, embed_here):
        kept = len(entry.quantization["kept_float"])
        ok = kept >= self.need
        return {"runtime": "fake", "cosine_mean": 0.99, "cosine_min": 0.9, "map_self": 50.0, "map_cross": 50.0,
                "delta_map_self": 0.0, "delta_map": -0.5 if ok else -2.0,
                "failures": [] if ok else ["mAP cross drops 2.00 points (> 1.0)"]}


def _entry(kept=()):
    """An int8 artifact's entry whose file keeps the layers ``kept`` float."""
    from swedge.runtimes.manifest_types import ArtifactEntry

    return ArtifactEntry(id="a", format="onnx", width=1.0, precision="int8", status="ok",
                         quantization={"kept_float": list(kept)})


def _repair(need, scheme=_FakeExporter.int8_repair_scheme):
    import dataclasses

    from swedge.exporters.repair import repair_int8

    @dataclasses.dataclass
    class Job:
        out: str = "x"
        keep_float: tuple = ()

    exported = []

    def export_one(exporter, job):
        exported.append(job.keep_float)
        return _entry(job.keep_float)

    exporter = _FakeExporter()
    exporter.int8_repair_scheme = scheme
    ranking = {"layers": [{"layer": f"l{i}", "damage": 1.0 / (i + 1)} for i in range(20)], "scheme": {}}
    entry = repair_int8(exporter, Job(), _entry(), gate=_FakeGate(need), ranking=lambda: ranking,
                        export_one=export_one, embed_here=None)
    return entry, exported


def test_repair_keeps_the_fewest_top_ranked_layers_that_pass():
    entry, exported = _repair(need=3)
    assert exported == [("l0",), ("l0", "l1"), ("l0", "l1", "l2", "l3")]  # 1, 2, 4: best-ranked first
    r = entry.repair
    assert r.repaired and r.kept_float == ("l0", "l1", "l2", "l3")
    assert r.before["delta_map"] == -2.0 and r.after["delta_map"] == -0.5
    assert [t["kept"] for t in r.tries] == [1, 2, 4]


def test_repair_that_never_passes_says_so_and_keeps_the_last_file():
    entry, exported = _repair(need=99)
    assert len(exported) == len(repair_counts(20))
    assert entry.repair.repaired is False and "still fails with 16" in entry.repair.reason
    assert entry.quantization["kept_float"] == list(exported[-1])  # the entry describes the file on disk: the last try


def test_passing_artifact_is_not_touched_and_unrepairable_formats_say_why():
    entry, exported = _repair(need=0)
    assert exported == [] and entry.repair.needed is False
    entry, exported = _repair(need=3, scheme=None)
    assert exported == [] and entry.repair.repaired is False and "cannot keep layers float" in entry.repair.reason


@pytest.mark.e2e  # ~95 s on 2 cores: two layer rankings and up to five re-exports per width
def test_bundle_int8_repair_records_and_publishes_the_repaired_artifact(tiny_checkpoint, tiny_market, tmp_path,
                                                                        monkeypatch):
    """End to end on the tiny model with a stricter gate (mean cosine >= 0.99999) that plain int8 misses: counts
    are tried fewest first, the kept layers are the top of a ranking made on calibration images, the published
    file is the passing try (its kept layers float, its sha256 in the manifest) and verify names the repair."""
    import onnx

    import swedge.exporters.repair as repair
    from swedge.exporters.bundle import ExportPlan, export_bundle
    from swedge.runtimes.manifest import read_manifest
    from swedge.runtimes.thresholds import Thresholds
    from swedge.runtimes.verify import verify_bundle

    strict = Thresholds(int8_cosine_mean=0.99999)
    monkeypatch.setattr(repair, "DEFAULT", strict)
    out = tmp_path / "b"
    export_bundle(ExportPlan(checkpoint=tiny_checkpoint, out=out, formats=["onnx"], widths=[0.5, 1.0],
                             precisions=["int8"], calib=tiny_market, calib_size=32, int8_repair=True),
                  progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    a = next(x for x in manifest["artifacts"] if x["width"] == 0.5)
    r = a["repair"]
    assert r["needed"] and r["before"]["failures"] and r["repaired"], r
    counts = [t["kept"] for t in r["tries"]]
    assert counts == repair_counts(20)[:len(counts)]
    assert all(t["failures"] for t in r["tries"][:-1]) and not r["tries"][-1]["failures"]
    assert r["after"]["cosine_mean"] >= strict.int8_cosine_mean
    kept = r["kept_float"]
    assert len(kept) == counts[-1] and kept == [x["layer"] for x in r["ranking"]["top"]][:len(kept)]
    assert r["ranking"]["held_out_images"] == 8 and a["quantization"]["kept_float"] == kept
    graph = onnx.load(str(out / a["path"])).graph
    assert {f"{k}.weight" for k in kept} <= {i.name for i in graph.initializer}
    read_manifest(out).check_file(a["path"], a["sha256"])  # the manifest hashes the published file
    report = verify_bundle(out, thresholds=strict, progress=False)
    row = next(x for x in report.rows if x.id == a["id"])
    assert row.status == "pass" and any(a["id"] in line and "keeps" in line for line in report.repairs)
