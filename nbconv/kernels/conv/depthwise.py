"""The depthwise family of the direct algorithm (one input channel per group, ``groups == C``):
planes padded in L1 -- forward pass at any stride, weight gradient at stride 1.

Run by :mod:`nbconv.conv.direct` for the plan's family ``"depthwise"``; the data gradient of a
layer with one filter per channel is this forward pass with the flipped kernel.

A depthwise layer does 9 multiply-adds per output pixel (3x3) and is bound by memory traffic,
so what matters is touching every input and output value once.  Each task takes one
(image, channel) plane: it copies the plane with its zero border into a small scratch buffer
(a 56x56 plane and its 58x58 padded copy fit in L1 together), then computes every filter of
that channel: 3x3 kernels row by row straight into the output, all nine taps in one pass so
that the sum stays in a register; other kernels on "wide rows" (see
:mod:`nbconv.kernels.conv.wide`: output ``t = i*Wp + j`` reads ``t + p*dh*Wp + q*dw``).
No padded copy of the whole batch is ever written (the generic path paid an extra pass over
the input for it, and the weight gradient two transposed copies), and the 3x3 rows go straight
into the output (a scratch copied out through row views taken in the parallel loop made both
threads update the views' reference counts); the measurements of these steps are in
``benchmarks/results/conv_plan_measurements.csv``.

Layouts: ``x`` (N, C, H, W), ``w`` (C*m, 1, kh, kw) for a channel multiplier ``m``, ``y``
(N, C*m, OH, OW); filter ``f`` reads channel ``f // m``.  Implicit zero padding ``pt``/``pl``
on the top/left (negative values crop); the bottom/right padding follows from ``OH``/``OW``.
C-contiguous float32/float64 arrays of one dtype; outputs are overwritten.
"""

from __future__ import annotations

import numba
import numpy as np

from ..._config import JIT_OPTIONS
from .layout import _pad_plane

__all__ = ["_conv2d_depthwise_fwd", "_conv2d_depthwise_bwd_weight"]


@numba.njit(**JIT_OPTIONS)
def _padded_plane(src, xs, pt, pl):
    """``xs`` (Hp + 1, Wp) = zeros with ``src`` (H, W) at (pt, pl), cropped to fit; the extra
    zero row lets the last wide row read past its end (serial helper)."""
    H, W = src.shape
    Hp, Wp = xs.shape
    _pad_plane(src, xs, pt, pl, max(pt, 0), min(pt + H, Hp), max(pl, 0), min(pl + W, Wp))


@numba.njit(inline="always")
def _nine_taps(xflat, L, Wp, dh, dw):
    """The nine shifted windows ``xflat[p*dh*Wp + q*dw:][:L]`` of a 3x3 kernel, row by row,
    as slices indexed from zero: the form LLVM vectorises (offsets into one array in the
    loop body were not vectorised: 6 instead of ~30 GFLOP/s)."""
    r1, r2 = dh * Wp, 2 * dh * Wp
    return (xflat[0:L], xflat[dw:dw + L], xflat[2 * dw:2 * dw + L],
            xflat[r1:r1 + L], xflat[r1 + dw:r1 + dw + L], xflat[r1 + 2 * dw:r1 + 2 * dw + L],
            xflat[r2:r2 + L], xflat[r2 + dw:r2 + dw + L], xflat[r2 + 2 * dw:r2 + 2 * dw + L])


