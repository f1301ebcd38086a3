"""NumPy kernels for the MIL reference interpreter: 2-D convolution and pooling in float32, NCHW.

Convolution is im2col + one BLAS matmul (1x1 convs skip im2col), depthwise convolution is a sum over the
kernel taps, grouped convolution runs one dense conv per group. No torch: this runs on the device side.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def resolve_pads(pad_type: str, pad, in_hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding for a MIL ``pad_type``: valid, custom, same or same_lower."""
    if pad_type == "valid":
        return 0, 0, 0, 0
    if pad_type == "custom":
        top, bottom, left, right = (int(p) for p in pad)
        return top, bottom, left, right
    if pad_type not in ("same", "same_lower"):
        raise ValueError(f"unknown MIL pad_type {pad_type!r}")
    out = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2  # 'same' puts the odd pixel at the end, 'same_lower' at the start
        out += [small, total - small] if pad_type == "same" else [total - small, small]
    return out[0], out[1], out[2], out[3]


def _pad(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(x: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """View (N, C, Ho, Wo, kh, kw) of the sliding windows of an already padded x."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    view = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def _dense(x: np.ndarray, w: np.ndarray, strides, dilations) -> np.ndarray:
    n = x.shape[0]
    o, c, kh, kw = w.shape
    if kh == kw == 1:
        xs = x[:, :, ::strides[0], ::strides[1]]
        ho, wo = xs.shape[2:]
        cols = xs.transpose(0, 2, 3, 1).reshape(n * ho * wo, c)
    else:
        win = _windows(x, (kh, kw), strides, dilations)
        ho, wo = win.shape[2:4]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)  # the im2col copy
    y = cols @ w.reshape(o, -1).T
    return y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)


def _depthwise(x: np.ndarray, w: np.ndarray, strides, dilations, out_hw) -> np.ndarray:
    multiplier = w.shape[0] // x.shape[1]
    if multiplier > 1:  # output channel o reads input channel o // multiplier
        x = np.repeat(x, multiplier, axis=1)
    (sh, sw), (dh, dw), (ho, wo) = strides, dilations, out_hw
    y = np.zeros((x.shape[0], w.shape[0], ho, wo), np.float32)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            tap = x[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw]
            y += tap * w[:, 0, i, j][None, :, None, None]
    return y


def conv2d(x, weight, bias=None, strides=(1, 1), pad_type="valid", pad=(0, 0, 0, 0), dilations=(1, 1), groups=1):
    """MIL ``conv`` for 2-D inputs: x (N, C, H, W), weight (O, C / groups, kh, kw)."""
    w = weight
    strides, dilations, groups = tuple(int(s) for s in strides), tuple(int(d) for d in dilations), int(groups)
    kernel = w.shape[2:]
    x = _pad(x, resolve_pads(pad_type, pad, x.shape[2:], kernel, strides, dilations))
    out_hw = tuple((size - (k - 1) * d - 1) // s + 1 for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations))
    channels = x.shape[1]
    if groups == 1:
        y = _dense(x, w, strides, dilations)
    elif groups == channels and w.shape[1] == 1:
        y = _depthwise(x, w, strides, dilations, out_hw)
    else:
        cin, cout = channels // groups, w.shape[0] // groups
        y = np.concatenate([_dense(x[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout], strides, dilations)
                            for g in range(groups)], axis=1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


def _pool_pads(x, kernel, strides, pad_type, pad, ceil_mode) -> tuple[int, int, int, int]:
    top, bottom, left, right = resolve_pads(pad_type, pad, x.shape[2:], kernel, strides, (1, 1))
    if ceil_mode:  # extra bottom/right padding so the last partial window is kept
        extra = []
        for size, k, s in zip((x.shape[2] + top + bottom, x.shape[3] + left + right), kernel, strides):
            out = math.ceil((size - k) / s) + 1
            extra.append(max((out - 1) * s + k - size, 0))
        bottom, right = bottom + extra[0], right + extra[1]
    return top, bottom, left, right


def max_pool(x, kernel_sizes, strides, pad_type="valid", pad=(0, 0, 0, 0), ceil_mode=False):
    kernel, strides = tuple(int(k) for k in kernel_sizes), tuple(int(s) for s in strides)
    pads = _pool_pads(x, kernel, strides, pad_type, pad, ceil_mode)
    return _windows(_pad(x, pads, -np.inf), kernel, strides, (1, 1)).max(axis=(4, 5))


def avg_pool(x, kernel_sizes, strides, pad_type="valid", pad=(0, 0, 0, 0), exclude_padding_from_average=False,
             ceil_mode=False):
    kernel, strides = tuple(int(k) for k in kernel_sizes), tuple(int(s) for s in strides)
    pads = _pool_pads(x, kernel, strides, pad_type, pad, ceil_mode)
    total = _windows(_pad(x, pads), kernel, strides, (1, 1)).sum(axis=(4, 5))
    if exclude_padding_from_average:
        ones = _pad(np.ones((1, 1, *x.shape[2:]), np.float32), pads)
        return total / _windows(ones, kernel, strides, (1, 1)).sum(axis=(4, 5))
    return total / float(kernel[0] * kernel[1])
