"""1-D max pooling forward kernel (the backward pass is the max-pool scatter of
:mod:`nbconv.kernels.pool2d`).

Arrays are rows: input ``x`` (P, L), outputs ``y`` and ``idx`` (P, OL), C-contiguous
float32/float64 (int64 indices), validated by :mod:`nbconv.functional.pool1d`.  Hyperparameter
names: ``k`` kernel, ``s`` stride, ``pad`` padding (left; the right one is implied by ``OL``),
``d`` dilation.  The rule is PyTorch's ``take = v > best or isnan(v)`` over the window's taps
in order: ties go to the first maximum, a NaN wins and the last NaN's position is recorded;
padding never wins, and a window without a real tap (possible only with dilation) gives
``-inf`` and index ``-1``.  The 2-D kernel on an (N, C, 1, L) view computes the same; this one
runs along whole rows: without indices the taps sweep outermost over a row of windows (LLVM
vectorises the inner loop), with them each window keeps its maximum and position in
registers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _config

__all__ = ["_max_pool1d_fwd", "_max_pool1d_fwd_serial"]


@njit(**_config.JIT_OPTIONS)
def _border(xr, yr, ir, want_idx, j, k, s, pad, d):
    """Output ``j`` of row ``xr`` whose window crosses the padding (serial helper)."""
    L = xr.shape[0]
    ws = j * s - pad
    t0 = 0
    if ws < 0:  # the first tap inside the input (arithmetic: the window may be long)
        t0 = (-ws + d - 1) // d
    best = -np.inf
    bi = -1
    for t in range(t0, k):
        w = ws + t * d
        if w >= L:
            break
        v = xr[w]
        take = (v > best) | (v != v) | (bi < 0)
        bi = w if take else bi
        best = v if take else best
    yr[j] = best
    if want_idx:
        ir[j] = bi


@njit(**_config.JIT_OPTIONS)
def _max_pool1d_rows(x, y, idx, want_idx, r0, r1, k, s, pad, d):
    """Rows ``r0:r1`` (serial helper).  Windows inside the input, ``j0 <= j < j1``, start from
    their first tap and fold the others in."""
    L = x.shape[1]
    OL = y.shape[1]
    span = (k - 1) * d
    j0 = min((pad + s - 1) // s, OL)
    j1 = j0
    if L - 1 - span + pad >= 0:
        j1 = max(min((L - 1 - span + pad) // s + 1, OL), j0)
    for r in range(r0, r1):
        xr = x[r]
        yr = y[r]
        ir = idx[r] if want_idx else idx[0]
        for j in range(j0):
            _border(xr, yr, ir, want_idx, j, k, s, pad, d)
        for j in range(j1, OL):
            _border(xr, yr, ir, want_idx, j, k, s, pad, d)
        if want_idx:  # window by window: the maximum and its position stay in registers
            for j in range(j0, j1):
                w = j * s - pad
                best = xr[w]
                bi = w
                for t in range(1, k):
                    v = xr[w + t * d]
                    take = (v > best) | (v != v)
                    bi = w + t * d if take else bi
                    best = v if take else best
                yr[j] = best
                ir[j] = bi
        else:
            for j in range(j0, j1):
                yr[j] = xr[j * s - pad]
            for t in range(1, k):
                off = t * d - pad
                for j in range(j0, j1):
                    v = xr[j * s + off]
                    m = yr[j]
                    yr[j] = v if (v > m) | (v != v) else m


@njit(parallel=True, **_config.JIT_OPTIONS)
def _max_pool1d_fwd(x, y, idx, want_idx, nblocks, k, s, pad, d):
    """Max pooling of rows ``x`` (P, L) into ``y`` and, with ``want_idx``, the argmax into
    ``idx`` (P, OL) (without it ``idx`` is not touched: any 2-D int64 array with a row will
    do); ``prange`` over ``nblocks`` blocks of whole rows (each block owns its rows)."""
    P = x.shape[0]
    for b in prange(nblocks):
        _max_pool1d_rows(x, y, idx, want_idx, b * P // nblocks, (b + 1) * P // nblocks,
                         k, s, pad, d)


@njit(**_config.JIT_OPTIONS)
def _max_pool1d_fwd_serial(x, y, idx, want_idx, nblocks, k, s, pad, d):
    """:func:`_max_pool1d_fwd` on the calling thread (small inputs; ``nblocks`` unused)."""
    _max_pool1d_rows(x, y, idx, want_idx, 0, x.shape[0], k, s, pad, d)
