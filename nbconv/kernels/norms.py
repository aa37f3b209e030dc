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
serves every call (layer norm's elementwise weight and bias are in the input's dtype, so that
a row, its output and its weights stay in L2); the elementwise passes compute in the input's
dtype with coefficients rounded from float64.

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
from numba.extending import overload

from .._config import JIT_OPTIONS

#: the kernels' flags: NumPy's error model, under which a division by zero is IEEE's inf/NaN
#: instead of a checked ZeroDivisionError.  The checks of Python's model (one per division of
#: a row's sums) cost more than the arithmetic on short rows: layer norm over 16 values ran
#: 5x slower with them.
_OPTS = dict(JIT_OPTIONS, error_model="numpy")
#: the helpers over one run of values are inlined into the row loops that call them (a call
#: per run of 16 values cost as much as the run).
_RUN = dict(_OPTS, inline="always")

#: values per chunk of the two-pass moments (4-8 KiB: the second pass reads L1).
_CHUNK = 1024
#: values per tile of layer norm's backward sweeps over a row (16-32 KiB of each array).
_TILE = 4096
#: values per parallel block of the split kernels (their argument ``bl``).
BLOCK = 16384
#: columns per parallel block of layer norm's split backward pass (its weight-gradient sums,
#: 2 x 8 KiB, stay in L1 while the rows stream past).
COL_BLOCK = 1024


def _like(a, v):
    """``v`` as a scalar of ``a``'s dtype (jitted code only)."""
    raise NotImplementedError("_like is compiled by numba")


@overload(_like, inline="always")
def _like_impl(a, v):
    dtype = a.dtype

    def impl(a, v):
        return dtype(v)

    return impl


# Loops over contiguous runs live in small helpers that take the run as a slice and loop
# from 0: written inline with offset bounds (``range(lo, hi)``) the same loops were not
# vectorised (the moments of 2M float32 values: 2.5 ms against 0.2 ms).  Sums accumulate in
# float64; the elementwise passes compute in the input's dtype, their float64 coefficients
# rounded to it once per run (float64 arithmetic on float32 data was the bottleneck of layer
# norm's backward pass: half the vector width, and conversions both ways).


@numba.njit(**_RUN)
def _run_moments(c):
    """Mean and sum of squared deviations of the 1-D run ``c`` (two passes, float64)."""
    k = c.size
    s = 0.0
    for i in range(k):
        s += c[i]
    mc = s / k
    q = 0.0
    for i in range(k):
        d = c[i] - mc
        q += d * d
    return mc, q


@numba.njit(**_RUN)
def _moments(v, lo, hi):
    """Mean and sum of squared deviations (float64) of ``v[lo:hi]`` (1-D, ``hi > lo``)."""
    if hi - lo <= _CHUNK:  # (short rows: the merge loop cost more than the sums)
        return _run_moments(v[lo:hi])
    n = 0
    mean = 0.0
    m2 = 0.0
    for c0 in range(lo, hi, _CHUNK):
        c1 = min(hi, c0 + _CHUNK)
        mc, q = _run_moments(v[c0:c1])
        k = c1 - c0
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


@numba.njit(**_RUN)
def _run_affine(x, y, m, a, b):
    """``y = (x - m) * a + b`` over a run."""
    m_, a_, b_ = _like(x, m), _like(x, a), _like(x, b)
    for i in range(x.size):
        y[i] = (x[i] - m_) * a_ + b_


@numba.njit(**_RUN)
def _run_sums(dy, x, m):
    """``(sum(dy), sum(dy * (x - m)))`` over a run (float64)."""
    t1 = 0.0
    t2 = 0.0
    for i in range(x.size):
        g = dy[i]
        t1 += g
        t2 += g * (x[i] - m)
    return t1, t2


@numba.njit(**_RUN)
def _run_bwd(dy, x, dx, k, c2, m, c3):
    """``dx = k * dy + c2 * (x - m) + c3`` over a run."""
    k_, c2_, m_, c3_ = _like(x, k), _like(x, c2), _like(x, m), _like(x, c3)
    for i in range(x.size):
        dx[i] = k_ * dy[i] + c2_ * (x[i] - m_) + c3_


