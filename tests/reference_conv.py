"""Slow, independent references for conv1d/conv2d (never imports nbconv).

2-D: for every output channel, the sum over the input channels of its group of
``scipy.signal.correlate2d(xpad[n, c], w_dilated[f, c], "valid")[::sy, ::sx]``, where
``w_dilated`` has ``dilation - 1`` zeros inserted between kernel taps and ``xpad`` is built with
``np.pad`` (PyTorch's padding modes: zeros = constant 0, reflect = "reflect",
replicate = "edge", circular = "wrap"; asymmetric pads allowed).
Weight gradient (zero padding, groups 1): one einsum per tap over the strided input windows.
1-D: explicit loops.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

__all__ = ["ref_pads", "ref_pad", "ref_conv2d", "ref_conv2d_weight_grad", "ref_conv1d",
           "NP_PAD_MODES"]

NP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                "circular": "wrap"}


def _two(v):
    return (v, v) if np.isscalar(v) else (int(v[0]), int(v[1]))


def ref_pads(padding, in_hw, k_hw, stride, dilation):
    """(top, bottom, left, right); "same" is TensorFlow's rule (odd pixel bottom/right)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        out = []
        for n, k, s, d in zip(in_hw, k_hw, stride, dilation):
            o = math.ceil(n / s)
            total = max((o - 1) * s + (k - 1) * d + 1 - n, 0)
            out += [total // 2, total - total // 2]
        return tuple(out)
    ph, pw = _two(padding)
    return (ph, ph, pw, pw)


def ref_pad(x, pads, padding_mode):
    """Pad the last two axes of ``x`` by ``pads = (top, bottom, left, right)``."""
    pt, pb, pl, pr = pads
    width = [(0, 0)] * (x.ndim - 2) + [(pt, pb), (pl, pr)]
    return np.pad(x, width, mode=NP_PAD_MODES[padding_mode])


def _dilate(k, dh, dw):
    kh, kw = k.shape
    out = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1), dtype=k.dtype)
    out[::dh, ::dw] = k
    return out


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Reference conv2d in float64 (cross-correlation, PyTorch semantics)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    assert C % groups == 0 and F % groups == 0 and Cg == C // groups
    sy, sx = _two(stride)
    dh, dw = _two(dilation)
    pads = ref_pads(padding, (H, W), (kh, kw), (sy, sx), (dh, dw))
    xp = ref_pad(x, pads, padding_mode)
    OH = (H + pads[0] + pads[1] - dh * (kh - 1) - 1) // sy + 1
    OW = (W + pads[2] + pads[3] - dw * (kw - 1) - 1) // sx + 1
    Fg = F // groups
    y = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            acc = np.zeros((OH, OW))
            for cl in range(Cg):
                full = signal.correlate2d(xp[n, g * Cg + cl], _dilate(w[f, cl], dh, dw), "valid")
                acc += full[::sy, ::sx][:OH, :OW]
            y[n, f] = acc + (0.0 if b is None else float(b[f]))
    return y


def ref_conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Reference conv1d in float64 with explicit loops."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, L = x.shape
    F, Cg, k = w.shape
    if padding == "same":
        o = math.ceil(L / stride)
        total = max((o - 1) * stride + (k - 1) * dilation + 1 - L, 0)
        p0, p1 = total // 2, total - total // 2
    elif padding == "valid":
        p0 = p1 = 0
    else:
        p0 = p1 = int(padding)
    xp = np.pad(x, [(0, 0), (0, 0), (p0, p1)], mode=NP_PAD_MODES[padding_mode])
    OL = (L + p0 + p1 - dilation * (k - 1) - 1) // stride + 1
    Fg = F // groups
    y = np.zeros((N, F, OL))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for i in range(OL):
                s = 0.0 if b is None else float(b[f])
                for cl in range(Cg):
                    for q in range(k):
                        s += w[f, cl, q] * xp[n, g * Cg + cl, i * stride + q * dilation]
                y[n, f, i] = s
    return y


def ref_conv2d_weight_grad(dy, x, kh, kw, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """``gw[f, c, p, q] = sum_{n,i,j} dy[n, f, i, j] * xpad[n, c, i*sy + p*dh, j*sx + q*dw]``
    in float64 (zero padding ``(ph, pw)`` on both sides, groups 1)."""
    (sy, sx), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = dy.shape[2:]
    xpad = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    want = np.zeros((dy.shape[1], x.shape[1], kh, kw))
    for p in range(kh):
        for q in range(kw):
            win = xpad[:, :, p * dh:p * dh + (OH - 1) * sy + 1:sy,
                       q * dw:q * dw + (OW - 1) * sx + 1:sx]
            want[:, :, p, q] = np.einsum("nfij,ncij->fc", np.asarray(dy, np.float64), win)
    return want


def random_layer(seed, dtype, x_shape, w_shape):
    """``(x, w, b)``: standard normal input ``x_shape`` (N, C, H, W), weights ``w_shape``
    (F, C, kh, kw) and bias (F,) in ``dtype``, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    return x, w, rng.standard_normal(w_shape[0]).astype(dtype)
