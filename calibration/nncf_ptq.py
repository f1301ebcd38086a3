"""NNCF post-training quantization of an OpenVINO model (int8 weights and activations, FakeQuantize ops).

Quantizes the converted ``openvino.Model``, never the torch module: NNCF's torch path JIT-compiles a C++
extension (slow, needs a compiler, and can leave a stale lock that hangs the next run).

Defaults measured on the tiny ResNet-18 test checkpoint (16 calibration images, 35 held-out images, mean
per-row cosine vs torch at w = 0.25 / 0.5 / 0.75 / 1.0):
  performance + fast bias correction  0.99999 / 0.99978 / 0.99975 / 0.99934   (1.2-2.2 s)
  performance + full bias correction  0.99999 / 0.99994 / 0.99979 / 0.99939   (1.7-3.5 s)
  mixed + fast bias correction        0.99997 / 0.99967 / 0.99920 / 0.99858
so "performance" (symmetric activations) is the default. Fast or full bias correction is chosen per artifact
(:func:`quantize_openvino_selected`): neither wins everywhere on trained models (mean cosine on the probe, fast vs
full: demo ResNet-18 w=0.25 0.9861 vs 0.9935; ImageNet MobileNetV2 w=1 0.9960 vs 0.9824).

``overflow_fix="enable"`` (NNCF's default is "first_layer_only"): every layer's weights are kept in 7 bits, so
OpenVINO's u8 x s8 products cannot saturate on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI use
VPMADDUBSW, whose 16-bit pair sums clip); with 8-bit weights the same IR gives other features there than on a
VNNI / AMX / ARM CPU (measured with oneDNN's ISA cap ONEDNN_MAX_CPU_ISA=AVX2 on a VNNI CPU, ImageNet
MobileNetV2 w=1: mean cosine 0.9967 natively, 0.853 on the AVX2 kernels; with the fix 0.9956 on both, bit-equal).
The exporting host must not decide what every device computes.

The embedding layer (the model's one MatMul) stays float, as in the ONNX export: its input is the pooled
feature, whose large common offset makes small int8 errors large in the embedding (MobileNetV2 w=1: mean
cosine 0.9836 with it quantized, 0.9960 without).
"""

from __future__ import annotations

import logging

import numpy as np

from swedge.calibration.base import Quantizer, quiet_quantizer
from swedge.errors import SwedgeError, require

PRESETS = ("performance", "mixed")
OVERFLOW_FIXES = ("enable", "first_layer_only", "disable")
FLOAT_OPS = ("MatMul",)  # the embedding Linear
# The same scheme in onnxruntime QDQ terms (symmetric activations as the "performance" preset, 7-bit weights as
# overflow_fix="enable", embedding float): what the int8 repair ranks layers with for OpenVINO artifacts.
NNCF_AS_QDQ = {"method": "minmax", "symmetric_activations": True, "reduce_range": True, "float_ops": ("Gemm",)}


NNCF_QUANTIZER = Quantizer("nncf-ptq", backend="openvino",
                           algorithm="NNCF post-training quantization (MinMax + BiasCorrection)")


def quantize_openvino(ov_model, calibration, *, preset: str = "performance", fast_bias_correction: bool = False,
                      subset_size: int | None = None, overflow_fix: str = "enable", keep_float: tuple[str, ...] = ()):
    """Return ``(quantized openvino.Model, facts)``; ``facts`` go into the manifest's quantization entry.

    ``calibration`` is a :class:`swedge.calibration.CalibrationSet`; every image is fed as its own batch of 1.
    ``subset_size`` (default: the whole set) is capped at the set's size. ``keep_float``: OpenVINO node names of
    convolutions left unquantized (:func:`conv_names` maps torch module names to them).
    """
    if preset not in PRESETS:
        raise SwedgeError(f"unknown NNCF preset '{preset}': choose from {', '.join(PRESETS)}")
    if calibration is None or calibration.size == 0:
        raise SwedgeError("NNCF int8 quantization needs calibration data: pass --calib DIR")
    if subset_size is not None and subset_size < 1:
        raise SwedgeError(f"subset_size must be at least 1, got {subset_size}")
    if overflow_fix not in OVERFLOW_FIXES:
        raise SwedgeError(f"unknown NNCF overflow_fix '{overflow_fix}': choose from {', '.join(OVERFLOW_FIXES)}")
    nncf = require("nncf", "openvino")
    used = min(subset_size or calibration.size, calibration.size)
    # NNCF draws rich progress bars on stdout and logs one INFO line per node of an ignored scope; its warnings
    # and errors go through the 'nncf' logger (a handler bound to the real stdout at import), so they still show
    with quiet_quantizer("nncf", logging.WARNING):
        quantized = nncf.quantize(
            ov_model,
            nncf.Dataset(list(calibration.batches(1))),
            preset=getattr(nncf.QuantizationPreset, preset.upper()),
            fast_bias_correction=fast_bias_correction,
            subset_size=used,
            advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix)),
            ignored_scope=nncf.IgnoredScope(names=list(keep_float), types=list(FLOAT_OPS)),
        )
    facts = {"preset": preset, "bias_correction": "fast" if fast_bias_correction else "full", "subset_size": used,
             "overflow_fix": overflow_fix, "weight_bits": 7 if overflow_fix == "enable" else 8,
             "float_ops": list(FLOAT_OPS)}
    return quantized, facts


