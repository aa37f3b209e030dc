"""CUDA twins of :mod:`nbconv.kernels.pool2d` (same names and semantics).

Arrays are viewed as planes: inputs ``(P, H, W)``, outputs ``(P, OH, OW)`` with ``P = N*C``.
Forward kernels run one thread per output element, backward kernels one thread per input
element (or input row) that *gathers* its gradient, so no two threads write the same address and
no atomics are needed; sums run in the same order as the CPU kernels.
"""

from __future__ import annotations

import math

from .._target import cuda

__all__ = [
    "_max_pool2d_fwd",
    "_max_pool2d_bwd",
    "_avg_pool2d_fwd",
    "_avg_pool2d_bwd",
    "_adaptive_avg_pool2d_fwd",
    "_adaptive_avg_pool2d_bwd",
]


@cuda.jit
def _max_pool2d_fwd(x, y, idx, kh, kw, sy, sx, ph, pw, dh, dw):  # pragma: no cover
    """``y`` = window max, ``idx`` = its flat ``h * W + w``; ties to the first maximum, NaN
    wins (last NaN recorded), a window without input gives ``-inf`` and ``-1``."""
    t = cuda.grid(1)
    P, H, W = x.shape
    OH = y.shape[1]
    OW = y.shape[2]
    if t >= P * OH * OW:
        return
    j = t % OW
    r = t // OW
    i = r % OH
    p = r // OH
    hs = i * sy - ph
    he = min(hs + (kh - 1) * dh + 1, H)
    if hs < 0:  # the first tap inside the input (arithmetic: padding may be huge)
        hs += (-hs + dh - 1) // dh * dh
    ws = j * sx - pw
    we = min(ws + (kw - 1) * dw + 1, W)
    if ws < 0:
        ws += (-ws + dw - 1) // dw * dw
    best = -math.inf
    bi = -1
    if hs < he and ws < we:
        bi = hs * W + ws
    for h in range(hs, he, dh):
        for w in range(ws, we, dw):
            v = x[p, h, w]
            if v > best or v != v:
                best = v
                bi = h * W + w
    y[p, i, j] = best
    idx[p, i, j] = bi


@cuda.jit
def _max_pool2d_bwd(dy, idx, dx, W, zero):  # pragma: no cover
    """``dx`` (P, H*W) from ``dy``/``idx`` (P, K): a gather, one thread per input row ``h`` of
    a plane, summing (in ``k`` order, like the CPU) the ``dy`` whose index falls in its row;
    ``-1`` entries are skipped.  ``dx`` is overwritten."""
    t = cuda.grid(1)
    P, K = dy.shape
    HW = dx.shape[1]
    H = HW // W
    if t >= P * H:
        return
    h = t % H
    p = t // H
    lo = h * W
    hi = lo + W
    for w in range(lo, hi):
        dx[p, w] = zero
    for k in range(K):
        q = idx[p, k]
        if q >= lo and q < hi:
            dx[p, q] += dy[p, k]


@cuda.jit
def _avg_pool2d_fwd(x, y, kh, kw, sy, sx, ph, pw, count_include_pad, divisor):  # pragma: no cover
    """Average pooling with PyTorch's divisor rule (window clipped to the padded input)."""
    t = cuda.grid(1)
    P, H, W = x.shape
    OH = y.shape[1]
    OW = y.shape[2]
    if t >= P * OH * OW:
        return
    j = t % OW
    r = t // OW
    i = r % OH
    p = r // OH
    hs = i * sy - ph
    he = min(hs + kh, H + ph)
    hn = he - hs
    hs = max(hs, 0)
    he = min(he, H)
    ws = j * sx - pw
    we = min(ws + kw, W + pw)
    wn = we - ws
    ws = max(ws, 0)
    we = min(we, W)
    if hs >= he or ws >= we:
        y[p, i, j] = 0.0
        return
    s = 0.0
    for h in range(hs, he):
        for w in range(ws, we):
            s += x[p, h, w]
    if divisor != 0:
        d = divisor
    elif count_include_pad:
        d = hn * wn
    else:
        d = (he - hs) * (we - ws)
    y[p, i, j] = s / d


@cuda.jit
def _avg_pool2d_bwd(dy, dx, kh, kw, sy, sx, ph, pw, count_include_pad, divisor,
                    zero):  # pragma: no cover
    """Gradient of :func:`_avg_pool2d_fwd` as a gather, one thread per input element."""
    t = cuda.grid(1)
    P, H, W = dx.shape
    OH = dy.shape[1]
    OW = dy.shape[2]
    if t >= P * H * W:
        return
    w = t % W
    r = t // W
    h = r % H
    p = r // H
    num = h + ph - kh + 1
    i0 = 0
    if num > 0:
        i0 = (num + sy - 1) // sy
    i1 = min((h + ph) // sy, OH - 1)
    numw = w + pw - kw + 1
    j0 = 0
    if numw > 0:
        j0 = (numw + sx - 1) // sx
    j1 = min((w + pw) // sx, OW - 1)
    acc = zero
    for i in range(i0, i1 + 1):
        hs = i * sy - ph
        he = min(hs + kh, H + ph)
        hn = he - hs
        hc = min(he, H) - max(hs, 0)
        for j in range(j0, j1 + 1):
            ws = j * sx - pw
            we = min(ws + kw, W + pw)
            wn = we - ws
            ws = max(ws, 0)
            we = min(we, W)
            if divisor != 0:
                d = divisor
            elif count_include_pad:
                d = hn * wn
            else:
                d = hc * (we - ws)
            acc += dy[p, i, j] / d
    dx[p, h, w] = acc


@cuda.jit
def _adaptive_avg_pool2d_fwd(x, y):  # pragma: no cover
    """Bin ``i`` spans rows ``floor(i*H/OH) : ceil((i+1)*H/OH)`` (likewise columns)."""
    t = cuda.grid(1)
    P, H, W = x.shape
    OH = y.shape[1]
    OW = y.shape[2]
    if t >= P * OH * OW:
        return
    j = t % OW
    r = t // OW
    i = r % OH
    p = r // OH
    hs = (i * H) // OH
    he = ((i + 1) * H + OH - 1) // OH
    ws = (j * W) // OW
    we = ((j + 1) * W + OW - 1) // OW
    s = 0.0
    for h in range(hs, he):
        for w in range(ws, we):
            s += x[p, h, w]
    y[p, i, j] = s / ((he - hs) * (we - ws))


@cuda.jit
def _adaptive_avg_pool2d_bwd(dy, dx, zero):  # pragma: no cover
    """Gradient of :func:`_adaptive_avg_pool2d_fwd` as a gather, one thread per input
    element."""
    t = cuda.grid(1)
    P, H, W = dx.shape
    OH = dy.shape[1]
    OW = dy.shape[2]
    if t >= P * H * W:
        return
    w = t % W
    r = t // W
    h = r % H
    p = r // H
    i0 = (h * OH) // H
    i1 = ((h + 1) * OH + H - 1) // H
    j0 = (w * OW) // W
    j1 = ((w + 1) * OW + W - 1) // W
    acc = zero
    for i in range(i0, i1):
        hs = (i * H) // OH
        he = ((i + 1) * H + OH - 1) // OH
        for j in range(j0, j1):
            ws = (j * W) // OW
            we = ((j + 1) * W + OW - 1) // OW
            acc += dy[p, i, j] / ((he - hs) * (we - ws))
    dx[p, h, w] = acc
