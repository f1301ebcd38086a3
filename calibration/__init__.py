"""swedge.calibration: calibration sets built with the checkpoint's preprocessing, and per-backend quantizers.

``build_calibration_set`` makes the set (cached, named by sha256); each backend's post-training quantization
routine (onnxruntime QDQ, NNCF, litert PT2E, Core ML weights, TensorRT) lives in its own module with the
:class:`Quantizer` facts the manifest records about it.
"""

from swedge.calibration.base import Quantizer

__all__ = ["Quantizer"]