def conv_names(ov_model, module, layers: tuple[str, ...]) -> list[str]:
    """OpenVINO node names of the convolutions that compute the torch modules ``layers`` of ``module``.

    convert_model folds each BatchNorm into its convolution and renames the node (``Multiply_123``), so layers are
    matched by order: the model's (Group)Convolutions in topological order against the module's Conv2d layers in
    registration order, each pair checked for the same weight shape; any disagreement is an error, never a guess."""
    if not layers:
        return []
    from swedge.calibration.int8_repair import conv_layers

    torch_layers = conv_layers(module)
    ops = [op for op in ov_model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    shapes = [tuple(int(d) for d in op.input_value(1).get_partial_shape().to_shape()) for op in ops]
    names = {}
    for (name, shape, groups), op, ov_shape in zip(torch_layers, ops, shapes):
        # GroupConvolution weights are (groups, out / groups, in / groups, kh, kw)
        flat = (ov_shape[0] * ov_shape[1], *ov_shape[2:]) if op.get_type_name() == "GroupConvolution" else ov_shape
        if flat != shape:
            break
        names[name] = op.get_friendly_name()
    if len(ops) != len(torch_layers) or len(names) != len(torch_layers):
        raise SwedgeError(f"cannot match the OpenVINO model's {len(ops)} convolutions to the module's "
                          f"{len(torch_layers)} Conv2d layers by order and shape; int8 repair is not possible here")
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise SwedgeError(f"no convolution layer(s) {unknown} in the model; its layers: "
                          f"{', '.join(list(names)[:8])} ...")
    return [names[name] for name in layers]


BIAS_CORRECTIONS = {"full": False, "fast": True}  # name -> nncf's fast_bias_correction


def quantize_openvino_selected(ov_model, calibration, *, holdout: float = 0.25, **options):
    """Quantize with full and with fast bias correction on the first part of the calibration set, keep the one
    whose outputs on the held-out rest have the highest mean cosine to the float model, then quantize on the whole
    set with it. Only calibration images are used (never the probe). The trials are scored by OpenVINO's own CPU
    kernels, which is host-independent only because ``overflow_fix="enable"`` keeps every weight in 7 bits (AVX2
    and VNNI kernels then give bit-equal outputs); with another overflow_fix no selection is made."""
    from swedge.metrics.fidelity import row_cosine

    split = calibration.holdout_split(holdout) if calibration is not None else None
    if split is None or options.get("overflow_fix", "enable") != "enable":
        return quantize_openvino(ov_model, calibration, **options)  # (which names what is missing)
    fit, held = split
    reference = _embed(ov_model, held)
    scores = {}
    for name, fast in BIAS_CORRECTIONS.items():
        trial, _ = quantize_openvino(ov_model.clone(), fit, **options, fast_bias_correction=fast)
        scores[name] = round(float(row_cosine(_embed(trial, held), reference).mean()), 6)
    best = max(scores, key=scores.get)
    quantized, facts = quantize_openvino(ov_model, calibration, **options, fast_bias_correction=BIAS_CORRECTIONS[best])
    facts["selection"] = {"held_out_images": len(held), "mean_cosine": scores,
                          "scored_by": "OpenVINO CPU, f32 inference precision, 7-bit weights (same on AVX2 and VNNI)"}
    return quantized, facts


def _embed(model, x: np.ndarray) -> np.ndarray:
    ov = require("openvino", "openvino")
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    return np.asarray(compiled(x)[0])
