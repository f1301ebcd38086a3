"""swedge.calibration: calibration sets built with the checkpoint's preprocessing, and per-backend quantizers.

``build_calibration_set`` makes the set (cached, named by sha256); ``QUANTIZERS`` names every backend's
post-training quantization routine (onnxruntime QDQ, NNCF, litert PT2E, Core ML weights, TensorRT), each
registered by its own module.
"""

from swedge.calibration.base import QUANTIZERS, Quantizer, register_quantizer

__all__ = ["QUANTIZERS", "Quantizer", "register_quantizer"]