@numba.njit(**_RUN)
def _run_layer_affine(x, y, m, rs, w, b):
    """``y = (x - m) * rs * w + b`` over a run (``w``, ``b`` runs of the same length)."""
    m_, rs_ = _like(x, m), _like(x, rs)
    for i in range(x.size):
        y[i] = (x[i] - m_) * rs_ * w[i] + b[i]


@numba.njit(**_RUN)
def _run_layer_sums(dy, x, w, m):
    """``(sum(w dy), sum(w dy (x - m)))`` over a run (float64)."""
    t1 = 0.0
    t2 = 0.0
    for i in range(x.size):
        g = dy[i] * w[i]
        t1 += g
        t2 += g * (x[i] - m)
    return t1, t2


@numba.njit(**_RUN)
def _run_layer_bwd(dy, x, w, dx, rs, c2, m, c3):
    """``dx = rs * w * dy + c2 * (x - m) + c3`` over a run."""
    rs_, c2_, m_, c3_ = _like(x, rs), _like(x, c2), _like(x, m), _like(x, c3)
    for i in range(x.size):
        dx[i] = rs_ * w[i] * dy[i] + c2_ * (x[i] - m_) + c3_


@numba.njit(**_RUN)
def _run_layer_wgrad(dy, x, m, rs, pg, pb):
    """``pg += dy * (x - m) * rs`` and ``pb += dy`` over a run.  (A loop of its own: joined
    with :func:`_run_layer_bwd`'s, its three outputs and three inputs needed more run-time
    overlap checks than LLVM allows a vectorised loop, and it ran scalar.)"""
    m_, rs_ = _like(x, m), _like(x, rs)
    for i in range(x.size):
        g = dy[i]
        pg[i] += g * (x[i] - m_) * rs_
        pb[i] += g


# --------------------------------------------------------------------------- group / instance


@numba.njit(**_OPTS)
def _grouped_fwd_rows(x, y, lo, hi, G, cg, S, w, b, eps, mean, var):
    """Rows ``lo:hi`` of :func:`_grouped_fwd` (row ``r`` is group ``r % G`` of its image)."""
    M = cg * S
    for r in range(lo, hi):
        xr = x[r]
        yr = y[r]
        m, m2 = _moments(xr, 0, M)
        v = m2 / M
        rs = 1.0 / np.sqrt(v + eps)
        mean[r] = m
        var[r] = v
        c0 = (r % G) * cg
        for k in range(cg):
            _run_affine(xr[k * S:(k + 1) * S], yr[k * S:(k + 1) * S], m, rs * w[c0 + k],
                        b[c0 + k])


@numba.njit(parallel=True, **_OPTS)
def _grouped_fwd(x, y, G, cg, S, w, b, eps, mean, var, nch):
    """Group norm of ``x`` (N*G, cg*S) into ``y``: per row the mean and the biased variance
    into ``mean``/``var`` (N*G,), then ``y = (x - mean) * rstd * w[c] + b[c]`` with ``rstd =
    1/sqrt(var + eps)`` and ``c = (r % G) * cg + k`` for the ``k``-th run of ``S`` values.
    The rows are shared out in ``nch`` equal chunks."""
    R = x.shape[0]
    for t in numba.prange(nch):
        _grouped_fwd_rows(x, y, t * R // nch, (t + 1) * R // nch, G, cg, S, w, b, eps, mean,
                          var)


@numba.njit(**_OPTS)
def _grouped_fwd_serial(x, y, G, cg, S, w, b, eps, mean, var, nch):
    """:func:`_grouped_fwd` on the calling thread (small inputs; ``nch`` is ignored)."""
    _grouped_fwd_rows(x, y, 0, x.shape[0], G, cg, S, w, b, eps, mean, var)


