"""The tap-GEMM family: the kernels of the tap-GEMM convolution for small feature maps, run by
:mod:`nbconv.conv.tapgemm` (``algorithm="tapgemm"``).

Layouts.  The input is held as *rows of channels*, one row per (pixel, image), split into
stride phases: ``xt[ry, rx, a, b, n, c] = x[n, c, a*sy + ry, b*sx + rx]``, shape
``(sy, sx, ceil(H/sy), ceil(W/sx), N, C)``; the output as ``yt[i, j, n, f]``, shape
``(OH, OW, N, F)``; the weights as ``wt[p*kw + q, f, c] = w[f, c, p, q]``, one row-major
``(F, C)`` matrix per tap, rearranged inside the GEMM kernels (each task its slab, valid
taps only).  Input pixel ``i*sy - pt + p*dh`` lies in phase
``(p*dh - pt) mod sy`` at phase index ``i + floor((p*dh - pt) / sy)``, so for every tap
(p, q) the output pixels whose input pixel is inside the image form a rectangle
``[i0, i1) x [j0, j1)`` and their input pixels the same rectangle shifted inside one phase
plane: each band row of the rectangle is ``nj*N`` consecutive rows of ``xt`` and of ``yt``,
and the whole rectangle is one block of rows when it spans full rows of both.

The GEMM kernels therefore call BLAS once per (tap, band row) -- once per tap for full-width
rectangles -- with ``N`` images times the band's pixels as the product's rows, and never
touch a padded tap.  Each ``prange`` task owns a slab of the output's columns (filters for
the forward pass and the weight gradient, channels for the data gradient) across all taps,
so no two tasks write the same memory and BLAS runs single-threaded on numba's threads
(``cblas_?gemm`` at address ``fn``, see :mod:`nbconv.kernels.gemm`).
Filter slabs (not row slabs) because on small maps the weights are the larger operand: each
task then reads only its part of them.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from ... import _config
from ..gemm import _NO_TRANS, _TRANS, _cblas_gemm
from ..panels import PANEL_ROWS, PANEL_TERMS, _panel_block, _panel_start, _panel_store
from .layout import _epilogue

__all__: list[str] = []


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tapgemm_to_rows(x, xt):
    """``xt[ry, rx, a, b, n, c] = x[n, c, a*sy + ry, b*sx + rx]`` (``sy, sx = xt.shape[:2]``).

    x : (N, C, H, W); xt : (sy, sx, ceil(H/sy), ceil(W/sx), N, C).  Phase cells past the
    image's edge are left unwritten (no tap reads them).  One task per (image, input row):
    it reads a (C, W) block that stays in cache and writes runs of C channels."""
    N, C, H, W = x.shape
    sy, sx = xt.shape[0], xt.shape[1]
    for task in numba.prange(N * H):
        n = task // H
        h = task - n * H
        ry = h % sy
        a = h // sy
        for w in range(W):
            dst = xt[ry, w % sx, a, w // sx, n]
            for c in range(C):
                dst[c] = x[n, c, h, w]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tapgemm_from_rows(xt, x, b, has_bias, relu=False, scale=None):
    """Inverse of :func:`_conv2d_tapgemm_to_rows`, then per channel ``v * scale[c]`` (when
    ``scale`` is given), ``+ b[c]`` (when ``has_bias``) and ``max(v, 0)`` (NaN kept) with
    ``relu``: ``x[n, c, h, w] = xt[h % sy, w % sx, h // sy, w // sx, n, c] (* scale[c])
    (+ b[c])``.

    xt : (sy, sx, Hq, Wq, N, C); x : (N, C, H, W), overwritten; b : (C,) (any length when
    not ``has_bias``); scale : (C,) float64, or None.  One task per (image, row)."""
    N, C, H, W = x.shape
    sy, sx = xt.shape[0], xt.shape[1]
    zero = x.dtype.type(0)
    for task in numba.prange(N * H):
        n = task // H
        h = task - n * H
        ry = h % sy
        a = h // sy
        for w in range(W):
            src = xt[ry, w % sx, a, w // sx, n]
            for c in range(C):
                x[n, c, h, w] = _epilogue(src[c], c, b, has_bias, relu, scale, zero)


def aliasing_planes(H, W, itemsize, apart=1024) -> bool:
    """Whether planes of ``H x W`` values are a multiple of ``apart`` bytes apart.  At 1 KiB
    their row segments fall in at most 4 of L1's 64 sets (4 KiB: one), whose 8-12 ways
    cannot hold every channel's line from one pixel to the next, so
    :func:`_conv2d_tapgemm_to_rows` and :func:`_conv2d_tapgemm_from_rows` re-read them pixel
    by pixel; the ``_by8`` twins move 8 channels at a time instead, whose lines fit (and cost
    more elsewhere: short runs)."""
    return (H * W * itemsize) % apart == 0


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tapgemm_to_rows_by8(x, xt):
    """:func:`_conv2d_tapgemm_to_rows` 8 channels at a time (for planes that
    :func:`aliasing_planes`)."""
    N, C, H, W = x.shape
    sy, sx = xt.shape[0], xt.shape[1]
    for task in numba.prange(N * H):
        n = task // H
        h = task - n * H
        ry = h % sy
        a = h // sy
        for c0 in range(0, C - 7, 8):
            for w in range(W):
                dst = xt[ry, w % sx, a, w // sx, n]
                for k in range(8):  # a constant trip count: unrolled
                    dst[c0 + k] = x[n, c0 + k, h, w]
        for w in range(W):
            dst = xt[ry, w % sx, a, w // sx, n]
            for c in range(C - C % 8, C):
                dst[c] = x[n, c, h, w]


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tapgemm_from_rows_by8(xt, x, b, has_bias, relu=False, scale=None):
    """:func:`_conv2d_tapgemm_from_rows` 8 channels at a time (for planes that
    :func:`aliasing_planes`)."""
    N, C, H, W = x.shape
    sy, sx = xt.shape[0], xt.shape[1]
    zero = x.dtype.type(0)
    for task in numba.prange(N * H):
        n = task // H
        h = task - n * H
        ry = h % sy
        a = h // sy
        for c0 in range(0, C - 7, 8):
            for w in range(W):
                src = xt[ry, w % sx, a, w // sx, n]
                for k in range(8):  # a constant trip count: unrolled
                    c = c0 + k
                    x[n, c, h, w] = _epilogue(src[c], c, b, has_bias, relu, scale, zero)
        for w in range(W):
            src = xt[ry, w % sx, a, w // sx, n]
            for c in range(C - C % 8, C):
                x[n, c, h, w] = _epilogue(src[c], c, b, has_bias, relu, scale, zero)


@numba.njit(**_config.JIT_OPTIONS)
def _zero_columns(a, c0, c1):
    """``a[:, c0:c1] = 0`` for a 2-D ``a`` (a serial helper, so that LLVM vectorises it)."""
    for r in range(a.shape[0]):
        row = a[r]
        for c in range(c0, c1):
            row[c] = 0.0


def tap_range(o, n, s, off):
    """For output indices ``i < o`` reading input index ``i*s + off`` of a length-``n`` axis:
    ``(i0, i1, r, q)`` -- the valid outputs ``[i0, i1)`` (empty when ``i1 <= i0``), the
    stride phase ``r`` of their input pixels and the shift ``q`` (phase index ``i + q``)."""
    r = off % s
    q = (off - r) // s
    return max(0, -q), min(o, (n - r + s - 1) // s - q), r, q


#: columns of :func:`tap_table`'s rows
TAP_I0, TAP_J0, TAP_ROWS, TAP_COLS, TAP_CELL, TAP_FIRST = range(6)


@functools.lru_cache(maxsize=512)
def tap_table(kh, kw, OH, OW, H, W, sy, sx, pt, pl, dh, dw):
    """The taps' rectangles for the GEMM kernels, worked out once per geometry (in the
    kernels the integer divisions behind them were most of their compiled code).

    Returns ``(taps, full_out, full_in)``.  ``taps`` : (kh*kw, 6) int64, read-only; row
    ``t = p*kw + q`` holds tap (p, q)'s first output row ``i0`` and column ``j0``
    (``TAP_I0``, ``TAP_J0``), its ``ni`` rows and ``nj`` columns (``TAP_ROWS``,
    ``TAP_COLS``; both 0 for a tap that reads only padding), the row-layout cell ``(phase,
    i0 + qy, j0 + qx)`` of the input pixel its first output reads, as a flat index in units
    of ``N*C`` (``TAP_CELL``), and that pixel's row ``i0 + qy`` within its phase plane
    (``TAP_FIRST``).  ``full_out`` is a tap whose rectangle covers the whole output and
    ``full_in`` one that covers the whole input too (stride 1, same size), or -1: that tap's
    product can overwrite (BLAS ``beta = 0``) instead of a zero fill plus accumulation.

    >>> taps, full_out, full_in = tap_table(3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1)
    >>> taps[0].tolist(), full_out, full_in   # 3x3 pad 1 on 2x2: tap (0, 0) feeds pixel (1, 1)
    ([1, 1, 1, 1, 0, 0], 4, 4)
    """
    Hq, Wq = -(-H // sy), -(-W // sx)
    taps = np.zeros((kh * kw, 6), dtype=np.int64)
    full_out = -1
    for p in range(kh):
        i0, i1, ry, qy = tap_range(OH, H, sy, p * dh - pt)
        for q in range(kw):
            j0, j1, rx, qx = tap_range(OW, W, sx, q * dw - pl)
            if i1 <= i0 or j1 <= j0:
                continue
            cell = ((ry * sx + rx) * Hq + i0 + qy) * Wq + j0 + qx
            taps[p * kw + q] = i0, j0, i1 - i0, j1 - j0, cell, i0 + qy
            if full_out < 0 and (i0, i1, j0, j1) == (0, OH, 0, OW):
                full_out = p * kw + q
    same_size = sy == sx == 1 and (OH, OW) == (H, W)
    taps.flags.writeable = False
    return taps, full_out, full_out if same_size else -1


@numba.njit(**_config.JIT_OPTIONS)
def _weights_fc(w, wt, f0, f1, c0, c1, taps):
    """``wt[t, f, c] = w[f, c, p, q]`` for filters ``[f0, f1)``, channels ``[c0, c1)`` and
    the taps that read the input (``taps`` of :func:`tap_table`): each tap's ``W_t`` as a
    row-major (F, C) matrix.  Per filter and tap one contiguous run of writes, gathered from
    ``w[f]`` (in L1), faster than NumPy's transpose or the (C, F) layout."""
    kw = w.shape[3]
    for f in range(f0, f1):
        for t in range(wt.shape[0]):
            if taps[t, TAP_ROWS] > 0:
                p = t // kw
                q = t - p * kw
                dst = wt[t, f]
                for c in range(c0, c1):
                    dst[c] = w[f, c, p, q]


