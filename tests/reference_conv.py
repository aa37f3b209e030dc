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


def _valid_taps(n, o, s, p0, d, k):
    """Per kernel tap ``t``: the output indices ``i`` (a range) whose input index
    ``i*s - p0 + t*d`` lies in ``[0, n)``, and the first such input index."""
    out = []
    for t in range(k):
        off = t * d - p0
        lo = 0
        while lo < o and lo * s + off < 0:
            lo += 1
        hi = lo
        while hi < o and hi * s + off < n:
            hi += 1
        out.append((lo, hi, lo * s + off))
    return out


def ref_conv2d_exact(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
                     padding_mode="zeros"):
    """conv2d in float64 by the definition, for inputs holding inf/NaN: a zero-padded
    position contributes no term at all (not ``0 * w``, which is NaN for an infinite
    weight); other padding modes pad with copies of ``x`` (``np.pad``), which do contribute.
    Sums are taken over the real terms only, so NaN/inf reach exactly the outputs whose
    windows hold them (``0 * inf`` of a real tap is NaN, as in NumPy)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    sy, sx = _two(stride)
    dh, dw = _two(dilation)
    pt, pb, pl, pr = ref_pads(padding, (H, W), (kh, kw), (sy, sx), (dh, dw))
    if padding_mode != "zeros":
        x = ref_pad(x, (pt, pb, pl, pr), padding_mode)
        H, W, (pt, pb, pl, pr) = x.shape[2], x.shape[3], (0, 0, 0, 0)
    OH = (H + pt + pb - dh * (kh - 1) - 1) // sy + 1
    OW = (W + pl + pr - dw * (kw - 1) - 1) // sx + 1
    Fg = F // groups
    y = np.zeros((N, F, OH, OW))
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    rows, cols = _valid_taps(H, OH, sy, pt, dh, kh), _valid_taps(W, OW, sx, pl, dw, kw)
    for g in range(groups):
        xs = x[:, g * Cg:(g + 1) * Cg]
        for p, (i0, i1, h0) in enumerate(rows):
            for q, (j0, j1, c0) in enumerate(cols):
                if i1 <= i0 or j1 <= j0:
                    continue
                win = xs[:, :, h0:h0 + (i1 - i0 - 1) * sy + 1:sy,
                         c0:c0 + (j1 - j0 - 1) * sx + 1:sx]
                for f in range(g * Fg, (g + 1) * Fg):
                    for c in range(Cg):  # one term per channel: no sum over a zero weight row
                        y[:, f, i0:i1, j0:j1] += w[f, c, p, q] * win[:, c]
    return y


def ref_conv2d_backward_exact(dy, x, w, stride=1, padding=0, dilation=1, groups=1,
                              padding_mode="zeros"):
    """``(dx, dw, db)`` of :func:`ref_conv2d_exact` by the same rule: only real terms are
    summed (``dx`` gathers ``w * dy`` over the taps that read each input pixel, the gradient
    of a copied padding pixel added to its source; ``dw`` sums ``dy * xpad`` over the taps
    that land inside the padded input)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    N, C, H0, W0 = x.shape
    F, Cg, kh, kw = w.shape
    sy, sx = _two(stride)
    dh, dw_ = _two(dilation)
    pads = ref_pads(padding, (H0, W0), (kh, kw), (sy, sx), (dh, dw_))
    pt, pl = pads[0], pads[2]
    xp = x
    if padding_mode != "zeros":
        xp = ref_pad(x, pads, padding_mode)
        pt = pl = 0
    H, W = xp.shape[2], xp.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    Fg = F // groups
    dxp = np.zeros(xp.shape)
    gw = np.zeros(w.shape)
    rows, cols = _valid_taps(H, OH, sy, pt, dh, kh), _valid_taps(W, OW, sx, pl, dw_, kw)
    for g in range(groups):
        for p, (i0, i1, h0) in enumerate(rows):
            for q, (j0, j1, c0) in enumerate(cols):
                if i1 <= i0 or j1 <= j0:
                    continue
                hs = slice(h0, h0 + (i1 - i0 - 1) * sy + 1, sy)
                ws = slice(c0, c0 + (j1 - j0 - 1) * sx + 1, sx)
                for f in range(g * Fg, (g + 1) * Fg):
                    d = dy[:, f, i0:i1, j0:j1]
                    for c in range(Cg):
                        ch = g * Cg + c
                        dxp[:, ch, hs, ws] += w[f, c, p, q] * d
                        gw[f, c, p, q] = np.sum(d * xp[:, ch, hs, ws])
    if padding_mode == "zeros":
        dx = dxp
    else:  # the adjoint of np.pad: each padded pixel's gradient goes to the pixel it copies
        src_h = np.pad(np.arange(H0), pads[:2], mode=NP_PAD_MODES[padding_mode])
        src_w = np.pad(np.arange(W0), pads[2:], mode=NP_PAD_MODES[padding_mode])
        dx = np.zeros(x.shape)
        for i in range(H):
            for j in range(W):
                dx[:, :, src_h[i], src_w[j]] += dxp[:, :, i, j]
    return dx, gw, dy.sum(axis=(0, 2, 3))
