"""Pooling kernels (max, average, adaptive average), forward and backward.

Every kernel works on arrays whose leading axis is the flattened ``(n, c)`` plane index ``P``:
inputs ``(P, H, W)``, outputs ``(P, OH, OW)``.  Arguments are already validated by
``nbconv.functional.pool``; arrays are C-contiguous float32/float64 (indices int64) and the
hyperparameters are Python ints.  ``prange`` runs over ``P * rows`` so that both cores work
even at batch size 1, and every iteration writes only its own output row (no races); the
fast kernels at the end (separable max pooling, grouped scatter, flat global mean) run over
blocks of whole planes instead, since the maps of CIFAR-sized networks shrink to 2x2 and 1x1.

Hyperparameter names: ``kh, kw`` kernel, ``sy, sx`` stride, ``ph, pw`` padding (top/left;
the bottom/right padding is implied by the output size), ``dh, dw`` dilation.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _config

__all__ = [
    "_max_pool2d_2x2_fwd",
    "_max_pool2d_fwd",
    "_max_pool2d_bwd",
    "_avg_pool2d_fwd",
    "_avg_pool2d_bwd",
    "_adaptive_avg_pool2d_fwd",
    "_adaptive_avg_pool2d_fwd_across",
    "_adaptive_avg_pool2d_bwd",
    "_max_pool2d_sep_fwd",
    "_max_pool2d_values_fwd",
    "_max_pool2d_across_fwd",
    "_max_pool2d_rows_fwd",
    "_max_pool2d_planes_to_rows",
    "_max_pool2d_values_fwd_serial",
    "_max_pool2d_bwd_flat",
    "_global_avg_pool2d_fwd",
    "_global_avg_pool2d_bwd",
]


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_fwd(x, y, idx, kh, kw, sy, sx, ph, pw, dh, dw):
    """``y[p, i, j]`` = max over the window, ``idx[p, i, j]`` = its flat ``h * W + w``.

    Padding never wins (padded taps are skipped).  Ties go to the first maximal element in
    row-major window order; a NaN wins over everything and the last NaN's position is recorded
    (PyTorch's CPU rule ``val > maxval or isnan(val)``).  A window without any real input tap
    (possible only with dilation) gives ``-inf`` and index ``-1``.
    """
    P, OH = y.shape[0], y.shape[1]
    for r in prange(P * OH):
        p = r // OH
        _max_pool2d_row(x, y, idx, p, r - p * OH, kh, kw, sy, sx, ph, pw, dh, dw)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_row(x, y, idx, p, i, kh, kw, sy, sx, ph, pw, dh, dw):
    """Output row ``i`` of plane ``p`` (a serial helper: numba optimises loops in a called
    function far better than the same loops inline in a ``prange`` body)."""
    H, W = x.shape[1], x.shape[2]
    OW = y.shape[2]
    ninf = -np.inf
    hs = i * sy - ph
    he = min(hs + (kh - 1) * dh + 1, H)
    if hs < 0:  # the first tap inside the input (arithmetic: padding may be huge)
        hs += (-hs + dh - 1) // dh * dh
    for j in range(OW):
        ws = j * sx - pw
        we = min(ws + (kw - 1) * dw + 1, W)
        if ws < 0:
            ws += (-ws + dw - 1) // dw * dw
        best = ninf
        bi = -1
        if hs < he and ws < we:
            bi = hs * W + ws
        if dh == 1 and dw == 1:  # no stepped ranges: several times faster
            for h in range(hs, he):
                xrow = x[p, h]
                for w in range(ws, we):
                    v = xrow[w]
                    # selects, not branches: random data mispredicts a branch half the time
                    take = (v > best) | (v != v)
                    bi = h * W + w if take else bi
                    best = v if take else best
        else:
            for h in range(hs, he, dh):
                for w in range(ws, we, dw):
                    v = x[p, h, w]
                    if v > best or v != v:
                        best = v
                        bi = h * W + w
        y[p, i, j] = best
        idx[p, i, j] = bi


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_2x2_plane(x, y, idx, p):
    """Plane ``p`` of 2x2, stride-2, unpadded max pooling with whole windows only.

    The same rules as :func:`_max_pool2d_fwd` (first maximum wins ties, the last NaN wins),
    written with selects instead of branches so that LLVM vectorises it; the NaN branch is
    only taken for windows that hold a NaN.
    """
    W = x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    for i in range(OH):
        r0 = x[p, 2 * i]
        r1 = x[p, 2 * i + 1]
        yr = y[p, i]
        ir = idx[p, i]
        base = 2 * i * W
        for j in range(OW):
            a = r0[2 * j]
            b = r0[2 * j + 1]
            c = r1[2 * j]
            d = r1[2 * j + 1]
            m1 = a if a >= b else b
            m2 = c if c >= d else d
            m = m1 if m1 >= m2 else m2
            o = W + 1  # offsets of a, b, c, d: 0, 1, W, W+1; checked last to first
            o = W if c == m else o
            o = 1 if b == m else o
            o = 0 if a == m else o
            if (a != a) | (b != b) | (c != c) | (d != d):
                m = a + b + c + d  # NaN
                o = 0 if a != a else o
                o = 1 if b != b else o
                o = W if c != c else o
                o = W + 1 if d != d else o
            yr[j] = m
            ir[j] = base + 2 * j + o


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_2x2_plane_noidx(x, y, p):
    """Plane ``p`` of :func:`_max_pool2d_2x2_plane` without the argmax (inference: half the
    bytes written)."""
    OH, OW = y.shape[1], y.shape[2]
    for i in range(OH):
        r0 = x[p, 2 * i]
        r1 = x[p, 2 * i + 1]
        yr = y[p, i]
        for j in range(OW):
            a = r0[2 * j]
            b = r0[2 * j + 1]
            c = r1[2 * j]
            d = r1[2 * j + 1]
            m1 = a if a >= b else b
            m2 = c if c >= d else d
            m = m1 if m1 >= m2 else m2
            if (a != a) | (b != b) | (c != c) | (d != d):
                m = a + b + c + d  # NaN
            yr[j] = m


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_2x2_fwd_noidx(x, y):
    """:func:`_max_pool2d_2x2_fwd` without indices."""
    for p in prange(x.shape[0]):
        _max_pool2d_2x2_plane_noidx(x, y, p)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_2x2_fwd_noidx_serial(x, y):
    """:func:`_max_pool2d_2x2_fwd_noidx` on the calling thread (small inputs)."""
    for p in range(x.shape[0]):
        _max_pool2d_2x2_plane_noidx(x, y, p)


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_2x2_fwd(x, y, idx):
    """2x2/2 max pooling of planes ``x`` (P, H, W) into ``y``/``idx`` (P, H//2, W//2)."""
    for p in prange(x.shape[0]):
        _max_pool2d_2x2_plane(x, y, idx, p)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_2x2_fwd_serial(x, y, idx):
    """:func:`_max_pool2d_2x2_fwd` on the calling thread (small inputs)."""
    for p in range(x.shape[0]):
        _max_pool2d_2x2_plane(x, y, idx, p)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_bwd_plane(dy, idx, y, relu, dx, p):
    """Zero plane ``p`` of ``dx``, then scatter plane ``p`` of ``dy`` to it at ``idx``,
    skipping index -1 and, with ``relu``, windows whose maximum ``y`` is ``<= 0`` (serial
    helper; zeroing here, plane by plane on the threads, beat a separate ``np.zeros``)."""
    for t in range(dx.shape[1]):
        dx[p, t] = 0
    for k in range(dy.shape[1]):
        t = idx[p, k]
        if t >= 0 and not (relu and y[p, k] <= 0):
            dx[p, t] += dy[p, k]


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_bwd(dy, idx, y, relu, dx):
    """Scatter ``dy`` (P, K) to ``dx`` (P, H*W) at ``idx`` (P, K); ``dx`` is overwritten.

    One iteration owns one plane, so the accumulation has no races.  Index ``-1`` (a window
    without input) is skipped.  With ``relu`` this is also the backward pass of a ReLU before
    the pooling: a window passes its gradient only if its maximum ``y`` (P, K) is not
    ``<= 0`` (the ReLU's own rule at the argmax: ``relu(v) <= 0`` exactly when ``v <= 0``, and
    NaN passes); without it ``y`` is not read (any array of ``dy``'s shape will do).
    """
    for p in prange(dy.shape[0]):
        _max_pool2d_bwd_plane(dy, idx, y, relu, dx, np.int64(p))  # as the serial twin


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_bwd_serial(dy, idx, y, relu, dx):
    """:func:`_max_pool2d_bwd` on the calling thread (small inputs)."""
    for p in range(dy.shape[0]):
        _max_pool2d_bwd_plane(dy, idx, y, relu, dx, p)


@njit(parallel=True, **_config.JIT_OPTIONS)
def _avg_pool2d_fwd(x, y, kh, kw, sy, sx, ph, pw, count_include_pad, divisor):
    """Average pooling, PyTorch's divisor rule.

    The window is clipped to the padded input (``he = min(hs + kh, H + ph)``) and its size
    counted there (``count_include_pad``), else the number of real input elements is used;
    ``divisor != 0`` overrides both.
    """
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for r in prange(P * OH):
        p = r // OH
        i = r - p * OH
        hs = i * sy - ph
        he = min(hs + kh, H + ph)
        hn = he - hs
        hs = max(hs, 0)
        he = min(he, H)
        for j in range(OW):
            ws = j * sx - pw
            we = min(ws + kw, W + pw)
            wn = we - ws
            ws = max(ws, 0)
            we = min(we, W)
            if hs >= he or ws >= we:
                y[p, i, j] = 0.0
                continue
            s = 0.0  # float64 accumulator
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


@njit(parallel=True, **_config.JIT_OPTIONS)
def _avg_pool2d_bwd(dy, dx, kh, kw, sy, sx, ph, pw, count_include_pad, divisor):
    """Gradient of :func:`_avg_pool2d_fwd`, as a gather over input rows (``dx`` overwritten).

    Iteration ``(p, h)`` visits the output rows ``i`` whose window covers input row ``h`` and
    adds ``dy[p, i, j] / divisor`` along the covered columns of its own row of ``dx``.
    """
    P, H, W = dx.shape
    OH, OW = dy.shape[1], dy.shape[2]
    for r in prange(P * H):
        p = r // H
        h = r - p * H
        for w in range(W):
            dx[p, h, w] = 0.0
        # output rows i with i*sy - ph <= h < i*sy - ph + kh
        num = h + ph - kh + 1
        i0 = 0
        if num > 0:
            i0 = (num + sy - 1) // sy
        i1 = min((h + ph) // sy, OH - 1)
        for i in range(i0, i1 + 1):
            hs = i * sy - ph
            he = min(hs + kh, H + ph)
            hn = he - hs
            hc = min(he, H) - max(hs, 0)
            for j in range(OW):
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
                g = dy[p, i, j] / d
                for w in range(ws, we):
                    dx[p, h, w] += g


@njit(parallel=True, **_config.JIT_OPTIONS)
def _adaptive_avg_pool2d_fwd(x, y):
    """Adaptive average pooling: bin ``i`` spans rows ``floor(i*H/OH) : ceil((i+1)*H/OH)``."""
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for r in prange(P * OH):
        p = r // OH
        i = r - p * OH
        hs = (i * H) // OH
        he = ((i + 1) * H + OH - 1) // OH
        for j in range(OW):
            ws = (j * W) // OW
            we = ((j + 1) * W + OW - 1) // OW
            s = 0.0  # float64 accumulator
            for h in range(hs, he):
                for w in range(ws, we):
                    s += x[p, h, w]
            y[p, i, j] = s / ((he - hs) * (we - ws))


@njit(parallel=True, **_config.JIT_OPTIONS)
def _adaptive_avg_pool2d_bwd(dy, dx):
    """Gradient of :func:`_adaptive_avg_pool2d_fwd`, a gather over input rows (``dx`` overwritten).

    Input row ``h`` lies in the bins ``i`` with ``floor(h*OH/H) <= i < ceil((h+1)*OH/H)``.
    """
    P, H, W = dx.shape
    OH, OW = dy.shape[1], dy.shape[2]
    for r in prange(P * H):
        p = r // H
        h = r - p * H
        for w in range(W):
            dx[p, h, w] = 0.0
        i0 = (h * OH) // H
        i1 = ((h + 1) * OH + H - 1) // H
        for i in range(i0, i1):
            hs = (i * H) // OH
            he = ((i + 1) * H + OH - 1) // OH
            for j in range(OW):
                ws = (j * W) // OW
                we = ((j + 1) * W + OW - 1) // OW
                g = dy[p, i, j] / ((he - hs) * (we - ws))
                for w in range(ws, we):
                    dx[p, h, w] += g


# --------------------------------------------------------------------------- separable max pooling
#
# Max pooling without dilation as two 1-D passes over each plane: a row pass takes the maximum
# of the ``kw`` taps of every output column in every input row (values ``rm`` and their flat
# positions ``ri``, a per-block scratch of shape (H, OW)), a column pass the maximum of ``kh``
# row-pass results.  A 3x3 window then costs 4 comparisons instead of 8.  Applying PyTorch's
# sequential rule ``take = v > best or isnan(v)`` in both passes gives exactly the result of
# applying it in row-major order over the window: without NaN the first row holding the
# window's maximum wins, and in it the first column; with NaN the last row holding a NaN, and
# in it the last NaN.  Every window has a real tap (dilation 1 and ``padding <= kernel // 2``,
# and ceil mode's last window starts inside the input or the left padding), so each pass starts
# from its first real tap; the inner loops run over contiguous output columns with selects, so
# LLVM vectorises them.  The slow, explicit reference is :func:`_max_pool2d_fwd` above (and
# ``tests/reference_pool.py``); ``tests/test_pool_fast.py`` checks the two against it.


@njit(**_config.JIT_OPTIONS)
def _row_pass_border(xr, rmh, rih, base, j, kw, sx, pw):
    """The row pass of output column ``j`` whose window crosses the padding of input row
    ``xr``: the maximum of its real taps into ``rmh[j]``, its flat position into ``rih[j]``
    (serial helper)."""
    W = xr.shape[0]
    ws = j * sx - pw
    we = min(ws + kw, W)
    ws = max(ws, 0)
    m = xr[ws]
    a = ws
    for w in range(ws + 1, we):
        v = xr[w]
        take = (v > m) | (v != v)
        a = w if take else a
        m = v if take else m
    rmh[j] = m
    rih[j] = base + a


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_sep_planes(x, y, idx, want_idx, p0, p1, kh, kw, sy, sx, ph, pw):
    """Planes ``p0:p1`` of ``x`` (P, H, W) into ``y`` (and, with ``want_idx``, ``idx``),
    (P, OH, OW): separable max pooling with dilation 1 (serial helper).  The row pass of every
    input row is made once per plane, into a (H, OW) scratch; the column pass folds the
    ``kh`` rows of each output row into it."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    rm = np.empty((H, OW), x.dtype)
    ri = np.empty((H, OW), np.int64)
    bm = np.empty(OW, x.dtype)
    bi = np.empty(OW, np.int64)
    # output columns whose windows lie inside the input: j0 <= j < j1
    j0 = min((pw + sx - 1) // sx, OW)
    j1 = max(min((W + pw - kw) // sx + 1, OW), j0)
    for p in range(p0, p1):
        for h in range(H):
            xr = x[p, h]
            rmh = rm[h]
            rih = ri[h]
            base = h * W
            for j in range(j0):
                _row_pass_border(xr, rmh, rih, base, j, kw, sx, pw)
            for j in range(j0, j1):
                rmh[j] = xr[j * sx - pw]
                rih[j] = base + j * sx - pw
            for t in range(1, kw):
                for j in range(j0, j1):
                    w = j * sx - pw + t
                    v = xr[w]
                    m = rmh[j]
                    take = (v > m) | (v != v)
                    rih[j] = base + w if take else rih[j]
                    rmh[j] = v if take else m
            for j in range(j1, OW):
                _row_pass_border(xr, rmh, rih, base, j, kw, sx, pw)
        for i in range(OH):
            hs = i * sy - ph
            he = min(hs + kh, H)
            hs = max(hs, 0)
            for j in range(OW):
                bm[j] = rm[hs, j]
                bi[j] = ri[hs, j]
            for h in range(hs + 1, he):
                rmh = rm[h]
                rih = ri[h]
                for j in range(OW):
                    v = rmh[j]
                    m = bm[j]
                    take = (v > m) | (v != v)
                    bi[j] = rih[j] if take else bi[j]
                    bm[j] = v if take else m
            yr = y[p, i]
            for j in range(OW):
                yr[j] = bm[j]
            if want_idx:
                ir = idx[p, i]
                for j in range(OW):
                    ir[j] = bi[j]


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_whole_planes(x, y, idx, want_idx, p0, p1):
    """Planes ``p0:p1`` when every window covers its whole (small) plane: each output is the
    plane's maximum (row-major rule), e.g. 3x3 windows with padding 1 on 2x2 or 1x1 maps."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    for p in range(p0, p1):
        xp = x[p]
        m = xp[0, 0]
        a = 0
        for h in range(H):
            for w in range(W):
                v = xp[h, w]
                take = (v > m) | (v != v)
                a = h * W + w if take else a
                m = v if take else m
        for i in range(OH):
            for j in range(OW):
                y[p, i, j] = m
                if want_idx:
                    idx[p, i, j] = a


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_sep_fwd(x, y, idx, want_idx, nblocks, mode, kh, kw, sy, sx, ph, pw):
    """Max pooling without dilation of planes ``x`` (P, H, W) into ``y`` and, with
    ``want_idx``, ``idx`` (P, OH, OW) (without it ``idx`` is not touched: any int64 array of
    three dimensions will do).  ``prange`` over ``nblocks`` blocks of whole planes (a plane
    of these models can be 1x1: per-plane tasks would be all overhead).  ``mode``: 0 the
    separable passes, 1 every window covers the whole plane."""
    P = x.shape[0]
    for b in prange(nblocks):
        p0 = b * P // nblocks
        p1 = (b + 1) * P // nblocks
        if mode == 1:
            _max_pool2d_whole_planes(x, y, idx, want_idx, p0, p1)
        else:
            _max_pool2d_sep_planes(x, y, idx, want_idx, p0, p1, kh, kw, sy, sx, ph, pw)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_sep_fwd_serial(x, y, idx, want_idx, nblocks, mode, kh, kw, sy, sx, ph, pw):
    """:func:`_max_pool2d_sep_fwd` on the calling thread (small inputs; ``nblocks`` unused)."""
    P = x.shape[0]
    if mode == 1:
        _max_pool2d_whole_planes(x, y, idx, want_idx, 0, P)
    else:
        _max_pool2d_sep_planes(x, y, idx, want_idx, 0, P, kh, kw, sy, sx, ph, pw)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_bwd_block(dy, idx, y, relu, dx, K, HW, p0, p1):
    """Planes ``p0:p1`` of :func:`_max_pool2d_bwd_flat`, on the flat (1-D) arrays, in groups
    of ``q`` planes (about 1024 elements of ``dx``, still in L1 when the scatter comes): one
    memset of the group's ``dx``, then one scatter loop over the group's ``dy``, so that 1x1
    or 2x2 planes pay no per-plane loop set-up.  (Summing runs of equal indices in a register
    before the store was tried: no faster on 1x1/2x2 planes, slower on 4x4.)"""
    q = max(1, 1024 // HW)
    for g0 in range(p0, p1, q):
        g1 = min(g0 + q, p1)
        for t in range(g0 * HW, g1 * HW):
            dx[t] = 0
        base = g0 * HW
        kk = 0
        if relu:
            for k in range(g0 * K, g1 * K):
                t = idx[k]
                if t >= 0 and not y[k] <= 0:
                    dx[base + t] += dy[k]
                kk += 1
                if kk == K:
                    kk = 0
                    base += HW
        else:
            for k in range(g0 * K, g1 * K):
                t = idx[k]
                if t >= 0:
                    dx[base + t] += dy[k]
                kk += 1
                if kk == K:
                    kk = 0
                    base += HW


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_bwd_flat(dy, idx, y, relu, dx, K, HW, nblocks):
    """:func:`_max_pool2d_bwd` on flat arrays: ``dy``, ``idx`` and ``y`` (P*K,), ``dx``
    (P*HW,) overwritten, ``prange`` over ``nblocks`` blocks of whole planes (an iteration
    owns its planes: no races).  The same rules: index -1 skipped, with ``relu`` only windows
    whose maximum ``y`` is not ``<= 0`` pass."""
    P = dx.shape[0] // HW
    for b in prange(nblocks):
        _max_pool2d_bwd_block(dy, idx, y, relu, dx, K, HW, b * P // nblocks,
                              (b + 1) * P // nblocks)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_bwd_flat_serial(dy, idx, y, relu, dx, K, HW, nblocks):
    """:func:`_max_pool2d_bwd_flat` on the calling thread (``nblocks`` unused)."""
    _max_pool2d_bwd_block(dy, idx, y, relu, dx, K, HW, 0, dx.shape[0] // HW)


# --------------------------------------------------------------------------- global average


@njit(**_config.JIT_OPTIONS)
def _global_avg_pool2d_block(x, y, HW, p0, p1):
    """Planes ``p0:p1`` of :func:`_global_avg_pool2d_fwd`."""
    if HW == 1:  # s / 1 in float64, rounded back: the value itself (NaN and inf too)
        for p in range(p0, p1):
            y[p] = x[p]
        return
    for p in range(p0, p1):
        s = 0.0  # float64 accumulator, as _adaptive_avg_pool2d_fwd
        for t in range(p * HW, (p + 1) * HW):
            s += x[t]
        y[p] = s / HW


@njit(parallel=True, **_config.JIT_OPTIONS)
def _global_avg_pool2d_fwd(x, y, HW, nblocks):
    """:func:`_adaptive_avg_pool2d_fwd` to 1x1 on flat arrays: ``x`` (P*HW,), ``y`` (P,);
    ``prange`` over ``nblocks`` blocks of planes (1x1 maps are common: no per-plane tasks)."""
    P = y.shape[0]
    for b in prange(nblocks):
        _global_avg_pool2d_block(x, y, HW, b * P // nblocks, (b + 1) * P // nblocks)


@njit(**_config.JIT_OPTIONS)
def _global_avg_pool2d_fwd_serial(x, y, HW, nblocks):
    """:func:`_global_avg_pool2d_fwd` on the calling thread (``nblocks`` unused)."""
    _global_avg_pool2d_block(x, y, HW, 0, y.shape[0])


@njit(**_config.JIT_OPTIONS)
def _global_avg_pool2d_bwd_block(dy, dx, HW, p0, p1):
    for p in range(p0, p1):
        g = dy[p] / HW  # in float64, as _adaptive_avg_pool2d_bwd
        for t in range(p * HW, (p + 1) * HW):
            dx[t] = g


@njit(parallel=True, **_config.JIT_OPTIONS)
def _global_avg_pool2d_bwd(dy, dx, HW, nblocks):
    """Gradient of :func:`_global_avg_pool2d_fwd`: ``dx`` (P*HW,) = ``dy`` (P,) / HW."""
    P = dy.shape[0]
    for b in prange(nblocks):
        _global_avg_pool2d_bwd_block(dy, dx, HW, b * P // nblocks, (b + 1) * P // nblocks)


@njit(**_config.JIT_OPTIONS)
def _global_avg_pool2d_bwd_serial(dy, dx, HW, nblocks):
    """:func:`_global_avg_pool2d_bwd` on the calling thread (``nblocks`` unused)."""
    _global_avg_pool2d_bwd_block(dy, dx, HW, 0, dy.shape[0])


# ------------------------------------------------------------------ max pooling without the argmax
#
# Inference needs only the maxima.  Each output row is then a running maximum over the window's
# taps taken one tap at a time for the whole row: ``y[j] = max(y[j], x[h, j*sx - pw + q])``.
# The loop over ``j`` carries no dependency (the per-window kernels above chain every tap of a
# window through one select), so LLVM vectorises it.  The select ``take = v > m or v != v``
# is PyTorch's rule: the value is the window's maximum, NaN when it holds one.  With dilation 1
# and ``padding <= kernel // 2`` every window holds a real tap, so ``-inf`` as the start is
# never the result unless the window's values are all ``-inf``.


@njit(inline="always")
def _span(i, s, p, k, n):
    """The input indices ``[start, stop)`` of window ``i`` (stride ``s``, padding ``p``,
    size ``k``, dilation 1) along an axis of length ``n``."""
    return max(i * s - p, 0), min(i * s - p + k, n)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_values_planes(x, y, p0, p1, kh, kw, sy, sx, ph, pw):
    """Planes ``p0:p1`` of ``x`` (P, H, W) max-pooled into ``y`` (P, OH, OW), dilation 1
    (serial helper)."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    ninf = -np.inf
    for p in range(p0, p1):
        for i in range(OH):
            yr = y[p, i]
            for j in range(OW):
                yr[j] = ninf
            hs, he = _span(i, sy, ph, kh, H)
            for h in range(hs, he):
                xr = x[p, h]
                for q in range(kw):
                    # output columns whose tap q lies inside the row: 0 <= j*sx - pw + q < W
                    off = q - pw
                    j0 = 0 if off >= 0 else (-off + sx - 1) // sx
                    j1 = min(OW, (W - 1 - off) // sx + 1) if W - 1 - off >= 0 else 0
                    for j in range(j0, j1):
                        v = xr[j * sx + off]
                        m = yr[j]
                        yr[j] = v if (v > m) | (v != v) else m


#: planes pooled side by side by :func:`_max_pool2d_values_across` (its vector lanes)
ACROSS_PLANES = 64
#: the largest input plane (H * W) pooled across planes: its transposed block of
#: ``ACROSS_PLANES`` planes (256 KiB in float32) stays in the L2 cache
ACROSS_MAX_PLANE = 1024


@njit(**_config.JIT_OPTIONS)
def _planes_as_lanes(x, t, q0, n):
    """``t[h * W + w, g] = x[q0 + g, h, w]`` for ``g < n``: a group of planes (P, H, W)
    transposed so that each pixel's values across the planes are one contiguous row."""
    H, W = x.shape[1], x.shape[2]
    for g in range(n):
        for h in range(H):
            for w in range(W):
                t[h * W + w, g] = x[q0 + g, h, w]


@njit(inline="always")
def _window_maxima(src, hs, he, ws, we, l0, n, acc):
    """``acc[k]`` = the maximum of ``src[h, w, l0 + k]`` over the window ``[hs, he) x
    [ws, we)`` for ``k < n`` (NaN wins; ``-inf`` for an empty window): one vector maximum a
    tap, the lanes of ``src`` (H, W, lanes) contiguous (serial helper)."""
    for k in range(n):
        acc[k] = -np.inf
    for h in range(hs, he):
        for w in range(ws, we):
            row = src[h, w, l0:l0 + n]
            for k in range(n):
                v = row[k]
                m = acc[k]
                acc[k] = v if (v > m) | (v != v) else m


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_values_across(x, y, p0, p1, kh, kw, sy, sx, ph, pw, to_rows=False):
    """Planes ``p0:p1`` max-pooled ``ACROSS_PLANES`` at a time, the planes as vector lanes.

    Small maps (4x4 in GoogLeNet's later stages) give the row-wise helper loops of three or
    four columns; here each group of planes is transposed once into ``t`` (H * W, lanes), every
    window tap is then one full-width vector maximum, and the maxima go back plane by plane
    into ``y`` (P, OH, OW) -- or, ``to_rows``, as one contiguous run into ``y`` (OH, OW, P).
    """
    H, W = x.shape[1], x.shape[2]
    OH, OW = (y.shape[0], y.shape[1]) if to_rows else (y.shape[1], y.shape[2])
    G = ACROSS_PLANES
    t = np.empty((H * W, G), x.dtype)
    t3 = t.reshape(H, W, G)
    acc = np.empty(G, x.dtype)
    for q0 in range(p0, p1, G):
        n = min(G, p1 - q0)
        _planes_as_lanes(x, t, q0, n)
        for i in range(OH):
            hs, he = _span(i, sy, ph, kh, H)
            for j in range(OW):
                ws, we = _span(j, sx, pw, kw, W)
                # all G lanes (a constant count): those past n hold stale values, never stored
                _window_maxima(t3, hs, he, ws, we, 0, G, acc)
                if to_rows:
                    out = y[i, j]
                    for g in range(n):
                        out[q0 + g] = acc[g]
                else:
                    for g in range(n):
                        y[q0 + g, i, j] = acc[g]


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_across_fwd(x, y, idx, nblocks, kh, kw, sy, sx, ph, pw):
    """:func:`_max_pool2d_fwd` (values and argmax) of small planes (at most
    ``ACROSS_MAX_PLANE`` elements), dilation 1, every window holding a tap of the input:
    ``prange`` over ``nblocks`` blocks of whole planes pooled across planes."""
    P = x.shape[0]
    for b in prange(nblocks):
        _max_pool2d_across_idx(x, y, idx, b * P // nblocks, (b + 1) * P // nblocks,
                               kh, kw, sy, sx, ph, pw)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_across_idx(x, y, idx, p0, p1, kh, kw, sy, sx, ph, pw):
    """:func:`_max_pool2d_values_across` with the argmax: ``idx[p, i, j]`` the flat
    ``h * W + w`` of the maximum, by the rule of :func:`_max_pool2d_fwd` (taps in row-major
    window order, the first maximal one wins, the last NaN wins over everything)."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    G = ACROSS_PLANES
    t = np.empty((H * W, G), x.dtype)
    acc = np.empty(G, x.dtype)
    arg = np.empty(G, np.int64)
    ninf = -np.inf
    for q0 in range(p0, p1, G):
        n = min(G, p1 - q0)
        _planes_as_lanes(x, t, q0, n)
        for i in range(OH):
            hs, he = _span(i, sy, ph, kh, H)
            for j in range(OW):
                ws, we = _span(j, sx, pw, kw, W)
                first = hs * W + ws if hs < he and ws < we else -1
                for g in range(G):
                    acc[g] = ninf
                    arg[g] = first
                for h in range(hs, he):
                    for w in range(ws, we):
                        tr = t[h * W + w]
                        k = h * W + w
                        for g in range(G):  # lanes past n hold stale values, never stored
                            v = tr[g]
                            take = (v > acc[g]) | (v != v)
                            acc[g] = v if take else acc[g]
                            arg[g] = k if take else arg[g]
                for g in range(n):
                    y[q0 + g, i, j] = acc[g]
                    idx[q0 + g, i, j] = arg[g]


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_values_block(x, y, p0, p1, kh, kw, sy, sx, ph, pw):
    """Planes ``p0:p1``: across planes when a plane is small, else row by row."""
    if x.shape[1] * x.shape[2] <= ACROSS_MAX_PLANE:
        _max_pool2d_values_across(x, y, p0, p1, kh, kw, sy, sx, ph, pw)
    else:
        _max_pool2d_values_planes(x, y, p0, p1, kh, kw, sy, sx, ph, pw)


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_values_fwd(x, y, nblocks, kh, kw, sy, sx, ph, pw):
    """Max pooling of planes ``x`` (P, H, W) into ``y`` (P, OH, OW) without the argmax,
    dilation 1; ``prange`` over ``nblocks`` blocks of whole planes."""
    P = x.shape[0]
    for b in prange(nblocks):
        _max_pool2d_values_block(x, y, b * P // nblocks, (b + 1) * P // nblocks,
                                 kh, kw, sy, sx, ph, pw)


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_values_fwd_serial(x, y, nblocks, kh, kw, sy, sx, ph, pw):
    """:func:`_max_pool2d_values_fwd` on the calling thread (``nblocks`` unused)."""
    _max_pool2d_values_block(x, y, 0, x.shape[0], kh, kw, sy, sx, ph, pw)


@njit(parallel=True, **_config.JIT_OPTIONS)
def _adaptive_avg_pool2d_fwd_across(x, y, nblocks):
    """:func:`_adaptive_avg_pool2d_fwd` of small planes, ``prange`` over ``nblocks`` blocks of
    whole planes pooled across planes (:func:`_adaptive_avg_pool2d_across`)."""
    P = x.shape[0]
    for b in prange(nblocks):
        _adaptive_avg_pool2d_across(x, y, b * P // nblocks, (b + 1) * P // nblocks)


@njit(**_config.JIT_OPTIONS)
def _adaptive_avg_pool2d_across(x, y, p0, p1):
    """Planes ``p0:p1`` adaptive-average-pooled ``ACROSS_PLANES`` at a time, the planes as
    vector lanes (see :func:`_max_pool2d_values_across`); float64 sums as in the row kernel."""
    H, W = x.shape[1], x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    G = ACROSS_PLANES
    t = np.empty((H * W, G), x.dtype)
    acc = np.empty(G, np.float64)
    for q0 in range(p0, p1, G):
        n = min(G, p1 - q0)
        _planes_as_lanes(x, t, q0, n)
        for i in range(OH):
            hs = (i * H) // OH
            he = ((i + 1) * H + OH - 1) // OH
            for j in range(OW):
                ws = (j * W) // OW
                we = ((j + 1) * W + OW - 1) // OW
                for g in range(G):
                    acc[g] = 0.0
                for h in range(hs, he):
                    for w in range(ws, we):
                        tr = t[h * W + w]
                        for g in range(G):  # lanes past n hold stale values, never stored
                            acc[g] += tr[g]
                count = (he - hs) * (we - ws)
                for g in range(n):
                    y[q0 + g, i, j] = acc[g] / count


# ------------------------------------------------------------------ pooling rows of channels
#
# A planned network (:mod:`nbconv.inference`) may keep a map as rows of channels, ``(H, W, L)``
# with ``L = N * C`` lanes contiguous (the tap-GEMM convolution's own layout): every window tap
# is then one contiguous run of ``L`` values, and pooling needs no transposition at all.


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_rows_fwd(x, y, kh, kw, sy, sx, ph, pw):
    """Max pooling without the argmax of ``x`` (H, W, L) into ``y`` (OH, OW, L), dilation 1,
    every window holding a tap of the input; the rule of :func:`_max_pool2d_values_planes`
    (NaN wins).  ``prange`` over blocks of lanes."""
    L = x.shape[2]
    nblocks = max(1, min(64, L // 256))
    for blk in prange(nblocks):
        _max_pool2d_rows_lanes(x, y, blk * L // nblocks, (blk + 1) * L // nblocks,
                               kh, kw, sy, sx, ph, pw)


#: lanes of rows pooled together by :func:`_max_pool2d_rows_lanes` (their running maxima stay
#: in registers and L1 across a window's taps; whole rows of 8192 lanes streamed the maxima
#: through L2 once per tap, 2.6x slower)
ROWS_TILE = 128


@njit(**_config.JIT_OPTIONS)
def _max_pool2d_rows_lanes(x, y, l0, l1, kh, kw, sy, sx, ph, pw):
    """Lanes ``l0:l1`` of :func:`_max_pool2d_rows_fwd`, ``ROWS_TILE`` lanes at a time
    (serial helper)."""
    H, W = x.shape[0], x.shape[1]
    OH, OW = y.shape[0], y.shape[1]
    T = ROWS_TILE
    acc = np.empty(T, x.dtype)
    for t0 in range(l0, l1, T):
        n = min(T, l1 - t0)
        for i in range(OH):
            hs, he = _span(i, sy, ph, kh, H)
            for j in range(OW):
                ws, we = _span(j, sx, pw, kw, W)
                _window_maxima(x, hs, he, ws, we, t0, n, acc)
                out = y[i, j, t0:t0 + n]
                for lane in range(n):
                    out[lane] = acc[lane]


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool2d_planes_to_rows(x, y, nblocks, kh, kw, sy, sx, ph, pw):
    """Max pooling without the argmax of planes ``x`` (P, H, W) into rows ``y`` (OH, OW, P),
    dilation 1: :func:`_max_pool2d_values_across`'s groups of planes, each window's maxima
    stored as one contiguous run of the output row (a planned network's NCHW map entering
    rows of channels at a pooling layer).  ``prange`` over ``nblocks`` blocks of planes."""
    P = x.shape[0]
    for b in prange(nblocks):
        _max_pool2d_values_across(x, y, b * P // nblocks, (b + 1) * P // nblocks,
                                  kh, kw, sy, sx, ph, pw, True)