@numba.njit(**_config.JIT_OPTIONS)
def _scatter_weights(gwt, gw, f0, f1, taps):
    """``gw[f, c, p, q] = sum over r of gwt[r, t, f, c]`` (0 for taps that read only
    padding) for filters ``[f0, f1)``: the inverse of :func:`_weights_fc` (summing the
    partial sums of ``R`` row slabs), one row ``gw[f]`` (in L1) at a time (indexing ``gw`` by
    four indices per element was 4x slower).  gwt : (R, kh*kw, F, C)."""
    R, K = gwt.shape[0], gwt.shape[1]
    C = gwt.shape[3]
    g2 = gw.reshape(gw.shape[0], C * K)
    for f in range(f0, f1):
        row = g2[f]
        for t in range(K):
            if taps[t, TAP_ROWS] > 0:
                src = gwt[0, t, f]
                for c in range(C):
                    row[c * K + t] = src[c]
                for r in range(1, R):
                    src = gwt[r, t, f]
                    for c in range(C):
                        row[c * K + t] += src[c]
            else:
                for c in range(C):
                    row[c * K + t] = 0.0


@numba.njit(inline="always")
def _rect(taps, t):
    """Row ``t`` of :func:`tap_table`'s ``taps``: ``(i0, j0, ni, nj, cell, first)``."""
    return (taps[t, TAP_I0], taps[t, TAP_J0], taps[t, TAP_ROWS], taps[t, TAP_COLS],
            taps[t, TAP_CELL], taps[t, TAP_FIRST])


