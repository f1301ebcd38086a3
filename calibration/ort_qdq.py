"""Static int8 QDQ quantization of an ONNX file with onnxruntime.quantization (weights and activations).

Weights are symmetric per output channel. onnxruntime's saturating VPMADDUBSW path (x86 without VNNI) adds
pairs of uint8 x int8 products in int16; a pair whose weights have |w0| + |w1| > 128 can overflow it, so the same
file gives other features there than on VNNI / AMX / ARM (see int8_paths). Two ways to rule that out:
``reduce_range`` keeps every weight in 7 bits (|w| <= 64); ``pair_safe_weights`` (finer) gives each output
channel of an ungrouped convolution the smallest scale at which no pair of its quantized weights sums past 128
(8 bits where the channel allows it, ~7 where it does not; depthwise kernels never saturate and keep 8 bits),
passed to onnxruntime as per-channel ``TensorQuantOverrides``.
Candidate settings are scored on the QDQ arithmetic itself (onnxruntime with graph optimizations off: Q/DQ
and float convolutions, no int8 kernels), so the exporting host's int8 kernels never pick the setting.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from swedge.calibration.base import Quantizer, quiet_quantizer
from swedge.errors import SwedgeError, require

# How each method computes ranges. ORT's quantize_static runs entropy with 128 histogram bins and 128 quantized
# bins, i.e. one candidate threshold (= minmax), so swedge runs the calibrator itself with real bin counts.
METHOD_OPTIONS: dict[str, dict] = {
    "minmax": {},
    "entropy": {"num_bins": 512, "num_quantized_bins": 128},  # KL search; 2048 bins took 60 s for one ResNet-18
    "percentile": {"num_bins": 2048, "percentile": 99.999},
}
METHODS = tuple(METHOD_OPTIONS)
DEFAULT_METHOD = "minmax"  # measured on the test checkpoint: best mean cosine at w>=0.5, tied with percentile at 0.25
DEFAULT_BATCH = 8


def _calibrate_method(method: str):
    quant = require("onnxruntime.quantization", "onnx")
    table = {"minmax": quant.CalibrationMethod.MinMax, "entropy": quant.CalibrationMethod.Entropy,
             "percentile": quant.CalibrationMethod.Percentile}
    if method not in table:
        raise SwedgeError(f"unknown calibration method '{method}' for onnxruntime QDQ; "
                          f"choose from {', '.join(METHODS)}")
    return table[method]


def _input_spec(path: Path) -> tuple[str, list]:
    """Name and shape (ints or symbolic names) of the model's one graph input."""
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise SwedgeError(f"{path}: expected one graph input to calibrate, found {[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims


def _check_calibration(calibration, dims: list, path: Path) -> None:
    if calibration is None or calibration.size == 0:
        raise SwedgeError("int8 quantization needs calibration data: pass --calib DIR")
    shape = tuple(calibration.inputs.shape[1:])
    want = tuple(dims[1:])
    if len(shape) != len(want) or any(isinstance(w, int) and w > 0 and w != s for w, s in zip(want, shape)):
        raise SwedgeError(f"calibration inputs have shape (N, {', '.join(map(str, shape))}) but {path.name} expects "
                          f"{dims}: build the calibration set with the checkpoint's preprocessing")


def _reader(name: str, inputs: np.ndarray, batch: int):
    """A CalibrationDataReader over ``inputs`` in chunks of ``batch``."""
    require("onnxruntime.quantization", "onnx")
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._chunks = iter([np.ascontiguousarray(inputs[i:i + batch], dtype=np.float32)
                                 for i in range(0, len(inputs), batch)])

        def get_next(self):
            chunk = next(self._chunks, None)
            return None if chunk is None else {name: chunk}

    return Reader()


def _ranges(src: Path, reader, method: str, options: dict, symmetric: bool, cache: Path, work: Path) -> None:
    """Run the calibrator over the calibration set and write the tensor ranges to ``cache`` (ORT's JSON)."""
    quant = require("onnxruntime.quantization", "onnx")
    from onnxruntime.quantization.calibrate import save_tensors_data

    calibrator = quant.create_calibrator(src, None, augmented_model_path=str(work / "augmented.onnx"),
                                         calibrate_method=_calibrate_method(method),
                                         extra_options={**options, "symmetric": symmetric})
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


def pair_safe_weight_overrides(path: Path) -> dict[str, list[dict]]:
    """Per-channel weight scales for the ungrouped Convs of ``path``: the int8 scale max|w| / 127, raised where
    needed so that every pair of adjacent weights in MLAS's (kh, kw, cin) order quantizes to |q0| + |q1| <= 128."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: i for i in graph.initializer}
    overrides = {}
    for node in graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type != "Conv" or group != 1 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        k = np.abs(w.transpose(0, 2, 3, 1).reshape(len(w), -1))
        if k.shape[1] % 2:
            k = np.pad(k, ((0, 0), (0, 1)))
        # |round(a)| + |round(b)| <= a/s + b/s + 1, so pairs up to 127 steps keep the sum <= 128
        scale = np.maximum(k.max(1) / 127, (k[:, 0::2] + k[:, 1::2]).max(1) / 127)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        overrides[node.input[1]] = [{"axis": 0, "scale": np.float32(s), "zero_point": np.int8(0)} for s in scale]
    return overrides


def _nodes_of_types(path: Path, op_types: tuple[str, ...]) -> list[str]:
    """Names of the graph's nodes of the given op types (kept in float by the quantizer)."""
    if not op_types:
        return []
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in op_types]


