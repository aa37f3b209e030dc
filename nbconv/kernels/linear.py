"""Bias kernels of the fully connected layer (the matrix products are BLAS calls).

``y`` and ``dy`` are C-contiguous ``(M, F)`` arrays: M rows (all leading dimensions flattened),
F output features.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import JIT_OPTIONS

#: rows per parallel chunk.
_ROWS = 64


@numba.njit(parallel=True, **JIT_OPTIONS)
def _linear_bias_fwd(y, b):
    """``y[m, f] += b[f]`` in place; each chunk of rows belongs to one iteration."""
    M, F = y.shape
    nch = (M + _ROWS - 1) // _ROWS
    for ch in numba.prange(nch):
        for m in range(ch * _ROWS, min(M, (ch + 1) * _ROWS)):
            for f in range(F):
                y[m, f] += b[f]


@numba.njit(parallel=True, **JIT_OPTIONS)
def _linear_bias_bwd(dy, db):
    """``db[f] = sum_m dy[m, f]``: per-chunk partial sums (float64), reduced serially after."""
    M, F = dy.shape
    nch = (M + _ROWS - 1) // _ROWS
    part = np.zeros((nch, F))
    for ch in numba.prange(nch):
        for m in range(ch * _ROWS, min(M, (ch + 1) * _ROWS)):
            for f in range(F):
                part[ch, f] += dy[m, f]
    for f in range(F):
        s = 0.0
        for ch in range(nch):
            s += part[ch, f]
        db[f] = s