@numba.njit(inline="always")
def _slab(n, s, parts):
    """``[n*s/parts, n*(s+1)/parts)``: part ``s`` of ``parts`` of ``range(n)``."""
    return n * s // parts, n * (s + 1) // parts


@numba.njit(inline="always")
def _rows_in(first, count, r0, r1):
    """The part ``[a, b)`` of rows ``[first, first + count)`` inside ``[r0, r1)`` (empty
    when ``b <= a``)."""
    return max(first, r0), min(first + count, r1)


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tapgemm_fwd(fn, width, xt, w, wt, yt, taps, full, rparts, fparts, rearrange):
    """``yt[i, j, :, :] = sum over valid taps (p, q) of X_(p,q) @ W_(p,q).T``: one BLAS call
    per tap and band row of its rectangle, ``(nj*N, C) @ (C, F_slab)``.

    xt : (sy, sx, Hq, Wq, N, C); w : (F, C, kh, kw); wt : (kh*kw, F, C) scratch (the valid
    taps' ``W_t``, written here if ``rearrange``, else given: a 1x1 kernel's ``w`` is its own
    ``W_t``, passed as ``wt``); yt : (OH, OW, N, F), overwritten (no bias); ``taps`` and
    ``full`` (its ``full_out``) from :func:`tap_table`; ``fn``/``width`` the CBLAS gemm and
    its integer marker.  Task ``(r, s)`` owns rows ``[R*r/rparts, R*(r+1)/rparts)`` of ``yt``
    seen as ``(R = OH*OW*N, F)`` and filters ``[F*s/fparts, F*(s+1)/fparts)``: its block of
    ``yt``; each band of a tap's rectangle is cut to those rows.  Filter slabs alone
    (``rparts == 1``) suit small maps, where the weights are the larger operand (each task
    rearranges and reads only its part of them); row slabs suit larger maps with few
    filters, where slabs of 32 or 64 filters made each concurrent BLAS call pack the whole
    input block and ran no faster on two threads than on one (64 -> 64 3x3 on 8x8).  Slabs
    of product rows, not of output rows, keep two threads even on maps of three rows."""
    F, C = w.shape[0], w.shape[1]
    if rparts > 1 and rearrange:  # every row slab reads every filter's weights: first
        for s in numba.prange(rparts * fparts):
            f0, f1 = _slab(F, s, rparts * fparts)
            # np.int64(0), not 0: each literal argument pattern compiles the helper anew
            _weights_fc(w, wt, f0, f1, np.int64(0), C, taps)
    for task in numba.prange(rparts * fparts):
        # the task's body is a serial function: compiled once, apart from the parallel loop
        _tapgemm_fwd_task(np.int64(task), fn, width, xt, w, wt, yt, taps, full, rparts,
                          fparts, rearrange)