def layer_nodes(path: Path, layers: tuple[str, ...]) -> list[str]:
    """The Conv / Gemm nodes of ``path`` that compute the torch modules ``layers`` (torch.onnx names each weight
    initializer ``<module>.weight``); an unknown layer is an error naming the known ones."""
    if not layers:
        return []
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    by_layer = {n.input[1].removesuffix(".weight"): n.name for n in graph.node
                if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1].endswith(".weight")}
    unknown = [name for name in layers if name not in by_layer]
    if unknown:
        raise SwedgeError(f"{path.name} has no convolution for layer(s) {unknown}; its layers: "
                          f"{', '.join(sorted(by_layer)[:8])} ...")
    return [by_layer[name] for name in layers]


def read_kept_layers_in_float(path: Path, nodes: list[str]) -> None:
    """Rewire each kept-float node of the QDQ file ``path`` to read the float tensor before its input's
    QuantizeLinear -> DequantizeLinear pair (the pair stays for other consumers; unused pairs are dropped).

    Needed because onnxruntime's WeightBiasQuantization optimizer (on at every level above "disable all")
    quantizes the weights of any float Conv / Gemm fed by a DequantizeLinear to *per-tensor* int8 at load: an
    excluded depthwise layer then computes far worse than int8 (ImageNet MobileNetV2 w=1: mean cosine 0.79 vs
    0.99). Needs the activations before each QuantizeLinear (QDQKeepRemovableActivations) so no ReLU is lost."""
    import onnx

    nodes = set(nodes)
    if not nodes:
        return
    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.name not in nodes:
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[0] = q.input[0]
    for _ in range(2):  # drop the DQ, then the Q, that nothing reads any more
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    onnx.save(model, str(path))


QDQ_QUANTIZER = Quantizer("onnxruntime-qdq", backend="onnxruntime",
                          algorithm="static QDQ int8 post-training quantization")


