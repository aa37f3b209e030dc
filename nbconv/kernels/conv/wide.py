"""The ``wide`` family of the direct algorithm: stride-1 convolution on "wide" rows of an
explicitly zero-padded input -- forward pass (which is also the data gradient) and weight
gradient, any dilation and groups.

Run by :mod:`nbconv.conv.direct` for the plan's family ``"wide"``: the stride-1 passes (and
those of strided layers over a spread ``dy``) that the register-block, pixel-vector and
depthwise families do not take.

With stride 1, output pixel ``(i, j)`` of a plane reads input pixel ``(i + p*dh, j + q*dw)``
of the (explicitly zero-padded) input plane of width ``Wp``.  Flatten both planes with the
*input's* row pitch ``Wp``: output ``t = i*Wp + j`` reads input ``t + p*dh*Wp + q*dw``.  So
for every kernel tap the whole band of output rows is ONE contiguous axpy of length
``(rows-1)*Wp + OW``, instead of one short loop per row; the ``Wp - OW`` columns at the end of
each wide row are garbage that is computed and dropped.  Long, contiguous, index-from-zero
loops are what LLVM vectorises, and the loop overhead per tap is paid once per band.

The data gradient of a stride-1 convolution is itself a stride-1 convolution (of the padded
``dy`` with the flipped, transposed kernel), so it reuses :func:`_conv2d_wide_fwd`.  The weight
gradient is one dot product per tap over the whole batch, with both operands laid out channel
by channel (see :func:`_conv2d_wide_bwd_weight`).

Inputs are C-contiguous float32/float64 arrays of one dtype; outputs are overwritten.
"""

from __future__ import annotations

import numba
import numpy as np

from ... import _config
from .layout import FB, _fwd_task, _row_bands

__all__ = ["_conv2d_wide_fwd", "_conv2d_wide_bwd_weight"]