@numba.njit(**_config.JIT_OPTIONS)
def _tapgemm_fwd_task(task, fn, width, xt, w, wt, yt, taps, full, rparts, fparts, rearrange):
    """Task ``task`` of :func:`_conv2d_tapgemm_fwd`: its block of rows and filters of
    ``yt``."""
    Wq, N, C = xt.shape[3], xt.shape[4], xt.shape[5]
    F = w.shape[0]
    OH, OW = yt.shape[0], yt.shape[1]
    it = yt.itemsize
    one = yt.dtype.type(1)
    zero = yt.dtype.type(0)
    R0, R1 = _slab(OH * OW * N, task // fparts, rparts)
    f0, f1 = _slab(F, task % fparts, fparts)
    nf = f1 - f0
    if nf == 0 or R1 == R0:
        return
    if rparts == 1 and rearrange:
        _weights_fc(w, wt, f0, f1, np.int64(0), C, taps)
    if full < 0:
        _zero_columns(yt.reshape(OH * OW * N, F)[R0:R1], f0, f1)
    for k in range(-1, taps.shape[0]):
        # the full tap first (it overwrites), then every other tap
        t = full if k < 0 else k
        if t < 0 or (k >= 0 and t == full) or taps[t, TAP_ROWS] == 0:
            continue
        i0, j0, ni, nj, cell, _ = _rect(taps, t)
        pb = wt.ctypes.data + ((t * F + f0) * C) * it
        beta = zero if t == full else one
        # bands of the rectangle: one block of rows when it spans whole rows of both
        # layouts, else one band per output row
        whole = nj == Wq and nj == OW
        count = ni * nj * N if whole else nj * N
        for r in range(1 if whole else ni):
            y0 = ((i0 + r) * OW + j0) * N
            lo, hi = max(y0, R0), min(y0 + count, R1)
            if hi <= lo:
                continue
            x0 = (cell + r * Wq) * N + lo - y0
            _cblas_gemm(fn, width, _NO_TRANS, _TRANS, hi - lo, nf, C, one,
                        xt.ctypes.data + x0 * C * it, C, pb, C, beta,
                        yt.ctypes.data + (lo * F + f0) * it, F)


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tap_panels_fwd(xt, P, b, has_bias, relu, y, taps):
    """``y = act(b + sum over valid taps (p, q) of X_(p,q) @ W_(p,q).T)`` on weights packed
    once into panels (:mod:`nbconv.kernels.panels`): the product of
    :func:`_conv2d_tapgemm_fwd` without BLAS, for layers of few output rows (a planned
    network at small batches, where BLAS packing the weights of every tap at every call cost
    more than the products); ``act`` the ReLU (NaN kept) with ``relu``.

    xt : (sy, sx, Hq, Wq, N, C); P : (ceil(F / FB), kh*kw, C, FB) the panels of the taps'
    weights (``FB`` outputs a panel, zeros past F); b : (F,) (any length when not
    ``has_bias``); y : (OH, OW, N, F) rows of channels, C-contiguous, overwritten; ``taps``
    from :func:`tap_table`.  One task per panel: its accumulators for every output row start
    from the bias and take each valid tap's rectangle band by band (as
    :func:`_conv2d_tapgemm_fwd`), then are stored once."""
    Wq, N, C = xt.shape[3], xt.shape[4], xt.shape[5]
    nfb, K, _, FB = P.shape
    OH, OW, F = y.shape[0], y.shape[1], y.shape[3]
    R = OH * OW * N
    it = y.itemsize
    zero = y.dtype.type(0)
    rows = y.reshape(R, F)
    for fb in numba.prange(nfb):
        f0 = fb * FB
        acc = np.empty((R, FB), dtype=y.dtype)
        _panel_start(acc, b, f0, has_bias, zero)
        aa = acc.ctypes.data
        for t in range(K):
            if taps[t, TAP_ROWS] == 0:
                continue
            i0, j0, ni, nj, cell, _ = _rect(taps, t)
            whole = nj == Wq and nj == OW
            count = ni * nj * N if whole else nj * N
            for r in range(1 if whole else ni):
                y0 = ((i0 + r) * OW + j0) * N
                x0 = (cell + r * Wq) * N
                for k0 in range(0, C, PANEL_TERMS):
                    pa = P.ctypes.data + (((fb * K + t) * C + k0) * FB) * it
                    kn = min(PANEL_TERMS, C - k0)
                    for m0 in range(0, count, PANEL_ROWS):
                        _panel_block(xt.ctypes.data + ((x0 + m0) * C + k0) * it, C, kn, pa,
                                     aa + (y0 + m0) * FB * it, min(PANEL_ROWS, count - m0),
                                     FB * it, it, zero)
        _panel_store(acc, rows, f0, relu, zero)


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tapgemm_bwd_data(fn, width, dyt, w, wt, dxt, taps, full, rparts, cparts,
                             rearrange):
    """``dX_(p,q) += dY_rect @ W_(p,q)`` for every valid tap: the adjoint of
    :func:`_conv2d_tapgemm_fwd`, one BLAS call per tap and band row, ``(nj*N, F) @
    (F, C_slab)``.

    dyt : (OH, OW, N, F); w : (F, C, kh, kw); wt : (kh*kw, F, C) scratch (the valid taps'
    ``W_t``, written here if ``rearrange``, as in the forward kernel); dxt : (sy, sx, Hq,
    Wq, N, C), overwritten (cells no tap reaches are 0); ``taps`` and ``full`` (its
    ``full_in``) from :func:`tap_table`.  Task ``(r, s)`` owns rows ``[Hq*r/rparts,
    Hq*(r+1)/rparts)`` of every stride phase and channels ``[C*s/cparts, C*(s+1)/cparts)``,
    as in the forward kernel."""
    F, C = w.shape[0], w.shape[1]
    if rparts > 1 and rearrange:
        for s in numba.prange(rparts * cparts):
            f0, f1 = _slab(F, s, rparts * cparts)
            _weights_fc(w, wt, f0, f1, np.int64(0), C, taps)
    for task in numba.prange(rparts * cparts):
        _tapgemm_bwd_data_task(np.int64(task), fn, width, dyt, w, wt, dxt, taps, full, rparts,
                               cparts, rearrange)


@numba.njit(**_config.JIT_OPTIONS)
def _tapgemm_bwd_data_task(task, fn, width, dyt, w, wt, dxt, taps, full, rparts, cparts,
                           rearrange):
    """Task ``task`` of :func:`_conv2d_tapgemm_bwd_data`: its rows and channels of
    ``dxt``."""
    sy, sx, Hq, Wq, N, C = dxt.shape
    F = w.shape[0]
    OW = dyt.shape[1]
    it = dxt.itemsize
    one = dxt.dtype.type(1)
    zero = dxt.dtype.type(0)
    r0, r1 = _slab(Hq, task // cparts, rparts)
    c0, c1 = _slab(C, task % cparts, cparts)
    nc = c1 - c0
    if nc == 0 or r1 == r0:
        return
    if rparts == 1 and rearrange:
        _weights_fc(w, wt, np.int64(0), F, c0, c1, taps)
    if full < 0:
        planes = dxt.reshape(sy * sx, Hq * Wq * N, C)
        for ph in range(sy * sx):
            _zero_columns(planes[ph, r0 * Wq * N:r1 * Wq * N], c0, c1)
    for k in range(-1, taps.shape[0]):
        t = full if k < 0 else k
        if t < 0 or (k >= 0 and t == full) or taps[t, TAP_ROWS] == 0:
            continue
        i0, j0, ni, nj, cell, first = _rect(taps, t)
        a, b = _rows_in(first, ni, r0, r1)
        if b <= a:
            continue
        pa = dyt.ctypes.data + ((((i0 + a - first) * OW + j0) * N) * F) * it
        pb = wt.ctypes.data + (t * F * C + c0) * it
        pc = dxt.ctypes.data + ((cell + (a - first) * Wq) * N * C + c0) * it
        beta = zero if t == full else one
        if b - a == 1 or (nj == Wq and nj == OW):
            _cblas_gemm(fn, width, _NO_TRANS, _NO_TRANS, (b - a) * nj * N, nc, F, one, pa, F,
                        pb, C, beta, pc, C)
        else:
            for r in range(b - a):
                _cblas_gemm(fn, width, _NO_TRANS, _NO_TRANS, nj * N, nc, F, one,
                            pa + r * OW * N * F * it, F, pb, C, beta, pc + r * Wq * N * C * it,
                            C)


@numba.njit(parallel=True, **_config.JIT_OPTIONS)
def _conv2d_tapgemm_bwd_weight(fn, width, dyt, xt, gwt, gw, taps, rparts, fparts):
    """``gw[:, :, p, q] = dY_rect.T @ X_rect`` for every tap, ``(F_slab, nj*N) @ (nj*N, C)``
    per band row, summed over the band rows; taps that read only padding get 0.

    dyt : (OH, OW, N, F); xt : (sy, sx, Hq, Wq, N, C); gwt : (rparts, kh*kw, F, C) scratch;
    gw : (F, C, kh, kw), overwritten; ``taps`` from :func:`tap_table`.  Task ``(r, s)``
    sums over output rows ``[OH*r/rparts, OH*(r+1)/rparts)`` into ``gwt[r]`` for filters
    ``[F*s/fparts, F*(s+1)/fparts)``; then the row slabs' sums are added up, one slab of
    filters per task, into ``gw`` (a contiguous block of it per slab)."""
    F = gw.shape[0]
    for task in numba.prange(rparts * fparts):
        _tapgemm_bwd_weight_task(np.int64(task), fn, width, dyt, xt, gwt, gw, taps, rparts,
                                 fparts)
    if rparts > 1:
        for s in numba.prange(rparts * fparts):
            f0, f1 = _slab(F, s, rparts * fparts)
            _scatter_weights(gwt, gw, f0, f1, taps)


@numba.njit(**_config.JIT_OPTIONS)
def _tapgemm_bwd_weight_task(task, fn, width, dyt, xt, gwt, gw, taps, rparts, fparts):
    """Task ``task`` of :func:`_conv2d_tapgemm_bwd_weight`: its row slab's sums for its
    filters, scattered into ``gw`` too when there is one row slab."""
    Wq, N, C = xt.shape[3], xt.shape[4], xt.shape[5]
    F = gw.shape[0]
    OH, OW = dyt.shape[0], dyt.shape[1]
    K = taps.shape[0]
    it = gwt.itemsize
    one = gwt.dtype.type(1)
    zero = gwt.dtype.type(0)
    rs = task // fparts
    r0, r1 = _slab(OH, rs, rparts)
    f0, f1 = _slab(F, task % fparts, fparts)
    nf = f1 - f0
    if nf == 0:
        return
    for t in range(K):
        if taps[t, TAP_ROWS] == 0:
            continue
        i0, j0, ni, nj, cell, _ = _rect(taps, t)
        a, b = _rows_in(i0, ni, r0, r1)
        if b <= a:  # no row of this slab: its share of the sum is 0
            gwt[rs, t, f0:f1] = 0.0
            continue
        pa = dyt.ctypes.data + (((a * OW + j0) * N) * F + f0) * it
        pb = xt.ctypes.data + ((cell + (a - i0) * Wq) * N * C) * it
        pc = gwt.ctypes.data + (((rs * K + t) * F + f0) * C) * it
        if b - a == 1 or (nj == Wq and nj == OW):
            _cblas_gemm(fn, width, _TRANS, _NO_TRANS, nf, C, (b - a) * nj * N, one, pa, F, pb,
                        C, zero, pc, C)
        else:
            for r in range(b - a):
                _cblas_gemm(fn, width, _TRANS, _NO_TRANS, nf, C, nj * N, one,
                            pa + r * OW * N * F * it, F, pb + r * Wq * N * C * it, C,
                            zero if r == 0 else one, pc, C)
    if rparts == 1:
        _scatter_weights(gwt, gw, f0, f1, taps)
