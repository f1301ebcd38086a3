"""What an int8 QDQ ONNX computes on each of onnxruntime's CPU integer paths, emulated in numpy (torch-free).

The same QDQ file does not give the same features everywhere. onnxruntime fuses DequantizeLinear -> Conv into
an integer convolution; on x86 it first turns int8 activations into uint8 (zero point + 128) and multiplies
uint8 activations by int8 weights (U8S8). How the products are summed depends on the CPU:

- ``exact``: every product accumulated in int32 — AVX-512 VNNI / AVX-VNNI (VPDPBUSD), AMX, ARM dot-product
  and the portable kernels. This is also what TensorRT and the QDQ semantics define.
- ``vpmaddubsw``: AVX2 and AVX-512 without VNNI. VPMADDUBSW adds each *pair* of adjacent u8 x s8 products into
  a signed 16-bit lane with saturation, then VPMADDWD widens the pairs to int32. A pair whose sum leaves
  [-32768, 32767] is clipped: the result is wrong, silently.

A pair can only saturate when 255 * (|w0| + |w1|) > 32767, i.e. |w0| + |w1| > 128: weights kept in 7 bits
(|w| <= 64, onnxruntime's ``reduce_range``, NNCF's ``overflow_fix``) can never saturate, so such a file means
the same on every path. ``saturation_bound`` checks that statically; ``run`` computes the features a path gives.

Emulation facts (read from onnxruntime's MLAS sources, so an approximation of kernel details, not of the
arithmetic): im2col in NHWC order, so the K axis runs (kh, kw, cin) and pairs are adjacent K elements; padding
holds the zero point; grouped / depthwise convolutions use MLAS's depthwise kernel, which widens to 16 bits
before multiplying (exact on every path). Everything but the convolutions runs in onnx's reference evaluator.

Checked against the real kernels (onnxruntime 1.32 on an emulated AVX2 CPU without VNNI, qemu-user; see
tests/avx2_cpu.py): bit-identical on plain 3x3 convolutions whose 8-bit weights saturate, but NOT on ResNet-18
with 8-bit weights, where the emulation saturates more than the kernels do (max error vs the exact path, relative to
the largest feature: emulated 0.135, real 0.028; with the 1x1 convolutions left exact, 0.027). So ``vpmaddubsw``
figures overstate an AVX2 CPU's loss on such networks. Swedge's exports do not lean on it: pair-safe ONNX and
7-bit OpenVINO files give the same features on the real AVX2 kernels as on VNNI ones (tested there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from swedge.errors import SwedgeError, require

PATHS = ("exact", "vpmaddubsw")
INT16_MIN, INT16_MAX = -32768, 32767
EMU_DOMAIN = "swedge.int8emu"


def _weight_dq(graph) -> dict[str, tuple]:
    """DequantizeLinear outputs fed by an int8 initializer: output name -> (int weights, scale, zero point)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and inits[node.input[0]].dtype == np.int8:
            zero = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            out[node.output[0]] = (inits[node.input[0]], inits.get(node.input[1]), zero)
    return out


def saturation_bound(path: str | Path) -> dict:
    """The worst pair sum |u8 * w0 + u8 * w1| any input can produce in the file's ungrouped int8 convolutions.

    ``saturation_free`` is True when it fits int16 (then every CPU path computes the exact integers)."""
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(path)).graph
    weights = _weight_dq(graph)
    worst, layers = 0, []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group != 1:
            continue
        w = weights[node.input[1]][0].astype(np.int64)
        k = np.abs(w.transpose(0, 2, 3, 1).reshape(len(w), -1))  # (cout, kh*kw*cin): MLAS's K order
        if k.shape[1] % 2:
            k = np.pad(k, ((0, 0), (0, 1)))
        pair = 255 * int((k[:, 0::2] + k[:, 1::2]).max())
        worst = max(worst, pair)
        if pair > INT16_MAX:
            layers.append(node.name)
    return {"worst_pair_sum": worst, "saturation_free": worst <= INT16_MAX, "layers_that_can_saturate": layers}