def quantize_onnx_qdq(src, dst, calibration, *, per_channel: bool = True, symmetric_activations: bool = True,
                      method: str = DEFAULT_METHOD, quantize_bias: bool = True, batch: int = DEFAULT_BATCH,
                      float_ops: tuple[str, ...] = (), percentile: float | None = None, reduce_range: bool = False,
                      pair_safe_weights: bool = False, activation_type: str = "int8", weight_type: str = "int8",
                      keep_float: tuple[str, ...] = ()) -> dict:
    """Quantize the fp32 ONNX file ``src`` into ``dst`` (written atomically) with int8 weights and activations.

    ``calibration``: a CalibrationSet of preprocessed inputs; ``method``: one of METHODS.
    ``quantize_bias=False`` keeps biases in float (TensorRT wants float biases; ONNX Runtime fuses int8
    Conv/Gemm kernels only with int32 biases). ``activation_type``: "int8" or "uint8" (needs asymmetric ranges);
    ``weight_type``: "int8" (symmetric) or "uint8" (asymmetric; with uint8 activations: onnxruntime's U8U8 kernels).
    ``keep_float``: torch module names of layers left unquantized (the int8 repair's choice).
    Returns the facts the manifest records beside the quantizer."""
    quant = require("onnxruntime.quantization", "onnx")
    act_types = {"int8": quant.QuantType.QInt8, "uint8": quant.QuantType.QUInt8}
    if activation_type not in act_types:
        raise SwedgeError(f"activation type must be int8 or uint8, got {activation_type!r}")
    if weight_type not in act_types:
        raise SwedgeError(f"weight type must be int8 or uint8, got {weight_type!r}")
    if weight_type == "uint8" and activation_type != "uint8":
        raise SwedgeError("uint8 weights need uint8 activations (onnxruntime has U8U8, U8S8 and S8S8 kernels only)")
    if activation_type == "uint8" and symmetric_activations:
        raise SwedgeError("uint8 activations need asymmetric ranges (symmetric_activations=False)")
    src, dst = Path(src), Path(dst)
    calibrate = _calibrate_method(method)
    if batch < 1:
        raise SwedgeError(f"calibration batch must be at least 1, got {batch}")
    name, dims = _input_spec(src)
    _check_calibration(calibration, dims, src)
    if method != "minmax" and calibration.size % batch:
        # onnxruntime's histogram collector stacks every batch's outputs and needs equal batch sizes
        batch = math.gcd(calibration.size, batch)
    if isinstance(dims[0], int) and dims[0] > 0:
        batch = dims[0]  # a static-batch graph takes exactly its batch
        if calibration.size % batch:
            raise SwedgeError(f"{src.name} has a static batch of {batch}; the calibration set size "
                              f"({calibration.size}) must be a multiple of it")
    kept_nodes = layer_nodes(src, tuple(keep_float))
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    os.close(fd)
    try:
        # onnxruntime.quantization prints progress on stdout and logs advice ('consider pre-processing') at
        # WARNING on the root logger: keep errors only
        with tempfile.TemporaryDirectory(prefix="swedge-qdq-") as work, quiet_quantizer(None, logging.ERROR):
            cache = Path(work) / "ranges.json"
            options = dict(METHOD_OPTIONS[method], **({"percentile": percentile} if percentile else {}))
            _ranges(src, _reader(name, calibration.inputs, batch), method, options, symmetric_activations, cache,
                    Path(work))
            quant.quantize_static(
                str(src), tmp, None, quant_format=quant.QuantFormat.QDQ, activation_type=act_types[activation_type],
                weight_type=act_types[weight_type], per_channel=per_channel, reduce_range=reduce_range,
                calibrate_method=calibrate,
                calibration_cache_path=cache,
                nodes_to_exclude=_nodes_of_types(src, float_ops) + kept_nodes,
                extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": weight_type == "int8",
                               "QuantizeBias": quantize_bias, "QDQKeepRemovableActivations": bool(kept_nodes),
                               **({"TensorQuantOverrides": pair_safe_weight_overrides(src)} if pair_safe_weights
                                  else {})})
            read_kept_layers_in_float(Path(tmp), kept_nodes)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"method": method, "per_channel": per_channel, "symmetric_activations": symmetric_activations,
            "symmetric_weights": weight_type == "int8", "quantize_bias": quantize_bias,
            "activation_type": activation_type, "weight_type": weight_type,
            "weight_bits": 7 if reduce_range else "8, pair-safe" if pair_safe_weights else 8,
            "format": "QDQ", "calibration_batch": batch, "float_ops": list(float_ops),
            **({"kept_float": list(keep_float)} if keep_float else {}),
            **({"percentile": percentile or METHOD_OPTIONS[method]["percentile"]} if method == "percentile" else {})}


def quantize_onnx_qdq_selected(src, dst, calibration, candidates: dict[str, dict], *, holdout: float = 0.25) -> dict:
    """Quantize with each candidate setting on the first part of the calibration set, keep the one whose
    outputs on the held-out rest have the highest mean cosine to the fp32 model, then quantize ``dst`` with it
    on the whole set. Only calibration images are used (never the probe), and outputs come from the QDQ
    reference (no int8 kernels), so the choice is the same on every exporting host. Returns the winner's facts
    plus every candidate's held-out score."""
    from swedge.metrics.fidelity import row_cosine
    from swedge.runtimes.ort_runner import OrtQdqReferenceRunner

    split = calibration.holdout_split(holdout)
    if split is None or len(candidates) == 1:
        name = next(iter(candidates))
        return {**quantize_onnx_qdq(src, dst, calibration, **candidates[name]), "setting": name}
    fit, held = split
    reference = OrtQdqReferenceRunner(src).embed(held)
    scores = {}
    with tempfile.TemporaryDirectory(prefix="swedge-qdq-select-") as work:
        for name, options in candidates.items():
            trial = Path(work) / f"{name}.onnx"
            quantize_onnx_qdq(src, trial, fit, **options)
            scores[name] = round(float(row_cosine(OrtQdqReferenceRunner(trial).embed(held), reference).mean()), 6)
    best = max(scores, key=scores.get)
    facts = quantize_onnx_qdq(src, dst, calibration, **candidates[best])
    return {**facts, "setting": best, "selection": {"held_out_images": len(held), "mean_cosine": scores,
                                                    "scored_by": OrtQdqReferenceRunner.label}}
