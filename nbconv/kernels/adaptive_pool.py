"""Adaptive max pooling kernels (forward; the backward pass is the max-pool scatter of
:mod:`nbconv.kernels.pool2d`).

Arrays are the flattened ``(n, c)`` planes: input ``x`` (P, H, W), outputs ``y`` and ``idx``
(P, OH, OW), C-contiguous float32/float64 (int64 indices), validated by
:mod:`nbconv.functional.adaptive_pool`.  Output bin ``i`` along an axis of length ``H`` spans
``floor(i*H/OH) <= h < ceil((i+1)*H/OH)`` (PyTorch's bins; they may overlap, and ``OH > H``
repeats rows).  ``prange`` runs over ``P * OH`` output rows, so that both cores work at batch
size 1, each iteration writing only its own row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _config

__all__ = ["_adaptive_max_pool2d_fwd", "_adaptive_max_pool2d_fwd_serial"]


@njit(**_config.JIT_OPTIONS)
def _adaptive_max_row(x, y, idx, want_idx, p, i):
    """Output row ``i`` of plane ``p`` (serial helper).

    The maximum of each bin and its flat position ``h * W + w``: PyTorch's rule ``take = v >
    best or isnan(v)`` in row-major order, so ties go to the first maximum and a NaN wins (the
    last NaN's position); a bin of only ``-inf`` gives ``-inf`` at its first element.
    """
    H, W = x.shape[1], x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    hs = (i * H) // OH
    he = ((i + 1) * H + OH - 1) // OH
    for j in range(OW):
        ws = (j * W) // OW
        we = ((j + 1) * W + OW - 1) // OW
        best = -np.inf
        bi = hs * W + ws
        for h in range(hs, he):
            xr = x[p, h]
            for w in range(ws, we):
                v = xr[w]
                # selects, not branches: random data mispredicts a branch half the time
                take = (v > best) | (v != v)
                bi = h * W + w if take else bi
                best = v if take else best
        y[p, i, j] = best
        if want_idx:
            idx[p, i, j] = bi


@njit(parallel=True, **_config.JIT_OPTIONS)
def _adaptive_max_pool2d_fwd(x, y, idx, want_idx):
    """Adaptive max pooling of ``x`` (P, H, W) into ``y`` and, with ``want_idx``, the argmax
    into ``idx`` (P, OH, OW); without it ``idx`` is not touched (any 3-D int64 array will do)."""
    P, OH = y.shape[0], y.shape[1]
    for r in prange(P * OH):
        p = r // OH
        _adaptive_max_row(x, y, idx, want_idx, p, r - p * OH)


@njit(**_config.JIT_OPTIONS)
def _adaptive_max_pool2d_fwd_serial(x, y, idx, want_idx):
    """:func:`_adaptive_max_pool2d_fwd` on the calling thread (small inputs)."""
    P, OH = y.shape[0], y.shape[1]
    for p in range(P):
        for i in range(OH):
            _adaptive_max_row(x, y, idx, want_idx, p, i)
