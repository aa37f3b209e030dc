"""Slow, explicit-loop references for pooling (PyTorch semantics).  Never imports nbconv.

Inputs are (N, C, H, W) float arrays; hyperparameters are pairs ``(vertical, horizontal)``.
Output sizes are computed here independently of nbconv (PyTorch's pooling_output_shape).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ref_pool_out_size",
    "ref_max_pool2d",
    "ref_max_pool2d_backward",
    "ref_avg_pool2d",
    "ref_avg_pool2d_backward",
    "ref_adaptive_avg_pool2d",
    "ref_adaptive_avg_pool2d_backward",
]


def ref_pool_out_size(n, k, s, p, d=1, ceil_mode=False):
    """PyTorch's pooling output length (may be < 1)."""
    eff = d * (k - 1) + 1
    num = n + 2 * p - eff
    if num < 0:
        return 0
    o = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def ref_max_pool2d(x, k, s, p, d=(1, 1), ceil_mode=False):
    """Return ``(y, indices)``: per window, the list of real taps in row-major order; the
    position of the last NaN if any, else the first maximum (np.argmax); ``(-inf, -1)`` for a
    window without real taps."""
    N, C, H, W = x.shape
    oh = ref_pool_out_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    ow = ref_pool_out_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.empty((N, C, oh, ow), x.dtype)
    ind = np.empty((N, C, oh, ow), np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(oh):
                for j in range(ow):
                    vals, pos = [], []
                    for a in range(k[0]):
                        h = i * s[0] - p[0] + a * d[0]
                        for b in range(k[1]):
                            w = j * s[1] - p[1] + b * d[1]
                            if 0 <= h < H and 0 <= w < W:
                                vals.append(x[n, c, h, w])
                                pos.append(h * W + w)
                    if not vals:
                        y[n, c, i, j], ind[n, c, i, j] = -np.inf, -1
                        continue
                    vals = np.array(vals)
                    nans = np.flatnonzero(np.isnan(vals))
                    t = nans[-1] if nans.size else int(np.argmax(vals))
                    y[n, c, i, j], ind[n, c, i, j] = vals[t], pos[t]
    return y, ind


def ref_max_pool2d_backward(dy, ind, input_shape):
    """Loop scatter of ``dy`` to the flat positions ``ind``."""
    N, C, H, W = input_shape
    dx = np.zeros((N, C, H * W), dy.dtype)
    for n in range(N):
        for c in range(C):
            for t, g in zip(ind[n, c].ravel(), dy[n, c].ravel()):
                if t >= 0:
                    dx[n, c, t] += g
    return dx.reshape(input_shape)


def _avg_windows(H, W, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """Yield ``(i, j, rows, cols, divisor)`` with the real-input rows/cols of each window."""
    oh = ref_pool_out_size(H, k[0], s[0], p[0], 1, ceil_mode)
    ow = ref_pool_out_size(W, k[1], s[1], p[1], 1, ceil_mode)
    for i in range(oh):
        # the window in padded coordinates, clipped to the padded input [-p, H + p)
        prow = [h for h in range(i * s[0] - p[0], i * s[0] - p[0] + k[0]) if h < H + p[0]]
        rows = [h for h in prow if 0 <= h < H]
        for j in range(ow):
            pcol = [w for w in range(j * s[1] - p[1], j * s[1] - p[1] + k[1]) if w < W + p[1]]
            cols = [w for w in pcol if 0 <= w < W]
            if divisor_override is not None:
                div = divisor_override
            elif count_include_pad:
                div = len(prow) * len(pcol)
            else:
                div = len(rows) * len(cols)
            yield i, j, rows, cols, div, (oh, ow)


def ref_avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True, divisor_override=None):
    N, C, H, W = x.shape
    oh = ref_pool_out_size(H, k[0], s[0], p[0], 1, ceil_mode)
    ow = ref_pool_out_size(W, k[1], s[1], p[1], 1, ceil_mode)
    y = np.zeros((N, C, oh, ow), np.float64)
    for i, j, rows, cols, div, _ in _avg_windows(
        H, W, k, s, p, ceil_mode, count_include_pad, divisor_override
    ):
        for n in range(N):
            for c in range(C):
                tot = 0.0
                for h in rows:
                    for w in cols:
                        tot += float(x[n, c, h, w])
                y[n, c, i, j] = tot / div
    return y.astype(x.dtype)


def ref_avg_pool2d_backward(dy, input_shape, k, s, p, ceil_mode=False, count_include_pad=True,
                            divisor_override=None):
    """Loop scatter: each output spreads ``dy / divisor`` over its real window elements."""
    N, C, H, W = input_shape
    dx = np.zeros(input_shape, np.float64)
    for i, j, rows, cols, div, _ in _avg_windows(
        H, W, k, s, p, ceil_mode, count_include_pad, divisor_override
    ):
        for h in rows:
            for w in cols:
                dx[:, :, h, w] += dy[:, :, i, j] / div
    return dx


def _bins(n, o):
    return [((i * n) // o, -((-(i + 1) * n) // o)) for i in range(o)]


def ref_adaptive_avg_pool2d(x, out):
    N, C, H, W = x.shape
    y = np.zeros((N, C) + tuple(out), np.float64)
    for i, (h0, h1) in enumerate(_bins(H, out[0])):
        for j, (w0, w1) in enumerate(_bins(W, out[1])):
            for n in range(N):
                for c in range(C):
                    tot = 0.0
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            tot += float(x[n, c, h, w])
                    y[n, c, i, j] = tot / ((h1 - h0) * (w1 - w0))
    return y.astype(x.dtype)


def ref_adaptive_avg_pool2d_backward(dy, input_shape):
    N, C, H, W = input_shape
    dx = np.zeros(input_shape, np.float64)
    for i, (h0, h1) in enumerate(_bins(H, dy.shape[2])):
        for j, (w0, w1) in enumerate(_bins(W, dy.shape[3])):
            dx[:, :, h0:h1, w0:w1] += (dy[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return dx