@numba.njit(**_config.JIT_OPTIONS)
def _wide_band(xp, w, b, y, acc, n, f0, nf, c0, i0, i1, dh, dw):
    """Rows ``i0..i1-1`` of output channels ``f0..f0+nf-1`` of image ``n`` (serial helper).

    ``acc`` is this task's scratch of at least ``(FB, (i1-i0)*Wp)`` elements.
    """
    Wp = xp.shape[3]
    Cg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    OW = y.shape[3]
    L = (i1 - i0 - 1) * Wp + OW
    a0 = acc[0, :L]
    a1 = acc[1, :L]
    a2 = acc[2, :L]
    a3 = acc[3, :L]
    for k in range(nf):
        ak = acc[k, :L]
        for t in range(L):
            ak[t] = 0.0
    for cl in range(Cg):
        xplane = xp[n, c0 + cl].ravel()
        for p in range(kh):
            q0 = 0
            if nf == FB:
                # Several taps per pass: each accumulator load/store serves several FMAs.  Four
                # at a time, leaving a last block of five (5x5 kernels) or three (3x3, 7x7).
                # The blocks are spelled out on purpose: the same passes as helper functions
                # over a flattened tap list ran 1.2-1.7x slower, and a 3x3 kernel taken as
                # 5 + 4 flattened taps 1.15x slower than three rows of three.
                while q0 + 4 <= kw and kw - q0 != 5:
                    base = (i0 + p * dh) * Wp + q0 * dw
                    xs = xplane[base:base + L]
                    xt = xplane[base + dw:base + dw + L]
                    xr = xplane[base + 2 * dw:base + 2 * dw + L]
                    xq = xplane[base + 3 * dw:base + 3 * dw + L]
                    w0 = w[f0, cl, p, q0]
                    w1 = w[f0 + 1, cl, p, q0]
                    w2 = w[f0 + 2, cl, p, q0]
                    w3 = w[f0 + 3, cl, p, q0]
                    v0 = w[f0, cl, p, q0 + 1]
                    v1 = w[f0 + 1, cl, p, q0 + 1]
                    v2 = w[f0 + 2, cl, p, q0 + 1]
                    v3 = w[f0 + 3, cl, p, q0 + 1]
                    u0 = w[f0, cl, p, q0 + 2]
                    u1 = w[f0 + 1, cl, p, q0 + 2]
                    u2 = w[f0 + 2, cl, p, q0 + 2]
                    u3 = w[f0 + 3, cl, p, q0 + 2]
                    z0 = w[f0, cl, p, q0 + 3]
                    z1 = w[f0 + 1, cl, p, q0 + 3]
                    z2 = w[f0 + 2, cl, p, q0 + 3]
                    z3 = w[f0 + 3, cl, p, q0 + 3]
                    for t in range(L):
                        x0 = xs[t]
                        x1 = xt[t]
                        x2 = xr[t]
                        x3 = xq[t]
                        a0[t] += (w0 * x0 + v0 * x1) + (u0 * x2 + z0 * x3)
                        a1[t] += (w1 * x0 + v1 * x1) + (u1 * x2 + z1 * x3)
                        a2[t] += (w2 * x0 + v2 * x1) + (u2 * x2 + z2 * x3)
                        a3[t] += (w3 * x0 + v3 * x1) + (u3 * x2 + z3 * x3)
                    q0 += 4
                if kw - q0 == 5:
                    base = (i0 + p * dh) * Wp + q0 * dw
                    xs = xplane[base:base + L]
                    xt = xplane[base + dw:base + dw + L]
                    xr = xplane[base + 2 * dw:base + 2 * dw + L]
                    xq = xplane[base + 3 * dw:base + 3 * dw + L]
                    xo = xplane[base + 4 * dw:base + 4 * dw + L]
                    w0 = w[f0, cl, p, q0]
                    w1 = w[f0 + 1, cl, p, q0]
                    w2 = w[f0 + 2, cl, p, q0]
                    w3 = w[f0 + 3, cl, p, q0]
                    v0 = w[f0, cl, p, q0 + 1]
                    v1 = w[f0 + 1, cl, p, q0 + 1]
                    v2 = w[f0 + 2, cl, p, q0 + 1]
                    v3 = w[f0 + 3, cl, p, q0 + 1]
                    u0 = w[f0, cl, p, q0 + 2]
                    u1 = w[f0 + 1, cl, p, q0 + 2]
                    u2 = w[f0 + 2, cl, p, q0 + 2]
                    u3 = w[f0 + 3, cl, p, q0 + 2]
                    z0 = w[f0, cl, p, q0 + 3]
                    z1 = w[f0 + 1, cl, p, q0 + 3]
                    z2 = w[f0 + 2, cl, p, q0 + 3]
                    z3 = w[f0 + 3, cl, p, q0 + 3]
                    o0 = w[f0, cl, p, q0 + 4]
                    o1 = w[f0 + 1, cl, p, q0 + 4]
                    o2 = w[f0 + 2, cl, p, q0 + 4]
                    o3 = w[f0 + 3, cl, p, q0 + 4]
                    for t in range(L):
                        x0 = xs[t]
                        x1 = xt[t]
                        x2 = xr[t]
                        x3 = xq[t]
                        x4 = xo[t]
                        a0[t] += (w0 * x0 + v0 * x1) + (u0 * x2 + z0 * x3) + o0 * x4
                        a1[t] += (w1 * x0 + v1 * x1) + (u1 * x2 + z1 * x3) + o1 * x4
                        a2[t] += (w2 * x0 + v2 * x1) + (u2 * x2 + z2 * x3) + o2 * x4
                        a3[t] += (w3 * x0 + v3 * x1) + (u3 * x2 + z3 * x3) + o3 * x4
                    q0 += 5
                if kw - q0 == 3:
                    base = (i0 + p * dh) * Wp + q0 * dw
                    xs = xplane[base:base + L]
                    xt = xplane[base + dw:base + dw + L]
                    xr = xplane[base + 2 * dw:base + 2 * dw + L]
                    w0 = w[f0, cl, p, q0]
                    w1 = w[f0 + 1, cl, p, q0]
                    w2 = w[f0 + 2, cl, p, q0]
                    w3 = w[f0 + 3, cl, p, q0]
                    v0 = w[f0, cl, p, q0 + 1]
                    v1 = w[f0 + 1, cl, p, q0 + 1]
                    v2 = w[f0 + 2, cl, p, q0 + 1]
                    v3 = w[f0 + 3, cl, p, q0 + 1]
                    u0 = w[f0, cl, p, q0 + 2]
                    u1 = w[f0 + 1, cl, p, q0 + 2]
                    u2 = w[f0 + 2, cl, p, q0 + 2]
                    u3 = w[f0 + 3, cl, p, q0 + 2]
                    for t in range(L):
                        x0 = xs[t]
                        x1 = xt[t]
                        x2 = xr[t]
                        a0[t] += (w0 * x0 + v0 * x1) + u0 * x2
                        a1[t] += (w1 * x0 + v1 * x1) + u1 * x2
                        a2[t] += (w2 * x0 + v2 * x1) + u2 * x2
                        a3[t] += (w3 * x0 + v3 * x1) + u3 * x2
                    q0 += 3
                while q0 + 2 <= kw:
                    q = q0
                    base = (i0 + p * dh) * Wp + q * dw
                    xs = xplane[base:base + L]
                    xt = xplane[base + dw:base + dw + L]
                    w0 = w[f0, cl, p, q]
                    w1 = w[f0 + 1, cl, p, q]
                    w2 = w[f0 + 2, cl, p, q]
                    w3 = w[f0 + 3, cl, p, q]
                    v0 = w[f0, cl, p, q + 1]
                    v1 = w[f0 + 1, cl, p, q + 1]
                    v2 = w[f0 + 2, cl, p, q + 1]
                    v3 = w[f0 + 3, cl, p, q + 1]
                    for t in range(L):
                        xv = xs[t]
                        xu = xt[t]
                        a0[t] += w0 * xv + v0 * xu
                        a1[t] += w1 * xv + v1 * xu
                        a2[t] += w2 * xv + v2 * xu
                        a3[t] += w3 * xv + v3 * xu
                    q0 += 2
            if nf == 1:
                # one output channel (depthwise): three taps per pass, so that each load and
                # store of the accumulator serves three FMAs
                while q0 + 3 <= kw:
                    base = (i0 + p * dh) * Wp + q0 * dw
                    xs = xplane[base:base + L]
                    xt = xplane[base + dw:base + dw + L]
                    xr = xplane[base + 2 * dw:base + 2 * dw + L]
                    w0 = w[f0, cl, p, q0]
                    v0 = w[f0, cl, p, q0 + 1]
                    u0 = w[f0, cl, p, q0 + 2]
                    for t in range(L):
                        a0[t] += (w0 * xs[t] + v0 * xt[t]) + u0 * xr[t]
                    q0 += 3
                if q0 + 2 <= kw:
                    base = (i0 + p * dh) * Wp + q0 * dw
                    xs = xplane[base:base + L]
                    xt = xplane[base + dw:base + dw + L]
                    w0 = w[f0, cl, p, q0]
                    v0 = w[f0, cl, p, q0 + 1]
                    for t in range(L):
                        a0[t] += w0 * xs[t] + v0 * xt[t]
                    q0 += 2
            for q in range(q0, kw):
                base = (i0 + p * dh) * Wp + q * dw
                xs = xplane[base:base + L]
                if nf == FB:
                    w0 = w[f0, cl, p, q]
                    w1 = w[f0 + 1, cl, p, q]
                    w2 = w[f0 + 2, cl, p, q]
                    w3 = w[f0 + 3, cl, p, q]
                    for t in range(L):
                        xv = xs[t]
                        a0[t] += w0 * xv
                        a1[t] += w1 * xv
                        a2[t] += w2 * xv
                        a3[t] += w3 * xv
                else:
                    for k in range(nf):
                        ak = acc[k, :L]
                        wv = w[f0 + k, cl, p, q]
                        for t in range(L):
                            ak[t] += wv * xs[t]
    for k in range(min(nf, y.shape[1] - f0)):  # w may carry zero filters past y's channels
        bf = b[f0 + k]
        for i in range(i0, i1):
            src = acc[k, (i - i0) * Wp:(i - i0) * Wp + OW]
            dst = y[n, f0 + k, i]
            for j in range(OW):
                dst[j] = src[j] + bf


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_wide_fwd(xp, w, b, y, dh, dw, groups, nthreads):
    """``y[:] = conv(xp, w) + b`` with stride 1 and no implicit padding.

    ``xp`` (N, C, Hp, Wp) is the already padded input; ``y`` (N, F, OH, OW) with
    ``OH = Hp - dh*(kh-1)`` and ``OW = Wp - dw*(kw-1)``; ``b`` (F,).  With ``groups == 1``, ``w``
    and ``b`` may hold extra zero filters (F rounded up to a multiple of ``FB``, so that every
    block takes the unrolled path); only y's F channels are stored.  A task is (image, block of
    ``FB`` channels, band of rows), with bands only when there are too few (image, block) pairs
    to feed ``nthreads``.
    """
    N = xp.shape[0]
    Wp = xp.shape[3]
    F, Cg = w.shape[0], w.shape[1]
    OH = y.shape[2]
    Fg = F // groups
    nfb = (Fg + FB - 1) // FB
    planes = N * groups * nfb
    nbands, band = _row_bands(planes, OH, 4 * nthreads)
    for t in numba.prange(planes * nbands):
        n, g, f0, nf, i0, i1 = _fwd_task(t, nbands, band, nfb, groups, Fg, OH)
        if i1 <= i0:
            continue
        acc = np.empty((FB, (i1 - i0) * Wp), dtype=y.dtype)
        _wide_band(xp, w, b, y, acc, n, f0, nf, g * Cg, i0, i1, dh, dw)


