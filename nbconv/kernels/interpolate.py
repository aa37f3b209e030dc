"""Interpolation kernels (nearest and bilinear resizing) and their gather-style backward.

Arrays are the flattened ``(n, c)`` planes: input ``x`` (P, H, W), output ``y`` (P, OH, OW),
C-contiguous float32/float64, validated by :mod:`nbconv.functional.interpolate`.  The source
positions are precomputed per axis by the caller (PyTorch's index rules live there, in Python,
where they are exact and cheap: O(OH + OW)):

* nearest: ``ih[i]``, ``iw[j]``: output ``(i, j)`` copies ``x[ih[i], iw[j]]``;
* linear: ``h0, h1, lh0, lh1`` and ``w0, w1, lw0, lw1``: output ``(i, j)`` is
  ``lh0*(lw0*x[h0,w0] + lw1*x[h0,w1]) + lh1*(lw0*x[h1,w0] + lw1*x[h1,w1])``; empty row
  tables mean a 1-D input (one row), ``lw0*x[0,w0] + lw1*x[0,w1]``.

The backward pass is separable and written as two gathers, so that every output element has one
writer and no atomics are needed: first along W, ``t[p, i, w] = sum_k dy[p, i, src_w[k]] *
wt_w[k]`` over the output columns ``k`` in ``ptr_w[w]:ptr_w[w+1]`` that read column ``w``; then
along H, ``dx[p, h, w] = sum_k t[p, src_h[k], w] * wt_h[k]``.  ``prange`` runs over rows
(``P * OH`` or ``P * H``) so that both cores work at batch size 1.
"""

from __future__ import annotations

from numba import njit, prange

from .. import _config

__all__ = [
    "_nearest_fwd", "_nearest_fwd_serial", "_linear_fwd", "_linear_fwd_serial",
    "_gather_w", "_gather_w_serial", "_gather_h", "_gather_h_serial",
]


@njit(**_config.JIT_OPTIONS)
def _nearest_row(x, y, ih, iw, p, i):
    xr = x[p, ih[i]]
    yr = y[p, i]
    for j in range(y.shape[2]):
        yr[j] = xr[iw[j]]


@njit(parallel=True, **_config.JIT_OPTIONS)
def _nearest_fwd(x, y, ih, iw):
    """``y[p, i, j] = x[p, ih[i], iw[j]]``."""
    P, OH = y.shape[0], y.shape[1]
    for r in prange(P * OH):
        p = r // OH
        _nearest_row(x, y, ih, iw, p, r - p * OH)


@njit(**_config.JIT_OPTIONS)
def _nearest_fwd_serial(x, y, ih, iw):
    """:func:`_nearest_fwd` on the calling thread (small inputs)."""
    for p in range(y.shape[0]):
        for i in range(y.shape[1]):
            _nearest_row(x, y, ih, iw, p, i)


@njit(**_config.JIT_OPTIONS)
def _linear_row(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1, p, i):
    # every term is multiplied even when its weight is 0, as PyTorch does, so that an inf
    # neighbour gives NaN in the same places
    yr = y[p, i]
    if h0.shape[0] == 0:
        # 1-D (linear) input, one row: no row terms, as PyTorch's 1-D kernel has none
        a = x[p, 0]
        for j in range(y.shape[2]):
            yr[j] = lw0[j] * a[w0[j]] + lw1[j] * a[w1[j]]
        return
    a = x[p, h0[i]]
    b = x[p, h1[i]]
    ah, bh = lh0[i], lh1[i]
    for j in range(y.shape[2]):
        c0, c1 = w0[j], w1[j]
        ww0, ww1 = lw0[j], lw1[j]
        yr[j] = ah * (ww0 * a[c0] + ww1 * a[c1]) + bh * (ww0 * b[c0] + ww1 * b[c1])


@njit(parallel=True, **_config.JIT_OPTIONS)
def _linear_fwd(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1):
    """Bilinear resizing of ``x`` (P, H, W) into ``y`` (P, OH, OW) from the axis tables."""
    P, OH = y.shape[0], y.shape[1]
    for r in prange(P * OH):
        p = r // OH
        _linear_row(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1, p, r - p * OH)


@njit(**_config.JIT_OPTIONS)
def _linear_fwd_serial(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1):
    """:func:`_linear_fwd` on the calling thread (small inputs)."""
    for p in range(y.shape[0]):
        for i in range(y.shape[1]):
            _linear_row(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1, p, i)


@njit(**_config.JIT_OPTIONS)
def _gather_w_row(dy, t, ptr, src, wt, p, i):
    dr = dy[p, i]
    tr = t[p, i]
    for w in range(t.shape[2]):
        s = 0.0
        for k in range(ptr[w], ptr[w + 1]):
            s += dr[src[k]] * wt[k]
        tr[w] = s


@njit(parallel=True, **_config.JIT_OPTIONS)
def _gather_w(dy, t, ptr, src, wt):
    """``t[p, i, w] = sum_k dy[p, i, src[k]] * wt[k]`` for ``k`` in ``ptr[w]:ptr[w+1]``."""
    P, OH = t.shape[0], t.shape[1]
    for r in prange(P * OH):
        p = r // OH
        _gather_w_row(dy, t, ptr, src, wt, p, r - p * OH)


@njit(**_config.JIT_OPTIONS)
def _gather_w_serial(dy, t, ptr, src, wt):
    """:func:`_gather_w` on the calling thread (small inputs)."""
    for p in range(t.shape[0]):
        for i in range(t.shape[1]):
            _gather_w_row(dy, t, ptr, src, wt, p, i)


@njit(**_config.JIT_OPTIONS)
def _gather_h_row(t, dx, ptr, src, wt, p, h):
    dr = dx[p, h]
    for w in range(dx.shape[2]):
        dr[w] = 0.0
    for k in range(ptr[h], ptr[h + 1]):
        tr = t[p, src[k]]
        c = wt[k]
        for w in range(dx.shape[2]):
            dr[w] += tr[w] * c


@njit(parallel=True, **_config.JIT_OPTIONS)
def _gather_h(t, dx, ptr, src, wt):
    """``dx[p, h, :] = sum_k t[p, src[k], :] * wt[k]`` for ``k`` in ``ptr[h]:ptr[h+1]``."""
    P, H = dx.shape[0], dx.shape[1]
    for r in prange(P * H):
        p = r // H
        _gather_h_row(t, dx, ptr, src, wt, p, r - p * H)


@njit(**_config.JIT_OPTIONS)
def _gather_h_serial(t, dx, ptr, src, wt):
    """:func:`_gather_h` on the calling thread (small inputs)."""
    for p in range(dx.shape[0]):
        for h in range(dx.shape[1]):
            _gather_h_row(t, dx, ptr, src, wt, p, h)
