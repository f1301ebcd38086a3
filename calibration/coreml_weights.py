"""Core ML int8 weight quantization (``coremltools.optimize.coreml.linear_quantize_weights``), Linux-capable.

Weights-only: conv / linear weights become int8 with one symmetric scale per output channel, dequantized by
``constexpr_affine_dequantize`` ops at load time; activations keep the program's precision. It needs no
calibration data. Activation quantization (``linear_quantize_activations``) calls predict, so it needs macOS.
"""

from __future__ import annotations

import numpy as np

from swedge.calibration.base import Quantizer
from swedge.runtimes.coreml_runner import import_coremltools

# coremltools' default: smaller weight tensors (biases, BN vectors, tiny convs) stay in float.
WEIGHT_THRESHOLD = 2048


def _op_types(mlmodel) -> list[str]:
    spec = mlmodel.get_spec()
    ops = []
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            ops += [op.type for op in block.operations]
    return ops


COREML_QUANTIZER = Quantizer("coreml-weights-int8", backend="coreml",
                             algorithm="linear_quantize_weights int8 per-channel symmetric", scope="weights-only")


def quantize_coreml_weights(mlmodel):
    """(int8-weight copy of an ML program ``mlmodel``, facts for the manifest's quantization entry)."""
    import_coremltools()
    from coremltools.optimize import coreml as cto

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD))
    # An all-zero output channel (e.g. a zero-initialised residual BN folded into its conv) gets scale 0 and
    # numpy warns about 0/0 while rounding; it dequantizes to q * 0 = 0, exactly the original weights.
    with np.errstate(divide="ignore", invalid="ignore"):
        quantized = cto.linear_quantize_weights(mlmodel, config=config)
    ops = _op_types(quantized)
    dequantize = sorted({op for op in ops if op.startswith("constexpr_")})
    facts = {"weight_threshold": WEIGHT_THRESHOLD, "dequantize_ops": dequantize,
             "quantized_weights": sum(op in dequantize for op in ops)}
    return quantized, facts
