"""The ``rows`` family of the direct algorithm: the general strided row loops -- forward pass,
data gradient, weight and bias gradient at any stride, dilation, padding and groups.

Run by :mod:`nbconv.conv.direct` for the plan's family ``"rows"`` (the layers and passes no
faster family takes), and by :mod:`nbconv.conv.exact` as the exact reference for inf and NaN:
the loops read only the taps that land inside ``x``, so a non-finite value reaches exactly the
outputs whose windows hold it.

All kernels implement the driver semantics of ``nbconv.functional.conv``: cross-correlation of
``x (N, C, H, W)`` with ``w (F, C // groups, kh, kw)``, stride ``(sy, sx)``, dilation
``(dh, dw)``, ``groups``, implicit zero padding of ``pt`` rows on top and ``pl`` columns on the
left; the bottom/right padding is implied by the output size ``(OH, OW)`` (a tap outside the
input reads 0)::

    y[n, f, i, j] = b[f] + sum_{c in group(f), p, q}
                    w[f, c - g0, p, q] * x[n, c, i*sy - pt + p*dh, j*sx - pl + q*dw]

Arrays are C-contiguous float32/float64 of one dtype; integers are Python ints.  Every output is
overwritten, never accumulated into.  The innermost loop always runs along the contiguous W axis
(output columns ``j``, input columns ``j*sx + off``) for a whole valid column range computed once
per tap, so there is no bounds test in the inner loop.

Parallelism (no two ``prange`` iterations write the same memory):

* forward: over (image, block of ``FB`` output channels, band of output rows);
* data gradient: a *gather* over the flattened ``(n, c, h)`` input rows, each iteration owning
  its ``dx`` row;
* weight gradient: over the flattened ``(f, c_local, p)`` weight rows, each iteration owning
  ``gw[f, c_local, p, :]``; the bias gradient over ``f``.

At batch size 1 these flattened ranges still have many iterations, so every core works.
"""

from __future__ import annotations

import numba
import numpy as np

from ... import _config
from .layout import FB, _fwd_task, _row_bands

__all__ = ["_conv2d_direct_fwd", "_conv2d_direct_bwd_data", "_conv2d_direct_bwd_weight"]


@numba.njit(**_config.JIT_OPTIONS)
def _col_range(off, sx, W, OW):
    """Output columns ``j`` in ``[lo, hi)`` with ``0 <= j*sx + off < W`` (``hi`` may be <= lo)."""
    lo = 0
    if off < 0:
        lo = (-off + sx - 1) // sx
    hi = OW
    last = W - 1 - off
    if last < 0:
        hi = 0
    else:
        t = last // sx + 1
        if t < hi:
            hi = t
    return lo, hi