@numba.njit(**JIT_OPTIONS)
def _rows3x3(xs, wf, bias, out, dh, dw):
    """``out[i, j] = bias + sum_{p,q} wf[p, q] * xs[i + p*dh, j + q*dw]`` for a 3x3 kernel,
    row by row straight into the output, all nine taps in one pass so that the sum stays in
    a register (serial helper)."""
    OH, OW = out.shape
    w00, w01, w02 = wf[0, 0], wf[0, 1], wf[0, 2]
    w10, w11, w12 = wf[1, 0], wf[1, 1], wf[1, 2]
    w20, w21, w22 = wf[2, 0], wf[2, 1], wf[2, 2]
    for i in range(OH):
        # slices indexed from zero: the form LLVM vectorises (see _nine_taps)
        r0, r1, r2 = xs[i], xs[i + dh], xs[i + 2 * dh]
        a0, a1, a2 = r0[0:OW], r0[dw:dw + OW], r0[2 * dw:2 * dw + OW]
        b0, b1, b2 = r1[0:OW], r1[dw:dw + OW], r1[2 * dw:2 * dw + OW]
        c0, c1, c2 = r2[0:OW], r2[dw:dw + OW], r2[2 * dw:2 * dw + OW]
        row = out[i]
        for j in range(OW):
            row[j] = ((w00 * a0[j] + w01 * a1[j] + w02 * a2[j])
                      + (w10 * b0[j] + w11 * b1[j] + w12 * b2[j])
                      + (w20 * c0[j] + w21 * c1[j] + w22 * c2[j])) + bias


@numba.njit(**JIT_OPTIONS)
def _plane_phases(xs, ph, sy, sx):
    """``ph[a*sx + b, u, v] = xs[u*sy + a, v*sx + b]`` (zero outside ``xs``): a padded plane
    split into its stride phases, so that every tap of a strided layer reads one phase plane
    on wide rows (serial helper, in L1)."""
    Hs, Ws = xs.shape
    Hq, Wq = ph.shape[1], ph.shape[2]
    for a in range(sy):
        for b in range(sx):
            k = a * sx + b
            for u in range(Hq):
                r = u * sy + a
                for v in range(Wq):
                    c = v * sx + b
                    ph[k, u, v] = xs[r, c] if r < Hs and c < Ws else 0


@numba.njit(**JIT_OPTIONS)
def _wide_plane(xflat, wflat, off, acc, L):
    """``acc[:L] = sum_r wflat[r] * xflat[t + off[r]]`` (serial helper)."""
    for t in range(L):
        acc[t] = 0
    for r in range(off.shape[0]):
        wv = wflat[r]
        xs = xflat[off[r]:off[r] + L]
        for t in range(L):
            acc[t] += wv * xs[t]


@numba.njit(**JIT_OPTIONS)
def _store_rows(acc, pitch, bias, out):
    """``out[i, j] = acc[i*pitch + j] + bias`` (serial helper)."""
    OH, OW = out.shape
    for i in range(OH):
        row = out[i]
        for j in range(OW):
            row[j] = acc[i * pitch + j] + bias


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_depthwise_fwd(x, w, b, y, sy, sx, pt, pl, dh, dw):
    """``y[n, f] = conv(pad(x[n, f // m]), w[f, 0]) + b[f]`` with stride ``(sy, sx)`` (see
    the module): 3x3 stride-1 kernels row by row (:func:`_rows3x3`), others on wide rows of
    the padded plane or, strided, of its stride phases (:func:`_plane_phases`)."""
    N, C = x.shape[0], x.shape[1]
    F, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    m = F // C
    OH, OW = y.shape[2], y.shape[3]
    Hp = (OH - 1) * sy + dh * (kh - 1) + 1
    Wp = (OW - 1) * sx + dw * (kw - 1) + 1
    strided = sy > 1 or sx > 1
    # wide rows: planes of ``pitch`` columns (the padded plane, or its phases with one more
    # row each, which the last row's dropped columns may read)
    Hq, pitch = OH + dh * (kh - 1) // sy + 1, OW + dw * (kw - 1) // sx
    if not strided:
        pitch = Wp
    off = np.empty(kh * kw, dtype=np.int64)  # tap (p, q) from an output's position
    for p in range(kh):
        for q in range(kw):
            a, u = (p * dh) % sy, (p * dh) // sy
            bb, v = (q * dw) % sx, (q * dw) // sx
            off[p * kw + q] = ((a * sx + bb) * Hq + u) * pitch + v
    L = (OH - 1) * pitch + OW
    fast = kh == 3 and kw == 3 and not strided
    wflat = w.reshape(F, kh * kw)
    for task in numba.prange(N * C):
        n = task // C
        c = task - n * C
        xs = np.empty((Hp + 1, Wp), dtype=y.dtype)
        _padded_plane(x[n, c], xs, pt, pl)
        if fast:
            for f in range(c * m, (c + 1) * m):
                _rows3x3(xs, w[f, 0], b[f], y[n, f], dh, dw)
            continue
        xflat = xs.reshape(xs.size)
        if strided:
            ph = np.empty((sy * sx, Hq, pitch), dtype=y.dtype)
            _plane_phases(xs, ph, sy, sx)
            xflat = ph.reshape(ph.size)
        acc = np.empty(L, dtype=y.dtype)
        for f in range(c * m, (c + 1) * m):
            _wide_plane(xflat, wflat[f], off, acc, L)
            _store_rows(acc, pitch, b[f], y[n, f])


