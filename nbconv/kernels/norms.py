"""Group-, instance- and layer-normalisation kernels.

All three normalise *rows*: a C-contiguous array seen as ``(R, M)`` whose every row is one set of
statistics -- a group ``(n, g)`` of ``C/G`` channels for group norm (``(N*G, C/G*S)``), a plane
``(n, c)`` for instance norm (group norm with ``G = C``), the trailing ``normalized_shape`` for
layer norm.  Group and instance norm apply an affine per channel (``C/G`` runs of ``S`` values
in a row); layer norm one per column.

Statistics are float64 and numerically sound in one sweep over memory: each chunk of
:data:`_CHUNK` values gets its mean and sum of squared deviations by two passes (the second
from L1), and chunks are merged with Chan, Golub and LeVeque's pairwise formula.  Per-row and
per-channel results, coefficients and sums are float64 arrays, so one signature per input dtype
serves every call; elementwise passes compute in float64 too (exact ``x - mean`` for float32).

Two schedules, chosen by the caller:

* *fused* (many rows): one ``prange`` iteration owns whole rows, computing their statistics
  (or their gradient sums) and then writing their outputs while the row is still in cache;
  every kernel has a ``_serial`` twin for inputs too small to wake the threads;
* *split* (fewer rows than a few per thread): per-(row, block) partial statistics or sums
  (merged by the caller), then an elementwise pass over (row, block) -- or, for layer norm's
  backward, over column blocks, which own their columns of the weight gradients.

Race freedom: every iteration writes only its own rows, blocks or columns, and the
row-parallel layer-norm backward gives each chunk of rows private weight-gradient partials
(rows ``t`` of ``pg``/``pb``) that the caller sums.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS

#: values per chunk of the two-pass moments (4-8 KiB: the second pass reads L1).
_CHUNK = 1024
#: values per parallel block of the split kernels.
BLOCK = 16384


@numba.njit(**JIT_OPTIONS)
def _moments(v, lo, hi):
    """Mean and sum of squared deviations (float64) of ``v[lo:hi]`` (1-D, ``hi > lo``)."""
    n = 0
    mean = 0.0
    m2 = 0.0
    for c0 in range(lo, hi, _CHUNK):
        c1 = min(hi, c0 + _CHUNK)
        k = c1 - c0
        s = 0.0
        for i in range(c0, c1):
            s += v[i]
        mc = s / k
        q = 0.0
        for i in range(c0, c1):
            d = v[i] - mc
            q += d * d
        if n == 0:
            mean = mc
            m2 = q
        else:
            tot = n + k
            delta = mc - mean
            mean += delta * (k / tot)
            m2 += q + delta * delta * (n * (k / tot))
        n += k
    return mean, m2


# --------------------------------------------------------------------------- group / instance


@numba.njit(**JIT_OPTIONS)
def _grouped_fwd_row(x, y, r, G, cg, S, w, b, eps, mean, var):
    """Row ``r`` (group ``r % G`` of its image) of :func:`_grouped_fwd`."""
    xr = x[r]
    yr = y[r]
    m, m2 = _moments(xr, 0, cg * S)
    v = m2 / (cg * S)
    rs = 1.0 / np.sqrt(v + eps)
    mean[r] = m
    var[r] = v
    c0 = (r % G) * cg
    for k in range(cg):
        a = rs * w[c0 + k]
        sh = b[c0 + k]
        for i in range(k * S, (k + 1) * S):
            yr[i] = (xr[i] - m) * a + sh


@numba.njit(parallel=True, **JIT_OPTIONS)
def _grouped_fwd(x, y, G, cg, S, w, b, eps, mean, var):
    """Group norm of ``x`` (N*G, cg*S) into ``y``: per row the mean and the biased variance
    into ``mean``/``var`` (N*G,), then ``y = (x - mean) * rstd * w[c] + b[c]`` with ``rstd =
    1/sqrt(var + eps)`` and ``c = (r % G) * cg + k`` for the ``k``-th run of ``S`` values."""
    for r in numba.prange(x.shape[0]):
        _grouped_fwd_row(x, y, r, G, cg, S, w, b, eps, mean, var)


@numba.njit(**JIT_OPTIONS)
def _grouped_fwd_serial(x, y, G, cg, S, w, b, eps, mean, var):
    """:func:`_grouped_fwd` on the calling thread (small inputs)."""
    for r in range(x.shape[0]):
        _grouped_fwd_row(x, y, r, G, cg, S, w, b, eps, mean, var)


@numba.njit(**JIT_OPTIONS)
def _grouped_bwd_row(dy, x, r, G, cg, S, w, mean, rstd, training, sums, dx, s1, s2):
    """Row ``r`` of :func:`_grouped_bwd`."""
    dyr = dy[r]
    xr = x[r]
    dxr = dx[r]
    m = mean[r]
    rs = rstd[r]
    c0 = (r % G) * cg
    n = r // G
    A = 0.0
    B = 0.0
    if sums:
        for k in range(cg):
            t1 = 0.0
            t2 = 0.0
            for i in range(k * S, (k + 1) * S):
                g = dyr[i]
                t1 += g
                t2 += g * (xr[i] - m)
            s1[n, c0 + k] = t1
            s2[n, c0 + k] = t2
            A += w[c0 + k] * t1
            B += w[c0 + k] * t2
    c2 = 0.0
    c3 = 0.0
    if training:
        M = cg * S
        c2 = -B * rs * rs * rs / M
        c3 = -A * rs / M
    for k in range(cg):
        kc = rs * w[c0 + k]
        for i in range(k * S, (k + 1) * S):
            dxr[i] = kc * dyr[i] + c2 * (xr[i] - m) + c3


@numba.njit(parallel=True, **JIT_OPTIONS)
def _grouped_bwd(dy, x, G, cg, S, w, mean, rstd, training, sums, dx, s1, s2):
    """Backward of :func:`_grouped_fwd` for rows (N*G, cg*S).

    With ``sums``: ``s1[n, c] = sum(dy)`` and ``s2[n, c] = sum(dy * (x - mean))`` over the
    ``S`` values of channel ``c`` ((N, C) outputs, for the weight gradients and ``dx``).
    ``training``: the statistics are the row's own, ``dx = rstd * (w dy - A/M - (x - mean)
    rstd^2 B/M)`` with ``A = sum_c w s1``, ``B = sum_c w s2``, ``M = cg*S`` (needs ``sums``);
    otherwise they are constants and ``dx = rstd * w * dy``."""
    for r in numba.prange(x.shape[0]):
        _grouped_bwd_row(dy, x, r, G, cg, S, w, mean, rstd, training, sums, dx, s1, s2)


@numba.njit(**JIT_OPTIONS)
def _grouped_bwd_serial(dy, x, G, cg, S, w, mean, rstd, training, sums, dx, s1, s2):
    """:func:`_grouped_bwd` on the calling thread (small inputs)."""
    for r in range(x.shape[0]):
        _grouped_bwd_row(dy, x, r, G, cg, S, w, mean, rstd, training, sums, dx, s1, s2)


# --------------------------------------------------------------------------- split schedule


@numba.njit(parallel=True, **JIT_OPTIONS)
def _block_moments(x, nb, bmean, bm2):
    """Mean and sum of squared deviations of each block of :data:`BLOCK` values of each row of
    ``x`` (R, M) into ``bmean``/``bm2`` (R, nb), ``nb = ceil(M / BLOCK)``."""
    R, M = x.shape
    for t in numba.prange(R * nb):
        r = t // nb
        j = t % nb
        lo = j * BLOCK
        m, m2 = _moments(x[r], lo, min(M, lo + BLOCK))
        bmean[r, j] = m
        bm2[r, j] = m2


@numba.njit(parallel=True, **JIT_OPTIONS)
def _block_sums(dy, x, mean, nb, s1, s2):
    """Per block of :data:`BLOCK` values of each row of ``dy``/``x`` (P, S): ``s1 = sum(dy)``
    and ``s2 = sum(dy * (x - mean[p]))`` into (P, nb)."""
    P, S = x.shape
    for t in numba.prange(P * nb):
        p = t // nb
        j = t % nb
        lo = j * BLOCK
        hi = min(S, lo + BLOCK)
        m = mean[p]
        t1 = 0.0
        t2 = 0.0
        for i in range(lo, hi):
            g = dy[p, i]
            t1 += g
            t2 += g * (x[p, i] - m)
        s1[p, j] = t1
        s2[p, j] = t2


@numba.njit(parallel=True, **JIT_OPTIONS)
def _plane_apply(x, m, a, b, y):
    """``y = (x - m[p]) * a[p] + b[p]`` for planes ``x``/``y`` (P, S), parallel over (plane,
    block)."""
    P, S = x.shape
    nb = (S + BLOCK - 1) // BLOCK
    for t in numba.prange(P * nb):
        p = t // nb
        lo = (t % nb) * BLOCK
        mp = m[p]
        ap = a[p]
        bp = b[p]
        for i in range(lo, min(S, lo + BLOCK)):
            y[p, i] = (x[p, i] - mp) * ap + bp


@numba.njit(**JIT_OPTIONS)
def _plane_apply_serial(x, m, a, b, y):
    """:func:`_plane_apply` on the calling thread (small inputs)."""
    P, S = x.shape
    for p in range(P):
        mp = m[p]
        ap = a[p]
        bp = b[p]
        for i in range(S):
            y[p, i] = (x[p, i] - mp) * ap + bp


@numba.njit(parallel=True, **JIT_OPTIONS)
def _plane_bwd_apply(dy, x, m, k, c2, c3, dx):
    """``dx = k[p] * dy + c2[p] * (x - m[p]) + c3[p]`` for planes (P, S), parallel over
    (plane, block)."""
    P, S = x.shape
    nb = (S + BLOCK - 1) // BLOCK
    for t in numba.prange(P * nb):
        p = t // nb
        lo = (t % nb) * BLOCK
        mp = m[p]
        kp = k[p]
        c2p = c2[p]
        c3p = c3[p]
        for i in range(lo, min(S, lo + BLOCK)):
            dx[p, i] = kp * dy[p, i] + c2p * (x[p, i] - mp) + c3p


@numba.njit(**JIT_OPTIONS)
def _plane_bwd_apply_serial(dy, x, m, k, c2, c3, dx):
    """:func:`_plane_bwd_apply` on the calling thread (small inputs)."""
    P, S = x.shape
    for p in range(P):
        mp = m[p]
        kp = k[p]
        c2p = c2[p]
        c3p = c3[p]
        for i in range(S):
            dx[p, i] = kp * dy[p, i] + c2p * (x[p, i] - mp) + c3p


# --------------------------------------------------------------------------- layer norm


@numba.njit(**JIT_OPTIONS)
def _layer_fwd_row(x, y, r, w, b, eps, mean, var):
    """Row ``r`` of :func:`_layer_fwd`."""
    xr = x[r]
    yr = y[r]
    M = xr.size
    m, m2 = _moments(xr, 0, M)
    v = m2 / M
    rs = 1.0 / np.sqrt(v + eps)
    mean[r] = m
    var[r] = v
    for j in range(M):
        yr[j] = (xr[j] - m) * rs * w[j] + b[j]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _layer_fwd(x, y, w, b, eps, mean, var):
    """Layer norm of the rows of ``x`` (R, M) into ``y``: per row ``mean`` and biased ``var``
    (R,), then ``y = (x - mean) * rstd * w[j] + b[j]`` with ``rstd = 1/sqrt(var + eps)``
    (``w``, ``b`` float64 (M,))."""
    for r in numba.prange(x.shape[0]):
        _layer_fwd_row(x, y, r, w, b, eps, mean, var)


@numba.njit(**JIT_OPTIONS)
def _layer_fwd_serial(x, y, w, b, eps, mean, var):
    """:func:`_layer_fwd` on the calling thread (small inputs)."""
    for r in range(x.shape[0]):
        _layer_fwd_row(x, y, r, w, b, eps, mean, var)


@numba.njit(parallel=True, **JIT_OPTIONS)
def _layer_apply(x, mean, rstd, w, b, y):
    """``y = (x - mean[r]) * rstd[r] * w[j] + b[j]`` for ``x`` (R, M), parallel over (row,
    block) (the split schedule: statistics from :func:`_block_moments`)."""
    R, M = x.shape
    nb = (M + BLOCK - 1) // BLOCK
    for t in numba.prange(R * nb):
        r = t // nb
        lo = (t % nb) * BLOCK
        m = mean[r]
        rs = rstd[r]
        for j in range(lo, min(M, lo + BLOCK)):
            y[r, j] = (x[r, j] - m) * rs * w[j] + b[j]


@numba.njit(**JIT_OPTIONS)
def _layer_bwd_rows(dy, x, w, mean, rstd, wgrad, lo, hi, dx, pg, pb):
    """Rows ``lo:hi`` of :func:`_layer_bwd`, adding their weight-gradient terms to the 1-D
    partials ``pg``/``pb``."""
    M = x.shape[1]
    for r in range(lo, hi):
        dyr = dy[r]
        xr = x[r]
        dxr = dx[r]
        m = mean[r]
        rs = rstd[r]
        A = 0.0
        B = 0.0
        for j in range(M):
            g = dyr[j] * w[j]
            A += g
            B += g * (xr[j] - m)
        c2 = -B * rs * rs * rs / M
        c3 = -A * rs / M
        for j in range(M):
            dxr[j] = rs * w[j] * dyr[j] + c2 * (xr[j] - m) + c3
        if wgrad:
            for j in range(M):
                g = dyr[j]
                pg[j] += g * (xr[j] - m) * rs
                pb[j] += g


@numba.njit(parallel=True, **JIT_OPTIONS)
def _layer_bwd(dy, x, w, mean, rstd, wgrad, dx, pg, pb):
    """Backward of :func:`_layer_fwd` over rows (R, M): ``dx = rstd * (w dy - A/M - (x - mean)
    rstd^2 B/M)`` with ``A = sum(w dy)``, ``B = sum(w dy (x - mean))`` per row; with
    ``wgrad``, chunk ``t`` of the rows adds ``dy * (x - mean) * rstd`` and ``dy`` to its own
    partials ``pg[t]``/``pb[t]`` (T, M), zero on entry, summed by the caller."""
    R = x.shape[0]
    T = pg.shape[0]
    for t in numba.prange(T):
        _layer_bwd_rows(dy, x, w, mean, rstd, wgrad, t * R // T, (t + 1) * R // T, dx,
                        pg[t], pb[t])


@numba.njit(**JIT_OPTIONS)
def _layer_bwd_serial(dy, x, w, mean, rstd, wgrad, dx, pg, pb):
    """:func:`_layer_bwd` on the calling thread (small inputs; ``pg``/``pb`` (1, M))."""
    _layer_bwd_rows(dy, x, w, mean, rstd, wgrad, 0, x.shape[0], dx, pg[0], pb[0])


@numba.njit(parallel=True, **JIT_OPTIONS)
def _layer_row_sums(dy, x, w, mean, nb, sa, sb):
    """Per block of :data:`BLOCK` columns of each row: ``sa = sum(w dy)`` and ``sb = sum(w dy
    (x - mean[r]))`` into (R, nb) (the split schedule of the backward pass)."""
    R, M = x.shape
    for t in numba.prange(R * nb):
        r = t // nb
        lo = (t % nb) * BLOCK
        m = mean[r]
        t1 = 0.0
        t2 = 0.0
        for j in range(lo, min(M, lo + BLOCK)):
            g = dy[r, j] * w[j]
            t1 += g
            t2 += g * (x[r, j] - m)
        sa[r, t % nb] = t1
        sb[r, t % nb] = t2


@numba.njit(parallel=True, **JIT_OPTIONS)
def _layer_bwd_cols(dy, x, w, mean, rstd, A, B, wgrad, dx, dg, db):
    """The split schedule's second pass: for each block of columns (owning them), every row's
    ``dx`` from its sums ``A``/``B`` (R,), and with ``wgrad`` the columns' ``dg = sum_r dy (x -
    mean) rstd`` and ``db = sum_r dy`` (float64 (M,), zero on entry)."""
    R, M = x.shape
    nb = (M + BLOCK - 1) // BLOCK
    for t in numba.prange(nb):
        lo = t * BLOCK
        hi = min(M, lo + BLOCK)
        for r in range(R):
            m = mean[r]
            rs = rstd[r]
            c2 = -B[r] * rs * rs * rs / M
            c3 = -A[r] * rs / M
            for j in range(lo, hi):
                dx[r, j] = rs * w[j] * dy[r, j] + c2 * (x[r, j] - m) + c3
            if wgrad:
                for j in range(lo, hi):
                    g = dy[r, j]
                    dg[j] += g * (x[r, j] - m) * rs
                    db[j] += g