def _pad_nchw(x: np.ndarray, pads: list[int], value) -> np.ndarray:
    half = len(pads) // 2
    return np.pad(x, ((0, 0), (0, 0), *zip(pads[:half], pads[half:])), constant_values=value)


def _columns(x: np.ndarray, kernel, strides) -> tuple[np.ndarray, tuple]:
    """im2col of (N, C, H, W) in NHWC order: (N * OH * OW, kh, kw, C)."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(x, tuple(kernel), axis=(2, 3))[:, :, ::strides[0], ::strides[1]]  # N C OH OW kh kw
    n, c, oh, ow, kh, kw = win.shape
    return win.transpose(0, 2, 3, 4, 5, 1).reshape(n * oh * ow, kh, kw, c), (n, oh, ow)


def _saturation_correction(cols: np.ndarray, wmat: np.ndarray) -> np.ndarray:
    """Sum over pairs of (int16-clipped pair sum - true pair sum): what VPMADDUBSW loses, (M, Cout)."""
    if wmat.shape[0] % 2:
        cols = np.pad(cols, ((0, 0), (0, 1)))
        wmat = np.pad(wmat, ((0, 1), (0, 0)))
    w0, w1 = wmat[0::2], wmat[1::2]
    j, co = np.nonzero(255 * (np.abs(w0) + np.abs(w1)) > INT16_MAX)  # only these pairs can leave int16
    corr = np.zeros((len(cols), wmat.shape[1]), np.float64)
    for start in range(0, len(j), 4096):
        jj, cc = j[start:start + 4096], co[start:start + 4096]
        pair = cols[:, 2 * jj] * w0[jj, cc] + cols[:, 2 * jj + 1] * w1[jj, cc]
        delta = np.clip(pair, INT16_MIN, INT16_MAX) - pair
        np.add.at(corr.T, cc, delta.T)
    return corr


def integer_conv(xq: np.ndarray, x_zero: int, wq: np.ndarray, *, pads, strides, group: int, path: str) -> np.ndarray:
    """sum((x - zx) * w) in int32 semantics for int8 weights (symmetric), as ``path`` computes it; float64 out."""
    if path not in PATHS:
        raise SwedgeError(f"unknown int8 path '{path}'; choose from {', '.join(PATHS)}")
    x = xq.astype(np.int64)
    zero = int(x_zero)
    if xq.dtype == np.int8:  # onnxruntime on x86 runs int8 activations as uint8 with zero point + 128
        x, zero = x + 128, zero + 128
    x = _pad_nchw(x, list(pads), zero).astype(np.float64)  # integers < 2**53: float64 BLAS is exact
    cout, cin_g, kh, kw = wq.shape
    cols, (n, oh, ow) = _columns(x, (kh, kw), strides)
    if group == 1:
        wmat = wq.transpose(2, 3, 1, 0).reshape(kh * kw * cin_g, cout).astype(np.float64)
        flat = cols.reshape(len(cols), -1)
        acc = flat @ wmat
        if path == "vpmaddubsw":
            acc += _saturation_correction(flat, wmat)
        acc -= zero * wmat.sum(0)  # the zero point's share, exact in MLAS (column sums)
    else:  # grouped / depthwise: MLAS's depthwise kernel is exact on every path
        g_cols = cols.reshape(len(cols), kh * kw, group, cin_g)
        w = wq.reshape(group, cout // group, cin_g, kh * kw).astype(np.float64)
        acc = np.einsum("mkgc,gock->mgo", g_cols - zero, w).reshape(len(cols), cout)
    return acc.reshape(n, oh, ow, cout).transpose(0, 3, 1, 2)


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _emulation_graph(model):
    """The model with every DQ(x) -> DQ(int8 W) -> Conv replaced by one IntegerConv node of EMU_DOMAIN."""
    import onnx

    graph = model.graph
    weights = _weight_dq(graph)
    act_dq = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    nodes = []
    for node in graph.node:
        if node.op_type == "Conv" and node.input[0] in act_dq and node.input[1] in weights:
            dq = act_dq[node.input[0]]
            attrs = _attrs(node)
            if any(d != 1 for d in attrs.get("dilations", [1, 1])) or attrs.get("auto_pad", b"NOTSET") not in (
                    b"NOTSET", "NOTSET"):
                raise SwedgeError(f"int8 emulation supports explicit pads and dilation 1 only ({node.name})")
            weight_node = next(n for n in graph.node if n.output[0] == node.input[1])
            inputs = [dq.input[0], dq.input[1], dq.input[2] if len(dq.input) > 2 else "",
                      weight_node.input[0], weight_node.input[1], node.input[2] if len(node.input) > 2 else ""]
            nodes.append(onnx.helper.make_node(
                "IntegerConv", inputs, list(node.output), name=node.name, domain=EMU_DOMAIN,
                pads=attrs.get("pads", [0, 0, 0, 0]), strides=attrs.get("strides", [1, 1]),
                group=attrs.get("group", 1)))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    model.opset_import.append(onnx.helper.make_opsetid(EMU_DOMAIN, 1))
    for opset in model.opset_import:  # onnx.reference implements (De)QuantizeLinear from opset 19 on; same maths
        if opset.domain in ("", "ai.onnx") and opset.version < 19:
            opset.version = 19
    return model


def _ops(path: str):
    from onnx.reference.op_run import OpRun

    class IntegerConv(OpRun):
        op_domain = EMU_DOMAIN

        def _run(self, xq, x_scale, x_zero, wq, w_scale, bias, pads=None, strides=None, group=None):
            zero = 0 if x_zero is None else int(np.asarray(x_zero).reshape(-1)[0])
            acc = integer_conv(xq, zero, wq, pads=pads, strides=strides, group=group, path=path)
            scale = float(np.asarray(x_scale).reshape(-1)[0]) * np.asarray(w_scale, np.float64).reshape(1, -1, 1, 1)
            out = acc * scale
            if bias is not None:
                out = out + np.asarray(bias, np.float64).reshape(1, -1, 1, 1)
            return (out.astype(np.float32),)

    class MaxPool(OpRun):  # the reference MaxPool loops in Python; this one is numpy's
        def _run(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,
                 storage_order=None, strides=None):
            from numpy.lib.stride_tricks import sliding_window_view

            if ceil_mode or (dilations and any(d != 1 for d in dilations)):
                raise SwedgeError("int8 emulation: MaxPool with ceil_mode or dilation is not supported")
            xp = _pad_nchw(x, list(pads or [0] * 4), -np.inf)
            win = sliding_window_view(xp, tuple(kernel_shape), axis=(2, 3))[:, :, ::strides[0], ::strides[1]]
            return (win.max(axis=(-2, -1)).astype(x.dtype),)

    return [IntegerConv, MaxPool]


def run(path_to_model: str | Path, inputs: np.ndarray, path: str = "exact", batch: int = 16) -> np.ndarray:
    """The features ``path`` computes for ``inputs`` (N, C, H, W float32) from the int8 QDQ ONNX file."""
    onnx = require("onnx", "onnx")
    from onnx.reference import ReferenceEvaluator

    if path not in PATHS:
        raise SwedgeError(f"unknown int8 path '{path}'; choose from {', '.join(PATHS)}")
    model = _emulation_graph(onnx.load(str(path_to_model)))
    session = ReferenceEvaluator(model, new_ops=_ops(path))
    name = model.graph.input[0].name
    chunks = [session.run(None, {name: np.ascontiguousarray(inputs[i:i + batch], np.float32)})[0]
              for i in range(0, len(inputs), batch)]
    return np.concatenate(chunks)