@numba.njit(**_OPTS)
def _grouped_bwd_rows(dy, x, lo, hi, G, cg, S, w, mean, rstd, training, dx, s1, s2):
    """Rows ``lo:hi`` of :func:`_grouped_bwd`."""
    M = cg * S
    for r in range(lo, hi):
        dyr = dy[r]
        xr = x[r]
        dxr = dx[r]
        m = mean[r]
        rs = rstd[r]
        c0 = (r % G) * cg
        n = r // G
        A = 0.0
        B = 0.0
        for k in range(cg):
            t1, t2 = _run_sums(dyr[k * S:(k + 1) * S], xr[k * S:(k + 1) * S], m)
            s1[n, c0 + k] = t1
            s2[n, c0 + k] = t2
            A += w[c0 + k] * t1
            B += w[c0 + k] * t2
        c2 = 0.0
        c3 = 0.0
        if training:
            c2 = -B * rs * rs * rs / M
            c3 = -A * rs / M
        for k in range(cg):
            j = k * S
            _run_bwd(dyr[j:j + S], xr[j:j + S], dxr[j:j + S], rs * w[c0 + k], c2, m, c3)


@numba.njit(parallel=True, **_OPTS)
def _grouped_bwd(dy, x, G, cg, S, w, mean, rstd, training, dx, s1, s2, nch):
    """Backward of :func:`_grouped_fwd` for rows (N*G, cg*S), in ``nch`` chunks of rows.

    ``s1[n, c] = sum(dy)`` and ``s2[n, c] = sum(dy * (x - mean))`` over the ``S`` values of
    channel ``c`` ((N, C) outputs, for the weight gradients and ``dx``).  ``training``: the
    statistics are the row's own, ``dx = rstd * (w dy - A/M - (x - mean) rstd^2 B/M)`` with
    ``A = sum_c w s1``, ``B = sum_c w s2``, ``M = cg*S``; otherwise they are constants and
    ``dx = rstd * w * dy``."""
    R = x.shape[0]
    for t in numba.prange(nch):
        _grouped_bwd_rows(dy, x, t * R // nch, (t + 1) * R // nch, G, cg, S, w, mean, rstd,
                          training, dx, s1, s2)


@numba.njit(**_OPTS)
def _grouped_bwd_serial(dy, x, G, cg, S, w, mean, rstd, training, dx, s1, s2, nch):
    """:func:`_grouped_bwd` on the calling thread (small inputs; ``nch`` is ignored)."""
    _grouped_bwd_rows(dy, x, 0, x.shape[0], G, cg, S, w, mean, rstd, training, dx, s1, s2)


# --------------------------------------------------------------------------- split schedule
#
# The work items of these kernels are (row, block of ``bl`` values) pairs, numbered ``t = row *
# nb + block``; a parallel kernel hands each of its ``nch`` iterations a contiguous range of
# items, which a serial helper runs (the helpers' loops are not written in the ``prange`` body,
# where numba vectorised them worse).


@numba.njit(**_OPTS)
def _block_moments_items(x, bl, nb, t0, t1, bmean, bm2):
    M = x.shape[1]
    for t in range(t0, t1):
        r = t // nb
        j = t % nb
        lo = j * bl
        m, m2 = _moments(x[r], lo, min(M, lo + bl))
        bmean[r, j] = m
        bm2[r, j] = m2


