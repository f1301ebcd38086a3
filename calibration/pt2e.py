"""PT2E static int8 quantization for LiteRT (litert-torch's PT2EQuantizer + torchao's prepare/convert).

Weights: int8 symmetric per output channel (MinMax). Activations: int8 per-tensor affine, ranges from a
HistogramObserver fed with the calibration set. litert-torch lowers the resulting Q/DQ graph to a
full-integer TFLite model whose input and output tensors are int8 too (what int8-only NPUs/DSPs need);
the runner quantizes inputs and dequantizes outputs with the tensors' own scale and zero-point.
"""

from __future__ import annotations

from swedge.calibration.base import Quantizer
from swedge.errors import SwedgeError, require

PT2E_QUANTIZER = Quantizer("litert-pt2e", backend="litert",
                           algorithm="PT2E static int8 (per-channel symmetric weights), full-integer I/O")
CALIBRATION_BATCH = 8  # images per calibration forward when the batch is dynamic (histograms are per batch)


def quantize_pt2e(module, example, calibration, *, per_channel: bool = True, dynamic_shapes=None,
                  keep_float: tuple[str, ...] = ()):
    """Quantize ``module`` (eval mode) with ``calibration`` (a CalibrationSet).

    ``example`` is a torch tensor (N, 3, H, W) used for tracing; ``dynamic_shapes`` is passed to
    ``torch.export.export`` (give the same value to ``litert_torch.convert``). With a static trace every
    calibration forward uses the example's batch size, so the set is fed one image at a time and the
    example must have batch 1.

    Returns ``(graph_module, quantizer, extra_facts)``: the converted Q/DQ GraphModule, the PT2EQuantizer to
    hand to ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=quantizer))``, and the facts
    to record in the manifest. ``keep_float``: torch module names of layers left unquantized (the int8 repair's
    choice); their neighbours' quantize / dequantize pairs stay, so the file mixes int8 and float kernels.
    """
    torch = require("torch", "tflite")
    pq = require("litert_torch.quantize.pt2e_quantizer", "tflite")
    qpt2e = require("torchao.quantization.pt2e.quantize_pt2e", "tflite")
    if calibration is None or calibration.size == 0:
        raise SwedgeError("PT2E int8 quantization needs calibration data: pass --calib DIR")
    expected = tuple(example.shape[1:])
    if tuple(calibration.inputs.shape[1:]) != expected:
        raise SwedgeError(f"calibration inputs have shape {tuple(calibration.inputs.shape[1:])} per image but the "
                          f"model is traced at {expected}: build the calibration set with the checkpoint's "
                          "preprocessing")
    if dynamic_shapes is None and example.shape[0] != 1:
        raise SwedgeError("a static-batch PT2E trace needs a batch-1 example (calibration runs image by image)")

    quantizer = pq.PT2EQuantizer().set_global(
        pq.get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False))
    graph = torch.export.export(module.eval(), (example,), dynamic_shapes=dynamic_shapes).module()
    # A config with no specs: the module's nodes are claimed (so the global config skips them) but left float.
    float_config = pq.QuantizationConfig(None, None, None, None, None)
    for name in keep_float:
        quantizer.set_module_name(filter_name(graph, name), float_config)
    prepared = qpt2e.prepare_pt2e(graph, quantizer)
    batch = CALIBRATION_BATCH if dynamic_shapes is not None else 1
    with torch.no_grad():
        for chunk in calibration.batches(batch):
            prepared(torch.from_numpy(chunk))
    converted = qpt2e.convert_pt2e(prepared, fold_quantize=False)
    # The graph was captured from an eval-mode module (BN folded into running stats, no dropout), but the
    # GraphModule wrapper says training=True; set the flag only, so litert-torch does not warn wrongly.
    torch.nn.Module.train(converted, False)
    facts = {
        "io": "int8",
        "weights": f"int8 symmetric {'per-channel' if per_channel else 'per-tensor'} (MinMax)",
        "activations": "int8 per-tensor affine (HistogramObserver)",
        "calibration_batch": batch,
        **({"kept_float": list(keep_float)} if keep_float else {}),
    }
    return converted, quantizer, facts


def filter_name(graph, module_name: str) -> str:
    """The name PT2EQuantizer.set_module_name must be given to match the torch module ``module_name`` in ``graph``.

    litert-torch's filter derives a name from each node's ``nn_module_stack`` *key* as ``key[10:].replace("_", ".")``
    (the ``L__self___a_b`` keys of older torch); torch 2.13 writes keys like ``L__self__a.b``, which that turns into
    ``a.b`` minus its first letter. So the name is derived here from the key the graph really carries, by the same
    rule, and the match stays right whichever key format the installed torch writes."""
    for node in graph.graph.nodes:
        for key, (fqn, _type) in node.meta.get("nn_module_stack", {}).items():
            if fqn == module_name:
                return key[len("L__self___"):].replace("_", ".")
    raise SwedgeError(f"int8 repair: layer '{module_name}' is not in the traced graph (no node comes from that "
                      "module); the ranking and the exported model disagree")