@numba.njit(**JIT_OPTIONS)
def _taps3x3_dot(dyw, xflat, total, L, Wp, dh, dw):
    """``total[p, q] += <dyw[:L], xflat[p*dh*Wp + q*dw:][:L]>`` for a 3x3 kernel, all nine
    dot products in one pass over ``dyw`` (serial helper)."""
    a0, a1, a2, b0, b1, b2, c0, c1, c2 = _nine_taps(xflat, L, Wp, dh, dw)
    z = dyw.dtype.type(0)
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = z
    for t in range(L):
        d = dyw[t]
        s00 += d * a0[t]
        s01 += d * a1[t]
        s02 += d * a2[t]
        s10 += d * b0[t]
        s11 += d * b1[t]
        s12 += d * b2[t]
        s20 += d * c0[t]
        s21 += d * c1[t]
        s22 += d * c2[t]
    total[0, 0] += s00
    total[0, 1] += s01
    total[0, 2] += s02
    total[1, 0] += s10
    total[1, 1] += s11
    total[1, 2] += s12
    total[2, 0] += s20
    total[2, 1] += s21
    total[2, 2] += s22


@numba.njit(parallel=True, **JIT_OPTIONS)
def _conv2d_depthwise_bwd_weight(dy, x, gw, gb, with_bias, pt, pl, dh, dw):
    """``gw[f, 0, p, q] = sum_n <dy[n, f], pad(x[n, f // m]) shifted by (p*dh, q*dw)>`` and,
    if ``with_bias``, ``gb[f] = dy[:, f].sum()``.  One task per channel, so every sum is
    computed in one fixed order (deterministic); per image in the data's dtype, across
    images in float64."""
    N, C = x.shape[0], x.shape[1]
    F, kh, kw = gw.shape[0], gw.shape[2], gw.shape[3]
    m = F // C
    OH, OW = dy.shape[2], dy.shape[3]
    Hp, Wp = OH + dh * (kh - 1), OW + dw * (kw - 1)
    L = (OH - 1) * Wp + OW
    for c in numba.prange(C):
        xs = np.empty((Hp + 1, Wp), dtype=x.dtype)
        dyw = np.zeros(L, dtype=dy.dtype)  # dy on wide rows; the gap columns stay zero
        total = np.zeros((m, kh, kw))
        bias = np.zeros(m)
        for n in range(N):
            _padded_plane(x[n, c], xs, pt, pl)
            xflat = xs.ravel()
            for k in range(m):
                src = dy[n, c * m + k]
                for i in range(OH):
                    for j in range(OW):
                        dyw[i * Wp + j] = src[i, j]
                if with_bias:
                    s = dyw.dtype.type(0)
                    for t in range(L):
                        s += dyw[t]
                    bias[k] += s
                if kh == 3 and kw == 3:
                    _taps3x3_dot(dyw, xflat, total[k], L, Wp, dh, dw)
                    continue
                for p in range(kh):
                    for q in range(kw):
                        off = p * dh * Wp + q * dw
                        xq = xflat[off:off + L]
                        s = dyw.dtype.type(0)
                        for t in range(L):
                            s += dyw[t] * xq[t]
                        total[k, p, q] += s
        for k in range(m):
            for p in range(kh):
                for q in range(kw):
                    gw[c * m + k, 0, p, q] = total[k, p, q]
            if with_bias:
                gb[c * m + k] = bias[k]