@numba.njit(parallel=True, **_OPTS)
def _block_moments(x, bl, nb, bmean, bm2, nch):
    """Mean and sum of squared deviations of each block of ``bl`` values of each row of
    ``x`` (R, M) into ``bmean``/``bm2`` (R, nb), ``nb = ceil(M / bl)``."""
    n = x.shape[0] * nb
    for c in numba.prange(nch):
        _block_moments_items(x, bl, nb, c * n // nch, (c + 1) * n // nch, bmean, bm2)


@numba.njit(**_OPTS)
def _block_sums_items(dy, x, mean, bl, nb, t0, t1, s1, s2):
    S = x.shape[1]
    for t in range(t0, t1):
        p = t // nb
        j = t % nb
        lo = j * bl
        hi = min(S, lo + bl)
        t1_, t2_ = _run_sums(dy[p, lo:hi], x[p, lo:hi], mean[p])
        s1[p, j] = t1_
        s2[p, j] = t2_


@numba.njit(parallel=True, **_OPTS)
def _block_sums(dy, x, mean, bl, nb, s1, s2, nch):
    """Per block of ``bl`` values of each row of ``dy``/``x`` (P, S): ``s1 = sum(dy)``
    and ``s2 = sum(dy * (x - mean[p]))`` into (P, nb)."""
    n = x.shape[0] * nb
    for c in numba.prange(nch):
        _block_sums_items(dy, x, mean, bl, nb, c * n // nch, (c + 1) * n // nch, s1, s2)


@numba.njit(**_OPTS)
def _plane_apply_items(x, m, a, b, y, bl, nb, t0, t1):
    S = x.shape[1]
    for t in range(t0, t1):
        p = t // nb
        lo = (t % nb) * bl
        hi = min(S, lo + bl)
        _run_affine(x[p, lo:hi], y[p, lo:hi], m[p], a[p], b[p])


@numba.njit(parallel=True, **_OPTS)
def _plane_apply(x, m, a, b, y, bl, nch):
    """``y = (x - m[p]) * a[p] + b[p]`` for planes ``x``/``y`` (P, S)."""
    nb = (x.shape[1] + bl - 1) // bl
    n = x.shape[0] * nb
    for c in numba.prange(nch):
        _plane_apply_items(x, m, a, b, y, bl, nb, c * n // nch, (c + 1) * n // nch)


@numba.njit(**_OPTS)
def _plane_apply_serial(x, m, a, b, y, bl, nch):
    """:func:`_plane_apply` on the calling thread (small inputs; ``nch`` is ignored)."""
    nb = (x.shape[1] + bl - 1) // bl
    _plane_apply_items(x, m, a, b, y, bl, nb, 0, x.shape[0] * nb)


@numba.njit(**_OPTS)
def _plane_bwd_apply_items(dy, x, m, k, c2, c3, dx, bl, nb, t0, t1):
    S = x.shape[1]
    for t in range(t0, t1):
        p = t // nb
        lo = (t % nb) * bl
        hi = min(S, lo + bl)
        _run_bwd(dy[p, lo:hi], x[p, lo:hi], dx[p, lo:hi], k[p], c2[p], m[p], c3[p])


@numba.njit(parallel=True, **_OPTS)
def _plane_bwd_apply(dy, x, m, k, c2, c3, dx, bl, nch):
    """``dx = k[p] * dy + c2[p] * (x - m[p]) + c3[p]`` for planes (P, S)."""
    nb = (x.shape[1] + bl - 1) // bl
    n = x.shape[0] * nb
    for c in numba.prange(nch):
        _plane_bwd_apply_items(dy, x, m, k, c2, c3, dx, bl, nb, c * n // nch,
                               (c + 1) * n // nch)


# --------------------------------------------------------------------------- layer norm


@numba.njit(**_OPTS)
def _layer_fwd_rows(x, y, lo, hi, w, b, eps, mean, var):
    """Rows ``lo:hi`` of :func:`_layer_fwd`."""
    M = x.shape[1]
    for r in range(lo, hi):
        xr = x[r]
        m, m2 = _moments(xr, 0, M)
        v = m2 / M
        mean[r] = m
        var[r] = v
        _run_layer_affine(xr, y[r], m, 1.0 / np.sqrt(v + eps), w, b)


@numba.njit(parallel=True, **_OPTS)
def _layer_fwd(x, y, w, b, eps, mean, var, nch):
    """Layer norm of the rows of ``x`` (R, M) into ``y``, in ``nch`` chunks of rows: per row
    ``mean`` and biased ``var`` (R,), then ``y = (x - mean) * rstd * w[j] + b[j]`` with ``rstd
    = 1/sqrt(var + eps)`` (``w``, ``b`` (M,) in the dtype of ``x``)."""
    R = x.shape[0]
    for t in numba.prange(nch):
        _layer_fwd_rows(x, y, t * R // nch, (t + 1) * R // nch, w, b, eps, mean, var)


@numba.njit(**_OPTS)
def _layer_fwd_serial(x, y, w, b, eps, mean, var, nch):
    """:func:`_layer_fwd` on the calling thread (small inputs; ``nch`` is ignored)."""
    _layer_fwd_rows(x, y, 0, x.shape[0], w, b, eps, mean, var)


@numba.njit(**_OPTS)
def _layer_apply_items(x, mean, rstd, w, b, y, bl, nb, t0, t1):
    M = x.shape[1]
    for t in range(t0, t1):
        r = t // nb
        lo = (t % nb) * bl
        hi = min(M, lo + bl)
        _run_layer_affine(x[r, lo:hi], y[r, lo:hi], mean[r], rstd[r], w[lo:hi], b[lo:hi])


@numba.njit(parallel=True, **_OPTS)
def _layer_apply(x, mean, rstd, w, b, y, bl, nch):
    """``y = (x - mean[r]) * rstd[r] * w[j] + b[j]`` for ``x`` (R, M) over (row, block) items
    (the split schedule: statistics from :func:`_block_moments`)."""
    nb = (x.shape[1] + bl - 1) // bl
    n = x.shape[0] * nb
    for c in numba.prange(nch):
        _layer_apply_items(x, mean, rstd, w, b, y, bl, nb, c * n // nch, (c + 1) * n // nch)


# The variants with and without weight gradients are separate functions: one row loop that
# chose between the two inner loops at run time was not vectorised (6x slower on rows of 16).


@numba.njit(**_OPTS)
def _layer_bwd_rows(dy, x, w, mean, rstd, lo, hi, dx):
    """Rows ``lo:hi`` of :func:`_layer_bwd` without weight gradients."""
    M = x.shape[1]
    for r in range(lo, hi):
        m = mean[r]
        rs = rstd[r]
        A, B = _run_layer_sums(dy[r], x[r], w, m)
        _run_layer_bwd(dy[r], x[r], w, dx[r], rs, -B * rs * rs * rs / M, m, -A * rs / M)


@numba.njit(**_OPTS)
def _layer_bwd_rows_wgrad_short(dy, x, w, mean, rstd, lo, hi, dx, pg, pb):
    """:func:`_layer_bwd_rows_wgrad` for rows of at most :data:`_TILE` values."""
    # (one tile: without the tile loop, whose slicing cost a third of the time on rows of 16)
    M = x.shape[1]
    for r in range(lo, hi):
        m = mean[r]
        rs = rstd[r]
        A, B = _run_layer_sums(dy[r], x[r], w, m)
        _run_layer_bwd(dy[r], x[r], w, dx[r], rs, -B * rs * rs * rs / M, m, -A * rs / M)
        _run_layer_wgrad(dy[r], x[r], m, rs, pg, pb)


@numba.njit(**_OPTS)
def _layer_bwd_rows_wgrad(dy, x, w, mean, rstd, lo, hi, dx, pg, pb):
    """Rows ``lo:hi`` of :func:`_layer_bwd`, adding their weight-gradient terms to the 1-D
    partials ``pg``/``pb``."""
    M = x.shape[1]
    for r in range(lo, hi):
        m = mean[r]
        rs = rstd[r]
        A, B = _run_layer_sums(dy[r], x[r], w, m)
        c2 = -B * rs * rs * rs / M
        c3 = -A * rs / M
        # in tiles, so that the weight-gradient sweep rereads the tile from L1
        for j in range(0, M, _TILE):
            k = min(M, j + _TILE)
            _run_layer_bwd(dy[r, j:k], x[r, j:k], w[j:k], dx[r, j:k], rs, c2, m, c3)
            _run_layer_wgrad(dy[r, j:k], x[r, j:k], m, rs, pg[j:k], pb[j:k])


@numba.njit(parallel=True, **_OPTS)
def _layer_bwd(dy, x, w, mean, rstd, wgrad, dx, pg, pb):
    """Backward of :func:`_layer_fwd` over rows (R, M): ``dx = rstd * (w dy - A/M - (x - mean)
    rstd^2 B/M)`` with ``A = sum(w dy)``, ``B = sum(w dy (x - mean))`` per row, in ``T``
    chunks of rows; with ``wgrad``, chunk ``t`` adds ``dy * (x - mean) * rstd`` and ``dy`` to
    its own partials ``pg[t]``/``pb[t]`` (T, M), zero on entry, summed by the caller (without,
    they are (T, 0) and only give ``T``)."""
    R = x.shape[0]
    T = pg.shape[0]
    for t in numba.prange(T):
        lo = t * R // T
        hi = (t + 1) * R // T
        if wgrad and x.shape[1] > _TILE:
            _layer_bwd_rows_wgrad(dy, x, w, mean, rstd, lo, hi, dx, pg[t], pb[t])
        elif wgrad:
            _layer_bwd_rows_wgrad_short(dy, x, w, mean, rstd, lo, hi, dx, pg[t], pb[t])
        else:
            _layer_bwd_rows(dy, x, w, mean, rstd, lo, hi, dx)


@numba.njit(**_OPTS)
def _layer_bwd_serial(dy, x, w, mean, rstd, wgrad, dx, pg, pb):
    """:func:`_layer_bwd` on the calling thread (small inputs; ``pg``/``pb`` (1, M))."""
    if wgrad and x.shape[1] > _TILE:
        _layer_bwd_rows_wgrad(dy, x, w, mean, rstd, 0, x.shape[0], dx, pg[0], pb[0])
    elif wgrad:
        _layer_bwd_rows_wgrad_short(dy, x, w, mean, rstd, 0, x.shape[0], dx, pg[0], pb[0])
    else:
        _layer_bwd_rows(dy, x, w, mean, rstd, 0, x.shape[0], dx)


@numba.njit(**_OPTS)
def _layer_row_sums_items(dy, x, w, mean, bl, nb, t0, t1, sa, sb):
    M = x.shape[1]
    for t in range(t0, t1):
        r = t // nb
        lo = (t % nb) * bl
        hi = min(M, lo + bl)
        t1_, t2_ = _run_layer_sums(dy[r, lo:hi], x[r, lo:hi], w[lo:hi], mean[r])
        sa[r, t % nb] = t1_
        sb[r, t % nb] = t2_


@numba.njit(parallel=True, **_OPTS)
def _layer_row_sums(dy, x, w, mean, bl, nb, sa, sb, nch):
    """Per block of ``bl`` columns of each row: ``sa = sum(w dy)`` and ``sb = sum(w dy
    (x - mean[r]))`` into (R, nb) (the split schedule of the backward pass)."""
    n = x.shape[0] * nb
    for c in numba.prange(nch):
        _layer_row_sums_items(dy, x, w, mean, bl, nb, c * n // nch, (c + 1) * n // nch, sa,
                              sb)


@numba.njit(**_OPTS)
def _layer_bwd_cols_block(dy, x, w, mean, rstd, A, B, dx, lo, hi):
    R, M = x.shape
    for r in range(R):
        rs = rstd[r]
        _run_layer_bwd(dy[r, lo:hi], x[r, lo:hi], w[lo:hi], dx[r, lo:hi], rs,
                       -B[r] * rs * rs * rs / M, mean[r], -A[r] * rs / M)


@numba.njit(**_OPTS)
def _layer_bwd_cols_block_wgrad(dy, x, w, mean, rstd, A, B, dx, dg, db, lo, hi):
    R, M = x.shape
    for r in range(R):
        rs = rstd[r]
        _run_layer_bwd(dy[r, lo:hi], x[r, lo:hi], w[lo:hi], dx[r, lo:hi], rs,
                       -B[r] * rs * rs * rs / M, mean[r], -A[r] * rs / M)
        _run_layer_wgrad(dy[r, lo:hi], x[r, lo:hi], mean[r], rs, dg[lo:hi], db[lo:hi])


@numba.njit(parallel=True, **_OPTS)
def _layer_bwd_cols(dy, x, w, mean, rstd, A, B, wgrad, dx, dg, db, bl):
    """The split schedule's second pass: for each block of ``bl`` columns (owning
    them), every row's ``dx`` from its sums ``A``/``B`` (R,), and with ``wgrad`` the columns'
    ``dg = sum_r dy (x - mean) rstd`` and ``db = sum_r dy`` (float64 (M,), zero on entry)."""
    M = x.shape[1]
    nb = (M + bl - 1) // bl
    for t in numba.prange(nb):
        lo = t * bl
        hi = min(M, lo + bl)
        if wgrad:
            _layer_bwd_cols_block_wgrad(dy, x, w, mean, rstd, A, B, dx, dg, db, lo, hi)
        else:
            _layer_bwd_cols_block(dy, x, w, mean, rstd, A, B, dx, lo, hi)