#: input channels per weight-gradient task: each chunk of the four dy rows in L1 then serves
#: CB channels' taps instead of one.
CB = 4


@numba.njit(**_config.JIT_OPTIONS)
def _long_dw_chunk(dyl, xc, acc, j, zero, f0, nf, t0, n, dh, dw, Wp):
    """``acc[:nf, j, p, q] += dyl[f0:f0+nf, t0:t0+n] . xc[t0+shift(p, q):...]`` for every tap
    (serial helper): the four dy rows of the chunk are loaded once per pair of taps for eight
    dot products."""
    kh, kw = acc.shape[2], acc.shape[3]
    if nf == FB:
        d0 = dyl[f0, t0:t0 + n]
        d1 = dyl[f0 + 1, t0:t0 + n]
        d2 = dyl[f0 + 2, t0:t0 + n]
        d3 = dyl[f0 + 3, t0:t0 + n]
        for p in range(kh):
            q0 = 0
            while q0 + 2 <= kw:
                base = t0 + p * dh * Wp + q0 * dw
                xs = xc[base:base + n]
                xt = xc[base + dw:base + dw + n]
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                r0 = zero
                r1 = zero
                r2 = zero
                r3 = zero
                for t in range(n):
                    xv = xs[t]
                    xu = xt[t]
                    e0 = d0[t]
                    e1 = d1[t]
                    e2 = d2[t]
                    e3 = d3[t]
                    s0 += e0 * xv
                    s1 += e1 * xv
                    s2 += e2 * xv
                    s3 += e3 * xv
                    r0 += e0 * xu
                    r1 += e1 * xu
                    r2 += e2 * xu
                    r3 += e3 * xu
                acc[0, j, p, q0] += s0
                acc[1, j, p, q0] += s1
                acc[2, j, p, q0] += s2
                acc[3, j, p, q0] += s3
                acc[0, j, p, q0 + 1] += r0
                acc[1, j, p, q0 + 1] += r1
                acc[2, j, p, q0 + 1] += r2
                acc[3, j, p, q0 + 1] += r3
                q0 += 2
            if q0 < kw:
                base = t0 + p * dh * Wp + q0 * dw
                xs = xc[base:base + n]
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                for t in range(n):
                    xv = xs[t]
                    s0 += d0[t] * xv
                    s1 += d1[t] * xv
                    s2 += d2[t] * xv
                    s3 += d3[t] * xv
                acc[0, j, p, q0] += s0
                acc[1, j, p, q0] += s1
                acc[2, j, p, q0] += s2
                acc[3, j, p, q0] += s3
        return
    for k in range(nf):
        dk = dyl[f0 + k, t0:t0 + n]
        for p in range(kh):
            for q in range(kw):
                base = t0 + p * dh * Wp + q * dw
                xs = xc[base:base + n]
                s = zero
                for t in range(n):
                    s += dk[t] * xs[t]
                acc[k, j, p, q] += s