@numba.njit(**_config.JIT_OPTIONS)
def _fwd_band(x, w, b, y, n, f0, nf, c0, i0, i1, sy, sx, pt, pl, dh, dw):
    """Output rows ``i0..i1-1`` of channels ``f0..f0+nf-1`` (nf <= FB) of image ``n``.

    A serial helper called from the parallel kernel: numba vectorises its inner loops, which
    it did not do for the same loops written inline in the ``prange`` body (6x slower).
    """
    H = x.shape[2]
    W = x.shape[3]
    Cg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    OW = y.shape[3]
    for i in range(i0, i1):
        for k in range(nf):
            bf = b[f0 + k]
            yrow = y[n, f0 + k, i]
            for j in range(OW):
                yrow[j] = bf
        for cl in range(Cg):
            for p in range(kh):
                ih = i * sy - pt + p * dh
                if ih < 0 or ih >= H:
                    continue
                xrow = x[n, c0 + cl, ih]
                for q in range(kw):
                    off = q * dw - pl
                    lo, hi = _col_range(off, sx, W, OW)
                    if hi <= lo:
                        continue
                    m = hi - lo
                    x0 = lo * sx + off  # >= 0: the first input column read
                    if sx == 1 and nf == FB:
                        # The common case, unrolled: one x load feeds four FMAs.  Slices keep
                        # the inner index >= 0 and the arrays contiguous ('C' layout), which
                        # is what lets LLVM vectorise (no wraparound test, no strided loads).
                        xs = xrow[x0:x0 + m]
                        y0 = y[n, f0, i, lo:hi]
                        y1 = y[n, f0 + 1, i, lo:hi]
                        y2 = y[n, f0 + 2, i, lo:hi]
                        y3 = y[n, f0 + 3, i, lo:hi]
                        w0 = w[f0, cl, p, q]
                        w1 = w[f0 + 1, cl, p, q]
                        w2 = w[f0 + 2, cl, p, q]
                        w3 = w[f0 + 3, cl, p, q]
                        for j in range(m):
                            xv = xs[j]
                            y0[j] += w0 * xv
                            y1[j] += w1 * xv
                            y2[j] += w2 * xv
                            y3[j] += w3 * xv
                    elif sx == 1:
                        xs = xrow[x0:x0 + m]
                        for k in range(nf):
                            ys = y[n, f0 + k, i, lo:hi]
                            wv = w[f0 + k, cl, p, q]
                            for j in range(m):
                                ys[j] += wv * xs[j]
                    else:
                        for k in range(nf):
                            ys = y[n, f0 + k, i, lo:hi]
                            wv = w[f0 + k, cl, p, q]
                            for j in range(m):
                                ys[j] += wv * xrow[x0 + j * sx]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_direct_fwd(x, w, b, y, sy, sx, pt, pl, dh, dw, groups, nthreads):
    """``y[:] = conv(x, w) + b``; ``b`` is an (F,) array (zeros when the op has no bias).

    ``nthreads`` is numba's thread count (passed in: a cached kernel cannot ask for it).
    One parallel task is a block of up to ``FB`` output channels of one image and a band of
    output rows; inside it every input-row segment is read once for all the block's channels.
    """
    N = x.shape[0]
    F, Cg = w.shape[0], w.shape[1]
    OH = y.shape[2]
    Fg = F // groups
    nfb = (Fg + FB - 1) // FB
    # Split rows into bands so that batch 1 with few channels still feeds every thread.
    planes = N * groups * nfb
    nbands, band = _row_bands(planes, OH, 8 * nthreads)
    for t in numba.prange(planes * nbands):
        n, g, f0, nf, i0, i1 = _fwd_task(t, nbands, band, nfb, groups, Fg, OH)
        _fwd_band(x, w, b, y, n, f0, nf, g * Cg, i0, i1, sy, sx, pt, pl, dh, dw)


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_direct_bwd_data(dy, w, dx, sy, sx, pt, pl, dh, dw, groups):
    """``dx[:] = conv_transpose(dy, w)``, written as a gather over the rows of ``dx``.

    Input row ``h`` of channel ``c`` receives ``w[f, c - g0, p, q] * dy[n, f, i, j]`` from every
    ``f`` of its group, tap row ``p`` with ``i*sy - pt + p*dh == h`` and column tap ``q``.
    """
    N, C, H, W = dx.shape
    F, Cg, kh, kw = w.shape
    OH = dy.shape[2]
    OW = dy.shape[3]
    Fg = F // groups
    rows = N * C * H
    for r in numba.prange(rows):
        h = r % H
        t = r // H
        c = t % C
        n = t // C
        g = c // Cg
        cl = c - g * Cg
        dxrow = dx[n, c, h]
        for k in range(W):
            dxrow[k] = 0.0
        for f in range(g * Fg, (g + 1) * Fg):
            for p in range(kh):
                num = h + pt - p * dh
                if num < 0 or num % sy != 0:
                    continue
                i = num // sy
                if i >= OH:
                    continue
                dyrow = dy[n, f, i]
                for q in range(kw):
                    off = q * dw - pl
                    lo, hi = _col_range(off, sx, W, OW)
                    wv = w[f, cl, p, q]
                    if sx == 1:
                        for j in range(lo, hi):
                            dxrow[j + off] += wv * dyrow[j]
                    else:
                        for j in range(lo, hi):
                            dxrow[j * sx + off] += wv * dyrow[j]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_direct_bwd_weight(dy, x, gw, gb, with_bias, sy, sx, pt, pl, dh, dw, groups):
    """``gw[:] = d<y, dy>/dw``; if ``with_bias`` also ``gb[f] = sum(dy[:, f])``.

    ``gb`` must be an (F,) array even when ``with_bias`` is 0 (it is then left untouched).
    """
    N, C, H, W = x.shape
    F, Cg, kh, kw = gw.shape
    OH = dy.shape[2]
    OW = dy.shape[3]
    Fg = F // groups
    if with_bias:
        for f in numba.prange(F):
            s = 0.0
            for n in range(N):
                for i in range(OH):
                    dyrow = dy[n, f, i]
                    for j in range(OW):
                        s += dyrow[j]
            gb[f] = s
    rows = F * Cg * kh
    for r in numba.prange(rows):
        p = r % kh
        t = r // kh
        cl = t % Cg
        f = t // Cg
        c = (f // Fg) * Cg + cl
        acc = np.zeros(kw, dtype=np.float64)
        for n in range(N):
            for i in range(OH):
                ih = i * sy - pt + p * dh
                if ih < 0 or ih >= H:
                    continue
                dyrow = dy[n, f, i]
                xrow = x[n, c, ih]
                for q in range(kw):
                    off = q * dw - pl
                    lo, hi = _col_range(off, sx, W, OW)
                    s = 0.0
                    if sx == 1:
                        for j in range(lo, hi):
                            s += dyrow[j] * xrow[j + off]
                    else:
                        for j in range(lo, hi):
                            s += dyrow[j] * xrow[j * sx + off]
                    acc[q] += s
        for q in range(kw):
            gw[f, cl, p, q] = acc[q]