@numba.njit(**_config.JIT_OPTIONS)
def _row_sum(row):
    """Sum of a contiguous row in float64 (the bias gradient; serial helper)."""
    s = 0.0
    for t in range(row.size):
        s += row[t]
    return s


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_wide_bwd_weight(dyl, xl, gw, gb, with_bias, zero, dh, dw, groups, Wp, T):
    """``gw[:] = d<y, dy>/dw`` for stride 1, from channel-major, batch-long planes.

    ``xl`` (C, N*Hp*Wp + tail) holds the padded input channel by channel, the N images of a
    channel one after the other (``tail >= dh*(kh-1)*Wp + dw*(kw-1)`` trailing zeros so that
    every shifted window stays in bounds); ``dyl`` (F, N*Hp*Wp) holds ``dy`` laid out the same
    way, each (OH, OW) plane in the top-left corner of an (Hp, Wp) plane of zeros.  Output pixel
    ``t`` of that layout reads input ``t + p*dh*Wp + q*dw`` for tap (p, q), whatever the image,
    so a tap's gradient is one dot product over the whole batch (the zeros in ``dyl`` cancel the
    windows that straddle two rows or two images).  A task owns ``gw[f0:f0+FB, cl0:cl0+CB]``
    (a block of output channels, a block of input channels, every tap) and walks the batch in
    chunks of ``T`` pixels, so that the chunk's dy rows stay in L1 for all its channels and
    taps; partial sums of the chunks accumulate in the input dtype (``zero`` is a 0 of it),
    like PyTorch's.  With ``with_bias`` the tasks of the first channel block also store
    ``gb[f] = sum(dyl[f])`` (float64 sums) for their channels.
    """
    F, Cg, kh, kw = gw.shape
    Fg = F // groups
    nfb = (Fg + FB - 1) // FB
    ncb = (Cg + CB - 1) // CB
    L = dyl.shape[1]
    for task in numba.prange(groups * nfb * ncb):
        cb = task % ncb
        r = task // ncb
        fbk = r % nfb
        g = r // nfb
        f0 = g * Fg + fbk * FB
        nf = min(FB, (g + 1) * Fg - f0)
        cl0 = cb * CB
        ncl = min(CB, Cg - cl0)
        acc = np.zeros((FB, CB, kh, kw), dtype=gw.dtype)
        for t0 in range(0, L, T):
            n = min(T, L - t0)
            for j in range(ncl):
                _long_dw_chunk(dyl, xl[g * Cg + cl0 + j], acc, j, zero, f0, nf, t0, n, dh, dw,
                               Wp)
        for k in range(nf):
            for j in range(ncl):
                for p in range(kh):
                    for q in range(kw):
                        gw[f0 + k, cl0 + j, p, q] = acc[k, j, p, q]
        if with_bias and cb == 0:
            for f in range(f0, f0 + nf):
                gb[f] = _row_sum(dyl[f])
